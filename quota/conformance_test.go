package quota

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the time zones of budgets, on any machine
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

// exact reports whether a limiter decides each request against the shared
// state itself. Lease mode admits from batches it holds: it does not
// report the rate-limit meters of a decision, and a batch leased before a
// request overran its reservation is still used (the overrun counts from
// the next refill).
func exact(l Limiter) bool {
	_, lease := l.(flushing)
	return !lease
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
	req.Reserve = Amount{Tokens: 400}
	d1 := mustAcquire(t, l, req)
	d2 := mustAcquire(t, l, req)
	if !d1.Allowed || !d2.Allowed {
		t.Fatal("two 400-token reservations must fit 1000")
	}
	if d := mustAcquire(t, l, req); d.Allowed || d.Reason != ReasonTPM {
		t.Fatalf("third must be refused for tpm, got %+v", d)
	}
	// The first used only 100 tokens: 300 come back.
	if err := l.Settle(context.Background(), d1.Grant, Amount{Tokens: 100}); err != nil {
		t.Fatal(err)
	}
	if d := mustAcquire(t, l, req); !d.Allowed {
		t.Fatalf("after settling 100 of 400, 500 used: 400 more must fit, got %+v", d)
	}
	// The second used far more than reserved: the window is over-full.
	if err := l.Settle(context.Background(), d2.Grant, Amount{Tokens: 900}); err != nil {
		t.Fatal(err)
	}
	small := req
	small.Reserve = Amount{Tokens: 1}
	if d := mustAcquire(t, l, small); d.Allowed && exact(l) {
		t.Fatalf("window holds 1400 of 1000, must refuse, got %+v", d)
	}
	clk.Advance(61 * time.Second)
	if d := mustAcquire(t, l, req); !d.Allowed {
		t.Fatal("the window must empty after 61s")
	}
}

func testTooLarge(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{TPM: 100})
	req.Reserve = Amount{Tokens: 101}
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
	_ = l.Settle(context.Background(), g1.Grant, Amount{Tokens: 0})
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
	if exact(l) && (d.Requests.Limit != 1 || d.Requests.Remaining != 0) {
		t.Fatalf("headers describe the binding credential, got %+v", d.Requests)
	}
}

func testClientQuota(t *testing.T, l testLimiter, clk *clock) {
	req := Request{
		Client: "team", ClientLimit: Limit{RPM: 2, TPD: 1000}, Reserve: Amount{Tokens: 10},
		Candidates: []Candidate{{ID: "a", Limit: Limit{RPM: 1}}},
	}
	d := mustAcquire(t, l, req)
	if !d.Allowed || exact(l) && (d.Requests.Limit != 2 || d.Requests.Remaining != 1 || d.Tokens.Remaining != 990) {
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
	if u := us[0]; u.Level("rpm").Remaining != 9 {
		t.Fatalf("a client refusal must not charge the credential: %+v", u.Level("rpm"))
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
	if u := us[0]; u.Level("rpm").Remaining != 1 {
		t.Fatalf("b used %d", 2-u.Level("rpm").Remaining)
	}
}

func testLongCallCharged(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{TPM: 1000})
	req.Reserve = Amount{Tokens: 100}
	d := mustAcquire(t, l, req)
	clk.Advance(90 * time.Second) // a 90 s stream
	if err := l.Settle(context.Background(), d.Grant, Amount{Tokens: 1000}); err != nil {
		t.Fatal(err)
	}
	if d := mustAcquire(t, l, req); d.Allowed {
		t.Fatalf("a long call's real use must be charged when it ends: %+v", d)
	}
}

func testTooLargeWins(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{RPM: 1, TPM: 100})
	req.Reserve = Amount{Tokens: 10}
	mustAcquire(t, l, req)
	req.Reserve = Amount{Tokens: 200}
	d := mustAcquire(t, l, req)
	if d.Allowed || d.Reason != ReasonTooLarge || d.RetryAfter != 0 {
		t.Fatalf("a request that can never fit must say so: %+v", d)
	}
}

// testSplitKeepsClientPlace: a request that fails over holds one place in
// its client's quota, however many credentials it tries.
func testSplitKeepsClientPlace(t *testing.T, l testLimiter, clk *clock) {
	ctx := context.Background()
	req := Request{Client: "c", ClientLimit: Limit{RPM: 2, Concurrency: 1, TPM: 1000}, Reserve: Amount{Tokens: 100},
		Candidates: []Candidate{{ID: "a", Limit: Limit{Concurrency: 5}}}}
	d := mustAcquire(t, l, req)
	credPart, clientPart := d.Grant.Split()
	// The attempt on a fails; the retry goes without the client.
	if err := l.Settle(ctx, credPart, Amount{Tokens: 0}); err != nil {
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
	_ = l.Settle(ctx, d2.Grant, Amount{Tokens: 30})
	_ = l.Settle(ctx, clientPart, Amount{Tokens: 30})
	// One request charged once: the second of 2 per minute still fits.
	d3 := mustAcquire(t, l, req)
	if !d3.Allowed {
		t.Fatalf("a failed-over request must count once against the client: %+v", d3)
	}
	_ = l.Settle(ctx, d3.Grant, Amount{Tokens: 100})
	if d := mustAcquire(t, l, req); d.Allowed || d.Reason != ReasonRPM {
		t.Fatalf("two requests per minute: %+v", d)
	}
	us, err := l.Usage(ctx, []Subject{{KindClient, "c"}}, []Limit{req.ClientLimit})
	if err != nil {
		t.Fatal(err)
	}
	if u := us[0]; u.Level("tpm").Remaining != 1000-30-100 || u.InFlight != 0 {
		t.Fatalf("client tokens: %+v", u.Level("tpm"))
	}
}

// The windows of budgets and per-model limits: the same table for every
// backend.
func init() {
	conformance = append(conformance, []struct {
		name string
		run  func(t *testing.T, l testLimiter, clk *clock)
	}{
		{"CalendarBudget", testCalendarBudget},
		{"CalendarAcrossDST", testCalendarAcrossDST},
		{"CalendarWeekMonthFixed", testCalendarWeekMonthFixed},
		{"CalendarRequests", testCalendarRequests},
		{"BudgetSettledAfterItsPeriod", testBudgetSettledAfterItsPeriod},
		{"SlidingMoney", testSlidingMoney},
		{"PerModelWindows", testPerModelWindows},
		{"ChannelBudget", testChannelBudget},
		{"GroupBudget", testGroupBudget},
	}...)
}

func location(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

const dollar = 1_000_000 // micro-dollars

func budgetOf(usd int64, p Period) Window {
	return Window{Kind: Calendar, Unit: Cost, Limit: usd * dollar, Period: p}
}

func testCalendarBudget(t *testing.T, l testLimiter, clk *clock) {
	ctx := context.Background()
	berlin := location(t, "Europe/Berlin")
	day := Period{Every: Day, Location: berlin}
	req := Request{Client: "c", ClientLimit: Limit{Windows: []Window{budgetOf(10, day)}}, Reserve: Amount{Cost: 4 * dollar},
		Candidates: []Candidate{{ID: "a"}}}
	d1, d2 := mustAcquire(t, l, req), mustAcquire(t, l, req)
	if !d1.Allowed || !d2.Allowed {
		t.Fatal("two reservations of $4 fit a $10 budget")
	}
	// The clock is 2026-01-02 03:04:05 UTC, 04:04:05 in Berlin: the day
	// there ends at 23:00 UTC.
	midnight := time.Date(2026, 1, 3, 0, 0, 0, 0, berlin)
	d := mustAcquire(t, l, req)
	if d.Allowed || d.Scope != ScopeClient || d.Reason != ReasonBudget || d.RetryAfter != midnight.Sub(clk.Now()) {
		t.Fatalf("a third $4 must wait for midnight in Berlin (%v): %+v", midnight.Sub(clk.Now()), d)
	}
	// The first call cost $1: $3 come back, and the third fits.
	if err := l.Settle(ctx, d1.Grant, Amount{Cost: 1 * dollar}); err != nil {
		t.Fatal(err)
	}
	d3 := mustAcquire(t, l, req)
	if !d3.Allowed {
		t.Fatalf("$1 spent and $4 reserved leave room for $4: %+v", d3)
	}
	_ = l.Settle(ctx, d2.Grant, Amount{Cost: 4 * dollar})
	_ = l.Settle(ctx, d3.Grant, Amount{Cost: 4 * dollar})
	us, err := l.Usage(ctx, []Subject{{KindClient, "c"}}, []Limit{req.ClientLimit})
	if err != nil {
		t.Fatal(err)
	}
	// (Lease mode counts what its batches hold as used.)
	if lv, _ := us[0].Find("usd/day"); lv.Limit != 10*dollar || exact(l) && lv.Remaining != 1*dollar || !lv.Resets.Equal(midnight) {
		t.Fatalf("usage: %+v, want $1 left, resetting at %v", lv, midnight)
	}
	// A second before midnight it still holds; at midnight it starts over.
	clk.Advance(midnight.Sub(clk.Now()) - time.Second)
	if d := mustAcquire(t, l, req); d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("a second before midnight: %+v", d)
	}
	clk.Advance(time.Second)
	for range 2 {
		if d := mustAcquire(t, l, req); !d.Allowed {
			t.Fatalf("a new day: %+v", d)
		}
	}
}

// testCalendarAcrossDST: in Berlin, 2026-03-29 is 23 hours long and
// 2026-10-25 is 25: a daily budget resets at local midnight both times.
func testCalendarAcrossDST(t *testing.T, l testLimiter, clk *clock) {
	berlin := location(t, "Europe/Berlin")
	day := Period{Every: Day, Location: berlin}
	for _, tc := range []struct {
		start, midnight time.Time
		length          time.Duration
	}{
		{time.Date(2026, 3, 29, 0, 30, 0, 0, berlin), time.Date(2026, 3, 30, 0, 0, 0, 0, berlin), 23 * time.Hour},
		{time.Date(2026, 10, 25, 0, 30, 0, 0, berlin), time.Date(2026, 10, 26, 0, 0, 0, 0, berlin), 25 * time.Hour},
	} {
		if got := tc.midnight.Sub(day.Start(tc.start)); got != tc.length {
			t.Fatalf("the day of %v lasts %v, want %v", tc.start, got, tc.length)
		}
		clk.Advance(tc.start.Sub(clk.Now()))
		req := Request{Client: "c" + tc.start.Format("0102"), ClientLimit: Limit{Windows: []Window{budgetOf(1, day)}},
			Reserve: Amount{Cost: dollar}, Candidates: []Candidate{{ID: "a"}}}
		if !mustAcquire(t, l, req).Allowed {
			t.Fatal("the first dollar")
		}
		d := mustAcquire(t, l, req)
		if d.Allowed || d.RetryAfter != tc.midnight.Sub(tc.start) {
			t.Fatalf("%v: retry after %v, want %v (local midnight)", tc.start, d.RetryAfter, tc.midnight.Sub(tc.start))
		}
		clk.Advance(tc.midnight.Sub(tc.start) - time.Millisecond)
		if mustAcquire(t, l, req).Allowed {
			t.Fatalf("%v: admitted a millisecond before local midnight", tc.start)
		}
		clk.Advance(time.Millisecond)
		if !mustAcquire(t, l, req).Allowed {
			t.Fatalf("%v: refused at local midnight", tc.start)
		}
	}
}

func testCalendarWeekMonthFixed(t *testing.T, l testLimiter, clk *clock) {
	// 2026-01-02 03:04:05 UTC is a Friday.
	now := clk.Now()
	for i, tc := range []struct {
		p    Period
		ends time.Time
	}{
		{Period{Every: Week}, time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)},
		{Period{Every: Month}, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)},
		{Period{Every: Fixed, Length: 6 * time.Hour}, time.Date(2026, 1, 2, 6, 0, 0, 0, time.UTC)},
	} {
		req := Request{Client: fmt.Sprint("w", i), ClientLimit: Limit{Windows: []Window{{Kind: Calendar, Unit: Tokens, Limit: 100, Period: tc.p}}},
			Reserve: Amount{Tokens: 60}, Candidates: []Candidate{{ID: "a"}}}
		mustAcquire(t, l, req)
		d := mustAcquire(t, l, req)
		if d.Allowed || d.Reason != ReasonBudget || d.RetryAfter != tc.ends.Sub(now) {
			t.Fatalf("%v: %+v, want a wait until %v", tc.p, d, tc.ends)
		}
	}
}

func testCalendarRequests(t *testing.T, l testLimiter, clk *clock) {
	req := one("a", Limit{Windows: []Window{{Kind: Calendar, Unit: Requests, Limit: 3, Period: Period{Every: Day}}}})
	if got := admit(t, l, req, 5); got != 3 {
		t.Fatalf("admitted %d of 3 a day", got)
	}
	clk.Advance(21 * time.Hour) // past midnight UTC
	if got := admit(t, l, req, 5); got != 3 {
		t.Fatalf("the next day: admitted %d of 3", got)
	}
}

// testBudgetSettledAfterItsPeriod: a call that starts before midnight and
// ends after is charged to the new day, whatever it reserved the old one.
func testBudgetSettledAfterItsPeriod(t *testing.T, l testLimiter, clk *clock) {
	ctx := context.Background()
	day := Period{Every: Day}
	midnight := time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)
	clk.Advance(midnight.Sub(clk.Now()) - time.Second)
	req := Request{Client: "c", ClientLimit: Limit{Windows: []Window{budgetOf(10, day)}}, Reserve: Amount{Cost: 4 * dollar},
		Candidates: []Candidate{{ID: "a"}}}
	d := mustAcquire(t, l, req)
	clk.Advance(2 * time.Second)
	if err := l.Settle(ctx, d.Grant, Amount{Cost: 3 * dollar}); err != nil {
		t.Fatal(err)
	}
	us, _ := l.Usage(ctx, []Subject{{KindClient, "c"}}, []Limit{req.ClientLimit})
	if lv := us[0].Level("usd/day"); lv.Remaining != 7*dollar {
		t.Fatalf("the new day: %+v, want $7 left", lv)
	}
}

func testSlidingMoney(t *testing.T, l testLimiter, clk *clock) {
	ctx := context.Background()
	w := Window{Kind: Sliding, Unit: Cost, Limit: dollar, Width: time.Hour}
	req := one("a", Limit{Windows: []Window{w}})
	req.Reserve = Amount{Cost: 600_000}
	d := mustAcquire(t, l, req)
	if !d.Allowed {
		t.Fatal("first")
	}
	if d2 := mustAcquire(t, l, req); d2.Allowed || d2.Reason != ReasonBudget {
		t.Fatalf("$1.20 of $1 an hour: %+v", d2)
	}
	_ = l.Settle(ctx, d.Grant, Amount{Cost: 100_000})
	if d2 := mustAcquire(t, l, req); !d2.Allowed {
		t.Fatalf("$0.10 spent: %+v", d2)
	}
	if w.Name() != "usd/1h0m0s" {
		t.Fatalf("name %q", w.Name())
	}
}

// testPerModelWindows: a credential (and a client key) may limit one
// model's calls apart from the others'.
func testPerModelWindows(t *testing.T, l testLimiter, clk *clock) {
	ctx := context.Background()
	cred := Limit{RPM: 5, Windows: []Window{{Kind: Sliding, Unit: Requests, Limit: 2, Width: time.Minute, Model: "big"}}}
	big := Request{Model: "big", Candidates: []Candidate{{ID: "a", Limit: cred}}}
	small := Request{Model: "small", Candidates: []Candidate{{ID: "a", Limit: cred}}}
	if got := admit(t, l, big, 4); got != 2 {
		t.Fatalf("big: admitted %d, want its own 2", got)
	}
	d := mustAcquire(t, l, big)
	if d.Allowed || d.Reason != ReasonRPM {
		t.Fatalf("big refused by its rpm: %+v", d)
	}
	if got := admit(t, l, small, 5); got != 3 {
		t.Fatalf("small: admitted %d, want the 3 left of 5", got)
	}
	us, err := l.Usage(ctx, []Subject{{KindCredential, "a"}}, []Limit{cred})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := us[0].Find("rpm@big")
	if all := us[0].Level("rpm"); all.Remaining != 0 || b.Limit != 2 || b.Remaining != 0 || b.Model != "big" {
		t.Fatalf("usage: %+v", us[0].Windows)
	}
	// A client key's model limit, with concurrency.
	client := Limit{Windows: []Window{{Kind: Concurrent, Unit: Requests, Limit: 1, Model: "big"}}}
	req := Request{Client: "k", ClientLimit: client, Model: "big", Candidates: []Candidate{{ID: "b"}}}
	g := mustAcquire(t, l, req)
	if d := mustAcquire(t, l, req); !g.Allowed || d.Allowed || d.Reason != ReasonConcurrency {
		t.Fatalf("one big call at a time: %+v", d)
	}
	req.Model = "small"
	if d := mustAcquire(t, l, req); !d.Allowed {
		t.Fatalf("small calls are not limited: %+v", d)
	}
	_ = l.Settle(ctx, g.Grant, Amount{})
	req.Model = "big"
	if d := mustAcquire(t, l, req); !d.Allowed {
		t.Fatalf("the slot is free again: %+v", d)
	}
}

// testChannelBudget: a channel's budget is shared by its credentials.
func testChannelBudget(t *testing.T, l testLimiter, clk *clock) {
	ctx := context.Background()
	pool := Limit{Windows: []Window{budgetOf(5, Period{Every: Month})}}
	req := Request{Reserve: Amount{Cost: 2 * dollar}, Candidates: []Candidate{
		{ID: "a", Pool: "ch", PoolLimit: pool},
		{ID: "b", Pool: "ch", PoolLimit: pool},
		{ID: "other"},
	}}
	var got []string
	var grants []Grant
	for range 4 {
		d := mustAcquire(t, l, req)
		got = append(got, d.Grant.ID)
		grants = append(grants, d.Grant)
	}
	if fmt.Sprint(got) != "[a a other other]" {
		t.Fatalf("grants %v: the channel's $5 hold two $2 reservations", got)
	}
	for _, g := range grants[:2] {
		_ = l.Settle(ctx, g, Amount{Cost: dollar / 2})
	}
	if d := mustAcquire(t, l, req); d.Grant.ID != "a" {
		t.Fatalf("after settling $1 of $4: %+v", d)
	}
}

// testGroupBudget: the clients of a group share its budget, each within
// its own; a request that fails over keeps its place in both.
func testGroupBudget(t *testing.T, l testLimiter, clk *clock) {
	ctx := context.Background()
	day := Period{Every: Day}
	group := Limit{Windows: []Window{budgetOf(5, day)}}
	own := Limit{Windows: []Window{budgetOf(4, day)}}
	req := func(client string) Request {
		return Request{Client: client, ClientLimit: own, Group: "eng", GroupLimit: group,
			Reserve: Amount{Cost: 2 * dollar}, Candidates: []Candidate{{ID: "a"}}}
	}
	a1, a2 := mustAcquire(t, l, req("alice")), mustAcquire(t, l, req("alice"))
	if !a1.Allowed || !a2.Allowed {
		t.Fatal("alice's $4")
	}
	if d := mustAcquire(t, l, req("alice")); d.Allowed || d.Scope != ScopeClient {
		t.Fatalf("alice's own budget: %+v", d)
	}
	d := mustAcquire(t, l, req("bob"))
	if d.Allowed || d.Scope != ScopeGroup || d.Reason != ReasonBudget {
		t.Fatalf("bob within his own budget, over the group's: %+v", d)
	}
	// Alice's first call fails on its credential and is retried: its
	// place in the budgets goes with the request.
	credPart, clientPart := a1.Grant.Split()
	if clientPart.Group != "eng" || credPart.Group != "" {
		t.Fatalf("split: %+v / %+v", credPart, clientPart)
	}
	_ = l.Settle(ctx, credPart, Amount{})
	_ = l.Settle(ctx, clientPart, Amount{Cost: dollar / 2})
	_ = l.Settle(ctx, a2.Grant, Amount{Cost: dollar / 2})
	if d := mustAcquire(t, l, req("bob")); !d.Allowed {
		t.Fatalf("$1 of the group's $5 spent: %+v", d)
	}
	us, err := l.Usage(ctx, []Subject{{KindGroup, "eng"}}, []Limit{group})
	if err != nil {
		t.Fatal(err)
	}
	if lv := us[0].Level("usd/day"); lv.Limit != 5*dollar || exact(l) && lv.Remaining != 2*dollar {
		t.Fatalf("the group: %+v", lv)
	}
}
