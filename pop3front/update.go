// update.go holds QUIT, which in the TRANSACTION state enters the UPDATE
// state (RFC 1939 section 6): the one place where the maildrop changes.

package pop3front

import (
	"net"
	"strconv"
	"strings"
)

func (c *conn) handleQuit(args []byte) error {
	if len(args) > 0 {
		return badCommand("QUIT takes no arguments")
	}
	if c.state != stateTransaction {
		c.endAs(endQuit)
		c.ok("Logging out")
		return errHangUp
	}
	if !c.enterUpdate() {
		// Kicked (or shut down) first: the session ends without UPDATE.
		return abort(net.ErrClosed)
	}
	var dele []int
	for i, d := range c.deleted {
		if d {
			dele = append(dele, i)
		}
	}
	ctx, cancel := c.commandContext()
	defer cancel()
	res, err := c.sess.Commit(ctx, dele)
	if err != nil {
		// RFC 1939 section 6: "some deleted messages not removed".
		c.log.Error("update failed", "user", c.authUser, "marked", len(dele), "err", err)
		c.endAs(endUpstreamFailed)
		return closeAfter(&Error{Code: "SYS/TEMP", Text: "Some deleted messages not removed, try again later"})
	}
	c.update = res
	c.endAs(endQuit)
	c.ok(quitAnswer(len(dele)+res.Expired, res))
	return errHangUp
}

// quitAnswer says what UPDATE did with the marked messages (the
// client's and the expired ones), as it happened upstream: a policy that
// keeps mail on the server must not answer that it was deleted.
func quitAnswer(marked int, res UpdateResult) string {
	if marked == 0 {
		return "Logging out"
	}
	kept := max(marked-res.Removed-res.Flagged, 0)
	var parts []string
	if res.Removed > 0 {
		parts = append(parts, strconv.Itoa(res.Removed)+" messages deleted")
	}
	if res.Flagged > 0 {
		parts = append(parts, strconv.Itoa(res.Flagged)+" messages marked deleted on the server")
	}
	if kept > 0 {
		parts = append(parts, strconv.Itoa(kept)+" messages kept on the server")
	}
	answer := "Logging out, " + strings.Join(parts, ", ")
	if res.Expired > 0 {
		answer += " (" + strconv.Itoa(res.Expired) + " of them expired)"
	}
	return answer
}
