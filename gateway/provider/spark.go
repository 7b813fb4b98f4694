package provider

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// spark speaks iFlytek Spark's native WebSocket chat API: one signed
// WebSocket per call, one request frame, answer frames until the one with
// header.status 2. It is an Exchanger: there is no HTTP request to build.
// Chat only: the WebSocket API has no embeddings.
//
// The model (Target.Model, case-insensitive) picks the endpoint and the
// domain (see sparkModels): lite, spark-lite and general are /v1.1/chat
// "lite"; spark-v2.0 and generalv2 /v2.1/chat "generalv2"; pro, spark-pro
// and generalv3 /v3.1/chat "generalv3"; pro-128k and spark-pro-128k
// /chat/pro-128k "pro-128k"; max, spark-max, spark3.5-max and generalv3.5
// /v3.5/chat "generalv3.5"; max-32k and spark-max-32k /chat/max-32k
// "max-32k"; 4.0ultra, ultra, spark-4.0-ultra and spark4.0-ultra
// /v4.0/chat "4.0Ultra". The path is appended to the base URL
// (wss://spark-api.xf-yun.com by default; http and https mean ws and wss)
// unless the base URL already names a chat endpoint (…/v3.5/chat), which
// is then called as is; at such a URL a model the table does not know is
// sent as the domain itself (a fine-tuned or industry model).
//
// Translation of the canonical (OpenAI) request:
//   - system and developer messages, wherever they stand, are joined by a
//     blank line into one leading system message;
//   - user, assistant and tool messages keep their roles, their text parts
//     joined by a newline; messages left without text are dropped;
//   - an assistant's tool_calls are appended to its text as JSON lines
//     {"function_call":{"name":…,"arguments":…}}: Spark's messages carry
//     text only;
//   - tool messages become role "tool" messages with the result's text;
//   - function tools become payload.functions.text; tool_choice none sends
//     no functions; a named function sends that function only; auto and
//     required send them all (Spark has no way to force a call);
//   - max_completion_tokens, else max_tokens, becomes max_tokens;
//   - temperature is clamped to Spark's range, (0, 1]: 0 and below become
//     0.01 with top_k 1 (greedy), above 1 becomes 1;
//   - user becomes header.uid (hashed when longer than Spark's 32
//     characters), else "sluice".
//
// Silently ignored: stop (Spark has no stop sequences), top_p, seed,
// presence_penalty, frequency_penalty, logit_bias, parallel_tool_calls,
// reasoning_effort, stream_options (usage is always reported), message
// names, tool_call_id and any parameter not named here.
//
// Refused, with an *Error with Status 400: n > 1, response_format other
// than text, logprobs and top_logprobs, audio output (audio, modalities),
// the legacy functions and function_call, content parts other than text
// (images included: the chat API is text-only), tools other than
// functions, and embeddings.
type spark struct{}

// sparkDefaultBaseURL is iFlytek's WebSocket API host.
const sparkDefaultBaseURL = "wss://spark-api.xf-yun.com"

// sparkReadLimit caps one answer frame.
const sparkReadLimit = 8 << 20

// sparkDefaultUID is header.uid when the request names no user.
const sparkDefaultUID = "sluice"

// sparkMinTemperature is the temperature sent for 0: Spark's range is
// (0, 1].
const sparkMinTemperature = 0.01

// sparkModel is a model's endpoint path and domain.
type sparkModel struct{ path, domain string }

// sparkModels maps model names, lower case, to their endpoint and domain.
var sparkModels = map[string]sparkModel{
	"lite":            {"/v1.1/chat", "lite"},
	"spark-lite":      {"/v1.1/chat", "lite"},
	"general":         {"/v1.1/chat", "lite"},
	"spark-v2.0":      {"/v2.1/chat", "generalv2"},
	"generalv2":       {"/v2.1/chat", "generalv2"},
	"pro":             {"/v3.1/chat", "generalv3"},
	"spark-pro":       {"/v3.1/chat", "generalv3"},
	"generalv3":       {"/v3.1/chat", "generalv3"},
	"pro-128k":        {"/chat/pro-128k", "pro-128k"},
	"spark-pro-128k":  {"/chat/pro-128k", "pro-128k"},
	"max":             {"/v3.5/chat", "generalv3.5"},
	"spark-max":       {"/v3.5/chat", "generalv3.5"},
	"spark3.5-max":    {"/v3.5/chat", "generalv3.5"},
	"generalv3.5":     {"/v3.5/chat", "generalv3.5"},
	"max-32k":         {"/chat/max-32k", "max-32k"},
	"spark-max-32k":   {"/chat/max-32k", "max-32k"},
	"4.0ultra":        {"/v4.0/chat", "4.0Ultra"},
	"ultra":           {"/v4.0/chat", "4.0Ultra"},
	"spark-4.0-ultra": {"/v4.0/chat", "4.0Ultra"},
	"spark4.0-ultra":  {"/v4.0/chat", "4.0Ultra"},
}

// Format returns Spark's format. (spark is not a Translator: its answers
// come back through Exchange, already in OpenAI form.)
func (spark) Format() Format { return FormatSpark }

// NewRequest implements Adapter. It is never called: Spark is a WebSocket
// exchange, see Exchange.
func (spark) NewRequest(context.Context, Target, Endpoint, []byte) (*http.Request, error) {
	return nil, errors.New("spark: the WebSocket API has no HTTP request: use Exchange")
}

// Exchange implements Exchanger: it dials the model's endpoint, sends the
// translated request and reads the answer. A refusal by Spark (an HTTP
// status instead of the upgrade, or an error frame before any content) is
// a Reply with the mapped status and an OpenAI error body; a request that
// cannot be translated is an *Error; a network failure is any other error.
// A streamed Reply's Stream is an io.Closer: Close releases the socket.
func (spark) Exchange(ctx context.Context, client *http.Client, t Target, ep Endpoint, body []byte, stream bool) (*Reply, error) {
	switch ep {
	case Chat:
	case Embeddings:
		return nil, &Error{Status: http.StatusBadRequest, Type: "invalid_request_error",
			Message: "spark: embeddings are not supported by Spark's WebSocket API"}
	default:
		return nil, fmt.Errorf("spark: endpoint %q is not supported", ep)
	}
	u, domain, err := sparkEndpoint(t.BaseURL, t.Model)
	if err != nil {
		return nil, err
	}
	req, err := sparkChatRequest(body, t.AppID, domain)
	if err != nil {
		return nil, sparkRefusal(err)
	}
	if t.AppID == "" || t.Key == "" || t.APISecret == "" {
		return nil, errors.New("spark: the credential needs an app_id, an api_secret and a key (the API key)")
	}
	frame, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("spark: encode request: %w", err)
	}
	signed := sparkSign(u, t.Key, t.APISecret, time.Now())
	conn, reply, err := sparkDial(ctx, client, u, signed, t.Headers)
	if conn == nil {
		return reply, err
	}
	conn.SetReadLimit(sparkReadLimit)
	c := &sparkConn{ctx: ctx, conn: conn}
	if err := conn.Write(ctx, websocket.MessageText, frame); err != nil {
		c.abort()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("spark: send request: %w", ctx.Err())
		}
		return nil, fmt.Errorf("spark: send request: %w", sparkScrub(err, signed))
	}
	first, err := c.read()
	if err != nil {
		c.abort()
		return nil, err
	}
	if first.Header.Code != 0 {
		c.finish()
		return sparkErrorReply(first.Header), nil
	}
	if stream {
		return &Reply{Status: http.StatusOK, Stream: newSparkStream(c, first, t.Model)}, nil
	}
	return c.collect(first, t.Model)
}

// sparkEndpoint returns the chat endpoint URL (unsigned) and the domain
// of a model at a base URL.
func sparkEndpoint(base, model string) (*url.URL, string, error) {
	if base == "" {
		base = sparkDefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, "", errors.New("spark: invalid upstream base URL")
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return nil, "", fmt.Errorf("spark: upstream base URL scheme %q, want wss, ws, https or http", u.Scheme)
	}
	p := strings.TrimRight(u.Path, "/")
	explicit := sparkIsChatPath(p)
	m, known := sparkModels[strings.ToLower(strings.TrimSpace(model))]
	switch {
	case known && explicit:
	case known:
		p += m.path
	case explicit && strings.TrimSpace(model) != "":
		m.domain = strings.TrimSpace(model)
	default:
		return nil, "", &Error{Status: http.StatusBadRequest, Type: "invalid_request_error",
			Message: fmt.Sprintf("spark: unknown model %q: Spark's WebSocket API serves %s", model, sparkKnownModels())}
	}
	u.Path, u.RawPath, u.RawQuery, u.Fragment = p, "", "", ""
	return u, m.domain, nil
}

// sparkIsChatPath reports whether a URL path already names a chat
// endpoint: …/chat, …/chat_kjwx or …/chat/pro-128k.
func sparkIsChatPath(p string) bool {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	n := len(segs)
	last := segs[n-1]
	return last == "chat" || strings.HasPrefix(last, "chat_") || (n >= 2 && segs[n-2] == "chat")
}

// sparkKnownModels lists the model names sparkModels knows.
func sparkKnownModels() string {
	var names []string
	for name := range sparkModels {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// sparkSign returns the endpoint URL signed as iFlytek documents it: a
// query with authorization, date and host, where authorization is the
// base64 of `api_key="…", algorithm="hmac-sha256", headers="host date
// request-line", signature="…"` and signature the base64 HMAC-SHA256
// under the API secret of "host: {host}\ndate: {date}\nGET {path}
// HTTP/1.1". The result holds secrets: never log it or put it in errors.
func sparkSign(u *url.URL, key, secret string, now time.Time) string {
	date := now.UTC().Format(http.TimeFormat)
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "host: %s\ndate: %s\nGET %s HTTP/1.1", u.Host, date, u.EscapedPath())
	signature := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	auth := fmt.Sprintf(`api_key="%s", algorithm="hmac-sha256", headers="host date request-line", signature="%s"`, key, signature)
	s := *u
	s.RawQuery = url.Values{
		"authorization": {base64.StdEncoding.EncodeToString([]byte(auth))},
		"date":          {date},
		"host":          {u.Host},
	}.Encode()
	return s.String()
}

// sparkDial opens the WebSocket. A handshake answered with an HTTP status
// is a Reply; a failure to connect is an error that names the host but
// never the signed URL.
func sparkDial(ctx context.Context, client *http.Client, u *url.URL, signed string, headers map[string]string) (*websocket.Conn, *Reply, error) {
	h := make(http.Header, len(headers))
	for k, v := range headers {
		h.Set(k, v)
	}
	conn, resp, err := websocket.Dial(ctx, signed, &websocket.DialOptions{HTTPClient: client, HTTPHeader: h})
	if err == nil {
		return conn, nil, nil
	}
	if ctx.Err() != nil {
		return nil, nil, fmt.Errorf("spark: connect to %s: %w", u.Host, ctx.Err())
	}
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		var body []byte
		if resp.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
		}
		return nil, sparkHandshakeReply(resp.StatusCode, body), nil
	}
	return nil, nil, fmt.Errorf("spark: connect to %s: %w", u.Host, sparkScrub(err, signed))
}

// sparkSafeError is an error whose message was cleaned of the signed URL.
// It unwraps to the transport's cause (a *net.OpError, say), never to the
// *url.Error that carries the URL.
type sparkSafeError struct {
	msg   string
	cause error
}

func (e *sparkSafeError) Error() string { return e.msg }
func (e *sparkSafeError) Unwrap() error { return e.cause }

// sparkScrub returns err without the signed URL's secrets: a *url.Error in
// its chain is replaced by its cause, and the signed query is cut out of
// the message wherever it still appears (the cause is then dropped from
// the chain, as it shows them too).
func sparkScrub(err error, signed string) error {
	var (
		ue    *url.Error
		cause error
	)
	msg := err.Error()
	if errors.As(err, &ue) {
		cause = ue.Err
		msg = ue.Err.Error()
	}
	clean := msg
	if su, perr := url.Parse(signed); perr == nil && su.RawQuery != "" {
		clean = strings.ReplaceAll(clean, su.RawQuery, "REDACTED")
		if v := su.Query().Get("authorization"); v != "" {
			clean = strings.ReplaceAll(clean, url.QueryEscape(v), "REDACTED")
			clean = strings.ReplaceAll(clean, v, "REDACTED")
		}
	}
	if clean != msg {
		cause = nil // it shows the secrets too
	}
	return &sparkSafeError{msg: clean, cause: cause}
}

// sparkRefusal turns a request that cannot be translated into an error a
// client may be shown.
func sparkRefusal(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "spark: " + err.Error()}
}

// spRequest is the request frame.
type spRequest struct {
	Header struct {
		AppID string `json:"app_id"`
		UID   string `json:"uid"`
	} `json:"header"`
	Parameter struct {
		Chat spChat `json:"chat"`
	} `json:"parameter"`
	Payload struct {
		Message struct {
			Text []spMessage `json:"text"`
		} `json:"message"`
		Functions *spFunctions `json:"functions,omitempty"`
	} `json:"payload"`
}

// spChat is the request's chat parameters.
type spChat struct {
	Domain      string   `json:"domain"`
	Temperature *float64 `json:"temperature,omitempty"`
	MaxTokens   *int64   `json:"max_tokens,omitempty"`
	TopK        *int     `json:"top_k,omitempty"`
}

// spMessage is one message of the conversation.
type spMessage struct {
	Role    string `json:"role"` // system, user, assistant or tool
	Content string `json:"content"`
}

// spFunctions lists the functions the model may call.
type spFunctions struct {
	Text []spFunction `json:"text"`
}

// spFunction is a function the model may call.
type spFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

// sparkChatRequest translates a canonical chat request into a request
// frame for domain.
func sparkChatRequest(body []byte, appID, domain string) (*spRequest, error) {
	cr, err := decodeChat(body, "Spark", true)
	if err != nil {
		return nil, err
	}
	if err := checkTextResponseFormat(cr.ResponseFormat); err != nil {
		return nil, err
	}
	req := &spRequest{}
	req.Header.AppID = appID
	req.Header.UID = sparkUID(cr.User)
	req.Parameter.Chat.Domain = domain
	if cr.Temperature != nil {
		t := min(*cr.Temperature, 1)
		if t <= 0 {
			t = sparkMinTemperature
			req.Parameter.Chat.TopK = wire.Ptr(1)
		}
		req.Parameter.Chat.Temperature = &t
	}
	if n := cr.MaxOutputTokens(); n > 0 {
		req.Parameter.Chat.MaxTokens = &n
	}
	msgs, err := sparkMessages(cr.Messages)
	if err != nil {
		return nil, err
	}
	req.Payload.Message.Text = msgs
	if req.Payload.Functions, err = sparkFunctions(cr); err != nil {
		return nil, err
	}
	return req, nil
}

// sparkUID is header.uid: the request's user, hashed to Spark's 32
// characters when longer.
func sparkUID(user string) string {
	switch {
	case user == "":
		return sparkDefaultUID
	case len(user) <= 32:
		return user
	}
	sum := sha256.Sum256([]byte(user))
	return hex.EncodeToString(sum[:16])
}

// sparkMessages translates the conversation: one leading system message,
// then the others in order.
func sparkMessages(msgs []wire.Message) ([]spMessage, error) {
	var (
		system []string
		out    []spMessage
	)
	for i, m := range msgs {
		var (
			text string
			err  error
		)
		switch m.Role {
		case "system", "developer":
			if text, err = sparkText(m); text != "" {
				system = append(system, text)
			}
			text = ""
		case "user", "tool":
			text, err = sparkText(m)
		case "assistant":
			text, err = sparkAssistantText(m)
		default:
			err = fmt.Errorf("role %q is not supported", m.Role)
		}
		if err != nil {
			return nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
		if text != "" {
			out = append(out, spMessage{Role: m.Role, Content: text})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("messages: no user, assistant or tool message with text: Spark needs at least one")
	}
	if len(system) > 0 {
		out = slices.Insert(out, 0, spMessage{Role: "system", Content: strings.Join(system, "\n\n")})
	}
	return out, nil
}

// sparkText returns a message's text parts joined by newlines; other
// parts are refused (refusal parts are dropped).
func sparkText(m wire.Message) (string, error) {
	parts, err := m.Parts()
	if err != nil {
		return "", err
	}
	var texts []string
	for j, p := range parts {
		switch p.Type {
		case "text":
			if p.Text != "" {
				texts = append(texts, p.Text)
			}
		case "refusal":
		case "image_url":
			return "", fmt.Errorf("content[%d]: images are not supported: Spark's chat API is text-only", j)
		default:
			return "", fmt.Errorf("content[%d]: content part type %q is not supported: Spark's chat API is text-only", j, p.Type)
		}
	}
	return strings.Join(texts, "\n"), nil
}

// sparkAssistantText returns an assistant message's text followed by its
// tool calls, one JSON line each.
func sparkAssistantText(m wire.Message) (string, error) {
	text, err := sparkText(m)
	if err != nil {
		return "", err
	}
	lines := []string{}
	if text != "" {
		lines = append(lines, text)
	}
	for j, tc := range m.ToolCalls {
		if tc.Type != "" && tc.Type != "function" {
			return "", fmt.Errorf("tool_calls[%d]: type %q is not supported", j, tc.Type)
		}
		var call struct {
			FunctionCall struct {
				Name      string `json:"name"`
				Arguments any    `json:"arguments"`
			} `json:"function_call"`
		}
		call.FunctionCall.Name = tc.Function.Name
		call.FunctionCall.Arguments = tc.Function.Arguments
		if args := strings.TrimSpace(tc.Function.Arguments); json.Valid([]byte(args)) {
			call.FunctionCall.Arguments = json.RawMessage(args)
		}
		b, err := json.Marshal(call)
		if err != nil {
			return "", fmt.Errorf("tool_calls[%d]: %w", j, err)
		}
		lines = append(lines, string(b))
	}
	return strings.Join(lines, "\n"), nil
}

// sparkEmptySchema is the parameters of a function without any.
var sparkEmptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

// sparkFunctions translates function tools and tool_choice: none sends no
// functions, a named function that function only.
func sparkFunctions(cr wire.ChatRequest) (*spFunctions, error) {
	mode, name, err := cr.ToolChoiceMode()
	if err != nil {
		return nil, fmt.Errorf("tool_choice: %w", err)
	}
	switch mode {
	case "", "none", "auto", "required", "function":
	default:
		return nil, fmt.Errorf("tool_choice: %q is not supported", mode)
	}
	if len(cr.Tools) == 0 || mode == "none" {
		return nil, nil
	}
	var out []spFunction
	for i, t := range cr.Tools {
		if t.Type != "function" {
			return nil, fmt.Errorf("tools[%d]: type %q is not supported", i, t.Type)
		}
		if t.Function.Name == "" {
			return nil, fmt.Errorf("tools[%d]: function without a name", i)
		}
		if mode == "function" && t.Function.Name != name {
			continue
		}
		params := t.Function.Parameters
		if !isSet(params) {
			params = sparkEmptySchema
		}
		out = append(out, spFunction{Name: t.Function.Name, Description: t.Function.Description, Parameters: params})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("tool_choice: function %q is not among the tools", name)
	}
	return &spFunctions{Text: out}, nil
}
