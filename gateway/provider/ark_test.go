package provider

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// arkTestTokens is a Tokens cache for tests: a map, counting fetches.
type arkTestTokens struct {
	mu      sync.Mutex
	live    map[string]string
	ttls    map[string]time.Duration
	fetches int
}

func newArkTestTokens() *arkTestTokens {
	return &arkTestTokens{live: map[string]string{}, ttls: map[string]time.Duration{}}
}

func (c *arkTestTokens) Token(ctx context.Context, id string, fetch FetchToken) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok, ok := c.live[id]; ok {
		return tok, nil
	}
	tok, ttl, err := fetch(ctx)
	if err != nil {
		return "", err
	}
	c.fetches++
	c.live[id], c.ttls[id] = tok, ttl
	return tok, nil
}

func (c *arkTestTokens) Revoke(_ context.Context, id, tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live[id] == tok {
		delete(c.live, id)
	}
}

// arkTarget is an ark Target whose control plane is at tokenURL and data
// plane at base.
func arkTarget(tokenURL, base string, tokens Tokens) Target {
	spec, _ := Lookup("doubao")
	return Target{Spec: spec.ForCredential(true), BaseURL: base, TokenURL: tokenURL, Key: "AKLTtest", SecretKey: "sk-secret",
		Model: "ep-20240612090709-hzjz5", CredentialID: "cred1", Tokens: tokens}
}

// arkMock serves a mock accepting the AKLTtest account, whose data plane
// takes only the keys it issues.
func arkMock(t *testing.T) (*httptest.Server, *mock.Server) {
	t.Helper()
	srv := mock.New(mock.Config{Accounts: []mock.Account{{ID: "AKLTtest", Secret: "sk-secret"}}, Keys: []string{"not-an-ark-key"}})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts, srv
}

// arkControl serves a stand-in control plane that records each GetApiKey
// call and issues "key-N".
type arkControl struct {
	*httptest.Server
	mu    sync.Mutex
	calls []*http.Request
	wants []arkKeyRequest
}

func newArkControl(t *testing.T) *arkControl {
	c := &arkControl{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var kr arkKeyRequest
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &kr); err != nil {
			t.Errorf("GetApiKey body %s: %v", body, err)
		}
		c.mu.Lock()
		c.calls, c.wants = append(c.calls, r), append(c.wants, kr)
		n := len(c.calls)
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ResponseMetadata":{"RequestId":"r","Action":"GetApiKey","Version":"2024-01-01","Service":"ark","Region":"cn-beijing"},`+
			`"Result":{"ApiKey":"key-`+string(rune('0'+n))+`","ExpiredTime":`+jsonInt(time.Now().Add(2*time.Hour).Unix())+`}}`)
	}))
	t.Cleanup(c.Close)
	return c
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestArkRequest(t *testing.T) {
	ctl := newArkControl(t)
	tokens := newArkTestTokens()
	tg := arkTarget(ctl.URL, "https://ark.cn-beijing.volces.com/api/v3", tokens)
	tg.Headers = map[string]string{"X-Team": "blue"}
	body := `{"model":"ep-20240612090709-hzjz5","messages":[{"role":"user","content":"hi"}],"temperature":0.2}`
	for range 2 {
		req, err := ark{}.NewRequest(context.Background(), tg, Chat, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if req.URL.String() != "https://ark.cn-beijing.volces.com/api/v3/chat/completions" || req.Method != http.MethodPost {
			t.Errorf("request %s %s", req.Method, req.URL)
		}
		if req.Header.Get("Authorization") != "Bearer key-1" || req.Header.Get("Content-Type") != "application/json" ||
			req.Header.Get("X-Team") != "blue" || req.Header.Get("X-Project-Name") != "" {
			t.Errorf("headers %v", req.Header)
		}
		sent, _ := io.ReadAll(req.Body)
		if string(sent) != body {
			t.Errorf("body changed: %s", sent)
		}
	}
	if len(ctl.calls) != 1 || tokens.fetches != 1 {
		t.Fatalf("%d GetApiKey calls, %d fetches: the key is cached", len(ctl.calls), tokens.fetches)
	}
	if ttl := tokens.ttls[tokenKey(tg, "endpoint/ep-20240612090709-hzjz5")]; ttl < time.Hour+50*time.Minute || ttl > 2*time.Hour {
		t.Errorf("ttl %v, want ExpiredTime's 2h", ttl)
	}
	call, want := ctl.calls[0], ctl.wants[0]
	if call.Method != http.MethodPost || call.URL.RawQuery != "Action=GetApiKey&Version=2024-01-01" || call.URL.Path != "/" {
		t.Errorf("GetApiKey %s %s", call.Method, call.URL)
	}
	auth := call.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "HMAC-SHA256 Credential=AKLTtest/"+time.Now().UTC().Format("20060102")+"/cn-beijing/ark/request, SignedHeaders=content-type;host;x-content-sha256;x-date, Signature=") ||
		call.Header.Get("X-Date") == "" || call.Header.Get("X-Content-Sha256") == "" || call.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("GetApiKey headers %v", call.Header)
	}
	if want.DurationSeconds != 604800 || want.ResourceType != "endpoint" || len(want.ResourceIds) != 1 || want.ResourceIds[0] != "ep-20240612090709-hzjz5" || want.ProjectName != "" {
		t.Errorf("GetApiKey body %+v", want)
	}
}

func TestArkResources(t *testing.T) {
	ctl := newArkControl(t)
	base := "https://ark.cn-beijing.volces.com/api/v3"
	tests := []struct {
		name, model, project, region string
		ep                           Endpoint
		url, typ, header             string
	}{
		{"embeddings", "ep-20240612090709-abcde", "", "", Embeddings, base + "/embeddings", "endpoint", ""},
		{"bot", "bot-20240612090709-xyz", "", "cn-shanghai", Chat, base + "/bots/chat/completions", "bot", ""},
		{"preset endpoint", "ep-m-20240612090709-xyz", "team-a", "", Chat, base + "/chat/completions", "presetendpoint", "team-a"},
		{"model name", "doubao-pro-32k-240525", "team-a", "", Chat, base + "/chat/completions", "presetendpoint", "team-a"},
	}
	for _, tt := range tests {
		tg := arkTarget(ctl.URL, base, nil)
		tg.Project, tg.Region = tt.project, tt.region
		body := `{"model":"` + tt.model + `","messages":[{"role":"user","content":"hi"}]}`
		if tt.ep == Embeddings {
			body = `{"model":"` + tt.model + `","input":"hi"}`
		}
		req, err := ark{}.NewRequest(context.Background(), tg, tt.ep, []byte(body))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		last, lastCall := ctl.wants[len(ctl.wants)-1], ctl.calls[len(ctl.calls)-1]
		region := tt.region
		if region == "" {
			region = "cn-beijing"
		}
		if req.URL.String() != tt.url || req.Header.Get("X-Project-Name") != tt.header || last.ResourceType != tt.typ ||
			last.ResourceIds[0] != tt.model || last.ProjectName != tt.project ||
			!strings.Contains(lastCall.Header.Get("Authorization"), "/"+region+"/ark/request,") {
			t.Errorf("%s: %s, project header %q, GetApiKey %+v, %s", tt.name, req.URL, req.Header.Get("X-Project-Name"), last,
				lastCall.Header.Get("Authorization"))
		}
	}
}

func TestArkRefused(t *testing.T) {
	ctl := newArkControl(t)
	tests := []struct {
		name, body string
		ep         Endpoint
		want       string
	}{
		{"model name", `{"model":"doubao-pro-32k","messages":[]}`, Chat, `ark: model: "doubao-pro-32k" is not an endpoint ID`},
		{"bot embeddings", `{"model":"bot-1","input":"x"}`, Embeddings, `ark: model: "bot-1" is a bot`},
	}
	for _, tt := range tests {
		_, err := ark{}.NewRequest(context.Background(), arkTarget(ctl.URL, "https://ark.example/api/v3", nil), tt.ep, []byte(tt.body))
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Type != "invalid_request_error" || !strings.HasPrefix(e.Message, tt.want) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if len(ctl.calls) != 0 {
		t.Errorf("%d GetApiKey calls for refused requests", len(ctl.calls))
	}
	if _, err := (ark{}).NewRequest(context.Background(), arkTarget(ctl.URL, "https://ark.example/api/v3", nil), "completions", []byte(`{}`)); err == nil {
		t.Error("legacy completions accepted")
	}
	tg := arkTarget(ctl.URL, "https://ark.example/api/v3", nil)
	tg.SecretKey = ""
	if _, err := (ark{}).NewRequest(context.Background(), tg, Chat, []byte(`{"model":"ep-1"}`)); err == nil || !strings.Contains(err.Error(), "secret access key") {
		t.Errorf("no secret: %v", err)
	}
}

func TestArkReadKey(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tests := []struct {
		name   string
		status int
		body   string
		key    string
		ttl    time.Duration
		err    string
	}{
		{"issued", 200, `{"ResponseMetadata":{},"Result":{"ApiKey":"k","ExpiredTime":1700003600}}`, "k", time.Hour, ""},
		{"no expiry", 200, `{"ResponseMetadata":{},"Result":{"ApiKey":"k","ExpiredTime":0}}`, "k", 7 * 24 * time.Hour, ""},
		{"expired", 200, `{"Result":{"ApiKey":"k","ExpiredTime":1699999999}}`, "", 0, "already expired"},
		{"refused", 401, `{"ResponseMetadata":{"Error":{"CodeN":100009,"Code":"InvalidAccessKey","Message":"The accesskey [AKLTtest] included in the request is invalid."}}}`,
			"", 0, "ark: GetApiKey refused (HTTP 401): InvalidAccessKey: The accesskey [***] included in the request is invalid."},
		{"no key", 200, `{"ResponseMetadata":{},"Result":{}}`, "", 0, "without a key"},
		{"not JSON", 502, `<html>bad gateway</html>`, "", 0, "HTTP 502, unreadable"},
	}
	for _, tt := range tests {
		key, ttl, err := arkReadKey(tt.status, []byte(tt.body), "AKLTtest", now)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		case tt.err == "" && (err != nil || key != tt.key || ttl != tt.ttl):
			t.Errorf("%s: %q %v %v", tt.name, key, ttl, err)
		}
	}
}

// TestArkRoundTrip sends chat, streamed chat and embeddings through the
// mock's Volcengine control plane and Ark data plane, then has the mock
// revoke the issued key: the refusal revokes it from the cache and the
// rebuilt request carries a fresh one.
func TestArkRoundTrip(t *testing.T) {
	ts, srv := arkMock(t)
	tokens := newArkTestTokens()
	tg := arkTarget(ts.URL, ts.URL+"/api/v3", tokens)
	do := func(ep Endpoint, body string) (*http.Request, *http.Response) {
		t.Helper()
		req, err := ark{}.NewRequest(context.Background(), tg, ep, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return req, resp
	}
	chat := `{"model":"ep-20240612090709-hzjz5","messages":[{"role":"user","content":"hi"}]}`
	_, resp := do(Chat, chat)
	var cr wire.ChatResponse
	if err := json.NewDecoder(resp.Body).Decode(&cr); err != nil || resp.StatusCode != 200 || len(cr.Choices) != 1 || cr.Usage == nil {
		t.Fatalf("chat: %d %+v %v", resp.StatusCode, cr, err)
	}

	_, resp = do(Chat, `{"model":"ep-20240612090709-hzjz5","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
	var last string
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && data != "[DONE]" {
			last = data
		}
	}
	var usage wire.ChatChunk
	if err := json.Unmarshal([]byte(last), &usage); err != nil || usage.Usage == nil || usage.Usage.TotalTokens == 0 {
		t.Errorf("stream's last chunk %s: %v", last, err)
	}

	_, resp = do(Embeddings, `{"model":"ep-20240612090709-embed","input":["a","b"]}`)
	var er wire.EmbeddingResponse
	if err := json.NewDecoder(resp.Body).Decode(&er); err != nil || resp.StatusCode != 200 || len(er.Data) != 2 {
		t.Errorf("embeddings: %d %+v %v", resp.StatusCode, er, err)
	}
	if tokens.fetches != 2 {
		t.Errorf("%d fetches, want one per endpoint", tokens.fetches)
	}

	srv.RevokeTokens()
	req, resp := do(Chat, chat)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked key: %d %s", resp.StatusCode, body)
	}
	if !(ark{}).TokenRefused(context.Background(), tg, req, resp.StatusCode, body) {
		t.Fatal("TokenRefused: false for a 401")
	}
	if _, resp = do(Chat, chat); resp.StatusCode != http.StatusOK || tokens.fetches != 3 {
		t.Errorf("after refresh: %d, %d fetches", resp.StatusCode, tokens.fetches)
	}
	if st := srv.Stats(); st.TokensIssued != 3 {
		t.Errorf("mock stats %+v", st)
	}
}

// TestArkWrongSecret checks that the control plane's refusal of a bad
// secret reaches the caller without the credential's secrets.
func TestArkWrongSecret(t *testing.T) {
	ts, _ := arkMock(t)
	for _, edit := range []func(*Target){
		func(tg *Target) { tg.SecretKey = "sk-wrong" },
		func(tg *Target) { tg.Key = "AKLTother" },
	} {
		tg := arkTarget(ts.URL, ts.URL+"/api/v3", newArkTestTokens())
		edit(&tg)
		_, err := ark{}.NewRequest(context.Background(), tg, Chat, []byte(`{"model":"ep-1","messages":[]}`))
		var e *Error
		if err == nil || errors.As(err, &e) {
			t.Fatalf("%v: want a plain error", err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "GetApiKey refused (HTTP 401)") || strings.Contains(msg, tg.SecretKey) || strings.Contains(msg, tg.Key) {
			t.Errorf("error %q", msg)
		}
	}
}

func TestArkTokenRefused(t *testing.T) {
	tokens := newArkTestTokens()
	tg := arkTarget("http://unused", "https://ark.example/api/v3", tokens)
	tokens.live[tokenKey(tg, "presetendpoint/team-a/doubao-pro")] = "key-9"
	req, _ := http.NewRequest(http.MethodPost, "https://ark.example/api/v3/chat/completions", strings.NewReader(`{"model":"doubao-pro"}`))
	req.Header.Set("Authorization", "Bearer key-9")
	req.Header.Set("X-Project-Name", "team-a")
	if (ark{}).TokenRefused(context.Background(), tg, req, 403, []byte(`{"error":{"code":"AccessDenied","message":"no"}}`)) {
		t.Error("403 AccessDenied taken for a refused key")
	}
	if (ark{}).TokenRefused(context.Background(), tg, req, 429, []byte(`{}`)) || len(tokens.live) != 1 {
		t.Error("429 taken for a refused key")
	}
	if !(ark{}).TokenRefused(context.Background(), tg, req, 400, []byte(`{"error":{"code":"AuthenticationError","message":"The API key format is incorrect.","type":"Unauthorized"}}`)) {
		t.Error("AuthenticationError not taken for a refused key")
	}
	if len(tokens.live) != 0 {
		t.Errorf("key not revoked: %v", tokens.live)
	}
}
