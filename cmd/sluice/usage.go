package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sluice-gateway/sluice/gateway/usage"
)

// usageCommand prints what clients used, per day, from the rollups the
// instances of a config keep in Redis.
func usageCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice usage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("SLUICE_CONFIG"), "config file")
	client := fs.String("client", "", "one client key's name (default: every client)")
	today := time.Now().UTC().Format("2006-01-02")
	from := fs.String("from", time.Now().UTC().Add(-6*24*time.Hour).Format("2006-01-02"), "first day (UTC)")
	to := fs.String("to", today, "last day (UTC)")
	format := fs.String("format", "table", "table or csv")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "sluice usage: --config is required")
		return 2
	}
	if *format != "table" && *format != "csv" {
		fmt.Fprintf(stderr, "sluice usage: --format: want table or csv, got %q\n", *format)
		return 2
	}
	start, err1 := time.Parse("2006-01-02", *from)
	end, err2 := time.Parse("2006-01-02", *to)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(stderr, "sluice usage: --from and --to: want dates such as 2026-12-01")
		return 2
	}
	cfg, rc, code := sharedRedis("usage", *path, "each instance keeps its own rollups (read them at GET /api/usage)", stderr)
	if code != 0 {
		return code
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := &usage.RedisRollups{Client: rc, Prefix: cfg.Redis.KeyPrefix}
	days, err := r.Read(ctx, start, end, *client)
	if err != nil {
		fmt.Fprintf(stderr, "sluice usage: %v\n", err)
		return 1
	}
	if *format == "csv" {
		if err := usage.WriteCSV(stdout, days); err != nil {
			fmt.Fprintf(stderr, "sluice usage: %v\n", err)
			return 1
		}
		return 0
	}
	printUsage(stdout, days)
	return 0
}

// printUsage writes days as a table, with a total row.
func printUsage(w io.Writer, days []usage.Day) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "DATE\tCLIENT\tREQUESTS\tINPUT\tOUTPUT\tCACHED\tCOST (USD)\t")
	var total usage.Day
	for _, d := range days {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t\n", d.Date, d.Client, d.Requests, d.InputTokens, d.OutputTokens, d.CachedTokens, d.CostUSD)
		total.Requests += d.Requests
		total.InputTokens += d.InputTokens
		total.OutputTokens += d.OutputTokens
		total.CachedTokens += d.CachedTokens
		total.Cost += d.Cost
	}
	fmt.Fprintf(tw, "\tTOTAL\t%d\t%d\t%d\t%d\t%s\t\n", total.Requests, total.InputTokens, total.OutputTokens, total.CachedTokens, usage.Dollars(total.Cost))
	tw.Flush()
}
