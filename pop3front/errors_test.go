package pop3front

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestReply covers the one place where a handler's error becomes the
// client's answer and the observer's result.
func TestReply(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		bad    int // protocol errors before this one
		wire   string
		result string
		end    bool
	}{
		{"nil: the handler answered +OK", nil, 0, "", "ok", false},
		{"QUIT answered", errHangUp, 0, "", "ok", true},
		{"an *Error as it is", ErrInUse, 0, "-ERR [IN-USE] Mailbox is in use by another session\r\n", "err", false},
		{"a wrapped *Error", fmt.Errorf("ldap: %w", ErrAuthFailed), 0, "-ERR [AUTH] Authentication failed\r\n", "err", false},
		{"any other error, without its detail", errors.New("dial 10.0.0.1: secret"), 0,
			"-ERR [SYS/TEMP] Internal error, try again later\r\n", "err", false},
		{"a protocol error", badCommand("Unknown command"), 0, "-ERR Unknown command\r\n", "err", false},
		{"a protocol error with a code", protoError{ErrPlaintextRefused}, 0, "-ERR " + ErrPlaintextRefused.Error() + "\r\n", "err", false},
		{"one protocol error too many", badCommand("Unknown command"), maxBadCommands - 1,
			"-ERR Unknown command\r\n-ERR Too many bad commands, closing connection\r\n", "err", true},
		{"an answer, then the end", closeAfter(&Error{Text: "Bye"}), 0, "-ERR Bye\r\n", "err", true},
		{"an internal error, then the end", closeAfter(errors.New("secret")), 0,
			"-ERR [SYS/TEMP] Internal error, try again later\r\n", "err", true},
		{"the client is gone", abort(io.ErrClosedPipe), 0, "", "aborted", true},
		{"a cut transfer", abort(errTruncated), 0, "", "aborted", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wire strings.Builder
			c := &conn{log: discardLogger(), bw: bufio.NewWriter(&wire), bad: tc.bad}
			result, end := c.reply("NOOP", tc.err)
			c.bw.Flush()
			if wire.String() != tc.wire || result != tc.result || end != tc.end {
				t.Errorf("reply(%v) wrote %q, %s, end %v; want %q, %s, end %v", tc.err, wire.String(), result, end,
					tc.wire, tc.result, tc.end)
			}
		})
	}
}

// TestEndReasonOfAFailedWrite: a write that timed out and one that failed
// because the client left end the session for different reasons.
func TestEndReasonOfAFailedWrite(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("write tcp: %w", os.ErrDeadlineExceeded), endWriteTimeout},
		{syscall.EPIPE, endClientClosed},
		{errTruncated, endUpstreamFailed},
	} {
		c := &conn{log: discardLogger(), bw: bufio.NewWriter(io.Discard)}
		if result, end := c.reply("RETR", abort(tc.err)); result != "aborted" || !end || c.why != tc.want {
			t.Errorf("reply(abort(%v)) = %s, end %v, why %q; want aborted, end, %q", tc.err, result, end, c.why, tc.want)
		}
	}
}
