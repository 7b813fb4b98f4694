package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// What Sluice reads of answers in the canonical (OpenAI) format: their
// usage and what telemetry records, cheaply, and the messages of errors.

// Answers and chunks are read with gjson, which finds the few fields
// Sluice needs without decoding the rest: a summary costs a few hundred
// nanoseconds, not tens of microseconds (see hot_bench_test.go).

// parseAnswer reads a complete canonical answer's summary, best effort
// (the answer is valid JSON: relayBody checked). The answer's fields are
// walked once; an answer whose choices or usage have the wrong types is
// not trusted (its usage is estimated), as a typed decode would refuse it.
func parseAnswer(data []byte, content bool) provider.Summary {
	a := gjson.ParseBytes(data)
	if !a.IsObject() {
		return provider.Summary{}
	}
	var s provider.Summary
	var choices gjson.Result
	shaped := true
	a.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "id":
			s.ID = str(v)
		case "model":
			s.Model = str(v)
		case "usage":
			shaped = v.Type == gjson.Null || v.IsObject()
			s.Usage = usageOf(v)
		case "choices":
			shaped = v.Type == gjson.Null || v.IsArray()
			choices = v
		}
		return shaped
	})
	if !shaped {
		return provider.Summary{}
	}
	choices.ForEach(func(_, c gjson.Result) bool {
		if f := str(c.Get("finish_reason")); f != "" {
			s.Finish = append(s.Finish, f)
		}
		if content {
			s.Text += str(c.Get("message.content"))
		}
		return true
	})
	return s
}

// str is a JSON string's value ("" for anything else).
func str(r gjson.Result) string {
	if r.Type != gjson.String {
		return ""
	}
	return r.Str
}

// usageOf reads a usage object (nil for anything else), as
// wire.Usage.UnmarshalJSON would: counts written as numbers, integers or
// floats, anything else 0 (wire.Count).
func usageOf(u gjson.Result) *wire.Usage {
	if !u.IsObject() {
		return nil
	}
	n := func(r gjson.Result) int64 {
		if r.Type != gjson.Number {
			return 0
		}
		return wire.Count(r.Num)
	}
	out := &wire.Usage{}
	u.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "prompt_tokens":
			out.PromptTokens = n(v)
		case "completion_tokens":
			out.CompletionTokens = n(v)
		case "total_tokens":
			out.TotalTokens = n(v)
		case "prompt_tokens_details":
			if v.IsObject() {
				out.PromptTokensDetails = &wire.PromptTokensDetails{CachedTokens: n(v.Get("cached_tokens"))}
			}
		case "completion_tokens_details":
			if v.IsObject() {
				out.CompletionTokensDetails = &wire.CompletionTokensDetails{ReasoningTokens: n(v.Get("reasoning_tokens"))}
			}
		}
		return true
	})
	return out
}

// chunkSummary gathers what a stream of canonical chunks says of its
// answer, reading as little of each chunk as it can.
type chunkSummary struct {
	provider.Summary
	content bool
}

// chunk reads one chunk.
func (s *chunkSummary) chunk(data string) {
	if u, _ := scanUsage(data); u != nil {
		s.Usage = u
	}
	first := s.ID == "" && s.Model == ""
	if !first && !s.content && !hasFinishReason(data) {
		return
	}
	c := gjson.Parse(data)
	if first {
		s.ID, s.Model = str(c.Get("id")), str(c.Get("model"))
	}
	c.Get("choices").ForEach(func(_, ch gjson.Result) bool {
		if f := str(ch.Get("finish_reason")); f != "" {
			s.Finish = append(s.Finish, f)
		}
		if s.content {
			s.Text += str(ch.Get("delta.content"))
		}
		return true
	})
}

// scanUsage finds the usage of a chunk, cheaply skipping chunks without
// one. usageOnly is true for the final chunk that carries only usage.
func scanUsage(data string) (u *wire.Usage, usageOnly bool) {
	i := strings.Index(data, `"usage"`)
	if i < 0 {
		return nil, false
	}
	if rest := strings.TrimLeft(data[i+len(`"usage"`):], " \t\r\n:"); strings.HasPrefix(rest, "null") {
		return nil, false
	}
	c := gjson.Parse(data)
	if !c.IsObject() {
		return nil, false
	}
	u = usageOf(c.Get("usage"))
	choices := c.Get("choices")
	return u, u != nil && (!choices.Exists() || choices.IsArray() && len(choices.Array()) == 0)
}

// hasFinishReason reports whether a chunk ends a choice.
func hasFinishReason(data string) bool {
	i := strings.Index(data, `"finish_reason"`)
	if i < 0 {
		return false
	}
	rest := strings.TrimLeft(data[i+len(`"finish_reason"`):], " \t\r\n:")
	return rest != "" && !strings.HasPrefix(rest, "null")
}

// isErrorPayload reports whether an event carries an error object instead
// of a chunk.
func isErrorPayload(data string) bool {
	return strings.HasPrefix(strings.TrimLeft(data, " \t\r\n"), `{"error"`)
}

// validJSON reports whether a complete answer is a JSON object.
func validJSON(data []byte) bool {
	data = bytes.TrimSpace(data)
	return len(data) > 0 && data[0] == '{' && gjson.ValidBytes(data)
}

// upstreamMessage extracts an upstream error's message for our own error,
// falling back to a short excerpt of the body.
func upstreamMessage(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
			return excerpt(obj.Message)
		}
		var s string
		if json.Unmarshal(e.Error, &s) == nil && s != "" {
			return excerpt(s)
		}
	}
	return excerpt(string(bytes.TrimSpace(body)))
}

func excerpt(s string) string {
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// rejectsCredential reports whether an OpenAI error body says the
// upstream rejected the credential, whatever its status: a key it does
// not accept, or an account out of credit (OpenAI's insufficient_quota,
// DashScope's Arrearage), which no retry on it will serve.
func rejectsCredential(body []byte) bool {
	e, ok := openAIErrorOf(body)
	return ok && (e.Type == "authentication_error" || e.Type == "insufficient_quota" ||
		e.Code != nil && (*e.Code == "invalid_api_key" || *e.Code == "insufficient_quota"))
}

// isOpenAIError reports whether a body is an OpenAI error object.
func isOpenAIError(body []byte) bool {
	var e struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Error != nil && e.Error.Message != ""
}

// openAIErrorJSON encodes an OpenAI error body.
func openAIErrorJSON(msg, typ string) []byte {
	b, _ := json.Marshal(openAIError{Error: openAIErrorBody{Message: msg, Type: typ}})
	return b
}

// cooldownFor reads how long an upstream asked to be left alone, within
// routing.retry.max_cooldown.
func cooldownFor(retry config.Retry, h http.Header) time.Duration {
	limit := retry.MaxCooldown.D()
	d := retry.Cooldown.D()
	if ms, err := strconv.ParseFloat(h.Get("retry-after-ms"), 64); err == nil && ms > 0 {
		d = time.Duration(min(ms, float64(limit.Milliseconds())) * float64(time.Millisecond))
	} else if v := h.Get("Retry-After"); v != "" {
		if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 {
			d = time.Duration(min(secs, limit.Seconds()) * float64(time.Second))
		} else if t, err := http.ParseTime(v); err == nil && time.Until(t) > 0 {
			d = time.Until(t)
		}
	}
	return min(d, limit)
}

// cooldown rests a credential, even when the request's context is gone.
func (g *Gateway) cooldown(ctx context.Context, id string, d time.Duration) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := g.limiter.Cooldown(cctx, id, d); err != nil {
		g.log.WarnContext(ctx, "cool-down failed", "credential", id, "error", err.Error())
	}
}
