package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// dashScope speaks Alibaba Cloud DashScope's native API (Model Studio, whose
// console is Bailian): text generation at
// {base}/api/v1/services/aigc/text-generation/generation and text
// embedding at {base}/api/v1/services/embeddings/text-embedding/text-embedding,
// with the API key (Target.Key) as a bearer token. A streamed call asks for
// server-sent events with "X-DashScope-SSE: enable" and
// parameters.incremental_output, so that each event carries only what is
// new. (Type qwen reaches the same models through DashScope's
// OpenAI-compatible mode instead.)
//
// The model decides the input's form, as simple-one-api does: the
// prompt-only models (ziya-llama, belle-llama, chatyuan, billa, moss, see
// dashScopePromptModels) take input.prompt and answer in the "text"
// result format; every other model (qwen, llama, baichuan, chatglm, yi,
// deepseek, internlm, aquilachat, dolly…) takes input.messages and answers
// in the "message" format.
//
// Translation of the canonical (OpenAI) request, for messages:
//   - system and developer messages are joined into one leading system
//     message, wherever they stand; user and assistant turns keep their
//     roles; an assistant's tool calls and a tool message's tool_call_id
//     pass as they are, the tool message also naming its function;
//   - function tools, tool_choice (none, auto, a named function; required
//     with a single tool names that tool) and parallel_tool_calls pass;
//   - max_completion_tokens, else max_tokens, becomes max_tokens;
//     temperature, top_p, seed, stop, presence_penalty and
//     response_format (text, json_object, json_schema) pass.
//
// For a prompt-only model the prompt is the system text, a newline and
// the last user message: such a model answers one question, and earlier
// turns are not sent. Tools and response formats other than text are
// refused for these models.
//
// Ignored: frequency_penalty (DashScope's repetition_penalty is another
// scale), user, reasoning_effort, logit_bias, stream_options (usage is
// always reported), message names. Refused, with an *Error with Status
// 400: n > 1, logprobs, audio, images (the text-generation service is
// text-only; vision models use DashScope's multimodal service or type
// qwen), tools other than functions, tool_choice required among several
// tools, and the legacy function parameters.
//
// Embeddings send the input texts (text_type document) and dimensions as
// dimension; encoding_format is ignored (vectors come back as floats).
type dashScope struct{}

// DashScope service paths, under the base URL.
const (
	dashScopeGenerationPath = "/api/v1/services/aigc/text-generation/generation"
	dashScopeEmbeddingPath  = "/api/v1/services/embeddings/text-embedding/text-embedding"
)

// formatDashScope is DashScope's native format. No client speaks it to
// Sluice, so it is never relayed natively.
const formatDashScope Format = "dashscope"

// dashScopePromptModels are the name prefixes of the models that take a
// prompt, not messages (simple-one-api's "B" type).
var dashScopePromptModels = []string{"ziya-llama", "belle-llama", "chatyuan", "billa", "moss"}

// dashScopePromptOnly reports whether a model takes input.prompt.
func dashScopePromptOnly(model string) bool {
	m := strings.ToLower(model)
	for _, p := range dashScopePromptModels {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	return false
}

// Format implements Translator.
func (dashScope) Format() Format { return formatDashScope }

// NewRequest implements Adapter. The base URL is DashScope's host
// ("https://dashscope.aliyuncs.com", "https://dashscope-intl.aliyuncs.com",
// a workspace's host); a base that goes on with "/api/v1…" or
// "/compatible-mode…" is cut back to its host. The model is the canonical
// body's, else Target.Model.
func (dashScope) NewRequest(ctx context.Context, t Target, ep Endpoint, body []byte) (*http.Request, error) {
	var (
		native any
		stream bool
		err    error
		path   = dashScopeGenerationPath
	)
	switch ep {
	case Chat:
		native, stream, err = dashScopeChatRequest(body, t.Model)
	case Embeddings:
		native, err = dashScopeEmbedRequest(body, t.Model)
		path = dashScopeEmbeddingPath
	default:
		return nil, fmt.Errorf("dashscope: endpoint %q is not supported", ep)
	}
	if err != nil {
		return nil, dashScopeRefusal(err)
	}
	u, err := dashScopeURL(t.BaseURL, path)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(native)
	if err != nil {
		return nil, fmt.Errorf("dashscope: encode request: %w", err)
	}
	req, err := newJSONRequest(ctx, u, t, out)
	if err != nil {
		return nil, err
	}
	if stream {
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("X-DashScope-SSE", "enable")
	}
	return req, nil
}

// dashScopeRefusal turns a request that cannot be translated into an
// error a client may be shown.
func dashScopeRefusal(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "dashscope: " + err.Error()}
}

// dashScopeURL builds a service's URL from the base URL, dropping any
// path from "/api/v1" or "/compatible-mode" on.
func dashScopeURL(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("invalid upstream base URL")
	}
	p := strings.TrimRight(u.Path, "/")
	for _, cut := range []string{"/api/v1", "/compatible-mode"} {
		if i := strings.Index(p+"/", cut+"/"); i >= 0 {
			p = p[:i]
		}
	}
	u.Path = p + path
	u.RawPath = ""
	u.RawQuery = ""
	return u.String(), nil
}

// dsRequest is a text-generation request.
type dsRequest struct {
	Model      string       `json:"model"`
	Input      dsInput      `json:"input"`
	Parameters dsParameters `json:"parameters"`
}

// dsInput is a request's input: messages, or a prompt for the prompt-only
// models.
type dsInput struct {
	Messages []dsMessage `json:"messages,omitempty"`
	Prompt   string      `json:"prompt,omitempty"`
}

// dsMessage is one input message. Content is always sent: DashScope wants
// it, empty, on an assistant message that only calls tools.
type dsMessage struct {
	Role       string       `json:"role"`
	Content    string       `json:"content"`
	ToolCalls  []dsToolCall `json:"tool_calls,omitempty"`
	ToolCallID string       `json:"tool_call_id,omitempty"`
	Name       string       `json:"name,omitempty"`
}

// dsToolCall is a function call, in messages and answers; in a stream,
// later fragments of a call carry only its index and arguments.
type dsToolCall struct {
	Index    *int           `json:"index,omitempty"`
	ID       string         `json:"id,omitempty"`
	Type     string         `json:"type,omitempty"`
	Function dsFunctionCall `json:"function"`
}

// dsFunctionCall is a called function's name and JSON arguments.
type dsFunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// dsTool declares a function the model may call, as OpenAI does.
type dsTool struct {
	Type     string     `json:"type"`
	Function dsFunction `json:"function"`
}

// dsFunction is a callable function.
type dsFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

// dsParameters are the generation parameters.
type dsParameters struct {
	ResultFormat      string          `json:"result_format"`
	IncrementalOutput bool            `json:"incremental_output,omitempty"`
	Temperature       *float64        `json:"temperature,omitempty"`
	TopP              *float64        `json:"top_p,omitempty"`
	MaxTokens         int64           `json:"max_tokens,omitempty"`
	Seed              *int64          `json:"seed,omitempty"`
	Stop              []string        `json:"stop,omitempty"`
	PresencePenalty   *float64        `json:"presence_penalty,omitempty"`
	ResponseFormat    json.RawMessage `json:"response_format,omitempty"`
	Tools             []dsTool        `json:"tools,omitempty"`
	ToolChoice        any             `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
}

// dashScopeChatRequest translates a canonical chat request; model names
// the model when the body does not.
func dashScopeChatRequest(body []byte, model string) (*dsRequest, bool, error) {
	cr, err := decodeChat(body, "DashScope", true)
	if err != nil {
		return nil, false, err
	}
	if cr.Model != "" {
		model = cr.Model
	}
	if model == "" {
		return nil, false, errors.New("model: no model")
	}
	req := &dsRequest{Model: model}
	if dashScopePromptOnly(model) {
		err = dashScopePromptInput(req, cr)
	} else {
		err = dashScopeMessageInput(req, cr)
	}
	if err != nil {
		return nil, false, err
	}
	if err := dashScopeSampling(&req.Parameters, cr); err != nil {
		return nil, false, err
	}
	req.Parameters.IncrementalOutput = cr.Stream
	return req, cr.Stream, nil
}

// dashScopeMessageInput fills in the messages, tools and response format
// of a messages model's request.
func dashScopeMessageInput(req *dsRequest, cr wire.ChatRequest) error {
	msgs, err := dashScopeMessages(cr.Messages)
	if err != nil {
		return err
	}
	p := &req.Parameters
	p.ResultFormat = "message"
	if p.Tools, err = dashScopeTools(cr.Tools); err != nil {
		return err
	}
	if p.Tools != nil {
		if p.ToolChoice, err = dashScopeToolChoice(cr); err != nil {
			return err
		}
		p.ParallelToolCalls = cr.ParallelToolCalls
	}
	if isSet(cr.ResponseFormat) {
		p.ResponseFormat = cr.ResponseFormat
	}
	req.Input.Messages = msgs
	return nil
}

// dashScopePromptInput fills in a prompt-only model's request.
func dashScopePromptInput(req *dsRequest, cr wire.ChatRequest) error {
	switch {
	case len(cr.Tools) > 0:
		return fmt.Errorf("tools: %s takes a prompt and cannot call tools", req.Model)
	case checkTextResponseFormat(cr.ResponseFormat) != nil:
		return fmt.Errorf("response_format: %s answers text only", req.Model)
	}
	prompt, err := dashScopePrompt(cr.Messages)
	if err != nil {
		return err
	}
	req.Input.Prompt = prompt
	req.Parameters.ResultFormat = "text"
	return nil
}

// dashScopeSampling translates the sampling and length parameters.
func dashScopeSampling(p *dsParameters, cr wire.ChatRequest) error {
	stop, err := cr.StopSequences()
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	p.Stop = stop
	p.Temperature = cr.Temperature
	p.TopP = cr.TopP
	p.MaxTokens = cr.MaxOutputTokens()
	p.Seed = cr.Seed
	p.PresencePenalty = cr.PresencePenalty
	return nil
}

// dashScopeMessages translates the messages: the system text first, then
// the conversation's turns.
func dashScopeMessages(msgs []wire.Message) ([]dsMessage, error) {
	var (
		system []string
		turns  []dsMessage
		names  = map[string]string{} // tool call id → function name
	)
	for i, m := range msgs {
		var (
			out dsMessage
			err error
		)
		switch m.Role {
		case "system", "developer":
			var text string
			if text, err = dashScopeText(m); text != "" {
				system = append(system, text)
			}
		case "user":
			out.Role = "user"
			out.Content, err = dashScopeText(m)
		case "assistant":
			out, err = dashScopeAssistant(m, names)
		case "tool":
			out = dsMessage{Role: "tool", ToolCallID: m.ToolCallID, Name: names[m.ToolCallID]}
			out.Content, err = dashScopeText(m)
		default:
			err = fmt.Errorf("role %q is not supported", m.Role)
		}
		if err != nil {
			return nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
		if out.Role != "" {
			turns = append(turns, out)
		}
	}
	if len(system) == 0 {
		return turns, nil
	}
	return append([]dsMessage{{Role: "system", Content: strings.Join(system, "\n")}}, turns...), nil
}

// dashScopeText returns a message's text, refusing other content: the
// text-generation service reads text only.
func dashScopeText(m wire.Message) (string, error) {
	parts, err := m.Parts()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range parts {
		switch p.Type {
		case "text":
			b.WriteString(p.Text)
		case "image_url":
			return "", errors.New("images are not supported: DashScope's text-generation service is text-only (use a vision model through type qwen)")
		default:
			return "", fmt.Errorf("content part type %q is not supported", p.Type)
		}
	}
	return b.String(), nil
}

// dashScopeAssistant translates an assistant message: its text and its
// tool calls, whose names it records for the tool results that follow.
func dashScopeAssistant(m wire.Message, names map[string]string) (dsMessage, error) {
	text, err := dashScopeText(m)
	if err != nil {
		return dsMessage{}, err
	}
	out := dsMessage{Role: "assistant", Content: text}
	for j, tc := range m.ToolCalls {
		if tc.Type != "" && tc.Type != "function" {
			return dsMessage{}, fmt.Errorf("tool_calls[%d]: type %q is not supported", j, tc.Type)
		}
		names[tc.ID] = tc.Function.Name
		out.ToolCalls = append(out.ToolCalls, dsToolCall{
			Index:    wire.Ptr(j),
			ID:       tc.ID,
			Type:     "function",
			Function: dsFunctionCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments},
		})
	}
	return out, nil
}

// dashScopePrompt builds a prompt-only model's prompt: the system text
// and the last user message.
func dashScopePrompt(msgs []wire.Message) (string, error) {
	var system []string
	last := ""
	for i, m := range msgs {
		text, err := dashScopeText(m)
		if err != nil {
			return "", fmt.Errorf("messages[%d]: %w", i, err)
		}
		switch m.Role {
		case "system", "developer":
			system = append(system, text)
		case "user":
			last = text
		}
	}
	if last == "" {
		return "", errors.New("messages: a prompt-only model needs a user message")
	}
	if len(system) == 0 {
		return last, nil
	}
	return strings.Join(system, "\n") + "\n" + last, nil
}

// dashScopeTools translates the function tools.
func dashScopeTools(tools []wire.Tool) ([]dsTool, error) {
	var out []dsTool
	for i, t := range tools {
		if t.Type != "function" {
			return nil, fmt.Errorf("tools[%d]: tool type %q is not supported, only function", i, t.Type)
		}
		if t.Function.Name == "" {
			return nil, fmt.Errorf("tools[%d]: function.name is required", i)
		}
		out = append(out, dsTool{Type: "function", Function: dsFunction{
			Name:        t.Function.Name,
			Description: t.Function.Description,
			Parameters:  t.Function.Parameters,
		}})
	}
	return out, nil
}

// dashScopeToolChoice translates tool_choice: "none", "auto", or an object
// naming a function. DashScope has no "required": with a single tool, it
// names that tool.
func dashScopeToolChoice(cr wire.ChatRequest) (any, error) {
	mode, name, err := cr.ToolChoiceMode()
	if err != nil {
		return nil, fmt.Errorf("tool_choice: %w", err)
	}
	switch mode {
	case "":
		return nil, nil
	case "none", "auto":
		return mode, nil
	case "required":
		if len(cr.Tools) != 1 {
			return nil, errors.New(`tool_choice: DashScope cannot require a call among several tools; name the function or use "auto"`)
		}
		name = cr.Tools[0].Function.Name
	case "function":
		if name == "" {
			return nil, errors.New("tool_choice: function.name is required")
		}
	default:
		return nil, fmt.Errorf("tool_choice: %q is not supported", mode)
	}
	return dsNamedTool{Type: "function", Function: dsToolName{Name: name}}, nil
}

// dsNamedTool is a tool_choice forcing a call of one function.
type dsNamedTool struct {
	Type     string     `json:"type"`
	Function dsToolName `json:"function"`
}

// dsToolName names a function.
type dsToolName struct {
	Name string `json:"name"`
}

// dsEmbedRequest is a text-embedding request.
type dsEmbedRequest struct {
	Model string `json:"model"`
	Input struct {
		Texts []string `json:"texts"`
	} `json:"input"`
	Parameters dsEmbedParameters `json:"parameters"`
}

// dsEmbedParameters are an embedding's options.
type dsEmbedParameters struct {
	TextType  string `json:"text_type"`
	Dimension *int64 `json:"dimension,omitempty"`
}

// dashScopeEmbedRequest translates an embeddings request; model names the
// model when the body does not. user and encoding_format are ignored.
func dashScopeEmbedRequest(body []byte, model string) (*dsEmbedRequest, error) {
	var er wire.EmbeddingRequest
	if err := json.Unmarshal(body, &er); err != nil {
		return nil, fmt.Errorf("decode embeddings request: %w", err)
	}
	texts, err := er.Texts()
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	if len(texts) == 0 {
		return nil, errors.New("input: must not be empty")
	}
	if er.Model != "" {
		model = er.Model
	}
	if model == "" {
		return nil, errors.New("model: no model")
	}
	req := &dsEmbedRequest{Model: model, Parameters: dsEmbedParameters{TextType: "document", Dimension: er.Dimensions}}
	req.Input.Texts = texts
	return req, nil
}
