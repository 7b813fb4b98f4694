package gateway

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider"
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
	deadline time.Time    // of the whole failover (routing.retry.max_time)
	attempts int          // made so far, across the models of a fallback chain
	reserve  quota.Amount // what the last quota request reserved
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

// quotaRequest asks for capacity on candidates, in order. It reserves the
// request's token estimate and the most it can cost on any of them.
func (w *way) quotaRequest(cands []candidate) quota.Request {
	model := config.ModelKey(w.req.model)
	qr := quota.Request{Model: model, Sticky: w.sticky, StickyTTL: w.st.cfg.Routing.Affinity.TTL.D(), StickyTier: topTier(cands)}
	qr.Reserve.Tokens = w.req.estimate
	if w.h.part == nil {
		qr.Client, qr.ClientLimit = w.h.client.name, w.h.client.limit
		qr.Group, qr.GroupLimit = w.h.client.group, w.h.client.shared
	}
	for _, c := range cands {
		served := config.ModelKey(c.model)
		if served == model {
			served = ""
		}
		qr.Candidates = append(qr.Candidates, quota.Candidate{ID: c.cred.id, Limit: c.cred.limit, Model: served, Pool: c.cred.pool, PoolLimit: c.cred.shared})
		qr.Reserve.Cost = max(qr.Reserve.Cost, w.st.maxCost(w.req, c))
	}
	w.reserve = qr.Reserve
	return qr
}

// capOutput makes a request that sets no completion cap send one when a
// budget governs it, so that what it can cost is bounded by what it
// reserves.
func (w *way) capOutput(cands []candidate) {
	if w.req.maxTokens > 0 || w.req.ep != provider.Chat {
		return
	}
	money := budgeted(w.h.client.limit) || budgeted(w.h.client.shared)
	for _, c := range cands {
		money = money || budgeted(c.cred.limit) || budgeted(c.cred.shared)
	}
	if money {
		w.req.outputCap = w.st.cfg.Billing.MaxOutputTokens
	}
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
		w.g.settle(ctx, w.h.keep(d.Grant), quota.Amount{})
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
	if d.Scope == quota.ScopeClient || d.Scope == quota.ScopeGroup {
		limit = w.h.client.wait
	}
	waitUntil := min(start.Add(limit).UnixNano(), w.deadline.UnixNano())
	if d.RetryAfter <= 0 || time.Now().Add(d.RetryAfter).UnixNano() > waitUntil {
		w.g.metrics.refusals.Add(ctx, 1, metric.WithAttributes(telemetry.QuotaScope.String(string(d.Scope)),
			telemetry.QuotaResult.String(string(d.Reason)), telemetry.GenAIRequestModel.String(w.req.label)))
		w.h.client.remember(d)
		return &refusal{d: d, err: w.refusalError(d)}
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

// refusalError is the error of a request the quota refused.
func (w *way) refusalError(d quota.Decision) error {
	cl, req := w.h.client, w.req
	if d.Reason == quota.ReasonTooLarge {
		if budget, ok := w.smallestBudget(); ok && budget < w.reserve.Cost {
			return fmt.Errorf("%w: this request may cost up to $%s, more than a whole budget ($%s) that governs it; lower max_tokens or the input",
				ErrBudgetExceeded, dollars(w.reserve.Cost), dollars(budget))
		}
	}
	switch {
	case d.Reason == quota.ReasonTooLarge:
		return fmt.Errorf("%w: request too large for %q: what it may use (about %d tokens) or cost exceeds a limit or a budget outright; lower max_tokens or the input", ErrRateLimited, req.model, req.estimate)
	case d.Reason == quota.ReasonBudget:
		return budgetRefusal(cl, req, d)
	case d.Scope == quota.ScopeClient:
		return clientRefusal(cl, d)
	case d.Scope == quota.ScopeGroup:
		return fmt.Errorf("%w: the group %q of the API key %q is over its %s quota; retry after %s", ErrRateLimited, cl.group, cl.name, d.Reason, roundUp(d.RetryAfter))
	}
	return fmt.Errorf("%w: every credential serving %q is at its limit (%s); retry after %s", ErrRateLimited, req.model, d.Reason, roundUp(d.RetryAfter))
}

// smallestBudget is the smallest money window that governs the request.
func (w *way) smallestBudget() (int64, bool) {
	limits := []quota.Limit{w.h.client.limit, w.h.client.shared}
	var smallest int64
	found := false
	model := config.ModelKey(w.req.model)
	for _, l := range limits {
		for _, win := range l.All(model) {
			if win.Unit == quota.Cost && (!found || win.Limit < smallest) {
				smallest, found = win.Limit, true
			}
		}
	}
	return smallest, found
}

// clientRefusal is the error of a request refused by its client's quota.
func clientRefusal(cl *client, d quota.Decision) error {
	return fmt.Errorf("%w: the API key %q is over its %s quota; retry after %s", ErrRateLimited, cl.name, d.Reason, roundUp(d.RetryAfter))
}

// budgetRefusal is the error of a request whose budget cannot cover what
// it may cost: whose budget, and when it resets.
func budgetRefusal(cl *client, req *request, d quota.Decision) error {
	whose := fmt.Sprintf("the API key %q", cl.name)
	switch d.Scope {
	case quota.ScopeGroup:
		whose = fmt.Sprintf("the group %q of the API key %q", cl.group, cl.name)
	case quota.ScopeCredential:
		whose = fmt.Sprintf("every channel serving %q", req.model)
	}
	if d.Mode != "" {
		return fmt.Errorf("%w: %s has a budget, which cannot be checked while the shared quota store is unreachable; retry after %s", ErrBudgetExceeded, whose, roundUp(d.RetryAfter))
	}
	resets := time.Now().Add(d.RetryAfter).UTC().Truncate(time.Second)
	return fmt.Errorf("%w: %s has used its budget, or what is left of it cannot cover what this request may cost; it resets at %s (in %s)",
		ErrBudgetExceeded, whose, resets.Format(time.RFC3339), roundUp(d.RetryAfter))
}

func roundUp(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
