package popbench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"
)

// readBufferSize is the client's read buffer. Lines longer than this are
// handled in pieces, so it bounds nothing but syscall counts.
const readBufferSize = 64 << 10

// session is one POP3 session of a run.
type session struct {
	r    *runner
	rec  *recorder
	user Credentials
	rng  *rand.Rand

	nc net.Conn
	br *bufio.Reader
	cr countingReader
	h  hash.Hash

	count int
	size  int64
	sizes []int64  // LIST, by message number - 1
	uidls []string // UIDL, by message number - 1
	got   map[Digest]int
}

// op is one command of a profile and how to check its answer.
type op struct {
	name string // for the latency table: RETR, TOP, ...
	line string // the command line, without CRLF
	msg  int    // message number for RETR/TOP, else 0
}

func (s *session) run(ctx context.Context) error {
	opts := &s.r.opts
	start := time.Now()
	d := net.Dialer{Timeout: opts.Timeout}
	nc, err := d.DialContext(ctx, "tcp", opts.Addr)
	if err != nil {
		return err
	}
	s.nc = nc
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	s.cr = countingReader{nc: nc, timeout: opts.Timeout}
	s.br = bufio.NewReaderSize(&s.cr, readBufferSize)
	s.h = sha256.New()
	defer func() { s.rec.bytes += s.cr.n }()

	if _, err := s.status("greeting"); err != nil {
		return err
	}
	s.rec.observe("connect", time.Since(start))

	login := []op{{name: "USER", line: "USER " + s.user.User}, {name: "PASS", line: "PASS " + s.user.Pass}}
	if err := s.exec(login); err != nil {
		return err
	}
	s.rec.observe("login", time.Since(start))

	if err := s.exec([]op{{name: "STAT", line: "STAT"}}); err != nil {
		return err
	}
	// What a client waits for before it knows whether there is mail.
	s.rec.observe("login+STAT", time.Since(start))
	if e := opts.Expect; e != nil && (s.count != e.Count || s.size != e.Size) {
		return fmt.Errorf("STAT says %d messages of %d octets, expected %d of %d", s.count, s.size, e.Count, e.Size)
	}

	var ops []op
	switch opts.Mode {
	case ModeList:
		ops = []op{{name: "LIST", line: "LIST"}}
	case ModeUIDL:
		ops = []op{{name: "UIDL", line: "UIDL"}}
	case ModeRetrAll, ModeTop, ModeMixed:
		ops = []op{{name: "UIDL", line: "UIDL"}, {name: "LIST", line: "LIST"}}
	}
	if err := s.exec(ops); err != nil {
		return err
	}

	ops = ops[:0]
	switch opts.Mode {
	case ModeRetrAll:
		s.got = make(map[Digest]int)
		for n := 1; n <= s.count; n++ {
			ops = append(ops, op{name: "RETR", line: "RETR " + strconv.Itoa(n), msg: n})
		}
	case ModeTop:
		for n := 1; n <= s.count; n++ {
			ops = append(ops, op{name: "TOP", line: "TOP " + strconv.Itoa(n) + " " + strconv.Itoa(opts.TopLines), msg: n})
		}
	case ModeMixed:
		for n := 1; n <= s.count; n++ {
			switch x := s.rng.IntN(10); {
			case x == 0:
				ops = append(ops, op{name: "RETR", line: "RETR " + strconv.Itoa(n), msg: n})
			case x == 1:
				ops = append(ops, op{name: "TOP", line: "TOP " + strconv.Itoa(n) + " " + strconv.Itoa(opts.TopLines), msg: n})
			}
		}
	}
	if err := s.exec(ops); err != nil {
		return err
	}
	if opts.Mode == ModeRetrAll && opts.Expect != nil {
		for d, want := range opts.Expect.digest {
			if s.got[d] != want {
				return fmt.Errorf("retrieved %d messages with sha256 %s, expected %d", s.got[d], d, want)
			}
		}
	}

	if err := s.exec([]op{{name: "QUIT", line: "QUIT"}}); err != nil {
		return err
	}
	s.rec.observe("session", time.Since(start))
	return nil
}

// exec runs ops in order. With pipelining, a writer goroutine keeps up to
// Pipeline commands in flight while this goroutine reads the answers.
func (s *session) exec(ops []op) error {
	if len(ops) == 0 {
		return nil
	}
	depth := s.r.opts.Pipeline
	if depth <= 1 || len(ops) == 1 {
		for i := range ops {
			start := time.Now()
			if err := s.send(ops[i].line + "\r\n"); err != nil {
				return err
			}
			if err := s.answer(&ops[i]); err != nil {
				return err
			}
			s.rec.observe(ops[i].name, time.Since(start))
		}
		return nil
	}

	sem := make(chan struct{}, depth)
	sent := make(chan time.Time, len(ops))
	abort := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(writerFunc(s.send1), 4096)
		for i := range ops {
			select {
			case sem <- struct{}{}:
			default:
				// The window is full: send what is queued, then wait.
				if err := bw.Flush(); err != nil {
					werr <- err
					return
				}
				select {
				case sem <- struct{}{}:
				case <-abort:
					werr <- nil
					return
				}
			}
			sent <- time.Now()
			bw.WriteString(ops[i].line)
			bw.WriteString("\r\n")
		}
		werr <- bw.Flush()
	}()
	var err error
	for i := range ops {
		if err = s.answer(&ops[i]); err != nil {
			break
		}
		s.rec.observe(ops[i].name, time.Since(<-sent))
		<-sem
	}
	if err != nil {
		close(abort)
		s.nc.Close() // unblocks a writer stuck in Write
		<-werr
		return err
	}
	return <-werr
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (s *session) send(line string) error {
	_, err := s.send1([]byte(line))
	return err
}

func (s *session) send1(p []byte) (int, error) {
	s.nc.SetWriteDeadline(time.Now().Add(s.r.opts.Timeout))
	n, err := s.nc.Write(p)
	if err != nil {
		return n, fmt.Errorf("write: %w", err)
	}
	return n, nil
}

// status reads a status line and returns its text after "+OK".
func (s *session) status(what string) (string, error) {
	line, err := s.line()
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if !strings.HasPrefix(line, "+OK") {
		return "", fmt.Errorf("%s: %q", what, line)
	}
	return strings.TrimPrefix(strings.TrimPrefix(line, "+OK"), " "), nil
}

// line reads one status or listing line, which must end in CRLF.
func (s *session) line() (string, error) {
	b, err := s.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return "", errors.New("response line too long")
	}
	if err != nil {
		return "", err
	}
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		return "", fmt.Errorf("line without CRLF: %q", b)
	}
	return string(b[:len(b)-2]), nil
}

// answer reads and checks the answer to o.
func (s *session) answer(o *op) error {
	text, err := s.status(o.line)
	if o.name == "PASS" && err != nil {
		return errors.New("PASS: login failed") // never echo the command
	}
	if err != nil {
		return err
	}
	s.rec.commands++
	switch o.name {
	case "STAT":
		if _, err := fmt.Sscanf(text, "%d %d", &s.count, &s.size); err != nil {
			return fmt.Errorf("STAT answer %q: %v", text, err)
		}
		return nil
	case "LIST":
		return s.list(text)
	case "UIDL":
		return s.uidl()
	case "RETR":
		return s.message(o, text, true)
	case "TOP":
		return s.message(o, text, false)
	}
	return nil
}

// listing reads the lines of a LIST or UIDL answer, checks that they
// number the messages 1..count in order and passes each value on.
func (s *session) listing(what string, each func(n int, v string) error) error {
	n := 0
	for {
		line, err := s.line()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if line == "." {
			break
		}
		n++
		num, v, ok := strings.Cut(line, " ")
		if !ok || num != strconv.Itoa(n) {
			return fmt.Errorf("%s: line %d is %q", what, n, line)
		}
		if err := each(n, v); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if n != s.count {
		return fmt.Errorf("%s lists %d messages, STAT said %d", what, n, s.count)
	}
	return nil
}

func (s *session) list(text string) error {
	s.sizes = make([]int64, 0, s.count)
	var total int64
	err := s.listing("LIST", func(n int, v string) error {
		size, err := strconv.ParseInt(v, 10, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("message %d: size %q", n, v)
		}
		s.sizes = append(s.sizes, size)
		total += size
		return nil
	})
	if err != nil {
		return err
	}
	if total != s.size {
		return fmt.Errorf("LIST sizes add up to %d, STAT said %d", total, s.size)
	}
	return nil
}

func (s *session) uidl() error {
	s.uidls = make([]string, 0, s.count)
	seen := make(map[string]bool, s.count)
	return s.listing("UIDL", func(n int, v string) error {
		if len(v) < 1 || len(v) > 70 || strings.IndexFunc(v, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
			return fmt.Errorf("message %d: unique-id %q is not 1-70 characters 0x21-0x7E", n, v)
		}
		if seen[v] {
			return fmt.Errorf("message %d: unique-id %q is not unique", n, v)
		}
		seen[v] = true
		s.uidls = append(s.uidls, v)
		return nil
	})
}

// message reads a RETR or TOP answer and checks it: every line ends in
// CRLF, lines beginning with "." are stuffed, a RETR delivers exactly the
// LIST size (and, if the status line names a size, that one too), a TOP
// no more than it, and the content matches other sessions and the
// expected set.
func (s *session) message(o *op, text string, retr bool) error {
	n, d, err := s.data()
	if err != nil {
		return fmt.Errorf("%s: %w", o.line, err)
	}
	size := s.sizes[o.msg-1]
	if retr {
		if n != size {
			return fmt.Errorf("%s: got %d octets, LIST said %d", o.line, n, size)
		}
		if f, _, _ := strings.Cut(text, " "); f != "" && strings.Contains(text, "octets") {
			if v, err := strconv.ParseInt(f, 10, 64); err == nil && v != size {
				return fmt.Errorf("%s: status says %d octets, LIST said %d", o.line, v, size)
			}
		}
		s.rec.messages++
	} else if n > size {
		return fmt.Errorf("%s: got %d octets, more than the whole message (%d)", o.line, n, size)
	}
	key := s.uidls[o.msg-1]
	if !retr {
		key += " TOP " + strconv.Itoa(s.r.opts.TopLines)
	}
	if err := s.r.consistent(key, d); err != nil {
		return err
	}
	if e := s.r.opts.Expect; retr && e != nil {
		if e.digest[d] == 0 {
			return fmt.Errorf("%s: content (sha256 %s, %d octets) is not in the expected set", o.line, d, n)
		}
		if s.got != nil {
			s.got[d]++
		}
	}
	return nil
}

// data reads multi-line data up to the terminating line, undoing the
// dot-stuffing, and returns its length and digest. Lines longer than the
// read buffer arrive in pieces.
func (s *session) data() (int64, Digest, error) {
	s.h.Reset()
	var n int64
	lineStart, prevCR := true, false
	for {
		b, err := s.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return n, Digest{}, fmt.Errorf("after %d octets: %w", n, err)
		}
		whole := err == nil
		if lineStart && len(b) > 0 && b[0] == '.' {
			switch {
			case whole && len(b) == 3 && b[1] == '\r':
				var d Digest
				s.h.Sum(d[:0])
				return n, d, nil
			case len(b) > 1 && b[1] == '.':
				b = b[1:]
			default:
				return n, Digest{}, fmt.Errorf("after %d octets: line %q starts with an unstuffed dot", n, truncate(b))
			}
		}
		if whole {
			cr := prevCR
			if len(b) >= 2 {
				cr = b[len(b)-2] == '\r'
			}
			if !cr {
				return n, Digest{}, fmt.Errorf("after %d octets: line ends in a bare LF", n)
			}
		}
		s.h.Write(b)
		n += int64(len(b))
		lineStart = whole
		prevCR = len(b) > 0 && b[len(b)-1] == '\r'
	}
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// countingReader counts the octets read from the server and gives each
// read from the socket the timeout (per read, not per line: a deadline
// update costs about as much as parsing a line).
type countingReader struct {
	nc      net.Conn
	timeout time.Duration
	n       int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.nc.SetReadDeadline(time.Now().Add(c.timeout))
	n, err := c.nc.Read(p)
	c.n += int64(n)
	return n, err
}
