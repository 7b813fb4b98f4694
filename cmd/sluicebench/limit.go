package main

import (
	"context"
	"sync"
	"time"
)

// The limit check shows that a limit holds for a cluster, not per
// process: two Sluice instances share one Redis and one credential whose
// rpm is the limit, and are driven at once, each far past the limit.
// Every call is answered 200 (admitted) or 429 (refused); exactly the
// limit's worth must be admitted within the minute.

// limitCheck is what the limit check saw.
type limitCheck struct {
	Instances int   `json:"instances"`
	Limit     int   `json:"rpm_limit"`
	Calls     int64 `json:"calls"`
	Admitted  int64 `json:"admitted"`
	Refused   int64 `json:"refused"`
	Errors    int64 `json:"errors"`
	// AdmittedBy is what each instance admitted.
	AdmittedBy []int64 `json:"admitted_by_instance"`
}

// checkLimit drives every instance with 8 concurrent callers for d (well
// under a minute, so that the rpm window does not slide).
func checkLimit(ctx context.Context, instances []target, model string, limit int, d time.Duration) *limitCheck {
	out := &limitCheck{Instances: len(instances), Limit: limit, AdmittedBy: make([]int64, len(instances))}
	phases := make([]*phase, len(instances))
	var wg sync.WaitGroup
	for i, t := range instances {
		wg.Go(func() { phases[i] = newLoader(t, model, 8).closed(ctx, 8, false, d) })
	}
	wg.Wait()
	for i, p := range phases {
		out.AdmittedBy[i] = p.requests
		out.Admitted += p.requests
		out.Refused += p.refused
		out.Errors += p.errors
	}
	out.Calls = out.Admitted + out.Refused + out.Errors
	return out
}
