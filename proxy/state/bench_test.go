package state

// What the shared store adds to one login: the store operations a
// successful login makes (reserve an attempt per address and per user,
// give both back, remember the user at the address), against the
// in-process store and a real redis-server on loopback.
// BENCHMARKS.md quotes these figures.

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/redistest"
)

func BenchmarkLoginStoreOperations(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	r, err := NewRedis(Config{Address: srv.Addr}.WithDefaults(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	for _, st := range []struct {
		name  string
		store Limiter
	}{{"memory", NewMemory()}, {"redis", r}} {
		b.Run(st.name, func(b *testing.B) {
			ctx := context.Background()
			for i := 0; b.Loop(); i++ {
				user := "user" + strconv.Itoa(i%1000) // spread over keys, as logins are
				releaseIP, ok, err := st.store.Reserve(ctx, "addr:192.0.2.1", 30, time.Minute)
				if !ok || err != nil {
					b.Fatal(ok, err)
				}
				releaseUser, ok, err := st.store.Reserve(ctx, "user:"+user, 10, time.Minute)
				if !ok || err != nil {
					b.Fatal(ok, err)
				}
				releaseIP(false)
				releaseUser(false)
				if err := st.store.Remember(ctx, "known:"+user, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
