package provider

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
	sse "github.com/tmaxmax/go-sse"
)

// This file brings DashScope's answers back to OpenAI's format: complete
// answers (Response), streamed ones (Stream) and errors (Error).

// dsResponse is a text-generation answer; in a stream, each event's data
// is one. A "message" answer has output.choices, a "text" one output.text
// and output.finish_reason.
type dsResponse struct {
	Output    dsOutput `json:"output"`
	Usage     *dsUsage `json:"usage"`
	RequestID string   `json:"request_id"`
	Code      string   `json:"code"` // set only on an error
	Message   string   `json:"message"`
}

// dsOutput is an answer's output.
type dsOutput struct {
	Choices      []dsChoice `json:"choices"`
	Text         *string    `json:"text"`
	FinishReason string     `json:"finish_reason"`
}

// dsChoice is one answer in the "message" format.
type dsChoice struct {
	Index        *int     `json:"index"`
	Message      dsAnswer `json:"message"`
	FinishReason string   `json:"finish_reason"` // "null" until the answer ends
}

// dsAnswer is the assistant's message. ReasoningContent, a thinking
// model's reasoning, has no place in OpenAI's format and is dropped.
type dsAnswer struct {
	Role             string       `json:"role"`
	Content          string       `json:"content"`
	ReasoningContent string       `json:"reasoning_content"`
	ToolCalls        []dsToolCall `json:"tool_calls"`
}

// dsUsage counts a call's tokens; in a stream, each event has the counts
// so far.
type dsUsage struct {
	InputTokens         int64 `json:"input_tokens"`
	OutputTokens        int64 `json:"output_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	OutputTokensDetails *struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
}

// usage converts the counts; nil when there are none (a search model's
// first event has an empty usage).
func (u *dsUsage) usage() *wire.Usage {
	if u == nil || u.InputTokens+u.OutputTokens+u.TotalTokens == 0 {
		return nil
	}
	w := &wire.Usage{PromptTokens: u.InputTokens, CompletionTokens: u.OutputTokens, TotalTokens: u.TotalTokens}
	if w.TotalTokens == 0 {
		w.TotalTokens = w.PromptTokens + w.CompletionTokens
	}
	if d := u.PromptTokensDetails; d != nil {
		w.PromptTokensDetails = &wire.PromptTokensDetails{CachedTokens: d.CachedTokens}
	}
	if d := u.OutputTokensDetails; d != nil {
		w.CompletionTokensDetails = &wire.CompletionTokensDetails{ReasoningTokens: d.ReasoningTokens}
	}
	return w
}

// answered reports whether the response carries an answer, not only an
// error code.
func (r *dsResponse) answered() bool {
	return r.Output.Choices != nil || r.Output.Text != nil
}

// choices returns the answer's choices, a "text" answer as one.
func (r *dsResponse) choices() []dsChoice {
	if r.Output.Choices != nil || r.Output.Text == nil {
		return r.Output.Choices
	}
	return []dsChoice{{
		Message:      dsAnswer{Role: "assistant", Content: *r.Output.Text},
		FinishReason: r.Output.FinishReason,
	}}
}

// index returns a choice's index; DashScope may omit it.
func (c dsChoice) index(pos int) int {
	if c.Index != nil {
		return *c.Index
	}
	return pos
}

// finished reports whether a choice's answer ended.
func (c dsChoice) finished() bool {
	return c.FinishReason != "" && c.FinishReason != "null"
}

// dashScopeFinish maps a finish reason; calls says the answer called
// functions (DashScope has said "stop" for those).
func dashScopeFinish(reason string, calls bool) string {
	switch reason {
	case "length", "tool_calls", "content_filter":
		return reason
	}
	if calls {
		return "tool_calls"
	}
	return "stop"
}

// Response implements Translator.
func (dashScope) Response(ep Endpoint, body []byte, model string) ([]byte, error) {
	switch ep {
	case Chat:
		return dashScopeChatResponse(body, model)
	case Embeddings:
		return dashScopeEmbedResponse(body, model)
	}
	return nil, fmt.Errorf("dashscope: endpoint %q is not supported", ep)
}

// dashScopeChatResponse converts a text-generation answer to a
// chat.completion.
func dashScopeChatResponse(body []byte, model string) ([]byte, error) {
	var r dsResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("dashscope: decode response: %w", err)
	}
	if !r.answered() && r.Code != "" {
		return nil, dashScopeStreamError(&r)
	}
	out := wire.ChatResponse{
		ID:      chatID(r.RequestID),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   model,
		Choices: []wire.Choice{},
		Usage:   r.Usage.usage(),
	}
	for pos, c := range r.choices() {
		msg := wire.Message{Role: "assistant", Content: wire.TextContent(c.Message.Content)}
		for _, tc := range c.Message.ToolCalls {
			msg.ToolCalls = append(msg.ToolCalls, dashScopeToolCall(tc))
		}
		if c.Message.Content == "" && len(msg.ToolCalls) > 0 {
			msg.Content = json.RawMessage("null")
		}
		out.Choices = append(out.Choices, wire.Choice{
			Index:        c.index(pos),
			Message:      msg,
			FinishReason: dashScopeFinish(c.FinishReason, len(msg.ToolCalls) > 0),
		})
	}
	if len(out.Choices) == 0 {
		out.Choices = append(out.Choices, wire.Choice{
			Message:      wire.Message{Role: "assistant", Content: wire.TextContent("")},
			FinishReason: "stop",
		})
	}
	return json.Marshal(out)
}

// dashScopeToolCall converts a complete function call.
func dashScopeToolCall(tc dsToolCall) wire.ToolCall {
	id := tc.ID
	if id == "" {
		id = geminiID("call_")
	}
	args := tc.Function.Arguments
	if args == "" {
		args = "{}"
	}
	return wire.ToolCall{ID: id, Type: "function", Function: wire.FunctionCall{Name: tc.Function.Name, Arguments: args}}
}

// dashScopeEmbedResponse converts a text-embedding answer to an
// embeddings list, in input order.
func dashScopeEmbedResponse(body []byte, model string) ([]byte, error) {
	var r struct {
		Output struct {
			Embeddings []struct {
				TextIndex int       `json:"text_index"`
				Embedding []float64 `json:"embedding"`
			} `json:"embeddings"`
		} `json:"output"`
		Usage struct {
			TotalTokens int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("dashscope: decode embeddings: %w", err)
	}
	out := wire.EmbeddingResponse{
		Object: "list",
		Model:  model,
		Data:   make([]wire.Embedding, len(r.Output.Embeddings)),
		Usage:  wire.Usage{PromptTokens: r.Usage.TotalTokens, TotalTokens: r.Usage.TotalTokens},
	}
	for i, e := range r.Output.Embeddings {
		vec := e.Embedding
		if vec == nil {
			vec = []float64{}
		}
		out.Data[i] = wire.Embedding{Object: "embedding", Index: e.TextIndex, Embedding: vec}
	}
	slices.SortStableFunc(out.Data, func(a, b wire.Embedding) int { return cmp.Compare(a.Index, b.Index) })
	return json.Marshal(out)
}

// Error implements Translator. DashScope's errors are
// {"code","message","request_id"}; a refused streamed call may carry it as
// an SSE error event.
func (dashScope) Error(status int, body []byte) []byte {
	r := dashScopeErrorBody(body)
	if r == nil {
		msg := fmt.Sprintf("dashscope answered HTTP %d", status)
		if ex := geminiExcerpt(body, 200); ex != "" {
			msg += ": " + ex
		}
		return wire.NewError("server_error", "", msg)
	}
	typ, code := dashScopeErrorType(r.Code, status)
	return wire.NewError(typ, code, dashScopeErrorMessage(r))
}

// dashScopeErrorBody decodes an error body, in JSON or as an SSE event's
// data; nil if it is not one.
func dashScopeErrorBody(body []byte) *dsResponse {
	body = bytes.TrimSpace(body)
	if !bytes.HasPrefix(body, []byte("{")) {
		for line := range bytes.Lines(body) {
			if data, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:")); ok {
				body = bytes.TrimSpace(data)
				break
			}
		}
	}
	var r dsResponse
	if json.Unmarshal(body, &r) != nil || (r.Code == "" && r.Message == "") {
		return nil
	}
	return &r
}

// dashScopeErrorMessage is an error's message, else its code.
func dashScopeErrorMessage(r *dsResponse) string {
	return cmp.Or(r.Message, "dashscope: "+r.Code)
}

// dashScopeErrorType maps a DashScope error code (documented in Model
// Studio's error code reference) to an OpenAI error type and code, else
// the HTTP status.
func dashScopeErrorType(code string, status int) (typ, oaiCode string) {
	switch {
	case code == "InvalidApiKey":
		return "authentication_error", "invalid_api_key"
	case code == "Arrearage":
		return "insufficient_quota", "insufficient_quota"
	case strings.HasPrefix(code, "Throttling"):
		return "requests", "rate_limit_exceeded"
	case strings.HasPrefix(code, "DataInspectionFailed"), strings.EqualFold(code, "data_inspection_failed"):
		return "invalid_request_error", "content_policy_violation"
	case strings.Contains(code, "AccessDenied"):
		return "permission_error", ""
	case strings.Contains(code, "NotFound"):
		return "not_found_error", ""
	case strings.HasPrefix(code, "InvalidParameter"), strings.HasPrefix(code, "BadRequest"),
		code == "InvalidURL", code == "UnsupportedOperation":
		return "invalid_request_error", ""
	case strings.HasPrefix(code, "InternalError"), code == "SystemError", code == "ServiceUnavailable", code == "RequestTimeOut":
		return "server_error", ""
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

// dashScopeErrorStatus is the HTTP status DashScope documents for an
// error code, for errors sent in a stream; 0 if unknown.
func dashScopeErrorStatus(code string) int {
	switch typ, _ := dashScopeErrorType(code, 0); {
	case code == "RequestTimeOut":
		return http.StatusRequestTimeout
	case code == "ServiceUnavailable":
		return http.StatusServiceUnavailable
	case typ == "authentication_error":
		return http.StatusUnauthorized
	case typ == "permission_error":
		return http.StatusForbidden
	case typ == "not_found_error":
		return http.StatusNotFound
	case typ == "requests":
		return http.StatusTooManyRequests
	case typ == "invalid_request_error", typ == "insufficient_quota":
		return http.StatusBadRequest
	case code != "":
		return http.StatusInternalServerError
	}
	return 0
}

// dashScopeStreamError converts an error DashScope sent in place of an
// answer.
func dashScopeStreamError(r *dsResponse) *Error {
	typ, _ := dashScopeErrorType(r.Code, 0)
	return &Error{Status: dashScopeErrorStatus(r.Code), Type: typ, Message: dashScopeErrorMessage(r)}
}

// Stream implements Translator.
func (dashScope) Stream(body io.Reader, model string) Stream {
	s := &dashScopeStream{eventStream: newEventStream(body, "dashscope", model), started: map[int]bool{}, calls: map[int]map[int]bool{}}
	releaseWhenCollected(s, s.stop)
	return s
}

// dashScopeStream turns DashScope's SSE events (event:result, with
// incremental output) into chat.completion.chunk payloads: per choice, a
// first chunk with the assistant role, then text deltas and tool call
// fragments, then the finish reason; after the last event, a chunk with
// no choices carrying the usage. An event:error ends the stream with an
// *Error.
type dashScopeStream struct {
	eventStream
	started map[int]bool         // choices whose role chunk was sent
	calls   map[int]map[int]bool // tool call indexes begun, per choice
}

// Next implements Stream.
func (s *dashScopeStream) Next() ([]byte, error) { return s.pump(s.event) }

// event translates one SSE event. Its data is one JSON answer per line:
// events not parted by a blank line arrive merged, their data lines
// joined.
func (s *dashScopeStream) event(ev sse.Event) error {
	typ, data := ev.Type, ev.Data
	for line := range strings.Lines(data) {
		line = strings.TrimSpace(line)
		if line == "" || line == "[DONE]" {
			continue
		}
		var r dsResponse
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return fmt.Errorf("dashscope: decode stream event: %w", err)
		}
		if typ == "error" || (!r.answered() && r.Code != "") {
			if r.Code == "" && r.Message == "" {
				r.Code = "InternalError"
			}
			return dashScopeStreamError(&r)
		}
		s.answer(&r)
	}
	return nil
}

// answer translates one event's answer.
func (s *dashScopeStream) answer(r *dsResponse) {
	if s.id == "" {
		s.id = chatID(r.RequestID)
	}
	if u := r.Usage.usage(); u != nil {
		s.usage = u
	}
	for pos, c := range r.choices() {
		s.choice(c.index(pos), c)
	}
}

// choice translates one choice's share of an event.
func (s *dashScopeStream) choice(i int, c dsChoice) {
	s.begin(i)
	var delta wire.Delta
	if c.Message.Content != "" {
		delta.Content = &c.Message.Content
	}
	for pos, tc := range c.Message.ToolCalls {
		delta.ToolCalls = append(delta.ToolCalls, s.toolCall(i, pos, tc))
	}
	if delta.Content != nil || delta.ToolCalls != nil {
		s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Index: i, Delta: delta}}, nil))
	}
	if c.finished() {
		s.finished = true
		reason := dashScopeFinish(c.FinishReason, len(s.calls[i]) > 0)
		s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Index: i, FinishReason: &reason}}, nil))
	}
}

// toolCall translates a tool call fragment: the first of a call carries
// its id and name, later ones only argument text.
func (s *dashScopeStream) toolCall(choice, pos int, tc dsToolCall) wire.ToolCall {
	idx := pos
	if tc.Index != nil {
		idx = *tc.Index
	}
	if s.calls[choice] == nil {
		s.calls[choice] = map[int]bool{}
	}
	out := wire.ToolCall{Index: wire.Ptr(idx), Function: wire.FunctionCall{Arguments: tc.Function.Arguments}}
	if !s.calls[choice][idx] {
		s.calls[choice][idx] = true
		out.ID = cmp.Or(tc.ID, geminiID("call_"))
		out.Type = "function"
		out.Function.Name = tc.Function.Name
	}
	return out
}

// begin sends a choice's role chunk, once.
func (s *dashScopeStream) begin(i int) {
	if s.started[i] {
		return
	}
	s.started[i] = true
	s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Index: i, Delta: wire.Delta{Role: "assistant", Content: wire.Ptr("")}}}, nil))
}
