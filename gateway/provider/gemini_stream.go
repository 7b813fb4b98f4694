package provider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
	sse "github.com/tmaxmax/go-sse"
)

// This file brings Gemini's answers back to OpenAI's format: complete
// answers (Response), streamed ones (Stream) and errors (Error).

// gmResponse is a GenerateContentResponse; in a stream, each event is one.
type gmResponse struct {
	Candidates     []gmCandidate `json:"candidates"`
	PromptFeedback *struct {
		BlockReason string `json:"blockReason"`
	} `json:"promptFeedback"`
	UsageMetadata *gmUsage       `json:"usageMetadata"`
	ResponseID    string         `json:"responseId"`
	Error         *gmErrorDetail `json:"error"` // only in a stream that broke
}

// gmCandidate is one answer.
type gmCandidate struct {
	Content      *gmContent `json:"content"`
	FinishReason string     `json:"finishReason"`
	Index        *int       `json:"index"`
}

// gmUsage counts a call's tokens.
type gmUsage struct {
	PromptTokenCount     int64 `json:"promptTokenCount"`
	CandidatesTokenCount int64 `json:"candidatesTokenCount"`
	ThoughtsTokenCount   int64 `json:"thoughtsTokenCount"`
	TotalTokenCount      int64 `json:"totalTokenCount"`
}

// usage converts the counts; thinking tokens are billed as completion.
func (u *gmUsage) usage() *wire.Usage {
	if u == nil {
		return nil
	}
	w := &wire.Usage{
		PromptTokens:     u.PromptTokenCount,
		CompletionTokens: u.CandidatesTokenCount + u.ThoughtsTokenCount,
		TotalTokens:      u.TotalTokenCount,
	}
	if w.TotalTokens == 0 {
		w.TotalTokens = w.PromptTokens + w.CompletionTokens
	}
	return w
}

// blocked reports whether the prompt was refused: then there are no
// candidates.
func (r *gmResponse) blocked() bool {
	return len(r.Candidates) == 0 && r.PromptFeedback != nil && r.PromptFeedback.BlockReason != ""
}

// index returns a candidate's choice index; Gemini may omit it for the
// first.
func (c gmCandidate) index(pos int) int {
	if c.Index != nil {
		return *c.Index
	}
	return pos
}

// answer returns a candidate's text (thoughts skipped) and function calls.
func (c gmCandidate) answer() (string, []wire.ToolCall) {
	if c.Content == nil {
		return "", nil
	}
	var (
		text  strings.Builder
		calls []wire.ToolCall
	)
	for _, p := range c.Content.Parts {
		switch {
		case p.FunctionCall != nil:
			calls = append(calls, geminiToolCall(p.FunctionCall))
		case !p.Thought:
			text.WriteString(p.Text)
		}
	}
	return text.String(), calls
}

// geminiToolCall converts a function call, keeping Gemini's id when it
// gave one.
func geminiToolCall(fc *gmFunctionCall) wire.ToolCall {
	id := fc.ID
	if id == "" {
		id = geminiID("call_")
	}
	args := string(fc.Args)
	if !isSet(fc.Args) {
		args = "{}"
	}
	return wire.ToolCall{ID: id, Type: "function", Function: wire.FunctionCall{Name: fc.Name, Arguments: args}}
}

// geminiFinish maps a finish reason; calls says the candidate called
// functions.
func geminiFinish(reason string, calls bool) string {
	switch reason {
	case "MAX_TOKENS":
		return "length"
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE":
		return "content_filter"
	}
	// STOP, MALFORMED_FUNCTION_CALL, OTHER, FINISH_REASON_UNSPECIFIED and
	// any reason added later.
	if calls {
		return "tool_calls"
	}
	return "stop"
}

// Response implements Translator.
func (gemini) Response(ep Endpoint, body []byte, model string) ([]byte, error) {
	switch ep {
	case Chat:
		return geminiChatResponse(body, model)
	case Embeddings:
		return geminiEmbedResponse(body, model)
	}
	return nil, fmt.Errorf("gemini: endpoint %q is not supported", ep)
}

// geminiChatResponse converts a GenerateContentResponse to a
// chat.completion: one choice per candidate.
func geminiChatResponse(body []byte, model string) ([]byte, error) {
	var r gmResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("gemini: decode response: %w", err)
	}
	if r.Error != nil {
		return nil, geminiStreamError(r.Error)
	}
	out := wire.ChatResponse{
		ID:      chatID(r.ResponseID),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   model,
		Choices: []wire.Choice{},
		Usage:   r.UsageMetadata.usage(),
	}
	for pos, c := range r.Candidates {
		text, calls := c.answer()
		msg := wire.Message{Role: "assistant", Content: wire.TextContent(text), ToolCalls: calls}
		if text == "" && len(calls) > 0 {
			msg.Content = json.RawMessage("null")
		}
		out.Choices = append(out.Choices, wire.Choice{
			Index:        c.index(pos),
			Message:      msg,
			FinishReason: geminiFinish(c.FinishReason, len(calls) > 0),
		})
	}
	if len(r.Candidates) == 0 {
		finish := "stop"
		if r.blocked() {
			finish = "content_filter"
		}
		out.Choices = append(out.Choices, wire.Choice{
			Message:      wire.Message{Role: "assistant", Content: wire.TextContent("")},
			FinishReason: finish,
		})
	}
	return json.Marshal(out)
}

// geminiEmbedResponse converts a BatchEmbedContentsResponse to an
// embeddings list. Gemini reports no token usage for embeddings and the
// inputs are not at hand here, so usage is left at zero: the gateway then
// settles its own estimate (characters/4) of the request.
func geminiEmbedResponse(body []byte, model string) ([]byte, error) {
	var r struct {
		Embeddings []struct {
			Values []float64 `json:"values"`
		} `json:"embeddings"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("gemini: decode embeddings: %w", err)
	}
	out := wire.EmbeddingResponse{Object: "list", Model: model, Data: make([]wire.Embedding, len(r.Embeddings))}
	for i, e := range r.Embeddings {
		vec := e.Values
		if vec == nil {
			vec = []float64{}
		}
		out.Data[i] = wire.Embedding{Object: "embedding", Index: i, Embedding: vec}
	}
	return json.Marshal(out)
}

// gmError is Google's error body.
type gmError struct {
	Error *gmErrorDetail `json:"error"`
}

// gmErrorDetail is a google.rpc.Status.
type gmErrorDetail struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
	Details []struct {
		Reason string `json:"reason"`
	} `json:"details"`
}

// Error implements Translator.
func (gemini) Error(status int, body []byte) []byte {
	d := geminiErrorDetail(body)
	if d == nil {
		msg := fmt.Sprintf("gemini answered HTTP %d", status)
		if ex := geminiExcerpt(body, 200); ex != "" {
			msg += ": " + ex
		}
		return wire.NewError("server_error", "", msg)
	}
	typ, code := geminiErrorType(d, status)
	return wire.NewError(typ, code, d.Message)
}

// geminiErrorDetail decodes an error body, also in the array form the
// non-SSE stream uses; nil if it is not one.
func geminiErrorDetail(body []byte) *gmErrorDetail {
	var e gmError
	body = bytes.TrimSpace(body)
	if bytes.HasPrefix(body, []byte("[")) {
		var list []gmError
		if json.Unmarshal(body, &list) != nil || len(list) == 0 {
			return nil
		}
		e = list[0]
	} else if json.Unmarshal(body, &e) != nil {
		return nil
	}
	if e.Error == nil || (e.Error.Message == "" && e.Error.Status == "") {
		return nil
	}
	if e.Error.Message == "" {
		e.Error.Message = e.Error.Status
	}
	return e.Error
}

// geminiErrorType maps a Google error to an OpenAI error type and code, by
// its canonical status, else by its HTTP status.
func geminiErrorType(d *gmErrorDetail, status int) (typ, code string) {
	for _, det := range d.Details {
		if det.Reason == "API_KEY_INVALID" {
			return "authentication_error", "invalid_api_key"
		}
	}
	switch d.Status {
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		return "invalid_request_error", ""
	case "UNAUTHENTICATED":
		return "authentication_error", ""
	case "PERMISSION_DENIED":
		return "permission_error", ""
	case "NOT_FOUND":
		return "not_found_error", ""
	case "RESOURCE_EXHAUSTED":
		return "requests", "rate_limit_exceeded"
	case "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN":
		return "server_error", ""
	}
	if status == 0 {
		status = d.Code
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

// geminiExcerpt returns the start of a body, for error messages.
func geminiExcerpt(body []byte, n int) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(body), "?"))
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// geminiStreamError converts an error Gemini sent in place of an answer.
func geminiStreamError(d *gmErrorDetail) *Error {
	typ, _ := geminiErrorType(d, 0)
	status := 0
	if d.Code >= 400 && d.Code <= 599 {
		status = d.Code
	}
	msg := d.Message
	if msg == "" {
		msg = "gemini: " + d.Status
	}
	return &Error{Status: status, Type: typ, Message: msg}
}

// Stream implements Translator.
func (gemini) Stream(body io.Reader, model string) Stream {
	s := &geminiStream{eventStream: newEventStream(body, "gemini", model), started: map[int]bool{}, calls: map[int]int{}}
	releaseWhenCollected(s, s.stop)
	return s
}

// geminiStream turns Gemini's SSE events into chat.completion.chunk
// payloads: per candidate, a first chunk with the assistant role, then
// text deltas and whole function calls, then the finish reason; after the
// last event, a chunk with no choices carrying the usage.
type geminiStream struct {
	eventStream
	started map[int]bool // candidates whose role chunk was sent
	calls   map[int]int  // function calls sent, per candidate
}

// Next implements Stream.
func (s *geminiStream) Next() ([]byte, error) { return s.pump(s.event) }

// event translates one GenerateContentResponse.
func (s *geminiStream) event(ev sse.Event) error {
	var r gmResponse
	if err := json.Unmarshal([]byte(ev.Data), &r); err != nil {
		return fmt.Errorf("gemini: decode stream event: %w", err)
	}
	if r.Error != nil {
		return geminiStreamError(r.Error)
	}
	if s.id == "" {
		s.id = chatID(r.ResponseID)
	}
	if u := r.UsageMetadata.usage(); u != nil {
		s.usage = u
	}
	if r.blocked() {
		s.begin(0)
		s.finish(0, "content_filter")
		return nil
	}
	for pos, c := range r.Candidates {
		s.candidate(c.index(pos), c)
	}
	return nil
}

// candidate translates one candidate's share of an event.
func (s *geminiStream) candidate(i int, c gmCandidate) {
	s.begin(i)
	text, calls := c.answer()
	var delta wire.Delta
	if text != "" {
		delta.Content = &text
	}
	for _, tc := range calls {
		tc.Index = wire.Ptr(s.calls[i])
		s.calls[i]++
		delta.ToolCalls = append(delta.ToolCalls, tc)
	}
	if delta.Content != nil || delta.ToolCalls != nil {
		s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Index: i, Delta: delta}}, nil))
	}
	if c.FinishReason != "" {
		s.finish(i, geminiFinish(c.FinishReason, s.calls[i] > 0))
	}
}

// begin sends a candidate's role chunk, once.
func (s *geminiStream) begin(i int) {
	if s.started[i] {
		return
	}
	s.started[i] = true
	s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Index: i, Delta: wire.Delta{Role: "assistant", Content: wire.Ptr("")}}}, nil))
}

// finish sends a candidate's finish reason.
func (s *geminiStream) finish(i int, reason string) {
	s.finished = true
	s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Index: i, FinishReason: &reason}}, nil))
}
