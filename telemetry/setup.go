package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Config says where traces and metrics go. The standard OTEL_* variables
// apply on top of it: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name
// the service; without an endpoint here, OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER) turns
// tracing on with OTEL_EXPORTER_OTLP_PROTOCOL; OTEL_TRACES_SAMPLER picks
// the sampler unless SampleRatio is set; OTEL_METRICS_EXPORTER adds a
// metrics exporter beside Prometheus; OTEL_SDK_DISABLED=true turns
// everything off. With nothing configured, tracing is off and costs
// nothing.
type Config struct {
	// ServiceName defaults to "sluice".
	ServiceName string
	// Version is the service version on every span and metric.
	Version string
	// TracesEndpoint, when set, sends traces over OTLP: "host:4317" for
	// gRPC, "http://host:4318" for HTTP.
	TracesEndpoint string
	// TracesProtocol is grpc (default) or http/protobuf.
	TracesProtocol string
	// Insecure sends traces without TLS.
	Insecure bool
	// SampleRatio, when above 0, samples that share of new traces (parent
	// based). Default: OTEL_TRACES_SAMPLER, else every trace.
	SampleRatio float64
	// Prometheus serves metrics for scraping (the returned Metrics
	// handler). Default false here; Sluice's config turns it on.
	Prometheus bool
	// Logs builds a log pipeline (for usage records): OTLP to the
	// endpoint of the standard OTEL_EXPORTER_OTLP_(LOGS_)ENDPOINT and
	// PROTOCOL variables, or what OTEL_LOGS_EXPORTER names.
	Logs bool
}

// Telemetry is the set-up trace and metric pipeline.
type Telemetry struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Metrics serves the Prometheus exposition format; nil without
	// Prometheus.
	Metrics http.Handler
	// Tracing reports whether spans are exported anywhere.
	Tracing bool
	// LoggerProvider emits log records; nil without Logs.
	LoggerProvider *sdklog.LoggerProvider

	shutdown []func(context.Context) error
}

// Setup builds the providers. Callers install them (otel.SetTracerProvider
// and friends) and call Shutdown before exiting, so that buffered spans
// are flushed.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	t := &Telemetry{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()}
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return t, nil
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "sluice"
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(cfg.ServiceName), semconv.ServiceVersion(cfg.Version)),
		resource.WithFromEnv(), resource.WithHost(), resource.WithProcessPID())
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}

	exporter, err := spanExporter(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if exporter != nil {
		opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithBatcher(exporter)}
		if cfg.SampleRatio > 0 {
			opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))))
		}
		tp := sdktrace.NewTracerProvider(opts...)
		t.TracerProvider, t.Tracing = tp, true
		t.shutdown = append(t.shutdown, tp.Shutdown)
	}

	var readers []sdkmetric.Option
	if cfg.Prometheus {
		reg := prometheus.NewRegistry()
		pe, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
		if err != nil {
			return nil, fmt.Errorf("prometheus exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(pe))
		t.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	}
	if v := os.Getenv("OTEL_METRICS_EXPORTER"); v != "" && v != "none" {
		r, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, fmt.Errorf("metrics exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(r))
	}
	if len(readers) > 0 {
		mp := sdkmetric.NewMeterProvider(append(readers, sdkmetric.WithResource(res))...)
		t.MeterProvider = mp
		t.shutdown = append(t.shutdown, mp.Shutdown)
	}
	if cfg.Logs {
		exp, err := autoexport.NewLogExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("logs exporter: %w", err)
		}
		lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
		t.LoggerProvider = lp
		t.shutdown = append(t.shutdown, lp.Shutdown)
	}
	return t, nil
}

// spanExporter builds the trace exporter the config or the environment
// asks for, or none.
func spanExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	if cfg.TracesEndpoint != "" {
		if strings.HasPrefix(cfg.TracesProtocol, "http") {
			opts := []otlptracehttp.Option{}
			if strings.Contains(cfg.TracesEndpoint, "://") {
				opts = append(opts, otlptracehttp.WithEndpointURL(cfg.TracesEndpoint))
			} else {
				opts = append(opts, otlptracehttp.WithEndpoint(cfg.TracesEndpoint))
			}
			if cfg.Insecure {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
			return otlptracehttp.New(ctx, opts...)
		}
		opts := []otlptracegrpc.Option{}
		if strings.Contains(cfg.TracesEndpoint, "://") {
			opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.TracesEndpoint))
		} else {
			opts = append(opts, otlptracegrpc.WithEndpoint(cfg.TracesEndpoint))
		}
		if cfg.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	switch v := os.Getenv("OTEL_TRACES_EXPORTER"); {
	case v == "none":
		return nil, nil
	case v != "", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "", os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "":
		return autoexport.NewSpanExporter(ctx)
	}
	return nil, nil
}

// Shutdown flushes and stops the pipeline.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}
