package admin

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/gateway/config"
)

// Client keys made through the API are stored only as digests: a new or
// rotated key is returned once, in the answer that made it.

// clientView is a client key as GET /api/clients shows it.
type clientView struct {
	gateway.ClientStatus
	Source string `json:"source"` // file or api
}

func (c *Control) clients(w http.ResponseWriter, r *http.Request, _ string) error {
	rctx, cancel := ctx(r)
	defer cancel()
	status, err := c.gw.Clients(rctx)
	if err != nil {
		return err
	}
	groups, err := c.gw.Groups(rctx)
	if err != nil {
		return err
	}
	ov := c.overlayNow()
	views := make([]clientView, 0, len(status))
	for _, s := range status {
		v := clientView{ClientStatus: s, Source: "file"}
		if apiClient(ov, s.Name) >= 0 {
			v.Source = "api"
		}
		views = append(views, v)
	}
	etag(w, ov.Version)
	writeJSON(w, http.StatusOK, map[string]any{"version": ov.Version, "clients": views, "groups": groups})
	return nil
}

// apiClient is the index of an API client key in an overlay, or -1.
func apiClient(ov Overlay, name string) int {
	return slices.IndexFunc(ov.Clients, func(cl config.Client) bool { return cl.Name == name })
}

// fileClient reports whether the config file defines a client key.
func (c *Control) fileClient(name string) bool {
	return slices.ContainsFunc(c.fileOnly().Clients, func(cl config.Client) bool { return cl.Name == name })
}

// clientRequest is the body of POST and PATCH /api/clients.
type clientRequest struct {
	Name      string         `json:"name"`
	Key       string         `json:"key,omitempty"` // a key of the caller's own (default: one is made)
	Models    []string       `json:"models,omitempty"`
	Limits    *config.Limits `json:"limits,omitempty"`
	ExpiresAt *time.Time     `json:"expires_at,omitempty"`
	Enabled   *bool          `json:"enabled,omitempty"`
}

// newKey makes a client key.
func newKey() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "sk-sluice-" + hex.EncodeToString(b[:])
}

// clientJSON is a client as the audit log keeps it: no key, no digest.
func clientJSON(cl config.Client) json.RawMessage {
	cl.Key, cl.KeySHA256, cl.PreviousKeys = "", "", nil
	b, _ := json.Marshal(cl)
	return b
}

func (c *Control) addClient(w http.ResponseWriter, r *http.Request, actor string) error {
	want, err := ifMatch(r)
	if err != nil {
		return err
	}
	var req clientRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return &apiError{status: http.StatusBadRequest, code: "invalid_config", msg: "a client key needs a name", problems: []string{"name: required"}}
	}
	if c.fileClient(req.Name) {
		return c.inFile("client key", req.Name)
	}
	key := req.Key
	if key == "" {
		key = newKey()
	}
	cl := config.Client{Name: req.Name, KeySHA256: config.KeyDigest(key), Models: req.Models, ExpiresAt: req.ExpiresAt, Enabled: req.Enabled}
	if req.Limits != nil {
		cl.Limits = *req.Limits
	}
	rctx, cancel := ctx(r)
	defer cancel()
	ov, err := c.change(rctx, want, func(o *Overlay) error {
		if apiClient(*o, cl.Name) >= 0 {
			return &apiError{status: http.StatusConflict, code: "exists", msg: fmt.Sprintf("client key %q exists", cl.Name)}
		}
		o.Clients = append(o.Clients, cl)
		return nil
	})
	if err != nil {
		return err
	}
	c.audit(rctx, Entry{Actor: actor, Action: "client.add", Target: cl.Name, After: clientJSON(cl), Version: ov.Version})
	etag(w, ov.Version)
	writeJSON(w, http.StatusCreated, map[string]any{"version": ov.Version, "name": cl.Name, "key": key,
		"note": "the key is shown once: Sluice keeps only its digest"})
	return nil
}

func (c *Control) patchClient(w http.ResponseWriter, r *http.Request, actor string) error {
	name := r.PathValue("name")
	want, err := ifMatch(r)
	if err != nil {
		return err
	}
	var req clientRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Key != "" || req.Name != "" && req.Name != name {
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: "a PATCH changes models, limits, expires_at and enabled; POST /api/clients/{name}/rotate changes the key"}
	}
	inFile := c.fileClient(name)
	if inFile && (req.Models != nil || req.Limits != nil || req.ExpiresAt != nil) {
		return c.inFile("client key", name) // only enabled can be overridden
	}
	var before, after json.RawMessage
	rctx, cancel := ctx(r)
	defer cancel()
	ov, err := c.change(rctx, want, func(o *Overlay) error {
		if inFile {
			if req.Enabled != nil {
				setOverride(o, clientKey(name), *req.Enabled)
			}
			return nil
		}
		i := apiClient(*o, name)
		if i < 0 {
			return notFound("client key", name)
		}
		cl := &o.Clients[i]
		before = clientJSON(*cl)
		if req.Models != nil {
			cl.Models = req.Models
		}
		if req.Limits != nil {
			cl.Limits = *req.Limits
		}
		if req.ExpiresAt != nil {
			cl.ExpiresAt = req.ExpiresAt
		}
		if req.Enabled != nil {
			cl.Enabled = req.Enabled
		}
		after = clientJSON(*cl)
		return nil
	})
	if err != nil {
		return err
	}
	c.audit(rctx, Entry{Actor: actor, Action: "client.change", Target: name, Before: before, After: after, Version: ov.Version})
	etag(w, ov.Version)
	writeJSON(w, http.StatusOK, map[string]any{"version": ov.Version, "name": name})
	return nil
}

// rotateRequest is the body of POST /api/clients/{name}/rotate.
type rotateRequest struct {
	// Grace is how long the old key keeps working ("10m"). Default 0.
	Grace config.Duration `json:"grace,omitempty"`
}

func (c *Control) rotateClient(w http.ResponseWriter, r *http.Request, actor string) error {
	name := r.PathValue("name")
	if c.fileClient(name) {
		return c.inFile("client key", name)
	}
	want, err := ifMatch(r)
	if err != nil {
		return err
	}
	var req rotateRequest
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	if req.Grace < 0 {
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: "grace: must not be negative"}
	}
	key := newKey()
	rctx, cancel := ctx(r)
	defer cancel()
	ov, err := c.change(rctx, want, func(o *Overlay) error {
		i := apiClient(*o, name)
		if i < 0 {
			return notFound("client key", name)
		}
		cl := &o.Clients[i]
		now := c.cfg.Now()
		// Rotated keys whose grace is over are forgotten.
		cl.PreviousKeys = slices.DeleteFunc(cl.PreviousKeys, func(p config.PreviousKey) bool { return !now.Before(p.Until) })
		if req.Grace > 0 {
			cl.PreviousKeys = append(cl.PreviousKeys, config.PreviousKey{SHA256: cl.KeySHA256, Until: now.Add(req.Grace.D()).UTC()})
		}
		cl.KeySHA256 = config.KeyDigest(key)
		return nil
	})
	if err != nil {
		return err
	}
	c.audit(rctx, Entry{Actor: actor, Action: "client.rotate", Target: name, After: json.RawMessage(fmt.Sprintf(`{"grace":%q}`, req.Grace)), Version: ov.Version})
	etag(w, ov.Version)
	writeJSON(w, http.StatusOK, map[string]any{"version": ov.Version, "name": name, "key": key,
		"note": "the key is shown once: Sluice keeps only its digest"})
	return nil
}

func (c *Control) deleteClient(w http.ResponseWriter, r *http.Request, actor string) error {
	name := r.PathValue("name")
	return c.deleteEntry(w, r, actor, name, c.fileClient(name), "client key", func(o *Overlay) (json.RawMessage, bool) {
		i := apiClient(*o, name)
		if i < 0 {
			return nil, false
		}
		before := clientJSON(o.Clients[i])
		o.Clients = slices.Delete(o.Clients, i, i+1)
		return before, true
	})
}
