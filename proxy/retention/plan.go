package retention

// The decisions, free of any store or upstream: which messages a QUIT
// removes, which stamps it forgets, the retention a session gets from its
// policy, and the EXPIRE capability the config allows before login.

import (
	"slices"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/config"
)

// day is one retention day: 24 hours from the stamp, whatever the
// calendar and the time zones say.
const day = 24 * time.Hour

// stampTTL is how long a maildrop's stamps outlive its last QUIT: a year
// beyond the retention, so that a device that comes back after months
// still finds them. Past it they are gone and its mail stays (no stamp, no
// removal) until the device deletes it.
func stampTTL(days int) time.Duration { return time.Duration(days+366) * day }

// Days is the retention of a session with policy pol: pol.RetentionDays,
// or 0 when nothing could be removed. In a device view an expired message
// gets the device's delete mark, which always works; without a device the
// delete policy applies, and keep removes nothing.
func Days(pol imapback.Policy) int {
	if pol.Device == "" && pol.Delete == imapback.DeleteKeep {
		return 0
	}
	return pol.RetentionDays
}

// due reports whether a message stamped at t is days old at now.
func due(t, now time.Time, days int) bool {
	return !now.Before(t.Add(time.Duration(days) * day))
}

// expired returns the messages of the snapshot msgs that a QUIT removes
// beside the client's deleted ones: stamped at least days before now, and
// neither deleted by the client nor known to be gone.
func expired(msgs []pop3front.MessageInfo, deleted []int, gone func(int) bool,
	stamps map[string]time.Time, now time.Time, days int) []int {
	var out []int
	for i, m := range msgs {
		t, ok := stamps[m.UID]
		if ok && due(t, now, days) && !slices.Contains(deleted, i) && !gone(i) {
			out = append(out, i)
		}
	}
	return out
}

// orphans returns the stamps of messages that are not in the snapshot and
// are older than the retention: had their message been there, it would
// have gone; so it left the maildrop (deleted, expunged elsewhere, or out
// of a date-bounded view for good). Younger stamps stay: another session
// of the same device may have stamped mail that arrived after this
// snapshot was taken.
func orphans(msgs []pop3front.MessageInfo, stamps map[string]time.Time, now time.Time, days int) []string {
	in := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		in[m.UID] = true
	}
	var out []string
	for uidl, t := range stamps {
		if !in[uidl] && due(t, now, days) {
			out = append(out, uidl)
		}
	}
	slices.Sort(out)
	return out
}

// Announced is the EXPIRE capability before login: the lowest retention
// any login of c can get, with USER when logins may differ (by rule, by
// a delete policy of keep, or with none at all), or nothing when no login
// gets one. With an auth_http hook nothing: an answer may set any value,
// so no lowest value can be promised; each session states its own.
func Announced(c *config.Config) pop3front.Expire {
	if c.AuthHTTP.Enabled() {
		return pop3front.Expire{}
	}
	p := c.Policy
	values := []int{p.RetentionDays}
	keep := p.Delete == imapback.DeleteKeep
	for _, r := range p.Rules {
		if r.RetentionDays != nil {
			values = append(values, *r.RetentionDays)
		}
		keep = keep || r.Delete == imapback.DeleteKeep
	}
	lowest, differ := 0, keep
	for _, v := range values {
		switch {
		case v == 0:
			differ = true
		case lowest == 0 || v < lowest:
			differ = differ || lowest != 0
			lowest = v
		case v != lowest:
			differ = true
		}
	}
	if lowest == 0 {
		return pop3front.Expire{}
	}
	return pop3front.Expire{Days: lowest, PerUser: differ}
}
