package gateway

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/quota"
	"github.com/sluice-gateway/sluice/telemetry"
)

// way is one request's way through its candidates: what admitting each
// attempt needs.
type way struct {
	g        *Gateway
	st       *state
	req      *request
	h        *holder
	sticky   string
	deadline time.Time // of the whole failover (routing.retry.max_time)
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
func (w *way) admit(ctx context.Context, cands []candidate) (*admitted, error) {
	if len(cands) == 0 {
		return nil, fmt.Errorf("%w: every credential serving %q is unavailable (circuit breakers open)", ErrNoUpstream, w.req.model)
	}
	cands = slices.Clone(cands)
	qr := w.quotaRequest(cands)
	start := time.Now()
	for {
		d, err := w.acquire(ctx, qr)
		if err != nil {
			return nil, err
		}
		if d.Allowed {
			i := d.Grant.Index
			if adm, ok := w.allow(ctx, cands[i], d); ok {
				return adm, nil
			}
			// A half-open breaker with its probe already out: look further
			// down the order, without the client's quota (the request
			// keeps its place in it).
			qr.Client, qr.ClientLimit = "", quota.Limit{}
			cands = slices.Delete(cands, i, i+1)
			qr.Candidates = slices.Delete(qr.Candidates, i, i+1)
			if len(cands) == 0 {
				return nil, fmt.Errorf("%w: every credential serving %q is being probed after failures", ErrNoUpstream, w.req.model)
			}
			qr.StickyTier = topTier(cands)
			continue
		}
		if err := w.waitOrRefuse(ctx, d, cands, start); err != nil {
			return nil, err
		}
	}
}

// quotaRequest asks for capacity on candidates, in order.
func (w *way) quotaRequest(cands []candidate) quota.Request {
	qr := quota.Request{Tokens: w.req.estimate, Sticky: w.sticky, StickyTTL: w.st.cfg.Routing.Affinity.TTL.D(), StickyTier: topTier(cands)}
	if w.h.part == nil {
		qr.Client, qr.ClientLimit = w.h.client.name, w.h.client.limit
	}
	for _, c := range cands {
		qr.Candidates = append(qr.Candidates, quota.Candidate{ID: c.cred.id, Limit: c.cred.limit, Pool: c.cred.pool, PoolLimit: c.cred.shared})
	}
	return qr
}

// acquire asks the limiter once, under its own span.
func (w *way) acquire(ctx context.Context, qr quota.Request) (quota.Decision, error) {
	actx, span := tracer.Start(ctx, "sluice.acquire", trace.WithAttributes(telemetry.Candidates.Int(len(qr.Candidates))))
	defer span.End()
	d, err := w.g.limiter.Acquire(actx, qr)
	traceDecision(span, d, err)
	if err != nil {
		return d, fmt.Errorf("%w: %v", ErrQuotaUnavailable, err)
	}
	return d, nil
}

// allow takes the breaker's first step on a granted candidate. When the
// breaker refuses, the credential's capacity is handed back.
func (w *way) allow(ctx context.Context, c candidate, d quota.Decision) (*admitted, bool) {
	done, err := w.g.breakers.Allow(ctx, c.cred.id)
	if err != nil {
		w.g.settle(ctx, w.h.keep(d.Grant), 0)
		return nil, false
	}
	return &admitted{cand: c, grant: d.Grant, decision: d, done: done}, true
}

// waitOrRefuse waits for a refused request's capacity when the binding
// wait_timeout (and the retry deadline) allow, else refuses it.
func (w *way) waitOrRefuse(ctx context.Context, d quota.Decision, cands []candidate, start time.Time) error {
	var limit time.Duration
	for _, c := range cands {
		limit = max(limit, c.cred.wait)
	}
	if d.Scope == quota.ScopeClient {
		limit = w.h.client.wait
	}
	waitUntil := min(start.Add(limit).UnixNano(), w.deadline.UnixNano())
	if d.RetryAfter <= 0 || time.Now().Add(d.RetryAfter).UnixNano() > waitUntil {
		w.g.metrics.refusals.Add(ctx, 1, metric.WithAttributes(telemetry.QuotaScope.String(string(d.Scope)),
			telemetry.QuotaResult.String(string(d.Reason)), telemetry.GenAIRequestModel.String(w.req.label)))
		w.h.client.remember(d)
		return &refusal{d: d, err: refusalError(w.h.client, w.req, d)}
	}
	t := time.NewTimer(d.RetryAfter)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return w.g.gone(ctx)
	case <-t.C:
		return nil
	}
}

// traceDecision records a quota decision on the acquire span.
func traceDecision(span trace.Span, d quota.Decision, err error) {
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
