package retention

// The decisions as tables: which messages expire, which stamps are
// orphans, the retention a policy gives, and EXPIRE before login.

import (
	"slices"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
	"github.com/popbridge/popbridge/proxy/authhttp"
	"github.com/popbridge/popbridge/proxy/config"
)

var (
	t0   = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	msgs = []pop3front.MessageInfo{{UID: "a"}, {UID: "b"}, {UID: "c"}, {UID: "d"}}
)

func TestExpired(t *testing.T) {
	noneGone := func(int) bool { return false }
	for _, tc := range []struct {
		name    string
		stamps  map[string]time.Time
		now     time.Time
		deleted []int
		gone    func(int) bool
		want    []int
	}{
		{"nothing stamped", nil, t0.Add(100 * day), nil, noneGone, nil},
		{"exactly N days", map[string]time.Time{"a": t0}, t0.Add(7 * day), nil, noneGone, []int{0}},
		{"a second short", map[string]time.Time{"a": t0}, t0.Add(7*day - time.Second), nil, noneGone, nil},
		{"only the old ones", map[string]time.Time{"a": t0, "b": t0.Add(day), "c": t0.Add(-30 * day)}, t0.Add(7*day + time.Hour),
			nil, noneGone, []int{0, 2}},
		{"deleted by the client: not twice", map[string]time.Time{"a": t0, "c": t0}, t0.Add(8 * day), []int{2}, noneGone, []int{0}},
		{"known gone", map[string]time.Time{"a": t0, "d": t0}, t0.Add(8 * day), nil, func(i int) bool { return i == 3 }, []int{0}},
		{"a stamp of mail not in the snapshot", map[string]time.Time{"x": t0}, t0.Add(8 * day), nil, noneGone, nil},
	} {
		got := expired(msgs, tc.deleted, tc.gone, tc.stamps, tc.now, 7)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: expired %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestOrphans(t *testing.T) {
	stamps := map[string]time.Time{
		"a":     t0,                   // in the snapshot
		"gone":  t0,                   // old and not in it
		"fresh": t0.Add(6 * day),      // not in it, but younger than the retention
		"edge":  t0.Add(-time.Minute), // just past
	}
	got := orphans(msgs, stamps, t0.Add(7*day), 7)
	if want := []string{"edge", "gone"}; !slices.Equal(got, want) {
		t.Errorf("orphans %v, want %v", got, want)
	}
}

func TestDays(t *testing.T) {
	for _, tc := range []struct {
		pol  imapback.Policy
		want int
	}{
		{imapback.Policy{Delete: imapback.DeleteExpunge, RetentionDays: 30}, 30},
		{imapback.Policy{Delete: imapback.DeleteTrash}, 0},
		// keep removes nothing without a device...
		{imapback.Policy{Delete: imapback.DeleteKeep, RetentionDays: 30}, 0},
		// ...but a view hides expired mail from the device whatever the policy.
		{imapback.Policy{Delete: imapback.DeleteKeep, Device: "scanner", RetentionDays: 30}, 30},
	} {
		if got := Days(tc.pol); got != tc.want {
			t.Errorf("Days(%+v) = %d, want %d", tc.pol, got, tc.want)
		}
	}
}

func TestAnnounced(t *testing.T) {
	days := func(n int) *int { return &n }
	for _, tc := range []struct {
		name string
		p    config.PolicyConfig
		hook bool
		want pop3front.Expire
	}{
		{"no retention", config.PolicyConfig{}, false, pop3front.Expire{}},
		{"one value", config.PolicyConfig{RetentionDays: 30}, false, pop3front.Expire{Days: 30}},
		{"a rule with the same value", config.PolicyConfig{RetentionDays: 30,
			Rules: []config.PolicyRule{{Devices: []string{"x"}, RetentionDays: days(30)}}}, false, pop3front.Expire{Days: 30}},
		{"a rule with a lower value", config.PolicyConfig{RetentionDays: 30,
			Rules: []config.PolicyRule{{Devices: []string{"x"}, RetentionDays: days(7)}}}, false, pop3front.Expire{Days: 7, PerUser: true}},
		{"a rule with a higher value", config.PolicyConfig{RetentionDays: 7,
			Rules: []config.PolicyRule{{Devices: []string{"x"}, RetentionDays: days(30)}}}, false, pop3front.Expire{Days: 7, PerUser: true}},
		{"only a rule has one", config.PolicyConfig{
			Rules: []config.PolicyRule{{Devices: []string{"x"}, RetentionDays: days(14)}}}, false, pop3front.Expire{Days: 14, PerUser: true}},
		{"a rule turns it off", config.PolicyConfig{RetentionDays: 14,
			Rules: []config.PolicyRule{{Users: []string{"a"}, RetentionDays: days(0)}}}, false, pop3front.Expire{Days: 14, PerUser: true}},
		{"a rule keeps mail", config.PolicyConfig{RetentionDays: 14,
			Rules: []config.PolicyRule{{Users: []string{"a"}, Delete: imapback.DeleteKeep}}}, false, pop3front.Expire{Days: 14, PerUser: true}},
		{"the hook may answer anything", config.PolicyConfig{RetentionDays: 14}, true, pop3front.Expire{}},
	} {
		c := &config.Config{Policy: tc.p}
		if tc.hook {
			c.AuthHTTP = authhttp.Config{URL: "http://127.0.0.1:9/auth"}
		}
		if got := Announced(c); got != tc.want {
			t.Errorf("%s: Announced %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
