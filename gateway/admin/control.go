// Package admin is Sluice's control plane: the /api/ routes that show a
// cluster's live state and change it (channels, credentials, client keys,
// reloads), the versioned overlay those changes make on top of the config
// file (kept in Redis, or in a local state file without it), and the
// audit log. It steers a gateway through the small Gateway interface
// below; the gateway knows nothing of it.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/redact"
	"github.com/sluice-gateway/sluice/gateway/usage"
	"github.com/sluice-gateway/sluice/quota"
)

// Gateway is what the control plane steers.
type Gateway interface {
	// Apply makes a config version the one new requests use.
	Apply(cfg *config.Config) error
	// Status reports the live state of every channel and credential.
	Status(ctx context.Context) ([]gateway.ChannelStatus, error)
	// Test sends one minimal request through a credential.
	Test(ctx context.Context, credential, model string) gateway.TestResult
	// Reset closes a credential's breaker, cluster-wide.
	Reset(ctx context.Context, credential string)
	// Clients reports the live state of every client key, and Groups of
	// every group of keys.
	Clients(ctx context.Context) ([]gateway.ClientStatus, error)
	Groups(ctx context.Context) ([]gateway.SubjectStatus, error)
	// TestDefinition tests a channel that is not served yet.
	TestDefinition(ctx context.Context, ch config.Channel, model string) ([]gateway.TestResult, error)
	// Stats are the instance's counts of the last minutes' calls.
	Stats() *gateway.Stats
	// Shared says how the instance keeps its quotas now.
	Shared() gateway.SharedState
}

// Config configures a Control. File, Load and Store are required.
type Config struct {
	// File is the config file; Load reads and validates it (config.Load).
	File string
	Load func(path string) (*config.Config, error)
	// Store keeps the overlay and the audit log.
	Store Store
	// Sealer seals the secrets the API stores; nil without
	// SLUICE_SECRET_KEY (the API then refuses to store secrets).
	Sealer *Sealer
	// Instances lists the live instances (Redis membership); nil: this
	// one only, described by Self.
	Instances func(ctx context.Context) ([]quota.Member, error)
	Self      quota.Member
	// Poll is how often the store is looked at for changes a missed
	// message did not tell. Default 500ms.
	Poll time.Duration
	// Logger reports changes and reloads. Nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Usage are the per-client daily rollups GET /api/usage reads; nil:
	// the route answers 404.
	Usage usage.Rollups
}

// Control is one instance's control plane: it keeps the config file's
// version and the overlay's, applies the effective config to its gateway,
// and serves the /api/ routes (Handler).
type Control struct {
	cfg Config
	gw  Gateway

	mu      sync.Mutex // serializes applying
	file    *config.Config
	raw     []byte // the file's bytes, for its digest and for GET /api/config
	overlay Overlay
	eff     *config.Config
	version atomic.Pointer[string]
	reloads int64 // the overlay's Reload this instance has acted on

	guard *guard // admin token guessing
}

// New reads the config file and the stored overlay. The effective config
// (Effective) is what a gateway must be built from; then Attach it.
func New(ctx context.Context, cfg Config) (*Control, error) {
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Control{cfg: cfg, guard: newGuard(cfg.Now)}
	file, raw, err := c.readFile()
	if err != nil {
		return nil, err
	}
	ov, err := cfg.Store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("load the control plane's changes: %w", err)
	}
	eff, warnings, err := effective(file, ov, cfg.Sealer)
	for _, w := range warnings {
		cfg.Logger.Warn(w)
	}
	if err != nil {
		// The stored changes no longer fit the file: serve the file
		// alone rather than nothing, and say why.
		cfg.Logger.Error("the changes made through the admin API do not apply to this config file; serving the file alone",
			slog.Int64("overlay_version", ov.Version), slog.String("error", err.Error()))
		if eff, _, err = effective(file, Overlay{Version: ov.Version, Reload: ov.Reload}, nil); err != nil {
			return nil, err
		}
	}
	c.file, c.raw, c.overlay, c.eff, c.reloads = file, raw, ov, eff, ov.Reload
	c.setVersion()
	return c, nil
}

// readFile reads and validates the config file.
func (c *Control) readFile() (*config.Config, []byte, error) {
	raw, err := os.ReadFile(c.cfg.File)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	file, err := c.cfg.Load(c.cfg.File)
	if err != nil {
		return nil, raw, err
	}
	return file, raw, nil
}

// Attach gives the control plane the gateway it steers.
func (c *Control) Attach(gw Gateway) { c.gw = gw }

// Effective is the config the gateway serves: the file and the overlay.
func (c *Control) Effective() *config.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eff
}

// Version names the config this instance runs: the file's digest and the
// overlay's version ("3fa1c2e0.12").
func (c *Control) Version() string { return *c.version.Load() }

func (c *Control) setVersion() {
	v := fmt.Sprintf("%s.%d", fileDigest(c.raw), c.overlay.Version)
	c.version.Store(&v)
}

// redactor hides every secret of the effective config.
func (c *Control) redactor() *redact.Redactor {
	return redact.New(c.Effective().Secrets()...)
}

// Run keeps the instance on the newest overlay and reloads the file when
// any instance asked, until ctx ends. With watch, it also reloads the
// file when it changes.
func (c *Control) Run(ctx context.Context, watch bool) {
	if watch {
		go c.watchFile(ctx)
	}
	if ss, ok := c.cfg.Store.(StatsStore); ok {
		go c.pushStats(ctx, ss)
	}
	c.cfg.Store.Watch(ctx, c.cfg.Poll, func(ov Overlay) {
		if err := c.applyOverlay(ov); err != nil {
			c.cfg.Logger.Error("a change made through the admin API could not be applied", slog.Int64("version", ov.Version), slog.String("error", err.Error()))
		}
	})
}

// applyOverlay makes a newer overlay the one served, rereading the file
// first when a reload was asked for.
func (c *Control) applyOverlay(ov Overlay) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ov.Version < c.overlay.Version {
		return nil
	}
	file, raw := c.file, c.raw
	if ov.Reload > c.reloads {
		f, r, err := c.readFile()
		if err != nil {
			c.reloads = ov.Reload
			c.cfg.Logger.Error("a reload was asked for, but the config file is invalid: the running config stays", slog.String("error", err.Error()))
		} else {
			file, raw = f, r
		}
	}
	return c.use(file, raw, ov)
}

// use makes a file and an overlay the served config. Called with mu held.
func (c *Control) use(file *config.Config, raw []byte, ov Overlay) error {
	eff, warnings, err := effective(file, ov, c.cfg.Sealer)
	for _, w := range warnings {
		c.cfg.Logger.Warn(w)
	}
	if err != nil {
		return err
	}
	if c.gw != nil {
		if err := c.gw.Apply(eff); err != nil {
			return err
		}
	}
	changedFile := !bytes.Equal(raw, c.raw)
	c.file, c.raw, c.overlay, c.eff = file, raw, ov, eff
	c.reloads = max(c.reloads, ov.Reload)
	c.setVersion()
	c.cfg.Logger.Info("config applied", slog.String("config_version", c.Version()), slog.Bool("file_changed", changedFile))
	return nil
}

// ReloadError is a reload refused because the file is invalid.
type ReloadError struct{ Problems []string }

func (e *ReloadError) Error() string {
	return fmt.Sprintf("the config file is invalid (%d problems); the running config stays", len(e.Problems))
}

// Reload reads the config file again and serves it, with the overlay; an
// invalid file is refused (a *ReloadError listing every problem) and the
// running config stays. With cluster, every other instance reloads too
// (through the store).
func (c *Control) Reload(ctx context.Context, cluster bool) error {
	file, raw, err := c.readFile()
	if err != nil {
		return &ReloadError{Problems: errorsIn(err)}
	}
	c.mu.Lock()
	ov := c.overlay
	if restart := restartNeeded(c.file, file); len(restart) > 0 {
		c.cfg.Logger.Warn("the reloaded config changes settings that take effect at the next restart", slog.Any("sections", restart))
	}
	if err := c.use(file, raw, ov); err != nil {
		c.mu.Unlock()
		return &ReloadError{Problems: errorsIn(err)}
	}
	c.mu.Unlock()
	if !cluster {
		return nil
	}
	next, err := c.cfg.Store.Update(ctx, -1, func(o *Overlay) error { o.Reload++; return nil })
	if err != nil {
		return fmt.Errorf("tell the other instances to reload: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reloads = max(c.reloads, next.Reload)
	if next.Version > c.overlay.Version {
		return c.use(c.file, c.raw, next)
	}
	return nil
}

// watchFile reloads the file (on this instance) whenever its content
// changes, looking every second.
func (c *Control) watchFile(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		raw, err := os.ReadFile(c.cfg.File)
		c.mu.Lock()
		same := err != nil || bytes.Equal(raw, c.raw)
		c.mu.Unlock()
		if same {
			continue
		}
		if err := c.Reload(ctx, false); err != nil {
			var re *ReloadError
			if errors.As(err, &re) {
				c.cfg.Logger.Error("the config file changed but is invalid: the running config stays", slog.Any("problems", re.Problems))
				c.mu.Lock()
				c.raw = raw // report it once, not every second
				c.mu.Unlock()
				continue
			}
			c.cfg.Logger.Error("reloading the changed config file failed", slog.String("error", err.Error()))
		}
	}
}

// change applies a change to the overlay as the next version, based on
// version want (any when want < 0), validating the effective config it
// makes first; the other instances follow through the store.
func (c *Control) change(ctx context.Context, want int64, f func(*Overlay) error) (Overlay, error) {
	c.mu.Lock()
	file := c.file
	c.mu.Unlock()
	next, err := c.cfg.Store.Update(ctx, want, func(o *Overlay) error {
		if err := f(o); err != nil {
			return err
		}
		_, _, err := effective(file, *o, c.cfg.Sealer)
		if err != nil {
			return &invalidError{problems: errorsIn(err)}
		}
		return nil
	})
	if err != nil {
		return next, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if next.Version > c.overlay.Version {
		if err := c.use(c.file, c.raw, next); err != nil {
			return next, err
		}
	}
	return next, nil
}

// invalidError is a change whose effective config is invalid.
type invalidError struct{ problems []string }

func (e *invalidError) Error() string { return "the change makes the config invalid" }

// audit records an admin change, in the log and the store.
func (c *Control) audit(ctx context.Context, e Entry) {
	e.Time, e.Instance = c.cfg.Now().UTC(), c.cfg.Self.ID
	c.cfg.Logger.Info("admin change", slog.String("actor", e.Actor), slog.String("action", e.Action),
		slog.String("target", e.Target), slog.Int64("version", e.Version))
	keep := c.Effective().Admin.AuditSize
	if err := c.cfg.Store.Audit(ctx, e, keep); err != nil {
		c.cfg.Logger.Warn("recording an admin change in the audit log failed", slog.String("error", err.Error()))
	}
}

// restartNeeded lists the sections of a new config file that differ from
// the running one's and that a running instance cannot change.
func restartNeeded(old, next *config.Config) []string {
	var out []string
	for _, s := range []struct {
		name string
		a, b any
	}{
		{"server", old.Server, next.Server}, {"log", old.Log, next.Log}, {"redis", old.Redis, next.Redis},
		{"telemetry", old.Telemetry, next.Telemetry}, {"breaker", old.Breaker, next.Breaker},
		{"admin.listen", old.Admin.Listen, next.Admin.Listen}, {"admin.state_file", old.Admin.StateFile, next.Admin.StateFile},
	} {
		a, _ := json.Marshal(s.a)
		b, _ := json.Marshal(s.b)
		if !bytes.Equal(a, b) {
			out = append(out, s.name)
		}
	}
	return out
}
