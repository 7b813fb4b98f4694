package config

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Price is what a model costs, in US dollars: per million input, cached
// input and output tokens, and per call.
type Price struct {
	Input       float64 `yaml:"input,omitempty" json:"input,omitempty"`
	Output      float64 `yaml:"output,omitempty" json:"output,omitempty"`
	CachedInput float64 `yaml:"cached_input,omitempty" json:"cached_input,omitempty"` // default: Input
	PerRequest  float64 `yaml:"per_request,omitempty" json:"per_request,omitempty"`
}

// IsZero reports whether l limits nothing (a wait timeout alone limits
// nothing).
func (l Limits) IsZero() bool {
	l.WaitTimeout = 0
	return l.Equal(Limits{})
}

// Equal reports whether l and o are the same limits.
func (l Limits) Equal(o Limits) bool {
	if len(l.Models) == 0 && len(o.Models) == 0 {
		l.Models, o.Models = nil, nil
	}
	return reflect.DeepEqual(l, o)
}

// IsZero reports whether p charges nothing.
func (p Price) IsZero() bool { return p == Price{} }

// Budget caps what a client key, a group of keys or a channel may use in
// a calendar period: dollars, tokens, requests (any of them; zero fields
// are not capped).
type Budget struct {
	USD      float64 `yaml:"usd,omitempty" json:"usd,omitempty"`
	Tokens   int64   `yaml:"tokens,omitempty" json:"tokens,omitempty"`
	Requests int64   `yaml:"requests,omitempty" json:"requests,omitempty"`
	// Period is day (default), week (from Monday), month, or a duration
	// ("12h": fixed periods from the Unix epoch).
	Period string `yaml:"period,omitempty" json:"period,omitempty"`
	// Timezone is where the period starts at midnight (an IANA name,
	// "Europe/Berlin"). Default UTC.
	Timezone string `yaml:"timezone,omitempty" json:"timezone,omitempty"`
}

// IsZero reports whether b caps nothing.
func (b Budget) IsZero() bool { return b.USD == 0 && b.Tokens == 0 && b.Requests == 0 }

// Group is a group of client keys (clients[].group) that share limits and
// budgets on top of each key's own.
type Group struct {
	Name    string   `yaml:"name" json:"name"`
	Limits  Limits   `yaml:"limits,omitempty" json:"limits,omitempty"`
	Budget  Budget   `yaml:"budget,omitempty" json:"budget,omitzero"`
	Budgets []Budget `yaml:"budgets,omitempty" json:"budgets,omitempty"`
}

// AllBudgets is budget and budgets together.
func AllBudgets(one Budget, more []Budget) []Budget {
	if one.IsZero() {
		return more
	}
	return append([]Budget{one}, more...)
}

// Billing sets how calls are priced and budgets reserved.
type Billing struct {
	// MaxOutputTokens is the output reserved for a call under a budget
	// that sets no max_tokens (nor max_completion_tokens, nor
	// max_output_tokens), and sent upstream as its cap, so that the
	// reservation bounds what the call can cost. Default 4096.
	MaxOutputTokens int64 `yaml:"max_output_tokens,omitempty" json:"max_output_tokens,omitempty"`
}

// Usage sets where usage records go and how long rollups are kept.
type Usage struct {
	// Records are one line per call, written off the request path.
	Records UsageRecords `yaml:"records,omitempty" json:"records,omitempty"`
	// Retention is how long per-client daily rollups stay in Redis.
	// Default 90 days. Without Redis, rollups are kept in memory.
	Retention Duration `yaml:"retention,omitempty" json:"retention,omitempty"`
}

// UsageRecords is the export of usage records.
type UsageRecords struct {
	// To lists the sinks: "stdout", "file" (File), "otlp" (OTel logs, to
	// the endpoint of the standard OTEL_EXPORTER_OTLP_* variables). None:
	// no records.
	To []string `yaml:"to,omitempty" json:"to,omitempty"`
	// File is the JSON-lines file of the "file" sink, appended to.
	File string `yaml:"file,omitempty" json:"file,omitempty"`
	// Queue bounds the records waiting to be written; beyond it records
	// are dropped (and counted), never slowing a request. Default 10000.
	Queue int `yaml:"queue,omitempty" json:"queue,omitempty"`
}

// UsageSinks are the sinks usage records can go to.
var UsageSinks = []string{"stdout", "file", "otlp"}

// periodKey names a budget's period in one spelling.
func (b Budget) periodKey() string {
	switch p := strings.ToLower(b.Period); p {
	case "", "day", "daily":
		return "day"
	case "week", "weekly":
		return "week"
	case "month", "monthly":
		return "month"
	default:
		return p
	}
}

// Location is a budget's time zone.
func (b Budget) Location() (*time.Location, error) {
	if b.Timezone == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(b.Timezone)
}

// PeriodLength is the length of a budget period given as a duration, or 0
// for day, week and month.
func (b Budget) PeriodLength() (time.Duration, error) {
	switch strings.ToLower(b.Period) {
	case "", "day", "daily", "week", "weekly", "month", "monthly":
		return 0, nil
	}
	d, err := ParseDuration(b.Period)
	return d.D(), err
}

func (c *Config) provisionMoney() {
	c.Billing.MaxOutputTokens = or(c.Billing.MaxOutputTokens, 4096)
	c.Usage.Retention = or(c.Usage.Retention, Duration(90*24*time.Hour))
	c.Usage.Records.Queue = or(c.Usage.Records.Queue, 10000)
}

func (c *Config) validateMoney(v *validator) {
	validatePricing(v, "pricing", c.Pricing)
	if c.Billing.MaxOutputTokens < 1 || c.Billing.MaxOutputTokens > maxTokensLimit {
		v.add("billing.max_output_tokens", "must be between 1 and %d", maxTokensLimit)
	}
	groups := map[string]int{}
	for i, g := range c.Groups {
		p := fmt.Sprintf("groups[%d]", i)
		if g.Name == "" {
			v.add(p+".name", "required")
		} else if j, dup := groups[g.Name]; dup {
			v.add(p+".name", "duplicate group name %q (also groups[%d])", g.Name, j)
		}
		groups[g.Name] = i
		validateLimits(v, p+".limits", g.Limits)
		validateBudgets(v, p, g.Budget, g.Budgets)
	}
	for i, cl := range c.Clients {
		p := fmt.Sprintf("clients[%d]", i)
		if _, ok := groups[cl.Group]; cl.Group != "" && !ok {
			v.add(p+".group", "no group %q in groups", cl.Group)
		}
		validateBudgets(v, p, cl.Budget, cl.Budgets)
	}
	for i, ch := range c.Channels {
		p := fmt.Sprintf("channels[%d]", i)
		validatePricing(v, p+".pricing", ch.Pricing)
		validateBudgets(v, p, ch.Budget, ch.Budgets)
	}
	r := c.Usage.Records
	for i, to := range r.To {
		if !slices.Contains(UsageSinks, to) {
			v.add(fmt.Sprintf("usage.records.to[%d]", i), "unknown sink %q (want one of %s)", to, strings.Join(UsageSinks, ", "))
		}
		if to == "file" && r.File == "" {
			v.add("usage.records.file", "required by the file sink")
		}
	}
	if r.Queue < 1 || r.Queue > 10_000_000 {
		v.add("usage.records.queue", "must be between 1 and 10000000")
	}
	if c.Usage.Retention < Duration(24*time.Hour) {
		v.add("usage.retention", "at least 24h: rollups are daily")
	}
}

// maxTokensLimit bounds token counts in the config.
const maxTokensLimit = 1 << 24

func validatePricing(v *validator, path string, prices map[string]Price) {
	seen := map[string]string{}
	for _, model := range slices.Sorted(maps.Keys(prices)) {
		p, mp := prices[model], path+"."+model
		if other, dup := seen[ModelKey(model)]; dup {
			v.add(mp, "same model as %s.%s (model names are compared without regard to case)", path, other)
		}
		seen[ModelKey(model)] = model
		for _, f := range []struct {
			name string
			usd  float64
		}{{"input", p.Input}, {"output", p.Output}, {"cached_input", p.CachedInput}, {"per_request", p.PerRequest}} {
			if f.usd < 0 || math.IsNaN(f.usd) || math.IsInf(f.usd, 0) || f.usd > 1e6 {
				v.add(mp+"."+f.name, "must be a price in dollars between 0 and 1000000")
			}
		}
	}
}

func validateBudgets(v *validator, path string, one Budget, more []Budget) {
	check := func(p string, b Budget) {
		if b.IsZero() {
			v.add(p, "a budget needs usd, tokens or requests")
		}
		if b.USD < 0 || math.IsNaN(b.USD) || math.IsInf(b.USD, 0) || b.USD > 1e9 {
			v.add(p+".usd", "must be between 0 and 1000000000")
		}
		if b.Tokens < 0 {
			v.add(p+".tokens", "must be > 0")
		}
		if b.Requests < 0 {
			v.add(p+".requests", "must be > 0")
		}
		if d, err := b.PeriodLength(); err != nil || d < 0 || (d > 0 && d < time.Second) {
			v.add(p+".period", "want day, week, month or a duration of at least 1s, got %q", b.Period)
		}
		if _, err := b.Location(); err != nil {
			v.add(p+".timezone", "unknown time zone %q (want an IANA name such as Europe/Berlin)", b.Timezone)
		}
	}
	if !one.IsZero() || one.Period != "" || one.Timezone != "" {
		check(path+".budget", one)
	}
	periods := map[string]string{}
	for i, b := range AllBudgets(one, more) {
		p := path + ".budget"
		if !one.IsZero() {
			i--
		}
		if i >= 0 {
			p = fmt.Sprintf("%s.budgets[%d]", path, i)
			check(p, b)
		}
		key := b.periodKey() + "|" + b.Timezone
		if other, dup := periods[key]; dup {
			v.add(p, "same period as %s: give one budget per period", other)
		}
		periods[key] = p
	}
}
