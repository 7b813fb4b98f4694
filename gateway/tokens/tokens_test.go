package tokens

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// issuer counts the tokens it issues.
type issuer struct {
	n     atomic.Int64
	delay time.Duration
	ttl   time.Duration
}

func (is *issuer) fetch(ctx context.Context) (string, time.Duration, error) {
	n := is.n.Add(1)
	select {
	case <-time.After(is.delay):
	case <-ctx.Done():
		return "", 0, ctx.Err()
	}
	return fmt.Sprintf("tok-%d", n), is.ttl, nil
}

// hammer asks caches for a token from many goroutines at once and
// returns the tokens they got.
func hammer(t *testing.T, caches []*Cache, id string, is *issuer, callers int) map[string]int {
	t.Helper()
	var (
		mu   sync.Mutex
		got  = map[string]int{}
		wg   sync.WaitGroup
		errs atomic.Int64
	)
	for i := range callers {
		wg.Go(func() {
			tok, err := caches[i%len(caches)].Token(context.Background(), id, is.fetch)
			if err != nil {
				errs.Add(1)
				return
			}
			mu.Lock()
			got[tok]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if errs.Load() > 0 {
		t.Fatalf("%d callers failed", errs.Load())
	}
	return got
}

// TestOneFetchPerCluster: three instances on one Redis, 300 concurrent
// callers: the issuer is asked once; after a revoke, once more.
func TestOneFetchPerCluster(t *testing.T) {
	rs := redistest.Start(t)
	var caches []*Cache
	for range 3 {
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
		t.Cleanup(func() { rdb.Close() })
		caches = append(caches, New(Config{Redis: rdb, Prefix: "t:"}))
	}
	is := &issuer{delay: 50 * time.Millisecond, ttl: time.Hour}
	got := hammer(t, caches, "qf#0", is, 300)
	if is.n.Load() != 1 || len(got) != 1 || got["tok-1"] != 300 {
		t.Fatalf("fetched %d times, tokens %v: want one fetch shared by all", is.n.Load(), got)
	}
	// What operators see: the token under its documented key, with a TTL.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	if ttl := rdb.PTTL(context.Background(), "t:token:{qf#0}").Val(); ttl < 59*time.Minute {
		t.Fatalf("token key TTL %s", ttl)
	}

	// Every instance saw the refusal of tok-1 and revokes it: one refresh.
	for _, c := range caches {
		c.Revoke(context.Background(), "qf#0", "tok-1")
	}
	got = hammer(t, caches, "qf#0", is, 300)
	if is.n.Load() != 2 || got["tok-2"] != 300 {
		t.Fatalf("after revoking: fetched %d times in all, tokens %v", is.n.Load(), got)
	}
	// A late revoke of the old token leaves the new one alone.
	caches[0].Revoke(context.Background(), "qf#0", "tok-1")
	if tok, _ := caches[1].Token(context.Background(), "qf#0", is.fetch); tok != "tok-2" || is.n.Load() != 2 {
		t.Fatalf("a stale revoke dropped the new token: %s, %d fetches", tok, is.n.Load())
	}
}

// TestRefreshBeforeExpiry: a token is replaced once a tenth of its life
// is left, not when it has expired; calls meanwhile get the old one at
// once instead of waiting for the refresh.
func TestRefreshBeforeExpiry(t *testing.T) {
	c := New(Config{})
	is := &issuer{ttl: time.Second, delay: 100 * time.Millisecond}
	first, _ := c.Token(context.Background(), "v#0", is.fetch)
	time.Sleep(920 * time.Millisecond) // past 90% of its life
	start := time.Now()
	during, _ := c.Token(context.Background(), "v#0", is.fetch)
	if during != first || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("during the refresh: %s after %s, want the old token at once", during, time.Since(start))
	}
	time.Sleep(150 * time.Millisecond)
	if after, _ := c.Token(context.Background(), "v#0", is.fetch); after == first || is.n.Load() != 2 {
		t.Fatalf("token %s not refreshed near its expiry (%d fetches)", after, is.n.Load())
	}
}

// TestFailedRefreshKeepsToken: a refresh that fails leaves the current
// token in use until it expires.
func TestFailedRefreshKeepsToken(t *testing.T) {
	c := New(Config{})
	var fail atomic.Bool
	n := 0
	fetch := func(context.Context) (string, time.Duration, error) {
		if fail.Load() {
			return "", 0, errors.New("issuer down")
		}
		n++
		return fmt.Sprintf("tok-%d", n), 500 * time.Millisecond, nil
	}
	first, _ := c.Token(context.Background(), "k#0", fetch)
	fail.Store(true)
	time.Sleep(460 * time.Millisecond) // refresh due
	for range 3 {
		if tok, err := c.Token(context.Background(), "k#0", fetch); tok != first || err != nil {
			t.Fatalf("%q %v: want the current token while it lives", tok, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(60 * time.Millisecond) // expired now
	if _, err := c.Token(context.Background(), "k#0", fetch); err == nil {
		t.Fatal("an expired token was served")
	}
}

// TestFetchPanics: a fetch that panics fails its calls; the process lives.
func TestFetchPanics(t *testing.T) {
	c := New(Config{})
	_, err := c.Token(context.Background(), "p#0", func(context.Context) (string, time.Duration, error) { panic("bug") })
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("err %v", err)
	}
}

// sealer is a reversible stand-in for the admin package's Sealer.
type sealer struct{}

func (sealer) Seal(p string) (string, error) { return "sealed:" + reverse(p), nil }
func (sealer) Open(s string) (string, error) {
	r, ok := strings.CutPrefix(s, "sealed:")
	if !ok {
		return "", errors.New("not sealed")
	}
	return reverse(r), nil
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// TestSealedInRedis: with a Sealer, Redis holds no token in the clear,
// and another instance with the same key reads it.
func TestSealedInRedis(t *testing.T) {
	rs := redistest.Start(t)
	var caches []*Cache
	for range 2 {
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
		t.Cleanup(func() { rdb.Close() })
		caches = append(caches, New(Config{Redis: rdb, Sealer: sealer{}}))
	}
	is := &issuer{ttl: time.Hour}
	tok, _ := caches[0].Token(context.Background(), "s#0", is.fetch)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	if v := rdb.Get(context.Background(), "sluice:token:{s#0}").Val(); strings.Contains(v, tok) || !strings.Contains(v, "sealed:") {
		t.Fatalf("stored %q", v)
	}
	if other, _ := caches[1].Token(context.Background(), "s#0", is.fetch); other != tok || is.n.Load() != 1 {
		t.Fatalf("second instance got %q after %d fetches", other, is.n.Load())
	}
}

// TestFailedFetchIsRemembered: a refused fetch fails the calls behind it
// without asking the issuer again at once.
func TestFailedFetchIsRemembered(t *testing.T) {
	c := New(Config{})
	var n atomic.Int64
	fail := func(context.Context) (string, time.Duration, error) {
		n.Add(1)
		return "", 0, errors.New("qianfan: token refused (HTTP 401): invalid_client")
	}
	for range 5 {
		if _, err := c.Token(context.Background(), "bad#0", fail); err == nil || !strings.Contains(err.Error(), "invalid_client") {
			t.Fatalf("error %v", err)
		}
	}
	if n.Load() != 1 {
		t.Fatalf("issuer asked %d times, want 1", n.Load())
	}
}

// TestRedisDown: with Redis unreachable each instance fetches its own
// token, and calls are served.
func TestRedisDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	defer rdb.Close()
	c := New(Config{Redis: rdb})
	is := &issuer{ttl: time.Hour}
	if tok, err := c.Token(context.Background(), "x#0", is.fetch); err != nil || tok != "tok-1" {
		t.Fatalf("%q %v", tok, err)
	}
}

// TestCallerGivesUp: a caller whose context ends stops waiting; the fetch
// goes on for the others.
func TestCallerGivesUp(t *testing.T) {
	c := New(Config{})
	is := &issuer{delay: 200 * time.Millisecond, ttl: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Token(ctx, "s#0", is.fetch); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if tok, err := c.Token(context.Background(), "s#0", is.fetch); err != nil || tok != "tok-1" || is.n.Load() != 1 {
		t.Fatalf("%q %v after %d fetches", tok, err, is.n.Load())
	}
}
