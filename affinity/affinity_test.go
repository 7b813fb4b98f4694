package affinity

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"direct client", "203.0.113.7:5000", nil, "203.0.113.7"},
		{"untrusted peer cannot spoof", "203.0.113.7:5000", []string{"1.2.3.4"}, "203.0.113.7"},
		{"one trusted proxy", "10.0.0.2:443", []string{"198.51.100.9"}, "198.51.100.9"},
		{"chain of trusted proxies", "10.0.0.2:443", []string{"198.51.100.9, 10.1.1.1", "10.2.2.2"}, "198.51.100.9"},
		{"spoofed left part ignored", "10.0.0.2:443", []string{"6.6.6.6, 198.51.100.9"}, "198.51.100.9"},
		{"trusted proxy without header", "10.0.0.2:443", nil, "10.0.0.2"},
		{"garbage hop stops the walk", "10.0.0.2:443", []string{"198.51.100.9, not-an-ip"}, "10.0.0.2"},
		{"ipv6 peer", "[::1]:8080", []string{"2001:db8::1"}, "2001:db8::1"},
		{"ipv4-mapped", "[::ffff:203.0.113.7]:1", nil, "203.0.113.7"},
		{"unparsable peer returned as is", "pipe", nil, "pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClientIP(tt.remote, tt.xff, trusted); got != tt.want {
				t.Fatalf("ClientIP = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestKeyHidesValue(t *testing.T) {
	k := Key("client", "sk-secret-value")
	if strings.Contains(k, "secret") || !strings.HasPrefix(k, "client:") {
		t.Fatalf("key %q", k)
	}
	if Key("client", "a") == Key("client", "b") || Key("ip", "a") == Key("client", "a") {
		t.Fatal("keys must differ by kind and value")
	}
}

func TestMemorySlidingTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	m := NewMemory(MemoryConfig{TTL: time.Minute, Now: func() time.Time { return now }})
	ctx := context.Background()
	if id, _ := m.Get(ctx, "k"); id != "" {
		t.Fatalf("empty store returned %q", id)
	}
	_ = m.Set(ctx, "k", "cred-1")
	now = now.Add(50 * time.Second)
	if id, _ := m.Get(ctx, "k"); id != "cred-1" {
		t.Fatalf("got %q", id)
	}
	now = now.Add(50 * time.Second) // 100 s after Set, 50 s after the last use
	if id, _ := m.Get(ctx, "k"); id != "cred-1" {
		t.Fatal("each use must slide the TTL")
	}
	now = now.Add(61 * time.Second)
	if id, _ := m.Get(ctx, "k"); id != "" {
		t.Fatal("expired mapping returned")
	}
	if m.Len() != 0 {
		t.Fatal("Len counts expired entries")
	}
}

func TestMemorySweepsExpired(t *testing.T) {
	now := time.Unix(1000, 0)
	m := NewMemory(MemoryConfig{TTL: time.Second, Now: func() time.Time { return now }})
	for i := range 5000 {
		_ = m.Set(context.Background(), Key("ip", string(rune(i))), "c")
		now = now.Add(time.Millisecond)
	}
	m.mu.Lock()
	n := len(m.entries)
	m.mu.Unlock()
	if n > 3000 {
		t.Fatalf("%d entries kept; expired ones must be swept", n)
	}
}

func TestRedisStore(t *testing.T) {
	c := redistest.Start(t).Client(t)
	ctx := context.Background()
	s := NewRedis(c, RedisConfig{Prefix: "t:", TTL: 300 * time.Millisecond})
	if id, err := s.Get(ctx, "k"); err != nil || id != "" {
		t.Fatalf("empty: %q %v", id, err)
	}
	if err := s.Set(ctx, "k", "cred-1"); err != nil {
		t.Fatal(err)
	}
	_ = s.Set(ctx, "k2", "cred-1")
	_ = s.Set(ctx, "k3", "cred-2")
	for range 3 { // used every 200ms: the 300ms TTL slides
		time.Sleep(200 * time.Millisecond)
		if id, _ := s.Get(ctx, "k"); id != "cred-1" {
			t.Fatal("each use must restart the TTL")
		}
	}
	counts, err := s.CountByCredential(ctx)
	if err != nil || counts["cred-1"] != 1 || counts["cred-2"] != 0 {
		t.Fatalf("after the others expired: %v %v", counts, err)
	}
	if ttl := c.PTTL(ctx, "t:{q}:aff:k").Val(); ttl <= 0 || ttl > 300*time.Millisecond {
		t.Fatalf("key layout or ttl: %v", ttl)
	}
}
