package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// A scenario is one way of loading a target.
type scenario struct {
	Name string  `json:"name"`
	Kind string  `json:"kind"` // closed, open, stream
	Conc int     `json:"concurrency,omitempty"`
	Rate float64 `json:"rate,omitempty"`
}

// streams reports whether the scenario's calls are streamed.
func (s scenario) streams() bool { return s.Kind == "stream" }

func scenarios(o options) []scenario {
	var out []scenario
	for _, c := range o.concurrency {
		out = append(out, scenario{Name: fmt.Sprintf("closed c=%d", c), Kind: "closed", Conc: c})
	}
	if o.rate > 0 {
		out = append(out, scenario{Name: fmt.Sprintf("open %.0f/s", o.rate), Kind: "open", Rate: o.rate})
	}
	if o.streamConc > 0 {
		out = append(out, scenario{Name: fmt.Sprintf("stream c=%d", o.streamConc), Kind: "stream", Conc: o.streamConc})
	}
	return out
}

// phase is what one scenario measured on one target in one round.
type phase struct {
	requests, errors int64
	refused          int64 // answered 429: a limit said no (not an error)
	elapsed          time.Duration
	lat              *hdrhistogram.Histogram // µs: the whole answer (non-streaming), or the stream to its end
	ttft             *hdrhistogram.Histogram // µs: to the first data line
	gap              *hdrhistogram.Histogram // µs: between data lines
	lines, lost      int64                   // data lines seen, and missing against the baseline's count
	firstError       string                  // what the first failed call said
}

// note keeps the first error's words.
func (p *phase) note(msg string) {
	if p.firstError == "" {
		p.firstError = msg
	}
}

func newPhase() *phase {
	h := func() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }
	return &phase{lat: h(), ttft: h(), gap: h()}
}

// merge adds another worker's measurements.
func (p *phase) merge(o *phase) {
	p.requests += o.requests
	p.errors += o.errors
	p.refused += o.refused
	p.lines += o.lines
	p.lost += o.lost
	p.note(o.firstError)
	p.lat.Merge(o.lat)
	p.ttft.Merge(o.ttft)
	p.gap.Merge(o.gap)
}

// loader sends requests to one target.
type loader struct {
	url      string
	client   *http.Client
	body     []byte
	stream   []byte
	expected int64 // data lines of a complete stream (0: unknown)
}

func newLoader(t target, model string, conns int) *loader {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &loader{
		url:    t.URL + "/v1/chat/completions",
		client: &http.Client{Transport: tr, Timeout: 60 * time.Second},
		body:   []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"Say hello"}]}`),
		stream: []byte(`{"model":"` + model + `","stream":true,"messages":[{"role":"user","content":"Say hello"}]}`),
	}
}

// call makes one call and records it.
func (l *loader) call(ctx context.Context, stream bool, started time.Time, into *phase) {
	body := l.body
	if stream {
		body = l.stream
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-bench")
	resp, err := l.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			into.errors++
			into.note(err.Error())
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests {
		_, _ = io.Copy(io.Discard, resp.Body)
		into.refused++
		return
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		into.errors++
		into.note(fmt.Sprintf("%d %s", resp.StatusCode, b))
		return
	}
	if !stream {
		// Some gateways answer their own errors with a 200: an answer
		// counts only when it is one.
		b, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Contains(b, []byte(`"choices"`)) {
			into.errors++
			into.note(fmt.Sprintf("not an answer: %v %.200s", err, b))
			return
		}
		into.requests++
		_ = into.lat.RecordValue(max(1, time.Since(started).Microseconds()))
		return
	}
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	var lines int64
	last := time.Time{}
	for {
		line, err := br.ReadSlice('\n')
		if bytes.HasPrefix(line, []byte("data:")) {
			now := time.Now()
			if lines == 0 {
				_ = into.ttft.RecordValue(max(1, now.Sub(started).Microseconds()))
			} else {
				_ = into.gap.RecordValue(max(1, now.Sub(last).Microseconds()))
			}
			last = now
			lines++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			into.errors++
			into.note("stream cut: " + err.Error())
			into.lost += max(0, l.expected-lines)
			return
		}
	}
	into.requests++
	into.lines += lines
	if l.expected > 0 && lines < l.expected {
		into.lost += l.expected - lines
	}
	_ = into.lat.RecordValue(max(1, time.Since(started).Microseconds()))
}

// closed runs conc workers, each sending its next call when the last
// ended, for d.
func (l *loader) closed(ctx context.Context, conc int, stream bool, d time.Duration) *phase {
	total := newPhase()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for range conc {
		wg.Go(func() {
			p := newPhase()
			// A call begun before the end runs to its end: a stream cut
			// by the bench would count as lost chunks.
			for ctx.Err() == nil && time.Now().Before(end) {
				l.call(ctx, stream, time.Now(), p)
			}
			mu.Lock()
			total.merge(p)
			mu.Unlock()
		})
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	return total
}

// open sends calls at a fixed rate for d, each at its planned time
// whether or not the previous ones ended, and measures each from its
// planned time: a gateway that stalls is charged for every call it
// delayed (no coordinated omission).
func (l *loader) open(ctx context.Context, rate float64, d time.Duration) *phase {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	total := newPhase()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	n := int(d / interval)
	var inflight atomic.Int64
	for i := range n {
		planned := start.Add(time.Duration(i) * interval)
		if w := time.Until(planned); w > 0 {
			time.Sleep(w)
		}
		if inflight.Load() > 4096 { // the target is lost: count the rest as failed
			mu.Lock()
			total.errors++
			mu.Unlock()
			continue
		}
		inflight.Add(1)
		wg.Go(func() {
			defer inflight.Add(-1)
			p := newPhase()
			l.call(ctx, false, planned, p)
			mu.Lock()
			total.merge(p)
			mu.Unlock()
		})
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	return total
}

// probe counts the data lines of one complete stream, the count every
// stream of the round is checked against.
func (l *loader) probe(ctx context.Context) (int64, error) {
	p := newPhase()
	l.call(ctx, true, time.Now(), p)
	if p.requests != 1 {
		return 0, fmt.Errorf("a stream through %s failed", strings.TrimSuffix(l.url, "/v1/chat/completions"))
	}
	return p.lines, nil
}

// holdStreams opens n streams and holds them: it opens them 256 at a
// time (a burst of 10,000 connects would overflow the listen backlog, a
// test of the kernel rather than of the gateway), each lasting as long as
// the upstream makes it (--all slows the mock's chunks to 1s for this),
// reads each to its end, and checks its lines. It calls peak once every
// stream has begun (or failed), and reports how many failed, how many
// data lines were lost, and how many were open at once at most.
func holdStreams(ctx context.Context, t target, model string, n int, expected int64, peak func()) (failed, lost, most int64) {
	l := newLoader(t, model, n)
	l.expected = expected
	// One connection per stream, closed with it: none left idle to
	// weigh on the next target's streams.
	l.client.Transport.(*http.Transport).DisableKeepAlives = true
	var (
		wg, begun      sync.WaitGroup
		open           atomic.Int64
		nFailed, nLost atomic.Int64
		mostOpen       atomic.Int64
		opening        = make(chan struct{}, 256)
	)
	begun.Add(n)
	for range n {
		opening <- struct{}{}
		wg.Go(func() {
			once := sync.OnceFunc(func() { begun.Done(); <-opening })
			defer once()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(l.stream))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer sk-bench")
			resp, err := l.client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				nFailed.Add(1)
				if err == nil {
					resp.Body.Close()
				}
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			var lines int64
			for {
				line, err := br.ReadSlice('\n')
				if bytes.HasPrefix(line, []byte("data:")) {
					if lines == 0 {
						now := open.Add(1)
						for m := mostOpen.Load(); now > m && !mostOpen.CompareAndSwap(m, now); m = mostOpen.Load() {
						}
						defer open.Add(-1)
						once()
					}
					lines++
				}
				if err != nil {
					break
				}
			}
			if lines < expected {
				nLost.Add(expected - lines)
			}
		})
	}
	begun.Wait()
	peak()
	wg.Wait()
	return nFailed.Load(), nLost.Load(), mostOpen.Load()
}
