package quota

import (
	"context"
	"testing"
	"time"
)

func TestGCRA(t *testing.T) {
	const sec = int64(1e6)
	tests := []struct {
		name                  string
		tat, now              int64
		interval, burst       int64
		cost                  int64
		ok                    bool
		newTAT, retry, remain int64
	}{
		{"new bucket", 0, 10 * sec, sec, 3, 1, true, 11 * sec, 0, 2},
		{"last of burst", 12 * sec, 10 * sec, sec, 3, 1, true, 13 * sec, 0, 0},
		{"burst spent", 13 * sec, 10 * sec, sec, 3, 1, false, 0, sec, 0},
		{"stale tat", 2 * sec, 10 * sec, sec, 3, 1, true, 11 * sec, 0, 2},
		{"cost of two", 0, 10 * sec, sec, 3, 2, true, 12 * sec, 0, 1},
		{"cost over burst", 0, 10 * sec, sec, 3, 4, false, 0, sec, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, tat, retry, remain := gcra(tt.tat, tt.now, tt.interval, tt.burst, tt.cost)
			if ok != tt.ok || tat != tt.newTAT || retry != tt.retry || remain != tt.remain {
				t.Fatalf("gcra = %v %d %d %d, want %v %d %d %d", ok, tat, retry, remain, tt.ok, tt.newTAT, tt.retry, tt.remain)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	const minute = int64(60e6)
	const slot = minute / windowSlots
	var w window
	base := 1000 * minute
	w.add(slotOf(base, minute), 5)
	w.add(slotOf(base+10*slot, minute), 3)
	if ok, used, _ := w.check(base+10*slot, minute, 8, 0); !ok || used != 8 {
		t.Fatalf("used %d, want 8", used)
	}
	ok, _, retry := w.check(base+10*slot, minute, 8, 1)
	if ok || retry != 51*slot {
		t.Fatalf("retry %d, want %d (first slot leaves 61 slots after it began)", retry, 51*slot)
	}
	// Needing 6 units means both slots must leave.
	if _, _, retry := w.check(base+10*slot, minute, 8, 6); retry != 61*slot {
		t.Fatalf("retry %d, want %d", retry, 61*slot)
	}
	if ok, used, _ := w.check(base+61*slot, minute, 8, 0); !ok || used != 3 {
		t.Fatalf("after the first slot leaves: used %d, want 3", used)
	}
	w.adjust(slotOf(base+61*slot, minute), slotOf(base+10*slot, minute), 3, 1)
	if used := w.sum(slotOf(base+61*slot, minute)); used != 1 {
		t.Fatalf("adjusted: used %d, want 1", used)
	}
	w.adjust(slotOf(base+61*slot, minute), slotOf(base, minute), 5, 0) // gone: nothing to refund
	if used := w.sum(slotOf(base+61*slot, minute)); used != 1 {
		t.Fatalf("refunding a slot that left must do nothing: used %d", used)
	}
	w.adjust(slotOf(base+61*slot, minute), slotOf(base, minute), 5, 100) // gone: all use charged now
	if used := w.sum(slotOf(base+61*slot, minute)); used != 101 {
		t.Fatalf("the use of a call longer than the window must be charged now: used %d", used)
	}
}

// TestMemoryReadsClockUnderLock: a time read before waiting for the lock
// is stale by the wait, and under thousands of concurrent calls a rate
// window refused such calls as if they came early (10,000 open streams
// at qps 1,000,000 were refused "qps"). Every read of the clock happens
// with the lock held.
func TestMemoryReadsClockUnderLock(t *testing.T) {
	var m *Memory
	unlocked := 0
	m = NewMemory(MemoryConfig{Now: func() time.Time {
		if m != nil && m.mu.TryLock() {
			m.mu.Unlock()
			unlocked++
		}
		return time.Now()
	}})
	ctx := context.Background()
	big := Limit{QPS: 1e6, RPM: 1e9, TPM: 1e11}
	d, err := m.Acquire(ctx, Request{Client: "c", ClientLimit: big, Reserve: Amount{Tokens: 10},
		Candidates: []Candidate{{ID: "a", Limit: big}}})
	if err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	_ = m.Settle(ctx, d.Grant, Amount{Tokens: 5})
	_ = m.Cooldown(ctx, "a", time.Millisecond)
	_, _ = m.Usage(ctx, []Subject{{ID: "a"}}, []Limit{big})
	if unlocked > 0 {
		t.Fatalf("the clock was read %d times without the lock held", unlocked)
	}
}
