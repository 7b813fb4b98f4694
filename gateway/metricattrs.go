package gateway

import (
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Every call records about eight measurements, each with a set of
// labels (model, channel, credential, status, …). Building a set sorts
// and copies its attributes: a few hundred nanoseconds and allocations
// each, for label tuples that repeat from call to call. attrSets keeps
// the built sets.

// maxAttrSets bounds the sets kept. Labels are bounded already (model
// labels by the metric label policy, the rest by configuration); past
// the bound, sets are built per call as without the cache.
const maxAttrSets = 4096

// attrKey names one label tuple: which measurement it is for and the
// labels' values, in the order that measurement gives them.
type attrKey struct {
	kind attrKind
	s    [4]string
	n    int
	b    bool
}

// attrKind tells apart tuples of different measurements whose values
// happen to be equal.
type attrKind uint8

const (
	attrsRequest attrKind = iota
	attrsAttempt
	attrsFailover
	attrsTokenUsage
	attrsTokens
	attrsCost
	attrsUnpriced
	attrsTTFT
)

// attrSets is a bounded cache of measurement options. The zero value is
// ready to use.
type attrSets struct {
	m sync.Map // attrKey → metric.MeasurementOption
	n atomic.Int64
}

// get returns the option for k, built from attrs the first time (attrs
// must be what k names).
func (c *attrSets) get(k attrKey, attrs ...attribute.KeyValue) metric.MeasurementOption {
	if o, ok := c.m.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	// A copy: NewSet sorts what it is given, and attrs stays on the
	// caller's stack when the set is cached.
	o := metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue(nil), attrs...)...))
	if c.n.Load() < maxAttrSets {
		if _, loaded := c.m.LoadOrStore(k, o); !loaded {
			c.n.Add(1)
		}
	}
	return o
}
