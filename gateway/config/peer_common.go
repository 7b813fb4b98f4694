package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-gateway/sluice/gateway/provider"
)

// peerReader reads the node tree of a peer gateway's config. It never
// stops at the first problem: every bad value becomes a FieldError named
// by its path in the peer file's own terms, and err joins them all.
type peerReader struct {
	errs []error
	// keepEnv: ${ENV} references were left as written (sluice import);
	// they are expanded only where a number or a boolean is read.
	keepEnv bool
	// notes say what the conversion left out or approximated: the
	// config's Notes, listed at startup and by sluice check and import.
	notes []string
}

// note records what the conversion left out or approximated.
func (r *peerReader) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// typed returns a scalar that is read as a number or a boolean, with its
// ${ENV} references expanded when they were left as written.
func (r *peerReader) typed(n *yaml.Node, path string) *yaml.Node {
	if !r.keepEnv || n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "${") {
		return n
	}
	c := *n
	if err := expandEnv(&c, path); err != nil {
		r.errs = append(r.errs, err)
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	}
	return &c
}

// fail records a problem with the value at path.
func (r *peerReader) fail(path, format string, args ...any) {
	r.errs = append(r.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// err joins every problem recorded, or returns nil.
func (r *peerReader) err() error { return errors.Join(r.errs...) }

// peerField is one key of a mapping with its value and path.
type peerField struct {
	key  string
	val  *yaml.Node
	path string
}

// peerObject is a mapping read from a peer config, in document order.
type peerObject struct {
	path   string
	fields []peerField
}

// get returns the value of key, or nil when the key is absent.
func (o peerObject) get(key string) *yaml.Node {
	for _, f := range o.fields {
		if f.key == key {
			return f.val
		}
	}
	return nil
}

// at returns the path of key inside the object.
func (o peerObject) at(key string) string { return join(o.path, key) }

// has reports whether key is present.
func (o peerObject) has(key string) bool { return o.get(key) != nil }

// idx is the path of the i-th item of the list at path.
func idx(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// deref follows YAML aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether a node is absent or an explicit null.
func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// object reads a mapping. With known non-nil, keys outside it are
// reported as unknown. A null or absent node is an empty object.
func (r *peerReader) object(n *yaml.Node, path string, known []string) peerObject {
	o := peerObject{path: path}
	n = deref(n)
	if isNull(n) {
		return o
	}
	if n.Kind != yaml.MappingNode {
		r.fail(path, "want an object (line %d)", n.Line)
		return o
	}
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := deref(n.Content[i])
		key := ""
		if k != nil {
			key = k.Value
		}
		p := join(path, key)
		switch {
		case seen[key]:
			r.fail(p, "duplicate key (line %d)", k.Line)
			continue
		case known != nil && !slices.Contains(known, key):
			r.fail(p, "unknown field (line %d)", k.Line)
			continue
		}
		seen[key] = true
		o.fields = append(o.fields, peerField{key: key, val: n.Content[i+1], path: p})
	}
	return o
}

// list reads a sequence; null or absent is an empty list.
func (r *peerReader) list(n *yaml.Node, path string) []*yaml.Node {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		r.fail(path, "want a list (line %d)", n.Line)
		return nil
	}
	return n.Content
}

// str reads a scalar as text; null or absent is "".
func (r *peerReader) str(n *yaml.Node, path string) string {
	n = deref(n)
	if isNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		r.fail(path, "want a string (line %d)", n.Line)
		return ""
	}
	return n.Value
}

// boolean reads a true/false value; ok is false when it is absent or bad.
func (r *peerReader) boolean(n *yaml.Node, path string) (v, ok bool) {
	n = deref(n)
	if n != nil {
		n = r.typed(n, path)
	}
	if isNull(n) {
		return false, false
	}
	if n.Kind != yaml.ScalarNode || n.Decode(&v) != nil {
		r.fail(path, "want true or false (line %d)", n.Line)
		return false, false
	}
	return v, true
}

// num reads a finite, non-negative number; absent or null is 0.
func (r *peerReader) num(n *yaml.Node, path string) float64 {
	n = deref(n)
	if n != nil {
		n = r.typed(n, path)
	}
	if isNull(n) {
		return 0
	}
	var f float64
	if n.Kind == yaml.ScalarNode {
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(n.Value), 64); err != nil && n.Decode(&f) != nil {
			r.fail(path, "want a number, got %q (line %d)", n.Value, n.Line)
			return 0
		}
	} else {
		r.fail(path, "want a number (line %d)", n.Line)
		return 0
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		r.fail(path, "want a number >= 0, got %s", n.Value)
		return 0
	}
	return f
}

// maxPeerCount bounds counts and rates read from peer files, so that
// conversions to integers never overflow.
const maxPeerCount = 1 << 40

// count reads a non-negative whole count (a fraction is rounded down,
// but a positive value never becomes 0, which would mean unlimited).
func (r *peerReader) count(n *yaml.Node, path string) int64 {
	f := r.num(n, path)
	switch {
	case f > maxPeerCount:
		r.fail(path, "too large")
		return 0
	case f > 0 && f < 1:
		return 1
	}
	return int64(f)
}

// duration reads a number of the given unit (time.Second, time.Millisecond).
func (r *peerReader) duration(n *yaml.Node, path string, unit time.Duration) Duration {
	f := r.num(n, path)
	if f*float64(unit) > float64(100*365*24*time.Hour) {
		r.fail(path, "too large")
		return 0
	}
	return Duration(f * float64(unit))
}

// strs reads a list of strings, or a single string as a list of one.
func (r *peerReader) strs(n *yaml.Node, path string) []string {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	var out []string
	for i, item := range r.list(n, path) {
		out = append(out, r.str(item, idx(path, i)))
	}
	return out
}

// strMap reads an object of strings.
func (r *peerReader) strMap(n *yaml.Node, path string) map[string]string {
	var m map[string]string
	for _, f := range r.object(n, path, nil).fields {
		if m == nil {
			m = make(map[string]string)
		}
		m[f.key] = r.str(f.val, f.path)
	}
	return m
}

// anyMap decodes an object of free-form values (request parameters).
func (r *peerReader) anyMap(n *yaml.Node, path string) map[string]any {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	var m map[string]any
	if n.Kind != yaml.MappingNode || n.Decode(&m) != nil {
		r.fail(path, "want an object of parameters (line %d)", n.Line)
		return nil
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// cleanNames trims names and drops empty ones and repeats, keeping order.
func cleanNames(names ...[]string) []string {
	var out []string
	for _, list := range names {
		for _, n := range list {
			if n = strings.TrimSpace(n); n != "" && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// httpURL parses an absolute http(s) URL.
func httpURL(raw string) (*url.URL, bool) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, false
	}
	return u, true
}

// orDefault returns "" when base is the default base URL of the type, so
// converted configs stay minimal.
func orDefault(typ, base string) string {
	if spec, ok := lookupServed(typ); ok && strings.TrimRight(base, "/") == spec.BaseURL {
		return ""
	}
	return base
}

// listenAddr turns a port ("2081", 2081) or an address (":9090",
// "127.0.0.1:9090") into a listen address.
func (r *peerReader) listenAddr(n *yaml.Node, path string) string {
	s := strings.TrimSpace(r.str(n, path))
	if s == "" {
		return ""
	}
	if !strings.Contains(s, ":") {
		s = ":" + s
	}
	_, port, err := net.SplitHostPort(s)
	if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 1 || p > 65535 {
		r.fail(path, "want a port (1-65535) or host:port, got %q", s)
		return ""
	}
	return s
}

// lookupServed returns the Spec of an upstream type Sluice can serve.
func lookupServed(typ string) (provider.Spec, bool) {
	spec, ok := provider.Lookup(typ)
	return spec, ok && spec.Unsupported == ""
}

// proxyURL builds "type://[user:pass@]host:port" from parts.
func proxyURL(typ, host, port, user, pass string) string {
	typ = strings.ToLower(strings.TrimSpace(typ))
	switch typ {
	case "", "http":
		typ = "http"
	case "socks", "socks5":
		typ = "socks5"
	}
	u := url.URL{Scheme: typ, Host: host}
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	}
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String()
}

// validProxy reports whether s is a proxy URL the native model accepts.
func validProxy(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "socks5" || u.Scheme == "socks5h")
}
