package mock

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// iFlytek Spark's WebSocket chat API: GET /v1.1/chat (domain lite),
// /v3.1/chat (generalv3), /chat/pro-128k (pro-128k), /v3.5/chat
// (generalv3.5), /chat/max-32k (max-32k) or /v4.0/chat (4.0Ultra),
// upgraded to a WebSocket. (Spark's OpenAI-compatible HTTP API is the
// OpenAI format: POST /v1/chat/completions with the API password as the
// bearer key.)
//
// With Config.Spark set, the URL must be signed as iFlytek documents it
// (see SparkURL): a missing authorization is 401 {"message":"Unauthorized"},
// an unreadable one 401 "HMAC signature cannot be verified", a wrong
// signature, key or host 401 "HMAC signature does not match", a date more
// than 300 s off 403. The client then sends one request frame; the mock
// answers with frames {header{code,message,sid,status},
// payload{choices{status,seq,text[…]},usage}} — status 0 first, 1 in
// between, 2 last, the last one carrying payload.usage.text — and closes
// the connection. Errors are a frame with a nonzero header.code and
// status 2, then a close: 10003 unreadable frame, 10163 invalid
// parameters, 10404 domain not served at this URL, 11200 app_id not the
// signing key's, 10012 injected failure, 11202 injected rate limit.

// SparkKey is one set of iFlytek credentials: the AppID request frames
// carry and the APIKey and APISecret that sign the URL.
type SparkKey struct{ AppID, APIKey, APISecret string }

// Spark protocol constants.
const (
	// sparkMaxSkew is how far the signed date may be from the clock.
	sparkMaxSkew = 300 * time.Second
	// sparkIdleTimeout is how long the server waits for the request
	// frame, as iFlytek does.
	sparkIdleTimeout = 60 * time.Second
	sparkAlgorithm   = "hmac-sha256"
	sparkHeaders     = "host date request-line"
)

// Spark error codes the mock sends in header.code.
const (
	sparkBadFrame     = 10003 // the request frame is not valid JSON
	sparkInternal     = 10012 // engine internal error
	sparkBadParameter = 10163 // the request fails the schema check
	sparkWrongDomain  = 10404 // parameter.chat.domain not served at this URL
	sparkNoAuth       = 11200 // app_id not authorized for the key
	sparkRateLimited  = 11202 // per-second rate limit exceeded
)

// sparkDomain returns the domain a Spark chat path serves, or "".
func sparkDomain(p string) string {
	for _, e := range [...]struct{ path, domain string }{
		{"/v1.1/chat", "lite"},
		{"/v3.1/chat", "generalv3"},
		{"/chat/pro-128k", "pro-128k"},
		{"/v3.5/chat", "generalv3.5"},
		{"/chat/max-32k", "max-32k"},
		{"/v4.0/chat", "4.0Ultra"},
	} {
		if strings.HasSuffix(p, e.path) {
			return e.domain
		}
	}
	return ""
}

// SparkURL returns base+path signed for iFlytek's WebSocket API with
// apiKey and apiSecret at time now. base is a ws://, wss://, http:// or
// https:// URL (http maps to ws, https to wss), possibly with a path
// prefix; path is the chat path, such as "/v3.5/chat". The query holds
// authorization (base64 of `api_key="…", algorithm="hmac-sha256",
// headers="host date request-line", signature="…"`), date (RFC 1123, GMT)
// and host, where signature is the base64 HMAC-SHA256 under apiSecret of
// "host: {host}\ndate: {date}\nGET {path} HTTP/1.1".
func SparkURL(base, path, apiKey, apiSecret string, now time.Time) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("spark url: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("spark url: scheme %q, want ws or wss", u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("spark url: no host in %q", base)
	}
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("spark url: path %q does not start with /", path)
	}
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawPath = ""
	date := now.UTC().Format(http.TimeFormat)
	auth := fmt.Sprintf(`api_key="%s", algorithm="%s", headers="%s", signature="%s"`,
		apiKey, sparkAlgorithm, sparkHeaders, sparkSignature(apiSecret, u.Host, date, u.Path))
	u.RawQuery = url.Values{
		"authorization": {base64.StdEncoding.EncodeToString([]byte(auth))},
		"date":          {date},
		"host":          {u.Host},
	}.Encode()
	return u.String(), nil
}

// sparkSignature is the base64 HMAC-SHA256 of the signed request line.
func sparkSignature(secret, host, date, path string) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "host: %s\ndate: %s\nGET %s HTTP/1.1", host, date, path)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// sparkAuthError is a rejected handshake: its status and message.
type sparkAuthError struct {
	status  int
	message string
}

func (e *sparkAuthError) Error() string { return e.message }

// Handshake rejections, with iFlytek's messages.
var (
	errSparkNoAuthorization = &sparkAuthError{http.StatusUnauthorized, "Unauthorized"}
	errSparkUnverifiable    = &sparkAuthError{http.StatusUnauthorized, "HMAC signature cannot be verified"}
	errSparkMismatch        = &sparkAuthError{http.StatusUnauthorized, "HMAC signature does not match"}
	errSparkDate            = &sparkAuthError{http.StatusForbidden,
		"HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"}
)

// sparkAuthenticate checks r's signed URL against the configured keys at
// time now and returns the key that signed it; nil, nil when no keys are
// configured.
func (s *Server) sparkAuthenticate(r *http.Request, now time.Time) (*SparkKey, error) {
	keys := s.conf().Spark
	if len(keys) == 0 {
		return nil, nil
	}
	q := r.URL.Query()
	if q.Get("authorization") == "" {
		return nil, errSparkNoAuthorization
	}
	raw, err := base64.StdEncoding.DecodeString(q.Get("authorization"))
	if err != nil {
		return nil, errSparkUnverifiable
	}
	params := parseSparkAuthorization(string(raw))
	if params["algorithm"] != sparkAlgorithm || params["headers"] != sparkHeaders ||
		params["api_key"] == "" || params["signature"] == "" {
		return nil, errSparkUnverifiable
	}
	date := q.Get("date")
	t, err := http.ParseTime(date)
	if err != nil {
		if t, err = time.Parse(time.RFC1123, date); err != nil {
			return nil, errSparkDate
		}
	}
	if d := now.Sub(t); d > sparkMaxSkew || d < -sparkMaxSkew {
		return nil, errSparkDate
	}
	var key *SparkKey
	for i := range keys {
		if keys[i].APIKey == params["api_key"] {
			key = &keys[i]
		}
	}
	if key == nil {
		return nil, errSparkMismatch
	}
	host := q.Get("host")
	want := sparkSignature(key.APISecret, host, date, r.URL.Path)
	if host != r.Host || !hmac.Equal([]byte(want), []byte(params["signature"])) {
		return nil, errSparkMismatch
	}
	return key, nil
}

// parseSparkAuthorization reads `k1="v1", k2="v2"` pairs.
func parseSparkAuthorization(s string) map[string]string {
	params := make(map[string]string)
	for item := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if ok {
			params[k] = strings.Trim(v, `"`)
		}
	}
	return params
}

// Frame shapes.

// sparkRequest is the request frame.
type sparkRequest struct {
	Header struct {
		AppID string `json:"app_id"`
		UID   string `json:"uid"`
	} `json:"header"`
	Parameter struct {
		Chat struct {
			Domain    string `json:"domain"`
			MaxTokens *int   `json:"max_tokens"`
		} `json:"chat"`
	} `json:"parameter"`
	Payload struct {
		Message struct {
			Text []sparkMessage `json:"text"`
		} `json:"message"`
		Functions *struct {
			Text []sparkFunction `json:"text"`
		} `json:"functions"`
	} `json:"payload"`
}

type sparkMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type sparkFunction struct {
	Name       string          `json:"name"`
	Parameters json.RawMessage `json:"parameters"`
}

// sparkFrame is a response frame; error frames have no payload.
type sparkFrame struct {
	Header  sparkHeader   `json:"header"`
	Payload *sparkPayload `json:"payload,omitempty"`
}

type sparkHeader struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Sid     string `json:"sid"`
	Status  int    `json:"status"`
}

type sparkPayload struct {
	Choices sparkChoices `json:"choices"`
	Usage   *sparkUsage  `json:"usage,omitempty"`
}

type sparkChoices struct {
	Status int         `json:"status"`
	Seq    int         `json:"seq"`
	Text   []sparkText `json:"text"`
}

type sparkText struct {
	Content      string             `json:"content"`
	Role         string             `json:"role"`
	Index        int                `json:"index"`
	FunctionCall *sparkFunctionCall `json:"function_call,omitempty"`
}

// sparkFunctionCall is a function call; Arguments is a JSON object text.
type sparkFunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type sparkUsage struct {
	Text sparkUsageText `json:"text"`
}

type sparkUsageText struct {
	QuestionTokens   int `json:"question_tokens"`
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// serveSpark answers a Spark WebSocket call: latency, the signed URL, the
// upgrade, then one exchange.
func (s *Server) serveSpark(w http.ResponseWriter, r *http.Request, c *call, domain string) {
	if !sleep(r.Context(), c.delay) {
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"message": "Method Not Allowed"})
		return
	}
	key, err := s.sparkAuthenticate(r, time.Now())
	var ae *sparkAuthError
	if errors.As(err, &ae) {
		writeJSON(w, ae.status, map[string]string{"message": ae.message})
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept answered the handshake
	}
	defer conn.CloseNow()
	conn.SetReadLimit(maxBody)
	sw := &sparkWriter{
		conn:     conn,
		sid:      "cht000" + randomString(c.rng, hexDigits, 5) + "@dx" + randomString(c.rng, hexDigits, 16),
		interval: s.conf().ChunkInterval,
	}
	s.sparkExchange(r.Context(), sw, c, key, domain)
}

// sparkExchange reads the request frame and answers it.
func (s *Server) sparkExchange(ctx context.Context, sw *sparkWriter, c *call, key *SparkKey, domain string) {
	rctx, cancel := context.WithTimeout(ctx, sparkIdleTimeout)
	_, data, err := sw.conn.Read(rctx)
	cancel()
	if err != nil {
		return // the client left or sent nothing
	}
	sw.ctx = sw.conn.CloseRead(ctx)
	switch s.drawFault(c) {
	case failureFault:
		sw.fail(sparkInternal, "EngineInternalError: the engine failed to answer (injected by the mock)")
		return
	case rateLimitFault:
		sw.fail(sparkRateLimited, "AppIdQpsOverFlowError: per-second rate limit exceeded (injected by the mock)")
		return
	}
	var req sparkRequest
	if err := json.Unmarshal(data, &req); err != nil {
		sw.fail(sparkBadFrame, "invalid request frame: "+err.Error())
		return
	}
	p, code, msg := s.planSpark(&req, key, domain)
	if code != 0 {
		sw.fail(code, msg)
		return
	}
	s.streams.Add(1)
	switch err := s.sendSparkFrames(sw, p); {
	case errors.Is(err, errSparkAborted):
		return
	case err != nil:
		s.canceled.Add(1)
		return
	}
	s.countUsage(newUsage(p.prompt, p.completion))
	_ = sw.conn.Close(websocket.StatusNormalClosure, "")
}

// sparkPlan is a complete answer, decided before anything is sent.
type sparkPlan struct {
	words                        []string           // a text answer
	call                         *sparkFunctionCall // or a function call
	question, prompt, completion int                // token usage
}

// planSpark validates req and decides the answer. A rejected request
// gets a nonzero error code and message.
func (s *Server) planSpark(req *sparkRequest, key *SparkKey, domain string) (*sparkPlan, int, string) {
	if key != nil && req.Header.AppID != key.AppID {
		return nil, sparkNoAuth, fmt.Sprintf("AppIdNoAuthError: app_id %q is not the app of the signing api_key", req.Header.AppID)
	}
	if got := req.Parameter.Chat.Domain; got != domain {
		return nil, sparkWrongDomain, fmt.Sprintf("domain %q is not served at this URL, which serves %q", got, domain)
	}
	msgs := req.Payload.Message.Text
	if len(msgs) == 0 {
		return nil, sparkBadParameter, "$.payload.message.text: is missing but it is required"
	}
	p := &sparkPlan{}
	chat := make([]chatMessage, len(msgs))
	for i, m := range msgs {
		switch m.Role {
		case "system", "user", "assistant", "tool", "function":
		default:
			return nil, sparkBadParameter, fmt.Sprintf("$.payload.message.text[%d].role: does not have a value in the enumeration [system, user, assistant, tool]", i)
		}
		tokens := textTokens(utf8.RuneCountInString(m.Content))
		p.prompt += tokens
		p.question = tokens
		raw, err := json.Marshal(m.Content)
		if err != nil {
			return nil, sparkBadParameter, fmt.Sprintf("$.payload.message.text[%d].content: %v", i, err)
		}
		chat[i] = chatMessage{Role: m.Role, Content: raw}
	}
	words := s.conf().ReplyTokens
	if mt := req.Parameter.Chat.MaxTokens; mt != nil {
		if *mt < 1 {
			return nil, sparkBadParameter, "$.parameter.chat.max_tokens: must have a minimum value of 1"
		}
		words = min(words, *mt)
	}
	if f := req.Payload.Functions; f != nil && len(f.Text) > 0 {
		if last := msgs[len(msgs)-1].Role; last != "tool" && last != "function" {
			fn := f.Text[0]
			if fn.Name == "" {
				return nil, sparkBadParameter, "$.payload.functions.text[0].name: is missing but it is required"
			}
			args := sampleArguments(fn.Parameters)
			p.call = &sparkFunctionCall{Name: fn.Name, Arguments: args}
			p.completion = textTokens(utf8.RuneCountInString(fn.Name + args))
			return p, 0, ""
		}
	}
	p.words = replyWords(promptSeed(domain, chat), 0, words)
	p.completion = len(p.words)
	return p, 0, ""
}

// errSparkAborted ends an answer cut off on purpose (FailAfterChunks).
var errSparkAborted = errors.New("spark answer aborted by FailAfterChunks")

// sendSparkFrames writes the answer: the reply split over StreamChunks
// frames (status 0 first, 1 in between, 2 last), or a function call in one
// frame; the last frame carries the usage. With FailAfterChunks it drops
// the connection, without a close frame, after that many frames if more
// were to come.
func (s *Server) sendSparkFrames(sw *sparkWriter, p *sparkPlan) error {
	usage := &sparkUsage{Text: sparkUsageText{
		QuestionTokens:   p.question,
		PromptTokens:     p.prompt,
		CompletionTokens: p.completion,
		TotalTokens:      p.prompt + p.completion,
	}}
	if p.call != nil {
		text := sparkText{Content: "", Role: "assistant", FunctionCall: p.call}
		return sw.send(2, 0, text, usage)
	}
	pieces := splitWords(p.words, s.conf().StreamChunks)
	for i, piece := range pieces {
		status := 1
		switch {
		case i == len(pieces)-1:
			status = 2
		case i == 0:
			status = 0
		}
		var u *sparkUsage
		if status == 2 {
			u = usage
		}
		if err := sw.send(status, i, sparkText{Content: piece, Role: "assistant"}, u); err != nil {
			return err
		}
		if n := s.conf().FailAfterChunks; n > 0 && i+1 == n && status != 2 {
			s.aborted.Add(1)
			_ = sw.conn.CloseNow()
			return errSparkAborted
		}
	}
	return nil
}

// sparkWriter writes the frames of one answer, pausing between them.
type sparkWriter struct {
	ctx      context.Context // done when the client goes away
	conn     *websocket.Conn
	sid      string
	interval time.Duration
	started  bool
}

// send writes a content frame.
func (sw *sparkWriter) send(status, seq int, text sparkText, usage *sparkUsage) error {
	return sw.write(sparkFrame{
		Header: sparkHeader{Code: 0, Message: "Success", Sid: sw.sid, Status: status},
		Payload: &sparkPayload{
			Choices: sparkChoices{Status: status, Seq: seq, Text: []sparkText{text}},
			Usage:   usage,
		},
	})
}

// fail writes an error frame and closes the connection.
func (sw *sparkWriter) fail(code int, message string) {
	if err := sw.write(sparkFrame{Header: sparkHeader{Code: code, Message: message, Sid: sw.sid, Status: 2}}); err == nil {
		_ = sw.conn.Close(websocket.StatusNormalClosure, "")
	}
}

// write pauses for the interval (except before the first frame), then
// sends f as a text message.
func (sw *sparkWriter) write(f sparkFrame) error {
	if sw.started && !sleep(sw.ctx, sw.interval) {
		return fmt.Errorf("spark: %w", context.Cause(sw.ctx))
	}
	sw.started = true
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode spark frame: %w", err)
	}
	if err := sw.conn.Write(sw.ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("spark write: %w", err)
	}
	return nil
}
