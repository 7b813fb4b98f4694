package mock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Alibaba Cloud DashScope's native API (Model Studio, Bailian), which
// serveCloud routes here for any path containing /api/v1/services/:
//
//   - POST …/api/v1/services/aigc/text-generation/generation takes
//     input.messages or input.prompt. With parameters.result_format
//     "message" the answer is output.choices[{message, finish_reason}];
//     with "text", DashScope's default, it is output.text and
//     output.finish_reason. A call with "X-DashScope-SSE: enable" or
//     "Accept: text/event-stream" is answered as server-sent events
//     ("id:N", "event:result", ":HTTP_STATUS/200", "data:{…}"), each with
//     the usage so far and finish_reason "null" until the last: with
//     parameters.incremental_output each event carries only the new text
//     (or tool call arguments), without it all the text so far.
//   - POST …/api/v1/services/embeddings/text-embedding/text-embedding takes
//     input.texts (at most 10 for the v3 and v4 models, 25 for others) and
//     answers output.embeddings[{text_index, embedding}] with
//     usage.total_tokens; parameters.dimension sets the vectors' length.
//
// When Config.Keys is set, calls carry one of the keys as
// "Authorization: Bearer <key>"; a missing or wrong key is 401
// InvalidApiKey. Errors are {"code","message","request_id"} with
// DashScope's statuses, except that an invalid streamed call is answered
// HTTP 200 with an "event:error" event (":HTTP_STATUS/400"), as DashScope
// does. Injected faults are 500 InternalError and 429 Throttling.RateQuota.
// Every answer carries its request id in X-Request-ID too.

// DashScope service paths.
const (
	dashScopeGenerationPath = "/api/v1/services/aigc/text-generation/generation"
	dashScopeEmbeddingPath  = "/api/v1/services/embeddings/text-embedding/text-embedding"
)

// Embedding batch limits: the v3 and v4 models take 10 texts, older ones
// 25.
const (
	dashScopeMaxTexts   = 25
	dashScopeMaxTextsV3 = 10
)

// dashScopeError is a DashScope error body.
type dashScopeError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// dsErr is a refused request: DashScope's code and message.
type dsErr struct{ code, message string }

func (e *dsErr) Error() string { return e.message }

// dsInvalid is an InvalidParameter refusal.
func dsInvalid(format string, args ...any) error {
	return &dsErr{code: "InvalidParameter", message: fmt.Sprintf(format, args...)}
}

// dsErrCode returns a refusal's code: InvalidParameter unless it is a
// *dsErr.
func dsErrCode(err error) string {
	var de *dsErr
	if errors.As(err, &de) {
		return de.code
	}
	return "InvalidParameter"
}

// writeDashScopeError sends a DashScope error.
func writeDashScopeError(w http.ResponseWriter, status int, code, message, requestID string) {
	writeJSON(w, status, dashScopeError{Code: code, Message: message, RequestID: requestID})
}

// dashScopeRequestID draws a request id shaped like DashScope's, a UUID.
func dashScopeRequestID(c *call) string {
	parts := make([]string, 0, 5)
	for _, n := range []int{8, 4, 4, 4, 12} {
		parts = append(parts, randomString(c.rng, hexDigits, n))
	}
	return strings.Join(parts, "-")
}

// serveDashScope answers a DashScope call: latency, auth, path and
// method, injected faults, then the service.
func (s *Server) serveDashScope(w http.ResponseWriter, r *http.Request, c *call) {
	id := dashScopeRequestID(c)
	w.Header().Set("X-Request-ID", id)
	if !sleep(r.Context(), c.delay) {
		return
	}
	if key := bearer(r); !s.keyAccepted(key) {
		msg := "Invalid API-key provided."
		if key == "" {
			msg = "No API-key provided."
		}
		writeDashScopeError(w, http.StatusUnauthorized, "InvalidApiKey", msg, id)
		return
	}
	p := strings.TrimRight(r.URL.Path, "/")
	generation, embedding := strings.HasSuffix(p, dashScopeGenerationPath), strings.HasSuffix(p, dashScopeEmbeddingPath)
	if (!generation && !embedding) || r.Method != http.MethodPost {
		writeDashScopeError(w, http.StatusBadRequest, "InvalidURL",
			"Invalid URL provided in your request: the mock serves POST "+dashScopeGenerationPath+" and "+dashScopeEmbeddingPath+".", id)
		return
	}
	if s.injectDashScopeFault(w, c, id) {
		return
	}
	if generation {
		s.serveDashScopeGeneration(w, r, c, id)
		return
	}
	s.serveDashScopeEmbedding(w, r, id)
}

// injectDashScopeFault answers 500 InternalError or 429
// Throttling.RateQuota if the dice say so.
func (s *Server) injectDashScopeFault(w http.ResponseWriter, c *call, id string) bool {
	switch s.drawFault(c) {
	case failureFault:
		writeDashScopeError(w, http.StatusInternalServerError, "InternalError",
			"An internal error has occured, please try again later or contact service support.", id)
		return true
	case rateLimitFault:
		writeDashScopeError(w, http.StatusTooManyRequests, "Throttling.RateQuota",
			"Requests rate limit exceeded, please try again later.", id)
		return true
	}
	return false
}

// dsGenRequest holds the parts of a text-generation request the mock
// reads.
type dsGenRequest struct {
	Model string `json:"model"`
	Input struct {
		Messages []dsMessage `json:"messages"`
		Prompt   string      `json:"prompt"`
	} `json:"input"`
	Parameters struct {
		ResultFormat      string          `json:"result_format"`
		IncrementalOutput bool            `json:"incremental_output"`
		MaxTokens         *int            `json:"max_tokens"`
		Tools             []chatTool      `json:"tools"`
		ToolChoice        json.RawMessage `json:"tool_choice"`
		ResponseFormat    *struct {
			Type string `json:"type"`
		} `json:"response_format"`
	} `json:"parameters"`
}

// dsMessage is an input message; Content must be a string (or null on an
// assistant message that calls tools).
type dsMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  []dsToolCall    `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

// dsToolCall is a function call as DashScope writes it: id and type are
// always there, id empty on a streamed call's later fragments.
type dsToolCall struct {
	Index    int          `json:"index"`
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function toolFunction `json:"function"`
}

// dsPlan is a complete text-generation answer, decided before anything is
// sent.
type dsPlan struct {
	requestID   string
	format      string // message or text
	incremental bool   // streamed events carry only what is new
	answer      answer
	usage       usage
}

// serveDashScopeGeneration answers the text-generation service, streamed
// when the call asks for server-sent events.
func (s *Server) serveDashScopeGeneration(w http.ResponseWriter, r *http.Request, c *call, id string) {
	stream := r.Header.Get("X-DashScope-SSE") == "enable" || strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	var req dsGenRequest
	status, err := readJSONBody(w, r, &req)
	var p *dsPlan
	if err == nil {
		status = http.StatusBadRequest
		p, err = s.planDashScope(&req, c, id)
	}
	if err != nil {
		code := dsErrCode(err)
		if status == http.StatusRequestEntityTooLarge {
			code = "BadRequest.TooLarge"
		}
		if stream {
			s.dashScopeStreamError(w, r, status, dashScopeError{Code: code, Message: err.Error(), RequestID: id})
			return
		}
		writeDashScopeError(w, status, code, err.Error(), id)
		return
	}
	if stream {
		s.streamDashScope(w, r, p)
		return
	}
	writeJSON(w, http.StatusOK, p.response())
	s.countUsage(p.usage)
}

// planDashScope validates req and decides the answer, with the planning
// of OpenAI's format: the same model and messages get the same reply.
func (s *Server) planDashScope(req *dsGenRequest, c *call, id string) (*dsPlan, error) {
	if req.Model == "" {
		return nil, &dsErr{code: "BadRequest.EmptyModel", message: `Required parameter "model" missing from request.`}
	}
	msgs, err := dashScopeMessages(req)
	if err != nil {
		return nil, err
	}
	prm := req.Parameters
	format := prm.ResultFormat
	switch format {
	case "":
		format = "text"
	case "text", "message":
	default:
		return nil, dsInvalid("result_format must be text or message, got %q.", format)
	}
	if len(prm.Tools) > 0 && format != "message" {
		return nil, dsInvalid(`Tools need parameters.result_format "message".`)
	}
	if rf := prm.ResponseFormat; rf != nil && rf.Type == "json_object" && !mentionsJSON(msgs) {
		return nil, dsInvalid("'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.")
	}
	if prm.MaxTokens != nil && *prm.MaxTokens < 1 {
		return nil, dsInvalid("Range of max_tokens should be [1, 8192], got %d.", *prm.MaxTokens)
	}
	cp, err := s.planChat(&chatRequest{Model: req.Model, Messages: msgs, MaxTokens: prm.MaxTokens,
		Tools: prm.Tools, ToolChoice: prm.ToolChoice}, req.Model, c)
	if err != nil {
		return nil, dsInvalid("%s", err.Error())
	}
	return &dsPlan{requestID: id, format: format, incremental: prm.IncrementalOutput, answer: cp.answers[0], usage: cp.usage}, nil
}

// dashScopeMessages checks the input, messages or a prompt, and returns it
// as chat messages: a prompt is one user message.
func dashScopeMessages(req *dsGenRequest) ([]chatMessage, error) {
	in := req.Input
	if len(in.Messages) == 0 {
		if in.Prompt == "" {
			return nil, dsInvalid(`Either "prompt" or "messages" must exist and cannot both be none`)
		}
		content, err := json.Marshal(in.Prompt)
		if err != nil {
			return nil, fmt.Errorf("encode prompt: %w", err)
		}
		return []chatMessage{{Role: "user", Content: content}}, nil
	}
	msgs := make([]chatMessage, len(in.Messages))
	for i, m := range in.Messages {
		switch m.Role {
		case "system", "user", "assistant", "tool":
		default:
			return nil, dsInvalid("Role must be system, user, assistant or tool, got %q in messages[%d].", m.Role, i)
		}
		raw := bytes.TrimSpace(m.Content)
		empty := len(raw) == 0 || string(raw) == "null" || string(raw) == `""`
		if !empty && raw[0] != '"' {
			return nil, dsInvalid("messages[%d].content must be a string.", i)
		}
		if empty && m.Role != "assistant" {
			return nil, dsInvalid("Role must be user or assistant and Content length must be greater than 0 (messages[%d]).", i)
		}
		if empty && len(m.ToolCalls) == 0 {
			return nil, dsInvalid("messages[%d]: an assistant message needs content or tool_calls.", i)
		}
		if m.Role == "tool" && m.ToolCallID == "" {
			return nil, dsInvalid("messages[%d]: a tool message needs its tool_call_id.", i)
		}
		msgs[i] = chatMessage{Role: m.Role, Content: raw}
	}
	return msgs, nil
}

// mentionsJSON reports whether some message says "json", in any case.
func mentionsJSON(msgs []chatMessage) bool {
	for _, m := range msgs {
		if bytes.Contains(bytes.ToLower(m.Content), []byte("json")) {
			return true
		}
	}
	return false
}

// Response shapes.

type dsGenResponse struct {
	Output    dsGenOutput `json:"output"`
	Usage     dsUsage     `json:"usage"`
	RequestID string      `json:"request_id"`
}

// dsGenOutput is a "message" answer (Choices) or a "text" one (Text and
// FinishReason).
type dsGenOutput struct {
	Choices      []dsGenChoice `json:"choices,omitempty"`
	Text         *string       `json:"text,omitempty"`
	FinishReason string        `json:"finish_reason,omitempty"`
}

type dsGenChoice struct {
	Message      dsGenMessage `json:"message"`
	FinishReason string       `json:"finish_reason"`
}

type dsGenMessage struct {
	Role      string       `json:"role"`
	Content   string       `json:"content"`
	ToolCalls []dsToolCall `json:"tool_calls,omitempty"`
}

type dsUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// render builds an answer of the plan's format: text (or tool call
// arguments), the finish reason ("null" while unfinished) and the output
// tokens. A call's id and name come with its first piece (first), or
// always when the answer is cumulative.
func (p *dsPlan) render(text, finish string, output int, first bool) dsGenResponse {
	resp := dsGenResponse{
		Usage:     dsUsage{InputTokens: p.usage.PromptTokens, OutputTokens: output, TotalTokens: p.usage.PromptTokens + output},
		RequestID: p.requestID,
	}
	if p.format == "text" {
		resp.Output.Text, resp.Output.FinishReason = &text, finish
		return resp
	}
	msg := dsGenMessage{Role: "assistant"}
	if call := p.answer.call; call != nil {
		tc := dsToolCall{Type: "function", Function: toolFunction{Arguments: text}}
		if first {
			tc.ID, tc.Function.Name = call.id, call.name
		}
		if text != "" || first {
			msg.ToolCalls = []dsToolCall{tc}
		}
	} else {
		msg.Content = text
	}
	resp.Output.Choices = []dsGenChoice{{Message: msg, FinishReason: finish}}
	return resp
}

// whole is the complete answer's text or call arguments.
func (p *dsPlan) whole() string {
	if p.answer.call != nil {
		return p.answer.call.arguments
	}
	return p.answer.text()
}

// response renders the complete answer.
func (p *dsPlan) response() dsGenResponse {
	return p.render(p.whole(), p.answer.finish, p.usage.CompletionTokens, true)
}

// pieces splits the answer for streaming.
func (p *dsPlan) pieces(n int) []string {
	if p.answer.call != nil {
		return splitText(p.answer.call.arguments, n)
	}
	return splitWords(p.answer.words, n)
}

// streamDashScope sends the plan as server-sent events.
func (s *Server) streamDashScope(w http.ResponseWriter, r *http.Request, p *dsPlan) {
	s.streams.Add(1)
	sw, err := openEventStream(w, r, s.conf().ChunkInterval)
	if err == nil {
		err = s.sendDashScopeStream(sw, p)
	}
	if err != nil {
		s.canceled.Add(1)
		return
	}
	s.countUsage(p.usage)
}

// sendDashScopeStream writes one event per piece of the answer, then one
// with the finish reason and nothing new; each carries the output tokens
// so far. With FailAfterChunks the connection is cut after that many
// pieces.
func (s *Server) sendDashScopeStream(sw *sseWriter, p *dsPlan) error {
	pieces := p.pieces(s.conf().StreamChunks)
	total := p.usage.CompletionTokens
	sent := ""
	for i, piece := range pieces {
		sent += piece
		text := piece
		if !p.incremental {
			text = sent
		}
		output := max(total*(i+1)/len(pieces), 1)
		if err := dashScopeEvent(sw, i+1, p.render(text, "null", output, i == 0 || !p.incremental)); err != nil {
			return err
		}
		if n := s.conf().FailAfterChunks; n > 0 && i+1 == n {
			s.aborted.Add(1)
			panic(http.ErrAbortHandler)
		}
	}
	last := ""
	if !p.incremental {
		last = sent
	}
	sw.atOnce = true
	return dashScopeEvent(sw, len(pieces)+1, p.render(last, p.answer.finish, total, len(pieces) == 0 || !p.incremental))
}

// dashScopeEvent writes one event:result.
func dashScopeEvent(sw *sseWriter, id int, resp dsGenResponse) error {
	return sw.jsonEvent(fmt.Sprintf("id:%d\nevent:result\n:HTTP_STATUS/200\ndata:", id), resp, "\n\n")
}

// dashScopeStreamError answers a refused streamed call as DashScope does:
// HTTP 200 and one event:error carrying the error's status.
func (s *Server) dashScopeStreamError(w http.ResponseWriter, r *http.Request, status int, e dashScopeError) {
	sw, err := openEventStream(w, r, 0)
	if err == nil {
		err = sw.jsonEvent(fmt.Sprintf("id:1\nevent:error\n:HTTP_STATUS/%d\ndata:", status), e, "\n\n")
	}
	if err != nil {
		s.canceled.Add(1)
	}
}

// dsEmbedRequest holds a text-embedding request.
type dsEmbedRequest struct {
	Model string `json:"model"`
	Input struct {
		Texts json.RawMessage `json:"texts"` // an array of strings, or one string
	} `json:"input"`
	Parameters struct {
		TextType  string `json:"text_type"`
		Dimension *int   `json:"dimension"`
	} `json:"parameters"`
}

type dsEmbedding struct {
	TextIndex int       `json:"text_index"`
	Embedding []float32 `json:"embedding"`
}

type dsEmbedResponse struct {
	Output struct {
		Embeddings []dsEmbedding `json:"embeddings"`
	} `json:"output"`
	Usage struct {
		TotalTokens int `json:"total_tokens"`
	} `json:"usage"`
	RequestID string `json:"request_id"`
}

// serveDashScopeEmbedding answers the text-embedding service with the
// vectors OpenAI's format gives the same texts.
func (s *Server) serveDashScopeEmbedding(w http.ResponseWriter, r *http.Request, id string) {
	var req dsEmbedRequest
	if status, err := readJSONBody(w, r, &req); err != nil {
		writeDashScopeError(w, status, "InvalidParameter", err.Error(), id)
		return
	}
	resp, err := s.dashScopeEmbed(&req)
	if err != nil {
		writeDashScopeError(w, http.StatusBadRequest, dsErrCode(err), err.Error(), id)
		return
	}
	resp.RequestID = id
	writeJSON(w, http.StatusOK, resp)
	s.promptTokens.Add(int64(resp.Usage.TotalTokens))
}

// dashScopeEmbed validates req and computes its answer.
func (s *Server) dashScopeEmbed(req *dsEmbedRequest) (*dsEmbedResponse, error) {
	if req.Model == "" {
		return nil, &dsErr{code: "BadRequest.EmptyModel", message: `Required parameter "model" missing from request.`}
	}
	texts, err := dashScopeTexts(req.Input.Texts)
	if err != nil {
		return nil, err
	}
	limit := dashScopeMaxTexts
	if strings.Contains(req.Model, "-v3") || strings.Contains(req.Model, "-v4") {
		limit = dashScopeMaxTextsV3
	}
	if len(texts) > limit {
		return nil, dsInvalid("batch size is invalid, it should not be larger than %d.", limit)
	}
	switch req.Parameters.TextType {
	case "", "query", "document":
	default:
		return nil, dsInvalid("text_type must be query or document, got %q.", req.Parameters.TextType)
	}
	dims := s.conf().EmbeddingDims
	if d := req.Parameters.Dimension; d != nil {
		if *d < 1 || *d > maxEmbeddingDims {
			return nil, dsInvalid("dimension must be between 1 and %d, got %d.", maxEmbeddingDims, *d)
		}
		dims = *d
	}
	resp := &dsEmbedResponse{}
	for i, text := range texts {
		in, err := textInput(text, fmt.Sprintf("input.texts[%d]", i))
		if err != nil {
			return nil, dsInvalid("%s", err.Error())
		}
		resp.Output.Embeddings = append(resp.Output.Embeddings, dsEmbedding{TextIndex: i, Embedding: embeddingVector(in.key, dims)})
		resp.Usage.TotalTokens += in.tokens
	}
	return resp, nil
}

// dashScopeTexts reads input.texts: an array of strings, or one string.
func dashScopeTexts(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, &dsErr{code: "BadRequest.EmptyInput", message: "Required input parameter missing from request."}
	}
	var texts []string
	if raw[0] == '"' {
		var t string
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, dsInvalid("input.texts: %v", err)
		}
		texts = []string{t}
	} else if err := json.Unmarshal(raw, &texts); err != nil {
		return nil, dsInvalid("input.texts must be a string or an array of strings.")
	}
	if len(texts) == 0 {
		return nil, &dsErr{code: "BadRequest.EmptyInput", message: "Required input parameter missing from request."}
	}
	return texts, nil
}
