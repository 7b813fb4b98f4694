package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/integration/redistest"
	"github.com/sluice-gateway/sluice/quota"
)

// BenchmarkBackends relays the same calls through the gateway with each
// quota backend, in the same run: memory (the baseline), Redis in exact
// mode, and Redis in lease mode. It reports Redis round trips per request
// (from INFO commandstats deltas); compare ns/op for the throughput ratio.
func BenchmarkBackends(b *testing.B) {
	srv := redistest.Start(b)
	rc := srv.Client(b)
	cfg := loadConfig(b, `
clients: [{name: bench, key: sk-bench, limits: {rpm: 100000000, tpm: 100000000000}}]
channels:
  - type: mock
    models: [m]
    credentials:
      - {id: a, limits: {qps: 1000000, burst: 1000000, rpm: 1000000000, tpm: 1000000000000}}
      - {id: b, limits: {qps: 1000000, burst: 1000000, rpm: 1000000000, tpm: 1000000000000}}
`)
	backends := []struct {
		name string
		new  func() quota.Limiter
	}{
		{"memory", func() quota.Limiter { return NewMemoryLimiter(cfg) }},
		{"redis", func() quota.Limiter { return quota.NewRedis(rc, quota.RedisConfig{Prefix: uniqueBenchPrefix()}) }},
		{"redis-lease", func() quota.Limiter {
			return quota.NewLeased(quota.NewRedis(rc, quota.RedisConfig{Prefix: uniqueBenchPrefix()}), quota.LeaseConfig{})
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			limiter := be.new()
			if r, ok := limiter.(interface{ Run(context.Context) }); ok {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go r.Run(ctx)
			}
			g, err := New(cfg, Deps{Limiter: limiter, Logger: testLogger()})
			if err != nil {
				b.Fatal(err)
			}
			gw := httptest.NewServer(g)
			defer gw.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			send := func() {
				req, _ := http.NewRequest("POST", gw.URL+"/v1/chat/completions", strings.NewReader(chatBody("m")))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer sk-bench")
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			send() // load the scripts
			before := redisCalls(b, rc)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					send()
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(redisCalls(b, rc)-before)/float64(b.N), "redis-roundtrips/op")
			if us := scriptMicros(b, rc); us > 0 {
				b.ReportMetric(us, "µs/script")
			}
		})
	}
}

var benchPrefixes int

func uniqueBenchPrefix() string {
	benchPrefixes++
	return fmt.Sprintf("bench%d:", benchPrefixes)
}

// redisCalls counts the round trips the server served: the script runs
// (EVALSHA, EVAL), which are every call Sluice makes on the request path.
// Commands a script runs inside appear in commandstats too, but they are
// not round trips.
func redisCalls(tb testing.TB, c *redis.Client) int64 {
	tb.Helper()
	var total int64
	for _, cmd := range []string{"evalsha", "eval"} {
		calls, _ := commandStat(tb, c, cmd)
		total += calls
	}
	return total
}

// scriptMicros is the server's mean time per EVALSHA, in µs.
func scriptMicros(tb testing.TB, c *redis.Client) float64 {
	_, us := commandStat(tb, c, "evalsha")
	return us
}

// commandStat reads one command's calls and µs per call.
func commandStat(tb testing.TB, c *redis.Client, cmd string) (calls int64, usPerCall float64) {
	tb.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":"); ok {
			for _, f := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "calls":
					fmt.Sscan(v, &calls)
				case "usec_per_call":
					fmt.Sscan(v, &usPerCall)
				}
			}
		}
	}
	return calls, usPerCall
}
