package signals

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed exchange.lua
var exchangeLua string

var exchangeScript = redis.NewScript(exchangeLua)

// Redis is a Store in Redis (see docs/redis-keys.md):
//
//	<prefix>{sig}:ttfb          hash: key → moving average of the time to first byte (µs)
//	<prefix>{sig}:busy          sorted set: instance → when its counts expire (ms)
//	<prefix>{sig}:busy:<id>     hash: credential → requests in flight on that instance
type Redis struct {
	Client   redis.Scripter
	Prefix   string
	Instance string
	// TTL is how long an instance's counts count after it published them.
	// Default 3s.
	TTL time.Duration
}

func (r *Redis) key(name string) string { return r.Prefix + "{sig}:" + name }

// Exchange implements Store, in one script run.
func (r *Redis) Exchange(ctx context.Context, alpha float64, samples map[string]Sample, inflight map[string]int64) (Snapshot, error) {
	ttl := r.TTL
	if ttl <= 0 {
		ttl = 3 * time.Second
	}
	keys := []string{r.key("ttfb"), r.key("busy"), r.key("busy:" + r.Instance), r.key("busy:")}
	args := []any{alpha, r.Instance, ttl.Milliseconds(), len(samples)}
	for k, s := range samples {
		args = append(args, k, s.Mean.Microseconds(), s.Count)
	}
	for cred, n := range inflight {
		if n > 0 {
			args = append(args, cred, n)
		}
	}
	v, err := exchangeScript.Run(ctx, r.Client, keys, args...).Slice()
	if err != nil {
		return Snapshot{}, fmt.Errorf("exchange routing signals: %w", err)
	}
	if len(v) != 2 {
		return Snapshot{}, fmt.Errorf("exchange routing signals: unexpected reply")
	}
	snap := Snapshot{Latency: map[string]time.Duration{}, InFlight: map[string]int64{}}
	lat, _ := v[0].([]any)
	for i := 0; i+1 < len(lat); i += 2 {
		k, _ := lat[i].(string)
		us, _ := strconv.ParseFloat(toString(lat[i+1]), 64)
		snap.Latency[k] = time.Duration(us * float64(time.Microsecond))
	}
	busy, _ := v[1].([]any)
	for i := 0; i+1 < len(busy); i += 2 {
		k, _ := busy[i].(string)
		n, _ := strconv.ParseInt(toString(busy[i+1]), 10, 64)
		snap.InFlight[k] += n
	}
	return snap, nil
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}
