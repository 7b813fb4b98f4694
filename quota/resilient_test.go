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
	ping := func(ctx context.Context) error { return c.Ping(ctx).Err() }
	req := one("a", Limit{RPM: 30})

	newLimiter := func(p Policy) *Resilient {
		return NewResilient(NewRedis(c, RedisConfig{Prefix: uniquePrefix()}),
			ResilientConfig{Policy: p, Instances: func() int { return 3 }, Ping: ping, Logger: quiet})
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
			_ = local.Settle(ctx, d.Grant, 0)
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
