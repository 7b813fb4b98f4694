package config

import (
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// This file reads the config.json of AILoad (github.com/helloxz/aiload).
// Its semantics follow AILoad's source: api/relay.go picks a models[]
// entry at random (rand.Intn), remembers the pick per client IP for 5
// minutes, and overwrites the request's model with the entry's model, so
// the model a client asks for never matters (the README tells clients to
// send "auto"); middleware/auth.go compares the Bearer token with
// auth_token; router/routers.go listens on ":" + server.port and sets
// gin's mode from server.mode; the README documents settings.timeout in
// seconds (default 120). AILoad reads only api_key, base_url and model of
// an entry.

// ailoadAffinityTTL is how long AILoad pins a client IP to an entry.
const ailoadAffinityTTL = Duration(5 * time.Minute)

// fromAILoad converts an AILoad config into the native model.
//
// Entries with the same base_url and model become one channel with one
// credential per api_key: the keys of one endpoint then share its
// channel, and since the native strategy picks among credentials, the
// spread over keys is the same as AILoad's spread over entries.
//
// settings.ip_hash turns the per-IP pinning on or off. The AILoad source
// available pins every client IP unconditionally (its README lists
// turning it off as a future option), so an absent ip_hash keeps it on.
func fromAILoad(r *peerReader, doc *yaml.Node) (*Config, error) {
	top := r.object(doc, "", []string{"auth_token", "models", "server", "settings"})
	cfg := &Config{
		Routing: Routing{Strategy: "random"},
		// AILoad ignores the requested model: every name means "any
		// entry", which native redirects express as all -> auto.
		ModelRedirect: map[string]string{"all": "auto"},
	}
	// AILoad replaces an empty auth_token with a random one on its first
	// start and writes it back to the file; a file that still has an
	// empty token is served without authentication.
	if token := strings.TrimSpace(r.str(top.get("auth_token"), "auth_token")); token != "" {
		cfg.Clients = []Client{{Key: token}}
	}
	server := r.object(top.get("server"), "server", []string{"port", "mode", "model"})
	cfg.Server.Listen = r.listenAddr(server.get("port"), server.at("port"))
	_ = r.str(server.get("mode"), server.at("mode"))   // gin's debug/release mode
	_ = r.str(server.get("model"), server.at("model")) // the same, misspelled in early samples
	settings := r.object(top.get("settings"), "settings", []string{"timeout", "ip_hash"})
	timeout := r.duration(settings.get("timeout"), settings.at("timeout"), time.Second)
	if on, ok := r.boolean(settings.get("ip_hash"), settings.at("ip_hash")); on || !ok {
		cfg.Routing.Affinity = Affinity{By: "ip", TTL: ailoadAffinityTTL}
	}
	cfg.Channels = ailoadChannels(r, top, timeout)
	if err := r.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ailoadChannels groups models[] entries by base_url and model.
func ailoadChannels(r *peerReader, top peerObject, timeout Duration) []Channel {
	items := r.list(top.get("models"), "models")
	if len(items) == 0 {
		r.fail("models", "at least one entry is required")
	}
	var chans []Channel
	for i, item := range items {
		p := idx("models", i)
		o := r.object(item, p, []string{"api_key", "base_url", "model"})
		key := r.str(o.get("api_key"), o.at("api_key"))
		base := strings.TrimSpace(r.str(o.get("base_url"), o.at("base_url")))
		model := strings.TrimSpace(r.str(o.get("model"), o.at("model")))
		if _, ok := httpURL(base); !ok {
			r.fail(o.at("base_url"), "want an http:// or https:// URL, got %q", DisplayURL(base))
		}
		if model == "" {
			r.fail(o.at("model"), "required")
		}
		j := slices.IndexFunc(chans, func(c Channel) bool { return c.BaseURL == base && c.Models[0] == model })
		if j < 0 {
			chans = append(chans, Channel{Type: "openai", BaseURL: base, Models: []string{model}, Timeout: timeout})
			j = len(chans) - 1
		}
		chans[j].Credentials = append(chans[j].Credentials, Credential{Key: key})
	}
	return chans
}
