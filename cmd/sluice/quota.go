package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/quota"
)

// quotaCommand prints the live quota, breaker and sticky state that the
// instances of a config share in Redis.
func quotaCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice quota", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("SLUICE_CONFIG"), "config file")
	watch := fs.Bool("watch", false, "refresh until interrupted")
	every := fs.Duration("every", 2*time.Second, "refresh period with --watch")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "sluice quota: --config is required")
		return 2
	}
	cfg, _, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid config:\n", *path)
		printErrors(stderr, err)
		return 1
	}
	if cfg.Redis == nil {
		fmt.Fprintln(stderr, "sluice quota: the config has no redis section and REDIS_URL is not set: each instance keeps its own state, there is nothing shared to read")
		return 1
	}
	client, err := newRedisClient(cfg.Redis)
	if err != nil {
		fmt.Fprintf(stderr, "sluice quota: %v\n", err)
		return 1
	}
	defer client.Close()
	rc := cfg.Redis
	limiter := quota.NewRedis(client, quota.RedisConfig{Prefix: rc.KeyPrefix, HashTag: rc.HashTag, Timeout: 5 * time.Second})
	breakers := breaker.NewRedis(client, breaker.RedisConfig{Prefix: rc.KeyPrefix})
	members := quota.NewMembers(client, quota.Member{}, quota.MembersConfig{Prefix: rc.KeyPrefix})
	in := gateway.Inspector{
		Usage: limiter,
		Breakers: func(ctx context.Context) (map[string]time.Time, error) {
			open, err := breakers.Open(ctx)
			out := make(map[string]time.Time, len(open))
			for _, e := range open {
				out[e.ID] = time.Now().Add(e.For)
			}
			return out, err
		},
		Sticky:    limiter.StickyCounts,
		Instances: members.List,
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := in.Report(rctx, cfg)
		cancel()
		if *watch {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J") // home and clear
		}
		if err != nil {
			fmt.Fprintf(stderr, "sluice quota: read Redis: %v\n", err)
			if !*watch {
				return 1
			}
		} else {
			printReport(stdout, r)
		}
		if !*watch {
			return 0
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(*every):
		}
	}
}

// printReport writes a report as tables.
func printReport(w io.Writer, r gateway.Report) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "INSTANCES (%d live)\t\t\t\t\n", len(r.Instances))
	fmt.Fprintln(tw, "ID\tADDR\tVERSION\tUP\tLAST SEEN")
	for _, m := range r.Instances {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s ago\n", m.ID, m.Addr, m.Version,
			r.Time.Sub(m.Started).Round(time.Second), r.Time.Sub(m.Seen).Round(100*time.Millisecond))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CREDENTIAL\tCHANNEL\tQPS\tRPM\tRPD\tTPM\tTPD\tIN FLIGHT\tCOOL-DOWN\tBREAKER\tSTICKY")
	for _, c := range r.Credentials {
		name := c.ID
		if !c.Enabled {
			name += " (disabled)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", name, c.Channel,
			bucket(c.Usage.QPS), used(c.Usage.RPM), used(c.Usage.RPD), used(c.Usage.TPM), used(c.Usage.TPD),
			inFlight(c.Usage.InFlight, c.Limit.Concurrency), cooldown(c.Usage.CooldownLeft), c.Breaker, c.Sticky)
	}
	for _, set := range []struct {
		title string
		rows  []gateway.SubjectReport
	}{{"SHARED LIMIT", r.Pools}, {"CLIENT", r.Clients}} {
		if len(set.rows) == 0 {
			continue
		}
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "%s\tQPS\tRPM\tRPD\tTPM\tTPD\tIN FLIGHT\n", set.title)
		for _, s := range set.rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, bucket(s.Usage.QPS), used(s.Usage.RPM),
				used(s.Usage.RPD), used(s.Usage.TPM), used(s.Usage.TPD), inFlight(s.Usage.InFlight, s.Limit.Concurrency))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nread at %s\n", r.Time.Format(time.RFC3339))
}

// used shows a window as used/limit ("-" when unlimited).
func used(w quota.Window) string {
	if w.Limit == 0 {
		return "-"
	}
	return strconv.FormatInt(w.Limit-w.Remaining, 10) + "/" + strconv.FormatInt(w.Limit, 10)
}

// bucket shows a token bucket as available/burst.
func bucket(w quota.Window) string {
	if w.Limit == 0 {
		return "-"
	}
	return strconv.FormatInt(w.Remaining, 10) + "/" + strconv.FormatInt(w.Limit, 10) + " left"
}

func inFlight(n, limit int64) string {
	if limit == 0 {
		return strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10) + "/" + strconv.FormatInt(limit, 10)
}

func cooldown(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(100 * time.Millisecond).String()
}
