package provider

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// The answers below are shaped like the raw HTTP exchanges with DashScope
// recorded in cnblogs/dashscope-sdk (test/Cnblogs.DashScope.Tests.Shared/
// RawHttpData: single-generation-message-*, single-generation-text-*,
// *-with-tools-*, parameter-error-*, auth-error-*, text-embedding-*).

// dashScopeTarget is a dashscope Target for tests.
func dashScopeTarget(base string) Target {
	spec, _ := Lookup("dashscope")
	return Target{Spec: spec, BaseURL: cmpOr(base, spec.BaseURL), Key: "sk-ds", Model: "qwen-plus"}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// dashScopeRequest builds the request NewRequest sends and returns it
// with its body.
func dashScopeRequest(t *testing.T, tg Target, ep Endpoint, canonical string) (*http.Request, []byte, error) {
	t.Helper()
	req, err := dashScope{}.NewRequest(context.Background(), tg, ep, []byte(canonical))
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	return req, body, nil
}

func dashScopeDrain(s Stream) (chunks []string, err error) {
	for {
		c, err := s.Next()
		if err != nil {
			return chunks, err
		}
		chunks = append(chunks, string(c))
	}
}

func TestDashScopeURL(t *testing.T) {
	tests := []struct{ base, gen, emb string }{
		{"https://dashscope.aliyuncs.com", "https://dashscope.aliyuncs.com" + dashScopeGenerationPath, "https://dashscope.aliyuncs.com" + dashScopeEmbeddingPath},
		{"https://dashscope-intl.aliyuncs.com/api/v1/", "https://dashscope-intl.aliyuncs.com" + dashScopeGenerationPath, "https://dashscope-intl.aliyuncs.com" + dashScopeEmbeddingPath},
		{"https://dashscope.aliyuncs.com/api/v1/services/aigc/text-generation/generation", "https://dashscope.aliyuncs.com" + dashScopeGenerationPath, "https://dashscope.aliyuncs.com" + dashScopeEmbeddingPath},
		{"https://dashscope.aliyuncs.com/compatible-mode/v1", "https://dashscope.aliyuncs.com" + dashScopeGenerationPath, "https://dashscope.aliyuncs.com" + dashScopeEmbeddingPath},
		{"http://proxy.local/dashscope", "http://proxy.local/dashscope" + dashScopeGenerationPath, "http://proxy.local/dashscope" + dashScopeEmbeddingPath},
	}
	for _, tt := range tests {
		gen, err := dashScopeURL(tt.base, dashScopeGenerationPath)
		emb, err2 := dashScopeURL(tt.base, dashScopeEmbeddingPath)
		if err != nil || err2 != nil || gen != tt.gen || emb != tt.emb {
			t.Errorf("%s: %s, %s (%v, %v)", tt.base, gen, emb, err, err2)
		}
	}
	if _, err := dashScopeURL("not a url", dashScopeGenerationPath); err == nil {
		t.Error("no error for a base without a host")
	}
	for _, typ := range []string{"dashscope", "bailian"} {
		if s, ok := Lookup(typ); !ok || s.API != APIDashScope || s.BaseURL != "https://dashscope.aliyuncs.com" {
			t.Errorf("%s: %+v", typ, s)
		}
	}
	if a, err := For(APIDashScope); err != nil {
		t.Error(err)
	} else if _, ok := a.(Translator); !ok {
		t.Error("dashscope is not a Translator")
	}
}

func TestDashScopeRequest(t *testing.T) {
	req, body, err := dashScopeRequest(t, dashScopeTarget(""), Chat, `{"model":"qwen-max","messages":[
		{"role":"system","content":"Be brief."},
		{"role":"user","content":[{"type":"text","text":"Weather in "},{"type":"text","text":"Hangzhou?"}],"name":"ann"},
		{"role":"developer","content":"Use Celsius."},
		{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Hangzhou\"}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"18C, cloudy"}],
		"tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather","parameters":{"type":"object"},"strict":true}}],
		"tool_choice":"auto","parallel_tool_calls":true,
		"temperature":0.7,"top_p":0.8,"max_tokens":100,"max_completion_tokens":200,"seed":42,"stop":"END",
		"presence_penalty":0.5,"frequency_penalty":1,"user":"u1","reasoning_effort":"low",
		"response_format":{"type":"json_object"},"stream_options":{"include_usage":true}}`)
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != http.MethodPost || req.URL.String() != "https://dashscope.aliyuncs.com"+dashScopeGenerationPath {
		t.Errorf("request %s %s", req.Method, req.URL)
	}
	if req.Header.Get("Authorization") != "Bearer sk-ds" || req.Header.Get("Content-Type") != "application/json" ||
		req.Header.Get("X-DashScope-SSE") != "" || req.Header.Get("Accept") != "" {
		t.Errorf("headers %v", req.Header)
	}
	jsonEqual(t, "body", body, []byte(`{"model":"qwen-max",
		"input":{"messages":[
			{"role":"system","content":"Be brief.\nUse Celsius."},
			{"role":"user","content":"Weather in Hangzhou?"},
			{"role":"assistant","content":"","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Hangzhou\"}"}}]},
			{"role":"tool","content":"18C, cloudy","tool_call_id":"call_1","name":"get_weather"}]},
		"parameters":{"result_format":"message","temperature":0.7,"top_p":0.8,"max_tokens":200,"seed":42,"stop":["END"],
			"presence_penalty":0.5,"response_format":{"type":"json_object"},
			"tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather","parameters":{"type":"object"}}}],
			"tool_choice":"auto","parallel_tool_calls":true}}`))
}

func TestDashScopeRequestStream(t *testing.T) {
	tg := dashScopeTarget("https://dashscope-intl.aliyuncs.com/api/v1")
	tg.Headers = map[string]string{"X-DashScope-WorkSpace": "llm-ws"}
	req, body, err := dashScopeRequest(t, tg, Chat, `{"stream":true,"messages":[{"role":"user","content":"hi"}],
		"tools":[{"type":"function","function":{"name":"only"}}],"tool_choice":"required"}`)
	if err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("X-DashScope-SSE") != "enable" || req.Header.Get("Accept") != "text/event-stream" || req.Header.Get("X-DashScope-WorkSpace") != "llm-ws" {
		t.Errorf("headers %v", req.Header)
	}
	jsonEqual(t, "body", body, []byte(`{"model":"qwen-plus","input":{"messages":[{"role":"user","content":"hi"}]},
		"parameters":{"result_format":"message","incremental_output":true,
			"tools":[{"type":"function","function":{"name":"only"}}],"tool_choice":{"type":"function","function":{"name":"only"}}}}`))

	// A prompt-only model takes the system text and the last user message.
	_, body, err = dashScopeRequest(t, tg, Chat, `{"model":"chatyuan-large-v2","stream":true,"max_tokens":50,"messages":[
		{"role":"system","content":"You are terse."},{"role":"user","content":"first"},
		{"role":"assistant","content":"ok"},{"role":"user","content":"second"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, "prompt body", body, []byte(`{"model":"chatyuan-large-v2","input":{"prompt":"You are terse.\nsecond"},
		"parameters":{"result_format":"text","incremental_output":true,"max_tokens":50}}`))
}

func TestDashScopeRequestRefused(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"n", `{"n":2,"messages":[{"role":"user","content":"hi"}]}`, "n:"},
		{"logprobs", `{"logprobs":true,"messages":[{"role":"user","content":"hi"}]}`, "logprobs:"},
		{"audio", `{"audio":{"voice":"x"},"messages":[{"role":"user","content":"hi"}]}`, "audio:"},
		{"functions", `{"functions":[{"name":"f"}],"messages":[{"role":"user","content":"hi"}]}`, "functions"},
		{"image", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, "messages[0]: images"},
		{"file part", `{"messages":[{"role":"user","content":[{"type":"file","file":{}}]}]}`, `messages[0]: content part type "file"`},
		{"function role", `{"messages":[{"role":"function","name":"f","content":"1"}]}`, `role "function"`},
		{"tool type", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"web_search"}]}`, "tools[0]"},
		{"required among two", `{"messages":[{"role":"user","content":"hi"}],"tool_choice":"required",
			"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}]}`, "tool_choice"},
		{"prompt model tools", `{"model":"moss-moon-003-sft","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"a"}}]}`, "tools:"},
		{"prompt model json", `{"model":"billa-7b-sft-v1","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}`, "response_format:"},
		{"prompt model no user", `{"model":"belle-llama-13b-2m-v1","messages":[{"role":"system","content":"hi"}]}`, "needs a user message"},
		{"bad json", `{"messages":`, "decode chat request"},
	}
	for _, tt := range tests {
		_, _, err := dashScopeRequest(t, dashScopeTarget(""), Chat, tt.body)
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Type != "invalid_request_error" ||
			!strings.HasPrefix(e.Message, "dashscope: ") || !strings.Contains(e.Message, tt.want) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	tg := dashScopeTarget("")
	tg.Model = ""
	if _, _, err := dashScopeRequest(t, tg, Chat, `{"messages":[{"role":"user","content":"hi"}]}`); err == nil || !strings.Contains(err.Error(), "model") {
		t.Errorf("no model: %v", err)
	}
	if _, _, err := dashScopeRequest(t, dashScopeTarget(""), Endpoint("images"), `{}`); err == nil {
		t.Error("no error for an unknown endpoint")
	}
}

func TestDashScopeResponse(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"message", `{"output":{"choices":[{"finish_reason":"stop","message":{"role":"assistant","content":"1+1 等于 2。"}}]},
			"usage":{"total_tokens":47,"output_tokens":39,"input_tokens":8},"request_id":"e764bfe3"}`,
			`{"id":"chatcmpl-e764bfe3","object":"chat.completion","model":"qwen-max","choices":[{"index":0,
				"message":{"role":"assistant","content":"1+1 等于 2。"},"finish_reason":"stop"}],
				"usage":{"prompt_tokens":8,"completion_tokens":39,"total_tokens":47}}`},
		// DashScope has said "stop" for an answer that only calls tools.
		{"tool call", `{"output":{"choices":[{"finish_reason":"stop","message":{"role":"assistant","tool_calls":[{"function":{"name":"get_current_weather",
			"arguments":"{\"location\": \"浙江省杭州市\"}"},"index":0,"id":"call_cec4","type":"function"}],"content":""}}]},
			"usage":{"total_tokens":219,"output_tokens":8,"input_tokens":211,"prompt_tokens_details":{"cached_tokens":200}},"request_id":"6730"}`,
			`{"id":"chatcmpl-6730","object":"chat.completion","model":"qwen-max","choices":[{"index":0,
				"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_cec4","type":"function",
					"function":{"name":"get_current_weather","arguments":"{\"location\": \"浙江省杭州市\"}"}}]},"finish_reason":"tool_calls"}],
				"usage":{"prompt_tokens":211,"completion_tokens":8,"total_tokens":219,"prompt_tokens_details":{"cached_tokens":200}}}`},
		{"text format", `{"output":{"finish_reason":"length","text":"1+1等于2。"},"usage":{"total_tokens":30,"output_tokens":14,"input_tokens":16},"request_id":"7e3d"}`,
			`{"id":"chatcmpl-7e3d","object":"chat.completion","model":"qwen-max","choices":[{"index":0,
				"message":{"role":"assistant","content":"1+1等于2。"},"finish_reason":"length"}],
				"usage":{"prompt_tokens":16,"completion_tokens":14,"total_tokens":30}}`},
		{"reasoning", `{"output":{"choices":[{"finish_reason":"stop","message":{"content":"121","reasoning_content":"thinking…"}}]},
			"usage":{"total_tokens":10,"output_tokens":8,"input_tokens":2,"output_tokens_details":{"reasoning_tokens":5}},"request_id":"r"}`,
			`{"id":"chatcmpl-r","object":"chat.completion","model":"qwen-max","choices":[{"index":0,
				"message":{"role":"assistant","content":"121"},"finish_reason":"stop"}],
				"usage":{"prompt_tokens":2,"completion_tokens":8,"total_tokens":10,"completion_tokens_details":{"reasoning_tokens":5}}}`},
	}
	for _, tt := range tests {
		got, err := dashScope{}.Response(Chat, []byte(tt.body), "qwen-max")
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(got, &m); err != nil || m["created"] == nil {
			t.Errorf("%s: %s", tt.name, got)
		}
		delete(m, "created")
		norm, _ := json.Marshal(m)
		jsonEqual(t, tt.name, norm, []byte(tt.want))
	}
	_, err := dashScope{}.Response(Chat, []byte(`{"code":"DataInspectionFailed","message":"Output data may contain inappropriate content.","request_id":"x"}`), "m")
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Message, "inappropriate") {
		t.Errorf("error answer: %v", err)
	}
	if _, err := (dashScope{}).Response(Chat, []byte(`{oops`), "m"); err == nil {
		t.Error("no error for a bad body")
	}
}

func TestDashScopeEmbeddings(t *testing.T) {
	req, body, err := dashScopeRequest(t, dashScopeTarget(""), Embeddings, `{"model":"text-embedding-v3","input":["a","b"],"dimensions":512,"encoding_format":"base64","user":"u"}`)
	if err != nil {
		t.Fatal(err)
	}
	if req.URL.String() != "https://dashscope.aliyuncs.com"+dashScopeEmbeddingPath || req.Header.Get("X-DashScope-SSE") != "" {
		t.Errorf("request %s %v", req.URL, req.Header)
	}
	jsonEqual(t, "body", body, []byte(`{"model":"text-embedding-v3","input":{"texts":["a","b"]},"parameters":{"text_type":"document","dimension":512}}`))

	_, body, err = dashScopeRequest(t, dashScopeTarget(""), Embeddings, `{"input":"one"}`)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, "default model", body, []byte(`{"model":"qwen-plus","input":{"texts":["one"]},"parameters":{"text_type":"document"}}`))
	for _, bad := range []string{`{"input":[1,2]}`, `{"input":[]}`} {
		if _, _, err := dashScopeRequest(t, dashScopeTarget(""), Embeddings, bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}

	got, err := dashScope{}.Response(Embeddings, []byte(`{"output":{"embeddings":[{"embedding":[0.3,0.4],"text_index":1},{"embedding":[0.1,0.2],"text_index":0}]},
		"usage":{"total_tokens":3},"request_id":"1773"}`), "text-embedding-v2")
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, "embeddings", got, []byte(`{"object":"list","model":"text-embedding-v2","data":[
		{"object":"embedding","index":0,"embedding":[0.1,0.2]},{"object":"embedding","index":1,"embedding":[0.3,0.4]}],
		"usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}`))
}

// dashScopeSSE is a streamed answer calling two functions, as DashScope
// sends it (single-generation-message-with-parallel-tools-sse), with a
// text event first.
const dashScopeSSE = `id:1
event:result
:HTTP_STATUS/200
data:{"output":{"choices":[{"message":{"content":"Checking.","role":"assistant"},"index":0,"finish_reason":"null"}]},"usage":{"total_tokens":251,"output_tokens":1,"input_tokens":250},"request_id":"98b7"}

id:2
event:result
:HTTP_STATUS/200
data:{"output":{"choices":[{"message":{"content":"","tool_calls":[{"index":0,"id":"call_29a8","type":"function","function":{"name":"get_current_weather","arguments":"{\"location\": \""}}],"role":"assistant"},"index":0,"finish_reason":"null"}]},"usage":{"total_tokens":266,"output_tokens":16,"input_tokens":250},"request_id":"98b7"}

id:3
event:result
:HTTP_STATUS/200
data:{"output":{"choices":[{"message":{"content":"","tool_calls":[{"index":0,"id":"","type":"function","function":{"arguments":"杭州\"}"}}],"role":"assistant"},"index":0,"finish_reason":"null"}]},"usage":{"total_tokens":272,"output_tokens":22,"input_tokens":250},"request_id":"98b7"}

id:4
event:result
:HTTP_STATUS/200
data:{"output":{"choices":[{"message":{"content":"","tool_calls":[{"index":1,"id":"call_026e","type":"function","function":{"name":"get_current_weather","arguments":"{\"location\":"}}],"role":"assistant"},"index":0,"finish_reason":"null"}]},"usage":{"total_tokens":284,"output_tokens":34,"input_tokens":250},"request_id":"98b7"}

id:5
event:result
:HTTP_STATUS/200
data:{"output":{"choices":[{"message":{"content":"","tool_calls":[{"index":1,"id":"","type":"function","function":{"arguments":" \"上海\"}"}}],"role":"assistant"},"index":0,"finish_reason":"tool_calls"}]},"usage":{"total_tokens":287,"output_tokens":37,"input_tokens":250,"prompt_tokens_details":{"cached_tokens":0}},"request_id":"98b7"}

`

func TestDashScopeStream(t *testing.T) {
	chunks, err := dashScopeDrain(dashScope{}.Stream(strings.NewReader(dashScopeSSE), "qwen-max"))
	if err != io.EOF {
		t.Fatalf("stream ended with %v", err)
	}
	want := []string{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"content":"Checking."},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_29a8","type":"function","function":{"name":"get_current_weather","arguments":"{\"location\": \""}}]},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"杭州\"}"}}]},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_026e","type":"function","function":{"name":"get_current_weather","arguments":"{\"location\":"}}]},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":" \"上海\"}"}}]},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
		`{"choices":[],"usage":{"prompt_tokens":250,"completion_tokens":37,"total_tokens":287,"prompt_tokens_details":{"cached_tokens":0}}}`,
	}
	dashScopeCheckChunks(t, chunks, want, "chatcmpl-98b7", "qwen-max")
}

// dashScopeCheckChunks compares chunks, without their created time, to
// want, given without their id, object and model.
func dashScopeCheckChunks(t *testing.T, chunks, want []string, id, model string) {
	t.Helper()
	if len(chunks) != len(want) {
		t.Fatalf("got %d chunks, want %d:\n%s", len(chunks), len(want), strings.Join(chunks, "\n"))
	}
	for i := range want {
		var m map[string]any
		if err := json.Unmarshal([]byte(chunks[i]), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "created")
		got, _ := json.Marshal(m)
		full := strings.Replace(want[i], `{`, `{"id":"`+id+`","object":"chat.completion.chunk","model":"`+model+`",`, 1)
		jsonEqual(t, "chunk", got, []byte(full))
	}
}

// The text format, with events not parted by blank lines (as some
// recordings show them): each data line is still one answer.
func TestDashScopeStreamText(t *testing.T) {
	body := "id:1\nevent:result\n:HTTP_STATUS/200\n" +
		`data:{"output":{"finish_reason":"null","text":"1+"},"usage":{"total_tokens":18,"input_tokens":16,"output_tokens":2},"request_id":"5b44"}` + "\n" +
		"id:2\nevent:result\n:HTTP_STATUS/200\n" +
		`data:{"output":{"finish_reason":"null","text":"1等于2。"},"usage":{"total_tokens":22,"input_tokens":16,"output_tokens":6},"request_id":"5b44"}` + "\n" +
		"id:3\nevent:result\n:HTTP_STATUS/200\n" +
		`data:{"output":{"finish_reason":"stop","text":""},"usage":{"total_tokens":22,"input_tokens":16,"output_tokens":6},"request_id":"5b44"}` + "\n\n"
	chunks, err := dashScopeDrain(dashScope{}.Stream(strings.NewReader(body), "chatyuan"))
	if err != io.EOF {
		t.Fatalf("stream ended with %v", err)
	}
	dashScopeCheckChunks(t, chunks, []string{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"content":"1+"},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"content":"1等于2。"},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
		`{"choices":[],"usage":{"prompt_tokens":16,"completion_tokens":6,"total_tokens":22}}`,
	}, "chatcmpl-5b44", "chatyuan")
}

func TestDashScopeStreamEnds(t *testing.T) {
	const text = "id:1\nevent:result\n:HTTP_STATUS/200\n" +
		`data:{"output":{"choices":[{"message":{"content":"Hi","role":"assistant"},"finish_reason":"null"}]},"usage":{"total_tokens":3,"input_tokens":2,"output_tokens":1},"request_id":"r"}` + "\n\n"
	tests := []struct {
		name    string
		body    io.Reader
		chunks  int
		wantErr func(error) bool
	}{
		{"cut before a finish reason", strings.NewReader(text), 2,
			func(err error) bool { return err == io.ErrUnexpectedEOF }},
		{"read error", io.MultiReader(strings.NewReader(text), iotest.ErrReader(errors.New("connection reset"))), 2,
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "connection reset") }},
		{"error event", strings.NewReader(text + "id:2\nevent:error\n:HTTP_STATUS/400\n" +
			`data:{"code":"DataInspectionFailed","message":"Output data may contain inappropriate content.","request_id":"r"}` + "\n\n"), 2,
			func(err error) bool {
				var e *Error
				return errors.As(err, &e) && e.Status == 400 && e.Type == "invalid_request_error" && strings.Contains(e.Message, "inappropriate")
			}},
		{"refused at once", strings.NewReader("id:1\nevent:error\n:HTTP_STATUS/400\n" +
			`data:{"code":"InvalidParameter","message":"Role must be user or assistant and Content length must be greater than 0","request_id":"7671"}` + "\n"), 0,
			func(err error) bool {
				var e *Error
				return errors.As(err, &e) && e.Status == 400 && strings.HasPrefix(e.Message, "Role must be")
			}},
		{"throttled", strings.NewReader("event:error\n" + `data:{"code":"Throttling.RateQuota","message":"Requests rate limit exceeded"}` + "\n\n"), 0,
			func(err error) bool {
				var e *Error
				return errors.As(err, &e) && e.Status == 429 && e.Type == "requests"
			}},
		{"bad event", strings.NewReader("data:{oops\n\n"), 0,
			func(err error) bool { return err != nil && err != io.EOF && err != io.ErrUnexpectedEOF }},
	}
	for _, tt := range tests {
		chunks, err := dashScopeDrain(dashScope{}.Stream(tt.body, "m"))
		if len(chunks) != tt.chunks || !tt.wantErr(err) {
			t.Errorf("%s: %d chunks, %v:\n%s", tt.name, len(chunks), err, strings.Join(chunks, "\n"))
		}
	}
}

// Error bodies follow DashScope's documented error codes.
func TestDashScopeError(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   string
	}{
		{401, `{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"a1c0561c"}`,
			`{"error":{"message":"Invalid API-key provided.","type":"authentication_error","param":null,"code":"invalid_api_key"}}`},
		{400, `{"code":"InvalidParameter","message":"Role must be user or assistant and Content length must be greater than 0","request_id":"a589"}`,
			`{"error":{"message":"Role must be user or assistant and Content length must be greater than 0","type":"invalid_request_error","param":null,"code":null}}`},
		{400, `{"code":"DataInspectionFailed","message":"Input data may contain inappropriate content.","request_id":"x"}`,
			`{"error":{"message":"Input data may contain inappropriate content.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}`},
		{400, `{"code":"Arrearage","message":"Access denied, please make sure your account is in good standing.","request_id":"x"}`,
			`{"error":{"message":"Access denied, please make sure your account is in good standing.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`},
		{403, `{"code":"AccessDenied.Unpurchased","message":"Access to model denied.","request_id":"x"}`,
			`{"error":{"message":"Access to model denied.","type":"permission_error","param":null,"code":null}}`},
		{404, `{"code":"ModelNotFound","message":"Model not found (qwen-9)!","request_id":"x"}`,
			`{"error":{"message":"Model not found (qwen-9)!","type":"not_found_error","param":null,"code":null}}`},
		{429, `{"code":"Throttling.AllocationQuota","message":"Allocated quota exceeded, please increase your quota limit.","request_id":"x"}`,
			`{"error":{"message":"Allocated quota exceeded, please increase your quota limit.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`},
		{500, `{"code":"InternalError.Algo","message":"An internal error has occured during execution.","request_id":"x"}`,
			`{"error":{"message":"An internal error has occured during execution.","type":"server_error","param":null,"code":null}}`},
		{400, "id:1\nevent:error\n:HTTP_STATUS/400\ndata:{\"code\":\"InvalidParameter\",\"message\":\"bad\",\"request_id\":\"x\"}\n",
			`{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}`},
		{418, `{"code":"Teapot","request_id":"x"}`,
			`{"error":{"message":"dashscope: Teapot","type":"invalid_request_error","param":null,"code":null}}`},
		{502, "<html>Bad Gateway</html>",
			`{"error":{"message":"dashscope answered HTTP 502: <html>Bad Gateway</html>","type":"server_error","param":null,"code":null}}`},
		{503, "",
			`{"error":{"message":"dashscope answered HTTP 503","type":"server_error","param":null,"code":null}}`},
	}
	for _, tt := range tests {
		jsonEqual(t, tt.body, dashScope{}.Error(tt.status, []byte(tt.body)), []byte(tt.want))
	}
}

// TestDashScopeRoundTrip sends the requests NewRequest builds to the mock
// and translates its answers back.
func TestDashScopeRoundTrip(t *testing.T) {
	srv := mock.New(mock.Config{Keys: []string{"sk-ds"}, StreamChunks: 3, ReplyTokens: 6, EmbeddingDims: 4})
	client := &http.Client{Transport: mock.Transport(srv)}
	spec, _ := Lookup("bailian")
	tg := Target{Spec: spec, BaseURL: "http://dashscope.mock", Key: "sk-ds", Model: "qwen-plus"}
	send := func(tg Target, ep Endpoint, body string) (*http.Response, []byte) {
		t.Helper()
		req, err := dashScope{}.NewRequest(context.Background(), tg, ep, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	const chat = `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hello"}]}`

	resp, body := send(tg, Chat, chat)
	out, err := dashScope{}.Response(Chat, body, "qwen-plus")
	var cc wire.ChatResponse
	if resp.StatusCode != 200 || err != nil || json.Unmarshal(out, &cc) != nil {
		t.Fatalf("chat: %d %s %v", resp.StatusCode, body, err)
	}
	text := cc.Choices[0].Message.Text()
	if len(strings.Fields(text)) != 6 || cc.Choices[0].FinishReason != "stop" || cc.Usage == nil || cc.Usage.CompletionTokens != 6 {
		t.Errorf("chat answer %s", out)
	}

	// Streamed, the same text comes back in pieces, with the usage last.
	req, err := dashScope{}.NewRequest(context.Background(), tg, Chat, []byte(strings.Replace(chat, "{", `{"stream":true,`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	sresp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := dashScopeDrain(dashScope{}.Stream(sresp.Body, "qwen-plus"))
	sresp.Body.Close()
	if err != io.EOF || len(chunks) != 6 {
		t.Fatalf("stream: %v, chunks:\n%s", err, strings.Join(chunks, "\n"))
	}
	streamed := ""
	for _, c := range chunks {
		var ch wire.ChatChunk
		if err := json.Unmarshal([]byte(c), &ch); err != nil {
			t.Fatal(err)
		}
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != nil {
			streamed += *ch.Choices[0].Delta.Content
		}
	}
	if streamed != text || !strings.Contains(chunks[4], `"finish_reason":"stop"`) || !strings.Contains(chunks[5], `"completion_tokens":6`) {
		t.Errorf("streamed %q, want %q:\n%s", streamed, text, strings.Join(chunks, "\n"))
	}

	// A tool call, streamed in fragments, comes back whole.
	req, err = dashScope{}.NewRequest(context.Background(), tg, Chat, []byte(`{"stream":true,"messages":[{"role":"user","content":"weather?"}],
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	sresp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err = dashScopeDrain(dashScope{}.Stream(sresp.Body, "qwen-plus"))
	sresp.Body.Close()
	args, name := "", ""
	for _, c := range chunks {
		var ch wire.ChatChunk
		_ = json.Unmarshal([]byte(c), &ch)
		for _, cc := range ch.Choices {
			for _, tc := range cc.Delta.ToolCalls {
				args += tc.Function.Arguments
				name += tc.Function.Name
			}
		}
	}
	if err != io.EOF || args != `{"city":"sample"}` || name != "get_weather" || !strings.Contains(strings.Join(chunks, ""), `"finish_reason":"tool_calls"`) {
		t.Errorf("tool call %q %q, %v:\n%s", name, args, err, strings.Join(chunks, "\n"))
	}

	// Embeddings.
	resp, body = send(tg, Embeddings, `{"model":"text-embedding-v3","input":["a","b"],"dimensions":3}`)
	out, err = dashScope{}.Response(Embeddings, body, "text-embedding-v3")
	var er wire.EmbeddingResponse
	if resp.StatusCode != 200 || err != nil || json.Unmarshal(out, &er) != nil || len(er.Data) != 2 || len(er.Data[1].Embedding) != 3 ||
		er.Data[1].Index != 1 || er.Usage.TotalTokens < 2 {
		t.Errorf("embeddings: %d %s %v", resp.StatusCode, out, err)
	}

	// A wrong key is refused, and the refusal translated.
	bad := tg
	bad.Key = "sk-wrong"
	resp, body = send(bad, Chat, chat)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d %s", resp.StatusCode, body)
	}
	jsonEqual(t, "wrong key", dashScope{}.Error(resp.StatusCode, body),
		[]byte(`{"error":{"message":"Invalid API-key provided.","type":"authentication_error","param":null,"code":"invalid_api_key"}}`))

	// A streamed call the upstream refuses ends its stream with the error.
	req, err = dashScope{}.NewRequest(context.Background(), tg, Chat, []byte(`{"stream":true,"response_format":{"type":"json_object"},
		"messages":[{"role":"user","content":"hello"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	sresp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dashScopeDrain(dashScope{}.Stream(sresp.Body, "qwen-plus"))
	sresp.Body.Close()
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Message, "json") {
		t.Errorf("refused stream: %v", err)
	}
}

// FuzzDashScope feeds arbitrary bytes to the adapter as a canonical
// request and as an answer, a stream and an error body: none may panic,
// and what they accept must come out as valid JSON.
func FuzzDashScope(f *testing.F) {
	for _, s := range []string{
		`{"model":"qwen-plus","stream":true,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","messages":[{"role":"system","content":"s"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"ok"}]}`,
		`{"model":"moss-moon","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"text-embedding-v3","input":["a"],"dimensions":8}`,
		`{"output":{"choices":[{"finish_reason":"stop","message":{"role":"assistant","content":"","tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{}"}}]}}]},"usage":{"input_tokens":1,"output_tokens":2}}`,
		`{"output":{"text":"hi","finish_reason":"stop"}}`,
		`{"output":{"embeddings":[{"text_index":3,"embedding":[0.1]}]},"usage":{"total_tokens":1}}`,
		dashScopeSSE,
		"event:error\ndata:{\"code\":\"InvalidApiKey\",\"message\":\"x\"}\n\n",
		`{"code":"Throttling","message":"slow down"}`, `{`, ``, `null`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, body string, embed bool) {
		ep := Chat
		if embed {
			ep = Embeddings
		}
		if req, err := (dashScope{}).NewRequest(context.Background(), dashScopeTarget(""), ep, []byte(body)); err == nil {
			out, _ := io.ReadAll(req.Body)
			if !json.Valid(out) {
				t.Fatalf("accepted request became invalid JSON %q", out)
			}
		}
		if out, err := (dashScope{}).Response(ep, []byte(body), "m"); err == nil && !json.Valid(out) {
			t.Fatalf("answer translated to invalid JSON %q", out)
		}
		s := dashScope{}.Stream(strings.NewReader(body), "m")
		for range 1000 {
			chunk, err := s.Next()
			if err != nil {
				break
			}
			if !json.Valid(chunk) {
				t.Fatalf("invalid chunk %q", chunk)
			}
		}
		s.(io.Closer).Close()
		var e wire.ErrorBody
		if eb := (dashScope{}).Error(500, []byte(body)); json.Unmarshal(eb, &e) != nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Fatalf("error body %q is not an OpenAI error", eb)
		}
	})
}
