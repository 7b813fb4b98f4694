package gateway

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/quota"
	"github.com/sluice-gateway/sluice/telemetry"
)

// The package's tracer and meter come from the global providers, which
// cmd/sluice installs (no-ops until then).
var (
	tracer = otel.Tracer("github.com/sluice-gateway/sluice/gateway")
	meter  = otel.Meter("github.com/sluice-gateway/sluice/gateway")
)

// instruments are the gateway's metrics.
type instruments struct {
	requests   metric.Int64Counter
	duration   metric.Float64Histogram
	ttft       metric.Float64Histogram
	tokenUsage metric.Int64Histogram
	tokens     metric.Int64Counter
	refusals   metric.Int64Counter
	attempts   metric.Int64Counter
	failovers  metric.Int64Counter
	inFlight   metric.Int64UpDownCounter
	streams    metric.Int64UpDownCounter
	cost       metric.Float64Counter
	fallbacks  metric.Int64Counter
	unpriced   metric.Int64Counter
	observed   metric.Registration // breaker and quota gauges
	attrs      attrSets            // label sets of the measurements above
}

// latencyBuckets suit LLM calls: from 10 ms to several minutes.
var latencyBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320}

func newInstruments(g *Gateway) (*instruments, error) {
	var in instruments
	var errs [13]error
	in.requests, errs[0] = meter.Int64Counter("sluice.requests", metric.WithUnit("{request}"),
		metric.WithDescription("Requests answered, by endpoint, model, channel, status and stream."))
	in.duration, errs[1] = meter.Float64Histogram("sluice.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to answer a request, streams to their end."), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	in.ttft, errs[2] = meter.Float64Histogram("sluice.time_to_first_token", metric.WithUnit("s"),
		metric.WithDescription("Time until the first byte of the answer reached the client."), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	in.tokenUsage, errs[3] = meter.Int64Histogram("gen_ai.client.token.usage", metric.WithUnit("{token}"),
		metric.WithDescription("Tokens used per upstream call, by type (input, output)."),
		metric.WithExplicitBucketBoundaries(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576))
	in.tokens, errs[4] = meter.Int64Counter("sluice.tokens", metric.WithUnit("{token}"),
		metric.WithDescription("Tokens used, by type, model, channel and credential."))
	in.refusals, errs[5] = meter.Int64Counter("sluice.quota.refusals", metric.WithUnit("{request}"),
		metric.WithDescription("Requests refused by a quota, by scope and reason."))
	in.attempts, errs[6] = meter.Int64Counter("sluice.upstream.attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("Upstream attempts, by channel, credential and outcome."))
	in.failovers, errs[7] = meter.Int64Counter("sluice.retries", metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts that failed over to the next credential."))
	in.inFlight, errs[9] = meter.Int64UpDownCounter("sluice.requests.in_flight", metric.WithUnit("{request}"),
		metric.WithDescription("Relayed requests in flight on this instance."))
	in.streams, errs[10] = meter.Int64UpDownCounter("sluice.streams.in_flight", metric.WithUnit("{stream}"),
		metric.WithDescription("Streams being relayed on this instance."))
	in.cost, errs[11] = meter.Float64Counter("sluice.cost.usd",
		metric.WithDescription("What calls cost, in US dollars, by client, model and channel."))
	in.fallbacks, errs[12] = meter.Int64Counter("sluice.fallbacks", metric.WithUnit("{request}"),
		metric.WithDescription("Requests that went on with the next model of their fallback chain, by models and reason."))
	in.unpriced, errs[8] = meter.Int64Counter("sluice.unpriced.calls", metric.WithUnit("{call}"),
		metric.WithDescription("Calls billed $0 because their model has no price (pricing:), by model and channel."))

	breakerState, err := meter.Int64ObservableGauge("sluice.breaker.state",
		metric.WithDescription("Circuit breaker state per credential: 0 closed, 1 half-open, 2 open."))
	if err != nil {
		return nil, err
	}
	degraded, err := meter.Int64ObservableGauge("sluice.quota.fallback",
		metric.WithDescription("1 while the shared quota store is unreachable and the fallback policy decides."))
	if err != nil {
		return nil, err
	}
	outages, err := meter.Int64ObservableCounter("sluice.quota.outages", metric.WithUnit("{outage}"),
		metric.WithDescription("Times the shared quota store became unreachable."))
	if err != nil {
		return nil, err
	}
	backendErrors, err := meter.Int64ObservableCounter("sluice.quota.backend_errors", metric.WithUnit("{error}"),
		metric.WithDescription("Calls to the shared quota store (Redis) that failed."))
	if err != nil {
		return nil, err
	}
	in.observed, errs[11] = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, c := range g.current().creds {
			o.ObserveInt64(breakerState, stateValue(g.breakers.State(c.id)),
				metric.WithAttributes(telemetry.Credential.String(c.id), telemetry.Channel.String(c.ch.name)))
		}
		if f, ok := g.limiter.(fallback); ok {
			v := int64(0)
			if f.Degraded() {
				v = 1
			}
			policy := metric.WithAttributes(telemetry.QuotaPolicy.String(string(f.Policy())))
			o.ObserveInt64(degraded, v, policy)
			o.ObserveInt64(outages, f.Outages(), policy)
			o.ObserveInt64(backendErrors, f.Errors(), policy)
		}
		return nil
	}, breakerState, degraded, outages, backendErrors)
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return &in, nil
}

// fallback is what a limiter with a fallback policy (quota.Resilient)
// reports for metrics.
type fallback interface {
	Degraded() bool
	Outages() int64
	Errors() int64
	Policy() quota.Policy
}

func stateValue(s breaker.State) int64 {
	switch s {
	case breaker.HalfOpen:
		return 1
	case breaker.Open:
		return 2
	}
	return 0
}

// Close releases the gateway's metric callbacks.
func (g *Gateway) Close() error {
	if g.metrics != nil && g.metrics.observed != nil {
		return g.metrics.observed.Unregister()
	}
	return nil
}

// traceServer starts the server span of a call, continuing the client's
// trace (W3C traceparent), and records the call's outcome on it.
func (g *Gateway) traceServer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		switch c.Path() {
		case "/healthz", "/readyz", g.metricsPath:
			return next(c)
		}
		r := c.Request()
		ctx := g.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		route := c.Path()
		if route == "" {
			route = "unknown"
		}
		method := r.Method
		switch method {
		case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions:
		default:
			method = "_OTHER" // the semantic conventions' name for any other, client-chosen, method
		}
		ctx, span := tracer.Start(ctx, method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(telemetry.HTTPMethod.String(method), telemetry.HTTPRoute.String(route)))
		defer span.End()
		c.SetRequest(r.WithContext(ctx))
		err := next(c)
		status := c.Response().Status
		span.SetAttributes(telemetry.HTTPStatus.Int(status))
		if status >= 500 {
			span.SetStatus(codes.Error, fmt.Sprintf("status %d", status))
		}
		return err
	}
}

// tracePropagator is what the gateway reads of a client's trace context
// and writes to upstreams: the W3C traceparent, so that a call is one
// trace from the client to the upstream; the client's tracestate and
// baggage only when forward is set (telemetry.traces.forward_client_context):
// they are the client's data, not the upstream's business.
func tracePropagator(forward bool) propagation.TextMapPropagator {
	if forward {
		return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	return parentOnly{}
}

// parentOnly propagates traceparent and drops the client's tracestate.
type parentOnly struct{ propagation.TraceContext }

// Extract implements propagation.TextMapPropagator.
func (p parentOnly) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	ctx = p.TraceContext.Extract(ctx, carrier)
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && sc.TraceState().Len() > 0 {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc.WithTraceState(trace.TraceState{}))
	}
	return ctx
}

// Fields implements propagation.TextMapPropagator.
func (parentOnly) Fields() []string { return []string{"traceparent"} }

// genAISystem names an upstream for gen_ai.system.
func genAISystem(spec provider.Spec) string {
	switch spec.API {
	case provider.APIAzure:
		return "azure.ai.openai"
	case provider.APIMock:
		return "sluice.mock"
	case provider.APIClaude:
		return "anthropic"
	case provider.APIGemini:
		return "gcp.gemini"
	case provider.APIVertex:
		return "gcp.vertex_ai"
	}
	if spec.Type == "openai" || spec.Type == "" {
		return "openai"
	}
	return spec.Type
}

func operation(ep provider.Endpoint) string {
	if ep == provider.Embeddings {
		return "embeddings"
	}
	return "chat"
}

// startAttempt starts the client span of one upstream attempt.
func (g *Gateway) startAttempt(ctx context.Context, req *request, adm *admitted, n int) (context.Context, trace.Span) {
	cred := adm.cand.cred
	attrs := []attribute.KeyValue{
		telemetry.GenAIOperation.String(operation(req.ep)),
		telemetry.GenAISystem.String(genAISystem(cred.spec)),
		telemetry.GenAIProvider.String(genAISystem(cred.spec)),
		telemetry.GenAIRequestModel.String(req.model),
		telemetry.Credential.String(cred.id),
		telemetry.Channel.String(cred.ch.name),
		telemetry.Attempt.Int(n),
		telemetry.QuotaResult.String("granted"),
		telemetry.BreakerState.String(g.breakers.State(cred.id).String()),
		telemetry.AffinityHit.Bool(adm.decision.StickyHit),
		telemetry.Stream.Bool(req.stream),
	}
	if req.maxTokens > 0 {
		attrs = append(attrs, telemetry.GenAIMaxTokens.Int64(req.maxTokens))
	}
	if adm.decision.Mode != "" {
		attrs = append(attrs, telemetry.QuotaMode.String(adm.decision.Mode))
	}
	if g.captureContent {
		attrs = append(attrs, telemetry.GenAIPrompt.String(truncate(string(req.fields["messages"])+string(req.fields["input"]), 8<<10)))
	}
	return tracer.Start(ctx, operation(req.ep)+" "+req.label, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endAttempt records an attempt's outcome on its span and in metrics.
func (g *Gateway) endAttempt(a *attempt, rep report, v verdict, used int64) {
	cred, span := a.cred, a.span
	result := "ok"
	switch {
	case rep.err == nil:
	case v.committed:
		result = "interrupted"
	case v.retry:
		result = "failover"
	default:
		result = "error"
	}
	if a.sum.Model != "" {
		span.SetAttributes(telemetry.GenAIResponseModel.String(a.sum.Model))
	}
	if a.sum.ID != "" {
		span.SetAttributes(telemetry.GenAIResponseID.String(a.sum.ID))
	}
	if len(a.sum.Finish) > 0 {
		span.SetAttributes(telemetry.GenAIFinishReasons.StringSlice(a.sum.Finish))
	}
	if a.status > 0 {
		span.SetAttributes(telemetry.HTTPStatus.Int(a.status))
	}
	if g.captureContent && a.sum.Text != "" {
		span.SetAttributes(telemetry.GenAICompletion.String(truncate(a.sum.Text, 8<<10)))
	}
	in, outTok := a.tokens(used)
	span.SetAttributes(telemetry.GenAIInputTokens.Int64(in), telemetry.GenAIOutputTokens.Int64(outTok), telemetry.Outcome.String(result),
		telemetry.AttemptResult.String(rep.what.String()))
	if rep.err != nil {
		span.SetAttributes(telemetry.ErrorType.String(result))
		span.SetStatus(codes.Error, a.st.redactor.String(rep.err.Error()))
	}
	span.End()

	ctx, m := a.ctx, g.metrics
	m.attempts.Add(ctx, 1, m.attrs.get(attrKey{kind: attrsAttempt, s: [4]string{cred.ch.name, cred.id, result}},
		telemetry.Channel.String(cred.ch.name), telemetry.Credential.String(cred.id), telemetry.Outcome.String(result)))
	if result == "failover" {
		m.failovers.Add(ctx, 1, m.attrs.get(attrKey{kind: attrsFailover, s: [4]string{cred.ch.name, cred.id}},
			telemetry.Channel.String(cred.ch.name), telemetry.Credential.String(cred.id)))
	}
	if in+outTok > 0 && (rep.err == nil || v.committed) {
		g.recordTokens(a, in, outTok)
	}
}

// recordTokens counts an answered attempt's tokens.
func (g *Gateway) recordTokens(a *attempt, in, out int64) {
	m := g.metrics
	system, model, op := genAISystem(a.cred.spec), a.req.label, operation(a.req.ep)
	channel, cred := a.cred.ch.name, a.cred.id
	for _, t := range [...]struct {
		kind string
		n    int64
	}{{"input", in}, {"output", out}} {
		m.tokenUsage.Record(a.ctx, t.n, m.attrs.get(attrKey{kind: attrsTokenUsage, s: [4]string{t.kind, system, model, op}},
			telemetry.GenAITokenType.String(t.kind), telemetry.GenAISystem.String(system),
			telemetry.GenAIRequestModel.String(model), telemetry.GenAIOperation.String(op)))
		m.tokens.Add(a.ctx, t.n, m.attrs.get(attrKey{kind: attrsTokens, s: [4]string{t.kind, model, channel, cred}},
			telemetry.GenAITokenType.String(t.kind), telemetry.GenAIRequestModel.String(model),
			telemetry.Channel.String(channel), telemetry.Credential.String(cred)))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// observeRequest records one answered call in metrics.
func (g *Gateway) observeRequest(ctx context.Context, c echo.Context, ci *callInfo, took time.Duration) {
	if ci.endpoint == "" {
		return
	}
	m, label, status := g.metrics, cmp.Or(ci.label, unknownModel), c.Response().Status
	attrs := m.attrs.get(attrKey{kind: attrsRequest, s: [4]string{ci.endpoint, label, ci.channel}, n: status, b: ci.stream},
		telemetry.Endpoint.String(ci.endpoint),
		telemetry.GenAIRequestModel.String(label),
		telemetry.Channel.String(ci.channel),
		telemetry.HTTPStatus.Int(status),
		telemetry.Stream.Bool(ci.stream),
	)
	m.requests.Add(ctx, 1, attrs)
	m.duration.Record(ctx, took.Seconds(), attrs)
	g.stats.record(ci.start.Add(took), c.Response().Status, took)
	g.recordUsage(ctx, c, ci, label, took)
	if ci.billed {
		if ci.priced {
			client := cmp.Or(ci.client, "anonymous")
			m.cost.Add(ctx, float64(ci.cost)/1e6, m.attrs.get(attrKey{kind: attrsCost, s: [4]string{client, label, ci.channel}},
				telemetry.Client.String(client), telemetry.GenAIRequestModel.String(label), telemetry.Channel.String(ci.channel)))
		} else {
			m.unpriced.Add(ctx, 1, m.attrs.get(attrKey{kind: attrsUnpriced, s: [4]string{label, ci.channel}},
				telemetry.GenAIRequestModel.String(label), telemetry.Channel.String(ci.channel)))
		}
	}
	if ci.ttfb > 0 {
		m.ttft.Record(ctx, ci.ttfb.Seconds(), m.attrs.get(attrKey{kind: attrsTTFT, s: [4]string{label, ci.channel}, b: ci.stream},
			telemetry.GenAIRequestModel.String(label), telemetry.Channel.String(ci.channel), telemetry.Stream.Bool(ci.stream)))
	}
}
