package mock

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Baidu Qianfan's native ERNIE API (wenxinworkshop):
//
//   - POST /oauth/2.0/token?grant_type=client_credentials&client_id=…&
//     client_secret=… issues an access token, {"access_token",
//     "expires_in",…}; with Config.Accounts set, client_id and
//     client_secret must be an account's ID and secret, else 401
//     {"error":"invalid_client",…};
//   - POST /rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{endpoint}?
//     access_token=… answers {"id","object","created","result",
//     "is_truncated","need_clear_history","finish_reason","usage"} (a
//     function_call when functions were given), or with "stream": true
//     SSE events data: {…,"sentence_id","is_end","result"}, the last one
//     with is_end true and the usage;
//   - POST /rpc/2.0/ai_custom/v1/wenxinworkshop/embeddings/{endpoint}
//     answers {"object":"embedding_list","data":[{"object":"embedding",
//     "embedding","index"}],"usage"}.
//
// Errors are Qianfan's, in a 200 as Qianfan sends them: {"error_code",
// "error_msg"}: 110 for a missing, unknown or revoked token (with
// Config.Accounts set), 336003 for an invalid request, 336100 for an
// injected failure, 18 for an injected rate limit.

// qfRequest is the part of an ERNIE request the mock reads.
type qfRequest struct {
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	System          string `json:"system"`
	Stream          bool   `json:"stream"`
	MaxOutputTokens *int   `json:"max_output_tokens"`
	Functions       []struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	} `json:"functions"`
	ToolChoice *struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tool_choice"`
	Input []string `json:"input"` // embeddings
}

// serveQianfanToken answers Baidu's OAuth token endpoint.
func (s *Server) serveQianfanToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := r.ParseForm(); err == nil && q.Get("client_id") == "" {
		q = r.Form // the grant's fields may also come as a form body
	}
	refuse := func(why string) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": why})
	}
	switch {
	case q.Get("grant_type") != "client_credentials":
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type", "error_description": "The authorization grant type is not supported"})
		return
	case len(s.conf().Accounts) > 0:
		a, ok := s.account(q.Get("client_id"))
		if !ok {
			refuse("unknown client id")
			return
		}
		if a.Secret != q.Get("client_secret") {
			refuse("Client authentication failed")
			return
		}
	}
	ttl := s.conf().TokenTTL
	writeJSON(w, http.StatusOK, map[string]any{
		"refresh_token":  "25.mock",
		"expires_in":     int64(ttl / time.Second),
		"session_key":    "mock",
		"access_token":   s.tokens.issue("24.", ttl),
		"scope":          "public brain_all_scope wenxinworkshop_mgr",
		"session_secret": "mock",
	})
}

// qfFail writes a Qianfan error: in a 200.
func qfFail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, http.StatusOK, map[string]any{"error_code": code, "error_msg": msg})
}

// serveQianfan answers a chat or embeddings call.
func (s *Server) serveQianfan(w http.ResponseWriter, r *http.Request, c *call) {
	if !sleep(r.Context(), c.delay) {
		return
	}
	if r.Method != http.MethodPost {
		qfFail(w, 3, "Unsupported openapi method")
		return
	}
	if len(s.conf().Accounts) > 0 && !s.tokens.check(r.URL.Query().Get("access_token")) {
		qfFail(w, 110, "Access token invalid or no longer valid")
		return
	}
	switch s.drawFault(c) {
	case failureFault:
		qfFail(w, 336100, "try again later")
		return
	case rateLimitFault:
		qfFail(w, 18, "Open api qps request limit reached")
		return
	}
	var req qfRequest
	if _, err := readJSONBody(w, r, &req); err != nil {
		qfFail(w, 336003, err.Error())
		return
	}
	_, rest, _ := strings.Cut(r.URL.Path, "/wenxinworkshop/")
	kind, endpoint, _ := strings.Cut(rest, "/")
	switch {
	case endpoint == "":
		qfFail(w, 336005, "API name not exist")
	case kind == "embeddings":
		s.qianfanEmbed(w, &req, endpoint)
	case kind == "chat":
		s.qianfanChat(w, r, c, &req, endpoint)
	default:
		qfFail(w, 336005, "API name not exist")
	}
}

// qianfanChat answers a chat call by planning it as the OpenAI format's.
func (s *Server) qianfanChat(w http.ResponseWriter, r *http.Request, c *call, req *qfRequest, endpoint string) {
	if len(req.Messages)%2 == 0 {
		qfFail(w, 336006, "the length of messages must be an odd number")
		return
	}
	cr := chatRequest{Model: endpoint, MaxTokens: req.MaxOutputTokens, Stream: req.Stream}
	if req.System != "" {
		cr.Messages = append(cr.Messages, chatMessage{Role: "system", Content: jsonString(req.System)})
	}
	for i, m := range req.Messages {
		want := "user"
		if i%2 == 1 {
			want = "assistant"
		}
		if m.Role != want && (want != "user" || m.Role != "function") {
			qfFail(w, 336006, "the role of message with odd index in the messages must be assistant")
			return
		}
		cr.Messages = append(cr.Messages, chatMessage{Role: m.Role, Content: jsonString(m.Content)})
	}
	for _, f := range req.Functions {
		t := chatTool{Type: "function"}
		t.Function.Name, t.Function.Parameters = f.Name, f.Parameters
		cr.Tools = append(cr.Tools, t)
	}
	if req.ToolChoice != nil {
		cr.ToolChoice, _ = json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": req.ToolChoice.Function.Name}})
	}
	plan, err := s.planChat(&cr, endpoint, c)
	if err != nil {
		qfFail(w, 336003, err.Error())
		return
	}
	a := plan.answers[0]
	out := map[string]any{
		"id": "as-" + randomString(c.rng, alphanumeric, 10), "object": "chat.completion", "created": plan.created,
		"is_truncated": false, "need_clear_history": false, "finish_reason": qfFinish(a.finish),
		"usage": plan.usage,
	}
	if a.call != nil {
		out["function_call"] = map[string]string{"name": a.call.name, "arguments": a.call.arguments, "thoughts": "calling " + a.call.name}
	}
	if !req.Stream {
		out["result"] = a.text()
		writeJSON(w, http.StatusOK, out)
		s.countUsage(plan.usage)
		return
	}
	s.streamQianfan(w, r, out, a)
	s.countUsage(plan.usage)
}

// streamQianfan streams an answer, one event per piece of its text.
func (s *Server) streamQianfan(w http.ResponseWriter, r *http.Request, out map[string]any, a answer) {
	s.streams.Add(1)
	sw, err := openEventStream(w, r, s.conf().ChunkInterval)
	if err != nil {
		s.canceled.Add(1)
		return
	}
	pieces := splitWords(a.words, s.conf().StreamChunks)
	if len(pieces) == 0 {
		pieces = []string{""}
	}
	usage, finish, call := out["usage"], out["finish_reason"], out["function_call"]
	delete(out, "function_call")
	for i, p := range pieces {
		last := i == len(pieces)-1
		out["sentence_id"], out["result"], out["is_end"], out["finish_reason"] = i, p, last, "normal"
		delete(out, "usage")
		if last {
			out["usage"], out["finish_reason"] = usage, finish
			if call != nil {
				out["function_call"] = call
			}
		}
		if err := sw.jsonEvent("data: ", out, "\n\n"); err != nil {
			s.canceled.Add(1)
			return
		}
	}
}

// qfFinish is Qianfan's name for a finish reason.
func qfFinish(finish string) string {
	switch finish {
	case "tool_calls":
		return "function_call"
	case "stop":
		return "normal"
	}
	return finish
}

// qianfanEmbed answers an embeddings call.
func (s *Server) qianfanEmbed(w http.ResponseWriter, req *qfRequest, endpoint string) {
	if len(req.Input) == 0 {
		qfFail(w, 336003, "input is required")
		return
	}
	input, _ := json.Marshal(req.Input)
	list, err := s.embed(&embeddingRequest{Model: endpoint, Input: input}, endpoint)
	if err != nil {
		qfFail(w, 336003, err.Error())
		return
	}
	for i := range list.Data {
		list.Data[i].Object = "embedding"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": "as-embed", "object": "embedding_list", "created": time.Now().Unix(),
		"data": list.Data, "usage": list.Usage,
	})
	s.promptTokens.Add(int64(list.Usage.PromptTokens))
}

// jsonString encodes a string as JSON.
func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}
