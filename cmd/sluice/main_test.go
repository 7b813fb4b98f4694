package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/config"
)

// startServe runs serveConfig on a free port and returns its address and
// a channel that yields its result.
func startServe(t *testing.T, ctx context.Context, yaml string) (string, <-chan error) {
	t.Helper()
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Provision()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveConfig(ctx, func() {}, cfg, slog.New(slog.DiscardHandler), func(a string) { addr <- a })
	}()
	select {
	case a := <-addr:
		return "http://" + a, done
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not start")
	}
	return "", nil
}

func startStream(t *testing.T, base string) (*http.Response, *bufio.Reader) {
	t.Helper()
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return resp, br
}

func TestGracefulShutdownFinishesStreams(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	base, done := startServe(t, ctx, `
server: {listen: "127.0.0.1:0", drain_timeout: 20s}
channels: [{type: mock, models: [m], mock: {stream_chunks: 20, chunk_interval: 40ms}}]
`)
	resp, br := startStream(t, base)
	defer resp.Body.Close()
	cancel() // SIGTERM, as far as serveConfig is concerned

	var rest bytes.Buffer
	if _, err := rest.ReadFrom(br); err != nil {
		t.Fatalf("stream cut by shutdown: %v", err)
	}
	if !strings.Contains(rest.String(), "data: [DONE]") {
		t.Fatalf("the in-flight stream must finish: %q", rest.String())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after draining")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("the listener must be closed after shutdown")
	}
}

func TestShutdownDrainTimeoutEndsStreamsWithError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	base, done := startServe(t, ctx, `
server: {listen: "127.0.0.1:0", drain_timeout: 200ms}
channels: [{type: mock, models: [m], mock: {stream_chunks: 1000, chunk_interval: 20ms}}]
`)
	resp, br := startStream(t, base)
	defer resp.Body.Close()
	start := time.Now()
	cancel()
	var rest bytes.Buffer
	rest.ReadFrom(br)
	if !strings.Contains(rest.String(), "shutting_down") || strings.Contains(rest.String(), "[DONE]") {
		t.Fatalf("a stream cut by the drain timeout must end with an error event: %q", tail(rest.String()))
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("drain timeout not enforced")
	}
	<-done
}

func TestShutdownDrainTimeoutAnswersWaitingCalls(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	base, done := startServe(t, ctx, `
server: {listen: "127.0.0.1:0", drain_timeout: 200ms}
channels: [{type: mock, models: [m], mock: {latency: 10s}}]
`)
	type result struct {
		status int
		body   string
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Post(base+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			got <- result{body: err.Error()}
			return
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		got <- result{resp.StatusCode, b.String()}
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	r := <-got
	if r.status != 503 || !strings.Contains(r.body, "shutting_down") {
		t.Fatalf("a call cut by the drain timeout must be told why: %d %s", r.status, r.body)
	}
	<-done
}

func tail(s string) string {
	if len(s) > 400 {
		return s[len(s)-400:]
	}
	return s
}

func TestCheckAndImportCommands(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`
channels:
  - {type: openai, base_url: "https://x/v1", models: [m]}
  - {type: nope, models: []}
  - {type: openai, base_url: "https://x/v1", models: [m], credentials: [{key: k, limits: {qps: -1}}]}
`), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--config", bad}, &out, &errOut); code != 1 {
		t.Fatalf("check of a bad config: exit %d", code)
	}
	for _, want := range []string{
		`channels[1].type: unknown provider type "nope"`,
		"channels[1].models: at least one model is required",
		"channels[2].credentials[0].limits.qps: must be > 0",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut.String())
		}
	}

	out.Reset()
	errOut.Reset()
	if code := run([]string{"check", "--config", "../../deploy/examples/quickstart.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("quickstart: exit %d: %s", code, errOut.String())
	}
	// import prints a native config that loads by itself.
	t.Setenv("SLUICE_E2E_UPSTREAM", "http://127.0.0.1:9")
	for _, f := range []string{"simple-one-api.json", "aiload.json", "channels.yaml"} {
		out.Reset()
		errOut.Reset()
		if code := run([]string{"import", "../../gateway/testdata/peers/" + f}, &out, &errOut); code != 0 {
			t.Fatalf("import %s: exit %d: %s", f, code, errOut.String())
		}
		native, format, err := config.Parse(out.Bytes())
		if err != nil || format != config.FormatNative {
			t.Fatalf("import %s printed %s (%v):\n%s", f, format, err, out.String())
		}
		native.Provision()
		if err := native.Validate(); err != nil {
			t.Fatalf("import %s: %v", f, err)
		}
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"import", "../../gateway/config/testdata/peers/simple-one-api-unsupported.json"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "services.xinghuo[0]") {
		t.Fatalf("an unsupported service must be named: exit %d: %s", code, errOut.String())
	}
	if code := run([]string{"nope"}, &out, &errOut); code != 2 {
		t.Fatal("unknown command must exit 2")
	}
}

// TestServesWithoutChannels starts with no channel but the admin API on,
// as simple-one-api's config_web.json users would (they add channels in
// its web panel): the gateway serves, and a channel added through
// /api/channels answers at once.
func TestServesWithoutChannels(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte("server: {listen: \"127.0.0.1:0\"}\nadmin: {token: adm-test-token-0123456789}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveWith(ctx, cancel, cfg, path, slog.New(slog.DiscardHandler), func(a string) { addr <- a })
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not start")
	}
	do := func(method, path, body string, admin bool) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if admin {
			req.Header.Set("Authorization", "Bearer adm-test-token-0123456789")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	chat := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	if code, body := do("POST", "/v1/chat/completions", chat, false); code != 404 && code != 400 {
		t.Fatalf("chat with no channel: %d %s", code, body)
	}
	if code, body := do("POST", "/api/channels", `{"name":"added","type":"mock","models":["m"]}`, true); code != 201 {
		t.Fatalf("add a channel: %d %s", code, body)
	}
	if code, body := do("POST", "/v1/chat/completions", chat, false); code != 200 {
		t.Fatalf("chat after adding a channel: %d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
