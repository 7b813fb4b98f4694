package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/affinity"
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
	st := stateOf(c)
	if st == nil { // served without the auth middleware
		st = g.current()
		ci.st = st
	}
	req.label = st.router.label(req.model)
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
	cands, err := st.router.resolve(req.model)
	if err != nil {
		return err
	}
	return g.failover(c, cl, req, cands, g.stickyKey(c, cl, req.model))
}

// stickyKey is the affinity key of a request ("" when not sticky). The
// model is part of it: one session's chat and embedding calls go to
// different credentials and must not evict each other.
func (g *Gateway) stickyKey(c echo.Context, cl *client, model string) string {
	a := stateOf(c).cfg.Routing.Affinity
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
// reached the client. When no candidate of the requested model can answer
// for a reason its fallback chain names, it goes on with the chain's
// models, within the same bounds. The request holds one place in its
// client's quota across all its attempts.
func (g *Gateway) failover(c echo.Context, cl *client, req *request, cands []candidate, sticky string) error {
	ctx := c.Request().Context()
	st := stateOf(c)
	retry := st.cfg.Routing.Retry
	w := &way{g: g, st: st, req: req, h: &holder{client: cl}, sticky: sticky, deadline: time.Now().Add(retry.MaxTime.D())}
	defer w.h.release(ctx, g)

	why, err := w.serveModel(c, cands)
	chain, on := st.cfg.Routing.Chain(req.model)
	for _, next := range chain {
		if err == nil || !slices.Contains(on, string(why)) || !w.left(ctx) {
			break
		}
		more, rerr := st.router.resolve(next)
		if rerr != nil {
			continue
		}
		g.noteFallback(c, req, next, why)
		w.sticky = g.stickyKey(c, cl, next)
		why, err = w.serveModel(c, more)
	}
	return err
}

// serveModel tries the candidates of one model in order until one
// answers, and says why none did (a fallback reason, or "" when the
// failure is not one a fallback can help).
func (w *way) serveModel(c echo.Context, cands []candidate) (fallbackReason, error) {
	g, req, ctx := w.g, w.req, c.Request().Context()
	w.capOutput(cands)
	var lastErr error
	var why fallbackReason
	for w.left(ctx) {
		adm, err := w.admit(ctx, g.ready(cands))
		if err != nil {
			var rf *refusal
			if lastErr == nil || errors.As(err, &rf) {
				lastErr, why = err, admissionReason(err)
			}
			break
		}
		w.attempts++
		cands = slices.DeleteFunc(cands, func(c candidate) bool { return c.cred == adm.cand.cred })
		g.noteAttempt(c, req, adm, w.attempts)
		a := g.newAttempt(c, req, adm, w.attempts)
		rep := a.run()
		v := a.end(rep, w.h)
		if rep.err == nil || !v.retry {
			return rep.fallback(), rep.err
		}
		lastErr, why = rep.err, rep.fallback()
		g.log.InfoContext(ctx, "upstream attempt failed, failing over", slog.String("request_id", callOf(c).id),
			slog.String("credential", adm.cand.cred.id), slog.Int("attempt", w.attempts), slog.String("error", w.st.redactor.String(rep.err.Error())))
	}
	if lastErr == nil {
		lastErr, why = fmt.Errorf("%w: every credential serving %q is unavailable (circuit breakers open)", ErrNoUpstream, req.model), reasonUnavailable
	}
	return why, lastErr
}

// left reports whether a request may make another attempt: within its
// attempts and its time, and while its client waits.
func (w *way) left(ctx context.Context) bool {
	return w.attempts < w.st.cfg.Routing.Retry.MaxAttempts && time.Now().Before(w.deadline) && ctx.Err() == nil
}

// noteAttempt records on the call and its span which credential an
// attempt goes to.
func (g *Gateway) noteAttempt(c echo.Context, req *request, adm *admitted, n int) {
	ci := callOf(c)
	ci.attempts, ci.credential, ci.channel = n, adm.cand.cred.id, adm.cand.cred.ch.name
	trace.SpanFromContext(c.Request().Context()).SetAttributes(telemetry.Attempts.Int(n), telemetry.Credential.String(adm.cand.cred.id),
		telemetry.Channel.String(adm.cand.cred.ch.name), telemetry.GenAIRequestModel.String(req.model), telemetry.Client.String(ci.client))
}

// holder keeps what a request holds in its client's quota (and its
// group's) from its first grant to its end, and what its attempts used:
// their tokens, and the cost of the one that answered.
type holder struct {
	client *client
	part   *quota.Grant // the client's part of the first grant
	used   quota.Amount
}

// release settles the client's part with what the request used.
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

// gone is the error of a request whose context ended: the client left, or
// the server is shutting down and ran out of drain time.
func (g *Gateway) gone(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), ErrDraining) {
		return fmt.Errorf("%w: the request could not finish before the drain timeout", ErrDraining)
	}
	return ErrClientClosed
}

// settle ends a grant even when the request's context is gone.
func (g *Gateway) settle(ctx context.Context, grant quota.Grant, used quota.Amount) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := g.limiter.Settle(sctx, grant, used); err != nil {
		g.log.WarnContext(ctx, "settle quota failed", slog.String("credential", grant.ID), slog.String("error", err.Error()))
	}
}

// deadline sets (d > 0) or clears the write deadline of a response: a
// client that stops reading cannot hold a credential's slot forever.
func deadline(w http.ResponseWriter, d time.Duration) {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	_ = http.NewResponseController(w).SetWriteDeadline(t)
}
