// Package wire holds the OpenAI Chat Completions and Embeddings wire types:
// Sluice's canonical form. Requests and answers in other formats
// (Anthropic Messages, Gemini, Spark, OpenAI Responses) are translated to
// and from these types. Fields keep OpenAI's JSON names; polymorphic fields
// (a string or an array, a string or an object) stay raw, with helpers to
// read them.
package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// ChatRequest is a chat.completions request.
type ChatRequest struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *StreamOptions  `json:"stream_options,omitempty"`
	MaxTokens           *int64          `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	N                   *int64          `json:"n,omitempty"`
	Stop                json.RawMessage `json:"stop,omitempty"` // a string or an array of strings
	Tools               []Tool          `json:"tools,omitempty"`
	ToolChoice          json.RawMessage `json:"tool_choice,omitempty"` // "none", "auto", "required" or {"type":"function","function":{"name":…}}
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat      json.RawMessage `json:"response_format,omitempty"`
	User                string          `json:"user,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	ReasoningEffort     string          `json:"reasoning_effort,omitempty"`
}

// StreamOptions are a streamed request's options.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage,omitempty"`
}

// Message is one chat message.
type Message struct {
	Role       string          `json:"role"`              // system, developer, user, assistant, tool
	Content    json.RawMessage `json:"content,omitempty"` // a string, an array of ContentPart, or null
	Name       string          `json:"name,omitempty"`
	ToolCalls  []ToolCall      `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
	Refusal    *string         `json:"refusal,omitempty"`
}

// ContentPart is one part of a multimodal message.
type ContentPart struct {
	Type     string    `json:"type"` // text, image_url (input_audio and file are not translated)
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is an image by URL or as a data: URL.
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

// Parts returns a message's content as parts: a string content becomes one
// text part; null or absent content, none.
func (m Message) Parts() ([]ContentPart, error) {
	c := bytes.TrimSpace(m.Content)
	switch {
	case len(c) == 0 || bytes.Equal(c, []byte("null")):
		return nil, nil
	case c[0] == '"':
		var s string
		if err := json.Unmarshal(c, &s); err != nil {
			return nil, err
		}
		return []ContentPart{{Type: "text", Text: s}}, nil
	case c[0] == '[':
		var parts []ContentPart
		if err := json.Unmarshal(c, &parts); err != nil {
			return nil, err
		}
		return parts, nil
	}
	return nil, fmt.Errorf("message content must be a string or an array of parts")
}

// Text returns the concatenated text of a message's content.
func (m Message) Text() string {
	parts, _ := m.Parts()
	var b bytes.Buffer
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// TextContent encodes a string as message content.
func TextContent(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// Tool is a function the model may call.
type Tool struct {
	Type     string   `json:"type"` // function
	Function Function `json:"function"`
}

// Function describes a callable function.
type Function struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"` // a JSON schema
	Strict      *bool           `json:"strict,omitempty"`
}

// ToolCall is a call the model made. In stream chunks, Index orders the
// calls and later deltas carry only Function.Arguments fragments.
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"` // function
	Function FunctionCall `json:"function"`
}

// FunctionCall is a function's name and JSON arguments.
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// ToolChoice reads a request's tool_choice: mode is "", "none", "auto",
// "required" or "function" (then name is the function's).
func (r ChatRequest) ToolChoiceMode() (mode, name string, err error) {
	c := bytes.TrimSpace(r.ToolChoice)
	if len(c) == 0 || bytes.Equal(c, []byte("null")) {
		return "", "", nil
	}
	if c[0] == '"' {
		err = json.Unmarshal(c, &mode)
		return mode, "", err
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(c, &obj); err != nil {
		return "", "", err
	}
	return "function", obj.Function.Name, nil
}

// StopSequences reads a request's stop: a string or an array.
func (r ChatRequest) StopSequences() ([]string, error) {
	c := bytes.TrimSpace(r.Stop)
	if len(c) == 0 || bytes.Equal(c, []byte("null")) {
		return nil, nil
	}
	if c[0] == '"' {
		var s string
		err := json.Unmarshal(c, &s)
		return []string{s}, err
	}
	var out []string
	err := json.Unmarshal(c, &out)
	return out, err
}

// MaxOutputTokens is the request's completion cap (max_completion_tokens,
// else max_tokens), or 0.
func (r ChatRequest) MaxOutputTokens() int64 {
	if r.MaxCompletionTokens != nil {
		return *r.MaxCompletionTokens
	}
	if r.MaxTokens != nil {
		return *r.MaxTokens
	}
	return 0
}

// ChatResponse is a chat.completion.
type ChatResponse struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"` // chat.completion
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	Choices           []Choice `json:"choices"`
	Usage             *Usage   `json:"usage,omitempty"`
	SystemFingerprint string   `json:"system_fingerprint,omitempty"`
}

// Choice is one answer of a chat.completion.
type Choice struct {
	Index        int     `json:"index"`
	Message      Message `json:"message"`
	FinishReason string  `json:"finish_reason"` // stop, length, tool_calls, content_filter
}

// Usage counts tokens: the one usage type, for upstream answers in
// every format once translated, for the client codecs, and for quotas.
// Decoding accepts counts written as floats (12.0), as some upstreams
// write them; a count that is not a finite, non-negative whole-number
// range value is read as 0.
type Usage struct {
	PromptTokens            int64                    `json:"prompt_tokens"`
	CompletionTokens        int64                    `json:"completion_tokens"`
	TotalTokens             int64                    `json:"total_tokens"`
	PromptTokensDetails     *PromptTokensDetails     `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *CompletionTokensDetails `json:"completion_tokens_details,omitempty"`
}

// PromptTokensDetails break prompt tokens down.
type PromptTokensDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

// CompletionTokensDetails break completion tokens down.
type CompletionTokensDetails struct {
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

// UnmarshalJSON implements json.Unmarshaler, reading counts written as
// integers or floats.
func (u *Usage) UnmarshalJSON(b []byte) error {
	var raw struct {
		PromptTokens        count `json:"prompt_tokens"`
		CompletionTokens    count `json:"completion_tokens"`
		TotalTokens         count `json:"total_tokens"`
		PromptTokensDetails *struct {
			CachedTokens count `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
		CompletionTokensDetails *struct {
			ReasoningTokens count `json:"reasoning_tokens"`
		} `json:"completion_tokens_details"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*u = Usage{PromptTokens: int64(raw.PromptTokens), CompletionTokens: int64(raw.CompletionTokens), TotalTokens: int64(raw.TotalTokens)}
	if d := raw.PromptTokensDetails; d != nil {
		u.PromptTokensDetails = &PromptTokensDetails{CachedTokens: int64(d.CachedTokens)}
	}
	if d := raw.CompletionTokensDetails; d != nil {
		u.CompletionTokensDetails = &CompletionTokensDetails{ReasoningTokens: int64(d.ReasoningTokens)}
	}
	return nil
}

// count is a token count that may be written as a float.
type count int64

// maxCount bounds counts: larger ones are nonsense.
const maxCount = 1 << 31

// UnmarshalJSON implements json.Unmarshaler. The decoder has checked b
// is one JSON value: a number parses, anything else (a string, null) is 0.
func (c *count) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		f = 0
	}
	*c = count(Count(f))
	return nil
}

// Count is a token count written as f: rounded up, and 0 when it is not
// finite, negative or beyond 2³¹.
func Count(f float64) int64 {
	if math.IsNaN(f) || f < 0 || f > maxCount {
		return 0
	}
	return int64(math.Ceil(f))
}

// Total returns the tokens used, or fallback when the usage says none.
func (u *Usage) Total(fallback int64) int64 {
	if u == nil {
		return fallback
	}
	t := u.TotalTokens
	if t <= 0 {
		t = u.PromptTokens + u.CompletionTokens
	}
	if t <= 0 {
		return fallback
	}
	return t
}

// Cached is the number of prompt tokens read from a cache.
func (u *Usage) Cached() int64 {
	if u == nil || u.PromptTokensDetails == nil {
		return 0
	}
	return min(u.PromptTokensDetails.CachedTokens, u.PromptTokens)
}

// Reasoning is the number of completion tokens spent reasoning.
func (u *Usage) Reasoning() int64 {
	if u == nil || u.CompletionTokensDetails == nil {
		return 0
	}
	return u.CompletionTokensDetails.ReasoningTokens
}

// Format is a wire format: how an API writes requests and answers.
type Format string

// Formats Sluice speaks. OpenAI's Chat Completions format is the
// canonical one: every other format is translated to and from it.
const (
	FormatOpenAI    Format = "openai"    // Chat Completions (and Embeddings)
	FormatAnthropic Format = "anthropic" // Anthropic Messages
	FormatGemini    Format = "gemini"    // Gemini generateContent
	FormatSpark     Format = "spark"     // iFlytek Spark's WebSocket API
	FormatResponses Format = "responses" // OpenAI Responses
)

// ChatChunk is a chat.completion.chunk.
type ChatChunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"` // chat.completion.chunk
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	Choices           []ChunkChoice `json:"choices"`
	Usage             *Usage        `json:"usage,omitempty"`
	SystemFingerprint string        `json:"system_fingerprint,omitempty"`
}

// ChunkChoice is one choice's delta in a chunk.
type ChunkChoice struct {
	Index        int     `json:"index"`
	Delta        Delta   `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

// Delta is what a chunk adds to a choice.
type Delta struct {
	Role      string     `json:"role,omitempty"`
	Content   *string    `json:"content,omitempty"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	Refusal   *string    `json:"refusal,omitempty"`
}

// EmbeddingRequest is an embeddings request. Input is a string, an array
// of strings, an array of token ids or an array of token arrays.
type EmbeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format,omitempty"`
	Dimensions     *int64          `json:"dimensions,omitempty"`
	User           string          `json:"user,omitempty"`
}

// Texts reads an embeddings input made of text (token inputs are refused).
func (r EmbeddingRequest) Texts() ([]string, error) {
	c := bytes.TrimSpace(r.Input)
	if len(c) > 0 && c[0] == '"' {
		var s string
		err := json.Unmarshal(c, &s)
		return []string{s}, err
	}
	var out []string
	if err := json.Unmarshal(c, &out); err != nil {
		return nil, fmt.Errorf("this upstream embeds text only: input must be a string or an array of strings")
	}
	return out, nil
}

// EmbeddingResponse is an embeddings list.
type EmbeddingResponse struct {
	Object string      `json:"object"` // list
	Data   []Embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  Usage       `json:"usage"`
}

// Embedding is one input's vector.
type Embedding struct {
	Object    string    `json:"object"` // embedding
	Index     int       `json:"index"`
	Embedding []float64 `json:"embedding"`
}

// ErrorBody is OpenAI's error shape.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is an error's content.
type ErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// NewError encodes an OpenAI error body.
func NewError(typ, code, message string) []byte {
	e := ErrorBody{Error: ErrorDetail{Message: message, Type: typ}}
	if code != "" {
		e.Error.Code = &code
	}
	b, _ := json.Marshal(e)
	return b
}

// Ptr returns a pointer to v, for the optional fields.
func Ptr[T any](v T) *T { return &v }
