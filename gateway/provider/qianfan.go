package provider

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// qianfan speaks Baidu Qianfan's native ERNIE API (wenxinworkshop): chat
// at {base}/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{endpoint} and
// embeddings at …/wenxinworkshop/embeddings/{endpoint}, each call carrying
// an access_token in its query. The token comes from Baidu's OAuth
// endpoint (client credentials: Target.Key is the api_key, SecretKey the
// secret_key), lives 30 days, and is cached in Target.Tokens; Qianfan
// answers a revoked or expired one with error_code 110 or 111, which
// TokenRefused recognizes, so that the relay fetches a fresh token and
// sends the call once more. (Credentials with an API key alone use
// Qianfan's v2 OpenAI-compatible API instead: type qianfan's own Spec.)
//
// The model picks the endpoint (qianfanEndpoints, the names Baidu's
// console and simple-one-api use: ERNIE-4.0-8K → completions_pro,
// ERNIE-Speed-8K → ernie_speed, …); a model the table does not know is
// its own endpoint, as a custom deployment's is.
//
// Translation of the canonical (OpenAI) request:
//   - system and developer messages are joined into the system field;
//   - user and assistant turns keep their roles, consecutive turns of
//     one role merged (ERNIE wants them alternating); an assistant's tool
//     call becomes its function_call, a tool message a "function"
//     message naming the function;
//   - function tools become functions; tool_choice naming a function
//     becomes tool_choice; none sends no functions;
//   - max_completion_tokens, else max_tokens, becomes max_output_tokens;
//     temperature is clamped to ERNIE's (0, 1]; top_p, stop, user
//     (user_id) and response_format json_object pass through.
//
// Ignored: seed, presence and frequency penalties, logit_bias,
// parallel_tool_calls, reasoning_effort, stream_options (usage is always
// reported). Refused, with an *Error with Status 400: n > 1, logprobs,
// audio, images (the chat API is text-only), JSON schema response formats,
// tools other than functions and the legacy function parameters.
type qianfan struct{}

// qianfanPath is the wenxinworkshop API's path.
const qianfanPath = "/rpc/2.0/ai_custom/v1/wenxinworkshop"

// qianfanMinTemperature is what temperature 0 becomes: ERNIE's range is
// (0, 1].
const qianfanMinTemperature = 0.01

// qianfanEndpoints maps model names, lower case, to their chat endpoints.
var qianfanEndpoints = map[string]string{
	"ernie-4.0-8k":                   "completions_pro",
	"ernie-4.0-8k-latest":            "ernie-4.0-8k-latest",
	"ernie-4.0-8k-preview":           "ernie-4.0-8k-preview",
	"ernie-4.0-8k-0329":              "ernie-4.0-8k-0329",
	"ernie-4.0-8k-0613":              "ernie-4.0-8k-0613",
	"ernie-4.0-turbo-8k":             "ernie-4.0-turbo-8k",
	"ernie-4.0-turbo-8k-preview":     "ernie-4.0-turbo-8k-preview",
	"ernie-3.5-8k":                   "completions",
	"ernie-3.5-8k-preview":           "ernie-3.5-8k-preview",
	"ernie-3.5-8k-0329":              "ernie-3.5-8k-0329",
	"ernie-3.5-128k":                 "ernie-3.5-128k",
	"ernie-3.5-8k-0613":              "ernie-3.5-8k-0613",
	"ernie-3.5-8k-0701":              "ernie-3.5-8k-0701",
	"ernie-speed-8k":                 "ernie_speed",
	"ernie-speed-128k":               "ernie-speed-128k",
	"ernie-lite-8k-0922":             "eb-instant",
	"ernie-lite-8k":                  "ernie-lite-8k",
	"ernie-tiny-8k":                  "ernie-tiny-8k",
	"ernie-novel-8k":                 "ernie-novel-8k",
	"ernie-character-8k":             "ernie-char-8k",
	"ernie-functions-8k":             "ernie-func-8k",
	"qianfan-dynamic-8k":             "qianfan-dynamic-8k",
	"ernie-speed-appbuilder-8k":      "ai_apaas",
	"ernie-lite-appbuilder-8k-0614":  "ai_apaas_lite",
	"gemma-7b-it":                    "gemma_7b_it",
	"yi-34b-chat":                    "yi_34b_chat",
	"mixtral-8x7b-instruct":          "mixtral_8x7b_instruct",
	"llama-2-7b-chat":                "llama_2_7b",
	"qianfan-chinese-llama-2-7b":     "qianfan_chinese_llama_2_7b",
	"llama-2-13b-chat":               "llama_2_13b",
	"qianfan-chinese-llama-2-13b-v1": "qianfan_chinese_llama_2_13b",
	"llama-2-70b-chat":               "llama_2_70b",
	"qianfan-chinese-llama-2-70b":    "qianfan_chinese_llama_2_70b",
	"meta-llama-3-8b-instruct":       "llama_3_8b",
	"meta-llama-3-70b-instruct":      "llama_3_70b",
	"chatglm2-6b-32k":                "chatglm2_6b_32k",
	"xuanyuan-70b-chat-4bit":         "xuanyuan_70b_chat",
	"chatlaw":                        "chatlaw",
	"aquilachat-7b":                  "aquilachat_7b",
	"bloomz-7b":                      "bloomz_7b1",
	"qianfan-bloomz-7b-compressed":   "qianfan_bloomz_7b_compressed",
}

// qianfanEmbedEndpoints maps embedding model names, lower case, to their
// endpoints.
var qianfanEmbedEndpoints = map[string]string{
	"embedding-v1": "embedding-v1",
	"bge-large-zh": "bge_large_zh",
	"bge-large-en": "bge_large_en",
	"tao-8k":       "tao_8k",
}

// qianfanEndpoint returns a model's endpoint.
func qianfanEndpoint(ep Endpoint, model string) string {
	table := qianfanEndpoints
	if ep == Embeddings {
		table = qianfanEmbedEndpoints
	}
	if e, ok := table[strings.ToLower(model)]; ok {
		return e
	}
	return model
}

// Format implements Translator.
func (qianfan) Format() Format { return FormatOpenAI }

// NewRequest implements Adapter.
func (qianfan) NewRequest(ctx context.Context, t Target, ep Endpoint, body []byte) (*http.Request, error) {
	var (
		native any
		err    error
		kind   string
	)
	switch ep {
	case Chat:
		native, err = qianfanChatRequest(body)
		kind = "chat"
	case Embeddings:
		native, err = qianfanEmbedRequest(body)
		kind = "embeddings"
	default:
		return nil, fmt.Errorf("qianfan: endpoint %q is not supported", ep)
	}
	if err != nil {
		return nil, qianfanRefusal(err)
	}
	if t.Model == "" {
		return nil, errors.New("qianfan: no model")
	}
	if t.Key == "" || t.SecretKey == "" {
		return nil, errors.New("qianfan: the credential needs a key (the api_key) and a secret_key")
	}
	base, err := url.Parse(t.BaseURL)
	if err != nil || base.Host == "" {
		return nil, errors.New("qianfan: invalid upstream base URL")
	}
	tok, err := token(ctx, t, "", func(ctx context.Context) (string, time.Duration, error) {
		return qianfanToken(ctx, t, base)
	})
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(native)
	if err != nil {
		return nil, fmt.Errorf("qianfan: encode request: %w", err)
	}
	u := *base
	u.Path = strings.TrimRight(strings.TrimSuffix(strings.TrimRight(u.Path, "/"), qianfanPath), "/") +
		qianfanPath + "/" + kind + "/" + url.PathEscape(qianfanEndpoint(ep, t.Model))
	u.RawPath = ""
	u.RawQuery = url.Values{"access_token": {tok}}.Encode()
	t.Key = "" // the token is the credential here: no Authorization header
	return newJSONRequest(ctx, u.String(), t, out)
}

// qianfanRefusal turns a request that cannot be translated into an error a
// client may be shown.
func qianfanRefusal(err error) error {
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "qianfan: " + err.Error()}
}

// qianfanToken fetches an access token: Baidu's OAuth client-credentials
// grant, POST {token URL}?grant_type=client_credentials&client_id=…&
// client_secret=…, answered {"access_token","expires_in",…} or
// {"error","error_description"}.
func qianfanToken(ctx context.Context, t Target, base *url.URL) (string, time.Duration, error) {
	raw := tokenURL(t)
	if t.TokenURL == "" && base.Host != "" {
		// Baidu's token endpoint is on the API's host (aip.baidubce.com),
		// so a base URL elsewhere (a proxy, a test server) brings it along.
		raw = base.Scheme + "://" + base.Host + "/oauth/2.0/token"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", 0, errors.New("qianfan: invalid token URL")
	}
	u.RawQuery = url.Values{"grant_type": {"client_credentials"}, "client_id": {t.Key}, "client_secret": {t.SecretKey}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return "", 0, fmt.Errorf("qianfan: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	return fetchToken(t, req, "qianfan", func(body []byte) (string, time.Duration, string) {
		var r struct {
			AccessToken      string `json:"access_token"`
			ExpiresIn        int64  `json:"expires_in"`
			Error            string `json:"error"`
			ErrorDescription string `json:"error_description"`
		}
		if json.Unmarshal(body, &r) != nil {
			return "", 0, "unreadable answer"
		}
		if r.AccessToken == "" {
			return "", 0, strings.TrimSpace(r.Error + ": " + r.ErrorDescription)
		}
		return r.AccessToken, time.Duration(r.ExpiresIn) * time.Second, ""
	})
}

// tokenTimeout bounds a token request: token endpoints answer fast, and
// a hung one must not hold calls for longer.
const tokenTimeout = 15 * time.Second

// fetchToken sends a token request with t's client and reads its answer
// with read, which returns the token and its life, or why there is none.
func fetchToken(t Target, req *http.Request, name string, read func([]byte) (string, time.Duration, string)) (string, time.Duration, error) {
	status, body, err := doToken(t, req, name)
	if err != nil {
		return "", 0, err
	}
	tok, ttl, why := read(body)
	if tok == "" {
		return "", 0, fmt.Errorf("%s: token refused (HTTP %d): %s", name, status, why)
	}
	if ttl <= 0 {
		ttl = time.Hour
	}
	return tok, ttl, nil
}

// doToken sends a token request with t's client (the channel's proxy and
// pool), bounded by tokenTimeout, and reads the answer. Its errors never
// carry the request's URL (it may hold secrets).
func doToken(t Target, req *http.Request, name string) (int, []byte, error) {
	client := t.Client
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(req.Context(), tokenTimeout)
	defer cancel()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, fmt.Errorf("%s: token request failed: %w", name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, nil, fmt.Errorf("%s: read token answer: %w", name, err)
	}
	return resp.StatusCode, body, nil
}

// TokenRefused implements TokenAuth: Qianfan reports a bad token with
// error_code 110 (invalid) or 111 (expired), in a 200.
func (qianfan) TokenRefused(ctx context.Context, t Target, req *http.Request, _ int, body []byte) bool {
	var r qfError
	if json.Unmarshal(body, &r) != nil || (r.ErrorCode != 110 && r.ErrorCode != 111) {
		return false
	}
	revoke(ctx, t, "", req.URL.Query().Get("access_token"))
	return true
}

// qfMessage is one ERNIE message.
type qfMessage struct {
	Role         string          `json:"role"` // user, assistant, function
	Content      string          `json:"content"`
	Name         string          `json:"name,omitempty"`
	FunctionCall *qfFunctionCall `json:"function_call,omitempty"`
}

// qfFunctionCall is a function call of the model.
type qfFunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Thoughts  string `json:"thoughts,omitempty"`
}

// qfFunction is a function the model may call.
type qfFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

// qfChatRequest is an ERNIE chat request.
type qfChatRequest struct {
	Messages        []qfMessage     `json:"messages"`
	Stream          bool            `json:"stream,omitempty"`
	System          string          `json:"system,omitempty"`
	Temperature     *float64        `json:"temperature,omitempty"`
	TopP            *float64        `json:"top_p,omitempty"`
	Stop            []string        `json:"stop,omitempty"`
	MaxOutputTokens int64           `json:"max_output_tokens,omitempty"`
	UserID          string          `json:"user_id,omitempty"`
	Functions       []qfFunction    `json:"functions,omitempty"`
	ToolChoice      json.RawMessage `json:"tool_choice,omitempty"`
	ResponseFormat  string          `json:"response_format,omitempty"`
}

// qianfanChatRequest translates a canonical chat request.
func qianfanChatRequest(body []byte) (*qfChatRequest, error) {
	cr, err := decodeChat(body, "qianfan", true)
	if err != nil {
		return nil, err
	}
	out := &qfChatRequest{Stream: cr.Stream, TopP: cr.TopP, UserID: cr.User, MaxOutputTokens: cr.MaxOutputTokens()}
	if cr.Temperature != nil {
		out.Temperature = wire.Ptr(min(max(*cr.Temperature, qianfanMinTemperature), 1))
	}
	if out.Stop, err = cr.StopSequences(); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	if out.ResponseFormat, err = qianfanResponseFormat(cr.ResponseFormat); err != nil {
		return nil, err
	}
	if err := qianfanTools(cr, out); err != nil {
		return nil, err
	}
	var system []string
	names := map[string]string{} // tool call id → function name
	for i, m := range cr.Messages {
		parts, err := m.Parts()
		if err != nil {
			return nil, fmt.Errorf("messages[%d].content: %w", i, err)
		}
		for _, p := range parts {
			if p.Type != "text" {
				return nil, fmt.Errorf("messages[%d].content: %s parts are not supported, ERNIE's chat API takes text", i, p.Type)
			}
		}
		switch m.Role {
		case "system", "developer":
			system = append(system, m.Text())
		case "user":
			out.Messages = qfAppend(out.Messages, qfMessage{Role: "user", Content: m.Text()})
		case "assistant":
			msg := qfMessage{Role: "assistant", Content: m.Text()}
			if len(m.ToolCalls) > 0 {
				tc := m.ToolCalls[0]
				names[tc.ID] = tc.Function.Name
				msg.FunctionCall = &qfFunctionCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments}
			}
			out.Messages = qfAppend(out.Messages, msg)
		case "tool":
			out.Messages = append(out.Messages, qfMessage{Role: "function", Name: cmp.Or(names[m.ToolCallID], m.Name), Content: m.Text()})
		default:
			return nil, fmt.Errorf("messages[%d].role: %q is not supported", i, m.Role)
		}
	}
	if len(out.Messages) == 0 {
		return nil, errors.New("messages: at least one user message is required")
	}
	out.System = strings.Join(system, "\n\n")
	return out, nil
}

// qfAppend appends a message, merging it into the last one when both
// have its role: ERNIE wants user and assistant turns alternating.
func qfAppend(msgs []qfMessage, m qfMessage) []qfMessage {
	if n := len(msgs); n > 0 && msgs[n-1].Role == m.Role && m.Role != "function" && msgs[n-1].FunctionCall == nil && m.FunctionCall == nil {
		msgs[n-1].Content = strings.TrimSpace(msgs[n-1].Content + "\n" + m.Content)
		return msgs
	}
	return append(msgs, m)
}

// qianfanTools translates tools and tool_choice.
func qianfanTools(cr wire.ChatRequest, out *qfChatRequest) error {
	mode, name, err := cr.ToolChoiceMode()
	if err != nil {
		return fmt.Errorf("tool_choice: %w", err)
	}
	if mode == "none" {
		return nil
	}
	for i, tl := range cr.Tools {
		if tl.Type != "function" {
			return fmt.Errorf("tools[%d].type: %q is not supported, only function", i, tl.Type)
		}
		out.Functions = append(out.Functions, qfFunction{Name: tl.Function.Name, Description: tl.Function.Description, Parameters: tl.Function.Parameters})
	}
	if mode == "function" {
		out.ToolChoice, _ = json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": name}})
	}
	return nil
}

// qianfanResponseFormat maps response_format: text, or json_object.
func qianfanResponseFormat(raw json.RawMessage) (string, error) {
	if !isSet(raw) {
		return "", nil
	}
	var rf struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &rf); err != nil {
		return "", fmt.Errorf("response_format: %w", err)
	}
	switch rf.Type {
	case "", "text":
		return "", nil
	case "json_object":
		return "json_object", nil
	}
	return "", fmt.Errorf("response_format: type %q is not supported, only text and json_object", rf.Type)
}

// qianfanEmbedRequest translates an embeddings request.
func qianfanEmbedRequest(body []byte) (any, error) {
	var r wire.EmbeddingRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode embeddings request: %w", err)
	}
	texts, err := r.Texts()
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	if r.Dimensions != nil {
		return nil, errors.New("dimensions: Qianfan's embedding models have fixed dimensions")
	}
	return struct {
		Input  []string `json:"input"`
		UserID string   `json:"user_id,omitempty"`
	}{texts, r.User}, nil
}
