package mock_test

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

const (
	dsGenPath   = "/api/v1/services/aigc/text-generation/generation"
	dsEmbedPath = "/api/v1/services/embeddings/text-embedding/text-embedding"
)

// dsAnswer is a DashScope text-generation answer, as the tests read it.
type dsAnswer struct {
	Output struct {
		Choices []struct {
			Message struct {
				Role      string `json:"role"`
				Content   string `json:"content"`
				ToolCalls []struct {
					Index    int    `json:"index"`
					ID       string `json:"id"`
					Type     string `json:"type"`
					Function struct {
						Name      string `json:"name"`
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Text         *string `json:"text"`
		FinishReason string  `json:"finish_reason"`
	} `json:"output"`
	Usage struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
	RequestID string `json:"request_id"`
	Code      string `json:"code"`
	Message   string `json:"message"`
}

// dsEvent is one server-sent event of a DashScope stream.
type dsEvent struct {
	id, typ, status string
	data            dsAnswer
}

// readDashScopeSSE parses a DashScope event stream.
func readDashScopeSSE(t *testing.T, resp *http.Response) []dsEvent {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var events []dsEvent
	for _, block := range strings.Split(strings.TrimSpace(string(body)), "\n\n") {
		var ev dsEvent
		for line := range strings.Lines(block) {
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "id:"):
				ev.id = line[3:]
			case strings.HasPrefix(line, "event:"):
				ev.typ = line[6:]
			case strings.HasPrefix(line, ":HTTP_STATUS/"):
				ev.status = line[len(":HTTP_STATUS/"):]
			case strings.HasPrefix(line, "data:"):
				if err := json.Unmarshal([]byte(line[5:]), &ev.data); err != nil {
					t.Fatalf("event data %q: %v", line, err)
				}
			default:
				t.Fatalf("unexpected line %q", line)
			}
		}
		events = append(events, ev)
	}
	return events
}

// dsPost posts to a DashScope path with a bearer key and extra headers.
func dsPost(t *testing.T, tg target, path, key string, body any, headers ...string) *http.Response {
	t.Helper()
	if key != "" {
		headers = append(headers, "Authorization", "Bearer "+key)
	}
	return tg.post(t, path, body, headers...)
}

// dsExpectError checks a DashScope error body.
func dsExpectError(t *testing.T, resp *http.Response, status int, code string) dsAnswer {
	t.Helper()
	var a dsAnswer
	decode(t, resp, status, &a)
	if a.Code != code || a.Message == "" || a.RequestID == "" {
		t.Errorf("error %+v, want code %s", a, code)
	}
	return a
}

func dsChatBody(stream bool, extra map[string]any) map[string]any {
	params := map[string]any{"result_format": "message"}
	if stream {
		params["incremental_output"] = true
	}
	for k, v := range extra {
		params[k] = v
	}
	return map[string]any{
		"model":      "qwen-plus",
		"input":      map[string]any{"messages": []map[string]any{{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}}},
		"parameters": params,
	}
}

func TestDashScopeChat(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		resp := dsPost(t, tg, dsGenPath, "", dsChatBody(false, nil))
		id := resp.Header.Get("X-Request-ID")
		var a dsAnswer
		decode(t, resp, http.StatusOK, &a)
		if len(a.Output.Choices) != 1 || a.Output.Text != nil {
			t.Fatalf("answer %+v", a)
		}
		c := a.Output.Choices[0]
		if c.Message.Role != "assistant" || len(strings.Fields(c.Message.Content)) != 16 || c.FinishReason != "stop" {
			t.Errorf("choice %+v", c)
		}
		if a.Usage.InputTokens < 1 || a.Usage.OutputTokens != 16 || a.Usage.TotalTokens != a.Usage.InputTokens+16 {
			t.Errorf("usage %+v", a.Usage)
		}
		if a.RequestID == "" || a.RequestID != id || len(id) != 36 {
			t.Errorf("request id %q, header %q", a.RequestID, id)
		}
	})
}

func TestDashScopePromptText(t *testing.T) {
	eachTarget(t, mock.Config{ReplyTokens: 5}, func(t *testing.T, tg target) {
		body := map[string]any{"model": "chatyuan-large-v2", "input": map[string]any{"prompt": "hello"},
			"parameters": map[string]any{"max_tokens": 3}}
		var a dsAnswer
		decode(t, dsPost(t, tg, dsGenPath, "", body), http.StatusOK, &a)
		if a.Output.Text == nil || len(strings.Fields(*a.Output.Text)) != 3 || a.Output.FinishReason != "length" || a.Output.Choices != nil {
			t.Errorf("answer %+v", a.Output)
		}
	})
}

func TestDashScopeStream(t *testing.T) {
	eachTarget(t, mock.Config{StreamChunks: 4}, func(t *testing.T, tg target) {
		var whole dsAnswer
		decode(t, dsPost(t, tg, dsGenPath, "", dsChatBody(false, nil)), http.StatusOK, &whole)
		want := whole.Output.Choices[0].Message.Content

		for _, incremental := range []bool{true, false} {
			body := dsChatBody(false, map[string]any{"incremental_output": incremental})
			events := readDashScopeSSE(t, dsPost(t, tg, dsGenPath, "", body, "X-DashScope-SSE", "enable"))
			if len(events) != 5 {
				t.Fatalf("incremental %v: %d events", incremental, len(events))
			}
			text, lastOut := "", 0
			for i, ev := range events {
				c := ev.data.Output.Choices[0]
				if ev.typ != "result" || ev.status != "200" || ev.id != string(rune('1'+i)) || ev.data.RequestID == "" {
					t.Errorf("event %d: %+v", i, ev)
				}
				if incremental {
					text += c.Message.Content
				} else if c.Message.Content != "" {
					text = c.Message.Content
				}
				last := i == len(events)-1
				if (c.FinishReason == "null") == last || (last && c.FinishReason != "stop") {
					t.Errorf("event %d finish %q", i, c.FinishReason)
				}
				if ev.data.Usage.OutputTokens < lastOut {
					t.Errorf("event %d usage went down: %+v", i, ev.data.Usage)
				}
				lastOut = ev.data.Usage.OutputTokens
			}
			if text != want || lastOut != 16 {
				t.Errorf("incremental %v: text %q (want %q), output tokens %d", incremental, text, want, lastOut)
			}
		}
		if st := tg.srv.Stats(); st.Streams != 2 || st.CompletionTokens != 48 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestDashScopeToolCall(t *testing.T) {
	eachTarget(t, mock.Config{StreamChunks: 3}, func(t *testing.T, tg target) {
		body := dsChatBody(false, map[string]any{"tools": []any{weatherTool}})
		var a dsAnswer
		decode(t, dsPost(t, tg, dsGenPath, "", body), http.StatusOK, &a)
		c := a.Output.Choices[0]
		if c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 {
			t.Fatalf("choice %+v", c)
		}
		tc := c.Message.ToolCalls[0]
		if !strings.HasPrefix(tc.ID, "call_") || tc.Type != "function" || tc.Function.Name != "get_weather" {
			t.Errorf("tool call %+v", tc)
		}
		var args map[string]any
		if err := json.Unmarshal([]byte(tc.Function.Arguments), &args); err != nil || args["city"] != "sample" || args["unit"] != "celsius" {
			t.Errorf("arguments %q: %v", tc.Function.Arguments, err)
		}

		body = dsChatBody(true, map[string]any{"tools": []any{weatherTool}})
		events := readDashScopeSSE(t, dsPost(t, tg, dsGenPath, "", body, "Accept", "text/event-stream"))
		joined := ""
		for i, ev := range events[:len(events)-1] {
			calls := ev.data.Output.Choices[0].Message.ToolCalls
			if len(calls) != 1 || calls[0].Index != 0 || calls[0].Type != "function" || (i == 0) != (calls[0].ID != "") || (i == 0) != (calls[0].Function.Name != "") {
				t.Errorf("event %d calls %+v", i, calls)
			}
			joined += calls[0].Function.Arguments
		}
		if last := events[len(events)-1].data.Output.Choices[0]; joined != tc.Function.Arguments || last.FinishReason != "tool_calls" || last.Message.ToolCalls != nil {
			t.Errorf("arguments %q, last %+v", joined, last)
		}

		// After the tool's result, the model answers in text.
		body = dsChatBody(false, map[string]any{"tools": []any{weatherTool}})
		body["input"] = map[string]any{"messages": []map[string]any{
			{"role": "user", "content": "weather?"},
			{"role": "assistant", "content": "", "tool_calls": []any{map[string]any{"id": "call_1", "type": "function", "index": 0,
				"function": map[string]any{"name": "get_weather", "arguments": `{"city":"Paris"}`}}}},
			{"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
		}}
		decode(t, dsPost(t, tg, dsGenPath, "", body), http.StatusOK, &a)
		if c := a.Output.Choices[0]; c.FinishReason != "stop" || c.Message.Content == "" {
			t.Errorf("after the tool: %+v", c)
		}
	})
}

func TestDashScopeAuth(t *testing.T) {
	eachTarget(t, mock.Config{Keys: []string{"sk-good"}}, func(t *testing.T, tg target) {
		a := dsExpectError(t, dsPost(t, tg, dsGenPath, "sk-bad", dsChatBody(false, nil)), http.StatusUnauthorized, "InvalidApiKey")
		if a.Message != "Invalid API-key provided." {
			t.Errorf("message %q", a.Message)
		}
		a = dsExpectError(t, dsPost(t, tg, dsEmbedPath, "", map[string]any{}), http.StatusUnauthorized, "InvalidApiKey")
		if a.Message != "No API-key provided." {
			t.Errorf("message %q", a.Message)
		}
		var ok dsAnswer
		decode(t, dsPost(t, tg, dsGenPath, "sk-good", dsChatBody(false, nil)), http.StatusOK, &ok)
	})
}

func TestDashScopeRefusals(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		noJSON := dsChatBody(false, map[string]any{"response_format": map[string]string{"type": "json_object"}})
		noModel := dsChatBody(false, nil)
		delete(noModel, "model")
		badRole := dsChatBody(false, nil)
		badRole["input"] = map[string]any{"messages": []map[string]any{{"role": "developer", "content": "x"}}}
		parts := dsChatBody(false, nil)
		parts["input"] = map[string]any{"messages": []map[string]any{{"role": "user", "content": []any{map[string]any{"text": "x"}}}}}
		tests := []struct {
			name, path string
			body       any
			status     int
			code       string
		}{
			{"no model", dsGenPath, noModel, 400, "BadRequest.EmptyModel"},
			{"no input", dsGenPath, map[string]any{"model": "qwen-plus", "input": map[string]any{}}, 400, "InvalidParameter"},
			{"json without the word", dsGenPath, noJSON, 400, "InvalidParameter"},
			{"bad role", dsGenPath, badRole, 400, "InvalidParameter"},
			{"content parts", dsGenPath, parts, 400, "InvalidParameter"},
			{"bad format", dsGenPath, dsChatBody(false, map[string]any{"result_format": "xml"}), 400, "InvalidParameter"},
			{"unknown path", "/api/v1/services/aigc/nothing", map[string]any{}, 400, "InvalidURL"},
			{"too many texts", dsEmbedPath, map[string]any{"model": "text-embedding-v3",
				"input": map[string]any{"texts": strings.Split("a b c d e f g h i j k", " ")}}, 400, "InvalidParameter"},
			{"no texts", dsEmbedPath, map[string]any{"model": "text-embedding-v2", "input": map[string]any{}}, 400, "BadRequest.EmptyInput"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				dsExpectError(t, dsPost(t, tg, tt.path, "", tt.body), tt.status, tt.code)
			})
		}

		// A streamed call is refused in the stream, as DashScope does.
		events := readDashScopeSSE(t, dsPost(t, tg, dsGenPath, "", noJSON, "X-DashScope-SSE", "enable"))
		if len(events) != 1 || events[0].typ != "error" || events[0].status != "400" || events[0].data.Code != "InvalidParameter" {
			t.Errorf("events %+v", events)
		}
	})
}

func TestDashScopeFaults(t *testing.T) {
	eachTarget(t, mock.Config{FailureRate: 1}, func(t *testing.T, tg target) {
		dsExpectError(t, dsPost(t, tg, dsGenPath, "", dsChatBody(false, nil)), http.StatusInternalServerError, "InternalError")
	})
	eachTarget(t, mock.Config{RateLimitRate: 1}, func(t *testing.T, tg target) {
		dsExpectError(t, dsPost(t, tg, dsEmbedPath, "", map[string]any{}), http.StatusTooManyRequests, "Throttling.RateQuota")
	})
	eachTarget(t, mock.Config{FailAfterChunks: 2, StreamChunks: 4}, func(t *testing.T, tg target) {
		resp := dsPost(t, tg, dsGenPath, "", dsChatBody(true, nil), "X-DashScope-SSE", "enable")
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil || strings.Count(string(body), "event:result") != 2 {
			t.Errorf("read %v after %q", err, body)
		}
	})
}

func TestDashScopeEmbedding(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		body := map[string]any{"model": "text-embedding-v3", "input": map[string]any{"texts": []string{"alpha", "beta gamma"}},
			"parameters": map[string]any{"text_type": "query", "dimension": 8}}
		var a struct {
			Output struct {
				Embeddings []struct {
					TextIndex int       `json:"text_index"`
					Embedding []float64 `json:"embedding"`
				} `json:"embeddings"`
			} `json:"output"`
			Usage struct {
				TotalTokens int `json:"total_tokens"`
			} `json:"usage"`
			RequestID string `json:"request_id"`
		}
		decode(t, dsPost(t, tg, dsEmbedPath, "", body), http.StatusOK, &a)
		if len(a.Output.Embeddings) != 2 || a.Usage.TotalTokens < 2 || a.RequestID == "" {
			t.Fatalf("answer %+v", a)
		}
		var oai struct {
			Data []struct {
				Embedding []float64 `json:"embedding"`
			} `json:"data"`
		}
		decode(t, tg.post(t, "/v1/embeddings", map[string]any{"model": "m", "input": []string{"alpha", "beta gamma"}, "dimensions": 8}), http.StatusOK, &oai)
		for i, e := range a.Output.Embeddings {
			if e.TextIndex != i || len(e.Embedding) != 8 || !reflect.DeepEqual(e.Embedding, oai.Data[i].Embedding) {
				t.Errorf("embedding %d: %+v", i, e)
			}
		}
	})
}
