package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/usage"
	"github.com/sluice-gateway/sluice/integration/redistest"
)

const (
	adminToken   = "admin-token-0123456789abcdef"
	clientKey1   = "sk-client-file-aaaaaaaa"
	fileKey      = "sk-file-upstream-secret-1111"
	apiKey       = "sk-api-upstream-secret-2222"
	secretKeyEnv = "a-sealing-key-for-tests-0123456789"
)

// node is one instance under test: a gateway with its control plane on a
// real socket.
type node struct {
	ctl  *Control
	gw   *gateway.Gateway
	srv  *httptest.Server
	file string
}

const baseConfig = `
admin: {token: ` + adminToken + `}
clients: [{name: file-client, key: ` + clientKey1 + `}]
channels:
  - {name: file-chan, type: openai, base_url: UP, models: [m], credentials: [{id: f1, key: ` + fileKey + `}]}
`

func writeConfig(t *testing.T, dir, text string, repl ...string) string {
	t.Helper()
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(strings.NewReplacer(repl...).Replace(text)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func load(path string) (*config.Config, error) {
	c, _, err := config.Load(path)
	return c, err
}

// startNode serves a control plane on a store for a config file.
func startNode(t *testing.T, path string, store Store, sealer *Sealer) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	quiet := slog.New(slog.DiscardHandler)
	ctl, err := New(ctx, Config{File: path, Load: load, Store: store, Sealer: sealer, Logger: quiet, Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(ctl.Effective(), gateway.Deps{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	ctl.Attach(gw)
	go ctl.Run(ctx, false)
	mux := http.NewServeMux()
	mux.Handle("/api/", ctl.Handler())
	mux.Handle("/", gw)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &node{ctl: ctl, gw: gw, srv: srv, file: path}
}

// api calls an admin route and decodes its JSON answer.
func (n *node) api(t *testing.T, method, path, body string, hdr ...string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, n.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := n.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if bytes.Contains(raw, []byte(fileKey)) || bytes.Contains(raw, []byte(apiKey)) || bytes.Contains(raw, []byte(adminToken)) || bytes.Contains(raw, []byte(clientKey1)) {
		t.Fatalf("%s %s answered a secret: %s", method, path, raw)
	}
	return resp.StatusCode, out, resp.Header
}

// chat calls the gateway with a client key; it returns the status and the
// credential that answered.
func (n *node) chat(t *testing.T, key, model string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", n.srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := n.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Sluice-Credential")
}

func upstream(t *testing.T) *httptest.Server {
	m := mock.New(mock.Config{})
	var up *httptest.Server
	up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastAuth.mu.Lock()
		lastAuth.byURL[up.URL] = r.Header.Get("Authorization")
		lastAuth.mu.Unlock()
		m.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	return up
}

func TestEveryRouteNeedsTheAdminToken(t *testing.T) {
	up := upstream(t)
	n := startNode(t, writeConfig(t, t.TempDir(), baseConfig, "UP", up.URL), &MemoryStore{}, nil)
	routes := []struct{ method, path string }{
		{"GET", "/api/instances"}, {"GET", "/api/channels"}, {"POST", "/api/channels/test"},
		{"POST", "/api/channels"}, {"PUT", "/api/channels/x"}, {"PATCH", "/api/channels/x"}, {"DELETE", "/api/channels/x"},
		{"PATCH", "/api/credentials/f1"}, {"POST", "/api/credentials/f1/reset"},
		{"GET", "/api/clients"}, {"POST", "/api/clients"}, {"PATCH", "/api/clients/x"},
		{"POST", "/api/clients/x/rotate"}, {"DELETE", "/api/clients/x"},
		{"POST", "/api/reload"}, {"GET", "/api/config"}, {"GET", "/api/audit"}, {"GET", "/api/nonsense"},
	}
	for _, auth := range []string{"", "Bearer " + clientKey1, "Bearer wrong-token-wrong-token", "Basic " + adminToken} {
		for _, r := range routes {
			req, _ := http.NewRequest(r.method, n.srv.URL+r.path, strings.NewReader(`{"enabled":false,"name":"x"}`))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			req.RemoteAddr = "10.0.0.1:1"
			resp, err := n.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("%s %s with %q: %d", r.method, r.path, auth, resp.StatusCode)
			}
		}
	}
	// Nothing changed.
	if code, _ := n.chat(t, clientKey1, "m"); code != 200 {
		t.Fatalf("the gateway after refused admin calls: %d", code)
	}
}

func TestAdminGuessingIsLimited(t *testing.T) {
	up := upstream(t)
	n := startNode(t, writeConfig(t, t.TempDir(), baseConfig, "UP", up.URL), &MemoryStore{}, nil)
	codes := map[int]int{}
	for i := range 15 {
		req, _ := http.NewRequest("GET", n.srv.URL+"/api/channels", nil)
		req.Header.Set("Authorization", fmt.Sprintf("Bearer guess-%020d", i))
		resp, _ := n.srv.Client().Do(req)
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[401] != guardFailures || codes[429] != 15-guardFailures {
		t.Fatalf("codes %v: want %d refusals, then 429", codes, guardFailures)
	}
	if code, _, _ := n.api(t, "GET", "/api/channels", ""); code != 429 {
		t.Fatalf("even the right token waits out the window: %d", code)
	}
}

func TestWithoutATokenThereIsNoAPI(t *testing.T) {
	up := upstream(t)
	path := writeConfig(t, t.TempDir(), strings.Replace(baseConfig, "admin: {token: "+adminToken+"}", "", 1), "UP", up.URL)
	cfg, err := load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.IsEnabled() {
		t.Fatal("no token, no admin")
	}
	t.Setenv("SLUICE_ADMIN_TOKEN", adminToken)
	if cfg, _ = load(path); !cfg.Admin.IsEnabled() {
		t.Fatal("SLUICE_ADMIN_TOKEN turns it on")
	}
}

func TestChannelsThroughTheAPI(t *testing.T) {
	up := upstream(t)
	dir := t.TempDir()
	sealer, _ := NewSealer(secretKeyEnv)
	store := NewFileStore(filepath.Join(dir, "state.json"))
	n := startNode(t, writeConfig(t, dir, baseConfig, "UP", up.URL), store, sealer)

	// Invalid: every problem with its path, relative to the channel.
	code, out, _ := n.api(t, "POST", "/api/channels", `{"name":"api-chan","type":"openai","base_url":"`+up.URL+`","models":[],"credentials":[{"key":"`+apiKey+`","limits":{"qps":-1}}]}`)
	problems := fmt.Sprint(out["error"].(map[string]any)["problems"])
	if code != 400 || !strings.Contains(problems, "models: at least one model is required") || !strings.Contains(problems, "credentials[0].limits.qps: must be > 0") {
		t.Fatalf("%d %v", code, out)
	}
	// A file channel cannot be changed here.
	if code, out, _ := n.api(t, "PUT", "/api/channels/file-chan", `{"type":"openai","models":["m"]}`); code != 409 || !strings.Contains(fmt.Sprint(out), n.file) {
		t.Fatalf("%d %v", code, out)
	}
	// Valid: added, served, listed with its source, its key sealed at rest.
	code, out, hdr := n.api(t, "POST", "/api/channels", `{"name":"api-chan","type":"openai","base_url":"`+up.URL+`","models":["api-model"],"credentials":[{"id":"a1","key":"`+apiKey+`"}]}`)
	if code != 201 || hdr.Get("ETag") != `"1"` {
		t.Fatalf("%d %v", code, out)
	}
	if code, cred := n.chat(t, clientKey1, "api-model"); code != 200 || cred != "a1" {
		t.Fatalf("routed through the new channel: %d %q", code, cred)
	}
	if raw, _ := os.ReadFile(filepath.Join(dir, "state.json")); bytes.Contains(raw, []byte(apiKey)) || !bytes.Contains(raw, []byte(sealedPrefix)) {
		t.Fatalf("the state file holds the key in clear: %s", raw)
	}
	_, out, _ = n.api(t, "GET", "/api/channels", "")
	sources := map[string]string{}
	for _, ch := range out["channels"].([]any) {
		m := ch.(map[string]any)
		sources[m["name"].(string)] = m["source"].(string)
	}
	if sources["file-chan"] != "file" || sources["api-chan"] != "api" {
		t.Fatalf("sources %v", sources)
	}
	// A stale write is refused.
	if code, _, _ := n.api(t, "PATCH", "/api/credentials/a1", `{"enabled":false}`, "If-Match", `"0"`); code != 409 {
		t.Fatalf("stale write: %d", code)
	}
	if code, _, _ := n.api(t, "PATCH", "/api/credentials/a1", `{"enabled":false}`, "If-Match", `"1"`); code != 200 {
		t.Fatalf("write on the current version: %d", code)
	}
	if code, _ := n.chat(t, clientKey1, "api-model"); code != 404 {
		t.Fatalf("its only credential disabled, the model is not served: %d", code)
	}
	// Replacing keeps the secrets sent back as ***.
	if code, out, _ := n.api(t, "PUT", "/api/channels/api-chan", `{"type":"openai","base_url":"`+up.URL+`","models":["api-model"],"credentials":[{"id":"a1","key":"***"}]}`); code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	if code, _ := n.chat(t, clientKey1, "api-model"); code != 200 {
		t.Fatalf("re-enabled by the replacement: %d", code)
	}
	if _, sent := lastKey(t, up); sent != "Bearer "+apiKey {
		t.Fatalf("the upstream got %q", sent)
	}
	// A restart keeps API changes.
	n2 := startNode(t, n.file, NewFileStore(filepath.Join(dir, "state.json")), sealer)
	if code, cred := n2.chat(t, clientKey1, "api-model"); code != 200 || cred != "a1" {
		t.Fatalf("after a restart: %d %q", code, cred)
	}
	// Deleting it.
	if code, _, _ := n.api(t, "DELETE", "/api/channels/api-chan", ""); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := n.chat(t, clientKey1, "api-model"); code != 404 {
		t.Fatalf("after delete: %d", code)
	}
	// The audit log has it all, without secrets.
	_, out, _ = n.api(t, "GET", "/api/audit", "")
	var actions []string
	for _, e := range out["entries"].([]any) {
		actions = append(actions, e.(map[string]any)["action"].(string))
	}
	if strings.Join(actions, ",") != "channel.delete,channel.replace,credential.disable,channel.add" {
		t.Fatalf("audit %v", actions)
	}
}

// lastKey is the Authorization the upstream saw last.
func lastKey(t *testing.T, up *httptest.Server) (int, string) {
	t.Helper()
	lastAuth.mu.Lock()
	defer lastAuth.mu.Unlock()
	return 200, lastAuth.byURL[up.URL]
}

// lastAuth keeps the Authorization each test upstream saw last.
var lastAuth = struct {
	mu    sync.Mutex
	byURL map[string]string
}{byURL: map[string]string{}}

func TestSecretsNeedASealingKey(t *testing.T) {
	up := upstream(t)
	n := startNode(t, writeConfig(t, t.TempDir(), baseConfig, "UP", up.URL), &MemoryStore{}, nil)
	code, out, _ := n.api(t, "POST", "/api/channels", `{"name":"c","type":"openai","base_url":"`+up.URL+`","models":["x"],"credentials":[{"key":"`+apiKey+`"}]}`)
	if code != 400 || !strings.Contains(fmt.Sprint(out), "SLUICE_SECRET_KEY") {
		t.Fatalf("%d %v", code, out)
	}
	// A channel without secrets needs none.
	if code, out, _ := n.api(t, "POST", "/api/channels", `{"name":"m2","type":"mock","models":["x"]}`); code != 201 {
		t.Fatalf("%d %v", code, out)
	}
}

func TestClientKeysThroughTheAPI(t *testing.T) {
	up := upstream(t)
	clock := time.Now()
	n := startNode(t, writeConfig(t, t.TempDir(), baseConfig, "UP", up.URL), &MemoryStore{}, nil)
	n.ctl.cfg.Now = func() time.Time { return clock }
	code, out, _ := n.api(t, "POST", "/api/clients", `{"name":"team-b","models":["m"],"limits":{"rpm":100}}`)
	key, _ := out["key"].(string)
	if code != 201 || !strings.HasPrefix(key, "sk-sluice-") {
		t.Fatalf("%d %v", code, out)
	}
	if code, _ := n.chat(t, key, "m"); code != 200 {
		t.Fatalf("the new key: %d", code)
	}
	_, out, _ = n.api(t, "GET", "/api/clients", "")
	if s := fmt.Sprint(out); strings.Contains(s, key) || strings.Contains(s, config.KeyDigest(key)) || !strings.Contains(s, "team-b") {
		t.Fatalf("clients %v", out)
	}
	// Rotation with a grace period: both keys work until it ends.
	code, out, _ = n.api(t, "POST", "/api/clients/team-b/rotate", `{"grace":"10m"}`)
	newKey, _ := out["key"].(string)
	if code != 200 || newKey == key {
		t.Fatalf("%d %v", code, out)
	}
	if c1, _ := n.chat(t, key, "m"); c1 != 200 {
		t.Fatalf("the old key in its grace: %d", c1)
	}
	if c2, _ := n.chat(t, newKey, "m"); c2 != 200 {
		t.Fatalf("the new key: %d", c2)
	}
	// Rotation without grace: the old key stops at once.
	_, out, _ = n.api(t, "POST", "/api/clients/team-b/rotate", "")
	third := out["key"].(string)
	if c, _ := n.chat(t, newKey, "m"); c != 401 {
		t.Fatalf("the rotated key without grace: %d", c)
	}
	// Revoked: refused.
	if code, _, _ := n.api(t, "PATCH", "/api/clients/team-b", `{"enabled":false}`); code != 200 {
		t.Fatal(code)
	}
	if c, _ := n.chat(t, third, "m"); c != 401 {
		t.Fatalf("revoked: %d", c)
	}
	// A file client can be disabled, not changed otherwise.
	if code, _, _ := n.api(t, "PATCH", "/api/clients/file-client", `{"models":["m"]}`); code != 409 {
		t.Fatalf("file client change: %d", code)
	}
	if code, _, _ := n.api(t, "PATCH", "/api/clients/file-client", `{"enabled":false}`); code != 200 {
		t.Fatalf("file client disable: %d", code)
	}
	if c, _ := n.chat(t, clientKey1, "m"); c != 401 {
		t.Fatalf("disabled file client: %d", c)
	}
	if code, _, _ := n.api(t, "DELETE", "/api/clients/file-client", ""); code != 409 {
		t.Fatalf("deleting a file client: %d", code)
	}
	// Expiry.
	exp := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	_, out, _ = n.api(t, "POST", "/api/clients", `{"name":"expired","expires_at":"`+exp+`"}`)
	if c, _ := n.chat(t, out["key"].(string), "m"); c != 401 {
		t.Fatalf("expired key: %d", c)
	}
}

func TestChannelTest(t *testing.T) {
	ok := upstream(t)
	rejecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(401)
		io.WriteString(w, `{"error":{"message":"Incorrect API key provided: `+apiKey+`","type":"invalid_request_error"}}`)
	}))
	defer rejecting.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	cfg := `
admin: {token: ` + adminToken + `}
channels:
  - {name: good, type: openai, base_url: OK, models: [m], credentials: [{id: g1, key: ` + fileKey + `}]}
  - {name: bad, type: openai, base_url: BAD, models: [m], credentials: [{id: b1, key: ` + apiKey + `}]}
  - {name: gone, type: openai, base_url: GONE, models: [m], credentials: [{id: x1}]}
  - {name: native, type: claude, base_url: OK, models: [claude-x], credentials: [{id: c1, key: ` + fileKey + `}]}
`
	n := startNode(t, writeConfig(t, t.TempDir(), cfg, "OK", ok.URL, "BAD", rejecting.URL, "GONE", gone.URL), &MemoryStore{}, nil)
	for _, tc := range []struct {
		name   string
		ok     bool
		status float64
	}{{"good", true, 200}, {"bad", false, 502}, {"gone", false, 502}, {"native", true, 200}} {
		code, out, _ := n.api(t, "POST", "/api/channels/test", `{"name":"`+tc.name+`"}`)
		results, _ := out["results"].([]any)
		if code != 200 || out["ok"] != tc.ok || len(results) != 1 {
			t.Fatalf("%s: %d %v", tc.name, code, out)
		}
		r := results[0].(map[string]any)
		if r["status"] != tc.status || (!tc.ok && r["error"] == "") {
			t.Fatalf("%s: %v", tc.name, r)
		}
	}
	if code, _, _ := n.api(t, "POST", "/api/channels/test", `{"name":"nope"}`); code != 404 {
		t.Fatalf("unknown channel: %d", code)
	}

	// A definition not saved yet, as the dashboard's form tests it: it
	// is tested as it would serve, and nothing is saved.
	for _, tc := range []struct {
		base   string
		status float64
	}{{ok.URL, 200}, {rejecting.URL, 502}} {
		code, out, _ := n.api(t, "POST", "/api/channels/test", `{"channel":{"name":"draft","type":"openai","base_url":"`+tc.base+`","models":["m"],"credentials":[{"key":"`+apiKey+`"}]}}`)
		results, _ := out["results"].([]any)
		if code != 200 || len(results) != 1 || results[0].(map[string]any)["status"] != tc.status || results[0].(map[string]any)["credential"] != "draft#0" {
			t.Fatalf("draft on %s: %d %v", tc.base, code, out)
		}
	}
	code, out, _ := n.api(t, "POST", "/api/channels/test", `{"channel":{"name":"draft","type":"openai","credentials":[{}]}}`)
	if problems := fmt.Sprint(out["error"]); code != 400 || !strings.Contains(problems, "models: at least one model") {
		t.Fatalf("an invalid draft: %d %v", code, out)
	}
	// Dry runs check, and change nothing.
	code, out, _ = n.api(t, "POST", "/api/channels?dry_run=true", `{"name":"draft","type":"openai","base_url":"`+ok.URL+`","models":["m"],"credentials":[{"key":"`+apiKey+`"}]}`)
	if code != 200 {
		t.Fatalf("a valid dry run: %d %v", code, out)
	}
	if code, out, _ = n.api(t, "POST", "/api/channels?dry_run=true", `{"name":"draft","type":"openai","models":[],"credentials":[{}]}`); code != 400 {
		t.Fatalf("an invalid dry run: %d %v", code, out)
	}
	_, list, _ := n.api(t, "GET", "/api/channels", "")
	if strings.Contains(fmt.Sprint(list), "draft") {
		t.Fatal("a test or a dry run saved the channel")
	}
}

func TestReload(t *testing.T) {
	up := upstream(t)
	dir := t.TempDir()
	path := writeConfig(t, dir, baseConfig, "UP", up.URL)
	n := startNode(t, path, &MemoryStore{}, nil)
	before := n.ctl.Version()
	// An invalid file is refused with every problem; the running config stays.
	writeConfig(t, dir, baseConfig+"  - {name: broken, type: nope, models: []}\n", "UP", up.URL)
	code, out, _ := n.api(t, "POST", "/api/reload", "")
	problems := fmt.Sprint(out["error"].(map[string]any)["problems"])
	if code != 400 || !strings.Contains(problems, `channels[1].type: unknown provider type "nope"`) || !strings.Contains(problems, "channels[1].models") {
		t.Fatalf("%d %v", code, out)
	}
	if c, _ := n.chat(t, clientKey1, "m"); c != 200 || n.ctl.Version() != before {
		t.Fatalf("after a refused reload: %d, version %s", c, n.ctl.Version())
	}
	// A valid one is served.
	writeConfig(t, dir, baseConfig+"  - {name: second, type: mock, models: [m2]}\n", "UP", up.URL)
	if code, out, _ := n.api(t, "POST", "/api/reload", ""); code != 200 || out["config_version"] == before {
		t.Fatalf("%d %v", code, out)
	}
	if c, _ := n.chat(t, clientKey1, "m2"); c != 200 {
		t.Fatalf("the reloaded file's channel: %d", c)
	}
}

func TestConfigIsShownWithoutSecrets(t *testing.T) {
	up := upstream(t)
	t.Setenv("ADMIN_TEST_KEY", fileKey)
	cfg := strings.Replace(baseConfig, "key: "+fileKey, `key: "${ADMIN_TEST_KEY}"`, 1) +
		"  - {name: literal, type: openai, base_url: \"UP/v1?api_key=" + url.QueryEscape(apiKey) + "\", models: [l], credentials: [{key: " + apiKey + "}]}\n"
	sealer, _ := NewSealer(secretKeyEnv)
	n := startNode(t, writeConfig(t, t.TempDir(), cfg, "UP", up.URL), &MemoryStore{}, sealer)
	n.api(t, "POST", "/api/channels", `{"name":"api-chan","type":"openai","base_url":"`+up.URL+`","models":["x"],"credentials":[{"key":"sk-another-api-secret-3333"}]}`)
	code, out, _ := n.api(t, "GET", "/api/config", "")
	s := fmt.Sprint(out)
	if code != 200 || !strings.Contains(s, "${ADMIN_TEST_KEY}") || strings.Contains(s, "sk-another-api-secret-3333") || !strings.Contains(s, "***") {
		t.Fatalf("%d %s", code, s)
	}
}

// TestRedisStoreReachesEveryInstance: a change on one instance is served
// by another within a second.
func TestRedisStoreReachesEveryInstance(t *testing.T) {
	up := upstream(t)
	c := redistest.Start(t).Client(t)
	prefix := fmt.Sprintf("adm%d:", time.Now().UnixNano())
	path := writeConfig(t, t.TempDir(), baseConfig, "UP", up.URL)
	a := startNode(t, path, NewRedisStore(c, prefix), nil)
	b := startNode(t, path, NewRedisStore(c, prefix), nil)
	if code, _, _ := a.api(t, "PATCH", "/api/clients/file-client", `{"enabled":false}`); code != 200 {
		t.Fatal(code)
	}
	start := time.Now()
	for {
		if code, _ := b.chat(t, clientKey1, "m"); code == 401 {
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatal("the revocation did not reach the other instance")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("revoked on a, refused by b after %v", time.Since(start))
	if b.ctl.Version() != a.ctl.Version() {
		t.Fatalf("versions %s and %s", a.ctl.Version(), b.ctl.Version())
	}
}

func TestOverviewAndSchema(t *testing.T) {
	up := upstream(t)
	n := startNode(t, writeConfig(t, t.TempDir(), baseConfig, "UP", up.URL), &MemoryStore{}, nil)
	for range 30 {
		n.chat(t, clientKey1, "m")
	}
	n.chat(t, "sk-wrong-key-wrong-key", "m") // a 401: not an error of the gateway's
	// The counts of a second are reported once it is over.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	code, out, _ := n.api(t, "GET", "/api/overview", "")
	if code != 200 || out["stats_scope"] != "instance" {
		t.Fatalf("%d %v", code, out)
	}
	last := out["last_minute"].(map[string]any)
	if rps := last["rps"].(float64); rps < 31.0/60-0.001 || rps > 31.0/60+0.001 || last["error_rate"].(float64) != 0 {
		t.Fatalf("last minute: %v, want 31 calls in 60s and no errors", last)
	}
	if p50, p99 := last["p50_ms"].(float64), last["p99_ms"].(float64); p50 <= 0 || p99 < p50 {
		t.Fatalf("latencies: p50 %v, p99 %v", p50, p99)
	}
	if series := out["series"].([]any); len(series) != overviewWindow/overviewStep {
		t.Fatalf("%d points, want %d", len(series), overviewWindow/overviewStep)
	}
	if redis := out["redis"].(map[string]any); redis["shared"] != false {
		t.Fatalf("redis: %v", redis)
	}
	if instances := out["instances"].([]any); len(instances) != 1 {
		t.Fatalf("instances: %v", instances)
	}

	code, out, _ = n.api(t, "GET", "/api/schema", "")
	if code != 200 {
		t.Fatal(code)
	}
	types := map[string]map[string]any{}
	for _, ty := range out["types"].([]any) {
		m := ty.(map[string]any)
		types[m["type"].(string)] = m
	}
	if types["openai"]["base_url"] != "https://api.openai.com/v1" || types["claude"] == nil || types["gemini"] == nil {
		t.Fatalf("types: %v", types)
	}
	if fields := fmt.Sprint(out["fields"]); !strings.Contains(fields, "credentials[].key") || !strings.Contains(fields, "models") {
		t.Fatalf("fields: %s", fields)
	}
}

func TestUsageRoute(t *testing.T) {
	up := upstream(t)
	path := writeConfig(t, t.TempDir(), baseConfig, "UP", up.URL)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rollups := &usage.MemoryRollups{Retention: 30 * 24 * time.Hour}
	now := time.Now().UTC()
	_ = rollups.Add(ctx, usage.Days([]usage.Record{
		{Time: now, Client: "file-client", InputTokens: 10, OutputTokens: 5, Cost: 1234},
		{Time: now, Client: "=cmd", InputTokens: 1, Cost: 1},
		{Time: now.Add(-3 * 24 * time.Hour), Client: "file-client", InputTokens: 7, Cost: 100},
	}))
	ctl, err := New(ctx, Config{File: path, Load: load, Store: &MemoryStore{}, Logger: slog.New(slog.DiscardHandler), Usage: rollups})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ctl.Handler())
	t.Cleanup(srv.Close)
	n := &node{ctl: ctl, srv: srv}

	code, out, _ := n.api(t, "GET", "/api/usage?client=file-client", "")
	days, _ := out["days"].([]any)
	if code != 200 || len(days) != 2 || days[1].(map[string]any)["cost_usd"] != "0.001234" {
		t.Fatalf("%d %v", code, out)
	}
	from := now.Add(-24 * time.Hour).Format("2006-01-02")
	if _, out, _ := n.api(t, "GET", "/api/usage?from="+from, ""); len(out["days"].([]any)) != 2 {
		t.Fatalf("since yesterday, every client: %v", out)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/api/usage?format=csv", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	csv, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(csv), "date,client,requests,input_tokens,output_tokens,cached_tokens,cost_usd\n") ||
		!strings.Contains(string(csv), ",'=cmd,") || !strings.Contains(string(csv), ",file-client,1,10,5,0,0.001234") {
		t.Fatalf("csv:\n%s", csv)
	}
	for _, q := range []string{"from=yesterday", "from=2026-01-10&to=2026-01-01", "from=2020-01-01&to=2026-01-01", "client=" + strings.Repeat("x", 300)} {
		if code, out, _ := n.api(t, "GET", "/api/usage?"+q, ""); code != 400 {
			t.Fatalf("%s: %d %v", q, code, out)
		}
	}
}
