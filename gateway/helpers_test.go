package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// upstream is a fake upstream on a real socket that records what reached it.
type upstream struct {
	*httptest.Server
	hits atomic.Int64

	mu       sync.Mutex
	header   http.Header
	body     []byte
	canceled atomic.Int64 // requests whose context ended before the handler did
}

func newUpstream(t testing.TB, h http.Handler) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.header, u.body = r.Header.Clone(), body
		u.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
		if r.Context().Err() != nil {
			u.canceled.Add(1)
		}
	}))
	t.Cleanup(u.Close)
	return u
}

func mockUpstream(t *testing.T, cfg mock.Config) *upstream {
	return newUpstream(t, mock.New(cfg))
}

// statusUpstream answers every call with one status and body.
func statusUpstream(t *testing.T, status int, header map[string]string, body string) *upstream {
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
}

// lastRequest returns the headers and body of the last call.
func (u *upstream) lastRequest() (http.Header, map[string]any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var body map[string]any
	_ = json.Unmarshal(u.body, &body)
	return u.header, body
}

// testLogger discards logs unless SLUICE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// loadConfig parses a native YAML config with placeholders replaced
// (pairs of old, new), provisions and validates it.
func loadConfig(t testing.TB, yaml string, repl ...string) *config.Config {
	t.Helper()
	yaml = strings.NewReplacer(repl...).Replace(yaml)
	cfg, _, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	cfg.Provision()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("invalid config: %v", err)
	}
	return cfg
}

// startGateway serves a gateway built from a YAML config on a real socket.
func startGateway(t *testing.T, yaml string, repl ...string) (*Gateway, *httptest.Server) {
	t.Helper()
	return startGatewayDeps(t, Deps{}, yaml, repl...)
}

func startGatewayDeps(t *testing.T, deps Deps, yaml string, repl ...string) (*Gateway, *httptest.Server) {
	t.Helper()
	if deps.Logger == nil {
		deps.Logger = testLogger()
	}
	g, err := New(loadConfig(t, yaml, repl...), deps)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

// call sends a JSON POST; hdr are header name/value pairs.
func call(t *testing.T, srv *httptest.Server, path, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// chat sends a non-streaming chat call and reads the whole answer.
func chat(t *testing.T, srv *httptest.Server, model string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	resp := call(t, srv, "/v1/chat/completions", chatBody(model), hdr...)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func chatBody(model string) string {
	return `{"model":"` + model + `","messages":[{"role":"user","content":"Say hello"}]}`
}

// apiError decodes an OpenAI-shaped error body.
func apiError(t *testing.T, body []byte) openAIErrorBody {
	t.Helper()
	var e struct {
		Error *openAIErrorBody `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		t.Fatalf("not an OpenAI error body: %s", body)
	}
	return *e.Error
}

func code(e openAIErrorBody) string {
	if e.Code == nil {
		return ""
	}
	return *e.Code
}

// lastBody returns the body of the last call.
func (u *upstream) lastBody() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return string(u.body)
}
