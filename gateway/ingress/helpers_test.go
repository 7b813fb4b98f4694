package ingress

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// assertJSON fails unless got and want are the same JSON value.
func assertJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want invalid JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		gi, _ := json.MarshalIndent(g, "", "  ")
		wi, _ := json.MarshalIndent(w, "", "  ")
		t.Fatalf("JSON differs\n got: %s\nwant: %s", gi, wi)
	}
}

// decodeOK decodes a client request that must be accepted, and checks its
// canonical form.
func decodeOK(t *testing.T, c Codec, body, canonical string) *Request {
	t.Helper()
	r, err := c.Decode([]byte(body))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	assertJSON(t, r.Canonical, canonical)
	return r
}

// decodeRefused decodes a client request that must be refused, and checks
// the parameter named and a fragment of the message.
func decodeRefused(t *testing.T, c Codec, body, param, fragment string) {
	t.Helper()
	r, err := c.Decode([]byte(body))
	var re *RequestError
	if !errors.As(err, &re) {
		t.Fatalf("Decode = %v, %v; want a *RequestError", r, err)
	}
	if re.Param != param || !strings.Contains(re.Message, fragment) {
		t.Fatalf("refused with %q %q; want param %q and a message containing %q", re.Param, re.Message, param, fragment)
	}
}

// encodeStream feeds chunks to an encoder and ends the stream.
func encodeStream(t *testing.T, enc StreamEncoder, chunks []string) []Event {
	t.Helper()
	var events []Event
	for _, c := range chunks {
		ev, err := enc.Chunk([]byte(c))
		if err != nil {
			t.Fatalf("Chunk(%s): %v", c, err)
		}
		events = append(events, ev...)
	}
	return append(events, enc.End()...)
}

// eventTypes lists the events' types.
func eventTypes(events []Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Type
	}
	return out
}

// writeSSE writes events as a server-sent event stream, the way the
// gateway will.
// sdkServer stands in for the gateway in front of one codec: it decodes
// each request (refusals get the codec's 400), answers completionWithTools
// or streams realisticStream, and keeps the last decoded request in *last.
func sdkServer(t *testing.T, c Codec, last **Request) *httptest.Server {
	t.Helper()
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := c.Decode(body)
		if err != nil {
			var re *RequestError
			errors.As(err, &re)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write(RequestErrorBody(c, re))
			return
		}
		*last = req
		if !req.Stream {
			out, err := c.Response([]byte(completionWithTools))
			if err != nil {
				t.Error(err)
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(out)
			return
		}
		writeSSE(w, encodeStream(t, c.NewStream(req.Model), realisticStream))
	}))
}

func writeSSE(w http.ResponseWriter, events []Event) {
	w.Header().Set("Content-Type", "text/event-stream")
	for _, e := range events {
		if e.Type != "" {
			fmt.Fprintf(w, "event: %s\n", e.Type)
		}
		fmt.Fprintf(w, "data: %s\n\n", e.Data)
	}
}

// textChunk, toolChunk... build canonical chunks like an OpenAI upstream's.
const chunkHead = `{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4.1-2025-04-14",`

func textChunk(s string) string {
	return chunkHead + fmt.Sprintf(`"choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`, s)
}

func toolStart(index int, id, name string) string {
	return chunkHead + fmt.Sprintf(`"choices":[{"index":0,"delta":{"tool_calls":[{"index":%d,"id":%q,"type":"function","function":{"name":%q,"arguments":""}}]},"finish_reason":null}]}`, index, id, name)
}

func toolArgs(index int, args string) string {
	return chunkHead + fmt.Sprintf(`"choices":[{"index":0,"delta":{"tool_calls":[{"index":%d,"function":{"arguments":%q}}]},"finish_reason":null}]}`, index, args)
}

func finishChunk(reason string) string {
	return chunkHead + fmt.Sprintf(`"choices":[{"index":0,"delta":{},"finish_reason":%q}]}`, reason)
}

const usageChunk = chunkHead + `"choices":[],"usage":{"prompt_tokens":120,"completion_tokens":45,"total_tokens":165,"prompt_tokens_details":{"cached_tokens":20},"completion_tokens_details":{"reasoning_tokens":0}}}`

// realisticStream is an upstream's answer: text, then two tool calls
// whose arguments come in fragments, the finish, and the usage chunk.
var realisticStream = []string{
	chunkHead + `"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}]}`,
	textChunk("Let me check"),
	textChunk(" the weather."),
	toolStart(0, "call_weather", "get_weather"),
	toolArgs(0, `{"location":`),
	toolArgs(0, ` "Paris, France"}`),
	toolStart(1, "call_time", "get_time"),
	toolArgs(1, `{"tz":`),
	toolArgs(1, `"Europe/Paris"}`),
	finishChunk("tool_calls"),
	usageChunk,
}

// completionWithTools is a chat.completion with text and a tool call.
const completionWithTools = `{
  "id": "chatcmpl-abc123", "object": "chat.completion", "created": 1741570283, "model": "gpt-4.1-2025-04-14",
  "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
    "role": "assistant", "content": "I'll check the current weather in San Francisco for you.", "refusal": null,
    "tool_calls": [{"id": "call_12345xyz", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\"}"}}]
  }}],
  "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99, "prompt_tokens_details": {"cached_tokens": 0}}
}`

// completionText is a chat.completion with text only and the finish given.
func completionText(text, finish string) string {
	return fmt.Sprintf(`{"id":"chatcmpl-xyz","object":"chat.completion","created":1741570283,"model":"gpt-4o",
"choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":%q}],
"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`, text, finish)
}
