package integration

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
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

// offerTimed is offer, remembering when each request went out, until
// stop is closed.
func offerTimed(t *testing.T, insts []*process, rate int, stop <-chan struct{}, model string, hdr ...string) []timed {
	t.Helper()
	var mu sync.Mutex
	var out []timed
	begin := time.Now()
	// One offer per tick, each recorded with its send time.
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			wg.Wait()
			return out
		case <-tick.C:
		}
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
}

// onRedis reports whether every instance says Redis decides again: its
// sluice_quota_fallback gauge is 0.
func onRedis(insts []*process) bool {
	client := &http.Client{Timeout: 5 * time.Second}
	for _, p := range insts {
		resp, err := client.Get(p.url() + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		back := false
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "sluice_quota_fallback{") || strings.HasPrefix(l, "sluice_quota_fallback ") {
				back = strings.HasSuffix(strings.TrimSpace(l), " 0")
				break
			}
		}
		if !back {
			return false
		}
	}
	return true
}

// recoveryDeadline is how long after Redis answers again every instance
// must have gone back to it by itself. By design it takes about 1.5s (a
// probe every 500ms, go-redis redialing once a second); a starved machine
// stretches that, so the tests wait for the instances to say they are
// back, and judge every request sent from then on.
const recoveryDeadline = 30 * time.Second

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
			waitHeartbeats(t, srv.Client(t), 3) // each counts three instances

			// When Redis went down and came back, and when every instance
			// said it was back on Redis, since the load began. The load
			// goes on for 3s after that.
			const stopAt = 2 * time.Second
			var stopped, restarted, recovered atomic.Int64
			restarted.Store(math.MaxInt64)
			recovered.Store(math.MaxInt64)
			stop := make(chan struct{})
			begin := time.Now()
			go func() {
				defer close(stop)
				time.Sleep(stopAt)
				srv.Stop()
				stopped.Store(int64(time.Since(begin)))
				time.Sleep(tt.outage)
				srv.Restart(t)
				restarted.Store(int64(time.Since(begin)))
				if poll(recoveryDeadline, func() bool { return onRedis(insts) }) {
					recovered.Store(int64(time.Since(begin)))
				}
				time.Sleep(3 * time.Second)
			}()
			rs := offerTimed(t, insts, 60, stop, "m")
			down, back, rec := time.Duration(stopped.Load()), time.Duration(restarted.Load()), time.Duration(recovered.Load())
			if back == math.MaxInt64 {
				t.Fatal("Redis was not restarted while the load ran")
			}
			if rec == math.MaxInt64 {
				t.Fatalf("an instance still used the %s policy %v after Redis answered again: Redis-backed enforcement did not resume by itself", tt.policy, recoveryDeadline)
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
				case r.sent > rec:
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
			t.Logf("policy %s: %d requests during the outage, %d admitted, %d showing the policy; every instance back on Redis %v after it answered again; %d requests after that",
				tt.policy, len(during), ok, withMode, (rec - back).Round(time.Millisecond), len(after))
			if withMode < len(during)*9/10 {
				t.Fatalf("only %d of %d answers during the outage show the policy", withMode, len(during))
			}
			if tt.policy == "local" {
				// Each of 3 instances enforces 30/3 QPS with burst 10, over
				// the outage as it happened: the requests counted were sent
				// until Redis answered again, which the restart may delay
				// past the planned outage.
				limit := 3 * (10 + 10*((back-down).Seconds()+0.5))
				if float64(ok) > limit {
					t.Fatalf("local policy admitted %d during %v, above %.0f", ok, (back - down).Round(time.Millisecond), limit)
				}
			}
			for _, r := range after {
				if r.mode != "" || r.status == 503 {
					t.Fatalf("Redis enforcement must resume by itself, and stay: a request sent at %v, after every instance was back on Redis at %v, got %d mode %q", r.sent, rec, r.status, r.mode)
				}
			}
			if len(after) == 0 {
				t.Fatal("no requests after recovery")
			}
		})
	}
}
