// Package breaker keeps one circuit breaker per upstream credential, so
// that a failing credential stops receiving traffic and is probed again
// after a while. Each breaker is a gobreaker v2 two-step breaker: Allow
// before dialing, done(err) when the call (or the stream) has ended.
package breaker

import (
	"context"
	"errors"
	"fmt"
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
	HalfOpenProbes uint32
	// OnStateChange, if set, is called on every transition.
	OnStateChange func(id string, from, to State)
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

// Set holds the breakers of all credentials, created on first use.
type Set struct {
	cfg Config

	mu       sync.RWMutex
	breakers map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]
}

// New returns an empty Set.
func New(cfg Config) *Set {
	return &Set{cfg: cfg.withDefaults(), breakers: make(map[string]*gobreaker.TwoStepCircuitBreaker[struct{}])}
}

// Allow asks whether a call to credential id may proceed. On success the
// caller must call done exactly once with the call's outcome: nil for a
// success (including an upstream refusal that was the client's fault),
// an error for a failure.
func (s *Set) Allow(id string) (done func(error), err error) {
	done, err = s.get(id).Allow()
	if err != nil {
		return nil, fmt.Errorf("credential %s: %w", id, ErrOpen)
	}
	return done, nil
}

// State returns the state of credential id's breaker.
func (s *Set) State(id string) State { return s.get(id).State() }

// Ready reports whether credential id may be tried: its breaker is not
// open. A half-open breaker is ready, though Allow may still refuse once
// its probes are out.
func (s *Set) Ready(id string) bool { return s.State(id) != Open }

func (s *Set) get(id string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	s.mu.RLock()
	b := s.breakers[id]
	s.mu.RUnlock()
	if b != nil {
		return b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b = s.breakers[id]; b == nil {
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
		Timeout:     cfg.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures >= cfg.Failures {
				return true
			}
			return cfg.FailureRatio > 0 && c.Requests >= cfg.MinRequests &&
				float64(c.TotalFailures) >= cfg.FailureRatio*float64(c.Requests)
		},
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, ErrNotCounted)
		},
	}
	if cfg.OnStateChange != nil {
		st.OnStateChange = func(name string, from, to gobreaker.State) { cfg.OnStateChange(name, from, to) }
	}
	return st
}
