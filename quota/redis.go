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
	// FlushInterval is how often settled grants are written when no
	// acquire carries them along first. Default 20ms.
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
// background flush (Run) within FlushInterval.
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
	keys [6]string
	args []any
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

// limitArgs encodes a limit as the 7 numbers the scripts read.
func limitArgs(l Limit) []any {
	var interval int64
	if l.QPS > 0 {
		interval = qpsInterval(l.QPS)
	}
	return []any{interval, l.burst(), l.RPM, l.RPD, l.TPM, l.TPD, l.Concurrency}
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
	lease := r.instance + ":" + strconv.FormatUint(r.seq.Add(1), 36)
	keys := make([]string, 0, 3+4*len(req.Candidates))
	keys = append(keys, k.none(), k.none()+":c", k.none())
	if req.Client != "" && !req.ClientLimit.IsZero() {
		keys[0], keys[1] = k.Client(req.Client), k.Client(req.Client)+":c"
	}
	var stickyTTL int64
	if req.Sticky != "" {
		keys[2] = k.Sticky(req.Sticky)
		stickyTTL = max(1, req.StickyTTL.Milliseconds())
	}
	clientLimit := req.ClientLimit
	if keys[0] == k.none() {
		clientLimit = Limit{}
	}
	args := make([]any, 0, 14+16*len(req.Candidates))
	args = append(args, r.now(), max(0, req.Tokens), lease, r.cfg.LeaseTTL.Microseconds(), stickyTTL, req.StickyTier)
	args = append(args, limitArgs(clientLimit)...)
	args = append(args, len(req.Candidates))
	for _, c := range req.Candidates {
		pk, hasPool := k.none(), "0"
		if c.Pool != "" && !c.PoolLimit.IsZero() {
			pk, hasPool = k.Pool(c.Pool), "1"
		}
		keys = append(keys, k.Credential(c.ID), k.Credential(c.ID)+":c", pk, pk+":c")
		args = append(args, c.ID, hasPool)
		args = append(args, limitArgs(c.Limit)...)
		args = append(args, limitArgs(c.PoolLimit)...)
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
			ID: c.ID, Index: i, Client: req.Client, Tokens: req.Tokens,
			At: time.UnixMicro(toInt(res[2])), CredentialLimit: c.Limit, ClientLimit: clientLimit,
			Backend: "redis",
		}
		if c.Pool != "" && !c.PoolLimit.IsZero() {
			g.Pool, g.PoolLimit = c.Pool, c.PoolLimit
		}
		if needsLease(g) {
			g.Lease = lease
			r.track(lease, g)
		}
		d := Decision{Allowed: true, Grant: g, StickyHit: toInt(res[3]) == 1}
		d.Requests, d.Tokens = windows(res[4:10])
		return d, nil
	}
	if len(res) < 12 {
		return Decision{}, fmt.Errorf("%w: unexpected acquire reply %v", ErrBackend, v)
	}
	d := Decision{Scope: Scope(toStr(res[1])), Reason: Reason(toStr(res[2])), RetryAfter: micros(max(0, toInt(res[3])))}
	d.Requests, d.Tokens = windows(res[6:12])
	return d, nil
}

// needsLease reports whether a grant holds concurrency slots.
func needsLease(g Grant) bool {
	return g.CredentialLimit.Concurrency > 0 || g.PoolLimit.Concurrency > 0 || g.ClientLimit.Concurrency > 0
}

func windows(v []any) (requests, tokens Window) {
	requests = Window{Limit: toInt(v[0]), Remaining: toInt(v[1]), Reset: micros(toInt(v[2]))}
	tokens = Window{Limit: toInt(v[3]), Remaining: toInt(v[4]), Reset: micros(toInt(v[5]))}
	return requests, tokens
}

// Settle implements Limiter. It queues the grant: the next Acquire or
// the background flush writes it, so it never waits for Redis.
func (r *Redis) Settle(_ context.Context, g Grant, usedTokens int64) error {
	if g.Lease != "" {
		r.untrack(g)
	}
	delta := usedTokens - g.Tokens
	tokenLimited := g.CredentialLimit.TPM+g.CredentialLimit.TPD+g.PoolLimit.TPM+g.PoolLimit.TPD+
		g.ClientLimit.TPM+g.ClientLimit.TPD > 0
	if g.Lease == "" && (delta == 0 || !tokenLimited) {
		return nil // nothing to free or correct
	}
	k := r.Keys()
	st := settlement{keys: [6]string{k.none(), k.none() + ":c", k.none(), k.none() + ":c", k.none(), k.none() + ":c"}}
	if g.ID != "" {
		st.keys[0], st.keys[1] = k.Credential(g.ID), k.Credential(g.ID)+":c"
	}
	if g.Pool != "" {
		st.keys[2], st.keys[3] = k.Pool(g.Pool), k.Pool(g.Pool)+":c"
	}
	if g.Client != "" && !g.ClientLimit.IsZero() {
		st.keys[4], st.keys[5] = k.Client(g.Client), k.Client(g.Client)+":c"
	}
	st.args = make([]any, 0, 25)
	st.args = append(st.args, g.At.UnixMicro(), delta, g.Lease, g.Tokens)
	st.args = append(st.args, limitArgs(g.CredentialLimit)...)
	st.args = append(st.args, limitArgs(g.PoolLimit)...)
	st.args = append(st.args, limitArgs(g.ClientLimit)...)
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

// Flush writes every queued settlement now, in batches of up to 256.
func (r *Redis) Flush(ctx context.Context) error {
	for {
		batch := r.takePending(256)
		if len(batch) == 0 {
			return nil
		}
		keys := make([]string, 0, 6*len(batch))
		args := make([]any, 0, 2+25*len(batch))
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
// concurrency slots.
func (r *Redis) leaseZsets(g Grant) []string {
	k := r.Keys()
	var zsets []string
	if g.ID != "" && g.CredentialLimit.Concurrency > 0 {
		zsets = append(zsets, k.Credential(g.ID)+":c")
	}
	if g.Pool != "" && g.PoolLimit.Concurrency > 0 {
		zsets = append(zsets, k.Pool(g.Pool)+":c")
	}
	if g.Client != "" && g.ClientLimit.Concurrency > 0 {
		zsets = append(zsets, k.Client(g.Client)+":c")
	}
	return zsets
}

// track remembers a lease so that the renewal loop keeps it alive.
func (r *Redis) track(lease string, g Grant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	held := make(map[string]bool)
	for _, z := range r.leaseZsets(g) {
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

// Run flushes settled grants every FlushInterval and renews this
// instance's concurrency leases every LeaseTTL/3, until ctx ends; then it
// flushes what is left. Without it, a call longer than LeaseTTL loses its
// slot.
func (r *Redis) Run(ctx context.Context) {
	flush := time.NewTicker(r.cfg.FlushInterval)
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
			_ = r.Flush(ctx)
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
)

func (k Keys) subject(s Subject) string {
	switch s.Kind {
	case KindPool:
		return k.Pool(s.ID)
	case KindClient:
		return k.Client(s.ID)
	}
	return k.Credential(s.ID)
}

// Usage reads the live state of subjects under their limits, in one round
// trip.
func (r *Redis) Usage(ctx context.Context, subjects []Subject, limits []Limit) ([]Usage, error) {
	if len(subjects) == 0 {
		return nil, nil
	}
	k := r.Keys()
	keys := make([]string, 0, 2*len(subjects))
	args := []any{r.now()}
	for i, s := range subjects {
		keys = append(keys, k.subject(s), k.subject(s)+":c")
		args = append(args, limitArgs(limits[i])...)
	}
	v, err := r.run(ctx, r.usage, keys, args...)
	if err != nil {
		return nil, err
	}
	res, _ := v.([]any)
	if len(res) != 17*len(subjects) {
		return nil, fmt.Errorf("%w: unexpected usage reply", ErrBackend)
	}
	out := make([]Usage, len(subjects))
	for i := range subjects {
		n := res[17*i : 17*(i+1)]
		w := func(j int) Window {
			return Window{Limit: toInt(n[j]), Remaining: toInt(n[j+1]), Reset: micros(toInt(n[j+2]))}
		}
		out[i] = Usage{QPS: w(0), RPM: w(3), RPD: w(6), TPM: w(9), TPD: w(12), InFlight: toInt(n[15]), CooldownLeft: micros(toInt(n[16]))}
	}
	return out, nil
}
