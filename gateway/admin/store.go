package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Store keeps the overlay and the audit log: in Redis for a cluster
// (every instance sees every change), in a local state file for one
// instance (a restart keeps them).
type Store interface {
	// Load returns the newest overlay (version 0 when none was stored).
	Load(ctx context.Context) (Overlay, error)
	// Update applies change to the newest overlay and stores the result
	// as the next version, if the stored version is still want (any when
	// want < 0), else fails with ErrConflict. The other instances learn of
	// it.
	Update(ctx context.Context, want int64, change func(*Overlay) error) (Overlay, error)
	// Watch calls onChange with every newer overlay, told at once or found
	// by looking every interval, until ctx ends.
	Watch(ctx context.Context, every time.Duration, onChange func(Overlay))
	// Audit records an entry, keeping the newest keep.
	Audit(ctx context.Context, e Entry, keep int) error
	// AuditLog returns the newest n entries, newest first.
	AuditLog(ctx context.Context, n int) ([]Entry, error)
}

// ErrConflict is a write based on a version that is no longer the newest.
var ErrConflict = errors.New("the config changed since the version this change is based on")

// Entry is one admin change, as the audit log keeps it: never a secret.
type Entry struct {
	Time     time.Time       `json:"time"`
	Actor    string          `json:"actor"` // the admin token's name
	Action   string          `json:"action"`
	Target   string          `json:"target,omitempty"`
	Before   json.RawMessage `json:"before,omitempty"`
	After    json.RawMessage `json:"after,omitempty"`
	Version  int64           `json:"version,omitempty"` // the overlay version it made
	Instance string          `json:"instance,omitempty"`
}

// RedisStore keeps the overlay in Redis (see docs/redis-keys.md):
//
//	<prefix>{adm}:overlay   string: the overlay, as JSON
//	<prefix>{adm}:version   string: its version
//	<prefix>{adm}:audit     list: the audit log, newest first
//	<prefix>{adm}:changes   pub/sub channel: each new version
//	<prefix>{adm}:stats:<s> hash: each instance's counts of second s
type RedisStore struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisStore returns a store on a Redis client.
func NewRedisStore(client redis.UniversalClient, prefix string) *RedisStore {
	if prefix == "" {
		prefix = "sluice:"
	}
	return &RedisStore{client: client, prefix: prefix}
}

func (r *RedisStore) key(name string) string { return r.prefix + "{adm}:" + name }

// casScript stores an overlay if the stored version is still the one it
// was based on, and tells the other instances.
//
// KEYS[1] overlay, KEYS[2] version; ARGV[1] the version it was based on,
// ARGV[2] the new overlay, ARGV[3] the channel.
var casScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur ~= tonumber(ARGV[1]) then
  return -1
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], cur + 1)
redis.call('PUBLISH', ARGV[3], cur + 1)
return cur + 1`)

// Load implements Store.
func (r *RedisStore) Load(ctx context.Context) (Overlay, error) {
	b, err := r.client.Get(ctx, r.key("overlay")).Bytes()
	if errors.Is(err, redis.Nil) {
		return Overlay{}, nil
	}
	if err != nil {
		return Overlay{}, err
	}
	var ov Overlay
	if err := json.Unmarshal(b, &ov); err != nil {
		return Overlay{}, fmt.Errorf("decode the stored overlay: %w", err)
	}
	return ov, nil
}

// Update implements Store.
func (r *RedisStore) Update(ctx context.Context, want int64, change func(*Overlay) error) (Overlay, error) {
	for range 10 {
		ov, err := r.Load(ctx)
		if err != nil {
			return Overlay{}, err
		}
		if want >= 0 && ov.Version != want {
			return ov, ErrConflict
		}
		next := ov.clone()
		if err := change(&next); err != nil {
			return ov, err
		}
		next.Version = ov.Version + 1
		b, err := json.Marshal(next)
		if err != nil {
			return ov, err
		}
		v, err := casScript.Run(ctx, r.client, []string{r.key("overlay"), r.key("version")}, ov.Version, b, r.key("changes")).Int64()
		if err != nil {
			return ov, err
		}
		if v > 0 {
			return next, nil
		}
		if want >= 0 {
			return ov, ErrConflict
		}
	}
	return Overlay{}, fmt.Errorf("%w: too many concurrent changes", ErrConflict)
}

// Watch implements Store: pub/sub for news within milliseconds, and a
// look at the version every interval for what a dropped subscription
// missed.
func (r *RedisStore) Watch(ctx context.Context, every time.Duration, onChange func(Overlay)) {
	sub := r.client.Subscribe(ctx, r.key("changes"))
	defer sub.Close()
	msgs := sub.Channel(redis.WithChannelHealthCheckInterval(5 * time.Second))
	t := time.NewTicker(every)
	defer t.Stop()
	var seen int64
	check := func() {
		lctx, cancel := context.WithTimeout(ctx, every)
		defer cancel()
		v, err := r.client.Get(lctx, r.key("version")).Int64()
		if err != nil && !errors.Is(err, redis.Nil) || v <= seen {
			return
		}
		ov, err := r.Load(lctx)
		if err != nil || ov.Version <= seen {
			return
		}
		seen = ov.Version
		onChange(ov)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			if v, err := strconv.ParseInt(m.Payload, 10, 64); err == nil && v > seen {
				check()
			}
		case <-t.C:
			check()
		}
	}
}

// Audit implements Store.
func (r *RedisStore) Audit(ctx context.Context, e Entry, keep int) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, r.key("audit"), b)
		p.LTrim(ctx, r.key("audit"), 0, int64(max(keep, 1)-1))
		return nil
	})
	return err
}

// AuditLog implements Store.
func (r *RedisStore) AuditLog(ctx context.Context, n int) ([]Entry, error) {
	raw, err := r.client.LRange(ctx, r.key("audit"), 0, int64(max(n, 1)-1)).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(raw))
	for _, s := range raw {
		var e Entry
		if json.Unmarshal([]byte(s), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// FileStore keeps the overlay and the audit log in a local state file,
// for an instance without Redis: written whole, atomically (a temporary
// file renamed over it), readable only by its owner.
type FileStore struct {
	path string

	mu sync.Mutex
}

// fileState is the state file's content.
type fileState struct {
	Overlay Overlay `json:"overlay"`
	Audit   []Entry `json:"audit,omitempty"` // newest first
}

// NewFileStore returns a store on a state file (created on the first
// change).
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

func (f *FileStore) read() (fileState, error) {
	var st fileState
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("state file %s: %w", f.path, err)
	}
	return st, nil
}

func (f *FileStore) write(st fileState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), filepath.Base(f.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("state file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return os.Rename(tmp.Name(), f.path)
}

// Load implements Store.
func (f *FileStore) Load(context.Context) (Overlay, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.read()
	return st.Overlay, err
}

// Update implements Store.
func (f *FileStore) Update(_ context.Context, want int64, change func(*Overlay) error) (Overlay, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.read()
	if err != nil {
		return Overlay{}, err
	}
	if want >= 0 && st.Overlay.Version != want {
		return st.Overlay, ErrConflict
	}
	next := st.Overlay.clone()
	if err := change(&next); err != nil {
		return st.Overlay, err
	}
	next.Version = st.Overlay.Version + 1
	st.Overlay = next
	return next, f.write(st)
}

// Watch implements Store: one instance makes every change itself.
func (f *FileStore) Watch(ctx context.Context, _ time.Duration, _ func(Overlay)) { <-ctx.Done() }

// Audit implements Store.
func (f *FileStore) Audit(_ context.Context, e Entry, keep int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.read()
	if err != nil {
		return err
	}
	st.Audit = append([]Entry{e}, st.Audit...)
	if len(st.Audit) > max(keep, 1) {
		st.Audit = st.Audit[:max(keep, 1)]
	}
	return f.write(st)
}

// AuditLog implements Store.
func (f *FileStore) AuditLog(_ context.Context, n int) ([]Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.read()
	if err != nil {
		return nil, err
	}
	return st.Audit[:min(n, len(st.Audit))], nil
}

// MemoryStore keeps the overlay in memory: for an instance whose control
// plane only reloads its file (no admin token).
type MemoryStore struct {
	mu      sync.Mutex
	overlay Overlay
	audit   []Entry
}

// Load implements Store.
func (m *MemoryStore) Load(context.Context) (Overlay, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.overlay.clone(), nil
}

// Update implements Store.
func (m *MemoryStore) Update(_ context.Context, want int64, change func(*Overlay) error) (Overlay, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if want >= 0 && m.overlay.Version != want {
		return m.overlay, ErrConflict
	}
	next := m.overlay.clone()
	if err := change(&next); err != nil {
		return m.overlay, err
	}
	next.Version = m.overlay.Version + 1
	m.overlay = next
	return next.clone(), nil
}

// Watch implements Store.
func (m *MemoryStore) Watch(ctx context.Context, _ time.Duration, _ func(Overlay)) { <-ctx.Done() }

// Audit implements Store.
func (m *MemoryStore) Audit(_ context.Context, e Entry, keep int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.audit = append([]Entry{e}, m.audit...)
	if len(m.audit) > max(keep, 1) {
		m.audit = m.audit[:max(keep, 1)]
	}
	return nil
}

// AuditLog implements Store.
func (m *MemoryStore) AuditLog(_ context.Context, n int) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.audit[:min(n, len(m.audit))]), nil
}
