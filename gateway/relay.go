package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluice-gateway/sluice/affinity"
	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/quota"
)

// ErrClientClosed ends a call whose client went away. Nobody reads the
// answer; it is logged with nginx's 499.
var ErrClientClosed = errors.New("client closed the request")

func (g *Gateway) chatCompletions(c echo.Context) error { return g.relay(c, provider.Chat) }
func (g *Gateway) embeddings(c echo.Context) error      { return g.relay(c, provider.Embeddings) }

// relay serves one OpenAI call: parse, authorize the model, pick the
// candidates, then fail over across them until one answers.
func (g *Gateway) relay(c echo.Context, ep provider.Endpoint) error {
	body, err := g.readBody(c)
	if err != nil {
		return err
	}
	req, err := parseRequest(ep, body)
	if err != nil {
		return err
	}
	cl := clientOf(c)
	ci := callOf(c)
	ci.model, ci.stream = req.model, req.stream
	if !cl.allows(req.model) {
		return fmt.Errorf("%w: the API key %q may not use the model %q", ErrModelNotAllowed, cl.name, req.model)
	}
	cands, err := g.router.resolve(req.model)
	if err != nil {
		return err
	}
	sticky := g.sticky(c, cl, req.model)
	if sticky.key != "" {
		id, err := g.affinity.Get(c.Request().Context(), sticky.key)
		if err != nil {
			g.log.WarnContext(c.Request().Context(), "affinity lookup failed", slog.String("error", err.Error()))
		}
		if id != "" && promote(cands, id) {
			sticky.id = id
		}
	}
	return g.failover(c, cl, req, cands, sticky)
}

// readBody reads a JSON request body within the configured cap.
func (g *Gateway) readBody(c echo.Context) ([]byte, error) {
	r := c.Request()
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, fmt.Errorf("%w: %q; send the body as application/json", ErrMediaType, ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, int64(g.cfg.Server.MaxBodyBytes)))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, fmt.Errorf("%w: the limit is %d bytes", ErrBodyTooLarge, tooLarge.Limit)
	case err != nil:
		return nil, fmt.Errorf("%w: read body: %v", ErrClientClosed, err)
	}
	return body, nil
}

// stickyRoute is a request's affinity: the store key, and the credential
// the key was mapped to when that credential is among the candidates.
type stickyRoute struct {
	key, id string
}

func (g *Gateway) sticky(c echo.Context, cl *client, model string) stickyRoute {
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
		return stickyRoute{}
	}
	// The model is part of the key: one session's chat and embedding
	// calls go to different credentials and must not evict each other.
	return stickyRoute{key: affinity.Key(kind, value+"\x00"+model)}
}

// failover tries candidates in order until one answers, bounded by
// routing.retry (attempts and time). It never retries once a byte has
// reached the client.
func (g *Gateway) failover(c echo.Context, cl *client, req *request, cands []candidate, sticky stickyRoute) error {
	ctx := c.Request().Context()
	retry := g.cfg.Routing.Retry
	deadline := time.Now().Add(retry.MaxTime.D())
	ci := callOf(c)
	var lastErr error
	for attempt := 1; attempt <= retry.MaxAttempts; attempt++ {
		ready := g.ready(cands)
		if len(ready) == 0 {
			break
		}
		adm, err := g.admit(ctx, cl, req, ready, deadline)
		if err != nil {
			var rf *refusal
			if lastErr == nil || errors.As(err, &rf) {
				lastErr = err
			}
			break
		}
		cands = slices.DeleteFunc(cands, func(c candidate) bool { return c.cred == adm.cand.cred })
		ci.attempts, ci.credential = attempt, adm.cand.cred.id

		out := g.attempt(c, req, adm, attempt)
		if out.err == nil {
			if sticky.key != "" && sticky.id != adm.cand.cred.id {
				if err := g.affinity.Set(context.WithoutCancel(ctx), sticky.key, adm.cand.cred.id); err != nil {
					g.log.WarnContext(ctx, "affinity store failed", slog.String("error", err.Error()))
				}
			}
			return nil
		}
		if out.committed || !out.retry {
			return out.err
		}
		lastErr = out.err
		g.log.InfoContext(ctx, "upstream attempt failed, failing over", slog.String("request_id", ci.id),
			slog.String("credential", adm.cand.cred.id), slog.Int("attempt", attempt), slog.String("error", out.err.Error()))
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: every credential serving %q is unavailable (circuit breakers open)", ErrNoUpstream, req.model)
	}
	return lastErr
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
	grant    quota.Grant
	decision quota.Decision
	done     func(error) // the breaker's second step
}

// admit takes capacity on the first candidate that has some. When none
// has, it waits as long as the candidates' wait_timeout allows (within
// the retry deadline) for the soonest to free up, then refuses.
func (g *Gateway) admit(ctx context.Context, cl *client, req *request, cands []candidate, deadline time.Time) (*admitted, error) {
	cands = slices.Clone(cands)
	qr := quota.Request{Client: cl.name, ClientLimit: cl.limit, Tokens: req.estimate}
	var wait time.Duration
	for _, c := range cands {
		qr.Candidates = append(qr.Candidates, quota.Candidate{ID: c.cred.id, Limit: c.cred.limit, Pool: c.cred.pool, PoolLimit: c.cred.shared})
		wait = max(wait, c.cred.wait)
	}
	waitUntil := time.Now().Add(wait)
	if deadline.Before(waitUntil) {
		waitUntil = deadline
	}
	for {
		d, err := g.limiter.Acquire(ctx, qr)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrQuotaUnavailable, err)
		}
		if d.Allowed {
			i := d.Grant.Index
			done, err := g.breakers.Allow(cands[i].cred.id)
			if err == nil {
				return &admitted{cand: cands[i], grant: d.Grant, decision: d, done: done}, nil
			}
			// A half-open breaker with its probe already out: hand the
			// capacity back and look further down the order.
			g.settle(ctx, d.Grant, 0)
			cands = slices.Delete(cands, i, i+1)
			qr.Candidates = slices.Delete(qr.Candidates, i, i+1)
			if len(cands) == 0 {
				return nil, fmt.Errorf("%w: every credential serving %q is being probed after failures", ErrNoUpstream, req.model)
			}
			continue
		}
		if d.Scope == quota.ScopeClient || d.RetryAfter <= 0 || time.Now().Add(d.RetryAfter).After(waitUntil) {
			return nil, &refusal{d: d, err: refusalError(cl, req, d)}
		}
		t := time.NewTimer(d.RetryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w while waiting for capacity", ErrClientClosed)
		case <-t.C:
		}
	}
}

func refusalError(cl *client, req *request, d quota.Decision) error {
	if d.Reason == quota.ReasonTooLarge {
		return fmt.Errorf("%w: request too large for %q: about %d tokens exceed a tokens-per-minute or per-day limit; lower max_tokens or the input", ErrRateLimited, req.model, req.estimate)
	}
	if d.Scope == quota.ScopeClient {
		return fmt.Errorf("%w: the API key %q is over its %s quota; retry after %s", ErrRateLimited, cl.name, d.Reason, roundUp(d.RetryAfter))
	}
	return fmt.Errorf("%w: every credential serving %q is at its limit (%s); retry after %s", ErrRateLimited, req.model, d.Reason, roundUp(d.RetryAfter))
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
// answers, relays the answer. It settles the quota and reports to the
// breaker exactly once, whatever happens.
func (g *Gateway) attempt(c echo.Context, req *request, adm *admitted, n int) (out outcome) {
	ctx := c.Request().Context()
	cred := adm.cand.cred
	cred.inflight.Add(1)
	r := &attemptResult{used: req.estimate}
	defer func() {
		cred.inflight.Add(-1)
		adm.done(r.breakerErr)
		g.settle(ctx, adm.grant, r.used)
		callOf(c).tokens = r.used
	}()

	model := adm.cand.upstreamModel()
	body, err := req.upstreamBody(model, cred.ch.params)
	if err != nil {
		r.breakerErr, r.used = breaker.ErrNotCounted, 0
		return outcome{err: fmt.Errorf("build upstream body: %w", err)}
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(cred.ch.timeout, func() { cancel(errAttemptTimeout) })
	defer timer.Stop()

	hreq, err := cred.ch.adapter.NewRequest(actx, cred.target(model), req.ep, body)
	if err != nil {
		r.breakerErr, r.used = err, 0
		return outcome{retry: true, err: fmt.Errorf("%w: %v", ErrUpstream, err)}
	}
	hreq.Header.Set("X-Request-Id", callOf(c).id)
	resp, err := cred.ch.client.Do(hreq)
	if err != nil {
		return r.transportFailure(ctx, actx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return g.upstreamRefused(ctx, resp, adm, r)
	}
	h := c.Response().Header()
	h.Set("X-Sluice-Credential", cred.id)
	h.Set("X-Sluice-Attempts", fmt.Sprint(n))
	setRateLimitHeaders(h, adm.decision)
	if req.stream {
		return g.relayStream(c, req, resp, actx, timer, cancel, cred, r)
	}
	return g.relayBody(c, req, resp, actx, r)
}

// attemptResult is what an attempt reports when it ends: the outcome for
// the breaker and the tokens to settle.
type attemptResult struct {
	breakerErr error // nil: success for the breaker
	used       int64 // tokens to settle
}

// transportFailure classifies an error from sending the request or
// reading the answer before anything reached the client.
func (r *attemptResult) transportFailure(ctx, actx context.Context, err error) outcome {
	switch {
	case ctx.Err() != nil:
		r.breakerErr = context.Canceled // never the credential's fault
		return outcome{err: fmt.Errorf("%w: %v", ErrClientClosed, context.Cause(ctx))}
	case errors.Is(context.Cause(actx), errAttemptTimeout):
		r.breakerErr = errAttemptTimeout // the upstream may have spent tokens: keep the estimate
		return outcome{retry: true, err: fmt.Errorf("%w: %v", ErrUpstreamTimeout, errAttemptTimeout)}
	}
	r.breakerErr, r.used = err, 0
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

// relayBody relays a complete (non-streaming) answer.
func (g *Gateway) relayBody(c echo.Context, req *request, resp *http.Response, actx context.Context, r *attemptResult) outcome {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody))
	if err != nil {
		return r.transportFailure(c.Request().Context(), actx, err)
	}
	var u usageOf
	if err := u.parse(data); err != nil {
		r.breakerErr, r.used = err, 0
		return outcome{retry: true, err: fmt.Errorf("%w: the upstream answered with invalid JSON", ErrUpstream)}
	}
	r.breakerErr, r.used = nil, u.total(req.estimate)
	ci := callOf(c)
	ci.ttfb = time.Since(ci.start)
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	if err := c.Blob(http.StatusOK, ct, data); err != nil {
		return outcome{committed: true, err: fmt.Errorf("%w: %v", ErrClientClosed, err)}
	}
	return outcome{committed: true}
}

// maxUpstreamBody caps a non-streaming answer.
const maxUpstreamBody = 256 << 20
