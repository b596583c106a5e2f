// Package imapback serves POP3-style maildrops from an upstream IMAP
// server: login, a snapshot of one mailbox, messages streamed in bounded
// ranges, and the seen and delete policies at the end of a session.
package imapback

// This file holds the Backend, its Options and Login, which connects,
// authenticates and takes the snapshot.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// TLSMode says how the connection to the upstream is secured.
type TLSMode string

// TLS modes.
const (
	TLSImplicit TLSMode = "implicit" // TLS from the first byte (IMAPS, port 993)
	TLSStartTLS TLSMode = "starttls" // plain connection upgraded by STARTTLS (port 143)
	TLSNone     TLSMode = "none"     // no TLS: only for loopback or trusted networks
)

// TLSModes lists every valid TLSMode, for messages and checks.
var TLSModes = []TLSMode{TLSImplicit, TLSStartTLS, TLSNone}

// Valid reports whether m is one of TLSModes.
func (m TLSMode) Valid() bool { return slices.Contains(TLSModes, m) }

// DeletePolicy says what the end of a session does with deleted messages.
type DeletePolicy string

// Delete policies.
const (
	// DeleteExpunge flags the messages \Deleted and removes exactly those
	// with UID EXPUNGE (UIDPLUS or IMAP4rev2). Without UID EXPUNGE it only
	// flags them: a plain EXPUNGE would also remove messages that other
	// clients flagged.
	DeleteExpunge DeletePolicy = "expunge"
	// DeleteTrash moves the messages to the trash folder (policy.go).
	DeleteTrash DeletePolicy = "trash"
	// DeleteFlag only flags the messages \Deleted.
	DeleteFlag DeletePolicy = "flag"
	// DeleteKeep leaves the upstream mailbox alone.
	DeleteKeep DeletePolicy = "keep"
)

// DeletePolicies lists every valid DeletePolicy, for messages and checks.
var DeletePolicies = []DeletePolicy{DeleteExpunge, DeleteTrash, DeleteFlag, DeleteKeep}

// Valid reports whether p is one of DeletePolicies.
func (p DeletePolicy) Valid() bool { return slices.Contains(DeletePolicies, p) }

// SeenPolicies lists every valid SeenPolicy, for messages and checks.
var SeenPolicies = []SeenPolicy{SeenRetr, SeenNever, SeenQuit}

// Valid reports whether p is one of SeenPolicies.
func (p SeenPolicy) Valid() bool { return slices.Contains(SeenPolicies, p) }

// AuthMechanism chooses how to log in upstream.
type AuthMechanism string

// Authentication mechanisms.
const (
	AuthAuto  AuthMechanism = ""      // AUTHENTICATE PLAIN when offered, else LOGIN
	AuthLogin AuthMechanism = "login" // always LOGIN
	AuthPlain AuthMechanism = "plain" // always AUTHENTICATE PLAIN
	// AuthXOAuth2 and AuthOAuthBearer force that SASL mechanism for
	// logins whose Credentials carry a Token (oauth.go). With a Token,
	// the other values choose from the server's capabilities.
	AuthXOAuth2     AuthMechanism = "xoauth2"
	AuthOAuthBearer AuthMechanism = "oauthbearer"
)

// AuthMechanisms lists every valid AuthMechanism, AuthAuto included.
var AuthMechanisms = []AuthMechanism{AuthAuto, AuthLogin, AuthPlain, AuthXOAuth2, AuthOAuthBearer}

// Valid reports whether m is one of AuthMechanisms.
func (m AuthMechanism) Valid() bool { return slices.Contains(AuthMechanisms, m) }

// Defaults for zero Options fields.
const (
	DefaultMailbox        = "INBOX"
	DefaultDialTimeout    = 15 * time.Second
	DefaultCommandTimeout = 60 * time.Second
	// DefaultChunkSize is how much of a message one FETCH asks for. The
	// chunk is read into memory at upstream speed and then written to the
	// client at the client's speed, so a slow client never holds an IMAP
	// literal open (go-imap's client gives each literal one read deadline)
	// and memory per transfer stays bounded. 1 MiB rather than 256 KiB:
	// each chunk costs a round trip, and Dovecot reads a maildir message
	// from its start for every range, so small chunks of a large message
	// cost it quadratic work (BENCHMARKS.md: 0.93x instead of 0.83x of
	// native POP3 on the mixed mailbox).
	DefaultChunkSize = 1 << 20
)

// Errors of Login and Retrieve, wrapped with details.
var (
	ErrAuthFailed  = errors.New("upstream rejected the credentials")
	ErrUnavailable = errors.New("upstream unavailable")
	ErrMailbox     = errors.New("upstream mailbox cannot be opened")
	ErrInUse       = errors.New("upstream mailbox is in use")
	ErrGone        = errors.New("message was expunged upstream")
	// ErrNoKeywords: a per-device view needs a mailbox whose
	// PERMANENTFLAGS allow new keywords.
	ErrNoKeywords = errors.New("upstream mailbox cannot store per-device keywords")
)

// Options configures a Backend.
type Options struct {
	// Address is the upstream host:port.
	Address string
	// TLS is the upstream TLS mode.
	TLS TLSMode
	// TLSConfig verifies the upstream certificate. Nil means the system
	// roots and the host name of Address.
	TLSConfig *tls.Config
	// Auth chooses the login mechanism.
	Auth AuthMechanism
	// Mailbox is the mailbox served as the maildrop (default INBOX).
	Mailbox string
	// Mailboxes, when set, are the folders Open serves merged as the
	// maildrop instead of Mailbox (merged.go).
	Mailboxes []string
	// UIDL formats unique-ids (default DefaultUIDLFormat).
	UIDL *UIDLFormat
	// UIDLMap, if set, gives imported messages the unique-ids of the
	// POP3 server they came from.
	UIDLMap UIDLMap
	// Seen is the default seen policy (default SeenRetr).
	Seen SeenPolicy
	// Delete is the default delete policy (default DeleteExpunge).
	Delete DeletePolicy
	// TrashFolder is the default folder of DeleteTrash (default: the
	// \Trash special-use mailbox, else DefaultTrashFolder).
	TrashFolder string
	// DialTimeout bounds connecting, TLS and the greeting.
	DialTimeout time.Duration
	// CommandTimeout bounds each upstream command.
	CommandTimeout time.Duration
	// NoReconnect stops a session from logging in again when its
	// upstream connection was closed (by an idle timeout, a NAT box, a
	// failed command); it then keeps no password after the login.
	NoReconnect bool
	// UIDLsAtLogin makes every session's UIDLs at login, for a caller
	// that keys something by them then. Otherwise the header hashes of
	// %m are fetched on first need (Session.LoadUIDLs).
	UIDLsAtLogin bool
	// MaxMessages is the largest maildrop served (default
	// DefaultMaxMessages); a larger one fails the login with
	// ErrMaildropTooLarge.
	MaxMessages int
	// ResponseLimits bounds what the upstream may send (bounds.go).
	ResponseLimits ResponseLimits
	// ChunkSize is the size of one partial FETCH (default DefaultChunkSize).
	ChunkSize int
	// ReadAheadBytes is the most one session prefetches for a client
	// that retrieves messages in order, and the buffer in which a large
	// message's next range is fetched while the client reads the current
	// one (default DefaultReadAheadBytes; negative: no read-ahead).
	ReadAheadBytes int
	// ReadAheadMessages is the most messages one prefetch FETCH asks for
	// (default DefaultReadAheadMessages).
	ReadAheadMessages int
	// ReadAheadTotal bounds the read-ahead buffers of all sessions
	// together (default DefaultReadAheadTotal).
	ReadAheadTotal int
	// ReadAheadShared, when set, counts the read-ahead buffers of every
	// Backend given the same one against its total instead of
	// ReadAheadTotal: Backends made per login target then share one
	// memory budget.
	ReadAheadShared *ReadAheadBudget
	// ReadTimeout, if set, caps every read deadline on the upstream
	// connection. go-imap gives a response 30 s and each literal 5
	// minutes, however slowly the POP3 client reads; tests set a short
	// cap to prove that no literal is held open at the client's pace.
	ReadTimeout time.Duration
	// ForwardClientAddr sends the POP3 client's address (from
	// WithClientAddr on Login's context) with IMAP ID before logging in,
	// so that the upstream's logs and auth penalties see the client, not
	// popbridge.
	ForwardClientAddr bool
	// SnapshotCache, when set, keeps what each login learnt of its
	// mailbox for the next login of the same user (cachesnap.go); one
	// cache may serve several Backends. Nil: every snapshot in full.
	SnapshotCache *SnapshotCache
	// Logger receives upstream errors. Default: slog.Default().
	Logger *slog.Logger
	// Observer receives connection and command timings, for metrics.
	Observer Observer
}

// Backend opens sessions on one upstream IMAP server.
type Backend struct {
	opts    Options
	bufPool sync.Pool
	// raPool holds read-ahead buffers; ra counts the bytes of those
	// handed out, against its total.
	raPool sync.Pool
	ra     *ReadAheadBudget
	// warnedNoUIDPlus logs the missing UID EXPUNGE once per process.
	warnedNoUIDPlus sync.Once
}

// New checks opts and returns a Backend.
func New(opts Options) (*Backend, error) {
	if opts.Address == "" {
		return nil, errors.New("imapback: no upstream address")
	}
	if _, _, err := net.SplitHostPort(opts.Address); err != nil {
		return nil, fmt.Errorf("imapback: upstream address: %w", err)
	}
	if !opts.TLS.Valid() {
		return nil, fmt.Errorf("imapback: unknown TLS mode %q", opts.TLS)
	}
	if opts.Delete == "" {
		opts.Delete = DeleteExpunge
	}
	if opts.Seen == "" {
		opts.Seen = SeenRetr
	}
	if err := (&Policy{Delete: opts.Delete, Seen: opts.Seen, TrashFolder: opts.TrashFolder}).check(); err != nil {
		return nil, err
	}
	if !opts.Auth.Valid() {
		return nil, fmt.Errorf("imapback: unknown auth mechanism %q", opts.Auth)
	}
	if opts.Mailbox == "" {
		opts.Mailbox = DefaultMailbox
	}
	if err := CheckMailboxes(opts.Mailboxes); err != nil {
		return nil, fmt.Errorf("imapback: mailboxes: %w", err)
	}
	if opts.UIDL == nil {
		opts.UIDL, _ = ParseUIDLFormat(DefaultUIDLFormat)
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = DefaultCommandTimeout
	}
	if opts.MaxMessages <= 0 {
		opts.MaxMessages = DefaultMaxMessages
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.ReadAheadBytes == 0 {
		opts.ReadAheadBytes = DefaultReadAheadBytes
	}
	if opts.ReadAheadMessages <= 0 {
		opts.ReadAheadMessages = DefaultReadAheadMessages
	}
	if opts.ReadAheadTotal <= 0 {
		opts.ReadAheadTotal = DefaultReadAheadTotal
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Logger = opts.Logger.With("upstream", opts.Address)
	b := &Backend{opts: opts, ra: opts.ReadAheadShared}
	if b.ra == nil {
		b.ra = NewReadAheadBudget(opts.ReadAheadTotal)
	}
	b.bufPool.New = func() any { buf := make([]byte, opts.ChunkSize); return &buf }
	b.raPool.New = func() any { buf := make([]byte, max(opts.ReadAheadBytes, 0)); return &buf }
	return b, nil
}

// LoadCAFile reads a PEM bundle of CA certificates for upstream
// verification.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates found", path)
	}
	return pool, nil
}

// Credentials authenticate one upstream login.
type Credentials struct {
	User     string
	Password string
	// Token, when set, returns an OAuth2 access token for User; the login
	// then uses SASL OAUTHBEARER (RFC 7628) or XOAUTH2 instead of
	// Password. It is called for every login and every reconnect, since
	// the token of the first login may have expired by then.
	Token func(ctx context.Context) (string, error)
}

// Login connects, authenticates with cr and takes the snapshot of the
// maildrop as pol sees it: pol also says what RETR and QUIT do upstream.
// DefaultPolicy is the policy of the backend's Options.
func (b *Backend) Login(ctx context.Context, cr Credentials, pol Policy) (*Session, error) {
	if err := pol.check(); err != nil {
		return nil, err
	}
	if err := b.checkCredentials(cr); err != nil {
		return nil, err
	}
	// The token comes first: a refresh that fails must not cost an
	// upstream connection, and the connection must not sit idle while
	// the token endpoint answers.
	token, err := b.token(ctx, cr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.DialTimeout+2*b.opts.CommandTimeout)
	defer cancel()

	s := &Session{b: b, pol: pol, tokenLogin: cr.Token != nil, user: cr.User}
	if err := s.connect(ctx); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ok := false
	defer func() {
		if !ok {
			s.c.Close()
		}
	}()
	// From here on an expired ctx closes the connection, which unblocks
	// whatever command is waiting.
	defer context.AfterFunc(ctx, func() { s.nc.Close() })()

	if err := s.authenticate(cr, token); err != nil {
		return nil, err
	}
	if err := s.snapshot(); err != nil {
		return nil, err
	}
	s.rememberLogin(cr)
	ok = true
	return s, nil
}

func (s *Session) connect(ctx context.Context) (err error) {
	o := &s.b.opts
	if o.Observer != nil {
		defer func(start time.Time) { o.Observer.Connected(time.Since(start), err) }(time.Now())
	}
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, "tcp", o.Address)
	if err != nil {
		return err
	}
	if o.ReadTimeout > 0 {
		nc = cappedConn{nc, o.ReadTimeout}
	}
	s.nc = nc
	defer context.AfterFunc(ctx, func() { nc.Close() })()

	copts := &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{Expunge: s.expunged},
	}
	// go-imap never does TLS here (see below), so copts has no
	// TLSConfig: a session without TLS then holds no config at all.
	var tlsConfig *tls.Config
	if o.TLS != TLSNone {
		tlsConfig = o.TLSConfig.Clone()
		if tlsConfig == nil {
			tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if tlsConfig.ServerName == "" {
			tlsConfig.ServerName, _, _ = net.SplitHostPort(o.Address)
		}
	}
	client, ok := clientAddrFrom(ctx)
	// STARTTLS always by hand: go-imap's own would put TLS on top of
	// the bounded connection, which must read plaintext.
	if ok && o.ForwardClientAddr || o.TLS == TLSStartTLS {
		if !o.ForwardClientAddr {
			client = netip.AddrPort{}
		}
		if err := s.connectWithID(ctx, nc, tlsConfig, copts, client); err != nil {
			return err
		}
		return s.waitGreeting(ctx)
	}
	switch o.TLS {
	case TLSImplicit:
		tc := tls.Client(nc, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return err
		}
		s.c = imapclient.New(s.limitResponses(s.saslLayer(tc)), copts)
	default:
		s.c = imapclient.New(s.limitResponses(s.saslLayer(nc)), copts)
	}
	return s.waitGreeting(ctx)
}

func (s *Session) waitGreeting(ctx context.Context) error {
	if err := s.c.WaitGreeting(); err != nil {
		s.c.Close()
		return err
	}
	if ctx.Err() != nil {
		s.c.Close()
		return ctx.Err()
	}
	return nil
}

// authenticate logs in with cr: with token (from cr.Token) when cr has a
// token source, else with cr.Password.
func (s *Session) authenticate(cr Credentials, token string) error {
	if s.c.State() != imap.ConnStateNotAuthenticated {
		// PREAUTH: the upstream would never check this user's password.
		return fmt.Errorf("%w: upstream greeted with PREAUTH, refusing to serve unchecked credentials", ErrUnavailable)
	}
	if cr.Token != nil {
		return s.authenticateToken(cr.User, token)
	}
	user, pass := cr.User, cr.Password
	caps := s.c.Caps()
	plain := s.b.opts.Auth == AuthPlain || (s.b.opts.Auth == AuthAuto && caps.Has(imap.AuthCap(sasl.Plain)))
	var err error
	start := time.Now()
	if plain {
		err = s.c.Authenticate(sasl.NewPlainClient("", user, pass))
		s.observe("AUTHENTICATE", start, err)
	} else {
		if caps.Has(imap.CapLoginDisabled) {
			return fmt.Errorf("%w: upstream advertises LOGINDISABLED", ErrUnavailable)
		}
		err = s.c.Login(user, pass).Wait()
		s.observe("LOGIN", start, err)
	}
	return loginError(err, "")
}

// loginError maps the error of LOGIN or AUTHENTICATE; detail, if set,
// is added to an authentication failure (e.g. the status of an OAuth2
// error challenge).
func loginError(err error, detail string) error {
	if err == nil {
		return nil
	}
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
		switch ie.Code {
		case imap.ResponseCodeUnavailable, imap.ResponseCodeServerBug, imap.ResponseCodeLimit:
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		if detail != "" {
			return fmt.Errorf("%w: %v (%s)", ErrAuthFailed, err, detail)
		}
		return fmt.Errorf("%w: %v", ErrAuthFailed, err)
	}
	return fmt.Errorf("%w: login: %v", ErrUnavailable, err)
}
