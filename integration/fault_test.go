package integration

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// timed is a result with the moment its request was sent.
type timed struct {
	result
	sent time.Duration // since the load began
	inst int           // which of the instances it went to
}

// offerTimed is offer, remembering when each request went out.
func offerTimed(t *testing.T, insts []*process, rate int, d time.Duration, model string, hdr ...string) []timed {
	t.Helper()
	var mu sync.Mutex
	var out []timed
	begin := time.Now()
	// One offer per tick, each recorded with its send time.
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; time.Since(begin) < d; i++ {
		<-tick.C
		sent := time.Since(begin)
		n := i % len(insts)
		wg.Go(func() {
			rs := offer(t, []*process{insts[n]}, 1000, time.Millisecond, model, hdr...)
			mu.Lock()
			for _, r := range rs {
				out = append(out, timed{result: r, sent: sent, inst: n})
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// TestRedisOutage stops Redis for 5 s under load: no request hangs or is
// lost, the fallback policy answers (and says so), and Redis-backed
// enforcement resumes by itself.
func TestRedisOutage(t *testing.T) {
	for _, tt := range []struct {
		policy   string
		outage   time.Duration
		statuses map[int]bool // statuses allowed during the outage
	}{
		{"local", 5 * time.Second, map[int]bool{200: true, 429: true}},
		{"closed", 2 * time.Second, map[int]bool{503: true}},
		{"open", 2 * time.Second, map[int]bool{200: true}},
	} {
		t.Run(tt.policy, func(t *testing.T) {
			srv := redistest.Start(t)
			up := start(t, "mockllm", "-addr", "127.0.0.1:0")
			insts := instances(t, 3, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
redis: {url: "redis://%s", timeout: 200ms, on_unavailable: %s}
channels: [{type: openai, base_url: "%s/v1", models: [m], credentials: [{id: c, limits: {qps: 30, burst: 30}}]}]
`, srv.Addr, tt.policy, up.url()))
			time.Sleep(6 * time.Second) // a heartbeat from each: they count three instances

			// When Redis went down and came back, since the load began.
			const stopAt = 2 * time.Second
			var stopped, restarted atomic.Int64
			restarted.Store(math.MaxInt64)
			begin := time.Now()
			go func() {
				time.Sleep(stopAt)
				srv.Stop()
				stopped.Store(int64(time.Since(begin)))
				time.Sleep(tt.outage)
				srv.Restart(t)
				restarted.Store(int64(time.Since(begin)))
			}()
			rs := offerTimed(t, insts, 60, stopAt+tt.outage+5*time.Second, "m")
			down, back := time.Duration(stopped.Load()), time.Duration(restarted.Load())
			if back == math.MaxInt64 {
				t.Fatal("Redis was not restarted while the load ran")
			}

			var during, after []timed
			for _, r := range rs {
				if r.err != nil {
					t.Fatalf("request sent at %v lost: %v", r.sent, r.err)
				}
				if r.took > 2*time.Second {
					t.Fatalf("request sent at %v took %v: it hung on the dead Redis", r.sent, r.took)
				}
				switch {
				case r.sent > down+300*time.Millisecond && r.sent < back:
					during = append(during, r)
				case r.sent > back+3*time.Second:
					after = append(after, r)
				}
			}
			ok, withMode := 0, 0
			for _, r := range during {
				if !tt.statuses[r.status] {
					t.Fatalf("during the outage: status %d under policy %s", r.status, tt.policy)
				}
				if r.status == 200 {
					ok++
				}
				if r.mode == tt.policy || r.status == 503 {
					withMode++
				}
			}
			t.Logf("policy %s: %d requests during the outage, %d admitted, %d showing the policy; %d after",
				tt.policy, len(during), ok, withMode, len(after))
			if withMode < len(during)*9/10 {
				t.Fatalf("only %d of %d answers during the outage show the policy", withMode, len(during))
			}
			if tt.policy == "local" {
				// Each of 3 instances enforces 30/3 QPS with burst 10.
				limit := 3 * (10 + 10*(tt.outage.Seconds()+0.5))
				if float64(ok) > limit {
					t.Fatalf("local policy admitted %d during %v, above %.0f", ok, tt.outage, limit)
				}
			}
			for _, r := range after {
				if r.mode != "" || r.status == 503 {
					t.Fatalf("Redis enforcement must resume by itself: a request sent at %v still got %d mode %q", r.sent, r.status, r.mode)
				}
			}
			if len(after) == 0 {
				t.Fatal("no requests after recovery")
			}
		})
	}
}
