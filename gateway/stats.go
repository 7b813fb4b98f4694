package gateway

import (
	"math"
	"sync"
	"time"
)

// Stats counts the relayed calls of the last minutes, one bucket per
// second, for the dashboard's rates and latencies: requests, errors
// (5xx and 429) and a latency histogram. Recording is a mutex-guarded
// increment; it never allocates.
type Stats struct {
	mu      sync.Mutex
	buckets [statsSeconds]Bucket
}

// statsSeconds is how many seconds Stats keeps.
const statsSeconds = 600

// LatencyBounds are the upper bounds (ms) of a Bucket's latency
// histogram; the last bucket counts everything slower.
var LatencyBounds = [...]float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 60000, math.Inf(1)}

// Bucket is one second of calls.
type Bucket struct {
	Second   int64                     `json:"s"` // Unix seconds
	Requests int64                     `json:"n"`
	Errors   int64                     `json:"e"`
	Latency  [len(LatencyBounds)]int64 `json:"l"`
}

// record counts one call that took d and answered status.
func (s *Stats) record(now time.Time, status int, d time.Duration) {
	sec := now.Unix()
	ms := float64(d) / float64(time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &s.buckets[sec%statsSeconds]
	if b.Second != sec {
		*b = Bucket{Second: sec}
	}
	b.Requests++
	if status >= 500 || status == 429 {
		b.Errors++
	}
	for i, bound := range LatencyBounds {
		if ms <= bound {
			b.Latency[i]++
			break
		}
	}
}

// Since returns the buckets of the seconds from since (Unix seconds) to
// before now's, oldest first, without the empty ones.
func (s *Stats) Since(since, now int64) []Bucket {
	since = max(since, now-statsSeconds+1)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Bucket
	for sec := since; sec < now; sec++ {
		if b := s.buckets[sec%statsSeconds]; b.Second == sec {
			out = append(out, b)
		}
	}
	return out
}

// Merge adds b's counts to a.
func (a *Bucket) Merge(b Bucket) {
	a.Requests += b.Requests
	a.Errors += b.Errors
	for i := range a.Latency {
		a.Latency[i] += b.Latency[i]
	}
}

// Percentile is the latency (ms) below which a share q of a bucket's
// calls answered, read from the histogram (its bucket's upper bound).
func (a Bucket) Percentile(q float64) float64 {
	if a.Requests == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(a.Requests)))
	var seen int64
	for i, n := range a.Latency {
		seen += n
		if seen >= rank {
			if math.IsInf(LatencyBounds[i], 1) {
				return LatencyBounds[i-1]
			}
			return LatencyBounds[i]
		}
	}
	return LatencyBounds[len(LatencyBounds)-2]
}

// Stats returns the gateway's call counts.
func (g *Gateway) Stats() *Stats { return &g.stats }
