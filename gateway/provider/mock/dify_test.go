package mock_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// difyAnswer is a Dify blocking answer, or a streamed event.
type difyAnswer struct {
	Event          string `json:"event"`
	TaskID         string `json:"task_id"`
	ID             string `json:"id"`
	MessageID      string `json:"message_id"`
	ConversationID string `json:"conversation_id"`
	Mode           string `json:"mode"`
	Answer         string `json:"answer"`
	CreatedAt      int64  `json:"created_at"`
	Metadata       *struct {
		Usage struct {
			usage
			Currency string `json:"currency"`
		} `json:"usage"`
		RetrieverResources []any `json:"retriever_resources"`
	} `json:"metadata"`
}

// difyErr is Dify's error body.
type difyErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Status  int    `json:"status"`
}

func difyBody(mode string) map[string]any {
	return map[string]any{"inputs": map[string]any{}, "query": "What is Sluice?", "response_mode": mode, "user": "u-1"}
}

const difyPath = "/v1/chat-messages"

func TestDifyBlocking(t *testing.T) {
	eachTarget(t, mock.Config{Keys: []string{"app-key"}, ReplyTokens: 5}, func(t *testing.T, tg target) {
		var a difyAnswer
		decode(t, tg.post(t, difyPath, difyBody("blocking"), "Authorization", "Bearer app-key"), http.StatusOK, &a)
		if a.Event != "message" || a.Mode != "chat" || a.MessageID == "" || a.ID != a.MessageID || a.ConversationID == "" ||
			a.TaskID == "" || a.CreatedAt == 0 || len(strings.Fields(a.Answer)) != 5 || a.Metadata == nil {
			t.Fatalf("answer %+v", a)
		}
		u := a.Metadata.Usage
		if u.CompletionTokens != 5 || u.PromptTokens < 1 || u.TotalTokens != u.PromptTokens+u.CompletionTokens || u.Currency != "USD" ||
			a.Metadata.RetrieverResources == nil {
			t.Errorf("metadata %+v", a.Metadata)
		}
		// An image by URL counts in the prompt.
		body := difyBody("blocking")
		body["files"] = []map[string]string{{"type": "image", "transfer_method": "remote_url", "url": "https://example.com/cat.png"}}
		var b difyAnswer
		decode(t, tg.post(t, difyPath, body, "Authorization", "Bearer app-key"), http.StatusOK, &b)
		if b.Metadata.Usage.PromptTokens <= u.PromptTokens {
			t.Errorf("image not counted: %d vs %d", b.Metadata.Usage.PromptTokens, u.PromptTokens)
		}
	})
}

func TestDifyStreaming(t *testing.T) {
	eachTarget(t, mock.Config{Keys: []string{"app-key"}, ReplyTokens: 6, StreamChunks: 3}, func(t *testing.T, tg target) {
		var whole difyAnswer
		decode(t, tg.post(t, difyPath, difyBody("blocking"), "Authorization", "Bearer app-key"), http.StatusOK, &whole)

		resp := tg.post(t, difyPath, difyBody("streaming"), "Authorization", "Bearer app-key")
		defer resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("status %d, %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(raw), "event: ping\n\n") {
			t.Errorf("no ping first: %.40q", raw)
		}
		events, _ := readSSE(strings.NewReader(string(raw)))
		if len(events) != 4 {
			t.Fatalf("%d events: %q", len(events), events)
		}
		var text strings.Builder
		for i, ev := range events {
			var a difyAnswer
			if err := json.Unmarshal([]byte(ev), &a); err != nil {
				t.Fatal(err)
			}
			switch {
			case i < 3 && (a.Event != "message" || a.MessageID == "" || a.ConversationID == ""):
				t.Errorf("event %d: %s", i, ev)
			case i == 3 && (a.Event != "message_end" || a.Metadata == nil || a.Metadata.Usage.CompletionTokens != 6):
				t.Errorf("last event %s", ev)
			}
			text.WriteString(a.Answer)
		}
		if text.String() != whole.Answer {
			t.Errorf("streamed %q, blocking %q", text.String(), whole.Answer)
		}
	})
}

func TestDifyStreamAbort(t *testing.T) {
	eachTarget(t, mock.Config{StreamChunks: 4, FailAfterChunks: 2}, func(t *testing.T, tg target) {
		resp := tg.post(t, difyPath, difyBody("streaming"))
		defer resp.Body.Close()
		events, err := readSSE(resp.Body)
		if err == nil || len(events) != 2 {
			t.Errorf("%d events, err %v: want a cut after 2", len(events), err)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) && tg.name == "transport" {
			t.Errorf("err %v", err)
		}
	})
}

func TestDifyRefusals(t *testing.T) {
	with := func(k string, v any) map[string]any {
		b := difyBody("blocking")
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
		return b
	}
	tests := []struct {
		name    string
		body    map[string]any
		headers []string
		status  int
		code    string
	}{
		{"no key", difyBody("blocking"), nil, 401, "unauthorized"},
		{"basic auth", difyBody("blocking"), []string{"Authorization", "Basic app-key"}, 401, "unauthorized"},
		{"wrong key", difyBody("blocking"), []string{"Authorization", "Bearer app-other"}, 401, "unauthorized"},
		{"no inputs", with("inputs", nil), nil, 400, "invalid_param"},
		{"inputs not an object", with("inputs", "x"), nil, 400, "invalid_param"},
		{"no query", with("query", nil), nil, 400, "invalid_param"},
		{"bad mode", with("response_mode", "sync"), nil, 400, "invalid_param"},
		{"no user", with("user", nil), nil, 400, "invalid_param"},
		{"conversation", with("conversation_id", "45701982-8118-4bc5-8e9b-64562b4555f2"), nil, 404, "not_found"},
		{"uploaded file", with("files", []map[string]string{{"type": "image", "transfer_method": "local_file", "upload_file_id": "f"}}), nil, 400, "invalid_param"},
		{"document", with("files", []map[string]string{{"type": "document", "transfer_method": "remote_url", "url": "https://x/y.pdf"}}), nil, 400, "invalid_param"},
	}
	eachTarget(t, mock.Config{Keys: []string{"app-key"}}, func(t *testing.T, tg target) {
		for _, tt := range tests {
			h := tt.headers
			if h == nil && tt.status != 401 {
				h = []string{"Authorization", "Bearer app-key"}
			}
			var e difyErr
			decode(t, tg.post(t, difyPath, tt.body, h...), tt.status, &e)
			if e.Code != tt.code || e.Status != tt.status || e.Message == "" {
				t.Errorf("%s: %+v", tt.name, e)
			}
		}
		var e difyErr
		decode(t, tg.do(t, t.Context(), http.MethodGet, difyPath, nil), http.StatusMethodNotAllowed, &e)
		if e.Code != "method_not_allowed" {
			t.Errorf("GET: %+v", e)
		}
	})
}

func TestDifyFaults(t *testing.T) {
	for _, tt := range []struct {
		cfg    mock.Config
		status int
		code   string
	}{
		{mock.Config{FailureRate: 1}, 500, "internal_server_error"},
		{mock.Config{RateLimitRate: 1}, 429, "rate_limit_error"},
	} {
		eachTarget(t, tt.cfg, func(t *testing.T, tg target) {
			var e difyErr
			decode(t, tg.post(t, difyPath, difyBody("streaming")), tt.status, &e)
			if e.Code != tt.code || e.Status != tt.status {
				t.Errorf("%+v", e)
			}
		})
	}
}
