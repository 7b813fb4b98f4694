package provider

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// gemini speaks Google's Generative Language API (Gemini): generateContent
// and streamGenerateContent for chat, batchEmbedContents for embeddings.
//
// Translation of the canonical (OpenAI) request:
//   - system and developer messages become systemInstruction, wherever
//     they stand; user turns stay user, assistant turns become model,
//     consecutive turns of one role are merged; tool messages become user
//     turns carrying functionResponse parts;
//   - images must be data: URLs (sent inline): Gemini cannot fetch http(s)
//     image URLs, so those are refused;
//   - logprobs, top_logprobs, audio output and the legacy functions /
//     function_call parameters are refused;
//   - user, parallel_tool_calls, reasoning_effort, stream_options (usage
//     is always reported) and any parameter not named here are ignored.
//
// Refusals are returned as an *Error with Status 400: the client's request
// cannot be served by this upstream, and the message says why.
type gemini struct{}

// DefaultGeminiAPIVersion is the API version path segment used when
// neither the config nor the base URL names one.
const DefaultGeminiAPIVersion = "v1beta"

// geminiSkipSignature is the placeholder thought signature Google documents
// for function calls replayed from a history that lost the real one
// (OpenAI's format has no place to carry it). Gemini 3 models refuse
// replayed function calls without a signature.
const geminiSkipSignature = "skip_thought_signature_validator"

// geminiVersionSegment matches an API version path segment: v1, v1beta,
// v1alpha, v2beta3...
var geminiVersionSegment = regexp.MustCompile(`^v\d+((alpha|beta)\d*)?$`)

// Format implements Translator.
func (gemini) Format() Format { return FormatGemini }

// NewRequest implements Adapter. The base URL is the API host
// ("https://generativelanguage.googleapis.com"), optionally followed by
// the API version ("…/v1beta"); Target.APIVersion, when set, names the
// version. The model is the canonical body's.
func (gemini) NewRequest(ctx context.Context, t Target, ep Endpoint, body []byte) (*http.Request, error) {
	var (
		native any
		model  string
		stream bool
		err    error
	)
	switch ep {
	case Chat:
		native, model, stream, err = geminiChatRequest(body)
	case Embeddings:
		native, model, err = geminiEmbedRequest(body)
	default:
		return nil, fmt.Errorf("gemini: endpoint %q is not supported", ep)
	}
	if err != nil {
		return nil, geminiRefusal(err)
	}
	if model == "" {
		model = t.Model
	}
	model = strings.TrimPrefix(model, "models/")
	if model == "" {
		return nil, errors.New("gemini: no model")
	}
	method := "generateContent"
	switch {
	case ep == Embeddings:
		method = "batchEmbedContents"
	case stream:
		method = "streamGenerateContent"
	}
	u, err := geminiURL(t.BaseURL, t.APIVersion, model, method, stream)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(native)
	if err != nil {
		return nil, fmt.Errorf("gemini: encode request: %w", err)
	}
	return newJSONRequest(ctx, u, t, out)
}

// geminiRefusal turns a request that cannot be translated into an error a
// client may be shown.
func geminiRefusal(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "gemini: " + err.Error()}
}

// geminiURL builds a method's URL:
// {base}/{version}/models/{model}:{method}. A base that already ends in an
// API version keeps it unless version is set; one that names a model
// endpoint is cut back to its base.
func geminiURL(base, version, model, method string, stream bool) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("invalid upstream base URL")
	}
	p := strings.TrimRight(u.Path, "/")
	if i := strings.Index(p+"/", "/models/"); i >= 0 {
		p = p[:i]
	}
	if i := strings.LastIndex(p, "/"); i >= 0 && geminiVersionSegment.MatchString(p[i+1:]) {
		if version == "" {
			version = p[i+1:]
		}
		p = p[:i]
	}
	if version == "" {
		version = DefaultGeminiAPIVersion
	}
	resource := "models/" + model
	if strings.HasPrefix(model, "tunedModels/") {
		resource = model
	}
	u.Path = p + "/" + version + "/" + resource + ":" + method
	u.RawPath = ""
	if stream {
		q := u.Query()
		q.Set("alt", "sse")
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// gmRequest is a GenerateContentRequest.
type gmRequest struct {
	Contents          []gmContent         `json:"contents"`
	SystemInstruction *gmContent          `json:"systemInstruction,omitempty"`
	Tools             []gmTool            `json:"tools,omitempty"`
	ToolConfig        *gmToolConfig       `json:"toolConfig,omitempty"`
	GenerationConfig  *gmGenerationConfig `json:"generationConfig,omitempty"`
}

// gmContent is one turn of a conversation.
type gmContent struct {
	Role  string   `json:"role,omitempty"` // user or model
	Parts []gmPart `json:"parts"`
}

// gmPart is one part of a turn: exactly one of text, inlineData,
// functionCall or functionResponse.
type gmPart struct {
	Text             string              `json:"text,omitempty"`
	Thought          bool                `json:"thought,omitempty"`
	ThoughtSignature string              `json:"thoughtSignature,omitempty"`
	InlineData       *gmBlob             `json:"inlineData,omitempty"`
	FunctionCall     *gmFunctionCall     `json:"functionCall,omitempty"`
	FunctionResponse *gmFunctionResponse `json:"functionResponse,omitempty"`
}

// gmBlob is inline media, base64-encoded.
type gmBlob struct {
	MimeType string `json:"mimeType"`
	Data     string `json:"data"`
}

// gmFunctionCall is a call the model made.
type gmFunctionCall struct {
	ID   string          `json:"id,omitempty"`
	Name string          `json:"name"`
	Args json.RawMessage `json:"args,omitempty"` // an object
}

// gmFunctionResponse is a function's result, sent back to the model.
type gmFunctionResponse struct {
	Name     string          `json:"name"`
	Response json.RawMessage `json:"response"` // an object
}

// gmTool declares functions the model may call.
type gmTool struct {
	FunctionDeclarations []gmFunctionDeclaration `json:"functionDeclarations"`
}

// gmFunctionDeclaration is one callable function. Its parameters are sent
// as parametersJsonSchema, which takes JSON Schema as OpenAI clients write
// it (additionalProperties, $defs...), where parameters takes only
// Gemini's OpenAPI subset.
type gmFunctionDeclaration struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parametersJsonSchema,omitempty"`
}

// gmToolConfig says how the model may call functions.
type gmToolConfig struct {
	FunctionCallingConfig gmFunctionCallingConfig `json:"functionCallingConfig"`
}

// gmFunctionCallingConfig is a function calling mode: NONE, AUTO or ANY.
type gmFunctionCallingConfig struct {
	Mode                 string   `json:"mode"`
	AllowedFunctionNames []string `json:"allowedFunctionNames,omitempty"`
}

// gmGenerationConfig holds the sampling and output options.
type gmGenerationConfig struct {
	Temperature        *float64        `json:"temperature,omitempty"`
	TopP               *float64        `json:"topP,omitempty"`
	MaxOutputTokens    int64           `json:"maxOutputTokens,omitempty"`
	StopSequences      []string        `json:"stopSequences,omitempty"`
	CandidateCount     *int64          `json:"candidateCount,omitempty"`
	Seed               *int64          `json:"seed,omitempty"`
	PresencePenalty    *float64        `json:"presencePenalty,omitempty"`
	FrequencyPenalty   *float64        `json:"frequencyPenalty,omitempty"`
	ResponseMimeType   string          `json:"responseMimeType,omitempty"`
	ResponseJSONSchema json.RawMessage `json:"responseJsonSchema,omitempty"`
}

// geminiChatRequest translates a canonical chat request.
func geminiChatRequest(body []byte) (req *gmRequest, model string, stream bool, err error) {
	cr, err := decodeChat(body, "Gemini", false)
	if err != nil {
		return nil, "", false, err
	}
	req = &gmRequest{}
	if req.SystemInstruction, req.Contents, err = geminiContents(cr.Messages); err != nil {
		return nil, "", false, err
	}
	if req.Tools, err = geminiTools(cr.Tools); err != nil {
		return nil, "", false, err
	}
	if req.Tools != nil {
		if req.ToolConfig, err = geminiToolConfig(cr); err != nil {
			return nil, "", false, err
		}
	}
	if req.GenerationConfig, err = geminiGenerationConfig(cr); err != nil {
		return nil, "", false, err
	}
	return req, cr.Model, cr.Stream, nil
}

// geminiContents translates the messages into a system instruction and
// the conversation's turns.
func geminiContents(msgs []wire.Message) (*gmContent, []gmContent, error) {
	var (
		system   []gmPart
		contents []gmContent
		names    = map[string]string{} // tool call id → function name
	)
	add := func(role string, parts []gmPart) {
		if len(parts) == 0 {
			return
		}
		if n := len(contents); n > 0 && contents[n-1].Role == role {
			contents[n-1].Parts = append(contents[n-1].Parts, parts...)
			return
		}
		contents = append(contents, gmContent{Role: role, Parts: parts})
	}
	for i, m := range msgs {
		var (
			parts []gmPart
			err   error
		)
		switch m.Role {
		case "system", "developer":
			if text := m.Text(); text != "" {
				system = append(system, gmPart{Text: text})
			}
		case "user":
			parts, err = geminiUserParts(m)
			add("user", parts)
		case "assistant":
			parts, err = geminiModelParts(m, names)
			add("model", parts)
		case "tool":
			parts, err = geminiToolResult(m, names)
			add("user", parts)
		default:
			err = fmt.Errorf("role %q is not supported", m.Role)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
	}
	if system == nil {
		return nil, contents, nil
	}
	return &gmContent{Parts: system}, contents, nil
}

// geminiUserParts translates a user message's text and images.
func geminiUserParts(m wire.Message) ([]gmPart, error) {
	cps, err := m.Parts()
	if err != nil {
		return nil, err
	}
	var parts []gmPart
	for _, cp := range cps {
		switch cp.Type {
		case "text":
			if cp.Text != "" {
				parts = append(parts, gmPart{Text: cp.Text})
			}
		case "image_url":
			if cp.ImageURL == nil {
				return nil, errors.New("image_url part without a url")
			}
			blob, err := geminiInlineImage(cp.ImageURL.URL)
			if err != nil {
				return nil, err
			}
			parts = append(parts, gmPart{InlineData: blob})
		default:
			return nil, fmt.Errorf("content part type %q is not supported", cp.Type)
		}
	}
	return parts, nil
}

// geminiInlineImage reads a base64 data: URL. Gemini takes images inline
// (or uploaded through its Files API); it does not fetch URLs.
func geminiInlineImage(u string) (*gmBlob, error) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
			return nil, errors.New("image URLs are not supported: Gemini needs images inline, send the image as a base64 data: URL")
		}
		return nil, errors.New("an image must be a base64 data: URL")
	}
	meta, data, ok := strings.Cut(rest, ",")
	mime, isBase64 := strings.CutSuffix(meta, ";base64")
	if !ok || !isBase64 || mime == "" || data == "" {
		return nil, errors.New("an image data: URL must be data:<mime type>;base64,<data>")
	}
	mime, _, _ = strings.Cut(mime, ";") // drop parameters
	return &gmBlob{MimeType: mime, Data: data}, nil
}

// geminiModelParts translates an assistant message: its text and its tool
// calls, whose names it records for the tool results that follow.
func geminiModelParts(m wire.Message, names map[string]string) ([]gmPart, error) {
	var parts []gmPart
	if text := m.Text(); text != "" {
		parts = append(parts, gmPart{Text: text})
	}
	for j, tc := range m.ToolCalls {
		if tc.Type != "" && tc.Type != "function" {
			return nil, fmt.Errorf("tool_calls[%d]: type %q is not supported", j, tc.Type)
		}
		args, err := geminiArgs(tc.Function.Arguments)
		if err != nil {
			return nil, fmt.Errorf("tool_calls[%d]: %w", j, err)
		}
		names[tc.ID] = tc.Function.Name
		p := gmPart{FunctionCall: &gmFunctionCall{Name: tc.Function.Name, Args: args}}
		if j == 0 {
			p.ThoughtSignature = geminiSkipSignature
		}
		parts = append(parts, p)
	}
	return parts, nil
}

// geminiArgs checks a tool call's arguments: a JSON object, or empty.
func geminiArgs(s string) (json.RawMessage, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return json.RawMessage("{}"), nil
	}
	if !strings.HasPrefix(s, "{") || !json.Valid([]byte(s)) {
		return nil, errors.New("arguments are not a JSON object")
	}
	return json.RawMessage(s), nil
}

// geminiToolResult translates a tool message into a functionResponse part,
// naming the function the answered call called.
func geminiToolResult(m wire.Message, names map[string]string) ([]gmPart, error) {
	name := names[m.ToolCallID]
	if name == "" {
		name = m.Name
	}
	if name == "" {
		return nil, fmt.Errorf("tool message answers no earlier tool call (tool_call_id %q)", m.ToolCallID)
	}
	text := m.Text()
	response := json.RawMessage(strings.TrimSpace(text))
	if !bytes.HasPrefix(response, []byte("{")) || !json.Valid(response) {
		b, err := json.Marshal(map[string]string{"result": text})
		if err != nil {
			return nil, err
		}
		response = b
	}
	return []gmPart{{FunctionResponse: &gmFunctionResponse{Name: name, Response: response}}}, nil
}

// geminiTools translates function tools into one function declarations
// tool.
func geminiTools(tools []wire.Tool) ([]gmTool, error) {
	if len(tools) == 0 {
		return nil, nil
	}
	decls := make([]gmFunctionDeclaration, 0, len(tools))
	for i, t := range tools {
		if t.Type != "function" {
			return nil, fmt.Errorf("tools[%d]: type %q is not supported", i, t.Type)
		}
		d := gmFunctionDeclaration{Name: t.Function.Name, Description: t.Function.Description}
		if isSet(t.Function.Parameters) {
			d.Parameters = t.Function.Parameters
		}
		decls = append(decls, d)
	}
	return []gmTool{{FunctionDeclarations: decls}}, nil
}

// geminiToolConfig translates tool_choice.
func geminiToolConfig(cr wire.ChatRequest) (*gmToolConfig, error) {
	mode, name, err := cr.ToolChoiceMode()
	if err != nil {
		return nil, fmt.Errorf("tool_choice: %w", err)
	}
	fc := gmFunctionCallingConfig{}
	switch mode {
	case "":
		return nil, nil
	case "none":
		fc.Mode = "NONE"
	case "auto":
		fc.Mode = "AUTO"
	case "required":
		fc.Mode = "ANY"
	case "function":
		if name == "" {
			return nil, errors.New("tool_choice: no function name")
		}
		fc.Mode, fc.AllowedFunctionNames = "ANY", []string{name}
	default:
		return nil, fmt.Errorf("tool_choice %q is not supported", mode)
	}
	return &gmToolConfig{FunctionCallingConfig: fc}, nil
}

// geminiGenerationConfig translates the sampling and output options; it
// returns nil when none is set.
func geminiGenerationConfig(cr wire.ChatRequest) (*gmGenerationConfig, error) {
	stop, err := cr.StopSequences()
	if err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	g := gmGenerationConfig{
		Temperature:      cr.Temperature,
		TopP:             cr.TopP,
		MaxOutputTokens:  cr.MaxOutputTokens(),
		StopSequences:    stop,
		CandidateCount:   cr.N,
		Seed:             cr.Seed,
		PresencePenalty:  cr.PresencePenalty,
		FrequencyPenalty: cr.FrequencyPenalty,
	}
	if g.ResponseMimeType, g.ResponseJSONSchema, err = geminiResponseFormat(cr.ResponseFormat); err != nil {
		return nil, err
	}
	if reflect.ValueOf(g).IsZero() {
		return nil, nil
	}
	return &g, nil
}

// geminiResponseFormat translates response_format: JSON output, with the
// schema as given when there is one.
func geminiResponseFormat(raw json.RawMessage) (mime string, schema json.RawMessage, err error) {
	if !isSet(raw) {
		return "", nil, nil
	}
	var rf struct {
		Type       string `json:"type"`
		JSONSchema struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	}
	if err := json.Unmarshal(raw, &rf); err != nil {
		return "", nil, fmt.Errorf("response_format: %w", err)
	}
	switch rf.Type {
	case "", "text":
		return "", nil, nil
	case "json_object":
		return "application/json", nil, nil
	case "json_schema":
		if isSet(rf.JSONSchema.Schema) {
			schema = rf.JSONSchema.Schema
		}
		return "application/json", schema, nil
	}
	return "", nil, fmt.Errorf("response_format type %q is not supported", rf.Type)
}

// gmEmbedRequest is a BatchEmbedContentsRequest.
type gmEmbedRequest struct {
	Requests []gmEmbedContent `json:"requests"`
}

// gmEmbedContent is one EmbedContentRequest.
type gmEmbedContent struct {
	Model                string    `json:"model"`
	Content              gmContent `json:"content"`
	OutputDimensionality *int64    `json:"outputDimensionality,omitempty"`
}

// geminiEmbedRequest translates an embeddings request: one embed request
// per input text. encoding_format is ignored (vectors come back as floats,
// which OpenAI's SDKs accept even when they asked for base64), as is user.
func geminiEmbedRequest(body []byte) (*gmEmbedRequest, string, error) {
	var er wire.EmbeddingRequest
	if err := json.Unmarshal(body, &er); err != nil {
		return nil, "", fmt.Errorf("decode embeddings request: %w", err)
	}
	texts, err := er.Texts()
	if err != nil {
		return nil, "", err
	}
	if len(texts) == 0 {
		return nil, "", errors.New("input must not be empty")
	}
	model := strings.TrimPrefix(er.Model, "models/")
	req := &gmEmbedRequest{Requests: make([]gmEmbedContent, len(texts))}
	for i, text := range texts {
		req.Requests[i] = gmEmbedContent{
			Model:                "models/" + model,
			Content:              gmContent{Parts: []gmPart{{Text: text}}},
			OutputDimensionality: er.Dimensions,
		}
	}
	return req, model, nil
}

// geminiID returns a random identifier with a prefix, e.g. "call_…".
func geminiID(prefix string) string { return prefix + rand.Text() }
