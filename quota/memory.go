package quota

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// MemoryConfig configures a Memory limiter. The zero value is ready to use.
type MemoryConfig struct {
	// Now returns the current time. Nil means time.Now; tests inject a
	// clock here instead of sleeping.
	Now func() time.Time
	// Sticky, when set, keeps the sticky mappings instead of the
	// limiter's own memory.
	Sticky StickyStore
}

// Memory is a Limiter whose state lives in this process: exact for one
// instance, and the fallback an instance enforces alone when the shared
// store is unreachable.
type Memory struct {
	now      func() time.Time
	sticky   StickyStore // nil: stickies
	stickies *stickies

	mu       sync.Mutex
	subjects map[string]*subject
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an empty Memory limiter.
func NewMemory(cfg MemoryConfig) *Memory {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Memory{now: cfg.Now, sticky: cfg.Sticky, stickies: newStickies(cfg.Now), subjects: make(map[string]*subject)}
}

// Acquire implements Limiter.
func (m *Memory) Acquire(ctx context.Context, req Request) (Decision, error) {
	if req.Sticky == "" {
		return m.acquire(req)
	}
	stickyID, err := m.stickyGet(ctx, req)
	if err != nil {
		return Decision{}, fmt.Errorf("%w: sticky lookup: %v", ErrBackend, err)
	}
	orig := req.Candidates
	req.Candidates = stickyFirst(orig, stickyID, req.StickyTier)
	d, err := m.acquire(req)
	if err != nil || !d.Allowed {
		return d, err
	}
	d.StickyHit = stickyID != "" && req.Candidates[0].ID == stickyID
	d.Grant.Index = indexOf(orig, d.Grant.ID)
	if d.Grant.ID != stickyID {
		m.stickySet(ctx, req, d.Grant.ID)
	}
	return d, nil
}

// stickyGet reads a request's sticky mapping, restarting its time to live.
func (m *Memory) stickyGet(ctx context.Context, req Request) (string, error) {
	if m.sticky != nil {
		return m.sticky.Get(ctx, req.Sticky)
	}
	return m.stickies.get(req.Sticky, req.StickyTTL), nil
}

// stickySet stores a request's sticky mapping. Best effort: a mapping
// that could not be stored costs stickiness, never the grant.
func (m *Memory) stickySet(ctx context.Context, req Request, id string) {
	if m.sticky != nil {
		_ = m.sticky.Set(ctx, req.Sticky, id)
		return
	}
	m.stickies.set(req.Sticky, id, req.StickyTTL)
}

// stickyFirst returns the candidates with the one named id moved to the
// front, if it is among the first tier of them (a copy; the caller's
// slice is not changed).
func stickyFirst(cands []Candidate, id string, tier int) []Candidate {
	i := indexOf(cands, id)
	if id == "" || i <= 0 || (tier > 0 && i >= tier) {
		return cands
	}
	out := make([]Candidate, 0, len(cands))
	out = append(out, cands[i])
	out = append(out, cands[:i]...)
	return append(out, cands[i+1:]...)
}

func indexOf(cands []Candidate, id string) int {
	return slices.IndexFunc(cands, func(c Candidate) bool { return c.ID == id })
}

func (m *Memory) acquire(req Request) (Decision, error) {
	req.Tokens = max(0, req.Tokens)
	now := m.now().UnixMicro()
	m.mu.Lock()
	defer m.mu.Unlock()

	var client *subject
	var cv verdict
	if req.Client != "" && !req.ClientLimit.IsZero() {
		client = m.subject(clientKey(req.Client))
		if cv = client.check(now, req.ClientLimit, req.Tokens); !cv.ok {
			d := cv.refusal(ScopeClient)
			d.Requests, d.Tokens = client.report(now, req.ClientLimit)
			return d, nil
		}
	}

	var best verdict
	var binding *subject
	var bindingLimit Limit
	for i, c := range req.Candidates {
		s := m.subject(credentialKey(c.ID))
		v := s.check(now, c.Limit, req.Tokens)
		var pool *subject
		var pv verdict
		if c.Pool != "" && !c.PoolLimit.IsZero() {
			pool = m.subject(poolKey(c.Pool))
			if pv = pool.check(now, c.PoolLimit, req.Tokens); !pv.ok {
				v.fail(pv.reason, pv.retry)
			}
		}
		if !v.ok {
			if binding == nil || v.sooner(best) {
				best, binding, bindingLimit = v, s, c.Limit
			}
			continue
		}
		s.take(now, c.Limit, req.Tokens, v.tat)
		if pool != nil {
			pool.take(now, c.PoolLimit, req.Tokens, pv.tat)
		}
		d := Decision{Allowed: true, Grant: Grant{
			ID: c.ID, Index: i, Client: req.Client, Tokens: req.Tokens,
			At: time.UnixMicro(now), CredentialLimit: c.Limit, ClientLimit: req.ClientLimit,
			Pool: c.Pool, PoolLimit: c.PoolLimit, Backend: "memory",
		}}
		if client != nil {
			client.take(now, req.ClientLimit, req.Tokens, cv.tat)
			d.Requests, d.Tokens = client.report(now, req.ClientLimit)
		}
		return d, nil
	}

	d := best.refusal(ScopeCredential)
	switch {
	case client != nil:
		d.Requests, d.Tokens = client.report(now, req.ClientLimit)
	case binding != nil:
		d.Requests, d.Tokens = binding.report(now, bindingLimit)
	}
	return d, nil
}

// Settle implements Limiter.
func (m *Memory) Settle(_ context.Context, g Grant, usedTokens int64) error {
	now := m.now().UnixMicro()
	at := g.At.UnixMicro()
	m.mu.Lock()
	defer m.mu.Unlock()
	if g.ID != "" {
		m.subject(credentialKey(g.ID)).settle(now, at, g.CredentialLimit, g.Tokens, usedTokens)
	}
	if g.Pool != "" && !g.PoolLimit.IsZero() {
		m.subject(poolKey(g.Pool)).settle(now, at, g.PoolLimit, g.Tokens, usedTokens)
	}
	if g.Client != "" && !g.ClientLimit.IsZero() {
		m.subject(clientKey(g.Client)).settle(now, at, g.ClientLimit, g.Tokens, usedTokens)
	}
	return nil
}

// Cooldown implements Limiter.
func (m *Memory) Cooldown(_ context.Context, id string, d time.Duration) error {
	until := m.now().Add(d).UnixMicro()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.subject(credentialKey(id))
	s.coolUntil = max(s.coolUntil, until)
	return nil
}

// Usage reports the live state of subjects under their limits.
func (m *Memory) Usage(_ context.Context, subjects []Subject, limits []Limit) ([]Usage, error) {
	now := m.now().UnixMicro()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Usage, len(subjects))
	for i, s := range subjects {
		key := credentialKey(s.ID)
		switch s.Kind {
		case KindClient:
			key = clientKey(s.ID)
		case KindPool:
			key = poolKey(s.ID)
		}
		out[i] = m.subject(key).usage(now, limits[i])
	}
	return out, nil
}

func (m *Memory) subject(key string) *subject {
	s := m.subjects[key]
	if s == nil {
		s = new(subject)
		m.subjects[key] = s
	}
	return s
}

func credentialKey(id string) string { return "cred:" + id }
func clientKey(name string) string   { return "client:" + name }
func poolKey(name string) string     { return "pool:" + name }

// subject is the bookkeeping of one credential or client key.
type subject struct {
	tat                int64 // GCRA theoretical arrival time, µs
	rpm, rpd, tpm, tpd window
	inflight           int64
	coolUntil          int64 // µs
}

// verdict is the outcome of checking one subject.
type verdict struct {
	ok     bool
	reason Reason
	retry  int64 // µs until it may pass; < 0 means never
	tat    int64 // GCRA state to store on a take
}

// fail records a failing limit: the first reason wins unless a later one
// can never pass (too large), and the longest wait (or "never") wins.
func (v *verdict) fail(r Reason, retry int64) {
	if v.ok || retry < 0 && v.retry >= 0 {
		v.ok, v.reason, v.retry = false, r, retry
		return
	}
	if v.retry >= 0 && retry > v.retry {
		v.retry = retry
	}
}

// sooner reports whether v can pass before o.
func (v verdict) sooner(o verdict) bool {
	if v.retry < 0 {
		return false
	}
	return o.retry < 0 || v.retry < o.retry
}

func (v verdict) refusal(scope Scope) Decision {
	return Decision{Scope: scope, Reason: v.reason, RetryAfter: micros(max(v.retry, 0))}
}

func (s *subject) check(now int64, l Limit, tokens int64) verdict {
	v := verdict{ok: true}
	if s.coolUntil > now {
		v.fail(ReasonCooldown, s.coolUntil-now)
	}
	if l.QPS > 0 {
		ok, tat, retry, _ := gcra(s.tat, now, qpsInterval(l.QPS), l.burst(), 1)
		if ok {
			v.tat = tat
		} else {
			v.fail(ReasonQPS, retry)
		}
	}
	checkWindow := func(w *window, width, limit, cost int64, r Reason) {
		if limit <= 0 {
			return
		}
		if cost > limit {
			v.fail(ReasonTooLarge, -1)
			return
		}
		if ok, _, retry := w.check(now, width, limit, cost); !ok {
			v.fail(r, retry)
		}
	}
	checkWindow(&s.rpm, minute, l.RPM, 1, ReasonRPM)
	checkWindow(&s.rpd, day, l.RPD, 1, ReasonRPD)
	checkWindow(&s.tpm, minute, l.TPM, tokens, ReasonTPM)
	checkWindow(&s.tpd, day, l.TPD, tokens, ReasonTPD)
	if l.Concurrency > 0 && s.inflight >= l.Concurrency {
		v.fail(ReasonConcurrency, concurrencyPoll)
	}
	return v
}

// concurrencyPoll is how soon a caller refused for concurrency should look
// again: a slot frees whenever some request ends, which no clock predicts.
const concurrencyPoll = int64(20 * time.Millisecond / time.Microsecond)

func (s *subject) take(now int64, l Limit, tokens, tat int64) {
	if l.QPS > 0 {
		s.tat = tat
	}
	if l.RPM > 0 {
		s.rpm.add(slotOf(now, minute), 1)
	}
	if l.RPD > 0 {
		s.rpd.add(slotOf(now, day), 1)
	}
	if l.TPM > 0 {
		s.tpm.add(slotOf(now, minute), tokens)
	}
	if l.TPD > 0 {
		s.tpd.add(slotOf(now, day), tokens)
	}
	if l.Concurrency > 0 {
		s.inflight++
	}
}

func (s *subject) settle(now, at int64, l Limit, reserved, used int64) {
	if l.TPM > 0 && reserved != used {
		s.tpm.adjust(slotOf(now, minute), slotOf(at, minute), reserved, used)
	}
	if l.TPD > 0 && reserved != used {
		s.tpd.adjust(slotOf(now, day), slotOf(at, day), reserved, used)
	}
	if l.Concurrency > 0 && s.inflight > 0 {
		s.inflight--
	}
}

// report returns the tightest request and token windows of l.
func (s *subject) report(now int64, l Limit) (requests, tokens Window) {
	u := s.usage(now, l)
	for _, w := range []Window{u.QPS, u.RPM, u.RPD} {
		requests = tighter(requests, w)
	}
	return requests, tighter(u.TPM, u.TPD)
}

// Usage is the live state of one subject under its limit. Windows whose
// limit is zero are zero.
type Usage struct {
	QPS, RPM, RPD, TPM, TPD Window
	InFlight                int64
	CooldownLeft            time.Duration
}

func (s *subject) usage(now int64, l Limit) Usage {
	var u Usage
	if l.QPS > 0 {
		interval, burst := qpsInterval(l.QPS), l.burst()
		tat := max(s.tat, now)
		u.QPS = Window{Limit: burst, Remaining: max(0, min(burst, burst-(tat-now+interval-1)/interval)), Reset: micros(tat - now)}
	}
	win := func(w *window, width, limit int64) Window {
		if limit <= 0 {
			return Window{}
		}
		used := w.sum(slotOf(now, width))
		return Window{Limit: limit, Remaining: max(0, limit-used), Reset: micros(w.reset(now, width))}
	}
	u.RPM, u.RPD = win(&s.rpm, minute, l.RPM), win(&s.rpd, day, l.RPD)
	u.TPM, u.TPD = win(&s.tpm, minute, l.TPM), win(&s.tpd, day, l.TPD)
	u.InFlight = s.inflight
	u.CooldownLeft = micros(max(0, s.coolUntil-now))
	return u
}

// qpsInterval is the GCRA emission interval for a rate, in µs.
// It rounds up: a limit is never exceeded by rounding.
func qpsInterval(qps float64) int64 { return max(1, int64(math.Ceil(1e6/qps))) }
