package pop3front

import (
	"errors"
	"strings"
	"testing"
)

// exchange is what a client sends and the exact bytes it gets back.
type exchange struct{ send, want string }

// alice is the fake backend's login that dialLogin performs.
var alice = []string{"alice/secret"}

// TestConversations runs one client connection per case against the fake
// backend: exact wire bytes, then, once the session has ended, everything
// the backend was asked to do.
func TestConversations(t *testing.T) {
	const (
		loggedIn   = "+OK Send your password\r\n+OK Logged in, 3 messages\r\n"
		authFailed = "-ERR [AUTH] Authentication failed\r\n"
		bye        = "+OK Logging out\r\n"
		unknown    = "-ERR Unknown command\r\n"
		retr2      = "+OK 22 octets\r\nSubject: two\r\n\r\n..dot\r\n.\r\n"
		gone2      = "-ERR Message 2 was removed by another client\r\n"
		unavail    = "-ERR [SYS/TEMP] Mail server temporarily unavailable, try again later\r\n"
		internal   = "-ERR [SYS/TEMP] Internal error, try again later\r\n"
	)
	quit := exchange{"QUIT\r\n", bye}
	for _, tc := range []struct {
		name  string
		setup func(*fakeBackend)
		login string     // "": start in AUTHORIZATION; else the message count the login announces
		steps []exchange // each answered, the connection staying open
		end   exchange   // answered, then the server closes; zero: the client hangs up
		want  fakeState
	}{
		{name: "QUIT before login", end: quit},
		{name: "password with spaces reaches the backend intact",
			setup: func(b *fakeBackend) { b.pass = " correct horse  battery staple " },
			steps: []exchange{{"USER alice\r\nPASS  correct horse  battery staple \r\n", loggedIn}},
			want:  fakeState{Logins: []string{"alice/ correct horse  battery staple "}, Closes: 1}},
		{name: "AUTH PLAIN password keeps spaces and UTF-8",
			setup: func(b *fakeBackend) { b.pass = " p a s s é " },
			steps: []exchange{{"AUTH PLAIN " + plain("", "alice", " p a s s é ") + "\r\n", "+OK Logged in, 3 messages\r\n"}},
			want:  fakeState{Logins: []string{"alice/ p a s s é "}, Closes: 1}},
		{name: "PASS before USER, and a failed PASS forgets the user",
			steps: []exchange{
				{"PASS secret\r\n", "-ERR Send USER first\r\n"},
				{"USER alice\r\nPASS wrong\r\nPASS secret\r\n", "+OK Send your password\r\n" + authFailed + "-ERR Send USER first\r\n"},
				{"USER\r\n", "-ERR USER needs a user name\r\n"},
			},
			want: fakeState{Logins: []string{"alice/wrong"}}},
		{name: "three failed logins close the connection",
			steps: []exchange{
				{"USER alice\r\nPASS one\r\n", "+OK Send your password\r\n" + authFailed},
				{"AUTH PLAIN " + plain("", "alice", "two") + "\r\n", authFailed},
			},
			end:  exchange{"USER alice\r\nPASS three\r\n", "+OK Send your password\r\n" + authFailed},
			want: fakeState{Logins: []string{"alice/one", "alice/two", "alice/three"}}},
		{name: "login errors other than AUTH do not close the connection",
			setup: func(b *fakeBackend) { b.loginErr = ErrUnavailable },
			steps: []exchange{{strings.Repeat("USER alice\r\nPASS secret\r\n", 5), strings.Repeat("+OK Send your password\r\n"+unavail, 5)}},
			end:   quit,
			want:  fakeState{Logins: []string{"alice/secret", "alice/secret", "alice/secret", "alice/secret", "alice/secret"}}},
		{name: "AUTH PLAIN continuation with bare LF",
			steps: []exchange{{"AUTH PLAIN\n" + plain("", "alice", "secret") + "\n", "+ \r\n+OK Logged in, 3 messages\r\n"}},
			want:  fakeState{Logins: alice, Closes: 1}},
		{name: "commands are case-insensitive, user names and passwords are not",
			steps: []exchange{
				{"capa\r\n", capaCommon + capaAuth + capaImpl},
				{"user alice\r\npAsS secret\r\n", loggedIn},
				{"stat\r\nList 1\r\nuidl 2\r\nnoop\r\ntop 2 0\r\nretr 1\r\ndele 3\r\nrset\r\n",
					"+OK 3 68\r\n+OK 1 23\r\n+OK 2 uid-two\r\n+OK\r\n+OK Top of message follows\r\nSubject: two\r\n\r\n.\r\n" +
						"+OK 23 octets\r\n" + body1 + ".\r\n+OK Message 3 deleted\r\n+OK 3 messages\r\n"},
			},
			end: exchange{"dele 1\r\nQuIt\r\n", "+OK Message 1 deleted\r\n+OK Logging out, 1 messages deleted\r\n"},
			want: fakeState{Logins: alice, Retrieves: []retrieveCall{{1, 0}, {0, -1}}, Retrieved: []int{0}, Noops: 1,
				Commits: [][]int{{0}}, Closes: 1}},
		{name: "bare LF line ends",
			steps: []exchange{
				{"USER alice\nPASS secret\n", loggedIn},
				{"STAT\nLIST 2\r\nUIDL 3\n", "+OK 3 68\r\n+OK 2 22\r\n+OK 3 uid-three\r\n"},
				{"AUTH\n", "-ERR Command not valid after login\r\n"},
			},
			end:  exchange{"QUIT\n", bye},
			want: fakeState{Logins: alice, Commits: [][]int{nil}, Closes: 1}},
		{name: "unknown commands before login",
			steps: []exchange{{"XYZZY\r\n", unknown}, {"\r\n", unknown}, {" STAT\r\n", unknown}, {"STLS\r\n", unknown}},
			end:   quit},
		{name: "unknown commands after login", login: "3",
			steps: []exchange{{"XYZZY\r\n", unknown}, {"\r\n", unknown}, {" STAT\r\n", unknown}, {"STLS\r\n", unknown}},
			end:   quit,
			want:  fakeState{Logins: alice, Commits: [][]int{nil}, Closes: 1}},
		{name: "empty maildrop", setup: func(b *fakeBackend) { b.withBodies() }, login: "0",
			steps: []exchange{{"STAT\r\nLIST\r\nUIDL\r\nLIST 1\r\nRETR 1\r\n",
				"+OK 0 0\r\n+OK 0 messages\r\n.\r\n+OK Unique-ID listing follows\r\n.\r\n-ERR No such message\r\n-ERR No such message\r\n"}},
			want: fakeState{Logins: alice, Closes: 1}},
		{name: "RETR arguments", login: "3",
			steps: []exchange{
				{"RETR\r\n", "-ERR Invalid message number\r\n"},
				{"RETR 0\r\n", "-ERR No such message\r\n"},
				{"RETR 4\r\n", "-ERR No such message\r\n"},
				{"RETR 1 2\r\n", "-ERR Invalid message number\r\n"},
				{"RETR 2\r\n", retr2},
			},
			want: fakeState{Logins: alice, Retrieves: []retrieveCall{{1, -1}}, Retrieved: []int{1}, Closes: 1}},
		{name: "DELE twice, and RSET restores", login: "3",
			steps: []exchange{
				{"DELE 1\r\n", "+OK Message 1 deleted\r\n"},
				{"DELE 1\r\n", "-ERR Message 1 already deleted\r\n"},
				{"RETR 1\r\n", "-ERR Message 1 already deleted\r\n"},
				{"TOP 1 0\r\n", "-ERR Message 1 already deleted\r\n"},
				{"DELE 3\r\nSTAT\r\n", "+OK Message 3 deleted\r\n+OK 1 22\r\n"},
				{"DELE 0\r\nDELE 4\r\nDELE\r\nDELE x\r\n",
					"-ERR No such message\r\n-ERR No such message\r\n-ERR Invalid message number\r\n-ERR Invalid message number\r\n"},
				{"RSET\r\n", "+OK 3 messages\r\n"},
				{"STAT\r\nLIST\r\n", "+OK 3 68\r\n+OK 3 messages\r\n1 23\r\n2 22\r\n3 23\r\n.\r\n"},
				{"RSET x\r\n", "-ERR RSET takes no arguments\r\n"},
				{"DELE 2\r\n", "+OK Message 2 deleted\r\n"},
			},
			end:  exchange{"QUIT\r\n", "+OK Logging out, 1 messages deleted\r\n"},
			want: fakeState{Logins: alice, Commits: [][]int{{1}}, Closes: 1}},
		{name: "NOOP calls the backend", login: "3",
			steps: []exchange{{"NOOP\r\nNOOP\r\n", "+OK\r\n+OK\r\n"}, {"NOOP x\r\n", "-ERR NOOP takes no arguments\r\n"}},
			want:  fakeState{Logins: alice, Noops: 2, Closes: 1}},
		{name: "NOOP error with a response code", login: "3",
			setup: func(b *fakeBackend) { b.noopErr = ErrUnavailable },
			steps: []exchange{{"NOOP\r\n", unavail}, {"STAT\r\n", "+OK 3 68\r\n"}},
			want:  fakeState{Logins: alice, Noops: 1, Closes: 1}},
		{name: "NOOP error without a response code", login: "3",
			setup: func(b *fakeBackend) { b.noopErr = errors.New("secret detail") },
			steps: []exchange{{"NOOP\r\n", internal}, {"STAT\r\n", "+OK 3 68\r\n"}},
			want:  fakeState{Logins: alice, Noops: 1, Closes: 1}},
		{name: "QUIT commits nothing", login: "3", end: quit,
			want: fakeState{Logins: alice, Commits: [][]int{nil}, Closes: 1}},
		{name: "QUIT commits one", login: "3",
			end:  exchange{"DELE 2\r\nQUIT\r\n", "+OK Message 2 deleted\r\n+OK Logging out, 1 messages deleted\r\n"},
			want: fakeState{Logins: alice, Commits: [][]int{{1}}, Closes: 1}},
		{name: "QUIT commits in message order", login: "3",
			end:  exchange{"DELE 3\r\nDELE 1\r\nQUIT\r\n", "+OK Message 3 deleted\r\n+OK Message 1 deleted\r\n+OK Logging out, 2 messages deleted\r\n"},
			want: fakeState{Logins: alice, Commits: [][]int{{0, 2}}, Closes: 1}},
		{name: "QUIT commits what RSET left", login: "3",
			end: exchange{"DELE 3\r\nRSET\r\nDELE 1\r\nQUIT\r\n",
				"+OK Message 3 deleted\r\n+OK 3 messages\r\n+OK Message 1 deleted\r\n+OK Logging out, 1 messages deleted\r\n"},
			want: fakeState{Logins: alice, Commits: [][]int{{0}}, Closes: 1}},
		{name: "QUIT with an argument is rejected", login: "3",
			steps: []exchange{{"DELE 1\r\nQUIT now\r\n", "+OK Message 1 deleted\r\n-ERR QUIT takes no arguments\r\n"}, {"STAT\r\n", "+OK 2 45\r\n"}},
			want:  fakeState{Logins: alice, Closes: 1}},
		{name: "commit failure answers SYS/TEMP", login: "3",
			setup: func(b *fakeBackend) { b.commitErr = errors.New("imap: EXPUNGE failed") },
			end: exchange{"DELE 1\r\nQUIT\r\n",
				"+OK Message 1 deleted\r\n-ERR [SYS/TEMP] Some deleted messages not removed, try again later\r\n"},
			want: fakeState{Logins: alice, Commits: [][]int{{0}}, Closes: 1}},
		{name: "a connection closed without QUIT commits nothing", login: "3",
			steps: []exchange{{"DELE 1\r\nRETR 2\r\n", "+OK Message 1 deleted\r\n" + retr2}},
			want:  fakeState{Logins: alice, Retrieves: []retrieveCall{{1, -1}}, Retrieved: []int{1}, Closes: 1}},
		{name: "bad commands after login close the connection without commit", login: "3",
			steps: []exchange{
				// Answers that name no message are not protocol errors.
				{strings.Repeat("LIST 9\r\n", 12), strings.Repeat("-ERR No such message\r\n", 12)},
				{"DELE 1\r\n", "+OK Message 1 deleted\r\n"},
			},
			end: exchange{strings.Repeat("LIST x\r\n", 10) + "QUIT\r\n",
				strings.Repeat("-ERR Invalid message number\r\n", 10) + "-ERR Too many bad commands, closing connection\r\n"},
			want: fakeState{Logins: alice, Closes: 1}},
		{name: "Retrieved only after the whole message", login: "3",
			setup: func(b *fakeBackend) { b.failAfter = map[int]int{2: 10} },
			steps: []exchange{
				{"TOP 1 0\r\nTOP 2 5\r\n", "+OK Top of message follows\r\nSubject: one\r\n\r\n.\r\n" +
					"+OK Top of message follows\r\nSubject: two\r\n\r\n..dot\r\n.\r\n"},
				{"RETR 2\r\n", retr2},
			},
			end: exchange{"RETR 3\r\n", "+OK 23 octets\r\nSubject: t"},
			want: fakeState{Logins: alice, Retrieves: []retrieveCall{{0, 0}, {1, 5}, {1, -1}, {2, -1}}, Retrieved: []int{1},
				Closes: 1}},
		{name: "a failure after TOP's cut is harmless, one before it closes", login: "1",
			setup: func(b *fakeBackend) {
				b.withBodies("S: x\r\n\r\nl1\r\nl2\r\n")
				b.failAfter = map[int]int{0: 12} // after "l1\r\n"
			},
			steps: []exchange{{"TOP 1 1\r\n", "+OK Top of message follows\r\nS: x\r\n\r\nl1\r\n.\r\n"}},
			end:   exchange{"TOP 1 2\r\nSTAT\r\n", "+OK Top of message follows\r\nS: x\r\n\r\nl1\r\n"},
			want:  fakeState{Logins: alice, Retrieves: []retrieveCall{{0, 1}, {0, 2}}, Closes: 1}},
		{name: "a message expunged by another client", login: "3",
			setup: func(b *fakeBackend) { b.expunge(1) },
			steps: []exchange{
				{"RETR 2\r\n", gone2},
				{"TOP 2 0\r\n", gone2},
				{"DELE 2\r\n", gone2},
				// The snapshot does not change and the session goes on.
				{"STAT\r\nUIDL 2\r\n", "+OK 3 68\r\n+OK 2 uid-two\r\n"},
				{"RETR 1\r\n", "+OK 23 octets\r\n" + body1 + ".\r\n"},
			},
			end:  quit,
			want: fakeState{Logins: alice, Retrieves: []retrieveCall{{0, -1}}, Retrieved: []int{0}, Commits: [][]int{nil}, Closes: 1}},
		{name: "Retrieve answers ErrNoMessage", login: "3",
			setup: func(b *fakeBackend) { b.noMessage = map[int]bool{0: true} },
			steps: []exchange{{"RETR 1\r\nTOP 1 0\r\nSTAT\r\n",
				strings.Repeat("-ERR Message 1 was removed by another client\r\n", 2) + "+OK 3 68\r\n"}},
			want: fakeState{Logins: alice, Retrieves: []retrieveCall{{0, -1}, {0, 0}}, Closes: 1}},
		{name: "Retrieve error with a response code", login: "3",
			setup: func(b *fakeBackend) { b.retrieveErr = ErrUnavailable },
			steps: []exchange{{"RETR 1\r\nTOP 1 0\r\nSTAT\r\n", unavail + unavail + "+OK 3 68\r\n"}},
			want:  fakeState{Logins: alice, Retrieves: []retrieveCall{{0, -1}, {0, 0}}, Closes: 1}},
		{name: "Retrieve error without a response code", login: "3",
			setup: func(b *fakeBackend) { b.retrieveErr = errors.New("fetch: secret detail") },
			steps: []exchange{{"RETR 1\r\nTOP 1 0\r\nSTAT\r\n", internal + internal + "+OK 3 68\r\n"}},
			want:  fakeState{Logins: alice, Retrieves: []retrieveCall{{0, -1}, {0, 0}}, Closes: 1}},
		{name: "LAST follows RETR, not TOP or DELE, and RSET sets it to 0", login: "3",
			steps: []exchange{
				{"LAST\r\n", "+OK 0\r\n"},
				{"RETR 2\r\nLAST\r\n", retr2 + "+OK 2\r\n"},
				{"TOP 3 0\r\nDELE 3\r\nLAST\r\n", "+OK Top of message follows\r\nSubject: three\r\n\r\n.\r\n" +
					"+OK Message 3 deleted\r\n+OK 2\r\n"},
				{"RETR 1\r\nLAST\r\n", "+OK 23 octets\r\n" + body1 + ".\r\n+OK 2\r\n"},
				{"RSET\r\nLAST\r\n", "+OK 3 messages\r\n+OK 0\r\n"},
				{"last x\r\n", "-ERR LAST takes no arguments\r\n"},
			},
			want: fakeState{Logins: alice, Retrieves: []retrieveCall{{1, -1}, {2, 0}, {0, -1}}, Retrieved: []int{1, 0}, Closes: 1}},
		{name: "LAST starts at the highest message seen before the session", login: "3",
			setup: func(b *fakeBackend) { b.seen = map[int]bool{0: true, 1: true} },
			steps: []exchange{{"LAST\r\n", "+OK 2\r\n"}, {"RSET\r\nLAST\r\n", "+OK 3 messages\r\n+OK 0\r\n"}},
			want:  fakeState{Logins: alice, Closes: 1}},
		{name: "QUIT under a keep policy says the messages stay", login: "3",
			setup: func(b *fakeBackend) { b.policy = "keep" },
			end: exchange{"DELE 1\r\nDELE 2\r\nQUIT\r\n",
				"+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n+OK Logging out, 2 messages kept on the server\r\n"},
			want: fakeState{Logins: alice, Commits: [][]int{{0, 1}}, Closes: 1}},
		{name: "QUIT under a flag policy says the messages are only marked", login: "3",
			setup: func(b *fakeBackend) { b.policy = "flag" },
			end: exchange{"DELE 3\r\nQUIT\r\n",
				"+OK Message 3 deleted\r\n+OK Logging out, 1 messages marked deleted on the server\r\n"},
			want: fakeState{Logins: alice, Commits: [][]int{{2}}, Closes: 1}},
		{name: "a partial line does not hold back answers", login: "3",
			// A client may send the start of its next command before it
			// reads the answer to the previous one.
			steps: []exchange{{"NOOP\r\nNO", "+OK\r\n"}, {"OP\r\n", "+OK\r\n"}},
			want:  fakeState{Logins: alice, Noops: 2, Closes: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend()
			if tc.setup != nil {
				tc.setup(fb)
			}
			ts := startServer(t, fb)
			var c *client
			if tc.login != "" {
				c = dialLogin(t, ts, tc.login)
			} else {
				c = dial(t, ts)
			}
			for _, e := range tc.steps {
				c.expect(e.send, e.want)
			}
			if tc.end.send != "" {
				c.expectClosed(tc.end.send, tc.end.want)
			} else {
				c.nc.Close()
			}
			ts.expectBackend(t, tc.want)
		})
	}
}
