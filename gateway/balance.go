package gateway

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/signals"
)

// strategy orders the candidates of one priority tier. The request goes
// to the first candidate that has capacity and fails over down the order,
// so a strategy decides both the first choice and the failover order.
type strategy interface {
	order(key string, cands []candidate)
}

// newStrategy returns the strategy of a name validated by config; the
// cluster-aware ones read the board's signals.
func newStrategy(name string, board *signals.Board, explore float64) strategy {
	switch name {
	case "random":
		return randomOrder{}
	case "round_robin":
		return &roundRobin{}
	case "first":
		return firstOrder{}
	case "least_busy":
		return leastBusy{board}
	case "latency":
		return fastest{board: board, explore: explore}
	}
	return weightedOrder{}
}

// weightedOrder draws a weighted random permutation: each candidate is
// first with probability weight/total, and so on down the order
// (Efraimidis–Spirakis: sort by -ln(u)/w).
type weightedOrder struct{}

func (weightedOrder) order(_ string, cands []candidate) {
	if len(cands) < 2 {
		return
	}
	keys := make([]float64, len(cands))
	for i, c := range cands {
		keys[i] = -math.Log(1-rand.Float64()) / float64(max(c.cred.weight, 1))
	}
	sortBy(cands, keys)
}

// randomOrder shuffles: every candidate is equally likely first.
type randomOrder struct{}

func (randomOrder) order(_ string, cands []candidate) {
	rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
}

// firstOrder keeps the config order: the first credential takes all the
// traffic it has capacity for, the next ones only the overflow.
type firstOrder struct{}

func (firstOrder) order(string, []candidate) {}

// roundRobin rotates the start of the order by one for each request with
// the same key.
type roundRobin struct {
	next sync.Map // key → *atomic.Uint64
}

func (r *roundRobin) order(key string, cands []candidate) {
	if len(cands) < 2 {
		return
	}
	v, ok := r.next.Load(key)
	if !ok {
		v, _ = r.next.LoadOrStore(key, new(atomic.Uint64))
	}
	n := int((v.(*atomic.Uint64).Add(1) - 1) % uint64(len(cands)))
	slices.Reverse(cands[:n])
	slices.Reverse(cands[n:])
	slices.Reverse(cands)
}

// leastBusy puts the candidates with the fewest requests in flight first:
// on this instance (counted live) and, with a shared board, on the other
// instances (as they published them at most a second ago). Ties are
// broken at random.
type leastBusy struct{ board *signals.Board }

func (l leastBusy) order(_ string, cands []candidate) {
	keys := make([]float64, len(cands))
	for i, c := range cands {
		keys[i] = float64(c.cred.inflight.Load()+l.board.Others(c.cred.id)) + rand.Float64()*0.5
	}
	sortBy(cands, keys)
}

// fastest puts the candidates with the shortest time to first byte
// first, as the board measures it (per credential and model, across the
// cluster with a shared board). A candidate nobody has measured yet goes
// first, so that it is measured; a share of requests (explore) goes to a
// random candidate first, so that a credential that recovered is
// noticed.
type fastest struct {
	board   *signals.Board
	explore float64
}

func (f fastest) order(_ string, cands []candidate) {
	if len(cands) < 2 {
		return
	}
	if rand.Float64() < f.explore {
		rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		return
	}
	keys := make([]float64, len(cands))
	for i, c := range cands {
		d, ok := f.board.Latency(signalKey(c))
		keys[i] = float64(d)
		if !ok {
			keys[i] = -rand.Float64() // unmeasured: first, in random order
		}
	}
	sortBy(cands, keys)
}

// signalKey names a candidate in the board: its credential and model.
func signalKey(c candidate) string { return c.cred.id + "@" + config.ModelKey(c.model) }

// sortBy sorts cands by ascending keys.
func sortBy(cands []candidate, keys []float64) {
	idx := make([]int, len(cands))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(keys[a], keys[b]) })
	sorted := make([]candidate, len(cands))
	for i, j := range idx {
		sorted[i] = cands[j]
	}
	copy(cands, sorted)
}

// orderTiers sorts candidates into priority tiers, highest first, and
// orders each tier with s.
func orderTiers(s strategy, key string, cands []candidate) {
	slices.SortStableFunc(cands, func(a, b candidate) int { return cmp.Compare(b.cred.ch.priority, a.cred.ch.priority) })
	for start := 0; start < len(cands); {
		end := start + 1
		for end < len(cands) && cands[end].cred.ch.priority == cands[start].cred.ch.priority {
			end++
		}
		s.order(key+"\x00"+strconv.Itoa(cands[start].cred.ch.priority), cands[start:end])
		start = end
	}
}
