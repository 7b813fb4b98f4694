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
	// Batch is the most requests one refill leases. Default 20. A refill
	// never leases more than the tightest limit allows in Hold.
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
		c.Batch = 20
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
type allowance struct {
	requests int64
	tokens   int64 // tokens may go negative: used beyond reservations, owed
	at       int64 // the server µs the batch is recorded at
	expires  time.Time
	batch    uint64
}

// refusal is a remembered "no".
type refusal struct {
	until  time.Time
	reason Reason
	retry  time.Duration
}

// NewLeased returns a lease-mode limiter on top of a Redis limiter.
func NewLeased(r *Redis, cfg LeaseConfig) *Leased {
	return &Leased{r: r, cfg: cfg.withDefaults(), leases: make(map[string]*allowance), refusals: make(map[string]refusal)}
}

// leaseSubject is one subject of a request in lease mode, with its place
// in take.lua's arguments.
type leaseSubject struct {
	slot  int // 0 credential, 1 pool, 2 client
	key   string
	limit Limit
}

func (s leaseSubject) tokenLimited() bool { return s.limit.TPM > 0 || s.limit.TPD > 0 }

// Acquire implements Limiter.
func (l *Leased) Acquire(ctx context.Context, req Request) (Decision, error) {
	req.Tokens = max(0, req.Tokens)
	if req.Sticky != "" || req.ClientLimit.Concurrency > 0 {
		return l.r.Acquire(ctx, req)
	}
	for _, c := range req.Candidates {
		if c.Limit.Concurrency > 0 || c.PoolLimit.Concurrency > 0 {
			return l.r.Acquire(ctx, req)
		}
	}
	k := l.r.Keys()
	var client *leaseSubject
	if req.Client != "" && !req.ClientLimit.IsZero() {
		client = &leaseSubject{slot: 2, key: k.Client(req.Client), limit: req.ClientLimit}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	if client != nil {
		if rf, ok := l.refusals[client.key]; ok && now.Before(rf.until) {
			return Decision{Scope: ScopeClient, Reason: rf.reason, RetryAfter: rf.until.Sub(now)}, nil
		}
	}
	best := Decision{RetryAfter: -1}
	for i, c := range req.Candidates {
		subjects := []leaseSubject{{slot: 0, key: k.Credential(c.ID), limit: c.Limit}}
		if c.Pool != "" && !c.PoolLimit.IsZero() {
			subjects = append(subjects, leaseSubject{slot: 1, key: k.Pool(c.Pool), limit: c.PoolLimit})
		}
		if rf, refused := l.refused(now, subjects); refused {
			best = soonest(best, Decision{Scope: ScopeCredential, Reason: rf.reason, RetryAfter: rf.until.Sub(now)})
			continue
		}
		all := append([]leaseSubject(nil), subjects...)
		if client != nil {
			all = append(all, *client)
		}
		if !l.covered(now, all, req.Tokens) {
			d, err := l.refill(ctx, now, c, all, req.Tokens)
			if err != nil {
				return Decision{}, err
			}
			if !d.Allowed {
				if d.Scope == ScopeClient {
					return d, nil
				}
				best = soonest(best, d)
				continue
			}
		}
		g := Grant{
			ID: c.ID, Index: i, Client: req.Client, Tokens: req.Tokens, At: now,
			CredentialLimit: c.Limit, ClientLimit: req.ClientLimit, Backend: "lease",
		}
		if len(subjects) == 2 {
			g.Pool, g.PoolLimit = c.Pool, c.PoolLimit
		}
		var batches [3]uint64
		for _, s := range all {
			a := l.leases[s.key]
			a.requests--
			if s.tokenLimited() {
				a.tokens -= req.Tokens
			}
			batches[s.slot] = a.batch
		}
		g.Lease = fmt.Sprintf("%d,%d,%d", batches[0], batches[1], batches[2])
		return Decision{Allowed: true, Grant: g}, nil
	}
	if best.RetryAfter < 0 {
		best.RetryAfter = 0
	}
	return best, nil
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
// more request of the given tokens.
func (l *Leased) covered(now time.Time, subjects []leaseSubject, tokens int64) bool {
	for _, s := range subjects {
		a := l.leases[s.key]
		if a == nil || !now.Before(a.expires) || a.requests < 1 || (s.tokenLimited() && a.tokens < tokens) {
			return false
		}
	}
	return true
}

// refill leases a new batch for the subjects in one round trip, giving
// back what their expired batches left unused.
func (l *Leased) refill(ctx context.Context, now time.Time, c Candidate, subjects []leaseSubject, tokens int64) (Decision, error) {
	n := int64(l.cfg.Batch)
	tokenLimited := false
	for _, s := range subjects {
		n = min(n, batchFor(s.limit, l.cfg.Hold))
		tokenLimited = tokenLimited || s.tokenLimited()
	}
	var wantTokens int64
	if tokenLimited {
		wantTokens = n * max(tokens, 1)
	}
	none := l.r.Keys().none()
	keys := []string{none, none, none}
	args := []any{l.r.now(), n, wantTokens, tokens, l.cfg.Hold.Microseconds()}
	limits := [3]Limit{}
	for _, s := range subjects {
		keys[s.slot], limits[s.slot] = s.key, s.limit
	}
	for _, lim := range limits {
		args = append(args, limitArgs(lim)...)
	}
	var gone []*allowance
	for slot := range 3 {
		a := l.leases[keys[slot]]
		if keys[slot] == none || a == nil {
			args = append(args, 0, 0, 0, 0)
			continue
		}
		// Whatever the old batch holds goes back (or is charged) now.
		args = append(args, max(0, a.requests), max(0, a.tokens), a.at, max(0, -a.tokens))
		gone = append(gone, a)
	}
	v, err := l.r.run(ctx, l.r.take, keys, args...)
	if err != nil {
		return Decision{}, err
	}
	res, ok := v.([]any)
	if !ok || len(res) != 6 {
		return Decision{}, fmt.Errorf("%w: unexpected take reply %v", ErrBackend, v)
	}
	for _, a := range gone {
		a.requests, a.tokens = 0, 0
	}
	if who := toInt(res[3]); who > 0 {
		retry := micros(toInt(res[5]))
		rf := refusal{reason: Reason(toStr(res[4])), retry: retry}
		wait := retry
		if retry <= 0 || retry > l.cfg.MaxDeny {
			wait = l.cfg.MaxDeny
		}
		rf.until = now.Add(wait)
		key, scope := keys[who-1], ScopeCredential
		if who == 3 {
			scope = ScopeClient
		}
		l.refusals[key] = rf
		if toInt(res[5]) < 0 {
			retry = 0 // never: too large
		}
		return Decision{Scope: scope, Reason: rf.reason, RetryAfter: retry}, nil
	}
	granted, grantedTokens, at := toInt(res[0]), toInt(res[1]), toInt(res[2])+l.cfg.Hold.Microseconds()
	for _, k := range keys {
		if k == none {
			continue
		}
		a := l.leases[k]
		if a == nil {
			a = &allowance{}
			l.leases[k] = a
		}
		a.requests, a.tokens = granted, grantedTokens
		a.at, a.expires = at, now.Add(l.cfg.Hold)
		a.batch++
	}
	return Decision{Allowed: true}, nil
}

// batchFor is the most a subject's limits let one instance use in hold.
func batchFor(lim Limit, hold time.Duration) int64 {
	rate := math.Inf(1) // requests per second
	if lim.QPS > 0 {
		rate = min(rate, lim.QPS)
	}
	if lim.RPM > 0 {
		rate = min(rate, float64(lim.RPM)/60)
	}
	if lim.RPD > 0 {
		rate = min(rate, float64(lim.RPD)/86400)
	}
	if math.IsInf(rate, 1) {
		return math.MaxInt32
	}
	return max(1, int64(math.Ceil(rate*hold.Seconds())))
}

// Settle implements Limiter: lease-mode grants settle locally, refunding
// unused tokens to the batch they came from (while it is live) and owing
// the tokens used beyond the reservation to the next refill.
func (l *Leased) Settle(ctx context.Context, g Grant, usedTokens int64) error {
	if g.Backend != "lease" {
		return l.r.Settle(ctx, g, usedTokens)
	}
	delta := usedTokens - g.Tokens
	if delta == 0 {
		return nil
	}
	k := l.r.Keys()
	var batches [3]uint64
	for i, part := range strings.SplitN(g.Lease, ",", 3) {
		batches[i], _ = strconv.ParseUint(part, 10, 64)
	}
	keys := [3]string{}
	if g.ID != "" {
		keys[0] = k.Credential(g.ID)
	}
	limits := [3]Limit{g.CredentialLimit, g.PoolLimit, g.ClientLimit}
	if g.Pool != "" {
		keys[1] = k.Pool(g.Pool)
	}
	if g.Client != "" && !g.ClientLimit.IsZero() {
		keys[2] = k.Client(g.Client)
	}
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for slot, key := range keys {
		if key == "" || (limits[slot].TPM == 0 && limits[slot].TPD == 0) {
			continue
		}
		a := l.leases[key]
		if a == nil {
			continue
		}
		live := a.batch == batches[slot] && now.Before(a.expires)
		if delta > 0 || live {
			a.tokens -= delta // a refund only to the live batch it came from; a debt always
		}
	}
	return nil
}

// Cooldown implements Limiter: the credential rests at once here and, for
// the others, in Redis.
func (l *Leased) Cooldown(ctx context.Context, id string, d time.Duration) error {
	key := l.r.Keys().Credential(id)
	l.mu.Lock()
	l.refusals[key] = refusal{until: l.cfg.Now().Add(d), reason: ReasonCooldown, retry: d}
	if a := l.leases[key]; a != nil {
		a.expires = time.Time{}
	}
	l.mu.Unlock()
	return l.r.Cooldown(ctx, id, d)
}

// Run runs the Redis limiter's background work (see Redis.Run).
func (l *Leased) Run(ctx context.Context) { l.r.Run(ctx) }

// Usage reads the shared state (leased batches count as used).
func (l *Leased) Usage(ctx context.Context, subjects []Subject, limits []Limit) ([]Usage, error) {
	return l.r.Usage(ctx, subjects, limits)
}
