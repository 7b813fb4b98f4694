package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"image/color"
	"maps"
	"os"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// find returns the row of a scenario kind and target.
func (r *results) find(match func(scenario) bool, targetName string) (row, bool) {
	for _, s := range r.Scenarios {
		if !match(s) {
			continue
		}
		for _, rw := range r.Rows {
			if rw.Scenario == s.Name && rw.Target == targetName {
				return rw, true
			}
		}
	}
	return row{}, false
}

func closedAt(c int) func(scenario) bool {
	return func(s scenario) bool { return s.Kind == "closed" && s.Conc == c }
}

func streaming(s scenario) bool { return s.streams() }

// markdown is the summary table, then one table per scenario.
func (r *results) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s. %s, %d rounds of %s per scenario and target, interleaved; each figure is the median of the rounds. Baseline: %s.\n\n",
		r.Machine, r.Date.Format("2006-01-02"), r.Rounds, r.Phase, r.Baseline)
	conc := 0
	for _, s := range r.Scenarios {
		if s.Kind == "closed" && s.Conc > conc {
			conc = s.Conc
		}
	}
	fmt.Fprintf(&b, "| target | c=1 p50 added | c=1 p99 added | c=%d req/s (× bare proxy) | CPU per request | Redis round trips per request | stream: first line added (p50) | inter-chunk gap added (p50) | idle / peak RSS |\n", conc)
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, t := range r.Targets {
		c1, hasC1 := r.find(closedAt(1), t)
		cn, _ := r.find(closedAt(conc), t)
		st, hasStream := r.find(streaming, t)
		cells := []string{t}
		if t == r.Baseline || !hasC1 {
			cells = append(cells, "—", "—")
		} else {
			cells = append(cells, ms(c1.Added["p50"]), ms(c1.Added["p99"]))
		}
		rps := fmt.Sprintf("%.0f", cn.ReqPerSec)
		if cn.VsBareProxy > 0 && t != r.Baseline {
			rps += fmt.Sprintf(" (%.2f)", cn.VsBareProxy)
		}
		cells = append(cells, rps, micros(cn.CPUPerReq), perReq(r.RoundTrips[t]))
		if hasStream && t != r.Baseline {
			cells = append(cells, ms(st.AddedTTFT["p50"]), ms(st.AddedGap["p50"]))
		} else {
			cells = append(cells, "—", "—")
		}
		if m, ok := r.Memory[t]; ok {
			cells = append(cells, fmt.Sprintf("%.0f / %.0f MiB", m.IdleMiB, m.PeakMiB))
		} else {
			cells = append(cells, "—")
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	for _, s := range r.Scenarios {
		fmt.Fprintf(&b, "\n**%s**\n\n", s.Name)
		if s.streams() {
			b.WriteString("| target | req/s | first line p50 | p90 | p99 | p99.9 | added p50 | added p99 | gap p50 | added gap p50 | added gap p99 | chunks lost | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		} else {
			b.WriteString("| target | req/s | p50 | p90 | p99 | p99.9 | max | added p50 | added p99 | added p99.9 | errors |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		}
		for _, t := range r.Targets {
			rw, _ := r.find(func(x scenario) bool { return x.Name == s.Name }, t)
			if s.streams() {
				fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d |\n", t, rw.ReqPerSec,
					abs(rw.TTFT["p50"]), abs(rw.TTFT["p90"]), abs(rw.TTFT["p99"]), abs(rw.TTFT["p99.9"]),
					ms(rw.AddedTTFT["p50"]), ms(rw.AddedTTFT["p99"]), abs(rw.Gap["p50"]), ms(rw.AddedGap["p50"]), ms(rw.AddedGap["p99"]), rw.ChunksLost, rw.Errors)
				continue
			}
			fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", t, rw.ReqPerSec,
				abs(rw.Latency["p50"]), abs(rw.Latency["p90"]), abs(rw.Latency["p99"]), abs(rw.Latency["p99.9"]), abs(rw.Latency["max"]),
				ms(rw.Added["p50"]), ms(rw.Added["p99"]), ms(rw.Added["p99.9"]), rw.Errors)
		}
	}
	if l := r.Limit; l != nil {
		fmt.Fprintf(&b, "\n**Limit check**: %d Sluice instances sharing one Redis, one credential limited to %d requests per minute, driven at once: %d calls, **%d admitted** (by instance: %v), %d refused with 429, %d errors.\n",
			l.Instances, l.Limit, l.Calls, l.Admitted, l.AdmittedBy, l.Refused, l.Errors)
	}
	if len(r.Soak) > 0 {
		b.WriteString("\n**Soak** (constant load, then at rest: live heap after a GC, goroutines, RSS)\n\n| target | duration | calls | errors | chunks lost | heap before → after | goroutines before → after | RSS before → after |\n|---|---|---|---|---|---|---|---|\n")
		for _, s := range r.Soak {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %.1f → %.1f MiB | %d → %d | %.0f → %.0f MiB |\n", s.Target, s.Duration, s.Calls, s.Errors, s.ChunksLost,
				s.HeapBeforeMiB, s.HeapAfterMiB, s.GoroutinesBefore, s.GoroutinesAfter, s.RSSBeforeMiB, s.RSSAfterMiB)
		}
	}
	if len(r.Streams) > 0 {
		b.WriteString("\n**Streams held open at once** (opened 256 at a time, each lasting ten of the mock's pauses)\n\n| target | streams | failed | chunks lost | open at once at most | RSS with all open |\n|---|---|---|---|---|---|\n")
		for _, s := range r.Streams {
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %.0f MiB |\n", s.Target, s.Streams, s.Failed, s.Lost, s.MostOpen, s.RSSMiB)
		}
	}
	return b.String()
}

// ms shows a difference in milliseconds, with its sign.
func ms(v float64) string {
	if v < 0 {
		return fmt.Sprintf("−%.3f ms", -v)
	}
	return fmt.Sprintf("+%.3f ms", v)
}

// abs shows a duration in milliseconds.
func abs(v float64) string { return fmt.Sprintf("%.3f ms", v) }

func micros(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f µs", v)
}

// perReq is the commands per request, and the commands that make them up
// (the three most frequent).
func perReq(by map[string]float64) string {
	// Sorted by frequency, then by name, and summed in that order, so that
	// --render writes the same figures from the JSON as the run did.
	cmds := slices.Collect(maps.Keys(by))
	slices.SortFunc(cmds, func(a, b string) int { return cmp.Or(cmp.Compare(by[b], by[a]), strings.Compare(a, b)) })
	var v float64
	for _, c := range cmds {
		v += by[c]
	}
	if v == 0 {
		return "—"
	}
	var parts []string
	for _, c := range cmds[:min(3, len(cmds))] {
		parts = append(parts, fmt.Sprintf("%s %.3f", c, by[c]))
	}
	return fmt.Sprintf("%.3f (%s)", v, strings.Join(parts, ", "))
}

// writeJSON writes the results.
func (r *results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writePNG charts the added latency of each target over the baseline:
// p50 and p99 at concurrency 1, and the first line of a stream at p50.
func (r *results) writePNG(path string) error {
	var names []string
	for _, t := range r.Targets {
		if t != r.Baseline {
			names = append(names, t)
		}
	}
	lat, err := r.latencyPlot(names)
	if err != nil {
		return err
	}
	thr, err := r.throughputPlot(names)
	if err != nil {
		return err
	}
	img := vgimg.New(15*vg.Inch, 5*vg.Inch)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 3, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	canvases := plot.Align([][]*plot.Plot{{lat, thr}}, tiles, draw.New(img))
	lat.Draw(canvases[0][0])
	thr.Draw(canvases[0][1])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// latencyCap is the top of the latency chart: a bar past it (a gateway
// that does not flush its streams) is cut there and labelled with its
// value.
const latencyCap = 2.5

// latencyPlot shows what each target adds to a call, in milliseconds.
func (r *results) latencyPlot(names []string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Added over a direct call (ms): lower is better"
	p.Y.Label.Text = "ms"
	p.Y.Max = latencyCap
	series := []struct {
		label string
		value func(t string) float64
		c     color.Color
	}{
		{"c=1 p50", func(t string) float64 { rw, _ := r.find(closedAt(1), t); return rw.Added["p50"] }, color.RGBA{0x1f, 0x77, 0xb4, 0xff}},
		{"c=1 p99", func(t string) float64 { rw, _ := r.find(closedAt(1), t); return rw.Added["p99"] }, color.RGBA{0xff, 0x7f, 0x0e, 0xff}},
		{"stream first line p50", func(t string) float64 { rw, _ := r.find(streaming, t); return rw.AddedTTFT["p50"] }, color.RGBA{0x2c, 0xa0, 0x2c, 0xff}},
	}
	w := vg.Points(12)
	var over plotter.XYLabels
	for i, s := range series {
		vals := make(plotter.Values, len(names))
		for j, t := range names {
			v := s.value(t)
			vals[j] = min(v, latencyCap)
			if v > latencyCap {
				over.XYs = append(over.XYs, plotter.XY{X: float64(j) + float64(i-1)*0.12, Y: latencyCap * 0.93})
				over.Labels = append(over.Labels, fmt.Sprintf("%.1f↑", v))
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		bars.Color, bars.LineStyle.Width = s.c, 0
		bars.Offset = w * vg.Length(i-1)
		p.Add(bars)
		p.Legend.Add(s.label, bars)
	}
	if len(over.XYs) > 0 {
		labels, err := plotter.NewLabels(over)
		if err != nil {
			return nil, err
		}
		p.Add(labels)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	return p, nil
}

// throughputPlot shows each target's req/s at the highest concurrency,
// as a multiple of the bare proxy's.
func (r *results) throughputPlot(names []string) (*plot.Plot, error) {
	conc := 0
	for _, s := range r.Scenarios {
		if s.Kind == "closed" && s.Conc > conc {
			conc = s.Conc
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("req/s at c=%d, × the bare proxy's: higher is better", conc)
	vals := make(plotter.Values, len(names))
	for j, t := range names {
		rw, _ := r.find(closedAt(conc), t)
		vals[j] = rw.VsBareProxy
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(24))
	if err != nil {
		return nil, err
	}
	bars.Color, bars.LineStyle.Width = color.RGBA{0x94, 0x67, 0xbd, 0xff}, 0
	p.Add(bars, plotter.NewGrid())
	p.Y.Min = 0
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	return p, nil
}
