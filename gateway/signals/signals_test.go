package signals

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

func TestLocalAverage(t *testing.T) {
	b := New(Config{Alpha: 0.5})
	if _, ok := b.Latency("a"); ok {
		t.Fatal("nothing measured yet")
	}
	b.Observe("a", 100*time.Millisecond)
	b.Observe("a", 300*time.Millisecond)
	if d, ok := b.Latency("a"); !ok || d != 200*time.Millisecond {
		t.Fatalf("average %v, want 200ms", d)
	}
	var none *Board
	none.Observe("a", time.Second)
	if _, ok := none.Latency("a"); ok || none.Others("a") != 0 {
		t.Fatal("a nil board knows nothing")
	}
}

// TestClusterExchange: what one instance measures, another routes by;
// what one holds in flight, the other sees.
func TestClusterExchange(t *testing.T) {
	c := redistest.Start(t).Client(t)
	ctx := context.Background()
	busyA := map[string]int64{"cred-1": 7}
	a := New(Config{Alpha: 0.2, Store: &Redis{Client: c, Prefix: "t:", Instance: "a"}, InFlight: func() map[string]int64 { return busyA }})
	b := New(Config{Alpha: 0.2, Store: &Redis{Client: c, Prefix: "t:", Instance: "b"}, InFlight: func() map[string]int64 { return nil }})
	for range 5 {
		a.Observe("fast@m", 20*time.Millisecond)
		a.Observe("slow@m", 200*time.Millisecond)
	}
	a.Exchange(ctx)
	b.Exchange(ctx)
	fast, ok1 := b.Latency("fast@m")
	slow, ok2 := b.Latency("slow@m")
	if !ok1 || !ok2 || fast != 20*time.Millisecond || slow != 200*time.Millisecond {
		t.Fatalf("b sees fast %v %v, slow %v %v", fast, ok1, slow, ok2)
	}
	if b.Others("cred-1") != 7 || a.Others("cred-1") != 0 {
		t.Fatalf("in flight elsewhere: b sees %d, a %d (its own are not others')", b.Others("cred-1"), a.Others("cred-1"))
	}
	// b measures fast slowing down: n samples move the cluster's average
	// as n single samples would.
	for range 3 {
		b.Observe("fast@m", 400*time.Millisecond)
	}
	// Before the next exchange, b's own samples already count.
	if d, _ := b.Latency("fast@m"); d < 200*time.Millisecond {
		t.Fatalf("b's own samples: %v", d)
	}
	b.Exchange(ctx)
	a.Exchange(ctx)
	want := 20*time.Millisecond + time.Duration((1-0.8*0.8*0.8)*float64(380*time.Millisecond))
	if d, _ := a.Latency("fast@m"); d < want-time.Millisecond || d > want+time.Millisecond {
		t.Fatalf("a sees %v, want %v", d, want)
	}
	// An instance that stops publishing stops counting after the TTL.
	busyA = nil
	a.Exchange(ctx)
	b.Exchange(ctx)
	if b.Others("cred-1") != 0 {
		t.Fatalf("a's streams ended: b sees %d", b.Others("cred-1"))
	}
}
