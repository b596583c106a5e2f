package pop3front

import (
	"fmt"
	"strings"
	"testing"
)

// A pipelined sequence of RETR and TOP commands, with commands that fail
// between them, is answered byte for byte as it would be one command at
// a time, and each Retrieve is told the RETRs and TOPs queued behind it
// that can succeed: not the message that does not exist, not the bad
// TOP, nothing after QUIT. A message deleted in the pipeline is still
// named (the DELE had not run when the session looked), and its RETR
// answers -ERR without a Retrieve.
func TestPipelinedRetrievalsAreAnnounced(t *testing.T) {
	fb := newFakeBackend()
	ts := startServer(t, fb)
	c := dialLogin(t, ts, "3")
	c.expectClosed("RETR 1\r\nTOP 2 0\r\nRETR 9\r\nXYZZY\r\nDELE 3\r\nRETR 3\r\nTOP 1 x\r\nRETR 2\r\nQUIT\r\nRETR 1\r\n",
		"+OK 23 octets\r\n"+body1+".\r\n"+
			"+OK Top of message follows\r\nSubject: two\r\n\r\n.\r\n"+
			"-ERR No such message\r\n"+
			"-ERR Unknown command\r\n"+
			"+OK Message 3 deleted\r\n"+
			"-ERR Message 3 already deleted\r\n"+
			"-ERR Invalid line count\r\n"+
			"+OK 22 octets\r\nSubject: two\r\n\r\n..dot\r\n.\r\n"+
			"+OK Logging out, 1 messages deleted\r\n")
	ts.waitSessions(t)
	want := [][]retrieveCall{
		{{1, 0}, {2, -1}, {1, -1}},
		{{2, -1}, {1, -1}},
		nil,
	}
	if got := fb.upcomingCalls(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("upcoming requests seen by each Retrieve: %v, want %v", got, want)
	}
	if got := fb.retrieveCalls(); fmt.Sprint(got) != "[{0 -1} {1 0} {1 -1}]" {
		t.Errorf("Retrieve calls: %v", got)
	}
}

// A message another client removed answers -ERR in the middle of the
// pipeline, and the commands behind it run as if it had been alone.
func TestPipelinedRetrievalOfRemovedMessage(t *testing.T) {
	fb := newFakeBackend()
	fb.noMessage = map[int]bool{1: true}
	ts := startServer(t, fb)
	c := dialLogin(t, ts, "3")
	c.expect("RETR 1\r\nRETR 2\r\nTOP 3 1\r\nRETR 3\r\n",
		"+OK 23 octets\r\n"+body1+".\r\n"+
			"-ERR Message 2 was removed by another client\r\n"+
			"+OK Top of message follows\r\n"+body3+".\r\n"+
			"+OK 23 octets\r\n"+body3+".\r\n")
	c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	ts.waitSessions(t)
	want := [][]retrieveCall{{{1, -1}, {2, 1}, {2, -1}}, {{2, 1}, {2, -1}}, {{2, -1}}, nil}
	if got := fb.upcomingCalls(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("upcoming requests seen by each Retrieve: %v, want %v", got, want)
	}
	if got := fb.retrievedCalls(); fmt.Sprint(got) != "[0 2]" {
		t.Errorf("Retrieved calls: %v, want [0 2]", got)
	}
}

// Commands beyond what the line reader holds are still in the socket's
// buffer: they are announced too, the reader's partial last line joined
// to its rest.
func TestPipelinedRetrievalsBeyondTheLineBufferAreAnnounced(t *testing.T) {
	fb := newFakeBackend()
	ts := startServer(t, fb)
	c := dialLogin(t, ts, "3")
	// 8 + 169*6 + 2 octets fill the reader's buffer (maxAuthLine): the
	// last NOOP is cut after "NO".
	noops := strings.Repeat("NOOP\r\n", 170)
	c.expect("RETR 1\r\n"+noops+"RETR 2\r\nTOP 3 1\r\n",
		"+OK 23 octets\r\n"+body1+".\r\n"+strings.Repeat("+OK\r\n", 170)+
			"+OK 22 octets\r\nSubject: two\r\n\r\n..dot\r\n.\r\n"+
			"+OK Top of message follows\r\n"+body3+".\r\n")
	c.expectClosed("QUIT\r\n", "+OK Logging out\r\n")
	ts.waitSessions(t)
	if got := fb.upcomingCalls(); fmt.Sprint(got[0]) != "[{1 -1} {2 1}]" {
		t.Errorf("the first Retrieve was told of %v, want [{1 -1} {2 1}]", got[0])
	}
}
