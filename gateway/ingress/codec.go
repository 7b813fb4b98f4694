// Package ingress serves clients that speak another API than Sluice's
// canonical one (OpenAI Chat Completions): each Codec decodes the client's
// request into a canonical chat.completions body, and encodes the canonical
// answer — a chat.completion, or a stream of chat.completion.chunk
// payloads — back in the client's format.
//
// Two codecs are provided: Anthropic, for Anthropic Messages clients
// (POST /v1/messages), and Responses, for OpenAI Responses clients
// (POST /v1/responses, stateless subset). Codecs hold no state; a
// StreamEncoder holds one stream's state and is not safe for concurrent
// use.
package ingress

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// Event is one server-sent event for the client.
type Event struct{ Type, Data string } // Type "" means a data-only event

// Request is a client request decoded to the canonical form.
type Request struct {
	Canonical []byte // an OpenAI chat.completions request body (model as the client sent it)
	Model     string
	Stream    bool
}

// RequestError is a request Sluice refuses: 400 with Param and Message in
// the client's error shape.
type RequestError struct{ Param, Message string }

// Error returns the message, prefixed with the parameter when there is one.
func (e *RequestError) Error() string {
	if e.Param == "" {
		return e.Message
	}
	return e.Param + ": " + e.Message
}

// refuse builds a RequestError.
func refuse(param, format string, args ...any) *RequestError {
	return &RequestError{Param: param, Message: fmt.Sprintf(format, args...)}
}

// StreamEncoder turns canonical chunks into the client's events.
type StreamEncoder interface {
	Chunk(data []byte) ([]Event, error) // one canonical chat.completion.chunk
	End() []Event                       // after the last chunk
	Fail(message string) []Event        // the events ending a stream broken after its first event
}

// Codec translates one client format to and from the canonical one.
type Codec interface {
	Name() string                              // "anthropic", "responses"
	Format() wire.Format                       // the client API's wire format
	NativeHeaders() []string                   // the API's request headers an upstream speaking Format natively is given
	Decode(body []byte) (*Request, error)      // *RequestError for bad or unsupported requests
	Response(canonical []byte) ([]byte, error) // a chat.completion → the client's answer
	NewStream(model string) StreamEncoder
	Error(status int, typ, code, message string) []byte // the client's error body
}

// Anthropic is the Anthropic Messages codec. Its type has no fields: the
// value cannot change.
var Anthropic = anthropicCodec{}

// Responses is the OpenAI Responses codec (stateless subset). Its type has
// no fields: the value cannot change.
var Responses = responsesCodec{}

// Both codecs implement Codec.
var (
	_ Codec = Anthropic
	_ Codec = Responses
)

// paramErrorer is implemented by codecs whose error shape has a place for
// the parameter at fault.
type paramErrorer interface {
	paramError(status int, typ, code, param, message string) []byte
}

// RequestErrorBody is the 400 body refusing a request in c's error shape,
// naming e.Param where the shape has a place for it (OpenAI's "param"),
// else in the message.
func RequestErrorBody(c Codec, e *RequestError) []byte {
	if p, ok := c.(paramErrorer); ok {
		return p.paramError(400, "invalid_request_error", "invalid_request", e.Param, e.Message)
	}
	return c.Error(400, "invalid_request_error", "invalid_request", e.Error())
}

// marshal encodes v as JSON without escaping <, > and & (model output is
// full of them), and without a trailing newline.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// mustMarshal encodes values built by this package, which always encode.
func mustMarshal(v any) []byte {
	b, err := marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ingress: encode %T: %v", v, err))
	}
	return b
}

// newID returns prefix followed by a suffix derived from the canonical
// answer's id when there is one (so the client's id can be traced back to
// the upstream's), else random.
func newID(prefix, canonical string) string {
	for _, p := range []string{"chatcmpl-", "chatcmpl_", "msg_", "resp_"} {
		canonical = strings.TrimPrefix(canonical, p)
	}
	if canonical != "" && isIDSafe(canonical) {
		return prefix + canonical
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// isIDSafe reports whether s is short and plain enough to carry in an id.
func isIDSafe(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// isNull reports whether a raw JSON value is absent or null.
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// completion is the canonical chat.completion, as the codecs read it.
type completion struct {
	ID      string `json:"id"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content   json.RawMessage `json:"content"`
			Refusal   *string         `json:"refusal"`
			ToolCalls []toolCall      `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *wire.Usage `json:"usage"`
}

// chunk is a canonical chat.completion.chunk, as the codecs read it.
type chunk struct {
	ID      string `json:"id"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content   *string    `json:"content"`
			Refusal   *string    `json:"refusal"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *wire.Usage `json:"usage"`
}

// toolCall is a canonical tool call, or a streamed fragment of one.
type toolCall struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// parseCompletion reads a canonical chat.completion.
func parseCompletion(body []byte) (*completion, error) {
	var c completion
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("decode chat.completion: %w", err)
	}
	return &c, nil
}

// parseChunk reads a canonical chat.completion.chunk.
func parseChunk(data []byte) (*chunk, error) {
	var c chunk
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode chat.completion.chunk: %w", err)
	}
	return &c, nil
}

// contentText reads a canonical message content: a string, text parts, or
// null.
func contentText(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("decode message content: %w", err)
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" || p.Type == "output_text" {
			b.WriteString(p.Text)
		}
	}
	return b.String(), nil
}
