package mock

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Google's Gemini API: POST …/{v1,v1alpha,v1beta}/models/{model}:{method}
// with the methods generateContent, streamGenerateContent (only with
// ?alt=sse), embedContent and batchEmbedContents.
//
// When Config.Keys is set, calls carry one of the keys in
// "x-goog-api-key" or "?key="; a missing key is 403 PERMISSION_DENIED, a
// wrong one 400 INVALID_ARGUMENT with reason API_KEY_INVALID. Errors are
// {"error":{"code","message","status"}}. Request fields are read in
// camelCase or snake_case, as Google's JSON parser does; unknown fields
// are ignored (the real API rejects them).
//
// A prompt with the text "BLOCK_ME" in a text part is a test hook: the
// answer has promptFeedback {blockReason: SAFETY} and no candidates.

// blockMarker in a prompt makes the Gemini format block it.
const blockMarker = "BLOCK_ME"

// Gemini request limits.
const (
	maxGeminiCandidates = 8
	maxGeminiBatch      = 100
	geminiImageTokens   = 258
)

// geminiRequest holds the parts of a GenerateContentRequest the mock
// reads.
type geminiRequest struct {
	Contents          []geminiContent
	SystemInstruction *geminiContent
	Tools             []geminiTool
	ToolConfig        geminiToolConfig
	GenerationConfig  geminiGenerationConfig
}

func (q *geminiRequest) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{
		"contents":          &q.Contents,
		"systemInstruction": &q.SystemInstruction,
		"tools":             &q.Tools,
		"toolConfig":        &q.ToolConfig,
		"generationConfig":  &q.GenerationConfig,
	})
}

// geminiContent is a turn of the conversation, in requests and answers.
type geminiContent struct {
	Parts []geminiPart `json:"parts"`
	Role  string       `json:"role,omitempty"`
}

func (c *geminiContent) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{"parts": &c.Parts, "role": &c.Role})
}

// geminiPart is one part of a turn: text, inline or file data, a function
// call or a function response.
type geminiPart struct {
	Text             string              `json:"text,omitempty"`
	InlineData       json.RawMessage     `json:"inlineData,omitempty"`
	FileData         json.RawMessage     `json:"fileData,omitempty"`
	FunctionCall     *geminiFunctionCall `json:"functionCall,omitempty"`
	FunctionResponse json.RawMessage     `json:"functionResponse,omitempty"`
}

func (p *geminiPart) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{
		"text":             &p.Text,
		"inlineData":       &p.InlineData,
		"fileData":         &p.FileData,
		"functionCall":     &p.FunctionCall,
		"functionResponse": &p.FunctionResponse,
	})
}

type geminiFunctionCall struct {
	Name string          `json:"name"`
	Args json.RawMessage `json:"args"`
}

type geminiTool struct {
	FunctionDeclarations []geminiFunctionDeclaration
}

func (t *geminiTool) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{"functionDeclarations": &t.FunctionDeclarations})
}

// geminiFunctionDeclaration declares a function with an OpenAPI-style
// schema (Parameters) or a JSON schema (ParametersJSONSchema).
type geminiFunctionDeclaration struct {
	Name                 string
	Parameters           json.RawMessage
	ParametersJSONSchema json.RawMessage
}

func (d *geminiFunctionDeclaration) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{
		"name":                 &d.Name,
		"parameters":           &d.Parameters,
		"parametersJsonSchema": &d.ParametersJSONSchema,
	})
}

// schema returns the declaration's parameters as a JSON schema that
// sampleArguments reads: OpenAPI-style type names ("STRING") lowercased.
func (d *geminiFunctionDeclaration) schema() json.RawMessage {
	if len(d.ParametersJSONSchema) > 0 {
		return d.ParametersJSONSchema
	}
	var v any
	if err := json.Unmarshal(d.Parameters, &v); err != nil {
		return d.Parameters
	}
	lowerTypes(v)
	b, err := json.Marshal(v)
	if err != nil {
		return d.Parameters
	}
	return b
}

// lowerTypes lowercases the string values of "type" keys in a decoded
// JSON schema, in place.
func lowerTypes(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "type" {
				x[k] = strings.ToLower(s)
				continue
			}
			lowerTypes(e)
		}
	case []any:
		for _, e := range x {
			lowerTypes(e)
		}
	}
}

type geminiToolConfig struct {
	FunctionCallingConfig geminiFunctionCallingConfig
}

func (c *geminiToolConfig) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{"functionCallingConfig": &c.FunctionCallingConfig})
}

type geminiFunctionCallingConfig struct {
	Mode                 string
	AllowedFunctionNames []string
}

func (c *geminiFunctionCallingConfig) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{"mode": &c.Mode, "allowedFunctionNames": &c.AllowedFunctionNames})
}

// geminiGenerationConfig holds the generation settings the mock honors;
// zero means unset, as in proto3.
type geminiGenerationConfig struct {
	MaxOutputTokens int
	CandidateCount  int
}

func (c *geminiGenerationConfig) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{"maxOutputTokens": &c.MaxOutputTokens, "candidateCount": &c.CandidateCount})
}

// protoObject decodes a JSON object into the destinations named by their
// camelCase field names. Like Google's JSON parser it also takes each
// name in snake_case; it ignores unknown names.
func protoObject(raw []byte, fields map[string]any) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	for name, v := range m {
		dst, ok := fields[name]
		if !ok {
			dst, ok = fields[camelCase(name)]
		}
		if !ok {
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("invalid value at %q: %w", name, err)
		}
	}
	return nil
}

// camelCase turns "max_output_tokens" into "maxOutputTokens".
func camelCase(s string) string {
	var b strings.Builder
	up := false
	for _, r := range s {
		if r == '_' {
			up = true
			continue
		}
		if up {
			r = unicode.ToUpper(r)
			up = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Response shapes.

type geminiResponse struct {
	Candidates     []geminiCandidate     `json:"candidates,omitempty"`
	PromptFeedback *geminiPromptFeedback `json:"promptFeedback,omitempty"`
	UsageMetadata  *geminiUsage          `json:"usageMetadata,omitempty"`
	ModelVersion   string                `json:"modelVersion"`
	ResponseID     string                `json:"responseId"`
}

type geminiCandidate struct {
	Content      *geminiContent `json:"content,omitempty"`
	FinishReason string         `json:"finishReason,omitempty"`
	Index        int            `json:"index"`
}

type geminiUsage struct {
	PromptTokenCount     int `json:"promptTokenCount"`
	CandidatesTokenCount int `json:"candidatesTokenCount,omitempty"`
	TotalTokenCount      int `json:"totalTokenCount"`
}

type geminiPromptFeedback struct {
	BlockReason   string               `json:"blockReason"`
	SafetyRatings []geminiSafetyRating `json:"safetyRatings"`
}

type geminiSafetyRating struct {
	Category    string `json:"category"`
	Probability string `json:"probability"`
	Blocked     bool   `json:"blocked,omitempty"`
}

type geminiErrorBody struct {
	Error geminiError `json:"error"`
}

type geminiError struct {
	Code    int              `json:"code"`
	Message string           `json:"message"`
	Status  string           `json:"status"`
	Details []map[string]any `json:"details,omitempty"`
}

// writeGeminiError sends a Google API error.
func writeGeminiError(w http.ResponseWriter, code int, status, message string, details ...map[string]any) {
	writeJSON(w, code, geminiErrorBody{geminiError{Code: code, Message: message, Status: status, Details: details}})
}

func geminiBadRequest(w http.ResponseWriter, message string) {
	writeGeminiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", message)
}

// serveGemini answers a Gemini API call: latency, auth, method, injected
// faults, then the endpoint.
func (s *Server) serveGemini(w http.ResponseWriter, r *http.Request, c *call, ep endpoint, model string) {
	if !sleep(r.Context(), c.delay) {
		return
	}
	if !s.geminiAuthorized(w, r) {
		return
	}
	if ep == geminiUnknownEndpoint || r.Method != http.MethodPost {
		writeGeminiError(w, http.StatusNotFound, "NOT_FOUND",
			"The mock does not serve "+r.Method+" "+r.URL.Path+"; it serves POST :generateContent, "+
				":streamGenerateContent?alt=sse, :embedContent and :batchEmbedContents.")
		return
	}
	if ep == geminiStreamEndpoint && r.URL.Query().Get("alt") != "sse" {
		geminiBadRequest(w, "The mock serves streamGenerateContent only as server-sent events: add ?alt=sse.")
		return
	}
	if s.injectGeminiFault(w, c) {
		return
	}
	switch ep {
	case geminiGenerateEndpoint, geminiStreamEndpoint:
		s.serveGenerateContent(w, r, c, model, ep == geminiStreamEndpoint)
	case geminiEmbedEndpoint:
		s.serveEmbedContent(w, r)
	case geminiBatchEmbedEndpoint:
		s.serveBatchEmbedContents(w, r, model)
	}
}

// geminiRoute matches "…/{v1,v1alpha,v1beta}/models/{model}:{method}".
func geminiRoute(p string) (ep endpoint, model string, ok bool) {
	i := strings.LastIndex(p, "/models/")
	if i < 0 {
		return notFound, "", false
	}
	prefix, rest := p[:i], p[i+len("/models/"):]
	if !strings.HasSuffix(prefix, "/v1") && !strings.HasSuffix(prefix, "/v1beta") && !strings.HasSuffix(prefix, "/v1alpha") {
		return notFound, "", false
	}
	model, method, ok := strings.Cut(rest, ":")
	if !ok || model == "" || strings.Contains(model, "/") {
		return notFound, "", false
	}
	switch method {
	case "generateContent":
		return geminiGenerateEndpoint, model, true
	case "streamGenerateContent":
		return geminiStreamEndpoint, model, true
	case "embedContent":
		return geminiEmbedEndpoint, model, true
	case "batchEmbedContents":
		return geminiBatchEmbedEndpoint, model, true
	}
	return geminiUnknownEndpoint, model, true
}

// geminiAuthorized checks the x-goog-api-key header or the key query
// parameter, answering the error itself when the key is missing (403) or
// wrong (400).
func (s *Server) geminiAuthorized(w http.ResponseWriter, r *http.Request) bool {
	key := r.Header.Get("x-goog-api-key")
	if key == "" {
		key = r.URL.Query().Get("key")
	}
	if s.keyAccepted(key) {
		return true
	}
	if key == "" {
		writeGeminiError(w, http.StatusForbidden, "PERMISSION_DENIED",
			"Method doesn't allow unregistered callers (callers without established identity). "+
				"Please use API Key or other form of API consumer identity to call this API.")
		return false
	}
	writeGeminiError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
		map[string]any{
			"@type":    "type.googleapis.com/google.rpc.ErrorInfo",
			"reason":   "API_KEY_INVALID",
			"domain":   "googleapis.com",
			"metadata": map[string]string{"service": "generativelanguage.googleapis.com"},
		})
	return false
}

// injectGeminiFault answers 500 INTERNAL or 429 RESOURCE_EXHAUSTED (with
// a RetryInfo detail) if the dice say so.
func (s *Server) injectGeminiFault(w http.ResponseWriter, c *call) bool {
	switch s.drawFault(c) {
	case failureFault:
		writeGeminiError(w, http.StatusInternalServerError, "INTERNAL",
			"An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting")
		return true
	case rateLimitFault:
		writeGeminiError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).",
			map[string]any{
				"@type":      "type.googleapis.com/google.rpc.RetryInfo",
				"retryDelay": protoDuration(s.conf().RetryAfter),
			})
		return true
	}
	return false
}

// protoDuration writes d as protobuf's JSON Duration: "1.5s".
func protoDuration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// geminiPlan is a complete answer, decided before anything is sent.
type geminiPlan struct {
	model, responseID string
	blocked           bool
	candidates        []geminiAnswer
	prompt, output    int // token usage
}

// geminiAnswer is one candidate: text words or a function call.
type geminiAnswer struct {
	words  []string
	call   *geminiFunctionCall
	finish string // STOP or MAX_TOKENS
}

// serveGenerateContent answers :generateContent, or
// :streamGenerateContent when stream is set.
func (s *Server) serveGenerateContent(w http.ResponseWriter, r *http.Request, c *call, model string, stream bool) {
	var req geminiRequest
	if _, err := readJSONBody(w, r, &req); err != nil {
		geminiBadRequest(w, "Invalid JSON payload received. "+err.Error())
		return
	}
	p, err := s.planGemini(&req, model, c)
	if err != nil {
		geminiBadRequest(w, err.Error())
		return
	}
	if stream {
		s.streamGemini(w, r, p)
		return
	}
	writeJSON(w, http.StatusOK, p.response())
	s.countUsage(newUsage(p.prompt, p.output))
}

// planGemini validates req and decides the answer.
func (s *Server) planGemini(req *geminiRequest, model string, c *call) (*geminiPlan, error) {
	if len(req.Contents) == 0 {
		return nil, invalid("contents", "* GenerateContentRequest.contents: contents is not specified")
	}
	p := &geminiPlan{model: model, responseID: randomString(c.rng, alphanumeric, 22)}
	chars, images := 0, 0
	msgs := make([]chatMessage, 0, len(req.Contents)+1)
	turns := req.Contents
	if req.SystemInstruction != nil {
		turns = append([]geminiContent{*req.SystemInstruction}, turns...)
	}
	for i, t := range turns {
		if t.Role != "" && t.Role != "user" && t.Role != "model" && t.Role != "function" {
			return nil, invalid("contents", "Please use a valid role: user, model.")
		}
		if len(t.Parts) == 0 {
			return nil, invalid("contents", "* GenerateContentRequest.contents[%d].parts: contents.parts must not be empty.", i)
		}
		for _, part := range t.Parts {
			chars += utf8.RuneCountInString(part.Text) + len(part.FunctionResponse)
			if part.FunctionCall != nil {
				chars += len(part.FunctionCall.Name) + len(part.FunctionCall.Args)
			}
			if len(part.InlineData) > 0 || len(part.FileData) > 0 {
				images++
			}
			p.blocked = p.blocked || strings.Contains(part.Text, blockMarker)
		}
		raw, err := json.Marshal(t.Parts)
		if err != nil {
			return nil, fmt.Errorf("encode parts: %w", err)
		}
		msgs = append(msgs, chatMessage{Role: t.Role, Content: raw})
	}
	p.prompt = max(chars/4+geminiImageTokens*images, 1)

	gc := req.GenerationConfig
	n := 1
	if gc.CandidateCount != 0 {
		n = gc.CandidateCount
		if n < 1 || n > maxGeminiCandidates {
			return nil, invalid("generationConfig", "* GenerateContentRequest.generation_config.candidate_count: must be between 1 and %d, got %d.", maxGeminiCandidates, n)
		}
	}
	if gc.MaxOutputTokens < 0 {
		return nil, invalid("generationConfig", "* GenerateContentRequest.generation_config.max_output_tokens: must be positive, got %d.", gc.MaxOutputTokens)
	}
	decl, err := chooseGeminiFunction(req)
	if err != nil {
		return nil, err
	}
	if p.blocked {
		return p, nil
	}

	words, finish := s.conf().ReplyTokens, "STOP"
	if gc.MaxOutputTokens > 0 && gc.MaxOutputTokens < words {
		words, finish = gc.MaxOutputTokens, "MAX_TOKENS"
	}
	seed := promptSeed(model, msgs)
	var args string
	if decl != nil {
		args = sampleArguments(decl.schema())
	}
	for i := range n {
		if decl != nil {
			p.candidates = append(p.candidates, geminiAnswer{
				call:   &geminiFunctionCall{Name: decl.Name, Args: json.RawMessage(args)},
				finish: "STOP",
			})
			p.output += textTokens(utf8.RuneCountInString(decl.Name + args))
			continue
		}
		a := geminiAnswer{words: replyWords(seed, i, words), finish: finish}
		p.candidates = append(p.candidates, a)
		p.output += len(a.words)
	}
	return p, nil
}

// chooseGeminiFunction returns the function to call, or nil for a text
// answer: with functionCallingConfig mode AUTO (the default), ANY or
// VALIDATED the first declared function (among allowedFunctionNames if
// given), unless the mode is NONE or the last turn carries a
// functionResponse.
func chooseGeminiFunction(req *geminiRequest) (*geminiFunctionDeclaration, error) {
	var decls []*geminiFunctionDeclaration
	for i := range req.Tools {
		for j := range req.Tools[i].FunctionDeclarations {
			d := &req.Tools[i].FunctionDeclarations[j]
			if d.Name == "" {
				return nil, invalid("tools", "* GenerateContentRequest.tools[%d].function_declarations[%d].name: Name cannot be empty.", i, j)
			}
			decls = append(decls, d)
		}
	}
	cfg := req.ToolConfig.FunctionCallingConfig
	mode := cfg.Mode
	switch mode {
	case "", "MODE_UNSPECIFIED":
		mode = "AUTO"
	case "AUTO", "ANY", "NONE", "VALIDATED":
	default:
		return nil, invalid("toolConfig", "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), %q", cfg.Mode)
	}
	allowed := cfg.AllowedFunctionNames
	if len(allowed) > 0 && mode != "ANY" && mode != "VALIDATED" {
		return nil, invalid("toolConfig", "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: allowed_function_names may only be set when the mode is ANY or VALIDATED.")
	}
	if len(decls) == 0 || mode == "NONE" {
		return nil, nil
	}
	for _, part := range req.Contents[len(req.Contents)-1].Parts {
		if len(part.FunctionResponse) > 0 {
			return nil, nil
		}
	}
	for _, d := range decls {
		if len(allowed) == 0 || slices.Contains(allowed, d.Name) {
			return d, nil
		}
	}
	return nil, invalid("toolConfig", "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: none of %q is declared.", allowed)
}

// base is a response without candidates.
func (p *geminiPlan) base() geminiResponse {
	return geminiResponse{ModelVersion: p.model, ResponseID: p.responseID}
}

// usage is the plan's usageMetadata.
func (p *geminiPlan) usage() *geminiUsage {
	return &geminiUsage{PromptTokenCount: p.prompt, CandidatesTokenCount: p.output, TotalTokenCount: p.prompt + p.output}
}

// response renders the complete answer.
func (p *geminiPlan) response() geminiResponse {
	resp := p.base()
	resp.UsageMetadata = p.usage()
	if p.blocked {
		resp.PromptFeedback = &geminiPromptFeedback{
			BlockReason:   "SAFETY",
			SafetyRatings: []geminiSafetyRating{{Category: "HARM_CATEGORY_DANGEROUS_CONTENT", Probability: "HIGH", Blocked: true}},
		}
		return resp
	}
	for i, a := range p.candidates {
		part := geminiPart{FunctionCall: a.call}
		if a.call == nil {
			part.Text = joinWords(a.words)
		}
		resp.Candidates = append(resp.Candidates, modelCandidate(i, part, a.finish))
	}
	return resp
}

func modelCandidate(index int, part geminiPart, finish string) geminiCandidate {
	return geminiCandidate{Content: &geminiContent{Role: "model", Parts: []geminiPart{part}}, FinishReason: finish, Index: index}
}

// streamGemini sends the plan as server-sent events.
func (s *Server) streamGemini(w http.ResponseWriter, r *http.Request, p *geminiPlan) {
	s.streams.Add(1)
	sw, err := openEventStream(w, r, s.conf().ChunkInterval)
	if err == nil {
		err = s.sendGeminiStream(sw, p)
	}
	if err != nil {
		s.canceled.Add(1)
		return
	}
	s.countUsage(newUsage(p.prompt, p.output))
}

// sendGeminiStream writes the answer as "data:" events ended by CRLF
// pairs, as the real API does: each event a GenerateContentResponse with
// the next piece of every candidate's text (a function call comes whole),
// the last one carrying the finish reasons and usageMetadata. A blocked
// prompt is one event with promptFeedback. With FailAfterChunks the
// connection is cut after that many events if more were to come.
func (s *Server) sendGeminiStream(sw *sseWriter, p *geminiPlan) error {
	send := func(resp geminiResponse) error { return sw.jsonEvent("data: ", resp, "\r\n\r\n") }
	if p.blocked {
		return send(p.response())
	}
	pieces := make([][]string, len(p.candidates))
	steps := 0
	for i, a := range p.candidates {
		if a.call != nil {
			pieces[i] = []string{""}
		} else {
			pieces[i] = splitWords(a.words, s.conf().StreamChunks)
		}
		steps = max(steps, len(pieces[i]))
	}
	for step := range steps {
		resp := p.base()
		for i, a := range p.candidates {
			if step >= len(pieces[i]) {
				continue
			}
			part := geminiPart{FunctionCall: a.call, Text: pieces[i][step]}
			finish := ""
			if step == len(pieces[i])-1 {
				finish = a.finish
			}
			resp.Candidates = append(resp.Candidates, modelCandidate(i, part, finish))
		}
		last := step == steps-1
		if last {
			resp.UsageMetadata = p.usage()
		}
		if err := send(resp); err != nil {
			return err
		}
		if n := s.conf().FailAfterChunks; n > 0 && step+1 == n && !last {
			s.aborted.Add(1)
			panic(http.ErrAbortHandler)
		}
	}
	return nil
}

// geminiEmbedRequest is an EmbedContentRequest.
type geminiEmbedRequest struct {
	Model                string
	Content              *geminiContent
	OutputDimensionality int
}

func (q *geminiEmbedRequest) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{
		"model":                &q.Model,
		"content":              &q.Content,
		"outputDimensionality": &q.OutputDimensionality,
	})
}

type geminiBatchEmbedRequest struct {
	Requests []geminiEmbedRequest
}

func (q *geminiBatchEmbedRequest) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{"requests": &q.Requests})
}

type geminiEmbedding struct {
	Values []float32 `json:"values"`
}

// serveEmbedContent answers :embedContent with {"embedding":{"values"}}.
func (s *Server) serveEmbedContent(w http.ResponseWriter, r *http.Request) {
	var req geminiEmbedRequest
	if _, err := readJSONBody(w, r, &req); err != nil {
		geminiBadRequest(w, "Invalid JSON payload received. "+err.Error())
		return
	}
	e, tokens, err := s.geminiEmbed(&req, "EmbedContentRequest")
	if err != nil {
		geminiBadRequest(w, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Embedding geminiEmbedding `json:"embedding"`
	}{e})
	s.promptTokens.Add(int64(tokens))
}

// serveBatchEmbedContents answers :batchEmbedContents with
// {"embeddings":[{"values"}…]}. Each request names the path's model.
func (s *Server) serveBatchEmbedContents(w http.ResponseWriter, r *http.Request, model string) {
	var req geminiBatchEmbedRequest
	if _, err := readJSONBody(w, r, &req); err != nil {
		geminiBadRequest(w, "Invalid JSON payload received. "+err.Error())
		return
	}
	if len(req.Requests) == 0 || len(req.Requests) > maxGeminiBatch {
		geminiBadRequest(w, fmt.Sprintf("* BatchEmbedContentsRequest.requests: must hold 1 to %d requests, got %d.", maxGeminiBatch, len(req.Requests)))
		return
	}
	out := make([]geminiEmbedding, len(req.Requests))
	total := 0
	for i := range req.Requests {
		field := fmt.Sprintf("BatchEmbedContentsRequest.requests[%d]", i)
		if m := req.Requests[i].Model; m != "models/"+model {
			geminiBadRequest(w, fmt.Sprintf("* %s.model: the model must be %q, as in the URL; got %q.", field, "models/"+model, m))
			return
		}
		e, tokens, err := s.geminiEmbed(&req.Requests[i], field)
		if err != nil {
			geminiBadRequest(w, err.Error())
			return
		}
		out[i] = e
		total += tokens
	}
	writeJSON(w, http.StatusOK, struct {
		Embeddings []geminiEmbedding `json:"embeddings"`
	}{out})
	s.promptTokens.Add(int64(total))
}

// geminiEmbed computes one embedding: the vector OpenAI's format gives
// the same text (the content's text parts joined by newlines), of
// outputDimensionality or EmbeddingDims values.
func (s *Server) geminiEmbed(req *geminiEmbedRequest, field string) (geminiEmbedding, int, error) {
	if req.Content == nil || len(req.Content.Parts) == 0 {
		return geminiEmbedding{}, 0, invalid("content", "* %s.content: content is not specified.", field)
	}
	texts := make([]string, len(req.Content.Parts))
	for i, part := range req.Content.Parts {
		texts[i] = part.Text
	}
	text := strings.Join(texts, "\n")
	if text == "" {
		return geminiEmbedding{}, 0, invalid("content", "* %s.content.parts: text must not be empty.", field)
	}
	dims := s.conf().EmbeddingDims
	if d := req.OutputDimensionality; d != 0 {
		if d < 1 || d > maxEmbeddingDims {
			return geminiEmbedding{}, 0, invalid("outputDimensionality", "* %s.output_dimensionality: must be between 1 and %d, got %d.", field, maxEmbeddingDims, d)
		}
		dims = d
	}
	in, err := textInput(text, "content")
	if err != nil {
		return geminiEmbedding{}, 0, err
	}
	return geminiEmbedding{Values: embeddingVector(in.key, dims)}, in.tokens, nil
}
