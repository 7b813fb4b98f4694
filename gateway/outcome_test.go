package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/quota"
	"github.com/sluice-gateway/sluice/telemetry"
)

// TestOutcomeTable walks the outcome table row by row. Each row's
// happening is produced for real, over sockets, on credential "a", with a
// mock credential "b" to fail over to; then what followed is read from
// the outside: the attempt's span names the happening, "b" answers only
// when the table says retry, the credential that began the answer, the
// breaker's counts, the tokens charged to "a" and its cool-down.
func TestOutcomeTable(t *testing.T) {
	installTelemetry(t)
	const estimate = 259 // chatBody: 3 prompt tokens, 256 reserved for the completion
	seen := map[happening]bool{}
	for _, tc := range outcomeCases(t) {
		t.Run(tc.what.String(), func(t *testing.T) {
			seen[tc.what] = true
			r := runOutcomeCase(t, tc)
			v := outcomes[tc.what]
			if r.happened != tc.what.String() {
				t.Fatalf("the attempt's span says %q happened", r.happened)
			}
			if r.retried != v.retry {
				t.Errorf("failed over to b: %v, the table says %v", r.retried, v.retry)
			}
			if r.committedByA != v.committed {
				t.Errorf("the answer came from a: %v, the table says committed %v", r.committedByA, v.committed)
			}
			// One failure opens a's breaker (breaker.failures: 1).
			switch v.breaker {
			case breakerSuccess:
				if r.counts.TotalSuccesses != 1 || r.counts.TotalFailures != 0 || r.breaker != breaker.Closed {
					t.Errorf("breaker %v, counts %+v, want one success", r.breaker, r.counts)
				}
			case breakerFailure:
				if r.breaker != breaker.Open {
					t.Errorf("breaker %v, want open after one failure", r.breaker)
				}
			default:
				if r.counts.TotalSuccesses+r.counts.TotalFailures != 0 || r.breaker != breaker.Closed {
					t.Errorf("breaker %v, counts %+v, want nothing counted", r.breaker, r.counts)
				}
			}
			switch want := tc.charged; v.charge {
			case chargeNothing:
				if r.charged != 0 {
					t.Errorf("charged %d tokens, want none", r.charged)
				}
			case chargeEstimate:
				if r.charged != estimate {
					t.Errorf("charged %d tokens, want the estimate %d", r.charged, estimate)
				}
			case chargeUsage:
				if want > 0 && r.charged != want || want < 0 && (r.charged <= 0 || r.charged == estimate) {
					t.Errorf("charged %d tokens, want the usage (%d)", r.charged, want)
				}
			}
			if (r.cooldown > 0) != v.cooldown {
				t.Errorf("cool-down %v, the table says %v", r.cooldown, v.cooldown)
			}
		})
	}
	for h := range happenings {
		if !seen[h] {
			t.Errorf("no case walks the row %q", h)
		}
	}
}

// outcomeCase produces one happening on credential "a".
type outcomeCase struct {
	what     happening
	channel  string // channel a's fields besides name, base_url, models and credentials
	path     string // default /v1/chat/completions
	body     string // default chatBody("m")
	upstream http.HandlerFunc
	client   func(t *testing.T, srv *httptest.Server, path, body string) // default: one call, read whole
	direct   bool                                                        // served without the HTTP layer (a request no client can send)
	drain    bool                                                        // the server's drain timeout hits once the answer began
	charged  int64                                                       // chargeUsage: the tokens expected; -1: some, from the stream
}

// outcomeResult is what a case was seen to do.
type outcomeResult struct {
	happened     string
	retried      bool
	committedByA bool
	counts       struct{ TotalSuccesses, TotalFailures uint32 }
	breaker      breaker.State
	charged      int64
	cooldown     time.Duration
}

const streamChatBody = `{"model":"m","stream":true,"messages":[{"role":"user","content":"Say hello"}]}`

func outcomeCases(t *testing.T) []outcomeCase {
	answer := `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}`
	chunk := `data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}` + "\n\n"
	status := func(code int, body string, header ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i+1 < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			io.WriteString(w, body)
		}
	}
	slowStream := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for range 200 {
			io.WriteString(w, chunk)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return []outcomeCase{
		{what: answered, upstream: status(200, answer), charged: 12},
		{what: notBuilt, direct: true, upstream: status(200, answer)},
		{what: notExpressible, channel: "type: claude", body: `{"model":"m","logprobs":true,"messages":[{"role":"user","content":"Say hello"}]}`, upstream: status(200, answer)},
		{what: clientLeft, upstream: func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, client: func(t *testing.T, srv *httptest.Server, path, body string) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+path, strings.NewReader(body))
			if resp, err := srv.Client().Do(req); err == nil {
				resp.Body.Close()
			}
		}},
		{what: timedOut, channel: "timeout: 200ms", upstream: func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}},
		{what: unreachable, channel: "base_url: CLOSED"},
		{what: readFailed, upstream: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(200)
			io.WriteString(w, `{"id":"x"`)
			w.(http.Flusher).Flush()
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		}},
		{what: rateLimited, upstream: status(429, `{"error":{"message":"slow down"}}`, "Retry-After", "7")},
		{what: credentialRejected, upstream: status(401, `{"error":{"message":"bad key"}}`)},
		{what: upstreamFailed, upstream: status(503, `{"error":{"message":"overloaded"}}`)},
		{what: clientMistake, upstream: status(422, `{"error":{"message":"bad parameter"}}`)},
		{what: invalidAnswer, upstream: status(200, `<html>not json</html>`)},
		{what: untranslatable, channel: "type: claude", upstream: status(200, `{"type":"message","content":"not a list"}`)},
		{what: unencodable, path: "/v1/messages", body: `{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"Say hello"}]}`,
			// The usage cannot be read from such an answer: the estimate
			// (3 prompt tokens and max_tokens 16) is charged.
			upstream: status(200, `{"id":"x","choices":"not a list","usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}`), charged: 19},
		{what: streamFailedEarly, body: streamChatBody, upstream: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			conn, buf, _ := http.NewResponseController(w).Hijack()
			buf.WriteString("zz\r\nnot a chunk\r\n") // a broken chunked encoding
			buf.Flush()
			conn.Close()
		}},
		{what: badStart, body: streamChatBody, upstream: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, `data: {"error":{"message":"boom"}}`+"\n\n")
		}},
		{what: emptyStream, body: streamChatBody, upstream: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
		}},
		{what: leftMidway, body: streamChatBody, upstream: slowStream, charged: -1,
			client: func(t *testing.T, srv *httptest.Server, path, body string) {
				resp := call(t, srv, path, body)
				line, _ := bufio.NewReader(resp.Body).ReadString('\n')
				if !strings.HasPrefix(line, "data: ") {
					t.Errorf("no first event: %q", line)
				}
				resp.Body.Close()
			}},
		{what: drainedMidway, body: streamChatBody, upstream: slowStream, drain: true, charged: -1},
		{what: brokenMidway, body: streamChatBody, charged: -1, upstream: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, chunk)
			w.(http.Flusher).Flush()
			io.WriteString(w, `data: {"error":{"message":"midway"}}`+"\n\n")
		}},
	}
}

// runOutcomeCase serves one case on a gateway of its own.
func runOutcomeCase(t *testing.T, tc outcomeCase) outcomeResult {
	up := newUpstream(t, cmpHandler(tc.upstream))
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String()
	closed.Close()
	channel := "type: openai"
	if tc.channel != "" && !strings.HasPrefix(tc.channel, "type:") {
		channel += ", " + tc.channel
	} else if tc.channel != "" {
		channel = tc.channel
	}
	base := "A"
	if strings.Contains(channel, "base_url") {
		base = ""
	}
	cfg := loadConfig(t, `
breaker: {failures: 1, open_timeout: 1h}
routing: {strategy: first, retry: {max_attempts: 2}}
channels:
  - {name: a, `+channel+joinBase(base)+`, priority: 10, models: [m], credentials: [{id: a, key: sk-a-secret-key, limits: {tpm: 1000000}}]}
  - {name: b, type: mock, models: [m], credentials: [{id: b}]}
`, "CLOSED", closedURL, "A", up.URL)
	limiter := quota.NewMemory(quota.MemoryConfig{})
	g, err := New(cfg, Deps{Logger: testLogger(), Limiter: limiter})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	srv := httptest.NewUnstartedServer(g)
	base2, drain := context.WithCancelCause(context.Background())
	defer drain(nil)
	srv.Config.BaseContext = func(net.Listener) context.Context { return base2 }
	srv.Start()
	defer srv.Close()
	spans.Reset()

	path, body := cmpString(tc.path, "/v1/chat/completions"), cmpString(tc.body, chatBody("m"))
	var fromA bool
	switch {
	case tc.direct:
		fromA = serveCorrupted(t, g, body)
	case tc.client != nil:
		tc.client(t, srv, path, body)
	case tc.drain:
		resp := call(t, srv, path, body)
		fromA = resp.Header.Get("X-Sluice-Credential") == "a"
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		if !strings.HasPrefix(line, "data: ") {
			t.Fatalf("no first event: %q", line)
		}
		drain(ErrDraining)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	default:
		resp := call(t, srv, path, body)
		fromA = resp.Header.Get("X-Sluice-Credential") == "a"
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	var r outcomeResult
	r.committedByA = fromA || tc.client != nil && committedSpan(t)
	waitFor(t, func() bool { return attemptSpan(t, "a") != nil })
	r.happened = attr(attemptSpan(t, "a"), telemetry.AttemptResult).AsString()
	r.retried = attemptSpan(t, "b") != nil
	c := g.breakers.Counts("a")
	r.counts.TotalSuccesses, r.counts.TotalFailures = c.TotalSuccesses, c.TotalFailures
	r.breaker = g.breakers.State("a")
	u, _ := limiter.Usage(context.Background(), []quota.Subject{{Kind: quota.KindCredential, ID: "a"}}, []quota.Limit{{TPM: 1000000}})
	tpm := u[0].Level("tpm")
	r.charged = tpm.Limit - tpm.Remaining
	r.cooldown = u[0].CooldownLeft
	return r
}

func joinBase(base string) string {
	if base == "" {
		return ""
	}
	return ", base_url: " + base
}

func cmpString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func cmpHandler(h http.HandlerFunc) http.Handler {
	if h == nil {
		return http.NotFoundHandler()
	}
	return h
}

// attemptSpan is the ended attempt span of a credential, or nil.
func attemptSpan(t *testing.T, cred string) sdktrace.ReadOnlySpan {
	for _, s := range spans.Ended() {
		if s.SpanKind() == trace.SpanKindClient && attr(s, telemetry.Credential).AsString() == cred {
			return s
		}
	}
	return nil
}

// committedSpan reports whether a's attempt ended after its answer began.
func committedSpan(t *testing.T) bool {
	var s sdktrace.ReadOnlySpan
	waitFor(t, func() bool { s = attemptSpan(t, "a"); return s != nil })
	return attr(s, telemetry.Outcome).AsString() == "interrupted" || attr(s, telemetry.Outcome).AsString() == "ok"
}

// serveCorrupted serves a request whose fields cannot be encoded again, as
// no client can send: the upstream body cannot be built. It reports
// whether "a" began the answer.
func serveCorrupted(t *testing.T, g *Gateway, body string) bool {
	req, err := parseRequest("chat/completions", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	req.fields["broken"] = json.RawMessage("{")
	rec := httptest.NewRecorder()
	c := g.echo.NewContext(httptest.NewRequest("POST", "/v1/chat/completions", nil), rec)
	err = g.serve(c, req)
	if err == nil || !strings.Contains(err.Error(), "build upstream body") {
		t.Fatalf("serve: %v", fmt.Sprint(err))
	}
	return rec.Header().Get("X-Sluice-Credential") == "a"
}
