package affinity

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig configures a Redis store. Zero fields mean the defaults
// written next to them.
type RedisConfig struct {
	// Prefix and HashTag make the keys "<prefix>{<tag>}:aff:<key>", the
	// layout quota.Redis reads and writes in its acquire script (so a
	// Redis-backed limiter keeps sticky mappings in the same round trip
	// as the quota). Defaults "sluice:" and "q".
	Prefix, HashTag string
	// TTL is how long an unused mapping lives. Default 10 minutes.
	TTL time.Duration
}

// Redis is a Store shared by every instance: a string per sticky key,
// holding a credential ID, with a sliding TTL.
type Redis struct {
	client redis.UniversalClient
	cfg    RedisConfig
}

var _ Store = (*Redis)(nil)

// NewRedis returns a Store on a Redis client.
func NewRedis(client redis.UniversalClient, cfg RedisConfig) *Redis {
	if cfg.Prefix == "" {
		cfg.Prefix = "sluice:"
	}
	if cfg.HashTag == "" {
		cfg.HashTag = "q"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Minute
	}
	return &Redis{client: client, cfg: cfg}
}

func (r *Redis) key(k string) string { return r.cfg.Prefix + "{" + r.cfg.HashTag + "}:aff:" + k }

// Get implements Store with GETEX, which restarts the TTL in the same call.
func (r *Redis) Get(ctx context.Context, key string) (string, error) {
	id, err := r.client.GetEx(ctx, r.key(key), r.cfg.TTL).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return id, err
}

// Set implements Store.
func (r *Redis) Set(ctx context.Context, key, id string) error {
	return r.client.Set(ctx, r.key(key), id, r.cfg.TTL).Err()
}

// CountByCredential counts the live sticky mappings of each credential,
// for inspection. It scans the keys: fine for an operator's command, not
// for the request path.
func (r *Redis) CountByCredential(ctx context.Context) (map[string]int, error) {
	counts := make(map[string]int)
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, r.key("*"), 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			vals, err := c.MGet(ctx, batch...).Result()
			if err != nil {
				return err
			}
			for _, v := range vals {
				if id, ok := v.(string); ok {
					counts[id]++
				}
			}
			batch = batch[:0]
			return nil
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		// The keys share one hash tag, hence one master; scan each to find it.
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
		return counts, err
	}
	return counts, scan(ctx, r.client)
}
