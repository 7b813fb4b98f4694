package config

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Fallback is a model's fallback chain: when no credential of Model can
// answer a request for one of the reasons On, before its first byte, the
// request is tried on the models To, in order.
type Fallback struct {
	Model string   `yaml:"model" json:"model"`
	To    []string `yaml:"to" json:"to"`
	// On lists the reasons that fall back: rate_limit (every credential
	// at its limit, or answering 429), unavailable (breakers open,
	// unreachable, 5xx), timeout, context_window (the prompt is too long
	// for the model), content_policy (the provider refused the content).
	// Default: rate_limit, unavailable, timeout.
	On []string `yaml:"on,omitempty" json:"on,omitempty"`
}

// FallbackReasons are the reasons a request may fall back for.
var FallbackReasons = []string{"rate_limit", "unavailable", "timeout", "context_window", "content_policy"}

// DefaultFallbackOn is On when a chain sets none.
var DefaultFallbackOn = []string{"rate_limit", "unavailable", "timeout"}

// Latency tunes the latency strategy.
type Latency struct {
	// Alpha is the weight of each new time-to-first-byte sample in a
	// credential's moving average (EWMA). Default 0.2: a sample's weight
	// halves after about three more.
	Alpha float64 `yaml:"alpha,omitempty" json:"alpha,omitempty"`
	// Explore is the share of requests that try a random candidate first,
	// so that a credential that recovered is noticed. Default 0.05.
	Explore float64 `yaml:"explore,omitempty" json:"explore,omitempty"`
}

func (c *Config) provisionRouting() {
	r := &c.Routing
	r.Latency.Alpha = or(r.Latency.Alpha, 0.2)
	r.Latency.Explore = or(r.Latency.Explore, 0.05)
	for i := range r.Fallbacks {
		if len(r.Fallbacks[i].On) == 0 {
			r.Fallbacks[i].On = slices.Clone(DefaultFallbackOn)
		}
	}
}

// validateFallbacks checks the chains: each model falls back once, to
// models some channel serves, with known reasons, and no chain leads
// back to where it started.
func (c *Config) validateFallbacks(v *validator, served map[string]bool) {
	r := c.Routing
	if a := r.Latency.Alpha; a <= 0 || a > 1 || math.IsNaN(a) {
		v.add("routing.latency.alpha", "must be above 0 and at most 1")
	}
	if e := r.Latency.Explore; e < 0 || e >= 1 || math.IsNaN(e) {
		v.add("routing.latency.explore", "must be at least 0 and below 1")
	}
	next := map[string][]string{}
	from := map[string]int{}
	for i, f := range r.Fallbacks {
		p := fmt.Sprintf("routing.fallbacks[%d]", i)
		key := ModelKey(f.Model)
		switch {
		case f.Model == "":
			v.add(p+".model", "required")
		case !served[key]:
			v.add(p+".model", "model %q is not served by any enabled channel", f.Model)
		}
		if j, dup := from[key]; dup && f.Model != "" {
			v.add(p+".model", "model %q already has a chain (routing.fallbacks[%d]): give each model one", f.Model, j)
		}
		from[key] = i
		if len(f.To) == 0 {
			v.add(p+".to", "at least one model to fall back to")
		}
		for j, to := range f.To {
			switch {
			case !served[ModelKey(to)]:
				v.add(fmt.Sprintf("%s.to[%d]", p, j), "model %q is not served by any enabled channel", to)
			case ModelKey(to) == key:
				v.add(fmt.Sprintf("%s.to[%d]", p, j), "a model cannot fall back to itself")
			}
			next[key] = append(next[key], ModelKey(to))
		}
		for j, on := range f.On {
			if !slices.Contains(FallbackReasons, on) {
				v.add(fmt.Sprintf("%s.on[%d]", p, j), "unknown reason %q (want one of %s)", on, strings.Join(FallbackReasons, ", "))
			}
		}
	}
	// A chain is followed model by model (a fallback's own chain is not:
	// see Chain), but a cycle across chains is refused: it says the
	// operator meant something else.
	for i, f := range r.Fallbacks {
		if path := cycle(next, ModelKey(f.Model)); path != "" {
			v.add(fmt.Sprintf("routing.fallbacks[%d]", i), "the chains loop: %s", path)
		}
	}
}

// cycle finds a path of fallbacks from start back to start.
func cycle(next map[string][]string, start string) string {
	seen := map[string]bool{}
	var walk func(at string, path []string) string
	walk = func(at string, path []string) string {
		for _, to := range next[at] {
			if to == start {
				return strings.Join(append(path, to), " → ")
			}
			if !seen[to] {
				seen[to] = true
				if p := walk(to, append(path, to)); p != "" {
					return p
				}
			}
		}
		return ""
	}
	return walk(start, []string{start})
}

// Chain returns the models a request for model falls back to, and the
// reasons it does, or nil. Only the requested model's own chain is
// followed: a fallback model's chain is not (it would make a request
// wander further than the operator chose).
func (r Routing) Chain(model string) ([]string, []string) {
	for _, f := range r.Fallbacks {
		if ModelKey(f.Model) == ModelKey(model) {
			return f.To, f.On
		}
	}
	return nil, nil
}
