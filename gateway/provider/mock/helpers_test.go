package mock_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// target is one way of reaching a mock: a socket or Transport.
type target struct {
	name   string
	base   string
	client *http.Client
	srv    *mock.Server
}

// eachTarget runs f against a fresh mock with cfg, over a real socket and
// through mock.Transport.
func eachTarget(t *testing.T, cfg mock.Config, f func(t *testing.T, tg target)) {
	t.Helper()
	t.Run("socket", func(t *testing.T) {
		srv := mock.New(cfg)
		ts := httptest.NewServer(srv)
		t.Cleanup(ts.Close)
		f(t, target{name: "socket", base: ts.URL, client: ts.Client(), srv: srv})
	})
	t.Run("transport", func(t *testing.T) {
		srv := mock.New(cfg)
		f(t, target{name: "transport", base: "http://mock.test", client: &http.Client{Transport: mock.Transport(srv)}, srv: srv})
	})
}

// do sends a request with a JSON body (nil for none) and extra headers
// given as name, value pairs.
func (tg target) do(t *testing.T, ctx context.Context, method, path string, body any, headers ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, tg.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func (tg target) post(t *testing.T, path string, body any, headers ...string) *http.Response {
	t.Helper()
	return tg.do(t, context.Background(), http.MethodPost, path, body, headers...)
}

// decode reads a JSON response of the wanted status into v.
func decode(t *testing.T, resp *http.Response, status int, v any) {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

// apiErr is OpenAI's error body, with param and code kept raw to tell
// null from a string.
type apiErr struct {
	Error struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Param   json.RawMessage `json:"param"`
		Code    json.RawMessage `json:"code"`
	} `json:"error"`
}

// expectError checks an OpenAI-shaped error response.
func expectError(t *testing.T, resp *http.Response, status int, typ, code string) apiErr {
	t.Helper()
	var e apiErr
	decode(t, resp, status, &e)
	if e.Error.Message == "" || e.Error.Type != typ {
		t.Errorf("error %+v, want type %q", e.Error, typ)
	}
	wantCode := "null"
	if code != "" {
		wantCode = `"` + code + `"`
	}
	if string(e.Error.Code) != wantCode || e.Error.Param == nil {
		t.Errorf("error code %s param %s, want code %s and a param", e.Error.Code, e.Error.Param, wantCode)
	}
	return e
}

// readSSE reads "data:" payloads until the body ends; err is the read
// error, nil on a clean EOF.
func readSSE(body io.Reader) (events []string, err error) {
	br := bufio.NewReader(body)
	for {
		line, err := br.ReadString('\n')
		if p, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "data: "); ok && err == nil {
			events = append(events, p)
		}
		if errors.Is(err, io.EOF) {
			return events, nil
		}
		if err != nil {
			return events, err
		}
	}
}

// Wire shapes the tests read.

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type toolCall struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      *string `json:"name"`
		Arguments string  `json:"arguments"`
	} `json:"function"`
}

type completion struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Created           int64  `json:"created"`
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
	Choices           []struct {
		Index   int `json:"index"`
		Message struct {
			Role      string          `json:"role"`
			Content   *string         `json:"content"`
			Refusal   json.RawMessage `json:"refusal"`
			ToolCalls []toolCall      `json:"tool_calls"`
		} `json:"message"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason string          `json:"finish_reason"`
	} `json:"choices"`
	Usage usage `json:"usage"`
}

type streamChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role      string     `json:"role"`
			Content   *string    `json:"content"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

// hasKey reports whether the JSON object text has a top-level key.
func hasKey(t *testing.T, obj, key string) bool {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(obj), &m); err != nil {
		t.Fatalf("decode %s: %v", obj, err)
	}
	_, ok := m[key]
	return ok
}

func userMsg(text string) []map[string]any {
	return []map[string]any{{"role": "user", "content": text}}
}

// weatherTool is a function tool with a required string, an enum and an
// optional integer.
var weatherTool = map[string]any{
	"type": "function",
	"function": map[string]any{
		"name": "get_weather",
		"parameters": map[string]any{
			"type": "object",
			"properties": map[string]any{
				"city":  map[string]any{"type": "string"},
				"unit":  map[string]any{"type": "string", "enum": []string{"celsius", "fahrenheit"}},
				"count": map[string]any{"type": "integer"},
			},
			"required": []string{"city", "unit"},
		},
	},
}

// flagsTool has no required properties, so all get values.
var flagsTool = map[string]any{
	"type": "function",
	"function": map[string]any{
		"name": "set_flags",
		"parameters": map[string]any{
			"type": "object",
			"properties": map[string]any{
				"on":    map[string]any{"type": "boolean"},
				"ratio": map[string]any{"type": "number"},
				"tags":  map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
				"extra": map[string]any{"type": "object"},
			},
		},
	},
}
