package mock_test

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// sdkClients returns official SDK clients for a mock with cfg: one over a
// socket, one through mock.Transport. Retries are off so that error tests
// see the first answer.
func sdkClients(t *testing.T, cfg mock.Config, opts ...option.RequestOption) map[string]openai.Client {
	ts := httptest.NewServer(mock.New(cfg))
	t.Cleanup(ts.Close)
	base := []option.RequestOption{option.WithAPIKey("sk-test"), option.WithMaxRetries(0)}
	return map[string]openai.Client{
		"socket": openai.NewClient(append(append(base, option.WithBaseURL(ts.URL+"/v1/"), option.WithHTTPClient(ts.Client())), opts...)...),
		"transport": openai.NewClient(append(append(base, option.WithBaseURL("http://mock.test/v1/"),
			option.WithHTTPClient(&http.Client{Transport: mock.Transport(mock.New(cfg))})), opts...)...),
	}
}

func weatherParams() openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    "mock-gpt",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
			Name: "get_weather",
			Parameters: openai.FunctionParameters{
				"type":       "object",
				"properties": map[string]any{"city": map[string]any{"type": "string"}, "days": map[string]any{"type": "integer"}},
				"required":   []string{"city", "days"},
			},
		})},
	}
}

func TestOfficialSDK(t *testing.T) {
	cfg := mock.Config{StreamChunks: 4, ReplyTokens: 10}
	for name, client := range sdkClients(t, cfg) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			params := openai.ChatCompletionNewParams{
				Model: "mock-gpt",
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.SystemMessage("be brief"),
					openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
						openai.TextContentPart("what is this?"),
						openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "https://example.com/a.png"}),
					}),
				},
			}

			plain, err := client.Chat.Completions.New(ctx, params)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if len(plain.Choices) != 1 || len(strings.Fields(plain.Choices[0].Message.Content)) != 10 ||
				plain.Choices[0].FinishReason != "stop" || plain.Usage.CompletionTokens != 10 || plain.Model != "mock-gpt" {
				t.Errorf("completion %s", plain.RawJSON())
			}

			params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			stream := client.Chat.Completions.NewStreaming(ctx, params)
			var acc openai.ChatCompletionAccumulator
			chunks := 0
			for stream.Next() {
				if !acc.AddChunk(stream.Current()) {
					t.Fatalf("accumulator rejected chunk %s", stream.Current().RawJSON())
				}
				chunks++
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if chunks != 1+4+1+1 {
				t.Errorf("%d chunks, want 7", chunks)
			}
			got := acc.Choices[0]
			if got.Message.Content != plain.Choices[0].Message.Content || got.FinishReason != "stop" || acc.ID == "" {
				t.Errorf("accumulated %q (%s), plain %q", got.Message.Content, got.FinishReason, plain.Choices[0].Message.Content)
			}
			if acc.Usage.PromptTokens != plain.Usage.PromptTokens || acc.Usage.CompletionTokens != plain.Usage.CompletionTokens ||
				acc.Usage.TotalTokens != plain.Usage.TotalTokens {
				t.Errorf("streamed usage %+v, plain %+v", acc.Usage, plain.Usage)
			}
		})
	}
}

func TestOfficialSDKToolCalls(t *testing.T) {
	for name, client := range sdkClients(t, mock.Config{}) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			params := weatherParams()
			res, err := client.Chat.Completions.New(ctx, params)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			msg := res.Choices[0].Message
			if res.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "get_weather" {
				t.Fatalf("completion %s", res.RawJSON())
			}
			if args := msg.ToolCalls[0].Function.Arguments; args != `{"city":"sample","days":1}` {
				t.Errorf("arguments %s", args)
			}

			stream := client.Chat.Completions.NewStreaming(ctx, params)
			var acc openai.ChatCompletionAccumulator
			var finished *openai.FinishedChatCompletionToolCall
			for stream.Next() {
				if !acc.AddChunk(stream.Current()) {
					t.Fatalf("accumulator rejected chunk %s", stream.Current().RawJSON())
				}
				if tc, ok := acc.JustFinishedToolCall(); ok {
					finished = &tc
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			calls := acc.Choices[0].Message.ToolCalls
			if len(calls) != 1 || calls[0].Function.Name != "get_weather" || !strings.HasPrefix(calls[0].ID, "call_") ||
				acc.Choices[0].FinishReason != "tool_calls" {
				t.Fatalf("accumulated %+v", acc.Choices[0])
			}
			var args map[string]any
			if err := json.Unmarshal([]byte(calls[0].Function.Arguments), &args); err != nil || args["city"] != "sample" {
				t.Errorf("streamed arguments %q (%v)", calls[0].Function.Arguments, err)
			}
			if finished == nil || finished.Name != "get_weather" || finished.Arguments != calls[0].Function.Arguments {
				t.Errorf("JustFinishedToolCall %+v", finished)
			}

			// Answering the tool call gets text back.
			params.Messages = append(params.Messages, res.Choices[0].Message.ToParam(),
				openai.ToolMessage("sunny", msg.ToolCalls[0].ID))
			res, err = client.Chat.Completions.New(ctx, params)
			if err != nil {
				t.Fatalf("New after the tool result: %v", err)
			}
			if res.Choices[0].FinishReason != "stop" || res.Choices[0].Message.Content == "" {
				t.Errorf("completion %s", res.RawJSON())
			}
		})
	}
}

func TestOfficialSDKEmbeddingsAndModels(t *testing.T) {
	for name, client := range sdkClients(t, mock.Config{EmbeddingDims: 8}) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
				res, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
					Model:          "mock-embed",
					Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"one", "two"}},
					EncodingFormat: format,
				})
				if err != nil {
					t.Fatalf("%s embeddings: %v", format, err)
				}
				if len(res.Data) != 2 || len(res.Data[0].Embedding) != 8 || res.Usage.PromptTokens != 2 {
					t.Fatalf("%s embeddings: %s", format, res.RawJSON())
				}
				norm := 0.0
				for _, f := range res.Data[1].Embedding {
					norm += f * f
				}
				if math.Abs(norm-1) > 1e-4 {
					t.Errorf("%s: squared norm %v", format, norm)
				}
			}
			res, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
				Model: "mock-embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}, Dimensions: openai.Int(3),
			})
			if err != nil || len(res.Data[0].Embedding) != 3 {
				t.Errorf("dimensions: %v", err)
			}

			page, err := client.Models.List(ctx)
			if err != nil {
				t.Fatalf("models: %v", err)
			}
			var ids []string
			for _, m := range page.Data {
				ids = append(ids, m.ID)
			}
			if strings.Join(ids, ",") != strings.Join(mock.DefaultModels(), ",") {
				t.Errorf("models %v", ids)
			}
		})
	}
}

func TestOfficialSDKErrors(t *testing.T) {
	params := openai.ChatCompletionNewParams{
		Model:    "mock-gpt",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	}
	cases := []struct {
		name   string
		cfg    mock.Config
		status int
		code   string
	}{
		{"rate limited", mock.Config{RateLimitRate: 1}, http.StatusTooManyRequests, "rate_limit_exceeded"},
		{"server error", mock.Config{FailureRate: 1}, http.StatusInternalServerError, ""},
		{"bad key", mock.Config{Keys: []string{"sk-other"}}, http.StatusUnauthorized, "invalid_api_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for name, client := range sdkClients(t, tc.cfg) {
				t.Run(name, func(t *testing.T) {
					_, err := client.Chat.Completions.New(t.Context(), params)
					var apiErr *openai.Error
					if !errors.As(err, &apiErr) {
						t.Fatalf("error %v, want *openai.Error", err)
					}
					if apiErr.StatusCode != tc.status || apiErr.Code != tc.code || apiErr.Message == "" {
						t.Errorf("status %d code %q message %q", apiErr.StatusCode, apiErr.Code, apiErr.Message)
					}

					stream := client.Chat.Completions.NewStreaming(t.Context(), params)
					for stream.Next() {
					}
					if !errors.As(stream.Err(), &apiErr) || apiErr.StatusCode != tc.status {
						t.Errorf("stream error %v, want status %d", stream.Err(), tc.status)
					}
				})
			}
		})
	}
}

func TestOfficialSDKMidStreamFailure(t *testing.T) {
	for name, client := range sdkClients(t, mock.Config{FailAfterChunks: 2}) {
		t.Run(name, func(t *testing.T) {
			stream := client.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
				Model:    "mock-gpt",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			chunks := 0
			for stream.Next() {
				chunks++
			}
			if stream.Err() == nil {
				t.Errorf("stream ended cleanly after %d chunks, want an error", chunks)
			}
			if chunks != 3 {
				t.Errorf("%d chunks before the failure, want 3", chunks)
			}
		})
	}
}
