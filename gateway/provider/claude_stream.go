package provider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	sse "github.com/tmaxmax/go-sse"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// This file brings Anthropic's answers back to OpenAI's format: complete
// messages (Response), streamed ones (Stream) and errors (Error).

// clResponse is a Message; in a stream, message_start carries one with no
// content.
type clResponse struct {
	ID         string         `json:"id"`
	Model      string         `json:"model"`
	Type       string         `json:"type"` // message, or error
	Content    []clOutBlock   `json:"content"`
	StopReason string         `json:"stop_reason"`
	Usage      clUsage        `json:"usage"`
	Error      *clErrorDetail `json:"error"`
}

// clOutBlock is one content block of an answer. Only text and tool_use
// blocks are translated; thinking, redacted_thinking and server tool
// blocks are dropped.
type clOutBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// clUsage counts a message's tokens. Input tokens read from or written to
// the prompt cache are counted apart from input_tokens.
type clUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// UnmarshalJSON implements json.Unmarshaler, reading counts written as
// integers or floats.
func (u *clUsage) UnmarshalJSON(b []byte) error {
	var f struct {
		InputTokens              float64 `json:"input_tokens"`
		OutputTokens             float64 `json:"output_tokens"`
		CacheCreationInputTokens float64 `json:"cache_creation_input_tokens"`
		CacheReadInputTokens     float64 `json:"cache_read_input_tokens"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*u = clUsage{InputTokens: tokens(f.InputTokens), OutputTokens: tokens(f.OutputTokens),
		CacheCreationInputTokens: tokens(f.CacheCreationInputTokens), CacheReadInputTokens: tokens(f.CacheReadInputTokens)}
	return nil
}

// tokens converts a count read as a float, 0 when it is nonsense.
func tokens(f float64) int64 {
	if math.IsNaN(f) || f < 0 || f > math.MaxInt32 {
		return 0
	}
	return int64(math.Ceil(f))
}

// usage converts the counts: every input token, cached or not, is a
// prompt token, and those read from the prompt cache are its cached
// tokens (priced apart).
func (u clUsage) usage() *wire.Usage {
	prompt := u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
	out := &wire.Usage{
		PromptTokens:     prompt,
		CompletionTokens: u.OutputTokens,
		TotalTokens:      prompt + u.OutputTokens,
	}
	if u.CacheReadInputTokens > 0 {
		out.PromptTokensDetails = &wire.PromptTokensDetails{CachedTokens: u.CacheReadInputTokens}
	}
	return out
}

// merge takes the counts a message_delta reports: they are cumulative,
// and input counts are only present in some API versions.
func (u *clUsage) merge(d clUsage) {
	u.OutputTokens = max(u.OutputTokens, d.OutputTokens)
	u.InputTokens = max(u.InputTokens, d.InputTokens)
	u.CacheCreationInputTokens = max(u.CacheCreationInputTokens, d.CacheCreationInputTokens)
	u.CacheReadInputTokens = max(u.CacheReadInputTokens, d.CacheReadInputTokens)
}

// claudeFinish maps a stop reason to a finish reason.
func claudeFinish(reason string) string {
	switch reason {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	// end_turn, stop_sequence, pause_turn and any reason added later.
	return "stop"
}

// claudeToolCall converts a tool_use block.
func claudeToolCall(b clOutBlock) wire.ToolCall {
	return wire.ToolCall{ID: b.ID, Type: "function", Function: wire.FunctionCall{Name: b.Name, Arguments: claudeArguments(b.Input)}}
}

// claudeArguments encodes a tool's input as compact JSON arguments.
func claudeArguments(input json.RawMessage) string {
	if !isSet(input) {
		return "{}"
	}
	var b bytes.Buffer
	if err := json.Compact(&b, input); err != nil {
		return string(input)
	}
	return b.String()
}

// Response implements Translator.
func (claude) Response(ep Endpoint, body []byte, model string) ([]byte, error) {
	if ep != Chat {
		return nil, fmt.Errorf("claude: endpoint %q is not supported", ep)
	}
	var r clResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("claude: decode response: %w", err)
	}
	if r.Type == "error" && r.Error != nil {
		return nil, claudeStreamError(r.Error)
	}
	var (
		text  strings.Builder
		calls []wire.ToolCall
	)
	for _, b := range r.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "tool_use":
			calls = append(calls, claudeToolCall(b))
		}
	}
	msg := wire.Message{Role: "assistant", Content: wire.TextContent(text.String()), ToolCalls: calls}
	if text.Len() == 0 && len(calls) > 0 {
		msg.Content = json.RawMessage("null")
	}
	return json.Marshal(wire.ChatResponse{
		ID:      chatID(r.ID),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   model,
		Choices: []wire.Choice{{Message: msg, FinishReason: claudeFinish(r.StopReason)}},
		Usage:   r.Usage.usage(),
	})
}

// clError is Anthropic's error body.
type clError struct {
	Type  string         `json:"type"` // error
	Error *clErrorDetail `json:"error"`
}

// clErrorDetail is an error's type and message.
type clErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Error implements Translator.
func (claude) Error(status int, body []byte) []byte {
	var e clError
	if json.Unmarshal(body, &e) != nil || e.Error == nil || (e.Error.Type == "" && e.Error.Message == "") {
		msg := fmt.Sprintf("anthropic answered HTTP %d", status)
		if ex := claudeExcerpt(body, 200); ex != "" {
			msg += ": " + ex
		}
		return wire.NewError("server_error", "", msg)
	}
	typ, code := claudeErrorType(e.Error.Type, status)
	return wire.NewError(typ, code, claudeErrorMessage(e.Error))
}

// claudeErrorMessage returns an error's message, else its type.
func claudeErrorMessage(d *clErrorDetail) string {
	if d.Message != "" {
		return d.Message
	}
	return "anthropic: " + d.Type
}

// claudeErrorType maps an Anthropic error type to an OpenAI error type and
// code; a type it does not know is mapped by its HTTP status.
func claudeErrorType(typ string, status int) (string, string) {
	switch typ {
	case "invalid_request_error", "request_too_large":
		return "invalid_request_error", ""
	case "authentication_error":
		return "authentication_error", ""
	case "permission_error":
		return "permission_error", ""
	case "not_found_error":
		return "not_found_error", ""
	case "rate_limit_error":
		return "requests", "rate_limit_exceeded"
	case "api_error":
		return "server_error", ""
	case "overloaded_error":
		return "server_error", "overloaded"
	}
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error", ""
	case status == http.StatusForbidden:
		return "permission_error", ""
	case status == http.StatusNotFound:
		return "not_found_error", ""
	case status == http.StatusTooManyRequests:
		return "requests", "rate_limit_exceeded"
	case status >= 400 && status < 500:
		return "invalid_request_error", ""
	}
	return "server_error", ""
}

// claudeErrorStatus is the HTTP status Anthropic documents for an error
// type, or 0.
func claudeErrorStatus(typ string) int {
	switch typ {
	case "invalid_request_error":
		return http.StatusBadRequest
	case "authentication_error":
		return http.StatusUnauthorized
	case "permission_error":
		return http.StatusForbidden
	case "not_found_error":
		return http.StatusNotFound
	case "request_too_large":
		return http.StatusRequestEntityTooLarge
	case "rate_limit_error":
		return http.StatusTooManyRequests
	case "api_error":
		return http.StatusInternalServerError
	case "overloaded_error":
		return 529
	}
	return 0
}

// claudeStreamError converts an error Anthropic sent in place of an
// answer (an error event, mostly).
func claudeStreamError(d *clErrorDetail) *Error {
	status := claudeErrorStatus(d.Type)
	typ, _ := claudeErrorType(d.Type, status)
	return &Error{Status: status, Type: typ, Message: claudeErrorMessage(d)}
}

// claudeExcerpt returns the start of a body, for error messages.
func claudeExcerpt(body []byte, n int) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(body), "?"))
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Stream implements Translator.
func (claude) Stream(body io.Reader, model string) Stream {
	s := &claudeStream{
		ssePull:   newSSEPull(body),
		chunkHead: chunkHead{model: model, created: time.Now().Unix()},
		tools:     map[int]int{},
	}
	releaseWhenCollected(s, s.stop)
	return s
}

// claudeStream turns Anthropic's SSE events into chat.completion.chunk
// payloads: a first chunk with the assistant role, then text deltas and
// tool calls (a first chunk with the id and name, then argument
// fragments), then the finish reason, then a chunk with no choices
// carrying the usage.
type claudeStream struct {
	ssePull
	chunkHead

	chunkQueue
	started  bool        // the role chunk was sent
	tools    map[int]int // content block index → tool call index
	finished bool        // a finish reason was sent
	usage    clUsage     // the counts so far
}

// clEvent is one streamed event; which fields are set depends on its
// type.
type clEvent struct {
	Type         string         `json:"type"`
	Message      *clResponse    `json:"message"`       // message_start
	Index        int            `json:"index"`         // content_block_*
	ContentBlock *clOutBlock    `json:"content_block"` // content_block_start
	Delta        *clDelta       `json:"delta"`         // content_block_delta, message_delta
	Usage        *clUsage       `json:"usage"`         // message_delta
	Error        *clErrorDetail `json:"error"`         // error
}

// clDelta is a content block delta or a message delta.
type clDelta struct {
	Type        string `json:"type"` // text_delta, input_json_delta, thinking_delta...
	Text        string `json:"text"`
	PartialJSON string `json:"partial_json"`
	StopReason  string `json:"stop_reason"`
}

// Next implements Stream.
func (s *claudeStream) Next() ([]byte, error) {
	for {
		if chunk, err, ok := s.pop(); ok {
			return chunk, err
		}
		ev, err, ok := s.next()
		switch {
		case !ok:
			s.fail(io.ErrUnexpectedEOF) // the body ended before message_stop
		case err != nil:
			s.fail(fmt.Errorf("claude: read stream: %w", err))
		case strings.TrimSpace(ev.Data) != "":
			if err := s.event(ev); err != nil {
				s.fail(err)
			}
		}
	}
}

// fail ends the stream with an error: io.EOF after message_stop.
func (s *claudeStream) fail(err error) {
	s.stop()
	s.err = err
}

// event translates one event.
func (s *claudeStream) event(ev sse.Event) error {
	var e clEvent
	if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
		return fmt.Errorf("claude: decode stream event: %w", err)
	}
	if e.Type == "" {
		e.Type = ev.Type
	}
	switch e.Type {
	case "message_start":
		s.messageStart(e.Message)
	case "content_block_start":
		s.blockStart(e.Index, e.ContentBlock)
	case "content_block_delta":
		s.blockDelta(e.Index, e.Delta)
	case "message_delta":
		s.messageDelta(e.Delta, e.Usage)
	case "message_stop":
		s.messageStop()
	case "error":
		if e.Error == nil {
			e.Error = &clErrorDetail{Type: "api_error"}
		}
		return claudeStreamError(e.Error)
	}
	// ping, content_block_stop and event types added later: nothing.
	return nil
}

// messageStart remembers the message's id and input counts and sends the
// role chunk.
func (s *claudeStream) messageStart(m *clResponse) {
	if m != nil {
		if s.id == "" && m.ID != "" {
			s.id = chatID(m.ID)
		}
		s.usage.merge(m.Usage)
	}
	s.begin()
}

// begin sends the role chunk, once.
func (s *claudeStream) begin() {
	if s.started {
		return
	}
	s.started = true
	s.send(wire.Delta{Role: "assistant", Content: wire.Ptr("")}, nil)
}

// blockStart sends a tool call's id and name when a tool_use block
// starts; other blocks start silently.
func (s *claudeStream) blockStart(index int, b *clOutBlock) {
	if b == nil || b.Type != "tool_use" {
		return
	}
	s.begin()
	k := len(s.tools)
	s.tools[index] = k
	args := ""
	if in := claudeArguments(b.Input); in != "{}" {
		args = in // an input given whole rather than as deltas
	}
	s.send(wire.Delta{ToolCalls: []wire.ToolCall{{
		Index:    wire.Ptr(k),
		ID:       b.ID,
		Type:     "function",
		Function: wire.FunctionCall{Name: b.Name, Arguments: args},
	}}}, nil)
}

// blockDelta sends text and tool input fragments; thinking, signature and
// citation deltas are dropped.
func (s *claudeStream) blockDelta(index int, d *clDelta) {
	if d == nil {
		return
	}
	switch d.Type {
	case "text_delta":
		if d.Text != "" {
			s.begin()
			s.send(wire.Delta{Content: wire.Ptr(d.Text)}, nil)
		}
	case "input_json_delta":
		k, ok := s.tools[index]
		if !ok || d.PartialJSON == "" {
			return
		}
		s.send(wire.Delta{ToolCalls: []wire.ToolCall{{
			Index:    wire.Ptr(k),
			Function: wire.FunctionCall{Arguments: d.PartialJSON},
		}}}, nil)
	}
}

// messageDelta sends the finish reason and remembers the counts.
func (s *claudeStream) messageDelta(d *clDelta, u *clUsage) {
	if u != nil {
		s.usage.merge(*u)
	}
	if d != nil && d.StopReason != "" {
		s.finish(claudeFinish(d.StopReason))
	}
}

// finish sends a finish reason.
func (s *claudeStream) finish(reason string) {
	s.begin()
	s.finished = true
	s.send(wire.Delta{}, &reason)
}

// messageStop sends the usage chunk and ends the stream.
func (s *claudeStream) messageStop() {
	if !s.finished {
		s.finish("stop")
	}
	s.pending = append(s.pending, s.chunk(nil, s.usage.usage()))
	s.fail(io.EOF)
}

// send queues a chunk with one choice.
func (s *claudeStream) send(d wire.Delta, finish *string) {
	s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Delta: d, FinishReason: finish}}, nil))
}
