package quota

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// fastClient gives up on a dead server quickly, as production settings do.
func fastClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, DialTimeout: 100 * time.Millisecond, ReadTimeout: 100 * time.Millisecond,
		WriteTimeout: 100 * time.Millisecond, PoolTimeout: 100 * time.Millisecond, MaxRetries: -1,
		ContextTimeoutEnabled: true,
	})
}

func TestResilientPolicies(t *testing.T) {
	srv := redistest.Start(t)
	c := fastClient(srv.Addr)
	defer c.Close()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	req := one("a", Limit{RPM: 30})

	newLimiter := func(p Policy) *Resilient {
		r := NewRedis(c, RedisConfig{Prefix: uniquePrefix()})
		return NewResilient(r, ResilientConfig{Policy: p, Instances: func() int { return 3 }, Probe: r.Probe, Logger: quiet})
	}
	local, open, closed := newLimiter(PolicyLocal), newLimiter(PolicyOpen), newLimiter(PolicyClosed)
	for _, l := range []*Resilient{local, open, closed} {
		if d := mustAcquire(t, l, req); !d.Allowed || d.Mode != "" {
			t.Fatalf("with Redis up: %+v", d)
		}
	}

	srv.Stop()
	start := time.Now()
	// local: each of 3 instances enforces 30/3 = 10 per minute.
	admitted := 0
	for range 20 {
		d, err := local.Acquire(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if d.Mode != "local" {
			t.Fatalf("mode %q", d.Mode)
		}
		if d.Allowed {
			admitted++
			_ = local.Settle(ctx, d.Grant, Amount{Tokens: 0})
		}
	}
	if admitted != 10 {
		t.Fatalf("local policy admitted %d, want 30/3 = 10", admitted)
	}
	if d, err := open.Acquire(ctx, req); err != nil || !d.Allowed || d.Mode != "open" {
		t.Fatalf("open policy: %+v %v", d, err)
	}
	if _, err := closed.Acquire(ctx, req); !IsBackendError(err) {
		t.Fatalf("closed policy must refuse with a backend error, got %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("requests waited %v on a dead Redis", time.Since(start))
	}
	if local.Outages() != 1 || !local.Degraded() || local.Errors() < 1 {
		t.Fatal("one outage, counted once")
	}

	srv.Restart(t)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go local.Run(runCtx)
	deadline := time.Now().Add(10 * time.Second)
	for local.Degraded() {
		if time.Now().After(deadline) {
			t.Fatal("did not switch back to Redis")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := mustAcquire(t, local, req); !d.Allowed || d.Mode != "" {
		t.Fatalf("after recovery: %+v", d)
	}
}

// TestResilientDoesNotFlapOnScriptErrors: a Redis that answers PING but
// refuses every script that writes (out of memory) is down for the
// request path; the limiter stays on its policy instead of going back
// and forth, and goes back once scripts succeed again.
func TestResilientDoesNotFlapOnScriptErrors(t *testing.T) {
	srv := redistest.Start(t)
	c := fastClient(srv.Addr)
	defer c.Close()
	admin := srv.Client(t)
	ctx := context.Background()
	shared := NewRedis(c, RedisConfig{Prefix: uniquePrefix()})
	l := NewResilient(shared, ResilientConfig{Probe: shared.Probe, ProbeEvery: 50 * time.Millisecond,
		MinDwell: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go l.Run(runCtx)
	req := one("a", Limit{RPM: 100000})
	if d := mustAcquire(t, l, req); !d.Allowed || d.Mode != "" {
		t.Fatalf("with Redis up: %+v", d)
	}

	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer admin.ConfigSet(ctx, "maxmemory", "0")
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING must still succeed: %v", err)
	}
	local := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		d := mustAcquire(t, l, req)
		if d.Mode == "local" {
			local++
		}
		_ = l.Settle(ctx, d.Grant, Amount{Tokens: 0})
	}
	if n := l.Outages(); n != 1 {
		t.Fatalf("%d outages while Redis refused every script: the limiter flapped", n)
	}
	if !l.Degraded() || local == 0 {
		t.Fatalf("the policy must decide while scripts fail (degraded %v, %d local decisions)", l.Degraded(), local)
	}

	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Degraded() {
		if time.Now().After(deadline) {
			t.Fatal("did not go back to Redis once scripts succeed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := mustAcquire(t, l, req); !d.Allowed || d.Mode != "" || l.Outages() != 1 {
		t.Fatalf("after recovery: %+v, %d outages", d, l.Outages())
	}
}

// TestResilientMinDwell: once down, the backend decides again no sooner
// than MinDwell after the outage began, however soon a probe succeeds.
func TestResilientMinDwell(t *testing.T) {
	now := time.Unix(1000, 0)
	probes := 0
	down := &flaky{}
	l := NewResilient(down, ResilientConfig{
		Probe:    func(context.Context) error { probes++; return nil },
		MinDwell: 2 * time.Second, Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler),
	})
	down.fail = true
	if d := mustAcquire(t, l, one("a", Limit{RPM: 10})); d.Mode != "local" {
		t.Fatalf("mode %q", d.Mode)
	}
	for _, step := range []time.Duration{0, time.Second, 999 * time.Millisecond} {
		now = now.Add(step)
		if l.ProbeOnce(context.Background()) {
			t.Fatalf("back after %v of a 2s dwell", step)
		}
	}
	if probes != 0 {
		t.Fatalf("probed %d times within the dwell", probes)
	}
	now = now.Add(time.Millisecond)
	if !l.ProbeOnce(context.Background()) || l.Degraded() || probes != 1 {
		t.Fatal("a successful probe after the dwell ends the outage")
	}
}

// TestResilientBudgetsNeedTheSharedStore: what was spent of a budget is
// known only to the shared store, so the local policy refuses what a
// budget governs (and serves everything else).
func TestResilientBudgetsNeedTheSharedStore(t *testing.T) {
	down := &flaky{fail: true}
	l := NewResilient(down, ResilientConfig{Logger: slog.New(slog.DiscardHandler)})
	budget := Limit{Windows: []Window{{Kind: Calendar, Unit: Cost, Limit: dollar, Period: Period{Every: Day}}}}
	budgeted := Request{Client: "c", ClientLimit: budget, Candidates: []Candidate{{ID: "a"}}}
	if d := mustAcquire(t, l, budgeted); d.Allowed || d.Scope != ScopeClient || d.Reason != ReasonBudget || d.Mode != "local" {
		t.Fatalf("a budgeted client during an outage: %+v", d)
	}
	grouped := Request{Client: "c", Group: "g", GroupLimit: budget, Candidates: []Candidate{{ID: "a"}}}
	if d := mustAcquire(t, l, grouped); d.Allowed || d.Scope != ScopeGroup {
		t.Fatalf("a budgeted group: %+v", d)
	}
	// A channel under a budget is passed over for one without.
	req := Request{Client: "c", ClientLimit: Limit{RPM: 10}, Candidates: []Candidate{
		{ID: "a", Pool: "ch", PoolLimit: budget}, {ID: "b"}}}
	if d := mustAcquire(t, l, req); !d.Allowed || d.Grant.ID != "b" || d.Grant.Index != 1 || d.Grant.ClientLimit.RPM != 10 {
		t.Fatalf("the channel without a budget: %+v", d)
	}
	req.Candidates = req.Candidates[:1]
	if d := mustAcquire(t, l, req); d.Allowed || d.Reason != ReasonBudget || d.Scope != ScopeCredential {
		t.Fatalf("only a budgeted channel: %+v", d)
	}
}

// flaky is a Limiter whose backend fails while fail is set.
type flaky struct{ fail bool }

func (f *flaky) Acquire(context.Context, Request) (Decision, error) {
	if f.fail {
		return Decision{}, ErrBackend
	}
	return Decision{Allowed: true}, nil
}
func (f *flaky) Settle(context.Context, Grant, Amount) error           { return nil }
func (f *flaky) Cooldown(context.Context, string, time.Duration) error { return nil }

func TestMembers(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	cfg := MembersConfig{Prefix: uniquePrefix(), TTL: 500 * time.Millisecond}
	a := NewMembers(c, Member{ID: "a", Addr: "10.0.0.1:8080", Version: "v1", Started: time.Now()}, cfg)
	b := NewMembers(c, Member{ID: "b", Addr: "10.0.0.2:8080", Version: "v1", Started: time.Now()}, cfg)
	if err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Count() != 2 {
		t.Fatalf("count %d", a.Count())
	}
	list, err := a.List(ctx)
	if err != nil || len(list) != 2 || list[1].Addr == "" {
		t.Fatalf("list %+v %v", list, err)
	}
	// b dies: it drops out after the TTL.
	time.Sleep(600 * time.Millisecond)
	if err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if list, _ := a.List(ctx); len(list) != 1 || list[0].ID != "a" || a.Count() != 1 {
		t.Fatalf("after b's death: %+v", list)
	}
}
