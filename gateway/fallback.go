package gateway

import (
	"errors"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/quota"
	"github.com/sluice-gateway/sluice/telemetry"
)

// fallbackReason is why no credential of a model could answer, in the
// terms of routing.fallbacks[].on: a request whose chain names the reason
// goes on with the chain's next model. "" means another model would not
// help (the client's own quota, a request the client got wrong).
type fallbackReason string

const (
	reasonRateLimit     fallbackReason = "rate_limit"
	reasonUnavailable   fallbackReason = "unavailable"
	reasonTimeout       fallbackReason = "timeout"
	reasonContextWindow fallbackReason = "context_window"
	reasonContentPolicy fallbackReason = "content_policy"
	// reasonOfError, in the outcome table, says the error decides: the
	// upstream's own words for a prompt too long or refused content.
	reasonOfError fallbackReason = "(of the error)"
)

// fallback is the fallback reason of an attempt's report.
func (r report) fallback() fallbackReason {
	if f := outcomes[r.what].fallback; f != reasonOfError {
		return f
	}
	return r.reason
}

// admissionReason is the fallback reason of a request no candidate was
// admitted for: every credential at its limit (a refusal of the
// credentials' quota), or every breaker open. A refusal by the client's
// own quota or budget is never one: another model would be refused too.
func admissionReason(err error) fallbackReason {
	var rf *refusal
	switch {
	case errors.As(err, &rf) && rf.d.Scope == quota.ScopeCredential:
		return reasonRateLimit
	case errors.Is(err, ErrNoUpstream):
		return reasonUnavailable
	}
	return ""
}

// The words providers use in the error of a request whose prompt does not
// fit the model, and of one whose content they refused.
var (
	contextWindowWords = []string{
		"context_length_exceeded",              // OpenAI's code
		"maximum context length",               // OpenAI's and vLLM's message
		"prompt is too long",                   // Anthropic
		"exceeds the maximum number of tokens", // Gemini
		"input is too long",                    // Bedrock, Mistral
		"context window",
	}
	contentPolicyWords = []string{
		"content_policy_violation",     // OpenAI's code
		"content_filter",               // Azure OpenAI's code
		"responsibleaipolicyviolation", // Azure's inner code
		"content management policy",    // Azure's message
		"violates our usage policies",  // OpenAI's moderation message
		"prohibited_content",           // Gemini's block reason
	}
)

// errorReason reads an upstream's error body for a prompt too long or
// refused content.
func errorReason(body []byte) fallbackReason {
	text := strings.ToLower(string(body[:min(len(body), 8<<10)]))
	for _, w := range contextWindowWords {
		if strings.Contains(text, w) {
			return reasonContextWindow
		}
	}
	for _, w := range contentPolicyWords {
		if strings.Contains(text, w) {
			return reasonContentPolicy
		}
	}
	return ""
}

// noteFallback records that a request goes on with the next model of its
// chain: on the call, its span and in metrics.
func (g *Gateway) noteFallback(c echo.Context, req *request, next string, why fallbackReason) {
	if req.fallbackFrom == "" {
		req.fallbackFrom = req.model
	}
	st := stateOf(c)
	from, to := st.router.label(req.fallbackFrom), st.router.label(next)
	span := trace.SpanFromContext(c.Request().Context())
	span.AddEvent("sluice.fallback", trace.WithAttributes(telemetry.FallbackFrom.String(from),
		telemetry.FallbackTo.String(to), telemetry.FallbackReason.String(string(why))))
	span.SetAttributes(telemetry.FallbackFrom.String(from), telemetry.FallbackReason.String(string(why)))
	g.metrics.fallbacks.Add(c.Request().Context(), 1, metric.WithAttributes(telemetry.FallbackFrom.String(from),
		telemetry.FallbackTo.String(to), telemetry.FallbackReason.String(string(why))))
}

// failurePenalty is the least time to first byte a failed attempt counts
// as in the latency strategy's averages.
const failurePenalty = time.Second
