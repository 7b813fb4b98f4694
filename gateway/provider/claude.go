package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// claude speaks the Anthropic Messages API (POST /v1/messages), for chat
// only: Anthropic has no embeddings API.
//
// Translation of the canonical (OpenAI) request:
//   - system and developer messages, wherever they stand, are joined by a
//     blank line into the top-level system prompt;
//   - user and assistant messages become turns of content blocks;
//     consecutive turns of one role are merged, since Anthropic wants
//     alternating turns; empty text is dropped (Anthropic refuses empty
//     text blocks);
//   - text parts become text blocks; image_url parts become image blocks,
//     with a base64 source for a data: URL and a url source for an
//     http(s) URL (detail is ignored);
//   - an assistant's tool_calls become tool_use blocks after its text (the
//     arguments must be a JSON object); tool messages become tool_result
//     blocks of a user turn, placed before that turn's other blocks as
//     Anthropic requires;
//   - max_tokens is always sent: max_completion_tokens, else max_tokens,
//     else Target.MaxTokens, else DefaultClaudeMaxTokens;
//   - stop becomes stop_sequences, user metadata.user_id; top_p and stream
//     carry over; temperature is clamped to [0, 1] (OpenAI's range is
//     [0, 2], Anthropic's [0, 1]);
//   - function tools become tools with an input_schema (an empty object
//     schema when the function has no parameters); tool_choice none, auto,
//     required and a named function become none, auto, any and tool;
//     parallel_tool_calls false sets disable_parallel_tool_use (on an auto
//     tool_choice when none is given).
//
// Silently ignored: seed, presence_penalty, frequency_penalty, logit_bias,
// reasoning_effort, stream_options (usage is always reported), message
// names, and any parameter not named here (store, metadata,
// service_tier...).
//
// Refused, with an *Error with Status 400 naming the parameter: n > 1,
// response_format other than text, logprobs and top_logprobs, audio output
// (audio, modalities), the legacy functions and function_call, content
// parts other than text and image_url, and tools other than functions.
type claude struct{}

// DefaultClaudeVersion is the anthropic-version header sent when neither
// the config nor the client names one.
const DefaultClaudeVersion = "2023-06-01"

// DefaultClaudeMaxTokens is the completion cap sent when neither the
// request nor the config sets one: Anthropic requires max_tokens.
const DefaultClaudeMaxTokens = 4096

// Format implements Translator.
func (claude) Format() Format { return FormatAnthropic }

// NewRequest implements Adapter: it translates a canonical chat request
// into a Messages request.
func (claude) NewRequest(ctx context.Context, t Target, ep Endpoint, body []byte) (*http.Request, error) {
	switch ep {
	case Chat:
	case Embeddings:
		return nil, &Error{Status: http.StatusBadRequest, Type: "invalid_request_error",
			Message: "claude: Anthropic has no embeddings API: route embeddings models to another upstream"}
	default:
		return nil, fmt.Errorf("claude: endpoint %q is not supported", ep)
	}
	req, err := claudeChatRequest(body, t.MaxTokens)
	if err != nil {
		return nil, claudeRefusal(err)
	}
	if req.Model == "" {
		req.Model = t.Model
	}
	out, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("claude: encode request: %w", err)
	}
	return claudeHTTPRequest(ctx, t, out)
}

// claudeHTTPRequest builds the POST to the Messages endpoint. Headers set
// in Target.Headers (a client's anthropic-version or anthropic-beta) win
// over the default version.
func claudeHTTPRequest(ctx context.Context, t Target, body []byte) (*http.Request, error) {
	u, err := claudeURL(t.BaseURL)
	if err != nil {
		return nil, err
	}
	req, err := newJSONRequest(ctx, u, t, body)
	if err != nil {
		return nil, err
	}
	if req.Header.Get("anthropic-version") == "" {
		version := t.APIVersion
		if version == "" {
			version = DefaultClaudeVersion
		}
		req.Header.Set("anthropic-version", version)
	}
	return req, nil
}

// claudeURL returns the Messages endpoint of a base URL, which may be the
// API host ("https://api.anthropic.com"), its version ("…/v1") or the
// endpoint itself ("…/v1/messages").
func claudeURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", errors.New("invalid upstream base URL")
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case strings.HasSuffix(p, "/messages"):
	case strings.HasSuffix(p, "/v1"):
		p += "/messages"
	default:
		p += "/v1/messages"
	}
	u.Path = p
	u.RawPath = ""
	return u.String(), nil
}

// claudeRefusal turns a request that cannot be translated into an error a
// client may be shown.
func claudeRefusal(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "claude: " + err.Error()}
}

// clRequest is a Messages request.
type clRequest struct {
	Model         string        `json:"model"`
	MaxTokens     int64         `json:"max_tokens"`
	System        string        `json:"system,omitempty"`
	Messages      []clMessage   `json:"messages"`
	StopSequences []string      `json:"stop_sequences,omitempty"`
	Temperature   *float64      `json:"temperature,omitempty"`
	TopP          *float64      `json:"top_p,omitempty"`
	Stream        bool          `json:"stream,omitempty"`
	Metadata      *clMetadata   `json:"metadata,omitempty"`
	Tools         []clTool      `json:"tools,omitempty"`
	ToolChoice    *clToolChoice `json:"tool_choice,omitempty"`
}

// clMetadata is a request's metadata.
type clMetadata struct {
	UserID string `json:"user_id"`
}

// clMessage is one turn of a conversation.
type clMessage struct {
	Role    string    `json:"role"` // user or assistant
	Content []clBlock `json:"content"`
}

// clBlock is one content block of a request turn: text, image, tool_use
// or tool_result.
type clBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	Source    *clImageSource  `json:"source,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"` // an object
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   string          `json:"content,omitempty"`
}

// clImageSource is an image: base64 data or a URL.
type clImageSource struct {
	Type      string `json:"type"` // base64 or url
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

// clTool is a client tool the model may call.
type clTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// clToolChoice says how the model may use tools.
type clToolChoice struct {
	Type                   string `json:"type"` // auto, any, tool or none
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

// clEmptySchema is the input schema of a function without parameters.
var clEmptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

// claudeChatRequest translates a canonical chat request; maxTokens is the
// configured default completion cap.
func claudeChatRequest(body []byte, maxTokens int64) (*clRequest, error) {
	cr, err := decodeChat(body, "Anthropic", true)
	if err != nil {
		return nil, err
	}
	if err := checkTextResponseFormat(cr.ResponseFormat); err != nil {
		return nil, err
	}
	req := &clRequest{
		Model:       cr.Model,
		MaxTokens:   claudeMaxTokens(cr, maxTokens),
		Temperature: claudeTemperature(cr.Temperature),
		TopP:        cr.TopP,
		Stream:      cr.Stream,
	}
	if req.System, req.Messages, err = claudeMessages(cr.Messages); err != nil {
		return nil, err
	}
	if req.StopSequences, err = cr.StopSequences(); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	if cr.User != "" {
		req.Metadata = &clMetadata{UserID: cr.User}
	}
	if req.Tools, err = claudeTools(cr.Tools); err != nil {
		return nil, err
	}
	if req.ToolChoice, err = claudeToolChoice(cr, len(req.Tools) > 0); err != nil {
		return nil, err
	}
	return req, nil
}

// claudeMaxTokens returns the completion cap to send: the request's, else
// the configured one, else DefaultClaudeMaxTokens.
func claudeMaxTokens(cr wire.ChatRequest, configured int64) int64 {
	if n := cr.MaxOutputTokens(); n > 0 {
		return n
	}
	if configured > 0 {
		return configured
	}
	return DefaultClaudeMaxTokens
}

// claudeTemperature clamps a temperature to Anthropic's range, [0, 1].
func claudeTemperature(t *float64) *float64 {
	if t == nil {
		return nil
	}
	return wire.Ptr(min(max(*t, 0), 1))
}

// claudeMessages translates the messages into the system prompt and the
// conversation's turns.
func claudeMessages(msgs []wire.Message) (string, []clMessage, error) {
	var (
		system []string
		turns  clTurns
	)
	for i, m := range msgs {
		var (
			blocks []clBlock
			err    error
		)
		switch m.Role {
		case "system", "developer":
			var text string
			text, err = claudeSystemText(m)
			if text != "" {
				system = append(system, text)
			}
		case "user":
			blocks, err = claudeUserBlocks(m)
			turns.add("user", blocks)
		case "assistant":
			blocks, err = claudeAssistantBlocks(m)
			turns.add("assistant", blocks)
		case "tool":
			blocks, err = claudeToolResult(m)
			turns.add("user", blocks)
		default:
			err = fmt.Errorf("role %q is not supported", m.Role)
		}
		if err != nil {
			return "", nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
	}
	if turns == nil {
		turns = clTurns{}
	}
	return strings.Join(system, "\n\n"), turns, nil
}

// clTurns is a conversation being built.
type clTurns []clMessage

// add appends blocks to the conversation, merging them into the last turn
// when it has the same role. A user turn keeps its tool_result blocks
// first: Anthropic refuses other content before them.
func (t *clTurns) add(role string, blocks []clBlock) {
	if len(blocks) == 0 {
		return
	}
	n := len(*t)
	if n == 0 || (*t)[n-1].Role != role {
		*t = append(*t, clMessage{Role: role, Content: blocks})
		return
	}
	last := &(*t)[n-1]
	last.Content = append(last.Content, blocks...)
	if role == "user" {
		slices.SortStableFunc(last.Content, func(a, b clBlock) int {
			return claudeBlockRank(a) - claudeBlockRank(b)
		})
	}
}

// claudeBlockRank orders a user turn's blocks: tool results first.
func claudeBlockRank(b clBlock) int {
	if b.Type == "tool_result" {
		return 0
	}
	return 1
}

// claudeSystemText returns a system message's text.
func claudeSystemText(m wire.Message) (string, error) {
	parts, err := m.Parts()
	if err != nil {
		return "", err
	}
	var texts []string
	for _, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("content part type %q is not supported in a %s message", p.Type, m.Role)
		}
		if p.Text != "" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n\n"), nil
}

// claudeUserBlocks translates a user message's text and images.
func claudeUserBlocks(m wire.Message) ([]clBlock, error) {
	parts, err := m.Parts()
	if err != nil {
		return nil, err
	}
	var blocks []clBlock
	for j, p := range parts {
		switch p.Type {
		case "text":
			if p.Text != "" {
				blocks = append(blocks, clBlock{Type: "text", Text: p.Text})
			}
		case "image_url":
			if p.ImageURL == nil {
				return nil, fmt.Errorf("content[%d]: image_url part without a url", j)
			}
			src, err := claudeImageSource(p.ImageURL.URL)
			if err != nil {
				return nil, fmt.Errorf("content[%d]: %w", j, err)
			}
			blocks = append(blocks, clBlock{Type: "image", Source: src})
		default:
			return nil, fmt.Errorf("content[%d]: content part type %q is not supported", j, p.Type)
		}
	}
	return blocks, nil
}

// claudeImageSource reads an image URL: a base64 data: URL or an http(s)
// URL, which Anthropic fetches.
func claudeImageSource(u string) (*clImageSource, error) {
	if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
		return &clImageSource{Type: "url", URL: u}, nil
	}
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return nil, errors.New("an image must be an http(s) URL or a base64 data: URL")
	}
	meta, data, ok := strings.Cut(rest, ",")
	mime, isBase64 := strings.CutSuffix(meta, ";base64")
	if !ok || !isBase64 || mime == "" || data == "" {
		return nil, errors.New("an image data: URL must be data:<media type>;base64,<data>")
	}
	mime, _, _ = strings.Cut(mime, ";") // drop parameters
	return &clImageSource{Type: "base64", MediaType: mime, Data: data}, nil
}

// claudeAssistantBlocks translates an assistant message: its text, then
// its tool calls.
func claudeAssistantBlocks(m wire.Message) ([]clBlock, error) {
	parts, err := m.Parts()
	if err != nil {
		return nil, err
	}
	var (
		blocks []clBlock
		text   strings.Builder
	)
	for _, p := range parts {
		if p.Type == "text" { // refusal parts are dropped
			text.WriteString(p.Text)
		}
	}
	if text.Len() > 0 {
		blocks = append(blocks, clBlock{Type: "text", Text: text.String()})
	}
	for j, tc := range m.ToolCalls {
		if tc.Type != "" && tc.Type != "function" {
			return nil, fmt.Errorf("tool_calls[%d]: type %q is not supported", j, tc.Type)
		}
		input, err := claudeToolInput(tc.Function.Arguments)
		if err != nil {
			return nil, fmt.Errorf("tool_calls[%d]: %w", j, err)
		}
		blocks = append(blocks, clBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
	}
	return blocks, nil
}

// claudeToolInput reads a tool call's arguments: a JSON object, or empty.
func claudeToolInput(args string) (json.RawMessage, error) {
	args = strings.TrimSpace(args)
	if args == "" {
		return json.RawMessage("{}"), nil
	}
	if !strings.HasPrefix(args, "{") || !json.Valid([]byte(args)) {
		return nil, errors.New("arguments are not a JSON object")
	}
	return json.RawMessage(args), nil
}

// claudeToolResult translates a tool message into a tool_result block.
func claudeToolResult(m wire.Message) ([]clBlock, error) {
	if m.ToolCallID == "" {
		return nil, errors.New("tool message without a tool_call_id")
	}
	if _, err := m.Parts(); err != nil {
		return nil, err
	}
	return []clBlock{{Type: "tool_result", ToolUseID: m.ToolCallID, Content: m.Text()}}, nil
}

// claudeTools translates function tools.
func claudeTools(tools []wire.Tool) ([]clTool, error) {
	var out []clTool
	for i, t := range tools {
		if t.Type != "function" {
			return nil, fmt.Errorf("tools[%d]: type %q is not supported", i, t.Type)
		}
		schema := t.Function.Parameters
		if !isSet(schema) {
			schema = clEmptySchema
		}
		out = append(out, clTool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	return out, nil
}

// claudeToolChoice translates tool_choice and parallel_tool_calls; both
// are dropped when there are no tools, which Anthropic requires.
func claudeToolChoice(cr wire.ChatRequest, tools bool) (*clToolChoice, error) {
	mode, name, err := cr.ToolChoiceMode()
	if err != nil {
		return nil, fmt.Errorf("tool_choice: %w", err)
	}
	if !tools {
		return nil, nil
	}
	var tc clToolChoice
	switch mode {
	case "":
		tc.Type = "auto"
	case "none", "auto":
		tc.Type = mode
	case "required":
		tc.Type = "any"
	case "function":
		if name == "" {
			return nil, errors.New("tool_choice: no function name")
		}
		tc.Type, tc.Name = "tool", name
	default:
		return nil, fmt.Errorf("tool_choice: %q is not supported", mode)
	}
	if tc.Type != "none" && cr.ParallelToolCalls != nil && !*cr.ParallelToolCalls {
		tc.DisableParallelToolUse = true
	}
	if mode == "" && !tc.DisableParallelToolUse {
		return nil, nil // Anthropic's default, auto
	}
	return &tc, nil
}
