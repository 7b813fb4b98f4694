package mock_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// sseEvent is one server-sent event: its name (empty when unnamed) and
// data.
type sseEvent struct{ name, data string }

// readEvents reads events until the body ends; err is the read error,
// nil on a clean EOF. Lines may end in LF or CRLF.
func readEvents(body io.Reader) (events []sseEvent, err error) {
	br := bufio.NewReader(body)
	var cur sseEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return events, nil
			}
			return events, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if cur.data != "" {
				events = append(events, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
}

// claudeHeaders are the headers every Messages call needs.
var claudeHeaders = []string{"anthropic-version", "2023-06-01"}

func claudePost(t *testing.T, tg target, body any, headers ...string) *http.Response {
	t.Helper()
	return tg.post(t, "/v1/messages", body, append(append([]string(nil), claudeHeaders...), headers...)...)
}

// Wire shapes the tests read.

type claudeBlock struct {
	Type  string          `json:"type"`
	Text  *string         `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type claudeUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

type claudeMessage struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Role         string          `json:"role"`
	Model        string          `json:"model"`
	Content      []claudeBlock   `json:"content"`
	StopReason   *string         `json:"stop_reason"`
	StopSequence json.RawMessage `json:"stop_sequence"`
	Usage        claudeUsage     `json:"usage"`
}

type claudeEvent struct {
	Type         string         `json:"type"`
	Message      *claudeMessage `json:"message"`
	Index        *int           `json:"index"`
	ContentBlock *claudeBlock   `json:"content_block"`
	Delta        struct {
		Type         string          `json:"type"`
		Text         string          `json:"text"`
		PartialJSON  string          `json:"partial_json"`
		StopReason   string          `json:"stop_reason"`
		StopSequence json.RawMessage `json:"stop_sequence"`
	} `json:"delta"`
	Usage *claudeUsage `json:"usage"`
}

type claudeError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

// expectClaudeError checks an Anthropic error response.
func expectClaudeError(t *testing.T, resp *http.Response, status int, typ string) claudeError {
	t.Helper()
	var e claudeError
	decode(t, resp, status, &e)
	if e.Type != "error" || e.Error.Type != typ || e.Error.Message == "" || !strings.HasPrefix(e.RequestID, "req_") {
		t.Errorf("error %+v, want type %q", e, typ)
	}
	return e
}

// claudeStream decodes a stream's events, checking that each event's
// name matches its data's type.
func claudeStream(t *testing.T, resp *http.Response) ([]claudeEvent, error) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	raw, err := readEvents(resp.Body)
	var events []claudeEvent
	for _, e := range raw {
		var ev claudeEvent
		if err := json.Unmarshal([]byte(e.data), &ev); err != nil {
			t.Fatalf("event %s: %v", e.data, err)
		}
		if ev.Type != e.name {
			t.Errorf("event named %q carries type %q", e.name, ev.Type)
		}
		events = append(events, ev)
	}
	return events, err
}

func eventTypes(events []claudeEvent) string {
	var types []string
	for _, e := range events {
		types = append(types, e.Type)
	}
	return strings.Join(types, ",")
}

var claudeBody = map[string]any{
	"model":      "mock-claude",
	"max_tokens": 1024,
	"system":     "be brief",
	"messages":   []map[string]any{{"role": "user", "content": "hello there"}},
}

// with returns a copy of body with the given fields set.
func with(body map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(body)+len(kv)/2)
	for k, v := range body {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// claudeWeather is a custom tool with required city and unit.
var claudeWeather = map[string]any{
	"name":        "get_weather",
	"description": "weather in a city",
	"input_schema": map[string]any{
		"type": "object",
		"properties": map[string]any{
			"city": map[string]any{"type": "string"},
			"unit": map[string]any{"type": "string", "enum": []string{"celsius", "fahrenheit"}},
		},
		"required": []string{"city", "unit"},
	},
}

var claudeClock = map[string]any{
	"name":         "get_time",
	"input_schema": map[string]any{"type": "object", "properties": map[string]any{"zone": map[string]any{"type": "string"}}},
}

func TestAnthropicMessage(t *testing.T) {
	eachTarget(t, mock.Config{ReplyTokens: 12}, func(t *testing.T, tg target) {
		var m, again claudeMessage
		resp := claudePost(t, tg, claudeBody)
		if !strings.HasPrefix(resp.Header.Get("request-id"), "req_") {
			t.Errorf("request-id %q", resp.Header.Get("request-id"))
		}
		decode(t, resp, http.StatusOK, &m)
		if !strings.HasPrefix(m.ID, "msg_") || m.Type != "message" || m.Role != "assistant" || m.Model != "mock-claude" {
			t.Errorf("message %+v", m)
		}
		if len(m.Content) != 1 || m.Content[0].Type != "text" || m.Content[0].Text == nil {
			t.Fatalf("content %+v", m.Content)
		}
		if n := len(strings.Fields(*m.Content[0].Text)); n != 12 {
			t.Errorf("%d words, want 12", n)
		}
		if m.StopReason == nil || *m.StopReason != "end_turn" || string(m.StopSequence) != "null" {
			t.Errorf("stop_reason %v stop_sequence %s", m.StopReason, m.StopSequence)
		}
		if m.Usage.InputTokens < 1 || m.Usage.OutputTokens != 12 {
			t.Errorf("usage %+v", m.Usage)
		}
		decode(t, claudePost(t, tg, claudeBody), http.StatusOK, &again)
		if *again.Content[0].Text != *m.Content[0].Text || again.ID == m.ID {
			t.Errorf("not deterministic: %q then %q (ids %s %s)", *m.Content[0].Text, *again.Content[0].Text, m.ID, again.ID)
		}

		var short claudeMessage
		decode(t, claudePost(t, tg, with(claudeBody, "max_tokens", 3)), http.StatusOK, &short)
		if *short.StopReason != "max_tokens" || len(strings.Fields(*short.Content[0].Text)) != 3 || short.Usage.OutputTokens != 3 {
			t.Errorf("max_tokens 3: %+v", short)
		}

		// Content blocks, a system block list and the suffix path work too.
		var blocks claudeMessage
		body := with(claudeBody,
			"system", []map[string]any{{"type": "text", "text": "be brief"}},
			"messages", []map[string]any{
				{"role": "user", "content": []map[string]any{{"type": "text", "text": "look"}, {"type": "image", "source": map[string]any{"type": "url", "url": "https://example.com/a.png"}}}},
				{"role": "assistant", "content": "ok"},
				{"role": "user", "content": "and?"},
			})
		decode(t, tg.post(t, "/anthropic/messages", body, claudeHeaders...), http.StatusOK, &blocks)
		if *blocks.StopReason != "end_turn" || blocks.Usage.InputTokens < 85 {
			t.Errorf("blocks: %+v", blocks)
		}
		if st := tg.srv.Stats(); st.CompletionTokens != 12+12+3+12 || st.Requests != 4 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestAnthropicStream(t *testing.T) {
	const want = "message_start,content_block_start,ping,content_block_delta,content_block_delta,content_block_delta," +
		"content_block_delta,content_block_stop,message_delta,message_stop"
	eachTarget(t, mock.Config{StreamChunks: 4, ReplyTokens: 10}, func(t *testing.T, tg target) {
		var plain claudeMessage
		decode(t, claudePost(t, tg, claudeBody), http.StatusOK, &plain)

		events, err := claudeStream(t, claudePost(t, tg, with(claudeBody, "stream", true)))
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if got := eventTypes(events); got != want {
			t.Fatalf("events\n%s\nwant\n%s", got, want)
		}
		start := events[0].Message
		if start == nil || start.ID == "" || start.Model != "mock-claude" || len(start.Content) != 0 || start.StopReason != nil ||
			start.Usage.InputTokens != plain.Usage.InputTokens {
			t.Errorf("message_start %+v", start)
		}
		if b := events[1].ContentBlock; b == nil || b.Type != "text" || b.Text == nil || *b.Text != "" || *events[1].Index != 0 {
			t.Errorf("content_block_start %+v", events[1])
		}
		var text strings.Builder
		for _, e := range events[3:7] {
			if e.Delta.Type != "text_delta" || *e.Index != 0 {
				t.Errorf("delta %+v", e)
			}
			text.WriteString(e.Delta.Text)
		}
		if text.String() != *plain.Content[0].Text {
			t.Errorf("streamed %q, plain %q", text.String(), *plain.Content[0].Text)
		}
		md := events[8]
		if md.Delta.StopReason != "end_turn" || string(md.Delta.StopSequence) != "null" || md.Usage == nil || md.Usage.OutputTokens != 10 {
			t.Errorf("message_delta %+v usage %+v", md.Delta, md.Usage)
		}
		if st := tg.srv.Stats(); st.Streams != 1 || st.CompletionTokens != 20 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestAnthropicToolUse(t *testing.T) {
	tools := []any{claudeWeather, claudeClock}
	body := with(claudeBody, "tools", tools)
	const args = `{"city":"sample","unit":"celsius"}`
	eachTarget(t, mock.Config{StreamChunks: 3}, func(t *testing.T, tg target) {
		var m claudeMessage
		decode(t, claudePost(t, tg, body), http.StatusOK, &m)
		if *m.StopReason != "tool_use" || len(m.Content) != 1 {
			t.Fatalf("message %+v", m)
		}
		b := m.Content[0]
		if b.Type != "tool_use" || !strings.HasPrefix(b.ID, "toolu_") || b.Name != "get_weather" || string(b.Input) != args || b.Text != nil {
			t.Errorf("tool_use block %+v input %s", b, b.Input)
		}

		events, err := claudeStream(t, claudePost(t, tg, with(body, "stream", true)))
		if err != nil {
			t.Fatal(err)
		}
		start := events[1].ContentBlock
		if start == nil || start.Type != "tool_use" || start.Name != "get_weather" || string(start.Input) != "{}" || start.ID == "" {
			t.Errorf("content_block_start %+v", start)
		}
		var partial strings.Builder
		for _, e := range events {
			if e.Type == "content_block_delta" {
				if e.Delta.Type != "input_json_delta" {
					t.Errorf("delta type %q", e.Delta.Type)
				}
				partial.WriteString(e.Delta.PartialJSON)
			}
		}
		if partial.String() != args || events[len(events)-2].Delta.StopReason != "tool_use" {
			t.Errorf("streamed input %q, stop %q", partial.String(), events[len(events)-2].Delta.StopReason)
		}

		for _, tc := range []struct {
			name     string
			body     map[string]any
			stop     string
			toolName string
		}{
			{"choice none", with(body, "tool_choice", map[string]any{"type": "none"}), "end_turn", ""},
			{"choice auto", with(body, "tool_choice", map[string]any{"type": "auto"}), "tool_use", "get_weather"},
			{"choice any", with(body, "tool_choice", map[string]any{"type": "any"}), "tool_use", "get_weather"},
			{"choice tool", with(body, "tool_choice", map[string]any{"type": "tool", "name": "get_time"}), "tool_use", "get_time"},
			{"after a tool result", with(body, "messages", []map[string]any{
				{"role": "user", "content": "weather in Paris?"},
				{"role": "assistant", "content": []map[string]any{{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": map[string]any{"city": "Paris"}}}},
				{"role": "user", "content": []map[string]any{{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}}},
			}), "end_turn", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var m claudeMessage
				decode(t, claudePost(t, tg, tc.body), http.StatusOK, &m)
				if *m.StopReason != tc.stop || (tc.toolName != "" && m.Content[0].Name != tc.toolName) {
					t.Errorf("stop %q content %+v", *m.StopReason, m.Content)
				}
			})
		}
	})
}

func TestAnthropicInvalidRequests(t *testing.T) {
	msgs := claudeBody["messages"]
	cases := []struct {
		name string
		body map[string]any
		want string // in the message
	}{
		{"no model", map[string]any{"max_tokens": 5, "messages": msgs}, "model"},
		{"no max_tokens", map[string]any{"model": "m", "messages": msgs}, "max_tokens"},
		{"zero max_tokens", map[string]any{"model": "m", "max_tokens": 0, "messages": msgs}, "max_tokens"},
		{"no messages", map[string]any{"model": "m", "max_tokens": 5}, "messages"},
		{"empty messages", map[string]any{"model": "m", "max_tokens": 5, "messages": []any{}}, "messages"},
		{"system role", with(claudeBody, "messages", []map[string]any{{"role": "system", "content": "x"}}), "system"},
		{"no content", with(claudeBody, "messages", []map[string]any{{"role": "user"}}), "content"},
		{"bad system", with(claudeBody, "system", 5), "system"},
		{"tool choice without tools", with(claudeBody, "tool_choice", map[string]any{"type": "any"}), "tool_choice"},
		{"unknown tool", with(claudeBody, "tools", []any{claudeWeather}, "tool_choice", map[string]any{"type": "tool", "name": "nope"}), "nope"},
		{"bad tool choice", with(claudeBody, "tools", []any{claudeWeather}, "tool_choice", map[string]any{"type": "sometimes"}), "tool_choice"},
	}
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := expectClaudeError(t, claudePost(t, tg, tc.body), http.StatusBadRequest, "invalid_request_error")
				if !strings.Contains(e.Error.Message, tc.want) {
					t.Errorf("message %q does not mention %q", e.Error.Message, tc.want)
				}
			})
		}
		t.Run("not JSON", func(t *testing.T) {
			expectClaudeError(t, tg.postRaw(t, "/v1/messages", "{", claudeHeaders...), http.StatusBadRequest, "invalid_request_error")
		})
		t.Run("missing anthropic-version", func(t *testing.T) {
			e := expectClaudeError(t, tg.post(t, "/v1/messages", claudeBody), http.StatusBadRequest, "invalid_request_error")
			if !strings.Contains(e.Error.Message, "anthropic-version") {
				t.Errorf("message %q", e.Error.Message)
			}
		})
		t.Run("GET", func(t *testing.T) {
			resp := tg.do(t, t.Context(), http.MethodGet, "/v1/messages", nil, claudeHeaders...)
			expectClaudeError(t, resp, http.StatusMethodNotAllowed, "invalid_request_error")
		})
	})
}

func TestAnthropicAuth(t *testing.T) {
	cases := []struct {
		name    string
		headers []string
		ok      bool
	}{
		{"no key", nil, false},
		{"wrong key", []string{"x-api-key", "sk-ant-x"}, false},
		{"bearer is not enough", []string{"Authorization", "Bearer sk-ant-one"}, false},
		{"x-api-key", []string{"x-api-key", "sk-ant-one"}, true},
	}
	eachTarget(t, mock.Config{Keys: []string{"sk-ant-one"}}, func(t *testing.T, tg target) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				resp := claudePost(t, tg, claudeBody, tc.headers...)
				if !tc.ok {
					expectClaudeError(t, resp, http.StatusUnauthorized, "authentication_error")
					return
				}
				var m claudeMessage
				decode(t, resp, http.StatusOK, &m)
			})
		}
	})
}

func TestAnthropicFaults(t *testing.T) {
	t.Run("failure", func(t *testing.T) {
		eachTarget(t, mock.Config{FailureRate: 1}, func(t *testing.T, tg target) {
			expectClaudeError(t, claudePost(t, tg, claudeBody), http.StatusInternalServerError, "api_error")
			if st := tg.srv.Stats(); st.Failures != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	})
	t.Run("overloaded", func(t *testing.T) {
		eachTarget(t, mock.Config{FailureRate: 1, Overloaded: true}, func(t *testing.T, tg target) {
			expectClaudeError(t, claudePost(t, tg, with(claudeBody, "stream", true)), 529, "overloaded_error")
		})
	})
	t.Run("rate limit", func(t *testing.T) {
		eachTarget(t, mock.Config{RateLimitRate: 1, RetryAfter: 1500 * time.Millisecond}, func(t *testing.T, tg target) {
			resp := claudePost(t, tg, claudeBody)
			if got := resp.Header.Get("retry-after"); got != "2" {
				t.Errorf("retry-after %q, want 2", got)
			}
			if _, err := time.Parse(time.RFC3339, resp.Header.Get("anthropic-ratelimit-requests-reset")); err != nil {
				t.Errorf("anthropic-ratelimit-requests-reset: %v", err)
			}
			expectClaudeError(t, resp, http.StatusTooManyRequests, "rate_limit_error")
			if st := tg.srv.Stats(); st.RateLimited != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	})
	t.Run("fail after chunks", func(t *testing.T) {
		eachTarget(t, mock.Config{StreamChunks: 8, FailAfterChunks: 3}, func(t *testing.T, tg target) {
			events, err := claudeStream(t, claudePost(t, tg, with(claudeBody, "stream", true)))
			if err == nil {
				t.Fatalf("stream ended cleanly after %s", eventTypes(events))
			}
			want := "message_start,content_block_start,ping,content_block_delta,content_block_delta,content_block_delta"
			if got := eventTypes(events); got != want {
				t.Errorf("events before the abort %s, want %s", got, want)
			}
			if st := tg.srv.Stats(); st.Aborted != 1 || st.CompletionTokens != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	})
}

// claudeClients returns official SDK clients for a mock with cfg, over a
// socket and through mock.Transport, with retries off.
func claudeClients(t *testing.T, cfg mock.Config) map[string]anthropic.Client {
	ts := httptest.NewServer(mock.New(cfg))
	t.Cleanup(ts.Close)
	base := []option.RequestOption{option.WithAPIKey("sk-ant-test"), option.WithMaxRetries(0)}
	return map[string]anthropic.Client{
		"socket": anthropic.NewClient(append(base, option.WithBaseURL(ts.URL), option.WithHTTPClient(ts.Client()))...),
		"transport": anthropic.NewClient(append(base, option.WithBaseURL("http://mock.test"),
			option.WithHTTPClient(&http.Client{Transport: mock.Transport(mock.New(cfg))}))...),
	}
}

func TestAnthropicOfficialSDK(t *testing.T) {
	for name, client := range claudeClients(t, mock.Config{StreamChunks: 4, ReplyTokens: 10, Keys: []string{"sk-ant-test"}}) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			params := anthropic.MessageNewParams{
				Model:     "mock-claude",
				MaxTokens: 256,
				System:    []anthropic.TextBlockParam{{Text: "be brief"}},
				Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))},
			}
			plain, err := client.Messages.New(ctx, params)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if plain.StopReason != anthropic.StopReasonEndTurn || len(plain.Content) != 1 ||
				len(strings.Fields(plain.Content[0].AsText().Text)) != 10 || plain.Usage.OutputTokens != 10 {
				t.Errorf("message %s", plain.RawJSON())
			}

			stream := client.Messages.NewStreaming(ctx, params)
			var acc anthropic.Message
			for stream.Next() {
				if err := acc.Accumulate(stream.Current()); err != nil {
					t.Fatalf("Accumulate: %v", err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if acc.Content[0].AsText().Text != plain.Content[0].AsText().Text || acc.StopReason != anthropic.StopReasonEndTurn ||
				acc.Usage.OutputTokens != 10 || acc.Usage.InputTokens != plain.Usage.InputTokens || acc.ID == "" {
				t.Errorf("accumulated %s\nplain %s", acc.RawJSON(), plain.RawJSON())
			}

			params.Tools = []anthropic.ToolUnionParam{anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
				Properties: map[string]any{"city": map[string]any{"type": "string"}, "days": map[string]any{"type": "integer"}},
				Required:   []string{"city", "days"},
			}, "get_weather")}
			res, err := client.Messages.New(ctx, params)
			if err != nil {
				t.Fatalf("New with tools: %v", err)
			}
			use := res.Content[0].AsToolUse()
			if res.StopReason != anthropic.StopReasonToolUse || use.Name != "get_weather" || string(use.Input) != `{"city":"sample","days":1}` {
				t.Fatalf("tool use %s", res.RawJSON())
			}

			stream = client.Messages.NewStreaming(ctx, params)
			acc = anthropic.Message{}
			for stream.Next() {
				if err := acc.Accumulate(stream.Current()); err != nil {
					t.Fatalf("Accumulate: %v", err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("tool stream: %v", err)
			}
			if got := acc.Content[0].AsToolUse(); string(got.Input) != string(use.Input) || got.Name != "get_weather" || acc.StopReason != anthropic.StopReasonToolUse {
				t.Errorf("accumulated tool use %s", acc.RawJSON())
			}

			// Answering the tool call gets text back.
			params.Messages = append(params.Messages, res.ToParam(),
				anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, "sunny", false)))
			res, err = client.Messages.New(ctx, params)
			if err != nil {
				t.Fatalf("New after the tool result: %v", err)
			}
			if res.StopReason != anthropic.StopReasonEndTurn || res.Content[0].AsText().Text == "" {
				t.Errorf("message %s", res.RawJSON())
			}
		})
	}
}

func TestAnthropicOfficialSDKErrors(t *testing.T) {
	params := anthropic.MessageNewParams{
		Model:     "mock-claude",
		MaxTokens: 64,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	}
	cases := []struct {
		name   string
		cfg    mock.Config
		status int
		typ    string
	}{
		{"rate limited", mock.Config{RateLimitRate: 1}, http.StatusTooManyRequests, "rate_limit_error"},
		{"overloaded", mock.Config{FailureRate: 1, Overloaded: true}, 529, "overloaded_error"},
		{"bad key", mock.Config{Keys: []string{"sk-ant-other"}}, http.StatusUnauthorized, "authentication_error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for name, client := range claudeClients(t, tc.cfg) {
				t.Run(name, func(t *testing.T) {
					_, err := client.Messages.New(t.Context(), params)
					var apiErr *anthropic.Error
					if !errors.As(err, &apiErr) {
						t.Fatalf("error %v, want *anthropic.Error", err)
					}
					if apiErr.StatusCode != tc.status || string(apiErr.Type()) != tc.typ || apiErr.RequestID == "" {
						t.Errorf("status %d type %q request id %q", apiErr.StatusCode, apiErr.Type(), apiErr.RequestID)
					}
				})
			}
		})
	}
}
