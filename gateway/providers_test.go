package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// nativeChannels serves one model per native upstream API, all on one
// mock upstream speaking every wire format over a real socket.
const nativeChannels = `
clients: [{name: app, key: sk-app}]
channels:
  - {name: claude, type: claude, base_url: U, models: [claude-sonnet], max_tokens: 512, credentials: [{id: claude-1, key: anthropic-key-1}]}
  - {name: gemini, type: gemini, base_url: U, models: [gemini-flash, gemini-embed], credentials: [{id: gemini-1, key: google-key-1}]}
  - {name: spark, type: xinghuo, base_url: U, models: [spark-lite, spark-max], credentials: [{id: spark-ws, key: spark-api-key, app_id: app-1, api_secret: spark-secret-1}]}
  - {name: spark-http, type: xinghuo, base_url: U/v1, models: [spark-http], credentials: [{id: spark-http-1, key: spark-password}]}
`

func nativeUpstream(t *testing.T, cfg mock.Config) *upstream {
	cfg.Keys = []string{"anthropic-key-1", "google-key-1", "spark-password"}
	cfg.Spark = []mock.SparkKey{{AppID: "app-1", APIKey: "spark-api-key", APISecret: "spark-secret-1"}}
	return mockUpstream(t, cfg)
}

var weatherTool = openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
	Name:        "get_weather",
	Description: openai.String("The current weather in a city"),
	Parameters: openai.FunctionParameters{
		"type":       "object",
		"properties": map[string]any{"city": map[string]any{"type": "string"}},
		"required":   []string{"city"},
	},
})

// TestOpenAISDKNativeChannels drives claude, gemini and xinghuo channels
// (native WebSocket and HTTP) with the official OpenAI SDK: the client
// cannot tell which API answered.
func TestOpenAISDKNativeChannels(t *testing.T) {
	up := nativeUpstream(t, mock.Config{StreamChunks: 5})
	_, srv := startGateway(t, nativeChannels, "U", up.URL)
	client := sdkClient(srv, "sk-app")
	ctx := context.Background()

	for _, tc := range []struct{ model, credential string }{
		{"claude-sonnet", "claude-1"},
		{"gemini-flash", "gemini-1"},
		{"spark-lite", "spark-ws"},
		{"spark-max", "spark-ws"},
		{"spark-http", "spark-http-1"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			t.Run("chat", func(t *testing.T) {
				var resp *http.Response
				res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
					Model:    tc.model,
					Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Hello!")},
				}, option.WithResponseInto(&resp))
				if err != nil {
					t.Fatal(err)
				}
				if got := resp.Header.Get("X-Sluice-Credential"); got != tc.credential {
					t.Fatalf("served by %q, want %q", got, tc.credential)
				}
				c := res.Choices[0]
				if c.Message.Content == "" || c.FinishReason != "stop" || res.Usage.PromptTokens == 0 || res.Usage.CompletionTokens == 0 {
					t.Fatalf("answer %s", res.RawJSON())
				}
			})

			t.Run("stream", func(t *testing.T) {
				stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
					Model:         tc.model,
					Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story")},
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
				})
				var acc openai.ChatCompletionAccumulator
				chunks := 0
				for stream.Next() {
					acc.AddChunk(stream.Current())
					chunks++
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				if chunks < 3 || len(acc.Choices) != 1 || acc.Choices[0].Message.Content == "" ||
					acc.Choices[0].FinishReason != "stop" || acc.Usage.TotalTokens == 0 {
					t.Fatalf("%d chunks, accumulated %+v", chunks, acc.ChatCompletion)
				}
			})

			t.Run("tools", func(t *testing.T) {
				params := openai.ChatCompletionNewParams{
					Model:    tc.model,
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What's the weather in Paris?")},
					Tools:    []openai.ChatCompletionToolUnionParam{weatherTool},
				}
				res, err := client.Chat.Completions.New(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				checkToolCall(t, res.Choices[0].FinishReason, res.Choices[0].Message.ToolCalls)

				stream := client.Chat.Completions.NewStreaming(ctx, params)
				var acc openai.ChatCompletionAccumulator
				for stream.Next() {
					acc.AddChunk(stream.Current())
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				checkToolCall(t, acc.Choices[0].FinishReason, acc.Choices[0].Message.ToolCalls)

				// The call's result goes back; the model answers in text.
				call := res.Choices[0].Message.ToolCalls[0]
				params.Messages = append(params.Messages, res.Choices[0].Message.ToParam(),
					openai.ToolMessage(`{"temperature": 15}`, call.ID))
				res, err = client.Chat.Completions.New(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				if res.Choices[0].Message.Content == "" || len(res.Choices[0].Message.ToolCalls) != 0 {
					t.Fatalf("answer to the tool result %s", res.RawJSON())
				}
			})
		})
	}

	t.Run("gemini embeddings", func(t *testing.T) {
		res, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "gemini-embed",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "bc"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Data) != 2 || len(res.Data[0].Embedding) == 0 || res.Data[1].Index != 1 {
			t.Fatalf("embeddings %s", res.RawJSON())
		}
	})

	t.Run("refused translation", func(t *testing.T) {
		// Claude has no embeddings: the client's error, in OpenAI's shape.
		_, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "claude-sonnet",
			Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Type != "invalid_request_error" {
			t.Fatalf("error %v", err)
		}
	})
}

func checkToolCall(t *testing.T, finish string, calls []openai.ChatCompletionMessageToolCallUnion) {
	t.Helper()
	if finish != "tool_calls" || len(calls) != 1 {
		t.Fatalf("finish %q, %d tool calls", finish, len(calls))
	}
	c := calls[0]
	var args map[string]any
	if c.ID == "" || c.Function.Name != "get_weather" || json.Unmarshal([]byte(c.Function.Arguments), &args) != nil {
		t.Fatalf("tool call %+v", c)
	}
}

// TestNativeUpstreamErrors checks that each native API's failures are
// classified like an OpenAI upstream's: rejected keys and server errors
// fail over, rate limits cool the credential down, and the client gets
// OpenAI's error shape with no secret in it.
func TestNativeUpstreamErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   mock.Config
		model string
		want  int
	}{
		{"claude overloaded", mock.Config{FailureRate: 1, Overloaded: true}, "claude-sonnet", http.StatusBadGateway},
		{"gemini rate limited", mock.Config{RateLimitRate: 1}, "gemini-flash", http.StatusTooManyRequests},
		{"spark server error", mock.Config{FailureRate: 1}, "spark-lite", http.StatusBadGateway},
		{"spark rate limited", mock.Config{RateLimitRate: 1}, "spark-lite", http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := nativeUpstream(t, tc.cfg)
			_, srv := startGateway(t, nativeChannels, "U", up.URL)
			resp, body := chat(t, srv, tc.model, "Authorization", "Bearer sk-app")
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			apiError(t, body)
			for _, secret := range []string{"anthropic-key-1", "google-key-1", "spark-secret-1", "spark-api-key"} {
				if strings.Contains(string(body), secret) {
					t.Fatalf("secret in the error: %s", body)
				}
			}
		})
	}

	t.Run("rejected keys", func(t *testing.T) {
		up := nativeUpstream(t, mock.Config{})
		for _, model := range []string{"claude-sonnet", "gemini-flash", "spark-lite"} {
			_, srv := startGateway(t, strings.NewReplacer("anthropic-key-1", "wrong", "google-key-1", "wrong", "spark-secret-1", "wrong").Replace(nativeChannels), "U", up.URL)
			resp, body := chat(t, srv, model, "Authorization", "Bearer sk-app")
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(apiError(t, body).Message, "rejected credential") {
				t.Fatalf("%s: status %d: %s", model, resp.StatusCode, body)
			}
		}
	})
}

// TestSparkBaseURL: a xinghuo channel written with the HTTP API's URL (as
// simple-one-api configs and docs give it) still sends its app_id
// credentials to the WebSocket API, while its HTTP credentials keep the
// URL; any other URL is the operator's choice and kept.
func TestSparkBaseURL(t *testing.T) {
	cfg := `
channels:
  - {name: a, type: xinghuo, base_url: "https://spark-api-open.xf-yun.com/v1/chat/completions", models: [lite],
     credentials: [{id: ws, key: k, app_id: app, api_secret: s}, {id: http, key: password}]}
  - {name: b, type: xinghuo, models: [lite], credentials: [{id: ws-default, key: k, app_id: app, api_secret: s}]}
  - {name: c, type: xinghuo, base_url: "wss://spark-proxy.example/v3.5/chat", models: [lite], credentials: [{id: ws-proxy, key: k, app_id: app, api_secret: s}]}
`
	g, err := New(loadConfig(t, cfg), Deps{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ws":         "wss://spark-api.xf-yun.com",
		"http":       "https://spark-api-open.xf-yun.com/v1/chat/completions",
		"ws-default": "wss://spark-api.xf-yun.com",
		"ws-proxy":   "wss://spark-proxy.example/v3.5/chat",
	}
	for _, c := range g.current().creds {
		if c.baseURL != want[c.id] {
			t.Errorf("%s: base URL %q, want %q", c.id, c.baseURL, want[c.id])
		}
	}
}

// TestErrorIn200: an Anthropic error object sent with status 200 is the
// upstream's failure (here: overloaded, so a breaker failure and failover),
// not a request the adapter refused.
func TestErrorIn200(t *testing.T) {
	var calls atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
	}))
	t.Cleanup(api.Close)
	up := nativeUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
channels:
  - {name: flaky, type: claude, base_url: A, priority: 10, models: [claude-sonnet], credentials: [{id: flaky-1, key: k-flaky-1}]}
  - {name: good, type: claude, base_url: U, models: [claude-sonnet], credentials: [{id: good-1, key: anthropic-key-1}]}
`, "A", api.URL, "U", up.URL)
	resp, body := chat(t, srv, "claude-sonnet")
	if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Credential") != "good-1" || calls.Load() != 1 ||
		resp.Header.Get("X-Sluice-Attempts") != "2" {
		t.Fatalf("status %d from %q after %d calls: %s", resp.StatusCode, resp.Header.Get("X-Sluice-Credential"), calls.Load(), body)
	}

	// Alone, it is a 502 for the client, not a 400 blaming its request.
	_, srv = startGateway(t, `
channels:
  - {name: flaky, type: claude, base_url: A, models: [claude-sonnet], credentials: [{id: flaky-1, key: k-flaky-1}]}
`, "A", api.URL)
	resp, body = chat(t, srv, "claude-sonnet")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(apiError(t, body).Message, "529") {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}
