package benchrig

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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
	cmd      *exec.Cmd
	exited   chan struct{}
	mailUID  int
	mailGID  int
	seq      int
}

// benchConnLimit is well above the rig's concurrency, so that Dovecot's
// limits never decide a figure.
const benchConnLimit = 1000

func startDovecot(base string, users map[string]string, gateway string) (*dovecot, error) {
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		bin = "/usr/sbin/dovecot"
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the benchmark runs Dovecot, which needs root (to switch to the mail user)")
	}
	u, err := user.Lookup("mail")
	if err != nil {
		return nil, fmt.Errorf("system user mail: %w", err)
	}
	d := &dovecot{dir: base, exited: make(chan struct{})}
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
	ports, err := freePorts(2)
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
	out, err := os.Create(filepath.Join(base, "dovecot.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	d.cmd = exec.Command(bin, "-F", "-c", conf)
	d.cmd.Stdout, d.cmd.Stderr = out, out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	for _, a := range []struct{ addr, ok string }{{d.imapAddr, "* OK"}, {d.pop3Addr, "+OK"}} {
		if a.addr == "" {
			continue
		}
		if err := waitGreeting(a.addr, a.ok, d.exited); err != nil {
			d.stop()
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

// stop ends the master and the session processes in its group.
func (d *dovecot) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	pid := d.cmd.Process.Pid
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
	syscall.Kill(-pid, syscall.SIGTERM)
}

func waitGreeting(addr, ok string, exited <-chan struct{}) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return errors.New("dovecot exited")
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(3 * time.Second))
			r := bufio.NewReader(c)
			for {
				line, rerr := r.ReadString('\n')
				if rerr != nil {
					err = rerr
					break
				}
				if strings.Contains(line, "Waiting for authentication") {
					continue
				}
				if strings.HasPrefix(line, ok) {
					c.Close()
					return nil
				}
				err = fmt.Errorf("greeting %q", line)
				break
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready: %v", addr, err)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
