package admin

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/gateway"
)

// The overview: the cluster at a glance, for the dashboard. Each instance
// counts its calls per second (gateway.Stats); with Redis, it pushes each
// second's counts every second, so that any instance can answer for the
// whole cluster.

// StatsStore keeps the instances' per-second call counts.
type StatsStore interface {
	// PushStats records an instance's buckets.
	PushStats(ctx context.Context, instance string, buckets []gateway.Bucket) error
	// Stats returns every instance's buckets of the seconds from..to-1,
	// merged per second.
	Stats(ctx context.Context, from, to int64) ([]gateway.Bucket, error)
}

// statsTTL is how long a second's counts stay in Redis.
const statsTTL = 11 * time.Minute

func (r *RedisStore) statsKey(sec int64) string { return r.key("stats:" + strconv.FormatInt(sec, 10)) }

// PushStats implements StatsStore: one hash per second, a field per
// instance.
func (r *RedisStore) PushStats(ctx context.Context, instance string, buckets []gateway.Bucket) error {
	if len(buckets) == 0 {
		return nil
	}
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, b := range buckets {
			v, _ := json.Marshal(b)
			p.HSet(ctx, r.statsKey(b.Second), instance, v)
			p.PExpire(ctx, r.statsKey(b.Second), statsTTL)
		}
		return nil
	})
	return err
}

// Stats implements StatsStore, in one pipelined round trip.
func (r *RedisStore) Stats(ctx context.Context, from, to int64) ([]gateway.Bucket, error) {
	cmds := make([]*redis.MapStringStringCmd, 0, to-from)
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for sec := from; sec < to; sec++ {
			cmds = append(cmds, p.HGetAll(ctx, r.statsKey(sec)))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var out []gateway.Bucket
	for i, cmd := range cmds {
		merged := gateway.Bucket{Second: from + int64(i)}
		for _, v := range cmd.Val() {
			var b gateway.Bucket
			if json.Unmarshal([]byte(v), &b) == nil {
				merged.Merge(b)
			}
		}
		if merged.Requests > 0 {
			out = append(out, merged)
		}
	}
	return out, nil
}

// pushStats sends this instance's counts to the stats store every
// second, until ctx ends.
func (c *Control) pushStats(ctx context.Context, ss StatsStore) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := c.cfg.Now().Unix()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := c.cfg.Now().Unix()
		if c.gw == nil || now <= last {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		if err := ss.PushStats(pctx, c.cfg.Self.ID, c.gw.Stats().Since(last, now)); err == nil {
			last = now
		}
		cancel()
	}
}

// series is one point of the overview's charts.
type series struct {
	Time      int64   `json:"t"` // Unix seconds, the point's start
	RPS       float64 `json:"rps"`
	ErrorRate float64 `json:"error_rate"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
}

// overviewWindow and overviewStep shape the charts: five minutes in
// points of ten seconds.
const (
	overviewWindow = 300
	overviewStep   = 10
)

func (c *Control) overview(w http.ResponseWriter, r *http.Request, _ string) error {
	rctx, cancel := ctx(r)
	defer cancel()
	now := c.cfg.Now().Unix()
	buckets, scope, err := c.buckets(rctx, now-overviewWindow, now)
	if err != nil {
		return err
	}
	status, err := c.gw.Status(rctx)
	if err != nil {
		return err
	}
	type open struct {
		Channel    string `json:"channel"`
		Credential string `json:"credential"`
		State      string `json:"state"`
	}
	breakers := []open{}
	for _, ch := range status {
		for _, cr := range ch.Credentials {
			if cr.Breaker != "closed" {
				breakers = append(breakers, open{Channel: ch.Name, Credential: cr.ID, State: cr.Breaker})
			}
		}
	}
	var instances []instance
	if c.cfg.Instances != nil {
		if list, err := c.cfg.Instances(rctx); err == nil {
			for _, m := range list {
				instances = append(instances, instance{ID: m.ID, Address: m.Addr, Version: m.Version, Started: m.Started, LastHeartbeat: m.Seen, ConfigVersion: m.Config})
			}
		}
	}
	if instances == nil {
		s := c.cfg.Self
		instances = []instance{{ID: s.ID, Address: s.Addr, Version: s.Version, Started: s.Started, LastHeartbeat: c.cfg.Now(), ConfigVersion: c.Version()}}
	}
	last := summarize(buckets, now-60, now)
	writeJSON(w, http.StatusOK, map[string]any{
		"time": c.cfg.Now().UTC(), "config_version": c.Version(), "instance": c.cfg.Self.ID, "stats_scope": scope,
		"instances": instances, "redis": c.gw.Shared(), "open_breakers": breakers,
		"last_minute": last, "series": chart(buckets, now-overviewWindow, now),
	})
	return nil
}

// buckets reads the cluster's counts (or this instance's, without a
// stats store), saying which.
func (c *Control) buckets(ctx context.Context, from, to int64) ([]gateway.Bucket, string, error) {
	if ss, ok := c.cfg.Store.(StatsStore); ok && c.gw.Shared().Shared && !c.gw.Shared().Degraded {
		b, err := ss.Stats(ctx, from, to)
		if err == nil {
			return b, "cluster", nil
		}
	}
	return c.gw.Stats().Since(from, to), "instance", nil
}

// summarize is one point made of the buckets of from..to-1.
func summarize(buckets []gateway.Bucket, from, to int64) series {
	var sum gateway.Bucket
	for _, b := range buckets {
		if b.Second >= from && b.Second < to {
			sum.Merge(b)
		}
	}
	p := series{Time: from, RPS: float64(sum.Requests) / float64(to-from), P50: sum.Percentile(0.5), P99: sum.Percentile(0.99)}
	if sum.Requests > 0 {
		p.ErrorRate = math.Round(1000*float64(sum.Errors)/float64(sum.Requests)) / 1000
	}
	return p
}

// chart is the points of from..to-1, one per overviewStep seconds.
func chart(buckets []gateway.Bucket, from, to int64) []series {
	var out []series
	for t := from; t < to; t += overviewStep {
		out = append(out, summarize(buckets, t, min(t+overviewStep, to)))
	}
	return out
}
