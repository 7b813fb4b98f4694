package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

const authConfig = `
clients:
  - name: team-a
    key: sk-client-a
    models: [gpt-4o, smart]
  - name: team-b
    key: sk-client-b
model_groups:
  smart: [gpt-4o, claude-ish]
channels:
  - name: up
    type: openai
    base_url: UPSTREAM/v1
    models: [gpt-4o, gpt-4o-mini, claude-ish]
    credentials: [{key: sk-upstream-secret}]
`

func TestAuth(t *testing.T) {
	up := mockUpstream(t, mock.Config{Keys: []string{"sk-upstream-secret"}})
	_, srv := startGateway(t, authConfig, "UPSTREAM", up.URL)
	tests := []struct {
		name   string
		model  string
		hdr    []string
		status int
		code   string
	}{
		{"no key", "gpt-4o", nil, 401, "invalid_api_key"},
		{"wrong key", "gpt-4o", []string{"Authorization", "Bearer sk-wrong"}, 401, "invalid_api_key"},
		{"not bearer", "gpt-4o", []string{"Authorization", "Basic sk-client-a"}, 401, "invalid_api_key"},
		{"bearer", "gpt-4o", []string{"Authorization", "Bearer sk-client-a"}, 200, ""},
		{"bearer scheme is case-insensitive", "gpt-4o", []string{"Authorization", "bearer sk-client-a"}, 200, ""},
		{"x-api-key", "gpt-4o", []string{"x-api-key", "sk-client-a"}, 200, ""},
		{"model not allowed", "gpt-4o-mini", []string{"Authorization", "Bearer sk-client-a"}, 403, "model_not_allowed"},
		{"group allowed by name", "smart", []string{"Authorization", "Bearer sk-client-a"}, 200, ""},
		{"unrestricted client", "gpt-4o-mini", []string{"Authorization", "Bearer sk-client-b"}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := chat(t, srv, tt.model, tt.hdr...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.code != "" && code(apiError(t, body)) != tt.code {
				t.Fatalf("code %q, want %q", code(apiError(t, body)), tt.code)
			}
			if tt.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

func TestClientKeyNeverForwarded(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, authConfig, "UPSTREAM", up.URL)
	for _, hdr := range [][]string{{"Authorization", "Bearer sk-client-b"}, {"x-api-key", "sk-client-b"}} {
		resp, body := chat(t, srv, "gpt-4o", hdr...)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		h, _ := up.lastRequest()
		if got := h.Get("Authorization"); got != "Bearer sk-upstream-secret" {
			t.Fatalf("upstream got Authorization %q, want the credential's key", got)
		}
		for name, values := range h {
			for _, v := range values {
				if strings.Contains(v, "sk-client-b") {
					t.Fatalf("client key forwarded upstream in %s", name)
				}
			}
		}
	}
}

func TestModelsList(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, authConfig, "UPSTREAM", up.URL)
	list := func(key string) []string {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Object string `json:"object"`
			Data   []struct {
				ID, Object string
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Object != "list" {
			t.Fatalf("bad list: %v %+v", err, out)
		}
		var ids []string
		for _, m := range out.Data {
			ids = append(ids, m.ID)
		}
		return ids
	}
	if got := list("sk-client-a"); !slices.Equal(got, []string{"gpt-4o", "smart"}) {
		t.Fatalf("team-a sees %v", got)
	}
	if got := list("sk-client-b"); !slices.Equal(got, []string{"claude-ish", "gpt-4o", "gpt-4o-mini", "smart"}) {
		t.Fatalf("team-b sees %v", got)
	}
}

func TestBadInput(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
server: {max_body_bytes: 2KiB}
channels:
  - {type: openai, base_url: UPSTREAM, models: [gpt-4o, emb]}
`, "UPSTREAM", up.URL)
	big := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("x", 4096) + `"}]}`
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		code, param string
	}{
		{"malformed JSON", "POST", "/v1/chat/completions", "application/json", `{"model":`, 400, "invalid_request", ""},
		{"not an object", "POST", "/v1/chat/completions", "application/json", `[1,2]`, 400, "invalid_request", ""},
		{"empty body", "POST", "/v1/chat/completions", "application/json", ``, 400, "invalid_request", ""},
		{"missing model", "POST", "/v1/chat/completions", "application/json", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request", "model"},
		{"model not a string", "POST", "/v1/chat/completions", "application/json", `{"model":5,"messages":[]}`, 400, "invalid_request", "model"},
		{"missing messages", "POST", "/v1/chat/completions", "application/json", `{"model":"gpt-4o"}`, 400, "invalid_request", "messages"},
		{"empty messages", "POST", "/v1/chat/completions", "application/json", `{"model":"gpt-4o","messages":[]}`, 400, "invalid_request", "messages"},
		{"stream not a bool", "POST", "/v1/chat/completions", "application/json", `{"model":"gpt-4o","stream":"yes","messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request", "stream"},
		{"negative max_tokens", "POST", "/v1/chat/completions", "application/json", `{"model":"gpt-4o","max_tokens":-1,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request", "max_tokens"},
		{"unknown model", "POST", "/v1/chat/completions", "application/json", chatBody("gpt-5-nope"), 404, "model_not_found", ""},
		{"oversized body", "POST", "/v1/chat/completions", "application/json", big, 413, "request_too_large", ""},
		{"wrong content type", "POST", "/v1/chat/completions", "text/plain", chatBody("gpt-4o"), 415, "unsupported_media_type", ""},
		{"form content type", "POST", "/v1/chat/completions", "application/x-www-form-urlencoded", chatBody("gpt-4o"), 415, "unsupported_media_type", ""},
		{"embeddings without input", "POST", "/v1/embeddings", "application/json", `{"model":"emb"}`, 400, "invalid_request", "input"},
		{"unknown path", "POST", "/v1/nope", "application/json", `{}`, 404, "unknown_url", ""},
		{"wrong method", "GET", "/v1/chat/completions", "", ``, 405, "method_not_allowed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			e := apiError(t, body)
			if code(e) != tt.code {
				t.Fatalf("code %q, want %q (%s)", code(e), tt.code, e.Message)
			}
			if tt.param != "" && (e.Param == nil || *e.Param != tt.param) {
				t.Fatalf("param %v, want %q", e.Param, tt.param)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("content type %q", ct)
			}
		})
	}
	if up.hits.Load() != 0 {
		t.Fatalf("bad input reached the upstream %d times", up.hits.Load())
	}
}

func TestModelRoutingRewrites(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
model_redirect:
  gpt-4: gpt-4o
model_groups:
  fast: [mini]
channels:
  - name: main
    type: openai
    base_url: UPSTREAM/v1/chat/completions
    models: [gpt-4o, mini]
    model_map: {gpt-4o: gpt-4o-2024-08-06, mini: gpt-4o-mini}
    params:
      defaults: {temperature: 0.2, top_p: 0.9}
      overrides: {max_tokens: 100, logit_bias: null}
`, "UPSTREAM", up.URL)
	tests := []struct {
		name, model, wantUpstream string
	}{
		{"model map", "gpt-4o", "gpt-4o-2024-08-06"},
		{"redirect then map", "gpt-4", "gpt-4o-2024-08-06"},
		{"group", "fast", "gpt-4o-mini"},
		{"auto means any model", "auto", ""},
		{"random means any model", "random", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"model":"` + tt.model + `","temperature":1.5,"logit_bias":{"1":2},"messages":[{"role":"user","content":"hi"}]}`
			resp := call(t, srv, "/v1/chat/completions", body)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			_, got := up.lastRequest()
			if tt.wantUpstream != "" && got["model"] != tt.wantUpstream {
				t.Fatalf("upstream model %v, want %s", got["model"], tt.wantUpstream)
			}
			if tt.wantUpstream == "" && got["model"] != "gpt-4o-2024-08-06" && got["model"] != "gpt-4o-mini" {
				t.Fatalf("upstream model %v is not one of the channel's", got["model"])
			}
			if got["temperature"] != 1.5 {
				t.Fatalf("a default must not replace the client's value: temperature %v", got["temperature"])
			}
			if got["top_p"] != 0.9 || got["max_tokens"] != float64(100) {
				t.Fatalf("defaults/overrides not applied: %v", got)
			}
			if _, ok := got["logit_bias"]; ok {
				t.Fatal("a null override must remove the field")
			}
		})
	}
}

func TestAllRedirect(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
model_redirect: {all: deepseek-chat, special: other}
channels:
  - {type: openai, base_url: UPSTREAM, models: [deepseek-chat, other]}
`, "UPSTREAM", up.URL)
	for model, want := range map[string]string{"gpt-4o": "deepseek-chat", "anything": "deepseek-chat", "special": "other"} {
		resp, b := chat(t, srv, model)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", model, resp.StatusCode, b)
		}
		if _, got := up.lastRequest(); got["model"] != want {
			t.Fatalf("%s went upstream as %v, want %s", model, got["model"], want)
		}
	}
}

func TestHealth(t *testing.T) {
	g, srv := startGateway(t, `channels: [{type: mock, models: [m]}]`)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, err, resp.Status)
		}
		resp.Body.Close()
	}
	g.Drain()
	resp, _ := srv.Client().Get(srv.URL + "/readyz")
	if resp.StatusCode != 503 {
		t.Fatalf("draining readyz: %d", resp.StatusCode)
	}
	resp.Body.Close()
	resp, _ = srv.Client().Get(srv.URL + "/healthz")
	if resp.StatusCode != 200 {
		t.Fatalf("draining healthz: %d", resp.StatusCode)
	}
	resp.Body.Close()
	// Requests that still arrive while draining are served.
	if resp, b := chat(t, srv, "m"); resp.StatusCode != 200 {
		t.Fatalf("draining chat: %d %s", resp.StatusCode, b)
	}
}
