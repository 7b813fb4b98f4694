package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strconv"

	"github.com/sluice-gateway/sluice/gateway/ingress"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// request is what Sluice reads of a client's call: the few fields that
// routing and quotas need. Every other field is relayed untouched.
type request struct {
	ep     provider.Endpoint
	fields map[string]json.RawMessage // the top-level fields, values raw

	model        string // as the client wrote it, once checked (checkModelName)
	label        string // its metric label (router.label), set once routed
	stream       bool
	includeUsage bool  // the client asked for stream_options.include_usage
	estimate     int64 // tokens reserved against TPM before the call
	prompt       int64 // estimated prompt tokens
	maxTokens    int64 // the completion cap the client asked for (0: none)
	choices      int64 // completions asked for (n), at least 1
	// inputBound is the most input tokens the request can be billed: its
	// bytes of text (a token is at least a byte), plus each message's
	// framing and a tools prompt. What a call can cost is reserved from
	// it and the output bound.
	inputBound int64
	// outputCap is the completion cap Sluice sends upstream for a request
	// that sets none when a budget governs it (0: none sent).
	outputCap int64
	// fallbackFrom is the model the client asked for, once the request
	// goes on with a model of its fallback chain.
	fallbackFrom string

	// Clients of another API than OpenAI Chat Completions: the codec of
	// their API and, when a channel speaks that API natively, their own
	// body and the API's headers, relayed to it untranslated.
	codec        ingress.Codec
	native       map[string]json.RawMessage
	nativeHeader http.Header
}

// defaultCompletionEstimate is the completion size reserved when a chat
// request does not cap it with max_tokens; settling corrects it.
const defaultCompletionEstimate = 256

// maxTokensCap bounds max_tokens: larger values are nonsense that would
// overflow token estimates.
const maxTokensCap = 1 << 24

// parseRequest reads and checks a request body for an endpoint.
func parseRequest(ep provider.Endpoint, body []byte) (*request, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, badParam("", "the request body must be a JSON object")
	}
	r := &request{ep: ep}
	if err := json.Unmarshal(body, &r.fields); err != nil {
		return nil, badParam("", "invalid JSON body: %v", err)
	}
	// An optional field sent as null is absent: SDKs write unset options
	// as null.
	dropNulls(r.fields)
	if err := decodeField(r.fields, "model", &r.model); err != nil {
		return nil, err
	}
	if err := checkModelName(r.model); err != nil {
		return nil, err
	}

	switch ep {
	case provider.Chat:
		return r, r.parseChat()
	case provider.Embeddings:
		return r, r.parseEmbeddings()
	}
	return r, nil
}

func (r *request) parseChat() error {
	chars, bound, messages, err := messagesSize(r.fields["messages"])
	if err != nil {
		return err
	}
	if err := decodeField(r.fields, "stream", &r.stream); err != nil {
		return err
	}
	var opts struct {
		IncludeUsage bool `json:"include_usage"`
	}
	if err := decodeField(r.fields, "stream_options", &opts); err != nil {
		return err
	}
	r.includeUsage = opts.IncludeUsage
	var maxTokens, maxCompletion, n int64
	for _, f := range []struct {
		name string
		dst  *int64
		max  int64
	}{{"max_tokens", &maxTokens, maxTokensCap}, {"max_completion_tokens", &maxCompletion, maxTokensCap}, {"n", &n, 128}} {
		if err := decodeField(r.fields, f.name, f.dst); err != nil {
			return err
		}
		if *f.dst < 0 || *f.dst > f.max {
			return badParam(f.name, "%s must be between 0 and %d", f.name, f.max)
		}
	}

	tools := int64(len(r.fields["tools"]) + len(r.fields["functions"]))
	chars += tools
	r.prompt = chars/4 + 1
	r.inputBound = bound + tools + messageFraming*(messages+1)
	if tools > 0 {
		r.inputBound += toolsPrompt
	}
	completion := int64(defaultCompletionEstimate)
	if maxCompletion > 0 {
		completion = maxCompletion
	} else if maxTokens > 0 {
		completion = maxTokens
	}
	r.maxTokens = max(maxCompletion, maxTokens)
	r.choices = max(n, 1)
	r.estimate = r.prompt + completion*r.choices
	return nil
}

// messageFraming bounds the tokens a message costs beyond its text (its
// role and separators), and toolsPrompt the tokens a provider adds to
// describe tools (Anthropic's tool-use system prompt is several hundred).
const (
	messageFraming = 16
	toolsPrompt    = 1024
)

// outputBound is the most output tokens a request can be billed: its
// completion cap (the client's, else the one Sluice sends), else def, for
// each completion asked for.
func (r *request) outputBound(def int64) int64 {
	if r.ep != provider.Chat {
		return 0
	}
	limit := r.maxTokens
	if limit == 0 {
		limit = or(r.outputCap, def)
	}
	return limit * max(r.choices, 1)
}

func (r *request) parseEmbeddings() error {
	raw, ok := r.fields["input"]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return badParam("input", "you must provide an input parameter")
	}
	r.prompt = int64(len(raw))/4 + 1
	r.inputBound = int64(len(raw)) + messageFraming
	r.estimate = r.prompt
	return nil
}

// messagesSize reads the messages array one message at a time, so that a
// large conversation is never held decoded whole, and returns the bytes
// of text it holds for token estimation, a bound of the tokens it can be
// billed, and the number of messages.
func messagesSize(raw json.RawMessage) (chars, bound, n int64, err error) {
	if len(raw) == 0 {
		return 0, 0, 0, badParam("messages", "messages must be a non-empty array")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return 0, 0, 0, badParam("messages", "invalid type for messages: want an array of messages")
	}
	for dec.More() {
		var m chatMessage
		if err := dec.Decode(&m); err != nil {
			return 0, 0, 0, badParam("messages", "invalid type for messages[%d]: %s", n, jsonTypeError(err))
		}
		e, b := m.textBytes()
		chars += e
		bound += b
		n++
	}
	if n == 0 {
		return 0, 0, 0, badParam("messages", "messages must be a non-empty array")
	}
	return chars, bound, n, nil
}

// chatMessage is what token estimation reads of a message.
type chatMessage struct {
	Content   json.RawMessage `json:"content"`
	ToolCalls json.RawMessage `json:"tool_calls"`
}

// imageTokens is the estimate for one image part; images are billed by
// size, not by the length of their base64.
const imageTokens = 765

// textBytes estimates the message's size in bytes of text, counting an
// image as imageTokens*4 bytes whatever its encoding.
func (m chatMessage) textBytes() (estimate, bound int64) {
	n := int64(len(m.ToolCalls))
	c := bytes.TrimSpace(m.Content)
	switch {
	case len(c) == 0:
	case c[0] == '"':
		n += int64(len(c))
	case c[0] == '[':
		var parts []json.RawMessage
		if json.Unmarshal(c, &parts) == nil {
			var more int64 // what the bound counts beyond the estimate
			for _, raw := range parts {
				var p struct {
					Type string `json:"type"`
					Text string `json:"text"`
				}
				_ = json.Unmarshal(raw, &p)
				switch p.Type {
				case "text":
					n += int64(len(p.Text))
				case "image_url", "image":
					n += imageTokens * 4
					more += imageBound - imageTokens*4
				default:
					// Audio, files: as many tokens as they have bytes, at most.
					n += imageTokens * 4
					more += max(0, int64(len(raw))-imageTokens*4)
				}
			}
			return n, n + more
		}
	default:
		n += int64(len(c))
	}
	return n, n
}

// imageBound bounds the tokens one image is billed (the largest any
// provider bills is below it).
const imageBound = 4096

// dropNulls removes the fields whose value is null.
func dropNulls(fields map[string]json.RawMessage) {
	for k, v := range fields {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			delete(fields, k)
		}
	}
}

// decodeField decodes one optional top-level field; null and absent leave
// dst untouched. A value of the wrong type is a 400 naming the field.
func decodeField(fields map[string]json.RawMessage, name string, dst any) error {
	raw, ok := fields[name]
	if !ok || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return badParam(name, "invalid type for %s: %s", name, jsonTypeError(err))
	}
	return nil
}

func jsonTypeError(err error) string {
	if te, ok := err.(*json.UnmarshalTypeError); ok {
		return fmt.Sprintf("got %s, want %s", te.Value, te.Type.String())
	}
	return err.Error()
}

// upstreamBody builds the body sent to one upstream: the client's fields
// with the upstream's model name and the channel's parameters, and, on
// streams, usage requested so that token quotas settle on real numbers.
func (r *request) upstreamBody(model string, p *params, outputCap map[string]json.RawMessage) ([]byte, error) {
	fields := withParams(r.fields, model, p)
	maps.Copy(fields, outputCap)
	if r.stream && !r.includeUsage {
		var opts map[string]json.RawMessage
		if raw, ok := fields["stream_options"]; ok {
			_ = json.Unmarshal(raw, &opts)
		}
		if opts == nil {
			opts = map[string]json.RawMessage{}
		}
		opts["include_usage"] = json.RawMessage("true")
		fields["stream_options"], _ = json.Marshal(opts)
	}
	return json.Marshal(fields)
}

// nativeBody builds the body relayed in the client's own API: its fields
// with the upstream's model name and the channel's parameters.
func (r *request) nativeBody(model string, p *params, outputCap map[string]json.RawMessage) ([]byte, error) {
	fields := withParams(r.native, model, p)
	maps.Copy(fields, outputCap)
	return json.Marshal(fields)
}

// canonicalCap is the completion cap a request without one sends (see
// outputCap), in the field an upstream type reads: OpenAI's current
// max_completion_tokens (its reasoning models refuse max_tokens), and for
// the other OpenAI-compatible services the max_tokens they all read. The
// translating adapters read either.
func (r *request) canonicalCap(spec provider.Spec) map[string]json.RawMessage {
	if r.outputCap <= 0 {
		return nil
	}
	field := "max_tokens"
	if spec.Type == "openai" || spec.Type == "azure" {
		field = "max_completion_tokens"
	}
	return map[string]json.RawMessage{field: json.RawMessage(strconv.FormatInt(r.outputCap, 10))}
}

// nativeCap is the completion cap of a request relayed in its own API:
// the Responses API's max_output_tokens (Anthropic's Messages API
// requires max_tokens of every request).
func (r *request) nativeCap() map[string]json.RawMessage {
	if r.outputCap <= 0 || r.codec == nil || r.codec.Format() != wire.FormatResponses {
		return nil
	}
	if _, set := r.native["max_output_tokens"]; set {
		return nil
	}
	return map[string]json.RawMessage{"max_output_tokens": json.RawMessage(strconv.FormatInt(r.outputCap, 10))}
}

// withParams returns a copy of a body's fields with the model name and a
// channel's parameters applied: defaults where the client sent nothing,
// overrides always (a null override removes the field).
func withParams(body map[string]json.RawMessage, model string, p *params) map[string]json.RawMessage {
	fields := maps.Clone(body)
	m, _ := json.Marshal(model)
	fields["model"] = m
	if p == nil {
		return fields
	}
	for k, v := range p.defaults {
		if _, set := fields[k]; !set {
			fields[k] = v
		}
	}
	for k, v := range p.overrides {
		if bytes.Equal(v, []byte("null")) {
			delete(fields, k)
		} else {
			fields[k] = v
		}
	}
	return fields
}

// params are a channel's parameters, encoded once at startup.
type params struct {
	defaults, overrides map[string]json.RawMessage
}

func encodeParams(defaults, overrides map[string]any) (*params, error) {
	if len(defaults) == 0 && len(overrides) == 0 {
		return nil, nil
	}
	var p params
	var err error
	if p.defaults, err = encodeAll(defaults); err != nil {
		return nil, err
	}
	if p.overrides, err = encodeAll(overrides); err != nil {
		return nil, err
	}
	return &p, nil
}

// native is p in the terms of an API that adapter a speaks natively, for
// bodies relayed untranslated; nil when a speaks none or nothing is left.
func (p *params) native(a provider.Adapter) *params {
	n, ok := a.(provider.Native)
	if p == nil || !ok {
		return nil
	}
	out := params{defaults: n.NativeParams(p.defaults), overrides: n.NativeParams(p.overrides)}
	if len(out.defaults) == 0 && len(out.overrides) == 0 {
		return nil
	}
	return &out
}

func encodeAll(values map[string]any) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(values))
	for k, v := range values {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode parameter %s: %w", k, err)
		}
		out[k] = b
	}
	return out, nil
}
