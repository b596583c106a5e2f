// expire.go holds the EXPIRE capability (RFC 2449 section 6.7): the
// server's own removal of retrieved mail after some days, as CAPA states
// it before login (Server.Expire) and after (ExpireSession).

package pop3front

import "strconv"

// Expire is what CAPA lists as EXPIRE in the AUTHORIZATION state: the
// server removes a retrieved message Days days after it was retrieved.
// Days below 1 lists nothing, which promises nothing either way.
type Expire struct {
	Days int
	// PerUser adds USER: sessions may get other values, Days being the
	// lowest (RFC 2449 lets the AUTHORIZATION state say so; each session
	// then states its own value after login).
	PerUser bool
}

// ExpireSession is a Session whose backend removes retrieved messages by
// itself after some days: CAPA in the TRANSACTION state lists EXPIRE with
// its value. A Session without the method lists none.
type ExpireSession interface {
	Session
	// Expire returns the days, with ok false when the backend removes
	// nothing by itself in this session.
	Expire() (days int, ok bool)
}

// expireCapability is the EXPIRE line of CAPA in the connection's state,
// or "".
func (c *conn) expireCapability() string {
	if c.state == stateAuthorization {
		e := c.srv.Expire
		switch {
		case e.Days < 1:
			return ""
		case e.PerUser:
			return "EXPIRE " + strconv.Itoa(e.Days) + " USER\r\n"
		}
		return "EXPIRE " + strconv.Itoa(e.Days) + "\r\n"
	}
	if es, ok := c.sess.(ExpireSession); ok {
		if days, ok := es.Expire(); ok && days > 0 {
			return "EXPIRE " + strconv.Itoa(days) + "\r\n"
		}
	}
	return ""
}
