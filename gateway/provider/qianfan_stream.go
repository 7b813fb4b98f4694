package provider

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
	sse "github.com/tmaxmax/go-sse"
)

// qfAnswer is an ERNIE chat answer, or one event of a streamed one (then
// Result is the event's text and IsEnd marks the last).
type qfAnswer struct {
	qfError
	ID           string          `json:"id"`
	Created      int64           `json:"created"`
	Result       string          `json:"result"`
	IsEnd        bool            `json:"is_end"`
	FinishReason string          `json:"finish_reason"`
	FunctionCall *qfFunctionCall `json:"function_call"`
	Usage        *wire.Usage     `json:"usage"`
}

// qfError is how Qianfan reports an error: in a 200, as the whole body.
type qfError struct {
	ErrorCode int    `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
}

// err returns the reported error, or nil.
func (e qfError) err() *Error {
	if e.ErrorCode == 0 {
		return nil
	}
	status, typ := qianfanErrorStatus(e.ErrorCode)
	return &Error{Status: status, Type: typ, Message: fmt.Sprintf("qianfan: %s (error_code %d)", e.ErrorMsg, e.ErrorCode)}
}

// qianfanErrorStatus maps Qianfan's error codes (Baidu's "错误码"
// reference) to HTTP statuses and OpenAI error types.
func qianfanErrorStatus(code int) (int, string) {
	switch code {
	case 13, 14, 15, 100, 110, 111: // token, IAM and application errors
		return http.StatusUnauthorized, "authentication_error"
	case 6, 336004: // no permission
		return http.StatusForbidden, "permission_error"
	case 4, 17, 18, 19, 336501, 336502: // QPS, daily, total, RPM and TPM limits
		return http.StatusTooManyRequests, "rate_limit_error"
	case 3, 336001, 336002, 336003, 336005, 336006, 336007, 336103: // bad requests
		return http.StatusBadRequest, "invalid_request_error"
	case 2, 336100: // unavailable, try again
		return http.StatusServiceUnavailable, "server_error"
	case 336000:
		return http.StatusInternalServerError, "server_error"
	}
	return http.StatusBadGateway, "server_error"
}

// Response implements Translator.
func (qianfan) Response(ep Endpoint, body []byte, model string) ([]byte, error) {
	if ep == Embeddings {
		return qianfanEmbedResponse(body, model)
	}
	var a qfAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("qianfan: decode answer: %w", err)
	}
	if e := a.err(); e != nil {
		return nil, e
	}
	msg := wire.Message{Role: "assistant", Content: wire.TextContent(a.Result)}
	if call := a.toolCall(); call != nil {
		msg.ToolCalls = []wire.ToolCall{*call}
		if a.Result == "" {
			msg.Content = json.RawMessage("null")
		}
	}
	return json.Marshal(wire.ChatResponse{
		ID: chatID(a.ID), Object: "chat.completion", Created: orNow(a.Created), Model: model,
		Choices: []wire.Choice{{Message: msg, FinishReason: qianfanFinish(a.FinishReason, a.FunctionCall != nil)}},
		Usage:   a.Usage,
	})
}

// toolCall returns the answer's function call as a tool call.
func (a *qfAnswer) toolCall() *wire.ToolCall {
	if a.FunctionCall == nil {
		return nil
	}
	return &wire.ToolCall{ID: geminiID("call_"), Type: "function",
		Function: wire.FunctionCall{Name: a.FunctionCall.Name, Arguments: cmp.Or(a.FunctionCall.Arguments, "{}")}}
}

// orNow returns a Unix time, or now when it is unset.
func orNow(created int64) int64 {
	if created > 0 {
		return created
	}
	return time.Now().Unix()
}

// qianfanFinish maps a finish reason.
func qianfanFinish(reason string, called bool) string {
	switch {
	case called || reason == "function_call":
		return "tool_calls"
	case reason == "length":
		return "length"
	case reason == "content_filter":
		return "content_filter"
	}
	return "stop"
}

// qianfanEmbedResponse converts an embedding answer to an embeddings list.
func qianfanEmbedResponse(body []byte, model string) ([]byte, error) {
	var r struct {
		qfError
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
		Usage wire.Usage `json:"usage"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("qianfan: decode embeddings: %w", err)
	}
	if e := r.err(); e != nil {
		return nil, e
	}
	out := wire.EmbeddingResponse{Object: "list", Model: model, Data: make([]wire.Embedding, len(r.Data)), Usage: r.Usage}
	for i, d := range r.Data {
		vec := d.Embedding
		if vec == nil {
			vec = []float64{}
		}
		out.Data[i] = wire.Embedding{Object: "embedding", Index: d.Index, Embedding: vec}
	}
	return json.Marshal(out)
}

// Error implements Translator: Qianfan's own error body, else a summary.
func (qianfan) Error(status int, body []byte) []byte {
	var e qfError
	if json.Unmarshal(body, &e) == nil {
		if err := e.err(); err != nil {
			return wire.NewError(err.Type, "", err.Message)
		}
	}
	return wire.NewError("server_error", "", fmt.Sprintf("qianfan answered HTTP %d", status))
}

// Stream implements Translator.
func (qianfan) Stream(body io.Reader, model string) Stream {
	s := &qianfanStream{eventStream: newEventStream(body, "qianfan", model)}
	releaseWhenCollected(s, s.stop)
	return s
}

// qianfanStream turns Qianfan's SSE events (data: {"result":…,
// "is_end":…}) into chat.completion.chunk payloads: a role chunk, a
// chunk per event's text (or its function call), the finish reason with
// the last event, then a chunk carrying the usage. An error instead of a
// stream (Qianfan answers a refused call with a plain JSON error, even in
// a 200) ends it with an *Error.
type qianfanStream struct {
	eventStream
	started bool // the role chunk was sent
}

// Next implements Stream.
func (s *qianfanStream) Next() ([]byte, error) { return s.pump(s.event) }

// event translates one event; the one with is_end finishes the answer.
func (s *qianfanStream) event(ev sse.Event) error {
	var a qfAnswer
	if err := json.Unmarshal([]byte(ev.Data), &a); err != nil {
		return fmt.Errorf("qianfan: decode stream event: %w", err)
	}
	if e := a.err(); e != nil {
		return e
	}
	if s.id == "" {
		s.id = chatID(a.ID)
	}
	if !s.started {
		s.started = true
		s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Delta: wire.Delta{Role: "assistant", Content: wire.Ptr("")}}}, nil))
	}
	var delta wire.Delta
	if a.Result != "" {
		delta.Content = wire.Ptr(a.Result)
	}
	if call := a.toolCall(); call != nil {
		call.Index = wire.Ptr(0)
		delta.ToolCalls = []wire.ToolCall{*call}
	}
	if delta.Content != nil || delta.ToolCalls != nil {
		s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Delta: delta}}, nil))
	}
	if a.IsEnd {
		reason := qianfanFinish(a.FinishReason, a.FunctionCall != nil)
		s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{FinishReason: &reason}}, nil))
		s.finished, s.usage = true, a.Usage
		s.end()
	}
	return nil
}
