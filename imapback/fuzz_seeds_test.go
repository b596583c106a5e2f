package imapback

// The seed corpus of FuzzUpstreamSession: Dovecot-like transcripts and
// the hostile answers of issue 15, as scripts for the fake upstream
// (fuzz_fake_test.go: segments separated by NUL, each a command kind on
// its first line and the reply after it).

type upstreamSeed struct {
	mode          uint32
	sizes, script string
}

const (
	seedMax16   = 15 << modeMaxShift
	seedDelete0 = 1 << modeDeleteMask
	seedDelete2 = 4 << modeDeleteMask
)

var upstreamSeeds = []upstreamSeed{
	// Every answer the default: small messages from batches, one of
	// several ranges.
	{seedMax16 | seedDelete0 | seedDelete2, "\x0a\x14\x64", ""},
	// Dovecot's own wording, a flag change in the SELECT and one in the
	// middle of a batch, identities for %g.
	{seedMax16 | 1 | seedDelete2, "\x10\x28\x12",
		"GREETING\n* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ UIDPLUS] Dovecot (Debian) ready.\r\n\x00" +
			"SELECT\n$D* 2 FETCH (FLAGS (\\Seen))\r\n$T OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n\x00" +
			"SIZES\n* 1 FETCH (UID 4 RFC822.SIZE 33)\r\n* 2 FETCH (UID 7 RFC822.SIZE 81)\r\n* 3 FETCH (UID 10 RFC822.SIZE 37)\r\n$T OK Fetch completed (0.001 + 0.000 secs).\r\n\x00" +
			"IDS\n* 1 FETCH (UID 4 X-GUID 0c2b1a2bd4c7fb65d9250000a8be2e34)\r\n* 2 FETCH (UID 7 X-GUID 0d2b1a2bd4c7fb65d9250000a8be2e34)\r\n* 3 FETCH (UID 10 X-GUID 0e2b1a2bd4c7fb65d9250000a8be2e34)\r\n$T OK Fetch completed.\r\n\x00" +
			"BATCH\n* 1 FETCH (UID 4 FLAGS (\\Seen))\r\n$D$T OK Fetch completed (0.001 + 0.000 secs).\r\n"},
	// A body shorter than its RFC822.SIZE (as Exchange serves some),
	// checked with NOOP and a FLAGS fetch.
	{seedMax16 | modeReverse | seedDelete0, "\x50\x08",
		"BODY\n* 1 FETCH (UID $U BODY[]<$O> {*}Subject: m0\r\nX: y\r\n\r\nshort\r\n\x01)\r\n$T OK Fetch completed.\r\n"},
	// Issue 15's two lines.
	{seedMax16, "\x05", "SELECT\n* 50000000 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n$T OK done\r\n\x00" +
		"SIZES\n* 50000000 FETCH (UID 1 RFC822.SIZE 10)\r\n$T OK done\r\n"},
	// Dovecot's answer to a range of a message expunged during the
	// transfer: NIL, EXPUNGEISSUED, then the EXPUNGE.
	{seedMax16 | modeReverse | modeNoAhead | seedDelete0, "\x60\x70",
		"BODY\n$D$T OK Fetch completed.\r\n\x00" +
			"BODY\n* 2 FETCH (UID $U BODY[]<$O> NIL)\r\n$T OK [EXPUNGEISSUED] Some of the requested messages no longer exist.\r\n* 2 EXPUNGE\r\n"},
	// More FETCH answers than EXISTS announced, past MaxMessages.
	{2<<modeMaxShift | modeLowExists, "\x01\x02\x03\x04\x05", ""},
	// An idle upstream hangs up in the middle of a range; the session
	// reconnects for the next command.
	{seedMax16 | modeReconnect | modeReverse | seedDelete0, "\x40\x40",
		"BODY\n* BYE Disconnected for inactivity.\r\n"},
	// %m header hashes, TOP, and a transfer abandoned early.
	{seedMax16 | 2 | modeTop | modeEarlyClose | modeNoop | seedDelete0, "\x30\x08\x40", ""},
	// QUIT whose STORE fails: nothing may be expunged.
	{seedMax16 | seedDelete0 | seedDelete2, "\x03\x04\x05", "STORE\n$T OK Store completed.\r\n\x00STORE\n$T OK\r\n\x00" +
		"STORE\n$T NO [SERVERBUG] Internal error occurred.\r\n"},
	// A literal cut short: the connection ends in the middle of a body.
	{seedMax16 | modeReverse | seedDelete0, "\x50", "BODY\n* 1 FETCH (UID $U BODY[]<$O> {64}\r\nSubject: m0\r\n"},
	// Another client's EXPUNGE in the middle of a batch, and a body for a
	// UID nobody asked for.
	{seedMax16 | seedDelete0, "\x08\x09\x0a",
		"BATCH\n* 1 FETCH (UID 4 BODY[] {*}Subject: m0\r\nX: y\r\n\x01)\r\n* 9 FETCH (UID 99 BODY[] {*}not yours\x01)\r\n* 2 EXPUNGE\r\n$T OK Fetch completed.\r\n"},
}
