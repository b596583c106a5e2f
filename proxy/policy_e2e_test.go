package proxy

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/internal/dovecottest"
	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/memimap"
	"github.com/popbridge/popbridge/internal/pop3test"
	"github.com/popbridge/popbridge/proxy/config"
)

// startDovecotWith is startDovecotUpstream with extra Dovecot settings.
func startDovecotWith(t *testing.T, extra string) *upstream {
	d := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"alice": "secret"}, ExtraConfig: extra})
	u := &upstream{name: "dovecot", addr: d.IMAPAddr, user: "alice", pass: "secret"}
	u.deliver = func(t *testing.T, raw []byte) { d.Deliver(t, "alice", raw) }
	u.dial = func(t *testing.T) *imapclient.Client { return dialIMAP(t, u) }
	return u
}

// Dovecot settings for the trash tests.
const (
	// dovecotTrashSpecialUse names the \Trash mailbox "Deleted Items".
	dovecotTrashSpecialUse = `
namespace inbox {
  inbox = yes
  separator = /
  mailbox "Deleted Items" {
    special_use = \Trash
    auto = create
  }
}
`
	dovecotNoMove    = "imap_capability = IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE UIDPLUS\n"
	dovecotNoUIDPlus = "imap_capability = IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE\n"
)

func uidsOf(msgs []upstreamMessage) []imap.UID {
	var uids []imap.UID
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	return uids
}

func bodiesOf(msgs []upstreamMessage) []string {
	var b []string
	for _, m := range msgs {
		b = append(b, string(m.Body))
	}
	slices.Sort(b)
	return b
}

// Every delete policy: the session itself no longer lists the deleted
// messages (RFC 1939 section 5, DELE), and after QUIT an independent
// IMAP client sees exactly the policy's effect.
func TestDeletePoliciesLeaveTheExpectedUpstreamState(t *testing.T) {
	for _, policy := range imapback.DeletePolicies {
		t.Run(string(policy), func(t *testing.T) {
			forEachUpstream(t, func(t *testing.T, u *upstream) {
				deliverN(t, u, 3)
				before := upstreamState(t, u)
				addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) { c.Policy.Delete = policy }}).addr
				c := pop3test.Dial(t, addr)
				c.Login(u.user, u.pass)
				uidl := c.Multi("UIDL")
				c.OK("DELE 1")
				c.OK("DELE 3")
				if n, size := c.Stat(); n != 1 || size != before[1].Size {
					t.Errorf("STAT after DELE = %d %d, want 1 %d", n, size, before[1].Size)
				}
				if got, want := string(c.Multi("LIST")), fmt.Sprintf("2 %d\r\n", before[1].Size); got != want {
					t.Errorf("LIST after DELE = %q, want %q", got, want)
				}
				if got, want := string(c.Multi("UIDL")), strings.Split(string(uidl), "\r\n")[1]+"\r\n"; got != want {
					t.Errorf("UIDL after DELE = %q, want %q", got, want)
				}
				for _, cmd := range []string{"RETR 1", "TOP 3 0", "LIST 1", "UIDL 3", "DELE 1"} {
					if resp := c.Cmd(cmd); !strings.HasPrefix(resp, "-ERR") {
						t.Errorf("%s on a deleted message: %q, want -ERR", cmd, resp)
					}
				}
				if resp := c.Quit(); !strings.HasPrefix(resp, "+OK") {
					t.Fatalf("QUIT: %s", resp)
				}

				after := upstreamState(t, u)
				trash := mailboxState(t, u, u.trashFolder())
				switch policy {
				case "expunge", "trash":
					if got := uidsOf(after); !slices.Equal(got, []imap.UID{before[1].UID}) {
						t.Errorf("INBOX UIDs %v, want only %d", got, before[1].UID)
					}
				case "flag", "keep":
					if got := uidsOf(after); !slices.Equal(got, uidsOf(before)) {
						t.Fatalf("INBOX UIDs %v, want all of %v", got, uidsOf(before))
					}
					for i, m := range after {
						want := policy == "flag" && i != 1
						if got := hasFlag(m.Flags, imap.FlagDeleted); got != want {
							t.Errorf("UID %d \\Deleted = %v, want %v", m.UID, got, want)
						}
					}
				}
				if policy == "trash" {
					if got, want := bodiesOf(trash), bodiesOf([]upstreamMessage{before[0], before[2]}); !slices.Equal(got, want) {
						t.Errorf("Trash holds %d messages, want the 2 deleted ones intact", len(trash))
					}
				} else if trash != nil {
					t.Errorf("policy %s put %d messages in Trash", policy, len(trash))
				}
			})
		})
	}
}

// A session that drops instead of QUIT changes nothing upstream, whatever
// the policy: no \Seen (seen=quit), no move, no keyword.
func TestDroppedSessionChangesNothingUnderAnyPolicy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delete imapback.DeletePolicy
		device string
	}{
		{"trash", "trash", ""},
		{"flag", "flag", ""},
		{"device view", "expunge", "#laptop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachUpstream(t, func(t *testing.T, u *upstream) {
				deliverN(t, u, 2)
				before := upstreamState(t, u)
				addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) {
					c.Policy.Seen = "quit"
					c.Policy.Delete = tc.delete
					c.Policy.Devices.Separator = "#"
				}}).addr
				c := pop3test.Dial(t, addr)
				c.Login(u.user+tc.device, u.pass)
				c.Multi("RETR 1")
				c.OK("DELE 1")
				c.OK("DELE 2")
				c.Conn.Close()

				// A later session proves the dropped one ended.
				c2 := pop3test.Dial(t, addr)
				c2.Login(u.user+tc.device, u.pass)
				if n, _ := c2.Stat(); n != 2 {
					t.Errorf("STAT after the dropped session: %d, want 2", n)
				}
				c2.Quit()
				after := upstreamState(t, u)
				if len(after) != len(before) {
					t.Fatalf("%d messages after a dropped session, want %d", len(after), len(before))
				}
				for i := range after {
					if !slices.Equal(after[i].Flags, before[i].Flags) {
						t.Errorf("UID %d flags %v after a dropped session, were %v", after[i].UID, after[i].Flags, before[i].Flags)
					}
				}
				if trash := mailboxState(t, u, u.trashFolder()); trash != nil {
					t.Errorf("a dropped session moved %d messages to Trash", len(trash))
				}
			})
		})
	}
}

func TestSeenQuitMarksRetrievedMailAtQuit(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 3)
		addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) { c.Policy.Seen = "quit" }}).addr
		c := pop3test.Dial(t, addr)
		c.Login(u.user, u.pass)
		c.Multi("RETR 2")
		c.Multi("TOP 3 0")
		c.OK("NOOP")
		for _, m := range upstreamState(t, u) {
			if hasFlag(m.Flags, imap.FlagSeen) {
				t.Errorf("seen=quit: UID %d \\Seen before QUIT", m.UID)
			}
		}
		c.Quit()
		for i, m := range upstreamState(t, u) {
			if got := hasFlag(m.Flags, imap.FlagSeen); got != (i == 1) {
				t.Errorf("after QUIT: UID %d \\Seen = %v, want %v", m.UID, got, i == 1)
			}
		}
	})
}

// Trash on real Dovecot configurations: the \Trash special-use mailbox
// under another name, and servers without MOVE or without UIDPLUS.
func TestTrashOnDovecotVariants(t *testing.T) {
	for _, tc := range []struct {
		name, extra, folder string
		expunged            bool
	}{
		{"special-use Deleted Items", dovecotTrashSpecialUse, "Deleted Items", true},
		{"no MOVE", dovecotNoMove, imapback.DefaultTrashFolder, true},
		{"neither MOVE nor UIDPLUS", dovecotNoUIDPlus, imapback.DefaultTrashFolder, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := startDovecotWith(t, tc.extra)
			deliverN(t, u, 3)
			// Another client's \Deleted mail stays whatever happens.
			other := u.dial(t)
			if caps := other.Caps(); caps.Has(imap.CapMove) == (tc.extra != dovecotTrashSpecialUse) ||
				caps.Has(imap.CapUIDPlus) != tc.expunged {
				t.Fatalf("Dovecot capabilities %v do not fit the case", caps)
			}
			if err := other.Store(imap.SeqSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			other.Close()
			before := upstreamState(t, u)
			addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) { c.Policy.Delete = "trash" }}).addr
			c := pop3test.Dial(t, addr)
			c.Login(u.user, u.pass)
			c.OK("DELE 1")
			c.OK("DELE 2")
			if resp := c.Quit(); !strings.HasPrefix(resp, "+OK") {
				t.Fatalf("QUIT: %s", resp)
			}
			trash := mailboxState(t, u, tc.folder)
			if got, want := bodiesOf(trash), bodiesOf(before[:2]); !slices.Equal(got, want) {
				t.Errorf("%s holds %d messages, want the 2 deleted ones", tc.folder, len(trash))
			}
			if tc.folder != imapback.DefaultTrashFolder && mailboxState(t, u, imapback.DefaultTrashFolder) != nil {
				t.Errorf("a Trash folder was created next to the special-use one")
			}
			after := upstreamState(t, u)
			if !slices.Contains(uidsOf(after), before[2].UID) {
				t.Errorf("another client's \\Deleted message was expunged")
			}
			if tc.expunged {
				if got := uidsOf(after); !slices.Equal(got, []imap.UID{before[2].UID}) {
					t.Errorf("INBOX UIDs %v, want %d", got, before[2].UID)
				}
				return
			}
			// Without UID EXPUNGE the originals stay, flagged \Deleted.
			if len(after) != 3 {
				t.Fatalf("INBOX has %d messages, want 3 (no UID EXPUNGE without UIDPLUS)", len(after))
			}
			for _, m := range after {
				if !hasFlag(m.Flags, imap.FlagDeleted) {
					t.Errorf("UID %d not flagged \\Deleted", m.UID)
				}
			}
		})
	}
}

func TestDeviceViewsShareOneMailbox(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 3)
		addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) {
			c.Policy.Devices.Separator = "#"
			c.Policy.Devices.Known = []string{"laptop", "scanner"}
		}}).addr
		plainUIDL := func() []string {
			c := pop3test.Dial(t, addr)
			c.Login(u.user, u.pass)
			defer c.Quit()
			return strings.SplitAfter(string(c.Multi("UIDL")), "\r\n")
		}
		all := plainUIDL()

		laptop := pop3test.Dial(t, addr)
		laptop.Login(u.user+"#Laptop", u.pass) // device names fold case
		if got := strings.SplitAfter(string(laptop.Multi("UIDL")), "\r\n"); !slices.Equal(got, all) {
			t.Errorf("laptop UIDL %q, want %q", got, all)
		}
		for i := 1; i <= 3; i++ {
			laptop.Multi(fmt.Sprintf("RETR %d", i))
			laptop.OK(fmt.Sprintf("DELE %d", i))
		}
		if resp := laptop.Quit(); !strings.HasPrefix(resp, "+OK") {
			t.Fatalf("QUIT: %s", resp)
		}
		for _, m := range upstreamState(t, u) {
			if !hasFlag(m.Flags, imapback.DeviceKeyword("laptop")) || hasFlag(m.Flags, imap.FlagDeleted) {
				t.Errorf("UID %d after the laptop deleted it: %v, want its keyword and no \\Deleted", m.UID, m.Flags)
			}
		}

		u.deliver(t, testMessage(4, "new\r\n"))
		all = plainUIDL()
		if len(all) != 5 { // four lines and the empty tail
			t.Fatalf("plain UIDL %q, want 4 messages", all)
		}
		laptop = pop3test.Dial(t, addr)
		laptop.Login(u.user+"#laptop", u.pass)
		// Same UIDL as in every other view: message 1 of this view is
		// message 4 of the mailbox.
		if got, want := string(laptop.Multi("UIDL")), "1 "+strings.SplitN(all[3], " ", 2)[1]; got != want {
			t.Errorf("laptop UIDL after new mail %q, want %q", got, want)
		}
		laptop.Quit()

		scanner := pop3test.Dial(t, addr)
		scanner.Login(u.user+"#scanner", u.pass)
		if got := strings.SplitAfter(string(scanner.Multi("UIDL")), "\r\n"); !slices.Equal(got, all) {
			t.Errorf("scanner UIDL %q, want %q", got, all)
		}
		scanner.Quit()

		for _, bad := range []string{u.user + "#phone", u.user + "#bad device", u.user + "#"} {
			c := pop3test.Dial(t, addr)
			c.OK("USER " + bad)
			if resp := c.Cmd("PASS " + u.pass); !strings.HasPrefix(resp, "-ERR [AUTH]") {
				t.Errorf("login as %q: %q, want -ERR [AUTH]", bad, resp)
			}
			c.Quit()
		}
	})
}

func TestDeviceDeletesRemoveMailOnceEveryKnownDeviceDeletedIt(t *testing.T) {
	forEachUpstream(t, func(t *testing.T, u *upstream) {
		deliverN(t, u, 3)
		before := upstreamState(t, u)
		addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) {
			c.Policy.Delete = "trash"
			c.Policy.Devices.Separator = "+"
			c.Policy.Devices.Known = []string{"laptop", "scanner"}
			c.Policy.Devices.DeleteWhenAllDeleted = true
		}}).addr
		dele := func(device string, msgs ...int) {
			c := pop3test.Dial(t, addr)
			c.Login(u.user+"+"+device, u.pass)
			for _, n := range msgs {
				c.OK(fmt.Sprintf("DELE %d", n))
			}
			if resp := c.Quit(); !strings.HasPrefix(resp, "+OK") {
				t.Fatalf("QUIT: %s", resp)
			}
		}
		dele("laptop", 1, 2)
		if n := len(upstreamState(t, u)); n != 3 {
			t.Fatalf("one device's deletes removed mail: %d messages left", n)
		}
		dele("scanner", 2, 3) // the scanner's view still has all three
		if got := uidsOf(upstreamState(t, u)); !slices.Equal(got, []imap.UID{before[0].UID, before[2].UID}) {
			t.Errorf("INBOX UIDs %v, want %d and %d", got, before[0].UID, before[2].UID)
		}
		if got := bodiesOf(mailboxState(t, u, u.trashFolder())); !slices.Equal(got, bodiesOf(before[1:2])) {
			t.Errorf("Trash holds %d messages, want the one both devices deleted", len(got))
		}
	})
}

// Policies by client address, listener and user: a device named by the
// client's address, and rules that override the defaults.
func TestPolicyRulesAndAddressDevices(t *testing.T) {
	u := startDovecotUpstream(t)
	deliverN(t, u, 2)
	zero := 0
	addrs := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) {
		c.Listen = append(c.Listen, config.ListenConfig{Address: "127.0.0.2:0"})
		c.Policy.Devices.Addresses = []config.DeviceAddress{{Network: "127.0.0.2", Device: "scanner"}}
		c.Policy.MaxAgeDays = 1
		c.Policy.Rules = []config.PolicyRule{
			{Users: []string{"al*"}, MaxAgeDays: &zero, Seen: "never"},
			{Listen: []string{"127.0.0.2:0"}, Delete: "keep"},
		}
	}}).addrs
	// Dovecot's internal dates are the delivery time, so max_age_days 1
	// would show both; the rule for al* sets it to 0 anyway, and seen
	// never: RETR leaves no \Seen.
	c := pop3test.Dial(t, addrs[0])
	c.Login(u.user, u.pass)
	c.Multi("RETR 1")
	c.OK("DELE 1")
	c.Quit()
	state := upstreamState(t, u)
	if len(state) != 1 || hasFlag(state[0].Flags, imap.FlagSeen) {
		t.Fatalf("after the first listener's session: %+v, want message 2 left, unseen", state)
	}

	// A client from 127.0.0.2 is the scanner, and the second listener's
	// rule keeps mail: the device keyword is set, nothing else.
	c = pop3test.DialFrom(t, "127.0.0.2", addrs[1])
	c.Login(u.user, u.pass)
	c.OK("DELE 1")
	c.Quit()
	state = upstreamState(t, u)
	if len(state) != 1 || !hasFlag(state[0].Flags, imapback.DeviceKeyword("scanner")) || hasFlag(state[0].Flags, imap.FlagDeleted) {
		t.Fatalf("after the scanner's session: %+v, want message 2 with the scanner keyword only", state)
	}
	// No device from 127.0.0.1 on the second listener: keep applies.
	c = pop3test.Dial(t, addrs[1])
	c.Login(u.user, u.pass)
	c.OK("DELE 1")
	c.Quit()
	state = upstreamState(t, u)
	if len(state) != 1 || hasFlag(state[0].Flags, imap.FlagDeleted) {
		t.Fatalf("after a session on the keep listener: %+v, want message 2 untouched", state)
	}
}

func TestMaxAgeShowsOnlyRecentMail(t *testing.T) {
	u := startMemUpstream(t)
	c := u.dial(t)
	for _, age := range []time.Duration{90 * 24 * time.Hour, 0} {
		raw := testMessage(int(age.Hours()), "body\r\n")
		cmd := c.Append("INBOX", int64(len(raw)), &imap.AppendOptions{Time: time.Now().Add(-age)})
		cmd.Write(raw)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	state := upstreamState(t, u)
	addr := startProxy(t, u.addr, proxyOptions{configure: func(c *config.Config) { c.Policy.MaxAgeDays = 30 }}).addr
	p := pop3test.Dial(t, addr)
	p.Login(u.user, u.pass)
	if got := p.Multi("RETR 1"); !bytes.Equal(got, state[1].Body) {
		t.Errorf("max_age_days 30: message 1 is %q, want the recent one", got)
	}
	if n, _ := p.Stat(); n != 1 {
		t.Errorf("max_age_days 30: %d messages, want 1", n)
	}
	p.Quit()
}

// An upstream that fails at any step of QUIT loses no mail: QUIT answers
// -ERR [SYS/TEMP], every message is still in INBOX or in Trash, and the
// next session can finish the job.
func TestUpstreamFailureDuringQuitLosesNothing(t *testing.T) {
	for _, tc := range []struct {
		name, extra   string
		delete        imapback.DeletePolicy
		seen          imapback.SeenPolicy
		device, cutAt string
	}{
		{"trash, before UID MOVE", "", "trash", "retr", "", "UID MOVE"},
		{"trash without MOVE, before UID COPY", dovecotNoMove, "trash", "retr", "", "UID COPY"},
		{"trash without MOVE, before UID EXPUNGE", dovecotNoMove, "trash", "retr", "", "UID EXPUNGE"},
		{"seen quit, before the \\Seen STORE", "", "expunge", "quit", "", "UID STORE"},
		{"device view, before the keyword STORE", "", "expunge", "retr", "#laptop", "UID STORE"},
		{"device view, before the keyword check", "", "expunge", "retr", "#laptop", "UID SEARCH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := startDovecotWith(t, tc.extra)
			deliverN(t, u, 3)
			before := upstreamState(t, u)
			relay := faultrelay.New(t, u.addr)
			addr := startProxy(t, relay.Addr, proxyOptions{configure: func(c *config.Config) {
				c.Policy.Delete = tc.delete
				c.Policy.Seen = tc.seen
				c.Policy.Devices.Separator = "#"
			}}).addr
			// The messages to delete, by UIDL: after a QUIT that failed
			// late, a device view may already hide them.
			var targets []string
			session := func(cut bool) string {
				c := pop3test.Dial(t, addr)
				c.Login(u.user+tc.device, u.pass)
				for _, line := range strings.Split(strings.TrimSpace(string(c.Multi("UIDL"))), "\r\n") {
					n, uidl, _ := strings.Cut(line, " ")
					if cut && len(targets) < 2 {
						targets = append(targets, uidl)
					}
					if slices.Contains(targets, uidl) {
						c.Multi("RETR " + n)
						c.OK("DELE " + n)
					}
				}
				if cut {
					relay.Arm(faultrelay.Fault{Dir: faultrelay.Up, Match: tc.cutAt, Action: faultrelay.Cut})
				}
				return c.Quit()
			}
			if resp := session(true); !strings.HasPrefix(resp, "-ERR [SYS/TEMP]") {
				t.Fatalf("QUIT with the upstream cut before %s: %q, want -ERR [SYS/TEMP]", tc.cutAt, resp)
			}
			all := append(upstreamState(t, u), mailboxState(t, u, imapback.DefaultTrashFolder)...)
			for _, m := range before {
				if !slices.ContainsFunc(all, func(x upstreamMessage) bool { return bytes.Equal(x.Body, m.Body) }) {
					t.Errorf("UID %d lost after a failed QUIT", m.UID)
				}
			}

			if resp := session(false); !strings.HasPrefix(resp, "+OK") {
				t.Fatalf("QUIT of the next session: %q", resp)
			}
			after := upstreamState(t, u)
			switch {
			case tc.device != "":
				for i, m := range after {
					if got := hasFlag(m.Flags, imapback.DeviceKeyword("laptop")); got != (i < 2) {
						t.Errorf("UID %d: keyword %v after the retry", m.UID, got)
					}
				}
			case tc.delete == "trash":
				if got := uidsOf(after); !slices.Equal(got, []imap.UID{before[2].UID}) {
					t.Errorf("INBOX after the retry %v, want %d", got, before[2].UID)
				}
				// The cut after COPY leaves a copy in Trash already, so the
				// retry may add a second one: duplicates, never a loss.
				trash := bodiesOf(mailboxState(t, u, imapback.DefaultTrashFolder))
				for _, m := range before[:2] {
					if !slices.Contains(trash, string(m.Body)) {
						t.Errorf("UID %d not in Trash after the retry", m.UID)
					}
				}
			default:
				if got := uidsOf(after); !slices.Equal(got, []imap.UID{before[2].UID}) {
					t.Errorf("INBOX after the retry %v, want %d", got, before[2].UID)
				}
			}
		})
	}
}

// A mailbox whose PERMANENTFLAGS do not allow new keywords cannot hold a
// device's deletes: the device login is refused with a clear answer, a
// login without a device still works.
func TestDeviceLoginRefusedWithoutPermanentKeywords(t *testing.T) {
	srv := listenMem(t, memimap.Options{NoKeywords: true})
	srv.AddUser("alice", "secret")
	addr := startProxy(t, srv.Addr, proxyOptions{configure: func(c *config.Config) { c.Policy.Devices.Separator = "#" }}).addr
	c := pop3test.Dial(t, addr)
	c.OK("USER alice#laptop")
	want := "-ERR [SYS/PERM] Mailbox cannot keep per-device state (no IMAP keywords); log in without a device"
	if resp := c.Cmd("PASS secret"); resp != want {
		t.Errorf("device login: %q, want %q", resp, want)
	}
	c.Quit()
	c = pop3test.Dial(t, addr)
	c.Login("alice", "secret")
	c.Quit()
}
