// Package affinity remembers which credential served a sticky key (a
// client IP, a session header, a client key), so that the next request
// with the same key goes to the same credential while the mapping is
// fresh. Each use slides the mapping's time to live.
package affinity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Store maps sticky keys to credential IDs with a sliding TTL.
type Store interface {
	// Get returns the credential last stored for key ("" if none or
	// expired) and restarts its TTL.
	Get(ctx context.Context, key string) (string, error)
	// Set maps key to credential id for one TTL.
	Set(ctx context.Context, key, id string) error
}

// Key derives the stored key for a sticky value of some kind ("ip",
// "header", "client"). The value is hashed: client keys are secrets and
// IP addresses are personal data, and neither belongs in a store that
// operators browse.
func Key(kind, value string) string {
	sum := sha256.Sum256([]byte(value))
	return kind + ":" + hex.EncodeToString(sum[:12])
}

// ClientIP returns the address of the client behind a chain of trusted
// proxies. remote is the peer address of the connection ("ip:port" or
// "ip"), forwardedFor the X-Forwarded-For header values in order. Hops are
// taken from the right while they are trusted proxies; the first untrusted
// hop is the client. With no trusted proxies the peer address is the
// client, whatever the headers say.
func ClientIP(remote string, forwardedFor []string, trusted []netip.Prefix) string {
	addr, ok := parseAddr(remote)
	if !ok {
		return remote
	}
	if !isTrusted(addr, trusted) {
		return addr.String()
	}
	var hops []string
	for _, v := range forwardedFor {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseAddr(strings.TrimSpace(hops[i]))
		if !ok {
			break
		}
		addr = hop
		if !isTrusted(hop, trusted) {
			break
		}
	}
	return addr.String()
}

func parseAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return a.Unmap(), err == nil
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// MemoryConfig configures a Memory store. TTL zero means 10 minutes; Now
// nil means time.Now.
type MemoryConfig struct {
	TTL time.Duration
	Now func() time.Time
}

// Memory is a Store for one process.
type Memory struct {
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	entries   map[string]entry
	sweepSize int // sweep expired entries when the map grows past this
}

type entry struct {
	id      string
	expires time.Time
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store.
func NewMemory(cfg MemoryConfig) *Memory {
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Memory{ttl: cfg.TTL, now: cfg.Now, entries: make(map[string]entry), sweepSize: 1024}
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) (string, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok || !now.Before(e.expires) {
		return "", nil
	}
	e.expires = now.Add(m.ttl)
	m.entries[key] = e
	return e.id, nil
}

// Set implements Store.
func (m *Memory) Set(_ context.Context, key, id string) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[key] = entry{id: id, expires: now.Add(m.ttl)}
	if len(m.entries) > m.sweepSize {
		for k, e := range m.entries {
			if !now.Before(e.expires) {
				delete(m.entries, k)
			}
		}
		m.sweepSize = max(1024, 2*len(m.entries))
	}
	return nil
}

// Len returns how many live mappings the store holds.
func (m *Memory) Len() int {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.entries {
		if now.Before(e.expires) {
			n++
		}
	}
	return n
}
