// Command mockllm serves Sluice's fake upstream (package mock) over HTTP,
// for the quickstart, benchmarks and manual testing. It speaks OpenAI's
// format, Anthropic's Messages API (/v1/messages), Google's Gemini API
// (/v1beta/models/{model}:generateContent…) and iFlytek Spark's WebSocket
// chat API (/v3.5/chat…), each chosen by path.
//
//	mockllm -addr 127.0.0.1:9000 -latency 50ms -stream-chunks 16
//	mockllm -keys sk-a -spark-keys appid:apikey:apisecret
//
// GET /healthz answers 200; with -control, /_mock/config and /_mock/stats
// read and change the knobs at run time, for every format; every other
// path is the mock's.
// With OTEL_EXPORTER_OTLP_ENDPOINT set, each call is a span continuing
// the caller's traceparent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mockllm:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: opts.logLevel}))
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "mockllm"})
	if err != nil {
		log.Error("telemetry", "err", err)
		os.Exit(1)
	}
	otel.SetTracerProvider(tel.TracerProvider)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	if err := run(ctx, opts, log); err != nil {
		log.Error("mockllm failed", "err", err)
		os.Exit(1)
	}
}

// options are the parsed command line.
type options struct {
	addr            string
	control         bool
	shutdownTimeout time.Duration
	logLevel        slog.Level
	cfg             mock.Config
}

// parseFlags reads the command line; usage and errors go to out.
func parseFlags(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mockllm", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:9000", "listen address")
	fs.BoolVar(&o.control, "control", false, "serve /_mock/config and /_mock/stats to change and read the mock at run time")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to let calls finish on SIGINT/SIGTERM")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log level: debug logs every call")
	c := &o.cfg
	fs.DurationVar(&c.Latency, "latency", 0, "delay before response headers")
	fs.DurationVar(&c.Jitter, "jitter", 0, "uniform extra latency in [0, jitter)")
	fs.Float64Var(&c.FailureRate, "failure-rate", 0, "share of calls answered 500, 0..1")
	fs.Float64Var(&c.RateLimitRate, "rate-limit-rate", 0, "share of calls answered 429, 0..1")
	fs.DurationVar(&c.RetryAfter, "retry-after", time.Second, "Retry-After sent with 429s")
	fs.IntVar(&c.StreamChunks, "stream-chunks", 8, "content chunks per streamed choice")
	fs.DurationVar(&c.ChunkInterval, "chunk-interval", 0, "pause between streamed chunks")
	fs.IntVar(&c.ReplyTokens, "reply-tokens", 16, "words (≈ tokens) per answer")
	fs.IntVar(&c.FailAfterChunks, "fail-after-chunks", 0, "abort streams after this many content chunks; 0 never")
	fs.IntVar(&c.EmbeddingDims, "embedding-dims", 16, "embedding vector length")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed for failure dice, jitter and IDs; 0 random")
	fs.BoolVar(&c.Overloaded, "overloaded", false, "answer the Anthropic format's injected failures 529 overloaded_error instead of 500")
	fs.Func("keys", "comma-separated API keys to require (default: no auth)", func(v string) error {
		c.Keys = splitList(v)
		return nil
	})
	fs.Func("spark-keys", "comma-separated appid:apikey:apisecret iFlytek credentials the Spark WebSocket API requires (default: no auth)", func(v string) error {
		keys, err := parseSparkKeys(v)
		c.Spark = keys
		return err
	})
	fs.Func("accounts", "comma-separated id:secret cloud account key pairs the signed and token-issuing APIs require: Qianfan api_key:secret_key, Tencent SecretId:SecretKey, Volcengine AccessKeyId:SecretAccessKey (default: no auth)", func(v string) error {
		accounts, err := parseAccounts(v)
		c.Accounts = accounts
		return err
	})
	fs.Func("service-account", "client_email=path of a PEM public key: a Google service account whose signed JWTs the OAuth token endpoint accepts (repeatable; default: no auth)", func(v string) error {
		email, file, ok := strings.Cut(v, "=")
		if !ok || email == "" || file == "" {
			return fmt.Errorf("%q is not client_email=path", v)
		}
		pem, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if c.ServiceAccounts == nil {
			c.ServiceAccounts = map[string]string{}
		}
		c.ServiceAccounts[email] = string(pem)
		return nil
	})
	fs.DurationVar(&c.TokenTTL, "token-ttl", time.Hour, "life of the access tokens the token endpoints issue")
	fs.Func("models", "comma-separated models for GET /v1/models (default "+strings.Join(mock.DefaultModels(), ",")+")", func(v string) error {
		c.Models = splitList(v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for name, rate := range map[string]float64{"failure-rate": c.FailureRate, "rate-limit-rate": c.RateLimitRate} {
		if !(rate >= 0 && rate <= 1) {
			return o, fmt.Errorf("-%s must be between 0 and 1, got %v", name, rate)
		}
	}
	return o, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var items []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// parseSparkKeys reads comma-separated appid:apikey:apisecret triples.
func parseSparkKeys(v string) ([]mock.SparkKey, error) {
	var keys []mock.SparkKey
	for _, item := range splitList(v) {
		parts := strings.SplitN(item, ":", 3)
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return nil, fmt.Errorf("spark key %q is not appid:apikey:apisecret", item)
		}
		keys = append(keys, mock.SparkKey{AppID: parts[0], APIKey: parts[1], APISecret: parts[2]})
	}
	return keys, nil
}

// parseAccounts reads comma-separated id:secret pairs.
func parseAccounts(v string) ([]mock.Account, error) {
	var out []mock.Account
	for i, item := range splitList(v) {
		id, secret, ok := strings.Cut(item, ":")
		if !ok || id == "" || secret == "" {
			return nil, fmt.Errorf("account %d is not id:secret", i+1) // not quoted: it may hold a secret
		}
		out = append(out, mock.Account{ID: id, Secret: secret})
	}
	return out, nil
}

// newHandler serves /healthz and hands everything else to the mock,
// logging each call at debug level.
func newHandler(srv *mock.Server, withControl bool, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	if withControl {
		mux.Handle("/_mock/", control(srv))
	}
	mux.Handle("/", srv)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, "mockllm "+r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		mux.ServeHTTP(w, r.WithContext(ctx))
		log.Debug("call", "method", r.Method, "path", r.URL.Path, "dur", time.Since(start))
	})
}

var tracer = otel.Tracer("github.com/sluice-gateway/sluice/cmd/mockllm")

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, o options, log *slog.Logger) error {
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := mock.New(o.cfg)
	hs := &http.Server{
		Handler:           newHandler(srv, o.control, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	c := o.cfg
	log.Info("mockllm listening", "addr", ln.Addr().String(),
		"latency", c.Latency, "jitter", c.Jitter, "failure_rate", c.FailureRate,
		"rate_limit_rate", c.RateLimitRate, "stream_chunks", c.StreamChunks,
		"chunk_interval", c.ChunkInterval, "reply_tokens", c.ReplyTokens,
		"fail_after_chunks", c.FailAfterChunks, "overloaded", c.Overloaded, "auth", len(c.Keys) > 0,
		"spark_auth", len(c.Spark) > 0, "account_auth", len(c.Accounts) > 0,
		"service_accounts", len(c.ServiceAccounts), "seed", c.Seed)

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("mockllm shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("calls still running at the shutdown timeout; closing them", "err", err)
		_ = hs.Close()
	}
	st := srv.Stats()
	log.Info("mockllm stopped", "requests", st.Requests, "streams", st.Streams,
		"failures", st.Failures, "rate_limited", st.RateLimited, "aborted", st.Aborted,
		"prompt_tokens", st.PromptTokens, "completion_tokens", st.CompletionTokens)
	return nil
}
