package provider

import (
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
	sse "github.com/tmaxmax/go-sse"
)

// dify speaks a Dify app's Service API: POST {base}/chat-messages (base
// https://api.dify.ai/v1, or a self-hosted Dify's …/v1) with the app's API
// key as "Authorization: Bearer app-…". It serves chat apps (basic chat,
// agent and chatflow apps), blocking (response_mode "blocking", a JSON
// answer) or streaming (response_mode "streaming", server-sent events).
//
// A Dify app keeps its own prompt, model, knowledge and tools, and each
// conversation's history on the server, under a conversation_id. Sluice is
// stateless and so, like simple-one-api, starts a new conversation for
// every call and sends the newest turn alone:
//   - the last message, which must be the user's, becomes query (its text
//     parts joined by newlines) and its http(s) image URLs become files
//     ({"type": "image", "transfer_method": "remote_url"}); earlier
//     messages, system and developer messages included, are not sent: the
//     app's own prompt stands in for them;
//   - an "inputs" object in the body (a channel can set it in its params)
//     becomes the app's inputs (its variables), else {};
//   - user becomes user, "sluice" by default;
//   - auto_generate_name is false: naming each one-call conversation would
//     cost an LLM call.
//
// Refused: tools (the app runs its own), n > 1, logprobs, audio, non-text
// response formats, the legacy functions, a last message that is not the
// user's or has no text, images as data: URLs (Dify takes uploads through
// its files API, which Sluice does not call), and embeddings (Dify apps
// have none). Ignored: the sampling and length parameters (temperature,
// max_tokens, stop...: the app's model settings rule), seed, stream_options
// (usage is always reported), and any parameter not named here. Agent
// apps answer only streamed requests: Dify refuses a blocking one.
//
// In answers, the text of message and agent_message events is the
// content; message_end brings the usage; message_replace (output
// moderation replaced the answer) sends the replacement and finishes with
// content_filter; an error event ends the stream with its error; ping,
// agent_thought, message_file, tts_message and the workflow_* / node_*
// progress events are skipped.
type dify struct{}

var _ Translator = dify{}

// formatDify is Dify's chat-messages format.
const formatDify Format = "dify"

// difyDefaultUser identifies the end user when the request names none.
const difyDefaultUser = "sluice"

// Format implements Translator.
func (dify) Format() Format { return formatDify }

// NewRequest implements Adapter. The base URL is the API's
// ("https://api.dify.ai/v1") or the full chat-messages URL.
func (dify) NewRequest(ctx context.Context, t Target, ep Endpoint, body []byte) (*http.Request, error) {
	if ep != Chat {
		return nil, difyRefusal(fmt.Errorf("%s: Dify apps have no %s API", ep, ep))
	}
	req, err := difyChatRequest(body)
	if err != nil {
		return nil, difyRefusal(err)
	}
	u, err := difyURL(t.BaseURL)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("dify: encode request: %w", err)
	}
	return newJSONRequest(ctx, u, t, out)
}

// difyRefusal is a request a Dify app cannot be asked.
func difyRefusal(err error) *Error {
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "dify: " + err.Error()}
}

// difyURL is {base}/chat-messages; a base that already ends so is kept.
func difyURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", errors.New("invalid upstream base URL")
	}
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, "/chat-messages") {
		p += "/chat-messages"
	}
	u.Path, u.RawPath = p, ""
	return u.String(), nil
}

// difyRequest is a chat-messages request.
type difyRequest struct {
	Inputs           json.RawMessage `json:"inputs"`
	Query            string          `json:"query"`
	ResponseMode     string          `json:"response_mode"`
	User             string          `json:"user"`
	Files            []difyFile      `json:"files,omitempty"`
	AutoGenerateName bool            `json:"auto_generate_name"`
}

// difyFile is a file sent with the query: an image by URL.
type difyFile struct {
	Type           string `json:"type"`
	TransferMethod string `json:"transfer_method"`
	URL            string `json:"url"`
}

// difyChatRequest translates a canonical chat request.
func difyChatRequest(body []byte) (*difyRequest, error) {
	cr, err := decodeChat(body, "a Dify app", true)
	if err != nil {
		return nil, err
	}
	if len(cr.Tools) > 0 {
		return nil, errors.New("tools: a Dify app runs its own tools; client-side tools are not supported")
	}
	if err := checkTextResponseFormat(cr.ResponseFormat); err != nil {
		return nil, err
	}
	req := &difyRequest{ResponseMode: "blocking", User: cr.User}
	if cr.Stream {
		req.ResponseMode = "streaming"
	}
	if req.User == "" {
		req.User = difyDefaultUser
	}
	if req.Inputs, err = difyInputs(body); err != nil {
		return nil, err
	}
	if req.Query, req.Files, err = difyQuery(cr.Messages); err != nil {
		return nil, err
	}
	return req, nil
}

// difyInputs reads the body's "inputs" object, {} when there is none.
func difyInputs(body []byte) (json.RawMessage, error) {
	var ext struct {
		Inputs json.RawMessage `json:"inputs"`
	}
	if err := json.Unmarshal(body, &ext); err != nil {
		return nil, fmt.Errorf("decode chat request: %w", err)
	}
	if !isSet(ext.Inputs) {
		return json.RawMessage("{}"), nil
	}
	var vars map[string]any
	if err := json.Unmarshal(ext.Inputs, &vars); err != nil {
		return nil, errors.New("inputs: must be an object of the app's variables")
	}
	return ext.Inputs, nil
}

// difyQuery translates the last message, the user's, into the query and
// its image files.
func difyQuery(msgs []wire.Message) (string, []difyFile, error) {
	if len(msgs) == 0 {
		return "", nil, errors.New("messages: no messages")
	}
	i := len(msgs) - 1
	if msgs[i].Role != "user" {
		return "", nil, fmt.Errorf("messages[%d]: the last message must be the user's: a Dify app answers a user query", i)
	}
	parts, err := msgs[i].Parts()
	if err != nil {
		return "", nil, fmt.Errorf("messages[%d]: %w", i, err)
	}
	var (
		texts []string
		files []difyFile
	)
	for _, p := range parts {
		switch p.Type {
		case "text":
			texts = append(texts, p.Text)
		case "image_url":
			f, err := difyImage(p.ImageURL)
			if err != nil {
				return "", nil, fmt.Errorf("messages[%d]: %w", i, err)
			}
			files = append(files, f)
		default:
			return "", nil, fmt.Errorf("messages[%d]: content part type %q is not supported", i, p.Type)
		}
	}
	query := strings.Join(texts, "\n")
	if strings.TrimSpace(query) == "" {
		return "", nil, fmt.Errorf("messages[%d]: the user message has no text: a Dify app needs a query", i)
	}
	return query, files, nil
}

// difyImage translates an image part: Dify fetches http(s) URLs itself.
func difyImage(img *wire.ImageURL) (difyFile, error) {
	if img == nil || img.URL == "" {
		return difyFile{}, errors.New("image_url part without a url")
	}
	if !strings.HasPrefix(img.URL, "http://") && !strings.HasPrefix(img.URL, "https://") {
		return difyFile{}, errors.New("images must be http(s) URLs: Dify takes other images only as uploads to its files API")
	}
	return difyFile{Type: "image", TransferMethod: "remote_url", URL: img.URL}, nil
}

// difyEvent is a blocking answer, or one event of a streamed one.
type difyEvent struct {
	Event     string `json:"event"`
	ID        string `json:"id"`
	MessageID string `json:"message_id"`
	Answer    string `json:"answer"`
	CreatedAt int64  `json:"created_at"`
	Metadata  *struct {
		Usage *wire.Usage `json:"usage"`
	} `json:"metadata"`
	// An error event's.
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// messageID is the answer's message ID; message_end carries it as id in
// some Dify versions.
func (e *difyEvent) messageID() string {
	if e.MessageID != "" {
		return e.MessageID
	}
	return e.ID
}

// usage is the event's usage, or nil.
func (e *difyEvent) usage() *wire.Usage {
	if e.Metadata == nil || e.Metadata.Usage == nil {
		return nil
	}
	u := *e.Metadata.Usage
	if u.TotalTokens == 0 {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	return &u
}

// Response implements Translator: a blocking answer becomes a
// chat.completion with one choice.
func (dify) Response(ep Endpoint, body []byte, model string) ([]byte, error) {
	if ep != Chat {
		return nil, fmt.Errorf("dify: endpoint %q is not supported", ep)
	}
	var e difyEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("dify: decode response: %w", err)
	}
	if e.Event == "error" {
		return nil, difyStreamError(&e)
	}
	created := e.CreatedAt
	if created == 0 {
		created = time.Now().Unix()
	}
	return json.Marshal(wire.ChatResponse{
		ID:      chatID(e.messageID()),
		Object:  "chat.completion",
		Created: created,
		Model:   model,
		Choices: []wire.Choice{{
			Message:      wire.Message{Role: "assistant", Content: wire.TextContent(e.Answer)},
			FinishReason: "stop",
		}},
		Usage: e.usage(),
	})
}

// difyErrorBody is Dify's error body.
type difyErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Status  int    `json:"status"`
}

// Error implements Translator: Dify's {"code","message","status"} becomes
// an OpenAI error, its code kept unless OpenAI's clients know one.
func (dify) Error(status int, body []byte) []byte {
	var e difyErrorBody
	if json.Unmarshal(body, &e) != nil || (e.Code == "" && e.Message == "") {
		msg := fmt.Sprintf("dify answered HTTP %d", status)
		if ex := geminiExcerpt(body, 200); ex != "" {
			msg += ": " + ex
		}
		typ, code := difyErrorType(status, "")
		return wire.NewError(typ, code, msg)
	}
	if status == 0 {
		status = e.Status
	}
	typ, code := difyErrorType(status, e.Code)
	msg := e.Message
	if msg == "" {
		msg = "dify: " + e.Code
	}
	return wire.NewError(typ, code, msg)
}

// difyErrorType maps an HTTP status and Dify's code to an OpenAI error
// type and code.
func difyErrorType(status int, code string) (typ, openAICode string) {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error", "invalid_api_key"
	case status == http.StatusForbidden:
		return "permission_error", code
	case status == http.StatusNotFound:
		return "not_found_error", code
	case status == http.StatusTooManyRequests:
		return "requests", "rate_limit_exceeded"
	case status >= 400 && status < 500:
		return "invalid_request_error", code
	}
	return "server_error", code
}

// difyStreamError converts an error event (or an error in place of an
// answer).
func difyStreamError(e *difyEvent) *Error {
	typ, _ := difyErrorType(e.Status, e.Code)
	status := 0
	if e.Status >= 400 && e.Status <= 599 {
		status = e.Status
	}
	msg := e.Message
	if msg == "" {
		msg = "dify: " + e.Code
	}
	return &Error{Status: status, Type: typ, Message: msg}
}

// Stream implements Translator.
func (dify) Stream(body io.Reader, model string) Stream {
	s := &difyStream{eventStream: newEventStream(body, "dify", model)}
	releaseWhenCollected(s, s.stop)
	return s
}

// difyStream turns Dify's SSE events into chat.completion.chunk payloads:
// a first chunk with the assistant role, the answer's text deltas, a
// finish chunk at message_end, and after the last event a chunk with no
// choices carrying the usage.
type difyStream struct {
	eventStream      // finished: message_end was seen; usage: message_end's
	started     bool // the role chunk was sent
	filtered    bool // message_replace replaced the answer
}

// Next implements Stream.
func (s *difyStream) Next() ([]byte, error) { return s.pump(s.event) }

// event translates one event.
func (s *difyStream) event(ev sse.Event) error {
	data := ev.Data
	var e difyEvent
	if err := json.Unmarshal([]byte(data), &e); err != nil {
		return fmt.Errorf("dify: decode stream event: %w", err)
	}
	if s.id == "" && e.messageID() != "" {
		s.id = chatID(e.messageID())
	}
	switch e.Event {
	case "message", "agent_message":
		s.text(e.Answer)
	case "message_replace":
		s.filtered = true
		s.text(e.Answer)
	case "message_end":
		s.usage = e.usage()
		s.finish()
	case "error":
		return difyStreamError(&e)
	}
	// ping, agent_thought, message_file, tts_message(_end), workflow_*,
	// node_* and any event added later carry no answer text.
	return nil
}

// text sends a piece of the answer.
func (s *difyStream) text(t string) {
	s.begin()
	if t != "" {
		s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Delta: wire.Delta{Content: &t}}}, nil))
	}
}

// begin sends the role chunk, once.
func (s *difyStream) begin() {
	if s.started {
		return
	}
	s.started = true
	s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{Delta: wire.Delta{Role: "assistant", Content: wire.Ptr("")}}}, nil))
}

// finish sends the finish reason, once.
func (s *difyStream) finish() {
	if s.finished {
		return
	}
	s.begin()
	s.finished = true
	reason := "stop"
	if s.filtered {
		reason = "content_filter"
	}
	s.pending = append(s.pending, s.chunk([]wire.ChunkChoice{{FinishReason: &reason}}, nil))
}
