package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// These tests pin down failure modes found in review.

func TestHugeTokenParametersRefused(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `channels: [{type: openai, base_url: U, models: [m], credentials: [{limits: {tpm: 1000}}]}]`, "U", up.URL)
	for _, body := range []string{
		`{"model":"m","max_tokens":9223372036854775807,"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"m","max_completion_tokens":99999999,"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"m","n":129,"messages":[{"role":"user","content":"x"}]}`,
	} {
		resp := call(t, srv, "/v1/chat/completions", body)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("%s: status %d %s", body, resp.StatusCode, b)
		}
	}
}

func TestRecoveredAbortsACommittedAnswer(t *testing.T) {
	g, _ := startGateway(t, `channels: [{type: mock, models: [m]}]`)
	e := echo.New()
	e.GET("/panic-before", func(c echo.Context) error { panic("bug") }, g.accessLog)
	e.GET("/panic-after", func(c echo.Context) error {
		c.Response().Header().Set("Content-Type", "text/event-stream")
		c.Response().WriteHeader(200)
		io.WriteString(c.Response(), "data: {}\n\n")
		c.Response().Flush()
		panic("bug")
	}, g.accessLog)
	e.HTTPErrorHandler = g.httpError
	srv := httptest.NewServer(e)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/panic-before")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || code(apiError(t, b)) != "internal_error" {
		t.Fatalf("before the answer: %d %s", resp.StatusCode, b)
	}
	resp, err = http.Get(srv.URL + "/panic-after")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("a panic after the answer began must break the connection, not end the answer cleanly")
	}
}

// TestClientThatStopsReadingFreesItsSlot: a client that never reads its
// stream must not hold the credential's only slot forever.
func TestClientThatStopsReadingFreesItsSlot(t *testing.T) {
	chunk := `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"` + strings.Repeat("x", 8000) + `"}}]}` + "\n\n"
	plain := mock.New(mock.Config{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, _ := io.ReadAll(r.Body); !strings.Contains(string(b), `"stream":true`) {
			r.Body = io.NopCloser(strings.NewReader(string(b)))
			plain.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for r.Context().Err() == nil {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	_, srv := startGateway(t, `
channels: [{type: openai, base_url: U, models: [m], stream_idle_timeout: 300ms, credentials: [{limits: {concurrency: 1}}]}]
`, "U", up.URL)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(streamBody), streamBody)
	// The client never reads. The slot must come back.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, body := chat(t, srv, "m")
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stalled client still holds the slot: %d %s", resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestUpstreamRedirectNotFollowed(t *testing.T) {
	elsewhere := mockUpstream(t, mock.Config{})
	redirector := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	_, srv := startGateway(t, `
channels: [{type: azure, base_url: R, models: [m], headers: {X-Org-Token: org-secret}, credentials: [{key: azure-secret-key}]}]
`, "R", redirector.URL)
	resp, body := chat(t, srv, "m")
	if resp.StatusCode != 502 {
		t.Fatalf("a redirect is an upstream failure: %d %s", resp.StatusCode, body)
	}
	if elsewhere.hits.Load() != 0 {
		t.Fatal("the credential followed a redirect to another host")
	}
}

func TestNonOpenAIClientErrorWrapped(t *testing.T) {
	a := statusUpstream(t, 422, nil, `{"detail":[{"loc":["body","x"],"msg":"field required"}]}`)
	_, srv := startGateway(t, `channels: [{type: openai, base_url: A, models: [m]}]`, "A", a.URL)
	resp, body := chat(t, srv, "m")
	e := apiError(t, body)
	if resp.StatusCode != 422 || !strings.Contains(e.Message, "field required") {
		t.Fatalf("%d %+v", resp.StatusCode, e)
	}
}

func TestClientErrorsDoNotResetTheBreaker(t *testing.T) {
	var n int
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		w.Header().Set("Content-Type", "application/json")
		if n%2 == 1 {
			w.WriteHeader(500)
			io.WriteString(w, `{"error":{"message":"boom"}}`)
			return
		}
		w.WriteHeader(400)
		io.WriteString(w, `{"error":{"message":"bad param"}}`)
	}))
	g, srv := startGateway(t, `
breaker: {failures: 3, open_timeout: 1h}
channels: [{type: openai, base_url: U, models: [m], credentials: [{id: a}]}]
`, "U", up.URL)
	for range 5 { // 500, 400, 500, 400, 500
		chat(t, srv, "m")
	}
	if g.breakers.State("a") != breaker.Open {
		t.Fatal("client errors between failures must not reset the breaker's count")
	}
}

func TestHeadersOfAFailedAttemptDoNotLeak(t *testing.T) {
	empty := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
	}))
	bad := statusUpstream(t, 400, nil, `{"error":{"message":"bad request","type":"invalid_request_error"}}`)
	_, srv := startGateway(t, twoChannels, "A", empty.URL, "B", bad.URL)
	resp := call(t, srv, "/v1/chat/completions", streamBody)
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("X-Sluice-Credential") == "a" {
		t.Fatalf("%d, credential header %q", resp.StatusCode, resp.Header.Get("X-Sluice-Credential"))
	}
}

func TestFailoverChargesTheClientOnce(t *testing.T) {
	a := statusUpstream(t, 500, nil, `{}`)
	b := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
clients: [{name: c, key: sk-c, limits: {rpm: 2}}]
routing: {strategy: first}
breaker: {failures: 100}
channels:
  - {name: a, type: openai, base_url: A, models: [m]}
  - {name: b, type: openai, base_url: B, models: [m]}
`, "A", a.URL, "B", b.URL)
	for i := range 2 {
		resp, body := chat(t, srv, "m", "Authorization", "Bearer sk-c")
		if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Attempts") != "2" {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if resp, _ := chat(t, srv, "m", "Authorization", "Bearer sk-c"); resp.StatusCode != 429 {
		t.Fatalf("third request in a minute of 2: %d", resp.StatusCode)
	}
}

func TestKeepAlivesKeepAStreamAlive(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"thinking"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		for range 10 { // 500ms of silence but for keep-alive comments
			time.Sleep(50 * time.Millisecond)
			io.WriteString(w, ": keep-alive\n\n")
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"done"},"finish_reason":"stop"}]}`+"\n\ndata: [DONE]\n\n")
	}))
	_, srv := startGateway(t, `channels: [{type: openai, base_url: U, models: [m], stream_idle_timeout: 200ms}]`, "U", up.URL)
	resp := call(t, srv, "/v1/chat/completions", streamBody)
	defer resp.Body.Close()
	events := readSSE(t, resp.Body)
	if events[len(events)-1] != "[DONE]" {
		t.Fatalf("keep-alives must hold the stream open: %q", events)
	}
}

func TestStreamWithoutDoneButFinished(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}`+"\n\n")
	}))
	g, srv := startGateway(t, `breaker: {failures: 1}
channels: [{type: openai, base_url: U, models: [m], credentials: [{id: u}]}]`, "U", up.URL)
	resp := call(t, srv, "/v1/chat/completions", streamBody)
	defer resp.Body.Close()
	events := readSSE(t, resp.Body)
	if events[len(events)-1] != "[DONE]" || g.breakers.State("u") != breaker.Closed {
		t.Fatalf("a finished stream without [DONE] is complete: %q", events)
	}
}

func TestFloatUsageAccepted(t *testing.T) {
	a := statusUpstream(t, 200, nil, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2.0,"completion_tokens":1.0,"total_tokens":3.0}}`)
	b := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, twoChannels, "A", a.URL, "B", b.URL)
	resp, body := chat(t, srv, "m")
	if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Credential") != "a" || b.hits.Load() != 0 {
		t.Fatalf("a valid answer must not be retried: %d %s", resp.StatusCode, body)
	}
}

func TestAPIKeyHeaderBesideOtherAuthorization(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, authConfig, "UPSTREAM", up.URL)
	resp, body := chat(t, srv, "gpt-4o", "Authorization", "Basic Zm9vOmJhcg==", "x-api-key", "sk-client-a")
	if resp.StatusCode != 200 {
		t.Fatalf("x-api-key must still count: %d %s", resp.StatusCode, body)
	}
}

func TestRoundRobinWithTiers(t *testing.T) {
	base := testCands([]int{1, 1, 1, 1}, []int{10, 10, 0, 0})
	rr := &roundRobin{}
	first := map[string]int{}
	for range 10 {
		cands := append([]candidate(nil), base...)
		orderTiers(rr, "m", cands)
		first[cands[0].cred.id]++
	}
	if first["c0"] != 5 || first["c1"] != 5 {
		t.Fatalf("the top tier must alternate: %v", first)
	}
}

// readLine is a helper for raw-socket tests.
func readLine(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	l, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return l
}
