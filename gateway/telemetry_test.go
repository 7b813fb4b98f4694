package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/telemetry"
)

// The package's tracer and meter bind to the first global providers set
// in a process, so the telemetry tests share one pipeline.
var (
	telOnce  sync.Once
	spans    *tracetest.SpanRecorder
	metricsH http.Handler
)

func installTelemetry(t *testing.T) {
	t.Helper()
	telOnce.Do(func() {
		spans = tracetest.NewSpanRecorder()
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
		otel.SetTextMapPropagator(propagation.TraceContext{})
		tel, err := telemetry.Setup(context.Background(), telemetry.Config{Prometheus: true})
		if err != nil {
			t.Fatal(err)
		}
		otel.SetMeterProvider(tel.MeterProvider)
		metricsH = tel.Metrics
	})
}

// spansOf returns the ended spans of one trace.
func spansOf(id trace.TraceID) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.SpanContext().TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// TestTraceOfAFailover: a request that fails over is one trace, the
// client's, with the server span, one client span per attempt with the
// routing decision and GenAI attributes, and traceparent sent upstream.
func TestTraceOfAFailover(t *testing.T) {
	installTelemetry(t)
	a := statusUpstream(t, 503, nil, `{"error":{"message":"overloaded"}}`)
	b := mockUpstream(t, mock.Config{})
	var logs bytes.Buffer
	g, err := New(loadConfig(t, twoChannels, "A", a.URL, "B", b.URL), Deps{Logger: telemetry.NewLogger(telemetry.LogConfig{}, &logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	srv := httptest.NewServer(g)
	defer srv.Close()

	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	resp, body := chat(t, srv, "m", "traceparent", traceparent)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	var server sdktrace.ReadOnlySpan
	var attempts []sdktrace.ReadOnlySpan
	for _, s := range spansOf(tid) {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			server = s
		case trace.SpanKindClient:
			attempts = append(attempts, s)
		}
	}
	if server == nil || server.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("the server span must continue the client's trace: %v", server)
	}
	if len(attempts) != 2 {
		t.Fatalf("%d attempt spans, want 2", len(attempts))
	}
	for i, s := range attempts {
		if s.Name() != "chat m" || s.Parent().SpanID() == (trace.SpanID{}) {
			t.Fatalf("attempt %d: %s", i, s.Name())
		}
		if attr(s, telemetry.Attempt).AsInt64() != int64(i+1) || attr(s, telemetry.GenAIRequestModel).AsString() != "m" {
			t.Fatalf("attempt %d attributes: %v", i, s.Attributes())
		}
	}
	if attr(attempts[0], telemetry.Credential).AsString() != "a" || attr(attempts[0], telemetry.Outcome).AsString() != "failover" ||
		attr(attempts[0], telemetry.HTTPStatus).AsInt64() != 503 {
		t.Fatalf("first attempt: %v", attempts[0].Attributes())
	}
	ok := attempts[1]
	if attr(ok, telemetry.Credential).AsString() != "b" || attr(ok, telemetry.GenAIResponseModel).AsString() != "m" ||
		attr(ok, telemetry.GenAIOutputTokens).AsInt64() == 0 || attr(ok, telemetry.GenAISystem).AsString() != "openai" {
		t.Fatalf("second attempt: %v", ok.Attributes())
	}
	for _, kv := range append(ok.Attributes(), server.Attributes()...) {
		if strings.Contains(kv.Value.Emit(), "sk-") || strings.Contains(kv.Value.Emit(), "Say hello") {
			t.Fatalf("a secret or message content on a span: %v", kv)
		}
	}
	// The upstream saw the attempt's span as its parent.
	h, _ := b.lastRequest()
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(h)))
	if sc.TraceID() != tid || sc.SpanID() != ok.SpanContext().SpanID() {
		t.Fatalf("traceparent upstream: %q", h.Get("traceparent"))
	}
	// The access log line carries the trace ID.
	if !strings.Contains(logs.String(), `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`) {
		t.Fatalf("the log lacks the trace id: %s", logs.String())
	}
}

func TestCaptureContentIsOptIn(t *testing.T) {
	installTelemetry(t)
	up := mockUpstream(t, mock.Config{})
	for _, capture := range []bool{false, true} {
		cfg := `channels: [{type: openai, base_url: U, models: [m]}]`
		if capture {
			cfg = "telemetry: {capture_content: true}\n" + cfg
		}
		_, srv := startGateway(t, cfg, "U", up.URL)
		const tp = "00-0123456789abcdef0123456789abcdef-00f067aa0ba902b7-01"
		chat(t, srv, "m", "traceparent", tp)
		tid, _ := trace.TraceIDFromHex("0123456789abcdef0123456789abcdef")
		found := false
		for _, s := range spansOf(tid) {
			if strings.Contains(attr(s, telemetry.GenAIPrompt).Emit(), "Say hello") {
				found = true
			}
		}
		if found != capture {
			t.Fatalf("capture_content %v: prompt on a span = %v", capture, found)
		}
		spans.Reset()
	}
}

// TestMetricsEndpoint scrapes /metrics after some traffic.
func TestMetricsEndpoint(t *testing.T) {
	installTelemetry(t)
	up := mockUpstream(t, mock.Config{})
	g, err := New(loadConfig(t, `
clients: [{name: c, key: sk-c, limits: {rpm: 1}}]
channels: [{name: ch, type: openai, base_url: U, models: [m], credentials: [{id: cred-1}]}]
`, "U", up.URL), Deps{Logger: testLogger(), Metrics: metricsH})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	srv := httptest.NewServer(g)
	defer srv.Close()
	chat(t, srv, "m", "Authorization", "Bearer sk-c")
	chat(t, srv, "m", "Authorization", "Bearer sk-c") // refused: rpm 1
	resp := call(t, srv, "/v1/chat/completions", streamBody, "Authorization", "Bearer sk-wrong")
	resp.Body.Close()

	mresp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	text := string(b)
	for _, want := range []string{
		`sluice_requests_total{`, `http_response_status_code="200"`, `http_response_status_code="429"`,
		`sluice_request_duration_seconds_bucket{`, `sluice_time_to_first_token_seconds`,
		`gen_ai_client_token_usage_bucket{`, `gen_ai_token_type="input"`,
		`sluice_quota_refusals_total{`, `sluice_quota_scope="client"`,
		`sluice_breaker_state{`, `sluice_credential_id="cred-1"`,
		`sluice_upstream_attempts_total{`, `sluice_requests_in_flight`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(text, `http_response_status_code="401"`) {
		t.Error("refused authentications must be counted")
	}
	if strings.Contains(text, "sk-c") || strings.Contains(text, "sk-wrong") {
		t.Fatal("a client key in metrics")
	}
}
