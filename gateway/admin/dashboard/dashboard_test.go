package dashboard

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/gateway/admin"
	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/redact"
)

const (
	adminToken = "dash-admin-token-0123456789abcdef"
	clientKey  = "sk-dash-client-key-aaaaaaaaaaaa"
	upKey      = "sk-dash-upstream-secret-bbbbbbbbbb"
	sealKey    = "dash-sealing-key-0123456789abcdef"
)

// configText is the instance's config file, with its admin token.
func configText(token string) string {
	return `
admin: {token: ` + token + `}
clients: [{name: team, key: ` + clientKey + `, limits: {rpm: 60}}]
channels:
  - {name: chan, type: mock, models: [m], credentials: [{id: c1, key: ` + upKey + `, limits: {rpm: 100}}]}
`
}

// server runs the dashboard and the admin API of one instance, mounted as
// the binary mounts them.
func server(t *testing.T) *httptest.Server {
	srv, _ := serverWithFile(t, time.Now)
	return srv
}

func serverWithFile(t *testing.T, now func() time.Time) (*httptest.Server, string) {
	t.Helper()
	t.Setenv("SLUICE_SECRET_KEY", sealKey)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(configText(adminToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	quiet := slog.New(slog.DiscardHandler)
	sealer, err := admin.NewSealer(sealKey)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := admin.New(ctx, admin.Config{File: path, Load: func(p string) (*config.Config, error) {
		c, _, err := config.Load(p)
		return c, err
	}, Store: &admin.MemoryStore{}, Sealer: sealer, Logger: quiet, Now: now})
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
	dash := Handler(ctl)
	mux.Handle("/admin", dash)
	mux.Handle("/admin/", dash)
	mux.Handle("/", gw)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, path
}

// noRedirects is a client that shows redirects instead of following them.
func noRedirects(srv *httptest.Server) *http.Client {
	c := *srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func do(t *testing.T, c *http.Client, method, u string, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// signIn signs in with a token from this origin and returns the cookie.
func signIn(t *testing.T, srv *httptest.Server, token string, hdr ...string) (*http.Response, *http.Cookie) {
	t.Helper()
	form := url.Values{"token": {token}}.Encode()
	hdr = append([]string{"Content-Type", "application/x-www-form-urlencoded", "Origin", srv.URL, "Sec-Fetch-Site", "same-origin"}, hdr...)
	resp, _ := do(t, noRedirects(srv), "POST", srv.URL+"/admin/login", form, hdr...)
	for _, c := range resp.Cookies() {
		if c.Name == admin.SessionCookie && c.Value != "" {
			return resp, c
		}
	}
	return resp, nil
}

// routes are every admin route, as the dashboard calls them.
var routes = []struct{ method, path, body string }{
	{"GET", "/api/overview", ""}, {"GET", "/api/instances", ""}, {"GET", "/api/schema", ""},
	{"GET", "/api/channels", ""}, {"POST", "/api/channels/test", `{"name":"chan"}`},
	{"POST", "/api/channels", `{"name":"x","type":"mock","models":["m"],"credentials":[{}]}`},
	{"PUT", "/api/channels/x", `{"name":"x","type":"mock","models":["m"],"credentials":[{}]}`},
	{"PATCH", "/api/channels/chan", `{"enabled":false}`}, {"DELETE", "/api/channels/x", ""},
	{"PATCH", "/api/credentials/c1", `{"enabled":false}`}, {"POST", "/api/credentials/c1/reset", ""},
	{"GET", "/api/clients", ""}, {"POST", "/api/clients", `{"name":"y"}`}, {"PATCH", "/api/clients/team", `{"enabled":false}`},
	{"POST", "/api/clients/team/rotate", "{}"}, {"DELETE", "/api/clients/team", ""},
	{"POST", "/api/reload", ""}, {"GET", "/api/config", ""}, {"GET", "/api/audit", ""},
}

func TestEveryPageAndActionRefusesWithoutTheToken(t *testing.T) {
	// The clock moves two minutes a request, past the window of the guard
	// against guessing, which would otherwise answer 429 after ten
	// refusals and hide what the next ones would have answered.
	var ticks atomic.Int64
	start := time.Now()
	srv, _ := serverWithFile(t, func() time.Time { return start.Add(time.Duration(ticks.Add(1)) * time.Minute) })
	c := noRedirects(srv)

	for _, p := range []string{"/admin", "/admin/", "/admin/channels", "/admin/assets/app.js"} {
		resp, body := do(t, c, "GET", srv.URL+p, "")
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "app.js") {
			t.Fatalf("GET %s without a session: %d\n%s", p, resp.StatusCode, body)
		}
	}

	_, cookie := signIn(t, srv, adminToken)
	if cookie == nil {
		t.Fatal("no session for the admin token")
	}
	forged := *cookie
	parts := strings.Split(forged.Value, ".")
	parts[1] = "9999999999" // a later expiry, under the old signature
	forged.Value = strings.Join(parts, ".")
	session := "sluice_admin=" + cookie.Value
	ways := []struct {
		name string
		hdr  []string
	}{
		{"nothing", nil},
		{"a client key", []string{"Authorization", "Bearer " + clientKey}},
		{"a wrong token", []string{"Authorization", "Bearer " + strings.ToUpper(adminToken)}},
		{"a forged session", []string{"Cookie", "sluice_admin=" + forged.Value, admin.DashboardHeader, "1"}},
		// A cross-site form carries the cookie (were it not Strict) but
		// cannot set a header.
		{"a session without the dashboard's header", []string{"Cookie", session}},
		{"a session from another origin", []string{"Cookie", session, admin.DashboardHeader, "1", "Origin", "https://evil.example"}},
		{"a session from an opaque origin", []string{"Cookie", session, admin.DashboardHeader, "1", "Origin", "null"}},
		{"a session sent cross-site", []string{"Cookie", session, admin.DashboardHeader, "1", "Sec-Fetch-Site", "cross-site"}},
	}
	for _, w := range ways {
		for _, r := range routes {
			resp, body := do(t, c, r.method, srv.URL+r.path, r.body, w.hdr...)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s %s with %s: %d %s", r.method, r.path, w.name, resp.StatusCode, body)
			}
		}
	}

	// Nothing changed: the client key still works, on the channel as it was.
	resp, body := do(t, srv.Client(), "POST", srv.URL+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		"Authorization", "Bearer "+clientKey, "Content-Type", "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("the gateway after refused actions: %d %s", resp.StatusCode, body)
	}
}

func TestLoginAndLogoutRefuseOtherSites(t *testing.T) {
	srv := server(t)
	form := url.Values{"token": {adminToken}}.Encode()
	for _, hdr := range [][]string{
		{"Origin", "https://evil.example"},
		{"Origin", "null"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://sub." + strings.TrimPrefix(srv.URL, "http://")},
	} {
		for _, p := range []string{"/admin/login", "/admin/logout"} {
			resp, _ := do(t, noRedirects(srv), "POST", srv.URL+p, form, append([]string{"Content-Type", "application/x-www-form-urlencoded"}, hdr...)...)
			if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
				t.Fatalf("POST %s with %v: %d, cookies %v", p, hdr, resp.StatusCode, resp.Cookies())
			}
		}
	}
	if resp, ck := signIn(t, srv, "not-the-admin-token-000000"); ck != nil || resp.Header.Get("Location") != "/admin?error=token" {
		t.Fatalf("a wrong token: %d %s %v", resp.StatusCode, resp.Header.Get("Location"), ck)
	}
	if resp, ck := signIn(t, srv, clientKey); ck != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a client key: %d %v", resp.StatusCode, ck)
	}
}

func TestSessionCookie(t *testing.T) {
	srv := server(t)
	_, ck := signIn(t, srv, adminToken)
	if ck == nil {
		t.Fatal("no session")
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/" || ck.MaxAge <= 0 || ck.MaxAge > 24*3600 {
		t.Fatalf("cookie over plain HTTP: %+v", ck)
	}
	digest := sha256.Sum256([]byte(adminToken))
	if redact.New(adminToken).String(ck.Value) != ck.Value || strings.Contains(ck.Value, hex.EncodeToString(digest[:])) {
		t.Fatalf("the cookie carries the token: %s", ck.Value)
	}
	if _, tls := signIn(t, srv, adminToken, "X-Forwarded-Proto", "https"); tls == nil || !tls.Secure {
		t.Fatalf("behind TLS the cookie is Secure: %+v", tls)
	}
	resp, body := do(t, srv.Client(), "GET", srv.URL+"/api/channels", "", "Cookie", "sluice_admin="+ck.Value, admin.DashboardHeader, "1")
	if resp.StatusCode != 200 {
		t.Fatalf("the dashboard's own call: %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, noRedirects(srv), "POST", srv.URL+"/admin/logout", "", "Cookie", "sluice_admin="+ck.Value, "Origin", srv.URL)
	out := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(out) != 1 || out[0].MaxAge >= 0 || out[0].Value != "" {
		t.Fatalf("logout: %d %+v", resp.StatusCode, out)
	}
}

// csp is a strict content security policy: nothing but this origin's own
// script and style, no inline code, no framing.
var csp = regexp.MustCompile(`^default-src 'none';`)

func TestEveryResponseCarriesTheSecurityHeaders(t *testing.T) {
	srv := server(t)
	_, ck := signIn(t, srv, adminToken)
	session := []string{"Cookie", "sluice_admin=" + ck.Value, admin.DashboardHeader, "1"}
	for _, r := range []struct {
		path string
		hdr  []string
		code int
	}{
		{"/admin", nil, 401}, {"/admin/assets/app.js", nil, 401}, {"/admin/assets/app.css", nil, 200},
		{"/admin", session, 200}, {"/admin/assets/app.js", session, 200}, {"/api/overview", session, 200},
		{"/api/channels", nil, 401}, {"/api/nonsense", session, 404},
	} {
		resp, body := do(t, srv.Client(), "GET", srv.URL+r.path, "", r.hdr...)
		if resp.StatusCode != r.code {
			t.Fatalf("GET %s: %d, want %d\n%s", r.path, resp.StatusCode, r.code, body)
		}
		h := resp.Header
		policy := h.Get("Content-Security-Policy")
		if !csp.MatchString(policy) || !strings.Contains(policy, "frame-ancestors 'none'") ||
			strings.Contains(policy, "unsafe") || strings.Contains(policy, "*") || strings.Contains(policy, "http") {
			t.Fatalf("GET %s: Content-Security-Policy %q", r.path, policy)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET %s: headers %v", r.path, h)
		}
		if strings.HasPrefix(r.path, "/admin") && r.path != "/admin/assets/app.css" && h.Get("Referrer-Policy") != "same-origin" {
			t.Fatalf("GET %s: Referrer-Policy %q", r.path, h.Get("Referrer-Policy"))
		}
	}
}

// TestNoSecretReachesThePage reads everything a signed-in page loads, and
// finds no secret in it, in any encoding.
func TestNoSecretReachesThePage(t *testing.T) {
	srv := server(t)
	_, ck := signIn(t, srv, adminToken)
	session := []string{"Cookie", "sluice_admin=" + ck.Value, admin.DashboardHeader, "1", "Content-Type", "application/json"}
	// An API-defined channel with a key of its own, and a client key made
	// here, so that sealed secrets are on the page too.
	const apiKey = "sk-dash-api-channel-secret-cccccccccc"
	if resp, body := do(t, srv.Client(), "POST", srv.URL+"/api/channels", `{"name":"extra","type":"mock","models":["m2"],"credentials":[{"id":"e1","key":"`+apiKey+`"}]}`, session...); resp.StatusCode != 201 {
		t.Fatalf("add channel: %d %s", resp.StatusCode, body)
	}
	resp, made := do(t, srv.Client(), "POST", srv.URL+"/api/clients", `{"name":"new"}`, session...)
	if resp.StatusCode != 201 {
		t.Fatalf("add client: %d %s", resp.StatusCode, made)
	}
	var out struct{ Key string }
	if json.Unmarshal([]byte(made), &out); out.Key == "" {
		t.Fatalf("no key: %s", made)
	}
	madeKey := out.Key
	secrets := redact.New(adminToken, clientKey, upKey, apiKey, sealKey, madeKey)
	for _, p := range []string{"/admin", "/admin/assets/app.js", "/admin/assets/app.css", "/api/overview", "/api/instances",
		"/api/schema", "/api/channels", "/api/clients", "/api/config", "/api/audit"} {
		resp, body := do(t, srv.Client(), "GET", srv.URL+p, "", session...)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", p, resp.StatusCode)
		}
		if secrets.String(body) != body {
			t.Fatalf("GET %s shows a secret:\n%s", p, body)
		}
	}
}

// TestAssetsStaySmallAndSelfContained checks the sizes of what a browser
// downloads, and that nothing in it reaches beyond this origin.
func TestAssetsStaySmallAndSelfContained(t *testing.T) {
	limits := map[string]int{"app.js": 32 << 10, "app.css": 10 << 10, "app.html": 4 << 10, "login.html": 4 << 10}
	total := 0
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := assets.ReadFile(p)
		name := filepath.Base(p)
		limit, ok := limits[name]
		if !ok {
			t.Errorf("%s: an asset without a size budget", p)
		}
		var z strings.Builder
		gz := gzip.NewWriter(&z)
		gz.Write(b)
		gz.Close()
		t.Logf("%s: %d bytes, %d gzipped (budget %d)", name, len(b), z.Len(), limit)
		if len(b) > limit {
			t.Errorf("%s is %d bytes, over its budget of %d", name, len(b), limit)
		}
		total += len(b)
		text := string(b)
		// The one URL allowed is the SVG namespace, which is a name,
		// never fetched.
		text = strings.ReplaceAll(text, "http://www.w3.org/2000/svg", "")
		for _, bad := range []string{"http://", "https://", "//cdn", "@import", "@font-face", "eval(", "innerHTML", "document.write", " style=", "<script>"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("total: %d bytes", total)
}

// TestSessionsEndWithTheirToken checks that a session outlives neither
// its expiry nor the admin token it was made with.
func TestSessionsEndWithTheirToken(t *testing.T) {
	srv, path := serverWithFile(t, time.Now)
	_, ck := signIn(t, srv, adminToken)
	parts := strings.Split(ck.Value, ".")
	parts[1] = "1000000000" // 2001: long expired, and signed for another expiry
	for _, v := range []string{strings.Join(parts, "."), ck.Value + "0", "a.b.c", strings.Repeat("x", 4096)} {
		resp, _ := do(t, srv.Client(), "GET", srv.URL+"/api/channels", "", "Cookie", "sluice_admin="+v, admin.DashboardHeader, "1")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("session %.40q: %d", v, resp.StatusCode)
		}
	}
	session := []string{"Cookie", "sluice_admin=" + ck.Value, admin.DashboardHeader, "1"}
	if resp, _ := do(t, srv.Client(), "GET", srv.URL+"/api/channels", "", session...); resp.StatusCode != 200 {
		t.Fatalf("the session before the token changes: %d", resp.StatusCode)
	}
	const next = "dash-admin-token-rotated-9876543210"
	if err := os.WriteFile(path, []byte(configText(next)), 0o600); err != nil {
		t.Fatal(err)
	}
	if resp, body := do(t, srv.Client(), "POST", srv.URL+"/api/reload", "", session...); resp.StatusCode != 200 {
		t.Fatalf("reload: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, srv.Client(), "GET", srv.URL+"/api/channels", "", session...); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a session of the old token after it changed: %d", resp.StatusCode)
	}
	if _, ck := signIn(t, srv, next); ck == nil {
		t.Fatal("the new token signs in")
	}
}
