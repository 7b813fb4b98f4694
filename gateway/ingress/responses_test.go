package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

func TestResponsesDecode(t *testing.T) {
	tests := []struct {
		name, body, canonical string
	}{{
		name:      "text input",
		body:      `{"model":"gpt-4.1","input":"Tell me a three sentence bedtime story about a unicorn."}`,
		canonical: `{"model":"gpt-4.1","messages":[{"role":"user","content":"Tell me a three sentence bedtime story about a unicorn."}]}`,
	}, {
		name: "instructions and ignored parameters",
		body: `{"model":"gpt-4.1","instructions":"Talk like a pirate.","input":"Are semicolons optional in JavaScript?",
			"store":false,"metadata":{"k":"v"},"include":["reasoning.encrypted_content"],"truncation":"auto","service_tier":"auto",
			"prompt_cache_key":"abc","max_output_tokens":500,"temperature":0.2,"top_p":0.8,"user":"u1","stream":true,
			"reasoning":{"effort":"low","summary":"auto"},"text":{"format":{"type":"text"},"verbosity":"low"}}`,
		canonical: `{"model":"gpt-4.1","max_completion_tokens":500,"temperature":0.2,"top_p":0.8,"user":"u1",
			"stream":true,"stream_options":{"include_usage":true},"reasoning_effort":"low",
			"messages":[{"role":"system","content":"Talk like a pirate."},{"role":"user","content":"Are semicolons optional in JavaScript?"}]}`,
	}, {
		name: "items: roles, images, reasoning dropped",
		body: `{"model":"gpt-4.1","safety_identifier":"hashed-user","input":[
			{"role":"developer","content":"Answer in French."},
			{"type":"message","role":"user","content":[{"type":"input_text","text":"what is in this image?"},
				{"type":"input_image","image_url":"https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/Gfp-wisconsin-madison-the-nature-boardwalk.jpg","detail":"high"},
				{"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgo=","detail":"auto"}]},
			{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAAAB"},
			{"type":"message","role":"assistant","id":"msg_1","status":"completed","content":[{"type":"output_text","text":"Une promenade en bois.","annotations":[]}]},
			{"role":"system","content":[{"type":"input_text","text":"Be brief."}]},
			{"role":"user","content":"Merci"}]}`,
		canonical: `{"model":"gpt-4.1","user":"hashed-user","messages":[
			{"role":"system","content":"Answer in French."},
			{"role":"user","content":[{"type":"text","text":"what is in this image?"},
				{"type":"image_url","image_url":{"url":"https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/Gfp-wisconsin-madison-the-nature-boardwalk.jpg","detail":"high"}},
				{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]},
			{"role":"assistant","content":"Une promenade en bois."},
			{"role":"system","content":"Be brief."},
			{"role":"user","content":"Merci"}]}`,
	}, {
		name: "function calling history",
		body: `{"model":"gpt-4.1","parallel_tool_calls":false,"tool_choice":"required",
			"tools":[{"type":"function","name":"get_weather","description":"Get current temperature for a given location.",
				"parameters":{"type":"object","properties":{"location":{"type":"string","description":"City and country e.g. Bogotá, Colombia"}},"required":["location"],"additionalProperties":false},"strict":true}],
			"input":[
				{"role":"user","content":"What's the weather like in Paris and Bogotá today?"},
				{"type":"message","role":"assistant","content":"Let me check both."},
				{"type":"function_call","id":"fc_12345xyz","call_id":"call_12345xyz","name":"get_weather","arguments":"{\"location\":\"Paris, France\"}"},
				{"type":"function_call","id":"fc_67890abc","call_id":"call_67890abc","name":"get_weather","arguments":"{\"location\":\"Bogotá, Colombia\"}"},
				{"type":"function_call_output","call_id":"call_12345xyz","output":"22"},
				{"type":"function_call_output","call_id":"call_67890abc","output":[{"type":"input_text","text":"18"}]}]}`,
		canonical: `{"model":"gpt-4.1","parallel_tool_calls":false,"tool_choice":"required",
			"tools":[{"type":"function","function":{"name":"get_weather","description":"Get current temperature for a given location.",
				"parameters":{"type":"object","properties":{"location":{"type":"string","description":"City and country e.g. Bogotá, Colombia"}},"required":["location"],"additionalProperties":false},"strict":true}}],
			"messages":[
				{"role":"user","content":"What's the weather like in Paris and Bogotá today?"},
				{"role":"assistant","content":"Let me check both.","tool_calls":[
					{"id":"call_12345xyz","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris, France\"}"}},
					{"id":"call_67890abc","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Bogotá, Colombia\"}"}}]},
				{"role":"tool","tool_call_id":"call_12345xyz","content":"22"},
				{"role":"tool","tool_call_id":"call_67890abc","content":"18"}]}`,
	}, {
		name: "function tool_choice; tool_choice without tools dropped",
		body: `{"model":"m","tools":[{"type":"function","name":"f","parameters":null}],"tool_choice":{"type":"function","name":"f"},
			"input":[{"type":"function_call","call_id":"c1","name":"f","arguments":""},{"type":"function_call_output","call_id":"c1","output":"ok"}]}`,
		canonical: `{"model":"m","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}},
			"messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
				{"role":"tool","tool_call_id":"c1","content":"ok"}]}`,
	}, {
		name:      "tool_choice without tools dropped",
		body:      `{"model":"m","tool_choice":"none","parallel_tool_calls":true,"input":"hi"}`,
		canonical: `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
	}, {
		name: "text.format json_schema",
		body: `{"model":"gpt-4o-2024-08-06","input":[{"role":"system","content":"Extract the event information."},
				{"role":"user","content":"Alice and Bob are going to a science fair on Friday."}],
			"text":{"format":{"type":"json_schema","name":"calendar_event","description":"An event",
				"schema":{"type":"object","properties":{"name":{"type":"string"},"date":{"type":"string"},"participants":{"type":"array","items":{"type":"string"}}},
					"required":["name","date","participants"],"additionalProperties":false},"strict":true}}}`,
		canonical: `{"model":"gpt-4o-2024-08-06","messages":[{"role":"system","content":"Extract the event information."},
				{"role":"user","content":"Alice and Bob are going to a science fair on Friday."}],
			"response_format":{"type":"json_schema","json_schema":{"name":"calendar_event","description":"An event",
				"schema":{"type":"object","properties":{"name":{"type":"string"},"date":{"type":"string"},"participants":{"type":"array","items":{"type":"string"}}},
					"required":["name","date","participants"],"additionalProperties":false},"strict":true}}}`,
	}, {
		name:      "text.format json_object",
		body:      `{"model":"m","input":"list as JSON","text":{"format":{"type":"json_object"}}}`,
		canonical: `{"model":"m","messages":[{"role":"user","content":"list as JSON"}],"response_format":{"type":"json_object"}}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := decodeOK(t, Responses, tt.body, tt.canonical)
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

func TestResponsesDecodeRefused(t *testing.T) {
	const head = `{"model":"gpt-4.1",`
	tests := []struct {
		name, body, param, fragment string
	}{
		{"not JSON", `[`, "", "invalid request body"},
		{"no model", `{"input":"hi"}`, "model", "required"},
		{"no input", head + `"instructions":"hi"}`, "input", "required"},
		{"previous_response_id", head + `"input":"and then?","previous_response_id":"resp_123"}`, "previous_response_id", "stateless"},
		{"conversation", head + `"input":"hi","conversation":"conv_123"}`, "conversation", "stateless"},
		{"store", head + `"input":"hi","store":true}`, "store", "stateless"},
		{"background", head + `"input":"hi","background":true}`, "background", "stateless"},
		{"prompt", head + `"input":"hi","prompt":{"id":"pmpt_123","version":"2"}}`, "prompt", "stateless"},
		{"item_reference", head + `"input":[{"type":"item_reference","id":"msg_123"}]}`, "input[0]", "stateless"},
		{"other item", head + `"input":[{"type":"computer_call_output","call_id":"c","output":{}}]}`, "input[0].type", "computer_call_output"},
		{"no role", head + `"input":[{"content":"hi"}]}`, "input[0].role", "required"},
		{"bad role", head + `"input":[{"role":"tool","content":"hi"}]}`, "input[0].role", "tool"},
		{"input_file", head + `"input":[{"role":"user","content":[{"type":"input_file","file_id":"file-6F2ksmvXxt4VdoqmHRw6kL"},{"type":"input_text","text":"summarize"}]}]}`,
			"input[0].content[0]", "input_file"},
		{"image by file_id", head + `"input":[{"role":"user","content":[{"type":"input_image","file_id":"file-abc"}]}]}`,
			"input[0].content[0]", "file_id"},
		{"image in tool output", head + `"input":[{"type":"function_call_output","call_id":"c","output":[{"type":"input_image","image_url":"https://x/y.png"}]}]}`,
			"input[0].output[0]", "images"},
		{"function_call without call_id", head + `"input":[{"type":"function_call","name":"f","arguments":"{}"}]}`, "input[0]", "call_id"},
		{"tool_choice allowed_tools", head + `"input":"hi","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[]}}`,
			"tool_choice.type", "allowed_tools"},
		{"text.format unknown", head + `"input":"hi","text":{"format":{"type":"grammar"}}}`, "text.format.type", "grammar"},
		{"json_schema without name", head + `"input":"hi","text":{"format":{"type":"json_schema","schema":{}}}}`, "text.format.name", "required"},
	}
	for _, typ := range []string{"web_search", "web_search_preview", "file_search", "computer_use_preview", "code_interpreter", "image_generation", "mcp", "custom", "local_shell"} {
		tests = append(tests, struct{ name, body, param, fragment string }{
			typ + " tool", head + `"input":"hi","tools":[{"type":"function","name":"f"},{"type":"` + typ + `"}]}`, "tools[1].type", `"` + typ + `" tools are not supported`,
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decodeRefused(t, Responses, tt.body, tt.param, tt.fragment)
		})
	}
}

func TestResponsesResponse(t *testing.T) {
	got, err := Responses.Response([]byte(completionWithTools))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	_ = json.Unmarshal(got, &raw)
	created := raw["created_at"]
	assertJSON(t, got, `{"id":"resp_abc123","object":"response","created_at":1741570283,"status":"completed","background":false,
		"error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"metadata":{},"model":"gpt-4.1-2025-04-14",
		"output":[
			{"type":"message","id":"msg_abc123_0","status":"completed","role":"assistant",
				"content":[{"type":"output_text","text":"I'll check the current weather in San Francisco for you.","annotations":[],"logprobs":[]}]},
			{"type":"function_call","id":"fc_abc123_1","call_id":"call_12345xyz","name":"get_weather","arguments":"{\"location\":\"San Francisco, CA\"}","status":"completed"}],
		"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":false,
		"temperature":null,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":null,"truncation":"disabled",
		"usage":{"input_tokens":82,"input_tokens_details":{"cached_tokens":0},"output_tokens":17,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":99}}`)
	if created != float64(1741570283) {
		t.Fatalf("created_at %v", created)
	}

	// The official SDK reads it.
	var r responses.Response
	if err := json.Unmarshal(got, &r); err != nil {
		t.Fatal(err)
	}
	if r.OutputText() != "I'll check the current weather in San Francisco for you." || r.Status != responses.ResponseStatusCompleted ||
		r.Output[1].AsFunctionCall().CallID != "call_12345xyz" || r.Usage.TotalTokens != 99 {
		t.Fatalf("SDK reads %+v", r)
	}

	got, err = Responses.Response([]byte(completionText("Once upon a", "length")))
	if err != nil {
		t.Fatal(err)
	}
	r = responses.Response{}
	if err := json.Unmarshal(got, &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != responses.ResponseStatusIncomplete || r.IncompleteDetails.Reason != "max_output_tokens" || r.OutputText() != "Once upon a" {
		t.Fatalf("cut answer %s", got)
	}

	got, _ = Responses.Response([]byte(`{"id":"x","choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}`))
	if !strings.Contains(string(got), `"content":[{"refusal":"I can't help with that.","type":"refusal"}]`) || !strings.Contains(string(got), `"usage":null`) {
		t.Fatalf("refusal %s", got)
	}

	if _, err := Responses.Response([]byte(`{"choices":[]}`)); err == nil {
		t.Error("chat.completion without choices accepted")
	}
}

func TestResponsesStream(t *testing.T) {
	events := encodeStream(t, Responses.NewStream("gpt-4.1"), realisticStream)
	const (
		msgID = "msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT_0"
		fc1   = "fc_B9MBs8CjcvOU2jLn4n570S5qMJKcT_1"
		fc2   = "fc_B9MBs8CjcvOU2jLn4n570S5qMJKcT_2"
	)
	want := []struct{ typ, fields string }{
		{"response.created", `{"response":{"id":"resp_B9MBs8CjcvOU2jLn4n570S5qMJKcT","status":"in_progress","output":[],"model":"gpt-4.1"}}`},
		{"response.in_progress", `{"response":{"status":"in_progress","output":[]}}`},
		{"response.output_item.added", `{"output_index":0,"item":{"type":"message","id":"` + msgID + `","status":"in_progress","role":"assistant","content":[]}}`},
		{"response.content_part.added", `{"item_id":"` + msgID + `","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}}`},
		{"response.output_text.delta", `{"item_id":"` + msgID + `","output_index":0,"content_index":0,"delta":"Let me check","logprobs":[]}`},
		{"response.output_text.delta", `{"item_id":"` + msgID + `","output_index":0,"content_index":0,"delta":" the weather."}`},
		{"response.output_text.done", `{"item_id":"` + msgID + `","output_index":0,"content_index":0,"text":"Let me check the weather."}`},
		{"response.content_part.done", `{"item_id":"` + msgID + `","output_index":0,"content_index":0,"part":{"type":"output_text","text":"Let me check the weather.","annotations":[],"logprobs":[]}}`},
		{"response.output_item.done", `{"output_index":0,"item":{"type":"message","id":"` + msgID + `","status":"completed","role":"assistant",
			"content":[{"type":"output_text","text":"Let me check the weather.","annotations":[],"logprobs":[]}]}}`},
		{"response.output_item.added", `{"output_index":1,"item":{"type":"function_call","id":"` + fc1 + `","call_id":"call_weather","name":"get_weather","arguments":"","status":"in_progress"}}`},
		{"response.function_call_arguments.delta", `{"item_id":"` + fc1 + `","output_index":1,"delta":"{\"location\":"}`},
		{"response.function_call_arguments.delta", `{"item_id":"` + fc1 + `","output_index":1,"delta":" \"Paris, France\"}"}`},
		{"response.function_call_arguments.done", `{"item_id":"` + fc1 + `","output_index":1,"arguments":"{\"location\": \"Paris, France\"}"}`},
		{"response.output_item.done", `{"output_index":1,"item":{"type":"function_call","id":"` + fc1 + `","call_id":"call_weather","name":"get_weather","arguments":"{\"location\": \"Paris, France\"}","status":"completed"}}`},
		{"response.output_item.added", `{"output_index":2,"item":{"type":"function_call","id":"` + fc2 + `","call_id":"call_time","name":"get_time","arguments":"","status":"in_progress"}}`},
		{"response.function_call_arguments.delta", `{"item_id":"` + fc2 + `","output_index":2,"delta":"{\"tz\":"}`},
		{"response.function_call_arguments.delta", `{"item_id":"` + fc2 + `","output_index":2,"delta":"\"Europe/Paris\"}"}`},
		{"response.function_call_arguments.done", `{"item_id":"` + fc2 + `","output_index":2,"arguments":"{\"tz\":\"Europe/Paris\"}"}`},
		{"response.output_item.done", `{"output_index":2,"item":{"type":"function_call","id":"` + fc2 + `","call_id":"call_time","name":"get_time","arguments":"{\"tz\":\"Europe/Paris\"}","status":"completed"}}`},
		{"response.completed", `{"response":{"status":"completed","usage":{"input_tokens":120,"input_tokens_details":{"cached_tokens":20},"output_tokens":45,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":165}}}`},
	}
	if len(events) != len(want) {
		t.Fatalf("events %v; want %d", eventTypes(events), len(want))
	}
	for i, w := range want {
		e := events[i]
		if e.Type != w.typ {
			t.Fatalf("event %d is %s; want %s", i, e.Type, w.typ)
		}
		var data map[string]any
		if err := json.Unmarshal([]byte(e.Data), &data); err != nil {
			t.Fatal(err)
		}
		if data["type"] != w.typ || data["sequence_number"] != float64(i) {
			t.Fatalf("event %d: %s", i, e.Data)
		}
		checkFields(t, i, data, w.fields)
	}

	// The official SDK's types decode every event, and response.completed
	// carries the whole answer.
	var final responses.Response
	for i, e := range events {
		var ev responses.ResponseStreamEventUnion
		if err := json.Unmarshal([]byte(e.Data), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != e.Type || ev.SequenceNumber != int64(i) {
			t.Fatalf("SDK reads event %d as %s #%d", i, ev.Type, ev.SequenceNumber)
		}
		if ev.Type == "response.completed" {
			final = ev.AsResponseCompleted().Response
		}
	}
	checkFinal(t, final)

	// The SDK's accumulator (written for the WebSocket transport, whose
	// events are the same) rebuilds the output from the deltas.
	var acc responses.ResponseAccumulator
	for _, e := range events {
		var ev responses.ResponsesServerEventUnion
		if err := json.Unmarshal([]byte(e.Data), &ev); err != nil {
			t.Fatal(err)
		}
		if err := acc.AddEvent(ev); err != nil {
			t.Fatalf("AddEvent(%s): %v", e.Data, err)
		}
	}
	snap := acc.Snapshot()
	if snap.TerminalEvent != "response.completed" || snap.OutputText() != "Let me check the weather." || len(snap.Output) != 3 ||
		snap.Output[2].Arguments != `{"tz":"Europe/Paris"}` || snap.Output[1].CallID != "call_weather" {
		t.Fatalf("accumulated %+v", snap)
	}
}

// checkFields checks that data holds want's fields (recursively in
// objects; arrays whole).
func checkFields(t *testing.T, i int, data map[string]any, want string) {
	t.Helper()
	var w map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	var check func(path string, got, want map[string]any)
	check = func(path string, got, want map[string]any) {
		for k, wv := range want {
			gv, ok := got[k]
			if wm, isMap := wv.(map[string]any); isMap && ok {
				if gm, gIsMap := gv.(map[string]any); gIsMap {
					check(path+"."+k, gm, wm)
					continue
				}
			}
			if !ok || !reflect.DeepEqual(gv, wv) {
				t.Fatalf("event %d: %s%s = %v; want %v", i, path, "."+k, gv, wv)
			}
		}
	}
	check("", data, w)
}

// checkFinal checks the final Response of realisticStream.
func checkFinal(t *testing.T, r responses.Response) {
	t.Helper()
	if r.Status != responses.ResponseStatusCompleted || r.OutputText() != "Let me check the weather." || len(r.Output) != 3 {
		t.Fatalf("final response %s", r.RawJSON())
	}
	for i, want := range []struct{ callID, name, args string }{
		{"call_weather", "get_weather", `{"location": "Paris, France"}`}, {"call_time", "get_time", `{"tz":"Europe/Paris"}`},
	} {
		fc := r.Output[i+1].AsFunctionCall()
		if fc.CallID != want.callID || fc.Name != want.name || fc.Arguments != want.args || fc.Status != "completed" {
			t.Errorf("function call %d: %+v", i, fc)
		}
	}
	if r.Usage.InputTokens != 120 || r.Usage.InputTokensDetails.CachedTokens != 20 || r.Usage.OutputTokens != 45 || r.Usage.TotalTokens != 165 {
		t.Errorf("usage %+v", r.Usage)
	}
}

func TestResponsesStreamEdges(t *testing.T) {
	t.Run("cut at max tokens", func(t *testing.T) {
		events := encodeStream(t, Responses.NewStream("m"), []string{textChunk("Once upon"), finishChunk("length"), usageChunk})
		last := events[len(events)-1]
		if last.Type != "response.incomplete" {
			t.Fatalf("events %v", eventTypes(events))
		}
		var ev responses.ResponseStreamEventUnion
		_ = json.Unmarshal([]byte(last.Data), &ev)
		r := ev.AsResponseIncomplete().Response
		if r.Status != "incomplete" || r.IncompleteDetails.Reason != "max_output_tokens" || r.OutputText() != "Once upon" ||
			r.Output[0].Status != "incomplete" {
			t.Fatalf("response %s", last.Data)
		}
		done := events[len(events)-2]
		if done.Type != "response.output_item.done" || !strings.Contains(done.Data, `"status":"incomplete"`) {
			t.Fatalf("item done %s", done.Data)
		}
	})
	t.Run("refusal", func(t *testing.T) {
		refusal := func(s string) string {
			return chunkHead + fmt.Sprintf(`"choices":[{"index":0,"delta":{"refusal":%q},"finish_reason":null}]}`, s)
		}
		events := encodeStream(t, Responses.NewStream("m"),
			[]string{textChunk("Well."), refusal("I can't"), refusal(" help with that."), finishChunk("stop"), usageChunk})
		want := []string{"response.created", "response.in_progress", "response.output_item.added",
			"response.content_part.added", "response.output_text.delta", "response.output_text.done", "response.content_part.done",
			"response.content_part.added", "response.refusal.delta", "response.refusal.delta", "response.refusal.done", "response.content_part.done",
			"response.output_item.done", "response.completed"}
		if got := eventTypes(events); !reflect.DeepEqual(got, want) {
			t.Fatalf("events %v", got)
		}
		var final responses.Response
		for i, e := range events {
			var ev responses.ResponseStreamEventUnion
			if err := json.Unmarshal([]byte(e.Data), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.SequenceNumber != int64(i) {
				t.Fatalf("event %d numbered %d", i, ev.SequenceNumber)
			}
			switch ev.Type {
			case "response.refusal.delta", "response.refusal.done":
				if ev.ContentIndex != 1 || ev.OutputIndex != 0 {
					t.Fatalf("%s at content %d, output %d", ev.Type, ev.ContentIndex, ev.OutputIndex)
				}
			case "response.completed":
				final = ev.AsResponseCompleted().Response
			}
		}
		if done := events[10]; !strings.Contains(done.Data, `"refusal":"I can't help with that."`) {
			t.Fatalf("refusal.done %s", done.Data)
		}
		content := final.Output[0].Content
		if len(content) != 2 || content[0].Text != "Well." || content[1].Type != "refusal" || content[1].Refusal != "I can't help with that." {
			t.Fatalf("final output %s", final.RawJSON())
		}
	})
	t.Run("no chunks", func(t *testing.T) {
		events := encodeStream(t, Responses.NewStream("m"), nil)
		want := []string{"response.created", "response.in_progress", "response.completed"}
		if got := eventTypes(events); !reflect.DeepEqual(got, want) {
			t.Fatalf("events %v", got)
		}
	})
	t.Run("fail", func(t *testing.T) {
		enc := Responses.NewStream("m")
		events, err := enc.Chunk([]byte(textChunk("Hel")))
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, enc.Fail("upstream broke")...)
		last := events[len(events)-1]
		var ev responses.ResponseStreamEventUnion
		if err := json.Unmarshal([]byte(last.Data), &ev); err != nil {
			t.Fatal(err)
		}
		r := ev.AsResponseFailed().Response
		if ev.Type != "response.failed" || r.Status != "failed" || r.Error.Code != "server_error" || r.Error.Message != "upstream broke" ||
			len(r.Output) != 1 || r.Output[0].Status != "incomplete" || ev.SequenceNumber != int64(len(events)-1) {
			t.Fatalf("failed event %s", last.Data)
		}
	})
}

func TestResponsesError(t *testing.T) {
	assertJSON(t, Responses.Error(429, "requests", "rate_limit_exceeded", "Rate limit reached"),
		`{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
	assertJSON(t, Responses.Error(502, "server_error", "", "upstream failed"),
		`{"error":{"message":"upstream failed","type":"server_error","param":null,"code":null}}`)
	assertJSON(t, RequestErrorBody(Responses, &RequestError{Param: "store", Message: "not supported"}),
		`{"error":{"message":"not supported","type":"invalid_request_error","param":"store","code":"invalid_request"}}`)
}

// TestResponsesSDK drives the codec with the official OpenAI Go SDK,
// through an HTTP server standing in for the gateway.
func TestResponsesSDK(t *testing.T) {
	var last *Request
	srv := sdkServer(t, Responses, &last)
	defer srv.Close()
	client := openai.NewClient(option.WithBaseURL(srv.URL), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	ctx := context.Background()
	params := responses.ResponseNewParams{
		Model:        "gpt-4.1",
		Instructions: openai.String("Be brief."),
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("What's the weather in Paris?", responses.EasyInputMessageRoleUser),
			responses.ResponseInputItemParamOfFunctionCall(`{"location":"Paris"}`, "call_1", "get_weather"),
			responses.ResponseInputItemParamOfFunctionCallOutput("15 degrees"),
		}},
		Tools: []responses.ToolUnionParam{responses.ToolParamOfFunction("get_weather", map[string]any{
			"type": "object", "properties": map[string]any{"location": map[string]any{"type": "string"}},
		}, false)},
		Store: openai.Bool(false),
	}
	params.Input.OfInputItemList[2].OfFunctionCallOutput.CallID = openai.String("call_1")

	t.Run("response", func(t *testing.T) {
		r, err := client.Responses.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		assertJSON(t, last.Canonical, `{"model":"gpt-4.1","messages":[{"role":"system","content":"Be brief."},
				{"role":"user","content":"What's the weather in Paris?"},
				{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},
				{"role":"tool","tool_call_id":"call_1","content":"15 degrees"}],
			"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"properties":{"location":{"type":"string"}},"type":"object"},"strict":false}}]}`)
		if r.OutputText() == "" || r.Output[1].AsFunctionCall().Name != "get_weather" {
			t.Fatalf("response %s", r.RawJSON())
		}
	})

	t.Run("stream", func(t *testing.T) {
		stream := client.Responses.NewStreaming(ctx, params)
		var final responses.Response
		n := 0
		for stream.Next() {
			ev := stream.Current()
			if ev.SequenceNumber != int64(n) {
				t.Fatalf("event %d numbered %d", n, ev.SequenceNumber)
			}
			n++
			if ev.Type == "response.completed" {
				final = ev.AsResponseCompleted().Response
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if !last.Stream {
			t.Fatal("stream not requested")
		}
		checkFinal(t, final)
	})

	t.Run("refused", func(t *testing.T) {
		p := params
		p.PreviousResponseID = openai.String("resp_123")
		_, err := client.Responses.New(ctx, p)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != "previous_response_id" ||
			!strings.Contains(apiErr.Message, "stateless") {
			t.Fatalf("error %v", err)
		}
	})
}
