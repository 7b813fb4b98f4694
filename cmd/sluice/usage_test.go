package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/usage"
	"github.com/sluice-gateway/sluice/integration/redistest"
)

// TestUsageCommand reads the rollups the instances keep in Redis, as a
// table and as CSV.
func TestUsageCommand(t *testing.T) {
	srv := redistest.Start(t)
	r := &usage.RedisRollups{Client: srv.Client(t), Prefix: "sluice:", Retention: 48 * time.Hour}
	now := time.Now().UTC()
	if err := r.Add(context.Background(), usage.Days([]usage.Record{
		{Time: now, Client: "team-a", InputTokens: 100, OutputTokens: 20, Cost: 2_500_000},
		{Time: now, Client: "team-a", InputTokens: 50, OutputTokens: 10, Cost: 500_000},
		{Time: now, Client: "team-b", InputTokens: 7, OutputTokens: 3, CachedTokens: 2, Cost: 42},
	})); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(path, []byte(`redis: {url: "redis://`+srv.Addr+`"}
channels: [{type: mock, models: [m]}]`), 0o600)

	var out, errOut bytes.Buffer
	if code := run([]string{"usage", "--config", path}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	table := out.String()
	for _, want := range []string{"team-a", "2  ", "150", "3.000000", "team-b", "0.000042", "TOTAL", "3.000042"} {
		if !strings.Contains(table, want) {
			t.Fatalf("missing %q in:\n%s", want, table)
		}
	}
	out.Reset()
	if code := run([]string{"usage", "--config", path, "--client", "team-b", "--format", "csv"}, &out, &errOut); code != 0 {
		t.Fatalf("csv: exit %d: %s", code, errOut.String())
	}
	if want := "date,client,requests,input_tokens,output_tokens,cached_tokens,cost_usd\n" + now.Format("2006-01-02") + ",team-b,1,7,3,2,0.000042\n"; out.String() != want {
		t.Fatalf("csv:\n%s\nwant:\n%s", out.String(), want)
	}
	for _, args := range [][]string{{"--format", "xml"}, {"--from", "last week"}} {
		if code := run(append([]string{"usage", "--config", path}, args...), &out, &errOut); code != 2 {
			t.Fatalf("%v: exit %d", args, code)
		}
	}
}
