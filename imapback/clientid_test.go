package imapback

import "testing"

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
