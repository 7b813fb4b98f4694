package quota

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// backend builds a fresh limiter on a clock.
type backend struct {
	name string
	new  func(t *testing.T, clk *clock) testLimiter
}

var prefixSeq atomic.Int64

// uniquePrefix keeps the state of each case apart on a shared server.
func uniquePrefix() string { return fmt.Sprintf("t%d:", prefixSeq.Add(1)) }

// backends returns the memory backend and the Redis backend on a real
// redis-server, standalone and as a three-master Cluster.
func backends(t *testing.T) []backend {
	single := redistest.Start(t).Client(t)
	cluster := redistest.StartCluster(t).Client(t)
	onRedis := func(c redis.Scripter) func(t *testing.T, clk *clock) testLimiter {
		return func(t *testing.T, clk *clock) testLimiter {
			return NewRedis(c, RedisConfig{Prefix: uniquePrefix(), Clock: clk.Now, Timeout: 5 * time.Second})
		}
	}
	return []backend{
		{"memory", func(t *testing.T, clk *clock) testLimiter { return NewMemory(MemoryConfig{Now: clk.Now}) }},
		{"redis", onRedis(single)},
		{"redis-cluster", onRedis(cluster)},
		{"lease", func(t *testing.T, clk *clock) testLimiter {
			r := NewRedis(single, RedisConfig{Prefix: uniquePrefix(), Clock: clk.Now, Timeout: 5 * time.Second})
			return flushing{NewLeased(r, LeaseConfig{Now: clk.Now}), r}
		}},
	}
}

// flushing writes settlements at once, as the background flush (every
// 20ms) does in a process: the tests' clock moves by seconds.
type flushing struct {
	*Leased
	r *Redis
}

func (f flushing) Settle(ctx context.Context, g Grant, used Amount) error {
	if err := f.Leased.Settle(ctx, g, used); err != nil {
		return err
	}
	return f.r.Flush(ctx)
}

// TestConformance runs every shared behaviour against every backend.
func TestConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range conformance {
				t.Run(c.name, func(t *testing.T) {
					clk := newClock()
					c.run(t, b.new(t, clk), clk)
				})
			}
		})
	}
}

// stickyMap is a StickyStore for the memory backend's tests.
type stickyMap struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *stickyMap) Get(_ context.Context, key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key], nil
}

func (s *stickyMap) Set(_ context.Context, key, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = id
	return nil
}

func TestSticky(t *testing.T) {
	srv := redistest.Start(t).Client(t)
	for _, b := range []backend{
		{"memory", func(t *testing.T, clk *clock) testLimiter {
			return NewMemory(MemoryConfig{Now: clk.Now, Sticky: &stickyMap{m: map[string]string{}}})
		}},
		{"redis", func(t *testing.T, clk *clock) testLimiter {
			return NewRedis(srv, RedisConfig{Prefix: uniquePrefix(), Clock: clk.Now})
		}},
	} {
		t.Run(b.name, func(t *testing.T) {
			l := b.new(t, newClock())
			cands := func(order ...string) []Candidate {
				var out []Candidate
				for _, id := range order {
					out = append(out, Candidate{ID: id, Limit: Limit{RPM: 3}})
				}
				return out
			}
			req := Request{Sticky: "client:abc", StickyTTL: time.Minute, Candidates: cands("a", "b", "c")}
			d := mustAcquire(t, l, req)
			if d.Grant.ID != "a" || d.StickyHit {
				t.Fatalf("first: %+v", d)
			}
			// Another order: the mapping wins, and Index is in the caller's order.
			req.Candidates = cands("c", "b", "a")
			d = mustAcquire(t, l, req)
			if d.Grant.ID != "a" || d.Grant.Index != 2 || !d.StickyHit {
				t.Fatalf("sticky: %+v", d.Grant)
			}
			// a fills up (3 per minute): the mapping moves to the next choice and stays there.
			mustAcquire(t, l, req)
			d = mustAcquire(t, l, req)
			if d.Grant.ID != "c" || !d.StickyHit {
				t.Fatalf("replaced: %+v hit=%v", d.Grant, d.StickyHit)
			}
			req.Candidates = cands("b", "a", "c")
			if d = mustAcquire(t, l, req); d.Grant.ID != "c" {
				t.Fatalf("the replacement must stick: %+v", d.Grant)
			}
			// A mapping to a credential that is not a candidate is ignored.
			req.Candidates = cands("b")
			if d = mustAcquire(t, l, req); d.Grant.ID != "b" || d.StickyHit {
				t.Fatalf("absent sticky: %+v", d)
			}
			// Only the top tier may be promoted: b is now mapped, but when
			// it sits in a lower tier the top tier is tried first.
			req.Candidates, req.StickyTier = cands("c", "b"), 1
			if d = mustAcquire(t, l, req); d.Grant.ID != "c" || d.StickyHit {
				t.Fatalf("a sticky credential below the top tier must not jump it: %+v", d.Grant)
			}
		})
	}
}

// TestRedisLeasesExpire checks that a concurrency slot taken by an
// instance that died (never settled, never renewed) frees itself.
func TestRedisLeasesExpire(t *testing.T) {
	c := redistest.Start(t).Client(t)
	clk := newClock()
	prefix := uniquePrefix()
	dead := NewRedis(c, RedisConfig{Prefix: prefix, Clock: clk.Now, LeaseTTL: 10 * time.Second})
	alive := NewRedis(c, RedisConfig{Prefix: prefix, Clock: clk.Now, LeaseTTL: 10 * time.Second})
	req := one("a", Limit{Concurrency: 2})
	g1, g2 := mustAcquire(t, dead, req), mustAcquire(t, alive, req)
	if !g1.Allowed || !g2.Allowed || mustAcquire(t, alive, req).Allowed {
		t.Fatal("two slots")
	}
	// The alive instance renews its lease; the dead one cannot.
	clk.Advance(6 * time.Second)
	if err := alive.RenewLeases(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(6 * time.Second)
	d := mustAcquire(t, alive, req)
	if !d.Allowed {
		t.Fatal("the dead instance's slot must have expired")
	}
	if mustAcquire(t, alive, req).Allowed {
		t.Fatal("the renewed slot must still be held")
	}
}

// TestRedisReservationsExpire checks that a token reservation of an
// instance that died before settling leaves the window with it.
func TestRedisReservationsExpire(t *testing.T) {
	c := redistest.Start(t).Client(t)
	clk := newClock()
	l := NewRedis(c, RedisConfig{Prefix: uniquePrefix(), Clock: clk.Now})
	req := one("a", Limit{TPM: 1000})
	req.Reserve = Amount{Tokens: 800}
	if !mustAcquire(t, l, req).Allowed {
		t.Fatal("first reservation")
	}
	if mustAcquire(t, l, req).Allowed {
		t.Fatal("1600 of 1000")
	}
	clk.Advance(61 * time.Second)
	if !mustAcquire(t, l, req).Allowed {
		t.Fatal("an unsettled reservation must leave the window")
	}
}

// TestRedisKeysShareOneSlot checks the Cluster-safe layout: every key a
// script touches hashes to one slot.
func TestRedisKeysShareOneSlot(t *testing.T) {
	k := Keys{Prefix: "sluice:", HashTag: "q"}
	keys := []string{k.Credential("openai#0"), k.Credential("weird{id}") + ":c", k.Pool("channel:x"), k.Client("team-a"), k.Sticky("ip:abc"), k.none()}
	for _, key := range keys {
		if !strings.HasPrefix(key, "sluice:{q}:") {
			t.Fatalf("key %q does not start with the hash tag", key)
		}
	}
	cl := redistest.StartCluster(t).Client(t)
	ctx := context.Background()
	slot, err := cl.ClusterKeySlot(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys[1:] {
		if s, _ := cl.ClusterKeySlot(ctx, key).Result(); s != slot {
			t.Fatalf("%s is in slot %d, not %d", key, s, slot)
		}
	}
}

// TestRedisSettleNeedsNoRoundTrip checks that settling is carried by the
// next acquire: one script run per request.
func TestRedisSettleNeedsNoRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	l := NewRedis(c, RedisConfig{Prefix: uniquePrefix()})
	ctx := context.Background()
	req := one("a", Limit{TPM: 100000, Concurrency: 10})
	req.Reserve = Amount{Tokens: 500}
	first := mustAcquire(t, l, req) // loads the script; never settled
	before := commandCalls(t, c)
	for range 50 {
		d := mustAcquire(t, l, req)
		if !d.Allowed {
			t.Fatalf("refused: %+v", d)
		}
		if err := l.Settle(ctx, d.Grant, Amount{Tokens: 20}); err != nil {
			t.Fatal(err)
		}
	}
	if calls := commandCalls(t, c) - before; calls != 50 {
		t.Fatalf("%d script runs for 50 acquire+settle pairs, want 50", calls)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	us, err := l.Usage(ctx, []Subject{{KindCredential, "a"}}, []Limit{req.Candidates[0].Limit})
	if err != nil {
		t.Fatal(err)
	}
	if u := us[0]; u.InFlight != 1 || u.Level("tpm").Remaining != 100000-first.Grant.Reserved.Tokens-50*20 {
		t.Fatalf("after settling: in flight %d, tpm remaining %d", u.InFlight, u.Level("tpm").Remaining)
	}
}

// TestRedisSettleUnderLoad: with the background flush running, a call
// that settles while others keep acquiring costs no script run of its
// own (the next acquire, 2 ms later, carries it); once the traffic stops,
// the last settlement is written within FlushInterval.
func TestRedisSettleUnderLoad(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	l := NewRedis(c, RedisConfig{Prefix: uniquePrefix(), FlushInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)
	req := one("a", Limit{TPM: 1 << 40})
	req.Reserve = Amount{Tokens: 500}
	mustAcquire(t, l, req) // loads the script
	_ = l.Flush(ctx)
	before := commandCalls(t, c)
	const n = 150 // 300 ms: 30 flush ticks, each finding a settlement 0–2 ms old
	for range n {
		d := mustAcquire(t, l, req)
		if !d.Allowed {
			t.Fatalf("refused: %+v", d)
		}
		_ = l.Settle(ctx, d.Grant, Amount{Tokens: 20})
		time.Sleep(2 * time.Millisecond)
	}
	calls := commandCalls(t, c) - before
	if calls > n+3 { // a few: a pause of the test longer than 10 ms
		t.Fatalf("%d script runs for %d acquire+settle pairs under load: the flush must leave them to the acquires", calls, n)
	}
	// The last settlements are written by the flush (which may be under
	// way when the queue looks empty): poll the count.
	want := int64(500 + n*20)
	var got int64
	for deadline := time.Now().Add(time.Second); ; {
		us, err := l.Usage(context.Background(), []Subject{{KindCredential, "a"}}, []Limit{req.Candidates[0].Limit})
		if err != nil {
			t.Fatal(err)
		}
		if got = (1 << 40) - us[0].Level("tpm").Remaining; got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tokens counted a second after the traffic stopped, want %d", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%d script runs for %d calls", calls, n)
}

// evalStat reads the server's EVALSHA calls and mean µs per call.
func evalStat(tb testing.TB, c *redis.Client) (calls int64, us float64) {
	tb.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:"); ok {
			for _, f := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "calls":
					fmt.Sscan(v, &calls)
				case "usec_per_call":
					fmt.Sscan(v, &us)
				}
			}
		}
	}
	return calls, us
}

// commandCalls reads how many EVALSHA and EVAL calls the server served.
func commandCalls(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
				var n int64
				fmt.Sscanf(rest, "calls=%d", &n)
				total += n
			}
		}
	}
	return total
}
