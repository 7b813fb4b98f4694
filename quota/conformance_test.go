package quota

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// clock is a manual clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testLimiter is a Limiter that can also be inspected.
type testLimiter interface {
	Limiter
	Usage(ctx context.Context, subjects []Subject, limits []Limit) ([]Usage, error)
}

// conformance lists the behaviours every backend must share. Each case
// gets a fresh limiter on a fresh clock.
var conformance = []struct {
	name string
	run  func(t *testing.T, l testLimiter, clk *clock)
}{
	{"QPSBurstThenRate", testQPSBurstThenRate},
	{"QPSDefaultBurst", testQPSDefaultBurst},
	{"RPMSlidingWindow", testRPMSlidingWindow},
	{"RPMNeverOverAdmits", testRPMNeverOverAdmits},
	{"TPMReserveThenSettle", testTPMReserveThenSettle},
	{"TooLarge", testTooLarge},
	{"Concurrency", testConcurrency},
	{"AcquireOrNext", testAcquireOrNext},
	{"RefusalPicksSoonest", testRefusalPicksSoonest},
	{"ClientQuota", testClientQuota},
	{"Cooldown", testCooldown},
	{"PoolIsShared", testPoolIsShared},
	{"LongCallCharged", testLongCallCharged},
	{"TooLargeWins", testTooLargeWins},
	{"SplitKeepsClientPlace", testSplitKeepsClientPlace},
}

func one(id string, l Limit) Request {
	return Request{Candidates: []Candidate{{ID: id, Limit: l}}}
}

// admit counts how many of n immediate requests are granted.
func admit(t *testing.T, l Limiter, req Request, n int) int {
	t.Helper()
	got := 0
	for range n {
		d, err := l.Acquire(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			got++
		}
	}
	return got
}

func mustAcquire(t *testing.T, l Limiter, req Request) Decision {
	t.Helper()
	d, err := l.Acquire(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func testQPSBurstThenRate(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{QPS: 10, Burst: 5})
	if got := admit(t, l, req, 20); got != 5 {
		t.Fatalf("burst: admitted %d, want 5", got)
	}
	d, _ := l.Acquire(context.Background(), req)
	if d.Allowed || d.Reason != ReasonQPS || d.Scope != ScopeCredential {
		t.Fatalf("want qps refusal, got %+v", d)
	}
	if d.RetryAfter != 100*time.Millisecond {
		t.Fatalf("retry after = %v, want 100ms", d.RetryAfter)
	}
	// Over one second at 10 QPS, ten more.
	total := 0
	for range 100 {
		clk.Advance(10 * time.Millisecond)
		total += admit(t, l, req, 1)
	}
	if total != 10 {
		t.Fatalf("rate: admitted %d in 1s, want 10", total)
	}
}

func testQPSDefaultBurst(t *testing.T, l testLimiter, clk *clock) {
	if got := admit(t, l, one("a", Limit{QPS: 2.5}), 10); got != 3 {
		t.Fatalf("admitted %d, want ceil(2.5)=3", got)
	}
	if got := admit(t, l, one("b", Limit{QPS: 0.5}), 10); got != 1 {
		t.Fatalf("admitted %d, want 1", got)
	}
}

func testRPMSlidingWindow(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{RPM: 30})
	got := 0
	for range 60 { // one request offered every second, 60 times
		got += admit(t, l, req, 1)
		clk.Advance(time.Second)
	}
	if got != 30 {
		t.Fatalf("admitted %d in 60s, want 30", got)
	}
	d, _ := l.Acquire(context.Background(), req)
	if d.Allowed || d.Reason != ReasonRPM {
		t.Fatalf("want rpm refusal, got %+v", d)
	}
	// The first request leaves the window 61 s after it was made at the
	// latest; the answer must never be earlier than 60 s after it.
	if d.RetryAfter <= 0 || d.RetryAfter > 2*time.Second {
		t.Fatalf("retry after %v, want (0, 2s]", d.RetryAfter)
	}
	clk.Advance(d.RetryAfter)
	if !mustAcquire(t, l, req).Allowed {
		t.Fatal("still refused after RetryAfter")
	}
}

// TestMemoryRPMNeverOverAdmits offers a steady stream for several minutes
// and checks every trailing 60 s window.
func testRPMNeverOverAdmits(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{RPM: 100})
	var times []time.Time
	for range 5 * 60 * 20 { // 20 offers a second for 5 minutes
		if mustAcquire(t, l, req).Allowed {
			times = append(times, clk.Now())
		}
		clk.Advance(50 * time.Millisecond)
	}
	for i := range times {
		n := 0
		for j := i; j < len(times) && times[j].Sub(times[i]) < time.Minute; j++ {
			n++
		}
		if n > 100 {
			t.Fatalf("%d requests in the minute after %v", n, times[i])
		}
	}
	// Conservative by at most one slot in 61: at least 5*100*60/61 admitted.
	if len(times) < 5*100*60/61 {
		t.Fatalf("admitted only %d over 5 minutes", len(times))
	}
}

func testTPMReserveThenSettle(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{TPM: 1000})
	req.Tokens = 400
	d1 := mustAcquire(t, l, req)
	d2 := mustAcquire(t, l, req)
	if !d1.Allowed || !d2.Allowed {
		t.Fatal("two 400-token reservations must fit 1000")
	}
	if d := mustAcquire(t, l, req); d.Allowed || d.Reason != ReasonTPM {
		t.Fatalf("third must be refused for tpm, got %+v", d)
	}
	// The first used only 100 tokens: 300 come back.
	if err := l.Settle(context.Background(), d1.Grant, 100); err != nil {
		t.Fatal(err)
	}
	if d := mustAcquire(t, l, req); !d.Allowed {
		t.Fatalf("after settling 100 of 400, 500 used: 400 more must fit, got %+v", d)
	}
	// The second used far more than reserved: the window is over-full.
	if err := l.Settle(context.Background(), d2.Grant, 900); err != nil {
		t.Fatal(err)
	}
	small := req
	small.Tokens = 1
	if d := mustAcquire(t, l, small); d.Allowed {
		t.Fatalf("window holds 1400 of 1000, must refuse, got %+v", d)
	}
	clk.Advance(61 * time.Second)
	if d := mustAcquire(t, l, req); !d.Allowed {
		t.Fatal("the window must empty after 61s")
	}
}

func testTooLarge(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{TPM: 100})
	req.Tokens = 101
	d := mustAcquire(t, l, req)
	if d.Allowed || d.Reason != ReasonTooLarge || d.RetryAfter != 0 {
		t.Fatalf("want too_large with no retry, got %+v", d)
	}
}

func testConcurrency(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{Concurrency: 2})
	g1, g2 := mustAcquire(t, l, req), mustAcquire(t, l, req)
	if !g1.Allowed || !g2.Allowed {
		t.Fatal("two slots")
	}
	if d := mustAcquire(t, l, req); d.Allowed || d.Reason != ReasonConcurrency || d.RetryAfter <= 0 {
		t.Fatalf("third must wait for a slot, got %+v", d)
	}
	_ = l.Settle(context.Background(), g1.Grant, 0)
	if d := mustAcquire(t, l, req); !d.Allowed {
		t.Fatal("a settled grant frees its slot")
	}
}

func testAcquireOrNext(t *testing.T, l testLimiter, clk *clock) {
	req := Request{Candidates: []Candidate{
		{ID: "a", Limit: Limit{RPM: 1}},
		{ID: "b", Limit: Limit{RPM: 2}},
		{ID: "c"},
	}}
	want := []string{"a", "b", "b", "c", "c"}
	for i, w := range want {
		d := mustAcquire(t, l, req)
		if !d.Allowed || d.Grant.ID != w || req.Candidates[d.Grant.Index].ID != w {
			t.Fatalf("request %d: got %+v, want %s", i, d.Grant, w)
		}
	}
}

func testRefusalPicksSoonest(t *testing.T, l testLimiter, clk *clock) {
	req := Request{Candidates: []Candidate{
		{ID: "slow", Limit: Limit{RPM: 1}},
		{ID: "fast", Limit: Limit{QPS: 1}},
	}}
	mustAcquire(t, l, req)
	mustAcquire(t, l, req)
	d := mustAcquire(t, l, req)
	if d.Allowed || d.Reason != ReasonQPS || d.RetryAfter != time.Second {
		t.Fatalf("want the 1s qps wait of the second candidate, got %+v", d)
	}
	if d.Requests.Limit != 1 || d.Requests.Remaining != 0 {
		t.Fatalf("headers describe the binding credential, got %+v", d.Requests)
	}
}

func testClientQuota(t *testing.T, l testLimiter, clk *clock) {
	req := Request{
		Client: "team", ClientLimit: Limit{RPM: 2, TPD: 1000}, Tokens: 10,
		Candidates: []Candidate{{ID: "a", Limit: Limit{RPM: 1}}},
	}
	d := mustAcquire(t, l, req)
	if !d.Allowed || d.Requests.Limit != 2 || d.Requests.Remaining != 1 || d.Tokens.Remaining != 990 {
		t.Fatalf("first: %+v", d)
	}
	// The credential is full: refused for the credential, and the client's
	// quota is not charged for a request it did not get.
	if d := mustAcquire(t, l, req); d.Allowed || d.Scope != ScopeCredential {
		t.Fatalf("second: %+v", d)
	}
	req.Candidates = []Candidate{{ID: "b", Limit: Limit{RPM: 10}}}
	if d := mustAcquire(t, l, req); !d.Allowed || d.Requests.Remaining != 0 {
		t.Fatalf("third: %+v", d)
	}
	d = mustAcquire(t, l, req)
	if d.Allowed || d.Scope != ScopeClient || d.Reason != ReasonRPM {
		t.Fatalf("fourth must be refused by the client's rpm: %+v", d)
	}
	us, err := l.Usage(context.Background(), []Subject{{Kind: KindCredential, ID: "b"}}, []Limit{{RPM: 10}})
	if err != nil {
		t.Fatal(err)
	}
	if u := us[0]; u.RPM.Remaining != 9 {
		t.Fatalf("a client refusal must not charge the credential: %+v", u.RPM)
	}
}

func testCooldown(t *testing.T, l testLimiter, clk *clock) {
	_ = l.Cooldown(context.Background(), "a", 5*time.Second)
	_ = l.Cooldown(context.Background(), "a", time.Second) // never shortens
	req := Request{Candidates: []Candidate{{ID: "a"}}}
	d := mustAcquire(t, l, req)
	if d.Allowed || d.Reason != ReasonCooldown || d.RetryAfter != 5*time.Second {
		t.Fatalf("got %+v", d)
	}
	req.Candidates = append(req.Candidates, Candidate{ID: "b"})
	if d := mustAcquire(t, l, req); d.Grant.ID != "b" {
		t.Fatalf("a cooling credential is skipped, got %+v", d)
	}
	clk.Advance(5 * time.Second)
	if d := mustAcquire(t, l, req); d.Grant.ID != "a" {
		t.Fatalf("cool-down over, got %+v", d)
	}
}

func testPoolIsShared(t *testing.T, l testLimiter, clk *clock) {
	pool := Limit{RPM: 3}
	req := Request{Candidates: []Candidate{
		{ID: "a", Limit: Limit{RPM: 2}, Pool: "ch", PoolLimit: pool},
		{ID: "b", Limit: Limit{RPM: 2}, Pool: "ch", PoolLimit: pool},
		{ID: "c"},
	}}
	var got []string
	for range 5 {
		d := mustAcquire(t, l, req)
		got = append(got, d.Grant.ID)
	}
	// a takes 2, b only 1 more before the channel's pool of 3 is full.
	if want := "[a a b c c]"; fmt.Sprint(got) != want {
		t.Fatalf("grants %v, want %s", got, want)
	}
	us, err := l.Usage(context.Background(), []Subject{{Kind: KindCredential, ID: "b"}}, []Limit{{RPM: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if u := us[0]; u.RPM.Remaining != 1 {
		t.Fatalf("b used %d", 2-u.RPM.Remaining)
	}
}

func testLongCallCharged(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{TPM: 1000})
	req.Tokens = 100
	d := mustAcquire(t, l, req)
	clk.Advance(90 * time.Second) // a 90 s stream
	if err := l.Settle(context.Background(), d.Grant, 1000); err != nil {
		t.Fatal(err)
	}
	if d := mustAcquire(t, l, req); d.Allowed {
		t.Fatalf("a long call's real use must be charged when it ends: %+v", d)
	}
}

func testTooLargeWins(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{RPM: 1, TPM: 100})
	req.Tokens = 10
	mustAcquire(t, l, req)
	req.Tokens = 200
	d := mustAcquire(t, l, req)
	if d.Allowed || d.Reason != ReasonTooLarge || d.RetryAfter != 0 {
		t.Fatalf("a request that can never fit must say so: %+v", d)
	}
}

// testSplitKeepsClientPlace: a request that fails over holds one place in
// its client's quota, however many credentials it tries.
func testSplitKeepsClientPlace(t *testing.T, l testLimiter, clk *clock) {
	ctx := context.Background()
	req := Request{Client: "c", ClientLimit: Limit{RPM: 2, Concurrency: 1, TPM: 1000}, Tokens: 100,
		Candidates: []Candidate{{ID: "a", Limit: Limit{Concurrency: 5}}}}
	d := mustAcquire(t, l, req)
	credPart, clientPart := d.Grant.Split()
	// The attempt on a fails; the retry goes without the client.
	if err := l.Settle(ctx, credPart, 0); err != nil {
		t.Fatal(err)
	}
	retry := req
	retry.Client, retry.ClientLimit = "", Limit{}
	retry.Candidates = []Candidate{{ID: "b", Limit: Limit{Concurrency: 5}}}
	d2 := mustAcquire(t, l, retry)
	if !d2.Allowed {
		t.Fatal("retry")
	}
	// The client's single slot is still held by the request.
	if d := mustAcquire(t, l, req); d.Allowed || d.Scope != ScopeClient || d.Reason != ReasonConcurrency {
		t.Fatalf("the client's slot must still be held: %+v", d)
	}
	_ = l.Settle(ctx, d2.Grant, 30)
	_ = l.Settle(ctx, clientPart, 30)
	// One request charged once: the second of 2 per minute still fits.
	d3 := mustAcquire(t, l, req)
	if !d3.Allowed {
		t.Fatalf("a failed-over request must count once against the client: %+v", d3)
	}
	_ = l.Settle(ctx, d3.Grant, 100)
	if d := mustAcquire(t, l, req); d.Allowed || d.Reason != ReasonRPM {
		t.Fatalf("two requests per minute: %+v", d)
	}
	us, err := l.Usage(ctx, []Subject{{KindClient, "c"}}, []Limit{req.ClientLimit})
	if err != nil {
		t.Fatal(err)
	}
	if u := us[0]; u.TPM.Remaining != 1000-30-100 || u.InFlight != 0 {
		t.Fatalf("client tokens: %+v", u.TPM)
	}
}
