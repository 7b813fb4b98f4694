package quota

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The scripts, each prepended with the shared prelude when loaded.
var (
	//go:embed lua/prelude.lua
	preludeLua string
	//go:embed lua/acquire.lua
	acquireLua string
	//go:embed lua/settle.lua
	settleLua string
	//go:embed lua/cooldown.lua
	cooldownLua string
	//go:embed lua/renew.lua
	renewLua string
	//go:embed lua/take.lua
	takeLua string
	//go:embed lua/usage.lua
	usageLua string
	//go:embed lua/probe.lua
	probeLua string
)

// RedisConfig configures a Redis limiter. The zero value is usable: each
// zero field means the default written next to it.
type RedisConfig struct {
	// Prefix starts every key. Default "sluice:".
	Prefix string
	// HashTag puts every quota key in one Redis Cluster slot, so that one
	// script can check a client and all of a request's candidates
	// atomically. Default "q": keys look like "sluice:{q}:cred:<id>".
	HashTag string
	// LeaseTTL is how long a concurrency slot outlives its instance: the
	// holder renews its slots every LeaseTTL/3, so a killed instance's
	// slots free themselves after at most LeaseTTL. Default 30s.
	LeaseTTL time.Duration
	// Timeout bounds each Redis call. Default 250ms.
	Timeout time.Duration
	// FlushInterval bounds how long a settled grant waits for an acquire
	// to carry it along before the background flush writes it (it waits
	// between FlushInterval/2 and FlushInterval). Under load acquires
	// carry them all, and the flush costs no round trip. Default 20ms.
	FlushInterval time.Duration
	// Clock, when set, replaces the Redis server's clock (tests only).
	Clock func() time.Time
}

func (c RedisConfig) withDefaults() RedisConfig {
	if c.Prefix == "" {
		c.Prefix = "sluice:"
	}
	if c.HashTag == "" {
		c.HashTag = "q"
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 30 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 250 * time.Millisecond
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 20 * time.Millisecond
	}
	return c
}

// Redis is a Limiter whose state lives in Redis, shared by every instance:
// each decision is one Lua script run on the Redis server's clock, so
// limits hold exactly for the whole cluster.
//
// Settling costs no round trip of its own: ended grants are queued and
// settled by the next Acquire's script before it decides, or by the
// background flush (Run) when none came within FlushInterval.
type Redis struct {
	client redis.Scripter
	cfg    RedisConfig

	acquire, settle, cooldown, renew, take, usage, probe *redis.Script

	instance string // prefix of this instance's lease ids
	seq      atomic.Uint64
	mu       sync.Mutex
	leases   map[string]map[string]bool // lease id → the zsets holding it
	pending  []settlement               // ended grants not yet written
}

// settlement is an ended grant, encoded for the scripts.
type settlement struct {
	keys   [4]string
	args   []any
	queued time.Time
}

// Most grants one acquire settles on the way; the rest wait for the flush.
const piggyback = 16

// maxPending bounds the queue while Redis is unreachable; beyond it the
// oldest corrections are dropped (their leases expire by themselves).
const maxPending = 100_000

var _ Limiter = (*Redis)(nil)

// NewRedis returns a Redis limiter on a client (a single node, Sentinel or
// Cluster client; anything that runs scripts).
func NewRedis(client redis.Scripter, cfg RedisConfig) *Redis {
	var id [6]byte
	_, _ = rand.Read(id[:])
	return &Redis{
		client:   client,
		cfg:      cfg.withDefaults(),
		acquire:  redis.NewScript(preludeLua + acquireLua),
		settle:   redis.NewScript(preludeLua + settleLua),
		cooldown: redis.NewScript(preludeLua + cooldownLua),
		renew:    redis.NewScript(preludeLua + renewLua),
		take:     redis.NewScript(preludeLua + takeLua),
		usage:    redis.NewScript(preludeLua + usageLua),
		probe:    redis.NewScript(preludeLua + probeLua),
		instance: hex.EncodeToString(id[:]),
		leases:   make(map[string]map[string]bool),
	}
}

// Keys names the Redis keys of a Redis limiter's subjects. The layout is
// documented in docs/redis-keys.md.
type Keys struct {
	Prefix, HashTag string
}

func (k Keys) base() string { return k.Prefix + "{" + k.HashTag + "}:" }

// Credential is the hash of a credential's state; its concurrency leases
// are the zset at the same name plus ":c".
func (k Keys) Credential(id string) string { return k.base() + "cred:" + id }

// Pool is the hash of a shared (channel) limit's state.
func (k Keys) Pool(name string) string { return k.base() + "pool:" + name }

// Client is the hash of a client key's quota state.
func (k Keys) Client(name string) string { return k.base() + "client:" + name }

// Group is the hash of a group of client keys' quota state.
func (k Keys) Group(name string) string { return k.base() + "group:" + name }

// Sticky is the string holding the credential a sticky key maps to.
func (k Keys) Sticky(key string) string { return k.base() + "aff:" + key }

// none is a placeholder for unused script keys: it shares the slot and is
// never written.
func (k Keys) none() string { return k.base() + "none" }

// Keys returns the key layout of r.
func (r *Redis) Keys() Keys { return Keys{Prefix: r.cfg.Prefix, HashTag: r.cfg.HashTag} }

// now returns the fixed clock's time in µs, or -1 for the server clock.
func (r *Redis) now() int64 {
	if r.cfg.Clock == nil {
		return -1
	}
	return r.cfg.Clock().UnixMicro()
}

// run executes a script within the call timeout.
//
// A caller's cancellation does not cut a call short: the script may have
// run, and its reply says what it did (what was granted must be settled).
func (r *Redis) run(ctx context.Context, s *redis.Script, keys []string, args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
	defer cancel()
	v, err := s.Run(ctx, r.client, keys, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBackend, err)
	}
	return v, nil
}

// Acquire implements Limiter in one round trip.
func (r *Redis) Acquire(ctx context.Context, req Request) (Decision, error) {
	k := r.Keys()
	now := r.clock()
	req.Reserve = req.Reserve.clamp()
	lease := r.instance + ":" + strconv.FormatUint(r.seq.Add(1), 36)
	keys := make([]string, 0, 3+2*len(req.Candidates))
	keys = append(keys, k.none(), k.none(), k.none())
	var clientWs, groupWs []Window
	if req.Client != "" {
		if clientWs = req.ClientLimit.All(req.Model); len(clientWs) > 0 {
			keys[0] = k.Client(req.Client)
		}
	}
	if req.Group != "" {
		if groupWs = req.GroupLimit.All(req.Model); len(groupWs) > 0 {
			keys[1] = k.Group(req.Group)
		}
	}
	var stickyTTL int64
	if req.Sticky != "" {
		keys[2] = k.Sticky(req.Sticky)
		stickyTTL = max(1, req.StickyTTL.Milliseconds())
	}
	args := make([]any, 0, 16+40*len(req.Candidates))
	args = append(args, r.now(), req.Reserve.Tokens, req.Reserve.Cost, lease, r.cfg.LeaseTTL.Microseconds(), stickyTTL, req.StickyTier)
	args = encodeWindows(args, clientWs, now)
	args = encodeWindows(args, groupWs, now)
	args = append(args, len(req.Candidates))
	reasons := reasonsOf(clientWs)
	addReasons(reasons, groupWs)
	for _, c := range req.Candidates {
		ws := c.Limit.All(c.served(req))
		var pws []Window
		pk := k.none()
		if c.Pool != "" {
			if pws = c.PoolLimit.All(c.served(req)); len(pws) > 0 {
				pk = k.Pool(c.Pool)
			}
		}
		keys = append(keys, k.Credential(c.ID), pk)
		args = append(args, c.ID)
		args = encodeWindows(args, ws, now)
		args = encodeWindows(args, pws, now)
		addReasons(reasons, ws)
		addReasons(reasons, pws)
	}
	along := r.takePending(piggyback)
	args = append(args, len(along))
	for _, st := range along {
		keys = append(keys, st.keys[:]...)
		args = append(args, st.args...)
	}

	v, err := r.run(ctx, r.acquire, keys, args...)
	if err != nil {
		if notSent(err) {
			r.requeue(along) // never reached Redis: settle them later
		}
		return Decision{}, err
	}
	res, ok := v.([]any)
	if !ok || len(res) < 10 {
		return Decision{}, fmt.Errorf("%w: unexpected acquire reply %v", ErrBackend, v)
	}
	if toInt(res[0]) == 1 {
		i := int(toInt(res[1])) - 1
		c := req.Candidates[i]
		g := Grant{
			ID: c.ID, Index: i, Client: req.Client, Model: req.Model, Served: c.Model, Reserved: req.Reserve,
			At: time.UnixMicro(toInt(res[2])), CredentialLimit: c.Limit, Backend: "redis",
		}
		if len(clientWs) > 0 {
			g.ClientLimit = req.ClientLimit
		}
		if len(groupWs) > 0 {
			g.Group, g.GroupLimit = req.Group, req.GroupLimit
		}
		if c.Pool != "" && len(c.PoolLimit.All(c.served(req))) > 0 {
			g.Pool, g.PoolLimit = c.Pool, c.PoolLimit
		}
		if zsets := r.leaseZsets(g); len(zsets) > 0 {
			g.Lease = lease
			r.track(lease, zsets)
		}
		d := Decision{Allowed: true, Grant: g, StickyHit: toInt(res[3]) == 1}
		d.Requests, d.Tokens = meters(res[4:10])
		return d, nil
	}
	if len(res) < 12 {
		return Decision{}, fmt.Errorf("%w: unexpected acquire reply %v", ErrBackend, v)
	}
	d := Decision{Scope: Scope(toStr(res[1])), Reason: reasonOf(reasons, toStr(res[2])), RetryAfter: micros(max(0, toInt(res[3])))}
	d.Requests, d.Tokens = meters(res[6:12])
	return d, nil
}

// reasonsOf maps window ids to refusal reasons, for the scripts' answers.
func reasonsOf(ws []Window) map[string]Reason {
	m := map[string]Reason{"cool": ReasonCooldown, "large": ReasonTooLarge}
	addReasons(m, ws)
	return m
}

func addReasons(m map[string]Reason, ws []Window) {
	for _, w := range ws {
		m[w.ID()] = w.Reason()
	}
}

func reasonOf(m map[string]Reason, id string) Reason {
	if r, ok := m[id]; ok {
		return r
	}
	return ReasonRequests
}

// clock is the local time used to encode calendar periods (the scripts
// pick the period of the server's clock among the ones around it).
func (r *Redis) clock() time.Time {
	if r.cfg.Clock != nil {
		return r.cfg.Clock()
	}
	return time.Now()
}

func meters(v []any) (requests, tokens Meter) {
	requests = Meter{Limit: toInt(v[0]), Remaining: toInt(v[1]), Reset: micros(toInt(v[2]))}
	tokens = Meter{Limit: toInt(v[3]), Remaining: toInt(v[4]), Reset: micros(toInt(v[5]))}
	return requests, tokens
}

// Settle implements Limiter. It queues the grant: the next Acquire or
// the background flush writes it, so it never waits for Redis.
func (r *Redis) Settle(_ context.Context, g Grant, used Amount) error {
	if g.Lease != "" {
		r.untrack(g)
	}
	delta := used.clamp().Sub(g.Reserved)
	parts := [4][]Window{g.CredentialLimit.All(g.served()), g.PoolLimit.All(g.served()), g.ClientLimit.All(g.Model), g.GroupLimit.All(g.Model)}
	for i, name := range []string{g.ID, g.Pool, g.Client, g.Group} {
		if name == "" {
			parts[i] = nil
		}
	}
	corrects := false
	for _, ws := range parts {
		for _, w := range ws {
			if (w.Kind == Sliding || w.Kind == Calendar) && w.Unit != Requests && delta.of(w.Unit) != 0 {
				corrects = true
			}
		}
	}
	if g.Lease == "" && !corrects {
		return nil // nothing to free or correct
	}
	k := r.Keys()
	st := settlement{keys: [4]string{k.none(), k.none(), k.none(), k.none()}, queued: time.Now()}
	for i, key := range []string{k.Credential(g.ID), k.Pool(g.Pool), k.Client(g.Client), k.Group(g.Group)} {
		if parts[i] != nil {
			st.keys[i] = key
		}
	}
	now := r.clock()
	st.args = make([]any, 0, 40)
	st.args = append(st.args, g.At.UnixMicro(), g.Lease, g.Reserved.Tokens, g.Reserved.Cost, delta.Tokens, delta.Cost)
	for _, ws := range parts {
		st.args = encodeWindows(st.args, ws, now)
	}
	r.mu.Lock()
	r.pending = append(r.pending, st)
	if len(r.pending) > maxPending {
		r.pending = r.pending[len(r.pending)-maxPending:]
	}
	r.mu.Unlock()
	return nil
}

// takePending removes up to n queued settlements.
func (r *Redis) takePending(n int) []settlement {
	r.mu.Lock()
	defer r.mu.Unlock()
	n = min(n, len(r.pending))
	out := make([]settlement, n)
	copy(out, r.pending[:n])
	r.pending = r.pending[n:]
	return out
}

// requeue puts settlements back after a failed call.
func (r *Redis) requeue(sts []settlement) {
	if len(sts) == 0 {
		return
	}
	r.mu.Lock()
	r.pending = append(sts, r.pending...)
	r.mu.Unlock()
}

// stale reports whether the oldest queued settlement has waited d.
func (r *Redis) stale(d time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending) > 0 && time.Since(r.pending[0].queued) >= d
}

// Flush writes every queued settlement now, in batches of up to 256.
func (r *Redis) Flush(ctx context.Context) error {
	for {
		batch := r.takePending(256)
		if len(batch) == 0 {
			return nil
		}
		keys := make([]string, 0, 4*len(batch))
		args := make([]any, 0, 2+40*len(batch))
		args = append(args, r.now(), len(batch))
		for _, st := range batch {
			keys = append(keys, st.keys[:]...)
			args = append(args, st.args...)
		}
		if _, err := r.run(ctx, r.settle, keys, args...); err != nil {
			if notSent(err) {
				r.requeue(batch)
			}
			return err
		}
	}
}

// Probe runs a script that writes, as every acquire does, within the
// call timeout: the health check of the request path. A Redis that
// answers PING but refuses scripts or writes (out of memory, read-only)
// fails it.
func (r *Redis) Probe(ctx context.Context) error {
	_, err := r.run(ctx, r.probe, []string{r.Keys().base() + "probe"}, r.now())
	return err
}

// Cooldown implements Limiter.
func (r *Redis) Cooldown(ctx context.Context, id string, d time.Duration) error {
	_, err := r.run(ctx, r.cooldown, []string{r.Keys().Credential(id)}, r.now(), d.Microseconds())
	return err
}

// leaseZsets lists the zsets in which a grant (or a part of one) holds
// concurrency slots: one per concurrent window, KEY:<window id>.
func (r *Redis) leaseZsets(g Grant) []string {
	k := r.Keys()
	var zsets []string
	add := func(key string, l Limit, model string) {
		for _, w := range l.All(model) {
			if w.Kind == Concurrent {
				zsets = append(zsets, key+":"+w.ID())
			}
		}
	}
	if g.ID != "" {
		add(k.Credential(g.ID), g.CredentialLimit, g.served())
	}
	if g.Pool != "" {
		add(k.Pool(g.Pool), g.PoolLimit, g.served())
	}
	if g.Client != "" {
		add(k.Client(g.Client), g.ClientLimit, g.Model)
	}
	if g.Group != "" {
		add(k.Group(g.Group), g.GroupLimit, g.Model)
	}
	return zsets
}

// track remembers a lease so that the renewal loop keeps it alive.
func (r *Redis) track(lease string, zsets []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	held := make(map[string]bool)
	for _, z := range zsets {
		held[z] = true
	}
	r.leases[lease] = held
}

// untrack forgets the slots a settled grant (or part) held.
func (r *Redis) untrack(g Grant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	held := r.leases[g.Lease]
	for _, z := range r.leaseZsets(g) {
		delete(held, z)
	}
	if len(held) == 0 {
		delete(r.leases, g.Lease)
	}
}

// Run flushes settled grants no acquire carried along (checking every
// FlushInterval/2) and renews this instance's concurrency leases every
// LeaseTTL/3, until ctx ends; then it flushes what is left. Without it, a call longer than LeaseTTL loses its
// slot.
func (r *Redis) Run(ctx context.Context) {
	flush := time.NewTicker(r.cfg.FlushInterval / 2)
	defer flush.Stop()
	renew := time.NewTicker(r.cfg.LeaseTTL / 3)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = r.Flush(fctx)
			cancel()
			return
		case <-flush.C:
			if r.stale(r.cfg.FlushInterval / 2) {
				_ = r.Flush(ctx)
			}
		case <-renew.C:
			_ = r.RenewLeases(ctx)
		}
	}
}

// RenewLeases extends every lease this instance holds, in one round trip.
func (r *Redis) RenewLeases(ctx context.Context) error {
	r.mu.Lock()
	var keys []string
	args := []any{r.now(), r.cfg.LeaseTTL.Microseconds()}
	for lease, zsets := range r.leases {
		for z := range zsets {
			keys = append(keys, z)
			args = append(args, lease)
		}
	}
	r.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	_, err := r.run(ctx, r.renew, keys, args...)
	return err
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case string:
		i, _ := strconv.ParseInt(n, 10, 64)
		return i
	}
	return 0
}

func toStr(v any) string {
	s, _ := v.(string)
	return s
}

// notSent reports whether a failed call surely never reached Redis (it
// could not connect), so that what it carried can be sent again without
// being applied twice. Settlements are applied at most once: one lost in
// doubt only leaves a reservation to expire with its window and a slot
// with its lease.
func notSent(err error) bool {
	var op *net.OpError
	return errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) ||
		(errors.As(err, &op) && op.Op == "dial")
}

// IsBackendError reports whether err is a failure of the shared store
// (as opposed to a refusal or a caller's mistake).
func IsBackendError(err error) bool { return errors.Is(err, ErrBackend) }

// Subject names whose state Usage reads.
type Subject struct {
	Kind SubjectKind
	ID   string
}

// SubjectKind is what a subject limits.
type SubjectKind string

// Kinds of subjects.
const (
	KindCredential SubjectKind = "cred"
	KindPool       SubjectKind = "pool"
	KindClient     SubjectKind = "client"
	KindGroup      SubjectKind = "group"
)

func (k Keys) subject(s Subject) string {
	switch s.Kind {
	case KindPool:
		return k.Pool(s.ID)
	case KindClient:
		return k.Client(s.ID)
	case KindGroup:
		return k.Group(s.ID)
	}
	return k.Credential(s.ID)
}

// Usage reads the live state of subjects under their limits (every
// window of every model), in one round trip.
func (r *Redis) Usage(ctx context.Context, subjects []Subject, limits []Limit) ([]Usage, error) {
	if len(subjects) == 0 {
		return nil, nil
	}
	// Ended grants first, so that what is read is what was used.
	if err := r.Flush(ctx); err != nil {
		return nil, err
	}
	k := r.Keys()
	now := r.clock()
	keys := make([]string, 0, len(subjects))
	args := []any{r.now()}
	all := make([][]Window, len(subjects))
	total := 0
	for i, s := range subjects {
		all[i] = limits[i].Every()
		keys = append(keys, k.subject(s))
		args = encodeWindows(args, all[i], now)
		total += 4*len(all[i]) + 2
	}
	v, err := r.run(ctx, r.usage, keys, args...)
	if err != nil {
		return nil, err
	}
	res, _ := v.([]any)
	if len(res) != total {
		return nil, fmt.Errorf("%w: unexpected usage reply", ErrBackend)
	}
	out := make([]Usage, len(subjects))
	at := 0
	for i, ws := range all {
		u := Usage{}
		for _, w := range ws {
			l := Level{Name: w.Name(), Unit: w.Unit, Model: w.Model, kind: w.Kind,
				Meter: Meter{Limit: toInt(res[at]), Remaining: toInt(res[at+1]), Reset: micros(toInt(res[at+2]))}}
			if end := toInt(res[at+3]); end > 0 {
				l.Resets = time.UnixMicro(end).UTC()
			}
			u.Windows = append(u.Windows, l)
			at += 4
		}
		u.InFlight, u.CooldownLeft = toInt(res[at]), micros(toInt(res[at+1]))
		at += 2
		out[i] = u
	}
	return out, nil
}
