package gateway

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// twoChannels routes model m to channel a first, then b.
const twoChannels = `
routing:
  strategy: first
  retry: {max_attempts: 3, cooldown: 30s}
breaker: {failures: 100}
channels:
  - {name: a, type: openai, base_url: A, models: [m], timeout: 300ms, credentials: [{id: a, key: sk-a-secret-key}]}
  - {name: b, type: openai, base_url: B, models: [m], credentials: [{id: b, key: sk-b}]}
`

func deadURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

func slowUpstream(t *testing.T, d time.Duration) *upstream {
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
	}))
}

func TestFailoverBeforeFirstByte(t *testing.T) {
	tests := []struct {
		name        string
		a           func(t *testing.T) string // returns the base URL of a
		wantAttempt string
	}{
		{"connection refused", deadURL, "2"},
		{"timeout", func(t *testing.T) string { return slowUpstream(t, 5*time.Second).URL }, "2"},
		{"500", func(t *testing.T) string { return statusUpstream(t, 500, nil, `{"error":{"message":"boom"}}`).URL }, "2"},
		{"503 html", func(t *testing.T) string { return statusUpstream(t, 503, nil, `<html>busy</html>`).URL }, "2"},
		{"429", func(t *testing.T) string {
			return statusUpstream(t, 429, map[string]string{"Retry-After": "7"}, `{}`).URL
		}, "2"},
		{"401 bad credential", func(t *testing.T) string {
			return statusUpstream(t, 401, nil, `{"error":{"message":"Incorrect API key provided: sk-a-secret-key"}}`).URL
		}, "2"},
		{"404 model missing upstream", func(t *testing.T) string {
			return statusUpstream(t, 404, nil, `{"error":{"message":"no such model"}}`).URL
		}, "2"},
		{"200 with garbage", func(t *testing.T) string { return statusUpstream(t, 200, nil, `<html>captive portal</html>`).URL }, "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mockUpstream(t, mock.Config{})
			_, srv := startGateway(t, twoChannels, "A", tt.a(t), "B", b.URL)
			resp, body := chat(t, srv, "m")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Sluice-Credential"); got != "b" {
				t.Fatalf("served by %q, want b", got)
			}
			if got := resp.Header.Get("X-Sluice-Attempts"); got != tt.wantAttempt {
				t.Fatalf("attempts %s, want %s", got, tt.wantAttempt)
			}
			if strings.Contains(string(body), "sk-a-secret-key") {
				t.Fatal("a secret leaked to the client")
			}
		})
	}
}

func TestClientErrorIsNotRetried(t *testing.T) {
	a := statusUpstream(t, 400, nil, `{"error":{"message":"Invalid value for 'temperature' (key sk-a-secret-key)","type":"invalid_request_error","param":"temperature","code":null}}`)
	b := mockUpstream(t, mock.Config{})
	g, srv := startGateway(t, twoChannels, "A", a.URL, "B", b.URL)
	resp, body := chat(t, srv, "m")
	if resp.StatusCode != 400 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	e := apiError(t, body)
	if !strings.Contains(e.Message, "temperature") || e.Param == nil || *e.Param != "temperature" {
		t.Fatalf("the upstream's own error must pass through: %+v", e)
	}
	if strings.Contains(string(body), "sk-a-secret-key") {
		t.Fatalf("secret not redacted: %s", body)
	}
	if b.hits.Load() != 0 {
		t.Fatal("a client error must not fail over")
	}
	if g.breakers.State("a") != breaker.Closed {
		t.Fatal("a client error must not count against the breaker")
	}
}

func TestAllAttemptsFail(t *testing.T) {
	a := statusUpstream(t, 502, nil, `{"error":{"message":"bad gateway upstream"}}`)
	b := statusUpstream(t, 500, nil, `{"error":{"message":"internal"}}`)
	_, srv := startGateway(t, twoChannels, "A", a.URL, "B", b.URL)
	resp, body := chat(t, srv, "m")
	if resp.StatusCode != 502 || code(apiError(t, body)) != "upstream_error" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if a.hits.Load() != 1 || b.hits.Load() != 1 {
		t.Fatalf("hits a=%d b=%d, want one each", a.hits.Load(), b.hits.Load())
	}
}

func TestAttemptsAreBounded(t *testing.T) {
	var ups []*upstream
	cfg := "routing: {strategy: first, retry: {max_attempts: 2}}\nchannels:\n"
	var repl []string
	for _, name := range []string{"U0", "U1", "U2"} {
		u := statusUpstream(t, 500, nil, `{}`)
		ups = append(ups, u)
		cfg += "  - {type: openai, base_url: " + name + ", models: [m]}\n"
		repl = append(repl, name, u.URL)
	}
	_, srv := startGateway(t, cfg, repl...)
	resp, _ := chat(t, srv, "m")
	if resp.StatusCode != 502 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if n := ups[0].hits.Load() + ups[1].hits.Load() + ups[2].hits.Load(); n != 2 {
		t.Fatalf("%d upstream calls, want max_attempts=2", n)
	}
}

func TestFailoverTimeIsBounded(t *testing.T) {
	slow := slowUpstream(t, 10*time.Second)
	cfg := `
routing: {strategy: first, retry: {max_attempts: 10, max_time: 500ms}}
channels:
  - {type: openai, base_url: S, models: [m], timeout: 300ms, credentials: [{id: s1}, {id: s2}, {id: s3}, {id: s4}]}
`
	_, srv := startGateway(t, cfg, "S", slow.URL)
	start := time.Now()
	resp, body := chat(t, srv, "m")
	if resp.StatusCode != 504 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if n := slow.hits.Load(); n != 2 {
		t.Fatalf("%d attempts in a 500ms budget of 300ms attempts, want 2", n)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("failover ignored max_time")
	}
}

func TestUpstream429CoolsCredentialDown(t *testing.T) {
	a := statusUpstream(t, 429, map[string]string{"Retry-After": "30"}, `{"error":{"message":"slow down"}}`)
	b := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, twoChannels, "A", a.URL, "B", b.URL)
	for i := range 5 {
		resp, body := chat(t, srv, "m")
		if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Credential") != "b" {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if a.hits.Load() != 1 {
		t.Fatalf("a was called %d times; after its 429 it must rest for Retry-After", a.hits.Load())
	}
}

func TestUpstream429WithoutAlternative(t *testing.T) {
	a := statusUpstream(t, 429, map[string]string{"retry-after-ms": "2500"}, `{}`)
	_, srv := startGateway(t, `channels: [{type: openai, base_url: A, models: [m]}]`, "A", a.URL)
	resp, body := chat(t, srv, "m")
	if resp.StatusCode != 429 || code(apiError(t, body)) != "rate_limit_exceeded" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("Retry-After %q, want 3 (2.5s rounded up)", resp.Header.Get("Retry-After"))
	}
	// The credential rests: the next call is refused without reaching it.
	resp, _ = chat(t, srv, "m")
	if resp.StatusCode != 429 || a.hits.Load() != 1 {
		t.Fatalf("status %d, hits %d", resp.StatusCode, a.hits.Load())
	}
}

func TestBreakerOpensAndSkips(t *testing.T) {
	a := statusUpstream(t, 500, nil, `{}`)
	b := mockUpstream(t, mock.Config{})
	g, srv := startGateway(t, strings.Replace(twoChannels, "failures: 100", "failures: 3, open_timeout: 1h", 1), "A", a.URL, "B", b.URL)
	for i := range 10 {
		resp, _ := chat(t, srv, "m")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	if a.hits.Load() != 3 {
		t.Fatalf("a was called %d times; its breaker must open after 3 failures", a.hits.Load())
	}
	if g.breakers.State("a") != breaker.Open {
		t.Fatalf("breaker %v", g.breakers.State("a"))
	}
}

func TestBreakerIgnoresClientCancellations(t *testing.T) {
	slow := slowUpstream(t, 10*time.Second)
	g, srv := startGateway(t, `
breaker: {failures: 2}
channels: [{type: openai, base_url: S, models: [m], timeout: 30s, credentials: [{id: s}]}]
`, "S", slow.URL)
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/chat/completions", strings.NewReader(chatBody("m")))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := srv.Client().Do(req); err == nil {
			resp.Body.Close()
		}
		cancel()
	}
	waitFor(t, func() bool { return slow.canceled.Load() == 5 })
	if g.breakers.State("s") != breaker.Closed {
		t.Fatal("client cancellations opened the breaker")
	}
}

func TestAllBreakersOpen(t *testing.T) {
	a := statusUpstream(t, 500, nil, `{}`)
	_, srv := startGateway(t, `
breaker: {failures: 1, open_timeout: 1h}
channels: [{type: openai, base_url: A, models: [m]}]
`, "A", a.URL)
	chat(t, srv, "m")
	resp, body := chat(t, srv, "m")
	if resp.StatusCode != 503 || code(apiError(t, body)) != "no_upstream_available" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readSSE reads a stream's data payloads until it ends.
func readSSE(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, data)
		}
	}
	return out
}
