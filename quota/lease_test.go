package quota

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// leasedCluster returns n lease-mode limiters sharing one Redis and one
// manual clock, as n instances would.
func leasedCluster(t *testing.T, n int, cfg LeaseConfig) ([]*Leased, *clock) {
	c := redistest.Start(t).Client(t)
	clk := newClock()
	prefix := uniquePrefix()
	cfg.Now = clk.Now
	var out []*Leased
	for range n {
		out = append(out, NewLeased(NewRedis(c, RedisConfig{Prefix: prefix, Clock: clk.Now}), cfg))
	}
	return out, clk
}

// TestLeasedNeverOverAdmitsQPS offers three instances 5× a 20 QPS limit
// for ten seconds.
func TestLeasedNeverOverAdmitsQPS(t *testing.T) {
	insts, clk := leasedCluster(t, 3, LeaseConfig{})
	req := one("a", Limit{QPS: 20, Burst: 20})
	admitted := 0
	for step := range 1000 { // 10 s in 10 ms steps, one request per step: 100 rps
		d := mustAcquire(t, insts[step%3], req)
		if d.Allowed {
			admitted++
		}
		clk.Advance(10 * time.Millisecond)
	}
	bound := 20 + 20*10
	if admitted > bound {
		t.Fatalf("admitted %d, above burst + rate × time = %d", admitted, bound)
	}
	if float64(admitted) < 0.9*float64(bound) {
		t.Fatalf("admitted %d of %d: lease mode may under-admit only slightly", admitted, bound)
	}
	t.Logf("admitted %d of at most %d (%.1f%%)", admitted, bound, 100*float64(admitted)/float64(bound))
}

// TestLeasedNeverOverAdmitsRPM checks every trailing minute of admissions.
func TestLeasedNeverOverAdmitsRPM(t *testing.T) {
	insts, clk := leasedCluster(t, 3, LeaseConfig{})
	req := one("a", Limit{RPM: 120})
	var times []time.Time
	for step := range 3000 { // 150 s at 20 offers a second
		if mustAcquire(t, insts[step%3], req).Allowed {
			times = append(times, clk.Now())
		}
		clk.Advance(50 * time.Millisecond)
	}
	for i := range times {
		n := 0
		for j := i; j < len(times) && times[j].Sub(times[i]) < time.Minute; j++ {
			n++
		}
		if n > 120 {
			t.Fatalf("%d admitted in the minute after %v", n, times[i])
		}
	}
	if len(times) < 2*120*60/61-30 {
		t.Fatalf("only %d admitted over 150 s at 120 RPM", len(times))
	}
}

// TestLeasedTokens checks that token reservations lease, refund and owe:
// requests that use a fifth of their reservation fill the TPM limit with
// real usage, never beyond it.
func TestLeasedTokens(t *testing.T) {
	insts, clk := leasedCluster(t, 2, LeaseConfig{Batch: 5})
	req := one("a", Limit{TPM: 10000})
	req.Reserve = Amount{Tokens: 500}
	ctx := context.Background()
	used := int64(0)
	for step := range 200 { // 20 s, all inside one minute
		l := insts[step%2]
		d := mustAcquire(t, l, req)
		if d.Allowed {
			used += 100
			if err := l.Settle(ctx, d.Grant, Amount{Tokens: 100}); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(100 * time.Millisecond)
	}
	if used > 10000 {
		t.Fatalf("%d tokens used in one minute, limit 10000", used)
	}
	if used < 9000 {
		t.Fatalf("only %d of 10000 tokens used: refunds must let more requests in", used)
	}
	// A request that used more than it reserved is owed: charged at the
	// next refill, it holds the window back.
	clk.Advance(61 * time.Second)
	d := mustAcquire(t, insts[0], req)
	if !d.Allowed {
		t.Fatal("a new minute")
	}
	_ = insts[0].Settle(ctx, d.Grant, Amount{Tokens: 9800})
	clk.Advance(time.Second) // the batch expires; the debt goes with the next refill
	if d := mustAcquire(t, insts[0], req); d.Allowed {
		t.Fatalf("9800 + 500 exceed 10000: want a refusal, got %+v", d)
	}
}

// TestLeasedRoundTrips measures script calls per request at a high rate
// well under the limit: the case lease mode is for.
func TestLeasedRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	clk := newClock()
	l := NewLeased(NewRedis(c, RedisConfig{Prefix: uniquePrefix(), Clock: clk.Now}), LeaseConfig{Now: clk.Now})
	// A client without limits of its own, as most are; calls that use
	// fewer tokens than they reserve settle here, in the live batch.
	req := one("a", Limit{QPS: 5000, RPM: 1000000, TPM: 1 << 40})
	req.Client, req.Reserve = "team", Amount{Tokens: 100}
	mustAcquire(t, l, req)
	before := commandCalls(t, c)
	const n = 2000
	for range n {
		d := mustAcquire(t, l, req)
		if !d.Allowed {
			t.Fatal("refused under the limit")
		}
		_ = l.Settle(context.Background(), d.Grant, Amount{Tokens: 60})
		clk.Advance(time.Millisecond) // 1000 rps
	}
	if q := len(l.r.pending); q != 0 {
		t.Fatalf("%d settlements queued for Redis: grants of live batches settle here", q)
	}
	perRequest := float64(commandCalls(t, c)-before) / n
	t.Logf("lease mode: %.3f Redis round trips per request", perRequest)
	if perRequest > 0.05 {
		t.Fatalf("%.3f round trips per request, want at most 0.05", perRequest)
	}
}

// TestLeasedBatchesFollowDemand: batches start small, double while an
// instance uses them up within their hold (up to what the limit allows in
// a hold, and Batch), and halve when demand falls, so that an instance
// that slows down does not hold on to capacity it no longer uses.
func TestLeasedBatchesFollowDemand(t *testing.T) {
	insts, clk := leasedCluster(t, 1, LeaseConfig{Batch: 1000})
	l := insts[0]
	req := one("a", Limit{QPS: 2000, RPM: 10000000})
	size := func() int64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, a := range l.leases {
			return a.leased
		}
		return 0
	}
	var sizes []int64
	for range 3000 { // 1.5 s at 2000 rps
		mustAcquire(t, l, req)
		if s := size(); len(sizes) == 0 || sizes[len(sizes)-1] != s {
			sizes = append(sizes, s)
		}
		clk.Advance(500 * time.Microsecond)
	}
	if sizes[0] > 16 {
		t.Fatalf("the first batch leased %d, want at most 16", sizes[0])
	}
	peak := slices.Max(sizes)
	// 2000 rps × 200 ms hold = 400 at most, whatever Batch.
	if peak < 256 || peak > 400 {
		t.Fatalf("batches under 2000 rps: %v; want them to grow to the limit's 400 a hold", sizes)
	}
	for range 20 { // 2 s at 10 rps
		mustAcquire(t, l, req)
		clk.Advance(100 * time.Millisecond)
	}
	if s := size(); s > 16 {
		t.Fatalf("after 2 s at 10 rps the batch is still %d", s)
	}
	t.Logf("batches: %v, then %d at 10 rps", sizes, size())

	// Calls that use more tokens than they reserve use a batch's tokens
	// up before its requests: that is demand too.
	clk.Advance(time.Minute)
	treq := one("t", Limit{QPS: 2000, TPM: 1 << 40})
	treq.Reserve = Amount{Tokens: 10}
	before := commandCalls(t, l.r.client.(*redis.Client))
	for range 2000 {
		d := mustAcquire(t, l, treq)
		if !d.Allowed {
			t.Fatal("refused under the limit")
		}
		_ = l.Settle(context.Background(), d.Grant, Amount{Tokens: 30})
		clk.Advance(500 * time.Microsecond)
	}
	if n := commandCalls(t, l.r.client.(*redis.Client)) - before; n > 40 {
		t.Fatalf("2000 calls over their reservations took %d scripts: their batches did not grow", n)
	}
}

// TestLeasedExactPathForConcurrency checks that requests holding
// concurrency slots bypass leasing and still never exceed the limit.
func TestLeasedExactPathForConcurrency(t *testing.T) {
	insts, _ := leasedCluster(t, 2, LeaseConfig{})
	req := one("a", Limit{Concurrency: 3, QPS: 1000})
	got := 0
	for i := range 10 {
		if mustAcquire(t, insts[i%2], req).Allowed {
			got++
		}
	}
	if got != 3 {
		t.Fatalf("%d slots taken, want 3", got)
	}
}

// TestLeasedBudgetGoesBack: an instance leases part of a budget and stops
// using it; what its batch held goes back once the batch expires, and the
// other instances can spend it.
func TestLeasedBudgetGoesBack(t *testing.T) {
	ctx := context.Background()
	insts, clk := leasedCluster(t, 2, LeaseConfig{})
	budget := Limit{Windows: []Window{{Kind: Calendar, Unit: Cost, Limit: 100 * dollar, Period: Period{Every: Day}}}}
	req := Request{Client: "c", ClientLimit: budget, Reserve: Amount{Cost: dollar}, Candidates: []Candidate{{ID: "a"}}}
	d := mustAcquire(t, insts[0], req)
	if !d.Allowed {
		t.Fatal("first")
	}
	us, _ := insts[0].Usage(ctx, []Subject{{KindClient, "c"}}, []Limit{budget})
	leased := us[0].Level("usd/day")
	// A batch takes at most a quarter of what is left.
	if used := leased.Limit - leased.Remaining; used > 25*dollar || used < dollar {
		t.Fatalf("a batch took %d of the budget", used)
	}
	_ = insts[0].Settle(ctx, d.Grant, Amount{Cost: dollar / 2})
	clk.Advance(time.Second) // the batch expires
	insts[0].GiveBack(ctx, false)
	us, _ = insts[1].Usage(ctx, []Subject{{KindClient, "c"}}, []Limit{budget})
	if l := us[0].Level("usd/day"); l.Limit-l.Remaining != dollar/2 {
		t.Fatalf("after the give back: %d spent, want the $0.50 the call cost", l.Limit-l.Remaining)
	}
	// Shutting down gives back even live batches.
	d = mustAcquire(t, insts[1], req)
	_ = insts[1].Settle(ctx, d.Grant, Amount{Cost: dollar})
	insts[1].GiveBack(ctx, true)
	_ = insts[1].r.Flush(ctx)
	us, _ = insts[1].Usage(ctx, []Subject{{KindClient, "c"}}, []Limit{budget})
	if l := us[0].Level("usd/day"); l.Limit-l.Remaining != dollar+dollar/2 {
		t.Fatalf("after shutting down: %d spent, want $1.50", l.Limit-l.Remaining)
	}
}
