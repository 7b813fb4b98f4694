package quota

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Policy is what a Resilient limiter does while its shared backend is
// unreachable.
type Policy string

// Policies for an unreachable backend.
const (
	// PolicyLocal enforces each limit divided by the number of live
	// instances, in memory, and keeps serving.
	PolicyLocal Policy = "local"
	// PolicyOpen serves without limits.
	PolicyOpen Policy = "open"
	// PolicyClosed refuses every request (503).
	PolicyClosed Policy = "closed"
)

// ResilientConfig configures a Resilient limiter. The zero value is
// usable: each zero field means the default written next to it.
type ResilientConfig struct {
	// Policy while the backend is unreachable. Default PolicyLocal.
	Policy Policy
	// Instances returns how many instances share the limits (the last
	// count seen in Redis). Nil or < 1: 1.
	Instances func() int
	// Probe checks whether the backend is back; required for recovery. It
	// must exercise what requests need (Redis.Probe runs a script that
	// writes), not merely reach the server: a backend that answers a PING
	// but fails scripts is still down.
	Probe func(ctx context.Context) error
	// ProbeEvery is how often Probe runs while the backend is down.
	// Default 500ms.
	ProbeEvery time.Duration
	// MinDwell is the shortest an outage lasts: the backend decides again
	// only once a probe succeeded and at least this long has passed since
	// the outage began, so that a backend failing some calls and not
	// others cannot make the limiter switch back and forth faster than
	// this. Default 1s.
	MinDwell time.Duration
	// Now is the clock (tests). Nil: time.Now.
	Now func() time.Time
	// Local is the limiter used under PolicyLocal. Nil: a new Memory.
	Local *Memory
	// Logger reports outages, once each. Nil: slog.Default().
	Logger *slog.Logger
}

// Resilient puts a shared limiter (Redis or Leased) in front of a policy
// for when its backend is unreachable. The first call that fails switches
// it to the policy at once; it goes back to the shared backend by itself
// once Ping succeeds. No request waits for a dead backend longer than one
// call's timeout.
type Resilient struct {
	primary Limiter
	cfg     ResilientConfig

	degraded atomic.Bool
	outages  atomic.Int64
	errors   atomic.Int64

	mu    sync.Mutex
	since time.Time // when the current outage began
}

var _ Limiter = (*Resilient)(nil)

// NewResilient wraps a shared limiter.
func NewResilient(primary Limiter, cfg ResilientConfig) *Resilient {
	if cfg.Policy == "" {
		cfg.Policy = PolicyLocal
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = 500 * time.Millisecond
	}
	if cfg.MinDwell <= 0 {
		cfg.MinDwell = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Local == nil {
		cfg.Local = NewMemory(MemoryConfig{})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Resilient{primary: primary, cfg: cfg}
}

// Degraded reports whether the policy is deciding instead of the backend.
func (r *Resilient) Degraded() bool { return r.degraded.Load() }

// Outages returns how many times the backend became unreachable.
func (r *Resilient) Outages() int64 { return r.outages.Load() }

// Errors returns how many calls to the backend failed: the call that
// began each outage, failed cool-downs, and failed probes while down.
func (r *Resilient) Errors() int64 { return r.errors.Load() }

// Policy returns the configured policy.
func (r *Resilient) Policy() Policy { return r.cfg.Policy }

// Acquire implements Limiter.
func (r *Resilient) Acquire(ctx context.Context, req Request) (Decision, error) {
	if !r.degraded.Load() {
		d, err := r.primary.Acquire(ctx, req)
		if err == nil || !IsBackendError(err) {
			return d, err
		}
		r.enter(err)
	}
	switch r.cfg.Policy {
	case PolicyOpen:
		if len(req.Candidates) == 0 {
			return Decision{Scope: ScopeCredential, Mode: string(PolicyOpen)}, nil
		}
		c := req.Candidates[0]
		return Decision{Allowed: true, Mode: string(PolicyOpen), Grant: Grant{ID: c.ID, Client: req.Client, Model: req.Model, Reserved: req.Reserve, Backend: "open"}}, nil
	case PolicyClosed:
		return Decision{}, fmt.Errorf("%w: the shared quota store is unreachable and the policy is closed", ErrBackend)
	}
	local, index := r.localShare(req)
	if req.Client != "" && needsShared(req.ClientLimit.All(req.Model)) {
		return Decision{Scope: ScopeClient, Reason: ReasonBudget, RetryAfter: r.cfg.ProbeEvery, Mode: string(PolicyLocal)}, nil
	}
	if req.Group != "" && needsShared(req.GroupLimit.All(req.Model)) {
		return Decision{Scope: ScopeGroup, Reason: ReasonBudget, RetryAfter: r.cfg.ProbeEvery, Mode: string(PolicyLocal)}, nil
	}
	if len(local.Candidates) == 0 && len(req.Candidates) > 0 {
		return Decision{Scope: ScopeCredential, Reason: ReasonBudget, RetryAfter: r.cfg.ProbeEvery, Mode: string(PolicyLocal)}, nil
	}
	d, err := r.cfg.Local.Acquire(ctx, local)
	d.Mode = string(PolicyLocal)
	if d.Allowed {
		// Report the caller's own limits, not the local share.
		c := req.Candidates[index[d.Grant.Index]]
		d.Grant.Index = index[d.Grant.Index]
		d.Grant.CredentialLimit, d.Grant.PoolLimit = c.Limit, c.PoolLimit
		if d.Grant.Client != "" {
			d.Grant.ClientLimit = req.ClientLimit
		}
		if d.Grant.Group != "" {
			d.Grant.GroupLimit = req.GroupLimit
		}
		d.Grant.Backend = "local"
	}
	return d, err
}

// localShare divides every limit by the number of live instances. A
// budget (a calendar window, or a window of money) cannot be shared so:
// what was spent of it is known only to the shared store. A client (or
// group) under one is refused by the caller; a candidate under one is
// left out of the local request. index maps the local candidates to the
// caller's.
func (r *Resilient) localShare(req Request) (out Request, index []int) {
	n := 1
	if r.cfg.Instances != nil {
		n = max(1, r.cfg.Instances())
	}
	out = req
	out.ClientLimit, out.GroupLimit = share(req.ClientLimit, n), share(req.GroupLimit, n)
	out.Candidates = make([]Candidate, 0, len(req.Candidates))
	for i, c := range req.Candidates {
		if needsShared(c.Limit.All(c.served(req))) || needsShared(c.PoolLimit.All(c.served(req))) {
			continue
		}
		c.Limit, c.PoolLimit = share(c.Limit, n), share(c.PoolLimit, n)
		out.Candidates = append(out.Candidates, c)
		index = append(index, i)
	}
	return out, index
}

// needsShared reports whether a window cannot be enforced by one instance
// alone: what counts in it so far is in the shared store only.
func needsShared(ws []Window) bool {
	for _, w := range ws {
		if w.Kind == Calendar || w.Unit == Cost {
			return true
		}
	}
	return false
}

// share is one instance's part of a limit; every limit keeps at least 1.
func share(l Limit, n int) Limit {
	if n <= 1 || l.IsZero() {
		return l
	}
	part := func(v int64) int64 {
		if v == 0 {
			return 0
		}
		return max(1, v/int64(n))
	}
	out := Limit{
		RPM: part(l.RPM), RPD: part(l.RPD), TPM: part(l.TPM), TPD: part(l.TPD),
		Concurrency: part(l.Concurrency),
	}
	if l.QPS > 0 {
		out.QPS = l.QPS / float64(n)
		out.Burst = part(l.burst())
	}
	for _, w := range l.Windows {
		w.Limit = part(w.Limit)
		if w.Kind == Rate {
			w.Width *= time.Duration(n)
		}
		out.Windows = append(out.Windows, w)
	}
	return out
}

// Settle implements Limiter: each grant goes back where it was taken.
func (r *Resilient) Settle(ctx context.Context, g Grant, used Amount) error {
	switch g.Backend {
	case "open":
		return nil
	case "local":
		return r.cfg.Local.Settle(ctx, g, used)
	}
	return r.primary.Settle(ctx, g, used)
}

// Cooldown implements Limiter: the cool-down is kept locally too, for
// when the policy decides.
func (r *Resilient) Cooldown(ctx context.Context, id string, d time.Duration) error {
	_ = r.cfg.Local.Cooldown(ctx, id, d)
	if r.degraded.Load() {
		return nil
	}
	if err := r.primary.Cooldown(ctx, id, d); err != nil && IsBackendError(err) {
		r.enter(err)
	}
	return nil
}

// enter switches to the policy, logging the outage once.
func (r *Resilient) enter(err error) {
	r.errors.Add(1)
	if r.degraded.Swap(true) {
		return
	}
	r.outages.Add(1)
	r.mu.Lock()
	r.since = r.cfg.Now()
	r.mu.Unlock()
	r.cfg.Logger.Error("shared quota store unreachable: the fallback policy decides until it is back",
		slog.String("policy", string(r.cfg.Policy)), slog.String("error", err.Error()))
}

// Run probes the backend while it is down and switches back when it
// answers and the outage has lasted MinDwell, until ctx ends.
func (r *Resilient) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.ProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.ProbeOnce(ctx)
	}
}

// ProbeOnce probes a backend that is down once and switches back to it if
// the probe succeeds and the outage has lasted MinDwell. It reports
// whether the backend decides again.
func (r *Resilient) ProbeOnce(ctx context.Context) bool {
	if !r.degraded.Load() {
		return true
	}
	if r.cfg.Probe == nil {
		return false
	}
	r.mu.Lock()
	since := r.since
	r.mu.Unlock()
	if r.cfg.Now().Sub(since) < r.cfg.MinDwell {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.ProbeEvery)
	err := r.cfg.Probe(pctx)
	cancel()
	if err != nil {
		r.errors.Add(1)
		return false
	}
	r.degraded.Store(false)
	r.cfg.Logger.Warn("shared quota store reachable again: it decides again",
		slog.Duration("outage", r.cfg.Now().Sub(since).Round(time.Millisecond)))
	return true
}

// Usage reads the shared state when the primary can be inspected.
func (r *Resilient) Usage(ctx context.Context, subjects []Subject, limits []Limit) ([]Usage, error) {
	if in, ok := r.primary.(interface {
		Usage(context.Context, []Subject, []Limit) ([]Usage, error)
	}); ok {
		return in.Usage(ctx, subjects, limits)
	}
	return r.cfg.Local.Usage(ctx, subjects, limits)
}
