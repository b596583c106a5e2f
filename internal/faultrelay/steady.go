// This file holds what the relay does to every connection all along,
// rather than once at a trigger point: latency, counting a pattern, and
// counting round trips.
// Both run in the goroutine of the direction they act on (pipe), except
// the read-ahead of a delayed direction, which only reads and queues.

package faultrelay

import (
	"bytes"
	"net"
	"sync/atomic"
	"time"
)

// SetLatency delays everything that passes in either direction by d (one
// way), as a distant peer would: a round trip through the relay takes 2d
// more. Data is queued, so the delay adds latency without limiting
// throughput. It applies to connections accepted after the call.
func (r *Relay) SetLatency(d time.Duration) {
	r.mu.Lock()
	r.latency = d
	r.mu.Unlock()
}

// Counter counts the occurrences of a pattern in one direction.
type Counter struct {
	dir     Dir
	pattern []byte
	n       atomic.Int64
}

// Load returns the count so far.
func (c *Counter) Load() int64 { return c.n.Load() }

// Count starts counting pattern (e.g. an IMAP "UID FETCH") in dir, across
// every connection, from the next data each connection handles on. An
// occurrence split across two reads counts once.
func (r *Relay) Count(dir Dir, pattern string) *Counter {
	c := &Counter{dir: dir, pattern: []byte(pattern)}
	r.mu.Lock()
	r.counters = append(r.counters, c)
	r.mu.Unlock()
	return c
}

// count adds the occurrences in data to the counters of p's direction.
func (p *pipeRun) count(data []byte) {
	r := p.l.r
	r.mu.Lock()
	counters := r.counters
	r.mu.Unlock()
	for _, c := range counters {
		if c.dir != p.dir || len(c.pattern) == 0 {
			continue
		}
		if p.tails == nil {
			p.tails = make(map[*Counter][]byte)
		}
		window := append(p.tails[c], data...)
		c.n.Add(int64(bytes.Count(window, c.pattern)))
		// What is kept cannot hold a whole occurrence, so none counts twice.
		keep := min(len(window), len(c.pattern)-1)
		if i := bytes.LastIndex(window, c.pattern); i >= 0 {
			keep = min(keep, len(window)-i-len(c.pattern))
		}
		p.tails[c] = append([]byte(nil), window[len(window)-keep:]...)
	}
}

// RoundTrips counts, over every connection, the times the side that
// dialled sent data after data from the target had reached it since it
// last sent: the points where it waited for the target (the greeting,
// the answer to a command) before sending more. Commands sent without
// waiting (pipelined) add nothing; data sent for another reason after an
// answer arrived (a command the dialler's own client asked for just
// then) counts as well, so the count is an upper bound on the dialler's
// waits. Up is observed where the relay reads it and Down where the
// relay delivers it, both on the dialler's side of any latency.
func (r *Relay) RoundTrips() int64 { return r.roundTrips.Load() }

// sent notes data of dir on l for RoundTrips: Up after delivered Down
// is one turnaround.
func (l *link) sent(dir Dir) {
	if dir == Down {
		l.heard.Store(true)
	} else if l.heard.Swap(false) {
		l.r.roundTrips.Add(1)
	}
}

// chunk is data read from a delayed source, due at at.
type chunk struct {
	at   time.Time
	data []byte
	err  error
}

// reader returns what pipe reads its source with: src itself, or, with
// latency, a queue that a goroutine fills ahead, each read due latency
// after it arrived.
func (l *link) reader(src net.Conn) func() ([]byte, error) {
	buf := make([]byte, 32<<10)
	if l.latency <= 0 {
		return func() ([]byte, error) {
			n, err := src.Read(buf)
			return buf[:n], err
		}
	}
	q := make(chan chunk, 1024)
	l.r.wg.Add(1) // the calling pipe holds a count, so Close is still waiting
	go func() {
		defer l.r.wg.Done()
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			select {
			case q <- chunk{time.Now().Add(l.latency), b[:n], err}:
			case <-l.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return func() ([]byte, error) {
		var c chunk
		select {
		case c = <-q:
		case <-l.done:
			return nil, net.ErrClosed
		}
		select {
		case <-time.After(time.Until(c.at)):
		case <-l.done:
			return nil, net.ErrClosed
		}
		return c.data, c.err
	}
}
