package provider

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// difyTarget is a dify Target for tests.
func difyTarget(base string) Target {
	spec, _ := Lookup("dify")
	return Target{Spec: spec, BaseURL: base, Key: "app-key", Model: "my-app"}
}

// difyBody builds the request NewRequest sends and returns its body.
func difyBody(t *testing.T, canonical string) ([]byte, error) {
	t.Helper()
	req, err := dify{}.NewRequest(context.Background(), difyTarget("https://api.dify.ai/v1"), Chat, []byte(canonical))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(req.Body)
}

func TestDifyURL(t *testing.T) {
	for base, want := range map[string]string{
		"https://api.dify.ai/v1":                       "https://api.dify.ai/v1/chat-messages",
		"https://api.dify.ai/v1/":                      "https://api.dify.ai/v1/chat-messages",
		"http://dify.internal:5001/v1/chat-messages":   "http://dify.internal:5001/v1/chat-messages",
		"https://proxy.example/dify/v1?team=blue":      "https://proxy.example/dify/v1/chat-messages?team=blue",
		"https://proxy.example/dify/v1/chat-messages/": "https://proxy.example/dify/v1/chat-messages",
	} {
		tg := difyTarget(base)
		tg.Headers = map[string]string{"X-Team": "blue"}
		req, err := dify{}.NewRequest(context.Background(), tg, Chat, []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if req.URL.String() != want || req.Method != http.MethodPost || req.Header.Get("Authorization") != "Bearer app-key" ||
			req.Header.Get("Content-Type") != "application/json" || req.Header.Get("X-Team") != "blue" {
			t.Errorf("%s: %s %s %v", base, req.Method, req.URL, req.Header)
		}
	}
	if _, err := (dify{}).NewRequest(context.Background(), difyTarget("dify.ai"), Chat, []byte(`{"messages":[{"role":"user","content":"hi"}]}`)); err == nil {
		t.Error("base URL without a host accepted")
	}
}

func TestDifyRequest(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"last user turn", `{"model":"my-app","messages":[
			{"role":"system","content":"Be brief."},
			{"role":"user","content":"Hello"},
			{"role":"assistant","content":"Hi!"},
			{"role":"user","content":"What is Sluice?"}],
			"temperature":0.3,"max_tokens":100,"stop":["x"],"seed":1}`,
			`{"inputs":{},"query":"What is Sluice?","response_mode":"blocking","user":"sluice","auto_generate_name":false}`},
		{"stream, user, inputs, images", `{"model":"my-app","stream":true,"stream_options":{"include_usage":true},"user":"alice",
			"inputs":{"lang":"fr","n":2},"messages":[{"role":"user","content":[
				{"type":"text","text":"Describe"},
				{"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"high"}},
				{"type":"text","text":"briefly"}]}]}`,
			`{"inputs":{"lang":"fr","n":2},"query":"Describe\nbriefly","response_mode":"streaming","user":"alice",
			"files":[{"type":"image","transfer_method":"remote_url","url":"https://example.com/a.png"}],"auto_generate_name":false}`},
		{"tool_choice without tools, text format", `{"model":"my-app","tool_choice":"none","response_format":{"type":"text"},"n":1,
			"messages":[{"role":"user","content":"hi"}]}`,
			`{"inputs":{},"query":"hi","response_mode":"blocking","user":"sluice","auto_generate_name":false}`},
	}
	for _, tt := range tests {
		got, err := difyBody(t, tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		jsonEqual(t, tt.name, got, []byte(tt.want))
	}
}

func TestDifyRequestRefused(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"tools", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}`, "dify: tools: "},
		{"n", `{"messages":[{"role":"user","content":"hi"}],"n":2}`, "dify: n: "},
		{"logprobs", `{"messages":[{"role":"user","content":"hi"}],"logprobs":true}`, "dify: logprobs: "},
		{"json mode", `{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}`, "dify: response_format: "},
		{"no messages", `{"messages":[]}`, "dify: messages: "},
		{"assistant last", `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}`, "dify: messages[1]: the last message must be the user's"},
		{"tool last", `{"messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"c","content":"42"}]}`, "dify: messages[1]: "},
		{"no text", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, "dify: messages[0]: the user message has no text"},
		{"data URL", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}`,
			"dify: messages[0]: images must be http(s) URLs"},
		{"audio part", `{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}`, `dify: messages[0]: content part type "input_audio"`},
		{"inputs", `{"inputs":["a"],"messages":[{"role":"user","content":"hi"}]}`, "dify: inputs: "},
	}
	for _, tt := range tests {
		_, err := difyBody(t, tt.in)
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Type != "invalid_request_error" || !strings.HasPrefix(e.Message, tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	_, err := dify{}.NewRequest(context.Background(), difyTarget("https://api.dify.ai/v1"), Embeddings, []byte(`{"model":"m","input":"x"}`))
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || e.Message != "dify: embeddings: Dify apps have no embeddings API" {
		t.Errorf("embeddings: %v", err)
	}
}

// difyBlocking is the blocking answer of Dify's API documentation.
const difyBlocking = `{"event":"message","task_id":"c3800678-a077-43df-a102-53f23ed20b88",
	"id":"9da23599-e713-473b-982c-4328d4f5c78a","message_id":"9da23599-e713-473b-982c-4328d4f5c78a",
	"conversation_id":"45701982-8118-4bc5-8e9b-64562b4555f2","mode":"chat","answer":"iPhone 13 Pro Max specs are listed here:...",
	"metadata":{"usage":{"prompt_tokens":1033,"prompt_unit_price":"0.001","prompt_price_unit":"0.001","prompt_price":"0.0010330",
	"completion_tokens":128,"completion_unit_price":"0.002","completion_price_unit":"0.001","completion_price":"0.0002560",
	"total_tokens":1161,"total_price":"0.0012890","currency":"USD","latency":0.7682376249867957},
	"retriever_resources":[{"position":1,"dataset_id":"101b4c97","score":0.98,"content":"…"}]},"created_at":1705407629}`

func TestDifyResponse(t *testing.T) {
	out, err := dify{}.Response(Chat, []byte(difyBlocking), "my-app")
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, "chat.completion", out, []byte(`{"id":"chatcmpl-9da23599-e713-473b-982c-4328d4f5c78a","object":"chat.completion",
		"created":1705407629,"model":"my-app","choices":[{"index":0,"message":{"role":"assistant",
		"content":"iPhone 13 Pro Max specs are listed here:..."},"finish_reason":"stop"}],
		"usage":{"prompt_tokens":1033,"completion_tokens":128,"total_tokens":1161}}`))

	out, err = dify{}.Response(Chat, []byte(`{"event":"message","answer":""}`), "m")
	var cr wire.ChatResponse
	if err != nil || json.Unmarshal(out, &cr) != nil || !strings.HasPrefix(cr.ID, "chatcmpl-") || cr.Created == 0 || cr.Usage != nil {
		t.Errorf("bare answer: %s %v", out, err)
	}
	_, err = dify{}.Response(Chat, []byte(`{"event":"error","status":400,"code":"completion_request_error","message":"quota"}`), "m")
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || e.Message != "quota" {
		t.Errorf("error answer: %v", err)
	}
	if _, err := (dify{}).Response(Embeddings, []byte(`{}`), "m"); err == nil {
		t.Error("embeddings answer accepted")
	}
}

// difyDrain reads a stream to its end.
func difyDrain(s Stream) (chunks []wire.ChatChunk, err error) {
	for {
		b, err := s.Next()
		if err != nil {
			return chunks, err
		}
		var c wire.ChatChunk
		if err := json.Unmarshal(b, &c); err != nil {
			return chunks, err
		}
		chunks = append(chunks, c)
	}
}

// difyDeltas is a stream's text and finish reasons.
func difyDeltas(chunks []wire.ChatChunk) (text string, finish []string) {
	for _, c := range chunks {
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				text += *ch.Delta.Content
			}
			if ch.FinishReason != nil {
				finish = append(finish, *ch.FinishReason)
			}
		}
	}
	return text, finish
}

// difyAgentSSE is an agent app's stream, with the events Sluice skips.
const difyAgentSSE = "event: ping\n\n" +
	`data: {"event":"workflow_started","task_id":"t","workflow_run_id":"w","data":{}}` + "\n\n" +
	`data: {"event":"node_started","task_id":"t","data":{"node_type":"llm"}}` + "\n\n" +
	`data: {"event":"agent_thought","id":"th","task_id":"t","message_id":"m-1","position":1,"thought":"","tool":"search","tool_input":"{}"}` + "\n\n" +
	`data: {"event":"agent_message","task_id":"t","message_id":"m-1","conversation_id":"c","answer":"Hello","created_at":1705395332}` + "\n\n" +
	`data: {"event":"message_file","id":"f","type":"image","belongs_to":"assistant","url":"https://x/y.png","conversation_id":"c"}` + "\n\n" +
	`data: {"event":"message","task_id":"t","message_id":"m-1","conversation_id":"c","answer":"","created_at":1705395332}` + "\n\n" +
	`data: {"event":"agent_message","task_id":"t","message_id":"m-1","conversation_id":"c","answer":" world","created_at":1705395332}` + "\n\n" +
	`data: {"event":"tts_message_end","task_id":"t","message_id":"m-1","audio":""}` + "\n\n" +
	`data: {"event":"message_end","task_id":"t","id":"m-1","conversation_id":"c","metadata":{"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,"currency":"USD","latency":0.5}}}` + "\n\n" +
	`data: {"event":"workflow_finished","task_id":"t","data":{}}` + "\n\n"

func TestDifyStream(t *testing.T) {
	chunks, err := difyDrain(dify{}.Stream(strings.NewReader(difyAgentSSE), "my-app"))
	if err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if len(chunks) != 5 {
		t.Fatalf("%d chunks: %+v", len(chunks), chunks)
	}
	for _, c := range chunks {
		if c.ID != "chatcmpl-m-1" || c.Object != "chat.completion.chunk" || c.Model != "my-app" || c.Created == 0 {
			t.Errorf("chunk %+v", c)
		}
	}
	if chunks[0].Choices[0].Delta.Role != "assistant" {
		t.Errorf("first chunk %+v", chunks[0])
	}
	text, finish := difyDeltas(chunks)
	if text != "Hello world" || len(finish) != 1 || finish[0] != "stop" {
		t.Errorf("text %q, finish %v", text, finish)
	}
	last := chunks[len(chunks)-1]
	if len(last.Choices) != 0 || last.Usage == nil || last.Usage.PromptTokens != 10 || last.Usage.CompletionTokens != 2 || last.Usage.TotalTokens != 12 {
		t.Errorf("usage chunk %+v", last)
	}
}

func TestDifyStreamReplace(t *testing.T) {
	sse := `data: {"event":"message","message_id":"m","answer":"bad words"}` + "\n\n" +
		`data: {"event":"message_replace","message_id":"m","answer":"I cannot answer that."}` + "\n\n" +
		`data: {"event":"message_end","id":"m","metadata":{"usage":{"prompt_tokens":3,"completion_tokens":2}}}` + "\n\n"
	chunks, err := difyDrain(dify{}.Stream(strings.NewReader(sse), "m"))
	text, finish := difyDeltas(chunks)
	if err != io.EOF || text != "bad wordsI cannot answer that." || len(finish) != 1 || finish[0] != "content_filter" {
		t.Errorf("%v: %q %v", err, text, finish)
	}
	if u := chunks[len(chunks)-1].Usage; u == nil || u.TotalTokens != 5 {
		t.Errorf("usage %+v", u)
	}
}

func TestDifyStreamEnds(t *testing.T) {
	tests := []struct {
		name, sse string
		check     func(error) bool
	}{
		{"cut", `data: {"event":"message","message_id":"m","answer":"Hel"}` + "\n\n", func(err error) bool { return err == io.ErrUnexpectedEOF }},
		{"error event", `data: {"event":"message","message_id":"m","answer":"Hel"}` + "\n\n" +
			`data: {"event":"error","task_id":"t","message_id":"m","status":429,"code":"rate_limit_error","message":"Rate Limit Error"}` + "\n\n",
			func(err error) bool {
				var e *Error
				return errors.As(err, &e) && e.Status == 429 && e.Type == "requests" && e.Message == "Rate Limit Error"
			}},
		{"error without status", `data: {"event":"error","code":"completion_request_error","message":""}` + "\n\n",
			func(err error) bool {
				var e *Error
				return errors.As(err, &e) && e.Status == 0 && e.Type == "server_error" && e.Message == "dify: completion_request_error"
			}},
		{"bad JSON", "data: {nope\n\n", func(err error) bool { return err != nil && strings.Contains(err.Error(), "dify: decode stream event") }},
		{"empty answer", `data: {"event":"message_end","id":"m","metadata":{}}` + "\n\n", func(err error) bool { return err == io.EOF }},
	}
	for _, tt := range tests {
		_, err := difyDrain(dify{}.Stream(strings.NewReader(tt.sse), "m"))
		if !tt.check(err) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	chunks, _ := difyDrain(dify{}.Stream(strings.NewReader(tests[4].sse), "m"))
	if _, finish := difyDeltas(chunks); len(chunks) != 2 || len(finish) != 1 || chunks[0].Choices[0].Delta.Role != "assistant" {
		t.Errorf("empty answer: %+v", chunks)
	}
}

func TestDifyError(t *testing.T) {
	tests := []struct {
		status           int
		body             string
		typ, code, inMsg string
	}{
		{401, `{"code":"unauthorized","message":"Access token is invalid","status":401}`, "authentication_error", "invalid_api_key", "Access token is invalid"},
		{400, `{"code":"app_unavailable","message":"App unavailable, please check your app configurations.","status":400}`,
			"invalid_request_error", "app_unavailable", "App unavailable"},
		{400, `{"code":"provider_quota_exceeded","message":"Your quota for Dify Hosted Model Provider has been exhausted.","status":400}`,
			"invalid_request_error", "provider_quota_exceeded", "quota"},
		{403, `{"code":"forbidden","message":"The app's API service has been disabled.","status":403}`, "permission_error", "forbidden", "disabled"},
		{404, `{"code":"not_found","message":"Conversation Not Exists.","status":404}`, "not_found_error", "not_found", "Conversation"},
		{429, `{"code":"rate_limit_error","message":"Rate Limit Error","status":429}`, "requests", "rate_limit_exceeded", "Rate Limit"},
		{500, `{"code":"internal_server_error","message":"The server encountered an internal error.","status":500}`, "server_error", "internal_server_error", "internal error"},
		{502, `<html>Bad Gateway</html>`, "server_error", "", "dify answered HTTP 502: <html>Bad Gateway</html>"},
	}
	for _, tt := range tests {
		var e wire.ErrorBody
		out := dify{}.Error(tt.status, []byte(tt.body))
		if err := json.Unmarshal(out, &e); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		code := ""
		if e.Error.Code != nil {
			code = *e.Error.Code
		}
		if e.Error.Type != tt.typ || code != tt.code || !strings.Contains(e.Error.Message, tt.inMsg) {
			t.Errorf("%d %s: %s", tt.status, tt.body, out)
		}
	}
}

// TestDifyRoundTrip sends blocking and streamed chats through the mock's
// Dify API and translates the answers back; a wrong app key is refused.
func TestDifyRoundTrip(t *testing.T) {
	srv := mock.New(mock.Config{Keys: []string{"app-key"}, ReplyTokens: 7, StreamChunks: 3})
	client := &http.Client{Transport: mock.Transport(srv)}
	send := func(tg Target, body string) *http.Response {
		t.Helper()
		req, err := dify{}.NewRequest(context.Background(), tg, Chat, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	tg := difyTarget("http://dify.test/v1")
	msgs := `"messages":[{"role":"system","content":"ignored"},{"role":"user","content":[{"type":"text","text":"What is Sluice?"},
		{"type":"image_url","image_url":{"url":"https://example.com/diagram.png"}}]}]`

	resp := send(tg, `{"model":"my-app",`+msgs+`}`)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("blocking: %d %s", resp.StatusCode, body)
	}
	out, err := dify{}.Response(Chat, body, "my-app")
	var cr wire.ChatResponse
	if err != nil || json.Unmarshal(out, &cr) != nil {
		t.Fatalf("%s: %v", out, err)
	}
	whole := string(cr.Choices[0].Message.Content)
	if len(cr.Choices) != 1 || len(strings.Fields(whole)) != 7 || cr.Usage == nil || cr.Usage.CompletionTokens != 7 || cr.Usage.PromptTokens < 85 {
		t.Errorf("chat.completion %s", out)
	}

	resp = send(tg, `{"model":"my-app","stream":true,`+msgs+`}`)
	if resp.StatusCode != 200 {
		t.Fatalf("streaming: %d", resp.StatusCode)
	}
	chunks, err := difyDrain(dify{}.Stream(resp.Body, "my-app"))
	text, finish := difyDeltas(chunks)
	if err != io.EOF || `"`+text+`"` != whole || len(finish) != 1 || finish[0] != "stop" {
		t.Errorf("stream %v: %q vs %s, %v", err, text, whole, finish)
	}
	if u := chunks[len(chunks)-1].Usage; u == nil || *u != *cr.Usage {
		t.Errorf("stream usage %+v, blocking %+v", u, cr.Usage)
	}

	tg.Key = "app-wrong"
	resp = send(tg, `{"model":"my-app",`+msgs+`}`)
	body, _ = io.ReadAll(resp.Body)
	var e wire.ErrorBody
	if resp.StatusCode != 401 || json.Unmarshal(dify{}.Error(resp.StatusCode, body), &e) != nil || e.Error.Type != "authentication_error" ||
		e.Error.Message != "Access token is invalid" {
		t.Errorf("wrong key: %d %s", resp.StatusCode, body)
	}
}

// FuzzDify feeds arbitrary bytes to the dify adapter as a canonical
// request, a blocking answer, a stream and an error body: none may panic,
// and what it accepts comes out as valid JSON.
func FuzzDify(f *testing.F) {
	for _, s := range []string{difyBlocking, difyAgentSSE, `{"model":"m","messages":[{"role":"user","content":"hi"}],"inputs":{"a":1}}`,
		`{"code":"unauthorized","message":"m","status":401}`, `{`, ``, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if req, err := (dify{}).NewRequest(context.Background(), difyTarget("https://api.dify.ai/v1"), Chat, []byte(body)); err == nil {
			if out, _ := io.ReadAll(req.Body); !json.Valid(out) {
				t.Fatalf("request became invalid JSON %q", out)
			}
		}
		if out, err := (dify{}).Response(Chat, []byte(body), "m"); err == nil && !json.Valid(out) {
			t.Fatalf("answer became invalid JSON %q", out)
		}
		s := dify{}.Stream(strings.NewReader(body), "m")
		for range 1000 {
			chunk, err := s.Next()
			if err != nil {
				break
			}
			if !json.Valid(chunk) {
				t.Fatalf("invalid chunk %q", chunk)
			}
		}
		var e wire.ErrorBody
		if err := json.Unmarshal(dify{}.Error(400, []byte(body)), &e); err != nil || e.Error.Message == "" {
			t.Fatalf("error body for %q: %v", body, err)
		}
	})
}
