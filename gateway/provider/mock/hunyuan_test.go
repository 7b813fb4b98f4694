package mock_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// The tests sign their calls with their own TC3-HMAC-SHA256 signer,
// checked against Tencent Cloud's published example first.

const (
	hyID     = "AKIDmocktest"
	hySecret = "mock-secret-key"
)

var hyAccounts = []mock.Account{{ID: hyID, Secret: hySecret}}

// hySigned is what a test signs.
type hySigned struct {
	id, secret, service string
	headers             []string // signed header names, sorted
	ts                  int64
}

// hySign returns the Authorization header of a POST of payload to
// host/path with the given header values (by lowercase name).
func hySign(s hySigned, host, path string, values map[string]string, payload []byte) string {
	var canon strings.Builder
	for _, name := range s.headers {
		v := values[name]
		if name == "host" {
			v = host
		}
		canon.WriteString(name + ":" + strings.ToLower(v) + "\n")
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	signed := strings.Join(s.headers, ";")
	request := "POST\n" + path + "\n\n" + canon.String() + "\n" + signed + "\n" + sum(payload)
	date := time.Unix(s.ts, 0).UTC().Format(time.DateOnly)
	scope := date + "/" + s.service + "/tc3_request"
	toSign := "TC3-HMAC-SHA256\n" + strconv.FormatInt(s.ts, 10) + "\n" + scope + "\n" + sum([]byte(request))
	key := mac(mac(mac([]byte("TC3"+s.secret), date), s.service), "tc3_request")
	return "TC3-HMAC-SHA256 Credential=" + s.id + "/" + scope + ", SignedHeaders=" + signed +
		", Signature=" + hex.EncodeToString(mac(key, toSign))
}

// TestHunyuanTestSigner checks the tests' signer against the current
// Chinese "Signature v3" document (cloud.tencent.com/document/api/213/30654).
func TestHunyuanTestSigner(t *testing.T) {
	got := hySign(hySigned{id: "AKID" + strings.Repeat("*", 32), secret: strings.Repeat("*", 32), service: "cvm",
		headers: []string{"content-type", "host", "x-tc-action"}, ts: 1551113065},
		"cvm.tencentcloudapi.com", "/", map[string]string{"content-type": "application/json; charset=utf-8", "x-tc-action": "DescribeInstances"},
		[]byte(`{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}`))
	want := "TC3-HMAC-SHA256 Credential=AKID********************************/2019-02-25/cvm/tc3_request, " +
		"SignedHeaders=content-type;host;x-tc-action, Signature=10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"
	if got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

// hyCall is one API 3.0 call.
type hyCall struct {
	action, version string
	body            any
	sign            *hySigned // nil: unsigned
	edit            func(*http.Request)
}

// hyPost sends a call to the target, signed as c.sign says.
func hyPost(t *testing.T, tg target, c hyCall) *http.Response {
	t.Helper()
	payload, err := json.Marshal(c.body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, tg.base+"/", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	version := c.version
	if version == "" {
		version = "2023-09-01"
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("X-TC-Action", c.action)
	h.Set("X-TC-Version", version)
	if c.sign != nil {
		h.Set("X-TC-Timestamp", strconv.FormatInt(c.sign.ts, 10))
		u, _ := url.Parse(tg.base)
		h.Set("Authorization", hySign(*c.sign, u.Host, "/", map[string]string{"content-type": "application/json", "x-tc-action": c.action}, payload))
	}
	if c.edit != nil {
		c.edit(req)
	}
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// hyGood is a valid signature made now.
func hyGood() *hySigned {
	return &hySigned{id: hyID, secret: hySecret, service: "hunyuan", headers: []string{"content-type", "host", "x-tc-action"}, ts: time.Now().Unix()}
}

// Wire shapes the tests read.

type hyToolCallOut struct {
	ID       string `json:"Id"`
	Type     string `json:"Type"`
	Function struct {
		Name      string `json:"Name"`
		Arguments string `json:"Arguments"`
	} `json:"Function"`
}

type hyMessageOut struct {
	Role      string          `json:"Role"`
	Content   *string         `json:"Content"`
	ToolCalls []hyToolCallOut `json:"ToolCalls"`
}

type hyUsageOut struct {
	PromptTokens, CompletionTokens, TotalTokens int
}

type hyResponseOut struct {
	RequestID string `json:"RequestId"`
	ID        string `json:"Id"`
	Note      string `json:"Note"`
	Created   int64  `json:"Created"`
	Choices   []struct {
		Message      *hyMessageOut `json:"Message"`
		Delta        *hyMessageOut `json:"Delta"`
		FinishReason string        `json:"FinishReason"`
	} `json:"Choices"`
	Usage hyUsageOut `json:"Usage"`
	Data  []struct {
		Embedding []float64 `json:"Embedding"`
		Index     int       `json:"Index"`
		Object    string    `json:"Object"`
	} `json:"Data"`
	Error *struct {
		Code, Message string
	} `json:"Error"`
}

// hyAnswer reads a JSON answer's Response: always HTTP 200.
func hyAnswer(t *testing.T, resp *http.Response) hyResponseOut {
	t.Helper()
	var env struct{ Response hyResponseOut }
	decode(t, resp, http.StatusOK, &env)
	if env.Response.RequestID == "" || env.Response.RequestID != resp.Header.Get("X-TC-RequestId") {
		t.Errorf("RequestId %q, header %q", env.Response.RequestID, resp.Header.Get("X-TC-RequestId"))
	}
	return env.Response
}

// hyRefused checks a refusal's code.
func hyRefused(t *testing.T, resp *http.Response, code string) {
	t.Helper()
	r := hyAnswer(t, resp)
	if r.Error == nil || r.Error.Code != code || r.Error.Message == "" {
		t.Errorf("error %+v, want %s", r.Error, code)
	}
}

func hyChatBody(extra map[string]any) map[string]any {
	body := map[string]any{"Model": "hunyuan-turbo", "Messages": []map[string]any{
		{"Role": "system", "Content": "Be brief."}, {"Role": "user", "Content": "Hello there"}}}
	for k, v := range extra {
		body[k] = v
	}
	return body
}

// hyStreamEvents reads a streamed answer's events.
func hyStreamEvents(t *testing.T, resp *http.Response) []hyResponseOut {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	data, err := readSSE(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	events := make([]hyResponseOut, len(data))
	for i, d := range data {
		if err := json.Unmarshal([]byte(d), &events[i]); err != nil {
			t.Fatalf("event %q: %v", d, err)
		}
	}
	return events
}

func TestHunyuanChatCompletions(t *testing.T) {
	eachTarget(t, mock.Config{Accounts: hyAccounts, ReplyTokens: 7, StreamChunks: 3}, func(t *testing.T, tg target) {
		r := hyAnswer(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: hyChatBody(nil), sign: hyGood()}))
		if r.Error != nil || len(r.Choices) != 1 || r.ID != r.RequestID || r.Note == "" || r.Created == 0 {
			t.Fatalf("answer %+v", r)
		}
		c := r.Choices[0]
		if c.FinishReason != "stop" || c.Message == nil || c.Message.Role != "assistant" || c.Message.Content == nil ||
			len(strings.Fields(*c.Message.Content)) != 7 {
			t.Fatalf("choice %+v", c)
		}
		if u := r.Usage; u.CompletionTokens != 7 || u.PromptTokens < 1 || u.TotalTokens != u.PromptTokens+7 {
			t.Errorf("usage %+v", u)
		}

		events := hyStreamEvents(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: hyChatBody(map[string]any{"Stream": true}), sign: hyGood()}))
		if len(events) != 4 {
			t.Fatalf("%d events", len(events))
		}
		var text strings.Builder
		for i, ev := range events {
			d := ev.Choices[0].Delta
			if d == nil || d.Role != "assistant" || d.Content == nil || ev.ID == "" || ev.RequestID != "" {
				t.Fatalf("event %d: %+v", i, ev)
			}
			text.WriteString(*d.Content)
			if last := i == len(events)-1; (ev.Choices[0].FinishReason == "stop") != last {
				t.Errorf("event %d finish %q", i, ev.Choices[0].FinishReason)
			}
		}
		if text.String() != *c.Message.Content || events[3].Usage != r.Usage {
			t.Errorf("streamed %q %+v, want %q %+v", text.String(), events[3].Usage, *c.Message.Content, r.Usage)
		}
		if s := tg.srv.Stats(); s.Streams != 1 || s.CompletionTokens != 14 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestHunyuanChatImages(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		body := map[string]any{"Model": "hunyuan-vision", "Messages": []map[string]any{{"Role": "user", "Contents": []map[string]any{
			{"Type": "text", "Text": "What is it?"}, {"Type": "image_url", "ImageUrl": map[string]string{"Url": "https://x.test/a.png"}}}}}}
		r := hyAnswer(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: body}))
		if r.Error != nil || r.Usage.PromptTokens < 85 {
			t.Errorf("answer %+v", r)
		}
	})
}

func TestHunyuanToolCalls(t *testing.T) {
	tool := map[string]any{"Type": "function", "Function": map[string]any{"Name": "get_weather",
		"Parameters": `{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city","unit"]}`}}
	other := map[string]any{"Type": "function", "Function": map[string]any{"Name": "now"}}
	const args = `{"city":"sample","unit":"celsius"}`
	eachTarget(t, mock.Config{StreamChunks: 4}, func(t *testing.T, tg target) {
		forced := hyChatBody(map[string]any{"Tools": []any{other, tool}, "ToolChoice": "custom", "CustomTool": tool})
		r := hyAnswer(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: forced}))
		c := r.Choices[0]
		if c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 {
			t.Fatalf("choice %+v", c)
		}
		tc := c.Message.ToolCalls[0]
		if !strings.HasPrefix(tc.ID, "call_") || tc.Type != "function" || tc.Function.Name != "get_weather" || tc.Function.Arguments != args {
			t.Errorf("tool call %+v", tc)
		}

		forced["Stream"] = true
		events := hyStreamEvents(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: forced}))
		first := events[0].Choices[0].Delta.ToolCalls
		if len(first) != 1 || first[0].Function.Name != "get_weather" || first[0].Function.Arguments != "" || first[0].ID == "" {
			t.Fatalf("first event %+v", events[0])
		}
		var streamed strings.Builder
		for _, ev := range events[1 : len(events)-1] {
			d := ev.Choices[0].Delta.ToolCalls[0]
			if d.ID != first[0].ID || d.Function.Name != "" {
				t.Errorf("delta %+v", d)
			}
			streamed.WriteString(d.Function.Arguments)
		}
		if streamed.String() != args || events[len(events)-1].Choices[0].FinishReason != "tool_calls" {
			t.Errorf("streamed arguments %q, last %+v", streamed.String(), events[len(events)-1])
		}

		// auto calls the first tool; none and a tool result answer text.
		r = hyAnswer(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: hyChatBody(map[string]any{"Tools": []any{tool}})}))
		if len(r.Choices[0].Message.ToolCalls) != 1 {
			t.Errorf("auto: %+v", r.Choices[0])
		}
		r = hyAnswer(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: hyChatBody(map[string]any{"Tools": []any{tool}, "ToolChoice": "none"})}))
		if len(r.Choices[0].Message.ToolCalls) != 0 || r.Choices[0].FinishReason != "stop" {
			t.Errorf("none: %+v", r.Choices[0])
		}
		result := map[string]any{"Model": "m", "Tools": []any{tool}, "Messages": []map[string]any{
			{"Role": "user", "Content": "Weather?"},
			{"Role": "assistant", "Content": "", "ToolCalls": []map[string]any{{"Id": "call_1", "Type": "function", "Function": map[string]string{"Name": "get_weather", "Arguments": args}}}},
			{"Role": "tool", "ToolCallId": "call_1", "Content": `{"temp":35}`}}}
		r = hyAnswer(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: result}))
		if r.Error != nil || r.Choices[0].FinishReason != "stop" {
			t.Errorf("tool result: %+v %+v", r.Error, r.Choices)
		}
	})
}

func TestHunyuanGetEmbedding(t *testing.T) {
	eachTarget(t, mock.Config{EmbeddingDims: 8}, func(t *testing.T, tg target) {
		r := hyAnswer(t, hyPost(t, tg, hyCall{action: "GetEmbedding", body: map[string]any{"InputList": []string{"alpha", "beta"}}}))
		if r.Error != nil || len(r.Data) != 2 || r.Data[1].Index != 1 || r.Data[0].Object != "embedding" || len(r.Data[0].Embedding) != 8 ||
			r.Usage.PromptTokens == 0 || r.Usage.TotalTokens != r.Usage.PromptTokens {
			t.Fatalf("answer %+v", r)
		}
		// The vectors are those the OpenAI format gives the same texts.
		var list struct {
			Data []struct {
				Embedding []float64 `json:"embedding"`
			} `json:"data"`
		}
		decode(t, tg.post(t, "/v1/embeddings", map[string]any{"model": "m", "input": []string{"alpha", "beta"}}), http.StatusOK, &list)
		for i := range 2 {
			for j, v := range list.Data[i].Embedding {
				if r.Data[i].Embedding[j] != v {
					t.Fatalf("vector %d differs from the OpenAI format's", i)
				}
			}
		}
		single := hyAnswer(t, hyPost(t, tg, hyCall{action: "GetEmbedding", body: map[string]any{"Input": "alpha"}}))
		if len(single.Data) != 1 || single.Data[0].Embedding[0] != r.Data[0].Embedding[0] {
			t.Errorf("Input: %+v", single)
		}
		hyRefused(t, hyPost(t, tg, hyCall{action: "GetEmbedding", body: map[string]any{}}), "MissingParameter")
		hyRefused(t, hyPost(t, tg, hyCall{action: "GetEmbedding", body: map[string]any{"InputList": make([]string, 51)}}), "InvalidParameter")
		hyRefused(t, hyPost(t, tg, hyCall{action: "GetEmbedding", body: map[string]any{"Input": "a", "Model": "x"}}), "UnknownParameter")
	})
}

func TestHunyuanSignature(t *testing.T) {
	eachTarget(t, mock.Config{Accounts: hyAccounts}, func(t *testing.T, tg target) {
		body := hyChatBody(nil)
		call := func(sign *hySigned, edit func(*http.Request)) *http.Response {
			return hyPost(t, tg, hyCall{action: "ChatCompletions", body: body, sign: sign, edit: edit})
		}
		with := func(edit func(*hySigned)) *hySigned { s := hyGood(); edit(s); return s }

		hyRefused(t, call(nil, nil), "AuthFailure.InvalidAuthorization")
		hyRefused(t, call(with(func(s *hySigned) { s.id = "AKIDunknown" }), nil), "AuthFailure.SecretIdNotFound")
		hyRefused(t, call(with(func(s *hySigned) { s.secret = "wrong" }), nil), "AuthFailure.SignatureFailure")
		hyRefused(t, call(with(func(s *hySigned) { s.ts -= 301 }), nil), "AuthFailure.SignatureExpire")
		hyRefused(t, call(with(func(s *hySigned) { s.ts += 400 }), nil), "AuthFailure.SignatureExpire")
		hyRefused(t, call(with(func(s *hySigned) { s.service = "cvm" }), nil), "AuthFailure.SignatureFailure")
		hyRefused(t, call(with(func(s *hySigned) { s.headers = []string{"content-type"} }), nil), "AuthFailure.SignatureFailure")
		hyRefused(t, call(hyGood(), func(r *http.Request) { r.Header.Set("X-TC-Action", "GetEmbedding") }), "AuthFailure.SignatureFailure")
		hyRefused(t, call(hyGood(), func(r *http.Request) {
			r.Body = io.NopCloser(strings.NewReader(`{"Model":"other","Messages":[{"Role":"user","Content":"hi"}]}`))
			r.ContentLength = -1
		}), "AuthFailure.SignatureFailure")
		hyRefused(t, call(hyGood(), func(r *http.Request) { r.Header.Del("X-TC-Timestamp") }), "MissingParameter")

		// content-type;host alone is enough, as in Tencent's first example.
		r := hyAnswer(t, call(with(func(s *hySigned) { s.headers = []string{"content-type", "host"} }), nil))
		if r.Error != nil {
			t.Errorf("content-type;host: %+v", r.Error)
		}
		if s := tg.srv.Stats(); s.CompletionTokens == 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestHunyuanRequestErrors(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		for code, c := range map[string]hyCall{
			"NoSuchVersion":    {action: "ChatCompletions", version: "2017-03-12", body: hyChatBody(nil)},
			"InvalidAction":    {action: "ChatStd", body: hyChatBody(nil)},
			"UnknownParameter": {action: "ChatCompletions", body: map[string]any{"model": "m", "Messages": []map[string]any{{"Role": "user", "Content": "hi"}}}},
			"MissingParameter": {action: "ChatCompletions", body: map[string]any{"Messages": []map[string]any{{"Role": "user", "Content": "hi"}}}},
			"InvalidParameter": {action: "ChatCompletions", body: hyChatBody(map[string]any{"Temperature": 4.8})},
		} {
			hyRefused(t, hyPost(t, tg, c), code)
		}
		for _, msgs := range [][]map[string]any{
			{{"Role": "user", "Content": "hi"}, {"Role": "system", "Content": "late"}},
			{{"Role": "tool", "Content": "r"}},
			{{"Role": "user", "Content": ""}},
			{{"Role": "function", "Content": "x"}},
		} {
			hyRefused(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: map[string]any{"Model": "m", "Messages": msgs}}), "InvalidParameter")
		}
		hyRefused(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: hyChatBody(map[string]any{"ToolChoice": "custom"})}), "InvalidParameter")
		hyRefused(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: hyChatBody(nil), edit: func(r *http.Request) {
			r.Method = http.MethodPut
		}}), "UnsupportedProtocol")
	})
}

func TestHunyuanFaults(t *testing.T) {
	eachTarget(t, mock.Config{FailureRate: 1}, func(t *testing.T, tg target) {
		hyRefused(t, hyPost(t, tg, hyCall{action: "ChatCompletions", body: hyChatBody(nil)}), "InternalError")
		if tg.srv.Stats().Failures != 1 {
			t.Errorf("stats %+v", tg.srv.Stats())
		}
	})
	eachTarget(t, mock.Config{RateLimitRate: 1}, func(t *testing.T, tg target) {
		hyRefused(t, hyPost(t, tg, hyCall{action: "GetEmbedding", body: map[string]any{"Input": "a"}}), "RequestLimitExceeded")
		if tg.srv.Stats().RateLimited != 1 {
			t.Errorf("stats %+v", tg.srv.Stats())
		}
	})
	eachTarget(t, mock.Config{FailAfterChunks: 2, StreamChunks: 4}, func(t *testing.T, tg target) {
		resp := hyPost(t, tg, hyCall{action: "ChatCompletions", body: hyChatBody(map[string]any{"Stream": true})})
		defer resp.Body.Close()
		events, err := readSSE(resp.Body)
		if err == nil || len(events) != 2 || tg.srv.Stats().Aborted != 1 {
			t.Errorf("%d events, %v, stats %+v", len(events), err, tg.srv.Stats())
		}
	})
}
