package quota

import "time"

// The math every backend shares. Times are microseconds since the Unix
// epoch so that the Lua scripts, which only have doubles, compute the
// same numbers exactly.

// gcra is one step of the generic cell rate algorithm: a token bucket
// that refills one token every interval and holds burst tokens. tat is
// the theoretical arrival time stored for the bucket (0 when new).
// It returns whether cost tokens may be taken now, the new tat to store
// when they are, how long until a refused take would succeed, and how
// many tokens are left after an accepted take.
func gcra(tat, now, interval, burst, cost int64) (ok bool, newTAT, retry, remaining int64) {
	if tat < now {
		tat = now
	}
	newTAT = tat + interval*cost
	allowAt := newTAT - interval*burst
	if now < allowAt {
		return false, 0, allowAt - now, 0
	}
	return true, newTAT, 0, (now - allowAt) / interval
}

// Sliding windows are kept as windowSlots counters of width/windowSlots
// each. A window counts the slot "now" falls in and the windowSlots slots
// before it, so it always spans at least a full width: it may under-count
// room by up to one slot, never over-admit.
const windowSlots = 60

// slotOf returns the slot number of a time for a window of width w.
func slotOf(now, w int64) int64 { return now / (w / windowSlots) }

// window is a ring of slot counters for one sliding window.
type window struct {
	num   [windowSlots + 1]int64 // slot number held by each ring cell
	count [windowSlots + 1]int64
}

// sum returns the total over the slots that count at slot cur.
func (w *window) sum(cur int64) int64 {
	var total int64
	for i, n := range w.num {
		if n >= cur-windowSlots && n <= cur {
			total += w.count[i]
		}
	}
	return total
}

// add records n units in slot cur.
func (w *window) add(cur, n int64) {
	i := cur % (windowSlots + 1)
	if w.num[i] != cur {
		w.num[i], w.count[i] = cur, 0
	}
	w.count[i] = max(0, w.count[i]+n)
}

// adjust corrects the reservation recorded in slot num to the units
// really used: by used-reserved while that slot is in the window. Once
// it has left (a call longer than the window), all of used is charged to
// slot cur: the window cannot tell when the units were spent, so it
// assumes the latest moment.
func (w *window) adjust(cur, num, reserved, used int64) {
	i := num % (windowSlots + 1)
	switch {
	case w.num[i] == num && num >= cur-windowSlots:
		w.count[i] = max(0, w.count[i]+used-reserved)
	case num < cur-windowSlots && used > 0:
		w.add(cur, used)
	}
}

// check reports whether cost more units fit under limit at time now, and
// if not how long until enough old slots have left the window.
func (w *window) check(now, width, limit, cost int64) (ok bool, used, retry int64) {
	cur := slotOf(now, width)
	used = w.sum(cur)
	if used+cost <= limit {
		return true, used, 0
	}
	excess := used + cost - limit
	slotWidth := width / windowSlots
	var freed int64
	for n := cur - windowSlots; n <= cur; n++ {
		i := n % (windowSlots + 1)
		if w.num[i] != n {
			continue
		}
		freed += w.count[i]
		if freed >= excess {
			return false, used, (n+windowSlots+1)*slotWidth - now
		}
	}
	return false, used, (cur+windowSlots+1)*slotWidth - now
}

// reset is how long until every unit counted at now has left the window:
// until the current slot leaves it (0 when the window is empty).
func (w *window) reset(now, width int64) int64 {
	cur := slotOf(now, width)
	if w.sum(cur) == 0 {
		return 0
	}
	return (cur+windowSlots+1)*(width/windowSlots) - now
}

// micros converts microseconds to a Duration.
func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// tighter returns the meter with less room left; zero meters lose.
func tighter(a, b Meter) Meter {
	switch {
	case a.Limit == 0:
		return b
	case b.Limit == 0:
		return a
	case b.Remaining < a.Remaining:
		return b
	}
	return a
}
