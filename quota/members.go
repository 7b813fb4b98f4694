package quota

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Member is one running instance, as it announces itself.
type Member struct {
	ID      string    `json:"id"`
	Addr    string    `json:"addr"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Seen    time.Time `json:"seen"`             // last heartbeat
	Config  string    `json:"config,omitempty"` // the config version it runs
}

// MembersConfig configures membership. Zero fields mean the defaults
// written next to them.
type MembersConfig struct {
	// Prefix starts every key. Default "sluice:".
	Prefix string
	// TTL is how long an instance counts as live after its last
	// heartbeat. Default 15s.
	TTL time.Duration
	// Every is the heartbeat period. Default TTL/3.
	Every time.Duration
	// Logger reports heartbeat failures once per outage.
	Logger *slog.Logger
	// Config, when set, gives the config version this instance runs, for
	// each heartbeat.
	Config func() string
}

// Members announces this instance in Redis and counts the live ones.
// Dead instances drop out on their own when their heartbeats stop.
//
// Keys (see docs/redis-keys.md): a sorted set "<prefix>{m}:members" of
// instance IDs scored by their last heartbeat (ms), and a hash
// "<prefix>{m}:member:<id>" with addr, version and started, expiring
// with the TTL.
type Members struct {
	client redis.Cmdable
	cfg    MembersConfig
	self   Member
	live   atomic.Int64
}

// NewMembers returns the membership of one instance.
func NewMembers(client redis.Cmdable, self Member, cfg MembersConfig) *Members {
	if cfg.Prefix == "" {
		cfg.Prefix = "sluice:"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 15 * time.Second
	}
	if cfg.Every <= 0 {
		cfg.Every = cfg.TTL / 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Members{client: client, cfg: cfg, self: self}
	m.live.Store(1)
	return m
}

func (m *Members) setKey() string             { return m.cfg.Prefix + "{m}:members" }
func (m *Members) memberKey(id string) string { return m.cfg.Prefix + "{m}:member:" + id }

// Count is the number of live instances last seen (at least 1: this one).
func (m *Members) Count() int { return int(m.live.Load()) }

// Heartbeat announces this instance once and refreshes the live count.
func (m *Members) Heartbeat(ctx context.Context) error {
	now := time.Now()
	_, err := m.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, m.setKey(), redis.Z{Score: float64(now.UnixMilli()), Member: m.self.ID})
		p.ZRemRangeByScore(ctx, m.setKey(), "-inf", strconv.FormatInt(now.Add(-m.cfg.TTL).UnixMilli(), 10))
		p.HSet(ctx, m.memberKey(m.self.ID), "addr", m.self.Addr, "version", m.self.Version,
			"started", m.self.Started.UTC().Format(time.RFC3339Nano), "config", m.configVersion())
		p.PExpire(ctx, m.memberKey(m.self.ID), m.cfg.TTL)
		p.PExpire(ctx, m.setKey(), 24*time.Hour)
		return nil
	})
	if err != nil {
		return err
	}
	n, err := m.client.ZCount(ctx, m.setKey(), strconv.FormatInt(now.Add(-m.cfg.TTL).UnixMilli(), 10), "+inf").Result()
	if err == nil {
		m.live.Store(max(1, n))
	}
	return err
}

func (m *Members) configVersion() string {
	if m.cfg.Config == nil {
		return ""
	}
	return m.cfg.Config()
}

// Self is this instance as it announces itself.
func (m *Members) Self() Member {
	s := m.self
	s.Config = m.configVersion()
	return s
}

// Run heartbeats until ctx ends, then leaves the set at once.
func (m *Members) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Every)
	defer t.Stop()
	failing := false
	for {
		hctx, cancel := context.WithTimeout(ctx, m.cfg.Every)
		err := m.Heartbeat(hctx)
		cancel()
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			m.cfg.Logger.Warn("membership heartbeat failing", slog.String("error", err.Error()))
		case err == nil && failing:
			failing = false
			m.cfg.Logger.Info("membership heartbeat restored", slog.Int("instances", m.Count()))
		}
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			m.client.ZRem(lctx, m.setKey(), m.self.ID)
			m.client.Del(lctx, m.memberKey(m.self.ID))
			cancel()
			return
		case <-t.C:
		}
	}
}

// List returns the live instances, oldest first.
func (m *Members) List(ctx context.Context) ([]Member, error) {
	cutoff := time.Now().Add(-m.cfg.TTL).UnixMilli()
	zs, err := m.client.ZRangeByScoreWithScores(ctx, m.setKey(), &redis.ZRangeBy{Min: strconv.FormatInt(cutoff, 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, err
	}
	var out []Member
	for _, z := range zs {
		id, _ := z.Member.(string)
		h, err := m.client.HGetAll(ctx, m.memberKey(id)).Result()
		if err != nil {
			return nil, err
		}
		started, _ := time.Parse(time.RFC3339Nano, h["started"])
		out = append(out, Member{ID: id, Addr: h["addr"], Version: h["version"], Started: started, Seen: time.UnixMilli(int64(z.Score)), Config: h["config"]})
	}
	return out, nil
}
