package benchrig

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/popbridge/popbridge/internal/dovecotconf"

	"github.com/popbridge/popbridge/internal/proctest"
)

// dovecot is a private Dovecot instance for the benchmark, laid out and
// configured as internal/dovecottest's test instances are (dovecotconf),
// without *testing.T. It is either the mail store (IMAP and native POP3
// over one maildir per user) or, with gateway set, Dovecot's POP3-over-IMAP
// proxy: a pop3 service with imapc storage in front of the store's IMAP.
type dovecot struct {
	*dovecotconf.Instance
	imapAddr string // "" for the gateway
	pop3Addr string
	proc     *proctest.Process
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
	ports, err := proctest.FreePorts(2)
	if err != nil {
		return nil, err
	}
	inst, err := dovecotconf.New(base, fmt.Sprintf("popbench-%d", ports[1]), benchConnLimit)
	if err != nil {
		return nil, err
	}
	if err := inst.Layout(users); err != nil {
		return nil, err
	}
	d := &dovecot{Instance: inst, pop3Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))}
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
			log, _ := os.ReadFile(d.LogPath())
			return nil, fmt.Errorf("dovecot in %s: %w\n%s", base, err, log)
		}
	}
	return d, nil
}

func (d *dovecot) config(imapPort, pop3Port int, gateway string) string {
	conf := d.Settings() + "auth_mechanisms = plain login\n" + dovecotconf.Listener("pop3", pop3Port)
	if gateway == "" {
		return conf + fmt.Sprintf(`protocols = imap pop3
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %s
}
`, d.UsersPath()) + d.UserDB() + dovecotconf.Listener("imap", imapPort)
	}
	// The gateway checks the user's password by logging in upstream and
	// passes it on to imapc.
	host, port, _ := net.SplitHostPort(gateway)
	return conf + fmt.Sprintf(`protocols = pop3
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
`, d.Dir, host, port)
}

// deliver writes a message straight into the user's maildir cur/, as
// already seen by Dovecot's first sync (":2,"), which is faster than
// new/ for large corpora. Names sort in delivery order, so UIDs do too.
func (d *dovecot) deliver(user string, raw []byte) error {
	d.seq++
	name := fmt.Sprintf("1700000000.Q%09d.popbench:2,", d.seq)
	path := filepath.Join(d.Maildir(user, "cur"), name)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return err
	}
	return os.Chown(path, d.MailUID, d.MailGID)
}
