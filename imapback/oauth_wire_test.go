package imapback

// OAuth2 logins against scripted servers, byte for byte: the SASL
// exchanges of XOAUTH2 and OAUTHBEARER, refused and accepted, with and
// without SASL-IR and over STARTTLS, and the encoding of the user name.

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// scriptedAuthServer accepts one connection, greets with caps and then
// plays steps: each reads one client line and checks it (a command's tag
// replaced by "TAG") before sending reply (where TAG stands for the tag
// of the last command). done receives the first mismatch, or nil.
// After the reply to "TAG STARTTLS" the server switches to TLS with
// serverTLS.
type scriptStep struct{ want, reply string }

// The steps are made from the server's port, which OAUTHBEARER sends.
func scriptedAuthServer(t *testing.T, greeting string, script func(port string) []scriptStep, serverTLS *tls.Config) (addr string, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	steps := script(fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	result := make(chan error, 1)
	go func() {
		result <- func() error {
			var nc net.Conn
			nc, err := ln.Accept()
			if err != nil {
				return err
			}
			defer func() { nc.Close() }()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(nc)
			fmt.Fprint(nc, greeting)
			tag := ""
			for i, st := range steps {
				line, err := r.ReadString('\n')
				if err != nil {
					return fmt.Errorf("step %d: reading: %v", i, err)
				}
				if strings.HasPrefix(st.want, "TAG ") {
					tag, _, _ = strings.Cut(line, " ")
				}
				if got := strings.Replace(line, tag+" ", "TAG ", 1); got != st.want {
					return fmt.Errorf("step %d: client sent %q, want %q", i, got, st.want)
				}
				fmt.Fprint(nc, strings.ReplaceAll(st.reply, "TAG", tag))
				if st.want == "TAG STARTTLS\r\n" && serverTLS != nil {
					if r.Buffered() > 0 {
						return fmt.Errorf("step %d: client sent data after STARTTLS before the handshake", i)
					}
					tc := tls.Server(nc, serverTLS)
					if err := tc.Handshake(); err != nil {
						return fmt.Errorf("step %d: TLS handshake: %v", i, err)
					}
					nc = tc
					r = bufio.NewReader(tc)
				}
			}
			// The client closes the connection after a failed login.
			if line, err := r.ReadString('\n'); err == nil {
				return fmt.Errorf("client sent %q after the script", line)
			}
			return nil
		}()
	}()
	return ln.Addr().String(), result
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestXOAuth2ExchangeOnTheWire(t *testing.T) {
	t.Parallel()
	const tok = "at-secret-token"
	challenge := b64(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`)
	ir := b64("user=alice@example.com\x01auth=Bearer " + tok + "\x01\x01")
	cases := []struct {
		name     string
		greeting string
		auth     AuthMechanism
		steps    func(port string) []scriptStep
		wantErr  error
		wantText string
	}{
		{
			name:     "xoauth2 refused with SASL-IR",
			greeting: "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] hi\r\n",
			steps: func(port string) []scriptStep {
				return []scriptStep{
					{"TAG AUTHENTICATE XOAUTH2 " + ir + "\r\n", "+ " + challenge + "\r\n"},
					// The empty response is an empty line, not "=".
					{"\r\n", "TAG NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"},
				}
			},
			wantErr:  ErrAuthFailed,
			wantText: `XOAUTH2 error status "401", scope "https://mail.google.com/"`,
		},
		{
			name:     "xoauth2 refused without SASL-IR",
			greeting: "* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] hi\r\n",
			steps: func(port string) []scriptStep {
				return []scriptStep{
					{"TAG AUTHENTICATE XOAUTH2\r\n", "+ \r\n"},
					{ir + "\r\n", "+ " + challenge + "\r\n"},
					{"\r\n", "TAG NO Invalid credentials\r\n"},
				}
			},
			wantErr:  ErrAuthFailed,
			wantText: `status "401"`,
		},
		{
			// A server may say NO at once, without a challenge (Microsoft 365
			// is reported to answer "NO AUTHENTICATE failed.").
			name:     "xoauth2 refused without a challenge",
			greeting: "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2] hi\r\n",
			steps: func(port string) []scriptStep {
				return []scriptStep{
					{"TAG AUTHENTICATE XOAUTH2 " + ir + "\r\n", "TAG NO AUTHENTICATE failed.\r\n"},
				}
			},
			wantErr:  ErrAuthFailed,
			wantText: "AUTHENTICATE failed",
		},
		{
			name:     "xoauth2 accepted",
			greeting: "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] hi\r\n",
			steps: func(port string) []scriptStep {
				return []scriptStep{
					{"TAG AUTHENTICATE XOAUTH2 " + ir + "\r\n", "TAG OK [CAPABILITY IMAP4rev1 UIDPLUS] Thats all she wrote!\r\n"},
					// The login is done; the mailbox fails on purpose to end the script.
					{"TAG SELECT INBOX\r\n", "TAG NO [NONEXISTENT] no such mailbox\r\n"},
					// The snapshot's FETCH comes right behind the SELECT.
					{"TAG UID FETCH 1:* (UID RFC822.SIZE)\r\n", "TAG BAD No mailbox selected\r\n"},
				}
			},
			wantErr: ErrMailbox,
		},
		{
			name:     "oauthbearer refused",
			greeting: "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] hi\r\n",
			steps: func(port string) []scriptStep {
				return []scriptStep{
					{"TAG AUTHENTICATE OAUTHBEARER " + b64("n,a=alice@example.com,\x01host=127.0.0.1\x01port="+port+"\x01auth=Bearer "+tok+"\x01\x01") + "\r\n",
						"+ " + b64(`{"status":"invalid_token","schemes":"bearer"}`) + "\r\n"},
					// RFC 7628 §3.2.3: the dummy response is 0x01.
					{"AQ==\r\n", "TAG NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"},
				}
			},
			wantErr:  ErrAuthFailed,
			wantText: `OAUTHBEARER error status "invalid_token"`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			addr, done := scriptedAuthServer(t, c.greeting, c.steps, nil)
			_, err := loginToken(oauthBackend(t, addr, AuthAuto), "alice@example.com", fixedToken(tok, nil))
			if !errors.Is(err, c.wantErr) {
				t.Errorf("error %v, want %v", err, c.wantErr)
			}
			if err != nil && (!strings.Contains(err.Error(), c.wantText) || strings.Contains(err.Error(), tok)) {
				t.Errorf("error %q: want it to contain %q and not the token", err, c.wantText)
			}
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
}

// Over STARTTLS the error exchange must end with an empty line too, so
// the session does STARTTLS itself instead of leaving it to go-imap.
func TestXOAuth2ErrorExchangeOverSTARTTLS(t *testing.T) {
	t.Parallel()
	const tok = "at-secret-token"
	serverTLS, clientTLS := testkit.SelfSignedTLS(t)
	addr, done := scriptedAuthServer(t, "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n", func(string) []scriptStep {
		return []scriptStep{
			{want: "TAG STARTTLS\r\n", reply: "TAG OK Begin TLS negotiation now\r\n"},
			// The capabilities before STARTTLS are void (RFC 9051 §6.2.1).
			{want: "TAG CAPABILITY\r\n", reply: "* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2\r\nTAG OK done\r\n"},
			{want: "TAG AUTHENTICATE XOAUTH2 " + b64("user=alice\x01auth=Bearer "+tok+"\x01\x01") + "\r\n",
				reply: "+ " + b64(`{"status":"400","schemes":"Bearer"}`) + "\r\n"},
			{want: "\r\n", reply: "TAG NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"},
		}
	}, serverTLS)
	b := newBackend(t, Options{Address: addr, TLS: TLSStartTLS, TLSConfig: clientTLS})
	_, err := loginToken(b, "alice", fixedToken(tok, nil))
	if !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), `status "400"`) || strings.Contains(err.Error(), tok) {
		t.Errorf("error %v, want ErrAuthFailed with the status and without the token", err)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// The error challenge comes from the server: whatever it holds, the
// status and scope that reach error texts are short and printable.
func FuzzParseFailure(f *testing.F) {
	f.Add([]byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`))
	f.Add([]byte(`{"status":"invalid_token"}`))
	f.Add([]byte(`{"status":"` + strings.Repeat("x", 300) + "\r\n\x00\"}"))
	f.Add([]byte(`not json`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, challenge []byte) {
		fail := parseFailure(challenge)
		for _, s := range []string{fail.Status, fail.Scope} {
			if len(s) > 103 {
				t.Errorf("%d bytes kept from the challenge", len(s))
			}
			for _, c := range []byte(s) {
				if c < 0x20 || c > 0x7e {
					t.Errorf("unprintable byte %#x kept in %q", c, s)
				}
			}
		}
		if fail.Status == "" {
			t.Error("empty status")
		}
	})
}

func TestTokenClientsEncodeTheUserName(t *testing.T) {
	s := &Session{b: &Backend{opts: Options{Address: "imap.example.com:993"}}}
	for _, c := range []struct {
		mech, user, want string
	}{
		{mechXOAuth2, "a=b,c@example.com", "user=a=b,c@example.com\x01auth=Bearer T\x01\x01"},
		{mechOAuthBearer, "a=b,c@example.com", "n,a=a=3Db=2Cc@example.com,\x01host=imap.example.com\x01port=993\x01auth=Bearer T\x01\x01"},
	} {
		sc, err := s.tokenClient(c.mech, c.user, "T")
		if err != nil {
			t.Fatal(err)
		}
		mech, ir, err := sc.Start()
		if err != nil || mech != c.mech || string(ir) != c.want {
			t.Errorf("%s: %s %q %v, want %q", c.mech, mech, ir, err, c.want)
		}
	}
	for _, mech := range []string{mechXOAuth2, mechOAuthBearer} {
		for _, user := range []string{"alice\x01auth=Bearer x", "alice\r\n"} {
			if _, err := s.tokenClient(mech, user, "T"); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("%s with user %q: %v, want ErrAuthFailed", mech, user, err)
			}
		}
	}
}
