package integration

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// TestActiveProbes: an open breaker is probed in the background, by one
// instance of the cluster, and the credential goes back into service
// without live traffic having to probe it.
func TestActiveProbes(t *testing.T) {
	srv := redistest.Start(t)
	var failing atomic.Bool
	var hits atomic.Int64
	failing.Store(true)
	answer := make(chan struct{})
	close(answer) // answers at once
	up := newFlakyUpstream(t, &failing, &hits, answer)
	insts := instances(t, 3, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
redis: {url: "redis://%s"}
admin: {token: %s}
breaker: {failures: 3, open_timeout: 1s, probe_interval: 200ms}
channels: [{name: flaky, type: openai, base_url: "%s/v1", models: [m], credentials: [{id: flaky}]}]
`, srv.Addr, itAdminToken, up))
	for range 3 {
		if s, _ := chatCall(t, insts[0], "", "m"); s != 502 {
			t.Fatalf("a failing upstream: %d", s)
		}
	}
	breakerOf := func(p *process) string {
		_, body := adminCall(t, p, "GET", "/api/channels", "")
		for _, state := range []string{"half-open", "open", "closed"} {
			if containsJSON(body, "breaker", state) {
				return state
			}
		}
		return body
	}
	for _, p := range insts {
		within(t, 2*time.Second, "open everywhere", func() bool { return breakerOf(p) == "open" })
	}
	// The upstream recovers; no client sends anything.
	failing.Store(false)
	before := hits.Load()
	took := within(t, 5*time.Second, "closed everywhere by a background probe", func() bool {
		for _, p := range insts {
			if breakerOf(p) != "closed" {
				return false
			}
		}
		return true
	})
	t.Logf("closed on every instance %v after the upstream recovered, by %d probe(s)", took, hits.Load()-before)
	if n := hits.Load() - before; n != 1 {
		t.Fatalf("%d probes reached the upstream, want exactly 1 across the cluster", n)
	}
	for _, p := range insts {
		if s, _ := chatCall(t, p, "", "m"); s != 200 {
			t.Fatalf("after the probe: %d", s)
		}
	}
}

// containsJSON reports whether a JSON text has "key": "value".
func containsJSON(body, key, value string) bool {
	return strings.Contains(body, fmt.Sprintf(`"%s": %q`, key, value)) || strings.Contains(body, fmt.Sprintf(`"%s":%q`, key, value))
}
