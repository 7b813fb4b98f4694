package config

import (
	"encoding/json"
	"net/url"
	"strings"
)

// Secrets lists every secret value a config holds, for a redactor: client
// keys, credential keys and Spark API secrets, channel header values, the
// password and query values of base and proxy URLs, and Redis passwords.
// Values from ${ENV} references are listed expanded, as they are used.
func (c *Config) Secrets() []string {
	var out []string
	add := func(vs ...string) {
		for _, v := range vs {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	for _, cl := range c.Clients {
		add(cl.Key)
	}
	add(c.Admin.Token)
	for _, t := range c.Admin.Tokens {
		add(t.Token)
	}
	for _, ch := range c.Channels {
		add(urlSecrets(ch.BaseURL)...)
		add(urlSecrets(ch.Proxy)...)
		for _, v := range ch.Headers {
			add(headerSecret(v))
		}
		for _, cr := range ch.Credentials {
			add(cr.Key, cr.APISecret, cr.SecretKey)
			add(serviceAccountSecrets(cr.Key)...)
			add(urlSecrets(cr.BaseURL)...)
		}
	}
	if rd := c.Redis; rd != nil {
		add(rd.Password)
		add(urlSecrets(rd.URL)...)
	}
	return out
}

// headerSecret is the secret part of a header value: the credentials of
// "Bearer <token>" or "Basic <base64>", or the whole value.
func headerSecret(v string) string {
	if scheme, rest, ok := strings.Cut(strings.TrimSpace(v), " "); ok && !strings.ContainsAny(scheme, "=:") {
		if r := strings.TrimSpace(rest); len(r) >= 6 {
			return r
		}
	}
	return strings.TrimSpace(v)
}

// urlSecrets returns the secrets a URL carries: the password of its
// userinfo and the values of its query parameters.
func urlSecrets(raw string) []string {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var out []string
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		}
	}
	for _, vs := range u.Query() {
		out = append(out, vs...)
	}
	return out
}

// DisplayURL is a URL as it may be shown to an operator: its password and
// its query values replaced by "***". Text that does not parse as a URL is
// shown as a placeholder, since it might hold anything.
func DisplayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(an unparsable URL)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "***")
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"***"}
		}
		u.RawQuery = q.Encode()
	}
	s := u.String()
	return strings.ReplaceAll(strings.ReplaceAll(s, "%2A%2A%2A", "***"), ":%2A%2A%2A@", ":***@")
}

// serviceAccountSecrets lists the secrets inside a service account's JSON
// key (vertexai): its private key, also line by line, and the key's ID,
// so that none of them shows even when the JSON is not quoted whole.
func serviceAccountSecrets(key string) []string {
	if !strings.HasPrefix(strings.TrimSpace(key), "{") {
		return nil
	}
	var sa struct {
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
	}
	if json.Unmarshal([]byte(key), &sa) != nil || sa.PrivateKey == "" {
		return nil
	}
	out := []string{sa.PrivateKey, sa.PrivateKeyID}
	for line := range strings.SplitSeq(sa.PrivateKey, "\n") {
		if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}
