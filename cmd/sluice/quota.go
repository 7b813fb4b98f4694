package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
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
	cfg, client, code := sharedRedis("quota", *path, "each instance keeps its own state, there is nothing shared to read", stderr)
	if code != 0 {
		return code
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
	fmt.Fprintln(tw, "CREDENTIAL\tCHANNEL\tQPS\tRPM\tRPD\tTPM\tTPD\tIN FLIGHT\tCOOL-DOWN\tBREAKER\tSTICKY\tOTHER")
	for _, c := range r.Credentials {
		name := c.ID
		if !c.Enabled {
			name += " (disabled)"
		}
		u := c.Usage
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", name, c.Channel,
			bucket(u.Level("qps")), used(u.Level("rpm")), used(u.Level("rpd")), used(u.Level("tpm")), used(u.Level("tpd")),
			inFlight(u.InFlight, c.Limit.Concurrency), cooldown(u.CooldownLeft), c.Breaker, c.Sticky, others(u, r.Time))
	}
	for _, set := range []struct {
		title string
		rows  []gateway.SubjectReport
	}{{"SHARED LIMIT", r.Pools}, {"CLIENT", r.Clients}, {"GROUP", r.Groups}} {
		if len(set.rows) == 0 {
			continue
		}
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "%s\tQPS\tRPM\tRPD\tTPM\tTPD\tIN FLIGHT\tBUDGETS AND OTHER LIMITS\n", set.title)
		for _, s := range set.rows {
			u := s.Usage
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, bucket(u.Level("qps")), used(u.Level("rpm")),
				used(u.Level("rpd")), used(u.Level("tpm")), used(u.Level("tpd")), inFlight(u.InFlight, s.Limit.Concurrency), others(u, r.Time))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nread at %s\n", r.Time.Format(time.RFC3339))
}

// named are the windows with a column of their own.
var named = map[string]bool{"qps": true, "rpm": true, "rpd": true, "tpm": true, "tpd": true, "concurrency": true}

// others shows the windows without a column: per-model limits, budgets
// (spent/budget, and when they reset), "-" when none.
func others(u quota.Usage, now time.Time) string {
	var out []string
	for _, l := range u.Windows {
		if named[l.Name] {
			continue
		}
		s := l.Name + " " + used(l.Meter)
		if l.Unit == quota.Cost {
			s = l.Name + " $" + money(l.Limit-l.Remaining) + "/$" + money(l.Limit)
		}
		if !l.Resets.IsZero() {
			s += " (resets in " + l.Resets.Sub(now).Round(time.Minute).String() + ")"
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ", ")
}

// money shows micro-dollars as dollars and cents.
func money(micros int64) string { return strconv.FormatFloat(float64(micros)/1e6, 'f', 2, 64) }

// used shows a window as used/limit ("-" when unlimited).
func used(w quota.Meter) string {
	if w.Limit == 0 {
		return "-"
	}
	return strconv.FormatInt(w.Limit-w.Remaining, 10) + "/" + strconv.FormatInt(w.Limit, 10)
}

// bucket shows a token bucket as available/burst.
func bucket(w quota.Meter) string {
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

// sharedRedis loads the config of a command that reads the cluster's
// shared state and connects to its Redis; without one, noRedis says why
// there is nothing to read. A non-zero code is the command's exit code.
func sharedRedis(cmd, path, noRedis string, stderr io.Writer) (*config.Config, redis.UniversalClient, int) {
	cfg, _, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid config:\n", path)
		printErrors(stderr, err)
		return nil, nil, 1
	}
	if cfg.Redis == nil {
		fmt.Fprintf(stderr, "sluice %s: the config has no redis section and REDIS_URL is not set: %s\n", cmd, noRedis)
		return nil, nil, 1
	}
	client, err := newRedisClient(cfg.Redis)
	if err != nil {
		fmt.Fprintf(stderr, "sluice %s: %v\n", cmd, err)
		return nil, nil, 1
	}
	return cfg, client, 0
}
