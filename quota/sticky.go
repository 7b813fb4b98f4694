package quota

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sticky mappings (a sticky key → the credential that served it) belong
// to the limiter: the Redis backend reads and writes them in the acquire
// script, in the same round trip as the quota (keys: Keys.Sticky), and the
// memory backend keeps them beside its counters. The affinity package only
// derives the keys.

// stickies is the memory backend's sticky mappings, each living for the
// time to live of the request that last used it.
type stickies struct {
	now func() time.Time

	mu        sync.Mutex
	entries   map[string]stickyEntry
	sweepSize int // sweep expired entries when the map grows past this
}

type stickyEntry struct {
	id      string
	expires time.Time
}

func newStickies(now func() time.Time) *stickies {
	return &stickies{now: now, entries: make(map[string]stickyEntry), sweepSize: 1024}
}

// defaultStickyTTL is the time to live of a mapping whose request gave
// none.
const defaultStickyTTL = 10 * time.Minute

// get returns the credential key maps to ("" if none or expired) and
// restarts its time to live.
func (s *stickies) get(key string, ttl time.Duration) string {
	ttl = cmp.Or(ttl, defaultStickyTTL)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok || !now.Before(e.expires) {
		return ""
	}
	e.expires = now.Add(ttl)
	s.entries[key] = e
	return e.id
}

// set maps key to id for ttl, sweeping expired mappings as the map grows.
func (s *stickies) set(key, id string, ttl time.Duration) {
	ttl = cmp.Or(ttl, defaultStickyTTL)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[key] = stickyEntry{id: id, expires: now.Add(ttl)}
	if len(s.entries) > s.sweepSize {
		for k, e := range s.entries {
			if !now.Before(e.expires) {
				delete(s.entries, k)
			}
		}
		s.sweepSize = max(1024, 2*len(s.entries))
	}
}

// live counts the mappings that have not expired.
func (s *stickies) live() int {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.entries {
		if now.Before(e.expires) {
			n++
		}
	}
	return n
}

// StickyCounts counts the live sticky mappings of each credential, for
// inspection. It scans the keys: fine for an operator's command, not for
// the request path.
func (r *Redis) StickyCounts(ctx context.Context) (map[string]int, error) {
	counts := make(map[string]int)
	pattern := r.Keys().Sticky("*")
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
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
	switch c := r.client.(type) {
	case *redis.ClusterClient:
		// The keys share one hash tag, hence one master; scan each to find it.
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
		return counts, err
	case redis.Cmdable:
		return counts, scan(ctx, c)
	}
	return nil, errors.New("sticky counts: the Redis client cannot scan")
}
