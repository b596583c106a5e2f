package testkit

// ConnServer: a TCP server on 127.0.0.1 for fake upstreams, one goroutine
// per connection, all of them ended and waited for by Close.

import (
	"net"
	"sync"
	"time"
)

// ConnServer serves each connection to a 127.0.0.1 listener in a
// goroutine of its own. Close closes the listener and every open
// connection and waits for those goroutines, so that tests that check for
// leaked goroutines can use it.
type ConnServer struct {
	// Addr is the address the server listens on.
	Addr string

	ln    net.Listener
	serve func(net.Conn)
	limit time.Duration
	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// ServeConns listens on 127.0.0.1:0 and runs serve for each connection,
// which has limit to live (so that a client that stops reading cannot
// hang the test) and is closed when serve returns.
func ServeConns(limit time.Duration, serve func(nc net.Conn)) (*ConnServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &ConnServer{Addr: ln.Addr().String(), ln: ln, serve: serve, limit: limit, conns: make(map[net.Conn]bool)}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Close stops the server and waits for its goroutines.
func (s *ConnServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *ConnServer) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[nc] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, nc)
				s.mu.Unlock()
				nc.Close()
			}()
			nc.SetDeadline(time.Now().Add(s.limit))
			s.serve(nc)
		}()
	}
}
