package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider"
)

var requestSeeds = []string{
	`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1},"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:,"}}]}]}`,
	`{"model":"m","max_tokens":5,"n":3,"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"messages":[{"role":"assistant","tool_calls":[{"id":"1"}]},{"role":"tool","content":"x"}]}`,
	`{"model":"m","input":["a",[1,2]]}`,
	`{"model":null,"messages":null,"stream":null}`,
	`{"model":"m","messages":[1,"x",null,{"content":{}}]}`,
	`[]`, `{`, ``, `{"model":"\u0000"}`,
}

// FuzzParseRequest feeds arbitrary bodies to request parsing: it must
// never panic, and whatever it accepts must turn into valid upstream JSON.
func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add(s, true)
		f.Add(s, false)
	}
	p, _ := encodeParams(map[string]any{"temperature": 0.5}, map[string]any{"top_p": nil, "max_tokens": 9})
	f.Fuzz(func(t *testing.T, body string, chat bool) {
		ep := provider.Embeddings
		if chat {
			ep = provider.Chat
		}
		req, err := parseRequest(ep, []byte(body))
		if err != nil {
			return
		}
		if req.model == "" || req.estimate < 1 {
			t.Fatalf("accepted request without model or estimate: %+v", req)
		}
		out, err := req.upstreamBody("upstream-model", p)
		if err != nil {
			t.Fatalf("accepted body could not be re-encoded: %v", err)
		}
		if !json.Valid(out) {
			t.Fatalf("invalid upstream JSON %q", out)
		}
	})
}

// FuzzGateway sends arbitrary requests through the whole HTTP stack to
// the in-process mock: every answer must be a well-formed HTTP response,
// and every error an error object in the route's API shape (OpenAI's, or
// Anthropic's {"type":"error","error":{…}}: both carry error.message).
func FuzzGateway(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add("/v1/chat/completions", "application/json", s)
		f.Add("/v1/embeddings", "application/json", s)
	}
	f.Add("/v1/models", "", "")
	f.Add("/v1/messages", "application/json", `{"model":"m","max_tokens":8,"stream":true,"system":"s","messages":[{"role":"user","content":"hi"}],"tools":[{"name":"f","input_schema":{}}]}`)
	f.Add("/v1/messages", "application/json", `{"model":"m","messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]}]}`)
	f.Add("/v1/responses", "application/json", `{"model":"m","stream":true,"instructions":"s","input":[{"type":"function_call_output","call_id":"c","output":"ok"}]}`)
	f.Add("/v1/responses", "application/json", `{"model":"m","input":"hi","previous_response_id":"r"}`)
	f.Add("/v1/chat/completions", "text/plain; charset=\x00", "{}")
	cfg := `
clients: [{name: c, key: sk-c, models: [m, auto]}]
channels: [{type: mock, models: [m]}]
`
	g, err := New(loadConfig(f, cfg), Deps{Logger: testLogger()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path, contentType, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(http.MethodPost, "http://sluice"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer sk-c")
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if rec.Code >= 400 {
			var e struct {
				Error *openAIErrorBody `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Message == "" {
				t.Fatalf("%d without an OpenAI error body: %q", rec.Code, rec.Body.String())
			}
		}
		if rec.Code == 500 {
			t.Fatalf("internal error for %q %q", path, body)
		}
	})
}
