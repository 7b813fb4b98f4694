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

func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	var mu sync.Mutex
	var transitions []string
	s := New(Config{Failures: 1, OpenTimeout: 20 * time.Millisecond, OnStateChange: func(id string, from, to State) {
		mu.Lock()
		transitions = append(transitions, fmt.Sprintf("%s:%v->%v", id, from, to))
		mu.Unlock()
	}})
	call(t, s, "a", errUpstream)
	time.Sleep(30 * time.Millisecond)
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

func TestProbeWithoutTheSharedStore(t *testing.T) {
	s := New(Config{Failures: 1, OpenTimeout: 20 * time.Millisecond, Sharer: downSharer{}, Instance: "me"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	call(t, s, "a", errUpstream)
	deadline := time.Now().Add(2 * time.Second)
	for s.State("a") == Closed { // the trip is applied by Run
		if time.Now().After(deadline) {
			t.Fatal("never opened")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(30 * time.Millisecond)
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
