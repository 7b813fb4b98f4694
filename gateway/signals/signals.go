// Package signals keeps what routing learns of each credential as calls
// go by: how fast it answers (a moving average of the time to first
// byte, per credential and model) and how busy it is (requests in
// flight). One instance's view is partial: with a Store, each instance
// publishes what it saw every second and reads back the cluster's, so
// that an instance started a minute ago routes as well as one that has
// run for hours. Observing costs a mutex and a map update; nothing here
// is on the request path's critical section but reading a snapshot.
package signals

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Store shares signals between instances.
type Store interface {
	// Exchange adds this instance's latency samples (per key: their mean
	// and count) to the cluster's averages, publishes its requests in
	// flight (per credential), and returns the cluster's averages and the
	// other instances' requests in flight, summed per credential.
	Exchange(ctx context.Context, alpha float64, samples map[string]Sample, inflight map[string]int64) (Snapshot, error)
}

// Sample is what an instance saw of one key since it last published.
type Sample struct {
	Mean  time.Duration
	Count int64
}

// Snapshot is the cluster's view.
type Snapshot struct {
	Latency  map[string]time.Duration // key → moving average
	InFlight map[string]int64         // credential → in flight on the other instances
}

// Config configures a Board. The zero value keeps local signals only.
type Config struct {
	// Alpha is each sample's weight in a moving average. Default 0.2.
	Alpha float64
	// Store shares signals with the cluster; nil: this instance only.
	Store Store
	// InFlight returns this instance's requests in flight per
	// credential, published to the cluster.
	InFlight func() map[string]int64
	// Every is how often signals are exchanged. Default 1s.
	Every  time.Duration
	Logger *slog.Logger
}

// Board is an instance's signals. A nil Board knows nothing and learns
// nothing.
type Board struct {
	cfg Config

	mu      sync.Mutex
	pending map[string]*acc          // samples since the last exchange
	local   map[string]time.Duration // averages of this instance's own samples

	cluster atomic.Pointer[Snapshot] // the last exchange's view
	failed  atomic.Int64
}

type acc struct {
	sum   time.Duration
	count int64
}

// New returns a Board.
func New(cfg Config) *Board {
	if cfg.Alpha <= 0 || cfg.Alpha > 1 {
		cfg.Alpha = 0.2
	}
	if cfg.Every <= 0 {
		cfg.Every = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Board{cfg: cfg, pending: map[string]*acc{}, local: map[string]time.Duration{}}
}

// Observe records one time to first byte (or the penalty of a failed
// attempt) of a key: a credential, or a credential serving a model.
func (b *Board) Observe(key string, d time.Duration) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.pending[key]
	if a == nil {
		a = &acc{}
		b.pending[key] = a
	}
	a.sum += d
	a.count++
	old, ok := b.local[key]
	if !ok {
		b.local[key] = d
		return
	}
	b.local[key] = time.Duration(float64(old) + b.cfg.Alpha*float64(d-old))
}

// Latency returns the moving average of a key: the cluster's once an
// exchange has seen it, else this instance's own. ok is false for a key
// nobody has measured yet.
func (b *Board) Latency(key string) (time.Duration, bool) {
	if b == nil {
		return 0, false
	}
	if s := b.cluster.Load(); s != nil {
		if d, ok := s.Latency[key]; ok {
			// Samples of the last second not exchanged yet count too.
			b.mu.Lock()
			own, mine := b.pending[key]
			b.mu.Unlock()
			if mine && own.count > 0 {
				mean := float64(own.sum) / float64(own.count)
				w := 1 - math.Pow(1-b.cfg.Alpha, float64(own.count))
				d = time.Duration(float64(d) + w*(mean-float64(d)))
			}
			return d, true
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.local[key]
	return d, ok
}

// Others returns the requests in flight on a credential on the other
// instances, as they published them at the last exchange.
func (b *Board) Others(credential string) int64 {
	if b == nil {
		return 0
	}
	if s := b.cluster.Load(); s != nil {
		return s.InFlight[credential]
	}
	return 0
}

// Shared reports whether the board exchanges signals with a cluster.
func (b *Board) Shared() bool { return b.cfg.Store != nil }

// Run exchanges signals every Config.Every until ctx ends.
func (b *Board) Run(ctx context.Context) {
	if b.cfg.Store == nil {
		return
	}
	t := time.NewTicker(b.cfg.Every)
	defer t.Stop()
	for {
		b.Exchange(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Exchange publishes what this instance saw and reads the cluster's view,
// in one round trip.
func (b *Board) Exchange(ctx context.Context) {
	b.mu.Lock()
	samples := make(map[string]Sample, len(b.pending))
	for k, a := range b.pending {
		samples[k] = Sample{Mean: a.sum / time.Duration(a.count), Count: a.count}
	}
	b.pending = map[string]*acc{}
	b.mu.Unlock()
	var inflight map[string]int64
	if b.cfg.InFlight != nil {
		inflight = b.cfg.InFlight()
	}
	ectx, cancel := context.WithTimeout(ctx, b.cfg.Every)
	defer cancel()
	snap, err := b.cfg.Store.Exchange(ectx, b.cfg.Alpha, samples, inflight)
	if err != nil {
		if b.failed.Add(1)%60 == 1 {
			b.cfg.Logger.Warn("routing signals not shared", slog.String("error", err.Error()))
		}
		// The samples are not lost for this instance: they are in its
		// own averages.
		return
	}
	b.cluster.Store(&snap)
}
