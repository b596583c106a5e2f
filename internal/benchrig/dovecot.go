package benchrig

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/popbridge/popbridge/internal/proctest"
)

// dovecot is a private Dovecot instance for the benchmark, configured as
// internal/dovecottest configures its test instances (whose package
// comment lists the facts behind the settings), without *testing.T. It is
// either the mail store (IMAP and native POP3 over one maildir per user)
// or, with gateway set, Dovecot's POP3-over-IMAP proxy: a pop3 service
// with imapc storage in front of the store's IMAP.
type dovecot struct {
	dir      string
	imapAddr string // "" for the gateway
	pop3Addr string
	proc     *proctest.Process
	mailUID  int
	mailGID  int
	seq      int
}

// benchConnLimit is well above the rig's concurrency, so that Dovecot's
// limits never decide a figure.
const benchConnLimit = 1000

func startDovecot(base string, users map[string]string, gateway string) (*dovecot, error) {
	bin, err := proctest.Executable("dovecot", "/usr/sbin", "/usr/local/sbin")
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the benchmark runs Dovecot, which needs root (to switch to the mail user)")
	}
	u, err := user.Lookup("mail")
	if err != nil {
		return nil, fmt.Errorf("system user mail: %w", err)
	}
	d := &dovecot{dir: base}
	d.mailUID, _ = strconv.Atoi(u.Uid)
	d.mailGID, _ = strconv.Atoi(u.Gid)
	for _, sub := range []string{"", "state", "home"} {
		if err := os.MkdirAll(filepath.Join(base, sub), 0o755); err != nil {
			return nil, err
		}
	}
	var pw strings.Builder
	for name, pass := range users {
		home := filepath.Join(base, "home", name)
		fmt.Fprintf(&pw, "%s:{PLAIN}%s::::%s::\n", name, pass, home)
		for _, dir := range []string{home, filepath.Join(home, "Maildir"), d.maildir(name, "cur"), d.maildir(name, "new"), d.maildir(name, "tmp")} {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
			if err := os.Chown(dir, d.mailUID, d.mailGID); err != nil {
				return nil, err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(base, "users"), []byte(pw.String()), 0o644); err != nil {
		return nil, err
	}
	ports, err := proctest.FreePorts(2)
	if err != nil {
		return nil, err
	}
	d.pop3Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	if gateway == "" {
		d.imapAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	}
	conf := filepath.Join(base, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(d.config(ports[0], ports[1], gateway)), 0o644); err != nil {
		return nil, err
	}
	if d.proc, err = proctest.Start(filepath.Join(base, "dovecot.out"), bin, "-F", "-c", conf); err != nil {
		return nil, err
	}
	for _, a := range []struct{ addr, ok string }{{d.imapAddr, "* OK"}, {d.pop3Addr, "+OK"}} {
		if a.addr == "" {
			continue
		}
		if err := d.proc.WaitGreeting(a.addr, a.ok, "", 15*time.Second); err != nil {
			d.proc.Stop()
			log, _ := os.ReadFile(filepath.Join(base, "dovecot.log"))
			return nil, fmt.Errorf("dovecot in %s: %w\n%s", base, err, log)
		}
	}
	return d, nil
}

func (d *dovecot) maildir(user, sub string) string {
	return filepath.Join(d.dir, "home", user, "Maildir", sub)
}

func (d *dovecot) config(imapPort, pop3Port int, gateway string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `instance_name = popbench-%[1]d
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
mail_uid = %[3]d
mail_gid = %[4]d
first_valid_uid = %[3]d
first_valid_gid = %[4]d
mail_fsync = never
auth_failure_delay = 0
mail_max_userip_connections = %[5]d
default_process_limit = %[5]d
default_client_limit = %[5]d
service auth {
  client_limit = %[6]d
}
service anvil {
  client_limit = %[6]d
}
service pop3-login {
  inet_listener pop3 {
    port = %[7]d
  }
  inet_listener pop3s {
    port = 0
  }
}
`, pop3Port, d.dir, d.mailUID, d.mailGID, benchConnLimit, 5*benchConnLimit, pop3Port)
	if gateway == "" {
		fmt.Fprintf(&b, `protocols = imap pop3
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/users
}
userdb {
  driver = passwd-file
  args = username_format=%%u %[1]s/users
}
service imap-login {
  inet_listener imap {
    port = %[2]d
  }
  inet_listener imaps {
    port = 0
  }
}
`, d.dir, imapPort)
		return b.String()
	}
	// The gateway: see /work/shared/dovecot-notes.md. The user's password
	// is checked by logging in upstream and passed on to imapc.
	host, port, _ := net.SplitHostPort(gateway)
	fmt.Fprintf(&b, `protocols = pop3
mail_location = imapc:
mail_home = %[1]s/home/%%u
imapc_host = %[2]s
imapc_port = %[3]s
passdb {
  driver = imap
  args = host=%[2]s port=%[3]s
  default_fields = userdb_imapc_user=%%u userdb_imapc_password=%%w
}
userdb {
  driver = prefetch
}
`, d.dir, host, port)
	return b.String()
}

// deliver writes a message straight into the user's maildir cur/, as
// already seen by Dovecot's first sync (":2,"), which is faster than
// new/ for large corpora. Names sort in delivery order, so UIDs do too.
func (d *dovecot) deliver(user string, raw []byte) error {
	d.seq++
	name := fmt.Sprintf("1700000000.Q%09d.popbench:2,", d.seq)
	path := filepath.Join(d.maildir(user, "cur"), name)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return err
	}
	return os.Chown(path, d.mailUID, d.mailGID)
}
