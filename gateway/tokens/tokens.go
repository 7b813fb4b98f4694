// Package tokens caches the access tokens that some upstreams issue for a
// credential's secrets (Qianfan's OAuth tokens, Vertex AI's service
// account tokens, the API keys Volcengine Ark's control plane issues).
//
// A Cache keeps each token in the process until shortly before it
// expires, and fetches it once at a time however many calls want it. With
// Redis it also shares tokens with the cluster: a process that has none
// reads the cluster's, and only one process at a time fetches a new one
// for a credential (a SET NX lock), the others waiting for it to appear.
// A token the upstream refused is revoked (compare and delete), so that
// one refresh replaces it for everyone.
package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/gateway/provider"
)

// Cache is a provider.Tokens. The zero value is not usable: use New.
type Cache struct {
	rdb    redis.UniversalClient // nil: this process only
	prefix string
	log    *slog.Logger
	// wait bounds how long a call waits for another instance's fetch
	// before fetching itself.
	wait time.Duration

	mu      sync.Mutex
	local   map[string]entry
	flights map[string]*flight
}

// entry is a cached token, or a failed fetch.
type entry struct {
	token   string
	err     error     // the fetch failed: calls fail with err until refresh
	refresh time.Time // when it is to be replaced: before it expires
}

// failBackoff is how long a failed fetch is remembered: calls fail fast
// instead of each asking an issuer that just refused.
const failBackoff = 2 * time.Second

// flight is one fetch in progress in this process.
type flight struct {
	done  chan struct{}
	token string
	err   error
}

// Config configures a Cache.
type Config struct {
	// Redis, when set, shares tokens across the cluster.
	Redis redis.UniversalClient
	// Prefix is the Redis key prefix ("sluice:" by default).
	Prefix string
	// Logger reports Redis failures (the cache then works per process).
	Logger *slog.Logger
	// Wait bounds the wait for another instance's fetch. Default 10 s.
	Wait time.Duration
}

// New returns a Cache.
func New(cfg Config) *Cache {
	c := &Cache{rdb: cfg.Redis, prefix: cfg.Prefix, log: cfg.Logger, wait: cfg.Wait,
		local: map[string]entry{}, flights: map[string]*flight{}}
	if c.prefix == "" {
		c.prefix = "sluice:"
	}
	if c.wait <= 0 {
		c.wait = 10 * time.Second
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c
}

var _ provider.Tokens = (*Cache)(nil)

// refreshAhead is how long before its expiry a token is replaced: a tenth
// of its life, at most five minutes.
func refreshAhead(ttl time.Duration) time.Duration { return min(ttl/10, 5*time.Minute) }

// Token implements provider.Tokens.
func (c *Cache) Token(ctx context.Context, id string, fetch provider.FetchToken) (string, error) {
	c.mu.Lock()
	if e, ok := c.local[id]; ok && time.Now().Before(e.refresh) {
		c.mu.Unlock()
		return e.token, e.err
	}
	f, running := c.flights[id]
	if !running {
		f = &flight{done: make(chan struct{})}
		c.flights[id] = f
	}
	c.mu.Unlock()
	if !running {
		// The fetch outlives the call that started it: the others wait
		// on it, and it stores the token for the calls to come.
		go c.run(context.WithoutCancel(ctx), id, fetch, f)
	}
	select {
	case <-f.done:
		return f.token, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// run performs one flight.
func (c *Cache) run(ctx context.Context, id string, fetch provider.FetchToken, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, c.wait+30*time.Second)
	defer cancel()
	tok, refresh, err := c.obtain(ctx, id, fetch)
	c.mu.Lock()
	if err == nil {
		c.local[id] = entry{token: tok, refresh: refresh}
	} else {
		c.local[id] = entry{err: err, refresh: time.Now().Add(failBackoff)}
	}
	delete(c.flights, id)
	c.mu.Unlock()
	f.token, f.err = tok, err
	close(f.done)
}

// obtain returns the cluster's token, or fetches one, with the time it
// is to be replaced.
func (c *Cache) obtain(ctx context.Context, id string, fetch provider.FetchToken) (string, time.Time, error) {
	if c.rdb == nil {
		return fetchNow(ctx, fetch)
	}
	tok, refresh, err := c.shared(ctx, id, fetch)
	if err != nil && errors.Is(err, errRedis) {
		c.log.Warn("token cache: Redis unavailable, fetching for this instance", slog.String("credential", id), slog.Any("error", err))
		return fetchNow(ctx, fetch)
	}
	return tok, refresh, err
}

// fetchNow fetches a token and computes when to replace it.
func fetchNow(ctx context.Context, fetch provider.FetchToken) (string, time.Time, error) {
	tok, ttl, err := fetch(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	return tok, time.Now().Add(ttl - refreshAhead(ttl)), nil
}

// errRedis marks a failure of Redis itself.
var errRedis = errors.New("redis")

// Keys: {prefix}token:{id} holds "<unix ms of refresh>:<token>" with the
// token's remaining life as TTL; {prefix}token:{id}:lock is the fetch
// lock. Both share the id's hash tag.
func (c *Cache) key(id string) string  { return c.prefix + "token:{" + id + "}" }
func (c *Cache) lock(id string) string { return c.key(id) + ":lock" }

// lockTTL bounds a fetch's hold on the lock: an instance that dies while
// fetching does not hold the others back for longer.
const lockTTL = 15 * time.Second

// poll is how often a waiting instance looks for the fetched token.
const poll = 25 * time.Millisecond

// shared reads the cluster's token, or fetches it as the one instance
// holding the lock, or waits for the instance that does.
func (c *Cache) shared(ctx context.Context, id string, fetch provider.FetchToken) (string, time.Time, error) {
	deadline := time.Now().Add(c.wait)
	for {
		tok, refresh, err := c.read(ctx, id)
		if err != nil || tok != "" {
			return tok, refresh, err
		}
		got, err := c.rdb.SetNX(ctx, c.lock(id), "1", lockTTL).Result()
		if err != nil {
			return "", time.Time{}, fmt.Errorf("%w: %w", errRedis, err)
		}
		if got {
			return c.fetchAndStore(ctx, id, fetch)
		}
		if time.Now().After(deadline) {
			return "", time.Time{}, fmt.Errorf("token for %s: another instance's fetch did not finish within %s", id, c.wait)
		}
		select {
		case <-time.After(poll):
		case <-ctx.Done():
			return "", time.Time{}, ctx.Err()
		}
	}
}

// read returns the cluster's token and when it is to be replaced, or ""
// when there is none fresh.
func (c *Cache) read(ctx context.Context, id string) (string, time.Time, error) {
	v, err := c.rdb.Get(ctx, c.key(id)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", time.Time{}, nil
	case err != nil:
		return "", time.Time{}, fmt.Errorf("%w: %w", errRedis, err)
	}
	at, tok, ok := strings.Cut(v, ":")
	ms, perr := strconv.ParseInt(at, 10, 64)
	refresh := time.UnixMilli(ms)
	if !ok || perr != nil || tok == "" || time.Now().After(refresh) {
		return "", time.Time{}, nil
	}
	return tok, refresh, nil
}

// fetchAndStore fetches a token under the lock and stores it for the
// cluster.
func (c *Cache) fetchAndStore(ctx context.Context, id string, fetch provider.FetchToken) (string, time.Time, error) {
	defer c.rdb.Del(context.WithoutCancel(ctx), c.lock(id))
	tok, ttl, err := fetch(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	refresh := time.Now().Add(ttl - refreshAhead(ttl))
	v := strconv.FormatInt(refresh.UnixMilli(), 10) + ":" + tok
	if err := c.rdb.Set(ctx, c.key(id), v, ttl).Err(); err != nil {
		c.log.Warn("token cache: could not share a token", slog.String("credential", id), slog.Any("error", err))
	}
	return tok, refresh, nil
}

// revokeScript deletes the cluster's token if it is still the refused one.
var revokeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, -string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// Revoke implements provider.Tokens.
func (c *Cache) Revoke(ctx context.Context, id, token string) {
	c.mu.Lock()
	if e, ok := c.local[id]; ok && e.token == token && e.err == nil {
		delete(c.local, id)
	}
	c.mu.Unlock()
	if c.rdb == nil {
		return
	}
	if err := revokeScript.Run(ctx, c.rdb, []string{c.key(id)}, ":"+token).Err(); err != nil && !errors.Is(err, redis.Nil) {
		c.log.Warn("token cache: could not revoke a token in Redis", slog.String("credential", id), slog.Any("error", err))
	}
}
