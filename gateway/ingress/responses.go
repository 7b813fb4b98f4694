package ingress

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// responsesCodec serves OpenAI Responses clients (POST /v1/responses),
// statelessly: every request carries the whole conversation.
//
// Request translation to the canonical form:
//   - instructions becomes a leading system message; input (a string, or
//     items) becomes messages: message items keep their role (developer
//     becomes system) with input_text/output_text parts as text and
//     input_image parts (by URL) as image_url parts; consecutive
//     function_call items become one assistant message's tool_calls
//     (joined to the assistant message just before them);
//     function_call_output items become tool messages; reasoning items
//     are dropped;
//   - function tools, tool_choice, max_output_tokens (→
//     max_completion_tokens), temperature, top_p, parallel_tool_calls,
//     stream, text.format (→ response_format), reasoning.effort (→
//     reasoning_effort) and user or safety_identifier (→ user) carry over;
//   - metadata, include, truncation, service_tier, store false,
//     prompt_cache_key, text.verbosity, reasoning.summary and unknown
//     fields are ignored.
//
// Refused with a *RequestError: stateful features (previous_response_id,
// conversation, store true, background true, prompt, item_reference
// items), tools other than function tools, file inputs (input_file,
// input_image by file_id), images in instructions or tool outputs, and
// input items other than those above.
type responsesCodec struct{}

// Name implements Codec.
func (responsesCodec) Name() string { return "responses" }

// Format implements Codec.
func (responsesCodec) Format() wire.Format { return wire.FormatResponses }

// NativeHeaders implements Codec: no upstream speaks the Responses API
// natively here.
func (responsesCodec) NativeHeaders() []string { return nil }

// responsesRequest is a Responses request, as Sluice reads it.
type responsesRequest struct {
	Model             string          `json:"model"`
	Input             json.RawMessage `json:"input"`
	Instructions      *string         `json:"instructions"`
	Tools             []responsesTool `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	MaxOutputTokens   *int64          `json:"max_output_tokens"`
	Temperature       *float64        `json:"temperature"`
	TopP              *float64        `json:"top_p"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	Stream            bool            `json:"stream"`
	Text              *struct {
		Format json.RawMessage `json:"format"`
	} `json:"text"`
	Reasoning *struct {
		Effort *string `json:"effort"`
	} `json:"reasoning"`
	User             string `json:"user"`
	SafetyIdentifier string `json:"safety_identifier"`

	// Stateful features, refused.
	PreviousResponseID *string         `json:"previous_response_id"`
	Conversation       json.RawMessage `json:"conversation"`
	Store              *bool           `json:"store"`
	Background         *bool           `json:"background"`
	Prompt             json.RawMessage `json:"prompt"`
}

// responsesItem is one input item.
type responsesItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"` // a string or an array of parts
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"` // a string or an array of parts
}

// responsesPart is one content part of an input item.
type responsesPart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Refusal  string `json:"refusal"`
	ImageURL string `json:"image_url"`
	FileID   string `json:"file_id"`
	Detail   string `json:"detail"`
}

// responsesTool is a tool definition.
type responsesTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      *bool           `json:"strict"`
}

// stateless refuses a stateful Responses feature.
func stateless(param, what string) *RequestError {
	return refuse(param, "%s is not supported: Sluice's Responses support is stateless (send the whole conversation in input)", what)
}

// Decode implements Codec.
func (responsesCodec) Decode(body []byte) (*Request, error) {
	var r responsesRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, refuse("", "invalid request body: %v", err)
	}
	switch {
	case r.PreviousResponseID != nil && *r.PreviousResponseID != "":
		return nil, stateless("previous_response_id", "previous_response_id")
	case !isNull(r.Conversation):
		return nil, stateless("conversation", "conversation")
	case r.Store != nil && *r.Store:
		return nil, stateless("store", "store: true")
	case r.Background != nil && *r.Background:
		return nil, stateless("background", "background: true")
	case !isNull(r.Prompt):
		return nil, stateless("prompt", "prompt (stored prompt templates)")
	case r.Model == "":
		return nil, refuse("model", "field required")
	case isNull(r.Input):
		return nil, refuse("input", "field required")
	}
	out := wire.ChatRequest{
		Model:               r.Model,
		MaxCompletionTokens: r.MaxOutputTokens,
		Temperature:         r.Temperature,
		TopP:                r.TopP,
		Stream:              r.Stream,
		User:                r.User,
	}
	if r.Stream {
		out.StreamOptions = &wire.StreamOptions{IncludeUsage: true}
	}
	if out.User == "" {
		out.User = r.SafetyIdentifier
	}
	if r.Reasoning != nil && r.Reasoning.Effort != nil {
		out.ReasoningEffort = *r.Reasoning.Effort
	}
	if r.Instructions != nil && *r.Instructions != "" {
		out.Messages = append(out.Messages, wire.Message{Role: "system", Content: wire.TextContent(*r.Instructions)})
	}
	msgs, err := responsesInput(r.Input)
	if err != nil {
		return nil, err
	}
	out.Messages = append(out.Messages, msgs...)
	if err := responsesTools(&r, &out); err != nil {
		return nil, err
	}
	if r.Text != nil && !isNull(r.Text.Format) {
		if out.ResponseFormat, err = responsesFormat(r.Text.Format); err != nil {
			return nil, err
		}
	}
	canonical, err := marshal(out)
	if err != nil {
		return nil, fmt.Errorf("responses: encode canonical request: %w", err)
	}
	return &Request{Canonical: canonical, Model: r.Model, Stream: r.Stream}, nil
}

// responsesInput translates input: a string (one user message) or items.
func responsesInput(raw json.RawMessage) ([]wire.Message, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []wire.Message{{Role: "user", Content: wire.TextContent(s)}}, nil
	}
	var items []responsesItem
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, refuse("input", "must be a string or an array of input items: %v", err)
	}
	var msgs []wire.Message
	for i, it := range items {
		p := fmt.Sprintf("input[%d]", i)
		switch it.Type {
		case "message", "":
			m, err := responsesMessage(it, p)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, m)
		case "function_call":
			if it.CallID == "" || it.Name == "" {
				return nil, refuse(p, "function_call items need a call_id and a name")
			}
			args := it.Arguments
			if args == "" {
				args = "{}"
			}
			call := wire.ToolCall{ID: it.CallID, Type: "function", Function: wire.FunctionCall{Name: it.Name, Arguments: args}}
			if n := len(msgs); n > 0 && msgs[n-1].Role == "assistant" {
				msgs[n-1].ToolCalls = append(msgs[n-1].ToolCalls, call)
			} else {
				msgs = append(msgs, wire.Message{Role: "assistant", ToolCalls: []wire.ToolCall{call}})
			}
		case "function_call_output":
			if it.CallID == "" {
				return nil, refuse(p+".call_id", "field required")
			}
			text, err := responsesText(it.Output, p+".output", false)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, wire.Message{Role: "tool", ToolCallID: it.CallID, Content: wire.TextContent(text)})
		case "reasoning":
			// The model's own reasoning, encrypted or summarized: dropped.
		case "item_reference":
			return nil, stateless(p, "item_reference")
		default:
			return nil, refuse(p+".type", "input items of type %q are not supported by Sluice", it.Type)
		}
	}
	return msgs, nil
}

// responsesMessage translates a message item.
func responsesMessage(it responsesItem, param string) (wire.Message, error) {
	switch it.Role {
	case "user":
		parts, err := responsesParts(it.Content, param+".content")
		if err != nil {
			return wire.Message{}, err
		}
		if len(parts) == 1 && parts[0].Type == "text" {
			return wire.Message{Role: "user", Content: wire.TextContent(parts[0].Text)}, nil
		}
		if parts == nil {
			parts = []wire.ContentPart{}
		}
		return wire.Message{Role: "user", Content: mustMarshal(parts)}, nil
	case "assistant", "system", "developer":
		text, err := responsesText(it.Content, param+".content", it.Role == "assistant")
		if err != nil {
			return wire.Message{}, err
		}
		role := it.Role
		if role == "developer" {
			role = "system" // understood by every upstream; OpenAI treats them alike
		}
		return wire.Message{Role: role, Content: wire.TextContent(text)}, nil
	case "":
		return wire.Message{}, refuse(param+".role", "field required")
	}
	return wire.Message{}, refuse(param+".role", "must be user, assistant, system or developer, not %q", it.Role)
}

// responsesPartsOf reads a content or output value: a string is one
// input_text part.
func responsesPartsOf(raw json.RawMessage, param string) ([]responsesPart, error) {
	if isNull(raw) {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []responsesPart{{Type: "input_text", Text: s}}, nil
	}
	var parts []responsesPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, refuse(param, "must be a string or an array of content parts")
	}
	return parts, nil
}

// responsesParts translates a user message's content.
func responsesParts(raw json.RawMessage, param string) ([]wire.ContentPart, error) {
	parts, err := responsesPartsOf(raw, param)
	if err != nil {
		return nil, err
	}
	out := make([]wire.ContentPart, 0, len(parts))
	for i, p := range parts {
		pp := fmt.Sprintf("%s[%d]", param, i)
		switch p.Type {
		case "input_text", "output_text":
			out = append(out, wire.ContentPart{Type: "text", Text: p.Text})
		case "input_image":
			if p.ImageURL == "" {
				return nil, refuse(pp, "images by file_id are not supported by Sluice: send image_url (a URL or a data: URL)")
			}
			detail := p.Detail
			if detail == "auto" {
				detail = ""
			}
			out = append(out, wire.ContentPart{Type: "image_url", ImageURL: &wire.ImageURL{URL: p.ImageURL, Detail: detail}})
		default:
			return nil, unsupportedPart(p.Type, pp)
		}
	}
	return out, nil
}

// responsesText reads a text-only content or output: its text parts
// (and refusals, in assistant messages), concatenated.
func responsesText(raw json.RawMessage, param string, assistant bool) (string, error) {
	parts, err := responsesPartsOf(raw, param)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, p := range parts {
		switch {
		case p.Type == "input_text" || p.Type == "output_text":
			b.WriteString(p.Text)
		case p.Type == "refusal" && assistant:
			b.WriteString(p.Refusal)
		case p.Type == "input_image":
			return "", refuse(fmt.Sprintf("%s[%d]", param, i), "images are only supported in user messages")
		default:
			return "", unsupportedPart(p.Type, fmt.Sprintf("%s[%d]", param, i))
		}
	}
	return b.String(), nil
}

// unsupportedPart refuses a content part type Sluice does not translate.
func unsupportedPart(typ, param string) *RequestError {
	if typ == "input_file" {
		return refuse(param, "file inputs (input_file) are not supported by Sluice")
	}
	return refuse(param+".type", "content parts of type %q are not supported by Sluice", typ)
}

// responsesTools translates tools, tool_choice and parallel_tool_calls.
func responsesTools(r *responsesRequest, out *wire.ChatRequest) error {
	for i, t := range r.Tools {
		p := fmt.Sprintf("tools[%d]", i)
		if t.Type != "function" {
			return refuse(p+".type", "%q tools are not supported by Sluice: only function tools are", t.Type)
		}
		if t.Name == "" {
			return refuse(p+".name", "field required")
		}
		fn := wire.Function{Name: t.Name, Description: t.Description, Strict: t.Strict}
		if !isNull(t.Parameters) {
			fn.Parameters = t.Parameters
		}
		out.Tools = append(out.Tools, wire.Tool{Type: "function", Function: fn})
	}
	if len(out.Tools) == 0 {
		return nil // OpenAI refuses tool_choice and parallel_tool_calls without tools
	}
	out.ParallelToolCalls = r.ParallelToolCalls
	if isNull(r.ToolChoice) {
		return nil
	}
	var mode string
	if err := json.Unmarshal(r.ToolChoice, &mode); err == nil {
		switch mode {
		case "auto", "none", "required":
			out.ToolChoice = mustMarshal(mode)
			return nil
		}
		return refuse("tool_choice", "must be auto, none, required or a function, not %q", mode)
	}
	var obj struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(r.ToolChoice, &obj); err != nil {
		return refuse("tool_choice", "must be a string or an object")
	}
	if obj.Type != "function" {
		return refuse("tool_choice.type", "tool_choice of type %q is not supported by Sluice", obj.Type)
	}
	if obj.Name == "" {
		return refuse("tool_choice.name", "field required")
	}
	out.ToolChoice = mustMarshal(map[string]any{"type": "function", "function": map[string]string{"name": obj.Name}})
	return nil
}

// responsesFormat translates text.format to response_format.
func responsesFormat(raw json.RawMessage) (json.RawMessage, error) {
	var f struct {
		Type        string          `json:"type"`
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Schema      json.RawMessage `json:"schema"`
		Strict      *bool           `json:"strict,omitempty"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, refuse("text.format", "must be an object")
	}
	switch f.Type {
	case "text":
		return nil, nil
	case "json_object":
		return mustMarshal(map[string]string{"type": "json_object"}), nil
	case "json_schema":
		if f.Name == "" {
			return nil, refuse("text.format.name", "field required")
		}
		if isNull(f.Schema) {
			return nil, refuse("text.format.schema", "field required")
		}
		schema := struct {
			Name        string          `json:"name"`
			Description string          `json:"description,omitempty"`
			Schema      json.RawMessage `json:"schema"`
			Strict      *bool           `json:"strict,omitempty"`
		}{f.Name, f.Description, f.Schema, f.Strict}
		return mustMarshal(map[string]any{"type": "json_schema", "json_schema": schema}), nil
	}
	return nil, refuse("text.format.type", "unsupported format type %q", f.Type)
}

// responsesObject is a Response. The fields Sluice cannot know (a
// stateless answer does not see the request) are left at their defaults.
type responsesObject struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"` // response
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"` // in_progress, completed, incomplete, failed
	Background         bool               `json:"background"`
	Error              *responsesError    `json:"error"`
	IncompleteDetails  *responsesReason   `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int64             `json:"max_output_tokens"`
	Metadata           map[string]string  `json:"metadata"`
	Model              string             `json:"model"`
	Output             []any              `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Reasoning          map[string]*string `json:"reasoning"`
	Store              bool               `json:"store"`
	Temperature        *float64           `json:"temperature"`
	Text               map[string]any     `json:"text"`
	ToolChoice         string             `json:"tool_choice"`
	Tools              []any              `json:"tools"`
	TopP               *float64           `json:"top_p"`
	Truncation         string             `json:"truncation"`
	Usage              *responsesUsage    `json:"usage"`
}

// responsesError is a failed Response's error.
type responsesError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// responsesReason says why a Response is incomplete.
type responsesReason struct {
	Reason string `json:"reason"` // max_output_tokens, content_filter
}

// responsesUsage counts a Response's tokens.
type responsesUsage struct {
	InputTokens        int64 `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int64 `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int64 `json:"total_tokens"`
}

// responsesMessageItem is an output message.
type responsesMessageItem struct {
	Type    string `json:"type"` // message
	ID      string `json:"id"`
	Status  string `json:"status"`
	Role    string `json:"role"` // assistant
	Content []any  `json:"content"`
}

// responsesOutputText is an output_text content part.
type responsesOutputText struct {
	Type        string `json:"type"` // output_text
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
	Logprobs    []any  `json:"logprobs"`
}

// responsesFunctionCall is a function_call output item.
type responsesFunctionCall struct {
	Type      string `json:"type"` // function_call
	ID        string `json:"id"`
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Status    string `json:"status"`
}

// newResponsesObject is a Response with its defaults, in progress.
func newResponsesObject(id string, created int64, model string) responsesObject {
	if created == 0 {
		created = time.Now().Unix()
	}
	return responsesObject{
		ID: newID("resp_", id), Object: "response", CreatedAt: created, Status: "in_progress",
		Metadata: map[string]string{}, Model: model, Output: []any{}, ParallelToolCalls: true,
		Reasoning:  map[string]*string{"effort": nil, "summary": nil},
		Text:       map[string]any{"format": map[string]string{"type": "text"}},
		ToolChoice: "auto", Tools: []any{}, Truncation: "disabled",
	}
}

// finish sets a Response's final status from the canonical finish_reason.
func (o *responsesObject) finish(reason string) {
	switch reason {
	case "length":
		o.Status, o.IncompleteDetails = "incomplete", &responsesReason{Reason: "max_output_tokens"}
	case "content_filter":
		o.Status, o.IncompleteDetails = "incomplete", &responsesReason{Reason: "content_filter"}
	default:
		o.Status = "completed"
	}
}

// responsesUsageOf converts canonical usage (nil: unknown).
func responsesUsageOf(u *wire.Usage) *responsesUsage {
	if u == nil {
		return nil
	}
	out := &responsesUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
	out.InputTokensDetails.CachedTokens = u.Cached()
	out.OutputTokensDetails.ReasoningTokens = u.Reasoning()
	if out.TotalTokens == 0 {
		out.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	return out
}

// outputText is an output_text part.
func outputText(text string) responsesOutputText {
	return responsesOutputText{Type: "output_text", Text: text, Annotations: []any{}, Logprobs: []any{}}
}

// Response implements Codec.
func (responsesCodec) Response(canonical []byte) ([]byte, error) {
	c, err := parseCompletion(canonical)
	if err != nil {
		return nil, fmt.Errorf("responses: %w", err)
	}
	if len(c.Choices) == 0 {
		return nil, fmt.Errorf("responses: chat.completion has no choices")
	}
	ch := c.Choices[0]
	text, err := contentText(ch.Message.Content)
	if err != nil {
		return nil, fmt.Errorf("responses: %w", err)
	}
	o := newResponsesObject(c.ID, c.Created, c.Model)
	o.finish(ch.FinishReason)
	itemStatus := "completed"
	if o.Status == "incomplete" {
		itemStatus = "incomplete"
	}
	var content []any
	if text != "" {
		content = append(content, outputText(text))
	}
	if ch.Message.Refusal != nil && *ch.Message.Refusal != "" {
		content = append(content, map[string]string{"type": "refusal", "refusal": *ch.Message.Refusal})
	}
	if content != nil {
		o.Output = append(o.Output, responsesMessageItem{
			Type: "message", ID: newID("msg_", c.ID) + "_0", Status: itemStatus, Role: "assistant", Content: content,
		})
	}
	for _, tc := range ch.Message.ToolCalls {
		o.Output = append(o.Output, responsesFunctionCall{
			Type: "function_call", ID: fmt.Sprintf("%s_%d", newID("fc_", c.ID), len(o.Output)), CallID: callID(tc.ID),
			Name: tc.Function.Name, Arguments: tc.Function.Arguments, Status: itemStatus,
		})
	}
	o.Usage = responsesUsageOf(c.Usage)
	b, err := marshal(o)
	if err != nil {
		return nil, fmt.Errorf("responses: encode response: %w", err)
	}
	return b, nil
}

// callID is a tool call's id, or a new one when the upstream gave none.
func callID(id string) string {
	if id != "" {
		return id
	}
	return newID("call_", "")
}

// NewStream implements Codec.
func (responsesCodec) NewStream(model string) StreamEncoder {
	return &responsesStream{model: model, open: -1}
}

// Error implements Codec: OpenAI's error shape.
func (c responsesCodec) Error(status int, typ, code, message string) []byte {
	return c.paramError(status, typ, code, "", message)
}

// paramError is OpenAI's error shape, naming the parameter at fault.
func (responsesCodec) paramError(_ int, typ, code, param, message string) []byte {
	e := wire.ErrorBody{Error: wire.ErrorDetail{Message: message, Type: typ}}
	if code != "" {
		e.Error.Code = &code
	}
	if param != "" {
		e.Error.Param = &param
	}
	return mustMarshal(e)
}
