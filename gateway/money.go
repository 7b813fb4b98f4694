package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
	"github.com/sluice-gateway/sluice/gateway/usage"
	"github.com/sluice-gateway/sluice/quota"
	"github.com/sluice-gateway/sluice/telemetry"
)

// Limits and budgets as quota windows, and what calls cost.

// quotaLimit converts configured limits (their per-model limits
// included) and budgets into a quota limit.
func quotaLimit(l config.Limits, budgets ...config.Budget) quota.Limit {
	out := quota.Limit{
		QPS: l.QPS, Burst: l.Burst, RPM: l.RPM, RPD: l.RPD,
		TPM: l.TPM, TPD: l.TPD, Concurrency: l.Concurrency,
	}
	for _, model := range slices.Sorted(maps.Keys(l.Models)) {
		out.Windows = append(out.Windows, modelWindows(config.ModelKey(model), l.Models[model])...)
	}
	for _, b := range budgets {
		out.Windows = append(out.Windows, budgetWindows(b)...)
	}
	return out
}

// channelLimit is what a channel shares among its credentials: its
// shared limits and budgets.
func channelLimit(ch config.Channel) quota.Limit {
	return quotaLimit(ch.SharedLimits, config.AllBudgets(ch.Budget, ch.Budgets)...)
}

// clientLimit is a client key's own limits and budgets.
func clientLimit(cl config.Client) quota.Limit {
	return quotaLimit(cl.Limits, config.AllBudgets(cl.Budget, cl.Budgets)...)
}

// groupLimit is a group's limits and budgets.
func groupLimit(g config.Group) quota.Limit {
	return quotaLimit(g.Limits, config.AllBudgets(g.Budget, g.Budgets)...)
}

// modelWindows are the windows of one model's limits.
func modelWindows(model string, l config.Limits) []quota.Window {
	ws := quota.Limit{QPS: l.QPS, Burst: l.Burst, RPM: l.RPM, RPD: l.RPD, TPM: l.TPM, TPD: l.TPD, Concurrency: l.Concurrency}.All("")
	for i := range ws {
		ws[i].Model = model
	}
	return ws
}

// budgetWindows are the calendar windows of a budget: one per capped
// unit. A validated budget always converts.
func budgetWindows(b config.Budget) []quota.Window {
	loc, err := b.Location()
	if err != nil {
		loc = time.UTC
	}
	p := quota.Period{Location: loc}
	length, _ := b.PeriodLength()
	switch {
	case length > 0:
		p = quota.Period{Every: quota.Fixed, Length: length}
	case b.Period == "week" || b.Period == "weekly":
		p.Every = quota.Week
	case b.Period == "month" || b.Period == "monthly":
		p.Every = quota.Month
	default:
		p.Every = quota.Day
	}
	var ws []quota.Window
	add := func(u quota.Unit, limit int64) {
		if limit > 0 {
			ws = append(ws, quota.Window{Kind: quota.Calendar, Unit: u, Limit: limit, Period: p})
		}
	}
	add(quota.Cost, microDollars(b.USD))
	add(quota.Tokens, b.Tokens)
	add(quota.Requests, b.Requests)
	return ws
}

// microDollars converts dollars, rounding to the micro-dollar.
func microDollars(usd float64) int64 { return int64(math.Round(usd * 1e6)) }

// budgeted reports whether a limit holds money: its calls need a price
// and a bound on what they can cost.
func budgeted(l quota.Limit) bool {
	for _, w := range l.Every() {
		if w.Unit == quota.Cost {
			return true
		}
	}
	return false
}

// costOf is what a call cost, from its real usage, in micro-dollars:
// cached input at the cached price, the rest of the input at the input
// price, the output (reasoning included) at the output price, and the
// flat price per call. Rounded up: a reservation made with the same
// prices is never below it.
func costOf(p config.Price, u *wire.Usage) int64 {
	var in, cached, out float64
	if u != nil {
		cached = float64(u.Cached())
		in = max(0, float64(u.PromptTokens)-cached)
		out = float64(u.CompletionTokens)
	}
	cachedPrice := p.CachedInput
	if cachedPrice == 0 {
		cachedPrice = p.Input
	}
	// Prices are dollars per million tokens: micro-dollars per token.
	return int64(math.Ceil(in*p.Input + cached*cachedPrice + out*p.Output + p.PerRequest*1e6))
}

// maxCostOf is the most a call can cost: every input token (at most its
// bound) at the input price or the cached one, whichever is higher, and
// every output token it may produce.
func maxCostOf(p config.Price, inputBound, outputBound int64) int64 {
	in := max(p.Input, p.CachedInput)
	return int64(math.Ceil(float64(inputBound)*in + float64(outputBound)*p.Output + p.PerRequest*1e6))
}

// dollars formats micro-dollars as a decimal string of dollars, as the
// X-Sluice-Cost header carries them ("0.004150").
func dollars(micros int64) string { return usage.Dollars(micros) }

// price is what a candidate's calls cost: its channel's own price for the
// model, else the config's (by the client's name for the model, then the
// upstream's). ok is false when no price is known.
func (st *state) price(c candidate) (config.Price, bool) {
	for _, m := range []map[string]config.Price{c.cred.ch.pricing, st.cfg.Pricing} {
		for _, name := range []string{c.model, c.upstreamModel()} {
			for k, p := range m {
				if config.ModelKey(k) == config.ModelKey(name) {
					return p, true
				}
			}
		}
	}
	return config.Price{}, false
}

// maxCost is the most a request can cost on a candidate, in micro-dollars
// (0 without a price).
func (st *state) maxCost(req *request, c candidate) int64 {
	p, ok := st.price(c)
	if !ok {
		return 0
	}
	return maxCostOf(p, req.inputBound, req.outputBound(st.cfg.Billing.MaxOutputTokens))
}

// bill is what an attempt is billed, in micro-dollars: what its usage
// cost, else, when the upstream reported none (a call cut short), the
// most it could cost. It is worked out once, and kept on the call.
func (a *attempt) bill() int64 {
	ci := callOf(a.c)
	if a.billed {
		return ci.cost
	}
	a.billed, ci.billed = true, true
	p, ok := a.st.price(a.adm.cand)
	ci.priced, ci.cost = ok, 0
	switch {
	case !ok:
	case a.sum.Usage != nil && a.sum.Usage.PromptTokens+a.sum.Usage.CompletionTokens > 0:
		ci.cost = costOf(p, a.sum.Usage)
	default:
		ci.cost = maxCostOf(p, a.req.inputBound, a.req.outputBound(a.st.cfg.Billing.MaxOutputTokens))
	}
	trace.SpanFromContext(a.c.Request().Context()).SetAttributes(telemetry.CostUSD.Float64(float64(ci.cost) / 1e6))
	return ci.cost
}

// usagePrice is what a stream's reported usage costs, for the chunk that
// reports it (ok is false without a price).
func (a *attempt) usagePrice(u *wire.Usage) (int64, bool) {
	p, ok := a.st.price(a.adm.cand)
	if !ok || u == nil {
		return 0, false
	}
	return costOf(p, u), true
}

// costHeader is the response header (or, on a stream, the trailer) with
// what a call cost, in dollars.
const costHeader = "X-Sluice-Cost"

// withCost adds the call's cost, in dollars, to the usage object of a
// chunk (as "cost": OpenRouter's convention, which clients read).
func withCost(data string, micros int64) string {
	var chunk map[string]json.RawMessage
	if json.Unmarshal([]byte(data), &chunk) != nil {
		return data
	}
	var usage map[string]json.RawMessage
	if json.Unmarshal(chunk["usage"], &usage) != nil || usage == nil {
		return data
	}
	usage["cost"] = json.RawMessage(dollars(micros))
	chunk["usage"], _ = json.Marshal(usage)
	out, err := json.Marshal(chunk)
	if err != nil {
		return data
	}
	return string(out)
}

// recordUsage hands the usage exporter the record of a relayed call, off
// the request path (a full queue drops it, counted).
func (g *Gateway) recordUsage(ctx context.Context, c echo.Context, ci *callInfo, model string, took time.Duration) {
	if g.usage == nil {
		return
	}
	r := usage.Record{
		Time: ci.start.UTC(), RequestID: ci.id, Client: cmp.Or(ci.client, anonymous.name), Endpoint: ci.endpoint,
		Model: model, Channel: ci.channel, Credential: ci.credential, Stream: ci.stream, Status: c.Response().Status,
		InputTokens: ci.in, OutputTokens: ci.out, CachedTokens: ci.cached, Cost: ci.cost, Priced: ci.priced,
		Latency: took, TTFT: ci.ttfb,
	}
	if cl := clientOf(c); cl != nil {
		r.Group = cl.group
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.TraceID = sc.TraceID().String()
	}
	g.usage.Add(r)
}
