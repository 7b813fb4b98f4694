package quota

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Limits are data: a subject's limit is a list of windows, each a value
// saying what it counts, over which period, up to how much, and for which
// model. The backends (Memory, Redis, Leased) handle every window the
// same way whatever it counts, so that a new kind of limit is a new
// value, not new code in each of them. Between Go and the Lua scripts a
// window travels in one encoding (encodeWindows and read_windows in
// lua/prelude.lua).

// Unit is what a window counts.
type Unit uint8

// Units.
const (
	Requests Unit = 1 + iota
	Tokens
	// Cost is money, in micro-dollars (1e-6 USD).
	Cost
)

// String names a unit.
func (u Unit) String() string {
	switch u {
	case Requests:
		return "requests"
	case Tokens:
		return "tokens"
	case Cost:
		return "usd"
	}
	return "unit" + strconv.Itoa(int(u))
}

// MarshalText names the unit in JSON.
func (u Unit) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// Kind is how a window counts over time.
type Kind uint8

// Kinds of windows.
const (
	// Rate is a token bucket (GCRA): one unit every Width, Limit at once.
	Rate Kind = 1 + iota
	// Sliding counts the units of any trailing Width (60 slots; it may
	// under-count room by one slot, never over-admit).
	Sliding
	// Calendar counts the units of the current Period, which resets at
	// the period's start (midnight, Monday, the 1st, in its time zone).
	Calendar
	// Concurrent counts requests in flight.
	Concurrent
)

// Window is one limit of a subject. The zero Window limits nothing and
// is never encoded.
type Window struct {
	Kind  Kind
	Unit  Unit  // Requests for Rate and Concurrent
	Limit int64 // most units per period; the burst of a Rate; slots of Concurrent
	// Width is a Sliding window's width, or a Rate's interval between
	// two units.
	Width time.Duration
	// Period is a Calendar window's period.
	Period Period
	// Model, when set, limits only the calls of that model (its
	// config.ModelKey); "" counts every call.
	Model string
}

// IsZero reports whether w limits nothing.
func (w Window) IsZero() bool { return w.Limit <= 0 }

// ID names the window's state within its subject: stable across changes
// of its Limit, distinct for every other difference.
func (w Window) ID() string {
	var id string
	switch w.Kind {
	case Rate:
		id = "q"
	case Concurrent:
		id = "c"
	case Sliding:
		id = unitLetter(w.Unit) + strconv.FormatInt(int64(w.Width/time.Second), 10)
	case Calendar:
		id = unitLetter(w.Unit) + ":" + w.Period.id()
	}
	if w.Model != "" {
		id += "@" + w.Model
	}
	return id
}

func unitLetter(u Unit) string {
	switch u {
	case Tokens:
		return "t"
	case Cost:
		return "$"
	}
	return "r"
}

// Name is how operators read the window: qps, rpm, tpd, concurrency,
// usd/month, tokens/day, with "@model" for a model's own window.
func (w Window) Name() string {
	var n string
	switch {
	case w.Kind == Rate:
		n = "qps"
	case w.Kind == Concurrent:
		n = "concurrency"
	case w.Kind == Sliding && w.Width == time.Minute && w.Unit != Cost:
		n = string(unitLetter(w.Unit)) + "pm"
	case w.Kind == Sliding && w.Width == 24*time.Hour && w.Unit != Cost:
		n = string(unitLetter(w.Unit)) + "pd"
	case w.Kind == Sliding:
		n = w.Unit.String() + "/" + w.Width.String()
	default:
		n = w.Unit.String() + "/" + w.Period.String()
	}
	if w.Model != "" {
		n += "@" + w.Model
	}
	return n
}

// Reason is the refusal reason of a full window.
func (w Window) Reason() Reason {
	switch name, _, _ := strings.Cut(w.Name(), "@"); {
	case w.Kind == Calendar:
		return ReasonBudget
	case name == "qps", name == "rpm", name == "rpd", name == "tpm", name == "tpd", name == "concurrency":
		return Reason(name)
	case w.Unit == Tokens:
		return ReasonTokens
	case w.Unit == Cost:
		return ReasonBudget
	}
	return ReasonRequests
}

// Applies reports whether the window counts calls of a model.
func (w Window) Applies(model string) bool { return w.Model == "" || w.Model == model }

// Every is how a calendar period repeats.
type Every uint8

// Periods.
const (
	Day Every = 1 + iota
	Week
	Month
	// Fixed periods of Length, counted from the Unix epoch.
	Fixed
)

// Period is when a Calendar window resets. The zero Location is UTC.
type Period struct {
	Every    Every
	Length   time.Duration // Fixed only
	Location *time.Location
}

func (p Period) loc() *time.Location {
	if p.Location == nil {
		return time.UTC
	}
	return p.Location
}

// String names the period: day, week, month, or its length.
func (p Period) String() string {
	switch p.Every {
	case Day:
		return "day"
	case Week:
		return "week"
	case Month:
		return "month"
	}
	return p.Length.String()
}

func (p Period) id() string {
	switch p.Every {
	case Fixed:
		return "f" + strconv.FormatInt(p.Length.Microseconds(), 10)
	}
	return p.String()[:1] + ":" + p.loc().String()
}

// Start returns the start of the period t is in.
func (p Period) Start(t time.Time) time.Time {
	if p.Every == Fixed {
		n := p.Length.Microseconds()
		us := t.UnixMicro()
		return time.UnixMicro(us - ((us%n)+n)%n)
	}
	t = t.In(p.loc())
	y, m, d := t.Date()
	switch p.Every {
	case Week:
		back := (int(t.Weekday()) + 6) % 7 // weeks start on Monday
		return time.Date(y, m, d-back, 0, 0, 0, 0, p.loc())
	case Month:
		return time.Date(y, m, 1, 0, 0, 0, 0, p.loc())
	}
	return time.Date(y, m, d, 0, 0, 0, 0, p.loc())
}

// Next returns the start of the period after the one starting at start.
// Calendar arithmetic keeps local midnight across daylight saving
// changes: a day is 23 or 25 hours long then.
func (p Period) Next(start time.Time) time.Time {
	if p.Every == Fixed {
		return start.Add(p.Length)
	}
	s := start.In(p.loc())
	y, m, d := s.Date()
	switch p.Every {
	case Week:
		return time.Date(y, m, d+7, 0, 0, 0, 0, p.loc())
	case Month:
		return time.Date(y, m+1, 1, 0, 0, 0, 0, p.loc())
	}
	return time.Date(y, m, d+1, 0, 0, 0, 0, p.loc())
}

// boundaries returns the starts of the period before the one now is in,
// of that one, of the next and of the one after, in µs: the script picks
// the period its own clock is in among the three, so that an instance
// whose clock is a little off the Redis server's still agrees with it.
func (p Period) boundaries(now time.Time) [4]int64 {
	cur := p.Start(now)
	prev := p.Start(cur.Add(-time.Microsecond))
	next := p.Next(cur)
	return [4]int64{prev.UnixMicro(), cur.UnixMicro(), next.UnixMicro(), p.Next(next).UnixMicro()}
}

// Limit is everything that limits one subject (a credential, a channel,
// a client key). Its named fields are the common windows; Windows adds
// any other (per-model limits, budgets). The zero Limit limits nothing.
type Limit struct {
	// QPS is the sustained request rate of a token bucket (GCRA).
	QPS float64 `json:"qps,omitempty"`
	// Burst is how many requests may arrive at once on an idle bucket.
	// Zero means max(1, ceil(QPS)).
	Burst int64 `json:"burst,omitempty"`
	// RPM and RPD cap requests in any sliding 60 s and 24 h window.
	RPM int64 `json:"rpm,omitempty"`
	RPD int64 `json:"rpd,omitempty"`
	// TPM and TPD cap tokens in any sliding 60 s and 24 h window. A
	// request reserves its estimate when admitted and settles its real
	// usage when it ends.
	TPM int64 `json:"tpm,omitempty"`
	TPD int64 `json:"tpd,omitempty"`
	// Concurrency caps requests in flight.
	Concurrency int64 `json:"concurrency,omitempty"`
	// Windows are more windows: per-model limits, budgets.
	Windows []Window `json:"windows,omitempty"`
}

// IsZero reports whether l enforces nothing.
func (l Limit) IsZero() bool { return len(l.All("")) == 0 && !l.anyModel() }

func (l Limit) anyModel() bool {
	for _, w := range l.Windows {
		if !w.IsZero() {
			return true
		}
	}
	return false
}

// burst returns the effective bucket size.
func (l Limit) burst() int64 {
	if l.Burst > 0 {
		return l.Burst
	}
	b := int64(l.QPS)
	if float64(b) < l.QPS {
		b++
	}
	return max(b, 1)
}

// All returns the windows of l that count a call of model, the named
// fields first ("" as model: the windows of every model only).
func (l Limit) All(model string) []Window {
	// Counted first: one allocation of the right size, none for a Limit
	// without windows (most clients), on a path every call takes.
	fixed := [...]Window{
		{Kind: Sliding, Unit: Requests, Limit: l.RPM, Width: time.Minute},
		{Kind: Sliding, Unit: Requests, Limit: l.RPD, Width: 24 * time.Hour},
		{Kind: Sliding, Unit: Tokens, Limit: l.TPM, Width: time.Minute},
		{Kind: Sliding, Unit: Tokens, Limit: l.TPD, Width: 24 * time.Hour},
		{Kind: Concurrent, Unit: Requests, Limit: l.Concurrency},
	}
	counts := func(w Window) bool { return !w.IsZero() && (w.Model == "" || (model != "" && w.Model == model)) }
	n := 0
	if l.QPS > 0 {
		n++
	}
	for _, w := range fixed {
		if w.Limit > 0 {
			n++
		}
	}
	for _, w := range l.Windows {
		if counts(w) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]Window, 0, n)
	if l.QPS > 0 {
		out = append(out, Window{Kind: Rate, Unit: Requests, Limit: l.burst(), Width: micros(qpsInterval(l.QPS))})
	}
	for _, w := range fixed {
		if w.Limit > 0 {
			out = append(out, w)
		}
	}
	for _, w := range l.Windows {
		if counts(w) {
			out = append(out, w)
		}
	}
	return out
}

// Every returns every window of l, of every model.
func (l Limit) Every() []Window {
	out := l.All("")
	for _, w := range l.Windows {
		if !w.IsZero() && w.Model != "" {
			out = append(out, w)
		}
	}
	return out
}

// concurrent reports whether any window of ws counts requests in flight.
func concurrent(ws []Window) bool {
	for _, w := range ws {
		if w.Kind == Concurrent {
			return true
		}
	}
	return false
}

// Amount is what a request reserves (its estimate) or used, beyond being
// one request.
type Amount struct {
	Tokens int64 `json:"tokens"`
	Cost   int64 `json:"cost_micro_usd"` // micro-dollars
}

// of returns the amount of a unit, one for requests.
func (a Amount) of(u Unit) int64 {
	switch u {
	case Tokens:
		return a.Tokens
	case Cost:
		return a.Cost
	}
	return 1
}

// Sub returns a - b.
func (a Amount) Sub(b Amount) Amount {
	return Amount{Tokens: a.Tokens - b.Tokens, Cost: a.Cost - b.Cost}
}

// IsZero reports whether a is nothing.
func (a Amount) IsZero() bool { return a == Amount{} }

func (a Amount) clamp() Amount { return Amount{Tokens: max(0, a.Tokens), Cost: max(0, a.Cost)} }

// encodeWindows appends a subject's windows in the encoding the scripts
// read (read_windows in lua/prelude.lua): their count, then for each its
// id, its code (kind*4 + unit), its limit and its parameters: a Rate's
// interval or a Sliding window's width (µs), a Calendar window's four
// period boundaries around now (µs), none for a Concurrent window.
func encodeWindows(args []any, ws []Window, now time.Time) []any {
	args = append(args, len(ws))
	for _, w := range ws {
		args = append(args, w.ID(), int(w.Kind)*4+int(w.Unit), w.Limit)
		switch w.Kind {
		case Rate, Sliding:
			args = append(args, w.Width.Microseconds())
		case Calendar:
			b := w.Period.boundaries(now)
			args = append(args, b[0], b[1], b[2], b[3])
		}
	}
	return args
}

// slotsWidth is a Sliding window's slot width in µs.
func slotsWidth(w Window) int64 { return max(1, w.Width.Microseconds()/windowSlots) }

// money formats micro-dollars as a decimal string of dollars.
func money(micros int64) string {
	sign := ""
	if micros < 0 {
		sign, micros = "-", -micros
	}
	return fmt.Sprintf("%s%d.%06d", sign, micros/1e6, micros%1e6)
}

// ceilDiv divides rounding up, for positive b.
func ceilDiv(a, b int64) int64 { return int64(math.Ceil(float64(a) / float64(b))) }
