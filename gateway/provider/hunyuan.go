package provider

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// hunyuan speaks Tencent Cloud API 3.0's hunyuan service, version
// 2023-09-01: the action ChatCompletions for chat and GetEmbedding for
// embeddings, each a POST of a JSON body to the API host
// (https://hunyuan.tencentcloudapi.com, or any base URL: its host and path
// are signed as given; the OpenAI-compatible API's URL,
// https://api.hunyuan.cloud.tencent.com/v1, means the API 3.0 host),
// naming the action in X-TC-Action and signed with
// TC3-HMAC-SHA256 (tc3Authorization) by the credential's SecretId
// (Target.Key) and SecretKey (Target.SecretKey). Target.Region, when set,
// is sent as X-TC-Region (the hunyuan actions need none).
//
// Translation of the canonical (OpenAI) request:
//   - the model becomes Model (Target.Model when the body names none);
//   - system and developer messages, wherever they stand, are joined by a
//     blank line into one leading system message (Hunyuan takes a system
//     message only first);
//   - user messages become user messages: text parts are joined by a
//     newline into Content; a message with image_url parts (an http(s) URL
//     or a base64 data: URL, detail ignored) becomes Contents, text and
//     image_url items in order (only hunyuan-vision models take them);
//   - assistant messages keep their text and their tool_calls (Id, Type,
//     Function Name and Arguments); tool messages become tool messages
//     with ToolCallId; consecutive user messages, and consecutive
//     assistant messages, are merged, since Hunyuan wants user and
//     assistant turns to alternate;
//   - temperature, top_p, seed and stop become Temperature, TopP, Seed and
//     Stop (Hunyuan stops after a stop sequence, where OpenAI stops
//     before it); stream becomes Stream;
//   - function tools become Tools, their parameters a JSON string;
//     tool_choice none and auto carry over; a named function, or required
//     with a single tool, becomes ToolChoice custom with that tool as
//     CustomTool.
//
// Silently ignored: max_tokens and max_completion_tokens (ChatCompletions
// has no output cap), presence_penalty, frequency_penalty, logit_bias,
// user, parallel_tool_calls, reasoning_effort, stream_options (usage is
// always reported), message names and any parameter not named here.
// EnableEnhancement (search) is never sent: Hunyuan's default, off,
// applies.
//
// Refused, with an *Error with Status 400 naming the parameter: n > 1,
// response_format other than text, logprobs and top_logprobs, audio output
// (audio, modalities), the legacy functions and function_call, content
// parts other than text and image_url, images that are neither http(s)
// nor data: URLs, tools other than functions, tool_choice required with
// more than one tool, a tool_choice naming no declared function, and tool
// messages without a tool_call_id.
//
// Embeddings: one text is sent as Input, several as InputList (at most
// hunyuanMaxInputs). GetEmbedding takes no model (it always embeds with
// hunyuan-embedding, 1024 dimensions): the model is ignored, dimensions
// other than 1024 and token-array inputs are refused, encoding_format is
// ignored (vectors come back as floats).
type hunyuan struct{}

// Tencent Cloud API 3.0 constants of the hunyuan service.
const (
	// HunyuanAPIVersion is the X-TC-Version of the actions Sluice calls.
	HunyuanAPIVersion = "2023-09-01"
	// hunyuanService is the product name in the signature's credential
	// scope.
	hunyuanService = "hunyuan"
	// hunyuanContentType is the Content-Type of requests, as signed.
	hunyuanContentType = "application/json"
	// hunyuanMaxInputs is GetEmbedding's InputList limit.
	hunyuanMaxInputs = 50
	// hunyuanEmbeddingDims is the length of hunyuan-embedding's vectors.
	hunyuanEmbeddingDims = 1024
)

// Hunyuan's actions.
const (
	hunyuanChatAction  = "ChatCompletions"
	hunyuanEmbedAction = "GetEmbedding"
)

// hunyuanFormat is the wire format of Tencent Cloud API 3.0's hunyuan
// actions.
const hunyuanFormat Format = "hunyuan"

// Format implements Translator.
func (hunyuan) Format() Format { return hunyuanFormat }

// NewRequest implements Adapter.
func (hunyuan) NewRequest(ctx context.Context, t Target, ep Endpoint, body []byte) (*http.Request, error) {
	action, native, err := hunyuanTranslate(ep, body, t.Model)
	if err != nil {
		return nil, err
	}
	if t.Key == "" || t.SecretKey == "" {
		return nil, errors.New("hunyuan: the credential needs a SecretId (key) and a SecretKey (secret_key)")
	}
	u, err := hunyuanURL(t.BaseURL)
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(native)
	if err != nil {
		return nil, fmt.Errorf("hunyuan: encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("hunyuan: build upstream request: %w", err)
	}
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	hunyuanSign(req, u, t, action, payload, time.Now().Unix())
	return req, nil
}

// hunyuanTranslate translates a canonical body into an action's request.
func hunyuanTranslate(ep Endpoint, body []byte, model string) (action string, native any, err error) {
	switch ep {
	case Chat:
		action = hunyuanChatAction
		native, err = hunyuanChatRequest(body, model)
	case Embeddings:
		action = hunyuanEmbedAction
		native, err = hunyuanEmbedRequest(body)
	default:
		return "", nil, fmt.Errorf("hunyuan: endpoint %q is not supported", ep)
	}
	if err != nil {
		return "", nil, hunyuanRefusal(err)
	}
	return action, native, nil
}

// hunyuanRefusal turns a request that cannot be translated into an error a
// client may be shown.
func hunyuanRefusal(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "hunyuan: " + err.Error()}
}

// Hunyuan's two API hosts: API 3.0's, and that of the OpenAI-compatible
// API, which signed credentials never call.
const (
	hunyuanAPIHost    = "hunyuan.tencentcloudapi.com"
	hunyuanOpenAIHost = "api.hunyuan.cloud.tencent.com"
)

// hunyuanURL checks the base URL: an http(s) URL with a host. Its path,
// "/" when empty, is where the request goes (and what is signed). The
// OpenAI-compatible API's URL, the base URL of a channel that also has
// API-key credentials, means API 3.0's host.
func hunyuanURL(base string) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New("hunyuan: invalid upstream base URL")
	}
	if strings.EqualFold(u.Hostname(), hunyuanOpenAIHost) {
		u = &url.URL{Scheme: "https", Host: hunyuanAPIHost}
	}
	if u.Path == "" {
		u.Path, u.RawPath = "/", ""
	}
	return u, nil
}

// hunyuanSign sets the API 3.0 headers of req and signs it: content-type,
// host and x-tc-action are signed, as Tencent's SDKs do.
func hunyuanSign(req *http.Request, u *url.URL, t Target, action string, payload []byte, now int64) {
	h := req.Header
	h.Set("Content-Type", hunyuanContentType)
	h.Set("X-TC-Action", action)
	h.Set("X-TC-Version", HunyuanAPIVersion)
	h.Set("X-TC-Timestamp", strconv.FormatInt(now, 10))
	if t.Region != "" {
		h.Set("X-TC-Region", t.Region)
	}
	h.Set("Authorization", tc3Authorization(t.Key, t.SecretKey, tc3Request{
		Method:    http.MethodPost,
		Path:      u.EscapedPath(),
		Query:     u.RawQuery,
		Headers:   map[string]string{"content-type": hunyuanContentType, "host": u.Host, "x-tc-action": action},
		Payload:   payload,
		Service:   hunyuanService,
		Timestamp: now,
	}))
}

// tc3Algorithm is Tencent Cloud API 3.0's signature method (signature v3).
const tc3Algorithm = "TC3-HMAC-SHA256"

// tc3Request is what a TC3-HMAC-SHA256 signature covers.
type tc3Request struct {
	Method    string
	Path      string            // the canonical URI; "" is "/"
	Query     string            // the canonical query string, "" for a POST
	Headers   map[string]string // the signed headers, by name
	Payload   []byte
	Service   string // the product: "hunyuan" ("cvm" in Tencent's example)
	Timestamp int64  // X-TC-Timestamp, in seconds
}

// tc3Authorization returns the Authorization header of r signed with a
// SecretId and SecretKey, as Tencent Cloud's "Signature v3" document
// (cloud.tencent.com/document/api/213/30654) describes it:
//
//	TC3-HMAC-SHA256 Credential=<SecretId>/<date>/<service>/tc3_request,
//	SignedHeaders=<names>, Signature=<hex>
func tc3Authorization(secretID, secretKey string, r tc3Request) string {
	canonical, signed := r.canonical()
	return tc3Algorithm + " Credential=" + secretID + "/" + r.scope() +
		", SignedHeaders=" + signed + ", Signature=" + tc3Signature(secretKey, r.date(), r.Service, r.stringToSign(canonical))
}

// canonical returns the CanonicalRequest and its SignedHeaders: names and
// values lowercased and trimmed, sorted by name.
func (r tc3Request) canonical() (request, signedHeaders string) {
	names := make([]string, 0, len(r.Headers))
	values := make(map[string]string, len(r.Headers))
	for k, v := range r.Headers {
		k = strings.ToLower(strings.TrimSpace(k))
		names = append(names, k)
		values[k] = strings.ToLower(strings.TrimSpace(v))
	}
	slices.Sort(names)
	var headers strings.Builder
	for _, k := range names {
		headers.WriteString(k + ":" + values[k] + "\n")
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	signedHeaders = strings.Join(names, ";")
	payload := sha256.Sum256(r.Payload)
	request = strings.Join([]string{r.Method, path, r.Query, headers.String(), signedHeaders, hex.EncodeToString(payload[:])}, "\n")
	return request, signedHeaders
}

// date is the UTC date of the timestamp, as the credential scope has it.
func (r tc3Request) date() string { return time.Unix(r.Timestamp, 0).UTC().Format(time.DateOnly) }

// scope is the credential scope: date/service/tc3_request.
func (r tc3Request) scope() string { return r.date() + "/" + r.Service + "/tc3_request" }

// stringToSign returns the StringToSign of a canonical request.
func (r tc3Request) stringToSign(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return tc3Algorithm + "\n" + strconv.FormatInt(r.Timestamp, 10) + "\n" + r.scope() + "\n" + hex.EncodeToString(sum[:])
}

// tc3Signature derives the signing key from the SecretKey, the date and
// the service, and signs the StringToSign with it.
func tc3Signature(secretKey, date, service, stringToSign string) string {
	key := tc3HMAC([]byte("TC3"+secretKey), date)
	key = tc3HMAC(key, service)
	key = tc3HMAC(key, "tc3_request")
	return hex.EncodeToString(tc3HMAC(key, stringToSign))
}

func tc3HMAC(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// hyChatRequest is a ChatCompletions request.
type hyChatRequest struct {
	Model       string      `json:"Model"`
	Messages    []hyMessage `json:"Messages"`
	Stream      bool        `json:"Stream,omitempty"`
	TopP        *float64    `json:"TopP,omitempty"`
	Temperature *float64    `json:"Temperature,omitempty"`
	Tools       []hyTool    `json:"Tools,omitempty"`
	ToolChoice  string      `json:"ToolChoice,omitempty"` // none, auto or custom
	CustomTool  *hyTool     `json:"CustomTool,omitempty"`
	Seed        *int64      `json:"Seed,omitempty"`
	Stop        []string    `json:"Stop,omitempty"`
}

// hyMessage is a message of a request, or of an answer (Message, Delta).
type hyMessage struct {
	Role             string       `json:"Role,omitempty"`
	Content          string       `json:"Content,omitempty"`
	Contents         []hyContent  `json:"Contents,omitempty"`
	ToolCallID       string       `json:"ToolCallId,omitempty"`
	ToolCalls        []hyToolCall `json:"ToolCalls,omitempty"`
	ReasoningContent string       `json:"ReasoningContent,omitempty"` // answers of Hunyuan-T1 models
}

// hyContent is one item of a multimodal message: text or image_url.
type hyContent struct {
	Type     string      `json:"Type"`
	Text     string      `json:"Text,omitempty"`
	ImageURL *hyImageURL `json:"ImageUrl,omitempty"`
}

// hyImageURL is an image: an http(s) URL or a base64 data: URL.
type hyImageURL struct {
	URL string `json:"Url"`
}

// hyTool is a function the model may call.
type hyTool struct {
	Type     string         `json:"Type"` // function
	Function hyToolFunction `json:"Function"`
}

// hyToolFunction declares a function; Parameters is a JSON schema as a
// string.
type hyToolFunction struct {
	Name        string `json:"Name"`
	Parameters  string `json:"Parameters,omitempty"`
	Description string `json:"Description,omitempty"`
}

// hyToolCall is a call the model made. In a stream, the deltas of one
// call share its Id.
type hyToolCall struct {
	ID       string             `json:"Id,omitempty"`
	Type     string             `json:"Type,omitempty"`
	Function hyToolCallFunction `json:"Function"`
	Index    *int               `json:"Index,omitempty"`
}

// hyToolCallFunction is a called function's name and JSON arguments.
type hyToolCallFunction struct {
	Name      string `json:"Name"`
	Arguments string `json:"Arguments"`
}

// hunyuanChatRequest translates a canonical chat request.
func hunyuanChatRequest(body []byte, defaultModel string) (*hyChatRequest, error) {
	cr, err := decodeChat(body, "Hunyuan", true)
	if err != nil {
		return nil, err
	}
	if err := checkTextResponseFormat(cr.ResponseFormat); err != nil {
		return nil, err
	}
	req := &hyChatRequest{
		Model:       cmp.Or(cr.Model, defaultModel),
		Stream:      cr.Stream,
		TopP:        cr.TopP,
		Temperature: cr.Temperature,
		Seed:        cr.Seed,
	}
	if req.Model == "" {
		return nil, errors.New("model: no model named")
	}
	if req.Stop, err = cr.StopSequences(); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	if req.Messages, err = hunyuanMessages(cr.Messages); err != nil {
		return nil, err
	}
	if req.Tools, err = hunyuanTools(cr.Tools); err != nil {
		return nil, err
	}
	if req.ToolChoice, req.CustomTool, err = hunyuanToolChoice(cr, req.Tools); err != nil {
		return nil, err
	}
	return req, nil
}

// hunyuanMessages translates the messages: one leading system message,
// then the conversation with consecutive user (and assistant) messages
// merged.
func hunyuanMessages(msgs []wire.Message) ([]hyMessage, error) {
	var (
		system []string
		out    []hyMessage
	)
	for i, m := range msgs {
		var (
			msg hyMessage
			err error
		)
		switch m.Role {
		case "system", "developer":
			if text := hunyuanText(m); text != "" {
				system = append(system, text)
			}
			continue
		case "user":
			msg, err = hunyuanUserMessage(m)
		case "assistant":
			msg, err = hunyuanAssistantMessage(m)
		case "tool":
			msg, err = hunyuanToolMessage(m)
		default:
			err = fmt.Errorf("role %q is not supported", m.Role)
		}
		if err != nil {
			return nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
		out = hunyuanAppend(out, msg)
	}
	if system != nil {
		out = slices.Insert(out, 0, hyMessage{Role: "system", Content: strings.Join(system, "\n\n")})
	}
	return out, nil
}

// hunyuanText joins a message's text parts with a newline.
func hunyuanText(m wire.Message) string {
	parts, _ := m.Parts()
	var texts []string
	for _, p := range parts {
		if p.Type == "text" && p.Text != "" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n")
}

// hunyuanUserMessage translates a user message: its text as Content, or
// Contents when it holds images.
func hunyuanUserMessage(m wire.Message) (hyMessage, error) {
	parts, err := m.Parts()
	if err != nil {
		return hyMessage{}, err
	}
	var contents []hyContent
	images := false
	for j, p := range parts {
		switch p.Type {
		case "text":
			if p.Text != "" {
				contents = append(contents, hyContent{Type: "text", Text: p.Text})
			}
		case "image_url":
			img, err := hunyuanImage(p.ImageURL)
			if err != nil {
				return hyMessage{}, fmt.Errorf("content[%d]: %w", j, err)
			}
			contents = append(contents, hyContent{Type: "image_url", ImageURL: img})
			images = true
		default:
			return hyMessage{}, fmt.Errorf("content[%d]: content part type %q is not supported", j, p.Type)
		}
	}
	if images {
		return hyMessage{Role: "user", Contents: contents}, nil
	}
	return hyMessage{Role: "user", Content: hunyuanText(m)}, nil
}

// hunyuanImage checks an image URL: Hunyuan fetches http(s) URLs and
// takes base64 data: URLs.
func hunyuanImage(img *wire.ImageURL) (*hyImageURL, error) {
	if img == nil || img.URL == "" {
		return nil, errors.New("image_url part without a url")
	}
	u := img.URL
	switch {
	case strings.HasPrefix(u, "http://"), strings.HasPrefix(u, "https://"):
	case strings.HasPrefix(u, "data:") && strings.Contains(u, ";base64,"):
	default:
		return nil, errors.New("an image must be an http(s) URL or a base64 data: URL")
	}
	return &hyImageURL{URL: u}, nil
}

// hunyuanAssistantMessage translates an assistant message: its text and
// tool calls.
func hunyuanAssistantMessage(m wire.Message) (hyMessage, error) {
	msg := hyMessage{Role: "assistant", Content: hunyuanText(m)}
	for j, tc := range m.ToolCalls {
		if tc.Type != "" && tc.Type != "function" {
			return hyMessage{}, fmt.Errorf("tool_calls[%d]: type %q is not supported", j, tc.Type)
		}
		msg.ToolCalls = append(msg.ToolCalls, hyToolCall{
			ID:       tc.ID,
			Type:     "function",
			Function: hyToolCallFunction{Name: tc.Function.Name, Arguments: tc.Function.Arguments},
		})
	}
	return msg, nil
}

// hunyuanToolMessage translates a tool result.
func hunyuanToolMessage(m wire.Message) (hyMessage, error) {
	if m.ToolCallID == "" {
		return hyMessage{}, errors.New("tool_call_id: a tool message must name the tool call it answers")
	}
	return hyMessage{Role: "tool", ToolCallID: m.ToolCallID, Content: hunyuanText(m)}, nil
}

// hunyuanAppend adds msg to the conversation, merging it into the last
// message when both are user or both are assistant messages.
func hunyuanAppend(out []hyMessage, msg hyMessage) []hyMessage {
	n := len(out)
	if n == 0 || out[n-1].Role != msg.Role || (msg.Role != "user" && msg.Role != "assistant") {
		return append(out, msg)
	}
	last := &out[n-1]
	switch {
	case last.Contents != nil || msg.Contents != nil:
		last.Contents = append(hunyuanContents(*last), hunyuanContents(msg)...)
		last.Content = ""
	case last.Content == "" || msg.Content == "":
		last.Content += msg.Content
	default:
		last.Content += "\n" + msg.Content
	}
	last.ToolCalls = append(last.ToolCalls, msg.ToolCalls...)
	return out
}

// hunyuanContents returns a message's content as Contents items.
func hunyuanContents(m hyMessage) []hyContent {
	if m.Contents != nil {
		return m.Contents
	}
	if m.Content == "" {
		return nil
	}
	return []hyContent{{Type: "text", Text: m.Content}}
}

// hunyuanTools translates function tools.
func hunyuanTools(tools []wire.Tool) ([]hyTool, error) {
	var out []hyTool
	for i, t := range tools {
		if t.Type != "function" {
			return nil, fmt.Errorf("tools[%d]: type %q is not supported", i, t.Type)
		}
		f := hyToolFunction{Name: t.Function.Name, Description: t.Function.Description}
		if isSet(t.Function.Parameters) {
			var b bytes.Buffer
			if err := json.Compact(&b, t.Function.Parameters); err != nil {
				return nil, fmt.Errorf("tools[%d].function.parameters: %w", i, err)
			}
			f.Parameters = b.String()
		}
		out = append(out, hyTool{Type: "function", Function: f})
	}
	return out, nil
}

// hunyuanToolChoice translates tool_choice into ToolChoice and, for a
// forced call, CustomTool. Without tools it sends none.
func hunyuanToolChoice(cr wire.ChatRequest, tools []hyTool) (string, *hyTool, error) {
	mode, name, err := cr.ToolChoiceMode()
	if err != nil {
		return "", nil, fmt.Errorf("tool_choice: %w", err)
	}
	switch mode {
	case "", "none", "auto":
		if len(tools) == 0 {
			return "", nil, nil
		}
		return mode, nil, nil
	case "required":
		if len(tools) != 1 {
			return "", nil, errors.New("tool_choice: required: Hunyuan can force a call of one named function only; name it, or send a single tool")
		}
		return "custom", &tools[0], nil
	case "function":
		for i := range tools {
			if tools[i].Function.Name == name {
				return "custom", &tools[i], nil
			}
		}
		return "", nil, fmt.Errorf("tool_choice: function %q is not among the tools", name)
	}
	return "", nil, fmt.Errorf("tool_choice %q is not supported", mode)
}

// hyEmbedRequest is a GetEmbedding request.
type hyEmbedRequest struct {
	Input     string   `json:"Input,omitempty"`
	InputList []string `json:"InputList,omitempty"`
}

// hunyuanEmbedRequest translates an embeddings request.
func hunyuanEmbedRequest(body []byte) (*hyEmbedRequest, error) {
	var er wire.EmbeddingRequest
	if err := json.Unmarshal(body, &er); err != nil {
		return nil, fmt.Errorf("decode embeddings request: %w", err)
	}
	if er.Dimensions != nil && *er.Dimensions != hunyuanEmbeddingDims {
		return nil, fmt.Errorf("dimensions: Hunyuan's embeddings have %d dimensions", hunyuanEmbeddingDims)
	}
	texts, err := er.Texts()
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	switch {
	case len(texts) == 0:
		return nil, errors.New("input: must not be empty")
	case len(texts) > hunyuanMaxInputs:
		return nil, fmt.Errorf("input: Hunyuan embeds at most %d texts per request, got %d", hunyuanMaxInputs, len(texts))
	case len(texts) == 1:
		return &hyEmbedRequest{Input: texts[0]}, nil
	}
	return &hyEmbedRequest{InputList: texts}, nil
}
