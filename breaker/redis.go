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

// Redis shares breaker transitions through Redis (see docs/redis-keys.md).
// An open breaker is a key whose time to live is the time it stays open,
// so that Redis, not an instance's clock, says when it ends:
//
//	<prefix>{brk}:open:<id>     string, expiring when the breaker half-opens
//	<prefix>{brk}:opened        hash: id → "failures|instance|trip" of every breaker open or
//	                            half-open in the cluster, until a probe closes it
//	<prefix>{brk}:probe:<id>    string: the instance holding the probe lease (SET NX PX)
//	<prefix>{brk}:events        pub/sub channel: "opened|id|ms|failures|instance|trip" or "closed|id|instance"
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

func (r *Redis) openKey(id string) string  { return r.cfg.Prefix + "{brk}:open:" + id }
func (r *Redis) indexKey() string          { return r.cfg.Prefix + "{brk}:opened" }
func (r *Redis) probeKey(id string) string { return r.cfg.Prefix + "{brk}:probe:" + id }
func (r *Redis) channel() string           { return r.cfg.Prefix + "{brk}:events" }

// openScript records an open breaker with its time to live, and tells the
// other instances, in one round trip.
//
// KEYS[1] the open key, KEYS[2] the index, ARGV[1] the id, ARGV[2] the
// value, ARGV[3] the time to live in ms, ARGV[4] the channel, ARGV[5] the
// event.
//
// The index expires a day after the last opening, so that breakers of
// credentials no longer configured do not stay listed forever.
var openScript = redis.NewScript(`
redis.call('SET', KEYS[1], '1', 'PX', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], 86400000)
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1`)

// listScript returns every breaker open or half-open in the cluster as
// id, value, ms left open (0: half-open).
//
// KEYS[1] the index, ARGV[1] the open keys' prefix.
var listScript = redis.NewScript(`
local out = {}
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  out[#out + 1] = h[i]
  out[#out + 1] = h[i + 1]
  out[#out + 1] = math.max(0, redis.call('PTTL', ARGV[1] .. h[i]))
end
return out`)

// encode writes an event for the channel.
func encode(e Event) string {
	if !e.Open {
		return "closed|" + e.ID + "|" + e.From
	}
	return "opened|" + e.ID + "|" + strconv.FormatInt(e.For.Milliseconds(), 10) + "|" + value(e)
}

// value is what the open key holds.
func value(e Event) string {
	return strconv.FormatUint(uint64(e.Failures), 10) + "|" + e.From + "|" + e.Trip
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
	case "opened":
		parts := strings.Split(rest, "|")
		n := len(parts)
		if n < 5 {
			return Event{}, false
		}
		ms, err := strconv.ParseInt(parts[n-4], 10, 64)
		if err != nil {
			return Event{}, false
		}
		e, ok := decodeValue(strings.Join(parts[:n-4], "|"), strings.Join(parts[n-3:], "|"))
		e.For = time.Duration(ms) * time.Millisecond
		return e, ok
	}
	return Event{}, false
}

// decodeValue reads an open key's value for id.
func decodeValue(id, v string) (Event, bool) {
	parts := strings.Split(v, "|")
	if len(parts) < 3 {
		return Event{}, false
	}
	n := len(parts)
	fails, err := strconv.ParseUint(parts[n-3], 10, 32)
	if err != nil {
		return Event{}, false
	}
	return Event{ID: id, Open: true, Failures: uint32(fails), From: parts[n-2], Trip: parts[n-1]}, true
}

// Publish implements Sharer.
func (r *Redis) Publish(ctx context.Context, e Event) error {
	if e.Open {
		ms := max(1, e.For.Milliseconds())
		return openScript.Run(ctx, r.client, []string{r.openKey(e.ID), r.indexKey()},
			e.ID, value(e), ms, r.channel(), encode(e)).Err()
	}
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.openKey(e.ID))
		p.HDel(ctx, r.indexKey(), e.ID)
		p.Publish(ctx, r.channel(), encode(e))
		return nil
	})
	return err
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

// Open reads every breaker open or half-open in the cluster, with how
// long each stays open (as Redis counts it; 0 for a half-open one).
func (r *Redis) Open(ctx context.Context) ([]Event, error) {
	v, err := listScript.Run(ctx, r.client, []string{r.indexKey()}, r.openKey("")).Slice()
	if err != nil {
		return nil, err
	}
	out := make([]Event, 0, len(v)/3)
	for i := 0; i+2 < len(v); i += 3 {
		id, _ := v[i].(string)
		val, _ := v[i+1].(string)
		ms, _ := v[i+2].(int64)
		if e, ok := decodeValue(id, val); ok {
			e.For = time.Duration(ms) * time.Millisecond
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
