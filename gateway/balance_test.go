package gateway

import (
	"fmt"
	"math"
	"testing"
)

func testCands(weights []int, priorities []int) []candidate {
	cands := make([]candidate, len(weights))
	for i, w := range weights {
		p := 0
		if priorities != nil {
			p = priorities[i]
		}
		cands[i] = candidate{cred: &credential{id: fmt.Sprint("c", i), weight: w, ch: &channel{priority: p}}, model: "m"}
	}
	return cands
}

func ids(cands []candidate) string {
	s := ""
	for _, c := range cands {
		s += c.cred.id + " "
	}
	return s
}

// firstCounts orders a fresh copy n times and counts who comes first.
func firstCounts(s strategy, base []candidate, n int) map[string]int {
	counts := map[string]int{}
	for range n {
		cands := append([]candidate(nil), base...)
		orderTiers(s, "m", cands)
		counts[cands[0].cred.id]++
	}
	return counts
}

func TestStrategies(t *testing.T) {
	const n = 20000
	tests := []struct {
		name     string
		strategy strategy
		weights  []int
		want     []float64 // expected share of first picks
	}{
		{"weighted 1:3", weightedOrder{}, []int{1, 3}, []float64{0.25, 0.75}},
		{"weighted 1:1:2", weightedOrder{}, []int{1, 1, 2}, []float64{0.25, 0.25, 0.5}},
		{"random ignores weights", randomOrder{}, []int{1, 9}, []float64{0.5, 0.5}},
		{"first always first", firstOrder{}, []int{1, 9}, []float64{1, 0}},
		{"round robin is exact", &roundRobin{}, []int{1, 1, 1}, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counts := firstCounts(tt.strategy, testCands(tt.weights, nil), n)
			for i, want := range tt.want {
				got := float64(counts[fmt.Sprint("c", i)]) / n
				if math.Abs(got-want) > 0.02 {
					t.Errorf("c%d first %.3f of the time, want %.3f", i, got, want)
				}
			}
		})
	}
}

func TestRoundRobinRotatesInOrder(t *testing.T) {
	rr := &roundRobin{}
	base := testCands([]int{1, 1, 1}, nil)
	var got []string
	for range 4 {
		cands := append([]candidate(nil), base...)
		rr.order("m", cands)
		got = append(got, ids(cands))
	}
	want := []string{"c0 c1 c2 ", "c1 c2 c0 ", "c2 c0 c1 ", "c0 c1 c2 "}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	other := append([]candidate(nil), base...)
	rr.order("other-model", other)
	if ids(other) != "c0 c1 c2 " {
		t.Fatal("each key rotates on its own")
	}
}

func TestLeastBusy(t *testing.T) {
	cands := testCands([]int{1, 1, 1}, nil)
	cands[0].cred.inflight.Store(5)
	cands[1].cred.inflight.Store(0)
	cands[2].cred.inflight.Store(2)
	for range 100 {
		c := append([]candidate(nil), cands...)
		leastBusy{}.order("m", c)
		if ids(c) != "c1 c2 c0 " {
			t.Fatalf("order %q, want fewest in flight first", ids(c))
		}
	}
}

func TestPriorityTiers(t *testing.T) {
	base := testCands([]int{5, 1, 1, 1}, []int{0, 10, 10, 5})
	for range 200 {
		cands := append([]candidate(nil), base...)
		orderTiers(weightedOrder{}, "m", cands)
		tier := func(i int) int { return cands[i].cred.ch.priority }
		if tier(0) != 10 || tier(1) != 10 || tier(2) != 5 || tier(3) != 0 {
			t.Fatalf("tiers out of order: %v %v %v %v", tier(0), tier(1), tier(2), tier(3))
		}
	}
}

func TestPromote(t *testing.T) {
	cands := testCands([]int{1, 1, 1, 1}, nil)
	if !promote(cands, "c2") || ids(cands) != "c2 c0 c1 c3 " {
		t.Fatalf("got %q", ids(cands))
	}
	if promote(cands, "nope") || ids(cands) != "c2 c0 c1 c3 " {
		t.Fatal("unknown id must change nothing")
	}
}
