package mock

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Tencent Cloud API 3.0's hunyuan service, version 2023-09-01, routed
// here by its X-TC-Action header (see cloud.go): a POST of a JSON body
// whose action is ChatCompletions or GetEmbedding.
//
//   - ChatCompletions answers {"Response":{"Id","Created","Note",
//     "Choices":[{"Index","Message":{"Role","Content","ToolCalls"},
//     "FinishReason"}],"Usage":{"PromptTokens","CompletionTokens",
//     "TotalTokens"},"RequestId"}} (a tool call when Tools are given and
//     ToolChoice is not none), or with "Stream": true SSE events data:
//     {"Note","Choices":[{"Delta":{"Role","Content","ToolCalls"},
//     "FinishReason"}],"Created","Id","Usage"}, the usage so far in each,
//     the last one with FinishReason stop (tool_calls); there is no
//     [DONE];
//   - GetEmbedding embeds Input or InputList (at most 50 texts) and
//     answers {"Response":{"Data":[{"Embedding","Index","Object"}],
//     "Usage":{"PromptTokens","TotalTokens"},"RequestId"}}, the vectors
//     those of the OpenAI format for the same texts (Config.EmbeddingDims
//     long: the real service's are 1024).
//
// With Config.Accounts set, calls must be signed TC3-HMAC-SHA256 by an
// account (ID the SecretId, Secret the SecretKey), covering at least the
// content-type and host headers, for the service hunyuan.
//
// Every answer is HTTP 200, refusals included, as Tencent sends them:
// {"Response":{"Error":{"Code","Message"},"RequestId"}}. Codes:
// AuthFailure.InvalidAuthorization (no or a malformed Authorization),
// AuthFailure.SecretIdNotFound, AuthFailure.SignatureExpire (X-TC-Timestamp
// more than hyMaxSkew off), AuthFailure.SignatureFailure;
// NoSuchVersion, InvalidAction, UnknownParameter, MissingParameter,
// InvalidParameter (more than 40 Messages, a system message not first, a
// Temperature outside [0, 2]...) and RequestSizeLimitExceeded for
// requests the mock cannot serve; InternalError for
// an injected failure, RequestLimitExceeded for an injected rate limit.

// Hunyuan wire constants.
const (
	hyVersion    = "2023-09-01"
	hyService    = "hunyuan"
	hyMaxSkew    = 300 * time.Second
	hyMaxInputs  = 50
	hyMaxContext = 40 // Messages
	hyNote       = "以上内容为AI生成，不代表开发者立场，请勿删除或修改本标记"
)

// hyRequestFields are the parameters of each action, as Tencent spells
// them: others are refused with UnknownParameter.
var hyRequestFields = map[string][]string{
	"ChatCompletions": {"Model", "Messages", "Stream", "StreamModeration", "TopP", "Temperature",
		"EnableEnhancement", "Tools", "ToolChoice", "CustomTool", "SearchInfo", "Citation", "EnableSpeedSearch",
		"EnableMultimedia", "EnableDeepSearch", "Seed", "ForceSearchEnhancement", "Stop",
		"EnableRecommendedQuestions", "EnableDeepRead", "WebSearchOptions", "TopicChoice"},
	"GetEmbedding": {"Input", "InputList"},
}

// hyError is a refusal: a Tencent Cloud error code and message.
type hyError struct{ code, message string }

func (e *hyError) Error() string { return e.code + ": " + e.message }

func hyFail(code, format string, args ...any) *hyError {
	return &hyError{code: code, message: fmt.Sprintf(format, args...)}
}

// writeHunyuanError answers a refusal in Tencent's shape, with HTTP 200.
func writeHunyuanError(w http.ResponseWriter, requestID string, e *hyError) {
	writeJSON(w, http.StatusOK, map[string]any{"Response": map[string]any{
		"Error":     map[string]string{"Code": e.code, "Message": e.message},
		"RequestId": requestID,
	}})
}

// serveHunyuan answers a Tencent Cloud API 3.0 call: latency, the
// signature, version and action, injected faults, then the action.
func (s *Server) serveHunyuan(w http.ResponseWriter, r *http.Request, c *call) {
	requestID := hyUUID(c.rng)
	w.Header().Set("X-TC-RequestId", requestID)
	if !sleep(r.Context(), c.delay) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeHunyuanError(w, requestID, hyFail("RequestSizeLimitExceeded", "The request body exceeds %d bytes.", tooBig.Limit))
		return
	case err != nil:
		writeHunyuanError(w, requestID, hyFail("InvalidParameter", "Could not read the request body: %v", err))
		return
	}
	action := r.Header.Get("X-TC-Action")
	if e := s.hunyuanCheck(r, body, action); e != nil {
		writeHunyuanError(w, requestID, e)
		return
	}
	if e := s.injectHunyuanFault(c); e != nil {
		writeHunyuanError(w, requestID, e)
		return
	}
	params, e := hunyuanParams(body, action)
	if e != nil {
		writeHunyuanError(w, requestID, e)
		return
	}
	switch action {
	case "ChatCompletions":
		s.hunyuanChat(w, r, c, requestID, params)
	case "GetEmbedding":
		s.hunyuanEmbed(w, requestID, params)
	}
}

// hunyuanCheck checks the method, the signature (when Config.Accounts is
// set), the version and the action.
func (s *Server) hunyuanCheck(r *http.Request, body []byte, action string) *hyError {
	if r.Method != http.MethodPost {
		return hyFail("UnsupportedProtocol", "The mock serves API 3.0 calls as POST with a JSON body, not %s.", r.Method)
	}
	if len(s.conf().Accounts) > 0 {
		if e := s.hunyuanVerify(r, body, time.Now()); e != nil {
			return e
		}
	}
	if v := r.Header.Get("X-TC-Version"); v != hyVersion {
		return hyFail("NoSuchVersion", "The API version `%s` does not exist for the service `%s`.", v, hyService)
	}
	if _, ok := hyRequestFields[action]; !ok {
		return hyFail("InvalidAction", "The action `%s` does not exist for the service `%s` (the mock serves ChatCompletions and GetEmbedding).", action, hyService)
	}
	return nil
}

// injectHunyuanFault answers InternalError or RequestLimitExceeded if the
// dice say so.
func (s *Server) injectHunyuanFault(c *call) *hyError {
	switch s.drawFault(c) {
	case failureFault:
		return hyFail("InternalError", "An internal error has occurred. Please retry your request.")
	case rateLimitFault:
		return hyFail("RequestLimitExceeded", "Your current request rate is too high. Please try again in %s.", s.conf().RetryAfter)
	}
	return nil
}

// hyAuthorization is a parsed Authorization header.
type hyAuthorization struct {
	secretID, date, service, terminator string
	signedHeaders                       []string
	signature                           string
}

// parseHyAuthorization reads "TC3-HMAC-SHA256 Credential=<id>/<date>/
// <service>/tc3_request, SignedHeaders=<a;b>, Signature=<hex>".
func parseHyAuthorization(v string) (hyAuthorization, bool) {
	var a hyAuthorization
	rest, ok := strings.CutPrefix(v, "TC3-HMAC-SHA256 ")
	if !ok {
		return a, false
	}
	for field := range strings.SplitSeq(rest, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(field), "=")
		switch name {
		case "Credential":
			parts := strings.Split(value, "/")
			if len(parts) != 4 {
				return a, false
			}
			a.secretID, a.date, a.service, a.terminator = parts[0], parts[1], parts[2], parts[3]
		case "SignedHeaders":
			a.signedHeaders = strings.Split(value, ";")
		case "Signature":
			a.signature = value
		}
	}
	return a, a.secretID != "" && a.signature != "" && len(a.signedHeaders) > 0
}

// hunyuanVerify checks a call's TC3-HMAC-SHA256 signature as Tencent
// does: a known SecretId, a timestamp within hyMaxSkew of now, a scope of
// the timestamp's UTC date and the hunyuan service, content-type and host
// among the signed headers, and the signature itself.
func (s *Server) hunyuanVerify(r *http.Request, body []byte, now time.Time) *hyError {
	auth, ok := parseHyAuthorization(r.Header.Get("Authorization"))
	if !ok {
		return hyFail("AuthFailure.InvalidAuthorization", "The Authorization header does not follow the TC3-HMAC-SHA256 standard.")
	}
	ts, err := strconv.ParseInt(r.Header.Get("X-TC-Timestamp"), 10, 64)
	if err != nil {
		return hyFail("MissingParameter", "The request is missing a valid X-TC-Timestamp header.")
	}
	account, ok := s.account(auth.secretID)
	if !ok {
		return hyFail("AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure that your SecretId is correct.")
	}
	if d := now.Sub(time.Unix(ts, 0)); d > hyMaxSkew || d < -hyMaxSkew {
		return hyFail("AuthFailure.SignatureExpire", "Signature expired. Timestamp: %d, now: %d; they may differ by 5 minutes at most.", ts, now.Unix())
	}
	if auth.date != time.Unix(ts, 0).UTC().Format(time.DateOnly) || auth.service != hyService || auth.terminator != "tc3_request" ||
		!slices.Contains(auth.signedHeaders, "content-type") || !slices.Contains(auth.signedHeaders, "host") {
		return hyFail("AuthFailure.SignatureFailure", "The provided credentials could not be validated: the credential scope must be <date>/hunyuan/tc3_request and the signed headers must include content-type and host.")
	}
	want := hyExpectedSignature(r, body, auth, ts, account.Secret)
	if subtle.ConstantTimeCompare([]byte(want), []byte(auth.signature)) != 1 {
		return hyFail("AuthFailure.SignatureFailure", "The provided credentials could not be validated. Please check your signature is correct.")
	}
	return nil
}

// hyExpectedSignature computes the signature the call should carry.
func hyExpectedSignature(r *http.Request, body []byte, auth hyAuthorization, ts int64, secret string) string {
	var headers strings.Builder
	for _, name := range auth.signedHeaders {
		value := r.Header.Get(name)
		if name == "host" {
			value = r.Host
		}
		headers.WriteString(name + ":" + strings.ToLower(strings.TrimSpace(value)) + "\n")
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canonical := strings.Join([]string{r.Method, path, r.URL.RawQuery, headers.String(),
		strings.Join(auth.signedHeaders, ";"), hySHA256(body)}, "\n")
	scope := auth.date + "/" + auth.service + "/tc3_request"
	toSign := "TC3-HMAC-SHA256\n" + strconv.FormatInt(ts, 10) + "\n" + scope + "\n" + hySHA256([]byte(canonical))
	key := hyHMAC([]byte("TC3"+secret), auth.date)
	key = hyHMAC(key, auth.service)
	key = hyHMAC(key, "tc3_request")
	return hex.EncodeToString(hyHMAC(key, toSign))
}

func hySHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func hyHMAC(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// hunyuanParams decodes an action's body: a JSON object whose parameters
// the action has, spelled as Tencent spells them.
func hunyuanParams(body []byte, action string) (map[string]json.RawMessage, *hyError) {
	var params map[string]json.RawMessage
	if err := json.Unmarshal(body, &params); err != nil {
		return nil, hyFail("InvalidParameter", "The request body is not a JSON object: %v", err)
	}
	for name := range params {
		if !slices.Contains(hyRequestFields[action], name) {
			return nil, hyFail("UnknownParameter", "The parameter `%s` is not recognized.", name)
		}
	}
	return params, nil
}

// hyParam decodes one parameter into v, if present.
func hyParam(params map[string]json.RawMessage, name string, v any) *hyError {
	raw, ok := params[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return hyFail("InvalidParameter", "The value of `%s` is invalid: %v", name, err)
	}
	return nil
}

// hyChatRequest holds the ChatCompletions parameters the mock reads.
type hyChatRequest struct {
	Model       string
	Messages    []hyMessage
	Stream      bool
	TopP        *float64
	Temperature *float64
	Tools       []hyTool
	ToolChoice  string
	CustomTool  *hyTool
}

// hyMessage is a message of a request or an answer.
type hyMessage struct {
	Role       string       `json:"Role"`
	Content    string       `json:"Content"`
	Contents   []hyContent  `json:"Contents,omitempty"`
	ToolCallID string       `json:"ToolCallId,omitempty"`
	ToolCalls  []hyToolCall `json:"ToolCalls,omitempty"`
}

type hyContent struct {
	Type     string `json:"Type"`
	Text     string `json:"Text"`
	ImageURL *struct {
		URL string `json:"Url"`
	} `json:"ImageUrl"`
}

type hyTool struct {
	Type     string `json:"Type"`
	Function struct {
		Name        string `json:"Name"`
		Parameters  string `json:"Parameters"`
		Description string `json:"Description"`
	} `json:"Function"`
}

type hyToolCall struct {
	ID       string         `json:"Id"`
	Type     string         `json:"Type"`
	Function hyCallFunction `json:"Function"`
	Index    *int           `json:"Index,omitempty"`
}

type hyCallFunction struct {
	Name      string `json:"Name"`
	Arguments string `json:"Arguments"`
}

// decode reads and checks the ChatCompletions parameters.
func (q *hyChatRequest) decode(params map[string]json.RawMessage) *hyError {
	for _, p := range []struct {
		name string
		v    any
	}{
		{"Model", &q.Model}, {"Messages", &q.Messages}, {"Stream", &q.Stream}, {"TopP", &q.TopP},
		{"Temperature", &q.Temperature}, {"Tools", &q.Tools}, {"ToolChoice", &q.ToolChoice}, {"CustomTool", &q.CustomTool},
	} {
		if e := hyParam(params, p.name, p.v); e != nil {
			return e
		}
	}
	switch {
	case q.Model == "":
		return hyFail("MissingParameter", "The parameter `Model` is required.")
	case len(q.Messages) == 0:
		return hyFail("MissingParameter", "The parameter `Messages` is required.")
	case len(q.Messages) > hyMaxContext:
		return hyFail("InvalidParameter", "Messages may hold at most %d messages, got %d.", hyMaxContext, len(q.Messages))
	case q.Temperature != nil && (*q.Temperature < 0 || *q.Temperature > 2):
		return hyFail("InvalidParameter", "Temperature must be within [0.0, 2.0]: %g", *q.Temperature)
	case q.TopP != nil && (*q.TopP < 0 || *q.TopP > 1):
		return hyFail("InvalidParameter", "TopP must be within [0.0, 1.0]: %g", *q.TopP)
	}
	for i, m := range q.Messages {
		if e := m.check(i); e != nil {
			return e
		}
	}
	return q.checkTools()
}

// check checks one message: its role and place, and its content.
func (m hyMessage) check(i int) *hyError {
	switch {
	case m.Role == "system" && i > 0:
		return hyFail("InvalidParameter", "Messages[%d]: a system message may only come first.", i)
	case m.Role == "tool" && m.ToolCallID == "":
		return hyFail("InvalidParameter", "Messages[%d]: a tool message needs a ToolCallId.", i)
	case m.Role != "system" && m.Role != "user" && m.Role != "assistant" && m.Role != "tool":
		return hyFail("InvalidParameter", "Messages[%d].Role must be system, user, assistant or tool, got %q.", i, m.Role)
	case m.Role == "user" && m.Content == "" && len(m.Contents) == 0:
		return hyFail("InvalidParameter", "Messages[%d]: Content must not be empty.", i)
	}
	for j, c := range m.Contents {
		if c.Type != "text" && (c.Type != "image_url" || c.ImageURL == nil || c.ImageURL.URL == "") {
			return hyFail("InvalidParameter", "Messages[%d].Contents[%d]: Type must be text or image_url (with an ImageUrl.Url).", i, j)
		}
	}
	return nil
}

// checkTools checks the tools and the tool choice.
func (q *hyChatRequest) checkTools() *hyError {
	for i, t := range q.Tools {
		if t.Type != "function" || t.Function.Name == "" {
			return hyFail("InvalidParameter", "Tools[%d]: Type must be function and Function.Name must be set.", i)
		}
	}
	switch q.ToolChoice {
	case "", "none", "auto":
	case "custom":
		if q.CustomTool == nil || q.CustomTool.Function.Name == "" {
			return hyFail("InvalidParameter", "CustomTool is required when ToolChoice is custom.")
		}
	default:
		return hyFail("InvalidParameter", "ToolChoice must be none, auto or custom, got %q.", q.ToolChoice)
	}
	return nil
}

// chatRequest restates the request in OpenAI's terms, for planChat.
func (q *hyChatRequest) chatRequest() *chatRequest {
	req := &chatRequest{Model: q.Model, Stream: q.Stream}
	for _, m := range q.Messages {
		req.Messages = append(req.Messages, chatMessage{Role: m.Role, Content: m.openAIContent()})
	}
	tools := q.Tools
	if q.ToolChoice == "custom" && !slices.ContainsFunc(tools, func(t hyTool) bool { return t.Function.Name == q.CustomTool.Function.Name }) {
		tools = append(slices.Clone(tools), *q.CustomTool)
	}
	for _, t := range tools {
		var ct chatTool
		ct.Type = "function"
		ct.Function.Name = t.Function.Name
		if t.Function.Parameters != "" {
			ct.Function.Parameters = json.RawMessage(t.Function.Parameters)
		}
		req.Tools = append(req.Tools, ct)
	}
	switch q.ToolChoice {
	case "none":
		req.ToolChoice = json.RawMessage(`"none"`)
	case "custom":
		name, _ := json.Marshal(q.CustomTool.Function.Name)
		req.ToolChoice = json.RawMessage(`{"type":"function","function":{"name":` + string(name) + `}}`)
	}
	return req
}

// openAIContent is the message's content as OpenAI writes it: a string,
// or text and image_url parts.
func (m hyMessage) openAIContent() json.RawMessage {
	var v any = m.Content
	if len(m.Contents) > 0 {
		parts := make([]map[string]any, len(m.Contents))
		for i, c := range m.Contents {
			parts[i] = map[string]any{"type": c.Type, "text": c.Text}
			if c.ImageURL != nil {
				parts[i]["image_url"] = map[string]string{"url": c.ImageURL.URL}
			}
		}
		v = parts
	}
	b, _ := json.Marshal(v) // strings and maps of strings always encode
	return b
}

// hyAnswer is a planned ChatCompletions answer.
type hyAnswer struct {
	id      string
	created int64
	answer  answer
	usage   usage
}

// hunyuanChat answers ChatCompletions, streamed when asked.
func (s *Server) hunyuanChat(w http.ResponseWriter, r *http.Request, c *call, requestID string, params map[string]json.RawMessage) {
	var q hyChatRequest
	if e := q.decode(params); e != nil {
		writeHunyuanError(w, requestID, e)
		return
	}
	plan, err := s.planChat(q.chatRequest(), q.Model, c)
	if err != nil {
		writeHunyuanError(w, requestID, hyFail("InvalidParameter", "%v", err))
		return
	}
	a := &hyAnswer{id: requestID, created: plan.created, answer: plan.answers[0], usage: plan.usage}
	if q.Stream {
		s.streamHunyuan(w, r, a)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"Response": a.response(requestID)})
	s.countUsage(a.usage)
}

// hyUsage is Hunyuan's token usage.
type hyUsage struct {
	PromptTokens     int `json:"PromptTokens"`
	CompletionTokens int `json:"CompletionTokens"`
	TotalTokens      int `json:"TotalTokens"`
}

func hyUsageOf(prompt, completion int) hyUsage {
	return hyUsage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
}

// hyChoice is a choice of an answer (Message) or of an event (Delta).
type hyChoice struct {
	Index        int        `json:"Index"`
	Message      *hyMessage `json:"Message,omitempty"`
	Delta        *hyMessage `json:"Delta,omitempty"`
	FinishReason string     `json:"FinishReason"`
}

// hyResponse is a complete answer's Response, or (without RequestId) a
// stream event.
type hyResponse struct {
	RequestID string     `json:"RequestId,omitempty"`
	Note      string     `json:"Note"`
	Choices   []hyChoice `json:"Choices"`
	Created   int64      `json:"Created"`
	ID        string     `json:"Id"`
	Usage     hyUsage    `json:"Usage"`
}

// finish is the answer's finish reason.
func (a *hyAnswer) finish() string {
	if a.answer.call != nil {
		return "tool_calls"
	}
	return "stop"
}

// response renders the complete answer.
func (a *hyAnswer) response(requestID string) hyResponse {
	msg := &hyMessage{Role: "assistant"}
	if call := a.answer.call; call != nil {
		msg.ToolCalls = []hyToolCall{{ID: call.id, Type: "function", Function: hyCallFunction{Name: call.name, Arguments: call.arguments}}}
	} else {
		msg.Content = a.answer.text()
	}
	return hyResponse{
		RequestID: requestID,
		Note:      hyNote,
		Choices:   []hyChoice{{Message: msg, FinishReason: a.finish()}},
		Created:   a.created,
		ID:        a.id,
		Usage:     hyUsageOf(a.usage.PromptTokens, a.usage.CompletionTokens),
	}
}

// event renders one stream event: a delta, the completion tokens so far
// and, on the last event, the finish reason.
func (a *hyAnswer) event(delta *hyMessage, completion int, finish string) hyResponse {
	return hyResponse{
		Note:    hyNote,
		Choices: []hyChoice{{Delta: delta, FinishReason: finish}},
		Created: a.created,
		ID:      a.id,
		Usage:   hyUsageOf(a.usage.PromptTokens, completion),
	}
}

// streamHunyuan sends the answer as server-sent events.
func (s *Server) streamHunyuan(w http.ResponseWriter, r *http.Request, a *hyAnswer) {
	s.streams.Add(1)
	sw, err := openEventStream(w, r, s.conf().ChunkInterval)
	if err == nil {
		err = s.sendHunyuanStream(sw, a)
	}
	if err != nil {
		s.canceled.Add(1)
		return
	}
	s.countUsage(a.usage)
}

// sendHunyuanStream writes the answer's events: the text in up to
// StreamChunks pieces (a tool call: a first event with its Id and name,
// then its arguments in pieces), then an event with the finish reason.
// With FailAfterChunks the connection is cut after that many content
// events.
func (s *Server) sendHunyuanStream(sw *sseWriter, a *hyAnswer) error {
	send := func(ev hyResponse) error { return sw.jsonEvent("data: ", ev, "\n\n") }
	deltas := a.deltas(s.conf().StreamChunks)
	for k, d := range deltas {
		completion := a.usage.CompletionTokens * (k + 1) / len(deltas)
		if err := send(a.event(d, completion, "")); err != nil {
			return err
		}
		if n := s.conf().FailAfterChunks; n > 0 && k+1 == n {
			s.aborted.Add(1)
			panic(http.ErrAbortHandler)
		}
	}
	sw.atOnce = true
	return send(a.event(&hyMessage{Role: "assistant"}, a.usage.CompletionTokens, a.finish()))
}

// deltas cuts the answer into the Delta of each content event.
func (a *hyAnswer) deltas(chunks int) []*hyMessage {
	var out []*hyMessage
	if call := a.answer.call; call != nil {
		out = append(out, &hyMessage{Role: "assistant", ToolCalls: []hyToolCall{{ID: call.id, Type: "function",
			Function: hyCallFunction{Name: call.name}, Index: new(0)}}})
		for _, piece := range splitText(call.arguments, chunks) {
			out = append(out, &hyMessage{Role: "assistant", ToolCalls: []hyToolCall{{ID: call.id, Type: "function",
				Function: hyCallFunction{Arguments: piece}, Index: new(0)}}})
		}
		return out
	}
	for _, piece := range splitWords(a.answer.words, chunks) {
		out = append(out, &hyMessage{Role: "assistant", Content: piece})
	}
	return out
}

// hunyuanEmbed answers GetEmbedding.
func (s *Server) hunyuanEmbed(w http.ResponseWriter, requestID string, params map[string]json.RawMessage) {
	var (
		input string
		list  []string
	)
	if e := hyParam(params, "Input", &input); e != nil {
		writeHunyuanError(w, requestID, e)
		return
	}
	if e := hyParam(params, "InputList", &list); e != nil {
		writeHunyuanError(w, requestID, e)
		return
	}
	texts, e := hyEmbedTexts(input, list)
	if e != nil {
		writeHunyuanError(w, requestID, e)
		return
	}
	data := make([]map[string]any, len(texts))
	tokens := 0
	for i, text := range texts {
		in, err := textInput(text, "InputList")
		if err != nil {
			writeHunyuanError(w, requestID, hyFail("InvalidParameter", "Input texts must not be empty."))
			return
		}
		data[i] = map[string]any{"Embedding": embeddingVector(in.key, s.conf().EmbeddingDims), "Index": i, "Object": "embedding"}
		tokens += in.tokens
	}
	writeJSON(w, http.StatusOK, map[string]any{"Response": map[string]any{
		"Data":      data,
		"Usage":     map[string]int{"PromptTokens": tokens, "TotalTokens": tokens},
		"RequestId": requestID,
	}})
	s.promptTokens.Add(int64(tokens))
}

// hyEmbedTexts returns the texts to embed: Input, or InputList.
func hyEmbedTexts(input string, list []string) ([]string, *hyError) {
	switch {
	case input != "" && len(list) > 0:
		return nil, hyFail("InvalidParameter", "Set Input or InputList, not both.")
	case input != "":
		return []string{input}, nil
	case len(list) == 0:
		return nil, hyFail("MissingParameter", "Input or InputList is required.")
	case len(list) > hyMaxInputs:
		return nil, hyFail("InvalidParameter", "InputList may hold at most %d texts, got %d.", hyMaxInputs, len(list))
	}
	return list, nil
}

// hyUUID returns a random request ID shaped like Tencent's.
func hyUUID(rng *rand.Rand) string {
	h := randomString(rng, hexDigits, 32)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
