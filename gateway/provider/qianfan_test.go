package provider

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

var qianfanAccount = mock.Account{ID: "qf-api-key", Secret: "qf-secret-key"}

// qianfanTarget is a Qianfan Target at base, with qianfanAccount.
func qianfanTarget(base, model string, tokens Tokens) Target {
	return Target{Spec: Spec{Type: "qianfan", API: APIQianfan}, BaseURL: base, Model: model,
		Key: qianfanAccount.ID, SecretKey: qianfanAccount.Secret, CredentialID: "qf#0", Tokens: tokens}
}

// memTokens is a minimal Tokens for tests: one token per key, until
// revoked.
type memTokens struct {
	mu      sync.Mutex
	tok     map[string]string
	fetches atomic.Int64
}

func (m *memTokens) Token(ctx context.Context, id string, fetch FetchToken) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.tok[id]; ok {
		return t, nil
	}
	m.fetches.Add(1)
	t, _, err := fetch(ctx)
	if err != nil {
		return "", err
	}
	if m.tok == nil {
		m.tok = map[string]string{}
	}
	m.tok[id] = t
	return t, nil
}

func (m *memTokens) Revoke(_ context.Context, id, token string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tok[id] == token {
		delete(m.tok, id)
	}
}

func TestQianfanRequest(t *testing.T) {
	var tokenCalls atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenCalls.Add(1)
		q := r.URL.Query()
		if r.URL.Path != "/oauth/2.0/token" || q.Get("grant_type") != "client_credentials" || q.Get("client_id") != qianfanAccount.ID || q.Get("client_secret") != qianfanAccount.Secret {
			t.Errorf("token request %s %s", r.URL.Path, r.URL.RawQuery)
		}
		_, _ = io.WriteString(w, `{"access_token":"24.abc","expires_in":2592000}`)
	}))
	defer ts.Close()
	tokens := &memTokens{}
	body := `{"model":"ERNIE-Speed-8K","stream":true,"temperature":0,"max_tokens":50,"stop":"END","user":"u1",
	  "messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":"Use French."},
	    {"role":"user","content":"Hi"},{"role":"user","content":"Weather?"},
	    {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
	    {"role":"tool","tool_call_id":"c1","content":"sunny"}],
	  "tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object"}}}],
	  "tool_choice":{"type":"function","function":{"name":"get_weather"}},
	  "response_format":{"type":"json_object"}}`
	for range 2 {
		req, err := qianfan{}.NewRequest(context.Background(), qianfanTarget(ts.URL, "ERNIE-Speed-8K", tokens), Chat, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if req.URL.Path != "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/ernie_speed" || req.URL.Query().Get("access_token") != "24.abc" {
			t.Fatalf("url %s", req.URL)
		}
		if req.Header.Get("Authorization") != "" {
			t.Fatal("the key must not be sent as a bearer token")
		}
		got, _ := io.ReadAll(req.Body)
		want := `{"messages":[{"role":"user","content":"Hi\nWeather?"},{"role":"assistant","content":"","function_call":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"role":"function","content":"sunny","name":"get_weather"}],` +
			`"stream":true,"system":"Be brief.\n\nUse French.","temperature":0.01,"stop":["END"],"max_output_tokens":50,"user_id":"u1",` +
			`"functions":[{"name":"get_weather","description":"d","parameters":{"type":"object"}}],"tool_choice":{"function":{"name":"get_weather"},"type":"function"},"response_format":"json_object"}`
		jsonEqual(t, "body", got, []byte(want))
	}
	if tokenCalls.Load() != 1 || tokens.fetches.Load() != 1 {
		t.Fatalf("token fetched %d times for two calls, want once", tokenCalls.Load())
	}
}

func TestQianfanRefused(t *testing.T) {
	for body, want := range map[string]string{
		`{"model":"m","n":2,"messages":[{"role":"user","content":"x"}]}`:                                                               "n: qianfan returns a single choice",
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`:            "image_url parts are not supported",
		`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a"}}}`: `type "json_schema" is not supported`,
		`{"model":"m","messages":[{"role":"system","content":"x"}]}`:                                                                   "at least one user message",
	} {
		_, err := qianfan{}.NewRequest(context.Background(), qianfanTarget("http://x", "m", nil), Chat, []byte(body))
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Message, want) {
			t.Errorf("%s: %v, want a 400 saying %q", body, err, want)
		}
	}
}

func TestQianfanErrors(t *testing.T) {
	_, err := qianfan{}.Response(Chat, []byte(`{"error_code":18,"error_msg":"Open api qps request limit reached"}`), "m")
	var e *Error
	if !errors.As(err, &e) || e.Status != 429 || e.Type != "rate_limit_error" {
		t.Fatalf("qps error: %v", err)
	}
	var body wire.ErrorBody
	if err := json.Unmarshal(qianfan{}.Error(500, []byte(`{"error_code":336000,"error_msg":"Internal error"}`)), &body); err != nil || !strings.Contains(body.Error.Message, "Internal error") {
		t.Fatalf("error body %+v %v", body, err)
	}
	if (qianfan{}).TokenRefused(context.Background(), Target{}, httptestRequest(), 200, []byte(`{"error_code":336003}`)) {
		t.Fatal("a parameter error is not a token refusal")
	}
	if !(qianfan{}).TokenRefused(context.Background(), Target{}, httptestRequest(), 200, []byte(`{"error_code":111,"error_msg":"Access token expired"}`)) {
		t.Fatal("error 111 is an expired token")
	}
}

func httptestRequest() *http.Request { return httptest.NewRequest("POST", "/chat?access_token=x", nil) }

// TestQianfanThroughMock sends each kind of call to the mock, which checks
// the token, and translates the answers back.
func TestQianfanThroughMock(t *testing.T) {
	srv := mock.New(mock.Config{Accounts: []mock.Account{qianfanAccount}, StreamChunks: 3})
	client := &http.Client{Transport: mock.Transport(srv)}
	tokens := &memTokens{}
	tg := withClient(qianfanTarget("https://aip.baidubce.com", "ERNIE-Lite-8K", tokens), client)
	call := func(ep Endpoint, body string) (*http.Response, []byte) {
		t.Helper()
		req, err := qianfan{}.NewRequest(context.Background(), tg, ep, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, data
	}

	_, data := call(Chat, `{"model":"m","messages":[{"role":"user","content":"Hello"}]}`)
	out, err := qianfan{}.Response(Chat, data, "ERNIE-Lite-8K")
	if err != nil {
		t.Fatal(err)
	}
	var cc wire.ChatResponse
	if err := json.Unmarshal(out, &cc); err != nil || cc.Choices[0].Message.Text() == "" || cc.Usage == nil || cc.Usage.CompletionTokens == 0 {
		t.Fatalf("answer %s", out)
	}

	_, data = call(Chat, `{"model":"m","messages":[{"role":"user","content":"Weather?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`)
	out, _ = qianfan{}.Response(Chat, data, "m")
	if err := json.Unmarshal(out, &cc); err != nil || cc.Choices[0].FinishReason != "tool_calls" || cc.Choices[0].Message.ToolCalls[0].Function.Name != "get_weather" {
		t.Fatalf("tool call answer %s", out)
	}

	resp, data := call(Chat, `{"model":"m","stream":true,"messages":[{"role":"user","content":"Hello"}]}`)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream content type %q: %s", resp.Header.Get("Content-Type"), data)
	}
	s := qianfan{}.Stream(strings.NewReader(string(data)), "m")
	var text strings.Builder
	var usage *wire.Usage
	var finish string
	for {
		b, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var c wire.ChatChunk
		_ = json.Unmarshal(b, &c)
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				text.WriteString(*ch.Delta.Content)
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
		if c.Usage != nil {
			usage = c.Usage
		}
	}
	if text.Len() == 0 || finish != "stop" || usage == nil || usage.TotalTokens == 0 {
		t.Fatalf("stream: text %q finish %q usage %+v", text.String(), finish, usage)
	}

	_, data = call(Embeddings, `{"model":"Embedding-V1","input":["a","b"]}`)
	out, err = qianfan{}.Response(Embeddings, data, "Embedding-V1")
	var el wire.EmbeddingResponse
	if err != nil || json.Unmarshal(out, &el) != nil || len(el.Data) != 2 || len(el.Data[1].Embedding) == 0 || el.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings %s %v", out, err)
	}
	if n := srv.Stats().TokensIssued; n != 1 {
		t.Fatalf("%d tokens issued for four calls, want 1", n)
	}

	// A revoked token: the mock refuses it as Qianfan does, TokenRefused
	// recognizes the refusal and revokes it, and the next request carries
	// a fresh one.
	srv.RevokeTokens()
	req, _ := qianfan{}.NewRequest(context.Background(), tg, Chat, []byte(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ = io.ReadAll(resp.Body)
	if !(qianfan{}).TokenRefused(context.Background(), tg, req, resp.StatusCode, data) {
		t.Fatalf("refusal of a revoked token not recognized: %s", data)
	}
	if _, data = call(Chat, `{"model":"m","messages":[{"role":"user","content":"x"}]}`); strings.Contains(string(data), "error_code") {
		t.Fatalf("after a refresh: %s", data)
	}
	if n := srv.Stats().TokensIssued; n != 2 {
		t.Fatalf("%d tokens issued, want 2 (one refresh)", n)
	}

	// A wrong secret: the token endpoint refuses, and the error says so
	// without the secret.
	bad := qianfanTarget("https://aip.baidubce.com", "m", nil)
	bad.SecretKey = "wrong-secret-value"
	bad.Tokens = nil
	_, err = qianfan{}.NewRequest(context.Background(), withClient(bad, client), Chat, []byte(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
	if err == nil || !strings.Contains(err.Error(), "token refused (HTTP 401)") || strings.Contains(err.Error(), "wrong-secret-value") {
		t.Fatalf("wrong secret: %v", err)
	}
}

// withClient gives a Target the client of its channel.
func withClient(t Target, c *http.Client) Target {
	t.Client = c
	return t
}
