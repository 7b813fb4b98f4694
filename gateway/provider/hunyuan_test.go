package provider

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// Tencent Cloud's published TC3-HMAC-SHA256 example: DescribeInstances of
// CVM in ap-guangzhou, version 2017-03-12, X-TC-Timestamp 1551113065, this
// body (the \u escapes are in the signed bytes).
const tc3DocPayload = `{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}`

// TestTC3SignatureVectors checks the signer against the worked examples
// of Tencent Cloud's "Signature v3" document (API 213/30654).
func TestTC3SignatureVectors(t *testing.T) {
	base := tc3Request{Method: http.MethodPost, Path: "/", Payload: []byte(tc3DocPayload), Service: "cvm", Timestamp: 1551113065}
	tests := []struct {
		source             string
		secretID, secret   string
		headers            map[string]string
		canonicalHash, sig string
		authorization      string
	}{
		{
			// intl.cloud.tencent.com/document/api/213/30654 (English):
			// content-type and host signed, SecretKey
			// Gu5t9xGARNpq86cd98joQYCN3EXAMPLE, hashed payload
			// 35e9c5b0…, hashed canonical request 5ffe6a04….
			source:   "English document",
			secretID: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", secret: "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
			headers:       map[string]string{"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com"},
			canonicalHash: "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031",
			sig:           "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
			authorization: "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, " +
				"SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
		},
		{
			// The earlier Chinese document: the same request signed with
			// the key as it prints it, masked.
			source:   "earlier Chinese document",
			secretID: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******", secret: "Gu5t9xGARNpq86cd98joQYCN3*******",
			headers:       map[string]string{"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com"},
			canonicalHash: "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031",
			sig:           "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c",
		},
		{
			// cloud.tencent.com/document/api/213/30654 (Chinese, current):
			// x-tc-action signed too, its value lowercased; the SecretKey
			// is the 32 asterisks it prints.
			source:   "current Chinese document",
			secretID: "AKID" + strings.Repeat("*", 32), secret: strings.Repeat("*", 32),
			headers:       map[string]string{"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com", "x-tc-action": "DescribeInstances"},
			canonicalHash: "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84",
			sig:           "10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f",
			authorization: "TC3-HMAC-SHA256 Credential=AKID********************************/2019-02-25/cvm/tc3_request, " +
				"SignedHeaders=content-type;host;x-tc-action, Signature=10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f",
		},
	}
	for _, tt := range tests {
		r := base
		r.Headers = tt.headers
		canonical, _ := r.canonical()
		if !strings.HasSuffix(canonical, "\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064") {
			t.Errorf("%s: canonical request %q", tt.source, canonical)
		}
		wantSTS := "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n" + tt.canonicalHash
		if sts := r.stringToSign(canonical); sts != wantSTS {
			t.Errorf("%s: string to sign %q, want %q", tt.source, sts, wantSTS)
		}
		auth := tc3Authorization(tt.secretID, tt.secret, r)
		if !strings.HasSuffix(auth, "Signature="+tt.sig) {
			t.Errorf("%s: %s, want signature %s", tt.source, auth, tt.sig)
		}
		if tt.authorization != "" && auth != tt.authorization {
			t.Errorf("%s:\n got %s\nwant %s", tt.source, auth, tt.authorization)
		}
	}
}

// TestTC3Canonical checks the canonical request byte for byte, as the
// English document prints it.
func TestTC3Canonical(t *testing.T) {
	r := tc3Request{Method: http.MethodPost, Payload: []byte(tc3DocPayload), Service: "cvm", Timestamp: 1551113065,
		Headers: map[string]string{"Host": "cvm.tencentcloudapi.com", "Content-Type": " application/json; charset=utf-8 "}}
	canonical, signed := r.canonical()
	want := "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n" +
		"35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
	if canonical != want || signed != "content-type;host" {
		t.Errorf("canonical %q, signed %q", canonical, signed)
	}
	// UTC decides the date: 1551113065 is 2019-02-26 00:44:25 in UTC+8.
	if r.scope() != "2019-02-25/cvm/tc3_request" {
		t.Errorf("scope %s", r.scope())
	}
}

// hunyuanTarget is a signed hunyuan Target for tests.
func hunyuanTarget(base string) Target {
	spec, _ := Lookup("hunyuan")
	return Target{Spec: spec.ForCredential(true), BaseURL: base, Key: "AKIDsluicetest", SecretKey: "sluice-secret-key", Model: "hunyuan-turbo"}
}

// hunyuanBody builds the request NewRequest sends and returns its body.
func hunyuanBody(t *testing.T, ep Endpoint, canonical string) ([]byte, error) {
	t.Helper()
	req, err := hunyuan{}.NewRequest(context.Background(), hunyuanTarget(hunyuanTestBase), ep, []byte(canonical))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(req.Body)
}

// hunyuanTestBase is the signed Spec's base URL.
const hunyuanTestBase = "https://hunyuan.tencentcloudapi.com"

func TestHunyuanSpec(t *testing.T) {
	spec, _ := Lookup("hunyuan")
	signed := spec.ForCredential(true)
	if signed.API != APIHunyuan || signed.BaseURL != hunyuanTestBase {
		t.Fatalf("signed spec %+v", signed)
	}
	a, err := For(APIHunyuan)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.(Translator); !ok {
		t.Fatal("hunyuan is not a Translator")
	}
}

// TestHunyuanRequestHeaders checks the API 3.0 headers and that the
// signature covers what is sent.
func TestHunyuanRequestHeaders(t *testing.T) {
	tg := hunyuanTarget("http://127.0.0.1:8080")
	tg.Region = "ap-guangzhou"
	tg.Headers = map[string]string{"X-Team": "blue", "Authorization": "Bearer not-this"}
	body := []byte(`{"model":"hunyuan-lite","messages":[{"role":"user","content":"hi"}]}`)
	req, err := hunyuan{}.NewRequest(context.Background(), tg, Chat, body)
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != http.MethodPost || req.URL.String() != "http://127.0.0.1:8080/" {
		t.Errorf("%s %s", req.Method, req.URL)
	}
	h := req.Header
	for k, want := range map[string]string{"Content-Type": "application/json", "X-TC-Action": "ChatCompletions",
		"X-TC-Version": "2023-09-01", "X-TC-Region": "ap-guangzhou", "X-Team": "blue"} {
		if h.Get(k) != want {
			t.Errorf("%s: %q, want %q", k, h.Get(k), want)
		}
	}
	ts, err := strconv.ParseInt(h.Get("X-TC-Timestamp"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := io.ReadAll(req.Body)
	want := tc3Authorization("AKIDsluicetest", "sluice-secret-key", tc3Request{
		Method: http.MethodPost, Path: "/", Payload: payload, Service: "hunyuan", Timestamp: ts,
		Headers: map[string]string{"content-type": "application/json", "host": "127.0.0.1:8080", "x-tc-action": "ChatCompletions"},
	})
	if h.Get("Authorization") != want || !strings.Contains(want, "/hunyuan/tc3_request, SignedHeaders=content-type;host;x-tc-action, ") {
		t.Errorf("Authorization %q, want %q", h.Get("Authorization"), want)
	}
	if strings.Contains(h.Get("Authorization"), "sluice-secret-key") {
		t.Error("the SecretKey is in the request")
	}

	tg.Region = ""
	req, _ = hunyuan{}.NewRequest(context.Background(), tg, Embeddings, []byte(`{"model":"hunyuan-embedding","input":"hi"}`))
	if req.Header.Get("X-TC-Action") != "GetEmbedding" || req.Header.Get("X-TC-Region") != "" {
		t.Errorf("embeddings headers %v", req.Header)
	}
}

func TestHunyuanURL(t *testing.T) {
	for base, want := range map[string]string{
		"https://hunyuan.tencentcloudapi.com":        "https://hunyuan.tencentcloudapi.com/",
		"https://hunyuan.tencentcloudapi.com/":       "https://hunyuan.tencentcloudapi.com/",
		"https://hunyuan.intl.tencentcloudapi.com":   "https://hunyuan.intl.tencentcloudapi.com/",
		"http://127.0.0.1:9000/tencent/":             "http://127.0.0.1:9000/tencent/",
		"https://api.hunyuan.cloud.tencent.com/v1":   "https://hunyuan.tencentcloudapi.com/",
		"https://API.hunyuan.cloud.tencent.com:443/": "https://hunyuan.tencentcloudapi.com/",
	} {
		u, err := hunyuanURL(base)
		if err != nil || u.String() != want {
			t.Errorf("%s: %v %v, want %s", base, u, err, want)
		}
	}
}

func TestHunyuanRequestConfig(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	for _, tg := range []Target{
		{BaseURL: hunyuanTestBase, Key: "id"},
		{BaseURL: hunyuanTestBase, SecretKey: "sk-secret"},
		{BaseURL: "ftp://x", Key: "id", SecretKey: "sk-secret"},
		{BaseURL: "", Key: "id", SecretKey: "sk-secret"},
	} {
		_, err := hunyuan{}.NewRequest(context.Background(), tg, Chat, body)
		var e *Error
		if err == nil || errors.As(err, &e) || strings.Contains(err.Error(), "sk-secret") {
			t.Errorf("%+v: %v", tg, err)
		}
	}
	if _, err := (hunyuan{}).NewRequest(context.Background(), hunyuanTarget(hunyuanTestBase), "completions", body); err == nil {
		t.Error("legacy completions accepted")
	}
}

func TestHunyuanRequest(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"minimal", `{"model":"hunyuan-lite","messages":[{"role":"user","content":"hi"}]}`,
			`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"hi"}]}`},
		{"default model, ignored parameters",
			`{"messages":[{"role":"user","content":"hi","name":"bob"}],"max_tokens":10,"presence_penalty":1,"user":"u",
			  "stream":true,"stream_options":{"include_usage":true},"parallel_tool_calls":false,"n":1,"response_format":{"type":"text"}}`,
			`{"Model":"hunyuan-turbo","Messages":[{"Role":"user","Content":"hi"}],"Stream":true}`},
		{"sampling",
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"top_p":0.5,"seed":7,"stop":"END"}`,
			`{"Model":"m","Messages":[{"Role":"user","Content":"hi"}],"TopP":0.5,"Temperature":0,"Seed":7,"Stop":["END"]}`},
		{"system messages lead, merged",
			`{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"},
			  {"role":"developer","content":[{"type":"text","text":"Use French."}]}]}`,
			`{"Model":"m","Messages":[{"Role":"system","Content":"Be brief.\n\nUse French."},{"Role":"user","Content":"hi"}]}`},
		{"text parts, consecutive users merged",
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
			  {"role":"user","content":"c"}]}`,
			`{"Model":"m","Messages":[{"Role":"user","Content":"a\nb\nc"}]}`},
		{"images",
			`{"model":"hunyuan-vision","messages":[{"role":"user","content":"look"},{"role":"user","content":[
			  {"type":"text","text":"What is it?"},{"type":"image_url","image_url":{"url":"https://x.test/a.png","detail":"high"}},
			  {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}}]}]}`,
			`{"Model":"hunyuan-vision","Messages":[{"Role":"user","Contents":[{"Type":"text","Text":"look"},{"Type":"text","Text":"What is it?"},
			  {"Type":"image_url","ImageUrl":{"Url":"https://x.test/a.png"}},{"Type":"image_url","ImageUrl":{"Url":"data:image/jpeg;base64,/9j/4AAQ"}}]}]}`},
		{"tools",
			`{"model":"hunyuan-functioncall","messages":[
			  {"role":"user","content":"Weather in Beijing?"},
			  {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Beijing\"}"}}]},
			  {"role":"tool","tool_call_id":"call_1","content":"{\"temp\":35}"},
			  {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"sunny"}]}],
			  "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather of a city",
			    "parameters":{"type": "object", "properties":{"city":{"type":"string"}}}}},
			    {"type":"function","function":{"name":"now"}}],
			  "tool_choice":"auto"}`,
			`{"Model":"hunyuan-functioncall","Messages":[{"Role":"user","Content":"Weather in Beijing?"},
			  {"Role":"assistant","ToolCalls":[{"Id":"call_1","Type":"function","Function":{"Name":"get_weather","Arguments":"{\"city\":\"Beijing\"}"}}]},
			  {"Role":"tool","Content":"{\"temp\":35}","ToolCallId":"call_1"},{"Role":"tool","Content":"sunny","ToolCallId":"call_2"}],
			  "Tools":[{"Type":"function","Function":{"Name":"get_weather","Parameters":"{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}","Description":"Weather of a city"}},
			    {"Type":"function","Function":{"Name":"now"}}],
			  "ToolChoice":"auto"}`},
		{"named function",
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"a"}},
			  {"type":"function","function":{"name":"b"}}],"tool_choice":{"type":"function","function":{"name":"b"}}}`,
			`{"Model":"m","Messages":[{"Role":"user","Content":"hi"}],"Tools":[{"Type":"function","Function":{"Name":"a"}},
			  {"Type":"function","Function":{"Name":"b"}}],"ToolChoice":"custom","CustomTool":{"Type":"function","Function":{"Name":"b"}}}`},
		{"required with one tool",
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":"required"}`,
			`{"Model":"m","Messages":[{"Role":"user","Content":"hi"}],"Tools":[{"Type":"function","Function":{"Name":"a"}}],
			  "ToolChoice":"custom","CustomTool":{"Type":"function","Function":{"Name":"a"}}}`},
		{"tool_choice without tools",
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"tool_choice":"none"}`,
			`{"Model":"m","Messages":[{"Role":"user","Content":"hi"}]}`},
		{"assistant turns merged",
			`{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}`,
			`{"Model":"m","Messages":[{"Role":"user","Content":"hi"},{"Role":"assistant","Content":"a\nb"},{"Role":"user","Content":"c"}]}`},
	}
	for _, tt := range tests {
		got, err := hunyuanBody(t, Chat, tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		jsonEqual(t, tt.name, got, []byte(tt.want))
	}
}

func TestHunyuanRequestRefused(t *testing.T) {
	tools2 := `"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}]`
	tests := []struct{ in, want string }{
		{`{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2}`, "n:"},
		{`{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}`, "response_format:"},
		{`{"model":"m","messages":[{"role":"user","content":"hi"}],"logprobs":true}`, "logprobs:"},
		{`{"model":"m","messages":[{"role":"user","content":"hi"}],"functions":[{"name":"f"}]}`, "functions"},
		{`{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`, "messages[0]: content[0]"},
		{`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/a.png"}}]}]}`, "http(s) URL or a base64 data: URL"},
		{`{"model":"m","messages":[{"role":"tool","content":"r"}]}`, "messages[0]: tool_call_id"},
		{`{"model":"m","messages":[{"role":"function","content":"r"}]}`, `messages[0]: role "function"`},
		{`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"1","type":"custom","function":{"name":"f"}}]}]}`, "tool_calls[0]"},
		{`{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"custom","function":{"name":"a"}}]}`, "tools[0]"},
		{`{"model":"m","messages":[{"role":"user","content":"hi"}],` + tools2 + `,"tool_choice":"required"}`, "tool_choice: required"},
		{`{"model":"m","messages":[{"role":"user","content":"hi"}],` + tools2 + `,"tool_choice":{"type":"function","function":{"name":"c"}}}`, `tool_choice: function "c"`},
		{`{"model":"m","messages":[{"role":"user","content":"hi"}],"tool_choice":"required"}`, "tool_choice: required"},
	}
	for _, tt := range tests {
		_, err := hunyuanBody(t, Chat, tt.in)
		hunyuanRefused(t, tt.in, err, tt.want)
	}
	tg := hunyuanTarget(hunyuanTestBase)
	tg.Model = ""
	_, err := hunyuan{}.NewRequest(context.Background(), tg, Chat, []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
	hunyuanRefused(t, "no model", err, "model:")
}

// hunyuanRefused checks a refusal: a 400 invalid_request_error naming why.
func hunyuanRefused(t *testing.T, name string, err error, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Type != "invalid_request_error" ||
		!strings.HasPrefix(e.Message, "hunyuan: ") || !strings.Contains(e.Message, want) {
		t.Errorf("%s: %v, want a 400 about %q", name, err, want)
	}
}

func TestHunyuanEmbedRequest(t *testing.T) {
	for in, want := range map[string]string{
		`{"model":"hunyuan-embedding","input":"hello"}`:                                `{"Input":"hello"}`,
		`{"model":"hunyuan-embedding","input":["hello"],"encoding_format":"base64"}`:   `{"Input":"hello"}`,
		`{"model":"hunyuan-embedding","input":["a","b"],"dimensions":1024,"user":"x"}`: `{"InputList":["a","b"]}`,
		`{"input":["a","b","c"]}`: `{"InputList":["a","b","c"]}`,
	} {
		got, err := hunyuanBody(t, Embeddings, in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		jsonEqual(t, in, got, []byte(want))
	}
	many, _ := json.Marshal(map[string]any{"input": make([]string, 51)})
	for in, want := range map[string]string{
		`{"input":"a","dimensions":256}`: "dimensions:",
		`{"input":[[1,2,3]]}`:            "input:",
		`{"input":[]}`:                   "input:",
		string(many):                     "at most 50",
	} {
		_, err := hunyuanBody(t, Embeddings, in)
		hunyuanRefused(t, in, err, want)
	}
}

func TestHunyuanResponse(t *testing.T) {
	// The document's hunyuan-functioncall example (non-streamed), with an
	// Id, and a text answer.
	tools := `{"Response":{"RequestId":"e7f5ce41","Note":"以上内容为AI生成","Choices":[{"Message":{"Role":"assistant",
		"Content":"使用get_current_weather工具","ToolCalls":[{"Id":"call_x","Type":"function","Function":{"Name":"get_current_weather",
		"Arguments":"{\"location\":\"北京\"}"}}]},"FinishReason":"tool_calls"}],"Created":1719638614,"Id":"e7f5ce41",
		"Usage":{"PromptTokens":6,"CompletionTokens":46,"TotalTokens":52}}}`
	out, err := hunyuan{}.Response(Chat, []byte(tools), "hunyuan-functioncall")
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, "tool call", out, []byte(`{"id":"chatcmpl-e7f5ce41","object":"chat.completion","created":1719638614,"model":"hunyuan-functioncall",
		"choices":[{"index":0,"message":{"role":"assistant","content":"使用get_current_weather工具","tool_calls":[{"id":"call_x","type":"function",
		"function":{"name":"get_current_weather","arguments":"{\"location\":\"北京\"}"}}]},"finish_reason":"tool_calls"}],
		"usage":{"prompt_tokens":6,"completion_tokens":46,"total_tokens":52}}`))

	text := `{"Response":{"Choices":[{"Message":{"Role":"assistant","Content":"你好！","ReasoningContent":"hmm"},"FinishReason":"sensitive"}],
		"Created":1710902312,"Id":"e4657570","Usage":{"PromptTokens":3,"CompletionTokens":14,"TotalTokens":17},"RequestId":"r"}}`
	out, err = hunyuan{}.Response(Chat, []byte(text), "hunyuan-pro")
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, "text", out, []byte(`{"id":"chatcmpl-e4657570","object":"chat.completion","created":1710902312,"model":"hunyuan-pro",
		"choices":[{"index":0,"message":{"role":"assistant","content":"你好！"},"finish_reason":"content_filter"}],
		"usage":{"prompt_tokens":3,"completion_tokens":14,"total_tokens":17}}`))

	calls := `{"Response":{"Choices":[{"Message":{"Role":"assistant","Content":"","ToolCalls":[{"Type":"function","Function":{"Name":"f","Arguments":""}}]},"FinishReason":"stop"}],"Id":"a"}}`
	out, err = hunyuan{}.Response(Chat, []byte(calls), "m")
	var cr wire.ChatResponse
	if err != nil || json.Unmarshal(out, &cr) != nil {
		t.Fatal(err, string(out))
	}
	c := cr.Choices[0]
	if c.FinishReason != "tool_calls" || string(c.Message.Content) != "null" || !strings.HasPrefix(c.Message.ToolCalls[0].ID, "call_") ||
		c.Message.ToolCalls[0].Function.Arguments != "{}" {
		t.Errorf("calls: %s", out)
	}

	if _, err := (hunyuan{}).Response(Chat, []byte(`{"choices":[]}`), "m"); err == nil {
		t.Error("a body without Response accepted")
	}
}

func TestHunyuanEmbedResponse(t *testing.T) {
	body := `{"Response":{"Data":[{"Embedding":[0.1,0.2],"Index":0,"Object":"embedding"},{"Embedding":[0.3],"Index":0,"Object":"embedding"}],
		"Usage":{"PromptTokens":5,"TotalTokens":5},"RequestId":"r"}}`
	out, err := hunyuan{}.Response(Embeddings, []byte(body), "hunyuan-embedding")
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, "embeddings", out, []byte(`{"object":"list","model":"hunyuan-embedding","data":[
		{"object":"embedding","index":0,"embedding":[0.1,0.2]},{"object":"embedding","index":1,"embedding":[0.3]}],
		"usage":{"prompt_tokens":5,"completion_tokens":0,"total_tokens":5}}`))
}

// TestHunyuanRefusalIn200 checks the errors Tencent sends with HTTP 200.
func TestHunyuanRefusalIn200(t *testing.T) {
	tests := []struct {
		code   string
		status int
		typ    string
	}{
		{"AuthFailure.SignatureFailure", 401, "authentication_error"},
		{"AuthFailure.SecretIdNotFound", 401, "authentication_error"},
		{"AuthFailure.SignatureExpire", 401, "authentication_error"},
		{"AuthFailure.UnauthorizedOperation", 403, "permission_error"},
		{"FailedOperation.ServiceNotActivated", 403, "permission_error"},
		{"RequestLimitExceeded", 429, "requests"},
		{"RequestLimitExceeded.UinLimitExceeded", 429, "requests"},
		{"LimitExceeded", 429, "requests"},
		{"FailedOperation.EngineServerLimitExceeded", 429, "requests"},
		{"FailedOperation.FreeResourcePackExhausted", 429, "insufficient_quota"},
		{"ResourceUnavailable.InArrears", 429, "insufficient_quota"},
		{"InvalidParameter", 400, "invalid_request_error"},
		{"InvalidParameterValue.ParameterValueError", 400, "invalid_request_error"},
		{"MissingParameter", 400, "invalid_request_error"},
		{"OperationDenied.TextIllegalDetected", 400, "invalid_request_error"},
		{"InvalidParameterValue.Model", 404, "invalid_request_error"},
		{"InternalError", 500, "server_error"},
		{"FailedOperation.EngineRequestTimeout", 504, "server_error"},
		{"FailedOperation.EngineServerError", 503, "server_error"},
		{"FailedOperation", 502, "server_error"},
		{"SomethingNew", 502, "server_error"},
	}
	for _, tt := range tests {
		body := `{"Response":{"Error":{"Code":"` + tt.code + `","Message":"why"},"RequestId":"r"}}`
		_, err := hunyuan{}.Response(Chat, []byte(body), "m")
		var e *Error
		if !errors.As(err, &e) || e.Status != tt.status || e.Type != tt.typ || e.Message != tt.code+": why" {
			t.Errorf("%s: %#v", tt.code, err)
		}
	}
}

func TestHunyuanError(t *testing.T) {
	got := hunyuan{}.Error(502, []byte(`{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"bad signature"},"RequestId":"r"}}`))
	jsonEqual(t, "tencent", got, []byte(`{"error":{"message":"AuthFailure.SignatureFailure: bad signature","type":"authentication_error","param":null,"code":"invalid_api_key"}}`))
	got = hunyuan{}.Error(400, []byte(`{"Response":{"Error":{"Code":"FailedOperation.Custom","Message":"m"}}}`))
	jsonEqual(t, "unmapped", got, []byte(`{"error":{"message":"FailedOperation.Custom: m","type":"server_error","param":null,"code":"FailedOperation.Custom"}}`))
	got = hunyuan{}.Error(503, []byte("<html>busy</html>"))
	jsonEqual(t, "html", got, []byte(`{"error":{"message":"hunyuan answered HTTP 503: <html>busy</html>","type":"server_error","param":null,"code":null}}`))
}

// hunyuanSSE is the document's streamed answer to "计算1+1".
const hunyuanSSE = `data: {"Note":"以上内容为AI生成","Choices":[{"FinishReason":"","Delta":{"Role":"assistant","Content":"1"}}],"Created":1700549760,"Id":"148b89ef","Usage":{"PromptTokens":4,"CompletionTokens":2,"TotalTokens":6}}

data: {"Note":"以上内容为AI生成","Choices":[{"FinishReason":"","Delta":{"Role":"assistant","Content":"+"}}],"Created":1700549760,"Id":"148b89ef","Usage":{"PromptTokens":4,"CompletionTokens":3,"TotalTokens":7}}

data: {"Note":"以上内容为AI生成","Choices":[{"FinishReason":"","Delta":{"Role":"assistant","Content":"1=2"}}],"Created":1700549760,"Id":"148b89ef","Usage":{"PromptTokens":4,"CompletionTokens":5,"TotalTokens":9}}

data: {"Note":"以上内容为AI生成","Choices":[{"FinishReason":"stop","Delta":{"Role":"assistant","Content":""}}],"Created":1700549760,"Id":"148b89ef","Usage":{"PromptTokens":4,"CompletionTokens":5,"TotalTokens":9}}

`

// hunyuanToolSSE is the document's streamed hunyuan-functioncall answer.
const hunyuanToolSSE = `data: {"Choices":[{"Delta":{"Role":"assistant","Content":"","ToolCalls":[{"Id":"call_cq154","Type":"function","Function":{"Name":"get_current_weather","Arguments":""}}]},"FinishReason":""}],"Created":1719816830,"Id":"cd37cf66","Usage":{"PromptTokens":6,"CompletionTokens":0,"TotalTokens":6}}

data: {"Choices":[{"Delta":{"Role":"assistant","Content":"","ToolCalls":[{"Id":"call_cq154","Type":"function","Function":{"Name":"","Arguments":"{\"location\":\"北京\"}"}}]},"FinishReason":""}],"Created":1719816830,"Id":"cd37cf66","Usage":{"PromptTokens":6,"CompletionTokens":0,"TotalTokens":6}}

data: {"Choices":[{"Delta":{"Role":"assistant","Content":"计划使用工具"},"FinishReason":""}],"Created":1719816830,"Id":"cd37cf66","Usage":{"PromptTokens":6,"CompletionTokens":46,"TotalTokens":52}}

data: {"Choices":[{"Delta":{"Role":"assistant","Content":""},"FinishReason":"tool_calls"}],"Created":1719816830,"Id":"cd37cf66","Usage":{"PromptTokens":6,"CompletionTokens":46,"TotalTokens":52}}

`

// hunyuanDrain reads a stream to its end.
func hunyuanDrain(s Stream) (chunks []wire.ChatChunk, err error) {
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

// hunyuanStreamText concatenates a stream's content deltas.
func hunyuanStreamText(chunks []wire.ChatChunk) string {
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

func TestHunyuanStream(t *testing.T) {
	chunks, err := hunyuanDrain(hunyuan{}.Stream(strings.NewReader(hunyuanSSE), "hunyuan-pro"))
	if err != io.EOF || len(chunks) != 6 {
		t.Fatalf("%v, %d chunks", err, len(chunks))
	}
	first, finish, last := chunks[0], chunks[4], chunks[5]
	if first.Choices[0].Delta.Role != "assistant" || first.ID != "chatcmpl-148b89ef" || first.Model != "hunyuan-pro" {
		t.Errorf("first chunk %+v", first)
	}
	if hunyuanStreamText(chunks) != "1+1=2" {
		t.Errorf("text %q", hunyuanStreamText(chunks))
	}
	if r := finish.Choices[0].FinishReason; r == nil || *r != "stop" {
		t.Errorf("finish chunk %+v", finish)
	}
	if len(last.Choices) != 0 || last.Usage == nil || *last.Usage != (wire.Usage{PromptTokens: 4, CompletionTokens: 5, TotalTokens: 9}) {
		t.Errorf("usage chunk %+v", last)
	}
}

func TestHunyuanStreamToolCalls(t *testing.T) {
	chunks, err := hunyuanDrain(hunyuan{}.Stream(strings.NewReader(hunyuanToolSSE), "hunyuan-functioncall"))
	if err != io.EOF || len(chunks) != 6 {
		t.Fatalf("%v, %d chunks", err, len(chunks))
	}
	call := chunks[1].Choices[0].Delta.ToolCalls
	if len(call) != 1 || *call[0].Index != 0 || call[0].ID != "call_cq154" || call[0].Type != "function" ||
		call[0].Function.Name != "get_current_weather" || call[0].Function.Arguments != "" {
		t.Errorf("call start %+v", chunks[1])
	}
	args := chunks[2].Choices[0].Delta.ToolCalls
	if len(args) != 1 || *args[0].Index != 0 || args[0].ID != "" || args[0].Function.Name != "" || args[0].Function.Arguments != `{"location":"北京"}` {
		t.Errorf("call arguments %+v", chunks[2])
	}
	if hunyuanStreamText(chunks) != "计划使用工具" {
		t.Errorf("text %q", hunyuanStreamText(chunks))
	}
	if r := chunks[4].Choices[0].FinishReason; r == nil || *r != "tool_calls" {
		t.Errorf("finish %+v", chunks[4])
	}
	if u := chunks[5].Usage; u == nil || u.TotalTokens != 52 {
		t.Errorf("usage %+v", chunks[5])
	}
}

func TestHunyuanStreamEnds(t *testing.T) {
	// Cut before the finish event.
	cut := hunyuanSSE[:strings.Index(hunyuanSSE, `data: {"Note":"以上内容为AI生成","Choices":[{"FinishReason":"stop"`)]
	chunks, err := hunyuanDrain(hunyuan{}.Stream(strings.NewReader(cut), "m"))
	if err != io.ErrUnexpectedEOF || hunyuanStreamText(chunks) != "1+1=2" {
		t.Errorf("cut: %v %q", err, hunyuanStreamText(chunks))
	}
	// Empty.
	if _, err := hunyuanDrain(hunyuan{}.Stream(strings.NewReader(""), "m")); err != io.ErrUnexpectedEOF {
		t.Errorf("empty: %v", err)
	}
	// A failure in the stream.
	broken := hunyuanSSE[:strings.Index(hunyuanSSE, "data: {\"Note\":\"以上内容为AI生成\",\"Choices\":[{\"FinishReason\":\"\",\"Delta\":{\"Role\":\"assistant\",\"Content\":\"+\"")] +
		"data: {\"ErrorMsg\":{\"Msg\":\"request model timeout\",\"Code\":4001},\"Id\":\"148b89ef\"}\n\n"
	chunks, err = hunyuanDrain(hunyuan{}.Stream(strings.NewReader(broken), "m"))
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusGatewayTimeout || e.Message != "request model timeout" || hunyuanStreamText(chunks) != "1" {
		t.Errorf("broken: %v %q", err, hunyuanStreamText(chunks))
	}
	// A body that is neither an event stream nor a refusal.
	if _, err := hunyuanDrain(hunyuan{}.Stream(strings.NewReader(`{"foo":1}`), "m")); err == nil || errors.As(err, &e) {
		t.Errorf("json: %v", err)
	}
}

// TestHunyuanStreamRefused: a refused streamed call is a JSON body with
// HTTP 200.
func TestHunyuanStreamRefused(t *testing.T) {
	body := "\n  {\"Response\":{\"Error\":{\"Code\":\"AuthFailure.SignatureFailure\",\"Message\":\"The provided credentials could not be validated.\"},\"RequestId\":\"r\"}}"
	_, err := hunyuanDrain(hunyuan{}.Stream(strings.NewReader(body), "m"))
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || !strings.HasPrefix(e.Message, "AuthFailure.SignatureFailure: ") {
		t.Errorf("%#v", err)
	}
}

func TestHunyuanStreamClose(t *testing.T) {
	s := hunyuan{}.Stream(strings.NewReader(hunyuanSSE), "m")
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	if err := s.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	if chunk, err := s.Next(); err == nil {
		t.Fatalf("chunk %s after Close", chunk)
	}
}

// hunyuanMock serves a mock with one account over a socket.
func hunyuanMock(t *testing.T, cfg mock.Config) *httptest.Server {
	t.Helper()
	cfg.Accounts = []mock.Account{{ID: "AKIDsluicetest", Secret: "sluice-secret-key"}}
	srv := httptest.NewServer(mock.New(cfg))
	t.Cleanup(srv.Close)
	return srv
}

// hunyuanCall sends a canonical request through the adapter to the mock.
func hunyuanCall(t *testing.T, client *http.Client, tg Target, ep Endpoint, body string) *http.Response {
	t.Helper()
	req, err := hunyuan{}.NewRequest(context.Background(), tg, ep, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return resp
}

// hunyuanAnswer reads and translates a complete answer.
func hunyuanAnswer(t *testing.T, resp *http.Response, ep Endpoint, model string) ([]byte, error) {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return hunyuan{}.Response(ep, body, model)
}

// TestHunyuanRoundTrip sends the adapter's requests to the mock, over a
// socket and through mock.Transport, and reads its answers back.
func TestHunyuanRoundTrip(t *testing.T) {
	srv := hunyuanMock(t, mock.Config{ReplyTokens: 6, StreamChunks: 3})
	inProcess := &http.Client{Transport: mock.Transport(mock.New(mock.Config{ReplyTokens: 6, StreamChunks: 3,
		Accounts: []mock.Account{{ID: "AKIDsluicetest", Secret: "sluice-secret-key"}}}))}
	for name, via := range map[string]struct {
		client *http.Client
		base   string
	}{"socket": {srv.Client(), srv.URL}, "transport": {inProcess, hunyuanTestBase}} {
		t.Run(name, func(t *testing.T) {
			tg := hunyuanTarget(via.base)
			chat := `{"model":"hunyuan-turbo","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"}]}`
			out, err := hunyuanAnswer(t, hunyuanCall(t, via.client, tg, Chat, chat), Chat, "hunyuan-turbo")
			var cr wire.ChatResponse
			if err != nil || json.Unmarshal(out, &cr) != nil {
				t.Fatal(err, string(out))
			}
			text := cr.Choices[0].Message.Text()
			if len(strings.Fields(text)) != 6 || cr.Choices[0].FinishReason != "stop" || cr.Usage == nil || cr.Usage.CompletionTokens != 6 {
				t.Errorf("chat %s", out)
			}

			stream := strings.Replace(chat, `"messages"`, `"stream":true,"messages"`, 1)
			chunks, err := hunyuanDrain(hunyuan{}.Stream(hunyuanCall(t, via.client, tg, Chat, stream).Body, "hunyuan-turbo"))
			if err != io.EOF || hunyuanStreamText(chunks) != text {
				t.Fatalf("stream: %v, %q, want %q", err, hunyuanStreamText(chunks), text)
			}
			if u := chunks[len(chunks)-1].Usage; u == nil || *u != *cr.Usage {
				t.Errorf("stream usage %+v, want %+v", u, cr.Usage)
			}

			embed := `{"model":"hunyuan-embedding","input":["a","b"]}`
			out, err = hunyuanAnswer(t, hunyuanCall(t, via.client, tg, Embeddings, embed), Embeddings, "hunyuan-embedding")
			var er wire.EmbeddingResponse
			if err != nil || json.Unmarshal(out, &er) != nil || len(er.Data) != 2 || er.Data[1].Index != 1 || len(er.Data[0].Embedding) == 0 || er.Usage.PromptTokens == 0 {
				t.Errorf("embeddings %v %s", err, out)
			}
		})
	}
}

// TestHunyuanRoundTripTools checks a forced tool call, plain and streamed,
// and the text answer to its result.
func TestHunyuanRoundTripTools(t *testing.T) {
	srv := hunyuanMock(t, mock.Config{StreamChunks: 4})
	tg := hunyuanTarget(srv.URL)
	body := `{"model":"hunyuan-functioncall","messages":[{"role":"user","content":"Weather in Paris?"}],
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
		"properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city","unit"]}}}],
		"tool_choice":"required"}`
	out, err := hunyuanAnswer(t, hunyuanCall(t, srv.Client(), tg, Chat, body), Chat, "m")
	var cr wire.ChatResponse
	if err != nil || json.Unmarshal(out, &cr) != nil {
		t.Fatal(err, string(out))
	}
	calls := cr.Choices[0].Message.ToolCalls
	if cr.Choices[0].FinishReason != "tool_calls" || len(calls) != 1 || calls[0].Function.Name != "get_weather" ||
		calls[0].Function.Arguments != `{"city":"sample","unit":"celsius"}` || !strings.HasPrefix(calls[0].ID, "call_") {
		t.Fatalf("tool call %s", out)
	}

	stream := strings.Replace(body, `"messages"`, `"stream":true,"messages"`, 1)
	chunks, err := hunyuanDrain(hunyuan{}.Stream(hunyuanCall(t, srv.Client(), tg, Chat, stream).Body, "m"))
	if err != io.EOF {
		t.Fatal(err)
	}
	var args strings.Builder
	var id, name, finish string
	for _, c := range chunks {
		for _, ch := range c.Choices {
			for _, tc := range ch.Delta.ToolCalls {
				if *tc.Index != 0 {
					t.Errorf("index %d", *tc.Index)
				}
				id, name = cmp.Or(tc.ID, id), cmp.Or(tc.Function.Name, name)
				args.WriteString(tc.Function.Arguments)
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	if !strings.HasPrefix(id, "call_") || name != "get_weather" || args.String() != `{"city":"sample","unit":"celsius"}` || finish != "tool_calls" {
		t.Errorf("streamed call %q %q %q %q", id, name, args.String(), finish)
	}

	result := `{"model":"hunyuan-functioncall","messages":[{"role":"user","content":"Weather in Paris?"},
		{"role":"assistant","tool_calls":[{"id":"` + calls[0].ID + `","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
		{"role":"tool","tool_call_id":"` + calls[0].ID + `","content":"sunny"}],
		"tools":[{"type":"function","function":{"name":"get_weather"}}]}`
	out, err = hunyuanAnswer(t, hunyuanCall(t, srv.Client(), tg, Chat, result), Chat, "m")
	if err != nil || json.Unmarshal(out, &cr) != nil || cr.Choices[0].FinishReason != "stop" || cr.Choices[0].Message.Text() == "" {
		t.Errorf("answer to the result: %v %s", err, out)
	}
}

// TestHunyuanRoundTripRefused checks the mock's refusals of bad
// credentials, in a complete and a streamed answer.
func TestHunyuanRoundTripRefused(t *testing.T) {
	srv := hunyuanMock(t, mock.Config{})
	chat := `{"model":"hunyuan-turbo","messages":[{"role":"user","content":"Hello"}]}`
	stream := `{"model":"hunyuan-turbo","stream":true,"messages":[{"role":"user","content":"Hello"}]}`
	for _, tt := range []struct {
		id, secret, code string
	}{
		{"AKIDsluicetest", "wrong-secret", "AuthFailure.SignatureFailure"},
		{"AKIDunknown", "sluice-secret-key", "AuthFailure.SecretIdNotFound"},
	} {
		tg := hunyuanTarget(srv.URL)
		tg.Key, tg.SecretKey = tt.id, tt.secret
		_, err := hunyuanAnswer(t, hunyuanCall(t, srv.Client(), tg, Chat, chat), Chat, "m")
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || !strings.HasPrefix(e.Message, tt.code+": ") ||
			strings.Contains(e.Message, tt.secret) {
			t.Errorf("%s: %#v", tt.code, err)
		}
		_, err = hunyuanDrain(hunyuan{}.Stream(hunyuanCall(t, srv.Client(), tg, Chat, stream).Body, "m"))
		if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || !strings.HasPrefix(e.Message, tt.code+": ") {
			t.Errorf("%s streamed: %#v", tt.code, err)
		}
	}
}

// FuzzHunyuan feeds arbitrary bytes to the adapter as a canonical request
// and as an answer, a stream and an error body: nothing may panic, what
// is accepted comes out as valid JSON, and an error body is an OpenAI
// error object.
func FuzzHunyuan(f *testing.F) {
	for _, s := range []string{translateSeeds[0], translateSeeds[1], translateSeeds[2], hunyuanSSE, hunyuanToolSSE,
		`{"Response":{"Choices":[{"Message":{"Role":"assistant","Content":"hi"},"FinishReason":"stop"}],"Usage":{"PromptTokens":1.5}}}`,
		`{"Response":{"Data":[{"Embedding":[0.1]}]}}`, `{"Response":{"Error":{"Code":"AuthFailure","Message":"x"}}}`, `{`, ``} {
		f.Add(s, false)
		f.Add(s, true)
	}
	ctx := context.Background()
	tg := hunyuanTarget(hunyuanTestBase)
	f.Fuzz(func(t *testing.T, body string, embed bool) {
		ep := Chat
		if embed {
			ep = Embeddings
		}
		if req, err := (hunyuan{}).NewRequest(ctx, tg, ep, []byte(body)); err == nil {
			if out, _ := io.ReadAll(req.Body); !json.Valid(out) {
				t.Fatalf("accepted request became invalid JSON %q", out)
			}
		}
		if out, err := (hunyuan{}).Response(ep, []byte(body), "m"); err == nil && !json.Valid(out) {
			t.Fatalf("answer translated to invalid JSON %q", out)
		}
		s := hunyuan{}.Stream(strings.NewReader(body), "m")
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
		if eb := (hunyuan{}).Error(500, []byte(body)); json.Unmarshal(eb, &e) != nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Fatalf("error body %q is not an OpenAI error", eb)
		}
	})
}
