package state

// This file holds the Redis store's client, its construction and its
// login limits; redislease.go holds the leases (connection slots, locks)
// and their renewal.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the Store shared by replicas through a Redis or Valkey server.
// Keys are KeyPrefix + "login:", "seen:", "conn:", "lock:" or "value:" +
// the caller's key.
type Redis struct {
	cfg    Config
	opts   Options
	client *redis.Client
	leases *renewer
}

// NewRedis checks cfg and returns a store for it. It does not connect:
// popbridge starts while the store is away, and each feature then follows
// its fail mode until the store answers.
func NewRedis(cfg Config, opts Options) (*Redis, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Address == "" {
		return nil, errors.New("state.address: empty")
	}
	cfg = cfg.WithDefaults()
	ro := &redis.Options{
		Addr:     cfg.Address,
		Username: cfg.Username,
		// Every operation runs under a context with CommandTimeout, and
		// the client honours it, for dials and pool waits too.
		ContextTimeoutEnabled: true,
		DialTimeout:           cfg.DialTimeout,
		ReadTimeout:           cfg.CommandTimeout,
		WriteTimeout:          cfg.CommandTimeout,
		PoolTimeout:           cfg.CommandTimeout,
		// One retry replaces a pooled connection that died with a
		// restarted server; the scripts are idempotent, so a retry cannot
		// count twice.
		MaxRetries:      1,
		DialerRetries:   1,
		DisableIdentity: true,
	}
	if cfg.PasswordFile != "" {
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("state.password_file: %v", err)
		}
		ro.Password = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	if cfg.TLS {
		host, _, _ := net.SplitHostPort(cfg.Address)
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("state.ca_file: %v", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("state.ca_file: %s holds no PEM certificate", cfg.CAFile)
			}
		}
		ro.TLSConfig = tc
	}
	quietClient.Do(func() { redis.SetLogger(discard{}) })
	r := &Redis{cfg: cfg, opts: opts, client: redis.NewClient(ro)}
	r.leases = newRenewer(r)
	return r, nil
}

// quietClient silences the client library's own log, once per process:
// its lines (a failed dial, say) would bypass popbridge's structured log,
// and every error they describe reaches a caller or Options.OnError.
var quietClient sync.Once

type discard struct{}

func (discard) Printf(context.Context, string, ...any) {}

// Ping asks the store for an answer, e.g. for a readiness check.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Close stops the renewals, gives up the leases still held and closes the
// connections.
func (r *Redis) Close() error {
	r.leases.close()
	return r.client.Close()
}

// bounded limits one operation to the command timeout.
func (r *Redis) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.CommandTimeout)
}

// background is bounded like an operation but outlives the caller's
// context, for releases and renewals.
func (r *Redis) background() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.cfg.CommandTimeout)
}

// unavailable turns a failed operation into the (ok, err) of the fail rule
// (package comment). A caller that gave up is refused with its own error.
func (r *Redis) unavailable(ctx context.Context, mode FailMode, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	return mode == FailOpen, fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// report passes an error that no caller sees to Options.OnError.
func (r *Redis) report(feature string, err error) {
	if err != nil && r.opts.OnError != nil {
		r.opts.OnError(feature, fmt.Errorf("%w: %v", ErrUnavailable, err))
	}
}

// newToken names one attempt, slot or lease uniquely across replicas.
func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Reserve keeps a sliding log per key (reserveScript): at most limit
// attempts in any span of one window, where a fixed window would allow
// twice the limit across a window boundary.
func (r *Redis) Reserve(ctx context.Context, key string, limit int, window time.Duration) (func(failed bool), bool, error) {
	if limit <= 0 {
		return func(bool) {}, true, nil
	}
	k, token, ms := r.cfg.KeyPrefix+"login:"+key, newToken(), window.Milliseconds()
	opCtx, cancel := r.bounded(ctx)
	defer cancel()
	n, err := reserveScript.Run(opCtx, r.client, []string{k}, limit, ms, token).Int()
	if err != nil {
		ok, err := r.unavailable(ctx, r.cfg.OnFailure.Logins, err)
		if !ok {
			return nil, false, err
		}
		return func(bool) {}, true, err
	}
	if n == 0 {
		return nil, false, nil
	}
	var once sync.Once
	return func(failed bool) {
		once.Do(func() {
			ctx, cancel := r.background()
			defer cancel()
			var err error
			if failed {
				err = failScript.Run(ctx, r.client, []string{k}, token, ms).Err()
			} else {
				err = r.client.ZRem(ctx, k, token).Err()
			}
			r.report("logins", err)
		})
	}, true, nil
}

// Remember sets key for ttl.
func (r *Redis) Remember(ctx context.Context, key string, ttl time.Duration) error {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	if err := r.client.Set(ctx, r.cfg.KeyPrefix+"seen:"+key, "1", ttl).Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Remembered reports whether key is set.
func (r *Redis) Remembered(ctx context.Context, key string) (bool, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	n, err := r.client.Exists(ctx, r.cfg.KeyPrefix+"seen:"+key).Result()
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return n == 1, nil
}
