// Package tokens caches the access tokens that some upstreams issue for a
// credential's secrets (Qianfan's OAuth tokens, Vertex AI's service
// account tokens, the API keys Volcengine Ark's control plane issues).
//
// A Cache keeps each token in the process until shortly before it
// expires, and fetches it once at a time however many calls want it. With
// Redis it also shares tokens with the cluster: a process that has none
// reads the cluster's, and only one process at a time fetches a new one
// for a credential (a lock, SET NX with a value only its holder deletes),
// the others waiting for it to appear. A token the upstream refused is
// revoked (compare and delete), so that one refresh replaces it for
// everyone, and is never served again by this process.
package tokens

import (
	"context"
	"crypto/rand"
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

// Sealer encrypts values kept in Redis (the admin package's, keyed by
// SLUICE_SECRET_KEY).
type Sealer interface {
	Seal(plain string) (string, error)
	Open(sealed string) (string, error)
}

// Config configures a Cache.
type Config struct {
	// Redis, when set, shares tokens across the cluster.
	Redis redis.UniversalClient
	// Prefix is the Redis key prefix ("sluice:" by default).
	Prefix string
	// Sealer, when set, encrypts the tokens stored in Redis.
	Sealer Sealer
	// Logger reports Redis failures (the cache then works per process).
	Logger *slog.Logger
	// Wait bounds the wait for another instance's fetch, after which this
	// instance fetches on its own. Default 25 s: longer than a fetch may
	// take (lockTTL), so that only a dead instance's lock is waited out.
	Wait time.Duration
}

// Cache is a provider.Tokens. The zero value is not usable: use New.
type Cache struct {
	rdb    redis.UniversalClient // nil: this process only
	prefix string
	sealer Sealer
	log    *slog.Logger
	wait   time.Duration

	mu      sync.Mutex
	local   map[string]entry
	flights map[string]*flight
	revoked map[string]string // the last token refused, per key: never served again
}

// entry is a cached token, or a failed fetch.
type entry struct {
	token   string
	err     error     // the last fetch failed: calls fail with err until refresh (unless token is still live)
	refresh time.Time // when to fetch anew: before the token expires, or after a failure's backoff
	expires time.Time // when the token stops working
}

// flight is one fetch in progress in this process.
type flight struct {
	done  chan struct{}
	token string
	err   error
}

// Timing. lockTTL outlasts a token request (15 s in the adapters), so that
// a slow fetch keeps its lock; failBackoff keeps a refused fetch from being
// retried by every call.
const (
	lockTTL     = 20 * time.Second
	poll        = 25 * time.Millisecond
	failBackoff = 2 * time.Second
)

// New returns a Cache.
func New(cfg Config) *Cache {
	c := &Cache{rdb: cfg.Redis, prefix: cfg.Prefix, sealer: cfg.Sealer, log: cfg.Logger, wait: cfg.Wait,
		local: map[string]entry{}, flights: map[string]*flight{}, revoked: map[string]string{}}
	if c.prefix == "" {
		c.prefix = "sluice:"
	}
	if c.wait <= 0 {
		c.wait = lockTTL + 5*time.Second
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
	// A flight that began before a revoke may bring back the refused
	// token: then one more flight, which cannot.
	for range 2 {
		f, tok, err, cached := c.join(ctx, id, fetch)
		if cached {
			return tok, err
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		if f.err != nil || !c.isRevoked(id, f.token) {
			return f.token, f.err
		}
	}
	return "", fmt.Errorf("token for %s: refused by the upstream, and no other could be had", id)
}

// join returns the cached token, or the flight fetching one (starting it).
func (c *Cache) join(ctx context.Context, id string, fetch provider.FetchToken) (f *flight, tok string, err error, cached bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	e, ok := c.local[id]
	live := ok && e.token != "" && now.Before(e.expires)
	switch {
	case live && now.Before(e.refresh):
		return nil, e.token, nil, true
	case ok && !live && e.err != nil && now.Before(e.refresh):
		return nil, "", e.err, true
	}
	f, running := c.flights[id]
	if !running {
		f = &flight{done: make(chan struct{})}
		c.flights[id] = f
		// The fetch outlives the call that started it: the others wait
		// on it, and it stores the token for the calls to come.
		go c.run(context.WithoutCancel(ctx), id, fetch, f)
	}
	if live {
		// Due for refresh but still working: served while the refresh
		// runs, so that no call waits for it.
		return nil, e.token, nil, true
	}
	return f, "", nil, false
}

// isRevoked reports whether tok is the last token refused for id.
func (c *Cache) isRevoked(id, tok string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return tok != "" && c.revoked[id] == tok
}

// run performs one flight and stores what it got.
func (c *Cache) run(ctx context.Context, id string, fetch provider.FetchToken, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, c.wait+lockTTL)
	defer cancel()
	e, err := c.obtainSafely(ctx, id, fetch)
	now := time.Now()
	c.mu.Lock()
	old := c.local[id]
	switch {
	case err == nil && e.token == c.revoked[id]:
		// Read back from Redis before the revoke reached it: not kept.
	case err == nil:
		c.local[id] = e
	case old.token != "" && now.Before(old.expires):
		// A failed refresh: the token still works until it expires.
		c.log.Warn("token refresh failed; the current token is kept until it expires",
			slog.String("credential", id), slog.Any("error", err))
		old.refresh = now.Add(failBackoff)
		c.local[id] = old
		e, err = old, nil
	default:
		c.local[id] = entry{err: err, refresh: now.Add(failBackoff)}
	}
	c.sweep(now)
	delete(c.flights, id)
	c.mu.Unlock()
	f.token, f.err = e.token, err
	close(f.done)
}

// sweep drops expired tokens and stale failures (c.mu held): credentials
// removed by a reload leave nothing behind.
func (c *Cache) sweep(now time.Time) {
	for id, e := range c.local {
		if (e.token != "" && now.After(e.expires)) || (e.token == "" && now.After(e.refresh)) {
			delete(c.local, id)
		}
	}
}

// obtainSafely is obtain, with a panic of fetch turned into an error: it
// runs on a goroutine of its own.
func (c *Cache) obtainSafely(ctx context.Context, id string, fetch provider.FetchToken) (e entry, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("token for %s: fetch panicked: %v", id, r)
		}
	}()
	return c.obtain(ctx, id, fetch)
}

// obtain returns the cluster's token, or fetches one.
func (c *Cache) obtain(ctx context.Context, id string, fetch provider.FetchToken) (entry, error) {
	if c.rdb == nil {
		return fetchNow(ctx, fetch)
	}
	e, err := c.shared(ctx, id, fetch)
	if errors.Is(err, errRedis) {
		c.log.Warn("token cache: Redis unavailable, fetching for this instance", slog.String("credential", id), slog.Any("error", err))
		return fetchNow(ctx, fetch)
	}
	return e, err
}

// fetchNow fetches a token and computes when to replace it.
func fetchNow(ctx context.Context, fetch provider.FetchToken) (entry, error) {
	tok, ttl, err := fetch(ctx)
	if err != nil {
		return entry{}, err
	}
	now := time.Now()
	return entry{token: tok, refresh: now.Add(ttl - refreshAhead(ttl)), expires: now.Add(ttl)}, nil
}

// errRedis marks a failure of Redis itself.
var errRedis = errors.New("redis")

// Keys: {prefix}token:{id} holds "<refresh unix ms>:<expiry unix ms>:
// <token>" (the token sealed when a Sealer is set) with the token's life
// as TTL; {prefix}token:{id}:lock is the fetch lock. Both share the id's
// hash tag.
func (c *Cache) key(id string) string  { return c.prefix + "token:{" + id + "}" }
func (c *Cache) lock(id string) string { return c.key(id) + ":lock" }

// shared reads the cluster's token, or fetches it as the one instance
// holding the lock, or waits for the instance that does: up to c.wait,
// then fetches on its own.
func (c *Cache) shared(ctx context.Context, id string, fetch provider.FetchToken) (entry, error) {
	deadline := time.Now().Add(c.wait)
	owner := rand.Text()
	for {
		e, err := c.read(ctx, id)
		if err != nil || e.token != "" {
			return e, err
		}
		got, err := c.rdb.SetNX(ctx, c.lock(id), owner, lockTTL).Result()
		if err != nil {
			return entry{}, fmt.Errorf("%w: %w", errRedis, err)
		}
		if got {
			return c.fetchAndStore(ctx, id, owner, fetch)
		}
		if time.Now().After(deadline) {
			c.log.Warn("token cache: another instance's fetch did not finish; fetching here", slog.String("credential", id))
			return fetchNow(ctx, fetch)
		}
		select {
		case <-time.After(poll):
		case <-ctx.Done():
			return entry{}, ctx.Err()
		}
	}
}

// read returns the cluster's token, or a zero entry when there is none
// fresh (or only the one this process saw refused).
func (c *Cache) read(ctx context.Context, id string) (entry, error) {
	v, err := c.rdb.Get(ctx, c.key(id)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return entry{}, nil
	case err != nil:
		return entry{}, fmt.Errorf("%w: %w", errRedis, err)
	}
	e, ok := c.parse(v)
	if !ok || time.Now().After(e.refresh) || c.isRevoked(id, e.token) {
		return entry{}, nil
	}
	return e, nil
}

// parse reads a stored value: "<refresh ms>:<expiry ms>:<token>". A value
// that does not parse, or was sealed with another key, is none.
func (c *Cache) parse(v string) (entry, bool) {
	refreshMS, rest, ok1 := strings.Cut(v, ":")
	expiresMS, tok, ok2 := strings.Cut(rest, ":")
	r, err1 := strconv.ParseInt(refreshMS, 10, 64)
	x, err2 := strconv.ParseInt(expiresMS, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || tok == "" {
		return entry{}, false
	}
	if c.sealer != nil {
		var err error
		if tok, err = c.sealer.Open(tok); err != nil {
			return entry{}, false
		}
	}
	return entry{token: tok, refresh: time.UnixMilli(r), expires: time.UnixMilli(x)}, true
}

// releaseScript deletes a lock if its caller still holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// fetchAndStore fetches a token under the lock and stores it for the
// cluster. It reads once more first: the token may have been stored
// between this instance's read and its taking the lock.
func (c *Cache) fetchAndStore(ctx context.Context, id, owner string, fetch provider.FetchToken) (entry, error) {
	defer releaseScript.Run(context.WithoutCancel(ctx), c.rdb, []string{c.lock(id)}, owner)
	if e, err := c.read(ctx, id); err != nil || e.token != "" {
		return e, err
	}
	e, err := fetchNow(ctx, fetch)
	if err != nil {
		return entry{}, err
	}
	stored := e.token
	if c.sealer != nil {
		if stored, err = c.sealer.Seal(e.token); err != nil {
			c.log.Warn("token cache: could not seal a token; it is kept by this instance only", slog.String("credential", id), slog.Any("error", err))
			return e, nil
		}
	}
	v := strconv.FormatInt(e.refresh.UnixMilli(), 10) + ":" + strconv.FormatInt(e.expires.UnixMilli(), 10) + ":" + stored
	if err := c.rdb.Set(ctx, c.key(id), v, time.Until(e.expires)).Err(); err != nil {
		c.log.Warn("token cache: could not share a token", slog.String("credential", id), slog.Any("error", err))
	}
	return e, nil
}

// revokeScript deletes the cluster's token if it is still the refused one.
var revokeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// Revoke implements provider.Tokens. The token is remembered as refused
// first, so that no flight in progress can bring it back.
func (c *Cache) Revoke(ctx context.Context, id, token string) {
	c.mu.Lock()
	c.revoked[id] = token
	if e, ok := c.local[id]; ok && e.token == token {
		delete(c.local, id)
	}
	c.mu.Unlock()
	if c.rdb == nil {
		return
	}
	v, err := c.rdb.Get(ctx, c.key(id)).Result()
	if err != nil {
		return // none stored, or Redis is away: nothing to revoke there
	}
	if e, _ := c.parse(v); e.token != token {
		return // already replaced
	}
	if err := revokeScript.Run(ctx, c.rdb, []string{c.key(id)}, v).Err(); err != nil && !errors.Is(err, redis.Nil) {
		c.log.Warn("token cache: could not revoke a token in Redis", slog.String("credential", id), slog.Any("error", err))
	}
}
