// Package breaker keeps one circuit breaker per upstream credential, so
// that a failing credential stops receiving traffic and is probed again
// after a while. Each breaker is a gobreaker v2 two-step breaker: Allow
// before dialing, done(err) when the call (or the stream) has ended.
//
// With a Sharer (Redis), the instances of a cluster share transitions: a
// breaker that opens on one instance is open on all of them for the same
// time, kept by the shared store (a key with a time to live, not a moment
// on some instance's clock), and when it ends exactly one instance in the
// cluster sends the probe. gobreaker's DistributedCircuitBreaker is not
// used: it holds a Redis lock for the whole upstream call, which a
// streaming LLM call can keep for minutes.
//
// gobreaker counts the outcomes and decides when to trip; how long a
// breaker stays open is this package's, on Config.Now, so that tests move
// a clock instead of sleeping.
package breaker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Config configures every breaker of a Set. The zero value is usable:
// each zero field means the default written next to it.
type Config struct {
	// Failures is how many consecutive failures open a breaker. Zero: 5.
	Failures uint32
	// FailureRatio, when set, also opens a breaker once at least
	// MinRequests calls were seen in the current Interval and this share
	// of them failed. Zero: off. MinRequests zero: 20.
	FailureRatio float64
	MinRequests  uint32
	// Interval is how often a closed breaker forgets its counts. Zero: 60s.
	Interval time.Duration
	// OpenTimeout is how long a breaker stays open before it lets probes
	// through (half-open). Zero: 30s.
	OpenTimeout time.Duration
	// HalfOpenProbes is how many calls a half-open breaker lets through;
	// that many successes close it, one failure opens it again. Zero: 1.
	// With a Sharer, probes go one at a time across the whole cluster, and
	// the instance whose probes succeed that many times closes it.
	HalfOpenProbes uint32
	// ProbeTimeout bounds a shared probe: if its instance dies, another
	// may probe after this long. Zero: 60s.
	ProbeTimeout time.Duration
	// OnStateChange, if set, is called on every transition this instance
	// sees (its own and, with a Sharer, the cluster's).
	OnStateChange func(id string, from, to State)
	// Sharer, if set, shares transitions with the other instances.
	Sharer Sharer
	// Instance names this instance in shared events.
	Instance string
	// Logger reports sharing failures. Nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock open breakers are timed on. Nil: time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Failures == 0 {
		c.Failures = 5
	}
	if c.MinRequests == 0 {
		c.MinRequests = 20
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = 30 * time.Second
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = 1
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// State is a breaker's state.
type State = gobreaker.State

// States of a breaker.
const (
	Closed   = gobreaker.StateClosed
	HalfOpen = gobreaker.StateHalfOpen
	Open     = gobreaker.StateOpen
)

// ErrOpen is returned by Allow when a credential's breaker refuses calls:
// open, or half-open with its probes already out.
var ErrOpen = errors.New("circuit breaker open")

// ErrNotCounted is an outcome that counts neither as a success nor as a
// failure, such as an upstream 429 (handled by a cool-down instead).
// Client cancellations (context.Canceled) are never counted either.
var ErrNotCounted = errors.New("outcome not counted by the breaker")

// excluded reports outcomes that count neither way.
func excluded(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, ErrNotCounted)
}

// Event is a transition shared between instances.
type Event struct {
	ID       string
	Open     bool          // opened; false: closed
	For      time.Duration // how long from now an open breaker stays open, before a probe
	Failures uint32        // consecutive failures that opened it
	From     string        // the instance that saw it
	Trip     string        // names this opening, so that a snapshot of it never extends it
}

// Sharer distributes transitions between instances (see Redis).
type Sharer interface {
	// Publish records a transition and tells the other instances.
	Publish(ctx context.Context, e Event) error
	// Watch calls onEvent for each transition another instance
	// publishes, and onSnapshot with every open breaker periodically,
	// until ctx ends.
	Watch(ctx context.Context, onEvent func(Event), onSnapshot func([]Event))
	// Probe takes the cluster's single probe lease for id for ttl; it
	// reports whether this instance got it.
	Probe(ctx context.Context, id string, ttl time.Duration) (bool, error)
	// EndProbe gives the probe lease back.
	EndProbe(ctx context.Context, id string) error
}

// Set holds the breakers of all credentials, created on first use.
type Set struct {
	cfg    Config
	events chan Event // own transitions waiting to be published

	mu       sync.Mutex
	breakers map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]
	opened   map[string]time.Time // this instance's open breakers, until when (Config.Now)
	shared   map[string]opening   // open breakers known cluster-wide
	probes   map[string]int       // successful shared probes so far, by this instance
	probing  map[string]bool      // probes out without the shared lease (store unreachable)
}

// opening is a shared open breaker, timed on this instance's clock.
type opening struct {
	Event
	until time.Time
}

// New returns an empty Set.
func New(cfg Config) *Set {
	return &Set{
		cfg:      cfg.withDefaults(),
		events:   make(chan Event, 1024),
		breakers: make(map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]),
		opened:   make(map[string]time.Time),
		shared:   make(map[string]opening),
		probes:   make(map[string]int),
		probing:  make(map[string]bool),
	}
}

// Allow asks whether a call to credential id may proceed. On success the
// caller must call done exactly once with the call's outcome: nil for a
// success (including an upstream refusal that was the client's fault),
// an error for a failure.
func (s *Set) Allow(ctx context.Context, id string) (done func(error), err error) {
	now := s.cfg.Now()
	s.mu.Lock()
	e, shared := s.shared[id]
	until, opened := s.opened[id]
	s.mu.Unlock()
	switch {
	case shared && now.Before(e.until), opened && now.Before(until):
		return nil, fmt.Errorf("credential %s: %w", id, ErrOpen)
	case shared:
		return s.probe(ctx, id)
	}
	done, err = s.get(id).Allow()
	if err != nil {
		return nil, fmt.Errorf("credential %s: %w", id, ErrOpen)
	}
	return done, nil
}

// probe lets one call through a shared half-open breaker, if this
// instance holds the cluster's probe lease.
func (s *Set) probe(ctx context.Context, id string) (func(error), error) {
	got, err := s.cfg.Sharer.Probe(ctx, id, s.cfg.ProbeTimeout)
	if err != nil {
		// The shared store is unreachable: fall back to this instance's
		// own single probe rather than keep the credential out until it
		// is back.
		s.mu.Lock()
		got = !s.probing[id]
		s.probing[id] = true
		s.mu.Unlock()
	}
	if !got {
		return nil, fmt.Errorf("credential %s: %w (another instance is probing)", id, ErrOpen)
	}
	return func(outcome error) {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		s.mu.Lock()
		delete(s.probing, id)
		s.mu.Unlock()
		switch {
		case excluded(outcome):
			_ = s.cfg.Sharer.EndProbe(pctx, id)
		case outcome != nil:
			s.mu.Lock()
			delete(s.probes, id)
			s.mu.Unlock()
			s.open(pctx, id, 0)
			_ = s.cfg.Sharer.EndProbe(pctx, id)
		default:
			s.mu.Lock()
			s.probes[id]++
			closed := s.probes[id] >= int(s.cfg.HalfOpenProbes)
			s.mu.Unlock()
			if closed {
				s.close(pctx, id)
			}
			_ = s.cfg.Sharer.EndProbe(pctx, id)
		}
	}, nil
}

// open marks id open cluster-wide for OpenTimeout.
func (s *Set) open(ctx context.Context, id string, failures uint32) {
	e := s.opening(id, failures)
	s.apply(e)
	if err := s.cfg.Sharer.Publish(ctx, e); err != nil {
		s.cfg.Logger.Warn("sharing a breaker transition failed", slog.String("credential", id), slog.String("error", err.Error()))
	}
}

// close marks id closed cluster-wide.
func (s *Set) close(ctx context.Context, id string) {
	e := Event{ID: id, From: s.cfg.Instance}
	s.apply(e)
	if err := s.cfg.Sharer.Publish(ctx, e); err != nil {
		s.cfg.Logger.Warn("sharing a breaker transition failed", slog.String("credential", id), slog.String("error", err.Error()))
	}
}

// opening is the event of this instance opening id for OpenTimeout.
func (s *Set) opening(id string, failures uint32) Event {
	var trip [8]byte
	_, _ = rand.Read(trip[:])
	return Event{ID: id, Open: true, For: s.cfg.OpenTimeout, Failures: failures, From: s.cfg.Instance, Trip: hex.EncodeToString(trip[:])}
}

// apply records a transition, from this instance or another. An opening
// already known (the same trip, seen again in a snapshot) keeps the time
// it was first given, and a shorter one never cuts a longer one short.
func (s *Set) apply(e Event) {
	s.mu.Lock()
	prev, wasOpen := s.shared[e.ID]
	if e.Open {
		until := s.cfg.Now().Add(e.For)
		if wasOpen && (prev.Trip == e.Trip && e.Trip != "" || prev.until.After(until)) {
			s.mu.Unlock()
			return
		}
		s.shared[e.ID] = opening{Event: e, until: until}
	} else {
		delete(s.shared, e.ID)
		delete(s.opened, e.ID)
		delete(s.probes, e.ID)
		// Start the local breaker afresh: its counts belong to the outage.
		delete(s.breakers, e.ID)
	}
	s.mu.Unlock()
	if s.cfg.OnStateChange == nil || (e.Open && e.From == s.cfg.Instance) {
		return // gobreaker already reported this instance's own trips
	}
	switch {
	case e.Open && !wasOpen:
		s.cfg.OnStateChange(e.ID, Closed, Open)
	case !e.Open && wasOpen:
		s.cfg.OnStateChange(e.ID, HalfOpen, Closed)
	}
}

// State returns the state of credential id's breaker.
func (s *Set) State(id string) State {
	now := s.cfg.Now()
	s.mu.Lock()
	e, shared := s.shared[id]
	until, opened := s.opened[id]
	s.mu.Unlock()
	switch {
	case shared && now.Before(e.until):
		return Open
	case shared:
		return HalfOpen
	case opened && now.Before(until):
		return Open
	}
	return s.get(id).State()
}

// Counts returns the outcomes credential id's breaker has counted in its
// current period (excluded outcomes are not counted).
func (s *Set) Counts(id string) gobreaker.Counts { return s.get(id).Counts() }

// Reset closes credential id's breaker, forgetting its counts: on every
// instance when the breakers are shared.
func (s *Set) Reset(ctx context.Context, id string) {
	s.mu.Lock()
	_, wasOpen := s.opened[id]
	delete(s.breakers, id)
	delete(s.opened, id)
	s.mu.Unlock()
	if s.cfg.Sharer != nil {
		s.close(ctx, id)
		return
	}
	if wasOpen && s.cfg.OnStateChange != nil {
		s.cfg.OnStateChange(id, Open, Closed)
	}
}

// Ready reports whether credential id may be tried: its breaker is not
// open. A half-open breaker is ready, though Allow may still refuse once
// its probes are out.
func (s *Set) Ready(id string) bool { return s.State(id) != Open }

func (s *Set) get(id string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.breakers[id]
	if b == nil {
		b = gobreaker.NewTwoStepCircuitBreaker[struct{}](s.settings(id))
		s.breakers[id] = b
	}
	return b
}

func (s *Set) settings(id string) gobreaker.Settings {
	cfg := s.cfg
	st := gobreaker.Settings{
		Name:        id,
		MaxRequests: cfg.HalfOpenProbes,
		Interval:    cfg.Interval,
		// gobreaker's own open state ends at once: how long a breaker
		// stays open is timed here (opened), on Config.Now.
		Timeout: time.Nanosecond,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures >= cfg.Failures {
				return true
			}
			counted := c.TotalSuccesses + c.TotalFailures // exclusions dilute nothing
			return cfg.FailureRatio > 0 && counted >= cfg.MinRequests &&
				float64(c.TotalFailures) >= cfg.FailureRatio*float64(counted)
		},
		IsExcluded: excluded,
		OnStateChange: func(name string, from, to gobreaker.State) {
			s.track(name, to)
			if cfg.Sharer != nil && to == Open {
				// Published by Run: this runs under gobreaker's lock.
				select {
				case s.events <- s.opening(name, cfg.Failures):
				default:
				}
			}
			if cfg.OnStateChange != nil {
				cfg.OnStateChange(name, from, to)
			}
		},
	}
	return st
}

// track times this instance's own open breakers: open for OpenTimeout
// from a trip, until gobreaker lets its probes through.
func (s *Set) track(id string, to State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if to == Open {
		s.opened[id] = s.cfg.Now().Add(s.cfg.OpenTimeout)
	} else {
		delete(s.opened, id)
	}
}

// Run shares this instance's transitions and applies the others', until
// ctx ends. Without a Sharer it returns at once.
func (s *Set) Run(ctx context.Context) {
	if s.cfg.Sharer == nil {
		return
	}
	go s.cfg.Sharer.Watch(ctx, s.apply, s.reconcile)
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-s.events:
			s.apply(e)
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if err := s.cfg.Sharer.Publish(pctx, e); err != nil {
				s.cfg.Logger.Warn("sharing a breaker transition failed", slog.String("credential", e.ID), slog.String("error", err.Error()))
			}
			cancel()
		}
	}
}

// reconcile aligns the known open breakers with a snapshot of the
// cluster's: those another instance opened and that are gone from it
// were closed by someone. (This instance's own, if its publish failed,
// stay open until their probe.)
func (s *Set) reconcile(open []Event) {
	seen := make(map[string]bool, len(open))
	for _, e := range open {
		seen[e.ID] = true
		s.apply(e)
	}
	s.mu.Lock()
	var closed []string
	for id, e := range s.shared {
		if !seen[id] && e.From != s.cfg.Instance {
			closed = append(closed, id)
		}
	}
	s.mu.Unlock()
	for _, id := range closed {
		s.apply(Event{ID: id})
	}
}
