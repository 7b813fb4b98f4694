package mock

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Dify's Service API for chat apps: POST …/chat-messages with
//
//	{"inputs": {…}, "query": "…", "response_mode": "blocking"|"streaming",
//	 "user": "…", "conversation_id": "", "files": [{"type": "image",
//	 "transfer_method": "remote_url", "url": "…"}]}
//
// A blocking call is answered {"event": "message", "task_id", "id",
// "message_id", "conversation_id", "mode": "chat", "answer", "metadata":
// {"usage", "retriever_resources"}, "created_at"}; a streaming one with
// server-sent events: "event: ping", then "data:" events {"event":
// "message", …, "answer": <piece>} and a last {"event": "message_end", …,
// "metadata": {"usage"}}. The answer is the one OpenAI's format gives the
// query as a user message (model "dify"), each remote image counting as
// one.
//
// When Config.Keys is set, calls carry one of them as "Authorization:
// Bearer <app key>"; other calls get Dify's 401 {"code": "unauthorized",
// "message", "status": 401}. Errors are {"code", "message", "status"}: 400
// invalid_param for a bad body, 404 not_found for a conversation_id (the
// mock keeps no conversations), 405 for another method; the injected
// faults are 500 internal_server_error and 429 rate_limit_error.

// difyModel names the mock Dify app's model, for the reply's seed.
const difyModel = "dify"

// difyChatRequest holds the parts of a chat-messages request the mock
// reads.
type difyChatRequest struct {
	Inputs         json.RawMessage `json:"inputs"`
	Query          *string         `json:"query"`
	ResponseMode   string          `json:"response_mode"`
	User           string          `json:"user"`
	ConversationID string          `json:"conversation_id"`
	Files          []difyFile      `json:"files"`
}

// difyFile is a file sent with the query.
type difyFile struct {
	Type           string `json:"type"`
	TransferMethod string `json:"transfer_method"`
	URL            string `json:"url"`
	UploadFileID   string `json:"upload_file_id"`
}

// difyError is Dify's error body.
type difyError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Status  int    `json:"status"`
}

func (e *difyError) Error() string { return e.Message }

// writeDifyError sends a Dify error.
func writeDifyError(w http.ResponseWriter, e *difyError) {
	writeJSON(w, e.Status, e)
}

func difyInvalid(format string, args ...any) *difyError {
	return &difyError{Code: "invalid_param", Message: fmt.Sprintf(format, args...), Status: http.StatusBadRequest}
}

// serveDify answers POST …/chat-messages: latency, method, the app key,
// injected faults, the body, then the answer.
func (s *Server) serveDify(w http.ResponseWriter, r *http.Request, c *call) {
	if !sleep(r.Context(), c.delay) {
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeDifyError(w, &difyError{Code: "method_not_allowed", Message: "The method is not allowed for the requested URL.",
			Status: http.StatusMethodNotAllowed})
		return
	}
	if e := s.difyAuth(r); e != nil {
		writeDifyError(w, e)
		return
	}
	if s.injectDifyFault(w, c) {
		return
	}
	var req difyChatRequest
	if status, err := readJSONBody(w, r, &req); err != nil {
		code := "invalid_param"
		if status == http.StatusRequestEntityTooLarge {
			code = "request_entity_too_large"
		}
		writeDifyError(w, &difyError{Code: code, Message: err.Error(), Status: status})
		return
	}
	p, e := s.planDify(&req, c)
	if e != nil {
		writeDifyError(w, e)
		return
	}
	if req.ResponseMode == "streaming" {
		s.streamDify(w, r, p)
		return
	}
	writeJSON(w, http.StatusOK, p.blocking())
	s.countUsage(p.chat.usage)
}

// difyAuth checks the app key as Dify does, when keys are configured.
func (s *Server) difyAuth(r *http.Request) *difyError {
	if len(s.conf().Keys) == 0 {
		return nil
	}
	unauthorized := func(msg string) *difyError {
		return &difyError{Code: "unauthorized", Message: msg, Status: http.StatusUnauthorized}
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	switch {
	case !ok:
		return unauthorized("Authorization header must be provided and start with 'Bearer'")
	case !strings.EqualFold(scheme, "bearer"):
		return unauthorized("Authorization scheme must be 'Bearer'")
	case !s.keyAccepted(strings.TrimSpace(token)):
		return unauthorized("Access token is invalid")
	}
	return nil
}

// injectDifyFault answers 500 or 429 if the dice say so.
func (s *Server) injectDifyFault(w http.ResponseWriter, c *call) bool {
	switch s.drawFault(c) {
	case failureFault:
		writeDifyError(w, &difyError{Code: "internal_server_error", Status: http.StatusInternalServerError,
			Message: "The server encountered an internal error and was unable to complete your request. " +
				"Either the server is overloaded or there is an error in the application."})
		return true
	case rateLimitFault:
		writeDifyError(w, &difyError{Code: "rate_limit_error", Status: http.StatusTooManyRequests,
			Message: "Too many requests. Please try again later."})
		return true
	}
	return false
}

// difyPlan is a complete answer, decided before anything is sent.
type difyPlan struct {
	chat                              *chatPlan
	taskID, messageID, conversationID string
	created                           int64
	latency                           time.Duration
}

// planDify validates req and decides the answer.
func (s *Server) planDify(req *difyChatRequest, c *call) (*difyPlan, *difyError) {
	msg, e := difyMessage(req)
	if e != nil {
		return nil, e
	}
	cp, err := s.planChat(&chatRequest{Model: difyModel, Messages: []chatMessage{msg}}, difyModel, c)
	if err != nil {
		return nil, difyInvalid("%v", err)
	}
	return &difyPlan{
		chat:           cp,
		taskID:         difyUUID(c),
		messageID:      difyUUID(c),
		conversationID: difyUUID(c),
		created:        time.Now().Unix(),
		latency:        c.delay,
	}, nil
}

// difyMessage checks a request's fields and returns its query and images
// as an OpenAI user message.
func difyMessage(req *difyChatRequest) (chatMessage, *difyError) {
	var inputs map[string]any
	switch {
	case len(req.Inputs) == 0 || string(req.Inputs) == "null":
		return chatMessage{}, difyInvalid("inputs is required")
	case json.Unmarshal(req.Inputs, &inputs) != nil:
		return chatMessage{}, difyInvalid("inputs must be an object")
	case req.Query == nil || strings.TrimSpace(*req.Query) == "":
		return chatMessage{}, difyInvalid("query is required")
	case req.ResponseMode != "" && req.ResponseMode != "blocking" && req.ResponseMode != "streaming":
		return chatMessage{}, difyInvalid("response_mode must be 'blocking' or 'streaming'")
	case req.User == "":
		return chatMessage{}, difyInvalid("Arg user must be provided.")
	case req.ConversationID != "":
		return chatMessage{}, &difyError{Code: "not_found", Message: "Conversation Not Exists.", Status: http.StatusNotFound}
	}
	parts := []map[string]any{{"type": "text", "text": *req.Query}}
	for i, f := range req.Files {
		if e := difyCheckFile(i, f); e != nil {
			return chatMessage{}, e
		}
		parts = append(parts, map[string]any{"type": "image_url", "image_url": map[string]string{"url": f.URL}})
	}
	content, err := json.Marshal(parts)
	if err != nil {
		return chatMessage{}, difyInvalid("encode query: %v", err)
	}
	return chatMessage{Role: "user", Content: content}, nil
}

// difyCheckFile accepts an image by URL; the mock has no uploads.
func difyCheckFile(i int, f difyFile) *difyError {
	switch {
	case f.Type != "image":
		return difyInvalid("files[%d]: file type %q is not supported", i, f.Type)
	case f.TransferMethod == "local_file":
		return difyInvalid("files[%d]: upload file %q not found", i, f.UploadFileID)
	case f.TransferMethod != "remote_url":
		return difyInvalid("files[%d]: transfer_method must be 'remote_url' or 'local_file'", i)
	case !strings.HasPrefix(f.URL, "http://") && !strings.HasPrefix(f.URL, "https://"):
		return difyInvalid("files[%d]: url must be an http(s) URL", i)
	}
	return nil
}

// difyUUID draws a random UUID-shaped ID.
func difyUUID(c *call) string {
	h := randomString(c.rng, hexDigits, 32)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-" + h[16:20] + "-" + h[20:]
}

// difyUsage is Dify's usage, with its prices (the mock's are zero).
type difyUsage struct {
	PromptTokens        int     `json:"prompt_tokens"`
	PromptUnitPrice     string  `json:"prompt_unit_price"`
	PromptPriceUnit     string  `json:"prompt_price_unit"`
	PromptPrice         string  `json:"prompt_price"`
	CompletionTokens    int     `json:"completion_tokens"`
	CompletionUnitPrice string  `json:"completion_unit_price"`
	CompletionPriceUnit string  `json:"completion_price_unit"`
	CompletionPrice     string  `json:"completion_price"`
	TotalTokens         int     `json:"total_tokens"`
	TotalPrice          string  `json:"total_price"`
	Currency            string  `json:"currency"`
	Latency             float64 `json:"latency"`
}

// difyMetadata is an answer's metadata.
type difyMetadata struct {
	Usage              difyUsage `json:"usage"`
	RetrieverResources []any     `json:"retriever_resources"`
}

// metadata is the plan's metadata.
func (p *difyPlan) metadata() difyMetadata {
	u := p.chat.usage
	return difyMetadata{
		Usage: difyUsage{
			PromptTokens: u.PromptTokens, PromptUnitPrice: "0", PromptPriceUnit: "0.001", PromptPrice: "0",
			CompletionTokens: u.CompletionTokens, CompletionUnitPrice: "0", CompletionPriceUnit: "0.001", CompletionPrice: "0",
			TotalTokens: u.TotalTokens, TotalPrice: "0", Currency: "USD", Latency: p.latency.Seconds(),
		},
		RetrieverResources: []any{},
	}
}

// difyAnswer is a blocking answer.
type difyAnswer struct {
	Event          string       `json:"event"`
	TaskID         string       `json:"task_id"`
	ID             string       `json:"id"`
	MessageID      string       `json:"message_id"`
	ConversationID string       `json:"conversation_id"`
	Mode           string       `json:"mode"`
	Answer         string       `json:"answer"`
	Metadata       difyMetadata `json:"metadata"`
	CreatedAt      int64        `json:"created_at"`
}

// blocking renders the blocking answer.
func (p *difyPlan) blocking() difyAnswer {
	return difyAnswer{
		Event: "message", TaskID: p.taskID, ID: p.messageID, MessageID: p.messageID, ConversationID: p.conversationID,
		Mode: "chat", Answer: p.chat.answers[0].text(), Metadata: p.metadata(), CreatedAt: p.created,
	}
}

// difyMessageEvent is a streamed piece of the answer.
type difyMessageEvent struct {
	Event          string `json:"event"`
	TaskID         string `json:"task_id"`
	ID             string `json:"id"`
	MessageID      string `json:"message_id"`
	ConversationID string `json:"conversation_id"`
	Answer         string `json:"answer"`
	CreatedAt      int64  `json:"created_at"`
}

// difyEndEvent ends a streamed answer.
type difyEndEvent struct {
	Event          string       `json:"event"`
	TaskID         string       `json:"task_id"`
	ID             string       `json:"id"`
	MessageID      string       `json:"message_id"`
	ConversationID string       `json:"conversation_id"`
	Metadata       difyMetadata `json:"metadata"`
	Files          []any        `json:"files"`
}

// streamDify sends the plan as server-sent events.
func (s *Server) streamDify(w http.ResponseWriter, r *http.Request, p *difyPlan) {
	s.streams.Add(1)
	sw, err := openEventStream(w, r, s.conf().ChunkInterval)
	if err == nil {
		err = s.sendDifyStream(sw, p)
	}
	if err != nil {
		s.canceled.Add(1)
		return
	}
	s.countUsage(p.chat.usage)
}

// sendDifyStream writes a ping, the answer's pieces as message events and
// message_end. With FailAfterChunks the connection is cut after that many
// message events.
func (s *Server) sendDifyStream(sw *sseWriter, p *difyPlan) error {
	if err := sw.write([]byte("event: ping\n\n")); err != nil {
		return err
	}
	for i, piece := range splitWords(p.chat.answers[0].words, s.conf().StreamChunks) {
		ev := difyMessageEvent{Event: "message", TaskID: p.taskID, ID: p.messageID, MessageID: p.messageID,
			ConversationID: p.conversationID, Answer: piece, CreatedAt: p.created}
		if err := sw.jsonEvent("data: ", ev, "\n\n"); err != nil {
			return err
		}
		if n := s.conf().FailAfterChunks; n > 0 && i+1 == n {
			s.aborted.Add(1)
			panic(http.ErrAbortHandler)
		}
	}
	sw.atOnce = true
	end := difyEndEvent{Event: "message_end", TaskID: p.taskID, ID: p.messageID, MessageID: p.messageID,
		ConversationID: p.conversationID, Metadata: p.metadata(), Files: []any{}}
	return sw.jsonEvent("data: ", end, "\n\n")
}
