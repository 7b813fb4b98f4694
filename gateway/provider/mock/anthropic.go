package mock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"
)

// Anthropic's Messages API: POST …/v1/messages.
//
// Calls need "anthropic-version" (any value) and, when Config.Keys is set,
// one of the keys in "x-api-key". The answer is a Message with one content
// block, text or tool_use; with "stream": true it is the event sequence of
// the real API (message_start, content_block_start, ping,
// content_block_delta…, content_block_stop, message_delta, message_stop).
// Errors are {"type":"error","error":{"type","message"},"request_id"}.

// anthropicRequest holds the parts of a Messages request the mock reads.
type anthropicRequest struct {
	Model      string               `json:"model"`
	MaxTokens  *int                 `json:"max_tokens"`
	Messages   []anthropicMessage   `json:"messages"`
	System     json.RawMessage      `json:"system"`
	Stream     bool                 `json:"stream"`
	Tools      []anthropicTool      `json:"tools"`
	ToolChoice *anthropicToolChoice `json:"tool_choice"`
}

// anthropicMessage is one input message; Content is a string or an array
// of content blocks.
type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// anthropicBlock is one input content block. Content is a tool_result's
// content: a string or an array of blocks.
type anthropicBlock struct {
	Type    string          `json:"type"`
	Text    string          `json:"text"`
	Input   json.RawMessage `json:"input"`
	Content json.RawMessage `json:"content"`
}

// anthropicTool is one entry of "tools". Custom tools have no type (or
// "custom") and an input_schema; server tools have a versioned type.
type anthropicTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	InputSchema json.RawMessage `json:"input_schema"`
}

func (t anthropicTool) custom() bool { return t.Type == "" || t.Type == "custom" }

type anthropicToolChoice struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

// anthropicPlan is a complete answer, decided before anything is sent.
type anthropicPlan struct {
	id, model     string
	words         []string     // a text answer
	call          *plannedCall // or a tool_use answer
	stop          string       // end_turn, max_tokens or tool_use
	input, output int          // token usage
}

// Response shapes.

type anthropicMessageOut struct {
	ID           string              `json:"id"`
	Type         string              `json:"type"`
	Role         string              `json:"role"`
	Model        string              `json:"model"`
	Content      []anthropicBlockOut `json:"content"`
	StopReason   *string             `json:"stop_reason"`
	StopSequence *string             `json:"stop_sequence"`
	Usage        anthropicUsage      `json:"usage"`
}

// anthropicBlockOut is a text block (Text set, possibly empty) or a
// tool_use block.
type anthropicBlockOut struct {
	Type  string          `json:"type"`
	Text  *string         `json:"text,omitempty"`
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
}

type anthropicUsage struct {
	InputTokens              int    `json:"input_tokens"`
	CacheCreationInputTokens int    `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int    `json:"cache_read_input_tokens"`
	OutputTokens             int    `json:"output_tokens"`
	ServiceTier              string `json:"service_tier,omitempty"`
}

type anthropicErrorBody struct {
	Type      string               `json:"type"`
	Error     anthropicErrorDetail `json:"error"`
	RequestID string               `json:"request_id,omitempty"`
}

type anthropicErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// writeAnthropicError sends an Anthropic error, quoting the request-id
// header already set on w.
func writeAnthropicError(w http.ResponseWriter, status int, typ, message string) {
	writeJSON(w, status, anthropicErrorBody{
		Type:      "error",
		Error:     anthropicErrorDetail{Type: typ, Message: message},
		RequestID: w.Header().Get("request-id"),
	})
}

// serveAnthropic answers POST …/messages: latency, auth, version header,
// method, injected faults, then the answer.
func (s *Server) serveAnthropic(w http.ResponseWriter, r *http.Request, c *call) {
	w.Header().Set("request-id", "req_01"+randomString(c.rng, alphanumeric, 22))
	if !sleep(r.Context(), c.delay) {
		return
	}
	if !s.anthropicAuthorized(w, r) {
		return
	}
	if r.Header.Get("anthropic-version") == "" {
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeAnthropicError(w, http.StatusMethodNotAllowed, "invalid_request_error",
			"Method "+r.Method+" not allowed for "+r.URL.Path)
		return
	}
	if s.injectAnthropicFault(w, c) {
		return
	}
	var req anthropicRequest
	if status, err := readJSONBody(w, r, &req); err != nil {
		typ := "invalid_request_error"
		if status == http.StatusRequestEntityTooLarge {
			typ = "request_too_large"
		}
		writeAnthropicError(w, status, typ, err.Error())
		return
	}
	plan, err := s.planAnthropic(&req, c)
	if err != nil {
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	if req.Stream {
		s.streamAnthropic(w, r, plan)
		return
	}
	writeJSON(w, http.StatusOK, plan.message())
	s.countUsage(newUsage(plan.input, plan.output))
}

// anthropicAuthorized checks x-api-key, answering 401 itself when it is
// missing or wrong.
func (s *Server) anthropicAuthorized(w http.ResponseWriter, r *http.Request) bool {
	key := r.Header.Get("x-api-key")
	if s.keyAccepted(key) {
		return true
	}
	msg := "invalid x-api-key"
	if key == "" {
		msg = "x-api-key header is required"
	}
	writeAnthropicError(w, http.StatusUnauthorized, "authentication_error", msg)
	return false
}

// injectAnthropicFault answers 500 api_error (529 overloaded_error when
// Config.Overloaded) or 429 rate_limit_error if the dice say so.
func (s *Server) injectAnthropicFault(w http.ResponseWriter, c *call) bool {
	switch s.drawFault(c) {
	case failureFault:
		if s.conf().Overloaded {
			writeAnthropicError(w, 529, "overloaded_error", "Overloaded")
		} else {
			writeAnthropicError(w, http.StatusInternalServerError, "api_error", "Internal server error")
		}
		return true
	case rateLimitFault:
		h := w.Header()
		h.Set("retry-after", s.retryAfterSeconds())
		h.Set("anthropic-ratelimit-requests-limit", "60")
		h.Set("anthropic-ratelimit-requests-remaining", "0")
		h.Set("anthropic-ratelimit-requests-reset", time.Now().Add(s.conf().RetryAfter).UTC().Format(time.RFC3339))
		writeAnthropicError(w, http.StatusTooManyRequests, "rate_limit_error",
			"This request would exceed the rate limit for your organization of 60 requests per minute. "+
				"Please retry after "+s.retryAfterSeconds()+" seconds.")
		return true
	}
	return false
}

// planAnthropic validates req and decides the answer.
func (s *Server) planAnthropic(req *anthropicRequest, c *call) (*anthropicPlan, error) {
	switch {
	case req.Model == "":
		return nil, invalid("model", "model: Field required")
	case req.MaxTokens == nil:
		return nil, invalid("max_tokens", "max_tokens: Field required")
	case *req.MaxTokens < 1:
		return nil, invalid("max_tokens", "max_tokens: Input should be greater than or equal to 1")
	case req.Messages == nil:
		return nil, invalid("messages", "messages: Field required")
	case len(req.Messages) == 0:
		return nil, invalid("messages", "messages: at least one message is required")
	}
	chars, images, err := anthropicSystemSize(req.System)
	if err != nil {
		return nil, err
	}
	for i, m := range req.Messages {
		switch m.Role {
		case "user", "assistant":
		case "system":
			return nil, invalid("messages", `messages: Unexpected role "system". The Messages API accepts a top-level `+
				"`system` parameter, not \"system\" as an input message role.")
		default:
			return nil, invalid("messages", "messages.%d.role: Input should be 'user' or 'assistant'", i)
		}
		n, im, _, err := anthropicContentSize(m.Content)
		if err != nil {
			return nil, invalid("messages", "messages.%d.content: %v", i, err)
		}
		chars += n
		images += im
	}
	tool, err := chooseAnthropicTool(req)
	if err != nil {
		return nil, err
	}

	p := &anthropicPlan{
		id:    "msg_01" + randomString(c.rng, alphanumeric, 22),
		model: req.Model,
		input: max(chars/4+85*images, 1),
	}
	if tool != nil {
		args := sampleArguments(tool.InputSchema)
		p.call = &plannedCall{id: "toolu_01" + randomString(c.rng, alphanumeric, 22), name: tool.Name, arguments: args}
		p.stop = "tool_use"
		p.output = textTokens(utf8.RuneCountInString(tool.Name + args))
		return p, nil
	}
	words, stop := s.conf().ReplyTokens, "end_turn"
	if *req.MaxTokens < words {
		words, stop = *req.MaxTokens, "max_tokens"
	}
	msgs := append([]chatMessage{{Role: "system", Content: req.System}}, anthropicChatMessages(req.Messages)...)
	p.words = replyWords(promptSeed(req.Model, msgs), 0, words)
	p.stop = stop
	p.output = len(p.words)
	return p, nil
}

// anthropicChatMessages views messages as chat messages, for promptSeed.
func anthropicChatMessages(msgs []anthropicMessage) []chatMessage {
	out := make([]chatMessage, len(msgs))
	for i, m := range msgs {
		out[i] = chatMessage{Role: m.Role, Content: m.Content}
	}
	return out
}

// anthropicSystemSize counts the characters of "system": a string or an
// array of text blocks.
func anthropicSystemSize(raw json.RawMessage) (chars, images int, err error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return 0, 0, nil
	}
	chars, images, _, err = anthropicContentSize(raw)
	if err != nil {
		return 0, 0, invalid("system", "system: Input should be a valid string or a list of text blocks: %v", err)
	}
	return chars, images, nil
}

// anthropicContentSize counts the text characters and images of message
// content, and reports whether it holds a tool_result block.
func anthropicContentSize(raw json.RawMessage) (chars, images int, toolResult bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, 0, false, errors.New("Field required")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, 0, false, fmt.Errorf("decode string content: %w", err)
		}
		return utf8.RuneCountInString(s), 0, false, nil
	case '[':
		var blocks []anthropicBlock
		if err := json.Unmarshal(raw, &blocks); err != nil {
			return 0, 0, false, fmt.Errorf("decode content blocks: %w", err)
		}
		for i, b := range blocks {
			switch b.Type {
			case "text":
				chars += utf8.RuneCountInString(b.Text)
			case "image", "document":
				images++
			case "tool_use":
				chars += len(b.Input)
			case "tool_result":
				toolResult = true
				if len(bytes.TrimSpace(b.Content)) > 0 {
					c, im, _, err := anthropicContentSize(b.Content)
					if err != nil {
						return 0, 0, false, fmt.Errorf("block %d: tool_result content: %w", i, err)
					}
					chars += c
					images += im
				}
			case "":
				return 0, 0, false, fmt.Errorf("block %d: type: Field required", i)
			}
		}
		return chars, images, toolResult, nil
	}
	return 0, 0, false, fmt.Errorf("Input should be a valid string or list of content blocks, got %.20s", raw)
}

// chooseAnthropicTool returns the custom tool to call, or nil for a text
// answer: the one tool_choice names, else the first custom tool, unless
// tool_choice is none or the last message is a user turn carrying a
// tool_result.
func chooseAnthropicTool(req *anthropicRequest) (*anthropicTool, error) {
	mode, name := "auto", ""
	if tc := req.ToolChoice; tc != nil {
		mode, name = tc.Type, tc.Name
	}
	switch mode {
	case "auto", "any", "none":
	case "tool":
		if name == "" {
			return nil, invalid("tool_choice", "tool_choice.tool.name: Field required")
		}
	default:
		return nil, invalid("tool_choice", "tool_choice: Input tag '%s' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'", mode)
	}
	for i, t := range req.Tools {
		if t.custom() && t.Name == "" {
			return nil, invalid("tools", "tools.%d.custom.name: Field required", i)
		}
	}
	if len(req.Tools) == 0 {
		if mode == "any" || mode == "tool" {
			return nil, invalid("tool_choice", "tool_choice may only be specified while providing tools.")
		}
		return nil, nil
	}
	if mode == "none" {
		return nil, nil
	}
	if last := req.Messages[len(req.Messages)-1]; last.Role == "user" {
		if _, _, toolResult, _ := anthropicContentSize(last.Content); toolResult {
			return nil, nil
		}
	}
	for i, t := range req.Tools {
		if t.custom() && (name == "" || t.Name == name) {
			return &req.Tools[i], nil
		}
	}
	if name != "" {
		return nil, invalid("tool_choice", "tool_choice.name: tool '%s' is not among the tools", name)
	}
	return nil, nil // only server tools
}

// message renders the plan as a Message.
func (p *anthropicPlan) message() anthropicMessageOut {
	m := p.head()
	if p.call != nil {
		m.Content = []anthropicBlockOut{{Type: "tool_use", ID: p.call.id, Name: p.call.name, Input: json.RawMessage(p.call.arguments)}}
	} else {
		m.Content = []anthropicBlockOut{textBlock(joinWords(p.words))}
	}
	m.StopReason = &p.stop
	m.Usage.OutputTokens = p.output
	return m
}

// head is the Message as message_start carries it: no content, no stop
// reason yet, one output token.
func (p *anthropicPlan) head() anthropicMessageOut {
	return anthropicMessageOut{
		ID:      p.id,
		Type:    "message",
		Role:    "assistant",
		Model:   p.model,
		Content: []anthropicBlockOut{},
		Usage:   anthropicUsage{InputTokens: p.input, OutputTokens: 1, ServiceTier: "standard"},
	}
}

func textBlock(text string) anthropicBlockOut { return anthropicBlockOut{Type: "text", Text: &text} }

// joinWords is the reply text of words.
func joinWords(words []string) string { return answer{words: words}.text() }

// Stream event shapes.

type anthropicEvent struct {
	Type         string               `json:"type"`
	Message      *anthropicMessageOut `json:"message,omitempty"`
	Index        *int                 `json:"index,omitempty"`
	ContentBlock *anthropicBlockOut   `json:"content_block,omitempty"`
	Delta        any                  `json:"delta,omitempty"`
	Usage        *anthropicUsage      `json:"usage,omitempty"`
}

type anthropicTextDelta struct {
	Type string `json:"type"` // text_delta
	Text string `json:"text"`
}

type anthropicJSONDelta struct {
	Type        string `json:"type"` // input_json_delta
	PartialJSON string `json:"partial_json"`
}

type anthropicMessageDelta struct {
	StopReason   string  `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

// streamAnthropic sends the plan as the Messages API's server-sent events.
func (s *Server) streamAnthropic(w http.ResponseWriter, r *http.Request, p *anthropicPlan) {
	s.streams.Add(1)
	sw, err := openEventStream(w, r, s.conf().ChunkInterval)
	if err == nil {
		err = s.sendAnthropicStream(sw, p)
	}
	if err != nil {
		s.canceled.Add(1)
		return
	}
	s.countUsage(newUsage(p.input, p.output))
}

// sendAnthropicStream writes every event of p: message_start, the content
// block's start, a ping, its deltas (text_delta words, or input_json_delta
// fragments of the tool input), its stop, message_delta and message_stop.
// With FailAfterChunks it aborts the connection after that many deltas.
func (s *Server) sendAnthropicStream(sw *sseWriter, p *anthropicPlan) error {
	send := func(e anthropicEvent) error {
		return sw.jsonEvent("event: "+e.Type+"\ndata: ", e, "\n\n")
	}
	head := p.head()
	if err := send(anthropicEvent{Type: "message_start", Message: &head}); err != nil {
		return err
	}
	index := 0
	var block anthropicBlockOut
	var pieces []string
	if p.call != nil {
		block = anthropicBlockOut{Type: "tool_use", ID: p.call.id, Name: p.call.name, Input: json.RawMessage("{}")}
		pieces = splitText(p.call.arguments, s.conf().StreamChunks)
	} else {
		block = textBlock("")
		pieces = splitWords(p.words, s.conf().StreamChunks)
	}
	if err := send(anthropicEvent{Type: "content_block_start", Index: &index, ContentBlock: &block}); err != nil {
		return err
	}
	if err := send(anthropicEvent{Type: "ping"}); err != nil {
		return err
	}
	for i, piece := range pieces {
		var d any = anthropicTextDelta{Type: "text_delta", Text: piece}
		if p.call != nil {
			d = anthropicJSONDelta{Type: "input_json_delta", PartialJSON: piece}
		}
		if err := send(anthropicEvent{Type: "content_block_delta", Index: &index, Delta: d}); err != nil {
			return err
		}
		if n := s.conf().FailAfterChunks; n > 0 && i+1 == n {
			s.aborted.Add(1)
			panic(http.ErrAbortHandler)
		}
	}
	if err := send(anthropicEvent{Type: "content_block_stop", Index: &index}); err != nil {
		return err
	}
	usage := anthropicUsage{InputTokens: p.input, OutputTokens: p.output}
	if err := send(anthropicEvent{Type: "message_delta", Delta: anthropicMessageDelta{StopReason: p.stop}, Usage: &usage}); err != nil {
		return err
	}
	return send(anthropicEvent{Type: "message_stop"})
}
