package provider

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
	sse "github.com/tmaxmax/go-sse"
)

// This file brings Hunyuan's answers back to OpenAI's format: complete
// answers (Response), streamed ones (Stream) and errors (Error).
//
// Tencent Cloud API 3.0 answers with HTTP 200 even when it refuses a call:
// the body is then {"Response":{"Error":{"Code","Message"},"RequestId"}},
// for a streamed call too (as JSON, not an event stream). Response and
// Stream turn such a body into an *Error whose Status is the HTTP status
// the code maps to (hunyuanErrorKind). A failure inside a stream comes as
// an event's ErrorMsg {Msg, Code}.

// hyResponse is the Response object of an answer; in a stream, each
// event is one (without the Response wrapper).
type hyResponse struct {
	ID        string      `json:"Id"`
	Created   int64       `json:"Created"`
	Choices   []hyChoice  `json:"Choices"`
	Usage     *hyUsage    `json:"Usage"`
	ErrorMsg  *hyErrorMsg `json:"ErrorMsg"` // a failure during a stream
	Error     *hyAPIError `json:"Error"`    // a refused call
	RequestID string      `json:"RequestId"`
}

// hyChoice is one answer: Message in a complete answer, Delta in a
// stream event.
type hyChoice struct {
	FinishReason string     `json:"FinishReason"` // stop, tool_calls, sensitive (or "" mid-stream)
	Index        *int       `json:"Index"`
	Message      *hyMessage `json:"Message"`
	Delta        *hyMessage `json:"Delta"`
}

// hyUsage counts a call's tokens; a stream reports the counts so far in
// each event.
type hyUsage struct {
	PromptTokens     hyCount `json:"PromptTokens"`
	CompletionTokens hyCount `json:"CompletionTokens"`
	TotalTokens      hyCount `json:"TotalTokens"`
}

// hyCount is a token count that may be written as a float.
type hyCount int64

// UnmarshalJSON implements json.Unmarshaler.
func (c *hyCount) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		f = 0
	}
	*c = hyCount(wire.Count(f))
	return nil
}

// usage converts the counts.
func (u *hyUsage) usage() *wire.Usage {
	if u == nil {
		return nil
	}
	w := &wire.Usage{PromptTokens: int64(u.PromptTokens), CompletionTokens: int64(u.CompletionTokens), TotalTokens: int64(u.TotalTokens)}
	if w.TotalTokens == 0 {
		w.TotalTokens = w.PromptTokens + w.CompletionTokens
	}
	return w
}

// hyErrorMsg is a failure reported inside a stream: code 4000 is an
// internal error, 4001 a model timeout.
type hyErrorMsg struct {
	Msg  string `json:"Msg"`
	Code int64  `json:"Code"`
}

// hyAPIError is Tencent Cloud API 3.0's error object.
type hyAPIError struct {
	Code    string `json:"Code"`
	Message string `json:"Message"`
}

// hunyuanEnvelope reads an answer's {"Response": …} object; ok is false
// when the body is not one.
func hunyuanEnvelope(body []byte) (r *hyResponse, ok bool) {
	var env struct {
		Response *hyResponse `json:"Response"`
	}
	if json.Unmarshal(body, &env) != nil || env.Response == nil {
		return nil, false
	}
	return env.Response, true
}

// fault returns the error a Response object carries, or nil.
func (r *hyResponse) fault() *Error {
	switch {
	case r.Error != nil && (r.Error.Code != "" || r.Error.Message != ""):
		return hunyuanAPIError(r.Error)
	case r.ErrorMsg != nil && (r.ErrorMsg.Code != 0 || r.ErrorMsg.Msg != ""):
		return hunyuanStreamError(r.ErrorMsg)
	}
	return nil
}

// hunyuanAPIError converts a refusal.
func hunyuanAPIError(e *hyAPIError) *Error {
	status, typ, _ := hunyuanErrorKind(e.Code)
	return &Error{Status: status, Type: typ, Message: hunyuanErrorMessage(e)}
}

// hunyuanErrorMessage is a refusal's message: Tencent's code, then its
// message.
func hunyuanErrorMessage(e *hyAPIError) string {
	switch {
	case e.Code == "":
		return e.Message
	case e.Message == "":
		return "hunyuan: " + e.Code
	}
	return e.Code + ": " + e.Message
}

// hunyuanStreamError converts an ErrorMsg.
func hunyuanStreamError(m *hyErrorMsg) *Error {
	status := http.StatusInternalServerError
	if m.Code == 4001 { // the model timed out
		status = http.StatusGatewayTimeout
	}
	msg := m.Msg
	if msg == "" {
		msg = fmt.Sprintf("hunyuan: stream error %d", m.Code)
	}
	return &Error{Status: status, Type: "server_error", Message: msg}
}

// hunyuanErrorKind maps a Tencent Cloud error code (common codes and the
// hunyuan service's own) to an HTTP status and an OpenAI error type and
// code.
func hunyuanErrorKind(code string) (status int, typ, oaCode string) {
	has := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if code == p || strings.HasPrefix(code, p+".") {
				return true
			}
		}
		return false
	}
	switch {
	case has("AuthFailure.UnauthorizedOperation", "UnauthorizedOperation", "OperationDenied.UserUnAuthError",
		"FailedOperation.ServiceNotActivated", "FailedOperation.ServiceStop", "FailedOperation.UserUnAuthError",
		"FailedOperation.PartnerAccountUnSupport", "ResourceUnavailable.NotExist", "ResourceUnavailable.StopUsing",
		"IpInBlacklist", "IpNotInWhitelist"):
		return http.StatusForbidden, "permission_error", ""
	case has("AuthFailure"):
		return http.StatusUnauthorized, "authentication_error", "invalid_api_key"
	case has("FailedOperation.FreeResourcePackExhausted", "FailedOperation.ResourcePackExhausted",
		"FailedOperation.ServiceStopArrears", "ResourceInsufficient", "ResourceUnavailable.InArrears",
		"ResourceUnavailable.LowBalance"):
		return http.StatusTooManyRequests, "insufficient_quota", "insufficient_quota"
	case has("RequestLimitExceeded", "LimitExceeded", "FailedOperation.EngineServerLimitExceeded"):
		return http.StatusTooManyRequests, "requests", "rate_limit_exceeded"
	case has("InvalidParameterValue.Model"):
		return http.StatusNotFound, "invalid_request_error", "model_not_found"
	case has("ResourceNotFound"):
		return http.StatusNotFound, "not_found_error", ""
	case has("OperationDenied"): // TextIllegalDetected, ImageIllegalDetected: moderation
		return http.StatusBadRequest, "invalid_request_error", "content_filter"
	case has("InvalidParameter", "InvalidParameterValue", "MissingParameter", "UnknownParameter", "InvalidRequest",
		"InvalidAction", "NoSuchVersion", "NoSuchProduct", "ActionOffline", "UnsupportedOperation",
		"UnsupportedProtocol", "UnsupportedRegion", "RequestSizeLimitExceeded", "DryRunOperation"):
		return http.StatusBadRequest, "invalid_request_error", ""
	case has("FailedOperation.EngineRequestTimeout"):
		return http.StatusGatewayTimeout, "server_error", ""
	case has("ServiceUnavailable", "ResourceUnavailable", "FailedOperation.EngineServerError"):
		return http.StatusServiceUnavailable, "server_error", ""
	case has("InternalError"):
		return http.StatusInternalServerError, "server_error", ""
	}
	return http.StatusBadGateway, "server_error", ""
}

// hunyuanFinish maps a finish reason; calls says the answer called
// functions.
func hunyuanFinish(reason string, calls bool) string {
	switch reason {
	case "sensitive": // moderation stopped the answer
		return "content_filter"
	case "length":
		return "length"
	case "tool_calls":
		return "tool_calls"
	}
	if calls {
		return "tool_calls"
	}
	return "stop"
}

// Response implements Translator.
func (hunyuan) Response(ep Endpoint, body []byte, model string) ([]byte, error) {
	r, ok := hunyuanEnvelope(body)
	if !ok {
		return nil, errors.New("hunyuan: the answer has no Response object")
	}
	if e := r.fault(); e != nil {
		return nil, e
	}
	switch ep {
	case Chat:
		return hunyuanChatResponse(r, model)
	case Embeddings:
		return hunyuanEmbedResponse(body, model)
	}
	return nil, fmt.Errorf("hunyuan: endpoint %q is not supported", ep)
}

// hunyuanChatResponse converts a ChatCompletions answer to a
// chat.completion. ReasoningContent (Hunyuan-T1's thoughts) and the Note
// are dropped.
func hunyuanChatResponse(r *hyResponse, model string) ([]byte, error) {
	out := wire.ChatResponse{
		ID:      chatID(r.ID),
		Object:  "chat.completion",
		Created: r.Created,
		Model:   model,
		Choices: []wire.Choice{},
		Usage:   r.Usage.usage(),
	}
	if out.Created == 0 {
		out.Created = time.Now().Unix()
	}
	for pos, c := range r.Choices {
		var m hyMessage
		if c.Message != nil {
			m = *c.Message
		}
		msg := wire.Message{Role: "assistant", Content: wire.TextContent(m.Content)}
		for _, tc := range m.ToolCalls {
			msg.ToolCalls = append(msg.ToolCalls, hunyuanToolCall(tc))
		}
		if m.Content == "" && len(msg.ToolCalls) > 0 {
			msg.Content = json.RawMessage("null")
		}
		out.Choices = append(out.Choices, wire.Choice{
			Index:        hunyuanIndex(c.Index, pos),
			Message:      msg,
			FinishReason: hunyuanFinish(c.FinishReason, len(msg.ToolCalls) > 0),
		})
	}
	return json.Marshal(out)
}

// hunyuanToolCall converts a complete tool call.
func hunyuanToolCall(tc hyToolCall) wire.ToolCall {
	args := tc.Function.Arguments
	if strings.TrimSpace(args) == "" {
		args = "{}"
	}
	return wire.ToolCall{ID: hunyuanCallID(tc.ID), Type: "function", Function: wire.FunctionCall{Name: tc.Function.Name, Arguments: args}}
}

// hunyuanCallID returns a tool call's id, or a new one when Hunyuan gave
// none.
func hunyuanCallID(id string) string {
	if id != "" {
		return id
	}
	return geminiID("call_")
}

// hunyuanIndex is a choice's index: Hunyuan's, else its position.
func hunyuanIndex(index *int, pos int) int {
	if index != nil {
		return *index
	}
	return pos
}

// hunyuanEmbedResponse converts a GetEmbedding answer to an embeddings
// list, in the order of the inputs.
func hunyuanEmbedResponse(body []byte, model string) ([]byte, error) {
	var env struct {
		Response struct {
			Data []struct {
				Embedding []float64 `json:"Embedding"`
			} `json:"Data"`
			Usage *hyUsage `json:"Usage"`
		} `json:"Response"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("hunyuan: decode embeddings: %w", err)
	}
	r := env.Response
	out := wire.EmbeddingResponse{Object: "list", Model: model, Data: make([]wire.Embedding, len(r.Data))}
	for i, d := range r.Data {
		vec := d.Embedding
		if vec == nil {
			vec = []float64{}
		}
		out.Data[i] = wire.Embedding{Object: "embedding", Index: i, Embedding: vec}
	}
	if u := r.Usage.usage(); u != nil {
		out.Usage = *u
	}
	return json.Marshal(out)
}

// Error implements Translator: a Tencent Cloud error body keeps its code
// and message; any other body is excerpted.
func (hunyuan) Error(status int, body []byte) []byte {
	if r, ok := hunyuanEnvelope(body); ok && r.Error != nil {
		_, typ, code := hunyuanErrorKind(r.Error.Code)
		return wire.NewError(typ, cmp.Or(code, r.Error.Code), hunyuanErrorMessage(r.Error))
	}
	msg := fmt.Sprintf("hunyuan answered HTTP %d", status)
	if ex := geminiExcerpt(body, 200); ex != "" {
		msg += ": " + ex
	}
	typ := "server_error"
	if status >= 400 && status < 500 {
		typ = "invalid_request_error"
	}
	return wire.NewError(typ, "", msg)
}

// maxHunyuanRefusal caps a JSON refusal read in place of a stream.
const maxHunyuanRefusal = 1 << 20

// Stream implements Translator.
func (hunyuan) Stream(body io.Reader, model string) Stream {
	br := bufio.NewReader(body)
	s := &hunyuanStream{eventStream: newEventStream(br, "hunyuan", model), body: br, choices: map[int]*hyStreamChoice{}}
	releaseWhenCollected(s, s.stop)
	return s
}

// hunyuanStream turns Hunyuan's SSE events (data: {Choices[].Delta,
// FinishReason, Usage, Id, Created}) into chat.completion.chunk payloads:
// per choice, a first chunk with the assistant role, then text deltas and
// tool call deltas (merged by Id: the first delta of a call carries its
// id and name, later ones only arguments), then the finish reason; after
// the last event, a chunk with no choices carrying the usage. Hunyuan
// sends no [DONE]: the answer is complete when a finish reason was seen
// before the body ends.
type hunyuanStream struct {
	eventStream
	body    *bufio.Reader
	checked bool // the body was checked for a JSON refusal
	choices map[int]*hyStreamChoice
}

// hyStreamChoice is what a stream said of one choice so far.
type hyStreamChoice struct {
	calls map[string]int // tool call id → OpenAI tool call index
	last  int            // the index of the last call, -1 before any
}

// refusal reads a body that is a JSON object rather than an event stream:
// a call Tencent refused. It returns the error the body says, or nil when
// the body is an event stream.
func (s *hunyuanStream) refusal() error {
	for {
		b, err := s.body.Peek(1)
		if err != nil {
			return nil // an empty body: the stream will say it ended early
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			_, _ = s.body.Discard(1)
			continue
		case '{':
		default:
			return nil
		}
		data, err := io.ReadAll(io.LimitReader(s.body, maxHunyuanRefusal))
		if err != nil {
			return fmt.Errorf("hunyuan: read answer: %w", err)
		}
		if r, ok := hunyuanEnvelope(data); ok {
			if e := r.fault(); e != nil {
				return e
			}
		}
		return fmt.Errorf("hunyuan: the answer is not an event stream: %s", geminiExcerpt(data, 200))
	}
}

// errHunyuanClosed ends a stream closed before its end.
var errHunyuanClosed = errors.New("hunyuan: stream closed")

// Close implements io.Closer: it releases the parser at once and drops
// the chunks not yet returned (not safe during a Next).
func (s *hunyuanStream) Close() error {
	s.stop()
	s.pending, s.err = nil, errHunyuanClosed
	return nil
}

// Next implements Stream. A refusal sent as a JSON body instead of
// events is read first.
func (s *hunyuanStream) Next() ([]byte, error) {
	if !s.checked {
		s.checked = true
		if err := s.refusal(); err != nil {
			s.fail(err)
		}
	}
	return s.pump(s.event)
}

// event translates one event.
func (s *hunyuanStream) event(e sse.Event) error {
	data := e.Data
	var ev struct {
		hyResponse
		Response *hyResponse `json:"Response"` // a refusal, wrapped as a complete answer
	}
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		return fmt.Errorf("hunyuan: decode stream event: %w", err)
	}
	r := &ev.hyResponse
	if ev.Response != nil {
		r = ev.Response
	}
	if e := r.fault(); e != nil {
		return e
	}
	if s.id == "" && r.ID != "" {
		s.id = chatID(r.ID)
	}
	if u := r.Usage.usage(); u != nil {
		s.usage = u
	}
	for pos, c := range r.Choices {
		s.choice(hunyuanIndex(c.Index, pos), c)
	}
	return nil
}

// choice translates one choice's share of an event.
func (s *hunyuanStream) choice(i int, c hyChoice) {
	st := s.begin(i)
	var delta wire.Delta
	if d := c.Delta; d != nil {
		if d.Content != "" {
			delta.Content = &d.Content
		}
		for _, tc := range d.ToolCalls {
			if call, ok := st.toolCall(tc); ok {
				delta.ToolCalls = append(delta.ToolCalls, call)
			}
		}
	}
	if delta.Content != nil || delta.ToolCalls != nil {
		s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Index: i, Delta: delta}}, nil))
	}
	if c.FinishReason != "" {
		s.finished = true
		reason := hunyuanFinish(c.FinishReason, len(st.calls) > 0)
		s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Index: i, FinishReason: &reason}}, nil))
	}
}

// begin sends a choice's role chunk, once, and returns its state.
func (s *hunyuanStream) begin(i int) *hyStreamChoice {
	if st, ok := s.choices[i]; ok {
		return st
	}
	st := &hyStreamChoice{calls: map[string]int{}, last: -1}
	s.choices[i] = st
	s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Index: i, Delta: wire.Delta{Role: "assistant", Content: wire.Ptr("")}}}, nil))
	return st
}

// toolCall translates a tool call delta: a new call (an Id not seen
// before) whole, with its index, id and name; a later delta of a call as
// an arguments fragment, or nothing when it adds none. A delta without Id
// continues the last call.
func (st *hyStreamChoice) toolCall(tc hyToolCall) (wire.ToolCall, bool) {
	index, known := st.calls[tc.ID]
	if tc.ID == "" && st.last >= 0 {
		index, known = st.last, true
	}
	if known {
		st.last = index
		if tc.Function.Arguments == "" {
			return wire.ToolCall{}, false
		}
		return wire.ToolCall{Index: wire.Ptr(index), Function: wire.FunctionCall{Arguments: tc.Function.Arguments}}, true
	}
	index = len(st.calls)
	id := hunyuanCallID(tc.ID)
	st.calls[cmp.Or(tc.ID, id)] = index
	st.last = index
	return wire.ToolCall{
		Index:    wire.Ptr(index),
		ID:       id,
		Type:     "function",
		Function: wire.FunctionCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments},
	}, true
}
