package ingress

import (
	"encoding/json"
	"errors"
	"testing"
)

// codecSeeds are client requests in both formats and canonical answers
// and chunks: the fuzzer mutates them.
var codecSeeds = []string{
	`{"model":"m","max_tokens":16,"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"ok"}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"},"stream":true}`,
	`{"model":"m","instructions":"s","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"ok"}],"tools":[{"type":"function","name":"f","parameters":{}}],"text":{"format":{"type":"json_schema","name":"o","schema":{}}},"stream":true}`,
	`{"model":"m","input":"hi","previous_response_id":"resp_1"}`,
	`{"id":"chatcmpl-1","model":"m","choices":[{"message":{"content":"hi","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":1}}}`,
	`{"id":"chatcmpl-1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"h","tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{"}}]},"finish_reason":"length"}],"usage":{"prompt_tokens":1}}`,
	`{`, ``, `null`, `[]`, `{"model":"","messages":[]}`,
}

// FuzzCodecs feeds arbitrary bytes to both codecs as a client request, as
// a canonical answer and as a stream of canonical chunks. None may panic;
// a refusal is a *RequestError; what is accepted and every event written
// is valid JSON.
func FuzzCodecs(f *testing.F) {
	for _, s := range codecSeeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, body string, anthropic bool) {
		var c Codec = Responses
		if anthropic {
			c = Anthropic
		}
		req, err := c.Decode([]byte(body))
		var re *RequestError
		switch {
		case err == nil:
			if req.Model == "" || !json.Valid(req.Canonical) {
				t.Fatalf("%s: accepted %q as model %q, canonical %q", c.Name(), body, req.Model, req.Canonical)
			}
		case !errors.As(err, &re):
			t.Fatalf("%s: refusal %v is not a *RequestError", c.Name(), err)
		case !json.Valid(RequestErrorBody(c, re)):
			t.Fatalf("%s: invalid error body for %v", c.Name(), re)
		}
		if out, err := c.Response([]byte(body)); err == nil && !json.Valid(out) {
			t.Fatalf("%s: answer encoded as invalid JSON %q", c.Name(), out)
		}
		enc := c.NewStream("m")
		events, _ := enc.Chunk([]byte(body))
		more, _ := enc.Chunk([]byte(body))
		events = append(append(events, more...), enc.End()...)
		events = append(events, c.NewStream("m").Fail(body)...)
		for _, e := range events {
			if !json.Valid([]byte(e.Data)) {
				t.Fatalf("%s: event %q with invalid data %q", c.Name(), e.Type, e.Data)
			}
		}
	})
}
