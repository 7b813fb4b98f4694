package gateway

import (
	"testing"
	"time"
)

func TestStatsBuckets(t *testing.T) {
	var s Stats
	t0 := time.Unix(1_000_000, 0)
	// Second 0: 100 calls, 90 at 3ms, 9 at 40ms, one 5xx at 700ms.
	for i := range 90 {
		s.record(t0.Add(time.Duration(i)*time.Millisecond), 200, 3*time.Millisecond)
	}
	for range 9 {
		s.record(t0, 200, 40*time.Millisecond)
	}
	s.record(t0, 502, 700*time.Millisecond)
	// Second 2: a 429 and a 400 (a client error, not counted as an error).
	s.record(t0.Add(2*time.Second), 429, time.Millisecond)
	s.record(t0.Add(2*time.Second), 400, time.Millisecond)

	got := s.Since(t0.Unix(), t0.Unix()+3)
	if len(got) != 2 || got[0].Second != t0.Unix() || got[1].Second != t0.Unix()+2 {
		t.Fatalf("buckets %+v: want seconds 0 and 2, without the empty one", got)
	}
	b := got[0]
	if b.Requests != 100 || b.Errors != 1 {
		t.Fatalf("second 0: %d calls, %d errors", b.Requests, b.Errors)
	}
	for q, want := range map[float64]float64{0.5: 5, 0.9: 5, 0.95: 50, 0.99: 50, 1: 1000} {
		if p := b.Percentile(q); p != want {
			t.Errorf("p%v = %v ms, want %v", q*100, p, want)
		}
	}
	if got[1].Errors != 1 {
		t.Fatalf("second 2: %d errors, want the 429 only", got[1].Errors)
	}
	// The current second is not over: it is not reported.
	if n := len(s.Since(t0.Unix(), t0.Unix()+2)); n != 1 {
		t.Fatalf("up to second 2 (excluded): %d buckets", n)
	}
	// A merge adds everything up.
	m := got[0]
	m.Merge(got[1])
	if m.Requests != 102 || m.Errors != 2 {
		t.Fatalf("merged: %+v", m)
	}
}

func TestStatsForgetOldSeconds(t *testing.T) {
	var s Stats
	t0 := time.Unix(2_000_000, 0)
	s.record(t0, 200, time.Millisecond)
	// statsSeconds later the same slot holds a new second: the old one is
	// gone, not added to it.
	later := t0.Add(statsSeconds * time.Second)
	s.record(later, 200, time.Millisecond)
	if got := s.Since(t0.Unix(), later.Unix()+1); len(got) != 1 || got[0].Second != later.Unix() || got[0].Requests != 1 {
		t.Fatalf("after a wrap: %+v", got)
	}
	// Asking from before the window starts reads only the window.
	if got := s.Since(0, later.Unix()+1); len(got) != 1 {
		t.Fatalf("from 0: %d buckets", len(got))
	}
	// Slower than the last bound: reported as the last finite bound.
	s.record(later, 200, 2*time.Minute)
	b := s.Since(later.Unix(), later.Unix()+1)[0]
	if p := b.Percentile(1); p != LatencyBounds[len(LatencyBounds)-2] {
		t.Fatalf("p100 of a 2-minute call: %v", p)
	}
	if (Bucket{}).Percentile(0.5) != 0 {
		t.Fatal("an empty bucket has no latency")
	}
}

func BenchmarkStatsRecord(b *testing.B) {
	var s Stats
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		s.record(now, 200, 12*time.Millisecond)
	}
}
