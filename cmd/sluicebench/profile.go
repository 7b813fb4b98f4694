package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// profiles are what --profile takes of each Sluice target, while it
// serves the closed loop at the highest concurrency and streams:
// a CPU profile of the whole phase, then the allocations, mutex and block
// profiles accumulated since the process started.
var profiles = []struct{ name, query string }{
	{"allocs", "/debug/pprof/allocs"},
	{"mutex", "/debug/pprof/mutex"},
	{"block", "/debug/pprof/block"},
}

// profile loads a Sluice target for d and writes its profiles to dir as
// <target>.<kind>.pprof (read them with go tool pprof).
func profile(ctx context.Context, t target, l *loader, conc, streamConc int, d time.Duration, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := "http://" + t.pprof
	name := strings.ReplaceAll(t.Name, " ", "-")
	var written []string
	save := func(url, file string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			return fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
		}
		path := filepath.Join(dir, file)
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		written = append(written, path)
		return f.Close()
	}
	secs := max(1, int(d.Seconds()))
	var wg sync.WaitGroup
	var cpuErr error
	wg.Go(func() {
		cpuErr = save(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), name+".cpu.pprof")
	})
	// Half the time at the highest concurrency, half streaming, both
	// inside the CPU profile's window.
	time.Sleep(100 * time.Millisecond)
	half := time.Duration(secs) * time.Second / 2
	l.closed(ctx, conc, false, half-100*time.Millisecond)
	l.closed(ctx, streamConc, true, half)
	wg.Wait()
	if cpuErr != nil {
		return written, cpuErr
	}
	for _, p := range profiles {
		if err := save(base+p.query, name+"."+p.name+".pprof"); err != nil {
			return written, err
		}
	}
	return written, nil
}
