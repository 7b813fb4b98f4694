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
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/propagation"

	"github.com/sluice-gateway/sluice/affinity"
	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/ingress"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
	"github.com/sluice-gateway/sluice/gateway/redact"
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
}

// Gateway serves the OpenAI API and relays calls upstream. Build it with
// New; it is an http.Handler.
type Gateway struct {
	cfg      *config.Config
	log      *slog.Logger
	limiter  quota.Limiter
	breakers *breaker.Set

	clients  *clients
	router   *router
	creds    []*credential
	trusted  []netip.Prefix
	started  time.Time
	echo     *echo.Echo
	draining atomic.Bool

	metrics        *instruments
	metricsPath    string
	metricsHandler http.Handler
	captureContent bool

	redactor      *redact.Redactor     // every secret of the config, kept from clients, logs and spans
	nativeFormats map[wire.Format]bool // client APIs that some channel speaks natively
	parsing       *parseBudget         // request bytes being read and parsed at once
	propagator    propagation.TextMapPropagator
}

// New builds a Gateway from a provisioned, validated config.
func New(cfg *config.Config, deps Deps) (*Gateway, error) {
	g := &Gateway{
		cfg: cfg, log: deps.Logger, limiter: deps.Limiter, breakers: deps.Breakers, started: time.Now(),
		metricsHandler: deps.Metrics, metricsPath: cfg.Telemetry.Metrics.Path, captureContent: cfg.Telemetry.CaptureContent,
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.redactor = redact.New(cfg.Secrets()...)
	g.parsing = newParseBudget(int64(cfg.Server.MaxParsingBytes), cfg.Server.ParsingWait.D())
	g.propagator = tracePropagator(cfg.Telemetry.Traces.ForwardClientContext)
	if g.limiter == nil {
		g.limiter = NewMemoryLimiter(cfg)
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

	var channels []*channel
	shared := newTransport("")
	g.nativeFormats = map[wire.Format]bool{}
	for i, chc := range cfg.Channels {
		ch, err := newChannel(chc, shared)
		if err != nil {
			return nil, fmt.Errorf("channels[%d]: %w", i, err)
		}
		channels = append(channels, ch)
		if tr, ok := ch.adapter.(provider.Translator); ok {
			if _, native := ch.adapter.(provider.Native); native {
				g.nativeFormats[tr.Format()] = true
			}
		}
		if !chc.IsEnabled() {
			continue
		}
		for _, crc := range chc.Credentials {
			if crc.IsEnabled() {
				g.creds = append(g.creds, newCredential(ch, chc, crc))
			}
		}
	}
	g.clients = newClients(cfg.Clients)
	g.router = newRouter(cfg, channels, g.creds)
	var err error
	if g.metrics, err = newInstruments(g); err != nil {
		return nil, err
	}
	g.echo = g.routes()
	return g, nil
}

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

func newChannel(c config.Channel, shared http.RoundTripper) (*channel, error) {
	spec, _ := provider.Lookup(c.Type)
	adapter, err := provider.For(spec.API)
	if err != nil {
		return nil, err
	}
	p, err := encodeParams(c.Params.Defaults, c.Params.Overrides)
	if err != nil {
		return nil, err
	}
	rt := shared
	switch {
	case spec.API == provider.APIMock:
		rt = mock.Transport(mock.New(mockConfig(c.Mock)))
	case c.Proxy != "":
		rt = newTransport(c.Proxy)
	}
	// Redirects are not followed: an upstream's secret headers (Azure's
	// api-key, channel headers) would go to wherever it points. A 3xx is
	// an upstream failure and fails over.
	client := &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &channel{
		name: c.Name, spec: spec, adapter: adapter, client: client,
		models: c.Models, modelMap: c.ModelMap, priority: c.Priority,
		timeout: c.Timeout.D(), idleTimeout: c.StreamIdleTimeout.D(),
		params: p, nativeParams: p.native(adapter), headers: c.Headers, apiVersion: c.APIVersion, maxTokens: c.MaxTokens,
	}, nil
}

func newCredential(ch *channel, chc config.Channel, c config.Credential) *credential {
	l := credentialLimits(chc, c)
	cr := &credential{
		id: c.ID, ch: ch, spec: ch.spec, adapter: ch.adapter, key: c.Key, baseURL: or(c.BaseURL, chc.BaseURL),
		weight: chc.Weight * c.Weight, limit: quotaLimit(l), wait: l.WaitTimeout.D(),
	}
	if c.AppID != "" {
		// iFlytek Spark credentials with an app_id and api_secret speak
		// its native WebSocket API; the others its OpenAI-compatible one.
		cr.spec = provider.SparkSpec()
		cr.adapter, _ = provider.For(cr.spec.API)
		cr.appID, cr.secret = c.AppID, c.APISecret
		if sameHost(cr.baseURL, ch.spec.BaseURL) { // the HTTP API's host, by default or as written
			cr.baseURL = cr.spec.BaseURL
		}
	}
	if shared := quotaLimit(chc.SharedLimits); !shared.IsZero() {
		cr.pool, cr.shared = poolName(chc.Name), shared
		cr.wait = max(cr.wait, chc.SharedLimits.WaitTimeout.D())
	}
	return cr
}

// sameHost reports whether two URLs name the same host (and port).
func sameHost(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	return errA == nil && errB == nil && ua.Host != "" && strings.EqualFold(ua.Host, ub.Host)
}

// credentialLimits are a credential's effective limits: its own over its
// channel's, field by field.
func credentialLimits(ch config.Channel, c config.Credential) config.Limits {
	return mergeLimits(ch.Limits, c.Limits)
}

// mergeLimits overrides base with every non-zero field of over.
func mergeLimits(base, over config.Limits) config.Limits {
	base.QPS = or(over.QPS, base.QPS)
	base.Burst = or(over.Burst, base.Burst)
	base.RPM = or(over.RPM, base.RPM)
	base.RPD = or(over.RPD, base.RPD)
	base.TPM = or(over.TPM, base.TPM)
	base.TPD = or(over.TPD, base.TPD)
	base.Concurrency = or(over.Concurrency, base.Concurrency)
	base.WaitTimeout = or(over.WaitTimeout, base.WaitTimeout)
	return base
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func mockConfig(m *config.Mock) mock.Config {
	if m == nil {
		return mock.Config{}
	}
	return mock.Config{
		Latency: m.Latency.D(), Jitter: m.Jitter.D(), FailureRate: m.FailureRate, RateLimitRate: m.RateLimitRate,
		StreamChunks: m.StreamChunks, ChunkInterval: m.ChunkInterval.D(), ReplyTokens: m.ReplyTokens,
	}
}

// newTransport returns the transport for upstream calls, through a proxy
// when one is given (validated by config: http, https, socks5, socks5h).
func newTransport(proxy string) *http.Transport {
	t := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if proxy != "" {
		if u, err := url.Parse(proxy); err == nil {
			t.Proxy = http.ProxyURL(u)
		}
	}
	return t
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.echo.ServeHTTP(w, r) }

// Drain marks the gateway as shutting down: /readyz fails from now on so
// that load balancers stop sending, while requests still arriving are
// served.
func (g *Gateway) Drain() { g.draining.Store(true) }

// Credentials returns the IDs of the enabled credentials.
func (g *Gateway) Credentials() []string {
	ids := make([]string, len(g.creds))
	for i, c := range g.creds {
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
	cl := clientOf(c)
	data := []modelObject{}
	for _, m := range g.router.listModels(cl) {
		data = append(data, modelObject{ID: m, Object: "model", Created: g.started.Unix(), OwnedBy: ownedBy(g.creds, m)})
	}
	return c.JSON(http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (g *Gateway) getModel(c echo.Context) error {
	cl := clientOf(c)
	m := c.Param("model")
	if err := checkModelName(m); err != nil {
		return err
	}
	for _, name := range g.router.listModels(cl) {
		if config.ModelKey(name) == config.ModelKey(m) {
			return c.JSON(http.StatusOK, modelObject{ID: name, Object: "model", Created: g.started.Unix(), OwnedBy: ownedBy(g.creds, name)})
		}
	}
	return fmt.Errorf("%w: the model %q does not exist", ErrModelNotFound, m)
}

// authenticate is the middleware that finds the client of every /v1 call
// from its headers alone, and holds the client's place in its own
// concurrency before the body is read.
func (g *Gateway) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		callOf(c).endpoint = strings.TrimPrefix(c.Path(), "/v1/")
		cl, err := g.clients.authenticate(c.Request().Header)
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
	bodyRead   bool   // the request's body was read whole
	credential string
	channel    string
	attempts   int
	stream     bool
	tokens     int64
	ttfb       time.Duration
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
			err = g.redactedError(err)
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
