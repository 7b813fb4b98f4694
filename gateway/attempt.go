package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/quota"
)

// attempt is one upstream exchange with an admitted credential, from the
// upstream body built to the last byte relayed. It owns its context
// (cancelled by the channel timeout until the answer begins, by the
// stream idle timeout after), the answer, and the stream pump. run says
// what happened; end applies the outcome table to it, exactly once.
type attempt struct {
	g    *Gateway
	st   *state // the config version of the request
	c    echo.Context
	req  *request
	adm  *admitted
	cred *credential
	n    int // 1 for a request's first attempt

	start  time.Time       // when the attempt began
	ctx    context.Context // the request's, carrying the attempt's span
	actx   context.Context // the attempt's own, cancelled by its timers
	cancel context.CancelCauseFunc
	timer  *time.Timer // the channel timeout, until the answer begins
	idle   *time.Timer // the stream idle timeout, once the stream began
	span   trace.Span

	status int              // the upstream's HTTP status
	sum    provider.Summary // what the answer says of itself
	stream *streamed        // a streamed answer's progress
	billed bool             // bill worked out the attempt's cost
}

// report is what run says of an attempt.
type report struct {
	what     happening
	err      error          // nil when answered
	cooldown time.Duration  // how long the credential should rest (rateLimited)
	reason   fallbackReason // of a clientMistake: a prompt too long, refused content
}

// Why an attempt's context was cancelled by Sluice itself.
var (
	errAttemptTimeout = errors.New("no answer within the channel timeout")
	errStreamIdle     = errors.New("stream idle for longer than stream_idle_timeout")
)

// newAttempt starts attempt n of a request on an admitted credential.
func (g *Gateway) newAttempt(c echo.Context, req *request, adm *admitted, n int) *attempt {
	a := &attempt{g: g, st: stateOf(c), c: c, req: req, adm: adm, cred: adm.cand.cred, n: n, start: time.Now()}
	a.cred.inflight.Add(1)
	a.ctx, a.span = g.startAttempt(c.Request().Context(), req, adm, n)
	a.actx, a.cancel = context.WithCancelCause(a.ctx)
	a.timer = time.AfterFunc(a.cred.ch.timeout, func() { a.cancel(errAttemptTimeout) })
	return a
}

// run makes the upstream call and, if it answers, relays the answer.
func (a *attempt) run() report {
	body, native, err := a.body()
	if err != nil {
		return report{what: notBuilt, err: fmt.Errorf("build upstream body: %w", err)}
	}
	ans, err := a.exchange(body, native)
	if err != nil {
		return a.exchangeFailed(err)
	}
	defer ans.close()
	a.status = ans.status
	switch {
	case ans.status < 200 || ans.status > 299:
		return a.refused(ans)
	case ans.events != nil:
		return a.pump(ans)
	}
	return a.relayBody(ans)
}

// body builds what goes upstream: the client's own body relayed natively
// when the credential's adapter speaks the client's API, else the
// canonical one.
func (a *attempt) body() ([]byte, provider.Native, error) {
	model := a.adm.cand.upstreamModel()
	if native, ok := a.req.nativeFor(a.cred.adapter); ok {
		b, err := a.req.nativeBody(model, a.cred.ch.nativeParams, a.req.nativeCap())
		return b, native, err
	}
	b, err := a.req.upstreamBody(model, a.cred.ch.params, a.req.canonicalCap(a.cred.spec))
	return b, nil, err
}

// exchangeFailed says what an exchange error means.
func (a *attempt) exchangeFailed(err error) report {
	var refused *provider.Error
	var te *transportError
	var unreadable *unreadableAnswer
	switch {
	case errors.As(err, &refused):
		// The adapter cannot express the request for its upstream: the
		// client's error, unless another candidate can serve it.
		return report{what: notExpressible, err: translationRefusal(refused)}
	case errors.As(err, &te):
		return a.transportFailed(te.err, te.midBody)
	case errors.As(err, &unreadable):
		return report{what: untranslatable, err: fmt.Errorf("%w: %v", ErrUpstream, err)}
	}
	return report{what: unreachable, err: fmt.Errorf("%w: %v", ErrUpstream, err)}
}

// transportFailed says what a failure to reach the upstream or to read its
// answer means, before anything reached the client. With midBody, a
// complete answer had begun.
func (a *attempt) transportFailed(err error, midBody bool) report {
	switch {
	case a.ctx.Err() != nil:
		return report{what: clientLeft, err: a.g.gone(a.ctx)}
	case errors.Is(context.Cause(a.actx), errAttemptTimeout):
		return report{what: timedOut, err: fmt.Errorf("%w: %v", ErrUpstreamTimeout, errAttemptTimeout)}
	case midBody:
		return report{what: readFailed, err: fmt.Errorf("%w: %s", ErrUpstream, transportMessage(err))}
	}
	return report{what: unreachable, err: fmt.Errorf("%w: %s", ErrUpstream, transportMessage(err))}
}

// refused says what a non-2xx answer means, before anything reached the
// client: a 429 rests the credential; an error that is the client's own
// is passed on in its API's shape.
func (a *attempt) refused(ans *answer) report {
	body, status := ans.errBody, ans.status
	what := statusHappening(status, ans.native == nil && rejectsCredential(body))
	switch what {
	case rateLimited:
		cool := cooldownFor(a.st.cfg.Routing.Retry, ans.header)
		d := quota.Decision{Scope: quota.ScopeCredential, Reason: quota.ReasonCooldown, RetryAfter: cool}
		return report{what: what, cooldown: cool, err: &refusal{d: d,
			err: fmt.Errorf("%w: the upstream rate-limited credential %s; retry after %s", ErrRateLimited, a.cred.id, roundUp(cool))}}
	case credentialRejected:
		if status == http.StatusBadRequest {
			status = http.StatusUnauthorized
		}
		return report{what: what, err: fmt.Errorf("%w: the upstream rejected credential %s (%d)", ErrUpstream, a.cred.id, status)}
	case upstreamFailed:
		return report{what: what, err: fmt.Errorf("%w: the upstream answered %d: %s", ErrUpstream, status, upstreamMessage(body))}
	}
	// The upstream is healthy; the request was wrong.
	msg := "upstream answered " + strconv.Itoa(status) + ": " + upstreamMessage(body)
	switch {
	case ans.native != nil:
		body = ans.native.NativeError(status, body, msg)
	case !isOpenAIError(body):
		body = openAIErrorJSON(msg, "invalid_request_error")
	}
	return report{what: what, reason: errorReason(ans.errBody), err: &upstreamError{status: status, header: ans.header, body: body, native: ans.native != nil}}
}

// relayBody relays a complete (non-streaming) answer, in the client's API.
func (a *attempt) relayBody(ans *answer) report {
	data := ans.body
	if !validJSON(data) {
		return report{what: invalidAnswer, err: fmt.Errorf("%w: the upstream answered with invalid JSON", ErrUpstream)}
	}
	if ans.native != nil {
		a.sum = ans.native.NativeAnswer(data, a.g.captureContent)
	} else {
		a.sum = parseAnswer(data, a.g.captureContent)
	}
	if a.req.codec != nil && ans.native == nil {
		out, err := a.req.codec.Response(data)
		if err != nil {
			return report{what: unencodable, err: fmt.Errorf("%w: the upstream's answer could not be read: %v", ErrUpstream, err)}
		}
		data = out
	}
	a.begin()
	w := a.c.Response()
	w.Header().Set(costHeader, dollars(a.bill()))
	deadline(w, a.cred.ch.idleTimeout)
	defer deadline(w, 0)
	if err := a.c.Blob(http.StatusOK, "application/json", data); err != nil {
		return report{what: answered, err: fmt.Errorf("%w: %v", ErrClientClosed, err)}
	}
	return report{what: answered}
}

// begin marks the moment the answer starts to reach the client: the
// channel timeout no longer applies, and the response headers describe
// the attempt that answers.
func (a *attempt) begin() {
	ci := callOf(a.c)
	ci.ttfb = time.Since(ci.start)
	a.g.signals.Observe(signalKey(a.adm.cand), time.Since(a.start))
	h := a.c.Response().Header()
	h.Set("X-Sluice-Credential", a.cred.id)
	h.Set("X-Sluice-Attempts", strconv.Itoa(a.n))
	h.Set("X-Sluice-Model", a.adm.cand.model)
	if a.req.fallbackFrom != "" {
		h.Set("X-Sluice-Fallback", a.req.fallbackFrom)
	}
	setRateLimitHeaders(h, a.adm.decision)
}

// end applies the outcome table to what happened: the breaker learns the
// outcome, the credential rests if it must, and the tokens the table
// charges are settled (the client's part is kept for the next attempt
// when the request fails over). It returns the verdict.
func (a *attempt) end(rep report, h *holder) verdict {
	v := outcomes[rep.what]
	a.timer.Stop()
	if a.idle != nil {
		a.idle.Stop()
	}
	a.cancel(nil)
	a.cred.inflight.Add(-1)
	if v.breaker == breakerFailure && !v.committed {
		// A failed attempt counts as a slow one, at least a second, so
		// that the latency strategy moves away from a failing credential.
		a.g.signals.Observe(signalKey(a.adm.cand), max(time.Since(a.start), failurePenalty))
	}
	used := quota.Amount{Tokens: a.charged(v.charge)}
	if v.billed {
		used.Cost = a.bill()
		ci := callOf(a.c)
		ci.in, ci.out = a.tokens(used.Tokens)
		ci.cached = a.sum.Usage.Cached()
		if a.stream != nil && a.stream.begun {
			a.c.Response().Header().Set(costHeader, dollars(used.Cost)) // the trailer
		}
	}
	a.g.endAttempt(a, rep, v, used.Tokens)
	if rep.err != nil && (v.breaker == breakerFailure || v.cooldown) {
		a.g.errors.note(a.cred.id, excerpt(a.st.redactor.String(rep.err.Error())))
	}
	a.adm.done(v.breaker.err())
	if v.cooldown {
		a.g.cooldown(a.ctx, a.cred.id, rep.cooldown)
	}
	h.used.Tokens += used.Tokens
	h.used.Cost += used.Cost
	ci := callOf(a.c)
	ci.tokens = h.used.Tokens
	grant := a.adm.grant
	if v.retry {
		grant = h.keep(grant) // the request keeps its place in the client's quota
	}
	a.g.settle(a.ctx, grant, used)
	return v
}

// charged is the number of tokens a charge rule gives for this attempt.
func (a *attempt) charged(c charge) int64 {
	switch c {
	case chargeEstimate:
		return a.req.estimate
	case chargeUsage:
		if a.stream != nil {
			return a.stream.used(a.req.prompt, a.sum.Usage)
		}
		return a.sum.Usage.Total(a.req.estimate)
	}
	return 0
}

// tokens splits what the upstream reported, or the tokens charged, into
// input and output.
func (a *attempt) tokens(used int64) (in, out int64) {
	if u := a.sum.Usage; u != nil && u.PromptTokens+u.CompletionTokens > 0 {
		return u.PromptTokens, u.CompletionTokens
	}
	in = min(a.req.prompt, used)
	return in, used - in
}
