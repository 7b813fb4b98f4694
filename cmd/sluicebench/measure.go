package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// results are a run's measurements, per scenario and target, each a median
// over the rounds.
type results struct {
	Machine   string            `json:"machine"`
	Date      time.Time         `json:"date"`
	Rounds    int               `json:"rounds"`
	Phase     string            `json:"phase"`
	Baseline  string            `json:"baseline"`
	Scenarios []scenario        `json:"scenarios"`
	Targets   []string          `json:"targets"`
	Rows      []row             `json:"rows"`
	Memory    map[string]memory `json:"memory"`
	Streams   []streamsHeld     `json:"open_streams,omitempty"`
	// RoundTrips are the commands each Redis-backed target sent Redis per
	// request (scripts' own commands not counted), by command.
	RoundTrips map[string]map[string]float64 `json:"redis_round_trips_per_req,omitempty"`
	// Limit is the --all limit check: two instances sharing one Redis
	// and one credential's limit, driven at once.
	Limit *limitCheck `json:"limit_check,omitempty"`
	Soak  []soaked    `json:"soak,omitempty"`
}

// row is one scenario on one target: medians of the rounds.
type row struct {
	Scenario    string             `json:"scenario"`
	Target      string             `json:"target"`
	ReqPerSec   float64            `json:"req_per_sec"`
	Errors      int64              `json:"errors"`
	Refused     int64              `json:"refused"`        // 429s
	Latency     map[string]float64 `json:"latency_ms"`     // p50, p90, p99, p99.9, max
	Added       map[string]float64 `json:"added_ms"`       // over the baseline, per percentile
	TTFT        map[string]float64 `json:"ttft_ms"`        // streams
	AddedTTFT   map[string]float64 `json:"added_ttft_ms"`  // streams
	Gap         map[string]float64 `json:"gap_ms"`         // streams
	AddedGap    map[string]float64 `json:"added_gap_ms"`   // streams
	ChunksLost  int64              `json:"chunks_lost"`    // streams
	CPUPerReq   float64            `json:"cpu_us_per_req"` // the target's process, when known
	RedisPerReq float64            `json:"redis_cmds_per_req"`
	RedisCmds   map[string]float64 `json:"redis_cmds_per_req_by_command,omitempty"`
	VsBareProxy float64            `json:"vs_bare_proxy"` // req/s ÷ the bare proxy's
}

// memory is a target process's resident memory.
type memory struct {
	IdleMiB float64 `json:"idle_mib"`
	PeakMiB float64 `json:"peak_mib"`
}

// streamsHeld is the --open-streams measurement of one target.
type streamsHeld struct {
	Target  string `json:"target"`
	Streams int    `json:"streams"`
	Failed  int64  `json:"failed"`
	Lost    int64  `json:"chunks_lost"`
	// MostOpen is how many streams were open at once at most.
	MostOpen int64   `json:"most_open_at_once"`
	RSSMiB   float64 `json:"rss_mib"`
}

var percentiles = []struct {
	name string
	q    float64
}{{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}, {"max", 100}}

// measure runs every scenario on every target, round after round.
func measure(ctx context.Context, o options, env *environment, log io.Writer) (*results, error) {
	res := &results{Machine: machine(), Date: time.Now().UTC(), Rounds: o.rounds, Phase: o.phase.String(), Baseline: o.baseline,
		Scenarios: scenarios(o), Memory: map[string]memory{}}
	rdbs := map[string]*redis.Client{}
	for _, t := range o.targets {
		if t.redis != "" {
			rdbs[t.Name] = redis.NewClient(&redis.Options{Addr: t.redis})
			defer rdbs[t.Name].Close()
		}
	}
	maxConc := o.streamConc
	for _, c := range o.concurrency {
		maxConc = max(maxConc, c)
	}
	loaders := map[string]*loader{}
	for _, t := range o.targets {
		res.Targets = append(res.Targets, t.Name)
		loaders[t.Name] = newLoader(t, o.model, maxConc)
		if t.pid > 0 {
			res.Memory[t.Name] = memory{IdleMiB: rssMiB(t.pid, "VmRSS")}
		}
	}
	if _, ok := loaders[o.baseline]; !ok {
		return nil, fmt.Errorf("no target named %q for --baseline", o.baseline)
	}
	// Warm up every target, and learn a complete stream's length.
	expected, err := loaders[o.baseline].probe(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range o.targets {
		l := loaders[t.Name]
		l.expected = expected
		l.closed(ctx, 4, false, 500*time.Millisecond)
	}

	type key struct{ scenario, target string }
	runs := map[key][]measured{}
	for round := 1; round <= o.rounds; round++ {
		fmt.Fprintf(log, "round %d of %d\n", round, o.rounds)
		for _, s := range res.Scenarios {
			for _, t := range o.targets {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				l := loaders[t.Name]
				cpu0 := cpuTime(t.pid)
				cmds0 := redisCalls(ctx, rdbs[t.Name])
				var p *phase
				switch s.Kind {
				case "open":
					p = l.open(ctx, s.Rate, o.phase)
				default:
					p = l.closed(ctx, s.Conc, s.streams(), o.phase)
				}
				m := measured{phase: p}
				if t.pid > 0 && p.requests > 0 {
					m.cpuPerReq = float64((cpuTime(t.pid) - cpu0).Microseconds()) / float64(p.requests)
				}
				if rdb := rdbs[t.Name]; rdb != nil && p.requests > 0 {
					m.redisPerReq = map[string]float64{}
					for cmd, n := range redisCalls(ctx, rdb) {
						if cmd == "info" {
							n-- // the bench's own
						}
						if d := n - cmds0[cmd]; d > 0 {
							m.redisPerReq[cmd] = float64(d) / float64(p.requests)
						}
					}
				}
				if p.firstError != "" {
					fmt.Fprintf(log, "  %s, %s: %d failed calls; the first: %.200s\n", s.Name, t.Name, p.errors, p.firstError)
				}
				runs[key{s.Name, t.Name}] = append(runs[key{s.Name, t.Name}], m)
			}
		}
	}
	for _, t := range o.targets {
		if t.pid > 0 {
			m := res.Memory[t.Name]
			m.PeakMiB = rssMiB(t.pid, "VmHWM")
			res.Memory[t.Name] = m
		}
	}
	for _, s := range res.Scenarios {
		base := summarize(runs[key{s.Name, o.baseline}])
		bare := summarize(runs[key{s.Name, "bare proxy"}])
		for _, t := range o.targets {
			r := summarize(runs[key{s.Name, t.Name}])
			r.Scenario, r.Target = s.Name, t.Name
			r.Added = minus(r.Latency, base.Latency)
			if s.streams() {
				r.AddedTTFT, r.AddedGap = minus(r.TTFT, base.TTFT), minus(r.Gap, base.Gap)
			}
			if bare.ReqPerSec > 0 {
				r.VsBareProxy = r.ReqPerSec / bare.ReqPerSec
			}
			res.Rows = append(res.Rows, r)
		}
	}
	for _, t := range o.targets {
		if t.redis == "" {
			continue
		}
		fmt.Fprintf(log, "counting the Redis commands of %s\n", t.Name)
		l := loaders[t.Name]
		by, err := roundTrips(ctx, t.redis, func() int64 {
			return l.closed(ctx, 16, false, o.phase).requests + l.closed(ctx, o.streamConc, true, o.phase).requests
		})
		if err != nil {
			fmt.Fprintf(log, "  %s: %v\n", t.Name, err)
			continue
		}
		if res.RoundTrips == nil {
			res.RoundTrips = map[string]map[string]float64{}
		}
		res.RoundTrips[t.Name] = by
	}
	if env != nil && len(env.limited) > 0 {
		fmt.Fprintf(log, "limit check: %d instances sharing one Redis, rpm %d\n", len(env.limited), o.limit)
		res.Limit = checkLimit(ctx, env.limited, o.model, o.limit, max(o.phase, 2*time.Second))
	}
	if o.soak > 0 {
		fmt.Fprintf(log, "soak: %s at %.0f calls/s and %d streams on every Sluice target at once\n", o.soak, o.rate, o.streamConc)
		res.Soak = soak(ctx, o.targets, loaders, o.rate, o.streamConc, o.soak, log)
	}
	if o.profileDir != "" {
		for _, t := range o.targets {
			if t.pprof == "" {
				continue
			}
			fmt.Fprintf(log, "profiling %s\n", t.Name)
			files, err := profile(ctx, t, loaders[t.Name], slices.Max(o.concurrency), o.streamConc, max(o.phase, 10*time.Second), o.profileDir)
			if err != nil {
				return nil, fmt.Errorf("profile %s: %w", t.Name, err)
			}
			fmt.Fprintf(log, "  %s\n", strings.Join(files, "\n  "))
		}
	}
	if o.openStreams > 0 {
		if env != nil {
			// Long streams (ten pauses), so that they are open at once.
			if err := env.mockConfig(ctx, fmt.Sprintf(`{"chunk_interval":%q}`, o.holdChunks)); err != nil {
				return nil, err
			}
			defer env.mockConfig(context.WithoutCancel(ctx), `{"chunk_interval":"1ms"}`)
		}
		for _, t := range o.targets {
			// Sluice, the bare proxy (the floor), and any gateway whose
			// process is known; not the baseline, nor peers (--peer).
			if t.Name == o.baseline || t.peer || t.pid == 0 {
				continue
			}
			fmt.Fprintf(log, "holding %d streams on %s\n", o.openStreams, t.Name)
			var rss float64
			failed, lost, most := holdStreams(ctx, t, o.model, o.openStreams, expected, func() { rss = rssMiB(t.pid, "VmRSS") })
			res.Streams = append(res.Streams, streamsHeld{Target: t.Name, Streams: o.openStreams, Failed: failed, Lost: lost, MostOpen: most, RSSMiB: rss})
			fmt.Fprintf(log, "  %d failed, %d chunks lost, %d open at once at most, RSS %.0f MiB\n", failed, lost, most, rss)
		}
	}
	return res, nil
}

// measured is one phase with what was sampled around it.
type measured struct {
	phase       *phase
	cpuPerReq   float64
	redisPerReq map[string]float64 // per command
}

// summarize takes the median over rounds of each figure.
func summarize(ms []measured) row {
	r := row{Latency: map[string]float64{}, TTFT: map[string]float64{}, Gap: map[string]float64{}}
	if len(ms) == 0 {
		return r
	}
	var rps, cpu, rc []float64
	perCmd := map[string][]float64{}
	lat, ttft, gap := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	for _, m := range ms {
		p := m.phase
		rps = append(rps, float64(p.requests)/p.elapsed.Seconds())
		cpu = append(cpu, m.cpuPerReq)
		var all float64
		for cmd, n := range m.redisPerReq {
			all += n
			perCmd[cmd] = append(perCmd[cmd], n)
		}
		rc = append(rc, all)
		r.Errors += p.errors
		r.Refused += p.refused
		r.ChunksLost += p.lost
		for _, pc := range percentiles {
			lat[pc.name] = append(lat[pc.name], float64(p.lat.ValueAtQuantile(pc.q))/1000)
			if p.ttft.TotalCount() > 0 {
				ttft[pc.name] = append(ttft[pc.name], float64(p.ttft.ValueAtQuantile(pc.q))/1000)
				gap[pc.name] = append(gap[pc.name], float64(p.gap.ValueAtQuantile(pc.q))/1000)
			}
		}
	}
	r.ReqPerSec, r.CPUPerReq, r.RedisPerReq = median(rps), median(cpu), median(rc)
	if len(perCmd) > 0 {
		r.RedisCmds = map[string]float64{}
		for cmd, v := range perCmd {
			for len(v) < len(ms) {
				v = append(v, 0) // rounds it did not run in
			}
			r.RedisCmds[cmd] = median(v)
		}
	}
	for k, v := range lat {
		r.Latency[k] = median(v)
	}
	for k, v := range ttft {
		r.TTFT[k] = median(v)
	}
	for k, v := range gap {
		r.Gap[k] = median(v)
	}
	return r
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minus(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		if w, ok := b[k]; ok {
			out[k] = v - w
		}
	}
	return out
}

// cpuTime is a process's CPU time so far (0 for pid 0): the nanosecond
// run time the scheduler keeps for each of its threads, summed; or, where
// the kernel keeps no such figure, user and system time from its stat file,
// which counts in ticks of 10 ms, too coarse for a short phase.
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	if d, ok := schedTime(pid); ok {
		return d
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start at ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ: 100 on every Linux Go supports.
const clockTicks = 100

// schedTime sums the first field of /proc/PID/task/*/schedstat, each
// thread's time on a CPU in nanoseconds. The time of a thread that ended is
// no longer listed; a Go process rarely ends its threads, so little is lost.
func schedTime(pid int) (time.Duration, bool) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(stats) == 0 {
		return 0, false
	}
	var sum time.Duration
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended between the listing and the read
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, false
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		sum += time.Duration(ns)
	}
	return sum, true
}

// rssMiB reads a memory figure of /proc/<pid>/status (VmRSS, VmHWM).
func rssMiB(pid int, field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// redisCalls reads how many times Redis has run each command.
func redisCalls(ctx context.Context, rdb *redis.Client) map[string]int64 {
	out := map[string]int64{}
	if rdb == nil {
		return out
	}
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return out
	}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(line, ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

// machine describes where the run happened.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	goVersion := runtime.Version()
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		goVersion = strings.TrimSpace(string(out))
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %d cores, %s, %s, %s", cpu, runtime.NumCPU(), runtime.GOOS+"/"+runtime.GOARCH, goVersion, filepath.Base(host))
}
