package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
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
	// The plugin's current channels (config.js getDefaultConfig and
	// ChannelManager.js, 2026): mapped, refused when they cannot be
	// expressed, or runtime state the plugin writes back.
	"baseUrls", "baseUrlLatencies", "selectedBaseUrlIndex", "advanced", "strategy", "headersTemplate",
	"requestBodyTemplate", "overrides", "imageConfig", "chatPath", "modelsPath", "endpoints", "auth",
	"retry", "quota", "status", "lastHealthCheck", "errorCount", "lastErrorTime",
}

// chGatewayKeys are the top-level sections of the plugin's config.yaml
// that configure what a gateway does; every other section configures
// the bot (basic, llm, bym, mcp, memory, presets, ...) and is ignored,
// with a note.
var chGatewayKeys = []string{"channels", "loadBalancing", "proxy"}

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
	var ignored []string
	for _, f := range top.fields {
		if !slices.Contains(chNativeKeys, f.key) && !slices.Contains(chGatewayKeys, f.key) {
			ignored = append(ignored, f.key)
		}
	}
	if len(ignored) > 0 {
		r.note("ignored, the bot's own settings: %s", strings.Join(ignored, ", "))
	}
	chans, retries, keyStrategy := chChannels(r, top, chGlobalProxy(r, top))
	s := chStrategy(r, top)
	switch {
	case s == "":
		// Channels are tried by priority: within one, the keys take
		// turns by the channels' own strategy.
		s = keyStrategy
	case keyStrategy != "" && keyStrategy != s:
		r.note("loadBalancing.strategy %s also orders the keys within each channel (the channels' strategy %s is not kept)", s, keyStrategy)
	}
	if s != "" {
		if cfg.Routing.Strategy != "" && cfg.Routing.Strategy != s {
			r.fail("loadBalancing.strategy", "conflicts with routing.strategy %q", cfg.Routing.Strategy)
		}
		cfg.Routing.Strategy = s
	}
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
	cfg.Notes = r.notes
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
		case f.key == "redis" && chPluginRedis(f.val):
			if val := chRedis(r, f); val != nil {
				native.Content = append(native.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: f.key}, val)
			}
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

// chPluginRedis reports whether a redis section is the plugin's
// {enabled, host, port, password, db} rather than Sluice's own.
func chPluginRedis(n *yaml.Node) bool {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i < len(n.Content); i += 2 {
		if k := n.Content[i].Value; k == "enabled" || k == "host" || k == "port" {
			return true
		}
	}
	return false
}

// chRedis converts the plugin's redis section: when enabled, its Redis
// is the cluster's (as REDIS_URL would be); else there is none.
func chRedis(r *peerReader, f peerField) *yaml.Node {
	o := r.object(f.val, f.path, []string{"enabled", "host", "port", "password", "db"})
	on, _ := r.boolean(o.get("enabled"), o.at("enabled"))
	if !on {
		return nil
	}
	host := or(strings.TrimSpace(r.str(o.get("host"), o.at("host"))), "127.0.0.1")
	port := or(strings.TrimSpace(r.str(o.get("port"), o.at("port"))), "6379")
	db := r.count(o.get("db"), o.at("db"))
	u := url.URL{Scheme: "redis", Host: net.JoinHostPort(host, port), Path: "/" + strconv.FormatInt(db, 10)}
	if pw := r.str(o.get("password"), o.at("password")); pw != "" {
		u.User = url.UserPassword("", pw)
	}
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "url"}, {Kind: yaml.ScalarNode, Value: u.String()},
	}}
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
	o := r.object(top.get("proxy"), "proxy", []string{"enabled", "type", "host", "port", "auth", "url", "noProxy", "profiles", "scopes"})
	var g chGlobal
	g.enabled, _ = r.boolean(o.get("enabled"), o.at("enabled"))
	g.noProxy = r.strs(o.get("noProxy"), o.at("noProxy"))
	g.url = chProxyFields(r, o)
	if o.has("profiles") || o.has("scopes") {
		// The plugin's newer shape: named profiles, and per scope
		// (browser, api, channel) whether one is used; channel calls
		// are the gateway's.
		url, on := chProxyProfile(r, o)
		g.url, g.enabled = or(g.url, url), g.enabled && on
	}
	if g.enabled && g.url == "" {
		r.fail("proxy", "enabled without host and port or url")
	}
	return g
}

// chProxyProfile reads proxy.profiles and proxy.scopes: the profile the
// channel scope uses, if it is enabled.
func chProxyProfile(r *peerReader, o peerObject) (url string, on bool) {
	scopes := r.object(o.get("scopes"), o.at("scopes"), []string{"browser", "api", "channel"})
	var use string
	for _, f := range scopes.fields {
		sc := r.object(f.val, f.path, []string{"enabled", "profileId"})
		enabled, _ := r.boolean(sc.get("enabled"), sc.at("enabled"))
		id := strings.TrimSpace(r.str(sc.get("profileId"), sc.at("profileId")))
		if f.key == "channel" && enabled && id != "" {
			use = id
		}
	}
	for i, item := range r.list(o.get("profiles"), o.at("profiles")) {
		pr := r.object(item, idx(o.at("profiles"), i), []string{"id", "name", "type", "host", "port", "username", "password", "enabled"})
		id := strings.TrimSpace(r.str(pr.get("id"), pr.at("id")))
		if id != use || use == "" {
			continue
		}
		if on, ok := r.boolean(pr.get("enabled"), pr.at("enabled")); ok && !on {
			return "", false // a disabled profile cannot be chosen
		}
		typ := strings.ToLower(strings.TrimSpace(r.str(pr.get("type"), pr.at("type"))))
		if typ == "socks4" {
			r.fail(pr.at("type"), "socks4 proxies are not supported (want http, https or socks5)")
			return "", false
		}
		host := strings.TrimSpace(r.str(pr.get("host"), pr.at("host")))
		port := strings.TrimSpace(r.str(pr.get("port"), pr.at("port")))
		if host == "" || port == "" {
			r.fail(pr.path, "host and port are required")
			return "", false
		}
		return chProxyString(r, proxyURL(typ, host, port, r.str(pr.get("username"), pr.at("username")), r.str(pr.get("password"), pr.at("password"))), pr.path), true
	}
	if use != "" {
		r.fail(o.at("scopes.channel.profileId"), "no profile has id %q", use)
	}
	return "", false
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
// maxRetries given, or -1; strategy is how the channels' keys take turns
// (the channels' strategy), or "".
func chChannels(r *peerReader, top peerObject, global chGlobal) (chans []Channel, retries int64, strategy string) {
	items := r.list(top.get("channels"), "channels")
	var prios []int64
	retries = -1
	var others []string
	for i, item := range items {
		ch, prio, maxRetries, s := chChannel(r, idx("channels", i), item, global)
		chans, prios = append(chans, ch), append(prios, prio)
		retries = max(retries, maxRetries)
		switch {
		case s == "" || s == strategy:
		case strategy == "":
			strategy = s
		default:
			others = append(others, fmt.Sprintf("%s (%s)", ch.Name, s))
		}
	}
	if len(others) > 0 {
		r.note("one strategy orders every channel's keys in Sluice: %s, not %s", strategy, strings.Join(others, ", "))
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
	return chans, retries, strategy
}

// chChannel converts one entry; it returns the entry's priority in the
// plugin's terms (default 1), its maxRetries (-1 if unset) and the
// native strategy its strategy (how its keys take turns) maps to.
func chChannel(r *peerReader, p string, n *yaml.Node, global chGlobal) (Channel, int64, int64, string) {
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
	chAdvanced(r, o, &ch)
	chOverrides(r, o, &ch)
	if a := chRetry(r, o); a > 0 {
		retries = max(retries, a-1)
	}
	chUnexpressible(r, o)
	chQuota(r, o, &ch)
	ch.Headers = chHeaders(r, o)
	ch.Proxy = chChannelProxy(r, o, global, ch)
	ch.Credentials = chCredentials(r, o)
	return ch, prio, retries, chKeyStrategy(r, o)
}

// chKeyStrategies map the plugin's per-channel strategy (how a channel's
// apiKeys take turns, ChannelManager.js) to native strategies.
var chKeyStrategies = map[string]string{
	"round-robin": "round_robin", "random": "random", "weighted": "weighted",
	"least-used": "least_busy", "failover": "first",
}

// chKeyStrategy reads a channel's strategy; default round-robin, as the
// plugin's.
func chKeyStrategy(r *peerReader, o peerObject) string {
	s := strings.TrimSpace(r.str(o.get("strategy"), o.at("strategy")))
	if s == "" {
		return ""
	}
	native, ok := chKeyStrategies[s]
	if !ok {
		r.fail(o.at("strategy"), "unsupported value %q (want round-robin, random, weighted, least-used or failover)", s)
	}
	return native
}

// chAdvanced reads advanced: llm holds default request parameters (the
// channel's modelParams win), thinking.enableReasoning sets the default
// reasoning effort to thinking.defaultLevel; streaming and the rest of
// thinking tell the bot how to talk to its users, not the gateway how to
// route.
func chAdvanced(r *peerReader, o peerObject, ch *Channel) {
	adv := r.object(o.get("advanced"), o.at("advanced"), []string{"llm", "streaming", "thinking"})
	llm := r.object(adv.get("llm"), adv.at("llm"), []string{"temperature", "maxTokens", "topP", "frequencyPenalty", "presencePenalty", "maxCharacters"})
	// The plugin sends temperature and maxTokens; it saves the others
	// but never sends them (and maxCharacters trims the bot's replies).
	for _, p := range []struct{ from, to string }{{"temperature", "temperature"}, {"maxTokens", "max_tokens"}} {
		if !llm.has(p.from) {
			continue
		}
		v := r.num(llm.get(p.from), llm.at(p.from))
		if _, set := ch.Params.Defaults[p.to]; set || (p.to == "max_tokens" && v <= 0) {
			continue
		}
		if ch.Params.Defaults == nil {
			ch.Params.Defaults = map[string]any{}
		}
		if p.to == "max_tokens" {
			ch.Params.Defaults[p.to] = int(v) // as YAML decodes it: the config reads back the same
		} else {
			ch.Params.Defaults[p.to] = v
		}
	}
	for _, k := range []string{"topP", "frequencyPenalty", "presencePenalty", "maxCharacters"} {
		_ = r.num(llm.get(k), llm.at(k))
	}
	_ = r.object(adv.get("streaming"), adv.at("streaming"), []string{"enabled", "chunkSize"})
	th := r.object(adv.get("thinking"), adv.at("thinking"),
		[]string{"enableReasoning", "defaultLevel", "adaptThinking", "sendThinkingAsMessage", "vendorThinkingControl"})
	if on, _ := r.boolean(th.get("enableReasoning"), th.at("enableReasoning")); on {
		level := strings.ToLower(strings.TrimSpace(r.str(th.get("defaultLevel"), th.at("defaultLevel"))))
		switch level {
		case "":
			level = "medium"
		case "minimal", "low", "medium", "high":
		default:
			r.fail(th.at("defaultLevel"), "unsupported value %q (want minimal, low, medium or high)", level)
		}
		if _, set := ch.Params.Defaults["reasoning_effort"]; !set {
			if ch.Params.Defaults == nil {
				ch.Params.Defaults = map[string]any{}
			}
			ch.Params.Defaults["reasoning_effort"] = level
		}
	}
}

// chOverrides reads overrides: stopSequences as the default stop,
// modelMapping as models served under another name. A system prompt
// prefix or suffix rewrites the conversation: no gateway setting does.
func chOverrides(r *peerReader, o peerObject, ch *Channel) {
	ov := r.object(o.get("overrides"), o.at("overrides"), []string{"stopSequences", "systemPromptPrefix", "systemPromptSuffix", "modelMapping"})
	if stop := r.strs(ov.get("stopSequences"), ov.at("stopSequences")); len(stop) > 0 {
		if _, set := ch.Params.Defaults["stop"]; !set {
			if ch.Params.Defaults == nil {
				ch.Params.Defaults = map[string]any{}
			}
			ch.Params.Defaults["stop"] = anySlice(stop) // as YAML decodes a list
		}
	}
	for _, k := range []string{"systemPromptPrefix", "systemPromptSuffix"} {
		if strings.TrimSpace(r.str(ov.get(k), ov.at(k))) != "" {
			r.fail(ov.at(k), "cannot be expressed in Sluice (it rewrites the conversation); put it in the bot's preset")
		}
	}
	for from, to := range r.strMap(ov.get("modelMapping"), ov.at("modelMapping")) {
		from, to = strings.TrimSpace(from), strings.TrimSpace(to)
		if from == "" || to == "" || from == to {
			continue
		}
		if ch.ModelMap == nil {
			ch.ModelMap = map[string]string{}
		}
		ch.ModelMap[from] = to
		if !slices.Contains(ch.Models, from) {
			ch.Models = append(ch.Models, from)
		}
	}
}

// chRetry reads retry {maxAttempts, delay, backoff}: the attempts bound
// a request as maxRetries does; native retries have their own pacing.
func chRetry(r *peerReader, o peerObject) int64 {
	rt := r.object(o.get("retry"), o.at("retry"), []string{"maxAttempts", "delay", "backoff"})
	_ = r.num(rt.get("delay"), rt.at("delay"))
	_ = r.str(rt.get("backoff"), rt.at("backoff"))
	return r.count(rt.get("maxAttempts"), rt.at("maxAttempts"))
}

// chUnexpressible checks the channel fields a gateway cannot honour
// (templates that rewrite requests, custom paths, other auth schemes)
// are at their defaults, and accepts the plugin's runtime state and
// bot-side settings (imageConfig, status and error counters).
func chUnexpressible(r *peerReader, o peerObject) {
	for _, k := range []string{"headersTemplate", "requestBodyTemplate", "chatPath", "modelsPath"} {
		if strings.TrimSpace(r.str(o.get(k), o.at(k))) != "" {
			r.fail(o.at(k), "cannot be expressed in Sluice: leave it empty (requests keep the provider's own shape and paths)")
		}
	}
	ep := r.object(o.get("endpoints"), o.at("endpoints"), []string{"chat", "models", "embeddings", "images"})
	for _, f := range ep.fields {
		if strings.TrimSpace(r.str(f.val, f.path)) != "" {
			r.fail(f.path, "cannot be expressed in Sluice: leave it empty (requests keep the provider's own paths)")
		}
	}
	auth := r.object(o.get("auth"), o.at("auth"), []string{"type", "headerName", "prefix"})
	typ := strings.ToLower(strings.TrimSpace(r.str(auth.get("type"), auth.at("type"))))
	if typ != "" && typ != "bearer" {
		r.fail(auth.at("type"), "only bearer is supported (the key goes where the provider expects it)")
	}
	for _, k := range []string{"headerName", "prefix"} {
		if strings.TrimSpace(r.str(auth.get(k), auth.at(k))) != "" {
			r.fail(auth.at(k), "cannot be expressed in Sluice: leave it empty (the key goes where the provider expects it)")
		}
	}
	_ = r.object(o.get("imageConfig"), o.at("imageConfig"), nil)
	_ = r.object(o.get("baseUrlLatencies"), o.at("baseUrlLatencies"), nil)
	_ = r.str(o.get("status"), o.at("status"))
	_ = r.num(o.get("errorCount"), o.at("errorCount"))
}

// chQuota maps a channel's quota: requests per UTC day (which the plugin
// counts per channel, all its keys together), per hour and per minute (0
// means none), as the channel's shared limits. They hold across the
// cluster, and strictly: the plugin only prefers other channels once a
// channel has used its daily quota, and does not count hours and minutes.
func chQuota(r *peerReader, o peerObject, ch *Channel) {
	q := r.object(o.get("quota"), o.at("quota"), []string{"daily", "hourly", "perMinute"})
	ch.SharedLimits.RPM = r.count(q.get("perMinute"), q.at("perMinute"))
	if daily := r.count(q.get("daily"), q.at("daily")); daily > 0 {
		ch.Budgets = append(ch.Budgets, Budget{Requests: daily, Period: "day", Timezone: "UTC"})
	}
	if hourly := r.count(q.get("hourly"), q.at("hourly")); hourly > 0 {
		ch.Budgets = append(ch.Budgets, Budget{Requests: hourly, Period: "1h"})
	}
	if ch.SharedLimits.RPM > 0 || len(ch.Budgets) > 0 {
		r.note("%s is enforced for the whole cluster: a call beyond it is refused (429) or served by another channel; the plugin only prefers other channels once the daily quota is used", q.path)
	}
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
	if urls := r.strs(o.get("baseUrls"), o.at("baseUrls")); base == "" && len(urls) > 0 {
		// The plugin's newer list of mirrors, of which one is selected.
		i := r.count(o.get("selectedBaseUrlIndex"), o.at("selectedBaseUrlIndex"))
		if i >= int64(len(urls)) {
			r.fail(o.at("selectedBaseUrlIndex"), "%d is past the %d baseUrls", i, len(urls))
			return ""
		}
		base = strings.TrimSpace(urls[i])
	}
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

// anySlice is a list of strings as YAML decodes it into a parameter.
func anySlice(v []string) []any {
	out := make([]any, len(v))
	for i, s := range v {
		out[i] = s
	}
	return out
}
