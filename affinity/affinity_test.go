package affinity

import (
	"net/netip"
	"strings"
	"testing"
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
