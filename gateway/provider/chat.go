package provider

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// decodeChat reads a canonical chat request for a translated upstream
// (named in messages) that answers with text: it refuses the parameters
// such an upstream cannot honour (log probabilities, audio, non-text
// output modalities, the legacy function parameters) and, for an upstream
// that returns a single choice, n > 1. Each error names the parameter.
func decodeChat(body []byte, upstream string, singleChoice bool) (wire.ChatRequest, error) {
	var (
		cr wire.ChatRequest
		// Fields wire.ChatRequest does not carry, read only to refuse them.
		r struct {
			Logprobs     *bool           `json:"logprobs"`
			TopLogprobs  *int64          `json:"top_logprobs"`
			Audio        json.RawMessage `json:"audio"`
			Modalities   []string        `json:"modalities"`
			Functions    json.RawMessage `json:"functions"`
			FunctionCall json.RawMessage `json:"function_call"`
		}
	)
	if err := json.Unmarshal(body, &cr); err != nil {
		return cr, fmt.Errorf("decode chat request: %w", err)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return cr, fmt.Errorf("decode chat request: %w", err)
	}
	switch {
	case singleChoice && cr.N != nil && *cr.N > 1:
		return cr, fmt.Errorf("n: %s returns a single choice, n must be 1", upstream)
	case r.Logprobs != nil && *r.Logprobs:
		return cr, fmt.Errorf("logprobs: %s does not return log probabilities", upstream)
	case r.TopLogprobs != nil && *r.TopLogprobs > 0:
		return cr, fmt.Errorf("top_logprobs: %s does not return log probabilities", upstream)
	case isSet(r.Audio):
		return cr, fmt.Errorf("audio: %s does not produce audio", upstream)
	case isSet(r.Functions), isSet(r.FunctionCall):
		return cr, fmt.Errorf("functions, function_call: the legacy function parameters are not supported, use tools and tool_choice")
	}
	for _, m := range r.Modalities {
		if m != "text" {
			return cr, fmt.Errorf("modalities: output modality %q is not supported", m)
		}
	}
	return cr, nil
}

// checkTextResponseFormat accepts only the default, text, response
// format: for upstreams without a JSON mode.
func checkTextResponseFormat(raw json.RawMessage) error {
	if !isSet(raw) {
		return nil
	}
	var rf struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &rf); err != nil {
		return fmt.Errorf("response_format: %w", err)
	}
	if rf.Type != "" && rf.Type != "text" {
		return fmt.Errorf("response_format: type %q is not supported, only text", rf.Type)
	}
	return nil
}

// isSet reports whether a raw JSON field is present and not null.
func isSet(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}
