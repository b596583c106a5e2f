package testkit

import (
	"bytes"
	"testing"
)

// LogWriter is an io.Writer that passes each write to t.Log, so that a
// server's log lines appear with the test that caused them.
type LogWriter struct{ T testing.TB }

func (w LogWriter) Write(p []byte) (int, error) {
	w.T.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
