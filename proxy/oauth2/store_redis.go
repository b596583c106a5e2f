package oauth2

// The token store in Redis or Valkey, for replicas that serve the same
// accounts: each account's token is one value in the state section's
// server, sealed with key_file as a dir store's file is, and a refresh
// runs under a lock there, so that one replica at a time asks the token
// endpoint for an account and the others read what it saved.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/proxy/state"
)

// sharedStore is a store that replicas share. The token cache takes the
// account's lock around every refresh and saves every new access token
// there, rotated or not, so that one refresh serves every replica.
type sharedStore interface {
	Store
	// lockRefresh waits until this process holds account's refresh lock,
	// or ctx ends, or the store cannot be asked. unlock, not nil when err
	// is nil, gives the lock up.
	lockRefresh(ctx context.Context, account string) (unlock func(), err error)
}

// Polling bounds while another replica holds an account's refresh lock:
// a refresh takes a round trip to the token endpoint, typically 50 to
// 500 ms.
const (
	lockPollFirst = 20 * time.Millisecond
	lockPollMax   = 250 * time.Millisecond
)

// redisStore is the token store in the state section's server. Every
// operation is bounded by state.command_timeout.
type redisStore struct {
	st  *state.Redis
	cfg state.Config
	key []byte
}

func openRedisStore(cfg state.Config, key []byte) (*redisStore, error) {
	if key == nil {
		return nil, errors.New("type redis needs key_file")
	}
	st, err := state.NewRedis(cfg, state.Options{})
	if err != nil {
		return nil, err
	}
	return &redisStore{st: st, cfg: cfg, key: key}, nil
}

// tokenValue names an account's token among the store's values.
func tokenValue(account string) string { return "oauth2:token:" + account }

// where names an account's value for operators: server and key.
func (s *redisStore) where(account string) string {
	return fmt.Sprintf("redis %s key %s", s.cfg.Address, state.ValueKey(s.cfg, tokenValue(account)))
}

func (s *redisStore) Load(account string) (*oauth2.Token, error) {
	data, err := s.st.Get(context.Background(), tokenValue(account))
	if err != nil {
		return nil, err
	}
	if data == nil {
		return nil, errNoToken
	}
	tok, err := decodeToken(s.key, account, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.where(account), err)
	}
	return tok, nil
}

func (s *redisStore) Save(account string, tok *oauth2.Token) error {
	data, err := encodeToken(s.key, account, tok)
	if err != nil {
		return err
	}
	return s.st.Set(context.Background(), tokenValue(account), data)
}

// lockRefresh polls for the lease while another replica holds it: that
// one's refresh ends within tokenFlightTimeout, and a crashed replica's
// lease expires within state.lease_ttl.
func (s *redisStore) lockRefresh(ctx context.Context, account string) (func(), error) {
	wait := lockPollFirst
	for {
		lease, ok, err := s.st.Lock(ctx, "oauth2:"+account)
		if err != nil {
			// Whatever state.on_failure.locks says: a refresh without
			// the lock could spend a refresh token that another
			// replica is spending too.
			if lease != nil {
				lease.Release()
			}
			return nil, err
		}
		if ok {
			return lease.Release, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("another replica's refresh did not end in time: %w", ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, lockPollMax)
	}
}

// saveLogin saves the token of a sign-in. In a shared store it takes the
// account's refresh lock first, so that a replica's refresh under way
// cannot overwrite it with a token of the older grant.
func saveLogin(ctx context.Context, store Store, account string, tok *oauth2.Token) error {
	if s, ok := store.(sharedStore); ok {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tokenFlightTimeout)
		defer cancel()
		unlock, err := s.lockRefresh(ctx, account)
		if err != nil {
			return err
		}
		defer unlock()
	}
	return store.Save(account, tok)
}

// Close ends the connections to the server and gives up a lock still
// held.
func (s *redisStore) Close() error { return s.st.Close() }
