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

// cluster starts n breaker sets sharing one Redis, each running.
func cluster(t *testing.T, n int, cfg Config) []*Set {
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	prefix := fmt.Sprintf("t%d:", time.Now().UnixNano())
	var sets []*Set
	for i := range n {
		c := cfg
		c.Instance = fmt.Sprint("inst-", i)
		c.Sharer = NewRedis(srv.Client(t), RedisConfig{Prefix: prefix, Resync: 200 * time.Millisecond})
		s := New(c)
		go s.Run(ctx)
		sets = append(sets, s)
	}
	time.Sleep(100 * time.Millisecond) // subscriptions in place
	return sets
}

func TestSharedOpenPropagates(t *testing.T) {
	sets := cluster(t, 3, Config{Failures: 3, OpenTimeout: time.Hour})
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
	sets := cluster(t, 3, Config{Failures: 1, OpenTimeout: 300 * time.Millisecond})
	call(t, sets[0], "cred", errUpstream)
	time.Sleep(400 * time.Millisecond) // open everywhere, then half-open

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
	sets := cluster(t, 2, Config{Failures: 1, OpenTimeout: 200 * time.Millisecond})
	call(t, sets[0], "cred", errUpstream)
	time.Sleep(300 * time.Millisecond)
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
