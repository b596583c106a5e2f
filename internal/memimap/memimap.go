// Package memimap runs go-imap's in-memory IMAP server on a listener: the
// upstream of popbridge's demo mode and of tests that need no Dovecot.
package memimap

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// Server is a running in-memory IMAP server without TLS.
type Server struct {
	// Addr is the address the server listens on.
	Addr string

	srv   *imapserver.Server
	mem   *imapmemserver.Server
	mu    sync.Mutex
	users map[string]*imapmemserver.User
	done  chan struct{}
}

// Options configures Start.
type Options struct {
	// Caps are the advertised capabilities. Default: IMAP4rev1 and
	// IMAP4rev2 (so UID EXPUNGE, MOVE and AUTHENTICATE PLAIN work).
	Caps imap.CapSet
	// TLSConfig enables STARTTLS, or with ImplicitTLS, TLS from the first
	// byte.
	TLSConfig   *tls.Config
	ImplicitTLS bool
	// NoKeywords leaves \* out of PERMANENTFLAGS, like a server that
	// cannot store new keywords.
	NoKeywords bool
}

// Start serves on ln until Close.
func Start(ln net.Listener, opts Options) *Server {
	if opts.ImplicitTLS {
		ln = tls.NewListener(ln, opts.TLSConfig)
	}
	caps := opts.Caps
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}}
	}
	s := &Server{
		Addr:  ln.Addr().String(),
		mem:   imapmemserver.New(),
		users: make(map[string]*imapmemserver.User),
		done:  make(chan struct{}),
	}
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			if opts.NoKeywords {
				return noKeywords{s.mem.NewSession().(imapserver.SessionIMAP4rev2)}, nil, nil
			}
			return s.mem.NewSession(), nil, nil
		},
		Caps:         caps,
		InsecureAuth: true, // plain text on loopback only
		TLSConfig:    opts.TLSConfig,
		Logger:       discardLogger{},
	})
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return s
}

// Listen starts a server on a fresh loopback port.
func Listen(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return Start(ln, opts), nil
}

// AddUser creates a user with an empty INBOX.
func (s *Server) AddUser(name, password string) {
	u := imapmemserver.NewUser(name, password)
	u.Create("INBOX", nil)
	s.mu.Lock()
	s.users[name] = u
	s.mu.Unlock()
	s.mem.AddUser(u)
}

// Append stores raw as a new message in a user's mailbox.
func (s *Server) Append(user, mailbox string, raw []byte, flags ...imap.Flag) error {
	s.mu.Lock()
	u := s.users[user]
	s.mu.Unlock()
	if u == nil {
		return fmt.Errorf("memimap: no user %q", user)
	}
	_, err := u.Append(mailbox, bytes.NewReader(raw), &imap.AppendOptions{Flags: flags})
	return err
}

// Close stops the server and closes its connections.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// noKeywords is a session whose SELECT offers no new keywords.
type noKeywords struct {
	imapserver.SessionIMAP4rev2
}

func (s noKeywords) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	data, err := s.SessionIMAP4rev2.Select(name, options)
	if data != nil {
		data.PermanentFlags = slices.DeleteFunc(data.PermanentFlags, func(f imap.Flag) bool { return f == imap.FlagWildcard })
	}
	return data, err
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
