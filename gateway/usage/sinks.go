package usage

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
)

// Lines writes records as JSON lines (one object per line) to a writer:
// stdout, or a file opened for appending.
type Lines struct {
	mu sync.Mutex
	w  *bufio.Writer
	c  io.Closer // nil for stdout
}

// NewLines writes JSON lines to w; Close closes c (when not nil).
func NewLines(w io.Writer, c io.Closer) *Lines {
	return &Lines{w: bufio.NewWriterSize(w, 64<<10), c: c}
}

// OpenFile appends JSON lines to a file, creating it (mode 0600: records
// name clients) if needed.
func OpenFile(path string) (*Lines, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("usage records file: %w", err)
	}
	return NewLines(f, f), nil
}

// Write implements Sink: the batch is flushed before it returns.
func (l *Lines) Write(_ context.Context, batch []Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	enc := json.NewEncoder(l.w)
	for _, r := range batch {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return l.w.Flush()
}

// Close implements Sink.
func (l *Lines) Close(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.w.Flush()
	if l.c != nil {
		if cerr := l.c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// OTel emits records as OpenTelemetry log records (event
// "sluice.usage"), for an OTLP collector: the fields are the record's
// attributes, with the trace the call belongs to.
type OTel struct {
	logger   log.Logger
	shutdown func(context.Context) error
}

// NewOTel emits records through a logger provider; shutdown flushes it.
func NewOTel(p log.LoggerProvider, shutdown func(context.Context) error) *OTel {
	return &OTel{logger: p.Logger("github.com/sluice-gateway/sluice/gateway/usage"), shutdown: shutdown}
}

// Write implements Sink.
func (o *OTel) Write(ctx context.Context, batch []Record) error {
	for _, r := range batch {
		var rec log.Record
		rec.SetTimestamp(r.Time)
		rec.SetObservedTimestamp(r.Time.Add(r.Latency))
		rec.SetEventName("sluice.usage")
		rec.SetSeverity(log.SeverityInfo)
		rec.SetBody(attribute.StringValue("usage"))
		rec.AddAttributes(
			attribute.String("request_id", r.RequestID), attribute.String("trace_id", r.TraceID),
			attribute.String("client", r.Client), attribute.String("group", r.Group),
			attribute.String("endpoint", r.Endpoint), attribute.String("model", r.Model),
			attribute.String("channel", r.Channel), attribute.String("credential", r.Credential),
			attribute.Bool("stream", r.Stream), attribute.Int("status", r.Status),
			attribute.Int64("input_tokens", r.InputTokens), attribute.Int64("output_tokens", r.OutputTokens),
			attribute.Int64("cached_tokens", r.CachedTokens),
			attribute.Float64("cost_usd", float64(r.Cost)/1e6), attribute.Bool("priced", r.Priced),
			attribute.Float64("latency_ms", ms(r.Latency)), attribute.Float64("ttft_ms", ms(r.TTFT)),
		)
		o.logger.Emit(ctx, rec)
	}
	return nil
}

// Close implements Sink: it flushes what the provider holds.
func (o *OTel) Close(ctx context.Context) error {
	if o.shutdown == nil {
		return nil
	}
	return o.shutdown(ctx)
}
