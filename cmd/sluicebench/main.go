// Command sluicebench measures what a gateway adds to an OpenAI-compatible
// call: it drives several targets (a direct baseline, a bare reverse
// proxy, Sluice in each mode, any other gateway) in one run, round after
// round, interleaved so that the machine's drift cancels out, and reports
// each target against the baseline: added latency per percentile, req/s
// at saturation, time to first token and the gaps between chunks, CPU time
// per request, peak memory, Redis commands per request.
//
//	go run ./cmd/sluicebench --all                      # start everything, as docs/benchmarks.md
//	go run ./cmd/sluicebench --target direct=http://127.0.0.1:9000 --target gw=http://127.0.0.1:8080
//
// It imports nothing of Sluice: it measures from the outside, over HTTP.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "proxy" {
		os.Exit(runProxy(os.Args[2:], os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line's.
type options struct {
	all         bool
	targets     []target
	baseline    string
	rounds      int
	phase       time.Duration
	concurrency []int
	rate        float64
	streamConc  int
	openStreams int
	model       string
	jsonOut     string
	pngOut      string
	mdOut       string
	peers       []string
	binDir      string
	profileDir  string
	limit       int
	soak        time.Duration
	mockListen  string
	render      string
	logDir      string
	holdChunks  time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("sluicebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.all, "all", false, "start a mock upstream, Redis, a bare proxy and Sluice in each mode (memory, Redis exact, lease), and measure them all")
	fs.Func("target", "name=URL of an OpenAI-compatible endpoint to measure (repeat); name=URL@PID also samples that process's CPU and memory", func(v string) error {
		t, err := parseTarget(v)
		o.targets = append(o.targets, t)
		return err
	})
	fs.StringVar(&o.baseline, "baseline", "direct", "the target others are compared with")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every scenario on every target, interleaved")
	fs.DurationVar(&o.phase, "phase", 3*time.Second, "how long each scenario runs on each target in a round")
	fs.Func("concurrency", "closed-loop concurrencies, comma-separated (default 1,64)", func(v string) error {
		var err error
		o.concurrency, err = parseInts(v)
		return err
	})
	fs.Float64Var(&o.rate, "rate", 200, "open-loop rate (requests/s); 0 skips the open loop")
	fs.IntVar(&o.streamConc, "stream-concurrency", 4, "concurrent streams of the streaming scenario")
	fs.IntVar(&o.openStreams, "open-streams", 0, "also hold this many streams open at once on each Sluice target (10000 in docs/benchmarks.md)")
	fs.StringVar(&o.model, "model", "gpt-4o-mini", "the model requested")
	fs.StringVar(&o.jsonOut, "json", "", "write the results as JSON to this file")
	fs.StringVar(&o.pngOut, "png", "", "write a chart of added latency to this PNG file")
	fs.StringVar(&o.mdOut, "markdown", "", "write the tables as Markdown to this file")
	fs.Func("peer", "name=URL of another gateway started by hand, measured beside the others (repeat)", func(v string) error {
		o.peers = append(o.peers, v)
		return nil
	})
	fs.StringVar(&o.binDir, "bin", "", "where sluice and mockllm are (default: built from this checkout with go build)")
	fs.IntVar(&o.limit, "limit", 300, "with --all: the rpm of the limit check (two Sluice instances sharing one Redis and one limited credential); 0 skips it")
	fs.DurationVar(&o.soak, "soak", 0, "with --all: after the rounds, hold the open-loop rate and the streams on every Sluice target at once for this long (5m in docs/benchmarks.md), and compare heap, goroutines and RSS before and after")
	fs.StringVar(&o.mockListen, "mock-listen", "127.0.0.1:0", "with --all: the mock upstream's address (fixed, for --peer gateways started beforehand against it)")
	fs.StringVar(&o.render, "render", "", "measure nothing: write the table (and --markdown, --png) of an earlier run's --json file")
	fs.DurationVar(&o.holdChunks, "open-streams-interval", time.Second, "with --all and --open-streams: the mock's pause between chunks while streams are held (8 chunks: a stream lasts about ten of them)")
	fs.StringVar(&o.logDir, "logs", "", "with --all: keep each started process's output in this directory (<name>.log)")
	fs.StringVar(&o.profileDir, "profile", "", "with --all: after the rounds, profile each Sluice target under load (CPU, allocations, mutex, block) into this directory")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if len(o.concurrency) == 0 {
		o.concurrency = []int{1, 64}
	}
	for _, p := range o.peers {
		t, err := parseTarget(p)
		if err != nil {
			return o, err
		}
		t.peer = true
		o.targets = append(o.targets, t)
	}
	if o.render != "" {
		return o, nil
	}
	if !o.all && len(o.targets) == 0 {
		return o, fmt.Errorf("give --all or at least one --target")
	}
	if o.profileDir != "" && !o.all {
		return o, fmt.Errorf("--profile needs --all (it profiles the Sluice instances it starts)")
	}
	if o.soak != 0 && (!o.all || o.soak < 0 || o.rate <= 0) {
		return o, fmt.Errorf("--soak needs --all, a positive duration and a positive --rate")
	}
	if o.limit < 0 {
		return o, fmt.Errorf("--limit must be 0 (no limit check) or more")
	}
	if o.rounds < 1 || o.phase <= 0 {
		return o, fmt.Errorf("--rounds and --phase must be positive")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sluicebench: %v\n", err)
		return 2
	}
	if o.render != "" {
		res, err := readResults(o.render)
		if err != nil {
			fmt.Fprintf(stderr, "sluicebench: %v\n", err)
			return 1
		}
		return report(res, o, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var env *environment
	if o.all {
		if env, err = startAll(ctx, o, stderr); err != nil {
			fmt.Fprintf(stderr, "sluicebench: %v\n", err)
			return 1
		}
		defer env.stop()
		o.targets = append(env.targets, o.targets...)
	}
	res, err := measure(ctx, o, env, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sluicebench: %v\n", err)
		return 1
	}
	return report(res, o, stdout, stderr)
}

// readResults reads a --json file.
func readResults(path string) (*results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &res, nil
}

// report writes the results: the tables to stdout, and the files asked for.
func report(res *results, o options, stdout, stderr io.Writer) int {
	md := res.markdown()
	fmt.Fprint(stdout, md)
	for _, w := range []struct {
		path  string
		write func(string) error
	}{{o.jsonOut, res.writeJSON}, {o.pngOut, res.writePNG}, {o.mdOut, func(p string) error { return os.WriteFile(p, []byte(md), 0o644) }}} {
		if w.path == "" {
			continue
		}
		if err := w.write(w.path); err != nil {
			fmt.Fprintf(stderr, "sluicebench: %v\n", err)
			return 1
		}
	}
	return 0
}

// target is one endpoint measured.
type target struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	pid    int    // the process serving it, for CPU and memory (0: unknown)
	redis  string // host:port of the Redis it alone uses: count its commands
	pprof  string // host:port of its server.pprof_listen (--profile)
	peer   bool   // another gateway
	sluice bool   // Sluice: also hold --open-streams streams on it
}

// parseTarget reads name=URL[@PID].
func parseTarget(v string) (target, error) {
	name, rest, ok := strings.Cut(v, "=")
	if !ok || name == "" || rest == "" {
		return target{}, fmt.Errorf("target %q: want name=URL", v)
	}
	t := target{Name: name, URL: strings.TrimRight(rest, "/")}
	if i := strings.LastIndex(t.URL, "@"); i > 0 {
		if _, err := fmt.Sscan(t.URL[i+1:], &t.pid); err == nil {
			t.URL = t.URL[:i]
		}
	}
	if !strings.HasPrefix(t.URL, "http://") && !strings.HasPrefix(t.URL, "https://") {
		return target{}, fmt.Errorf("target %q: want an http:// URL", v)
	}
	return t, nil
}

func parseInts(v string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(v, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n < 1 {
			return nil, fmt.Errorf("want positive numbers, got %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}
