package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

var errUpstream = errors.New("upstream 503")

func call(t *testing.T, s *Set, id string, outcome error) error {
	t.Helper()
	done, err := s.Allow(context.Background(), id)
	if err != nil {
		return err
	}
	done(outcome)
	return nil
}

func TestOpensAfterConsecutiveFailures(t *testing.T) {
	s := New(Config{Failures: 3, OpenTimeout: time.Hour})
	for i := range 3 {
		if err := call(t, s, "a", errUpstream); err != nil {
			t.Fatalf("call %d refused early: %v", i, err)
		}
	}
	if s.State("a") != Open || s.Ready("a") {
		t.Fatalf("state %v, want open", s.State("a"))
	}
	if err := call(t, s, "a", nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("open breaker must refuse with ErrOpen, got %v", err)
	}
	if s.State("b") != Closed {
		t.Fatal("breakers are per credential")
	}
}

func TestSuccessResetsConsecutiveFailures(t *testing.T) {
	s := New(Config{Failures: 3})
	for range 10 {
		call(t, s, "a", errUpstream)
		call(t, s, "a", errUpstream)
		call(t, s, "a", nil)
	}
	if s.State("a") != Closed {
		t.Fatal("never three failures in a row: must stay closed")
	}
}

func TestExcludedOutcomesDoNotCount(t *testing.T) {
	s := New(Config{Failures: 2})
	for range 10 {
		call(t, s, "a", context.Canceled)
		call(t, s, "a", fmt.Errorf("client went away: %w", context.Canceled))
		call(t, s, "a", ErrNotCounted)
	}
	if s.State("a") != Closed {
		t.Fatal("cancellations and uncounted outcomes must not open the breaker")
	}
}

func TestFailureRatio(t *testing.T) {
	s := New(Config{Failures: 100, FailureRatio: 0.5, MinRequests: 10})
	for range 5 {
		call(t, s, "a", nil)
		call(t, s, "a", errUpstream)
	}
	if s.State("a") != Open {
		t.Fatalf("5 failures of 10 at ratio 0.5: want open, got %v", s.State("a"))
	}
}

// clock is a test clock: tests move it instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestOpenForOpenTimeout(t *testing.T) {
	clk := newClock()
	s := New(Config{Failures: 1, OpenTimeout: 30 * time.Second, Now: clk.Now})
	call(t, s, "a", errUpstream)
	clk.Advance(30*time.Second - time.Nanosecond)
	if s.State("a") != Open || call(t, s, "a", nil) == nil {
		t.Fatal("open until OpenTimeout has passed")
	}
	clk.Advance(time.Nanosecond)
	if s.State("a") != HalfOpen {
		t.Fatalf("after OpenTimeout: %v", s.State("a"))
	}
	if err := call(t, s, "a", errUpstream); err != nil {
		t.Fatalf("the probe: %v", err)
	}
	if s.State("a") != Open {
		t.Fatal("a failed probe opens the breaker again")
	}
	clk.Advance(30 * time.Second)
	if err := call(t, s, "a", nil); err != nil || s.State("a") != Closed {
		t.Fatalf("a successful probe closes: %v %v", err, s.State("a"))
	}
}

func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	var mu sync.Mutex
	var transitions []string
	clk := newClock()
	s := New(Config{Failures: 1, OpenTimeout: 20 * time.Millisecond, Now: clk.Now, OnStateChange: func(id string, from, to State) {
		mu.Lock()
		transitions = append(transitions, fmt.Sprintf("%s:%v->%v", id, from, to))
		mu.Unlock()
	}})
	call(t, s, "a", errUpstream)
	clk.Advance(30 * time.Millisecond)
	if s.State("a") != HalfOpen {
		t.Fatalf("state %v, want half-open", s.State("a"))
	}
	done, err := s.Allow(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allow(context.Background(), "a"); !errors.Is(err, ErrOpen) {
		t.Fatalf("second probe while the first is out: %v", err)
	}
	done(nil)
	if s.State("a") != Closed {
		t.Fatalf("a successful probe closes: %v", s.State("a"))
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"a:closed->open", "a:open->half-open", "a:half-open->closed"}
	if fmt.Sprint(transitions) != fmt.Sprint(want) {
		t.Fatalf("transitions %v, want %v", transitions, want)
	}
}

func TestFailureRatioIgnoresExclusions(t *testing.T) {
	s := New(Config{Failures: 100, FailureRatio: 0.5, MinRequests: 10})
	for range 50 {
		call(t, s, "a", ErrNotCounted)
	}
	for range 5 {
		call(t, s, "a", nil)
		call(t, s, "a", errUpstream)
	}
	if s.State("a") != Open {
		t.Fatal("uncounted outcomes must not dilute the failure ratio")
	}
}

// downSharer is a Sharer whose store is unreachable.
type downSharer struct{}

func (downSharer) Publish(context.Context, Event) error { return errors.New("down") }
func (downSharer) Watch(ctx context.Context, _ func(Event), _ func([]Event)) {
	<-ctx.Done()
}
func (downSharer) Probe(context.Context, string, time.Duration) (bool, error) {
	return false, errors.New("down")
}
func (downSharer) EndProbe(context.Context, string) error { return errors.New("down") }

// waitFor polls a condition, for what another goroutine does.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestProbeWithoutTheSharedStore(t *testing.T) {
	clk := newClock()
	s := New(Config{Failures: 1, OpenTimeout: 20 * time.Millisecond, Sharer: downSharer{}, Instance: "me", Now: clk.Now})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	call(t, s, "a", errUpstream)
	waitFor(t, "the trip applied by Run", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, shared := s.shared["a"]
		return shared
	})
	clk.Advance(30 * time.Millisecond)
	done, err := s.Allow(ctx, "a")
	if err != nil {
		t.Fatalf("with the store down, this instance must still probe: %v", err)
	}
	if _, err := s.Allow(ctx, "a"); err == nil {
		t.Fatal("one local probe at a time")
	}
	done(nil)
	if s.State("a") != Closed {
		t.Fatalf("a successful probe closes: %v", s.State("a"))
	}
}
