package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// setMock changes a running mockllm's knobs.
func setMock(t *testing.T, up *process, knobs string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, up.url()+"/_mock/config", strings.NewReader(knobs))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("mock config %s: %d", knobs, resp.StatusCode)
	}
}

// share calls an instance n times and returns the share of calls a
// credential answered.
func share(t *testing.T, p *process, model, credential string, n int) float64 {
	hits := 0
	for range n {
		code, cred := chatCall(t, p, "", model)
		if code != 200 {
			t.Fatalf("call: %d", code)
		}
		if cred == credential {
			hits++
		}
	}
	return float64(hits) / float64(n)
}

// TestLatencyRoutingAcrossInstances: two credentials, 20 ms and 200 ms
// slow, behind three instances on one Redis with the latency strategy.
// After a warm-up on two of them, every instance (the third started
// after the warm-up too) sends at least 85% of its calls to the fast one;
// when the fast one slows down, the traffic moves within seconds.
func TestLatencyRoutingAcrossInstances(t *testing.T) {
	redis := redistest.Start(t)
	fast := start(t, "mockllm", "-addr", "127.0.0.1:0", "-latency", "20ms", "-control")
	slow := start(t, "mockllm", "-addr", "127.0.0.1:0", "-latency", "200ms")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
redis: {url: "redis://%s", timeout: 1s}
routing: {strategy: latency, latency: {explore: 0.001}}
breaker: {active_probes: false}
channels:
  - name: pair
    type: openai
    models: [m]
    credentials: [{id: fast, base_url: "%s/v1"}, {id: slow, base_url: "%s/v1"}]
`, redis.Addr, fast.url(), slow.url())), 0o600)
	a, b := start(t, "sluice", "serve", "--config", path), start(t, "sluice", "serve", "--config", path)
	for range 10 { // warm-up: both credentials get measured
		chatCall(t, a, "", "m")
		chatCall(t, b, "", "m")
	}
	time.Sleep(1500 * time.Millisecond) // an exchange of signals
	c := start(t, "sluice", "serve", "--config", path)
	time.Sleep(1500 * time.Millisecond) // c's first exchange
	// c has measured nothing itself: its first calls go where the cluster
	// measured the fastest (on its own it would try each credential once
	// first, the slow one among them). Exploration is kept rare here so
	// that this is what the first calls show.
	if s := share(t, c, "m", "fast", 5); s != 1 {
		t.Fatalf("the first calls of an instance started after the warm-up: %.0f%% to the fast credential, want all", 100*s)
	}
	for name, p := range map[string]*process{"a": a, "b": b, "c (started after the warm-up)": c} {
		s := share(t, p, "m", "fast", 40)
		t.Logf("instance %s: %.0f%% of 40 calls to the fast credential", name, 100*s)
		if s < 0.85 {
			t.Errorf("instance %s sent %.0f%% to the fast credential, want at least 85%%", name, 100*s)
		}
	}

	// The fast one becomes the slow one.
	setMock(t, fast, `{"latency": "400ms"}`)
	start := time.Now()
	var mu sync.Mutex
	moved := false
	for !moved && time.Since(start) < 20*time.Second {
		var wg sync.WaitGroup
		var toSlow int
		for _, p := range []*process{a, b, c} {
			wg.Go(func() {
				for range 5 {
					if _, cred := chatCall(t, p, "", "m"); cred == "slow" {
						mu.Lock()
						toSlow++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		moved = toSlow >= 13 // of 15: the traffic moved
	}
	if !moved {
		t.Fatalf("the traffic did not move to the faster credential within 20s")
	}
	t.Logf("the fast credential slowed to 400ms: traffic moved to the other within %v", time.Since(start).Round(100*time.Millisecond))
}

// TestLeastBusyAcrossInstances: one credential holds many long streams
// opened through one instance; new calls through another instance go to
// the other credential.
func TestLeastBusyAcrossInstances(t *testing.T) {
	redis := redistest.Start(t)
	up := start(t, "mockllm", "-addr", "127.0.0.1:0", "-stream-chunks", "60", "-chunk-interval", "100ms")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
redis: {url: "redis://%s", timeout: 1s}
routing: {strategy: least_busy}
channels:
  - {name: one, type: openai, base_url: "%s/v1", models: [m, long], credentials: [{id: busy}]}
  - {name: two, type: openai, base_url: "%s/v1", models: [m], credentials: [{id: idle}]}
`, redis.Addr, up.url(), up.url())), 0o600)
	a, b := start(t, "sluice", "serve", "--config", path), start(t, "sluice", "serve", "--config", path)

	// Ten streams of six seconds through a, all on "busy" (only it serves
	// the model long).
	var wg sync.WaitGroup
	defer wg.Wait()
	for range 10 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", a.url()+"/v1/chat/completions",
				strings.NewReader(`{"model":"long","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("stream: %v", err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	time.Sleep(1500 * time.Millisecond) // the streams begin, and a publishes them
	s := share(t, b, "m", "idle", 20)
	t.Logf("with 10 streams on busy through a: %.0f%% of 20 calls through b went to idle", 100*s)
	if s < 0.9 {
		t.Fatalf("b sent %.0f%% of its calls to the idle credential: it does not see a's streams", 100*s)
	}
}
