package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/affinity"
	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/quota"
	"github.com/sluice-gateway/sluice/telemetry"
)

// ErrClientClosed ends a call whose client went away. Nobody reads the
// answer; the access log shows nginx's 499.
var ErrClientClosed = errors.New("client closed the request")

func (g *Gateway) chatCompletions(c echo.Context) error { return g.relay(c, provider.Chat) }
func (g *Gateway) embeddings(c echo.Context) error      { return g.relay(c, provider.Embeddings) }

// relay serves one OpenAI call: read and parse its body, then serve.
func (g *Gateway) relay(c echo.Context, ep provider.Endpoint) error {
	req, err := g.intake(c, func(body []byte) (*request, error) { return parseRequest(ep, body) })
	if err != nil {
		return err
	}
	return g.serve(c, req)
}

// serve relays a parsed call, whichever API its client speaks: authorize
// the model, pick the candidates, then fail over across them until one
// answers.
func (g *Gateway) serve(c echo.Context, req *request) error {
	cl := clientOf(c)
	ci := callOf(c)
	req.label = g.router.label(req.model)
	ci.model, ci.label, ci.stream = req.model, req.label, req.stream
	ctx := c.Request().Context()
	api := "openai"
	if req.codec != nil {
		api = req.codec.Name()
	}
	trace.SpanFromContext(ctx).SetAttributes(telemetry.Ingress.String(api))
	g.metrics.inFlight.Add(ctx, 1)
	defer g.metrics.inFlight.Add(ctx, -1)
	if !cl.allows(req.model) {
		return fmt.Errorf("%w: the API key %q may not use the model %q", ErrModelNotAllowed, cl.name, req.model)
	}
	cands, err := g.router.resolve(req.model)
	if err != nil {
		return err
	}
	return g.failover(c, cl, req, cands, g.stickyKey(c, cl, req.model))
}

// stickyKey is the affinity key of a request ("" when not sticky). The
// model is part of it: one session's chat and embedding calls go to
// different credentials and must not evict each other.
func (g *Gateway) stickyKey(c echo.Context, cl *client, model string) string {
	a := g.cfg.Routing.Affinity
	var kind, value string
	switch a.By {
	case "ip":
		kind, value = "ip", g.clientIP(c.Request())
	case "header":
		kind, value = "header", c.Request().Header.Get(a.Header)
	case "client":
		kind, value = "client", cl.name
	}
	if value == "" {
		return ""
	}
	return affinity.Key(kind, value+"\x00"+model)
}

// failover tries candidates in order until one answers, bounded by
// routing.retry (attempts and time). It never retries once a byte has
// reached the client. The request holds one place in its client's quota
// across all its attempts.
func (g *Gateway) failover(c echo.Context, cl *client, req *request, cands []candidate, sticky string) error {
	ctx := c.Request().Context()
	retry := g.cfg.Routing.Retry
	deadline := time.Now().Add(retry.MaxTime.D())
	ci := callOf(c)
	h := &holder{client: cl}
	defer func() { h.release(ctx, g) }()

	var lastErr error
	for attempt := 1; attempt <= retry.MaxAttempts; attempt++ {
		ready := g.ready(cands)
		if len(ready) == 0 {
			break
		}
		adm, err := g.admit(ctx, h, req, ready, sticky, deadline)
		if err != nil {
			var rf *refusal
			if lastErr == nil || errors.As(err, &rf) {
				lastErr = err
			}
			break
		}
		cands = slices.DeleteFunc(cands, func(c candidate) bool { return c.cred == adm.cand.cred })
		ci.attempts, ci.credential, ci.channel = attempt, adm.cand.cred.id, adm.cand.cred.ch.name
		trace.SpanFromContext(ctx).SetAttributes(telemetry.Attempts.Int(attempt), telemetry.Credential.String(adm.cand.cred.id),
			telemetry.Channel.String(adm.cand.cred.ch.name), telemetry.GenAIRequestModel.String(req.model), telemetry.Client.String(h.client.name))

		out := g.attempt(c, req, adm, h)
		if out.err == nil {
			return nil
		}
		if out.committed || !out.retry {
			return out.err
		}
		lastErr = out.err
		g.log.InfoContext(ctx, "upstream attempt failed, failing over", slog.String("request_id", ci.id),
			slog.String("credential", adm.cand.cred.id), slog.Int("attempt", attempt), slog.String("error", g.redactor.String(out.err.Error())))
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: every credential serving %q is unavailable (circuit breakers open)", ErrNoUpstream, req.model)
	}
	return lastErr
}

// holder keeps what a request holds in its client's quota from its first
// grant to its end, and the tokens its attempts used.
type holder struct {
	client *client
	part   *quota.Grant // the client's part of the first grant
	used   int64
}

// release settles the client's part with the tokens all attempts used.
func (h *holder) release(ctx context.Context, g *Gateway) {
	if h.part != nil {
		g.settle(ctx, *h.part, h.used)
	}
}

// keep splits the client's part off a grant whose attempt will not be the
// last, and returns the credential's part to settle now. A grant without
// a client part is returned as it is.
func (h *holder) keep(g quota.Grant) quota.Grant {
	if g.Client == "" {
		return g
	}
	credential, client := g.Split()
	h.part = &client
	return credential
}

// ready keeps the candidates whose breaker is not open.
func (g *Gateway) ready(cands []candidate) []candidate {
	out := make([]candidate, 0, len(cands))
	for _, c := range cands {
		if g.breakers.Ready(c.cred.id) {
			out = append(out, c)
		}
	}
	return out
}

// admitted is a candidate that passed its quota and its breaker.
type admitted struct {
	cand     candidate
	grant    quota.Grant // the credential's part
	decision quota.Decision
	done     func(error) // the breaker's second step
}

// admit takes capacity on the first candidate that has some, with the
// client's quota on the request's first grant only. When none has room it
// waits as long as the binding wait_timeout allows (within the retry
// deadline) for the soonest to free up, then refuses.
func (g *Gateway) admit(ctx context.Context, h *holder, req *request, cands []candidate, sticky string, deadline time.Time) (*admitted, error) {
	cands = slices.Clone(cands)
	qr := quota.Request{Tokens: req.estimate, Sticky: sticky, StickyTTL: g.cfg.Routing.Affinity.TTL.D()}
	if h.part == nil {
		qr.Client, qr.ClientLimit = h.client.name, h.client.limit
	}
	var wait time.Duration
	for _, c := range cands {
		qr.Candidates = append(qr.Candidates, quota.Candidate{ID: c.cred.id, Limit: c.cred.limit, Pool: c.cred.pool, PoolLimit: c.cred.shared})
		wait = max(wait, c.cred.wait)
	}
	qr.StickyTier = topTier(cands)
	start := time.Now()
	for {
		actx, span := tracer.Start(ctx, "sluice.acquire", trace.WithAttributes(telemetry.Candidates.Int(len(qr.Candidates))))
		d, err := g.limiter.Acquire(actx, qr)
		g.traceDecision(span, d, err)
		span.End()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrQuotaUnavailable, err)
		}
		if d.Allowed {
			i := d.Grant.Index
			done, err := g.breakers.Allow(ctx, cands[i].cred.id)
			if err == nil {
				return &admitted{cand: cands[i], grant: d.Grant, decision: d, done: done}, nil
			}
			// A half-open breaker with its probe already out: hand the
			// credential's capacity back (the request keeps its place in
			// the client's quota) and look further down the order.
			g.settle(ctx, h.keep(d.Grant), 0)
			qr.Client, qr.ClientLimit = "", quota.Limit{}
			cands = slices.Delete(cands, i, i+1)
			qr.Candidates = slices.Delete(qr.Candidates, i, i+1)
			if len(cands) == 0 {
				return nil, fmt.Errorf("%w: every credential serving %q is being probed after failures", ErrNoUpstream, req.model)
			}
			qr.StickyTier = topTier(cands)
			continue
		}
		limit := wait
		if d.Scope == quota.ScopeClient {
			limit = h.client.wait
		}
		waitUntil := min(start.Add(limit).UnixNano(), deadline.UnixNano())
		if d.RetryAfter <= 0 || time.Now().Add(d.RetryAfter).UnixNano() > waitUntil {
			g.metrics.refusals.Add(ctx, 1, metric.WithAttributes(telemetry.QuotaScope.String(string(d.Scope)),
				telemetry.QuotaResult.String(string(d.Reason)), telemetry.GenAIRequestModel.String(req.label)))
			h.client.remember(d)
			return nil, &refusal{d: d, err: refusalError(h.client, req, d)}
		}
		t := time.NewTimer(d.RetryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, g.gone(ctx)
		case <-t.C:
		}
	}
}

// traceDecision records a quota decision on the acquire span.
func (g *Gateway) traceDecision(span trace.Span, d quota.Decision, err error) {
	switch {
	case err != nil:
		span.SetStatus(codes.Error, err.Error())
	case d.Allowed:
		span.SetAttributes(telemetry.QuotaResult.String("granted"), telemetry.Credential.String(d.Grant.ID),
			telemetry.AffinityHit.Bool(d.StickyHit))
	default:
		span.SetAttributes(telemetry.QuotaResult.String(string(d.Reason)), telemetry.QuotaScope.String(string(d.Scope)))
	}
	if d.Mode != "" {
		span.SetAttributes(telemetry.QuotaMode.String(d.Mode))
	}
}

// topTier counts the leading candidates in the first priority tier: the
// ones stickiness may promote.
func topTier(cands []candidate) int {
	n := 0
	for n < len(cands) && cands[n].cred.ch.priority == cands[0].cred.ch.priority {
		n++
	}
	return n
}

// gone is the error of a request whose context ended: the client left, or
// the server is shutting down and ran out of drain time.
func (g *Gateway) gone(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), ErrDraining) {
		return fmt.Errorf("%w: the request could not finish before the drain timeout", ErrDraining)
	}
	return ErrClientClosed
}

func refusalError(cl *client, req *request, d quota.Decision) error {
	if d.Reason == quota.ReasonTooLarge {
		return fmt.Errorf("%w: request too large for %q: about %d tokens exceed a tokens-per-minute or per-day limit; lower max_tokens or the input", ErrRateLimited, req.model, req.estimate)
	}
	if d.Scope == quota.ScopeClient {
		return clientRefusal(cl, d)
	}
	return fmt.Errorf("%w: every credential serving %q is at its limit (%s); retry after %s", ErrRateLimited, req.model, d.Reason, roundUp(d.RetryAfter))
}

// clientRefusal is the error of a request refused by its client's quota.
func clientRefusal(cl *client, d quota.Decision) error {
	return fmt.Errorf("%w: the API key %q is over its %s quota; retry after %s", ErrRateLimited, cl.name, d.Reason, roundUp(d.RetryAfter))
}

func roundUp(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// settle ends a grant even when the request's context is gone.
func (g *Gateway) settle(ctx context.Context, grant quota.Grant, used int64) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := g.limiter.Settle(sctx, grant, used); err != nil {
		g.log.WarnContext(ctx, "settle quota failed", slog.String("credential", grant.ID), slog.String("error", err.Error()))
	}
}

// outcome is how one attempt ended.
type outcome struct {
	committed bool  // bytes reached the client: no failover any more
	retry     bool  // the next candidate may succeed where this one failed
	err       error // nil: answered
}

// Why an attempt's context was cancelled by Sluice itself.
var (
	errAttemptTimeout = errors.New("no answer within the channel timeout")
	errStreamIdle     = errors.New("stream idle for longer than stream_idle_timeout")
)

// attempt makes one upstream call with an admitted credential and, if it
// answers, relays the answer. It settles the credential's quota and
// reports to its breaker exactly once, whatever happens.
func (g *Gateway) attempt(c echo.Context, req *request, adm *admitted, h *holder) (out outcome) {
	cred := adm.cand.cred
	cred.inflight.Add(1)
	ctx, span := g.startAttempt(c.Request().Context(), req, adm, callOf(c).attempts)
	r := &attemptResult{used: req.estimate}
	defer func() {
		cred.inflight.Add(-1)
		g.endAttempt(ctx, span, req, adm, r, out)
		adm.done(r.breakerErr)
		h.used += r.used
		callOf(c).tokens = h.used
		grant := adm.grant
		if out.retry && !out.committed {
			// The request fails over: it keeps its place in the client's
			// quota, settled when it ends.
			grant = h.keep(grant)
		}
		g.settle(ctx, grant, r.used)
	}()

	model := adm.cand.upstreamModel()
	native, isNative := req.nativeFor(cred.adapter)
	var body []byte
	var err error
	if isNative {
		body, err = req.nativeBody(model, cred.ch.nativeParams)
	} else {
		body, err = req.upstreamBody(model, cred.ch.params)
	}
	if err != nil {
		r.breakerErr, r.used = breaker.ErrNotCounted, 0
		return outcome{err: fmt.Errorf("build upstream body: %w", err)}
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(cred.ch.timeout, func() { cancel(errAttemptTimeout) })
	defer timer.Stop()

	ans, err := g.exchange(actx, c, req, cred, model, body, native)
	var refused *provider.Error
	var te *transportError
	var unreadable *unreadableAnswer
	switch {
	case errors.As(err, &refused):
		// The adapter cannot express the request for its upstream: the
		// client's error, unless another candidate can serve it.
		r.breakerErr, r.used = breaker.ErrNotCounted, 0
		return outcome{retry: true, err: translationRefusal(refused)}
	case errors.As(err, &te):
		return g.transportFailure(ctx, actx, te.err, r, te.midBody)
	case errors.As(err, &unreadable):
		r.breakerErr, r.used = err, req.estimate // answered, so billed: charged as estimated
		return outcome{retry: true, err: fmt.Errorf("%w: %v", ErrUpstream, err)}
	case err != nil:
		r.breakerErr, r.used = err, 0
		return outcome{retry: true, err: fmt.Errorf("%w: %v", ErrUpstream, err)}
	}
	defer ans.close()
	r.status = ans.status
	if ans.status < 200 || ans.status > 299 {
		return g.upstreamRefused(ctx, ans, adm, r)
	}
	if ans.events != nil {
		return g.relayStream(c, req, ans, actx, timer, cancel, adm, r)
	}
	return g.relayBody(c, req, ans, adm, r)
}

// commit writes the response headers that describe the attempt that
// answered. It runs when the answer starts, never for a failed attempt.
func (g *Gateway) commit(c echo.Context, adm *admitted) {
	h := c.Response().Header()
	h.Set("X-Sluice-Credential", adm.cand.cred.id)
	h.Set("X-Sluice-Attempts", strconv.Itoa(callOf(c).attempts))
	setRateLimitHeaders(h, adm.decision)
}

// attemptResult is what an attempt reports when it ends: the outcome for
// the breaker, the tokens to settle, and what telemetry records.
type attemptResult struct {
	breakerErr error  // nil: success for the breaker
	used       int64  // tokens to settle
	status     int    // the upstream's HTTP status
	usage      *usage // as the upstream reported it
	info       answerInfo
}

// tokens splits the tokens used into input and output.
func (r *attemptResult) tokens(req *request) (in, out int64) {
	if u := r.usage; u != nil && u.PromptTokens+u.CompletionTokens > 0 {
		return int64(u.PromptTokens), int64(u.CompletionTokens)
	}
	in = min(req.prompt, r.used)
	return in, r.used - in
}

// transportFailure classifies an error from sending the request or
// reading the answer before anything reached the client. With midBody,
// the upstream had started answering and may have spent tokens.
func (g *Gateway) transportFailure(ctx, actx context.Context, err error, r *attemptResult, midBody bool) outcome {
	switch {
	case ctx.Err() != nil:
		r.breakerErr = context.Canceled // never the credential's fault
		return outcome{err: g.gone(ctx)}
	case errors.Is(context.Cause(actx), errAttemptTimeout):
		r.breakerErr = errAttemptTimeout // the upstream may have spent tokens: keep the estimate
		return outcome{retry: true, err: fmt.Errorf("%w: %v", ErrUpstreamTimeout, errAttemptTimeout)}
	}
	r.breakerErr = err
	if !midBody {
		r.used = 0
	}
	return outcome{retry: true, err: fmt.Errorf("%w: %s", ErrUpstream, transportMessage(err))}
}

// transportMessage describes a transport error without the upstream URL.
func transportMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return "upstream connection failed: " + err.Error()
}

// relayBody relays a complete (non-streaming) answer, in the client's API.
func (g *Gateway) relayBody(c echo.Context, req *request, ans *answer, adm *admitted, r *attemptResult) outcome {
	data := ans.body
	if !validJSON(data) {
		r.breakerErr, r.used = errors.New("upstream answered with invalid JSON"), 0
		return outcome{retry: true, err: fmt.Errorf("%w: the upstream answered with invalid JSON", ErrUpstream)}
	}
	if ans.native {
		r.info, r.usage = parseAnthropicAnswer(data, g.captureContent)
	} else {
		r.info, r.usage = parseAnswer(data, g.captureContent)
	}
	if req.codec != nil && !ans.native {
		out, err := req.codec.Response(data)
		if err != nil {
			r.breakerErr, r.used = err, r.usage.total(req.estimate) // answered, so billed
			return outcome{retry: true, err: fmt.Errorf("%w: the upstream's answer could not be read: %v", ErrUpstream, err)}
		}
		data = out
	}
	r.breakerErr, r.used = nil, r.usage.total(req.estimate)
	ci := callOf(c)
	ci.ttfb = time.Since(ci.start)
	g.commit(c, adm)
	w := c.Response()
	deadline(w, g.writeTimeout(adm))
	defer deadline(w, 0)
	if err := c.Blob(http.StatusOK, "application/json", data); err != nil {
		return outcome{committed: true, err: fmt.Errorf("%w: %v", ErrClientClosed, err)}
	}
	return outcome{committed: true}
}

// writeTimeout bounds each write to a client, so that one that stops
// reading cannot hold a credential's slot forever: a stream that moves
// nothing for stream_idle_timeout ends, whichever side stalls.
func (g *Gateway) writeTimeout(adm *admitted) time.Duration {
	return adm.cand.cred.ch.idleTimeout
}

// deadline sets (d > 0) or clears the write deadline of a response.
func deadline(w http.ResponseWriter, d time.Duration) {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	_ = http.NewResponseController(w).SetWriteDeadline(t)
}

// maxUpstreamBody caps a non-streaming answer.
const maxUpstreamBody = 256 << 20
