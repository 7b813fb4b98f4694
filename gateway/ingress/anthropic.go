package ingress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// anthropicCodec serves Anthropic Messages clients (POST /v1/messages).
//
// Request translation to the canonical form:
//   - model, max_tokens, stop_sequences (→ stop), temperature, top_p,
//     stream and metadata.user_id (→ user) carry over;
//   - system (a string or text blocks, joined by a blank line) becomes a
//     leading system message;
//   - user turns: text blocks become text parts, image blocks (base64 or
//     url source) image_url parts, tool_result blocks tool messages placed
//     before the turn's other content (their text blocks are joined; their
//     images, which tool messages cannot carry, open the user message that
//     follows, each result's introduced by its tool call id);
//   - assistant turns: text blocks become the content, tool_use blocks
//     tool_calls (input as JSON arguments), thinking and redacted_thinking
//     blocks are dropped;
//   - tools without a type or of type "custom" become function tools;
//     tool_choice auto/any/tool/none becomes auto/required/the function/
//     none, disable_parallel_tool_use parallel_tool_calls false;
//   - output_config.format (json_schema) becomes response_format;
//   - top_k, thinking, output_config.effort, cache_control, citations,
//     is_error, service_tier, container and unknown fields are ignored.
//
// Refused with a *RequestError: document, search_result and file-sourced
// blocks, images in tool results or assistant turns, server tools (a tool
// type other than "custom"), server tool blocks in the history, and
// mcp_servers.
type anthropicCodec struct{}

// Name implements Codec.
func (anthropicCodec) Name() string { return "anthropic" }

// Format implements Codec.
func (anthropicCodec) Format() wire.Format { return wire.FormatAnthropic }

// NativeHeaders implements Codec: a client's beta features go to an
// Anthropic upstream that is relayed its body as is.
func (anthropicCodec) NativeHeaders() []string { return []string{"anthropic-beta"} }

// anthropicRequest is a Messages request, as Sluice reads it.
type anthropicRequest struct {
	Model         string             `json:"model"`
	MaxTokens     *int64             `json:"max_tokens"`
	System        json.RawMessage    `json:"system"`
	Messages      []anthropicMessage `json:"messages"`
	StopSequences []string           `json:"stop_sequences"`
	Temperature   *float64           `json:"temperature"`
	TopP          *float64           `json:"top_p"`
	Stream        bool               `json:"stream"`
	Metadata      *struct {
		UserID string `json:"user_id"`
	} `json:"metadata"`
	Tools      []anthropicTool `json:"tools"`
	ToolChoice *struct {
		Type                   string `json:"type"`
		Name                   string `json:"name"`
		DisableParallelToolUse bool   `json:"disable_parallel_tool_use"`
	} `json:"tool_choice"`
	OutputConfig *struct {
		Format *struct {
			Type   string          `json:"type"`
			Schema json.RawMessage `json:"schema"`
		} `json:"format"`
	} `json:"output_config"`
	MCPServers []json.RawMessage `json:"mcp_servers"`
}

// anthropicMessage is one turn of a Messages request.
type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"` // a string or an array of blocks
}

// anthropicBlock is one content block of a request turn.
type anthropicBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	Source    json.RawMessage `json:"source"` // an image's: see anthropicImage
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"` // a tool_result's: a string or an array of blocks
}

// anthropicTool is a tool definition.
type anthropicTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
	Strict      *bool           `json:"strict"`
}

// Decode implements Codec.
func (anthropicCodec) Decode(body []byte) (*Request, error) {
	var r anthropicRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, refuse("", "invalid request body: %v", err)
	}
	if r.Model == "" {
		return nil, refuse("model", "field required")
	}
	if r.MaxTokens == nil {
		return nil, refuse("max_tokens", "field required")
	}
	if *r.MaxTokens < 1 {
		return nil, refuse("max_tokens", "must be at least 1")
	}
	if len(r.Messages) == 0 {
		return nil, refuse("messages", "at least one message is required")
	}
	if len(r.MCPServers) > 0 {
		return nil, refuse("mcp_servers", "MCP servers are not supported by Sluice")
	}
	out := wire.ChatRequest{
		Model:       r.Model,
		MaxTokens:   r.MaxTokens,
		Temperature: r.Temperature,
		TopP:        r.TopP,
		Stream:      r.Stream,
	}
	if r.Stream {
		out.StreamOptions = &wire.StreamOptions{IncludeUsage: true}
	}
	if r.Metadata != nil {
		out.User = r.Metadata.UserID
	}
	if len(r.StopSequences) > 0 {
		out.Stop = mustMarshal(r.StopSequences)
	}
	system, err := anthropicText(r.System, "system")
	if err != nil {
		return nil, err
	}
	if system != "" {
		out.Messages = append(out.Messages, wire.Message{Role: "system", Content: wire.TextContent(system)})
	}
	out.Messages = slices.Grow(out.Messages, len(r.Messages))
	for i, m := range r.Messages {
		msgs, err := anthropicTurn(m, "messages["+strconv.Itoa(i)+"]")
		if err != nil {
			return nil, err
		}
		out.Messages = append(out.Messages, msgs...)
	}
	if err := anthropicTools(&r, &out); err != nil {
		return nil, err
	}
	if oc := r.OutputConfig; oc != nil && oc.Format != nil {
		if oc.Format.Type != "json_schema" {
			return nil, refuse("output_config.format.type", "unsupported format type %q", oc.Format.Type)
		}
		if isNull(oc.Format.Schema) {
			return nil, refuse("output_config.format.schema", "field required")
		}
		out.ResponseFormat = mustMarshal(map[string]any{
			"type": "json_schema",
			"json_schema": map[string]any{
				"name":   "output",
				"schema": oc.Format.Schema,
				"strict": true,
			},
		})
	}
	canonical, err := marshal(out)
	if err != nil {
		return nil, fmt.Errorf("anthropic: encode canonical request: %w", err)
	}
	return &Request{Canonical: canonical, Model: r.Model, Stream: r.Stream}, nil
}

// anthropicText reads a system prompt or a tool result's content: a string
// or text blocks, joined by a blank line. Other blocks are refused.
func anthropicText(raw json.RawMessage, param string) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var blocks []anthropicBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return "", refuse(param, "must be a string or an array of text blocks")
	}
	texts := make([]string, 0, len(blocks))
	for i, b := range blocks {
		switch b.Type {
		case "text":
			texts = append(texts, b.Text)
		case "image":
			return "", refuse(fmt.Sprintf("%s[%d]", param, i), "images are not supported by Sluice here")
		default:
			return "", refuse(fmt.Sprintf("%s[%d].type", param, i), "%q blocks are not supported by Sluice here", b.Type)
		}
	}
	return strings.Join(texts, "\n\n"), nil
}

// anthropicToolResult reads a tool_result's content: a string, or text and
// image blocks. The text blocks are joined by a blank line; the images
// come back as image_url parts.
func anthropicToolResult(raw json.RawMessage, param string) (string, []wire.ContentPart, error) {
	var blocks []anthropicBlock
	if json.Unmarshal(raw, &blocks) != nil {
		text, err := anthropicText(raw, param)
		return text, nil, err
	}
	var (
		texts  []string
		images []wire.ContentPart
	)
	for i, b := range blocks {
		p := fmt.Sprintf("%s[%d]", param, i)
		switch b.Type {
		case "text":
			texts = append(texts, b.Text)
		case "image":
			img, err := anthropicImage(b, p)
			if err != nil {
				return "", nil, err
			}
			images = append(images, wire.ContentPart{Type: "image_url", ImageURL: img})
		default:
			return "", nil, refuse(p+".type", "%q blocks are not supported by Sluice here", b.Type)
		}
	}
	return strings.Join(texts, "\n\n"), images, nil
}

// anthropicBlocks reads a turn's content: a string is one text block.
func anthropicBlocks(raw json.RawMessage, param string) ([]anthropicBlock, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []anthropicBlock{{Type: "text", Text: s}}, nil
	}
	var blocks []anthropicBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return nil, refuse(param, "must be a string or an array of content blocks")
	}
	return blocks, nil
}

// anthropicTurn translates one turn into canonical messages: a user turn
// into its tool messages then a user message, an assistant turn into one
// assistant message (none when it holds only thinking).
func anthropicTurn(m anthropicMessage, param string) ([]wire.Message, error) {
	blocks, err := anthropicBlocks(m.Content, param+".content")
	if err != nil {
		return nil, err
	}
	switch m.Role {
	case "user":
		return anthropicUserTurn(blocks, param)
	case "assistant":
		return anthropicAssistantTurn(blocks, param)
	}
	return nil, refuse(param+".role", "must be \"user\" or \"assistant\", not %q", m.Role)
}

// anthropicUserTurn translates a user turn.
func anthropicUserTurn(blocks []anthropicBlock, param string) ([]wire.Message, error) {
	var (
		tools      []wire.Message
		toolImages []wire.ContentPart // images from tool results, before the turn's own parts
		parts      []wire.ContentPart
	)
	for i, b := range blocks {
		if b.Type == "text" {
			parts = append(parts, wire.ContentPart{Type: "text", Text: b.Text})
			continue
		}
		p := fmt.Sprintf("%s.content[%d]", param, i)
		switch b.Type {
		case "image":
			img, err := anthropicImage(b, p)
			if err != nil {
				return nil, err
			}
			parts = append(parts, wire.ContentPart{Type: "image_url", ImageURL: img})
		case "tool_result":
			if b.ToolUseID == "" {
				return nil, refuse(p+".tool_use_id", "field required")
			}
			text, images, err := anthropicToolResult(b.Content, p+".content")
			if err != nil {
				return nil, err
			}
			if len(images) > 0 {
				// Tool messages carry text only: the images go to the
				// user message that follows, introduced by name.
				note := fmt.Sprintf("[%d image(s) returned by tool call %s, attached in the next message]", len(images), b.ToolUseID)
				text = strings.TrimSpace(text + "\n\n" + note)
				intro := wire.ContentPart{Type: "text", Text: "Image(s) returned by tool call " + b.ToolUseID + ":"}
				toolImages = append(append(toolImages, intro), images...)
			}
			tools = append(tools, wire.Message{Role: "tool", ToolCallID: b.ToolUseID, Content: wire.TextContent(text)})
		default:
			return nil, unsupportedBlock(b.Type, p)
		}
	}
	msgs := tools
	parts = append(toolImages, parts...)
	switch {
	case len(parts) == 1 && parts[0].Type == "text":
		msgs = append(msgs, wire.Message{Role: "user", Content: wire.TextContent(parts[0].Text)})
	case len(parts) > 0:
		msgs = append(msgs, wire.Message{Role: "user", Content: mustMarshal(parts)})
	case len(tools) == 0:
		// An empty turn stays an (empty) user message.
		msgs = append(msgs, wire.Message{Role: "user", Content: wire.TextContent("")})
	}
	return msgs, nil
}

// anthropicAssistantTurn translates an assistant turn.
func anthropicAssistantTurn(blocks []anthropicBlock, param string) ([]wire.Message, error) {
	var (
		text  strings.Builder
		calls []wire.ToolCall
	)
	for i, b := range blocks {
		p := fmt.Sprintf("%s.content[%d]", param, i)
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "tool_use":
			if b.ID == "" || b.Name == "" {
				return nil, refuse(p, "tool_use blocks need an id and a name")
			}
			args := "{}"
			if !isNull(b.Input) {
				var compact bytes.Buffer
				if err := json.Compact(&compact, b.Input); err != nil {
					return nil, refuse(p+".input", "invalid JSON: %v", err)
				}
				args = compact.String()
			}
			calls = append(calls, wire.ToolCall{ID: b.ID, Type: "function", Function: wire.FunctionCall{Name: b.Name, Arguments: args}})
		case "thinking", "redacted_thinking":
			// Signed reasoning only Anthropic can verify: dropped.
		case "image":
			return nil, refuse(p, "images in assistant turns are not supported")
		default:
			return nil, unsupportedBlock(b.Type, p)
		}
	}
	if text.Len() == 0 && len(calls) == 0 {
		return nil, nil
	}
	msg := wire.Message{Role: "assistant", ToolCalls: calls}
	if text.Len() > 0 {
		msg.Content = wire.TextContent(text.String())
	}
	return []wire.Message{msg}, nil
}

// unsupportedBlock refuses a content block type Sluice does not translate.
func unsupportedBlock(typ, param string) *RequestError {
	switch typ {
	case "document":
		return refuse(param, "document blocks are not supported by Sluice")
	case "server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
		"bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "tool_search_tool_result",
		"mcp_tool_use", "mcp_tool_result", "container_upload":
		return refuse(param, "%q blocks (server tools) are not supported by Sluice", typ)
	}
	return refuse(param+".type", "%q blocks are not supported by Sluice", typ)
}

// anthropicImage translates an image block's source.
func anthropicImage(b anthropicBlock, param string) (*wire.ImageURL, error) {
	var src struct {
		Type      string `json:"type"` // base64, url, file
		MediaType string `json:"media_type"`
		Data      string `json:"data"`
		URL       string `json:"url"`
	}
	if isNull(b.Source) {
		return nil, refuse(param+".source", "field required")
	}
	if err := json.Unmarshal(b.Source, &src); err != nil {
		return nil, refuse(param+".source", "must be an object")
	}
	switch src.Type {
	case "base64":
		if src.MediaType == "" || src.Data == "" {
			return nil, refuse(param+".source", "base64 images need media_type and data")
		}
		return &wire.ImageURL{URL: "data:" + src.MediaType + ";base64," + src.Data}, nil
	case "url":
		if src.URL == "" {
			return nil, refuse(param+".source.url", "field required")
		}
		return &wire.ImageURL{URL: src.URL}, nil
	}
	return nil, refuse(param+".source.type", "image source %q is not supported by Sluice (use base64 or url)", src.Type)
}

// anthropicTools translates tools and tool_choice.
func anthropicTools(r *anthropicRequest, out *wire.ChatRequest) error {
	for i, t := range r.Tools {
		p := fmt.Sprintf("tools[%d]", i)
		if t.Type != "" && t.Type != "custom" {
			return refuse(p+".type", "server tool %q is not supported by Sluice: only client tools (custom) are", t.Type)
		}
		if t.Name == "" {
			return refuse(p+".name", "field required")
		}
		schema := t.InputSchema
		if isNull(schema) {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, wire.Tool{Type: "function", Function: wire.Function{
			Name: t.Name, Description: t.Description, Parameters: schema, Strict: t.Strict,
		}})
	}
	tc := r.ToolChoice
	if tc == nil || len(out.Tools) == 0 {
		return nil // OpenAI refuses tool_choice and parallel_tool_calls without tools
	}
	switch tc.Type {
	case "auto", "":
		out.ToolChoice = mustMarshal("auto")
	case "any":
		out.ToolChoice = mustMarshal("required")
	case "none":
		out.ToolChoice = mustMarshal("none")
	case "tool":
		if tc.Name == "" {
			return refuse("tool_choice.name", "field required")
		}
		out.ToolChoice = mustMarshal(map[string]any{"type": "function", "function": map[string]string{"name": tc.Name}})
	default:
		return refuse("tool_choice.type", "unsupported tool_choice type %q", tc.Type)
	}
	if tc.DisableParallelToolUse {
		out.ParallelToolCalls = wire.Ptr(false)
	}
	return nil
}

// anthropicMessageOut is a Messages answer.
type anthropicMessageOut struct {
	ID           string            `json:"id"`
	Type         string            `json:"type"` // message
	Role         string            `json:"role"` // assistant
	Model        string            `json:"model"`
	Content      []json.RawMessage `json:"content"`
	StopReason   *string           `json:"stop_reason"`
	StopSequence *string           `json:"stop_sequence"`
	Usage        anthropicUsage    `json:"usage"`
}

// anthropicUsage counts an answer's tokens. Anthropic's input_tokens
// excludes the tokens read from the prompt cache.
type anthropicUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
}

// anthropicUsageOf converts canonical usage (nil: unknown, zeros).
func anthropicUsageOf(u *wire.Usage) anthropicUsage {
	if u == nil {
		return anthropicUsage{}
	}
	cached := u.Cached()
	return anthropicUsage{InputTokens: u.PromptTokens - cached, CacheReadInputTokens: cached, OutputTokens: u.CompletionTokens}
}

// anthropicStopReason maps a canonical finish_reason.
func anthropicStopReason(finish string, toolCalls bool) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	}
	if toolCalls {
		return "tool_use" // some upstreams end tool calls with "stop"
	}
	return "end_turn"
}

// anthropicToolInput is a tool call's arguments as a JSON object: {} when
// they are empty or not an object (the Anthropic SDKs do the same with a
// cut-off tool call).
func anthropicToolInput(args string) json.RawMessage {
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(args)); err != nil || compact.Len() == 0 || compact.Bytes()[0] != '{' {
		return json.RawMessage(`{}`)
	}
	return compact.Bytes()
}

// Response implements Codec.
func (anthropicCodec) Response(canonical []byte) ([]byte, error) {
	c, err := parseCompletion(canonical)
	if err != nil {
		return nil, fmt.Errorf("anthropic: %w", err)
	}
	if len(c.Choices) == 0 {
		return nil, fmt.Errorf("anthropic: chat.completion has no choices")
	}
	ch := c.Choices[0]
	text, err := contentText(ch.Message.Content)
	if err != nil {
		return nil, fmt.Errorf("anthropic: %w", err)
	}
	if text == "" && ch.Message.Refusal != nil {
		text = *ch.Message.Refusal
	}
	out := anthropicMessageOut{
		ID: newID("msg_", c.ID), Type: "message", Role: "assistant", Model: c.Model,
		Content: []json.RawMessage{},
		Usage:   anthropicUsageOf(c.Usage),
	}
	if text != "" {
		out.Content = append(out.Content, mustMarshal(map[string]string{"type": "text", "text": text}))
	}
	for _, tc := range ch.Message.ToolCalls {
		out.Content = append(out.Content, mustMarshal(anthropicToolUse{
			Type: "tool_use", ID: toolUseID(tc.ID), Name: tc.Function.Name, Input: anthropicToolInput(tc.Function.Arguments),
		}))
	}
	stop := anthropicStopReason(ch.FinishReason, len(ch.Message.ToolCalls) > 0)
	out.StopReason = &stop
	b, err := marshal(out)
	if err != nil {
		return nil, fmt.Errorf("anthropic: encode message: %w", err)
	}
	return b, nil
}

// anthropicToolUse is a tool_use content block.
type anthropicToolUse struct {
	Type  string          `json:"type"` // tool_use
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// toolUseID is a tool call's id, or a new one when the upstream gave none.
func toolUseID(id string) string {
	if id != "" {
		return id
	}
	return newID("toolu_", "")
}

// NewStream implements Codec.
func (anthropicCodec) NewStream(model string) StreamEncoder {
	return &anthropicStream{model: model, block: -1}
}

// anthropicErrorType is the Anthropic error type of an HTTP status: other
// 4xx are invalid_request_error, other 5xx (and 499, client closed)
// api_error.
func anthropicErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusPaymentRequired:
		return "billing_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusServiceUnavailable, 529:
		return "overloaded_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	}
	if status >= 400 && status < 499 {
		return "invalid_request_error"
	}
	return "api_error"
}

// Error implements Codec: {"type":"error","error":{"type","message"}},
// the type chosen by status (typ and code are OpenAI's and not shown).
func (anthropicCodec) Error(status int, _, _, message string) []byte {
	return mustMarshal(anthropicError{Type: "error", Error: anthropicErrorDetail{Type: anthropicErrorType(status), Message: message}})
}

// anthropicError is Anthropic's error shape, also the stream's error event.
type anthropicError struct {
	Type  string               `json:"type"` // error
	Error anthropicErrorDetail `json:"error"`
}

// anthropicErrorDetail is an error's content.
type anthropicErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}
