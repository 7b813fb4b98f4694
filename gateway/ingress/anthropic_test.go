package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
)

func TestAnthropicDecode(t *testing.T) {
	tests := []struct {
		name, body, canonical string
	}{{
		name: "basic",
		body: `{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}`,
		canonical: `{"model":"claude-sonnet-4-5","max_tokens":1024,
			"messages":[{"role":"user","content":"Hello, Claude"}]}`,
	}, {
		name: "system and multi-turn",
		body: `{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"You are a helpful assistant.",
			"temperature":0.7,"top_p":0.9,"top_k":40,"stop_sequences":["\n\nHuman:"],"metadata":{"user_id":"user-42"},
			"thinking":{"type":"enabled","budget_tokens":2000},
			"messages":[
				{"role":"user","content":"Hello there."},
				{"role":"assistant","content":"Hi, I'm Claude. How can I help you?"},
				{"role":"user","content":"Can you explain LLMs in plain English?"}]}`,
		canonical: `{"model":"claude-sonnet-4-5","max_tokens":1024,"temperature":0.7,"top_p":0.9,
			"stop":["\n\nHuman:"],"user":"user-42",
			"messages":[
				{"role":"system","content":"You are a helpful assistant."},
				{"role":"user","content":"Hello there."},
				{"role":"assistant","content":"Hi, I'm Claude. How can I help you?"},
				{"role":"user","content":"Can you explain LLMs in plain English?"}]}`,
	}, {
		name: "system blocks with cache_control, streamed",
		body: `{"model":"claude-opus-4-1","max_tokens":32000,"stream":true,
			"system":[{"type":"text","text":"You are Claude Code."},{"type":"text","text":"Be terse.","cache_control":{"type":"ephemeral"}}],
			"messages":[{"role":"user","content":[
				{"type":"text","text":"<system-reminder>context</system-reminder>"},
				{"type":"text","text":"fix the bug","cache_control":{"type":"ephemeral"}}]}]}`,
		canonical: `{"model":"claude-opus-4-1","max_tokens":32000,"stream":true,"stream_options":{"include_usage":true},
			"messages":[
				{"role":"system","content":"You are Claude Code.\n\nBe terse."},
				{"role":"user","content":[
					{"type":"text","text":"<system-reminder>context</system-reminder>"},
					{"type":"text","text":"fix the bug"}]}]}`,
	}, {
		name: "images",
		body: `{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":[
			{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/4AAQSkZJRg=="}},
			{"type":"image","source":{"type":"url","url":"https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"}},
			{"type":"text","text":"Describe these images."}]}]}`,
		canonical: `{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":[
			{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
			{"type":"image_url","image_url":{"url":"https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"}},
			{"type":"text","text":"Describe these images."}]}]}`,
	}, {
		name: "tools and tool history",
		body: `{"model":"claude-sonnet-4-5","max_tokens":1024,
			"tools":[{"name":"get_weather","description":"Get the current weather in a given location",
				"input_schema":{"type":"object","properties":{"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}},"required":["location"]},
				"cache_control":{"type":"ephemeral"}},
				{"type":"custom","name":"get_time","input_schema":{"type":"object","properties":{}}}],
			"tool_choice":{"type":"any","disable_parallel_tool_use":true},
			"messages":[
				{"role":"user","content":"What's the weather like in San Francisco?"},
				{"role":"assistant","content":[
					{"type":"thinking","thinking":"The user wants the weather.","signature":"EqQBCgIYAhIM"},
					{"type":"text","text":"I'll check the current weather in San Francisco for you."},
					{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"location": "San Francisco, CA"}},
					{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}]},
				{"role":"user","content":[
					{"type":"text","text":"Also, is it a good day for a picnic?"},
					{"type":"tool_result","tool_use_id":"toolu_01A09q90qw90lq917835lq9","content":"15 degrees"},
					{"type":"tool_result","tool_use_id":"toolu_02","is_error":true,"content":[{"type":"text","text":"clock"},{"type":"text","text":"unavailable"}]}]}]}`,
		canonical: `{"model":"claude-sonnet-4-5","max_tokens":1024,
			"tools":[{"type":"function","function":{"name":"get_weather","description":"Get the current weather in a given location",
				"parameters":{"type":"object","properties":{"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}},"required":["location"]}}},
				{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{}}}}],
			"tool_choice":"required","parallel_tool_calls":false,
			"messages":[
				{"role":"user","content":"What's the weather like in San Francisco?"},
				{"role":"assistant","content":"I'll check the current weather in San Francisco for you.","tool_calls":[
					{"id":"toolu_01A09q90qw90lq917835lq9","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"San Francisco, CA\"}"}},
					{"id":"toolu_02","type":"function","function":{"name":"get_time","arguments":"{}"}}]},
				{"role":"tool","tool_call_id":"toolu_01A09q90qw90lq917835lq9","content":"15 degrees"},
				{"role":"tool","tool_call_id":"toolu_02","content":"clock\n\nunavailable"},
				{"role":"user","content":"Also, is it a good day for a picnic?"}]}`,
	}, {
		// Claude Code's Read tool returns an image file as an image block
		// in the tool result; tool messages carry text only.
		name: "images in tool results open the next user message",
		body: `{"model":"m","max_tokens":10,"messages":[
			{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Read","input":{"file_path":"/a.png"}},{"type":"tool_use","id":"toolu_2","name":"Read","input":{"file_path":"/b.txt"}}]},
			{"role":"user","content":[
				{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]},
				{"type":"tool_result","tool_use_id":"toolu_2","content":[{"type":"text","text":"hello"}]},
				{"type":"text","text":"What is in the picture?"}]}]}`,
		canonical: `{"model":"m","max_tokens":10,"messages":[
			{"role":"assistant","tool_calls":[
				{"id":"toolu_1","type":"function","function":{"name":"Read","arguments":"{\"file_path\":\"/a.png\"}"}},
				{"id":"toolu_2","type":"function","function":{"name":"Read","arguments":"{\"file_path\":\"/b.txt\"}"}}]},
			{"role":"tool","tool_call_id":"toolu_1","content":"[1 image(s) returned by tool call toolu_1, attached in the next message]"},
			{"role":"tool","tool_call_id":"toolu_2","content":"hello"},
			{"role":"user","content":[
				{"type":"text","text":"Image(s) returned by tool call toolu_1:"},
				{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
				{"type":"text","text":"What is in the picture?"}]}]}`,
	}, {
		name: "tool_choice tool, none; assistant with only thinking dropped",
		body: `{"model":"m","max_tokens":10,"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"},
			"messages":[{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"redacted_thinking","data":"xx"}]},{"role":"user","content":"b"}]}`,
		canonical: `{"model":"m","max_tokens":10,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
			"tool_choice":{"type":"function","function":{"name":"f"}},
			"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}`,
	}, {
		name: "tool_choice without tools is dropped; structured output",
		body: `{"model":"m","max_tokens":10,"tool_choice":{"type":"none"},
			"output_config":{"format":{"type":"json_schema","schema":{"type":"object","properties":{"name":{"type":"string"}}}},"effort":"high"},
			"messages":[{"role":"user","content":"a"}]}`,
		canonical: `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"a"}],
			"response_format":{"type":"json_schema","json_schema":{"name":"output","schema":{"type":"object","properties":{"name":{"type":"string"}}},"strict":true}}}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := decodeOK(t, Anthropic, tt.body, tt.canonical)
			var in struct {
				Model  string `json:"model"`
				Stream bool   `json:"stream"`
			}
			_ = json.Unmarshal([]byte(tt.body), &in)
			if r.Model != in.Model || r.Stream != in.Stream {
				t.Fatalf("Model, Stream = %q, %v; want %q, %v", r.Model, r.Stream, in.Model, in.Stream)
			}
		})
	}
}

func TestAnthropicDecodeRefused(t *testing.T) {
	const head = `{"model":"claude-sonnet-4-5","max_tokens":1024,`
	tests := []struct {
		name, body, param, fragment string
	}{
		{"not JSON", `{"model":`, "", "invalid request body"},
		{"no max_tokens", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "max_tokens", "required"},
		{"no model", `{"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, "model", "required"},
		{"no messages", head + `"messages":[]}`, "messages", "at least one"},
		{"bad role", head + `"messages":[{"role":"system","content":"hi"}]}`, "messages[0].role", "system"},
		{"document", head + `"messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}},{"type":"text","text":"summarize"}]}]}`,
			"messages[0].content[0]", "document blocks are not supported"},
		{"image in system", head + `"system":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}}],"messages":[{"role":"user","content":"hi"}]}`,
			"system[0]", "images are not supported"},
		{"image by file in tool result", head + `"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}]}`,
			"messages[0].content[0].content[0].source.type", `"file"`},
		{"image by file", head + `"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"file_011"}}]}]}`,
			"messages[0].content[0].source.type", `"file"`},
		{"server tool", head + `"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":5}],"messages":[{"role":"user","content":"news?"}]}`,
			"tools[0].type", "web_search_20250305"},
		{"server tool history", head + `"messages":[{"role":"user","content":"news?"},{"role":"assistant","content":[{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"news"}}]}]}`,
			"messages[1].content[0]", "server tools"},
		{"search result", head + `"messages":[{"role":"user","content":[{"type":"search_result","source":"s","title":"t","content":[]}]}]}`,
			"messages[0].content[0].type", "search_result"},
		{"mcp servers", head + `"mcp_servers":[{"type":"url","url":"https://example.com/sse","name":"x"}],"messages":[{"role":"user","content":"hi"}]}`,
			"mcp_servers", "MCP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decodeRefused(t, Anthropic, tt.body, tt.param, tt.fragment)
		})
	}
}

func TestAnthropicResponse(t *testing.T) {
	got, err := Anthropic.Response([]byte(completionWithTools))
	if err != nil {
		t.Fatal(err)
	}
	assertJSON(t, got, `{"id":"msg_abc123","type":"message","role":"assistant","model":"gpt-4.1-2025-04-14",
		"content":[
			{"type":"text","text":"I'll check the current weather in San Francisco for you."},
			{"type":"tool_use","id":"call_12345xyz","name":"get_weather","input":{"location":"San Francisco, CA"}}],
		"stop_reason":"tool_use","stop_sequence":null,
		"usage":{"input_tokens":82,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":17}}`)

	// The official SDK reads it.
	var msg anthropic.Message
	if err := json.Unmarshal(got, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != anthropic.StopReasonToolUse || len(msg.Content) != 2 ||
		msg.Content[1].AsToolUse().Name != "get_weather" || msg.Usage.OutputTokens != 17 {
		t.Fatalf("SDK reads %+v", msg)
	}

	for finish, stop := range map[string]string{"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal", "tool_calls": "tool_use"} {
		got, err := Anthropic.Response([]byte(completionText("Hi", finish)))
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			StopReason string            `json:"stop_reason"`
			Content    []json.RawMessage `json:"content"`
		}
		_ = json.Unmarshal(got, &m)
		if m.StopReason != stop || len(m.Content) != 1 {
			t.Errorf("finish %s: %s", finish, got)
		}
	}

	if _, err := Anthropic.Response([]byte(`{"choices":`)); err == nil {
		t.Error("invalid chat.completion accepted")
	}
}

func TestAnthropicStream(t *testing.T) {
	events := encodeStream(t, Anthropic.NewStream("claude-sonnet-4-5"), realisticStream)
	want := []struct{ typ, data string }{
		{"message_start", `{"type":"message_start","message":{"id":"msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT","type":"message","role":"assistant",
			"model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,
			"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}`},
		{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check"}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the weather."}}`},
		{"content_block_stop", `{"type":"content_block_stop","index":0}`},
		{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_weather","name":"get_weather","input":{}}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"Paris, France\"}"}}`},
		{"content_block_stop", `{"type":"content_block_stop","index":1}`},
		{"content_block_start", `{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"call_time","name":"get_time","input":{}}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"tz\":"}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"\"Europe/Paris\"}"}}`},
		{"content_block_stop", `{"type":"content_block_stop","index":2}`},
		{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},
			"usage":{"input_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":20,"output_tokens":45}}`},
		{"message_stop", `{"type":"message_stop"}`},
	}
	if len(events) != len(want) {
		t.Fatalf("events %v; want %d", eventTypes(events), len(want))
	}
	for i, w := range want {
		if events[i].Type != w.typ {
			t.Fatalf("event %d is %s; want %s", i, events[i].Type, w.typ)
		}
		assertJSON(t, []byte(events[i].Data), w.data)
	}

	// The official SDK's accumulator rebuilds the message from the events.
	var msg anthropic.Message
	for _, e := range events {
		var ev anthropic.MessageStreamEventUnion
		if err := json.Unmarshal([]byte(e.Data), &ev); err != nil {
			t.Fatal(err)
		}
		if err := msg.Accumulate(ev); err != nil {
			t.Fatalf("Accumulate(%s): %v", e.Data, err)
		}
	}
	checkAccumulated(t, msg)
}

// checkAccumulated checks a message rebuilt from realisticStream.
func checkAccumulated(t *testing.T, msg anthropic.Message) {
	t.Helper()
	if len(msg.Content) != 3 {
		t.Fatalf("content %+v", msg.Content)
	}
	if msg.Content[0].Type != "text" || msg.Content[0].Text != "Let me check the weather." {
		t.Errorf("text block %+v", msg.Content[0])
	}
	for i, want := range []struct {
		id, name string
		input    map[string]any
	}{{"call_weather", "get_weather", map[string]any{"location": "Paris, France"}}, {"call_time", "get_time", map[string]any{"tz": "Europe/Paris"}}} {
		b := msg.Content[i+1]
		var input map[string]any
		if err := json.Unmarshal(b.Input, &input); err != nil {
			t.Fatalf("tool input %s: %v", b.Input, err)
		}
		if b.Type != "tool_use" || b.ID != want.id || b.Name != want.name || !reflect.DeepEqual(input, want.input) {
			t.Errorf("tool block %d: %s %s %s %v", i+1, b.Type, b.ID, b.Name, input)
		}
	}
	if msg.StopReason != anthropic.StopReasonToolUse || msg.Usage.InputTokens != 100 ||
		msg.Usage.CacheReadInputTokens != 20 || msg.Usage.OutputTokens != 45 {
		t.Errorf("stop %q usage %+v", msg.StopReason, msg.Usage)
	}
}

func TestAnthropicStreamEdges(t *testing.T) {
	t.Run("empty answer", func(t *testing.T) {
		events := encodeStream(t, Anthropic.NewStream("m"), []string{finishChunk("stop")})
		want := []string{"message_start", "message_delta", "message_stop"}
		if got := eventTypes(events); !reflect.DeepEqual(got, want) {
			t.Fatalf("events %v; want %v", got, want)
		}
		if !strings.Contains(events[1].Data, `"stop_reason":"end_turn"`) {
			t.Fatalf("message_delta %s", events[1].Data)
		}
	})
	t.Run("no chunks", func(t *testing.T) {
		events := encodeStream(t, Anthropic.NewStream("m"), nil)
		if got := eventTypes(events); !reflect.DeepEqual(got, []string{"message_start", "message_delta", "message_stop"}) {
			t.Fatalf("events %v", got)
		}
	})
	t.Run("cut at max tokens", func(t *testing.T) {
		events := encodeStream(t, Anthropic.NewStream("m"), []string{textChunk("Once upon"), finishChunk("length")})
		want := []string{"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
		if got := eventTypes(events); !reflect.DeepEqual(got, want) {
			t.Fatalf("events %v; want %v", got, want)
		}
		if !strings.Contains(events[4].Data, `"stop_reason":"max_tokens"`) {
			t.Fatalf("message_delta %s", events[4].Data)
		}
	})
	t.Run("tool call without index, id only on its first fragment", func(t *testing.T) {
		enc := Anthropic.NewStream("m")
		events := encodeStream(t, enc, []string{
			chunkHead + `"choices":[{"index":0,"delta":{"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":"}}]},"finish_reason":null}]}`,
			chunkHead + `"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"1}"}}]},"finish_reason":null}]}`,
			chunkHead + `"choices":[{"index":0,"delta":{"tool_calls":[{"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"stop"}]}`,
		})
		var msg anthropic.Message
		for _, e := range events {
			var ev anthropic.MessageStreamEventUnion
			_ = json.Unmarshal([]byte(e.Data), &ev)
			if err := msg.Accumulate(ev); err != nil {
				t.Fatal(err)
			}
		}
		if len(msg.Content) != 2 || string(msg.Content[0].Input) != `{"a":1}` || msg.Content[1].Name != "g" || msg.StopReason != "tool_use" {
			t.Fatalf("message %+v", msg)
		}
	})
	t.Run("fail", func(t *testing.T) {
		events := Anthropic.NewStream("m").Fail("upstream broke")
		if len(events) != 1 || events[0].Type != "error" {
			t.Fatalf("events %v", events)
		}
		assertJSON(t, []byte(events[0].Data), `{"type":"error","error":{"type":"api_error","message":"upstream broke"}}`)
	})
	t.Run("bad chunk", func(t *testing.T) {
		if _, err := Anthropic.NewStream("m").Chunk([]byte("{")); err == nil {
			t.Fatal("invalid chunk accepted")
		}
	})
}

func TestAnthropicError(t *testing.T) {
	for status, typ := range map[int]string{
		400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
		405: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error", 499: "api_error",
		500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
	} {
		got := Anthropic.Error(status, "server_error", "upstream_error", "something broke")
		assertJSON(t, got, `{"type":"error","error":{"type":"`+typ+`","message":"something broke"}}`)
	}
	got := RequestErrorBody(Anthropic, &RequestError{Param: "max_tokens", Message: "field required"})
	assertJSON(t, got, `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: field required"}}`)
}

// TestAnthropicSDK drives the codec with the official Go SDK, through an
// HTTP server standing in for the gateway: the SDK's requests decode, and
// it reads the answers and streams.
func TestAnthropicSDK(t *testing.T) {
	var last *Request
	srv := sdkServer(t, Anthropic, &last)
	defer srv.Close()
	client := anthropic.NewClient(option.WithBaseURL(srv.URL), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	ctx := context.Background()
	params := anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 1024,
		System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
		Messages: []anthropic.MessageParam{
			anthropic.NewUserMessage(anthropic.NewTextBlock("What's the weather in Paris?")),
			anthropic.NewAssistantMessage(anthropic.NewToolUseBlock("toolu_1", map[string]any{"location": "Paris"}, "get_weather")),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_1", "15 degrees", false)),
		},
		Tools: []anthropic.ToolUnionParam{anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
			Properties: map[string]any{"location": map[string]any{"type": "string"}},
		}, "get_weather")},
	}

	t.Run("message", func(t *testing.T) {
		msg, err := client.Messages.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		assertJSON(t, last.Canonical, `{"model":"claude-sonnet-4-5","max_tokens":1024,
			"messages":[{"role":"system","content":"Be brief."},
				{"role":"user","content":"What's the weather in Paris?"},
				{"role":"assistant","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},
				{"role":"tool","tool_call_id":"toolu_1","content":"15 degrees"}],
			"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"properties":{"location":{"type":"string"}},"type":"object"}}}]}`)
		if msg.StopReason != anthropic.StopReasonToolUse || msg.Content[0].Text == "" || msg.Content[1].Name != "get_weather" {
			t.Fatalf("message %+v", msg)
		}
	})

	t.Run("stream", func(t *testing.T) {
		stream := client.Messages.NewStreaming(ctx, params)
		var msg anthropic.Message
		for stream.Next() {
			if err := msg.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if !last.Stream {
			t.Fatal("stream not requested")
		}
		checkAccumulated(t, msg)
	})

	t.Run("refused", func(t *testing.T) {
		p := params
		p.Tools = []anthropic.ToolUnionParam{{OfWebSearchTool20250305: &anthropic.WebSearchTool20250305Param{}}}
		_, err := client.Messages.New(ctx, p)
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || !strings.Contains(apiErr.Error(), "web_search_20250305") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestFindTool(t *testing.T) {
	zero, one := 0, 1
	tools := []streamTool{{index: &zero, id: "a"}, {index: &one, id: ""}}
	for _, tt := range []struct {
		index *int
		id    string
		want  int
	}{
		{&zero, "", 0},   // a later fragment
		{&zero, "a", 0},  // some upstreams repeat the id
		{&zero, "b", -1}, // index reused for a new call
		{&one, "c", 1},   // first fragment had no id
		{nil, "", 1},     // no index: the last call
		{nil, "d", 1},    // the last call has no id to compare
		{&[]int{2}[0], "", -1},
	} {
		if got := findTool(tools, toolCall{Index: tt.index, ID: tt.id}); got != tt.want {
			t.Errorf("findTool(%v, %q) = %d; want %d", tt.index, tt.id, got, tt.want)
		}
	}
	if got := findTool(nil, toolCall{ID: "x"}); got != -1 {
		t.Errorf("findTool on no calls = %d", got)
	}
}
