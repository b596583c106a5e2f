// Package dovecotconf lays out and configures a private Dovecot instance
// on 127.0.0.1 (its own directories, users, maildirs and settings, nothing
// from /etc/dovecot), for the test harness dovecottest and the benchmark
// rig, which add their protocols, logins and listeners.
package dovecotconf

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// Instance is one private instance, everything of it under Dir.
type Instance struct {
	// Dir holds run/ (base_dir), state/, the log, the passwd-file
	// "users" and home/USER/Maildir.
	Dir string
	// Name is the instance_name, which keeps instances apart.
	Name string
	// MailUID and MailGID own the mail: Dovecot refuses to access mail
	// as root.
	MailUID, MailGID int
	// ConnLimit is the raised connection and process limit, so that load
	// reaches the code under test, not Dovecot's defaults (10 connections
	// per user and address).
	ConnLimit int
}

// New describes an instance in dir, with the mail owned by the system
// user "mail".
func New(dir, name string, connLimit int) (*Instance, error) {
	u, err := user.Lookup("mail")
	if err != nil {
		return nil, fmt.Errorf("system user mail, who is to own the maildirs: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || uid == 0 {
		return nil, fmt.Errorf("system user mail has unusable uid/gid %s/%s", u.Uid, u.Gid)
	}
	return &Instance{Dir: dir, Name: name, MailUID: uid, MailGID: gid, ConnLimit: connLimit}, nil
}

// Layout creates Dir and its state and home directories, a home with a
// maildir for each user, and the passwd-file "users" with their plaintext
// passwords. Names and passwords must fit a passwd-file: no ':' or line
// break, and a name is a path element.
func (in *Instance) Layout(users map[string]string) error {
	// Dovecot's unprivileged processes must traverse Dir to reach the
	// users file, their homes and base_dir.
	for _, d := range []string{in.Dir, filepath.Join(in.Dir, "state"), filepath.Join(in.Dir, "home")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	var pw strings.Builder
	for name, pass := range users {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, ":/%\n\r\t ") {
			return fmt.Errorf("unsupported user name %q", name)
		}
		if strings.ContainsAny(pass, ":\n\r") {
			return errors.New("a password contains ':' or a line break, which passwd-file cannot hold")
		}
		home := filepath.Join(in.Dir, "home", name)
		// uid/gid come from mail_uid/mail_gid, so the fields stay empty.
		fmt.Fprintf(&pw, "%s:{PLAIN}%s::::%s::\n", name, pass, home)
		for _, d := range []string{home, filepath.Join(home, "Maildir"),
			in.Maildir(name, "cur"), in.Maildir(name, "new"), in.Maildir(name, "tmp")} {
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
			if err := os.Chown(d, in.MailUID, in.MailGID); err != nil {
				return err
			}
		}
	}
	// The auth process runs as the "dovecot" user and must read it.
	return os.WriteFile(in.UsersPath(), []byte(pw.String()), 0o644)
}

// Maildir is the directory sub (cur, new or tmp) of the user's maildir.
func (in *Instance) Maildir(user, sub string) string {
	return filepath.Join(in.Dir, "home", user, "Maildir", sub)
}

// UsersPath is the passwd-file of the users.
func (in *Instance) UsersPath() string { return filepath.Join(in.Dir, "users") }

// LogPath is Dovecot's log.
func (in *Instance) LogPath() string { return filepath.Join(in.Dir, "dovecot.log") }

// Settings returns what every instance shares: its own directories and
// log, plain loopback logins, the mail owner, raised limits, and no delay
// after a wrong password (tests and benchmarks measure popbridge's own).
// The caller adds protocols, auth_mechanisms, mail_location, passdb and
// userdb, and the listeners.
func (in *Instance) Settings() string {
	return fmt.Sprintf(`instance_name = %[1]s
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[3]s
info_log_path = %[3]s
debug_log_path = %[3]s

listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
default_login_user = dovenull
default_internal_user = dovecot
mail_uid = %[4]d
mail_gid = %[5]d
first_valid_uid = %[4]d
first_valid_gid = %[5]d
# Throw-away mail: durability is not worth the fsync latency.
mail_fsync = never
auth_failure_delay = 0
# Dates in SEARCH (SINCE, BEFORE) are the server's local dates: UTC makes
# them the same on every machine.
import_environment = TZ=UTC

mail_max_userip_connections = %[6]d
default_process_limit = %[6]d
default_client_limit = %[6]d
# auth and anvil serve every login process; Dovecot warns at start-up
# unless their client_limit covers the raised process limits.
service auth {
  client_limit = %[7]d
}
service anvil {
  client_limit = %[7]d
}
`, in.Name, in.Dir, in.LogPath(), in.MailUID, in.MailGID, in.ConnLimit, 5*in.ConnLimit)
}

// UserDB is the userdb of the users in Layout's passwd-file.
func (in *Instance) UserDB() string {
	return fmt.Sprintf(`userdb {
  driver = passwd-file
  args = username_format=%%u %s
}
`, in.UsersPath())
}

// Listener opens the plain listener of service ("imap" or "pop3") on port
// and turns its implicit-TLS one off.
func Listener(service string, port int) string {
	return fmt.Sprintf(`service %[1]s-login {
  inet_listener %[1]s {
    port = %[2]d
  }
  inet_listener %[1]ss {
    port = 0
  }
}
`, service, port)
}
