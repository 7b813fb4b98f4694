package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

func TestEventEncoding(t *testing.T) {
	for _, e := range []Event{
		{ID: "openai#0", Open: true, For: 30 * time.Second, Failures: 5, From: "inst-a", Trip: "t1"},
		{ID: "weird|id|with|bars", Open: true, For: time.Millisecond, Failures: 1, From: "b", Trip: "t2"},
		{ID: "x|y", From: "c"},
	} {
		got, ok := decode(encode(e))
		if !ok || got != e {
			t.Fatalf("round trip of %+v gave %+v", e, got)
		}
	}
	for _, bad := range []string{"", "opened|x", "closed", "opened|a|notanumber|1|b|t", "open|a|1700000000000|1|b", "nonsense|a|b"} {
		if _, ok := decode(bad); ok {
			t.Fatalf("decoded garbage %q", bad)
		}
	}
}

// cluster starts n breaker sets sharing one Redis, each running on its
// own clock: instance i's is i hours ahead, since clocks must not matter.
// Advancing clk moves every set's clock.
func cluster(t *testing.T, n int, cfg Config) ([]*Set, *clock) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	prefix := fmt.Sprintf("t%d:", time.Now().UnixNano())
	clk := newClock()
	var sets []*Set
	for i := range n {
		c := cfg
		c.Instance = fmt.Sprint("inst-", i)
		c.Sharer = NewRedis(srv.Client(t), RedisConfig{Prefix: prefix, Resync: 200 * time.Millisecond})
		skew := time.Duration(i) * time.Hour
		c.Now = func() time.Time { return clk.Now().Add(skew) }
		s := New(c)
		go s.Run(ctx)
		sets = append(sets, s)
	}
	admin := srv.Client(t)
	waitFor(t, "every set subscribed", func() bool {
		subs, err := admin.PubSubNumSub(context.Background(), prefix+"{brk}:events").Result()
		return err == nil && subs[prefix+"{brk}:events"] == int64(n)
	})
	return sets, clk
}

func TestSharedOpenPropagates(t *testing.T) {
	sets, _ := cluster(t, 3, Config{Failures: 3, OpenTimeout: time.Hour})
	a, b, c := sets[0], sets[1], sets[2]
	for range 3 {
		call(t, a, "cred", errUpstream)
	}
	opened := time.Now()
	if a.State("cred") != Open {
		t.Fatal("a must be open")
	}
	for _, s := range []*Set{b, c} {
		for s.State("cred") != Open {
			if time.Since(opened) > 2*time.Second {
				t.Fatal("the open breaker did not reach the other instances")
			}
			time.Sleep(time.Millisecond)
		}
	}
	took := time.Since(opened)
	t.Logf("open breaker seen by the others after %v", took)
	if took > 100*time.Millisecond {
		t.Fatalf("propagation took %v, want < 100ms", took)
	}
	if err := call(t, b, "cred", nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("b must refuse: %v", err)
	}
}

func TestSharedHalfOpenSendsOneProbe(t *testing.T) {
	sets, clk := cluster(t, 3, Config{Failures: 1, OpenTimeout: 30 * time.Second})
	call(t, sets[0], "cred", errUpstream)
	for _, s := range sets {
		waitFor(t, "open everywhere", func() bool { return s.State("cred") == Open })
	}
	clk.Advance(30 * time.Second) // then half-open, everywhere at once

	var granted atomic.Int64
	var mu sync.Mutex
	var dones []func(error)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			done, err := sets[i%3].Allow(context.Background(), "cred")
			if err == nil {
				granted.Add(1)
				mu.Lock()
				dones = append(dones, done)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if granted.Load() != 1 {
		t.Fatalf("%d probes went out across the cluster, want exactly 1", granted.Load())
	}
	dones[0](nil) // the probe succeeds: closed everywhere
	for _, s := range sets {
		deadline := time.Now().Add(2 * time.Second)
		for s.State("cred") != Closed {
			if time.Now().After(deadline) {
				t.Fatalf("%s still %v after the successful probe", s.cfg.Instance, s.State("cred"))
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := call(t, s, "cred", nil); err != nil {
			t.Fatalf("closed breaker refused: %v", err)
		}
	}
}

func TestSharedProbeFailureReopens(t *testing.T) {
	sets, clk := cluster(t, 2, Config{Failures: 1, OpenTimeout: 20 * time.Second})
	call(t, sets[0], "cred", errUpstream)
	waitFor(t, "open on the other instance", func() bool { return sets[1].State("cred") == Open })
	clk.Advance(20 * time.Second)
	done, err := sets[1].Allow(context.Background(), "cred")
	if err != nil {
		t.Fatalf("the probe: %v", err)
	}
	done(errUpstream)
	for _, s := range sets {
		deadline := time.Now().Add(2 * time.Second)
		for s.State("cred") != Open {
			if time.Now().After(deadline) {
				t.Fatal("a failed probe must open the breaker again everywhere")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestSharedOpenTimedByRedis: how long a breaker stays open is kept by
// Redis, as a key's time to live: an instance that learns of it late (or
// from a snapshot) gets what is left, whatever its own clock says.
func TestSharedOpenTimedByRedis(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	r := NewRedis(c, RedisConfig{Prefix: "ttl:"})
	e := Event{ID: "cred", Open: true, For: 30 * time.Second, Failures: 5, From: "inst-a", Trip: "t1"}
	if err := r.Publish(ctx, e); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, "ttl:{brk}:open:cred").Val(); ttl <= 29*time.Second || ttl > 30*time.Second {
		t.Fatalf("the open key's time to live is %v, want the open timeout", ttl)
	}
	open, err := r.Open(ctx)
	if err != nil || len(open) != 1 || open[0].ID != "cred" || open[0].Trip != "t1" || open[0].For <= 29*time.Second {
		t.Fatalf("open breakers %+v %v", open, err)
	}
	// A late instance, its clock a day off, is open for what is left.
	clk := newClock()
	late := New(Config{OpenTimeout: time.Minute, Now: func() time.Time { return clk.Now().Add(24 * time.Hour) }})
	late.reconcile(open)
	if late.State("cred") != Open {
		t.Fatal("open from the snapshot")
	}
	clk.Advance(open[0].For)
	if late.State("cred") != HalfOpen {
		t.Fatalf("after what was left: %v", late.State("cred"))
	}
	// The same trip seen again never extends it.
	late.reconcile(open)
	if late.State("cred") != HalfOpen {
		t.Fatal("a snapshot of the same trip extended it")
	}
	// Once the key expired, the breaker is listed half-open until closed.
	c.PExpire(ctx, "ttl:{brk}:open:cred", time.Millisecond)
	waitFor(t, "the open key expired", func() bool { return c.Exists(ctx, "ttl:{brk}:open:cred").Val() == 0 })
	if open, _ := r.Open(ctx); len(open) != 1 || open[0].For != 0 {
		t.Fatalf("half-open: %+v", open)
	}
	if err := r.Publish(ctx, Event{ID: "cred", From: "inst-b"}); err != nil {
		t.Fatal(err)
	}
	if open, _ := r.Open(ctx); len(open) != 0 {
		t.Fatalf("closed: %+v", open)
	}
}
