package mock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// chatRequest holds the parts of a chat completion request the mock reads.
type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	N                   *int            `json:"n"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	Tools               []chatTool      `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatMessage is one input message; Content is a string, null or an
// array of content parts.
type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// contentPart is one element of a multimodal content array.
type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// chatTool is one entry of "tools".
type chatTool struct {
	Type     string `json:"type"`
	Function struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// requestError is a 400 about one request parameter.
type requestError struct{ param, message string }

func (e *requestError) Error() string { return e.message }

func invalid(param, format string, args ...any) error {
	return &requestError{param: param, message: fmt.Sprintf(format, args...)}
}

// chatPlan is a complete answer, decided before anything is sent so that
// streamed and plain answers agree, usage included.
type chatPlan struct {
	id           string
	created      int64
	model        string
	answers      []answer // one per choice
	usage        usage
	includeUsage bool // stream a final usage chunk
}

// answer is one choice: text words or a tool call.
type answer struct {
	words  []string
	call   *plannedCall
	finish string
	tokens int
}

type plannedCall struct{ id, name, arguments string }

// text is the reply of a text answer.
func (a answer) text() string { return strings.Join(a.words, " ") }

// serveChat answers POST …/chat/completions. On Azure deployment paths
// the deployment names the model.
func (s *Server) serveChat(w http.ResponseWriter, r *http.Request, c *call, deployment string) {
	var req chatRequest
	if !decodeBody(w, r, &req) {
		return
	}
	model := req.Model
	if deployment != "" {
		model = deployment
	}
	if model == "" {
		badRequest(w, "model", "you must provide a model parameter")
		return
	}
	plan, err := s.planChat(&req, model, c)
	if err != nil {
		var re *requestError
		if errors.As(err, &re) {
			badRequest(w, re.param, re.message)
			return
		}
		badRequest(w, "", err.Error())
		return
	}
	if req.Stream {
		s.streamChat(w, r, plan)
		return
	}
	writeJSON(w, http.StatusOK, plan.completion())
	s.countUsage(plan.usage)
}

// countUsage adds a fully sent answer's usage to the Stats.
func (s *Server) countUsage(u usage) {
	s.promptTokens.Add(int64(u.PromptTokens))
	s.completionTok.Add(int64(u.CompletionTokens))
}

// planChat validates req and decides the answer.
func (s *Server) planChat(req *chatRequest, model string, c *call) (*chatPlan, error) {
	if req.Messages == nil {
		return nil, invalid("messages", "Missing required parameter: 'messages'.")
	}
	if len(req.Messages) == 0 {
		return nil, invalid("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	prompt, err := promptTokens(req.Messages)
	if err != nil {
		return nil, err
	}
	n := 1
	if req.N != nil {
		n = *req.N
		if n < 1 || n > 128 {
			return nil, invalid("n", "Invalid 'n': integer out of range. Expected a value between 1 and 128, but got %d instead.", n)
		}
	}
	words, finish := s.conf().ReplyTokens, "stop"
	for _, p := range []struct {
		name  string
		limit *int
	}{{"max_completion_tokens", req.MaxCompletionTokens}, {"max_tokens", req.MaxTokens}} {
		if p.limit == nil {
			continue
		}
		if *p.limit < 1 {
			return nil, invalid(p.name, "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", p.name, *p.limit)
		}
		if *p.limit < words {
			words, finish = *p.limit, "length"
		}
		break
	}
	tool, err := chooseTool(req)
	if err != nil {
		return nil, err
	}

	plan := &chatPlan{
		id:           "chatcmpl-" + randomString(c.rng, alphanumeric, 29),
		created:      time.Now().Unix(),
		model:        model,
		includeUsage: req.Stream && req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
	}
	seed := promptSeed(model, req.Messages)
	var args string
	if tool != nil {
		args = sampleArguments(tool.Function.Parameters)
	}
	completion := 0
	for i := range n {
		var a answer
		if tool != nil {
			a.call = &plannedCall{id: "call_" + randomString(c.rng, alphanumeric, 24), name: tool.Function.Name, arguments: args}
			a.finish = "tool_calls"
			a.tokens = textTokens(utf8.RuneCountInString(a.call.name + a.call.arguments))
		} else {
			a.words = replyWords(seed, i, words)
			a.finish = finish
			a.tokens = len(a.words)
		}
		completion += a.tokens
		plan.answers = append(plan.answers, a)
	}
	plan.usage = newUsage(prompt, completion)
	return plan, nil
}

// promptTokens estimates the prompt's tokens: a quarter of the characters
// of all text content, plus 85 per image, at least 1. It also checks the
// messages' roles and content types.
func promptTokens(msgs []chatMessage) (int, error) {
	chars, images := 0, 0
	for i, m := range msgs {
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool", "function":
		default:
			return 0, invalid(fmt.Sprintf("messages[%d].role", i),
				"Invalid value: '%s'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.", m.Role)
		}
		c, im, err := contentSize(m.Content)
		if err != nil {
			return 0, invalid(fmt.Sprintf("messages[%d].content", i),
				"Invalid type for 'messages[%d].content': expected a string, an array of content parts or null: %v", i, err)
		}
		chars += c
		images += im
	}
	return max(chars/4+85*images, 1), nil
}

// contentSize counts the text characters and images of one message's
// content.
func contentSize(raw json.RawMessage) (chars, images int, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, 0, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, 0, fmt.Errorf("decode string content: %w", err)
		}
		return utf8.RuneCountInString(s), 0, nil
	case '[':
		var parts []contentPart
		if err := json.Unmarshal(raw, &parts); err != nil {
			return 0, 0, fmt.Errorf("decode content parts: %w", err)
		}
		for _, p := range parts {
			switch p.Type {
			case "text":
				chars += utf8.RuneCountInString(p.Text)
			case "image_url":
				images++
			}
		}
		return chars, images, nil
	}
	return 0, 0, fmt.Errorf("got %.20s", raw)
}

// textTokens estimates the tokens of a text of the given length.
func textTokens(chars int) int { return max(chars/4, 1) }

// chooseTool returns the function tool to call, or nil for a text answer:
// the one tool_choice names, else the first, unless tool_choice is "none"
// or the last message is a tool result.
func chooseTool(req *chatRequest) (*chatTool, error) {
	mode, name, err := parseToolChoice(req.ToolChoice)
	if err != nil {
		return nil, err
	}
	for i, t := range req.Tools {
		if (t.Type == "" || t.Type == "function") && t.Function.Name == "" {
			return nil, invalid(fmt.Sprintf("tools[%d].function.name", i), "Missing required parameter: 'tools[%d].function.name'.", i)
		}
	}
	if len(req.Tools) == 0 {
		if name != "" || mode == "required" {
			return nil, invalid("tool_choice", "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.")
		}
		return nil, nil
	}
	if mode == "none" {
		return nil, nil
	}
	if last := req.Messages[len(req.Messages)-1].Role; last == "tool" || last == "function" {
		return nil, nil
	}
	for i, t := range req.Tools {
		if t.Type != "" && t.Type != "function" {
			continue
		}
		if name == "" || t.Function.Name == name {
			return &req.Tools[i], nil
		}
	}
	if name != "" {
		return nil, invalid("tool_choice", "Invalid value for 'tool_choice': function '%s' is not among the 'tools'.", name)
	}
	return nil, nil // only non-function tools
}

// parseToolChoice reads tool_choice: "none", "auto", "required" or
// {"type":"function","function":{"name":…}}. Other object types count as
// "auto".
func parseToolChoice(raw json.RawMessage) (mode, name string, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "auto", "", nil
	}
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &mode); err != nil {
			return "", "", invalid("tool_choice", "Invalid 'tool_choice': %v", err)
		}
		switch mode {
		case "none", "auto", "required":
			return mode, "", nil
		}
		return "", "", invalid("tool_choice", "Invalid value: '%s'. Supported values are: 'none', 'auto', and 'required'.", mode)
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", "", invalid("tool_choice", "Invalid type for 'tool_choice': %v", err)
	}
	if obj.Type == "function" {
		if obj.Function.Name == "" {
			return "", "", invalid("tool_choice.function.name", "Missing required parameter: 'tool_choice.function.name'.")
		}
		return "required", obj.Function.Name, nil
	}
	return "auto", "", nil
}

// Response shapes.

type usage struct {
	PromptTokens            int               `json:"prompt_tokens"`
	CompletionTokens        int               `json:"completion_tokens"`
	TotalTokens             int               `json:"total_tokens"`
	PromptTokensDetails     promptDetails     `json:"prompt_tokens_details"`
	CompletionTokensDetails completionDetails `json:"completion_tokens_details"`
}

type promptDetails struct {
	CachedTokens int `json:"cached_tokens"`
	AudioTokens  int `json:"audio_tokens"`
}

type completionDetails struct {
	ReasoningTokens          int `json:"reasoning_tokens"`
	AudioTokens              int `json:"audio_tokens"`
	AcceptedPredictionTokens int `json:"accepted_prediction_tokens"`
	RejectedPredictionTokens int `json:"rejected_prediction_tokens"`
}

func newUsage(prompt, completion int) usage {
	return usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
}

type chatCompletion struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	Choices           []completionChoice `json:"choices"`
	Usage             usage              `json:"usage"`
	ServiceTier       string             `json:"service_tier"`
	SystemFingerprint string             `json:"system_fingerprint"`
}

type completionChoice struct {
	Index        int             `json:"index"`
	Message      responseMessage `json:"message"`
	Logprobs     *struct{}       `json:"logprobs"` // always null
	FinishReason string          `json:"finish_reason"`
}

type responseMessage struct {
	Role      string     `json:"role"`
	Content   *string    `json:"content"`
	Refusal   *string    `json:"refusal"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

// toolCall is a tool call in a message or, with Index set, a fragment of
// one in a stream delta.
type toolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// Constant fields of every answer.
const (
	systemFingerprint = "fp_mock"
	serviceTier       = "default"
)

// completion renders the plan as a chat.completion object.
func (p *chatPlan) completion() chatCompletion {
	cc := chatCompletion{
		ID:                p.id,
		Object:            "chat.completion",
		Created:           p.created,
		Model:             p.model,
		Choices:           make([]completionChoice, len(p.answers)),
		Usage:             p.usage,
		ServiceTier:       serviceTier,
		SystemFingerprint: systemFingerprint,
	}
	for i, a := range p.answers {
		msg := responseMessage{Role: "assistant"}
		if a.call != nil {
			msg.ToolCalls = []toolCall{{
				ID:       a.call.id,
				Type:     "function",
				Function: toolFunction{Name: a.call.name, Arguments: a.call.arguments},
			}}
		} else {
			text := a.text()
			msg.Content = &text
		}
		cc.Choices[i] = completionChoice{Index: i, Message: msg, FinishReason: a.finish}
	}
	return cc
}
