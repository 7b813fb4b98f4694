package provider

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// translateSeeds are canonical requests and upstream answers, streams and
// errors in every translated format: the fuzzer mutates them.
var translateSeeds = []string{
	`{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}]}`,
	`{"model":"m","stream":true,"max_tokens":9,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}]}`,
	`{"model":"m","input":["a","b"],"dimensions":8}`,
	`{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t","name":"f","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":4}}`,
	`{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"},{"functionCall":{"name":"f","args":{}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":2}}`,
	`{"embeddings":[{"values":[0.1,0.2]}]}`,
	"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\"\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":2}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
	"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\r\n\r\ndata: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]},\"finishReason\":\"MAX_TOKENS\"}],\"usageMetadata\":{\"totalTokenCount\":3}}\r\n\r\n",
	`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
	`{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}`,
	`[{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}]`,
	`{"id":"as-1","result":"hi","is_end":true,"finish_reason":"function_call","function_call":{"name":"f","arguments":"{}"},"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
	"data: {\"result\":\"a\",\"is_end\":false}\n\ndata: {\"result\":\"b\",\"is_end\":true,\"usage\":{\"total_tokens\":3}}\n\n",
	`{"error_code":110,"error_msg":"Access token invalid or no longer valid"}`,
	`{`, ``, `null`, `[]`,
}

// fuzzTokens hands out one token, so that adapters needing one build
// their requests without a network.
type fuzzTokens struct{}

func (fuzzTokens) Token(context.Context, string, FetchToken) (string, error) { return "tok", nil }
func (fuzzTokens) Revoke(context.Context, string, string)                    {}

// fuzzSpecs are the translating adapters' specs, the native APIs of the
// key-pair types included.
func fuzzSpecs() []Spec {
	var specs []Spec
	for _, typ := range []string{"claude", "gemini", "qianfan", "hunyuan", "vertexai", "dify", "dashscope"} {
		s, _ := Lookup(typ)
		specs = append(specs, s.ForCredential(true))
	}
	return specs
}

// FuzzTranslate feeds arbitrary bytes to every translating adapter, as a
// canonical request and as an upstream answer, stream and error body.
// None may panic; whatever they accept must come out as valid JSON, and
// an error body is always an OpenAI error object.
func FuzzTranslate(f *testing.F) {
	for _, s := range translateSeeds {
		for which := range uint8(4 * 7) { // every spec, chat and embeddings
			f.Add(s, which)
		}
	}
	specs := fuzzSpecs()
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, body string, which uint8) {
		spec := specs[int(which>>2)%len(specs)]
		adapter, err := For(spec.API)
		if err != nil {
			t.Fatal(err)
		}
		tr := adapter.(Translator)
		ep := Chat
		if which&2 != 0 {
			ep = Embeddings
		}
		target := Target{Spec: spec, BaseURL: spec.BaseURL, Key: "k", SecretKey: "s", Region: "us-central1", Model: "m", MaxTokens: 16, Tokens: fuzzTokens{}}
		if req, err := adapter.NewRequest(ctx, target, ep, []byte(body)); err == nil {
			out, _ := io.ReadAll(req.Body)
			if !json.Valid(out) {
				t.Fatalf("%s: accepted request became invalid JSON %q", spec.Type, out)
			}
		}
		if out, err := tr.Response(ep, []byte(body), "m"); err == nil && !json.Valid(out) {
			t.Fatalf("%s: answer translated to invalid JSON %q", spec.Type, out)
		}
		s := tr.Stream(strings.NewReader(body), "m")
		for range 1000 {
			chunk, err := s.Next()
			if err != nil {
				break
			}
			if !json.Valid(chunk) {
				t.Fatalf("%s: invalid chunk %q", spec.Type, chunk)
			}
		}
		if c, ok := s.(io.Closer); ok {
			c.Close()
		}
		var e struct {
			Error *struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		eb := tr.Error(500, []byte(body))
		if err := json.Unmarshal(eb, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Fatalf("%s: error body %q is not an OpenAI error", spec.Type, eb)
		}
	})
}
