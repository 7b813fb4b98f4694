package mock_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// chatCase is a chat request and what its answer must look like.
type chatCase struct {
	name    string
	path    string
	headers []string
	body    map[string]any
	model   string         // answered model
	choices int            // default 1
	words   int            // words per text choice
	finish  string         // finish_reason
	tool    string         // called function; "" for text
	args    map[string]any // its arguments
	prompt  int            // prompt tokens; 0: unchecked
}

func chatCases(replyTokens int) []chatCase {
	toolResult := []map[string]any{
		{"role": "user", "content": "weather in Paris?"},
		{"role": "assistant", "content": nil, "tool_calls": []map[string]any{{
			"id": "call_1", "type": "function",
			"function": map[string]any{"name": "get_weather", "arguments": `{"city":"Paris"}`},
		}}},
		{"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
	}
	multimodal := []map[string]any{{"role": "user", "content": []map[string]any{
		{"type": "text", "text": "describe this"},
		{"type": "image_url", "image_url": map[string]any{"url": "https://example.com/cat.png", "detail": "low"}},
	}}}
	return []chatCase{
		{name: "plain", path: "/v1/chat/completions",
			body:  map[string]any{"model": "mock-gpt", "messages": userMsg("hello there friend!")},
			model: "mock-gpt", words: replyTokens, finish: "stop", prompt: 19 / 4},
		{name: "system and user", path: "/v1/chat/completions",
			body: map[string]any{"model": "mock-gpt", "messages": []map[string]any{
				{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}}},
			model: "mock-gpt", words: replyTokens, finish: "stop", prompt: 10 / 4},
		{name: "n=3", path: "/v1/chat/completions",
			body:  map[string]any{"model": "mock-gpt", "n": 3, "messages": userMsg("hi")},
			model: "mock-gpt", choices: 3, words: replyTokens, finish: "stop", prompt: 1},
		{name: "max_tokens truncates", path: "/v1/chat/completions",
			body:  map[string]any{"model": "mock-gpt", "max_tokens": 5, "messages": userMsg("hi")},
			model: "mock-gpt", words: 5, finish: "length"},
		{name: "max_completion_tokens above reply", path: "/v1/chat/completions",
			body:  map[string]any{"model": "mock-gpt", "max_completion_tokens": replyTokens + 10, "messages": userMsg("hi")},
			model: "mock-gpt", words: replyTokens, finish: "stop"},
		{name: "multimodal", path: "/v1/chat/completions",
			body:  map[string]any{"model": "mock-gpt", "messages": multimodal},
			model: "mock-gpt", words: replyTokens, finish: "stop", prompt: 13/4 + 85},
		{name: "no v1 prefix", path: "/chat/completions",
			body:  map[string]any{"model": "m2", "messages": userMsg("hi")},
			model: "m2", words: replyTokens, finish: "stop"},
		{name: "azure v1", path: "/openai/v1/chat/completions", headers: []string{"api-key", "k"},
			body:  map[string]any{"model": "m3", "messages": userMsg("hi")},
			model: "m3", words: replyTokens, finish: "stop"},
		{name: "azure deployment", path: "/openai/deployments/dep-1/chat/completions?api-version=2024-10-21",
			headers: []string{"api-key", "k"},
			body:    map[string]any{"messages": userMsg("hi")},
			model:   "dep-1", words: replyTokens, finish: "stop"},
		{name: "tool call", path: "/v1/chat/completions",
			body:  map[string]any{"model": "mock-gpt", "messages": userMsg("weather?"), "tools": []any{weatherTool, flagsTool}},
			model: "mock-gpt", finish: "tool_calls", tool: "get_weather",
			args: map[string]any{"city": "sample", "unit": "celsius"}},
		{name: "tool_choice names a function", path: "/v1/chat/completions",
			body: map[string]any{"model": "mock-gpt", "messages": userMsg("flags"), "tools": []any{weatherTool, flagsTool},
				"tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "set_flags"}}},
			model: "mock-gpt", finish: "tool_calls", tool: "set_flags",
			args: map[string]any{"on": true, "ratio": 1.0, "tags": []any{}, "extra": map[string]any{}}},
		{name: "tool call n=2", path: "/v1/chat/completions",
			body:  map[string]any{"model": "mock-gpt", "n": 2, "messages": userMsg("weather?"), "tools": []any{weatherTool}, "tool_choice": "required"},
			model: "mock-gpt", choices: 2, finish: "tool_calls", tool: "get_weather",
			args: map[string]any{"city": "sample", "unit": "celsius"}},
		{name: "tool_choice none", path: "/v1/chat/completions",
			body:  map[string]any{"model": "mock-gpt", "messages": userMsg("weather?"), "tools": []any{weatherTool}, "tool_choice": "none"},
			model: "mock-gpt", words: replyTokens, finish: "stop"},
		{name: "after a tool result", path: "/v1/chat/completions",
			body:  map[string]any{"model": "mock-gpt", "messages": toolResult, "tools": []any{weatherTool}},
			model: "mock-gpt", words: replyTokens, finish: "stop", prompt: (17 + 5) / 4},
	}
}

func TestChat(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		for _, tc := range chatCases(16) {
			t.Run(tc.name, func(t *testing.T) {
				resp := tg.post(t, tc.path, tc.body, tc.headers...)
				if resp.Header.Get("x-request-id") == "" || resp.Header.Get("openai-processing-ms") == "" {
					t.Errorf("missing OpenAI headers: %v", resp.Header)
				}
				var cc completion
				decode(t, resp, http.StatusOK, &cc)
				checkCompletion(t, tc, cc)
			})
		}
	})
}

// checkCompletion checks a chat.completion against its case.
func checkCompletion(t *testing.T, tc chatCase, cc completion) {
	t.Helper()
	if !strings.HasPrefix(cc.ID, "chatcmpl-") || cc.Object != "chat.completion" || cc.Created == 0 ||
		cc.Model != tc.model || cc.SystemFingerprint != "fp_mock" {
		t.Errorf("header fields: id %q object %q created %d model %q fp %q", cc.ID, cc.Object, cc.Created, cc.Model, cc.SystemFingerprint)
	}
	want := max(tc.choices, 1)
	if len(cc.Choices) != want {
		t.Fatalf("%d choices, want %d", len(cc.Choices), want)
	}
	completionTokens := 0
	for i, ch := range cc.Choices {
		m := ch.Message
		if ch.Index != i || m.Role != "assistant" || string(m.Refusal) != "null" || string(ch.Logprobs) != "null" {
			t.Errorf("choice %d: index %d role %q refusal %s logprobs %s", i, ch.Index, m.Role, m.Refusal, ch.Logprobs)
		}
		if ch.FinishReason != tc.finish {
			t.Errorf("choice %d: finish_reason %q, want %q", i, ch.FinishReason, tc.finish)
		}
		if tc.tool == "" {
			if m.Content == nil || len(m.ToolCalls) != 0 {
				t.Fatalf("choice %d: want text, got content %v tool calls %v", i, m.Content, m.ToolCalls)
			}
			words := len(strings.Fields(*m.Content))
			if words != tc.words {
				t.Errorf("choice %d: %d words, want %d: %q", i, words, tc.words, *m.Content)
			}
			completionTokens += words
			continue
		}
		if m.Content != nil || len(m.ToolCalls) != 1 {
			t.Fatalf("choice %d: want one tool call and null content, got content %v tool calls %v", i, m.Content, m.ToolCalls)
		}
		call := m.ToolCalls[0]
		if !strings.HasPrefix(call.ID, "call_") || call.Type != "function" || call.Function.Name == nil || *call.Function.Name != tc.tool {
			t.Errorf("choice %d: tool call %+v, want function %s", i, call, tc.tool)
		}
		checkArgs(t, call.Function.Arguments, tc.args)
		completionTokens = cc.Usage.CompletionTokens // estimated from the arguments
	}
	u := cc.Usage
	if u.CompletionTokens != completionTokens || u.TotalTokens != u.PromptTokens+u.CompletionTokens || u.PromptTokens < 1 {
		t.Errorf("usage %+v, want %d completion tokens", u, completionTokens)
	}
	if tc.prompt != 0 && u.PromptTokens != tc.prompt {
		t.Errorf("prompt_tokens %d, want %d", u.PromptTokens, tc.prompt)
	}
}

// checkArgs checks that tool call arguments are a JSON object equal to want.
func checkArgs(t *testing.T, args string, want map[string]any) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal([]byte(args), &got); err != nil {
		t.Fatalf("arguments %q are not JSON: %v", args, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("arguments %s, want %v", args, want)
	}
}

func TestChatIsDeterministic(t *testing.T) {
	h := mock.New(mock.Config{})
	tg := target{base: "http://mock.test", client: &http.Client{Transport: mock.Transport(h)}}
	body := map[string]any{"model": "mock-gpt", "n": 2, "messages": userMsg("same question")}
	var a, b completion
	decode(t, tg.post(t, "/v1/chat/completions", body), http.StatusOK, &a)
	decode(t, tg.post(t, "/v1/chat/completions", body), http.StatusOK, &b)
	if *a.Choices[0].Message.Content != *b.Choices[0].Message.Content {
		t.Errorf("same request, different replies: %q vs %q", *a.Choices[0].Message.Content, *b.Choices[0].Message.Content)
	}
	if *a.Choices[0].Message.Content == *a.Choices[1].Message.Content {
		t.Errorf("choices should differ: %q", *a.Choices[0].Message.Content)
	}
	if a.ID == b.ID {
		t.Errorf("two calls share ID %s", a.ID)
	}
}

func TestChatStream(t *testing.T) {
	cfg := mock.Config{StreamChunks: 5, ReplyTokens: 12}
	eachTarget(t, cfg, func(t *testing.T, tg target) {
		for _, tc := range chatCases(cfg.ReplyTokens) {
			for _, includeUsage := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/include_usage=%v", tc.name, includeUsage), func(t *testing.T) {
					var plain completion
					decode(t, tg.post(t, tc.path, tc.body, tc.headers...), http.StatusOK, &plain)

					body := maps.Clone(tc.body)
					body["stream"] = true
					if includeUsage {
						body["stream_options"] = map[string]any{"include_usage": true}
					}
					resp := tg.post(t, tc.path, body, tc.headers...)
					defer resp.Body.Close()
					if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
						t.Fatalf("status %d Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
					}
					events, err := readSSE(resp.Body)
					if err != nil {
						t.Fatalf("read stream: %v", err)
					}
					checkStream(t, tc, cfg.StreamChunks, includeUsage, events, plain)
				})
			}
		}
	})
}

// choiceStream is what the chunks of one choice added up to.
type choiceStream struct {
	chunks   int // content or argument chunks
	text     string
	args     string
	finished string
}

// checkStream checks a stream's events against the plain answer to the
// same request.
func checkStream(t *testing.T, tc chatCase, streamChunks int, includeUsage bool, events []string, plain completion) {
	t.Helper()
	if len(events) < 4 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", events)
	}
	events = events[:len(events)-1]
	if includeUsage {
		last := events[len(events)-1]
		events = events[:len(events)-1]
		var uc struct {
			Choices []json.RawMessage `json:"choices"`
			Usage   *usage            `json:"usage"`
		}
		if err := json.Unmarshal([]byte(last), &uc); err != nil || uc.Choices == nil || len(uc.Choices) != 0 || uc.Usage == nil {
			t.Fatalf("usage chunk %s: want choices [] and usage (%v)", last, err)
		}
		if *uc.Usage != plain.Usage {
			t.Errorf("streamed usage %+v, plain usage %+v", *uc.Usage, plain.Usage)
		}
	}
	choices := map[int]*choiceStream{}
	var id string
	for n, ev := range events {
		var c streamChunk
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("chunk %d %q: %v", n, ev, err)
		}
		if id == "" {
			id = c.ID
		}
		if c.ID != id || !strings.HasPrefix(c.ID, "chatcmpl-") || c.Object != "chat.completion.chunk" || c.Model != tc.model {
			t.Errorf("chunk %d: id %q object %q model %q", n, c.ID, c.Object, c.Model)
		}
		if hasKey(t, ev, "usage") != includeUsage || (includeUsage && string(c.Usage) != "null") {
			t.Errorf("chunk %d: usage %q (include_usage %v)", n, c.Usage, includeUsage)
		}
		if len(c.Choices) != 1 {
			t.Fatalf("chunk %d: %d choices", n, len(c.Choices))
		}
		ch := c.Choices[0]
		d := ch.Delta
		cs := choices[ch.Index]
		if cs == nil { // first chunk of a choice: the role
			cs = &choiceStream{}
			choices[ch.Index] = cs
			if d.Role != "assistant" || ch.FinishReason != nil {
				t.Errorf("first chunk of choice %d: %s", ch.Index, ev)
			}
			if tc.tool == "" && (d.Content == nil || *d.Content != "" || d.ToolCalls != nil) {
				t.Errorf("first chunk of choice %d: want content \"\": %s", ch.Index, ev)
			}
			if tc.tool != "" {
				if len(d.ToolCalls) != 1 || d.ToolCalls[0].Index == nil || *d.ToolCalls[0].Index != 0 ||
					!strings.HasPrefix(d.ToolCalls[0].ID, "call_") || d.ToolCalls[0].Type != "function" ||
					d.ToolCalls[0].Function.Name == nil || *d.ToolCalls[0].Function.Name != tc.tool ||
					d.ToolCalls[0].Function.Arguments != "" {
					t.Errorf("first chunk of choice %d: want the tool call head: %s", ch.Index, ev)
				}
			}
			continue
		}
		if cs.finished != "" {
			t.Errorf("chunk after finish_reason for choice %d: %s", ch.Index, ev)
		}
		if ch.FinishReason != nil {
			cs.finished = *ch.FinishReason
			if d.Role != "" || d.Content != nil || d.ToolCalls != nil {
				t.Errorf("finish chunk with a delta: %s", ev)
			}
			continue
		}
		cs.chunks++
		switch {
		case tc.tool == "" && d.Content != nil && d.ToolCalls == nil && d.Role == "":
			cs.text += *d.Content
		case tc.tool != "" && d.Content == nil && len(d.ToolCalls) == 1 && d.ToolCalls[0].ID == "" &&
			d.ToolCalls[0].Function.Name == nil && d.ToolCalls[0].Index != nil && *d.ToolCalls[0].Index == 0:
			cs.args += d.ToolCalls[0].Function.Arguments
		default:
			t.Errorf("unexpected content chunk: %s", ev)
		}
	}
	if len(choices) != len(plain.Choices) {
		t.Fatalf("%d streamed choices, %d plain", len(choices), len(plain.Choices))
	}
	for i, p := range plain.Choices {
		cs := choices[i]
		if cs == nil {
			t.Fatalf("choice %d missing from the stream", i)
		}
		if cs.finished != p.FinishReason {
			t.Errorf("choice %d: streamed finish_reason %q, plain %q", i, cs.finished, p.FinishReason)
		}
		if tc.tool != "" {
			checkArgs(t, cs.args, tc.args)
			if cs.chunks < 2 {
				t.Errorf("choice %d: arguments in %d chunks, want a few", i, cs.chunks)
			}
			continue
		}
		if cs.text != *p.Message.Content {
			t.Errorf("choice %d: streamed %q, plain %q", i, cs.text, *p.Message.Content)
		}
		if want := min(streamChunks, tc.words); cs.chunks != want {
			t.Errorf("choice %d: %d content chunks, want %d", i, cs.chunks, want)
		}
	}
}

func TestChatBadRequests(t *testing.T) {
	cases := []struct {
		name   string
		path   string
		body   any
		raw    string // sent instead of body when set
		status int
		param  string // "" for null
	}{
		{name: "bad JSON", path: "/v1/chat/completions", raw: `{"model":`, status: 400},
		{name: "missing model", path: "/v1/chat/completions", body: map[string]any{"messages": userMsg("hi")}, status: 400, param: "model"},
		{name: "missing messages", path: "/v1/chat/completions", body: map[string]any{"model": "m"}, status: 400, param: "messages"},
		{name: "empty messages", path: "/v1/chat/completions", body: map[string]any{"model": "m", "messages": []any{}}, status: 400, param: "messages"},
		{name: "bad role", path: "/v1/chat/completions", body: map[string]any{"model": "m", "messages": []map[string]any{{"role": "robot", "content": "x"}}}, status: 400, param: "messages[0].role"},
		{name: "bad content", path: "/v1/chat/completions", body: map[string]any{"model": "m", "messages": []map[string]any{{"role": "user", "content": 42}}}, status: 400, param: "messages[0].content"},
		{name: "n=0", path: "/v1/chat/completions", body: map[string]any{"model": "m", "n": 0, "messages": userMsg("hi")}, status: 400, param: "n"},
		{name: "max_tokens=0", path: "/v1/chat/completions", body: map[string]any{"model": "m", "max_tokens": 0, "messages": userMsg("hi")}, status: 400, param: "max_tokens"},
		{name: "unknown tool_choice", path: "/v1/chat/completions", body: map[string]any{"model": "m", "messages": userMsg("hi"), "tools": []any{weatherTool},
			"tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "nope"}}}, status: 400, param: "tool_choice"},
		{name: "embeddings without input", path: "/v1/embeddings", body: map[string]any{"model": "e"}, status: 400, param: "input"},
		{name: "embeddings without model", path: "/v1/embeddings", body: map[string]any{"input": "x"}, status: 400, param: "model"},
		{name: "unknown path", path: "/v1/completions/nope", body: map[string]any{}, status: 404},
	}
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var resp *http.Response
				if tc.raw != "" {
					req, err := http.NewRequest(http.MethodPost, tg.base+tc.path, strings.NewReader(tc.raw))
					if err != nil {
						t.Fatal(err)
					}
					if resp, err = tg.client.Do(req); err != nil {
						t.Fatal(err)
					}
				} else {
					resp = tg.post(t, tc.path, tc.body)
				}
				e := expectError(t, resp, tc.status, "invalid_request_error", "")
				wantParam := "null"
				if tc.param != "" {
					wantParam = `"` + tc.param + `"`
				}
				if string(e.Error.Param) != wantParam {
					t.Errorf("param %s, want %s", e.Error.Param, wantParam)
				}
			})
		}
		t.Run("wrong method", func(t *testing.T) {
			resp := tg.do(t, t.Context(), http.MethodGet, "/v1/chat/completions", nil)
			expectError(t, resp, http.StatusMethodNotAllowed, "invalid_request_error", "")
		})
	})
}
