package integration

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// instances starts n sluice processes on one config.
func instances(t *testing.T, n int, config string) []*process {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var out []*process
	for range n {
		out = append(out, start(t, "sluice", "serve", "--config", path))
	}
	return out
}

// result is what a load generator saw of one request.
type result struct {
	status     int
	credential string
	mode       string
	took       time.Duration
	err        error
}

// offer sends requests at a fixed rate for a duration, round robin across
// the instances (as a load balancer would), each with its own deadline,
// and returns every result once all have finished.
func offer(t *testing.T, insts []*process, rate int, d time.Duration, model string, hdr ...string) []result {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
	var mu sync.Mutex
	var out []result
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		inst := insts[i%len(insts)]
		wg.Go(func() {
			req, _ := http.NewRequest("POST", inst.url()+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			for j := 0; j+1 < len(hdr); j += 2 {
				req.Header.Set(hdr[j], hdr[j+1])
			}
			start := time.Now()
			resp, err := client.Do(req)
			r := result{err: err, took: time.Since(start)}
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				r.status, r.credential, r.mode = resp.StatusCode, resp.Header.Get("X-Sluice-Credential"), resp.Header.Get("X-Sluice-Quota-Mode")
			}
			mu.Lock()
			out = append(out, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// admittedBy counts the admitted answers by what decided them: "redis",
// or the fallback policy an answer names in X-Sluice-Quota-Mode.
func admittedBy(rs []result) map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		if r.status == 200 {
			out[cmp.Or(r.mode, "redis")]++
		}
	}
	return out
}

// requireRedis checks what an exact limit presumes: Redis decided every
// answer. A Redis call slower than redis.timeout hands the decisions to
// the fallback policy for a while, and its shares of a limit, one per
// instance, do not add up to an exact limit.
func requireRedis(t *testing.T, rs []result) {
	t.Helper()
	n := 0
	for _, r := range rs {
		if r.mode != "" {
			n++
		}
	}
	if n > 0 {
		t.Errorf("%d of %d answers decided by the fallback policy, not by Redis (admitted by %v): a Redis call took longer than redis.timeout", n, len(rs), admittedBy(rs))
	}
}

func count(rs []result, status int) int {
	n := 0
	for _, r := range rs {
		if r.status == status {
			n++
		}
	}
	return n
}

// clusterConfig is shared by the cluster tests: one mock upstream, models
// with one kind of limit each, and a client with a quota.
func clusterConfig(redisAddr, upstream string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
# Exact limits need Redis to decide every call: a call slower than the
# timeout hands decisions to the fallback policy. A starved machine can
# stall a round trip past 200ms; 1s leaves that to the outage tests.
redis: {url: "redis://%s", timeout: 1s}
clients:
  - {name: open, key: sk-open}
  - {name: limited, key: sk-limited, limits: {rpm: 100}}
routing:
  strategy: random
  affinity: {by: header, header: X-Session-ID}
channels:
  - {name: qps, type: openai, base_url: "%[2]s/v1", models: [qps-model], credentials: [{id: qps-cred, limits: {qps: 20, burst: 20}}]}
  - {name: rpm, type: openai, base_url: "%[2]s/v1", models: [rpm-model], credentials: [{id: rpm-cred, limits: {rpm: 100}}]}
  - name: pool
    type: openai
    base_url: "%[2]s/v1"
    models: [free-model]
    credentials: [{id: p0}, {id: p1}, {id: p2}, {id: p3}, {id: p4}, {id: p5}]
`, redisAddr, upstream)
}

// TestClusterLimitsAreExact runs three instances on one Redis and offers
// each limit five times what it allows, for ten seconds.
func TestClusterLimitsAreExact(t *testing.T) {
	srv := redistest.Start(t)
	up := start(t, "mockllm", "-addr", "127.0.0.1:0")
	insts := instances(t, 3, clusterConfig(srv.Addr, up.url()))
	open := []string{"Authorization", "Bearer sk-open"}

	t.Run("qps", func(t *testing.T) {
		start := time.Now()
		rs := offer(t, insts, 100, 10*time.Second, "qps-model", open...)
		elapsed := time.Since(start).Seconds()
		ok := count(rs, 200)
		bound := 20 + 20*elapsed
		t.Logf("QPS 20, burst 20: %d offered, %d admitted in %.1fs; burst + rate × time = %.0f (%.1f%%)", len(rs), ok, elapsed, bound, 100*float64(ok)/bound)
		requireRedis(t, rs)
		if float64(ok) > bound {
			t.Fatalf("admitted %d, above burst + rate × time = %.0f", ok, bound)
		}
		if float64(ok) < 0.98*(20+20*10) {
			t.Fatalf("admitted %d, more than 2%% under the limit", ok)
		}
		if count(rs, 429)+ok != len(rs) {
			t.Fatalf("every request must be answered 200 or 429: %d others", len(rs)-ok-count(rs, 429))
		}
	})

	t.Run("rpm", func(t *testing.T) {
		rs := offer(t, insts, 50, 10*time.Second, "rpm-model", open...)
		ok := count(rs, 200)
		t.Logf("RPM 100: %d offered, %d admitted", len(rs), ok)
		requireRedis(t, rs)
		if ok != 100 {
			t.Fatalf("admitted %d in one minute, want exactly 100", ok)
		}
	})

	t.Run("client quota", func(t *testing.T) {
		rs := offer(t, insts, 50, 10*time.Second, "free-model", "Authorization", "Bearer sk-limited")
		ok := count(rs, 200)
		t.Logf("client RPM 100: %d offered, %d admitted", len(rs), ok)
		requireRedis(t, rs)
		if ok != 100 {
			t.Fatalf("admitted %d for the client in one minute, want exactly 100", ok)
		}
	})

	t.Run("affinity", func(t *testing.T) {
		client := &http.Client{Timeout: 5 * time.Second}
		seen := map[string]bool{}
		for s := range 6 {
			session := fmt.Sprint("session-", s)
			first := ""
			for i := range 9 {
				req, _ := http.NewRequest("POST", insts[i%3].url()+"/v1/chat/completions",
					strings.NewReader(`{"model":"free-model","messages":[{"role":"user","content":"hi"}]}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer sk-open")
				req.Header.Set("X-Session-ID", session)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				got := resp.Header.Get("X-Sluice-Credential")
				if i == 0 {
					first = got
					seen[got] = true
				} else if got != first {
					t.Fatalf("%s moved from %s to %s on instance %d", session, first, got, i%3)
				}
			}
		}
		if len(seen) < 2 {
			t.Fatalf("six sessions all on %v", seen)
		}
	})
}

// TestClusterBreaker: failures seen by one instance open the breaker on
// the others within 100 ms, and one probe goes out when it half-opens.
func TestClusterBreaker(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	var failing atomic.Bool
	var hits atomic.Int64
	failing.Store(true)
	// A healthy answer waits for release: the probe stays in flight until
	// the test lets it go.
	release := make(chan struct{})
	up := newFlakyUpstream(t, &failing, &hits, release)
	insts := instances(t, 3, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
redis: {url: "redis://%s"}
breaker: {failures: 3, open_timeout: 1s, active_probes: false}
channels: [{name: flaky, type: openai, base_url: "%s/v1", models: [m], credentials: [{id: flaky}]}]
`, srv.Addr, up))
	a, b, c := insts[0], insts[1], insts[2]
	post := func(p *process) int {
		resp, err := http.Post(p.url()+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 3 {
		if s := post(a); s != 502 {
			t.Fatalf("a failing upstream: %d", s)
		}
	}
	tripped := time.Now()
	for _, p := range []*process{b, c} {
		for post(p) != 503 {
			if time.Since(tripped) > 5*time.Second {
				t.Fatal("the breaker A opened never reached the others")
			}
		}
	}
	took := time.Since(tripped)
	t.Logf("breaker opened by A seen by B and C after %v", took)
	if took > 100*time.Millisecond {
		t.Fatalf("propagation took %v, want < 100ms", took)
	}

	// Half-open: the upstream is healthy again; thirty requests arrive at
	// once across the three instances while the probe is in flight. The
	// probe is held at the upstream until the other 29 have been answered,
	// however long a busy machine takes to deliver them.
	failing.Store(false)
	waitHalfOpen(t, rdb, "flaky")
	before := hits.Load()
	var wg sync.WaitGroup
	var answered atomic.Int64
	statuses := make([]int, 30)
	for i := range 30 {
		wg.Go(func() {
			statuses[i] = post(insts[i%3])
			answered.Add(1)
		})
	}
	// (Should a second probe get through, it is held too: the wait ends
	// at its deadline and the count below tells.)
	poll(30*time.Second, func() bool { return answered.Load() >= 29 })
	close(release)
	wg.Wait()
	probes := hits.Load() - before
	ok := 0
	for _, s := range statuses {
		if s == 200 {
			ok++
		}
	}
	t.Logf("half-open: %d requests reached the upstream, %d of 30 answered 200", probes, ok)
	if probes != 1 || ok != 1 {
		t.Fatalf("exactly one probe must go out across the cluster: %d upstream calls, %d answered", probes, ok)
	}
	// The probe succeeded: closed everywhere, once the prober has shared it.
	waitBreakerClosed(t, rdb, "flaky")
	for _, p := range insts {
		if s := post(p); s != 200 {
			t.Fatalf("after the probe: %d", s)
		}
	}
}

// poll checks cond every 10ms until it holds or d has passed, and
// reports whether it held.
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// waitFor is poll that fails the test, saying what it waited for.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(d, cond) {
		t.Fatalf("waited %v for %s", d, what)
	}
}

// The cluster state the tests wait on, read from Redis (default key
// prefix; see docs/redis-keys.md).
const (
	membersKey     = "sluice:{m}:members"
	openedBreakers = "sluice:{brk}:opened"
	openKeyPrefix  = "sluice:{brk}:open:"
	probeKeyPrefix = "sluice:{brk}:probe:"
)

// waitHeartbeats waits until n instances are members and each has
// heartbeated again since all n were: a heartbeat adds its instance, then
// counts the live ones, so each instance then counts n (which the local
// policy divides its limits by).
func waitHeartbeats(t *testing.T, rdb redis.Cmdable, n int) {
	t.Helper()
	ctx := context.Background()
	var first map[string]float64 // scores when all n were first seen
	waitFor(t, 60*time.Second, fmt.Sprintf("a heartbeat from each of %d instances after all were members", n), func() bool {
		zs, err := rdb.ZRangeWithScores(ctx, membersKey, 0, -1).Result()
		if err != nil || len(zs) != n {
			return false
		}
		if first == nil {
			first = map[string]float64{}
			for _, z := range zs {
				first[z.Member.(string)] = z.Score
			}
			return false
		}
		for _, z := range zs {
			if s, ok := first[z.Member.(string)]; !ok || s == z.Score {
				return false
			}
		}
		return true
	})
}

// waitHalfOpen waits until the cluster's open breaker for a credential
// half-opens (lets a probe through), as Redis records it: its open key,
// whose time to live is the time it stays open, has expired while the
// breaker is still listed. The open timeout counts from the last trip,
// which a busy machine may have delayed.
func waitHalfOpen(t *testing.T, rdb redis.Cmdable, id string) {
	t.Helper()
	ctx := context.Background()
	var gone time.Time
	waitFor(t, 60*time.Second, "the breaker of "+id+" to half-open", func() bool {
		listed, err := rdb.HExists(ctx, openedBreakers, id).Result()
		if err != nil || !listed {
			t.Fatalf("the breaker of %s is not open in Redis: %v", id, err)
		}
		open, err := rdb.Exists(ctx, openKeyPrefix+id).Result()
		if err != nil || open == 1 {
			return false
		}
		// A margin for the instances' own reading of the same expiry.
		if gone.IsZero() {
			gone = time.Now()
		}
		return time.Since(gone) > 50*time.Millisecond
	})
}

// waitBreakerClosed waits until a credential's breaker is closed in the
// cluster and its probe lease given back: from then on every instance
// lets calls through (one that has not heard of the close yet takes the
// free lease and probes).
func waitBreakerClosed(t *testing.T, rdb redis.Cmdable, id string) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, 30*time.Second, "the breaker of "+id+" to close in Redis", func() bool {
		open, err1 := rdb.HExists(ctx, openedBreakers, id).Result()
		probing, err2 := rdb.Exists(ctx, probeKeyPrefix+id).Result()
		return err1 == nil && err2 == nil && !open && probing == 0
	})
}

// newFlakyUpstream answers 500 while failing is set, and otherwise an
// OpenAI answer once release is closed; hits counts every call.
func newFlakyUpstream(t *testing.T, failing *atomic.Bool, hits *atomic.Int64, release <-chan struct{}) string {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if failing.Load() {
			w.WriteHeader(500)
			io.WriteString(w, `{"error":{"message":"boom","type":"server_error"}}`)
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	})}
	ln := listen(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String()
}
