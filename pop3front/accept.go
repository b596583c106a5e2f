// accept.go holds Accept, the accept loop step shared by Server.Serve and
// any other accept loop of popbridge: it rides out transient failures and
// descriptor exhaustion instead of ending the loop or spinning.

package pop3front

import (
	"errors"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// Backoff bounds of Accept: the first pause after a failure, and the
// longest.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Accept returns the next connection of ln. A timeout or running out of
// file descriptors (EMFILE, ENFILE) is logged to log and retried after a
// pause that doubles from 5 ms up to 1 s, since a loop that returned would
// stop the listener for good and one that retried at once would spin. It
// returns any other error of ln.Accept as it is (net.ErrClosed after
// ln.Close), and net.ErrClosed when stop is closed during a pause; a nil
// stop never is.
func Accept(ln net.Listener, log *slog.Logger, stop <-chan struct{}) (net.Conn, error) {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err == nil || !retryAccept(err) {
			return nc, err
		}
		backoff = nextAcceptBackoff(backoff)
		log.Warn("accept failed, retrying", "addr", ln.Addr().String(), "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// retryAccept reports whether an Accept error is worth waiting out.
func retryAccept(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// nextAcceptBackoff is the pause after one that lasted d.
func nextAcceptBackoff(d time.Duration) time.Duration {
	return min(max(2*d, acceptBackoffMin), acceptBackoffMax)
}
