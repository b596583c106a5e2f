package imapback

import (
	"net"
	"testing"
)

func TestCapsHaveID(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN] Dovecot ready.\r\n", true},
		{"* CAPABILITY IMAP4rev1 IDLE id\r\n", true},
		{"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n", false},
		{"* OK IMAP server ready\r\n", false},
		{"* CAPABILITY IMAP4rev2 IDLE AUTH=PLAIN\r\n", false},
		{"* OK [CAPABILITY IMAP4rev1] ID is mentioned only in the text\r\n", false},
	} {
		if got := capsHaveID([]byte(tc.line)); got != tc.want {
			t.Errorf("capsHaveID(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

// The greeting replayed to go-imap is served whole, split as the reads
// ask, and then let go: the session does not keep it while idle.
func TestReplayConnLetsTheGreetingGo(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &replayConn{Conn: a, pending: []byte("* OK ready\r\n")}
	var got []byte
	buf := make([]byte, 5)
	for len(got) < len("* OK ready\r\n") {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "* OK ready\r\n" || c.pending != nil {
		t.Errorf("read %q, pending %v afterwards; want the greeting, then nil", got, c.pending)
	}
}
