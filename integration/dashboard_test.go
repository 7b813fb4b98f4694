package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/heapprofiler"
	"github.com/chromedp/cdproto/memory"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// dashConfig is the config of the dashboard tests: a channel of two
// credentials with limits the quota bars show, and a client key.
func dashConfig(redisAddr, upstream string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
redis: {url: "redis://%s", timeout: 200ms}
admin: {token: %s}
clients: [{name: team, key: sk-it-team, limits: {rpm: 100000}}]
channels:
  - name: pair
    type: openai
    base_url: "%s/v1"
    models: [m]
    credentials:
      - {id: c1, key: %s, limits: {rpm: 100000, tpm: 100000000, concurrency: 50}}
      - {id: c2, key: %s, limits: {rpm: 100000}}
`, redisAddr, itAdminToken, upstream, itUpKey, itUpKey)
}

// dashCluster is two instances on one Redis, with a fake upstream.
func dashCluster(t *testing.T) (a, b *process, up *process) {
	t.Helper()
	redis := redistest.Start(t)
	up = start(t, "mockllm", "-addr", "127.0.0.1:0")
	t.Setenv("SLUICE_SECRET_KEY", itSecretKey)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(dashConfig(redis.Addr, up.url())), 0o600); err != nil {
		t.Fatal(err)
	}
	return start(t, "sluice", "serve", "--config", path), start(t, "sluice", "serve", "--config", path), up
}

// signIn opens the dashboard and signs in with a token.
func signIn(t *testing.T, ctx context.Context, p *process, token string) {
	t.Helper()
	run(t, ctx, "sign in",
		chromedp.Navigate(p.url()+"/admin"),
		chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", token),
		chromedp.Submit("#token"))
}

// TestDashboard drives the dashboard of one instance in Chromium, and
// checks what it does on the other.
func TestDashboard(t *testing.T) {
	ctx := browser(t, 1400, 1000)
	a, b, up := dashCluster(t)

	t.Run("a wrong token is refused", func(t *testing.T) {
		screenshot(t, ctx)
		signIn(t, ctx, a, "not-the-admin-token-000000")
		until(t, ctx, 5*time.Second, "the refusal", `document.body.innerText.includes("That is not an admin token.")`)
		if eval[bool](t, ctx, `!!document.querySelector("nav")`) {
			t.Fatal("the app shows without a session")
		}
		if eval[string](t, ctx, `document.cookie`) != "" {
			t.Fatal("a cookie after a refused sign-in")
		}
	})

	t.Run("signed in, both instances show", func(t *testing.T) {
		screenshot(t, ctx)
		signIn(t, ctx, a, itAdminToken)
		until(t, ctx, 5*time.Second, "the overview", `!!document.querySelector("nav a[aria-current=page][data-view=overview]")`)
		took := until(t, ctx, 10*time.Second, "both instances listed as up",
			fmt.Sprintf(`(() => { const t = document.body.innerText; return t.includes(%q) && t.includes(%q) && document.querySelectorAll(".badge.closed").length >= 2 })()`, a.addr, b.addr))
		t.Logf("both instances shown %v after sign-in", took)
		if eval[string](t, ctx, `document.cookie`) != "" {
			t.Fatal("the session cookie is readable from script: it must be HttpOnly")
		}
	})

	t.Run("load on the other instance moves a quota bar", func(t *testing.T) {
		screenshot(t, ctx)
		run(t, ctx, "channels", chromedp.Navigate(a.url()+"/admin#channels"))
		until(t, ctx, 5*time.Second, "the c1 rpm bar", `!!document.querySelector('[data-meter="c1/rpm"]')`)
		before := eval[float64](t, ctx, `document.querySelector('[data-meter="c1/rpm"]').value`)
		for range 60 {
			if code, _ := chatCall(t, b, "sk-it-team", "m"); code != 200 {
				t.Fatalf("load: %d", code)
			}
		}
		took := until(t, ctx, 3*time.Second, "the c1 rpm bar moves",
			fmt.Sprintf(`document.querySelector('[data-meter="c1/rpm"]').value >= %v`, before+15))
		after := eval[float64](t, ctx, `document.querySelector('[data-meter="c1/rpm"]').value`)
		t.Logf("c1 rpm bar on instance a: %v -> %v, %v after 60 calls to instance b", before, after, took)
	})

	t.Run("the overview counts the whole cluster", func(t *testing.T) {
		screenshot(t, ctx)
		run(t, ctx, "overview", chromedp.Navigate(a.url()+"/admin#overview"))
		// The 60 calls of the last test went to instance b; a's overview
		// shows them, from the counts b pushes to Redis every second.
		until(t, ctx, 5*time.Second, "the cluster's rate", `(() => {
			const t = document.body.innerText;
			const rps = Number(document.querySelector(".card .value").innerText.replace(/,/g, ""));
			return t.includes("Counts of the whole cluster") && t.includes("Redis: connected") && rps >= 1;
		})()`)
		t.Logf("overview of a: %q", eval[string](t, ctx, `[...document.querySelectorAll(".card")].map(c => c.querySelector("h2").innerText + " " + c.querySelector(".value").innerText).join(", ")`))
		run(t, ctx, "channels", chromedp.Navigate(a.url()+"/admin#channels"))
		until(t, ctx, 5*time.Second, "the channels", `!!document.querySelector('[data-key="add-channel"]')`)
	})

	t.Run("add a channel through the form", func(t *testing.T) {
		screenshot(t, ctx)
		run(t, ctx, "open the form",
			chromedp.Click(`[data-key="add-channel"]`),
			chromedp.WaitVisible("#f-name"),
			chromedp.SendKeys("#f-name", "extra"),
			chromedp.SetValue("#f-type", "openai"),
			chromedp.SendKeys("#f-base_url", up.url()+"/v1"),
			chromedp.SendKeys("#f-cred0-key", itUpKey),
			chromedp.Click(`[data-key="check"]`))
		// No models: refused, with the path sluice check would name.
		until(t, ctx, 5*time.Second, "the validation error", `(() => { const p = document.querySelector("#form-result .problems"); return !!p && p.innerText.includes("models") })()`)
		if !eval[bool](t, ctx, `document.getElementById("f-models").getAttribute("aria-invalid") === "true"`) {
			t.Fatal("the models field is not marked invalid")
		}
		problem := eval[string](t, ctx, `document.querySelector("#form-result .problems").innerText`)
		t.Logf("validation error shown: %q", problem)
		if strings.Contains(problem, itUpKey) {
			t.Fatal("the validation error shows the key")
		}
		run(t, ctx, "fix and check",
			chromedp.SendKeys("#f-models", "m2"),
			chromedp.Click(`[data-key="check"]`))
		until(t, ctx, 5*time.Second, "valid", `document.querySelector("#form-result").innerText.includes("Valid.")`)
		run(t, ctx, "test", chromedp.Click(`[data-key="test-form"]`))
		until(t, ctx, 10*time.Second, "the test passes", `!!document.querySelector("#form-result li.ok")`)
		t.Logf("test result shown: %q", eval[string](t, ctx, `document.querySelector("#form-result").innerText`))
		run(t, ctx, "save", chromedp.Click(`[data-key="save"]`))
		until(t, ctx, 5*time.Second, "saved", `!document.getElementById("dialog").open && document.getElementById("status").innerText.includes("saved")`)
		took := within(t, 2*time.Second, "instance b routes m2 through the new channel", func() bool {
			code, cred := chatCall(t, b, "sk-it-team", "m2")
			return code == 200 && strings.HasPrefix(cred, "extra")
		})
		t.Logf("saved on a, served by b after %v", took)
		until(t, ctx, 3*time.Second, "the channel listed", `!!document.querySelector('section[aria-label="Channel extra"]')`)
	})

	t.Run("a disabled credential gets no traffic", func(t *testing.T) {
		screenshot(t, ctx)
		run(t, ctx, "disable c1", chromedp.Click(`[data-key="toggle-c1"]`))
		until(t, ctx, 5*time.Second, "c1 shown disabled", `document.querySelector('[data-key="toggle-c1"]').innerText === "Enable"`)
		took := within(t, time.Second, "b stops routing to c1", func() bool {
			_, cred := chatCall(t, b, "sk-it-team", "m")
			return cred == "c2"
		})
		for range 30 {
			if code, cred := chatCall(t, b, "sk-it-team", "m"); code != 200 || cred != "c2" {
				t.Fatalf("after disabling c1: %d from %q", code, cred)
			}
		}
		t.Logf("c1 disabled in the dashboard of a; b stopped routing to it after %v; 30 calls since, all to c2", took)
	})

	t.Run("a client key created, used, revoked", func(t *testing.T) {
		screenshot(t, ctx)
		run(t, ctx, "new key",
			chromedp.Navigate(a.url()+"/admin#clients"),
			chromedp.WaitVisible(`[data-key="add-client"]`),
			chromedp.Click(`[data-key="add-client"]`),
			chromedp.WaitVisible("#c-name"),
			chromedp.SendKeys("#c-name", "temp"),
			chromedp.SendKeys("#c-models", "m"),
			chromedp.Click(`[data-key="create"]`),
			chromedp.WaitVisible("#new-key"))
		key := eval[string](t, ctx, `document.getElementById("new-key").value`)
		if !strings.HasPrefix(key, "sk-") {
			t.Fatalf("the key shown: %q", key)
		}
		run(t, ctx, "done", chromedp.Click(`[data-key="done"]`))
		within(t, time.Second, "the new key works on b", func() bool { code, _ := chatCall(t, b, key, "m"); return code == 200 })
		if code, _ := chatCall(t, b, key, "m2"); code == 200 {
			t.Fatal("the key's models are only m")
		}
		until(t, ctx, 5*time.Second, "the key listed", `!!document.querySelector('[data-key="toggle-client-temp"]')`)
		if strings.Contains(pageText(ctx), key) {
			t.Fatal("the key is shown again after the dialog closed")
		}
		run(t, ctx, "revoke", chromedp.Click(`[data-key="toggle-client-temp"]`))
		took := within(t, time.Second, "b refuses the revoked key", func() bool { code, _ := chatCall(t, b, key, "m"); return code == 401 })
		t.Logf("revoked on a, refused by b after %v", took)
	})
}

// TestDashboardMemory keeps the dashboard open under load, cycling through
// its views, and checks that neither the page nor the gateway grows.
// SLUICE_DASHBOARD_SOAK sets how long (default 45s; the release check runs
// 10m).
func TestDashboardMemory(t *testing.T) {
	soak := 45 * time.Second
	if v := os.Getenv("SLUICE_DASHBOARD_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SLUICE_DASHBOARD_SOAK: %v", err)
		}
		soak = d
	}
	ctx := browser(t, 1400, 1000)
	screenshot(t, ctx)
	a, b, _ := dashCluster(t)
	signIn(t, ctx, a, itAdminToken)
	until(t, ctx, 5*time.Second, "the overview", `!!document.querySelector("nav")`)

	// Load on both instances for the whole soak, paced at 40 calls a second.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for _, p := range []*process{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if code, _ := chatCall(t, p, "sk-it-team", "m"); code == 200 {
						ok.Add(1)
					} else {
						failed.Add(1)
					}
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	type sample struct {
		at                     time.Duration
		heap                   float64
		nodes, listeners, docs int64
		rss                    int64
	}
	measure := func(at time.Duration) sample {
		mctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		// What survives a collection is what the page keeps.
		if _, err := chromedp.Call(mctx, heapprofiler.CollectGarbage, cdp.Empty{}); err != nil {
			t.Fatalf("collect garbage: %v", err)
		}
		heap, err := chromedp.Call(mctx, runtime.GetHeapUsage, cdp.Empty{})
		if err != nil {
			t.Fatalf("heap usage: %v", err)
		}
		dom, err := chromedp.Call(mctx, memory.GetDOMCounters, cdp.Empty{})
		if err != nil {
			t.Fatalf("DOM counters: %v", err)
		}
		return sample{at: at, heap: heap.UsedSize, nodes: dom.Nodes, listeners: dom.JsEventListeners, docs: dom.Documents, rss: rssKiB(t, a.cmd.Process.Pid)}
	}
	// One round shows every view, then stays on the channels page, the one
	// with the most live parts; each sample is taken there.
	round := func() {
		for _, v := range []string{"overview", "clients", "config", "channels"} {
			run(t, ctx, "show "+v, chromedp.Evaluate[chromedp.Void](`location.hash = "#`+v+`"`))
			until(t, ctx, 5*time.Second, v+" shown", `!!document.querySelector("nav a[aria-current=page][data-view=`+v+`]") && !document.body.innerText.includes("Loading…")`)
			time.Sleep(1500 * time.Millisecond)
		}
	}
	start := time.Now()
	period := max(soak/10, 10*time.Second)
	samples := []sample{}
	for time.Since(start) < soak {
		round()
		for time.Since(start) < time.Duration(len(samples)+1)*period && time.Since(start) < soak {
			time.Sleep(250 * time.Millisecond)
		}
		samples = append(samples, measure(time.Since(start)))
	}
	var report strings.Builder
	fmt.Fprintf(&report, "%8s %12s %8s %10s %6s %12s\n", "at", "JS heap KiB", "nodes", "listeners", "docs", "sluice RSS KiB")
	for _, s := range samples {
		fmt.Fprintf(&report, "%8v %12.0f %8d %10d %6d %12d\n", s.at.Round(time.Second), s.heap/1024, s.nodes, s.listeners, s.docs, s.rss)
	}
	t.Logf("dashboard open %v under load (%d calls answered, %d failed):\n%s", time.Since(start).Round(time.Second), ok.Load(), failed.Load(), report.String())
	if len(samples) < 3 {
		t.Fatalf("only %d samples", len(samples))
	}
	// The first sample is after warm-up (the page's code compiled, its
	// caches full); the last must not be meaningfully above it.
	first, last := samples[1], samples[len(samples)-1]
	if last.heap > first.heap*1.25+512*1024 {
		t.Errorf("the page's JS heap grew: %.0f -> %.0f KiB", first.heap/1024, last.heap/1024)
	}
	if last.nodes > first.nodes+first.nodes/4+200 || last.listeners > first.listeners+first.listeners/4+50 || last.docs > first.docs+1 {
		t.Errorf("the page's DOM grew: nodes %d -> %d, listeners %d -> %d, documents %d -> %d", first.nodes, last.nodes, first.listeners, last.listeners, first.docs, last.docs)
	}
	if last.rss > first.rss+first.rss/4+16*1024 {
		t.Errorf("the gateway's memory grew: %d -> %d KiB", first.rss, last.rss)
	}
	if failed.Load() > 0 {
		t.Errorf("%d calls failed under the dashboard", failed.Load())
	}
}

// rssKiB is a process's resident memory.
func rssKiB(t *testing.T, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("memory of %d: %v", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}
