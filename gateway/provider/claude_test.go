package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// claudeTarget is a claude Target for tests.
func claudeTarget(base string) Target {
	spec, _ := Lookup("claude")
	return Target{Spec: spec, BaseURL: base, Key: "sk-ant-test", Model: "claude-sonnet-4-5"}
}

// claudeBody builds the request NewRequest sends for a canonical body and
// returns its body.
func claudeBody(t *testing.T, tg Target, canonical string) ([]byte, error) {
	t.Helper()
	req, err := claude{}.NewRequest(context.Background(), tg, Chat, []byte(canonical))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(req.Body)
}

func TestClaudeURL(t *testing.T) {
	tests := []struct{ base, want string }{
		{"https://api.anthropic.com", "https://api.anthropic.com/v1/messages"},
		{"https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"},
		{"https://api.anthropic.com/v1", "https://api.anthropic.com/v1/messages"},
		{"https://api.anthropic.com/v1/", "https://api.anthropic.com/v1/messages"},
		{"https://api.anthropic.com/v1/messages", "https://api.anthropic.com/v1/messages"},
		{"https://proxy.example/anthropic/v1/messages/", "https://proxy.example/anthropic/v1/messages"},
		{"http://127.0.0.1:8080/claude?beta=true", "http://127.0.0.1:8080/claude/v1/messages?beta=true"},
	}
	for _, tt := range tests {
		req, err := claude{}.NewRequest(context.Background(), claudeTarget(tt.base), Chat,
			[]byte(`{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hello"}]}`))
		if err != nil {
			t.Fatalf("%s: %v", tt.base, err)
		}
		if got := req.URL.String(); got != tt.want || req.Method != http.MethodPost {
			t.Errorf("%s: %s %s, want POST %s", tt.base, req.Method, got, tt.want)
		}
	}
	if _, err := (claude{}).NewRequest(context.Background(), claudeTarget("not a url"), Chat,
		[]byte(`{"model":"m","messages":[]}`)); err == nil {
		t.Error("want an error for a bad base URL")
	}
}

func TestClaudeHeaders(t *testing.T) {
	const body = `{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hello"}]}`
	tests := []struct {
		name, version string
		headers       map[string]string
		want          string
	}{
		{"default version", "", nil, DefaultClaudeVersion},
		{"configured version", "2024-01-01", map[string]string{"X-Team": "blue"}, "2024-01-01"},
		{"header wins", "2024-01-01", map[string]string{"anthropic-version": "2099-01-01"}, "2099-01-01"},
	}
	for _, tt := range tests {
		tg := claudeTarget("https://api.anthropic.com")
		tg.APIVersion, tg.Headers = tt.version, tt.headers
		req, err := claude{}.NewRequest(context.Background(), tg, Chat, []byte(body))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		h := req.Header
		if h.Get("anthropic-version") != tt.want || h.Get("x-api-key") != "sk-ant-test" || h.Get("Authorization") != "" ||
			h.Get("Content-Type") != "application/json" {
			t.Errorf("%s: headers %v", tt.name, h)
		}
		for k, v := range tt.headers {
			if h.Get(k) != v {
				t.Errorf("%s: header %s = %q, want %q", tt.name, k, h.Get(k), v)
			}
		}
	}
}

// TestClaudeHTTP sends a request NewRequest built to a server standing in
// for Anthropic and checks what arrives.
func TestClaudeHTTP(t *testing.T) {
	type received struct {
		method, path string
		header       http.Header
		body         []byte
	}
	got := make(chan received, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- received{r.Method, r.URL.Path, r.Header.Clone(), b}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5",
			"content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":6}}`)
	}))
	defer srv.Close()

	tg := claudeTarget(srv.URL + "/v1")
	tg.MaxTokens = 1024
	tg.Headers = map[string]string{"anthropic-beta": "prompt-caching-2024-07-31"}
	req, err := claude{}.NewRequest(context.Background(), tg, Chat, []byte(`{"model":"claude-sonnet-4-5",
		"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello, Claude"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := <-got
	if r.method != http.MethodPost || r.path != "/v1/messages" {
		t.Errorf("request %s %s", r.method, r.path)
	}
	if r.header.Get("x-api-key") != "sk-ant-test" || r.header.Get("anthropic-version") != DefaultClaudeVersion ||
		r.header.Get("anthropic-beta") != "prompt-caching-2024-07-31" || r.header.Get("Content-Type") != "application/json" ||
		r.header.Get("Authorization") != "" {
		t.Errorf("headers %v", r.header)
	}
	jsonEqual(t, "sent body", r.body, []byte(`{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"Be brief.",
		"messages":[{"role":"user","content":[{"type":"text","text":"Hello, Claude"}]}]}`))
	out, err := claude{}.Response(Chat, answer, "claude-sonnet-4-5")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"content":"Hi! My name is Claude."`) {
		t.Errorf("answer %s", out)
	}
}

func TestClaudeNativeRequest(t *testing.T) {
	body := []byte(`{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello, world"}],"top_k":5}`)
	tg := claudeTarget("https://api.anthropic.com/v1/messages")
	tg.APIVersion = "2023-01-01"
	tg.Headers = map[string]string{"anthropic-version": "2023-06-01", "anthropic-beta": "output-128k-2025-02-19"}
	var n Native = claude{}
	req, err := n.NewNativeRequest(context.Background(), tg, body)
	if err != nil {
		t.Fatal(err)
	}
	sent, _ := io.ReadAll(req.Body)
	if !bytes.Equal(sent, body) {
		t.Errorf("body changed: %s", sent)
	}
	if req.URL.String() != "https://api.anthropic.com/v1/messages" || req.Method != http.MethodPost {
		t.Errorf("request %s %s", req.Method, req.URL)
	}
	h := req.Header
	if h.Get("anthropic-version") != "2023-06-01" || h.Get("anthropic-beta") != "output-128k-2025-02-19" ||
		h.Get("x-api-key") != "sk-ant-test" || h.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", h)
	}
}

// Request examples follow Anthropic's Messages API documentation (the
// Messages examples, vision and tool use guides).
func TestClaudeRequest(t *testing.T) {
	const weatherTool = `{"type":"function","function":{"name":"get_weather","description":"Get the current weather in a given location",
		"parameters":{"type":"object","properties":{"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}},"required":["location"]}}}`
	const weatherSchema = `{"name":"get_weather","description":"Get the current weather in a given location",
		"input_schema":{"type":"object","properties":{"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}},"required":["location"]}}`
	tests := []struct {
		name, in, want string
	}{
		{"basic",
			`{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hello, world"}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"Hello, world"}]}]}`},
		{"system and developer messages lifted",
			`{"model":"claude-sonnet-4-5","messages":[
				{"role":"system","content":"You are a seasoned data scientist at a Fortune 500 company."},
				{"role":"user","content":"Analyze this dataset."},
				{"role":"developer","content":[{"type":"text","text":"Answer in English."},{"type":"text","text":"Use tables."}]}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":4096,
			  "system":"You are a seasoned data scientist at a Fortune 500 company.\n\nAnswer in English.\n\nUse tables.",
			  "messages":[{"role":"user","content":[{"type":"text","text":"Analyze this dataset."}]}]}`},
		{"multi-turn, consecutive turns merged, empty text dropped",
			`{"model":"claude-sonnet-4-5","messages":[
				{"role":"user","content":"Hello there."},
				{"role":"assistant","content":"Hi, I'm Claude. How can I help you?"},
				{"role":"assistant","content":""},
				{"role":"user","content":"Can you explain LLMs in plain English?"},
				{"role":"user","content":[{"type":"text","text":"Keep it short."},{"type":"text","text":""}]}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[
				{"role":"user","content":[{"type":"text","text":"Hello there."}]},
				{"role":"assistant","content":[{"type":"text","text":"Hi, I'm Claude. How can I help you?"}]},
				{"role":"user","content":[{"type":"text","text":"Can you explain LLMs in plain English?"},{"type":"text","text":"Keep it short."}]}]}`},
		{"images, base64 and url",
			`{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":[
				{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQSkZJRg==","detail":"high"}},
				{"type":"image_url","image_url":{"url":"https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"}},
				{"type":"text","text":"Compare these images."}]}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[
				{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/4AAQSkZJRg=="}},
				{"type":"image","source":{"type":"url","url":"https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"}},
				{"type":"text","text":"Compare these images."}]}]}`},
		{"tools, default tool_choice",
			`{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"What is the weather like in San Francisco?"}],
			  "tools":[` + weatherTool + `,{"type":"function","function":{"name":"get_time"}}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":4096,
			  "messages":[{"role":"user","content":[{"type":"text","text":"What is the weather like in San Francisco?"}]}],
			  "tools":[` + weatherSchema + `,{"name":"get_time","input_schema":{"type":"object","properties":{}}}]}`},
		{"tool calls and results round trip",
			`{"model":"claude-sonnet-4-5","tools":[` + weatherTool + `],"messages":[
				{"role":"user","content":"What's the weather like in San Francisco and Paris?"},
				{"role":"assistant","content":"I'll check both cities.","tool_calls":[
					{"id":"toolu_01A09q90qw90lq917835lq9","type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"San Francisco, CA\"}"}},
					{"id":"toolu_02","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},
				{"role":"tool","tool_call_id":"toolu_01A09q90qw90lq917835lq9","content":"15 degrees"},
				{"role":"tool","tool_call_id":"toolu_02","content":[{"type":"text","text":"18 degrees"}]},
				{"role":"user","content":"Which is warmer?"},
				{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_03","type":"function","function":{"name":"get_weather","arguments":""}}]}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":4096,"tools":[` + weatherSchema + `],"messages":[
				{"role":"user","content":[{"type":"text","text":"What's the weather like in San Francisco and Paris?"}]},
				{"role":"assistant","content":[
					{"type":"text","text":"I'll check both cities."},
					{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"location":"San Francisco, CA"}},
					{"type":"tool_use","id":"toolu_02","name":"get_weather","input":{"location":"Paris"}}]},
				{"role":"user","content":[
					{"type":"tool_result","tool_use_id":"toolu_01A09q90qw90lq917835lq9","content":"15 degrees"},
					{"type":"tool_result","tool_use_id":"toolu_02","content":"18 degrees"},
					{"type":"text","text":"Which is warmer?"}]},
				{"role":"assistant","content":[{"type":"tool_use","id":"toolu_03","name":"get_weather","input":{}}]}]}`},
		{"tool results stay first in a user turn",
			`{"model":"claude-sonnet-4-5","messages":[
				{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_01","type":"function","function":{"name":"get_time","arguments":"{}"}}]},
				{"role":"user","content":"Also, hello."},
				{"role":"tool","tool_call_id":"toolu_01","content":"12:00"}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[
				{"role":"assistant","content":[{"type":"tool_use","id":"toolu_01","name":"get_time","input":{}}]},
				{"role":"user","content":[
					{"type":"tool_result","tool_use_id":"toolu_01","content":"12:00"},
					{"type":"text","text":"Also, hello."}]}]}`},
		{"sampling, stop, user, stream; ignored parameters",
			`{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Count to ten."}],
			  "max_completion_tokens":256,"max_tokens":999,"temperature":1.5,"top_p":0.9,"stop":["\n\nHuman:","7"],
			  "user":"13803d75-b4b5-4c3e-b2a2-6f21399b021b","stream":true,"stream_options":{"include_usage":true},
			  "seed":42,"presence_penalty":0.5,"frequency_penalty":0.5,"logit_bias":{"50256":-100},"reasoning_effort":"high",
			  "n":1,"response_format":{"type":"text"},"logprobs":false,"parallel_tool_calls":false}`,
			`{"model":"claude-sonnet-4-5","max_tokens":256,"temperature":1,"top_p":0.9,"stop_sequences":["\n\nHuman:","7"],
			  "metadata":{"user_id":"13803d75-b4b5-4c3e-b2a2-6f21399b021b"},"stream":true,
			  "messages":[{"role":"user","content":[{"type":"text","text":"Count to ten."}]}]}`},
		{"stop string, max_tokens, negative temperature",
			`{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hi"}],"stop":"END","max_tokens":100,"temperature":-1}`,
			`{"model":"claude-sonnet-4-5","max_tokens":100,"temperature":0,"stop_sequences":["END"],
			  "messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}`},
	}
	for _, tt := range tests {
		got, err := claudeBody(t, claudeTarget("https://api.anthropic.com"), tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		jsonEqual(t, tt.name, got, []byte(tt.want))
	}
}

func TestClaudeToolChoice(t *testing.T) {
	const tools = `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}]`
	tests := []struct {
		name, params, want string // want: the tool_choice sent, "" for none
	}{
		{"absent", ``, ``},
		{"auto", `"tool_choice":"auto"`, `{"type":"auto"}`},
		{"none", `"tool_choice":"none"`, `{"type":"none"}`},
		{"required", `"tool_choice":"required"`, `{"type":"any"}`},
		{"function", `"tool_choice":{"type":"function","function":{"name":"get_weather"}}`, `{"type":"tool","name":"get_weather"}`},
		{"parallel off", `"parallel_tool_calls":false`, `{"type":"auto","disable_parallel_tool_use":true}`},
		{"parallel off, required", `"tool_choice":"required","parallel_tool_calls":false`, `{"type":"any","disable_parallel_tool_use":true}`},
		{"parallel off, function", `"tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false`,
			`{"type":"tool","name":"get_weather","disable_parallel_tool_use":true}`},
		{"parallel off, none", `"tool_choice":"none","parallel_tool_calls":false`, `{"type":"none"}`},
		{"parallel on", `"parallel_tool_calls":true`, ``},
	}
	for _, tt := range tests {
		in := `{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Weather in Paris?"}],` + tools
		if tt.params != "" {
			in += "," + tt.params
		}
		got, err := claudeBody(t, claudeTarget("https://api.anthropic.com"), in+"}")
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		var sent struct {
			ToolChoice json.RawMessage `json:"tool_choice"`
		}
		if err := json.Unmarshal(got, &sent); err != nil {
			t.Fatal(err)
		}
		switch {
		case tt.want == "" && sent.ToolChoice != nil:
			t.Errorf("%s: sent tool_choice %s", tt.name, sent.ToolChoice)
		case tt.want != "" && sent.ToolChoice == nil:
			t.Errorf("%s: no tool_choice sent, want %s", tt.name, tt.want)
		case tt.want != "":
			jsonEqual(t, tt.name, sent.ToolChoice, []byte(tt.want))
		}
	}
	// Without tools, tool_choice is not sent: Anthropic would refuse it.
	got, err := claudeBody(t, claudeTarget("https://api.anthropic.com"),
		`{"model":"m","messages":[{"role":"user","content":"Hi"}],"tool_choice":"none","parallel_tool_calls":false}`)
	if err != nil || bytes.Contains(got, []byte("tool_choice")) {
		t.Errorf("no tools: %s, %v", got, err)
	}
}

func TestClaudeMaxTokens(t *testing.T) {
	tests := []struct {
		params     string
		configured int64
		want       int64
	}{
		{``, 0, DefaultClaudeMaxTokens},
		{``, 8192, 8192},
		{`,"max_tokens":300`, 8192, 300},
		{`,"max_completion_tokens":200,"max_tokens":300`, 8192, 200},
		{`,"max_tokens":0`, 0, DefaultClaudeMaxTokens},
	}
	for _, tt := range tests {
		tg := claudeTarget("https://api.anthropic.com")
		tg.MaxTokens = tt.configured
		got, err := claudeBody(t, tg, `{"model":"m","messages":[{"role":"user","content":"Hi"}]`+tt.params+`}`)
		if err != nil {
			t.Fatal(err)
		}
		var sent struct {
			MaxTokens int64 `json:"max_tokens"`
		}
		if err := json.Unmarshal(got, &sent); err != nil || sent.MaxTokens != tt.want {
			t.Errorf("%q, configured %d: sent max_tokens %d, want %d", tt.params, tt.configured, sent.MaxTokens, tt.want)
		}
	}
}

func TestClaudeRequestRefused(t *testing.T) {
	const user = `"messages":[{"role":"user","content":"Hi"}]`
	tests := []struct {
		name, in, param string // param: what the error must name
	}{
		{"n", `{"model":"m",` + user + `,"n":2}`, "n"},
		{"json_object", `{"model":"m",` + user + `,"response_format":{"type":"json_object"}}`, "response_format"},
		{"json_schema", `{"model":"m",` + user + `,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}}}`, "response_format"},
		{"logprobs", `{"model":"m",` + user + `,"logprobs":true}`, "logprobs"},
		{"top_logprobs", `{"model":"m",` + user + `,"top_logprobs":3}`, "top_logprobs"},
		{"audio", `{"model":"m",` + user + `,"audio":{"voice":"alloy","format":"wav"}}`, "audio"},
		{"modalities", `{"model":"m",` + user + `,"modalities":["text","audio"]}`, "modalities"},
		{"functions", `{"model":"m",` + user + `,"functions":[{"name":"f"}]}`, "functions"},
		{"input_audio part", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklGR","format":"wav"}}]}]}`, "input_audio"},
		{"file part", `{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}`, "file"},
		{"image in a system message", `{"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, "image_url"},
		{"ftp image", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}`, "image"},
		{"data URL not base64", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]}`, "data: URL"},
		{"invalid arguments", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{\"a\":"}}]}]}`, "arguments"},
		{"arguments not an object", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`, "arguments"},
		{"tool message without id", `{"model":"m","messages":[{"role":"tool","content":"42"}]}`, "tool_call_id"},
		{"unknown role", `{"model":"m","messages":[{"role":"function","name":"f","content":"42"}]}`, "role"},
		{"custom tool", `{"model":"m",` + user + `,"tools":[{"type":"custom","custom":{"name":"grammar"}}]}`, "tools[0]"},
		{"bad stop", `{"model":"m",` + user + `,"stop":42}`, "stop"},
	}
	for _, tt := range tests {
		_, err := claudeBody(t, claudeTarget("https://api.anthropic.com"), tt.in)
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Type != "invalid_request_error" ||
			!strings.Contains(e.Message, tt.param) {
			t.Errorf("%s: got %#v (%v), want a 400 naming %q", tt.name, e, err, tt.param)
		}
	}
	_, err := claude{}.NewRequest(context.Background(), claudeTarget("https://api.anthropic.com"), Embeddings,
		[]byte(`{"model":"m","input":"hi"}`))
	if err == nil || !strings.Contains(err.Error(), "embeddings") {
		t.Errorf("embeddings: %v", err)
	}
}

// claudeNormalize drops the fields that vary between runs (created) from
// an answer, checking it is recent.
func claudeNormalize(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	created, _ := m["created"].(float64)
	if d := time.Since(time.Unix(int64(created), 0)); d < 0 || d > time.Minute {
		t.Errorf("created %v is not now", m["created"])
	}
	delete(m, "created")
	out, _ := json.Marshal(m)
	return out
}

// Response examples follow Anthropic's Messages API documentation.
func TestClaudeResponse(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"text",
			`{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
			  "content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,
			  "usage":{"input_tokens":2095,"output_tokens":503}}`,
			`{"id":"chatcmpl-msg_013Zva2CMHLNnXjNJJKqJ2EF","object":"chat.completion","model":"claude-sonnet-4-5",
			  "choices":[{"index":0,"message":{"role":"assistant","content":"Hi! My name is Claude."},"finish_reason":"stop"}],
			  "usage":{"prompt_tokens":2095,"completion_tokens":503,"total_tokens":2598}}`},
		{"tool use only",
			`{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant","model":"claude-sonnet-4-5",
			  "content":[{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"location": "San Francisco, CA", "unit": "celsius"}}],
			  "stop_reason":"tool_use","usage":{"input_tokens":472,"output_tokens":89}}`,
			`{"id":"chatcmpl-msg_01Aq9w938a90dw8q","object":"chat.completion","model":"claude-sonnet-4-5",
			  "choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
				{"id":"toolu_01A09q90qw90lq917835lq9","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}}]},
				"finish_reason":"tool_calls"}],
			  "usage":{"prompt_tokens":472,"completion_tokens":89,"total_tokens":561}}`},
		{"text, thinking and tool uses, cache usage",
			`{"id":"msg_02","type":"message","role":"assistant","model":"claude-sonnet-4-5",
			  "content":[
				{"type":"thinking","thinking":"The user wants two cities.","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
				{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"},
				{"type":"text","text":"I'll check "},
				{"type":"text","text":"both cities.","citations":null},
				{"type":"tool_use","id":"toolu_a","name":"get_weather","input":{"location":"Paris"}},
				{"type":"tool_use","id":"toolu_b","name":"get_time","input":{}}],
			  "stop_reason":"tool_use",
			  "usage":{"input_tokens":50,"cache_creation_input_tokens":1000,"cache_read_input_tokens":2000,"output_tokens":100}}`,
			`{"id":"chatcmpl-msg_02","object":"chat.completion","model":"claude-sonnet-4-5",
			  "choices":[{"index":0,"message":{"role":"assistant","content":"I'll check both cities.","tool_calls":[
				{"id":"toolu_a","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}},
				{"id":"toolu_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]},
				"finish_reason":"tool_calls"}],
			  "usage":{"prompt_tokens":3050,"completion_tokens":100,"total_tokens":3150,"prompt_tokens_details":{"cached_tokens":2000}}}`},
		{"empty answer",
			`{"id":"msg_03","type":"message","role":"assistant","content":[],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":0}}`,
			`{"id":"chatcmpl-msg_03","object":"chat.completion","model":"claude-sonnet-4-5",
			  "choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"stop"}],
			  "usage":{"prompt_tokens":5,"completion_tokens":0,"total_tokens":5}}`},
	}
	for _, tt := range tests {
		got, err := claude{}.Response(Chat, []byte(tt.in), "claude-sonnet-4-5")
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		jsonEqual(t, tt.name, claudeNormalize(t, got), []byte(tt.want))
	}
	if _, err := (claude{}).Response(Chat, []byte(`{oops`), "m"); err == nil {
		t.Error("want an error for a bad body")
	}
	if _, err := (claude{}).Response(Embeddings, []byte(`{}`), "m"); err == nil {
		t.Error("want an error for embeddings")
	}
}

func TestClaudeStopReasons(t *testing.T) {
	tests := map[string]string{
		"end_turn":                      "stop",
		"stop_sequence":                 "stop",
		"pause_turn":                    "stop",
		"max_tokens":                    "length",
		"model_context_window_exceeded": "length",
		"tool_use":                      "tool_calls",
		"refusal":                       "content_filter",
		"some_future_reason":            "stop",
	}
	for reason, want := range tests {
		body := `{"id":"msg_1","type":"message","content":[{"type":"text","text":"x"}],"stop_reason":"` + reason + `","usage":{}}`
		got, err := claude{}.Response(Chat, []byte(body), "m")
		if err != nil {
			t.Fatal(err)
		}
		var r wire.ChatResponse
		if err := json.Unmarshal(got, &r); err != nil || len(r.Choices) != 1 || r.Choices[0].FinishReason != want {
			t.Errorf("%s: %s, want finish_reason %s", reason, got, want)
		}
	}
}

// claudeSSE writes events as Anthropic streams them: a named event and
// its data.
func claudeSSE(events ...string) string {
	var b strings.Builder
	for _, data := range events {
		var e struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal([]byte(data), &e)
		b.WriteString("event: " + e.Type + "\ndata: " + compactJSON([]byte(data)) + "\n\n")
	}
	return b.String()
}

// claudeToolStream is the documented "streaming request with tool use"
// answer (text deltas merged into fewer events).
var claudeToolStream = claudeSSE(
	`{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-opus-4-1-20250805","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}`,
	`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
	`{"type": "ping"}`,
	`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}`,
	`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let's check the weather"}}`,
	`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" for San Francisco, CA:"}}`,
	`{"type":"content_block_stop","index":0}`,
	`{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}`,
	`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}`,
	`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}`,
	`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San"}}`,
	`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisc"}}`,
	`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o,"}}`,
	`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" CA\""}}`,
	`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", "}}`,
	`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"unit\": \"fah"}}`,
	`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\"}"}}`,
	`{"type":"content_block_stop","index":1}`,
	`{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}`,
	`{"type":"message_stop"}`,
)

// claudeDrain reads a stream to its end.
func claudeDrain(s Stream) ([]string, error) {
	var chunks []string
	for {
		c, err := s.Next()
		if err != nil {
			return chunks, err
		}
		chunks = append(chunks, string(c))
	}
}

// claudeCheckChunks checks that every chunk shares one header and that,
// without it, each equals want.
func claudeCheckChunks(t *testing.T, chunks []string, model string, want []string) {
	t.Helper()
	if len(chunks) != len(want) {
		t.Fatalf("got %d chunks, want %d:\n%s", len(chunks), len(want), strings.Join(chunks, "\n"))
	}
	var first wire.ChatChunk
	for i, c := range chunks {
		var h wire.ChatChunk
		if err := json.Unmarshal([]byte(c), &h); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = h
		}
		if h.ID == "" || h.ID != first.ID || h.Created != first.Created || h.Model != model || h.Object != "chat.completion.chunk" {
			t.Errorf("chunk %d header: %s", i, c)
		}
		var m map[string]any
		_ = json.Unmarshal([]byte(c), &m)
		for _, k := range []string{"id", "object", "created", "model"} {
			delete(m, k)
		}
		got, _ := json.Marshal(m)
		jsonEqual(t, fmt.Sprint("chunk ", i), got, []byte(want[i]))
	}
}

func TestClaudeStream(t *testing.T) {
	s := claude{}.Stream(strings.NewReader(claudeToolStream), "claude-opus-4-1")
	chunks, err := claudeDrain(s)
	if err != io.EOF {
		t.Fatalf("stream ended with %v", err)
	}
	if _, err := s.Next(); err != io.EOF {
		t.Errorf("after the end: %v", err)
	}
	args := func(k int, frag string) string {
		b, _ := json.Marshal(frag)
		return fmt.Sprintf(`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":%d,"function":{"arguments":%s}}]},"finish_reason":null}]}`, k, b)
	}
	want := []string{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"content":"Okay"},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"content":", let's check the weather"},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"content":" for San Francisco, CA:"},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","type":"function",
			"function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}`,
		args(0, `{"location":`), args(0, ` "San`), args(0, ` Francisc`), args(0, `o,`), args(0, ` CA"`),
		args(0, `, `), args(0, `"unit": "fah`), args(0, `renheit"}`),
		`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
		`{"choices":[],"usage":{"prompt_tokens":472,"completion_tokens":89,"total_tokens":561}}`,
	}
	claudeCheckChunks(t, chunks, "claude-opus-4-1", want)
	if id := claudeChunkID(t, chunks[0]); id != "chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U" {
		t.Errorf("id %s", id)
	}

	// Reassembled as a client does, the fragments are the tool's input.
	var (
		text  strings.Builder
		calls = map[int]*wire.ToolCall{}
	)
	for _, c := range chunks {
		var ch wire.ChatChunk
		if err := json.Unmarshal([]byte(c), &ch); err != nil {
			t.Fatal(err)
		}
		for _, choice := range ch.Choices {
			if choice.Delta.Content != nil {
				text.WriteString(*choice.Delta.Content)
			}
			for _, tc := range choice.Delta.ToolCalls {
				if calls[*tc.Index] == nil {
					calls[*tc.Index] = &wire.ToolCall{ID: tc.ID, Function: wire.FunctionCall{Name: tc.Function.Name}}
				}
				calls[*tc.Index].Function.Arguments += tc.Function.Arguments
			}
		}
	}
	if text.String() != "Okay, let's check the weather for San Francisco, CA:" {
		t.Errorf("text %q", text.String())
	}
	if len(calls) != 1 || calls[0].ID != "toolu_01T1x1fJ34qAmk2tNTrN7Up6" || calls[0].Function.Name != "get_weather" {
		t.Fatalf("calls %+v", calls)
	}
	var input map[string]any
	if err := json.Unmarshal([]byte(calls[0].Function.Arguments), &input); err != nil {
		t.Fatalf("arguments %q: %v", calls[0].Function.Arguments, err)
	}
	if !reflect.DeepEqual(input, map[string]any{"location": "San Francisco, CA", "unit": "fahrenheit"}) {
		t.Errorf("input %v", input)
	}
}

func claudeChunkID(t *testing.T, chunk string) string {
	t.Helper()
	var c wire.ChatChunk
	if err := json.Unmarshal([]byte(chunk), &c); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// TestClaudeStreamThinkingTools streams extended thinking (dropped), then
// two tool calls, with cached input tokens.
func TestClaudeStreamThinkingTools(t *testing.T) {
	body := claudeSSE(
		`{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,
			"usage":{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":1}}}`,
		`{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Two cities, two calls."}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}`,
		`{"type":"content_block_stop","index":0}`,
		`{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"get_weather","input":{}}}`,
		`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"Paris\"}"}}`,
		`{"type":"content_block_stop","index":1}`,
		`{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_b","name":"get_time","input":{}}}`,
		`{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"timezone\":"}}`,
		`{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"Europe/Paris\"}"}}`,
		`{"type":"content_block_stop","index":2}`,
		`{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},
			"usage":{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":120}}`,
		`{"type":"message_stop"}`,
	)
	chunks, err := claudeDrain(claude{}.Stream(strings.NewReader(body), "claude-sonnet-4-5"))
	if err != io.EOF {
		t.Fatalf("stream ended with %v", err)
	}
	claudeCheckChunks(t, chunks, "claude-sonnet-4-5", []string{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"toolu_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\": \"Paris\"}"}}]},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"toolu_b","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"timezone\":"}}]},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":" \"Europe/Paris\"}"}}]},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
		`{"choices":[],"usage":{"prompt_tokens":2110,"completion_tokens":120,"total_tokens":2230,"prompt_tokens_details":{"cached_tokens":2000}}}`,
	})
}

func TestClaudeStreamEnds(t *testing.T) {
	start := claudeSSE(
		`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","usage":{"input_tokens":25,"output_tokens":1}}}`,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`,
	)
	isAPIError := func(status int, typ, msg string) func(error) bool {
		return func(err error) bool {
			var e *Error
			return errors.As(err, &e) && e.Status == status && e.Type == typ && e.Message == msg
		}
	}
	reset := errors.New("connection reset by peer")
	tests := []struct {
		name    string
		body    io.Reader
		chunks  int
		wantErr func(error) bool
	}{
		{"complete, no finish reason", strings.NewReader(start + claudeSSE(`{"type":"message_stop"}`)), 4,
			func(err error) bool { return err == io.EOF }},
		{"overloaded", strings.NewReader(start + "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n"), 2,
			isAPIError(529, "server_error", "Overloaded")},
		{"error before any answer", strings.NewReader("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}\n\n"), 0,
			isAPIError(500, "server_error", "Internal server error")},
		{"rate limited", strings.NewReader(claudeSSE(`{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}`)), 0,
			isAPIError(429, "requests", "Number of request tokens has exceeded your per-minute rate limit")},
		{"truncated", strings.NewReader(start), 2,
			func(err error) bool { return err == io.ErrUnexpectedEOF }},
		{"truncated after the finish reason", strings.NewReader(start + claudeSSE(`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}`)), 3,
			func(err error) bool { return err == io.ErrUnexpectedEOF }},
		{"empty body", strings.NewReader(""), 0,
			func(err error) bool { return err == io.ErrUnexpectedEOF }},
		{"read error", io.MultiReader(strings.NewReader(start), iotest.ErrReader(reset)), 2,
			func(err error) bool { return errors.Is(err, reset) }},
		{"bad event", strings.NewReader("event: message_start\ndata: {oops\n\n"), 0,
			func(err error) bool { return err != nil && err != io.EOF && err != io.ErrUnexpectedEOF }},
	}
	for _, tt := range tests {
		chunks, err := claudeDrain(claude{}.Stream(tt.body, "claude-sonnet-4-5"))
		if len(chunks) != tt.chunks || !tt.wantErr(err) {
			t.Errorf("%s: %d chunks, %v:\n%s", tt.name, len(chunks), err, strings.Join(chunks, "\n"))
		}
	}
}

// Error bodies follow Anthropic's documented error shapes.
func TestClaudeError(t *testing.T) {
	body := func(typ, msg string) string {
		return `{"type":"error","error":{"type":"` + typ + `","message":"` + msg + `"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`
	}
	want := func(typ, code, msg string) string {
		c := "null"
		if code != "" {
			c = `"` + code + `"`
		}
		return `{"error":{"message":"` + msg + `","type":"` + typ + `","param":null,"code":` + c + `}}`
	}
	tests := []struct {
		status     int
		body, want string
	}{
		{400, body("invalid_request_error", "max_tokens: Field required"), want("invalid_request_error", "", "max_tokens: Field required")},
		{401, body("authentication_error", "invalid x-api-key"), want("authentication_error", "", "invalid x-api-key")},
		{403, body("permission_error", "Your API key does not have permission to use the specified resource."),
			want("permission_error", "", "Your API key does not have permission to use the specified resource.")},
		{404, body("not_found_error", "The requested resource could not be found."), want("not_found_error", "", "The requested resource could not be found.")},
		{413, body("request_too_large", "Request exceeds the maximum allowed number of bytes."),
			want("invalid_request_error", "", "Request exceeds the maximum allowed number of bytes.")},
		{429, body("rate_limit_error", "This request would exceed your rate limit."), want("requests", "rate_limit_exceeded", "This request would exceed your rate limit.")},
		{500, body("api_error", "Internal server error"), want("server_error", "", "Internal server error")},
		{529, body("overloaded_error", "Overloaded"), want("server_error", "overloaded", "Overloaded")},
		{402, body("billing_error", "Your credit balance is too low."), want("invalid_request_error", "", "Your credit balance is too low.")},
		{504, body("timeout_error", "Request timed out"), want("server_error", "", "Request timed out")},
		{502, "", want("server_error", "", "anthropic answered HTTP 502")},
		{413, "<html><body>413 Request Entity Too Large</body></html>",
			want("server_error", "", "anthropic answered HTTP 413: <html><body>413 Request Entity Too Large</body></html>")},
	}
	for _, tt := range tests {
		jsonEqual(t, tt.body, claude{}.Error(tt.status, []byte(tt.body)), []byte(tt.want))
	}
	long := claude{}.Error(500, bytes.Repeat([]byte("é"), 500))
	var e wire.ErrorBody
	if err := json.Unmarshal(long, &e); err != nil || len(e.Error.Message) > 260 || !strings.HasSuffix(e.Error.Message, "…") {
		t.Errorf("long body: %s", long)
	}
}

// TestClaudeStreamAbandoned checks that a stream dropped mid-answer is
// released (its parser stopped) without harm.
func TestClaudeStreamAbandoned(t *testing.T) {
	s := claude{}.Stream(strings.NewReader(claudeToolStream), "m")
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
