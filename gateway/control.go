package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/quota"
)

// What the control plane (gateway/admin) asks of a Gateway: the live
// state of its channels, a test call through one credential, a breaker
// reset, and the background probing of open breakers.

// ChannelStatus is a channel's live state on this instance, with its
// credentials'.
type ChannelStatus struct {
	Name        string             `json:"name"`
	Type        string             `json:"type"`
	Enabled     bool               `json:"enabled"`
	Models      []string           `json:"models"`
	Credentials []CredentialStatus `json:"credentials"`
	// Shared is what the channel's credentials share: its shared limits
	// and budgets (nil without any).
	Shared *SubjectStatus `json:"shared,omitempty"`
}

// SubjectStatus is the live state of a limit: a channel's shared one, a
// group's.
type SubjectStatus struct {
	Name  string      `json:"name"`
	Limit quota.Limit `json:"limit"`
	Usage quota.Usage `json:"usage"` // cluster-wide with Redis
}

// CredentialStatus is a credential's live state: never its secret.
type CredentialStatus struct {
	ID        string      `json:"id"`
	Enabled   bool        `json:"enabled"`
	Breaker   string      `json:"breaker"`   // closed, half-open, open (cluster-wide with Redis)
	InFlight  int64       `json:"in_flight"` // on this instance
	Limit     quota.Limit `json:"limit"`
	Usage     quota.Usage `json:"usage"` // cluster-wide with Redis
	LastError string      `json:"last_error,omitempty"`
	LastAt    *time.Time  `json:"last_error_at,omitempty"`
}

// usageReader is a limiter that can report live usage.
type usageReader interface {
	Usage(ctx context.Context, subjects []quota.Subject, limits []quota.Limit) ([]quota.Usage, error)
}

// Status reports every channel of the current config with its
// credentials' live state, usage read from the limiter (from Redis when
// it is shared) in one call.
func (g *Gateway) Status(ctx context.Context) ([]ChannelStatus, error) {
	st := g.current()
	var out []ChannelStatus
	var subjects []quota.Subject
	var limits []quota.Limit
	for _, chc := range st.cfg.Channels {
		b := st.built[digest(chc)]
		cs := ChannelStatus{Name: chc.Name, Type: chc.Type, Enabled: chc.IsEnabled(), Models: chc.Models}
		for i, crc := range chc.Credentials {
			cr := b.creds[i]
			s := CredentialStatus{ID: cr.id, Enabled: chc.IsEnabled() && crc.IsEnabled(), Breaker: g.breakers.State(cr.id).String(),
				InFlight: cr.inflight.Load(), Limit: cr.limit}
			if e, ok := g.errors.last(cr.id); ok {
				s.LastError, s.LastAt = e.msg, &e.at
			}
			cs.Credentials = append(cs.Credentials, s)
			subjects = append(subjects, quota.Subject{Kind: quota.KindCredential, ID: cr.id})
			limits = append(limits, cr.limit)
		}
		if shared := channelLimit(chc); !shared.IsZero() {
			cs.Shared = &SubjectStatus{Name: poolName(chc.Name), Limit: shared}
			subjects = append(subjects, quota.Subject{Kind: quota.KindPool, ID: cs.Shared.Name})
			limits = append(limits, shared)
		}
		out = append(out, cs)
	}
	usage, err := g.liveUsage(ctx, subjects, limits)
	if usage == nil {
		return out, err
	}
	i := 0
	for c := range out {
		for k := range out[c].Credentials {
			out[c].Credentials[k].Usage = usage[i]
			i++
		}
		if out[c].Shared != nil {
			out[c].Shared.Usage = usage[i]
			i++
		}
	}
	return out, nil
}

// TestResult is what a test call through one credential gave.
type TestResult struct {
	Credential string `json:"credential"`
	Model      string `json:"model"`
	Status     int    `json:"status"`
	LatencyMS  int64  `json:"latency_ms"`
	Error      string `json:"error,omitempty"`
}

// Test sends one minimal real request through a credential, enabled or
// not, for model (default: its channel's first). It respects the
// credential's own limits but no client's quota, and it does not count
// for the credential's breaker.
func (g *Gateway) Test(ctx context.Context, id, model string) TestResult {
	return g.call(ctx, id, model, func(error) {})
}

// Reset closes a credential's breaker, cluster-wide when it is shared.
func (g *Gateway) Reset(ctx context.Context, id string) { g.breakers.Reset(ctx, id) }

// Probe sends the test request through every enabled credential whose
// breaker is half-open (its open time over), taking the breaker's probe
// (one instance in the cluster at a time): a probe that succeeds puts the
// credential back into service without waiting for live traffic.
func (g *Gateway) Probe(ctx context.Context) {
	for _, cr := range g.current().creds {
		if g.breakers.State(cr.id) != breaker.HalfOpen {
			continue
		}
		done, err := g.breakers.Allow(ctx, cr.id)
		if err != nil {
			continue // another instance probes it
		}
		r := g.call(ctx, cr.id, "", done)
		g.log.InfoContext(ctx, "probed an open circuit breaker", "credential", cr.id, "status", r.Status, "error", r.Error)
	}
}

// RunProbes probes open breakers every interval until ctx ends.
func (g *Gateway) RunProbes(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Probe(ctx)
		}
	}
}

// TestDefinition tests a channel that is not served (yet): a definition
// in the native schema, as the dashboard's form holds it before saving.
// Its credentials' quota state is kept apart from any served one's.
func (g *Gateway) TestDefinition(ctx context.Context, ch config.Channel, model string) ([]TestResult, error) {
	cfg := &config.Config{Channels: []config.Channel{ch}}
	cfg.Provision()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	chc := cfg.Channels[0]
	built, err := g.newChannel(chc)
	if err != nil {
		return nil, err
	}
	st := g.current()
	var out []TestResult
	for _, crc := range chc.Credentials {
		crc.ID = "dry-run:" + crc.ID
		cand := candidate{cred: newCredential(built, chc, crc), model: chc.Models[0]}
		if model != "" {
			cand.model = model
		}
		r := g.callCandidate(ctx, st, cand, func(error) {})
		r.Credential = strings.TrimPrefix(r.Credential, "dry-run:")
		out = append(out, r)
	}
	return out, nil
}

// call makes one test call through credential id; done is the breaker's
// second step.
func (g *Gateway) call(ctx context.Context, id, model string, done func(error)) TestResult {
	st := g.current()
	cand, ok := st.candidate(id, model)
	if !ok {
		done(breaker.ErrNotCounted)
		return TestResult{Credential: id, Model: model, Status: http.StatusNotFound, Error: fmt.Sprintf("no credential %q serves %q", id, model)}
	}
	return g.callCandidate(ctx, st, cand, done)
}

// callCandidate makes one test call through a candidate.
func (g *Gateway) callCandidate(ctx context.Context, st *state, cand candidate, done func(error)) TestResult {
	res := TestResult{Credential: cand.cred.id, Model: cand.model}
	ep, body := testBody(cand.model)
	req, err := parseRequest(ep, body)
	if err != nil {
		done(breaker.ErrNotCounted)
		res.Status, res.Error = http.StatusBadRequest, err.Error()
		return res
	}
	req.label = st.router.label(req.model)
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, "/v1/"+string(ep), nil)
	rec := &recorder{header: http.Header{}}
	c := g.echo.NewContext(hreq, rec)
	ci := callOf(c)
	ci.st, ci.id, ci.start = st, requestID(""), time.Now()
	w := &way{g: g, st: st, req: req, h: &holder{client: anonymous}, deadline: time.Now().Add(cand.cred.ch.timeout)}
	start := time.Now()
	err = g.testAttempt(c, w, cand, done)
	res.LatencyMS = time.Since(start).Milliseconds()
	res.Status = rec.status()
	if err != nil {
		res.Status, res.Error = errorStatus(err), excerpt(st.redactor.String(err.Error()))
	}
	return res
}

// testAttempt admits a test call on its credential and makes the attempt.
func (g *Gateway) testAttempt(c echo.Context, w *way, cand candidate, done func(error)) error {
	qr := w.quotaRequest([]candidate{cand})
	d, err := w.acquire(c.Request().Context(), qr)
	if err != nil {
		done(breaker.ErrNotCounted)
		return err
	}
	if !d.Allowed {
		done(breaker.ErrNotCounted)
		return &refusal{d: d, err: w.refusalError(d)}
	}
	adm := &admitted{cand: cand, grant: d.Grant, decision: d, done: done}
	a := g.newAttempt(c, w.req, adm, 1)
	rep := a.run()
	a.end(rep, w.h)
	w.h.release(c.Request().Context(), g)
	return rep.err
}

// candidate finds credential id among all of the state's, enabled or not,
// with the model to test (default: its channel's first).
func (st *state) candidate(id, model string) (candidate, bool) {
	for _, chc := range st.cfg.Channels {
		b := st.built[digest(chc)]
		for _, cr := range b.creds {
			if cr.id != id {
				continue
			}
			if model == "" {
				return candidate{cred: cr, model: chc.Models[0]}, true
			}
			for _, m := range chc.Models {
				if config.ModelKey(m) == config.ModelKey(model) {
					return candidate{cred: cr, model: m}, true
				}
			}
			return candidate{model: model}, false
		}
	}
	return candidate{model: model}, false
}

// testBody is the smallest request for a model: an embedding for models
// whose name says so, else a one-token chat.
func testBody(model string) (provider.Endpoint, []byte) {
	b, _ := json.Marshal(model)
	m := string(b)
	if strings.Contains(strings.ToLower(model), "embed") {
		return provider.Embeddings, []byte(`{"model":` + m + `,"input":"ping"}`)
	}
	return provider.Chat, []byte(`{"model":` + m + `,"max_tokens":1,"messages":[{"role":"user","content":"ping"}]}`)
}

// errorStatus is the HTTP status an error is answered with.
func errorStatus(err error) int {
	var up *upstreamError
	if errors.As(err, &up) {
		return up.status
	}
	return kindOf(err).status
}

// recorder keeps what a test call answers (the status), discarding the body.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	if r.body.Len() < 4096 {
		r.body.Write(b[:min(len(b), 4096-r.body.Len())])
	}
	return len(b), nil
}
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Flush() {}
func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// errorLog keeps each credential's last upstream error on this instance.
type errorLog struct {
	mu   sync.Mutex
	byID map[string]lastError
}

type lastError struct {
	msg string
	at  time.Time
}

func (l *errorLog) note(id, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byID == nil {
		l.byID = map[string]lastError{}
	}
	l.byID[id] = lastError{msg: msg, at: time.Now()}
}

func (l *errorLog) last(id string) (lastError, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.byID[id]
	return e, ok
}

// ClientStatus is a client key's live state: never its key.
type ClientStatus struct {
	Name      string      `json:"name"`
	Models    []string    `json:"models,omitempty"`
	Group     string      `json:"group,omitempty"`
	Limit     quota.Limit `json:"limit"`
	Usage     quota.Usage `json:"usage"` // cluster-wide with Redis
	ExpiresAt *time.Time  `json:"expires_at,omitempty"`
	Enabled   bool        `json:"enabled"`
}

// Clients reports every client key of the current config with its live
// usage, read from the limiter (from Redis when it is shared).
func (g *Gateway) Clients(ctx context.Context) ([]ClientStatus, error) {
	st := g.current()
	var out []ClientStatus
	var subjects []quota.Subject
	var limits []quota.Limit
	for _, cl := range st.cfg.Clients {
		out = append(out, ClientStatus{Name: cl.Name, Models: cl.Models, Group: cl.Group, Limit: clientLimit(cl), ExpiresAt: cl.ExpiresAt, Enabled: cl.IsEnabled()})
		subjects = append(subjects, quota.Subject{Kind: quota.KindClient, ID: cl.Name})
		limits = append(limits, clientLimit(cl))
	}
	usage, err := g.liveUsage(ctx, subjects, limits)
	for i := range usage {
		out[i].Usage = usage[i]
	}
	return out, err
}

// liveUsage reads subjects' usage under their limits from the quota
// backend, when it can tell (nil when it cannot).
func (g *Gateway) liveUsage(ctx context.Context, subjects []quota.Subject, limits []quota.Limit) ([]quota.Usage, error) {
	r, ok := g.limiter.(usageReader)
	if !ok || len(subjects) == 0 {
		return nil, nil
	}
	usage, err := r.Usage(ctx, subjects, limits)
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	return usage, nil
}

// SharedState says how quotas are kept: shared (through Redis), and
// whether the fallback policy decides now because Redis is unreachable.
type SharedState struct {
	Shared   bool   `json:"shared"`
	Degraded bool   `json:"degraded"`
	Policy   string `json:"policy,omitempty"` // what decides while Redis is unreachable
}

// Shared reports how this instance keeps its quotas now.
func (g *Gateway) Shared() SharedState {
	f, ok := g.limiter.(fallback)
	if !ok {
		return SharedState{}
	}
	return SharedState{Shared: true, Degraded: f.Degraded(), Policy: string(f.Policy())}
}

// Groups reports every group of client keys with its live usage.
func (g *Gateway) Groups(ctx context.Context) ([]SubjectStatus, error) {
	st := g.current()
	out := []SubjectStatus{}
	var subjects []quota.Subject
	var limits []quota.Limit
	for _, gr := range st.cfg.Groups {
		out = append(out, SubjectStatus{Name: gr.Name, Limit: groupLimit(gr)})
		subjects = append(subjects, quota.Subject{Kind: quota.KindGroup, ID: gr.Name})
		limits = append(limits, groupLimit(gr))
	}
	usage, err := g.liveUsage(ctx, subjects, limits)
	for i := range usage {
		out[i].Usage = usage[i]
	}
	return out, err
}

// InFlight reports this instance's requests in flight per credential,
// for the cluster's least_busy routing.
func (g *Gateway) InFlight() map[string]int64 {
	out := map[string]int64{}
	for _, c := range g.current().creds {
		if n := c.inflight.Load(); n > 0 {
			out[c.id] = n
		}
	}
	return out
}
