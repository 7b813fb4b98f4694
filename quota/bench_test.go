package quota

import (
	"context"
	"testing"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// BenchmarkRedisAcquireSettle measures one request's quota work on a real
// redis-server: an acquire (client and two candidates with QPS, RPM and
// TPM limits) and its settlement, which the next acquire carries. It
// reports the server's time per script run.
func BenchmarkRedisAcquireSettle(b *testing.B) {
	c := redistest.Start(b).Client(b)
	l := NewRedis(c, RedisConfig{Prefix: uniquePrefix()})
	big := Limit{QPS: 1e6, Burst: 1e6, RPM: 1e9, TPM: 1e12}
	req := Request{Client: "c", ClientLimit: Limit{RPM: 1e9, TPM: 1e12}, Reserve: Amount{Tokens: 300},
		Candidates: []Candidate{{ID: "a", Limit: big}, {ID: "b", Limit: big}}}
	ctx := context.Background()
	for b.Loop() {
		d, err := l.Acquire(ctx, req)
		if err != nil || !d.Allowed {
			b.Fatal(err, d)
		}
		_ = l.Settle(ctx, d.Grant, Amount{Tokens: 120})
	}
	_, us := evalStat(b, c)
	b.ReportMetric(us, "µs/script")
}
