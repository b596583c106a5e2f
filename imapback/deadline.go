package imapback

import (
	"net"
	"time"
)

// cappedConn caps every read deadline set on it (Options.ReadTimeout).
// No deadline (waiting for the next command's answer with none pending)
// stays none.
type cappedConn struct {
	net.Conn
	max time.Duration
}

func (c cappedConn) SetReadDeadline(t time.Time) error {
	if limit := time.Now().Add(c.max); !t.IsZero() && t.After(limit) {
		t = limit
	}
	return c.Conn.SetReadDeadline(t)
}

func (c cappedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}
