package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/gateway/admin"
	"github.com/sluice-gateway/sluice/gateway/admin/dashboard"
	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/signals"
	"github.com/sluice-gateway/sluice/gateway/tokens"
	"github.com/sluice-gateway/sluice/gateway/usage"
	"github.com/sluice-gateway/sluice/quota"
	"github.com/sluice-gateway/sluice/telemetry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// serveConfig runs a gateway on a config that has no file (tests): no
// reload, no control plane.
func serveConfig(ctx context.Context, stop context.CancelFunc, cfg *config.Config, log *slog.Logger, ready func(addr string)) error {
	return serveWith(ctx, stop, cfg, "", log, ready)
}

// serveWith runs the gateway until ctx ends (SIGINT or SIGTERM), then
// shuts down in order: /readyz fails, the listener closes after
// server.shutdown_delay, in-flight requests and streams get
// server.drain_timeout to finish, and whatever is left is told the server
// is shutting down and closed. With a config file (path), the control
// plane runs too: SIGHUP, admin.watch_config and POST /api/reload reload
// the file; with an admin token, /api/ is served.
func serveWith(ctx context.Context, stop context.CancelFunc, cfg *config.Config, path string, log *slog.Logger, ready func(addr string)) error {
	in := &instance{cfg: cfg, path: path, log: log}
	defer in.close()
	if err := in.start(ctx); err != nil {
		return err
	}
	return in.serve(ctx, stop, ready)
}

// instance is what serve builds, in order, and closes in reverse.
type instance struct {
	cfg  *config.Config
	path string
	log  *slog.Logger

	ln      net.Listener
	self    quota.Member
	cluster *cluster
	ctl     *admin.Control
	gw      *gateway.Gateway
	deps    gateway.Deps
	rollups usage.Rollups
	signals *signals.Board
	loops   context.CancelFunc
	closers []func()
}

// close undoes start, last built first.
func (in *instance) close() {
	for i := len(in.closers) - 1; i >= 0; i-- {
		in.closers[i]()
	}
}

// start builds telemetry, the listeners, the cluster's shared state, the
// control plane and the gateway.
func (in *instance) start(ctx context.Context) error {
	cfg, log := in.cfg, in.log
	tel, err := setupTelemetry(ctx, cfg, log)
	if err != nil {
		return err
	}
	in.closers = append(in.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("flushing telemetry failed", slog.String("error", err.Error()))
		}
	})
	if in.ln, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	in.closers = append(in.closers, func() { in.ln.Close() })
	in.deps = gateway.Deps{Logger: log, Metrics: tel.Metrics}
	if l := cfg.Telemetry.Metrics.Listen; l != "" && tel.Metrics != nil {
		stopMetrics, err := serveMetrics(l, cfg.Telemetry.Metrics.Path, tel.Metrics, log)
		if err != nil {
			return err
		}
		in.closers = append(in.closers, stopMetrics)
		in.deps.Metrics = nil // not on the API listener
	}
	if l := cfg.Server.PprofListen; l != "" {
		stopPprof, err := servePprof(l, log)
		if err != nil {
			return err
		}
		in.closers = append(in.closers, stopPprof)
	}
	if err := in.startCluster(); err != nil {
		return err
	}
	if err := in.startUsage(tel); err != nil {
		return err
	}
	in.startSignals()
	if err := in.startControl(ctx); err != nil {
		return err
	}
	if in.gw, err = gateway.New(in.cfg, in.deps); err != nil {
		return err
	}
	in.closers = append(in.closers, func() { in.gw.Close() })
	if in.ctl != nil {
		in.ctl.Attach(in.gw)
	}
	if len(in.cfg.Clients) == 0 {
		log.Warn("no client keys configured: serving without authentication")
	}
	in.startLoops()
	return nil
}

// startCluster builds the Redis-backed shared state, when configured.
func (in *instance) startCluster() error {
	cfg := in.cfg
	var id [6]byte
	_, _ = rand.Read(id[:])
	host, _ := os.Hostname()
	in.self = quota.Member{ID: host + "-" + hex.EncodeToString(id[:]), Addr: in.ln.Addr().String(), Version: version, Started: time.Now()}
	if cfg.Redis == nil {
		return nil
	}
	cl, err := newCluster(cfg, in.log, in.self, func() string { return in.configVersion() })
	if err != nil {
		return err
	}
	in.cluster = cl
	in.deps.Limiter, in.deps.Breakers = cl.limiter, cl.breakers
	// Upstream access tokens (Qianfan, Vertex AI, Ark's access keys) are
	// fetched once per credential for the whole cluster.
	// Sealed in Redis with SLUICE_SECRET_KEY, as the control plane's
	// secrets are.
	tc := tokens.Config{Redis: cl.client, Prefix: cfg.Redis.KeyPrefix, Logger: in.log}
	if k := os.Getenv("SLUICE_SECRET_KEY"); k != "" {
		sealer, err := admin.NewSealer(k)
		if err != nil {
			return err
		}
		tc.Sealer = sealer
	}
	in.deps.Tokens = tokens.New(tc)
	// The loops flush what this instance holds when the server is done.
	in.closers = append(in.closers, cl.run())
	in.log.Info("sharing state through Redis", slog.String("key_prefix", cfg.Redis.KeyPrefix),
		slog.String("on_unavailable", cfg.Redis.OnUnavailable), slog.Bool("lease_mode", cfg.Redis.Lease.Enabled))
	return nil
}

// startUsage builds the export of usage records and the rollups (in
// Redis with a cluster, else in memory). It drains what is queued when
// the server is done, for up to 5s.
func (in *instance) startUsage(tel *telemetry.Telemetry) error {
	u := in.cfg.Usage
	if in.cluster != nil {
		in.rollups = &usage.RedisRollups{Client: in.cluster.client, Prefix: in.cfg.Redis.KeyPrefix, Retention: u.Retention.D()}
	} else {
		in.rollups = &usage.MemoryRollups{Retention: u.Retention.D()}
	}
	var sinks []usage.Sink
	for _, to := range u.Records.To {
		switch to {
		case "stdout":
			sinks = append(sinks, usage.NewLines(os.Stdout, nil))
		case "file":
			f, err := usage.OpenFile(u.Records.File)
			if err != nil {
				return err
			}
			sinks = append(sinks, f)
		case "otlp":
			sinks = append(sinks, usage.NewOTel(tel.LoggerProvider, tel.LoggerProvider.ForceFlush))
		}
	}
	exp := usage.New(usage.Config{Queue: u.Records.Queue, Sinks: sinks, Rollups: in.rollups, Logger: in.log})
	ctx, cancel := context.WithCancel(context.Background())
	go exp.Run(ctx, 5*time.Second)
	in.closers = append(in.closers, func() {
		cancel()
		select {
		case <-exp.Done():
		case <-time.After(6 * time.Second):
		}
		if n := exp.Dropped(); n > 0 {
			in.log.Warn("usage records dropped: the queue was full", slog.Int64("dropped", n), slog.Int("queue", u.Records.Queue))
		}
	})
	in.deps.Usage = exp
	return nil
}

// startSignals builds what routing learns of credentials (time to first
// byte, requests in flight), shared with the cluster through Redis.
func (in *instance) startSignals() {
	sc := signals.Config{Alpha: in.cfg.Routing.Latency.Alpha, Logger: in.log, InFlight: func() map[string]int64 { return in.gw.InFlight() }}
	if in.cluster != nil {
		sc.Store = &signals.Redis{Client: in.cluster.client, Prefix: in.cfg.Redis.KeyPrefix, Instance: in.self.ID}
	}
	in.signals = signals.New(sc)
	in.deps.Signals = in.signals
}

// configVersion is the config version this instance runs.
func (in *instance) configVersion() string {
	if in.ctl == nil {
		return ""
	}
	return in.ctl.Version()
}

// startControl builds the control plane of a config file: the overlay
// store (Redis, a state file, or memory without an admin token) and the
// effective config the gateway is built from.
func (in *instance) startControl(ctx context.Context) error {
	if in.path == "" {
		return nil
	}
	cfg := in.cfg
	var store admin.Store = &admin.MemoryStore{}
	switch {
	case cfg.Admin.IsEnabled() && in.cluster != nil:
		store = admin.NewRedisStore(in.cluster.client, cfg.Redis.KeyPrefix)
	case cfg.Admin.IsEnabled():
		store = admin.NewFileStore(or(cfg.Admin.StateFile, in.path+".state.json"))
	}
	var sealer *admin.Sealer
	if k := os.Getenv("SLUICE_SECRET_KEY"); k != "" {
		var err error
		if sealer, err = admin.NewSealer(k); err != nil {
			return err
		}
	}
	ac := admin.Config{
		File: in.path, Store: store, Sealer: sealer, Self: in.self, Logger: in.log, Usage: in.rollups,
		Load: func(path string) (*config.Config, error) { c, _, err := config.Load(path); return c, err },
	}
	if in.cluster != nil {
		ac.Instances = in.cluster.members.List
	}
	ctl, err := admin.New(ctx, ac)
	if err != nil {
		return err
	}
	in.ctl, in.cfg = ctl, ctl.Effective()
	return nil
}

// startLoops runs the background work that stops with the server: the
// control plane's watch and the probing of open breakers.
func (in *instance) startLoops() {
	ctx, cancel := context.WithCancel(context.Background())
	in.loops = cancel
	in.closers = append(in.closers, cancel)
	if in.ctl != nil {
		go in.ctl.Run(ctx, in.cfg.Admin.WatchConfig)
	}
	go in.signals.Run(ctx)
	if b := in.cfg.Breaker; b.ActiveProbing() {
		go in.gw.RunProbes(ctx, b.ProbeInterval.D())
	}
}

// handler is what the API listener serves: the gateway, and the admin
// API and dashboard unless they have a listener of their own.
func (in *instance) handler() http.Handler {
	if in.ctl == nil || !in.cfg.Admin.IsEnabled() || in.cfg.Admin.Listen != "" {
		return in.gw
	}
	mux := in.adminMux()
	mux.Handle("/", in.gw)
	return mux
}

// adminMux serves the admin API (/api/) and the dashboard (/admin).
func (in *instance) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/api/", in.ctl.Handler())
	dash := dashboard.Handler(in.ctl)
	mux.Handle("/admin", dash)
	mux.Handle("/admin/", dash)
	return mux
}

// serve answers until ctx ends, reloading on SIGHUP, then drains.
func (in *instance) serve(ctx context.Context, stop context.CancelFunc, ready func(addr string)) error {
	cfg, log := in.cfg, in.log
	base, abort := context.WithCancelCause(context.Background())
	defer abort(nil)
	srv := &http.Server{
		Handler:           in.handler(),
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
		IdleTimeout:       cfg.Server.IdleTimeout.D(),
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if err := in.serveAdmin(); err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(in.ln) }()
	ready(in.ln.Addr().String())
	if err := in.untilDone(ctx, served); err != nil {
		return err
	}
	stop() // a second signal ends the process at once
	log.Info("shutting down: draining", slog.Duration("shutdown_delay", cfg.Server.ShutdownDelay.D()),
		slog.Duration("drain_timeout", cfg.Server.DrainTimeout.D()))
	in.gw.Drain()
	time.Sleep(cfg.Server.ShutdownDelay.D())

	drain, cancel := context.WithTimeout(context.Background(), cfg.Server.DrainTimeout.D())
	defer cancel()
	if err := srv.Shutdown(drain); err != nil {
		log.Warn("drain timeout reached: ending the remaining requests")
		abort(gateway.ErrDraining)
		time.Sleep(500 * time.Millisecond) // let streams write their closing error event
		_ = srv.Close()
	}
	log.Info("shut down")
	return nil
}

// untilDone waits for the end of the server or of ctx, reloading the
// config on SIGHUP meanwhile.
func (in *instance) untilDone(ctx context.Context, served <-chan error) error {
	hup := make(chan os.Signal, 1)
	if in.ctl != nil {
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	for {
		select {
		case err := <-served:
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
			return nil
		case <-hup:
			in.reload(ctx)
		}
	}
}

// reload rereads the config file on SIGHUP, on every instance.
func (in *instance) reload(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := in.ctl.Reload(rctx, true)
	var re *admin.ReloadError
	switch {
	case errors.As(err, &re):
		in.log.Error("SIGHUP: the config file is invalid; the running config stays", slog.Any("problems", re.Problems))
	case err != nil:
		in.log.Error("SIGHUP: reload failed", slog.String("error", err.Error()))
	default:
		in.log.Info("SIGHUP: config reloaded", slog.String("config_version", in.ctl.Version()))
	}
}

// serveAdmin serves the admin routes on admin.listen, when set.
func (in *instance) serveAdmin() error {
	a := in.cfg.Admin
	if in.ctl == nil || !a.IsEnabled() || a.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.Listen)
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	srv := &http.Server{Handler: in.adminMux(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(in.log.Handler(), slog.LevelWarn)}
	go func() { _ = srv.Serve(ln) }()
	in.closers = append(in.closers, func() { _ = srv.Close() })
	in.log.Info("serving the admin API", slog.String("admin_addr", ln.Addr().String()))
	return nil
}

// setupTelemetry builds the trace and metric pipeline and installs it as
// the process's global providers (each package has its own tracer and
// meter from them).
func setupTelemetry(ctx context.Context, cfg *config.Config, log *slog.Logger) (*telemetry.Telemetry, error) {
	t := cfg.Telemetry
	tel, err := telemetry.Setup(ctx, telemetry.Config{
		ServiceName: t.ServiceName, Version: version,
		TracesEndpoint: t.Traces.Endpoint, TracesProtocol: t.Traces.Protocol, Insecure: t.Traces.Insecure,
		SampleRatio: t.Traces.SampleRatio, Prometheus: t.Metrics.IsEnabled(),
		Logs: slices.Contains(cfg.Usage.Records.To, "otlp"),
	})
	if err != nil {
		return nil, err
	}
	otel.SetTracerProvider(tel.TracerProvider)
	otel.SetMeterProvider(tel.MeterProvider)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Debug("opentelemetry", slog.String("error", err.Error())) }))
	if tel.Tracing {
		log.Info("tracing on", slog.String("endpoint", t.Traces.Endpoint))
	}
	return tel, nil
}
