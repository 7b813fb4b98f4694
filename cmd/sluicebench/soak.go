package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A soak holds a constant load on every Sluice target at once for a long
// while (--soak), then checks that each process came back to where it
// started: live heap (after a GC) and goroutines, read from the target's
// profiler listener, and RSS.

// soaked is one target's soak.
type soaked struct {
	Target           string  `json:"target"`
	Duration         string  `json:"duration"`
	Calls            int64   `json:"calls"`
	Errors           int64   `json:"errors"`
	ChunksLost       int64   `json:"chunks_lost"`
	HeapBeforeMiB    float64 `json:"heap_before_mib"`
	HeapAfterMiB     float64 `json:"heap_after_mib"`
	GoroutinesBefore int     `json:"goroutines_before"`
	GoroutinesAfter  int     `json:"goroutines_after"`
	RSSBeforeMiB     float64 `json:"rss_before_mib"`
	RSSAfterMiB      float64 `json:"rss_after_mib"`
}

// soak loads every target with pprof for d: the open loop at rate and
// streams at streamConc, all targets at once.
func soak(ctx context.Context, targets []target, loaders map[string]*loader, rate float64, streamConc int, d time.Duration, log io.Writer) []soaked {
	var out []soaked
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range targets {
		if t.pprof == "" {
			continue
		}
		l := loaders[t.Name]
		wg.Go(func() {
			s := soaked{Target: t.Name, Duration: d.String()}
			s.HeapBeforeMiB, s.GoroutinesBefore, s.RSSBeforeMiB = settled(ctx, t, l)
			var calls, streams *phase
			var inner sync.WaitGroup
			inner.Go(func() { calls = l.open(ctx, rate, d) })
			inner.Go(func() { streams = l.closed(ctx, streamConc, true, d) })
			inner.Wait()
			s.Calls = calls.requests + streams.requests
			s.Errors = calls.errors + streams.errors
			s.ChunksLost = streams.lost
			s.HeapAfterMiB, s.GoroutinesAfter, s.RSSAfterMiB = settled(ctx, t, l)
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(log, "  %s: %d calls, %d errors; heap %.1f → %.1f MiB, goroutines %d → %d\n",
				t.Name, s.Calls, s.Errors, s.HeapBeforeMiB, s.HeapAfterMiB, s.GoroutinesBefore, s.GoroutinesAfter)
			out = append(out, s)
		})
	}
	wg.Wait()
	return out
}

// settled reads a target at rest: the bench's own idle connections
// closed, a moment to let them go, then the live heap after a GC, the
// goroutines and the RSS.
func settled(ctx context.Context, t target, l *loader) (heapMiB float64, goroutines int, rss float64) {
	l.client.CloseIdleConnections()
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
	base := "http://" + t.pprof + "/debug/pprof/"
	if body, err := get(ctx, base+"heap?gc=1&debug=1"); err == nil {
		heapMiB = float64(memStat(body, "HeapAlloc")) / (1 << 20)
	}
	if body, err := get(ctx, base+"goroutine?debug=1"); err == nil {
		// The first line: "goroutine profile: total N".
		first, _, _ := strings.Cut(body, "\n")
		goroutines, _ = strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	}
	return heapMiB, goroutines, rssMiB(t.pid, "VmRSS")
}

// memStat finds "# Name = value" in a heap profile's text form.
func memStat(profile, name string) int64 {
	sc := bufio.NewScanner(strings.NewReader(profile))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# "+name+" = "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func get(ctx context.Context, url string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), err
}
