package state

// The stamps, against Memory and Redis: the first note stays, Unstamp
// forgets, replicas see each other's stamps; the TTL in each store.

import (
	"context"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/redistest"
)

func TestStamps(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			stores := im.open(t, 2)
			a, b := stores[0], stores[1]
			before := time.Now().Add(-time.Second) // Redis's clock may lag a little
			first, now, err := a.Stamp(ctx, "k", []string{"m1", "m2"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if now.Before(before) || now.After(time.Now().Add(time.Second)) {
				t.Errorf("store time %v, want about now", now)
			}
			if len(first) != 2 || !first["m1"].Equal(now) || !first["m2"].Equal(now) {
				t.Fatalf("stamps %v, want m1 and m2 at %v", first, now)
			}
			time.Sleep(5 * time.Millisecond) // the next stamps must be later
			got, now2, err := b.Stamp(ctx, "k", []string{"m2", "m3"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if !now2.After(now) || !got["m2"].Equal(first["m2"]) || !got["m3"].Equal(now2) || !got["m1"].Equal(now) || len(got) != 3 {
				t.Errorf("second replica's stamps %v at %v; want m1, m2 kept at %v and m3 at %v", got, now2, now, now2)
			}
			if err := a.Unstamp(ctx, "k", []string{"m1", "nothing"}); err != nil {
				t.Fatal(err)
			}
			got, _, err = b.Stamp(ctx, "k", nil, time.Hour)
			if _, ok := got["m1"]; ok || len(got) != 2 || err != nil {
				t.Errorf("after Unstamp m1: %v, %v", got, err)
			}
			if other, _, err := a.Stamp(ctx, "other", nil, time.Hour); len(other) != 0 || err != nil {
				t.Errorf("a key never stamped holds %v, %v", other, err)
			}
		})
	}
}

func TestMemoryStampsExpire(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := NewMemoryWithClock(func() time.Time { return clock })
	ctx := context.Background()
	m.Stamp(ctx, "k", []string{"m1"}, 48*time.Hour)
	clock = clock.Add(47 * time.Hour)
	if got, _, _ := m.Stamp(ctx, "k", nil, 48*time.Hour); len(got) != 1 {
		t.Fatalf("stamps within the TTL: %v", got)
	}
	// The last Stamp kept the key for another 48 hours.
	clock = clock.Add(47 * time.Hour)
	if got, _, _ := m.Stamp(ctx, "k", nil, time.Hour); len(got) != 1 {
		t.Fatalf("stamps within the renewed TTL: %v", got)
	}
	clock = clock.Add(time.Hour)
	if got, _, _ := m.Stamp(ctx, "k", nil, time.Hour); len(got) != 0 {
		t.Errorf("stamps past the TTL: %v", got)
	}
}

func TestRedisStampsKeyAndTTL(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	r := openRedis(t, testConfig(srv.Addr))
	ctx := context.Background()
	if _, _, err := r.Stamp(ctx, "k", []string{"m1"}, 10*time.Hour); err != nil {
		t.Fatal(err)
	}
	ttl, err := r.client.PTTL(ctx, "popbridge:stamps:k").Result()
	if err != nil || ttl <= 9*time.Hour || ttl > 10*time.Hour {
		t.Errorf("PTTL of popbridge:stamps:k: %v, %v; want about 10h", ttl, err)
	}
	// Reading an empty key leaves nothing behind.
	if _, _, err := r.Stamp(ctx, "empty", nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.client.Exists(ctx, "popbridge:stamps:empty").Result(); n != 0 {
		t.Error("a Stamp without names created its key")
	}
}
