// Package usage records what each relayed call used and cost, off the
// request path: a call's record goes into a bounded queue (dropped, and
// counted, when the queue is full: a record never slows a request), and
// one goroutine writes the queue in batches to the configured sinks (JSON
// lines on stdout or in a file, OpenTelemetry logs) and adds each batch to
// per-client daily rollups (in Redis, shared by the cluster, or in
// memory).
package usage

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Record is one relayed call. Cost is in micro-dollars; it is written as
// dollars (cost_usd).
type Record struct {
	Time         time.Time     `json:"time"`
	RequestID    string        `json:"request_id"`
	TraceID      string        `json:"trace_id,omitempty"`
	Client       string        `json:"client"`
	Group        string        `json:"group,omitempty"`
	Endpoint     string        `json:"endpoint"`
	Model        string        `json:"model"`
	Channel      string        `json:"channel,omitempty"`
	Credential   string        `json:"credential,omitempty"` // its ID, never its secret
	Stream       bool          `json:"stream"`
	Status       int           `json:"status"`
	InputTokens  int64         `json:"input_tokens"`
	OutputTokens int64         `json:"output_tokens"`
	CachedTokens int64         `json:"cached_tokens"`
	Cost         int64         `json:"-"`
	Priced       bool          `json:"priced"`
	Latency      time.Duration `json:"-"`
	TTFT         time.Duration `json:"-"`
}

// MarshalJSON writes a record with its cost in dollars and its times in
// milliseconds.
func (r Record) MarshalJSON() ([]byte, error) {
	type plain Record
	return json.Marshal(struct {
		plain
		CostUSD   json.Number `json:"cost_usd"`
		LatencyMS float64     `json:"latency_ms"`
		TTFTMS    float64     `json:"ttft_ms,omitempty"`
	}{plain(r), json.Number(Dollars(r.Cost)), ms(r.Latency), ms(r.TTFT)})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Dollars formats micro-dollars as a decimal string of dollars
// ("0.004150"), as records and the X-Sluice-Cost header carry them.
func Dollars(micros int64) string {
	sign := ""
	if micros < 0 {
		sign, micros = "-", -micros
	}
	frac := strconv.FormatInt(micros%1_000_000, 10)
	return sign + strconv.FormatInt(micros/1_000_000, 10) + "." + strings.Repeat("0", 6-len(frac)) + frac
}

// Sink writes batches of records somewhere.
type Sink interface {
	Write(ctx context.Context, batch []Record) error
	Close(ctx context.Context) error
}

// Config configures an Exporter.
type Config struct {
	// Queue bounds the records waiting to be written. Default 10000.
	Queue int
	// Sinks receive every record; Rollups adds them up per client and day,
	// written at most every RollupEvery (default 1s), so that a busy
	// instance costs the rollups' store a few commands a second, not a
	// few per call. Either may be empty.
	Sinks       []Sink
	Rollups     Rollups
	RollupEvery time.Duration
	// Logger reports failed writes (at most once a minute each).
	Logger *slog.Logger
}

// Exporter takes records from requests and writes them in the background.
type Exporter struct {
	cfg     Config
	queue   chan Record
	done    chan struct{}
	dropped atomic.Int64
	written atomic.Int64
	failed  atomic.Int64
	lastLog atomic.Int64 // unix seconds of the last error logged

	days map[[2]string]*Day // what the rollups have not been given yet (Run's goroutine only)
}

// New returns an Exporter; Run writes what it takes.
func New(cfg Config) *Exporter {
	if cfg.Queue <= 0 {
		cfg.Queue = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RollupEvery <= 0 {
		cfg.RollupEvery = time.Second
	}
	return &Exporter{cfg: cfg, queue: make(chan Record, cfg.Queue), done: make(chan struct{}), days: map[[2]string]*Day{}}
}

// Add queues a record without ever waiting: when the queue is full, the
// record is dropped and counted. It reports whether the record was kept.
func (e *Exporter) Add(r Record) bool {
	if e == nil {
		return false
	}
	select {
	case e.queue <- r:
		return true
	default:
		e.dropped.Add(1)
		return false
	}
}

// Dropped is the number of records dropped because the queue was full;
// Written the number the sinks took; Failed the number a sink or the
// rollups failed to take.
func (e *Exporter) Dropped() int64 { return e.dropped.Load() }
func (e *Exporter) Written() int64 { return e.written.Load() }
func (e *Exporter) Failed() int64  { return e.failed.Load() }

// Queued is the number of records waiting.
func (e *Exporter) Queued() int { return len(e.queue) }

// batchSize is the most records written at once.
const batchSize = 512

// Run writes queued records in batches until ctx ends, then writes what is
// left (for at most drain) and closes the sinks.
func (e *Exporter) Run(ctx context.Context, drain time.Duration) {
	defer close(e.done)
	batch := make([]Record, 0, batchSize)
	tick := time.NewTicker(e.cfg.RollupEvery)
	defer tick.Stop()
	for {
		select {
		case r := <-e.queue:
			batch = append(batch[:0], r)
			batch = e.more(batch)
			e.write(ctx, batch)
		case <-tick.C:
			e.rollup(ctx)
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
			defer cancel()
			for len(e.queue) > 0 && dctx.Err() == nil {
				batch = e.more(batch[:0])
				e.write(dctx, batch)
			}
			e.rollup(dctx)
			for _, s := range e.cfg.Sinks {
				_ = s.Close(dctx)
			}
			return
		}
	}
}

// rollup gives the rollups what they have not been given yet.
func (e *Exporter) rollup(ctx context.Context) {
	if e.cfg.Rollups == nil || len(e.days) == 0 {
		return
	}
	days := make([]Day, 0, len(e.days))
	for _, d := range e.days {
		days = append(days, *d)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.cfg.Rollups.Add(rctx, days); err != nil {
		e.warn(err, len(days))
		return // kept: added with the next ones
	}
	clear(e.days)
}

// Done is closed once Run has returned.
func (e *Exporter) Done() <-chan struct{} { return e.done }

// more adds what is queued now to a batch, up to batchSize.
func (e *Exporter) more(batch []Record) []Record {
	for len(batch) < batchSize {
		select {
		case r := <-e.queue:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// write hands a batch to every sink and to the rollups.
func (e *Exporter) write(ctx context.Context, batch []Record) {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var errs []error
	for _, s := range e.cfg.Sinks {
		if err := s.Write(wctx, batch); err != nil {
			errs = append(errs, err)
		}
	}
	if e.cfg.Rollups != nil {
		Sum(e.days, batch)
	}
	if err := errors.Join(errs...); err != nil {
		e.failed.Add(int64(len(batch)))
		e.warn(err, len(batch))
		return
	}
	e.written.Add(int64(len(batch)))
}

// warn logs a failed write, at most once a minute.
func (e *Exporter) warn(err error, n int) {
	now := time.Now().Unix()
	if last := e.lastLog.Load(); now-last >= 60 && e.lastLog.CompareAndSwap(last, now) {
		e.cfg.Logger.Warn("usage records not written", slog.Int("records", n), slog.String("error", err.Error()))
	}
}
