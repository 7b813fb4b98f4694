package usage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

func record(i int, client string, day time.Time) Record {
	return Record{Time: day.Add(time.Duration(i) * time.Millisecond), RequestID: fmt.Sprintf("req_%d", i), Client: client,
		Endpoint: "chat", Model: "m", Channel: "ch", Credential: "ch#0", Status: 200,
		InputTokens: 10, OutputTokens: 5, CachedTokens: 2, Cost: 1500, Priced: true, Latency: 1500 * time.Microsecond}
}

// slowSink takes a while per batch, and counts what it got.
type slowSink struct {
	delay time.Duration
	mu    sync.Mutex
	got   map[string]bool
}

func (s *slowSink) Write(_ context.Context, batch []Record) error {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range batch {
		if s.got[r.RequestID] {
			return fmt.Errorf("%s twice", r.RequestID)
		}
		s.got[r.RequestID] = true
	}
	return nil
}

func (s *slowSink) Close(context.Context) error { return nil }

// TestNothingLostBelowTheQueue: records added faster than a sink takes
// them are all written while the queue holds them; beyond it they are
// dropped and counted, never waited for.
func TestNothingLostBelowTheQueue(t *testing.T) {
	day := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		queue int
		delay time.Duration
	}{
		{"a queue that holds the load", 20000, time.Millisecond},
		{"a queue too small for a slow sink", 100, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &slowSink{delay: tc.delay, got: map[string]bool{}}
			e := New(Config{Queue: tc.queue, Sinks: []Sink{sink}})
			ctx, cancel := context.WithCancel(context.Background())
			go e.Run(ctx, 10*time.Second)
			var wg sync.WaitGroup
			var kept atomic.Int64
			var slowest atomic.Int64
			const workers, each = 8, 2000
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						start := time.Now()
						if e.Add(record(w*each+i, "c", day)) {
							kept.Add(1)
						}
						if d := int64(time.Since(start)); d > slowest.Load() {
							slowest.Store(d)
						}
					}
				})
			}
			wg.Wait()
			cancel()
			<-e.Done()
			total := int64(workers * each)
			if kept.Load()+e.Dropped() != total || e.Written() != kept.Load() || int64(len(sink.got)) != kept.Load() {
				t.Fatalf("%d added: %d kept, %d dropped, %d written, %d in the sink", total, kept.Load(), e.Dropped(), e.Written(), len(sink.got))
			}
			if tc.queue >= int(total) && e.Dropped() != 0 {
				t.Fatalf("%d dropped below the queue's bound", e.Dropped())
			}
			if tc.queue < int(total) && e.Dropped() == 0 {
				t.Fatal("a slow sink and a small queue must drop")
			}
			t.Logf("%d records, queue %d: %d written, %d dropped; the slowest Add took %v",
				total, tc.queue, e.Written(), e.Dropped(), time.Duration(slowest.Load()))
		})
	}
}

func TestLines(t *testing.T) {
	var buf bytes.Buffer
	l := NewLines(&buf, nil)
	day := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	r := record(1, "team-a", day)
	r.TTFT = 250 * time.Microsecond
	if err := l.Write(context.Background(), []Record{r, record(2, "team-b", day)}); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	var lines []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	first := lines[0]
	for k, want := range map[string]any{"client": "team-a", "cost_usd": 0.0015, "latency_ms": 1.5, "ttft_ms": 0.25,
		"input_tokens": 10.0, "cached_tokens": 2.0, "credential": "ch#0", "time": "2026-12-07T12:00:00.001Z"} {
		if first[k] != want {
			t.Errorf("%s = %v, want %v", k, first[k], want)
		}
	}
	if _, ok := first["Cost"]; ok {
		t.Error("the cost is written once, in dollars")
	}
}

// capture is an OTel log exporter that keeps what it is given.
type capture struct {
	mu      sync.Mutex
	records []sdklog.Record
}

func (c *capture) Export(_ context.Context, rs []sdklog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rs {
		c.records = append(c.records, r.Clone())
	}
	return nil
}
func (c *capture) Shutdown(context.Context) error   { return nil }
func (c *capture) ForceFlush(context.Context) error { return nil }

func TestOTelRecords(t *testing.T) {
	exp := &capture{}
	p := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
	sink := NewOTel(p, p.Shutdown)
	r := record(7, "team-a", time.Now())
	r.TraceID = "5c1ce5c1ce5c1ce5c1ce5c1ce5c1ce01"
	if err := sink.Write(context.Background(), []Record{r}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(exp.records) != 1 {
		t.Fatalf("%d records exported", len(exp.records))
	}
	got := exp.records[0]
	attrs := map[string]string{}
	got.WalkAttributes(func(kv attribute.KeyValue) bool { attrs[string(kv.Key)] = kv.Value.Emit(); return true })
	if got.EventName() != "sluice.usage" || attrs["client"] != "team-a" || attrs["cost_usd"] != "0.0015" || attrs["trace_id"] != r.TraceID {
		t.Fatalf("record %s %v", got.EventName(), attrs)
	}
}

func TestRollups(t *testing.T) {
	day := time.Date(2026, 12, 6, 23, 59, 59, 0, time.UTC)
	batch := []Record{record(0, "a", day), record(1, "a", day), record(2, "b", day), record(3, "a", day.Add(time.Second))}
	c := redistest.Start(t).Client(t)
	for _, r := range []Rollups{&MemoryRollups{Retention: 90 * 24 * time.Hour}, &RedisRollups{Client: c, Prefix: "t:", Retention: 90 * 24 * time.Hour}} {
		t.Run(fmt.Sprintf("%T", r), func(t *testing.T) {
			ctx := context.Background()
			// Two batches: the rollups add up.
			for range 2 {
				if err := r.Add(ctx, Days(batch)); err != nil {
					t.Fatal(err)
				}
			}
			all, err := r.Read(ctx, day.Add(-48*time.Hour), day.Add(48*time.Hour), "")
			if err != nil {
				t.Fatal(err)
			}
			want := []Day{
				{Date: "2026-12-06", Client: "a", Requests: 4, InputTokens: 40, OutputTokens: 20, CachedTokens: 8, Cost: 6000, CostUSD: "0.006000"},
				{Date: "2026-12-06", Client: "b", Requests: 2, InputTokens: 20, OutputTokens: 10, CachedTokens: 4, Cost: 3000, CostUSD: "0.003000"},
				{Date: "2026-12-07", Client: "a", Requests: 2, InputTokens: 20, OutputTokens: 10, CachedTokens: 4, Cost: 3000, CostUSD: "0.003000"},
			}
			if fmt.Sprint(all) != fmt.Sprint(want) {
				t.Fatalf("rollups\n got  %v\n want %v", all, want)
			}
			one, _ := r.Read(ctx, day, day, "b")
			if len(one) != 1 || one[0].Client != "b" {
				t.Fatalf("b on the 6th: %v", one)
			}
			if _, err := r.Read(ctx, day, day.Add(-48*time.Hour), ""); err == nil {
				t.Fatal("a range that ends before it starts")
			}
			if _, err := r.Read(ctx, day.Add(-500*24*time.Hour), day, ""); err == nil {
				t.Fatal("a range of 500 days")
			}
		})
	}
	if ttl := c.PTTL(context.Background(), "t:{use}:2026-12-06").Val(); ttl < 90*24*time.Hour {
		t.Fatalf("a day's rollup expires after %v", ttl)
	}
}

// flakyRollups fails its first Add, then adds up into a MemoryRollups.
type flakyRollups struct {
	MemoryRollups
	mu    sync.Mutex
	calls int
}

func (f *flakyRollups) Add(ctx context.Context, days []Day) error {
	f.mu.Lock()
	f.calls++
	first := f.calls == 1
	f.mu.Unlock()
	if first {
		return fmt.Errorf("store down")
	}
	return f.MemoryRollups.Add(ctx, days)
}

// TestRollupsBatched: the exporter gives the rollups what thousands of
// calls used in a few Adds (one per RollupEvery, not one per batch of
// records), keeps what a failed Add did not write for the next one, and
// writes the rest when it stops.
func TestRollupsBatched(t *testing.T) {
	day := time.Now().UTC()
	r := &flakyRollups{MemoryRollups: MemoryRollups{Retention: 48 * time.Hour}}
	e := New(Config{Rollups: r, RollupEvery: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	go e.Run(ctx, 10*time.Second)
	const n = 3000
	for i := range n {
		client := "a"
		if i%3 == 0 {
			client = "b"
		}
		for !e.Add(record(i, client, day)) {
			time.Sleep(time.Millisecond)
		}
		if i%100 == 0 {
			time.Sleep(5 * time.Millisecond) // spread over ~150ms: more than one tick
		}
	}
	cancel()
	<-e.Done()
	got, err := r.Read(context.Background(), day, day, "")
	if err != nil {
		t.Fatal(err)
	}
	var sum, cost int64
	for _, d := range got {
		sum += d.Requests
		cost += d.Cost
	}
	if sum != n || cost != n*1500 || len(got) != 2 {
		t.Fatalf("%d records rolled up as %v", n, got)
	}
	if r.calls < 2 || r.calls > 10 {
		t.Fatalf("%d records took %d Adds: want a few (one a tick, the failed one retried)", n, r.calls)
	}
	t.Logf("%d records in %d Adds", n, r.calls)
}
