// Command sluice is the Sluice AI API gateway.
//
//	sluice serve  --config F   run the gateway
//	sluice check  --config F   validate a config and print every problem
//	sluice import F            print the native equivalent of a peer config
//	sluice quota  --config F   print the live shared state in Redis (--watch)
//	sluice version
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
	"syscall"
	"time"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/telemetry"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const help = `Sluice, an OpenAI-compatible AI API gateway.

Usage:
  sluice serve  --config FILE   run the gateway
  sluice check  --config FILE   validate a config, print every problem with its path
  sluice import FILE            print the native equivalent of a simple-one-api,
                                AILoad or channels YAML config
  sluice quota  --config FILE   print the live quotas, breakers and sticky
                                mappings the instances share in Redis
                                (--watch to refresh), budgets included
  sluice usage  --config FILE   print what each client used per day: requests,
                                tokens, cost (--client, --from, --to,
                                --format table|csv)
  sluice version

The config may also be given by the SLUICE_CONFIG environment variable.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, help)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "check":
		return check(args[1:], stdout, stderr)
	case "import":
		return importConfig(args[1:], stdout, stderr)
	case "quota":
		return quotaCommand(args[1:], stdout, stderr)
	case "usage":
		return usageCommand(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "sluice", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, help)
		return 0
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", args[0], help)
	return 2
}

// configFlag parses the --config flag of a subcommand.
func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet("sluice "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("SLUICE_CONFIG"), "config file (YAML or JSON, native or a peer's format)")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if *path == "" && fs.NArg() > 0 {
		*path = fs.Arg(0)
	}
	if *path == "" {
		fmt.Fprintf(stderr, "sluice %s: --config is required\n", name)
		return "", false
	}
	return *path, true
}

// printErrors writes each problem of a joined error on its own line.
func printErrors(w io.Writer, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			printErrors(w, e)
		}
		return
	}
	fmt.Fprintln(w, "  "+err.Error())
}

func check(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check", args, stderr)
	if !ok {
		return 2
	}
	cfg, format, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid config:\n", path)
		printErrors(stderr, err)
		return 1
	}
	creds := 0
	models := map[string]bool{}
	for _, ch := range cfg.Channels {
		creds += len(ch.Credentials)
		for _, m := range ch.Models {
			models[m] = true
		}
	}
	fmt.Fprintf(stdout, "%s: ok (%s format): %d channels, %d credentials, %d models, %d client keys\n",
		path, format, len(cfg.Channels), creds, len(models), len(cfg.Clients))
	for _, n := range cfg.Notes {
		fmt.Fprintf(stdout, "  note: %s\n", n)
	}
	return 0
}

func importConfig(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("import", args, stderr)
	if !ok {
		return 2
	}
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "sluice import: %v\n", err)
		return 1
	}
	// Keep ${ENV} references as written (only numbers and booleans are
	// resolved to be read). A reference that had to be resolved to
	// convert the file (a whole URL, say) is put back in the output: it
	// never shows a value taken from the environment.
	cfg, format, err := config.ParseKeepEnv(data)
	expanded := false
	if err != nil {
		if cfg, format, err = config.Parse(data); err == nil {
			expanded = true
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: cannot convert:\n", path)
		printErrors(stderr, err)
		return 1
	}
	out, err := config.Marshal(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "sluice import: %v\n", err)
		return 1
	}
	if expanded {
		out = config.RestoreReferences(out, data)
		fmt.Fprintf(stderr, "sluice import: note: some ${ENV} references had to be resolved to convert the file; their values were put back as references\n")
	}
	// Validate a copy of the result with its variables expanded, when
	// they are set here.
	check, _, err := config.Parse(out)
	if err == nil {
		check.Provision()
		err = check.Validate()
	}
	switch {
	case errors.Is(err, config.ErrUnsetEnv):
		fmt.Fprintf(stderr, "sluice import: note: not validated, the environment lacks variables it names: %v\n", err)
	case err != nil:
		fmt.Fprintf(stderr, "%s: converted, but the result is invalid:\n", path)
		printErrors(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "# Converted by `sluice import` from a %s config: %s\n", format, path)
	for _, n := range cfg.Notes {
		fmt.Fprintf(stdout, "# note: %s\n", n)
	}
	_, _ = stdout.Write(out)
	return 0
}

func serve(args []string, stderr io.Writer) int {
	path, ok := configFlag("serve", args, stderr)
	if !ok {
		return 2
	}
	cfg, format, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid config:\n", path)
		printErrors(stderr, err)
		return 1
	}
	log := telemetry.NewLogger(telemetry.LogConfig{Level: cfg.Log.Level, Format: cfg.Log.Format}, stderr)
	for _, n := range cfg.Notes {
		log.Info("config converted from "+string(format)+": "+n, slog.String("config", path))
	}
	if len(cfg.Channels) == 0 && format == config.FormatNative {
		log.Warn("no channels configured: add them through the admin API (POST /api/channels) or the dashboard (/admin)", slog.String("config", path))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serveWith(ctx, stop, cfg, path, log, func(addr string) {
		log.Info("sluice listening", slog.String("addr", addr), slog.String("config", path),
			slog.String("format", string(format)), slog.String("version", version))
	}); err != nil {
		log.Error("sluice stopped", slog.String("error", err.Error()))
		return 1
	}
	return 0
}

// serveMetrics serves the Prometheus endpoint on a listener of its own
// (telemetry.metrics.listen), so that API clients cannot read it.
func serveMetrics(addr, path string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("telemetry.metrics.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+path, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { _ = srv.Serve(ln) }()
	log.Info("serving metrics", slog.String("metrics_addr", ln.Addr().String()), slog.String("path", path))
	return func() { _ = srv.Close() }, nil
}
