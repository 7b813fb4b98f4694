package breaker

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig configures the Redis Sharer. Zero fields mean the defaults
// written next to them.
type RedisConfig struct {
	// Prefix starts every key. Default "sluice:".
	Prefix string
	// Resync is how often the whole shared state is read, besides the
	// pub/sub events. Default 1s.
	Resync time.Duration
	// Logger reports subscription problems. Nil: slog.Default().
	Logger *slog.Logger
}

// Redis shares breaker transitions through Redis (see docs/redis-keys.md):
//
//	<prefix>{brk}:open          hash: credential id → "until_ms|failures|instance"
//	<prefix>{brk}:probe:<id>    string: the instance holding the probe lease (SET NX PX)
//	<prefix>{brk}:events        pub/sub channel: "open|id|until_ms|failures|instance" or "closed|id|instance"
type Redis struct {
	client redis.UniversalClient
	cfg    RedisConfig
}

var _ Sharer = (*Redis)(nil)

// NewRedis returns a Sharer on a Redis client.
func NewRedis(client redis.UniversalClient, cfg RedisConfig) *Redis {
	if cfg.Prefix == "" {
		cfg.Prefix = "sluice:"
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Redis{client: client, cfg: cfg}
}

func (r *Redis) openKey() string           { return r.cfg.Prefix + "{brk}:open" }
func (r *Redis) probeKey(id string) string { return r.cfg.Prefix + "{brk}:probe:" + id }
func (r *Redis) channel() string           { return r.cfg.Prefix + "{brk}:events" }

func encode(e Event) string {
	if !e.Open {
		return "closed|" + e.ID + "|" + e.From
	}
	return "open|" + e.ID + "|" + strconv.FormatInt(e.Until.UnixMilli(), 10) + "|" +
		strconv.FormatUint(uint64(e.Failures), 10) + "|" + e.From
}

// decode reads an event; IDs may contain "|", so fields are taken from
// both ends.
func decode(msg string) (Event, bool) {
	kind, rest, ok := strings.Cut(msg, "|")
	if !ok {
		return Event{}, false
	}
	switch kind {
	case "closed":
		i := strings.LastIndex(rest, "|")
		if i < 0 {
			return Event{}, false
		}
		return Event{ID: rest[:i], From: rest[i+1:]}, true
	case "open":
		parts := strings.Split(rest, "|")
		if len(parts) < 4 {
			return Event{}, false
		}
		n := len(parts)
		until, err1 := strconv.ParseInt(parts[n-3], 10, 64)
		fails, err2 := strconv.ParseUint(parts[n-2], 10, 32)
		if err1 != nil || err2 != nil {
			return Event{}, false
		}
		return Event{ID: strings.Join(parts[:n-3], "|"), Open: true, Until: time.UnixMilli(until),
			Failures: uint32(fails), From: parts[n-1]}, true
	}
	return Event{}, false
}

// Publish implements Sharer.
func (r *Redis) Publish(ctx context.Context, e Event) error {
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if e.Open {
			p.HSet(ctx, r.openKey(), e.ID, strings.TrimPrefix(encode(e), "open|"+e.ID+"|"))
		} else {
			p.HDel(ctx, r.openKey(), e.ID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return r.client.Publish(ctx, r.channel(), encode(e)).Err()
}

// Watch implements Sharer: pub/sub for news within milliseconds, and a
// full read every Resync for whatever a dropped subscription missed.
func (r *Redis) Watch(ctx context.Context, onEvent func(Event), onSnapshot func([]Event)) {
	sub := r.client.Subscribe(ctx, r.channel())
	defer sub.Close()
	msgs := sub.Channel(redis.WithChannelHealthCheckInterval(5 * time.Second))
	t := time.NewTicker(r.cfg.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			if e, ok := decode(m.Payload); ok {
				onEvent(e)
			}
		case <-t.C:
			sctx, cancel := context.WithTimeout(ctx, r.cfg.Resync)
			open, err := r.Open(sctx)
			cancel()
			if err == nil {
				onSnapshot(open)
			}
		}
	}
}

// Open reads every breaker open in the cluster.
func (r *Redis) Open(ctx context.Context) ([]Event, error) {
	h, err := r.client.HGetAll(ctx, r.openKey()).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Event, 0, len(h))
	for id, v := range h {
		if e, ok := decode("open|" + id + "|" + v); ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// Probe implements Sharer with SET NX PX: one holder at a time, and a
// dead holder's lease expires.
func (r *Redis) Probe(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	return r.client.SetNX(ctx, r.probeKey(id), "1", ttl).Result()
}

// EndProbe implements Sharer.
func (r *Redis) EndProbe(ctx context.Context, id string) error {
	return r.client.Del(ctx, r.probeKey(id)).Err()
}
