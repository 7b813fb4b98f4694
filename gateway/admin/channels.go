package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/gateway/config"
)

// instance is one live instance, as GET /api/instances lists it.
type instance struct {
	ID            string    `json:"id"`
	Address       string    `json:"address"`
	Version       string    `json:"version"`
	Started       time.Time `json:"started"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	ConfigVersion string    `json:"config_version"`
}

func (c *Control) instances(w http.ResponseWriter, r *http.Request, _ string) error {
	rctx, cancel := ctx(r)
	defer cancel()
	self := c.cfg.Self
	members := []instance{{ID: self.ID, Address: self.Addr, Version: self.Version, Started: self.Started, LastHeartbeat: c.cfg.Now(), ConfigVersion: c.Version()}}
	if c.cfg.Instances != nil {
		list, err := c.cfg.Instances(rctx)
		if err != nil {
			return fmt.Errorf("list instances: %w", err)
		}
		members = members[:0]
		for _, m := range list {
			members = append(members, instance{ID: m.ID, Address: m.Addr, Version: m.Version, Started: m.Started, LastHeartbeat: m.Seen, ConfigVersion: m.Config})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"instances": members, "config_version": c.Version()})
	return nil
}

// channelView is a channel as GET /api/channels shows it.
type channelView struct {
	gateway.ChannelStatus
	Source   string         `json:"source"`         // file or api
	File     string         `json:"file,omitempty"` // the file that defines it
	Priority int            `json:"priority"`
	Config   config.Channel `json:"config"` // its definition, secrets shown as ***
}

func (c *Control) channels(w http.ResponseWriter, r *http.Request, _ string) error {
	rctx, cancel := ctx(r)
	defer cancel()
	status, err := c.gw.Status(rctx)
	if err != nil {
		return err
	}
	eff, ov := c.Effective(), c.overlayNow()
	views := make([]channelView, 0, len(status))
	for _, s := range status {
		i := slices.IndexFunc(eff.Channels, func(ch config.Channel) bool { return ch.Name == s.Name })
		if i < 0 {
			continue // changed since: the next read shows it
		}
		ch := eff.Channels[i]
		v := channelView{ChannelStatus: s, Source: "file", File: c.cfg.File, Priority: ch.Priority, Config: maskChannel(ch)}
		if apiChannel(ov, s.Name) >= 0 {
			v.Source, v.File = "api", ""
		}
		views = append(views, v)
	}
	etag(w, ov.Version)
	writeJSON(w, http.StatusOK, map[string]any{"version": ov.Version, "config_version": c.Version(), "channels": views})
	return nil
}

// overlayNow is the overlay served.
func (c *Control) overlayNow() Overlay {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.overlay
}

// apiChannel is the index of an API channel in an overlay, or -1.
func apiChannel(ov Overlay, name string) int {
	return slices.IndexFunc(ov.Channels, func(ch config.Channel) bool { return ch.Name == name })
}

// testRequest is the body of POST /api/channels/test: a served channel
// by name, or a definition not saved yet (the dashboard's "test before
// save").
type testRequest struct {
	Name       string          `json:"name,omitempty"`
	Credential string          `json:"credential,omitempty"`
	Model      string          `json:"model,omitempty"`
	Channel    *config.Channel `json:"channel,omitempty"`
}

func (c *Control) testChannel(w http.ResponseWriter, r *http.Request, _ string) error {
	var req testRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Channel != nil {
		return c.testDefinition(w, r, req)
	}
	ch, ok := c.channel(req.Name)
	if !ok {
		return notFound("channel", req.Name)
	}
	rctx, cancel := ctx(r)
	defer cancel()
	res := struct {
		OK      bool                 `json:"ok"`
		Results []gateway.TestResult `json:"results"`
	}{OK: true, Results: []gateway.TestResult{}}
	for _, cr := range ch.Credentials {
		if req.Credential != "" && cr.ID != req.Credential {
			continue
		}
		t := c.gw.Test(rctx, cr.ID, req.Model)
		res.OK = res.OK && t.Status == http.StatusOK
		res.Results = append(res.Results, t)
	}
	if len(res.Results) == 0 {
		return notFound("credential", req.Credential)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// testDefinition tests a channel definition that is not saved; secrets
// sent back as *** are those of the API channel of that name.
func (c *Control) testDefinition(w http.ResponseWriter, r *http.Request, req testRequest) error {
	ch := *req.Channel
	if i := apiChannel(c.overlayNow(), ch.Name); i >= 0 {
		stored, err := openChannel(c.overlayNow().Channels[i], c.cfg.Sealer)
		if err == nil {
			keepSecrets(&ch, stored)
		}
	}
	rctx, cancel := ctx(r)
	defer cancel()
	results, err := c.gw.TestDefinition(rctx, ch, req.Model)
	if err != nil {
		return relativeProblems(&invalidError{problems: errorsIn(err)}, 0)
	}
	ok := len(results) > 0
	for _, t := range results {
		ok = ok && t.Status == http.StatusOK
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": ok, "results": results})
	return nil
}

// channel finds a channel of the effective config.
func (c *Control) channel(name string) (config.Channel, bool) {
	for _, ch := range c.Effective().Channels {
		if ch.Name == name {
			return ch, true
		}
	}
	return config.Channel{}, false
}

func notFound(what, name string) error {
	return &apiError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("no %s %q", what, name)}
}

// inFile refuses a change to what the config file defines.
func (c *Control) inFile(what, name string) error {
	return &apiError{status: http.StatusConflict, code: "defined_in_file",
		msg: fmt.Sprintf("%s %q is defined in the config file %s: change it there (and reload)", what, name, c.cfg.File)}
}

func (c *Control) addChannel(w http.ResponseWriter, r *http.Request, actor string) error {
	return c.putChannel(w, r, actor, "")
}

func (c *Control) replaceChannel(w http.ResponseWriter, r *http.Request, actor string) error {
	return c.putChannel(w, r, actor, r.PathValue("name"))
}

// putChannel adds a channel (name "") or replaces the API channel name.
func (c *Control) putChannel(w http.ResponseWriter, r *http.Request, actor, name string) error {
	want, err := ifMatch(r)
	if err != nil {
		return err
	}
	var ch config.Channel
	if err := decode(r, &ch); err != nil {
		return err
	}
	if name != "" && ch.Name == "" {
		ch.Name = name
	}
	if ch.Name == "" {
		return &apiError{status: http.StatusBadRequest, code: "invalid_config", msg: "a channel needs a name", problems: []string{"name: required"}}
	}
	if name != "" && ch.Name != name {
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: "the body's name differs from the one in the path"}
	}
	if _, ok := c.fileChannel(ch.Name); ok {
		return c.inFile("channel", ch.Name)
	}
	if r.URL.Query().Get("dry_run") == "true" {
		return c.checkChannel(w, ch, name)
	}
	var before json.RawMessage
	at := 0 // the channel's index among the effective config's
	rctx, cancel := ctx(r)
	defer cancel()
	ov, err := c.change(rctx, want, func(o *Overlay) error {
		i := apiChannel(*o, ch.Name)
		at = len(c.fileOnly().Channels) + len(o.Channels)
		if i >= 0 {
			at = len(c.fileOnly().Channels) + i
		}
		switch {
		case name == "" && i >= 0:
			return &apiError{status: http.StatusConflict, code: "exists", msg: fmt.Sprintf("channel %q exists: PUT /api/channels/%s replaces it", ch.Name, ch.Name)}
		case name != "" && i < 0:
			return notFound("channel", name)
		}
		if i >= 0 {
			keepSecrets(&ch, o.Channels[i])
			before = masked(o.Channels[i])
		}
		sealed, err := sealChannel(ch, c.cfg.Sealer)
		if err != nil {
			return err
		}
		if i >= 0 {
			o.Channels[i] = sealed
		} else {
			o.Channels = append(o.Channels, sealed)
		}
		return nil
	})
	if err != nil {
		return relativeProblems(err, at)
	}
	action := "channel.add"
	if name != "" {
		action = "channel.replace"
	}
	c.audit(rctx, Entry{Actor: actor, Action: action, Target: ch.Name, Before: before, After: masked(ch), Version: ov.Version})
	etag(w, ov.Version)
	status := http.StatusCreated
	if name != "" {
		status = http.StatusOK
	}
	writeJSON(w, status, map[string]any{"version": ov.Version, "channel": maskChannel(ch)})
	return nil
}

// checkChannel validates a channel as a write would, without storing it
// or needing a sealing key (?dry_run=true).
func (c *Control) checkChannel(w http.ResponseWriter, ch config.Channel, name string) error {
	ov := c.overlayNow().clone()
	i := apiChannel(ov, ch.Name)
	at := len(c.fileOnly().Channels) + len(ov.Channels)
	switch {
	case name == "" && i >= 0:
		return &apiError{status: http.StatusConflict, code: "exists", msg: fmt.Sprintf("channel %q exists", ch.Name)}
	case i >= 0:
		keepSecrets(&ch, ov.Channels[i])
		ov.Channels[i], at = ch, len(c.fileOnly().Channels)+i
	default:
		ov.Channels = append(ov.Channels, ch)
	}
	if _, _, err := effective(c.fileOnly(), ov, c.cfg.Sealer); err != nil {
		return relativeProblems(&invalidError{problems: errorsIn(err)}, at)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	return nil
}

// keepSecrets keeps, for credentials whose secrets a client sent back as
// "***" (as GET shows them), the stored ones.
func keepSecrets(ch *config.Channel, stored config.Channel) {
	for i := range ch.Credentials {
		cr := &ch.Credentials[i]
		for _, old := range stored.Credentials {
			if old.ID == "" || old.ID != cr.ID {
				continue
			}
			if cr.Key == "***" {
				cr.Key = old.Key
			}
			if cr.APISecret == "***" {
				cr.APISecret = old.APISecret
			}
			if cr.SecretKey == "***" {
				cr.SecretKey = old.SecretKey
			}
		}
	}
	for k, v := range ch.Headers {
		if v == "***" {
			ch.Headers[k] = stored.Headers[k]
		}
	}
	if ch.BaseURL == "***" {
		ch.BaseURL = stored.BaseURL
	}
	if ch.Proxy == "***" {
		ch.Proxy = stored.Proxy
	}
}

// masked is a channel as the audit log keeps it.
func masked(ch config.Channel) json.RawMessage {
	b, _ := json.Marshal(maskChannel(ch))
	return b
}

// relativeProblems rewrites the paths of the problems of a written
// channel (index i of the effective config's channels) relative to the
// channel itself, as the client sent it.
func relativeProblems(err error, i int) error {
	inv, ok := err.(*invalidError)
	if !ok {
		return err
	}
	prefix := fmt.Sprintf("channels[%d]", i)
	out := &invalidError{}
	for _, p := range inv.problems {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			p = strings.TrimPrefix(rest, ".")
		}
		out.problems = append(out.problems, p)
	}
	return out
}

// fileChannel finds a channel the config file defines.
func (c *Control) fileChannel(name string) (config.Channel, bool) {
	for _, ch := range c.fileOnly().Channels {
		if ch.Name == name {
			return ch, true
		}
	}
	return config.Channel{}, false
}

// fileOnly is the config file's config.
func (c *Control) fileOnly() *config.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.file
}

func (c *Control) deleteChannel(w http.ResponseWriter, r *http.Request, actor string) error {
	name := r.PathValue("name")
	_, inFile := c.fileChannel(name)
	return c.deleteEntry(w, r, actor, name, inFile, "channel", func(o *Overlay) (json.RawMessage, bool) {
		i := apiChannel(*o, name)
		if i < 0 {
			return nil, false
		}
		before := masked(o.Channels[i])
		o.Channels = slices.Delete(o.Channels, i, i+1)
		return before, true
	})
}

// deleteEntry removes what remove finds in the overlay (a channel or a
// client key added through the API; one from the file cannot be), under
// If-Match, and audits it as "<kind>.delete" with what it was.
func (c *Control) deleteEntry(w http.ResponseWriter, r *http.Request, actor, name string, inFile bool, what string,
	remove func(o *Overlay) (before json.RawMessage, found bool)) error {
	if inFile {
		return c.inFile(what, name)
	}
	want, err := ifMatch(r)
	if err != nil {
		return err
	}
	var before json.RawMessage
	rctx, cancel := ctx(r)
	defer cancel()
	ov, err := c.change(rctx, want, func(o *Overlay) error {
		b, found := remove(o)
		if !found {
			return notFound(what, name)
		}
		before = b
		return nil
	})
	if err != nil {
		return err
	}
	action := strings.Fields(what)[0] + ".delete" // channel.delete, client.delete
	c.audit(rctx, Entry{Actor: actor, Action: action, Target: name, Before: before, Version: ov.Version})
	etag(w, ov.Version)
	writeJSON(w, http.StatusOK, map[string]any{"version": ov.Version, "deleted": name})
	return nil
}

// enabledRequest is the body of the PATCH routes that turn things on or
// off.
type enabledRequest struct {
	Enabled *bool `json:"enabled"`
}

func (c *Control) enableChannel(w http.ResponseWriter, r *http.Request, actor string) error {
	name := r.PathValue("name")
	return c.setEnabled(w, r, actor, "channel", name, func(o *Overlay, on bool) error {
		if i := apiChannel(*o, name); i >= 0 {
			o.Channels[i].Enabled = config.Bool(on)
			return nil
		}
		if _, ok := c.fileChannel(name); !ok {
			return notFound("channel", name)
		}
		setOverride(o, channelKey(name), on)
		return nil
	})
}

func (c *Control) enableCredential(w http.ResponseWriter, r *http.Request, actor string) error {
	id := r.PathValue("id")
	return c.setEnabled(w, r, actor, "credential", id, func(o *Overlay, on bool) error {
		for i := range o.Channels {
			for j := range o.Channels[i].Credentials {
				if o.Channels[i].Credentials[j].ID == id {
					o.Channels[i].Credentials[j].Enabled = config.Bool(on)
					return nil
				}
			}
		}
		for _, ch := range c.fileOnly().Channels {
			for _, cr := range ch.Credentials {
				if cr.ID == id {
					setOverride(o, credentialKey(id), on)
					return nil
				}
			}
		}
		return notFound("credential", id)
	})
}

// setOverride records an enabled override in an overlay.
func setOverride(o *Overlay, key string, on bool) {
	if o.Enabled == nil {
		o.Enabled = map[string]bool{}
	}
	o.Enabled[key] = on
}

// setEnabled handles a PATCH of {"enabled": bool} on one thing.
func (c *Control) setEnabled(w http.ResponseWriter, r *http.Request, actor, what, name string, set func(*Overlay, bool) error) error {
	want, err := ifMatch(r)
	if err != nil {
		return err
	}
	var req enabledRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Enabled == nil {
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: `send {"enabled": true} or {"enabled": false}`}
	}
	rctx, cancel := ctx(r)
	defer cancel()
	ov, err := c.change(rctx, want, func(o *Overlay) error { return set(o, *req.Enabled) })
	if err != nil {
		return err
	}
	action := what + ".disable"
	if *req.Enabled {
		action = what + ".enable"
	}
	c.audit(rctx, Entry{Actor: actor, Action: action, Target: name, Version: ov.Version})
	etag(w, ov.Version)
	writeJSON(w, http.StatusOK, map[string]any{"version": ov.Version, what: name, "enabled": *req.Enabled})
	return nil
}

func (c *Control) resetCredential(w http.ResponseWriter, r *http.Request, actor string) error {
	id := r.PathValue("id")
	found := false
	for _, ch := range c.Effective().Channels {
		for _, cr := range ch.Credentials {
			found = found || cr.ID == id
		}
	}
	if !found {
		return notFound("credential", id)
	}
	rctx, cancel := ctx(r)
	defer cancel()
	c.gw.Reset(rctx, id)
	c.audit(rctx, Entry{Actor: actor, Action: "credential.reset", Target: id})
	writeJSON(w, http.StatusOK, map[string]any{"credential": id, "breaker": "closed"})
	return nil
}
