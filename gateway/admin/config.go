package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/usage"
)

func (c *Control) reload(w http.ResponseWriter, r *http.Request, actor string) error {
	rctx, cancel := ctx(r)
	defer cancel()
	if err := c.Reload(rctx, true); err != nil {
		var re *ReloadError
		if errors.As(err, &re) {
			c.audit(rctx, Entry{Actor: actor, Action: "reload.refused", After: mustJSON(map[string]any{"problems": len(re.Problems)})})
		}
		return err
	}
	c.audit(rctx, Entry{Actor: actor, Action: "reload", After: mustJSON(map[string]string{"config_version": c.Version()})})
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "config_version": c.Version()})
	return nil
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// config answers the effective config: the file as written, with its
// ${VAR} references and without the secrets written in it (***), and the
// API's changes, their secrets shown as ***.
func (c *Control) config(w http.ResponseWriter, r *http.Request, _ string) error {
	c.mu.Lock()
	raw, ov := c.raw, c.overlay
	c.mu.Unlock()
	shown, _, err := config.ParseKeepEnv(raw)
	if err != nil {
		// A file that needs its references expanded to be read: show the
		// effective config, every secret masked.
		shown = c.Effective()
	}
	out, err := cloneConfig(shown)
	if err != nil {
		return err
	}
	maskSecrets(out)
	for i := range out.Channels {
		if on, ok := ov.Enabled[channelKey(out.Channels[i].Name)]; ok {
			out.Channels[i].Enabled = config.Bool(on)
		}
	}
	for _, ch := range ov.Channels {
		out.Channels = append(out.Channels, maskChannel(ch))
	}
	for _, cl := range ov.Clients {
		cl.KeySHA256, cl.PreviousKeys = "***", nil
		out.Clients = append(out.Clients, cl)
	}
	// Whatever secret is left as written in the file is masked too.
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	b = c.redactor().JSON(b)
	etag(w, ov.Version)
	writeJSON(w, http.StatusOK, map[string]any{"version": ov.Version, "config_version": c.Version(), "file": c.cfg.File,
		"config": json.RawMessage(b)})
	return nil
}

// maskSecrets replaces the secrets written in a config, outside ${VAR}
// references, with ***.
func maskSecrets(cfg *config.Config) {
	mask := func(v *string) {
		if *v != "" && !isReference(*v) {
			*v = "***"
		}
	}
	for i := range cfg.Clients {
		mask(&cfg.Clients[i].Key)
	}
	mask(&cfg.Admin.Token)
	for i := range cfg.Admin.Tokens {
		mask(&cfg.Admin.Tokens[i].Token)
	}
	if cfg.Redis != nil {
		mask(&cfg.Redis.Password)
	}
	for i := range cfg.Channels {
		_ = secretFields(&cfg.Channels[i], func(_ string, v *string) error {
			mask(v)
			return nil
		})
	}
}

// isReference reports whether a value is a single ${VAR} reference.
func isReference(v string) bool {
	return len(v) > 3 && v[0] == '$' && v[1] == '{' && v[len(v)-1] == '}'
}

func (c *Control) auditLog(w http.ResponseWriter, r *http.Request, _ string) error {
	n := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: "limit: want a positive number"}
		}
		n = min(v, c.Effective().Admin.AuditSize)
	}
	rctx, cancel := ctx(r)
	defer cancel()
	entries, err := c.cfg.Store.AuditLog(rctx, n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
	return nil
}

// usage answers the per-client daily rollups of a range of days (UTC):
// ?client= (default every client), ?from= and ?to= (2006-01-02, default
// the last 7 days), ?format=csv for a spreadsheet.
func (c *Control) usage(w http.ResponseWriter, r *http.Request, _ string) error {
	if c.cfg.Usage == nil {
		return &apiError{status: http.StatusNotFound, code: "unknown_route", msg: "usage rollups are not kept by this instance"}
	}
	q := r.URL.Query()
	today := c.cfg.Now().UTC().Truncate(24 * time.Hour)
	from, to := today.Add(-6*24*time.Hour), today
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		if s := q.Get(p.name); s != "" {
			d, err := time.Parse("2006-01-02", s)
			if err != nil {
				return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: p.name + ": want a date (2006-01-02)"}
			}
			*p.dst = d
		}
	}
	client := q.Get("client")
	if len(client) > 256 {
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: "client: at most 256 characters"}
	}
	rctx, cancel := ctx(r)
	defer cancel()
	days, err := c.cfg.Usage.Read(rctx, from, to, client)
	if err != nil {
		if errors.Is(err, usage.ErrRange) {
			return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: err.Error()}
		}
		return err
	}
	if days == nil {
		days = []usage.Day{}
	}
	if q.Get("format") == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="sluice-usage.csv"`)
		return usage.WriteCSV(w, days)
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from.Format("2006-01-02"), "to": to.Format("2006-01-02"), "days": days})
	return nil
}
