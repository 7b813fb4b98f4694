package quota

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LeaseConfig configures lease mode. The zero value is usable: each zero
// field means the default written next to it.
type LeaseConfig struct {
	// Batch is the most requests one refill leases. Default 1000. A
	// subject's first batch is at most 16; a batch used up within its
	// hold doubles the next, one that leaves more than half unused halves
	// it, so that batches follow this instance's demand (and strand
	// little capacity at it). A refill never leases more than the
	// tightest limit allows in Hold.
	Batch int
	// Hold is how long an instance may admit from a leased batch; what it
	// has not used by then goes back. Default 200ms; at most 900ms, so
	// that a batch stays inside the per-minute windows' one-slot slack.
	Hold time.Duration
	// MaxDeny is the longest a refusal is remembered before Redis is
	// asked again. Default 50ms.
	MaxDeny time.Duration
	// Now is the local clock (tests). Nil: time.Now.
	Now func() time.Time
}

func (c LeaseConfig) withDefaults() LeaseConfig {
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	if c.Hold <= 0 {
		c.Hold = 200 * time.Millisecond
	}
	c.Hold = min(c.Hold, 900*time.Millisecond)
	if c.MaxDeny <= 0 {
		c.MaxDeny = 50 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Leased is a Limiter for high rates: it leases capacity from Redis in
// batches and admits from them locally, remembering a refusal for a few
// milliseconds, so most requests cost no round trip at all.
//
// It never admits more than the limits: a batch is taken (and counted by
// Redis) before any request uses it, it is recorded at the end of its
// hold so that windows count it for a full window after its last use, and
// what a batch leaves unused goes back. It may admit slightly less than
// the limits, since a batch held by one instance is not available to the
// others. Requests that hold concurrency slots or follow a sticky mapping
// take the exact path (one round trip), since both are per request.
type Leased struct {
	r   *Redis
	cfg LeaseConfig

	mu       sync.Mutex
	leases   map[string]*allowance // by subject hash key
	refusals map[string]refusal    // by subject hash key
}

var _ Limiter = (*Leased)(nil)

// allowance is the part of a leased batch an instance has not used yet.
// Tokens and money may go negative: used beyond reservations, owed.
type allowance struct {
	requests int64
	left     Amount
	at       int64 // the server µs the batch is recorded at
	expires  time.Time
	batch    uint64
	// size is the next batch's size, following demand (see Batch);
	// leased is what the live batch started with.
	size, leased int64
	// The subject it was leased from, to give back what it holds.
	subject leaseSubject
}

// holds reports whether an allowance has something to give back (or a
// debt to pay).
func (a *allowance) holds() bool { return a.requests > 0 || a.left != Amount{} }

// refusal is a remembered "no": until when it is remembered, and when
// the request may pass (zero: never, it is too large).
type refusal struct {
	until   time.Time
	reason  Reason
	retryAt time.Time
}

// decision is the refusal as the caller sees it now.
func (rf refusal) decision(scope Scope, now time.Time) Decision {
	d := Decision{Scope: scope, Reason: rf.reason}
	if !rf.retryAt.IsZero() {
		d.RetryAfter = max(0, rf.retryAt.Sub(now))
	}
	return d
}

// NewLeased returns a lease-mode limiter on top of a Redis limiter.
func NewLeased(r *Redis, cfg LeaseConfig) *Leased {
	return &Leased{r: r, cfg: cfg.withDefaults(), leases: make(map[string]*allowance), refusals: make(map[string]refusal)}
}

// leaseSubject is one subject of a request in lease mode, with its place
// in take.lua's arguments.
type leaseSubject struct {
	slot    int    // 0 credential, 1 channel, 2 client, 3 group
	hash    string // the subject's hash in Redis
	key     string // its allowance here: the hash, and the model when a window is the model's
	windows []Window
}

func newLeaseSubject(slot int, hash, model string, ws []Window) leaseSubject {
	return leaseSubject{slot: slot, hash: hash, key: hash + modelScope(model, ws), windows: ws}
}

// counts reports whether the subject has a window of unit u.
func (s leaseSubject) counts(u Unit) bool {
	for _, w := range s.windows {
		if w.Unit == u && w.Kind != Rate && w.Kind != Concurrent {
			return true
		}
	}
	return false
}

// Acquire implements Limiter.
func (l *Leased) Acquire(ctx context.Context, req Request) (Decision, error) {
	req.Reserve = req.Reserve.clamp()
	if req.Sticky != "" || concurrent(req.ClientLimit.All(req.Model)) || concurrent(req.GroupLimit.All(req.Model)) {
		return l.r.Acquire(ctx, req)
	}
	for _, c := range req.Candidates {
		if concurrent(c.Limit.All(c.served(req))) || concurrent(c.PoolLimit.All(c.served(req))) {
			return l.r.Acquire(ctx, req)
		}
	}
	k := l.r.Keys()
	// The client's side: its key and its group, held whatever candidate.
	var own []leaseSubject
	if req.Client != "" {
		if ws := req.ClientLimit.All(req.Model); len(ws) > 0 {
			own = append(own, newLeaseSubject(2, k.Client(req.Client), req.Model, ws))
		}
	}
	if req.Group != "" {
		if ws := req.GroupLimit.All(req.Model); len(ws) > 0 {
			own = append(own, newLeaseSubject(3, k.Group(req.Group), req.Model, ws))
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	for _, s := range own {
		if rf, ok := l.refusals[s.key]; ok && now.Before(rf.until) {
			return rf.decision(scopeOf(s.slot), now), nil
		}
	}
	best := Decision{RetryAfter: -1}
	for i, c := range req.Candidates {
		ws := c.Limit.All(c.served(req))
		subjects := []leaseSubject{newLeaseSubject(0, k.Credential(c.ID), c.served(req), ws)}
		var pws []Window
		if c.Pool != "" {
			if pws = c.PoolLimit.All(c.served(req)); len(pws) > 0 {
				subjects = append(subjects, newLeaseSubject(1, k.Pool(c.Pool), c.served(req), pws))
			}
		}
		if rf, refused := l.refused(now, subjects); refused {
			best = soonest(best, rf.decision(ScopeCredential, now))
			continue
		}
		all := append(append([]leaseSubject(nil), subjects...), own...)
		if !l.covered(now, all, req.Reserve) {
			d, err := l.refill(ctx, now, all, req.Reserve)
			if err != nil {
				return Decision{}, err
			}
			if !d.Allowed {
				if d.Scope == ScopeClient || d.Scope == ScopeGroup {
					return d, nil
				}
				best = soonest(best, d)
				continue
			}
		}
		g := Grant{
			ID: c.ID, Index: i, Client: req.Client, Model: req.Model, Served: c.Model, Reserved: req.Reserve, At: now,
			CredentialLimit: c.Limit, Backend: "lease",
		}
		for _, s := range own {
			if s.slot == 2 {
				g.ClientLimit = req.ClientLimit
			} else {
				g.Group, g.GroupLimit = req.Group, req.GroupLimit
			}
		}
		if len(pws) > 0 {
			g.Pool, g.PoolLimit = c.Pool, c.PoolLimit
		}
		var batches [4]uint64
		recorded := int64(math.MaxInt64)
		for _, s := range all {
			a := l.leases[s.key]
			a.requests--
			a.left = a.left.Sub(Amount{Tokens: use(s, Tokens, req.Reserve), Cost: use(s, Cost, req.Reserve)})
			batches[s.slot] = a.batch
			recorded = min(recorded, a.at)
		}
		// The reservation counts in Redis where its batches do: the
		// earliest of them, so that a correction never charges less.
		g.At = time.UnixMicro(recorded)
		g.Lease = fmt.Sprintf("%d,%d,%d,%d", batches[0], batches[1], batches[2], batches[3])
		return Decision{Allowed: true, Grant: g}, nil
	}
	if best.RetryAfter < 0 {
		best.RetryAfter = 0
	}
	return best, nil
}

// modelScope keeps apart the allowances of one subject for calls of
// different models when it has windows of a model: a batch leased under
// a model's window is for that model's calls.
func modelScope(model string, ws []Window) string {
	for _, w := range ws {
		if w.Model != "" {
			return "@" + model
		}
	}
	return ""
}

// use is what a request takes of a subject's allowance of unit u.
func use(s leaseSubject, u Unit, a Amount) int64 {
	if !s.counts(u) {
		return 0
	}
	return a.of(u)
}

// soonest keeps the refusal that may pass first.
func soonest(a, b Decision) Decision {
	if a.RetryAfter < 0 || (b.RetryAfter > 0 && b.RetryAfter < a.RetryAfter) {
		return b
	}
	return a
}

// refused reports a remembered refusal of any of the subjects.
func (l *Leased) refused(now time.Time, subjects []leaseSubject) (refusal, bool) {
	for _, s := range subjects {
		if rf, ok := l.refusals[s.key]; ok {
			if now.Before(rf.until) {
				return rf, true
			}
			delete(l.refusals, s.key)
		}
	}
	return refusal{}, false
}

// covered reports whether every subject's live allowance can admit one
// more request of the given reservation.
func (l *Leased) covered(now time.Time, subjects []leaseSubject, need Amount) bool {
	for _, s := range subjects {
		a := l.leases[s.key]
		if a == nil || !now.Before(a.expires) || a.requests < 1 ||
			a.left.Tokens < use(s, Tokens, need) || a.left.Cost < use(s, Cost, need) {
			return false
		}
	}
	return true
}

// refill leases a new batch for the subjects in one round trip, giving
// back what their expired batches left unused.
func (l *Leased) refill(ctx context.Context, now time.Time, subjects []leaseSubject, need Amount) (Decision, error) {
	n := int64(l.cfg.Batch)
	var tokens, money bool
	sizes := make(map[string]int64, len(subjects))
	for _, s := range subjects {
		sizes[s.key] = l.nextSize(now, s, l.leases[s.key], need)
		n = min(n, sizes[s.key], batchFor(s.windows, l.cfg.Hold))
		tokens = tokens || s.counts(Tokens)
		money = money || s.counts(Cost)
	}
	var want Amount
	if tokens {
		want.Tokens = n * max(need.Tokens, 1)
	}
	if money {
		want.Cost = n * max(need.Cost, 1)
	}
	none := l.r.Keys().none()
	keys := []string{none, none, none, none}
	windows := [4][]Window{}
	stores := [4]string{}
	for _, s := range subjects {
		keys[s.slot], windows[s.slot], stores[s.slot] = s.hash, s.windows, s.key
	}
	reasons := map[string]Reason{"cool": ReasonCooldown, "large": ReasonTooLarge}
	wall := l.r.clock()
	args := []any{l.r.now(), n, want.Tokens, want.Cost, need.Tokens, need.Cost, l.cfg.Hold.Microseconds()}
	var gone []*allowance
	for slot := range 4 {
		args = encodeWindows(args, windows[slot], wall)
		addReasons(reasons, windows[slot])
		a := l.leases[stores[slot]]
		if stores[slot] == "" || a == nil {
			args = append(args, 0, 0, 0, 0, 0, 0)
			continue
		}
		// Whatever the old batch holds goes back (or is charged) now.
		args = append(args, max(0, a.requests), max(0, a.left.Tokens), max(0, a.left.Cost), a.at,
			max(0, -a.left.Tokens), max(0, -a.left.Cost))
		gone = append(gone, a)
	}
	along := l.r.takePending(piggyback)
	args = append(args, len(along))
	for _, st := range along {
		keys = append(keys, st.keys[:]...)
		args = append(args, st.args...)
	}
	v, err := l.r.run(ctx, l.r.take, keys, args...)
	if err != nil {
		if notSent(err) {
			l.r.requeue(along)
		}
		return Decision{}, err
	}
	res, ok := v.([]any)
	if !ok || len(res) != 8 {
		return Decision{}, fmt.Errorf("%w: unexpected take reply %v", ErrBackend, v)
	}
	for _, a := range gone {
		a.requests, a.left = 0, Amount{}
	}
	if who := toInt(res[5]); who > 0 {
		retry := micros(toInt(res[7]))
		rf := refusal{reason: reasonOf(reasons, toStr(res[6])), until: now.Add(l.cfg.MaxDeny)}
		if retry >= 0 { // else never: too large
			rf.retryAt = now.Add(retry)
			rf.until = now.Add(min(max(retry, time.Microsecond), l.cfg.MaxDeny))
		}
		l.refusals[stores[who-1]] = rf
		return rf.decision(scopeOf(int(who-1)), now), nil
	}
	serverNow := toInt(res[3])
	usable := min(toInt(res[4])-serverNow, l.cfg.Hold.Microseconds())
	for _, key := range stores {
		if key == "" {
			continue
		}
		a := l.leases[key]
		if a == nil {
			a = &allowance{}
			l.leases[key] = a
		}
		for _, s := range subjects {
			if s.key == key {
				a.subject = s
			}
		}
		a.requests, a.left = toInt(res[0]), Amount{Tokens: toInt(res[1]), Cost: toInt(res[2])}
		a.size, a.leased = sizes[key], a.requests
		a.at, a.expires = serverNow+l.cfg.Hold.Microseconds(), now.Add(micros(max(0, usable)))
		a.batch++
	}
	return Decision{Allowed: true}, nil
}

// firstBatch is the most a subject's first batch leases.
const firstBatch = 16

// nextSize is the size of a subject's next batch: doubled when the live
// one was used up within its hold (its requests, tokens or money), halved
// when it ended with more than half of its requests unused, else kept (see
// LeaseConfig.Batch).
func (l *Leased) nextSize(now time.Time, s leaseSubject, a *allowance, need Amount) int64 {
	if a == nil || a.size == 0 {
		return min(firstBatch, int64(l.cfg.Batch))
	}
	usedUp := a.requests < 1 || a.left.Tokens < use(s, Tokens, need) || a.left.Cost < use(s, Cost, need)
	switch {
	case usedUp && now.Before(a.expires):
		return min(2*a.size, int64(l.cfg.Batch))
	case !now.Before(a.expires) && 2*a.requests > a.leased:
		return max(firstBatch/2, a.size/2)
	}
	return a.size
}

// scopeOf is the scope of a refusal by the subject in a slot.
func scopeOf(slot int) Scope {
	switch slot {
	case 2:
		return ScopeClient
	case 3:
		return ScopeGroup
	}
	return ScopeCredential
}

// batchFor is the most a subject's windows let one instance use in hold.
func batchFor(ws []Window, hold time.Duration) int64 {
	rate := math.Inf(1) // requests per second
	for _, w := range ws {
		switch {
		case w.Kind == Rate:
			rate = min(rate, 1/w.Width.Seconds())
		case w.Kind == Sliding && w.Unit == Requests:
			rate = min(rate, float64(w.Limit)/w.Width.Seconds())
		case w.Kind == Calendar && w.Unit == Requests:
			rate = min(rate, float64(w.Limit)/max(1, hold.Seconds()))
		}
	}
	if math.IsInf(rate, 1) {
		return math.MaxInt32
	}
	return max(1, int64(math.Ceil(rate*hold.Seconds())))
}

// Settle implements Limiter: lease-mode grants settle locally while the
// batch they came from is live, refunding what a request did not use to
// it (and forgetting a remembered refusal: there is room again) and
// owing what it used beyond its reservation to the next refill. A grant
// whose batch is over (a call longer than the hold) is corrected in
// Redis, at the time its batch was recorded, as an exact grant is.
func (l *Leased) Settle(ctx context.Context, g Grant, used Amount) error {
	if g.Backend != "lease" {
		return l.r.Settle(ctx, g, used)
	}
	delta := used.clamp().Sub(g.Reserved)
	if delta.IsZero() {
		return nil
	}
	k := l.r.Keys()
	var batches [4]uint64
	for i, part := range strings.SplitN(g.Lease, ",", 4) {
		batches[i], _ = strconv.ParseUint(part, 10, 64)
	}
	// The subjects the grant took from, as Acquire chose them: the
	// credential always, the others when they have windows.
	var subjects []leaseSubject
	if g.ID != "" {
		ws := g.CredentialLimit.All(g.served())
		subjects = append(subjects, newLeaseSubject(0, k.Credential(g.ID), g.served(), ws))
	}
	if ws := g.PoolLimit.All(g.served()); g.Pool != "" && len(ws) > 0 {
		subjects = append(subjects, newLeaseSubject(1, k.Pool(g.Pool), g.served(), ws))
	}
	if ws := g.ClientLimit.All(g.Model); g.Client != "" && len(ws) > 0 {
		subjects = append(subjects, newLeaseSubject(2, k.Client(g.Client), g.Model, ws))
	}
	if ws := g.GroupLimit.All(g.Model); g.Group != "" && len(ws) > 0 {
		subjects = append(subjects, newLeaseSubject(3, k.Group(g.Group), g.Model, ws))
	}
	now := l.cfg.Now()
	l.mu.Lock()
	live := true
	for _, s := range subjects {
		a := l.leases[s.key]
		if a == nil || a.batch != batches[s.slot] || !now.Before(a.expires) {
			live = false
		}
	}
	if live {
		for _, s := range subjects {
			a := l.leases[s.key]
			a.left = a.left.Sub(Amount{Tokens: use(s, Tokens, delta), Cost: use(s, Cost, delta)})
			if delta.Tokens < 0 || delta.Cost < 0 {
				delete(l.refusals, s.key)
			}
		}
		l.mu.Unlock()
		return nil
	}
	if delta.Tokens < 0 || delta.Cost < 0 {
		for _, s := range subjects {
			delete(l.refusals, s.key) // a refund makes room
		}
	}
	l.mu.Unlock()
	g.Lease = ""
	return l.r.Settle(ctx, g, used)
}

// Cooldown implements Limiter: the credential rests at once here and, for
// the others, in Redis.
func (l *Leased) Cooldown(ctx context.Context, id string, d time.Duration) error {
	key := l.r.Keys().Credential(id)
	l.mu.Lock()
	now := l.cfg.Now()
	if rf, ok := l.refusals[key]; !ok || rf.retryAt.Before(now.Add(d)) {
		l.refusals[key] = refusal{until: now.Add(d), reason: ReasonCooldown, retryAt: now.Add(d)}
	}
	for k, a := range l.leases {
		if k == key || strings.HasPrefix(k, key+"@") {
			a.expires = time.Time{}
		}
	}
	l.mu.Unlock()
	return l.r.Cooldown(ctx, id, d)
}

// Run runs the Redis limiter's background work (see Redis.Run).
// Run gives back, every hold, what expired batches still hold: a batch's
// unused capacity would otherwise stay counted until this instance needs
// the subject again, which for a budget may be days. When ctx ends it
// gives back every batch it holds. The Redis limiter's own loop
// (Redis.Run) runs beside it.
func (l *Leased) Run(ctx context.Context) {
	t := time.NewTicker(l.cfg.Hold)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			l.GiveBack(gctx, true)
			cancel()
			return
		case <-t.C:
			l.GiveBack(ctx, false)
		}
	}
}

// GiveBack returns what expired batches (every batch, with all) hold, one
// script run per subject.
func (l *Leased) GiveBack(ctx context.Context, all bool) {
	now := l.cfg.Now()
	l.mu.Lock()
	var back []*allowance
	for _, a := range l.leases {
		if a.holds() && (all || !now.Before(a.expires)) && a.subject.hash != "" {
			back = append(back, a)
		}
	}
	l.mu.Unlock()
	for _, a := range back {
		l.mu.Lock()
		if !a.holds() || (!all && now.Before(a.expires)) { // refilled meanwhile
			l.mu.Unlock()
			continue
		}
		s, requests, left, at := a.subject, a.requests, a.left, a.at
		a.requests, a.left, a.expires = 0, Amount{}, time.Time{}
		l.mu.Unlock()
		none := l.r.Keys().none()
		keys := []string{none, none, none, none}
		keys[s.slot] = s.hash
		args := []any{l.r.now(), 0, 0, 0, 0, 0, l.cfg.Hold.Microseconds()}
		wall := l.r.clock()
		for slot := range 4 {
			if slot != s.slot {
				args = encodeWindows(args, nil, wall)
				args = append(args, 0, 0, 0, 0, 0, 0)
				continue
			}
			args = encodeWindows(args, s.windows, wall)
			args = append(args, max(0, requests), max(0, left.Tokens), max(0, left.Cost), at, max(0, -left.Tokens), max(0, -left.Cost))
		}
		args = append(args, 0) // no settlements carried
		if _, err := l.r.run(ctx, l.r.take, keys, args...); err != nil && notSent(err) {
			// Never reached Redis: keep it for the next try.
			l.mu.Lock()
			a.requests, a.left = a.requests+requests, a.left.Sub(Amount{}.Sub(left))
			l.mu.Unlock()
		}
	}
}

// Usage reads the shared state (leased batches count as used).
func (l *Leased) Usage(ctx context.Context, subjects []Subject, limits []Limit) ([]Usage, error) {
	return l.r.Usage(ctx, subjects, limits)
}
