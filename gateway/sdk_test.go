package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// TestOpenAISDK drives the gateway with the official Go SDK, the way our
// users' applications do.
func TestOpenAISDK(t *testing.T) {
	up := mockUpstream(t, mock.Config{StreamChunks: 6})
	_, srv := startGateway(t, `
clients:
  - {name: app, key: sk-app}
  - {name: tiny, key: sk-tiny, limits: {rpm: 1}}
channels:
  - {type: openai, base_url: U, models: [gpt-4o-mini, text-embedding-3-small]}
`, "U", up.URL)
	ctx := context.Background()
	client := sdkClient(srv, "sk-app")

	t.Run("chat", func(t *testing.T) {
		res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Hello!")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Choices) != 1 || res.Choices[0].Message.Content == "" || res.Usage.TotalTokens == 0 {
			t.Fatalf("answer %+v", res)
		}
	})

	t.Run("multimodal", func(t *testing.T) {
		res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("What is in this image?"),
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64,iVBORw0KGgo="}),
			})},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Choices[0].Message.Content == "" {
			t.Fatal("empty answer")
		}
		_, sent := up.lastRequest()
		parts := sent["messages"].([]any)[0].(map[string]any)["content"].([]any)
		if len(parts) != 2 || parts[1].(map[string]any)["type"] != "image_url" {
			t.Fatalf("multimodal content not passed through: %v", parts)
		}
	})

	t.Run("stream", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:         "gpt-4o-mini",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Stream please")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		acc := openai.ChatCompletionAccumulator{}
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if chunks < 6 || acc.Choices[0].Message.Content == "" || acc.Usage.TotalTokens == 0 {
			t.Fatalf("%d chunks, accumulated %+v", chunks, acc.ChatCompletion)
		}
	})

	weather := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("Get the weather for a city"),
		Parameters: shared.FunctionParameters{
			"type":       "object",
			"properties": map[string]any{"city": map[string]any{"type": "string"}, "days": map[string]any{"type": "integer"}},
			"required":   []string{"city"},
		},
	})

	t.Run("tool call", func(t *testing.T) {
		res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris?")},
			Tools:    []openai.ChatCompletionToolUnionParam{weather},
		})
		if err != nil {
			t.Fatal(err)
		}
		calls := res.Choices[0].Message.ToolCalls
		if res.Choices[0].FinishReason != "tool_calls" || len(calls) != 1 || calls[0].Function.Name != "get_weather" {
			t.Fatalf("tool call %+v", res.Choices[0])
		}
		var args map[string]any
		if err := json.Unmarshal([]byte(calls[0].Function.Arguments), &args); err != nil || args["city"] == nil {
			t.Fatalf("arguments %q: %v", calls[0].Function.Arguments, err)
		}
	})

	t.Run("streamed tool call", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:    "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris?")},
			Tools:    []openai.ChatCompletionToolUnionParam{weather},
		})
		acc := openai.ChatCompletionAccumulator{}
		var finished *openai.FinishedChatCompletionToolCall
		for stream.Next() {
			acc.AddChunk(stream.Current())
			if tc, ok := acc.JustFinishedToolCall(); ok {
				finished = &tc
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if finished == nil || finished.Name != "get_weather" || !json.Valid([]byte(finished.Arguments)) {
			t.Fatalf("streamed tool call %+v", finished)
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		res, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "text-embedding-3-small",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"one", "two"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Data) != 2 || len(res.Data[1].Embedding) == 0 {
			t.Fatalf("embeddings %+v", res)
		}
	})

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 2 || page.Data[0].ID != "gpt-4o-mini" {
			t.Fatalf("models %+v", page.Data)
		}
		m, err := client.Models.Get(ctx, "text-embedding-3-small")
		if err != nil || m.ID != "text-embedding-3-small" {
			t.Fatalf("get model: %v %+v", err, m)
		}
	})

	t.Run("401", func(t *testing.T) {
		wrong := sdkClient(srv, "sk-wrong")
		_, err := wrong.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" {
			t.Fatalf("want *openai.Error 401 invalid_api_key, got %v", err)
		}
	})

	t.Run("429", func(t *testing.T) {
		tiny := sdkClient(srv, "sk-tiny")
		params := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}
		if _, err := tiny.Chat.Completions.New(ctx, params); err != nil {
			t.Fatal(err)
		}
		_, err := tiny.Chat.Completions.New(ctx, params)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" || apiErr.Type != "requests" {
			t.Fatalf("want *openai.Error 429 rate_limit_exceeded, got %v", err)
		}
	})

	t.Run("404 model", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "gpt-nope", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
			t.Fatalf("want 404 model_not_found, got %v", err)
		}
	})
}

func sdkClient(srv *httptest.Server, key string) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(srv.URL+"/v1/"),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
		option.WithHTTPClient(srv.Client()),
	)
}
