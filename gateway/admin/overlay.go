package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"

	"github.com/sluice-gateway/sluice/gateway/config"
)

// Overlay is what the control plane changed on top of the config file:
// channels and client keys added through the API, and the enabled state
// of what the file defines. It is versioned: every change makes the next
// version, and every instance applies the newest.
type Overlay struct {
	// Version counts the changes (0: none yet).
	Version int64 `json:"version"`
	// Reload counts the reloads asked for: when it grows, every instance
	// reads its config file again.
	Reload int64 `json:"reload,omitempty"`
	// Channels are the channels added through the API, their secrets
	// sealed.
	Channels []config.Channel `json:"channels,omitempty"`
	// Clients are the client keys added through the API, as digests.
	Clients []config.Client `json:"clients,omitempty"`
	// Enabled overrides the enabled state of what the file defines:
	// "channel/<name>", "credential/<id>", "client/<name>".
	Enabled map[string]bool `json:"enabled,omitempty"`
}

// Keys of Overlay.Enabled.
func channelKey(name string) string  { return "channel/" + name }
func credentialKey(id string) string { return "credential/" + id }
func clientKey(name string) string   { return "client/" + name }

// clone returns a deep copy of an overlay.
func (o Overlay) clone() Overlay {
	var out Overlay
	b, _ := json.Marshal(o)
	_ = json.Unmarshal(b, &out)
	return out
}

// effective merges the overlay into a config file's: the overrides of
// enabled states, the API's channels (secrets opened) and client keys.
// What the API added and the file now defines too (the same channel name,
// credential ID or client name) is left out, the file winning; warnings
// say so. The result is provisioned and validated.
func effective(file *config.Config, ov Overlay, s *Sealer) (*config.Config, []string, error) {
	cfg, err := cloneConfig(file)
	if err != nil {
		return nil, nil, err
	}
	for i := range cfg.Channels {
		ch := &cfg.Channels[i]
		if on, ok := ov.Enabled[channelKey(ch.Name)]; ok {
			ch.Enabled = config.Bool(on)
		}
		for j := range ch.Credentials {
			if on, ok := ov.Enabled[credentialKey(ch.Credentials[j].ID)]; ok {
				ch.Credentials[j].Enabled = config.Bool(on)
			}
		}
	}
	for i := range cfg.Clients {
		if on, ok := ov.Enabled[clientKey(cfg.Clients[i].Name)]; ok {
			cfg.Clients[i].Enabled = config.Bool(on)
		}
	}
	var warnings []string
	names, ids, clients := fileNames(file)
	for _, ch := range ov.Channels {
		if clash := clashes(ch, names, ids); clash != "" {
			warnings = append(warnings, fmt.Sprintf("the API's channel %q is left out: the config file now defines %s", ch.Name, clash))
			continue
		}
		opened, err := openChannel(ch, s)
		if err != nil {
			return nil, warnings, fmt.Errorf("channel %q: %w", ch.Name, err)
		}
		cfg.Channels = append(cfg.Channels, opened)
	}
	for _, cl := range ov.Clients {
		if clients[cl.Name] {
			warnings = append(warnings, fmt.Sprintf("the API's client key %q is left out: the config file now defines it", cl.Name))
			continue
		}
		cfg.Clients = append(cfg.Clients, cl)
	}
	cfg.Provision()
	return cfg, warnings, cfg.Validate()
}

// fileNames lists what a config file defines: channel names, credential
// IDs and client names.
func fileNames(file *config.Config) (names, ids, clients map[string]bool) {
	names, ids, clients = map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, ch := range file.Channels {
		names[ch.Name] = true
		for _, cr := range ch.Credentials {
			ids[cr.ID] = true
		}
	}
	for _, cl := range file.Clients {
		clients[cl.Name] = true
	}
	return names, ids, clients
}

// clashes names what of a channel the file defines already, or "".
func clashes(ch config.Channel, names, ids map[string]bool) string {
	if names[ch.Name] {
		return fmt.Sprintf("channel %q", ch.Name)
	}
	for _, cr := range ch.Credentials {
		if ids[cr.ID] {
			return fmt.Sprintf("credential %q", cr.ID)
		}
	}
	return ""
}

// cloneConfig returns a deep copy of a config.
func cloneConfig(c *config.Config) (*config.Config, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var out config.Config
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// secretFields visits every secret a channel holds: credential keys and
// API secrets, header values, and URLs that carry a password or a query.
func secretFields(ch *config.Channel, f func(field string, v *string) error) error {
	if hasURLSecret(ch.BaseURL) {
		if err := f("base_url", &ch.BaseURL); err != nil {
			return err
		}
	}
	if hasURLSecret(ch.Proxy) {
		if err := f("proxy", &ch.Proxy); err != nil {
			return err
		}
	}
	for k, v := range ch.Headers {
		if err := f("headers."+k, &v); err != nil {
			return err
		}
		ch.Headers[k] = v
	}
	for i := range ch.Credentials {
		cr := &ch.Credentials[i]
		p := "credentials[" + strconv.Itoa(i) + "]"
		for _, s := range []struct {
			field string
			v     *string
		}{{".key", &cr.Key}, {".api_secret", &cr.APISecret}, {".secret_key", &cr.SecretKey}} {
			if err := f(p+s.field, s.v); err != nil {
				return err
			}
		}
		if hasURLSecret(cr.BaseURL) {
			if err := f(p+".base_url", &cr.BaseURL); err != nil {
				return err
			}
		}
	}
	return nil
}

// hasURLSecret reports whether a URL carries a password or query values.
func hasURLSecret(raw string) bool {
	if raw == "" || IsSealed(raw) {
		return IsSealed(raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return true // unknown: treat it as secret
	}
	_, pw := u.User.Password()
	return pw || u.RawQuery != ""
}

// sealChannel returns a copy of a channel with its secrets sealed.
func sealChannel(ch config.Channel, s *Sealer) (config.Channel, error) {
	out := copyChannel(ch)
	err := secretFields(&out, func(field string, v *string) error {
		sealed, err := s.Seal(*v)
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		*v = sealed
		return nil
	})
	return out, err
}

// openChannel returns a copy of a stored channel with its secrets opened.
func openChannel(ch config.Channel, s *Sealer) (config.Channel, error) {
	out := copyChannel(ch)
	err := secretFields(&out, func(field string, v *string) error {
		plain, err := s.Open(*v)
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		*v = plain
		return nil
	})
	return out, err
}

// maskChannel returns a copy of a channel with its secrets shown as ***.
func maskChannel(ch config.Channel) config.Channel {
	out := copyChannel(ch)
	_ = secretFields(&out, func(field string, v *string) error {
		if *v != "" {
			*v = "***"
		}
		return nil
	})
	return out
}

// copyChannel is a deep copy of a channel.
func copyChannel(ch config.Channel) config.Channel {
	var out config.Channel
	b, _ := json.Marshal(ch)
	_ = json.Unmarshal(b, &out)
	return out
}

// fileDigest identifies a config file's content.
func fileDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:4])
}

// pathRE finds the path of an error in an effective config.
var pathRE = regexp.MustCompile(`^channels\[(\d+)\]`)

// errorsIn lists the problems of err (config.Validate's joined errors).
func errorsIn(err error) []string {
	var out []string
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			out = append(out, errorsIn(e)...)
		}
		return out
	}
	if err != nil {
		out = append(out, err.Error())
	}
	return out
}
