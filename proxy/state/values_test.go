package state

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestValuesAreSharedUnderThePrefixAndFailWhenTheStoreIsAway(t *testing.T) {
	t.Parallel()
	cfg, a, b := twoReplicas(t)
	ctx := context.Background()
	if v, err := a.Get(ctx, "k"); v != nil || err != nil {
		t.Fatalf("Get of a missing value: %q, %v", v, err)
	}
	if err := a.Set(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get(ctx, "k"); !bytes.Equal(v, []byte("v1")) || err != nil {
		t.Fatalf("the other replica reads %q, %v", v, err)
	}
	if got := ValueKey(cfg, "k"); got != "popbridge:value:k" {
		t.Errorf("ValueKey: %q", got)
	}
	// Another deployment on the same server sees none of it.
	other := cfg
	other.KeyPrefix = "other:"
	if v, err := openRedis(t, other).Get(ctx, "k"); v != nil || err != nil {
		t.Errorf("another prefix reads %q, %v", v, err)
	}

	a.client.Close() // as good as a server that went away
	start := time.Now()
	if _, err := a.Get(ctx, "k"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get on a closed client: %v", err)
	}
	if err := a.Set(ctx, "k", []byte("v2")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Set on a closed client: %v", err)
	}
	if d := time.Since(start); d > 2*(cfg.CommandTimeout+slack) {
		t.Errorf("the failures took %v", d)
	}
}
