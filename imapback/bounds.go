package imapback

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
)

// The bounds on what an upstream may send, and the connection wrapper
// that holds the upstream to them. The wrapper is needed because go-imap
// v2's client (v2.0.0-beta.8) trusts its server and offers no way to
// bound it:
//   - imapclient.Options has no limit of any kind (TLSConfig,
//     DebugWriter, UnilateralDataHandler, WordDecoder, Dialer);
//   - its decoder has two guards, Decoder.MaxSize and
//     Decoder.CheckBufferedLiteralFunc (internal/imapwire/decoder.go),
//     but only imapserver sets them (imapserver/conn.go); imapclient.New
//     makes its decoder without either, and the package is internal;
//   - Decoder.Literal copies a literal of any announced size into a
//     strings.Builder, Quoted and Text grow until their delimiter comes,
//     and handlers append every response to what the command collects.
//
// So an upstream (or anyone in the middle of a plaintext connection)
// could make one login hold gigabytes. boundedConn sits between
// imapclient and the connection and watches the octets go by. An option
// contributed to go-imap (a MaxSize per response and a literal check on
// the client's decoder) would let this shrink to setting it.
//
// The scanner (boundscan.go) follows the response grammar as imapclient's
// reader does, without copying: where a response starts and ends, which
// parts are free text (after OK/NO/BAD/BYE/PREAUTH and in continuation
// requests: no literals there), response codes (which go-imap skips to
// the next "]", across line ends), quoted strings (which go-imap reads
// across line ends too), literals ({N}, and {N+} and ~{N}, announced
// however) and, in a FETCH response, which literal is a message body:
// the one after BODY[...] or BINARY[...] (with an optional <offset>) in
// the top list, the only literals imapclient streams instead of
// buffering. RFC822, RFC822.HEADER and RFC822.TEXT need no case: go-imap
// fails on them before reading their value. Where the grammar is broken
// go-imap gives up on the connection, so the scanner only has to agree
// with it on well-formed input and never let more than a bound through.
//
// Past a bound, Read returns a *BoundError (errors.Is
// ErrResponseTooLarge) from then on, having passed none of the offending
// octets. imapclient reports it with %v, which loses the type, so the
// session asks Err after a failed command.
//
// The wrapper must see plaintext: it goes over the TLS connection, never
// under go-imap's own STARTTLS, which would put TLS on top of it.
//
// Reads run in imapclient's reader goroutine; Expect and Err may be
// called from any goroutine.

// Default bounds of ResponseLimits.
const (
	// DefaultMaxLiteral bounds a literal that is not a message body:
	// a mailbox name, an ID value, an envelope field.
	DefaultMaxLiteral = 1 << 20
	// DefaultMaxResponse bounds one response outside its body literals,
	// its other literals included.
	DefaultMaxResponse = 4 << 20
)

// ResponseLimits bounds what one upstream connection may send. A zero
// field takes its default.
type ResponseLimits struct {
	// Literal bounds a literal that is not a message body
	// (default DefaultMaxLiteral).
	Literal int64
	// Response bounds the octets of one response outside its body
	// literals, its other literals included (default DefaultMaxResponse).
	Response int64
	// Body bounds one message-body literal. 0: no bound, for a session
	// that streams bodies and checks their announced size itself.
	Body int64
}

// ErrResponseTooLarge is what every *BoundError wraps.
var ErrResponseTooLarge = errors.New("upstream response exceeds a bound")

// Bound names the bound a response passed.
type Bound string

// Bounds.
const (
	BoundLiteral   Bound = "literal"
	BoundBody      Bound = "body literal"
	BoundResponse  Bound = "response"
	BoundResponses Bound = "responses"
	BoundOctets    Bound = "responses to a command"
	// BoundCapability: a "(" in a capability list, on which go-imap's
	// reader (v2.0.0-beta.8) loops forever instead of failing.
	BoundCapability Bound = "capability list"
)

// BoundError is the error of a response past one of its bounds.
type BoundError struct {
	Bound Bound
	Limit int64
	// Got is the size (or, for BoundResponses, the count) seen when the
	// bound was passed: a literal's size as far as its digits were read.
	Got int64
}

func (e *BoundError) Error() string {
	switch e.Bound {
	case BoundResponses:
		return fmt.Sprintf("%v: more than %d responses to a command", ErrResponseTooLarge, e.Limit)
	case BoundCapability:
		return fmt.Sprintf("%v: a capability list with \"(\", which no capability has", ErrResponseTooLarge)
	}
	return fmt.Sprintf("%v: %s larger than %d octets", ErrResponseTooLarge, e.Bound, e.Limit)
}

func (e *BoundError) Unwrap() error { return ErrResponseTooLarge }

// Expectation bounds the responses to the commands a session sends next.
type Expectation struct {
	// Responses bounds the responses of every kind (untagged, tagged,
	// continuation requests) from now on; 0: no bound.
	Responses int64
	// ResponseOctets, if larger than ResponseLimits.Response, raises the
	// bound of one response until the next Expect: a SEARCH answered
	// without ESEARCH lists every UID in one response.
	ResponseOctets int64
	// Octets bounds the responses from now on together, body literals
	// left out; 0: no bound. Responses times the bound of one response
	// is no bound for a command whose answers go-imap collects (LIST).
	Octets int64
}

// boundedConn enforces ResponseLimits on what is read from its net.Conn.
type boundedConn struct {
	net.Conn
	sc scanner
	// responses counts the responses since the last Expect, and
	// maxResponses bounds them (0: none); maxOctets is the response
	// bound, raised by Expect, and maxTotal the bound of Octets. The
	// scanner starts its count of octets again at the first response
	// after Expect changed gen.
	responses    atomic.Int64
	maxResponses atomic.Int64
	maxOctets    atomic.Int64
	maxTotal     atomic.Int64
	gen          atomic.Int64
	err          atomic.Pointer[BoundError]
}

func newBoundedConn(nc net.Conn, lim ResponseLimits) *boundedConn {
	if lim.Literal <= 0 {
		lim.Literal = DefaultMaxLiteral
	}
	if lim.Response <= 0 {
		lim.Response = DefaultMaxResponse
	}
	c := &boundedConn{Conn: nc}
	c.sc = scanner{c: c, lim: lim, maxOctets: lim.Response}
	c.maxOctets.Store(lim.Response)
	return c
}

// Expect restarts the count of responses under new bounds.
func (c *boundedConn) Expect(e Expectation) {
	c.maxResponses.Store(max(e.Responses, 0))
	c.responses.Store(0)
	c.maxOctets.Store(max(e.ResponseOctets, c.sc.lim.Response))
	c.maxTotal.Store(max(e.Octets, 0))
	c.gen.Add(1)
}

// Err returns the bound the upstream passed, or nil.
func (c *boundedConn) Err() error {
	if e := c.err.Load(); e != nil {
		return e
	}
	return nil
}

func (c *boundedConn) Read(p []byte) (int, error) {
	if e := c.err.Load(); e != nil {
		return 0, e
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if k, e := c.sc.scan(p[:n]); e != nil {
			c.err.CompareAndSwap(nil, e)
			return k, c.err.Load()
		}
	}
	return n, err
}
