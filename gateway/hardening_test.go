package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/telemetry"
)

// These tests hold the promises of docs/security.md, one per way a client
// or an upstream was seen to break them (issue 9's table).

// upstreamKey is the secret of the upstream credential in these tests.
const upstreamKey = "sk-upstream-0123456789abcdef6789"

// forms are the ways a secret was seen to come back: as written, escaped
// for JSON or a URL, or in part.
func forms(secret string) []string {
	out := []string{secret, strings.ReplaceAll(secret, "-", `\u002d`), url.QueryEscape(secret)}
	if len(secret) >= 16 {
		out = append(out, secret[3:15], secret[len(secret)-12:])
	}
	return out
}

// noSecret fails when text holds any form of any secret.
func noSecret(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, f := range forms(s) {
			if strings.Contains(text, f) {
				t.Fatalf("%s holds a secret (%q): %s", where, f, excerpt(text))
			}
		}
	}
}

// logBuffer collects a gateway's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// startLogged serves a gateway whose logs and metrics the test reads.
func startLogged(t *testing.T, yaml string, repl ...string) (*httptest.Server, *logBuffer) {
	t.Helper()
	installTelemetry(t)
	logs := &logBuffer{}
	g, err := New(loadConfig(t, yaml, repl...), Deps{Logger: telemetry.NewLogger(telemetry.LogConfig{Level: "debug"}, logs), Metrics: metricsH})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv, logs
}

func scrape(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Row 1: a 4 MiB model name, from a key not allowed that model, is refused
// before it is logged, labelled, traced or echoed; model names no route
// serves share one metric label.
func TestHugeModelNameIsRefusedBeforeItIsRecorded(t *testing.T) {
	srv, logs := startLogged(t, `
clients: [{name: row1, key: sk-client-row1-aaaa, models: [m]}]
channels: [{type: mock, models: [m, row1-premium]}]`)
	huge := strings.Repeat("x", 4<<20)
	before := logs.Len()
	for range 5 {
		resp := call(t, srv, "/v1/chat/completions", chatBody(huge), "Authorization", "Bearer sk-client-row1-aaaa")
		body := readAll(t, resp)
		if resp.StatusCode != 400 || len(body) > 1024 {
			t.Fatalf("status %d, %d bytes of answer", resp.StatusCode, len(body))
		}
		if e := apiError(t, []byte(body)); e.Param == nil || *e.Param != "model" {
			t.Fatalf("the error must name the model parameter: %s", body)
		}
	}
	if grown := logs.Len() - before; grown > 5*2048 {
		t.Fatalf("the log grew %d bytes for 5 refused requests", grown)
	}
	// Names no route serves, valid or not, are one label.
	for i := range 40 {
		chat(t, srv, fmt.Sprintf("row1-random-%d", i), "Authorization", "Bearer sk-client-row1-aaaa")
	}
	chat(t, srv, "m", "Authorization", "Bearer sk-client-row1-aaaa")
	metrics := scrape(t, srv)
	if len(metrics) > 1<<20 || strings.Contains(metrics, "xxxxxxxxxxxxxxxx") || strings.Contains(metrics, "row1-random-") {
		t.Fatalf("request text reached the metric labels (%d bytes)", len(metrics))
	}
	for _, want := range []string{`gen_ai_request_model="unknown"`, `gen_ai_request_model="m"`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
	if strings.Contains(logs.String(), "xxxxxxxxxxxxxxxx") {
		t.Fatal("the huge model name was logged")
	}
}

// Row 2: an upstream error body that echoes the credential's key, JSON
// escaped, reaches neither the client nor the logs nor the spans.
func TestUpstreamErrorEchoingTheKeyEscaped(t *testing.T) {
	escaped := strings.ReplaceAll(upstreamKey, "-", `\u002d`)
	for _, status := range []int{500, 400} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			up := statusUpstream(t, status, nil, `{"error":{"message":"Incorrect API key provided: `+escaped+`","type":"invalid_request_error"}}`)
			srv, logs := startLogged(t, `channels: [{name: row2, type: openai, base_url: U, models: [m], credentials: [{key: K}]}]`, "U", up.URL, "K", upstreamKey)
			const tp = "00-22222222222222222222222222222222-00f067aa0ba902b7-01"
			resp, body := chat(t, srv, "m", "traceparent", tp)
			if resp.StatusCode != status && resp.StatusCode != 502 {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			if !strings.Contains(string(body), "Incorrect API key provided") {
				t.Fatalf("the upstream's message is still useful: %s", body)
			}
			noSecret(t, "the answer", string(body), upstreamKey)
			noSecret(t, "the logs", logs.String(), upstreamKey)
			for _, s := range spans.Ended() {
				noSecret(t, "a span status", s.Status().Description, upstreamKey)
				for _, kv := range s.Attributes() {
					noSecret(t, "a span attribute", kv.Value.Emit(), upstreamKey)
				}
			}
		})
	}
}

// Row 3: a stream that fails midway with an error naming the key ends with
// an error event that does not, on every client API.
func TestStreamErrorNamingTheKey(t *testing.T) {
	openaiUp := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, `data: {"error":{"message":"key `+strings.ReplaceAll(upstreamKey, "-", `\u002d`)+` was revoked","type":"server_error"}}`+"\n\n")
	}))
	claudeUp := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"key "+upstreamKey+" overloaded\"}}\n\n")
	}))
	srv, logs := startLogged(t, `channels:
  - {name: o, type: openai, base_url: O, models: [m], credentials: [{key: K}]}
  - {name: c, type: claude, base_url: C, models: [c], credentials: [{key: K}]}`, "O", openaiUp.URL, "C", claudeUp.URL, "K", upstreamKey)
	for _, tt := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/messages", `{"model":"m","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/messages", `{"model":"c","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/responses", `{"model":"m","stream":true,"input":"hi"}`},
	} {
		resp := call(t, srv, tt.path, tt.body)
		stream := readAll(t, resp)
		if resp.StatusCode != 200 || !strings.Contains(stream, "error") {
			t.Fatalf("%s %s: %d %s", tt.path, tt.body, resp.StatusCode, stream)
		}
		noSecret(t, tt.path+"'s stream", stream, upstreamKey)
	}
	noSecret(t, "the logs", logs.String(), upstreamKey)
}

// Row 4: every secret of the config is redacted, not only credential
// keys: a base_url query secret, a channel header, Spark's api_secret,
// and a partial echo of a key.
func TestEverySecretOfTheConfigIsRedacted(t *testing.T) {
	const (
		querySecret  = "query-secret-4a4a4a4a4a"
		headerSecret = "header-secret-5b5b5b5b"
		sparkSecret  = "spark-api-secret-6c6c6c6c"
	)
	echo := strings.Join([]string{
		"upstream saw api_key=" + url.QueryEscape(querySecret),
		"X-Org " + headerSecret,
		"signature by " + sparkSecret,
		"Incorrect API key provided: sk-up…6789",
		"or sk-upstr****6789",
	}, "; ")
	body, _ := json.Marshal(map[string]any{"error": map[string]any{"message": echo}})
	up := statusUpstream(t, 401, nil, string(body))
	bad := statusUpstream(t, 400, nil, string(body))
	srv, logs := startLogged(t, `channels:
  - {name: a, type: openai, base_url: "U/v1?api_key=Q", models: [m], headers: {X-Org: "Bearer H"}, credentials: [{key: K}]}
  - {name: b, type: openai, base_url: B, models: [n], credentials: [{key: K}]}
  - {name: spark, type: xinghuo, models: [lite], credentials: [{key: sk-spark-key, app_id: app1, api_secret: S}]}`,
		"U", up.URL, "B", bad.URL, "Q", querySecret, "H", headerSecret, "S", sparkSecret, "K", upstreamKey)
	for _, model := range []string{"m", "n"} {
		resp, answer := chat(t, srv, model)
		if resp.StatusCode < 400 {
			t.Fatalf("%s: status %d", model, resp.StatusCode)
		}
		noSecret(t, "the answer", string(answer), upstreamKey, querySecret, headerSecret, sparkSecret)
		if strings.Contains(string(answer), "sk-up…6789") || strings.Contains(string(answer), "sk-upstr****6789") {
			t.Fatalf("a partial echo of the key reached the client: %s", answer)
		}
	}
	noSecret(t, "the logs", logs.String(), upstreamKey, querySecret, headerSecret, sparkSecret)
	if strings.Contains(logs.String(), "sk-up…6789") {
		t.Fatal("a partial echo of the key reached the logs")
	}
}

// Row 5: slow bodies cannot hold connections. An unauthenticated client is
// answered from its headers at once, and the connection closed, without
// waiting for a body it announced; an authenticated one has the body read
// timeout.
func TestSlowBodiesAreCutOff(t *testing.T) {
	_, srv := startGateway(t, `
server: {read_body_timeout: 500ms}
clients: [{name: row5, key: sk-client-row5-aaaa}]
channels: [{type: mock, models: [m]}]`)
	addr := strings.TrimPrefix(srv.URL, "http://")
	slow := func(auth string) (status string, took time.Duration) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return "", 0
		}
		defer conn.Close()
		start := time.Now()
		fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: 100000\r\n\r\n{\"m", auth)
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(conn)
		line, err := br.ReadString('\n')
		if err != nil {
			return "no answer: " + err.Error(), time.Since(start)
		}
		// The server closes the connection after its answer.
		_, _ = io.Copy(io.Discard, br)
		return strings.TrimSpace(line), time.Since(start)
	}
	var wg sync.WaitGroup
	results := make(chan string, 100)
	for range 100 {
		wg.Go(func() {
			status, took := slow("")
			if !strings.Contains(status, " 401 ") || took > 5*time.Second {
				results <- fmt.Sprintf("unauthenticated: %q after %v", status, took)
			}
		})
	}
	wg.Wait()
	close(results)
	for r := range results {
		t.Fatal(r)
	}
	status, took := slow("Authorization: Bearer sk-client-row5-aaaa\r\n")
	if !strings.Contains(status, " 408 ") || took > 10*time.Second {
		t.Fatalf("authenticated slow body: %q after %v, want 408 after the 500ms read timeout", status, took)
	}
}

// Row 6: large bodies are bounded by configuration, not by clients: a
// client's own concurrency applies before its body is read, and the bytes
// being parsed at once are capped.
func TestLargeBodiesAreBoundedBeforeParsing(t *testing.T) {
	t.Run("client concurrency before the body", func(t *testing.T) {
		up := mockUpstream(t, mock.Config{Latency: 2 * time.Second})
		_, srv := startGateway(t, `
clients: [{name: row6, key: sk-client-row6-aaaa, limits: {concurrency: 1}}]
channels: [{type: openai, base_url: U, models: [m]}]`, "U", up.URL)
		first := make(chan int, 1)
		go func() {
			resp, _ := chat(t, srv, "m", "Authorization", "Bearer sk-client-row6-aaaa")
			first <- resp.StatusCode
		}()
		for up.hits.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		// The second request announces a large body and sends none of it:
		// it is refused from its headers.
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-client-row6-aaaa\r\nContent-Type: application/json\r\nContent-Length: 13600000\r\n\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer without the body: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "concurrency") {
			t.Fatalf("status %d %s", resp.StatusCode, b)
		}
		if s := <-first; s != 200 {
			t.Fatalf("the first request: %d", s)
		}
	})
	t.Run("bytes parsed at once", func(t *testing.T) {
		_, srv := startGateway(t, `
server: {max_body_bytes: 2MiB, max_parsing_bytes: 3MiB, parsing_wait: 300ms}
channels: [{type: mock, models: [m]}]`)
		addr := strings.TrimPrefix(srv.URL, "http://")
		// Two clients announce 1.5 MiB bodies and send them slowly: they
		// hold the whole budget while they do.
		var held []net.Conn
		for range 2 {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", 3<<19)
			held = append(held, conn)
		}
		time.Sleep(200 * time.Millisecond)
		resp := call(t, srv, "/v1/chat/completions", chatBody("m"))
		body := readAll(t, resp)
		if resp.StatusCode != 503 || code(apiError(t, []byte(body))) != "server_busy" {
			t.Fatalf("with the parsing budget held: %d %s", resp.StatusCode, body)
		}
		for _, c := range held {
			c.Close()
		}
		// Once they are gone, requests are parsed again.
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, body := chat(t, srv, "m")
			if resp.StatusCode == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the budget was not given back: %d %s", resp.StatusCode, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// Row 7: one rule for model names. A client allowed only "auto", with
// auto redirected to a cheap model, cannot reach another model by writing
// "AUTO".
func TestModelNamesFollowOneRule(t *testing.T) {
	cheap := mockUpstream(t, mock.Config{})
	premium := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
model_redirect: {auto: gpt-4o-mini}
clients: [{name: row7, key: sk-client-row7-aaaa, models: [auto]}]
channels:
  - {name: cheap, type: openai, base_url: C, models: [gpt-4o-mini]}
  - {name: premium, type: openai, base_url: P, models: [gpt-4o]}`, "C", cheap.URL, "P", premium.URL)
	for i := range 12 {
		name := []string{"auto", "AUTO", "Auto", "aUtO"}[i%4]
		resp, body := chat(t, srv, name, "Authorization", "Bearer sk-client-row7-aaaa")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	if premium.hits.Load() != 0 || cheap.hits.Load() != 12 {
		t.Fatalf("%d calls reached the premium channel, %d the redirect target", premium.hits.Load(), cheap.hits.Load())
	}
	for _, name := range []string{"gpt-4o", "GPT-4O", "random"} {
		if resp, body := chat(t, srv, name, "Authorization", "Bearer sk-client-row7-aaaa"); resp.StatusCode != 403 {
			t.Fatalf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	// Served names are compared the same way; upstreams get the channel's
	// own spelling.
	_, open := startGateway(t, `channels: [{type: openai, base_url: URL, models: [GPT-4o]}]`, "URL", premium.URL)
	if resp, body := chat(t, open, "gpt-4O"); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if _, sent := premium.lastRequest(); sent["model"] != "GPT-4o" {
		t.Fatalf("upstream got model %v", sent["model"])
	}
}

// Row 8: null is absent, for any optional field, on every client API.
func TestNullOptionalFieldsAreAbsent(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `channels: [{type: openai, base_url: U, models: [m]}]`, "U", up.URL)
	for _, tt := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"m","stream":true,"stream_options":null,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/chat/completions", `{"model":"m","stream":null,"stream_options":null,"temperature":null,"top_p":null,"n":null,"stop":null,"max_tokens":null,"max_completion_tokens":null,"tools":null,"tool_choice":null,"response_format":null,"user":null,"seed":null,"messages":[{"role":"user","content":"hi","name":null}]}`},
		{"/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":null},"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/messages", `{"model":"m","max_tokens":10,"stream":true,"system":null,"metadata":null,"tools":null,"tool_choice":null,"stop_sequences":null,"temperature":null,"top_p":null,"top_k":null,"thinking":null,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/responses", `{"model":"m","input":"hi","instructions":null,"tools":null,"temperature":null,"max_output_tokens":null,"stream":null,"text":null,"reasoning":null,"metadata":null}`},
	} {
		resp := call(t, srv, tt.path, tt.body)
		body := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", tt.path, tt.body, resp.StatusCode, body)
		}
	}
}

// Row 11: the client's baggage and tracestate stay with Sluice; the
// upstream gets Sluice's traceparent, which continues the client's trace.
func TestClientTraceContextIsNotForwarded(t *testing.T) {
	installTelemetry(t)
	up := mockUpstream(t, mock.Config{})
	for _, forward := range []bool{false, true} {
		_, srv := startGateway(t, fmt.Sprintf(`
telemetry: {traces: {forward_client_context: %v}}
channels: [{type: openai, base_url: U, models: [m]}]`, forward), "U", up.URL)
		const tp = "00-11111111111111111111111111111111-00f067aa0ba902b7-01"
		chat(t, srv, "m", "traceparent", tp, "tracestate", "vendor=client-secret", "baggage", "user.id=client-secret")
		h, _ := up.lastRequest()
		if !strings.HasPrefix(h.Get("traceparent"), "00-11111111111111111111111111111111-") {
			t.Fatalf("the upstream must continue the client's trace: %q", h.Get("traceparent"))
		}
		got := h.Get("baggage") != "" || h.Get("tracestate") != ""
		if got != forward {
			t.Fatalf("forward_client_context %v: baggage %q, tracestate %q upstream", forward, h.Get("baggage"), h.Get("tracestate"))
		}
	}
}
