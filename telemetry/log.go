// Package telemetry sets up what Sluice reports about itself: structured
// logs that carry trace IDs, OpenTelemetry traces and metrics from the
// standard OTEL_* environment and the config file, the Prometheus
// endpoint, and the attribute names every package uses.
package telemetry

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// LogConfig configures the logger. Level is debug, info (the default),
// warn or error; Format is json (the default) or text.
type LogConfig struct {
	Level  string
	Format string
}

// NewLogger returns a slog logger writing to w. Sluice never logs secrets
// or message content: callers log credential IDs, client names, models,
// statuses and timings only.
func NewLogger(c LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.Format, "text") {
		return slog.New(traceHandler{slog.NewTextHandler(w, opts)})
	}
	return slog.New(traceHandler{slog.NewJSONHandler(w, opts)})
}

// traceHandler adds the trace and span IDs of the context to each record,
// so that a log line leads to its trace.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
