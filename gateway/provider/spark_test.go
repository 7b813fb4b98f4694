package provider

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

var sparkTestKey = mock.SparkKey{AppID: "app", APIKey: "key", APISecret: "secret"}

// sparkMock serves a mock accepting sparkTestKey over a socket.
func sparkMock(t *testing.T, cfg mock.Config) *httptest.Server {
	t.Helper()
	cfg.Spark = []mock.SparkKey{sparkTestKey}
	ts := httptest.NewServer(mock.New(cfg))
	t.Cleanup(ts.Close)
	return ts
}

// sparkTarget is a Spark Target for tests, with sparkTestKey.
func sparkTarget(base, model string) Target {
	return Target{Spec: Spec{Type: "xinghuo", API: APISpark}, BaseURL: base, Model: model,
		Key: sparkTestKey.APIKey, AppID: sparkTestKey.AppID, APISecret: sparkTestKey.APISecret}
}

// sparkChatBody is a canonical chat request asking one question.
const sparkChatBody = `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"}]}`

// sparkExchange runs one exchange with a background context.
func sparkExchange(t *testing.T, tg Target, body string, stream bool) (*Reply, error) {
	t.Helper()
	return spark{}.Exchange(context.Background(), &http.Client{}, tg, Chat, []byte(body), stream)
}

// sparkDrain reads a stream to its end.
func sparkDrain(s Stream) (chunks []wire.ChatChunk, err error) {
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

// sparkStreamText reassembles the content of chunks.
func sparkStreamText(chunks []wire.ChatChunk) string {
	var b strings.Builder
	for _, c := range chunks {
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				b.WriteString(*ch.Delta.Content)
			}
		}
	}
	return b.String()
}

func TestSparkModels(t *testing.T) {
	for _, tc := range []struct{ model, path, domain string }{
		{"lite", "/v1.1/chat", "lite"},
		{"Spark-Lite", "/v1.1/chat", "lite"},
		{"general", "/v1.1/chat", "lite"},
		{"spark-v2.0", "/v2.1/chat", "generalv2"},
		{"generalv2", "/v2.1/chat", "generalv2"},
		{"pro", "/v3.1/chat", "generalv3"},
		{"spark-pro", "/v3.1/chat", "generalv3"},
		{"generalv3", "/v3.1/chat", "generalv3"},
		{"pro-128k", "/chat/pro-128k", "pro-128k"},
		{"spark-pro-128k", "/chat/pro-128k", "pro-128k"},
		{"max", "/v3.5/chat", "generalv3.5"},
		{"spark-max", "/v3.5/chat", "generalv3.5"},
		{"spark3.5-max", "/v3.5/chat", "generalv3.5"},
		{"generalv3.5", "/v3.5/chat", "generalv3.5"},
		{"max-32k", "/chat/max-32k", "max-32k"},
		{"spark-max-32k", "/chat/max-32k", "max-32k"},
		{"4.0Ultra", "/v4.0/chat", "4.0Ultra"},
		{"ultra", "/v4.0/chat", "4.0Ultra"},
		{"spark-4.0-ultra", "/v4.0/chat", "4.0Ultra"},
		{"Spark4.0-Ultra", "/v4.0/chat", "4.0Ultra"},
	} {
		u, domain, err := sparkEndpoint("", tc.model)
		if err != nil {
			t.Errorf("%s: %v", tc.model, err)
			continue
		}
		if want := "wss://spark-api.xf-yun.com" + tc.path; u.String() != want || domain != tc.domain {
			t.Errorf("%s: got %s %q, want %s %q", tc.model, u, domain, want, tc.domain)
		}
	}
	for _, model := range []string{"gpt-4o", "", "spark"} {
		_, _, err := sparkEndpoint("", model)
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Type != "invalid_request_error" ||
			!strings.Contains(e.Message, "generalv3.5") {
			t.Errorf("%q: got %v, want a 400 naming the known models", model, err)
		}
	}
}

func TestSparkEndpointURL(t *testing.T) {
	for _, tc := range []struct{ base, model, want, domain string }{
		{"", "max", "wss://spark-api.xf-yun.com/v3.5/chat", "generalv3.5"},
		{"wss://spark-api.xf-yun.com/", "lite", "wss://spark-api.xf-yun.com/v1.1/chat", "lite"},
		{"https://spark-api.xf-yun.com", "pro", "wss://spark-api.xf-yun.com/v3.1/chat", "generalv3"},
		{"http://127.0.0.1:8080/prefix/", "max-32k", "ws://127.0.0.1:8080/prefix/chat/max-32k", "max-32k"},
		{"ws://h?x=1#f", "pro-128k", "ws://h/chat/pro-128k", "pro-128k"},
		// A base URL naming the endpoint is called as is; the model still
		// picks the domain.
		{"wss://spark-api.xf-yun.com/v3.5/chat", "spark3.5-max", "wss://spark-api.xf-yun.com/v3.5/chat", "generalv3.5"},
		{"wss://spark-api.xf-yun.com/v3.5/chat/", "lite", "wss://spark-api.xf-yun.com/v3.5/chat", "lite"},
		{"https://spark-api.xf-yun.com/chat/max-32k", "max-32k", "wss://spark-api.xf-yun.com/chat/max-32k", "max-32k"},
		// There, a model the table does not know is the domain itself.
		{"wss://spark-openapi-n.cn-huabei-1.xf-yun.com/v1.1/chat_kjwx", "kjwx", "wss://spark-openapi-n.cn-huabei-1.xf-yun.com/v1.1/chat_kjwx", "kjwx"},
	} {
		u, domain, err := sparkEndpoint(tc.base, tc.model)
		if err != nil {
			t.Errorf("%s %s: %v", tc.base, tc.model, err)
			continue
		}
		if u.String() != tc.want || domain != tc.domain {
			t.Errorf("%s %s: got %s %q, want %s %q", tc.base, tc.model, u, domain, tc.want, tc.domain)
		}
	}
	for _, base := range []string{"ftp://spark-api.xf-yun.com", "spark-api.xf-yun.com", "://x"} {
		if _, _, err := sparkEndpoint(base, "max"); err == nil {
			t.Errorf("%s: no error", base)
		}
	}
}

func TestSparkSign(t *testing.T) {
	now := time.Date(2024, 5, 14, 8, 0, 0, 0, time.UTC)
	u, _, err := sparkEndpoint("", "max")
	if err != nil {
		t.Fatal(err)
	}
	// Computed independently (Python hmac, base64 and urlencode).
	const want = "wss://spark-api.xf-yun.com/v3.5/chat?authorization=YXBpX2tleT0ia2V5IiwgYWxnb3JpdGhtPSJobWFjLXNoYTI1NiIsIGhlYWRlcnM9Imhvc3QgZGF0ZSByZXF1ZXN0LWxpbmUiLCBzaWduYXR1cmU9InQ2MWpQeEtIeUFSVUR1ME92bDg0RkNYYW0zTmV4UHBOc0p2VnNVR3gxRlU9Ig%3D%3D&date=Tue%2C+14+May+2024+08%3A00%3A00+GMT&host=spark-api.xf-yun.com"
	if got := sparkSign(u, "key", "secret", now); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// The mock's signer agrees, with a port and a path prefix too.
	for _, base := range []string{"wss://spark-api.xf-yun.com", "http://127.0.0.1:8443/proxy"} {
		u, _, err := sparkEndpoint(base, "pro-128k")
		if err != nil {
			t.Fatal(err)
		}
		other, err := mock.SparkURL(base, "/chat/pro-128k", "key", "secret", now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if got := sparkSign(u, "key", "secret", now.Add(time.Hour)); got != other {
			t.Errorf("%s: got %s, the mock signs %s", base, got, other)
		}
	}
}

// sparkFrameJSON translates a canonical body and returns the frame.
func sparkFrameJSON(t *testing.T, body string) ([]byte, error) {
	t.Helper()
	req, err := sparkChatRequest([]byte(body), "app", "generalv3.5")
	if err != nil {
		return nil, err
	}
	return json.Marshal(req)
}

func TestSparkRequest(t *testing.T) {
	const head = `"header":{"app_id":"app","uid":"sluice"}`
	for _, tc := range []struct{ name, in, want string }{
		{
			name: "system lifted",
			in: `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"system","content":"A"},
				{"role":"developer","content":[{"type":"text","text":"B"}]},{"role":"assistant","content":"yo"},
				{"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]}],
				"max_tokens":100,"max_completion_tokens":50,"temperature":0.7,"top_p":0.5,"stop":["x"],"seed":1,"user":"u-1"}`,
			want: `{"header":{"app_id":"app","uid":"u-1"},"parameter":{"chat":{"domain":"generalv3.5","temperature":0.7,"max_tokens":50}},
				"payload":{"message":{"text":[{"role":"system","content":"A\n\nB"},{"role":"user","content":"hi"},
				{"role":"assistant","content":"yo"},{"role":"user","content":"one\ntwo"}]}}}`,
		},
		{
			name: "temperature 0 is greedy",
			in:   `{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}`,
			want: `{` + head + `,"parameter":{"chat":{"domain":"generalv3.5","temperature":0.01,"top_k":1}},
				"payload":{"message":{"text":[{"role":"user","content":"hi"}]}}}`,
		},
		{
			name: "temperature clamped",
			in:   `{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1.8,"max_tokens":64}`,
			want: `{` + head + `,"parameter":{"chat":{"domain":"generalv3.5","temperature":1,"max_tokens":64}},
				"payload":{"message":{"text":[{"role":"user","content":"hi"}]}}}`,
		},
		{
			name: "long user hashed",
			in:   `{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"` + strings.Repeat("u", 40) + `"}`,
			want: `{"header":{"app_id":"app","uid":"bda980c890944a540ffcbb4a040e2d3b"},"parameter":{"chat":{"domain":"generalv3.5"}},
				"payload":{"message":{"text":[{"role":"user","content":"hi"}]}}}`,
		},
		{
			name: "tools and results",
			in: `{"model":"m","messages":[{"role":"user","content":"weather?"},
				{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},
				{"role":"tool","tool_call_id":"call_1","content":"sunny"},
				{"role":"assistant","content":"Let me check.","tool_calls":[{"id":"call_2","type":"function","function":{"name":"now","arguments":"not json"}}]},
				{"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"noon"}]}],
				"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
				{"type":"function","function":{"name":"now"}}],"tool_choice":"auto","parallel_tool_calls":false}`,
			want: `{` + head + `,"parameter":{"chat":{"domain":"generalv3.5"}},"payload":{"message":{"text":[
				{"role":"user","content":"weather?"},
				{"role":"assistant","content":"{\"function_call\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}"},
				{"role":"tool","content":"sunny"},
				{"role":"assistant","content":"Let me check.\n{\"function_call\":{\"name\":\"now\",\"arguments\":\"not json\"}}"},
				{"role":"tool","content":"noon"}]},
				"functions":{"text":[{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},
				{"name":"now","parameters":{"type":"object","properties":{}}}]}}}`,
		},
		{
			name: "tool_choice none",
			in: `{"model":"m","messages":[{"role":"user","content":"hi"}],"tool_choice":"none",
				"tools":[{"type":"function","function":{"name":"f"}}]}`,
			want: `{` + head + `,"parameter":{"chat":{"domain":"generalv3.5"}},"payload":{"message":{"text":[{"role":"user","content":"hi"}]}}}`,
		},
		{
			name: "tool_choice names a function",
			in: `{"model":"m","messages":[{"role":"user","content":"hi"}],"tool_choice":{"type":"function","function":{"name":"g"}},
				"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"g","parameters":{"type":"object"}}}]}`,
			want: `{` + head + `,"parameter":{"chat":{"domain":"generalv3.5"}},"payload":{"message":{"text":[{"role":"user","content":"hi"}]},
				"functions":{"text":[{"name":"g","parameters":{"type":"object"}}]}}}`,
		},
		{
			name: "empty messages dropped",
			in: `{"model":"m","messages":[{"role":"system","content":""},{"role":"user","content":"hi"},
				{"role":"assistant","content":null},{"role":"assistant","content":[{"type":"refusal","refusal":"no"}]}]}`,
			want: `{` + head + `,"parameter":{"chat":{"domain":"generalv3.5"}},"payload":{"message":{"text":[{"role":"user","content":"hi"}]}}}`,
		},
	} {
		got, err := sparkFrameJSON(t, tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		jsonEqual(t, tc.name, got, []byte(tc.want))
	}
}

func TestSparkRequestRefused(t *testing.T) {
	const user = `{"role":"user","content":"hi"}`
	for _, tc := range []struct{ name, in, want string }{
		{"n", `{"messages":[` + user + `],"n":2}`, "n:"},
		{"response_format", `{"messages":[` + user + `],"response_format":{"type":"json_object"}}`, "response_format"},
		{"logprobs", `{"messages":[` + user + `],"logprobs":true}`, "logprobs"},
		{"audio", `{"messages":[` + user + `],"audio":{"voice":"alloy"}}`, "audio"},
		{"modalities", `{"messages":[` + user + `],"modalities":["text","audio"]}`, "modalities"},
		{"functions", `{"messages":[` + user + `],"functions":[{"name":"f"}]}`, "legacy"},
		{"image", `{"messages":[{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, "messages[0]: content[1]: images are not supported"},
		{"audio part", `{"messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`, "input_audio"},
		{"role", `{"messages":[{"role":"function","name":"f","content":"x"}]}`, `role "function"`},
		{"no messages", `{"messages":[]}`, "at least one"},
		{"only system", `{"messages":[{"role":"system","content":"x"}]}`, "at least one"},
		{"tool type", `{"messages":[` + user + `],"tools":[{"type":"web_search"}]}`, "tools[0]"},
		{"tool name", `{"messages":[` + user + `],"tools":[{"type":"function","function":{}}]}`, "tools[0]"},
		{"tool_choice unknown function", `{"messages":[` + user + `],"tool_choice":{"type":"function","function":{"name":"g"}},"tools":[{"type":"function","function":{"name":"f"}}]}`, `"g"`},
		{"tool_choice mode", `{"messages":[` + user + `],"tool_choice":"sometimes","tools":[{"type":"function","function":{"name":"f"}}]}`, "sometimes"},
		{"tool call type", `{"messages":[{"role":"assistant","tool_calls":[{"type":"custom","function":{"name":"f"}}]}]}`, "tool_calls[0]"},
		{"bad json", `{"messages":`, "decode"},
	} {
		_, err := spark{}.Exchange(context.Background(), nil, sparkTarget("ws://127.0.0.1:1", "max"), Chat, []byte(tc.in), false)
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Type != "invalid_request_error" ||
			!strings.HasPrefix(e.Message, "spark: ") || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: got %v, want a 400 mentioning %q", tc.name, err, tc.want)
		}
	}
	_, err := spark{}.Exchange(context.Background(), nil, sparkTarget("", "max"), Embeddings, []byte(`{"input":"x"}`), false)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Message, "embeddings") {
		t.Errorf("embeddings: got %v", err)
	}
	if _, err := (spark{}).NewRequest(context.Background(), sparkTarget("", "max"), Chat, nil); err == nil ||
		!strings.Contains(err.Error(), "Exchange") {
		t.Errorf("NewRequest: got %v", err)
	}
}

// sparkChat decodes a chat.completion reply.
func sparkChat(t *testing.T, r *Reply) wire.ChatResponse {
	t.Helper()
	if r == nil || r.Status != http.StatusOK || r.Stream != nil {
		t.Fatalf("got reply %+v, want a 200 body", r)
	}
	var resp wire.ChatResponse
	if err := json.Unmarshal(r.Body, &resp); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	return resp
}

func TestSparkExchange(t *testing.T) {
	ts := sparkMock(t, mock.Config{})
	// Every model the mock serves: a wrong path, domain or signature would
	// be refused.
	for _, model := range []string{"lite", "generalv3", "pro-128k", "spark3.5-max", "max-32k", "4.0Ultra"} {
		tg := sparkTarget(ts.URL, model)
		r, err := sparkExchange(t, tg, sparkChatBody, false)
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		resp := sparkChat(t, r)
		c := resp.Choices[0]
		text := c.Message.Text()
		if !strings.HasPrefix(resp.ID, "chatcmpl-cht") || resp.Object != "chat.completion" || resp.Model != model ||
			c.Message.Role != "assistant" || text == "" || c.FinishReason != "stop" || c.Message.ToolCalls != nil {
			t.Errorf("%s: got %s", model, r.Body)
		}
		if u := resp.Usage; u == nil || u.PromptTokens == 0 || u.CompletionTokens == 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
			t.Errorf("%s: usage %+v", model, u)
		}

		r, err = sparkExchange(t, tg, sparkChatBody, true)
		if err != nil || r.Status != http.StatusOK || r.Stream == nil {
			t.Fatalf("%s stream: %+v, %v", model, r, err)
		}
		chunks, err := sparkDrain(r.Stream)
		if err != io.EOF {
			t.Fatalf("%s stream: ended with %v", model, err)
		}
		if _, err := r.Stream.Next(); err != io.EOF {
			t.Errorf("%s stream: Next after the end: %v", model, err)
		}
		if got := sparkStreamText(chunks); got != text {
			t.Errorf("%s stream: text %q, want %q", model, got, text)
		}
		if len(chunks) < 10 { // 8 content frames, the finish, the usage
			t.Fatalf("%s stream: %d chunks", model, len(chunks))
		}
		first, fin, last := chunks[0], chunks[len(chunks)-2], chunks[len(chunks)-1]
		if d := first.Choices[0].Delta; d.Role != "assistant" || d.Content == nil || *d.Content == "" {
			t.Errorf("%s stream: first chunk %+v", model, first)
		}
		for _, c := range chunks[1 : len(chunks)-1] {
			if len(c.Choices) != 1 || c.Choices[0].Delta.Role != "" || c.ID != first.ID || c.Object != "chat.completion.chunk" || c.Model != model {
				t.Errorf("%s stream: chunk %+v", model, c)
			}
		}
		if f := fin.Choices[0].FinishReason; f == nil || *f != "stop" {
			t.Errorf("%s stream: finish chunk %+v", model, fin)
		}
		if len(last.Choices) != 0 || last.Usage == nil || *last.Usage != *resp.Usage {
			t.Errorf("%s stream: usage chunk %+v, want usage %+v", model, last, resp.Usage)
		}
		if err := r.Stream.(io.Closer).Close(); err != nil {
			t.Errorf("%s stream: Close after the end: %v", model, err)
		}
	}
}

func TestSparkExchangeTools(t *testing.T) {
	ts := sparkMock(t, mock.Config{})
	tg := sparkTarget(ts.URL, "max")
	const tools = `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]`
	body := `{"model":"max","messages":[{"role":"user","content":"Weather in Paris?"}],` + tools + `}`

	r, err := sparkExchange(t, tg, body, false)
	if err != nil {
		t.Fatal(err)
	}
	resp := sparkChat(t, r)
	c := resp.Choices[0]
	if c.FinishReason != "tool_calls" || string(c.Message.Content) != "null" || len(c.Message.ToolCalls) != 1 {
		t.Fatalf("got %s", r.Body)
	}
	call := c.Message.ToolCalls[0]
	if !strings.HasPrefix(call.ID, "call_") || call.Type != "function" || call.Function.Name != "get_weather" ||
		call.Function.Arguments != `{"city":"sample"}` {
		t.Errorf("tool call %+v", call)
	}

	r, err = sparkExchange(t, tg, body, true)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := sparkDrain(r.Stream)
	if err != io.EOF || len(chunks) != 3 {
		t.Fatalf("stream: %d chunks, %v", len(chunks), err)
	}
	d := chunks[0].Choices[0].Delta
	if d.Role != "assistant" || len(d.ToolCalls) != 1 || d.ToolCalls[0].Index == nil || *d.ToolCalls[0].Index != 0 ||
		d.ToolCalls[0].Function.Name != "get_weather" || d.ToolCalls[0].Function.Arguments != `{"city":"sample"}` ||
		!strings.HasPrefix(d.ToolCalls[0].ID, "call_") {
		t.Errorf("stream: tool call chunk %+v", chunks[0])
	}
	if f := chunks[1].Choices[0].FinishReason; f == nil || *f != "tool_calls" {
		t.Errorf("stream: finish %+v", chunks[1])
	}

	// The call's result, sent back as a tool message, gets a text answer.
	args, _ := json.Marshal(call.Function.Arguments)
	body = `{"model":"max","messages":[{"role":"user","content":"Weather in Paris?"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"` + call.ID + `","type":"function","function":{"name":"get_weather","arguments":` + string(args) + `}}]},
		{"role":"tool","tool_call_id":"` + call.ID + `","content":"sunny, 21°C"}],` + tools + `}`
	r, err = sparkExchange(t, tg, body, false)
	if err != nil {
		t.Fatal(err)
	}
	if c := sparkChat(t, r).Choices[0]; c.FinishReason != "stop" || c.Message.Text() == "" {
		t.Errorf("after the tool result: %s", r.Body)
	}
}

// sparkErrorBody decodes an OpenAI error reply.
func sparkErrorBody(t *testing.T, r *Reply, status int) wire.ErrorDetail {
	t.Helper()
	if r == nil || r.Status != status || r.Stream != nil {
		t.Fatalf("got reply %+v, want status %d", r, status)
	}
	var e wire.ErrorBody
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	return e.Error
}

func TestSparkExchangeRefused(t *testing.T) {
	ts := sparkMock(t, mock.Config{})
	for _, tc := range []struct {
		name             string
		tg               Target
		status           int
		typ, code, inMsg string
	}{
		{"wrong secret", Target{APISecret: "wrong"}, 401, "authentication_error", "", "HMAC signature does not match"},
		{"wrong key", Target{Key: "nokey"}, 401, "authentication_error", "", "does not match"},
		{"wrong app", Target{AppID: "other"}, 401, "authentication_error", "", "spark: 11200 "},
	} {
		tg := sparkTarget(ts.URL, "lite")
		if tc.tg.APISecret != "" {
			tg.APISecret = tc.tg.APISecret
		}
		if tc.tg.Key != "" {
			tg.Key = tc.tg.Key
		}
		if tc.tg.AppID != "" {
			tg.AppID = tc.tg.AppID
		}
		for _, stream := range []bool{false, true} {
			r, err := sparkExchange(t, tg, sparkChatBody, stream)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			e := sparkErrorBody(t, r, tc.status)
			if e.Type != tc.typ || !strings.Contains(e.Message, tc.inMsg) || strings.Contains(e.Message, "secret") ||
				(tc.code == "") != (e.Code == nil) {
				t.Errorf("%s: got %s", tc.name, r.Body)
			}
		}
	}
	tg := sparkTarget(ts.URL, "lite")
	tg.APISecret = ""
	if _, err := sparkExchange(t, tg, sparkChatBody, false); err == nil || !strings.Contains(err.Error(), "api_secret") {
		t.Errorf("no secret: %v", err)
	}
}

func TestSparkExchangeFaults(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       mock.Config
		status    int
		typ, code string
		inMsg     string
	}{
		{"rate limit", mock.Config{RateLimitRate: 1}, 429, "requests", "rate_limit_exceeded", "spark: 11202 "},
		{"failure", mock.Config{FailureRate: 1}, 500, "server_error", "", "spark: 10012 "},
	} {
		ts := sparkMock(t, tc.cfg)
		for _, stream := range []bool{false, true} {
			r, err := sparkExchange(t, sparkTarget(ts.URL, "max"), sparkChatBody, stream)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			e := sparkErrorBody(t, r, tc.status)
			code := ""
			if e.Code != nil {
				code = *e.Code
			}
			if e.Type != tc.typ || code != tc.code || !strings.Contains(e.Message, tc.inMsg) || !strings.Contains(e.Message, "(sid cht") {
				t.Errorf("%s: got %s", tc.name, r.Body)
			}
		}
	}
}

func TestSparkStreamBroken(t *testing.T) {
	ts := sparkMock(t, mock.Config{StreamChunks: 8, FailAfterChunks: 3})
	tg := sparkTarget(ts.URL, "max")
	r, err := sparkExchange(t, tg, sparkChatBody, true)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := sparkDrain(r.Stream)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(chunks) != 3 {
		t.Errorf("got %d chunks, then %v; want 3, then an unexpected EOF", len(chunks), err)
	}
	if _, err2 := r.Stream.Next(); err2 != err {
		t.Errorf("Next after the error: %v", err2)
	}
	// A complete answer cut off is a transport failure.
	if r, err := sparkExchange(t, tg, sparkChatBody, false); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("non-stream: got %+v, %v", r, err)
	}
}

// sparkScripted serves a WebSocket that reads the request frame, then
// sends frames; "DROP" drops the connection without a close frame.
func sparkScripted(t *testing.T, frames ...string) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		if _, _, err := conn.Read(r.Context()); err != nil {
			return
		}
		for _, f := range frames {
			if f == "DROP" {
				return
			}
			if err := conn.Write(r.Context(), websocket.MessageText, []byte(f)); err != nil {
				return
			}
		}
		_ = conn.Close(websocket.StatusNormalClosure, "")
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestSparkFrames(t *testing.T) {
	const (
		hello = `{"header":{"code":0,"message":"Success","sid":"s1","status":0},"payload":{"choices":{"status":0,"seq":0,"text":[{"content":"Hel","role":"assistant","index":0}]}}}`
		lo    = `{"header":{"code":0,"message":"Success","sid":"s1","status":1},"payload":{"choices":{"status":1,"seq":1,"text":[{"content":"lo","role":"assistant","index":0}]}}}`
		call  = `{"header":{"code":0,"message":"Success","sid":"s1","status":2},"payload":{"choices":{"status":2,"seq":2,"text":[{"content":"","role":"assistant","index":0,"function_call":{"name":"f","arguments":{"a": 1}}}]},"usage":{"text":{"question_tokens":"2","prompt_tokens":"5","completion_tokens":"3","total_tokens":"8"}}}}`
		audit = `{"header":{"code":10014,"message":"output audit failed","sid":"s1","status":2}}`
		empty = `{"header":{"code":0,"message":"Success","sid":"s1","status":0},"payload":{"choices":{"status":0,"seq":0,"text":[{"content":"","role":"assistant","index":0}]}}}`
		end   = `{"header":{"code":0,"message":"Success","sid":"s1","status":2},"payload":{"choices":{"status":2,"seq":1,"text":[{"content":"","role":"assistant","index":0}]}}}`
	)
	// Text then a function call whose arguments came as an object, usage
	// counts as strings.
	r, err := sparkExchange(t, sparkTarget(sparkScripted(t, hello, lo, call), "lite"), sparkChatBody, false)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"chatcmpl-s1","object":"chat.completion","model":"lite","choices":[{"index":0,"message":{"role":"assistant","content":"Hello",
		"tool_calls":[{"id":"ID","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],
		"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`
	var got map[string]any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	delete(got, "created")
	got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["tool_calls"].([]any)[0].(map[string]any)["id"] = "ID"
	b, _ := json.Marshal(got)
	jsonEqual(t, "text and call", b, []byte(want))

	// An error frame after content breaks the stream with an *Error.
	r, err = sparkExchange(t, sparkTarget(sparkScripted(t, hello, lo, audit), "lite"), sparkChatBody, true)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := sparkDrain(r.Stream)
	var e *Error
	if len(chunks) != 2 || !errors.As(err, &e) || e.Status != 400 || e.Type != "invalid_request_error" ||
		e.Message != "spark: 10014 output audit failed (sid s1)" {
		t.Errorf("audit: %d chunks, %v", len(chunks), err)
	}
	// The same before any content is a refusal.
	r, err = sparkExchange(t, sparkTarget(sparkScripted(t, audit), "lite"), sparkChatBody, true)
	if err != nil {
		t.Fatal(err)
	}
	if d := sparkErrorBody(t, r, 400); d.Code == nil || *d.Code != "content_filter" {
		t.Errorf("audit first: %s", r.Body)
	}

	// Empty frames send nothing but the role, with the finish; no usage
	// reported, no usage chunk.
	r, err = sparkExchange(t, sparkTarget(sparkScripted(t, empty, end), "lite"), sparkChatBody, true)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err = sparkDrain(r.Stream)
	if err != io.EOF || len(chunks) != 1 || chunks[0].Choices[0].Delta.Role != "assistant" ||
		*chunks[0].Choices[0].Delta.Content != "" || *chunks[0].Choices[0].FinishReason != "stop" {
		t.Errorf("empty: %+v, %v", chunks, err)
	}

	// A connection closed, or dropped, before the last frame.
	for _, frames := range [][]string{{hello}, {hello, "DROP"}, {}} {
		r, err = sparkExchange(t, sparkTarget(sparkScripted(t, frames...), "lite"), sparkChatBody, true)
		if len(frames) == 0 {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("no frame: %+v, %v", r, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if chunks, err := sparkDrain(r.Stream); len(chunks) != 1 || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%v: %d chunks, %v", frames, len(chunks), err)
		}
	}
}

func TestSparkCodes(t *testing.T) {
	for _, tc := range []struct {
		code, status int
		typ, errCode string
	}{
		{11200, 401, "authentication_error", ""},
		{11201, 429, "requests", "rate_limit_exceeded"},
		{11202, 429, "requests", "rate_limit_exceeded"},
		{11203, 429, "requests", "rate_limit_exceeded"},
		{10013, 400, "invalid_request_error", "content_filter"},
		{10014, 400, "invalid_request_error", "content_filter"},
		{10019, 400, "invalid_request_error", "content_filter"},
		{10907, 400, "invalid_request_error", "context_length_exceeded"},
		{10003, 400, "invalid_request_error", ""},
		{10163, 400, "invalid_request_error", ""},
		{10404, 400, "invalid_request_error", ""},
		{10012, 500, "server_error", ""},
		{12345, 500, "server_error", ""},
	} {
		status, typ, code := sparkCode(tc.code)
		if status != tc.status || typ != tc.typ || code != tc.errCode {
			t.Errorf("%d: got %d %s %q", tc.code, status, typ, code)
		}
	}
}

func TestSparkHandshakeRefused(t *testing.T) {
	for _, tc := range []struct {
		status     int
		body, typ  string
		wantStatus int
	}{
		{403, `{"message":"HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"}`, "authentication_error", 403},
		{404, `not here`, "not_found_error", 404},
		{429, `{"message":"slow down"}`, "requests", 429},
		{502, ``, "server_error", 502},
		{200, `hello`, "server_error", 502},
	} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		}))
		r, err := sparkExchange(t, sparkTarget(ts.URL, "max"), sparkChatBody, false)
		ts.Close()
		if err != nil {
			t.Fatalf("%d: %v", tc.status, err)
		}
		e := sparkErrorBody(t, r, tc.wantStatus)
		if e.Type != tc.typ || !strings.HasPrefix(e.Message, "spark: handshake refused with HTTP ") {
			t.Errorf("%d: got %s", tc.status, r.Body)
		}
		var b struct{ Message string }
		if json.Unmarshal([]byte(tc.body), &b) == nil && !strings.HasSuffix(e.Message, ": "+b.Message) {
			t.Errorf("%d: message %q", tc.status, e.Message)
		}
	}
}

// sparkNoSecrets fails the test if an error's text shows the signed URL or
// a credential.
func sparkNoSecrets(t *testing.T, name string, err error) {
	t.Helper()
	for e := err; e != nil; e = errors.Unwrap(e) {
		msg := e.Error()
		for _, s := range []string{"authorization", "signature", "secret", "api_key", "date="} {
			if strings.Contains(msg, s) {
				t.Errorf("%s: error %q shows %q", name, msg, s)
			}
		}
		var ue *url.Error
		if errors.As(e, &ue) {
			t.Errorf("%s: error %q wraps a *url.Error", name, msg)
		}
	}
}

func TestSparkConnectErrors(t *testing.T) {
	// Nothing listens there.
	ts := httptest.NewServer(http.NotFoundHandler())
	base := ts.URL
	ts.Close()
	r, err := sparkExchange(t, sparkTarget(base, "max"), sparkChatBody, false)
	if err == nil || r != nil {
		t.Fatalf("got %+v, %v", r, err)
	}
	sparkNoSecrets(t, "refused", err)
	if !strings.Contains(err.Error(), "spark: connect to 127.0.0.1:") {
		t.Errorf("refused: %v", err)
	}

	// A client whose transport fails puts the URL in its *url.Error.
	client := &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return nil, errors.New("boom at " + req.URL.String())
	})}
	_, err = spark{}.Exchange(context.Background(), client, sparkTarget("", "max"), Chat, []byte(sparkChatBody), false)
	if err == nil || !strings.Contains(err.Error(), "spark: connect to spark-api.xf-yun.com: boom at https://spark-api.xf-yun.com/v3.5/chat?REDACTED") {
		t.Errorf("transport: %v", err)
	}
	sparkNoSecrets(t, "transport", err)

	// A context already done.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ts2 := sparkMock(t, mock.Config{})
	_, err = spark{}.Exchange(ctx, &http.Client{}, sparkTarget(ts2.URL, "max"), Chat, []byte(sparkChatBody), true)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	sparkNoSecrets(t, "canceled", err)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// sparkSlowStream starts a stream whose frames come 10 s apart: its first
// chunk is ready, the next Next blocks.
func sparkSlowStream(t *testing.T, ctx context.Context) Stream {
	t.Helper()
	ts := sparkMock(t, mock.Config{ChunkInterval: 10 * time.Second})
	r, err := spark{}.Exchange(ctx, &http.Client{}, sparkTarget(ts.URL, "max"), Chat, []byte(sparkChatBody), true)
	if err != nil || r.Stream == nil {
		t.Fatalf("got %+v, %v", r, err)
	}
	if _, err := r.Stream.Next(); err != nil {
		t.Fatal(err)
	}
	return r.Stream
}

func TestSparkStreamCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := sparkSlowStream(t, ctx)
	start := time.Now()
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := s.Next()
	if !errors.Is(err, context.Canceled) || time.Since(start) > 3*time.Second {
		t.Errorf("got %v after %v", err, time.Since(start))
	}
	if err := s.(io.Closer).Close(); err != nil {
		t.Error(err)
	}
}

func TestSparkStreamClose(t *testing.T) {
	s := sparkSlowStream(t, context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Next()
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c := s.(io.Closer)
	for range 3 {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}
	select {
	case err := <-done:
		if err == nil || err == io.EOF {
			t.Errorf("Next after Close: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Next still blocked after Close")
	}
}

func TestSparkHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.WriteHeader(http.StatusTeapot)
	}))
	defer ts.Close()
	tg := sparkTarget(ts.URL, "max")
	tg.Headers = map[string]string{"X-Trace": "abc"}
	if _, err := sparkExchange(t, tg, sparkChatBody, false); err != nil {
		t.Fatal(err)
	}
	if h := <-got; h.Get("X-Trace") != "abc" || !strings.EqualFold(h.Get("Upgrade"), "websocket") {
		t.Errorf("headers %v", h)
	}
}

func TestSparkIsExchanger(t *testing.T) {
	a, err := For(APISpark)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.(Exchanger); !ok {
		t.Error("spark is not an Exchanger")
	}
	if f, ok := a.(interface{ Format() Format }); !ok || f.Format() != FormatSpark {
		t.Error("spark's format is not FormatSpark")
	}
	var _ io.Closer = (*sparkStream)(nil)
}

// TestSparkNoLeaks checks that finished, broken and closed exchanges
// leave no goroutine behind.
func TestSparkNoLeaks(t *testing.T) {
	ts := sparkMock(t, mock.Config{})
	slow := sparkMock(t, mock.Config{ChunkInterval: 10 * time.Second})
	broken := sparkMock(t, mock.Config{FailAfterChunks: 2})
	client := &http.Client{Transport: &http.Transport{}}
	run := func() {
		for _, stream := range []bool{false, true} {
			for _, base := range []string{ts.URL, broken.URL} {
				r, err := spark{}.Exchange(context.Background(), client, sparkTarget(base, "max"), Chat, []byte(sparkChatBody), stream)
				if err == nil && r.Stream != nil {
					_, _ = sparkDrain(r.Stream)
					_ = r.Stream.(io.Closer).Close()
				}
			}
		}
		r, err := spark{}.Exchange(context.Background(), client, sparkTarget(slow.URL, "max"), Chat, []byte(sparkChatBody), true)
		if err != nil {
			t.Fatal(err)
		}
		_ = r.Stream.(io.Closer).Close() // abandoned mid-answer
	}
	run() // warm up the servers and the client
	client.CloseIdleConnections()
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 5 {
		run()
	}
	client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines, %d before", n, before)
	}
}
