package config

import (
	"net"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-gateway/sluice/gateway/provider"
)

// This file reads the "channels YAML" shape: the channels section of the
// config.yaml of ChatAI-Plugin (github.com/XxxXTeam/chatai-plugin, a
// Yunzai bot plugin), as its documentation describes it
// (github.com/XxxXTeam/ChatAI-Plugin-Does, config/channels.md,
// config/models.md, config/proxy.md). Semantics found there and in its
// src/services/llm/ChannelManager.js:
//   - priority: a smaller number is tried first (getBestChannel sorts
//     ascending; the docs call priority 1 the highest and 2 the backup).
//     Native priority is the other way round, so it is mirrored.
//   - timeout is in milliseconds; maxRetries counts retries after the
//     first call (0 disables retrying).
//   - a baseUrl without a path gets "/v1" for openai channels
//     (normalizeBaseUrl); an empty one means the type's default.
//   - apiKeys (several keys) win over apiKey, which is used only when no
//     apiKeys entry is enabled.
//   - modelParams hold the request parameters in the plugin's camelCase.
//   - proxy is {type, host, port, auth} or a URL; useProxy chooses the
//     file's global proxy{enabled, type, host, port, auth, url, noProxy}.

// chKeys are the keys of a channels[] entry.
var chKeys = []string{
	"name", "id", "type", "adapterType", "baseUrl", "apiKey", "apiKeys", "model", "models",
	"enabled", "weight", "priority", "timeout", "maxRetries", "retryDelay", "retryBackoff",
	"retryOn", "tags", "modelParams", "proxy", "useProxy", "headers", "customHeaders",
	"stream", "supportTools", "supportVision",
}

// chNativeKeys are native sections a channels file may carry beside
// channels (listen address, client keys, routing...); they are read as
// native config. server also takes port and host.
var chNativeKeys = []string{"server", "log", "clients", "routing", "breaker", "model_redirect", "model_groups", "redis", "telemetry"}

// chParamNames maps the plugin's parameter names to the OpenAI ones.
var chParamNames = map[string]string{
	"maxTokens": "max_tokens", "topP": "top_p", "topK": "top_k",
	"frequencyPenalty": "frequency_penalty", "presencePenalty": "presence_penalty",
	"stopSequences": "stop",
}

// fromChannels converts a channels YAML file into the native model. The
// plugin's own settings (basic, trigger, context, memory, mcp, llm, web,
// ...) may sit in the same file; they configure the bot, not a gateway,
// and are ignored.
func fromChannels(r *peerReader, doc *yaml.Node) (*Config, error) {
	top := r.object(doc, "", nil)
	cfg := chNative(r, top)
	if s := chStrategy(r, top); s != "" {
		if cfg.Routing.Strategy != "" && cfg.Routing.Strategy != s {
			r.fail("loadBalancing.strategy", "conflicts with routing.strategy %q", cfg.Routing.Strategy)
		}
		cfg.Routing.Strategy = s
	}
	chans, retries := chChannels(r, top, chGlobalProxy(r, top))
	cfg.Channels = chans
	if retries >= 0 && cfg.Routing.Retry.MaxAttempts == 0 {
		// maxRetries is per channel; native retry bounds one request over
		// all credentials. The largest value keeps every channel's retries
		// possible: max_attempts = 1 + max(maxRetries).
		cfg.Routing.Retry.MaxAttempts = int(retries) + 1
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// chNative decodes the native sections of the file.
func chNative(r *peerReader, top peerObject) *Config {
	native := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	listen := ""
	for _, f := range top.fields {
		switch {
		case f.key == "server":
			var val *yaml.Node
			val, listen = chServer(r, f)
			native.Content = append(native.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: f.key}, val)
		case slices.Contains(chNativeKeys, f.key):
			native.Content = append(native.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: f.key}, f.val)
		}
	}
	cfg, err := decodeStrict[Config](native, r.keepEnv)
	if err != nil {
		r.errs = append(r.errs, err)
		return &Config{}
	}
	if listen != "" {
		if cfg.Server.Listen != "" {
			r.fail("server.port", "set either server.listen or server.port and server.host")
		}
		cfg.Server.Listen = listen
	}
	return cfg
}

// chServer splits server.port and server.host off the native server section.
func chServer(r *peerReader, f peerField) (*yaml.Node, string) {
	n := deref(f.val)
	if n == nil || n.Kind != yaml.MappingNode {
		return f.val, ""
	}
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	var host, port *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "port":
			port = n.Content[i+1]
		case "host":
			host = n.Content[i+1]
		default:
			rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
		}
	}
	if port == nil {
		if host != nil {
			r.fail("server.host", "needs server.port")
		}
		return rest, ""
	}
	listen := r.listenAddr(port, "server.port")
	if h := strings.TrimSpace(r.str(host, "server.host")); h != "" && listen != "" {
		listen = net.JoinHostPort(h, strings.TrimPrefix(listen, ":"))
	}
	return rest, listen
}

// chStrategy maps loadBalancing.strategy. "priority" (the plugin's
// default) picks the best priority tier first, which native priorities
// already do; within a tier the documented weights then apply.
func chStrategy(r *peerReader, top peerObject) string {
	o := r.object(top.get("loadBalancing"), "loadBalancing", []string{"strategy"})
	s := strings.TrimSpace(r.str(o.get("strategy"), o.at("strategy")))
	switch s {
	case "", "priority":
		return ""
	case "round-robin":
		return "round_robin"
	case "random":
		return "random"
	case "least-connection":
		return "least_busy"
	}
	r.fail(o.at("strategy"), "unsupported value %q (want priority, round-robin, random or least-connection)", s)
	return ""
}

// chGlobal is the file's global proxy.
type chGlobal struct {
	enabled bool
	url     string
	noProxy []string
}

// chGlobalProxy reads the top-level proxy section.
func chGlobalProxy(r *peerReader, top peerObject) chGlobal {
	o := r.object(top.get("proxy"), "proxy", []string{"enabled", "type", "host", "port", "auth", "url", "noProxy"})
	var g chGlobal
	g.enabled, _ = r.boolean(o.get("enabled"), o.at("enabled"))
	g.noProxy = r.strs(o.get("noProxy"), o.at("noProxy"))
	g.url = chProxyFields(r, o)
	if g.enabled && g.url == "" {
		r.fail("proxy", "enabled without host and port or url")
	}
	return g
}

// chProxyFields builds a proxy URL from {type, host, port, auth, url}.
func chProxyFields(r *peerReader, o peerObject) string {
	if u := strings.TrimSpace(r.str(o.get("url"), o.at("url"))); u != "" {
		return chProxyString(r, u, o.at("url"))
	}
	host := strings.TrimSpace(r.str(o.get("host"), o.at("host")))
	port := strings.TrimSpace(r.str(o.get("port"), o.at("port")))
	auth := r.object(o.get("auth"), o.at("auth"), []string{"username", "password"})
	user := r.str(auth.get("username"), auth.at("username"))
	pass := r.str(auth.get("password"), auth.at("password"))
	typ := r.str(o.get("type"), o.at("type"))
	if host == "" {
		if port != "" || typ != "" {
			r.fail(o.at("host"), "required")
		}
		return ""
	}
	u := proxyURL(typ, host, port, user, pass)
	return chProxyString(r, u, o.path)
}

// chProxyString checks a proxy URL; a bare host:port means HTTP.
func chProxyString(r *peerReader, s, path string) string {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	if !validProxy(s) {
		r.fail(path, "want an http://, https://, socks5:// or socks5h:// proxy, got %q", DisplayURL(s))
		return ""
	}
	return s
}

// chChannels converts the channels list; retries is the largest
// maxRetries given, or -1.
func chChannels(r *peerReader, top peerObject, global chGlobal) ([]Channel, int64) {
	items := r.list(top.get("channels"), "channels")
	var chans []Channel
	var prios []int64
	retries := int64(-1)
	for i, item := range items {
		ch, prio, maxRetries := chChannel(r, idx("channels", i), item, global)
		chans, prios = append(chans, ch), append(prios, prio)
		retries = max(retries, maxRetries)
	}
	top1 := int64(0)
	for _, p := range prios {
		top1 = max(top1, p)
	}
	if !allEqual(prios) {
		for i := range chans {
			chans[i].Priority = int(top1 - prios[i])
		}
	}
	return chans, retries
}

// chChannel converts one entry; it returns the entry's priority in the
// plugin's terms (default 1) and its maxRetries (-1 if unset).
func chChannel(r *peerReader, p string, n *yaml.Node, global chGlobal) (Channel, int64, int64) {
	o := r.object(n, p, chKeys)
	ch := Channel{
		Name: strings.TrimSpace(or(r.str(o.get("name"), o.at("name")), r.str(o.get("id"), o.at("id")))),
		Type: chType(r, o),
	}
	ch.BaseURL = chBaseURL(r, o, ch.Type)
	ch.Models = cleanNames(r.strs(o.get("model"), o.at("model")), r.strs(o.get("models"), o.at("models")))
	for j, m := range ch.Models {
		if m == "*" {
			r.fail(idx(o.at("models"), j), `"*" (any model) cannot be expressed in Sluice; list the models`)
		}
	}
	if len(ch.Models) == 0 {
		r.fail(o.at("model"), "required (model or models)")
	}
	if on, ok := r.boolean(o.get("enabled"), o.at("enabled")); ok && !on {
		ch.Enabled = Bool(false)
	}
	ch.Weight = int(r.count(o.get("weight"), o.at("weight")))
	prio := int64(1)
	if o.has("priority") {
		prio = r.count(o.get("priority"), o.at("priority"))
	}
	ch.Timeout = chTimeout(r, o)
	retries := int64(-1)
	if o.has("maxRetries") {
		retries = r.count(o.get("maxRetries"), o.at("maxRetries"))
	}
	// retryDelay, retryBackoff and retryOn tune the plugin's own retry
	// loop; native retries follow routing.retry and are not per channel.
	_ = r.num(o.get("retryDelay"), o.at("retryDelay"))
	_ = r.num(o.get("retryBackoff"), o.at("retryBackoff"))
	_ = r.strs(o.get("retryOn"), o.at("retryOn"))
	for _, k := range []string{"stream", "supportTools", "supportVision"} {
		_, _ = r.boolean(o.get(k), o.at(k)) // client capability hints, not routing
	}
	ch.Tags = cleanNames(r.strs(o.get("tags"), o.at("tags")))
	ch.Params.Defaults = chParams(r, o)
	ch.Headers = chHeaders(r, o)
	ch.Proxy = chChannelProxy(r, o, global, ch)
	ch.Credentials = chCredentials(r, o)
	return ch, prio, retries
}

// chType reads type (or the plugin's newer adapterType); default openai.
func chType(r *peerReader, o peerObject) string {
	typ := strings.ToLower(strings.TrimSpace(or(r.str(o.get("type"), o.at("type")), r.str(o.get("adapterType"), o.at("adapterType")))))
	path := o.at("type")
	if typ == "" {
		return "openai"
	}
	switch spec, ok := provider.Lookup(typ); {
	case !ok:
		r.fail(path, "unknown provider type %q (want one of %s)", typ, strings.Join(provider.Types(), ", "))
	case spec.Unsupported != "":
		r.fail(path, "provider type %q: %s", typ, spec.Unsupported)
	}
	return typ
}

// chBaseURL reads baseUrl, adding the "/v1" the plugin adds to a bare
// openai host.
func chBaseURL(r *peerReader, o peerObject, typ string) string {
	base := strings.TrimSpace(r.str(o.get("baseUrl"), o.at("baseUrl")))
	if base == "" {
		return ""
	}
	u, ok := httpURL(base)
	if !ok {
		r.fail(o.at("baseUrl"), "want an http:// or https:// URL, got %q", DisplayURL(base))
		return ""
	}
	if typ == "openai" && strings.Trim(u.Path, "/") == "" {
		u.Path, u.RawPath = "/v1", ""
		base = u.String()
	}
	return orDefault(typ, strings.TrimRight(base, "/"))
}

// chTimeout reads timeout in milliseconds, or the plugin's newer
// {connect, read} object, whose read part bounds the call.
func chTimeout(r *peerReader, o peerObject) Duration {
	n := deref(o.get("timeout"))
	if n != nil && n.Kind == yaml.MappingNode {
		t := r.object(n, o.at("timeout"), []string{"connect", "read"})
		_ = r.num(t.get("connect"), t.at("connect"))
		return r.duration(t.get("read"), t.at("read"), time.Millisecond)
	}
	return r.duration(n, o.at("timeout"), time.Millisecond)
}

// chParams maps modelParams to request defaults with OpenAI names.
func chParams(r *peerReader, o peerObject) map[string]any {
	params := r.anyMap(o.get("modelParams"), o.at("modelParams"))
	for from, to := range chParamNames {
		if v, ok := params[from]; ok {
			delete(params, from)
			if _, set := params[to]; !set {
				params[to] = v
			}
		}
	}
	return params
}

// chHeaders reads headers (and customHeaders, its newer name).
func chHeaders(r *peerReader, o peerObject) map[string]string {
	h := r.strMap(o.get("headers"), o.at("headers"))
	for k, v := range r.strMap(o.get("customHeaders"), o.at("customHeaders")) {
		if h == nil {
			h = make(map[string]string)
		}
		h[k] = v
	}
	return h
}

// chChannelProxy resolves the channel's proxy: its own, else the global
// one unless useProxy is false or the host is in noProxy.
func chChannelProxy(r *peerReader, o peerObject, global chGlobal, ch Channel) string {
	if n := deref(o.get("proxy")); !isNull(n) {
		if n.Kind == yaml.ScalarNode {
			return chProxyString(r, strings.TrimSpace(n.Value), o.at("proxy"))
		}
		return chProxyFields(r, r.object(n, o.at("proxy"), []string{"type", "host", "port", "auth", "url"}))
	}
	use, set := r.boolean(o.get("useProxy"), o.at("useProxy"))
	if !global.enabled || set && !use {
		return ""
	}
	host := ""
	if u, ok := httpURL(ch.BaseURL); ok {
		host = u.Hostname()
	} else if spec, ok := lookupServed(ch.Type); ok {
		if u, ok := httpURL(spec.BaseURL); ok {
			host = u.Hostname()
		}
	}
	for _, pattern := range global.noProxy {
		if host != "" && (pattern == host || strings.HasPrefix(pattern, "*.") && strings.HasSuffix(host, pattern[1:])) {
			return ""
		}
	}
	return global.url
}

// chCredentials reads apiKeys, falling back to apiKey.
func chCredentials(r *peerReader, o peerObject) []Credential {
	var creds []Credential
	live := false
	for i, item := range r.list(o.get("apiKeys"), o.at("apiKeys")) {
		p := idx(o.at("apiKeys"), i)
		if n := deref(item); n != nil && n.Kind == yaml.ScalarNode {
			creds, live = append(creds, Credential{Key: n.Value}), true
			continue
		}
		// usageCount, errorCount, lastUsed and lastError are runtime
		// statistics the plugin writes back.
		k := r.object(item, p, []string{"key", "name", "enabled", "weight", "usageCount", "errorCount", "lastUsed", "lastError"})
		cr := Credential{Key: r.str(k.get("key"), k.at("key")), Weight: int(r.count(k.get("weight"), k.at("weight")))}
		if cr.Key == "" {
			r.fail(k.at("key"), "required")
		}
		if on, ok := r.boolean(k.get("enabled"), k.at("enabled")); ok && !on {
			cr.Enabled = Bool(false)
		} else {
			live = true
		}
		creds = append(creds, cr)
	}
	if key := r.str(o.get("apiKey"), o.at("apiKey")); key != "" && !live {
		creds = append(creds, Credential{Key: key})
	}
	return creds
}

// allEqual reports whether every value is the same.
func allEqual(v []int64) bool {
	for _, x := range v {
		if x != v[0] {
			return false
		}
	}
	return true
}
