package state

// This file holds the Redis store's values: opaque byte strings that
// replicas read and write whole, such as the OAuth2 token store's sealed
// tokens. The store neither interprets nor expires them.

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Get returns the value under KeyPrefix + "value:" + key, or nil without
// an error when there is none.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	v, err := r.client.Get(ctx, ValueKey(r.cfg, key)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return v, nil
}

// Set stores v under key, with no expiry.
func (r *Redis) Set(ctx context.Context, key string, v []byte) error {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	if err := r.client.Set(ctx, ValueKey(r.cfg, key), v, 0).Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// ValueKey is the full key under which a store of cfg keeps the value
// key, apart from the limits' and leases' keys.
func ValueKey(cfg Config, key string) string { return cfg.WithDefaults().KeyPrefix + "value:" + key }
