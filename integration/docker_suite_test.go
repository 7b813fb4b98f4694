package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestContainers runs the cluster on containers and checks, case by
// case, that it keeps its promises when parts of it fail. The cases share
// one cluster and run in order: the destructive ones last.
func TestContainers(t *testing.T) {
	dc := startDockerCluster(t)
	if t.Failed() {
		t.FailNow()
	}
	all := dc.instancesOf(0, 1, 2)

	t.Run("1 limits are exact across containers", func(t *testing.T) {
		start := time.Now()
		rs := offer(t, all, 100, 10*time.Second, "qps-model", "Authorization", "Bearer sk-open")
		elapsed := time.Since(start).Seconds()
		ok, bound := count(rs, 200), 20+20*elapsed
		t.Logf("QPS 20 burst 20: %d offered, %d admitted in %.1fs, bound %.0f (%.1f%%)", len(rs), ok, elapsed, bound, 100*float64(ok)/bound)
		requireRedis(t, rs)
		if float64(ok) > bound || float64(ok) < 0.98*220 {
			t.Errorf("QPS: admitted %d, want within 2%% of 220 and at most %.0f", ok, bound)
		}
		rs = offer(t, all, 50, 10*time.Second, "rpm-model", "Authorization", "Bearer sk-open")
		t.Logf("RPM 100: %d offered, %d admitted", len(rs), count(rs, 200))
		requireRedis(t, rs)
		if count(rs, 200) != 100 {
			t.Errorf("RPM: admitted %d, want 100", count(rs, 200))
		}
		rs = offer(t, all, 50, 10*time.Second, "free-model", "Authorization", "Bearer sk-limited")
		t.Logf("client RPM 100: %d offered, %d admitted", len(rs), count(rs, 200))
		requireRedis(t, rs)
		if count(rs, 200) != 100 {
			t.Errorf("client quota: admitted %d, want 100", count(rs, 200))
		}
	})

	t.Run("2 sticky affinity across containers", func(t *testing.T) {
		seen := map[string]bool{}
		for s := range 6 {
			first := ""
			for i := range 9 {
				resp, body, err := post(dc.url(i%3), "free-model", "X-Session-ID", fmt.Sprint("session-", s))
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("%v %s", err, body)
				}
				got := resp.Header.Get("X-Sluice-Credential")
				if first == "" {
					first = got
					seen[got] = true
				} else if got != first {
					t.Fatalf("session %d moved from %s to %s on container %d", s, first, got, i%3)
				}
			}
		}
		if len(seen) < 2 {
			t.Fatalf("six sessions all on %v", seen)
		}
	})

	t.Run("3 breaker opened by one container is respected by the others", func(t *testing.T) {
		dc.mock(dc.mock2, `{"failure_rate": 1}`)
		for range 3 {
			if resp, _, _ := post(dc.url(0), "flaky-model"); resp.StatusCode != 502 {
				t.Fatalf("a failing upstream: %d", resp.StatusCode)
			}
		}
		tripped := time.Now()
		for _, i := range []int{1, 2} {
			for {
				resp, _, err := post(dc.url(i), "flaky-model")
				if err == nil && resp.StatusCode == 503 {
					break
				}
				if time.Since(tripped) > 5*time.Second {
					t.Fatalf("container %d never saw the open breaker", i)
				}
			}
		}
		took := time.Since(tripped)
		t.Logf("breaker opened on container 0 seen by 1 and 2 after %v", took)
		if took > 100*time.Millisecond {
			t.Errorf("propagation took %v, want < 100ms", took)
		}
		// Half-open: one probe, held at the upstream (its container
		// paused) until everyone else has been answered, however long a
		// busy machine takes to deliver them.
		dc.mock(dc.mock2, `{"failure_rate": 0}`)
		waitHalfOpen(t, dc.redisClient(), "flaky-cred")
		before := dc.mockRequests(dc.mock2)
		dc.docker("pause", dc.mock2.GetContainerID())
		paused := true
		defer func() {
			if paused {
				dc.docker("unpause", dc.mock2.GetContainerID())
			}
		}()
		var wg sync.WaitGroup
		var ok, answered atomic.Int64
		for i := range 30 {
			wg.Go(func() {
				if resp, _, err := post(dc.url(i%3), "flaky-model"); err == nil && resp.StatusCode == 200 {
					ok.Add(1)
				}
				answered.Add(1)
			})
		}
		// (Should a second probe get through, it is held too: the wait
		// ends at its deadline and the count below tells.)
		poll(30*time.Second, func() bool { return answered.Load() >= 29 })
		dc.docker("unpause", dc.mock2.GetContainerID())
		paused = false
		wg.Wait()
		probes := dc.mockRequests(dc.mock2) - before
		t.Logf("half-open: %d calls reached the upstream, %d of 30 answered", probes, ok.Load())
		if probes != 1 || ok.Load() != 1 {
			t.Errorf("exactly one probe must go out across the containers: %d upstream calls, %d answered", probes, ok.Load())
		}
	})

	t.Run("4 a failover is one trace in Jaeger", func(t *testing.T) {
		dc.mock(dc.mock2, `{"failure_rate": 1}`)
		defer dc.mock(dc.mock2, `{"failure_rate": 0}`)
		const traceID = "5c1ce5c1ce5c1ce5c1ce5c1ce5c1ce01"
		resp, body, err := post(dc.url(1), "failover-model", "traceparent", "00-"+traceID+"-1111111111111111-01")
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Attempts") != "2" {
			t.Fatalf("failover request: %v %d %s", err, resp.StatusCode, body)
		}
		tr := dc.jaegerTrace(traceID, func(d jaegerTraceData) bool {
			mocks := 0
			for i := range d.Spans {
				if d.service(i) == "mockllm" {
					mocks++
				}
			}
			return mocks >= 2
		})
		var server, attempt1, attempt2 = -1, -1, -1
		for i, s := range tr.Spans {
			switch {
			case tr.service(i) == "sluice" && s.OperationName == "POST /v1/chat/completions":
				server = i
			case tr.service(i) == "sluice" && s.OperationName == "chat failover-model" && tr.tag(i, "sluice.attempt") == "1":
				attempt1 = i
			case tr.service(i) == "sluice" && s.OperationName == "chat failover-model" && tr.tag(i, "sluice.attempt") == "2":
				attempt2 = i
			}
		}
		if server < 0 || attempt1 < 0 || attempt2 < 0 {
			t.Fatalf("want a server span and two attempt spans, got %+v", tr.Spans)
		}
		if tr.parent(server) != "1111111111111111" || tr.parent(attempt1) != tr.Spans[server].SpanID || tr.parent(attempt2) != tr.Spans[server].SpanID {
			t.Error("the attempts must be children of the server span, itself a child of the client's")
		}
		for _, c := range []struct {
			span      int
			key, want string
		}{
			{attempt1, "sluice.credential.id", "primary-cred"}, {attempt1, "sluice.outcome", "failover"},
			{attempt1, "http.response.status_code", "500"},
			{attempt2, "sluice.credential.id", "backup-cred"}, {attempt2, "sluice.outcome", "ok"},
			{attempt2, "gen_ai.request.model", "failover-model"}, {attempt2, "gen_ai.system", "openai"},
		} {
			if got := tr.tag(c.span, c.key); got != c.want {
				t.Errorf("%s on span %s = %q, want %q", c.key, tr.Spans[c.span].OperationName, got, c.want)
			}
		}
		if tr.tag(attempt2, "gen_ai.usage.output_tokens") == "" || tr.tag(attempt2, "gen_ai.response.model") == "" {
			t.Error("the answering attempt must carry the response model and usage")
		}
		// Each upstream's own span hangs under the attempt that called it.
		linked := 0
		for i := range tr.Spans {
			if tr.service(i) == "mockllm" && (tr.parent(i) == tr.Spans[attempt1].SpanID || tr.parent(i) == tr.Spans[attempt2].SpanID) {
				linked++
			}
		}
		if linked != 2 {
			t.Errorf("%d upstream spans linked by traceparent, want 2", linked)
		}
	})

	t.Run("5 Redis stopped for 10s under load", func(t *testing.T) {
		const outage = 10 * time.Second
		// Each instance probes a dead Redis every 500ms, and go-redis
		// retries a failed dial at most once a second: an instance is back
		// on Redis within about 1.5s of Redis answering again, longer on a
		// starved machine. The load goes on until every instance says it is
		// back (its fallback gauge), and 4s more.
		const stopAt = 2 * time.Second
		// When Redis was stopped, when it answered again, and when every
		// instance was back on it, since the load began: docker's stop and
		// start take their own time.
		var stopped, restarted, recovered atomic.Int64
		restarted.Store(math.MaxInt64)
		recovered.Store(math.MaxInt64)
		stop := make(chan struct{})
		begin := time.Now()
		go func() {
			defer close(stop)
			time.Sleep(stopAt)
			timeout := time.Duration(0)
			if err := dc.redis.Stop(context.Background(), &timeout); err != nil {
				t.Errorf("stop redis: %v", err)
			}
			stopped.Store(int64(time.Since(begin)))
			time.Sleep(outage)
			if err := dc.redis.Start(context.Background()); err != nil {
				t.Errorf("start redis: %v", err)
			}
			restarted.Store(int64(time.Since(begin)))
			if poll(recoveryDeadline, func() bool { return onRedis(all) }) {
				recovered.Store(int64(time.Since(begin)))
			}
			time.Sleep(4 * time.Second)
		}()
		rs := offerTimed(t, all, 60, stop, "qps-model", "Authorization", "Bearer sk-open")
		down, up, rec := time.Duration(stopped.Load()), time.Duration(restarted.Load()), time.Duration(recovered.Load())
		if up == math.MaxInt64 {
			t.Fatal("Redis was not restarted while the load ran")
		}
		if rec == math.MaxInt64 {
			t.Fatalf("an instance still used the local policy %v after Redis answered again: Redis-backed enforcement did not resume by itself", recoveryDeadline)
		}
		var during, after, ok int
		var slowest time.Duration
		lastLocal := make([]time.Duration, len(all)) // per instance, since Redis answered again
		for _, r := range rs {
			slowest = max(slowest, r.took)
			if r.err != nil || r.took > 2*time.Second {
				t.Fatalf("a request sent at %v hung or was lost: %v after %v", r.sent, r.err, r.took)
			}
			if r.status != 200 && r.status != 429 {
				t.Fatalf("request sent at %v: status %d", r.sent, r.status)
			}
			switch {
			case r.sent > down+500*time.Millisecond && r.sent < up:
				during++
				if r.mode != "local" {
					t.Fatalf("during the outage the local policy must answer and say so: %+v", r)
				}
				if r.status == 200 {
					ok++
				}
			case r.sent >= up:
				if r.mode == "local" {
					lastLocal[r.inst] = max(lastLocal[r.inst], r.sent-up)
				}
				if r.sent > rec {
					after++
					if r.mode != "" {
						t.Fatalf("Redis enforcement must resume by itself, and stay: %+v (Redis answered again at %v, every instance was back on it at %v)", r, up, rec)
					}
				}
			}
		}
		limit := 3 * (20/3 + 20.0/3*((up-down).Seconds()+0.5))
		t.Logf("Redis down %v: %d requests during the outage, %d admitted by the local policy (at most %.0f); last local answers %v after it answered again, every instance back on Redis after %v; %d requests after that, all from Redis; the slowest took %v",
			(up - down).Round(time.Millisecond), during, ok, limit, lastLocal, (rec - up).Round(time.Millisecond), after, slowest.Round(time.Millisecond))
		if float64(ok) > limit {
			t.Errorf("local policy admitted %d, above limit / instances × time = %.0f", ok, limit)
		}
		if during == 0 || after == 0 {
			t.Errorf("%d requests during the outage and %d after recovery: the load did not cover both", during, after)
		}
	})

	t.Run("6 a container killed under load", func(t *testing.T) {
		// The latency only keeps the calls in flight until the kill, and
		// stays under the client's 30s timeout: a call the kill did not
		// cut is answered 200 and counted.
		dc.mock(dc.mock1, `{"latency": "20s"}`)
		before := dc.mockRequests(dc.mock1)
		// Four slow calls hold the credential's four slots, on container 2.
		var wg sync.WaitGroup
		var lost atomic.Int64
		for range 4 {
			wg.Go(func() {
				if resp, _, err := post(dc.url(2), "conc-model"); err != nil || resp.StatusCode != 200 {
					lost.Add(1)
				}
			})
		}
		// They hold their slots once they have reached the upstream.
		waitFor(t, 30*time.Second, "the four slow calls to reach the upstream", func() bool {
			return dc.mockRequests(dc.mock1)-before >= 4
		})
		dc.mock(dc.mock1, `{"latency": "0s"}`)
		// Meanwhile the others carry on.
		others := make(chan []result)
		go func() {
			others <- offer(t, dc.instancesOf(0, 1), 20, 6*time.Second, "free-model", "Authorization", "Bearer sk-open")
		}()
		dc.docker("kill", "--signal", "KILL", dc.sluice[2].GetContainerID())
		killed := time.Now()
		// Its slots are leases: they expire within lease_ttl (3s).
		var freed time.Duration
		for {
			resp, _, err := post(dc.url(0), "conc-model")
			if err == nil && resp.StatusCode == 200 {
				freed = time.Since(killed)
				break
			}
			if time.Since(killed) > 15*time.Second {
				t.Fatal("the dead container's concurrency slots never came back")
			}
			time.Sleep(100 * time.Millisecond)
		}
		wg.Wait()
		if lost.Load() != 4 {
			t.Errorf("%d of the killed container's 4 calls failed, want all 4", lost.Load())
		}
		rs := <-others
		t.Logf("killed container: its 4 in-flight calls failed; its slots freed after %v; the others answered %d of %d", freed.Round(100*time.Millisecond), count(rs, 200), len(rs))
		if count(rs, 200) != len(rs) {
			t.Errorf("the other containers failed %d of %d requests", len(rs)-count(rs, 200), len(rs))
		}
		if freed > 5*time.Second {
			t.Errorf("slots freed after %v; lease_ttl is 3s", freed)
		}
		dc.forget(dc.sluice[2])
		if err := dc.sluice[2].Start(context.Background()); err != nil {
			t.Fatalf("restart the killed container: %v", err)
		}
		waitReady(t, dc, 2)
	})

	t.Run("7 a container partitioned from Redis", func(t *testing.T) {
		id := dc.sluice[0].GetContainerID()
		dc.docker("network", "disconnect", dc.data, id)
		cut := time.Now()
		// Docker moves a container's published port to another network
		// when the one carrying it is disconnected: a connection may be
		// refused for a moment while it does. That is the test bed, not
		// the container, so such a request is sent again.
		mode := func(i int) string {
			deadline := time.Now().Add(10 * time.Second)
			for {
				resp, _, err := post(dc.url(i), "free-model")
				if err == nil {
					return resp.Header.Get("X-Sluice-Quota-Mode")
				}
				if time.Now().After(deadline) {
					t.Fatalf("container %d unreachable: %v", i, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		for mode(0) != "local" {
			if time.Since(cut) > 10*time.Second {
				t.Fatal("the partitioned container never fell back to its policy")
			}
		}
		fell := time.Since(cut)
		if m := mode(1); m != "" {
			t.Fatalf("container 1 still has Redis, mode %q", m)
		}
		dc.docker("network", "connect", "--alias", "sluice-a", dc.data, id)
		joined := time.Now()
		for mode(0) != "" {
			if time.Since(joined) > 15*time.Second {
				t.Fatal("the container never rejoined Redis")
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("partition: fell back to local after %v, rejoined %v after reconnecting", fell.Round(time.Millisecond), time.Since(joined).Round(time.Millisecond))
	})

	t.Run("8 an upstream killed mid-stream", func(t *testing.T) {
		// A stream long enough to be in flight however long the kill takes.
		dc.mock(dc.mock2, `{"stream_chunks": 50, "chunk_interval": "400ms", "reply_tokens": 100}`)
		body := `{"model":"stream-model","stream":true,"messages":[{"role":"user","content":"hi"}]}`
		req, _ := http.NewRequest(http.MethodPost, dc.url(0)+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer sk-open")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.Header.Get("X-Sluice-Credential") != "primary-cred" {
			t.Fatalf("stream: %v %v", err, resp.Header)
		}
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		dc.docker("kill", "--signal", "KILL", dc.mock2.GetContainerID())
		lines := streamLines(br)
		resp.Body.Close()
		last := lines[len(lines)-1]
		if !strings.Contains(last, "upstream_stream_error") {
			t.Fatalf("the client must get a clear error event, got %q", last)
		}
		for _, l := range lines {
			if l == "[DONE]" {
				t.Fatal("a cut stream must not end with [DONE]")
			}
		}
		// The next requests go to the other upstream.
		for i := range 6 {
			resp, b, err := post(dc.url(i%3), "stream-model")
			if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Credential") != "backup-cred" {
				t.Fatalf("after the upstream died: %v %d %s", err, resp.StatusCode, b)
			}
			if i == 3 {
				// The breaker counted it: container 0 has now failed on the
				// dead upstream three times (the stream, requests 0 and 3),
				// and its credential is open, until open_timeout (2s) half-
				// opens it: read at once, not after the other requests.
				metrics := scrape(t, dc.url(0))
				if !strings.Contains(metrics, `sluice_breaker_state{sluice_channel="primary",sluice_credential_id="primary-cred"} 2`) {
					t.Errorf("the dead upstream's breaker is not open:\n%s", grepLines(metrics, "primary-cred"))
				}
			}
		}
		dc.forget(dc.mock2)
		if err := dc.mock2.Start(context.Background()); err != nil {
			t.Fatalf("restart mock2: %v", err)
		}
	})

	t.Run("9 graceful rolling restart under load", func(t *testing.T) {
		lb := newBalancer(dc)
		defer lb.stop()
		results := make(chan []result)
		go func() { results <- lb.offer(t, 30, 0, "free-model") }()
		time.Sleep(2 * time.Second)
		for i := range dc.sluice {
			timeout := 30 * time.Second
			if err := dc.sluice[i].Stop(context.Background(), &timeout); err != nil {
				t.Fatalf("stop container %d: %v", i, err)
			}
			dc.forget(dc.sluice[i])
			if err := dc.sluice[i].Start(context.Background()); err != nil {
				t.Fatalf("start container %d: %v", i, err)
			}
			waitReady(t, dc, i)
			time.Sleep(time.Second)
		}
		lb.finish()
		rs := <-results
		failed := len(rs) - count(rs, 200)
		t.Logf("rolling restart of 3 containers: %d requests, %d failed", len(rs), failed)
		if failed != 0 {
			for _, r := range rs {
				if r.status != 200 {
					t.Logf("failed: %+v", r)
				}
			}
			t.Errorf("%d requests failed during a graceful rolling restart", failed)
		}
	})

	t.Run("10 a change through one container's admin API reaches the other two", func(t *testing.T) {
		insts := dc.instancesOf(0, 1, 2)
		if code, body := adminCall(t, insts[0], "PATCH", "/api/credentials/p0", `{"enabled":false}`); code != 200 {
			t.Fatalf("disable p0 on container 0: %d %s", code, body)
		}
		defer adminCall(t, insts[0], "PATCH", "/api/credentials/p0", `{"enabled":true}`)
		took := within(t, time.Second, "containers 1 and 2 stop routing to p0", func() bool {
			for _, i := range []int{1, 2} {
				for range 12 {
					resp, _, err := post(dc.url(i), "free-model")
					if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Credential") == "p0" {
						return false
					}
				}
			}
			return true
		})
		t.Logf("p0 disabled through container 0, not routed to by 1 and 2 after %v", took)

		code, body := adminCall(t, insts[1], "POST", "/api/clients", `{"name":"docker-temp","models":["free-model"]}`)
		var made struct{ Key string }
		if json.Unmarshal([]byte(body), &made); code != 201 || made.Key == "" {
			t.Fatalf("create a key on container 1: %d %s", code, body)
		}
		within(t, time.Second, "the key made on 1 works on 2", func() bool {
			resp, _, err := postKey(dc.url(2), "free-model", made.Key)
			return err == nil && resp.StatusCode == 200
		})
		if code, body := adminCall(t, insts[2], "PATCH", "/api/clients/docker-temp", `{"enabled":false}`); code != 200 {
			t.Fatalf("revoke on container 2: %d %s", code, body)
		}
		took = within(t, time.Second, "the key revoked on 2 is refused by 0", func() bool {
			resp, _, err := postKey(dc.url(0), "free-model", made.Key)
			return err == nil && resp.StatusCode == 401
		})
		t.Logf("key made on container 1, used on 2, revoked on 2, refused by 0 after %v", took)
		versions := map[string]bool{}
		for _, p := range insts {
			_, body := adminCall(t, p, "GET", "/api/instances", "")
			var out struct {
				ConfigVersion string `json:"config_version"`
			}
			json.Unmarshal([]byte(body), &out)
			versions[out.ConfigVersion] = true
		}
		if len(versions) != 1 {
			t.Errorf("the containers run different configs: %v", versions)
		}
	})
}

// waitReady waits for container i's /readyz.
func waitReady(t *testing.T, dc *dockerCluster, i int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(dc.url(i) + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("container %d never became ready", i)
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// balancer spreads load over the containers that report ready, as a load
// balancer with health checks would, and retries a request on another
// container when the connection is refused.
type balancer struct {
	dc      *dockerCluster
	mu      sync.Mutex
	ready   []bool
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

func newBalancer(dc *dockerCluster) *balancer {
	b := &balancer{dc: dc, ready: []bool{true, true, true}, done: make(chan struct{}), stopped: make(chan struct{})}
	go b.check()
	return b
}

// check polls every container's /readyz every 50ms.
func (b *balancer) check() {
	client := &http.Client{Timeout: 200 * time.Millisecond}
	for {
		select {
		case <-b.stopped:
			return
		case <-time.After(50 * time.Millisecond):
		}
		for i := range b.dc.sluice {
			ok := false
			// A container being restarted has no endpoint for a moment:
			// it is not ready.
			if u, err := b.dc.tryURL(i); err == nil {
				if resp, err := client.Get(u + "/readyz"); err == nil {
					ok = resp.StatusCode == 200
					resp.Body.Close()
				}
			}
			b.mu.Lock()
			b.ready[i] = ok
			b.mu.Unlock()
		}
	}
}

func (b *balancer) pick(n int) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range len(b.ready) {
		i := (n + k) % len(b.ready)
		if b.ready[i] {
			if u, err := b.dc.tryURL(i); err == nil {
				return u, true
			}
		}
	}
	return "", false
}

func (b *balancer) finish() { close(b.done) }
func (b *balancer) stop()   { b.once.Do(func() { close(b.stopped) }) }

// offer sends requests at a rate until finish, each to a ready container,
// retrying refused connections elsewhere.
func (b *balancer) offer(t *testing.T, rate int, _ time.Duration, model string) []result {
	var mu sync.Mutex
	var out []result
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-b.done:
			wg.Wait()
			return out
		case <-tick.C:
		}
		wg.Go(func() {
			r := result{}
			for try := range 5 {
				base, ok := b.pick(n + try)
				if !ok {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				resp, _, err := post(base, model)
				if err != nil && strings.Contains(err.Error(), "connection refused") {
					continue // the balancer tries the next backend
				}
				r.err = err
				if err == nil {
					r.status = resp.StatusCode
				}
				break
			}
			if r.status == 0 && r.err == nil {
				r.err = fmt.Errorf("no ready container")
			}
			mu.Lock()
			out = append(out, r)
			mu.Unlock()
		})
	}
}
