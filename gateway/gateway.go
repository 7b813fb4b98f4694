// Package gateway is Sluice's HTTP edge: it authenticates clients, parses
// what routing needs of each call, picks upstream credentials (strategy,
// priority tiers, affinity, breakers, quotas), relays the call with
// failover before the first byte, and streams the answer back.
package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/propagation"

	"github.com/sluice-gateway/sluice/affinity"
	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/ingress"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/gateway/signals"
	"github.com/sluice-gateway/sluice/gateway/tokens"
	"github.com/sluice-gateway/sluice/gateway/usage"
	"github.com/sluice-gateway/sluice/quota"
)

// Deps are the shared-state backends of a Gateway. Nil fields get the
// in-memory backends built from the config: the embedded single-node
// default. The limiter also owns the sticky mappings (quota.Request's
// Sticky), so that the Redis backend reads and writes them in the same
// round trip as the quota; affinity only derives their keys.
type Deps struct {
	Limiter  quota.Limiter
	Breakers *breaker.Set
	Logger   *slog.Logger
	// Metrics, if set, is served at telemetry.metrics.path (Prometheus).
	Metrics http.Handler
	// Usage, if set, takes a record of every relayed call.
	Usage *usage.Exporter
	// Signals, if set, are what routing learns of credentials, shared
	// with the cluster; default: this instance's own.
	Signals *signals.Board
	// Tokens, if set, caches the access tokens upstreams issue for
	// credentials' secrets, shared with the cluster; default: this
	// instance's own cache.
	Tokens provider.Tokens
}

// Gateway serves the OpenAI API and relays calls upstream. Build it with
// New; it is an http.Handler. What it builds from the reloadable parts of
// its config (channels, credentials, clients, routing) is a state that
// Apply swaps: a request keeps the state it started with to its end.
type Gateway struct {
	static   *config.Config // the settings a reload cannot change (server, telemetry, redis, breaker, admin)
	log      *slog.Logger
	limiter  quota.Limiter
	breakers *breaker.Set
	state    atomic.Pointer[state]
	mu       sync.Mutex // serializes Apply
	upstream *transports

	trusted  []netip.Prefix
	started  time.Time
	echo     *echo.Echo
	draining atomic.Bool

	metrics        *instruments
	metricsPath    string
	metricsHandler http.Handler
	captureContent bool

	usage      *usage.Exporter // nil: no usage records
	signals    *signals.Board  // time to first byte and load of each credential
	tokens     provider.Tokens // upstream access tokens
	errors     errorLog        // each credential's last upstream error
	stats      Stats           // the last minutes' calls, for the dashboard
	parsing    *parseBudget    // request bytes being read and parsed at once
	propagator propagation.TextMapPropagator
}

// New builds a Gateway from a provisioned, validated config.
func New(cfg *config.Config, deps Deps) (*Gateway, error) {
	g := &Gateway{
		static: cfg, log: deps.Logger, limiter: deps.Limiter, breakers: deps.Breakers, started: time.Now(),
		metricsHandler: deps.Metrics, metricsPath: cfg.Telemetry.Metrics.Path, captureContent: cfg.Telemetry.CaptureContent,
		usage:    deps.Usage,
		signals:  deps.Signals,
		tokens:   deps.Tokens,
		upstream: newTransports(),
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.parsing = newParseBudget(int64(cfg.Server.MaxParsingBytes), cfg.Server.ParsingWait.D())
	g.propagator = tracePropagator(cfg.Telemetry.Traces.ForwardClientContext)
	if g.limiter == nil {
		g.limiter = NewMemoryLimiter(cfg)
	}
	if g.tokens == nil {
		g.tokens = tokens.New(tokens.Config{Logger: g.log})
	}
	if g.signals == nil {
		g.signals = signals.New(signals.Config{Alpha: cfg.Routing.Latency.Alpha})
	}
	if g.breakers == nil {
		g.breakers = breaker.New(BreakerConfig(cfg.Breaker, g.log))
	}
	for _, p := range cfg.Server.TrustedProxies {
		prefix, err := config.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("server.trusted_proxies: %w", err)
		}
		g.trusted = append(g.trusted, prefix)
	}
	if err := g.Apply(cfg); err != nil {
		return nil, err
	}
	var err error
	if g.metrics, err = newInstruments(g); err != nil {
		return nil, err
	}
	g.echo = g.routes()
	return g, nil
}

// Apply makes a new version of the config the one new requests use:
// channels, credentials, client keys, model names and routing. Requests
// in flight finish on the version they started with. The settings a
// reload cannot change (server, telemetry, redis, breaker, admin) stay as
// New had them. cfg must be provisioned and valid.
func (g *Gateway) Apply(cfg *config.Config) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, err := g.newState(cfg, g.state.Load())
	if err != nil {
		return err
	}
	g.state.Store(st)
	return nil
}

// current is the state new requests use.
func (g *Gateway) current() *state { return g.state.Load() }

// NewMemoryLimiter returns the in-memory limiter for a config; it keeps
// the sticky mappings too.
func NewMemoryLimiter(cfg *config.Config) *quota.Memory {
	return quota.NewMemory(quota.MemoryConfig{})
}

// BreakerConfig converts the breaker section of a config, logging every
// state transition.
func BreakerConfig(b config.Breaker, log *slog.Logger) breaker.Config {
	return breaker.Config{
		Failures: uint32(b.Failures), FailureRatio: b.FailureRatio, MinRequests: uint32(b.MinRequests),
		Interval: b.Interval.D(), OpenTimeout: b.OpenTimeout.D(), HalfOpenProbes: uint32(b.HalfOpenProbes),
		ProbeTimeout: b.ProbeTimeout.D(),
		OnStateChange: func(id string, from, to breaker.State) {
			log.Warn("circuit breaker state changed", slog.String("credential", id),
				slog.String("from", from.String()), slog.String("to", to.String()))
		},
	}
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.echo.ServeHTTP(w, r) }

// Drain marks the gateway as shutting down: /readyz fails from now on so
// that load balancers stop sending, while requests still arriving are
// served.
func (g *Gateway) Drain() { g.draining.Store(true) }

// Credentials returns the IDs of the enabled credentials.
func (g *Gateway) Credentials() []string {
	creds := g.current().creds
	ids := make([]string, len(creds))
	for i, c := range creds {
		ids[i] = c.id
	}
	return ids
}

// routes builds the echo router.
func (g *Gateway) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = g.httpError
	e.Use(g.traceServer, g.accessLog)

	e.GET("/healthz", g.healthz)
	e.GET("/readyz", g.readyz)
	if g.metricsHandler != nil {
		e.GET(g.metricsPath, echo.WrapHandler(g.metricsHandler))
	}

	// Routes take the auth middleware one by one: an echo group with
	// middleware answers 404 where 405 is right.
	e.POST("/v1/chat/completions", g.chatCompletions, g.authenticate)
	e.POST("/v1/embeddings", g.embeddings, g.authenticate)
	e.POST("/v1/messages", g.messages, speaks(ingress.Anthropic), g.authenticate)
	e.POST("/v1/responses", g.responses, speaks(ingress.Responses), g.authenticate)
	e.GET("/v1/models", g.listModels, g.authenticate)
	e.GET("/v1/models/:model", g.getModel, g.authenticate)
	return e
}

func (g *Gateway) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (g *Gateway) readyz(c echo.Context) error {
	if g.draining.Load() {
		return ErrDraining
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// modelObject is one entry of /v1/models.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (g *Gateway) listModels(c echo.Context) error {
	cl, st := clientOf(c), stateOf(c)
	data := []modelObject{}
	for _, m := range st.router.listModels(cl) {
		data = append(data, modelObject{ID: m, Object: "model", Created: g.started.Unix(), OwnedBy: ownedBy(st.creds, m)})
	}
	return c.JSON(http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (g *Gateway) getModel(c echo.Context) error {
	cl, st := clientOf(c), stateOf(c)
	m := c.Param("model")
	if err := checkModelName(m); err != nil {
		return err
	}
	for _, name := range st.router.listModels(cl) {
		if config.ModelKey(name) == config.ModelKey(m) {
			return c.JSON(http.StatusOK, modelObject{ID: name, Object: "model", Created: g.started.Unix(), OwnedBy: ownedBy(st.creds, name)})
		}
	}
	return fmt.Errorf("%w: the model %q does not exist", ErrModelNotFound, m)
}

// authenticate is the middleware that finds the client of every /v1 call
// from its headers alone, and holds the client's place in its own
// concurrency before the body is read.
func (g *Gateway) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ci := callOf(c)
		ci.endpoint = strings.TrimPrefix(c.Path(), "/v1/")
		ci.st = g.current()
		cl, err := ci.st.clients.authenticate(c.Request().Header)
		if err != nil {
			return err
		}
		c.Set(clientKey, cl)
		callOf(c).client = cl.name
		leave, err := cl.enter(c.Request().Context())
		if err != nil {
			return err
		}
		defer leave()
		return next(c)
	}
}

const (
	clientKey = "sluice.client"
	callKey   = "sluice.call"
)

// stateOf is the config version a call uses (nil before authentication).
func stateOf(c echo.Context) *state { return callOf(c).st }

func clientOf(c echo.Context) *client {
	if cl, ok := c.Get(clientKey).(*client); ok {
		return cl
	}
	return anonymous
}

// callInfo is what the access log reports of a call.
type callInfo struct {
	id         string
	start      time.Time
	endpoint   string // chat, embeddings: a relayed call
	client     string
	model      string // as requested, once checked (checkModelName)
	label      string // the model's metric label: a configured name, or "unknown"
	st         *state // the config version the call uses, from authentication on
	bodyRead   bool   // the request's body was read whole
	credential string
	channel    string
	attempts   int
	stream     bool
	tokens     int64
	ttfb       time.Duration
	billed     bool          // an attempt was billed: cost is what the call cost
	priced     bool          // its model has a price
	cost       int64         // micro-dollars
	in, out    int64         // the billed attempt's input and output tokens
	cached     int64         // of its input, read from a prompt cache
	codec      ingress.Codec // the client's API, when not OpenAI's
}

func callOf(c echo.Context) *callInfo {
	if ci, ok := c.Get(callKey).(*callInfo); ok {
		return ci
	}
	ci := &callInfo{}
	c.Set(callKey, ci)
	return ci
}

// accessLog assigns the request ID and logs one line per call, without
// secrets or content.
func (g *Gateway) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		ci := callOf(c)
		ci.start = start
		ci.id = requestID(c.Request().Header.Get("X-Request-Id"))
		c.Response().Header().Set("X-Request-Id", ci.id)
		err := g.recovered(c, next)
		if err != nil {
			err = g.redactedError(c, err)
			c.Error(err)
		}
		g.observeRequest(c.Request().Context(), c, ci, time.Since(start))
		if c.Path() == "/healthz" || c.Path() == "/readyz" || c.Path() == g.metricsPath {
			return nil
		}
		attrs := []slog.Attr{
			slog.String("request_id", ci.id),
			slog.String("method", excerpt(c.Request().Method)),
			slog.String("path", excerpt(c.Request().URL.Path)),
			slog.Int("status", c.Response().Status),
			slog.Duration("duration", time.Since(start)),
		}
		for _, a := range []struct{ k, v string }{{"client", ci.client}, {"model", ci.model}, {"credential", ci.credential}} {
			if a.v != "" {
				attrs = append(attrs, slog.String(a.k, a.v))
			}
		}
		if ci.attempts > 0 {
			attrs = append(attrs, slog.Int("attempts", ci.attempts), slog.Bool("stream", ci.stream),
				slog.Int64("tokens", ci.tokens), slog.Duration("ttfb", ci.ttfb))
		}
		level := slog.LevelInfo
		if err != nil {
			attrs = append(attrs, slog.String("error", err.Error()))
			if c.Response().Status >= 500 {
				level = slog.LevelWarn
			}
		}
		g.log.LogAttrs(c.Request().Context(), level, "request", attrs...)
		return nil
	}
}

// recovered runs a handler and turns a panic (a bug) into a 500 with an
// OpenAI-shaped error. If the answer had already begun, the connection is
// aborted instead, so that the client sees a broken answer, never one
// that looks complete.
func (g *Gateway) recovered(c echo.Context, next echo.HandlerFunc) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r != http.ErrAbortHandler {
			g.log.ErrorContext(c.Request().Context(), "panic serving a request", slog.String("path", c.Request().URL.Path), slog.Any("panic", r))
		}
		if r == http.ErrAbortHandler || c.Response().Committed {
			panic(http.ErrAbortHandler)
		}
		err = fmt.Errorf("panic serving %s: %v", c.Request().URL.Path, r)
	}()
	return next(c)
}

// requestID keeps a client's X-Request-Id when it is short and plain, and
// makes one up otherwise.
func requestID(given string) string {
	if n := len(given); n > 0 && n <= 128 {
		ok := true
		for _, r := range given {
			if r < 0x21 || r > 0x7e {
				ok = false
				break
			}
		}
		if ok {
			return given
		}
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "req_" + hex.EncodeToString(b[:])
}

// clientIP is the address of the client behind the trusted proxies.
func (g *Gateway) clientIP(r *http.Request) string {
	return affinity.ClientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), g.trusted)
}
