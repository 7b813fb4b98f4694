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
	req.Reserve = req.Reserve.clamp()
	// The clock is read under the lock: a time read before waiting for
	// it would be older than what others have since counted at, and a
	// rate window would refuse it as if it came early (under thousands of
	// concurrent calls, by up to the time spent waiting).
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	us := now.UnixMicro()

	var client, group *subject
	clientWindows := req.ClientLimit.All(req.Model)
	if req.Client != "" && len(clientWindows) > 0 {
		client = m.subject(clientKey(req.Client))
		if cv := client.check(now, us, clientWindows, req.Reserve); !cv.ok {
			d := cv.refusal(ScopeClient)
			d.Requests, d.Tokens = client.report(now, us, clientWindows)
			return d, nil
		}
	}
	groupWindows := req.GroupLimit.All(req.Model)
	if req.Group != "" && len(groupWindows) > 0 {
		group = m.subject(groupKey(req.Group))
		if gv := group.check(now, us, groupWindows, req.Reserve); !gv.ok {
			d := gv.refusal(ScopeGroup)
			d.Requests, d.Tokens = group.report(now, us, groupWindows)
			return d, nil
		}
	}

	var best verdict
	var binding *subject
	var bindingWindows []Window
	for i, c := range req.Candidates {
		ws := c.Limit.All(c.served(req))
		s := m.subject(credentialKey(c.ID))
		v := s.check(now, us, ws, req.Reserve)
		var pool *subject
		var pws []Window
		if c.Pool != "" {
			if pws = c.PoolLimit.All(c.served(req)); len(pws) > 0 {
				pool = m.subject(poolKey(c.Pool))
				if pv := pool.check(now, us, pws, req.Reserve); !pv.ok {
					v.fail(pv.reason, pv.retry)
				}
			}
		}
		if !v.ok {
			if binding == nil || v.sooner(best) {
				best, binding, bindingWindows = v, s, ws
			}
			continue
		}
		s.take(now, us, ws, req.Reserve)
		if pool != nil {
			pool.take(now, us, pws, req.Reserve)
		}
		d := Decision{Allowed: true, Grant: Grant{
			ID: c.ID, Index: i, Client: req.Client, Model: req.Model, Served: c.Model, Reserved: req.Reserve,
			At: time.UnixMicro(us), CredentialLimit: c.Limit, ClientLimit: req.ClientLimit,
			Backend: "memory",
		}}
		if pool != nil {
			d.Grant.Pool, d.Grant.PoolLimit = c.Pool, c.PoolLimit
		}
		if client != nil {
			client.take(now, us, clientWindows, req.Reserve)
			d.Grant.ClientLimit = req.ClientLimit
			d.Requests, d.Tokens = client.report(now, us, clientWindows)
		} else {
			d.Grant.ClientLimit = Limit{}
		}
		if group != nil {
			group.take(now, us, groupWindows, req.Reserve)
			d.Grant.Group, d.Grant.GroupLimit = req.Group, req.GroupLimit
		}
		return d, nil
	}

	d := best.refusal(ScopeCredential)
	switch {
	case client != nil:
		d.Requests, d.Tokens = client.report(now, us, clientWindows)
	case binding != nil:
		d.Requests, d.Tokens = binding.report(now, us, bindingWindows)
	}
	return d, nil
}

// Settle implements Limiter.
func (m *Memory) Settle(_ context.Context, g Grant, used Amount) error {
	at := g.At.UnixMicro()
	used = used.clamp()
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if g.ID != "" {
		m.subject(credentialKey(g.ID)).settle(now, at, g.CredentialLimit.All(g.served()), g.Reserved, used)
	}
	if g.Pool != "" {
		m.subject(poolKey(g.Pool)).settle(now, at, g.PoolLimit.All(g.served()), g.Reserved, used)
	}
	if g.Client != "" {
		m.subject(clientKey(g.Client)).settle(now, at, g.ClientLimit.All(g.Model), g.Reserved, used)
	}
	if g.Group != "" {
		m.subject(groupKey(g.Group)).settle(now, at, g.GroupLimit.All(g.Model), g.Reserved, used)
	}
	return nil
}

// Cooldown implements Limiter.
func (m *Memory) Cooldown(_ context.Context, id string, d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	until := m.now().Add(d).UnixMicro()
	s := m.subject(credentialKey(id))
	s.coolUntil = max(s.coolUntil, until)
	return nil
}

// Usage reports the live state of subjects under their limits, every
// window of every model.
func (m *Memory) Usage(_ context.Context, subjects []Subject, limits []Limit) ([]Usage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := make([]Usage, len(subjects))
	for i, s := range subjects {
		key := credentialKey(s.ID)
		switch s.Kind {
		case KindClient:
			key = clientKey(s.ID)
		case KindPool:
			key = poolKey(s.ID)
		case KindGroup:
			key = groupKey(s.ID)
		}
		out[i] = m.subject(key).usage(now, limits[i].Every())
	}
	return out, nil
}

func (m *Memory) subject(key string) *subject {
	s := m.subjects[key]
	if s == nil {
		s = &subject{windows: make(map[string]*windowState)}
		m.subjects[key] = s
	}
	return s
}

func credentialKey(id string) string { return "cred:" + id }
func clientKey(name string) string   { return "client:" + name }
func poolKey(name string) string     { return "pool:" + name }
func groupKey(name string) string    { return "group:" + name }

// subject is the bookkeeping of one credential, channel or client key:
// a state per window, by the window's ID.
type subject struct {
	windows   map[string]*windowState
	coolUntil int64 // µs
}

// windowState is one window's state; which fields it uses depends on the
// window's kind.
type windowState struct {
	tat      int64  // Rate: GCRA theoretical arrival time, µs
	ring     window // Sliding
	period   int64  // Calendar: the start of the period counted, µs
	count    int64  // Calendar
	inflight int64  // Concurrent
}

func (s *subject) state(w Window) *windowState {
	id := w.ID()
	st := s.windows[id]
	if st == nil {
		st = new(windowState)
		s.windows[id] = st
	}
	return st
}

// verdict is the outcome of checking one subject.
type verdict struct {
	ok     bool
	reason Reason
	retry  int64 // µs until it may pass; < 0 means never
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

// calendar returns the count of a Calendar window's current period, and
// the period's start and end (µs).
func (st *windowState) calendar(w Window, now time.Time) (count, start, end int64) {
	s := w.Period.Start(now)
	start, end = s.UnixMicro(), w.Period.Next(s).UnixMicro()
	if st.period == start {
		count = st.count
	}
	return count, start, end
}

func (s *subject) check(now time.Time, us int64, ws []Window, amt Amount) verdict {
	v := verdict{ok: true}
	if s.coolUntil > us {
		v.fail(ReasonCooldown, s.coolUntil-us)
	}
	for _, w := range ws {
		st := s.state(w)
		cost := amt.of(w.Unit)
		switch w.Kind {
		case Rate:
			if ok, _, retry, _ := gcra(st.tat, us, w.Width.Microseconds(), w.Limit, 1); !ok {
				v.fail(w.Reason(), retry)
			}
		case Sliding:
			if cost > w.Limit {
				v.fail(ReasonTooLarge, -1)
			} else if ok, _, retry := st.ring.check(us, w.Width.Microseconds(), w.Limit, cost); !ok {
				v.fail(w.Reason(), retry)
			}
		case Calendar:
			count, _, end := st.calendar(w, now)
			if cost > w.Limit {
				v.fail(ReasonTooLarge, -1)
			} else if count+cost > w.Limit {
				v.fail(w.Reason(), end-us)
			}
		case Concurrent:
			if st.inflight >= w.Limit {
				v.fail(w.Reason(), concurrencyPoll)
			}
		}
	}
	return v
}

// concurrencyPoll is how soon a caller refused for concurrency should look
// again: a slot frees whenever some request ends, which no clock predicts.
const concurrencyPoll = int64(20 * time.Millisecond / time.Microsecond)

func (s *subject) take(now time.Time, us int64, ws []Window, amt Amount) {
	for _, w := range ws {
		st := s.state(w)
		cost := amt.of(w.Unit)
		switch w.Kind {
		case Rate:
			_, st.tat, _, _ = gcra(st.tat, us, w.Width.Microseconds(), w.Limit, 1)
		case Sliding:
			st.ring.add(us/slotsWidth(w), cost)
		case Calendar:
			count, start, _ := st.calendar(w, now)
			st.period, st.count = start, count+cost
		case Concurrent:
			st.inflight++
		}
	}
}

// settle ends a grant taken at at: it corrects the reservation to what
// was used and frees the slot.
func (s *subject) settle(now time.Time, at int64, ws []Window, reserved, used Amount) {
	us := now.UnixMicro()
	for _, w := range ws {
		st := s.state(w)
		res, got := reserved.of(w.Unit), used.of(w.Unit)
		switch {
		case w.Kind == Concurrent:
			st.inflight = max(0, st.inflight-1)
		case w.Unit == Requests || res == got:
		case w.Kind == Sliding:
			st.ring.adjust(us/slotsWidth(w), at/slotsWidth(w), res, got)
		case w.Kind == Calendar:
			count, start, _ := st.calendar(w, now)
			if w.Period.Start(time.UnixMicro(at)).UnixMicro() == start {
				st.period, st.count = start, max(0, count+got-res)
			} else if got > 0 {
				// The reservation's period is over (a call across its end):
				// the use is charged to this one, the latest it can be.
				st.period, st.count = start, count+got
			}
		}
	}
}

// report returns the tightest request and token meters of the windows.
func (s *subject) report(now time.Time, us int64, ws []Window) (requests, tokens Meter) {
	for _, l := range s.usage(now, ws).Windows {
		switch {
		case l.Unit == Requests && l.kind != Concurrent:
			requests = tighter(requests, l.Meter)
		case l.Unit == Tokens:
			tokens = tighter(tokens, l.Meter)
		}
	}
	return requests, tokens
}

func (s *subject) usage(now time.Time, ws []Window) Usage {
	us := now.UnixMicro()
	u := Usage{CooldownLeft: micros(max(0, s.coolUntil-us))}
	for _, w := range ws {
		st := s.state(w)
		l := Level{Name: w.Name(), Unit: w.Unit, Model: w.Model, kind: w.Kind}
		l.Limit = w.Limit
		switch w.Kind {
		case Rate:
			interval := w.Width.Microseconds()
			tat := max(st.tat, us)
			l.Remaining = max(0, min(w.Limit, w.Limit-(tat-us+interval-1)/interval))
			l.Reset = micros(tat - us)
		case Sliding:
			used := st.ring.sum(us / slotsWidth(w))
			l.Remaining = max(0, w.Limit-used)
			l.Reset = micros(st.ring.reset(us, w.Width.Microseconds()))
		case Calendar:
			count, _, end := st.calendar(w, now)
			l.Remaining = max(0, w.Limit-count)
			l.Reset, l.Resets = micros(end-us), time.UnixMicro(end).UTC()
		case Concurrent:
			l.Remaining = max(0, w.Limit-st.inflight)
			u.InFlight = max(u.InFlight, st.inflight)
		}
		u.Windows = append(u.Windows, l)
	}
	return u
}

// qpsInterval is the GCRA emission interval for a rate, in µs.
// It rounds up: a limit is never exceeded by rounding.
func qpsInterval(qps float64) int64 { return max(1, int64(math.Ceil(1e6/qps))) }
