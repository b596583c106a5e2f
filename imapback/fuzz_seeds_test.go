package imapback

// The seed corpus of FuzzUpstreamSession: Dovecot-like transcripts and
// the hostile answers of issue 15, as scripts for the fake upstream
// (fuzz_fake_test.go: segments separated by NUL, each a command kind on
// its first line and the reply after it).

import "strings"

type upstreamSeed struct {
	mode          uint32
	sizes, script string
}

const (
	seedMax16   = 15 << modeMaxShift
	seedDelete0 = 1 << modeDeleteMask
	seedDelete2 = 4 << modeDeleteMask
	seedWarm    = seedMax16 | modeCache
	seedWarmE   = seedWarm | modeESearch
	// The three messages of the cache seeds: UIDs 4, 7 and 10.
	seedThree = "\x0a\x14\x64"
	// A cold %m snapshot of two messages (UIDs 4 and 7, 21 and 41
	// octets), its headers in its FETCH of the sizes.
	seedHead  = seedMax16 | 2 | seedDelete0
	seedTwo   = "\x0a\x14"
	seedSnap  = "SNAPSHOT\n"
	seedFirst = "* 1 FETCH (UID 4 RFC822.SIZE 21 BODY[HEADER] {*}Subject: m0\r\nX: y\r\n\r\n\x01)\r\n"
	seedOK    = "$T OK Fetch completed.\r\n"
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
	// TOP (lines 0) of a message larger than a range: its header and
	// size in one FETCH, after a RETR abandoned early.
	{seedMax16 | 1 | modeTop | modeEarlyClose | modeFlagOnly | modeNoop | seedDelete0, "00", ""},
	// A cached mailbox, everything the default: ESEARCH ranges, and a
	// plain SEARCH with %g identities from the cache.
	{seedWarmE | seedDelete0, seedThree, ""},
	{seedWarm | 1 | seedDelete2, seedThree, ""},
	// New mail: a SEARCH naming a UID above the cached ones, and its size
	// from the FETCH sent with it.
	{seedWarmE | 2, seedThree, "SEARCH\n* ESEARCH (TAG \"$T\") UID ALL 4,7,10:11\r\n$T OK Search completed.\r\n\x00" +
		"SIZES\n* 4 FETCH (UID 11 RFC822.SIZE 5)\r\n$T OK Fetch completed.\r\n"},
	// Every UID there is, and a range written backwards.
	{seedWarmE, seedThree, "SEARCH\n* ESEARCH (TAG \"$T\") UID ALL 1:4294967295\r\n$T OK Search completed.\r\n"},
	{seedWarmE, seedThree, "SEARCH\n* ESEARCH (TAG \"$T\") UID ALL 10:4\r\n$T OK Search completed.\r\n"},
	// MIN, MAX and COUNT without ALL, as if RETURN () had been asked.
	{seedWarmE, seedThree, "SEARCH\n* ESEARCH (TAG \"$T\") UID MIN 4 MAX 10 COUNT 3\r\n$T OK Search completed.\r\n"},
	// A plain SEARCH out of order, with a UID twice, and with UIDs above
	// UIDNEXT that no FETCH answers.
	{seedWarm, seedThree, "SEARCH\n* SEARCH 10 4 7\r\n$T OK Search completed.\r\n"},
	{seedWarm, seedThree, "SEARCH\n* SEARCH 4 7 7 10\r\n$T OK Search completed.\r\n"},
	{seedWarmE, seedThree, "SEARCH\n* ESEARCH (TAG \"$T\") UID ALL 4:7,7,10\r\n$T OK Search completed.\r\n"},
	{seedWarm, seedThree, "SEARCH\n* SEARCH 4 7 10 150 4294967295\r\n$T OK Search completed.\r\n"},
	// An empty answer, plain and ESEARCH, and one that names a dynamic set.
	{seedWarm, seedThree, "SEARCH\n$T OK Search completed.\r\n"},
	{seedWarmE, seedThree, "SEARCH\n* ESEARCH (TAG \"$T\") UID\r\n$T OK Search completed.\r\n"},
	{seedWarmE, seedThree, "SEARCH\n* ESEARCH (TAG \"$T\") UID ALL 4:*\r\n$T OK Search completed.\r\n"},
	// An answer correlated to another tag, one with none, and one with
	// "ALL" inside its tag.
	{seedWarmE, seedThree, "SEARCH\n* ESEARCH (TAG \"X99\") UID ALL 4:10\r\n$T OK Search completed.\r\n"},
	{seedWarmE, seedThree, "SEARCH\n* ESEARCH UID ALL 4,7\r\n$T OK Search completed.\r\n"},
	{seedWarmE, seedThree, "SEARCH\n* ESEARCH (TAG \"ALL 1:9\") UID ALL 4\r\n$T OK Search completed.\r\n"},
	// A SEARCH refused, the connection gone in its middle, an EXPUNGE
	// within its answer, and a SELECT with another UIDVALIDITY.
	{seedWarm | modeReconnect, seedThree, "SEARCH\n$T NO [SERVERBUG] Internal error.\r\n"},
	{seedWarmE | modeReconnect, seedThree, "SEARCH\n* ESEARCH (TAG \"$T\") UID ALL 4,7\r\n* BYE Disconnected.\r\n"},
	{seedWarm | seedDelete0, seedThree, "SEARCH\n* SEARCH 4 7 10\r\n* 2 EXPUNGE\r\n$T OK Search completed.\r\n"},
	{seedWarmE | seedDelete0, seedThree, "SELECT\n* 3 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n$T OK [READ-WRITE] Select completed.\r\n"},
	// %m: headers other than the messages', answered in the snapshot's
	// FETCH, the second header quoted, an empty one, and one with lines
	// that are not header lines.
	{seedHead, seedTwo, seedSnap + "* 1 FETCH (UID 4 RFC822.SIZE 21 BODY[HEADER] {*}Subject: other\r\n\r\n\x01)\r\n" +
		"* 2 FETCH (UID 7 RFC822.SIZE 41 BODY[HEADER] \"Subject: quoted\")\r\n" + seedOK},
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41 BODY[HEADER] {0}\r\n)\r\n" + seedOK},
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41 BODY[HEADER] {*}no colon\r\n\tX: \x7f\xff?\r\nA:\r\r\n\r\n\x01)\r\n" + seedOK},
	// A header NIL, then fetched on its own; NIL there too (the default
	// format); and a header missing from the answer.
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41 BODY[HEADER] NIL)\r\n" + seedOK},
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41 BODY[HEADER] NIL)\r\n" + seedOK +
		"\x00HEADERS\n* 2 FETCH (UID 7 BODY[HEADER] NIL)\r\n" + seedOK},
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41)\r\n" + seedOK},
	// The header missing from the snapshot's answer, fetched on its own
	// and answered as a string, with its UID after it, with two headers,
	// and cut short.
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41)\r\n" + seedOK +
		"\x00HEADERS\n* 2 FETCH (UID 7 BODY[HEADER] \"Subject: quoted\")\r\n" + seedOK},
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41)\r\n" + seedOK +
		"\x00HEADERS\n* 2 FETCH (BODY[HEADER] {*}Subject: late\r\n\r\n\x01 UID 7)\r\n" + seedOK},
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41)\r\n" + seedOK +
		"\x00HEADERS\n* 2 FETCH (UID 7 BODY[HEADER] {*}A: 1\r\n\r\n\x01 BODY[HEADER] {*}B: 2\r\n\r\n\x01)\r\n" + seedOK},
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41)\r\n" + seedOK +
		"\x00HEADERS\n* 2 FETCH (UID 7 BODY[HEADER] {90}\r\nSubject: m1\r\n)\r\n" + seedOK},
	// A header beyond the literal bound (512 octets).
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41 BODY[HEADER] {*}X: " + strings.Repeat("y", 600) + "\r\n\r\n\x01)\r\n" + seedOK},
	// Items and responses out of order: the header first, the second
	// message first, the default answers header first.
	{seedHead, seedTwo, seedSnap + "* 2 FETCH (BODY[HEADER] {*}Subject: two\r\n\r\n\x01 RFC822.SIZE 41 UID 7)\r\n" +
		"* 1 FETCH (RFC822.SIZE 21 BODY[HEADER] {*}Subject: one\r\n\r\n\x01 UID 4)\r\n" + seedOK},
	{seedHead | modeHeadFirst, "\x0a\x14\x30", ""},
	// A header announced longer than sent: the literal swallows the
	// completion, and the FETCH times out (a bug:
	// TestUpstreamSnapshotHeaderCutShort).
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41 BODY[HEADER] {200}\r\nSubject: m1\r\n)\r\n" + seedOK},
	// Another section where the header was asked for (a bug:
	// TestUpstreamSnapshotHashesOnlyTheHeader), and two headers for one
	// message.
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41 BODY[TEXT] {*}Subject: text\r\n\r\n\x01)\r\n" + seedOK},
	{seedHead, seedTwo, seedSnap + seedFirst + "* 2 FETCH (UID 7 RFC822.SIZE 41 BODY[HEADER] {*}A: 1\r\n\r\n\x01 BODY[HEADER] {*}B: 2\r\n\r\n\x01)\r\n" + seedOK},
}
