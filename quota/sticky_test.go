package quota

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// The sticky mapping tests moved here from the affinity package with the
// mappings themselves.

func TestStickiesSlidingTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	m := newStickies(func() time.Time { return now })
	if id := m.get("k", time.Minute); id != "" {
		t.Fatalf("empty store returned %q", id)
	}
	m.set("k", "cred-1", time.Minute)
	now = now.Add(50 * time.Second)
	if id := m.get("k", time.Minute); id != "cred-1" {
		t.Fatalf("got %q", id)
	}
	now = now.Add(50 * time.Second) // 100 s after set, 50 s after the last use
	if id := m.get("k", time.Minute); id != "cred-1" {
		t.Fatal("each use must slide the TTL")
	}
	now = now.Add(61 * time.Second)
	if id := m.get("k", time.Minute); id != "" {
		t.Fatal("expired mapping returned")
	}
	if m.live() != 0 {
		t.Fatal("live counts expired entries")
	}
}

func TestStickiesSweepExpired(t *testing.T) {
	now := time.Unix(1000, 0)
	m := newStickies(func() time.Time { return now })
	for i := range 5000 {
		m.set("ip:"+strconv.Itoa(i), "c", time.Second)
		now = now.Add(time.Millisecond)
	}
	m.mu.Lock()
	n := len(m.entries)
	m.mu.Unlock()
	if n > 3000 {
		t.Fatalf("%d entries kept; expired ones must be swept", n)
	}
}

// TestRedisStickyCounts: the mappings the acquire script stores are
// counted per credential, and expire with their time to live.
func TestRedisStickyCounts(t *testing.T) {
	c := redistest.Start(t).Client(t)
	ctx := context.Background()
	r := NewRedis(c, RedisConfig{Prefix: uniquePrefix()})
	for _, s := range []struct {
		key, id string
		ttl     time.Duration
	}{{"k1", "cred-1", time.Minute}, {"k2", "cred-1", time.Minute}, {"k3", "cred-2", time.Minute}, {"k4", "cred-2", 50 * time.Millisecond}} {
		req := Request{Sticky: s.key, StickyTTL: s.ttl, Candidates: []Candidate{{ID: s.id, Limit: Limit{RPM: 100}}}}
		if d, err := r.Acquire(ctx, req); err != nil || !d.Allowed {
			t.Fatalf("acquire: %+v %v", d, err)
		}
	}
	if ttl := c.PTTL(ctx, r.Keys().Sticky("k1")).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("key layout or ttl: %v", ttl)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		counts, err := r.StickyCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if counts["cred-1"] == 2 && counts["cred-2"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts %v: want 2 for cred-1 and 1 for cred-2 once k4 expired", counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
