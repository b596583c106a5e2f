// Package faultrelay is a TCP relay for tests that breaks connections on
// purpose. It sits between a client and a server (a POP3 client and
// popbridge, or popbridge and its IMAP upstream), forwards both directions
// and, when an armed fault triggers, cuts the connection, stalls one
// direction or slows it down. A fault triggers at a chosen octet offset of
// one direction or where a chosen pattern (an IMAP command such as
// "UID EXPUNGE", a POP3 "QUIT") first appears in it. All along, the relay
// can also delay both directions, as a distant server would, and count a
// pattern, such as the FETCH commands a test expects to be batched.
//
// A tap copies what passes in one direction to a writer, so a test can
// check which commands a client sent.
//
// The relay is bounded and clean: Close stops accepting, closes every
// connection it holds and waits for all of its goroutines, so a test that
// checks for leaked goroutines or file descriptors can use it.
package faultrelay

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Dir is a direction of a relayed connection.
type Dir int

// Directions.
const (
	// Up runs from the side that dialled the relay to the target.
	Up Dir = iota
	// Down runs from the target back to the side that dialled.
	Down
)

func (d Dir) String() string {
	if d == Up {
		return "up"
	}
	return "down"
}

// Action is what a fault does when it triggers.
type Action int

// Actions.
const (
	// Cut closes both sides of the connection. Inject, if set, is
	// written to the receiving side first (e.g. an IMAP "* BYE").
	Cut Action = iota
	// Stall stops forwarding in the fault's direction: everything that
	// follows is read and dropped, and the connection stays open, as
	// with a peer that hangs. The other direction keeps working.
	Stall
	// Slow forwards what follows in the fault's direction at Rate
	// octets per second.
	Slow
	// Hold stops forwarding, and reading, in the fault's direction until
	// Until is closed, then goes on as before: with another fault's
	// Fired, it orders two events that timing alone would not.
	Hold
)

func (a Action) String() string {
	switch a {
	case Cut:
		return "cut"
	case Stall:
		return "stall"
	case Hold:
		return "hold"
	}
	return "slow"
}

// Fault describes one injected failure. It triggers once, on the first
// connection that reaches its trigger point after it was armed.
type Fault struct {
	// Dir is the direction watched, and the one stalled or slowed.
	Dir Dir
	// Match, when not empty, places the trigger point at the start of
	// the first occurrence of Match in Dir after arming; otherwise the
	// trigger point is where Dir stood when the fault was armed.
	Match string
	// Offset moves the trigger point this many octets further: they are
	// forwarded before the fault acts. With Match, len(Match) lets the
	// matched text through and acts right after it.
	Offset int64
	// Action is what happens at the trigger point.
	Action Action
	// Rate is the speed of Slow, in octets per second (at least 1).
	Rate int
	// Inject is written to the receiving side before a Cut.
	Inject []byte
	// Until ends a Hold.
	Until <-chan struct{}
}

// Armed is a fault waiting to trigger.
type Armed struct {
	Fault
	fired chan struct{}
	done  bool // under Relay.mu
}

// Fired is closed when the fault has acted (a Hold: when it ended).
func (a *Armed) Fired() <-chan struct{} { return a.fired }

// Relay forwards TCP connections from its own address to a target.
type Relay struct {
	// Addr is the relay's listening address, "127.0.0.1:PORT".
	Addr string

	target     string
	ln         net.Listener
	accepted   atomic.Int64
	roundTrips atomic.Int64 // steady.go

	mu       sync.Mutex
	faults   []*Armed
	counters []*Counter
	taps     [2]io.Writer // by Dir
	latency  time.Duration
	links    map[*link]struct{}
	closed   bool
	wg       sync.WaitGroup
}

// DialTimeout bounds the relay's connection to its target.
const DialTimeout = 5 * time.Second

// Start listens on a free loopback port and relays every connection to
// target.
func Start(target string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Relay{Addr: ln.Addr().String(), target: target, ln: ln, links: make(map[*link]struct{})}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// New is Start for a test: it fails the test on error and closes the
// relay when the test ends.
func New(t testing.TB, target string) *Relay {
	t.Helper()
	r, err := Start(target)
	if err != nil {
		t.Fatalf("faultrelay: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Arm adds a fault. For the offset of a fault without Match, the relay
// counts from what had passed in Dir when it next handles data of a
// connection, so arm a fault while no traffic is in flight.
func (r *Relay) Arm(f Fault) *Armed {
	if f.Action == Slow && f.Rate < 1 {
		f.Rate = 1
	}
	a := &Armed{Fault: f, fired: make(chan struct{})}
	r.mu.Lock()
	r.faults = append(r.faults, a)
	r.mu.Unlock()
	return a
}

// Tap copies everything the relay reads in direction d, on every
// connection, to w, before any fault acts on it. w is written to from
// the relay's goroutines, once per read: with more than one connection it
// must be safe for concurrent use, and their data interleave.
func (r *Relay) Tap(d Dir, w io.Writer) {
	r.mu.Lock()
	r.taps[d] = w
	r.mu.Unlock()
}

// Disarm removes every fault that has not triggered yet.
func (r *Relay) Disarm() {
	r.mu.Lock()
	r.faults = nil
	r.mu.Unlock()
}

// Accepted is the number of connections accepted so far.
func (r *Relay) Accepted() int { return int(r.accepted.Load()) }

// Open is the number of relayed connections still open.
func (r *Relay) Open() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.links)
}

// CutAll closes every open connection now, as a server or a NAT box that
// drops idle connections would. The relay goes on accepting.
func (r *Relay) CutAll() {
	for _, l := range r.openLinks() {
		l.close()
	}
}

// openLinks returns the connections open now; closing one takes the lock.
func (r *Relay) openLinks() []*link {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Collect(maps.Keys(r.links))
}

// Hangup writes msg (e.g. an IMAP "* BYE Disconnected for inactivity.")
// to the side that dialled each open connection, then closes them all, as
// a server that drops idle clients does. The relay goes on accepting.
func (r *Relay) Hangup(msg []byte) {
	for _, l := range r.openLinks() {
		l.conns[0].SetWriteDeadline(time.Now().Add(DialTimeout))
		l.conns[0].Write(msg)
		l.close()
	}
}

// Close stops accepting, closes every connection and waits until all of
// the relay's goroutines have ended.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	err := r.ln.Close()
	r.CutAll()
	r.wg.Wait()
	return err
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		down, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		r.accepted.Add(1)
		up, err := net.DialTimeout("tcp", r.target, DialTimeout)
		if err != nil {
			down.Close()
			continue
		}
		l := &link{r: r, conns: [2]net.Conn{down, up}, done: make(chan struct{})}
		r.mu.Lock()
		l.latency = r.latency
		if r.closed {
			r.mu.Unlock()
			down.Close()
			up.Close()
			return
		}
		r.links[l] = struct{}{}
		r.wg.Add(2)
		r.mu.Unlock()
		go l.pipe(Up, down, up)
		go l.pipe(Down, up, down)
	}
}

// link is one relayed connection: the accepted side and the target side.
type link struct {
	r     *Relay
	conns [2]net.Conn
	once  sync.Once
	done  chan struct{}
	// latency delays both directions (steady.go).
	latency time.Duration
	// halfClosed counts the directions whose source has ended.
	halfClosed atomic.Int32
	// heard: data from the target reached the dialler since the
	// dialler last sent (RoundTrips, steady.go).
	heard atomic.Bool
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.conns[0].Close()
		l.conns[1].Close()
		l.r.mu.Lock()
		delete(l.r.links, l)
		l.r.mu.Unlock()
	})
}

// pipeState is what one direction of a link knows about one fault.
type pipeState struct {
	at   int64  // trigger point, or -1 while Match is not found
	tail []byte // the end of the data searched so far, for matches across reads
}

// pipe forwards one direction. The end of its source is passed on as a
// half close; the link closes when both directions have ended or on any
// error.
func (l *link) pipe(dir Dir, src, dst net.Conn) {
	defer l.r.wg.Done()
	p := &pipeRun{l: l, dir: dir, dst: dst, states: make(map[*Armed]*pipeState)}
	read := l.reader(src)
	for {
		data, err := read()
		if len(data) > 0 {
			l.r.tap(dir, data)
			p.count(data)
			if dir == Up {
				l.sent(Up)
			}
			if !p.forward(data) {
				l.close()
				return
			}
			if dir == Down {
				l.sent(Down)
			}
		}
		if errors.Is(err, io.EOF) {
			if tc, ok := dst.(*net.TCPConn); ok && tc.CloseWrite() == nil && l.halfClosed.Add(1) < 2 {
				return
			}
		}
		if err != nil {
			l.close()
			return
		}
	}
}

func (r *Relay) tap(d Dir, data []byte) {
	r.mu.Lock()
	w := r.taps[d]
	r.mu.Unlock()
	if w != nil {
		w.Write(data)
	}
}

type pipeRun struct {
	l      *link
	dir    Dir
	dst    net.Conn
	offset int64 // octets read from the source so far
	mode   Action
	active bool // mode is in effect (Stall or Slow)
	rate   int
	states map[*Armed]*pipeState
	tails  map[*Counter][]byte // the end of the data counted so far
}

// forward handles data read from the source; false means the link is
// closed.
func (p *pipeRun) forward(data []byte) bool {
	for len(data) > 0 {
		if p.active && p.mode == Stall {
			p.offset += int64(len(data))
			return true
		}
		a, at := p.next(data)
		if a == nil {
			at = len(data)
		}
		if !p.write(data[:at]) {
			return false
		}
		p.offset += int64(at)
		data = data[at:]
		if a == nil {
			return true
		}
		if !p.fire(a) {
			return false
		}
	}
	return true
}

// next finds the fault that triggers first within data, and where.
func (p *pipeRun) next(data []byte) (*Armed, int) {
	r := p.l.r
	r.mu.Lock()
	defer r.mu.Unlock()
	var first *Armed
	firstAt := int64(len(data))
	end := p.offset + int64(len(data))
	for _, a := range r.faults {
		if a.done || a.Dir != p.dir {
			continue
		}
		st := p.states[a]
		if st == nil {
			st = &pipeState{at: -1}
			if a.Match == "" {
				st.at = p.offset + a.Offset
			}
			p.states[a] = st
		}
		if st.at < 0 {
			m := []byte(a.Match)
			window := append(st.tail, data...)
			if i := bytes.Index(window, m); i >= 0 {
				st.at = p.offset - int64(len(st.tail)) + int64(i) + a.Offset
			} else {
				keep := min(len(window), len(m)-1)
				st.tail = append(st.tail[:0], window[len(window)-keep:]...)
				continue
			}
		}
		if st.at > end {
			continue
		}
		rel := max(st.at-p.offset, 0)
		if first == nil || rel < firstAt {
			first, firstAt = a, rel
		}
	}
	if first != nil {
		first.done = true
	}
	return first, int(firstAt)
}

func (p *pipeRun) fire(a *Armed) bool {
	defer close(a.fired)
	switch a.Action {
	case Cut:
		if len(a.Inject) > 0 {
			p.dst.SetWriteDeadline(time.Now().Add(DialTimeout))
			p.dst.Write(a.Inject)
		}
		p.l.close()
		return false
	case Stall:
		p.mode, p.active = Stall, true
	case Slow:
		p.mode, p.active, p.rate = Slow, true, a.Rate
	case Hold:
		select {
		case <-a.Until:
		case <-p.l.done:
			return false
		}
	}
	return true
}

// write sends data on, paced when the direction is slowed.
func (p *pipeRun) write(data []byte) bool {
	if !(p.active && p.mode == Slow) {
		_, err := p.dst.Write(data)
		return err == nil
	}
	const tick = 20 * time.Millisecond
	piece := max(p.rate/int(time.Second/tick), 1)
	for len(data) > 0 {
		n := min(piece, len(data))
		if _, err := p.dst.Write(data[:n]); err != nil {
			return false
		}
		data = data[n:]
		wait := time.Duration(n) * time.Second / time.Duration(p.rate)
		select {
		case <-p.l.done:
			return false
		case <-time.After(wait):
		}
	}
	return true
}
