package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	sse "github.com/tmaxmax/go-sse"
)

// Anthropic Messages clients on a claude channel are relayed natively:
// their own body goes upstream (with the channel's model name and
// parameters), and the upstream's answer comes back untouched. What the
// relay needs to know of the format is here.

// NewNativeRequest implements Native: body is already a Messages request
// and is sent unchanged. The client's anthropic-beta features go along,
// unless the channel sets its own.
func (claude) NewNativeRequest(ctx context.Context, t Target, body []byte) (*http.Request, error) {
	req, err := claudeHTTPRequest(ctx, t, body)
	if err != nil {
		return nil, err
	}
	if beta := t.ClientHeader.Values("anthropic-beta"); len(beta) > 0 && req.Header.Get("anthropic-beta") == "" {
		req.Header.Set("anthropic-beta", strings.Join(beta, ","))
	}
	return req, nil
}

// NativeParams implements Native: the parameters a translated request
// would carry to Anthropic, under their Anthropic names
// (max_completion_tokens and max_tokens → max_tokens, stop →
// stop_sequences, user → metadata.user_id), and Anthropic's own fields
// (top_k, stop_sequences, metadata, thinking, service_tier) as written.
// The rest (penalties, seed, logit_bias…) the translation ignores, and
// Anthropic would refuse, so they are left out.
func (claude) NativeParams(in map[string]json.RawMessage) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range in {
		switch k {
		case "temperature", "top_p", "top_k", "stop_sequences", "metadata", "thinking", "service_tier":
			out[k] = v
		case "max_tokens":
			if _, both := in["max_completion_tokens"]; !both { // it wins, as when translated
				out[k] = v
			}
		case "max_completion_tokens":
			out["max_tokens"] = v
		case "stop":
			var one string
			if json.Unmarshal(v, &one) == nil {
				v, _ = json.Marshal([]string{one})
			}
			out["stop_sequences"] = v
		case "user":
			if _, both := in["metadata"]; both {
				continue // metadata as written wins
			}
			if bytes.Equal(v, []byte("null")) {
				out["metadata"] = v
			} else {
				out["metadata"], _ = json.Marshal(map[string]json.RawMessage{"user_id": v})
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// NativeAnswer implements Native.
func (claude) NativeAnswer(body []byte, content bool) Summary {
	var a struct {
		ID         string   `json:"id"`
		Model      string   `json:"model"`
		StopReason string   `json:"stop_reason"`
		Usage      *clUsage `json:"usage"`
		Content    []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	}
	if json.Unmarshal(body, &a) != nil {
		return Summary{}
	}
	s := Summary{ID: a.ID, Model: a.Model}
	if a.StopReason != "" {
		s.Finish = []string{a.StopReason}
	}
	if content {
		for _, b := range a.Content {
			if b.Type == "text" {
				s.Text += b.Text
			}
		}
	}
	if a.Usage != nil {
		s.Usage = a.Usage.usage()
	}
	return s
}

// NativeError implements Native.
func (claude) NativeError(status int, body []byte, msg string) []byte {
	var e clError
	if json.Unmarshal(body, &e) == nil && e.Type == "error" && e.Error != nil {
		return body
	}
	// A proxy's HTML page or an empty body, not Anthropic's answer.
	typ := "invalid_request_error"
	if status >= 500 {
		typ = "api_error"
	}
	b, _ := json.Marshal(clError{Type: "error", Error: &clErrorDetail{Type: typ, Message: msg}})
	return b
}

// NativeEvents implements Native.
func (claude) NativeEvents(body io.Reader, content bool) EventStream {
	s := &claudeEvents{ssePull: newSSEPull(body), content: content}
	releaseWhenCollected(s, s.stop)
	return s
}

// claudeEvents reads Anthropic's stream events as they came, keeping the
// counts and answer details they carry.
type claudeEvents struct {
	ssePull
	content  bool
	finished bool // message_stop came
	sum      Summary
	usage    clUsage
	counted  bool // an event carried usage
}

// Next implements EventStream.
func (s *claudeEvents) Next() (sse.Event, error) {
	for {
		if s.finished {
			return sse.Event{}, io.EOF
		}
		ev, err, ok := s.next()
		switch {
		case !ok:
			return ev, io.ErrUnexpectedEOF
		case err != nil:
			return ev, err
		case ev.Data == "":
			continue
		}
		if ev.Type == "" {
			// Some Anthropic-compatible upstreams send data-only events:
			// the type is in the payload too.
			ev.Type = clEventType(ev.Data)
		}
		if ev.Type == "error" {
			return ev, claudeEventError(ev.Data)
		}
		s.observe(ev)
		s.finished = ev.Type == "message_stop"
		return ev, nil
	}
}

// Summary implements EventStream.
func (s *claudeEvents) Summary() Summary {
	sum := s.sum
	if s.counted {
		sum.Usage = s.usage.usage()
	}
	return sum
}

// observe reads what one event says of the answer.
func (s *claudeEvents) observe(ev sse.Event) {
	switch ev.Type {
	case "message_start", "message_delta", "content_block_delta":
	default:
		return
	}
	var e clEvent
	if json.Unmarshal([]byte(ev.Data), &e) != nil {
		return
	}
	switch ev.Type {
	case "message_start":
		if e.Message != nil {
			s.sum.ID, s.sum.Model = e.Message.ID, e.Message.Model
			s.usage, s.counted = e.Message.Usage, true
		}
	case "message_delta":
		if e.Delta != nil && e.Delta.StopReason != "" {
			s.sum.Finish = append(s.sum.Finish, e.Delta.StopReason)
		}
		if e.Usage != nil {
			// Counts in message_delta are cumulative, and a count it
			// leaves out (input counts, before newer API versions) stands
			// as message_start gave it.
			s.usage.merge(*e.Usage)
			s.counted = true
		}
	case "content_block_delta":
		if s.content && e.Delta != nil {
			s.sum.Text += e.Delta.Text
		}
	}
}

// clEventType is the type an event's payload names.
func clEventType(data string) string {
	var e struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal([]byte(data), &e)
	return e.Type
}

// claudeEventError is the error an error event reports.
func claudeEventError(data string) error {
	var e clError
	if json.Unmarshal([]byte(data), &e) == nil && e.Error != nil && e.Error.Message != "" {
		return claudeStreamError(e.Error)
	}
	return &Error{Message: claudeExcerpt([]byte(data), 300)}
}
