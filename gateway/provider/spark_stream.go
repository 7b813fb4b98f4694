package provider

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// This file reads Spark's answer frames back into OpenAI's format:
// complete answers, streamed ones and errors.

// spFrame is an answer frame; error frames have no payload.
type spFrame struct {
	Header  spHeader   `json:"header"`
	Payload *spPayload `json:"payload"`
}

// spHeader is a frame's status: code 0 is success, status 2 the last
// frame.
type spHeader struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Sid     string `json:"sid"`
	Status  int    `json:"status"`
}

// spPayload is a frame's content; the last frame carries the usage.
type spPayload struct {
	Choices struct {
		Status int      `json:"status"`
		Seq    int      `json:"seq"`
		Text   []spText `json:"text"`
	} `json:"choices"`
	Usage *struct {
		Text spUsage `json:"text"`
	} `json:"usage"`
}

// spText is a piece of the answer: text, or a function call.
type spText struct {
	Content      string          `json:"content"`
	Role         string          `json:"role"`
	Index        int             `json:"index"`
	FunctionCall *spFunctionCall `json:"function_call"`
}

// spFunctionCall is a call the model made. Arguments is JSON text; an
// object sent as such is taken too.
type spFunctionCall struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// arguments returns the call's arguments as JSON text.
func (c *spFunctionCall) arguments() string {
	raw := bytes.TrimSpace(c.Arguments)
	var s string
	switch {
	case !isSet(raw):
		return "{}"
	case raw[0] == '"' && json.Unmarshal(raw, &s) == nil:
		return s
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

// spUsage counts tokens: prompt_tokens includes the history,
// question_tokens only the last question.
type spUsage struct {
	QuestionTokens   spInt `json:"question_tokens"`
	PromptTokens     spInt `json:"prompt_tokens"`
	CompletionTokens spInt `json:"completion_tokens"`
	TotalTokens      spInt `json:"total_tokens"`
}

// usage converts the counts.
func (u spUsage) usage() *wire.Usage {
	total := int64(u.TotalTokens)
	if total == 0 {
		total = int64(u.PromptTokens + u.CompletionTokens)
	}
	return &wire.Usage{PromptTokens: int64(u.PromptTokens), CompletionTokens: int64(u.CompletionTokens), TotalTokens: total}
}

// spInt is a count sent as a number or as a string.
type spInt int64

func (n *spInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(bytes.TrimSpace(b)), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	*n = spInt(v)
	return err
}

// last reports whether f ends the answer.
func (f *spFrame) last() bool {
	return f.Header.Status == 2 || (f.Payload != nil && f.Payload.Choices.Status == 2)
}

// sparkToolCall converts a function call.
func sparkToolCall(c *spFunctionCall) wire.ToolCall {
	return wire.ToolCall{ID: "call_" + rand.Text(), Type: "function", Function: wire.FunctionCall{Name: c.Name, Arguments: c.arguments()}}
}

// sparkCode maps an iFlytek error code to an HTTP status and an OpenAI
// error type and code.
func sparkCode(code int) (status int, typ, errCode string) {
	switch code {
	case 11200: // app_id not authorized for this API
		return http.StatusUnauthorized, "authentication_error", ""
	case 11201, 11202, 11203: // daily quota, per-second rate, concurrency
		return http.StatusTooManyRequests, "requests", "rate_limit_exceeded"
	case 10013, 10014, 10019: // content audit of the input or the output
		return http.StatusBadRequest, "invalid_request_error", "content_filter"
	case 10907: // too many tokens
		return http.StatusBadRequest, "invalid_request_error", "context_length_exceeded"
	case 10003, 10163, 10404: // unreadable frame, invalid parameters, domain not served
		return http.StatusBadRequest, "invalid_request_error", ""
	}
	// 10012 engine error and anything else.
	return http.StatusInternalServerError, "server_error", ""
}

// sparkErrorMessage describes an error frame: iFlytek's code, message and
// session id.
func sparkErrorMessage(h spHeader) string {
	msg := fmt.Sprintf("spark: %d %s", h.Code, h.Message)
	if h.Sid != "" {
		msg += " (sid " + h.Sid + ")"
	}
	return msg
}

// sparkFrameError converts an error frame.
func sparkFrameError(h spHeader) *Error {
	status, typ, _ := sparkCode(h.Code)
	return &Error{Status: status, Type: typ, Message: sparkErrorMessage(h)}
}

// sparkErrorReply answers an error frame received before any content.
func sparkErrorReply(h spHeader) *Reply {
	status, typ, code := sparkCode(h.Code)
	return &Reply{Status: status, Body: wire.NewError(typ, code, sparkErrorMessage(h))}
}

// sparkHandshakeReply answers a handshake refused with an HTTP status;
// iFlytek's body is {"message": …}.
func sparkHandshakeReply(status int, body []byte) *Reply {
	var b struct {
		Message string `json:"message"`
	}
	detail := claudeExcerpt(body, 200)
	if json.Unmarshal(body, &b) == nil && b.Message != "" {
		detail = b.Message
	}
	msg := fmt.Sprintf("spark: handshake refused with HTTP %d", status)
	if detail != "" {
		msg += ": " + detail
	}
	typ, code := "server_error", ""
	switch {
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		typ = "authentication_error"
	case status == http.StatusTooManyRequests:
		typ, code = "requests", "rate_limit_exceeded"
	case status == http.StatusNotFound:
		typ = "not_found_error"
	case status >= 400 && status < 500:
		typ = "invalid_request_error"
	case status < 400:
		status = http.StatusBadGateway // a redirect or success without the upgrade
	}
	return &Reply{Status: status, Body: wire.NewError(typ, code, msg)}
}

// sparkConn is one exchange's socket.
type sparkConn struct {
	ctx  context.Context
	conn *websocket.Conn
	once sync.Once
}

// read reads the next frame. A connection that ends first is an error
// wrapping io.ErrUnexpectedEOF; a done context, one wrapping its error.
func (c *sparkConn) read() (*spFrame, error) {
	_, data, err := c.conn.Read(c.ctx)
	if err != nil {
		if c.ctx.Err() != nil {
			return nil, fmt.Errorf("spark: read answer: %w", c.ctx.Err())
		}
		return nil, fmt.Errorf("spark: the connection ended before the answer did: %w (%v)", io.ErrUnexpectedEOF, err)
	}
	var f spFrame
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("spark: decode answer frame: %w", err)
	}
	return &f, nil
}

// finish closes the socket normally, once the answer is complete. The
// close handshake (which coder/websocket bounds at 5 s, should the server
// not answer it) runs in the background: the answer is not held up by it.
func (c *sparkConn) finish() {
	c.once.Do(func() { go func() { _ = c.conn.Close(websocket.StatusNormalClosure, "") }() })
}

// abort closes the socket at once.
func (c *sparkConn) abort() {
	c.once.Do(func() { _ = c.conn.CloseNow() })
}

// collect reads a complete answer, first being its first frame, and
// encodes it as a chat.completion.
func (c *sparkConn) collect(first *spFrame, model string) (*Reply, error) {
	var (
		text  strings.Builder
		calls []wire.ToolCall
		usage *wire.Usage
		sid   string
	)
	for f := first; ; {
		if f.Header.Code != 0 {
			c.finish()
			return sparkErrorReply(f.Header), nil
		}
		if sid == "" {
			sid = f.Header.Sid
		}
		if f.Payload != nil {
			for _, t := range f.Payload.Choices.Text {
				text.WriteString(t.Content)
				if t.FunctionCall != nil {
					calls = append(calls, sparkToolCall(t.FunctionCall))
				}
			}
			if f.Payload.Usage != nil {
				usage = f.Payload.Usage.Text.usage()
			}
		}
		if f.last() {
			break
		}
		var err error
		if f, err = c.read(); err != nil {
			c.abort()
			return nil, err
		}
	}
	c.finish()
	msg := wire.Message{Role: "assistant", Content: wire.TextContent(text.String()), ToolCalls: calls}
	finish := "stop"
	if len(calls) > 0 {
		finish = "tool_calls"
		if text.Len() == 0 {
			msg.Content = json.RawMessage("null")
		}
	}
	body, err := json.Marshal(wire.ChatResponse{
		ID:      chatID(sid),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   model,
		Choices: []wire.Choice{{Message: msg, FinishReason: finish}},
		Usage:   usage,
	})
	if err != nil {
		return nil, fmt.Errorf("spark: encode response: %w", err)
	}
	return &Reply{Status: http.StatusOK, Body: body}, nil
}

// sparkStream turns answer frames into chat.completion.chunk payloads: a
// first chunk with the assistant role and the first content, then content
// deltas and tool calls (each whole, in one chunk), then the finish
// reason, then a chunk with no choices carrying the usage. It closes the
// socket after the last frame; Close closes it sooner.
type sparkStream struct {
	c *sparkConn
	chunkHead

	chunkQueue
	started bool // the role was sent
	calls   int  // tool calls sent
}

// newSparkStream starts a stream whose first frame was read.
func newSparkStream(c *sparkConn, first *spFrame, model string) *sparkStream {
	s := &sparkStream{c: c, chunkHead: chunkHead{model: model, id: chatID(first.Header.Sid), created: time.Now().Unix()}}
	s.frame(first)
	return s
}

// Next implements Stream.
func (s *sparkStream) Next() ([]byte, error) {
	for {
		if chunk, err, ok := s.pop(); ok {
			return chunk, err
		}
		f, err := s.c.read()
		if err != nil {
			s.c.abort()
			s.err = err
			continue
		}
		s.frame(f)
	}
}

// Close releases the socket. It may be called at any time, from any
// goroutine, any number of times: a Next blocked reading returns an error.
func (s *sparkStream) Close() error {
	s.c.abort()
	return nil
}

// frame translates one frame.
func (s *sparkStream) frame(f *spFrame) {
	if f.Header.Code != 0 {
		s.c.finish()
		s.err = sparkFrameError(f.Header)
		return
	}
	var usage *wire.Usage
	if f.Payload != nil {
		for _, t := range f.Payload.Choices.Text {
			if t.Content != "" {
				s.send(wire.Delta{Content: wire.Ptr(t.Content)}, nil)
			}
			if t.FunctionCall != nil {
				tc := sparkToolCall(t.FunctionCall)
				tc.Index = wire.Ptr(s.calls)
				s.calls++
				s.send(wire.Delta{ToolCalls: []wire.ToolCall{tc}}, nil)
			}
		}
		if f.Payload.Usage != nil {
			usage = f.Payload.Usage.Text.usage()
		}
	}
	if !f.last() {
		return
	}
	reason := "stop"
	if s.calls > 0 {
		reason = "tool_calls"
	}
	s.send(wire.Delta{}, &reason)
	if usage != nil {
		s.pending = append(s.pending, s.chunk(nil, usage))
	}
	s.c.finish()
	s.err = io.EOF
}

// send queues a chunk with one choice; the first one carries the role.
func (s *sparkStream) send(d wire.Delta, finish *string) {
	if !s.started {
		s.started = true
		d.Role = "assistant"
		if d.Content == nil && d.ToolCalls == nil {
			d.Content = wire.Ptr("")
		}
	}
	s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Delta: d, FinishReason: finish}}, nil))
}
