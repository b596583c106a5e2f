// update.go holds QUIT, which in the TRANSACTION state enters the UPDATE
// state (RFC 1939 section 6): the one place where the maildrop changes.

package pop3front

import "strconv"

func (c *conn) handleQuit(args []byte) error {
	if len(args) > 0 {
		return badCommand("QUIT takes no arguments")
	}
	if c.state != stateTransaction {
		c.ok("Logging out")
		return errHangUp
	}
	c.state = stateUpdate
	var dele []int
	for i, d := range c.deleted {
		if d {
			dele = append(dele, i)
		}
	}
	ctx, cancel := c.commandContext()
	defer cancel()
	if err := c.sess.Commit(ctx, dele); err != nil {
		// RFC 1939 section 6: "some deleted messages not removed".
		c.log.Error("update failed", "user", c.authUser, "deleted", len(dele), "err", err)
		return closeAfter(&Error{Code: "SYS/TEMP", Text: "Some deleted messages not removed, try again later"})
	}
	c.nRemoved = len(dele)
	if len(dele) == 0 {
		c.ok("Logging out")
	} else {
		c.ok("Logging out, " + strconv.Itoa(len(dele)) + " messages deleted")
	}
	return errHangUp
}
