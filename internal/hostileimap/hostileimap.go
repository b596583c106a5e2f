// Package hostileimap is an IMAP server for tests that plays a hostile or
// broken upstream: it answers a login and SELECT, and the responses that
// matter are whatever the test scripts, however large or wrong, streamed
// without being held in memory.
//
// Each connection runs in a goroutine of its own that reads one command
// line at a time and writes the answer; a script runs in that goroutine.
// Close (registered with t.Cleanup by Start) closes the listener and every
// connection and waits for those goroutines, so tests that check for
// leaked goroutines can use it.
package hostileimap

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testkit"
)

// Script says how the server misbehaves. Each function writes untagged
// responses (or anything else) with w; the server then completes the
// command with "tag OK", unless the connection broke meanwhile.
type Script struct {
	// Caps is the capability list of the greeting and of CAPABILITY
	// (default "IMAP4rev1 AUTH=PLAIN UIDPLUS").
	Caps string
	// Select answers SELECT and EXAMINE. Nil: one message, UIDVALIDITY 1.
	Select func(w *Writer)
	// Fetch answers FETCH and UID FETCH; args is the command line after
	// the command's name. Nil: nothing but the OK.
	Fetch func(w *Writer, args string)
	// Other answers any other command (LOGIN, NOOP, SEARCH, STORE,
	// LIST, ...); name is upper case. Nil: nothing but the OK.
	Other func(w *Writer, name, args string)
}

// Server is a running hostile IMAP server on 127.0.0.1.
type Server struct {
	// Addr is the address the server listens on.
	Addr string

	sc   Script
	conn *testkit.ConnServer
}

// connTimeout bounds each connection, so that a test whose client stops
// reading cannot hang.
const connTimeout = 60 * time.Second

// Start listens on 127.0.0.1:0 and serves sc until the test ends.
func Start(t testing.TB, sc Script) *Server {
	t.Helper()
	if sc.Caps == "" {
		sc.Caps = "IMAP4rev1 AUTH=PLAIN UIDPLUS"
	}
	s := &Server{sc: sc}
	var err error
	if s.conn, err = testkit.ServeConns(connTimeout, s.serve); err != nil {
		t.Fatal(err)
	}
	s.Addr = s.conn.Addr
	t.Cleanup(s.Close)
	return s
}

// Close stops the server and waits for its goroutines.
func (s *Server) Close() { s.conn.Close() }

// serve answers the commands of one connection.
func (s *Server) serve(nc net.Conn) {
	r := bufio.NewReader(nc)
	w := &Writer{bw: bufio.NewWriterSize(nc, 64<<10)}
	w.Line("* OK [CAPABILITY %s] hostile server ready", s.sc.Caps)
	w.flush()
	for w.err == nil {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		w.Tag = tag
		name, args, _ := strings.Cut(rest, " ")
		name = strings.ToUpper(name)
		if name == "UID" {
			sub, subArgs, _ := strings.Cut(args, " ")
			name, args = strings.ToUpper(sub), subArgs
		}
		switch name {
		case "CAPABILITY":
			w.Line("* CAPABILITY %s", s.sc.Caps)
		case "AUTHENTICATE":
			if !strings.Contains(args, " ") { // no initial response
				w.Line("+ ")
				w.flush()
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
			}
		case "SELECT", "EXAMINE":
			if s.sc.Select != nil {
				s.sc.Select(w)
			} else {
				w.Line("* 1 EXISTS")
				w.Line("* OK [UIDVALIDITY 1] ok")
				w.Line(`* OK [PERMANENTFLAGS (\Seen \Deleted \*)] ok`)
			}
		case "FETCH":
			if s.sc.Fetch != nil {
				s.sc.Fetch(w, args)
			}
		case "LOGOUT":
			w.Line("* BYE hostile server logging out")
		default:
			if s.sc.Other != nil {
				s.sc.Other(w, name, args)
			}
		}
		w.Line("%s OK %s done", tag, name)
		w.flush()
		if name == "LOGOUT" {
			return
		}
	}
}

// Writer writes a script's responses. After a failed write (the client
// closed the connection, as it should on a response past its bounds)
// every method does nothing, and Err says why: a script that writes in a
// loop checks it to stop early.
type Writer struct {
	// Tag is the tag of the command being answered, for responses that
	// name it (ESEARCH's correlator).
	Tag string
	bw  *bufio.Writer
	err error
}

// Line writes a formatted line and its CRLF.
func (w *Writer) Line(format string, args ...any) {
	w.Printf(format, args...)
	w.Printf("\r\n")
}

// Printf writes formatted text without a line end, e.g. the start of a
// response that a literal continues.
func (w *Writer) Printf(format string, args ...any) {
	if w.err == nil {
		_, w.err = fmt.Fprintf(w.bw, format, args...)
	}
}

// Literal writes a literal of n octets: "{n}" CRLF, then lines of "x"
// ending in CRLF (the last one perhaps cut short), made on the fly.
func (w *Writer) Literal(n int64) {
	w.Printf("{%d}\r\n", n)
	w.Filler(n)
}

// Filler writes n octets of the filler Literal sends, e.g. a body that
// differs from the size announced for it.
func (w *Writer) Filler(n int64) {
	for n > 0 && w.err == nil {
		k := min(n, int64(len(filler)))
		_, w.err = w.bw.Write(filler[:k])
		n -= k
	}
}

// filler is 32 KiB of 78 "x" and CRLF per line.
var filler = func() []byte {
	line := strings.Repeat("x", 78) + "\r\n"
	return []byte(strings.Repeat(line, 32<<10/len(line)+1)[:32<<10])
}()

// Err returns the error of the first failed write, or nil.
func (w *Writer) Err() error { return w.err }

func (w *Writer) flush() {
	if w.err == nil {
		w.err = w.bw.Flush()
	}
}
