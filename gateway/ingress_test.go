package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	anthropicopt "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

func anthropicClient(srv *httptest.Server, key string) anthropic.Client {
	return anthropic.NewClient(anthropicopt.WithBaseURL(srv.URL), anthropicopt.WithAPIKey(key),
		anthropicopt.WithMaxRetries(0), anthropicopt.WithHTTPClient(srv.Client()))
}

var anthropicWeather = []anthropic.ToolUnionParam{anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
	Properties: map[string]any{"city": map[string]any{"type": "string"}},
	Required:   []string{"city"},
}, "get_weather")}

// TestAnthropicSDK drives /v1/messages with the official Anthropic SDK:
// translated for an OpenAI channel, relayed natively to a Claude channel.
func TestAnthropicSDK(t *testing.T) {
	up := nativeUpstream(t, mock.Config{StreamChunks: 5})
	_, srv := startGateway(t, `
clients: [{name: app, key: sk-app}, {name: tiny, key: sk-tiny, limits: {rpm: 1}}]
channels:
  - {name: openai, type: openai, base_url: U/v1, models: [gpt-4o], credentials: [{id: openai-1, key: anthropic-key-1}]}
  - {name: claude, type: claude, base_url: U, models: [claude-sonnet], credentials: [{id: claude-1, key: anthropic-key-1}]}
  - {name: gemini, type: gemini, base_url: U, models: [gemini-flash], credentials: [{id: gemini-1, key: google-key-1}]}
`, "U", up.URL)
	ctx := context.Background()
	client := anthropicClient(srv, "sk-app")

	for _, tc := range []struct {
		model, credential string
		field             string // a top-level field only the upstream's API has
	}{
		{"gpt-4o", "openai-1", "messages"},
		{"claude-sonnet", "claude-1", "system"}, // the client's own body, relayed natively
		{"gemini-flash", "gemini-1", "contents"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			params := anthropic.MessageNewParams{
				Model:     anthropic.Model(tc.model),
				MaxTokens: 256,
				System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
				Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello!"))},
			}
			t.Run("message", func(t *testing.T) {
				var resp *http.Response
				msg, err := client.Messages.New(ctx, params, anthropicopt.WithResponseInto(&resp))
				if err != nil {
					t.Fatal(err)
				}
				if got := resp.Header.Get("X-Sluice-Credential"); got != tc.credential {
					t.Fatalf("served by %q", got)
				}
				if msg.Role != "assistant" || len(msg.Content) != 1 || msg.Content[0].Text == "" ||
					msg.StopReason != anthropic.StopReasonEndTurn || msg.Usage.InputTokens == 0 || msg.Usage.OutputTokens == 0 {
					t.Fatalf("message %s", msg.RawJSON())
				}
				_, sent := up.lastRequest()
				if _, ok := sent[tc.field]; !ok {
					t.Fatalf("upstream got %v", sent)
				}
			})

			t.Run("stream", func(t *testing.T) {
				stream := client.Messages.NewStreaming(ctx, params)
				var msg anthropic.Message
				var types []string
				for stream.Next() {
					ev := stream.Current()
					types = append(types, ev.Type)
					if err := msg.Accumulate(ev); err != nil {
						t.Fatal(err)
					}
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				got := strings.Join(compact(types), ",")
				if got != "message_start,content_block_start,content_block_delta,content_block_stop,message_delta,message_stop" {
					t.Fatalf("event order %s", got)
				}
				if msg.Content[0].Text == "" || msg.StopReason != anthropic.StopReasonEndTurn || msg.Usage.OutputTokens == 0 {
					t.Fatalf("accumulated %s", msg.RawJSON())
				}
			})

			t.Run("tool use", func(t *testing.T) {
				p := params
				p.Messages = []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))}
				p.Tools = anthropicWeather
				msg, err := client.Messages.New(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				checkToolUse(t, *msg)

				stream := client.Messages.NewStreaming(ctx, p)
				var acc anthropic.Message
				for stream.Next() {
					if err := acc.Accumulate(stream.Current()); err != nil {
						t.Fatal(err)
					}
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				checkToolUse(t, acc)

				var use anthropic.ToolUseBlock
				for _, b := range msg.Content {
					if b.Type == "tool_use" {
						use = b.AsToolUse()
					}
				}
				p.Messages = append(p.Messages, msg.ToParam(),
					anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, "15 degrees", false)))
				answer, err := client.Messages.New(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				if answer.StopReason != anthropic.StopReasonEndTurn || answer.Content[0].Text == "" {
					t.Fatalf("answer to the tool result %s", answer.RawJSON())
				}
			})
		})
	}

	t.Run("errors in Anthropic's shape", func(t *testing.T) {
		wrong := anthropicClient(srv, "sk-wrong")
		_, err := wrong.Messages.New(ctx, anthropic.MessageNewParams{
			Model: "claude-sonnet", MaxTokens: 10, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
		})
		checkAnthropicError(t, err, http.StatusUnauthorized, "authentication_error")

		_, err = client.Messages.New(ctx, anthropic.MessageNewParams{
			Model: "no-such-model", MaxTokens: 10, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
		})
		checkAnthropicError(t, err, http.StatusNotFound, "not_found_error")

		// The client's quota holds whatever API it speaks.
		tiny := anthropicClient(srv, "sk-tiny")
		p := anthropic.MessageNewParams{Model: "claude-sonnet", MaxTokens: 10, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}
		if _, err := tiny.Messages.New(ctx, p); err != nil {
			t.Fatal(err)
		}
		_, err = tiny.Messages.New(ctx, p)
		checkAnthropicError(t, err, http.StatusTooManyRequests, "rate_limit_error")

		resp := call(t, srv, "/v1/messages", `{"model":"claude-sonnet","messages":[{"role":"user","content":"hi"}]}`,
			"x-api-key", "sk-app", "anthropic-version", "2023-06-01")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"type":"invalid_request_error"`) ||
			!strings.Contains(string(body), "max_tokens") {
			t.Fatalf("missing max_tokens: status %d: %s", resp.StatusCode, body)
		}
	})
}

// compact drops repeated consecutive entries.
func compact(s []string) []string {
	var out []string
	for _, v := range s {
		if len(out) == 0 || out[len(out)-1] != v {
			out = append(out, v)
		}
	}
	return out
}

func checkToolUse(t *testing.T, msg anthropic.Message) {
	t.Helper()
	if msg.StopReason != anthropic.StopReasonToolUse {
		t.Fatalf("stop reason %q: %s", msg.StopReason, msg.RawJSON())
	}
	for _, b := range msg.Content {
		if b.Type == "tool_use" {
			use := b.AsToolUse()
			if use.Name != "get_weather" || use.ID == "" || !strings.HasPrefix(strings.TrimSpace(string(use.Input)), "{") {
				t.Fatalf("tool use %+v", use)
			}
			return
		}
	}
	t.Fatalf("no tool_use block: %s", msg.RawJSON())
}

func checkAnthropicError(t *testing.T, err error, status int, typ string) {
	t.Helper()
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != status {
		t.Fatalf("error %v, want status %d", err, status)
	}
	if !strings.Contains(apiErr.RawJSON(), `"type":"`+typ+`"`) {
		t.Fatalf("error body %s, want type %s", apiErr.RawJSON(), typ)
	}
}

// TestResponsesSDK drives /v1/responses with the official OpenAI SDK's
// Responses client, on an OpenAI channel and a Claude channel.
func TestResponsesSDK(t *testing.T) {
	up := nativeUpstream(t, mock.Config{StreamChunks: 5})
	_, srv := startGateway(t, `
clients: [{name: app, key: sk-app}]
channels:
  - {name: openai, type: openai, base_url: U/v1, models: [gpt-4o], credentials: [{id: openai-1, key: anthropic-key-1}]}
  - {name: claude, type: claude, base_url: U, models: [claude-sonnet], credentials: [{id: claude-1, key: anthropic-key-1}]}
`, "U", up.URL)
	ctx := context.Background()
	client := sdkClient(srv, "sk-app")

	for _, model := range []string{"gpt-4o", "claude-sonnet"} {
		t.Run(model, func(t *testing.T) {
			params := responses.ResponseNewParams{
				Model:        model,
				Instructions: openai.String("Be brief."),
				Input:        responses.ResponseNewParamsInputUnion{OfString: openai.String("Hello!")},
				Store:        openai.Bool(false),
			}
			r, err := client.Responses.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != responses.ResponseStatusCompleted || r.OutputText() == "" || r.Usage.TotalTokens == 0 {
				t.Fatalf("response %s", r.RawJSON())
			}

			stream := client.Responses.NewStreaming(ctx, params)
			var final responses.Response
			var text strings.Builder
			for stream.Next() {
				ev := stream.Current()
				switch ev.Type {
				case "response.output_text.delta":
					text.WriteString(ev.Delta)
				case "response.completed":
					final = ev.AsResponseCompleted().Response
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if final.Status != responses.ResponseStatusCompleted || final.OutputText() != text.String() || text.Len() == 0 {
				t.Fatalf("streamed %q, final %s", text.String(), final.RawJSON())
			}

			// Tools: a function call comes back as a function_call item.
			params.Input = responses.ResponseNewParamsInputUnion{OfString: openai.String("Weather in Paris?")}
			params.Tools = []responses.ToolUnionParam{responses.ToolParamOfFunction("get_weather", map[string]any{
				"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}},
			}, false)}
			r, err = client.Responses.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			var call responses.ResponseFunctionToolCall
			for _, item := range r.Output {
				if item.Type == "function_call" {
					call = item.AsFunctionCall()
				}
			}
			if call.Name != "get_weather" || call.CallID == "" || !strings.HasPrefix(call.Arguments, "{") {
				t.Fatalf("response %s", r.RawJSON())
			}
		})
	}

	t.Run("stateful features refused", func(t *testing.T) {
		_, err := client.Responses.New(ctx, responses.ResponseNewParams{
			Model: "gpt-4o", PreviousResponseID: openai.String("resp_123"),
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Hello!")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != "previous_response_id" {
			t.Fatalf("error %v", err)
		}
	})
}

// TestFailoverAcrossProviderTypes serves one model from a Claude channel
// and an OpenAI channel: when Claude is overloaded the call fails over
// before its first byte, and the client cannot tell but by latency,
// whichever API it speaks and whether it streams.
func TestFailoverAcrossProviderTypes(t *testing.T) {
	claude := nativeUpstream(t, mock.Config{FailureRate: 1, Overloaded: true})
	openaiUp := nativeUpstream(t, mock.Config{StreamChunks: 4})
	_, srv := startGateway(t, `
clients: [{name: app, key: sk-app}]
channels:
  - {name: claude, type: claude, base_url: C, models: [smart], priority: 10, credentials: [{id: claude-1, key: anthropic-key-1}]}
  - {name: openai, type: openai, base_url: O/v1, models: [smart], priority: 1, credentials: [{id: openai-1, key: anthropic-key-1}]}
`, "C", claude.URL, "O", openaiUp.URL)
	ctx := context.Background()

	check := func(t *testing.T, resp *http.Response) {
		t.Helper()
		if resp.Header.Get("X-Sluice-Credential") != "openai-1" || resp.Header.Get("X-Sluice-Attempts") != "2" {
			t.Fatalf("served by %q after %q attempts", resp.Header.Get("X-Sluice-Credential"), resp.Header.Get("X-Sluice-Attempts"))
		}
	}
	t.Run("openai client", func(t *testing.T) {
		var resp *http.Response
		client := sdkClient(srv, "sk-app")
		res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "smart", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello!")},
		}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		check(t, resp)
		if res.Choices[0].Message.Content == "" {
			t.Fatal("empty answer")
		}
		var acc openai.ChatCompletionAccumulator
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model: "smart", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello!")},
		}, option.WithResponseInto(&resp))
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		check(t, resp)
		if acc.Choices[0].Message.Content == "" || acc.Choices[0].FinishReason != "stop" {
			t.Fatalf("accumulated %+v", acc.ChatCompletion)
		}
	})
	t.Run("anthropic client", func(t *testing.T) {
		var resp *http.Response
		client := anthropicClient(srv, "sk-app")
		stream := client.Messages.NewStreaming(ctx, anthropic.MessageNewParams{
			Model: "smart", MaxTokens: 100, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello!"))},
		}, anthropicopt.WithResponseInto(&resp))
		var msg anthropic.Message
		for stream.Next() {
			if err := msg.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		check(t, resp)
		if msg.Content[0].Text == "" || msg.StopReason != anthropic.StopReasonEndTurn {
			t.Fatalf("accumulated %s", msg.RawJSON())
		}
	})
	if claude.hits.Load() < 3 {
		t.Fatalf("the claude channel was tried %d times", claude.hits.Load())
	}
}

// TestNativeParams: a claude channel's params, written in OpenAI's names
// as for every channel, reach a natively relayed Anthropic body under
// Anthropic's names; those Anthropic has no field for are left out, as
// translation leaves them out, instead of making Anthropic refuse the call.
func TestNativeParams(t *testing.T) {
	up := nativeUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
channels:
  - name: claude
    type: claude
    base_url: U
    models: [claude-sonnet]
    credentials: [{key: anthropic-key-1}]
    params:
      defaults: {temperature: 0.3, stop: END, frequency_penalty: 1, user: ops, top_k: 5}
      overrides: {max_completion_tokens: 77, max_tokens: 1, seed: 9}
`, "U", up.URL)
	client := anthropicClient(srv, "any-key") // no clients configured: not checked
	msg, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: "claude-sonnet", MaxTokens: 256, TopK: anthropic.Int(2),
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello!"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) == 0 {
		t.Fatalf("no content: %+v", msg)
	}
	header, got := up.lastRequest()
	if header.Get("anthropic-version") == "" || got["messages"] == nil {
		t.Fatalf("not a native Messages request: %v %v", header, got)
	}
	want := map[string]any{
		"temperature": 0.3, "stop_sequences": []any{"END"}, "metadata": map[string]any{"user_id": "ops"},
		"top_k": float64(2), "max_tokens": float64(77),
	}
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	for _, k := range []string{"frequency_penalty", "seed", "stop", "user", "max_completion_tokens"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s sent to Anthropic: %v", k, got)
		}
	}
}

// TestNativeUpstreamRefusals: a credential out of credit (402) is the
// credential's fault: it fails over to the next one; a refusal that is not
// Anthropic's own (a proxy's HTML page) still reaches an Anthropic client
// in Anthropic's error shape.
func TestNativeUpstreamRefusals(t *testing.T) {
	var broke atomic.Int64
	anthropicAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("x-api-key") {
		case "broke-key":
			broke.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusPaymentRequired)
			_, _ = io.WriteString(w, `{"type":"error","error":{"type":"billing_error","message":"Your credit balance is too low"}}`)
		default:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			_, _ = io.WriteString(w, "<html><body>413 Request Entity Too Large</body></html>")
		}
	}))
	t.Cleanup(anthropicAPI.Close)
	up := nativeUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
channels:
  - {name: broke, type: claude, base_url: A, priority: 10, models: [claude-sonnet], credentials: [{id: broke-1, key: broke-key}]}
  - {name: good, type: claude, base_url: U, priority: 1, models: [claude-sonnet], credentials: [{id: good-1, key: anthropic-key-1}]}
  - {name: proxied, type: claude, base_url: A, models: [claude-proxied], credentials: [{id: proxied-1, key: proxied-key}]}
`, "A", anthropicAPI.URL, "U", up.URL)

	body := `{"model":"claude-sonnet","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`
	resp := call(t, srv, "/v1/messages", body)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Credential") != "good-1" || broke.Load() != 1 {
		t.Fatalf("status %d from %s after %d calls to the broke credential: %s",
			resp.StatusCode, resp.Header.Get("X-Sluice-Credential"), broke.Load(), b)
	}

	resp = call(t, srv, "/v1/messages", strings.Replace(body, "claude-sonnet", "claude-proxied", 1))
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Type  string `json:"type"`
		Error struct{ Type, Message string }
	}
	if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || e.Type != "error" ||
		!strings.Contains(e.Error.Message, "413 Request Entity Too Large") {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
}

// TestUnencodableFirstEvent: a stream whose first event the client's codec
// cannot encode is a bad start, refused before anything is committed (so
// it could fail over), not a 200 carrying only an error event.
func TestUnencodableFirstEvent(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: this is not a chunk\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(api.Close)
	_, srv := startGateway(t, `channels: [{type: openai, base_url: A, models: [m]}]`, "A", api.URL)
	resp := call(t, srv, "/v1/messages", `{"model":"m","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), `"type":"error"`) {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
}
