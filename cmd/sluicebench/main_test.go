package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the bare proxy, which --all
// starts by running its own executable with "proxy".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "proxy" {
		os.Exit(runProxy(os.Args[2:], os.Stderr))
	}
	os.Exit(m.Run())
}

// TestAll runs what docs/benchmarks.md runs, briefly: every target
// started, every scenario measured, every output written. It checks what
// the figures must say whatever the machine's speed: no call failed, no
// chunk was lost, each Redis-backed target made its round trips, the
// limit held across two instances exactly.
func TestAll(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("SLUICE_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server is not installed and SLUICE_REQUIRE_REDIS=1")
		}
		t.Skip("redis-server is not installed (apt-get install redis-server)")
	}
	if testing.Short() {
		t.Skip("builds Sluice and runs every target: not in -short")
	}
	dir := t.TempDir()
	jsonOut, png, md := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.png"), filepath.Join(dir, "r.md")
	var stdout, stderr bytes.Buffer
	code := run([]string{"--all", "--rounds", "1", "--phase", "300ms", "--concurrency", "1,8", "--rate", "50",
		"--stream-concurrency", "2", "--open-streams", "50", "--open-streams-interval", "100ms", "--limit", "120", "--soak", "2s",
		"--json", jsonOut, "--png", png, "--markdown", md}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}

	var res results
	b, err := os.ReadFile(jsonOut)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	want := []string{"direct", "bare proxy", "sluice memory", "sluice redis exact", "sluice redis lease"}
	if strings.Join(res.Targets, ",") != strings.Join(want, ",") {
		t.Fatalf("targets %q, want %q", res.Targets, want)
	}
	if len(res.Rows) != len(want)*4 {
		t.Fatalf("%d rows, want %d (4 scenarios × %d targets)", len(res.Rows), len(want)*4, len(want))
	}
	for _, r := range res.Rows {
		if r.ReqPerSec <= 0 || r.Errors != 0 || r.Refused != 0 || r.ChunksLost != 0 {
			t.Errorf("%s on %s: %.0f req/s, %d errors, %d refused, %d chunks lost", r.Scenario, r.Target, r.ReqPerSec, r.Errors, r.Refused, r.ChunksLost)
		}
		if strings.HasPrefix(r.Target, "sluice") && r.CPUPerReq <= 0 {
			t.Errorf("%s on %s: no CPU time per request", r.Scenario, r.Target)
		}
	}
	// Exact mode makes one EVALSHA per request; lease mode far fewer.
	exact, lease := sum(res.RoundTrips["sluice redis exact"]), sum(res.RoundTrips["sluice redis lease"])
	if exact < 0.9 || exact > 1.5 || lease >= exact/2 {
		t.Errorf("Redis round trips per request: exact %.3f, lease %.3f", exact, lease)
	}
	if l := res.Limit; l == nil || l.Admitted != int64(l.Limit) || l.Errors != 0 || l.Refused == 0 || len(l.AdmittedBy) != 2 {
		t.Errorf("limit check: %+v, want exactly the limit admitted across both instances", res.Limit)
	}
	if len(res.Streams) != 4 {
		t.Errorf("open streams measured on %d targets, want the bare proxy and the 3 Sluice ones", len(res.Streams))
	}
	for _, s := range res.Streams {
		if s.Failed != 0 || s.Lost != 0 || s.RSSMiB <= 0 || s.MostOpen < 2 {
			t.Errorf("open streams on %s: %+v", s.Target, s)
		}
	}
	if len(res.Soak) != 3 {
		t.Errorf("soaked %d targets, want the 3 Sluice ones", len(res.Soak))
	}
	for _, s := range res.Soak {
		// At rest again: no goroutine or live heap left behind by the
		// calls (a little slack for the pools' own timing).
		if s.Calls == 0 || s.Errors != 0 || s.ChunksLost != 0 || s.GoroutinesBefore == 0 ||
			s.GoroutinesAfter > s.GoroutinesBefore+8 || s.HeapAfterMiB > 1.5*s.HeapBeforeMiB+2 {
			t.Errorf("soak of %s: %+v", s.Target, s)
		}
	}
	if p, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(p, []byte("\x89PNG")) {
		t.Errorf("chart: %v (%d bytes)", err, len(p))
	}
	if m, err := os.ReadFile(md); err != nil || !strings.Contains(string(m), "| sluice redis lease |") || string(m) != stdout.String() {
		t.Errorf("markdown: %v", err)
	}
	// --render writes the same tables from the JSON alone.
	var again bytes.Buffer
	if code := run([]string{"--render", jsonOut}, &again, &stderr); code != 0 || again.String() != stdout.String() {
		t.Errorf("--render: exit %d, first difference: %s\n%s", code, firstDiff(stdout.String(), again.String()), stderr.String())
	}
}

// firstDiff is the first line where two outputs differ.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  run:    %s\n  render: %s", i+1, x, y)
		}
	}
	return "none"
}

// TestPerReqIsStable: commands as frequent as each other are listed in one
// order, so a table rendered again from the JSON is the same table.
func TestPerReqIsStable(t *testing.T) {
	by := map[string]float64{"evalsha": 1, "get": 1, "set": 1, "incrby": 1, "del": 0.5, "expire": 0.1}
	want := perReq(by)
	if want != "4.600 (evalsha 1.000, get 1.000, incrby 1.000)" {
		t.Fatalf("perReq = %q", want)
	}
	for range 200 {
		if got := perReq(maps.Clone(by)); got != want {
			t.Fatalf("perReq = %q, then %q", want, got)
		}
	}
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// TestFlags refuses what cannot be measured.
func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--target", "x"},
		{"--target", "a=http://127.0.0.1:1", "--rounds", "0"},
		{"--target", "a=http://127.0.0.1:1", "--profile", "/tmp/p"},
		{"--all", "--limit", "-1"},
		{"--target", "a=http://127.0.0.1:1", "--soak", "1s"},
		{"--all", "--soak", "1s", "--rate", "0"},
	} {
		var stderr bytes.Buffer
		if code := run(args, &bytes.Buffer{}, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}

// TestCPUTimeIsFine: work that sleeps now and then (as a gateway's threads
// do) is measured finer than the 10 ms tick a process's stat file counts in.
func TestCPUTimeIsFine(t *testing.T) {
	if _, ok := schedTime(os.Getpid()); !ok {
		t.Skip("this kernel keeps no per-thread schedstat; cpuTime counts in 10 ms ticks")
	}
	before := cpuTime(os.Getpid())
	x := 0
	for range 30 {
		for start := time.Now(); time.Since(start) < 100*time.Microsecond; {
			x++
		}
		time.Sleep(200 * time.Microsecond)
	}
	d := cpuTime(os.Getpid()) - before
	if d <= 0 || d%(10*time.Millisecond) == 0 || x == 0 {
		t.Fatalf("the work measured as %v", d)
	}
}
