package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"unicode"

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
	`{"model":"AUTO","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m\u202e\u0007","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"` + strings.Repeat("x", 300) + `","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"\ud800","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","stream":true,"stream_options":null,"temperature":null,"messages":[{"role":"user","content":null}]}`,
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
		if len(req.model) > maxModelName || strings.ContainsFunc(req.model, unicode.IsControl) {
			t.Fatalf("accepted a model name that is too long or holds control characters: %q", req.model)
		}
		out, err := req.upstreamBody("upstream-model", p, nil)
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

// nullSeeds are requests with many optional fields, for FuzzNullFields.
var nullSeeds = []struct{ path, body string }{
	{"/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"temperature":0.5,"top_p":1,"n":1,"stop":["x"],"max_tokens":9,"max_completion_tokens":9,"user":"u","seed":1,"presence_penalty":0,"frequency_penalty":0,"logit_bias":{"1":1},"response_format":{"type":"text"},"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}}],"tool_choice":"auto","parallel_tool_calls":true,"messages":[{"role":"system","content":"s","name":"n"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:,","detail":"low"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"1","content":"r"}]}`},
	{"/v1/embeddings", `{"model":"m","input":["a","b"],"encoding_format":"float","dimensions":8,"user":"u"}`},
	{"/v1/messages", `{"model":"m","max_tokens":16,"stream":true,"system":[{"type":"text","text":"s"}],"metadata":{"user_id":"u"},"stop_sequences":["x"],"temperature":0.5,"top_p":1,"top_k":3,"tool_choice":{"type":"auto"},"tools":[{"name":"f","description":"d","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"ok","is_error":false}]}]}`},
	{"/v1/responses", `{"model":"m","stream":true,"instructions":"s","temperature":0.5,"top_p":1,"max_output_tokens":16,"tool_choice":"auto","parallel_tool_calls":true,"text":{"format":{"type":"text"}},"reasoning":{"effort":"low"},"metadata":{"k":"v"},"store":false,"tools":[{"type":"function","name":"f","description":"d","parameters":{"type":"object"}}],"input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"ok"}]}`},
}

// FuzzNullFields sends requests in which any set of fields, at any depth,
// is null: SDKs write unset options as null, and null must behave as
// absent or be refused with a clear 400, never fail with a 500.
func FuzzNullFields(f *testing.F) {
	for i := range nullSeeds {
		f.Add(uint8(i), uint64(0))
		f.Add(uint8(i), uint64(1)<<3|uint64(1)<<7)
		f.Add(uint8(i), ^uint64(1)) // every value but the first
	}
	g, err := New(loadConfig(f, `channels: [{type: mock, models: [m]}]`), Deps{Logger: testLogger()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, which uint8, mask uint64) {
		seed := nullSeeds[int(which)%len(nullSeeds)]
		var v any
		if err := json.Unmarshal([]byte(seed.body), &v); err != nil {
			t.Fatal(err)
		}
		n := 0
		v = nullify(v, mask, &n)
		body, _ := json.Marshal(v)
		req, _ := http.NewRequest(http.MethodPost, "http://sluice"+seed.path, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", seed.path, body, rec.Code, rec.Body.String())
		}
	})
}

// nullify replaces the values (below the top level, in document order)
// whose index has its bit set in mask with null.
func nullify(v any, mask uint64, n *int) any {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			t[k] = nullValue(t[k], mask, n)
		}
	case []any:
		for i := range t {
			t[i] = nullValue(t[i], mask, n)
		}
	}
	return v
}

func nullValue(v any, mask uint64, n *int) any {
	i := *n
	*n++
	if i < 64 && mask&(1<<i) != 0 {
		return nil
	}
	return nullify(v, mask, n)
}

// FuzzValidJSON checks that the fast validator answers agree with
// encoding/json's on any input.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{hotAnswer, `{}`, `{"a":`, `{"a":1}x`, `{"a":"\ud800"}`, "{\"a\":\"\xff\"}", `{"a":1e999}`, `{"a":01}`, ` {"a":[1,2,{"b":null}]} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		trimmed := bytes.TrimSpace(data)
		want := len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(trimmed)
		if got := validJSON(data); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json says %v", data, got, want)
		}
	})
}
