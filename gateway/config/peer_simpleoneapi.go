package config

import (
	"math"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// This file and peer_simpleoneapi_service.go read the config.json of
// simple-one-api (github.com/fruitbars/simple-one-api). The semantics
// follow its source: pkg/config/config.go (Configuration, ServiceModel,
// redirects), pkg/config/lb_strategy.go (load balancing),
// pkg/config/runtime.go (validation and defaults), pkg/appserver/auth.go
// and pkg/handler/openai_handler.go (api_key and api_keys), the handlers
// of each service type in pkg/handler, and docs/configuration-reference.md.

// soaTopKeys are the top-level keys simple-one-api documents.
var soaTopKeys = []string{
	"server_port", "enable_web", "api_key", "api_keys", "debug", "log_level",
	"load_balancing", "circuit_breaker", "statistics", "services", "proxy",
	"multi_content_models", "model_redirect", "params_range", "translation",
}

// soaDefaultPort is where simple-one-api listens when server_port is
// unset; clients of a migrated gateway keep calling it there.
const soaDefaultPort = ":9090"

// fromSimpleOneAPI converts a simple-one-api config into the native
// model. Keys that only tune simple-one-api's own operation (enable_web,
// debug, statistics, translation, multi_content_models, params_range)
// are accepted and ignored: none of them changes where a request goes.
func fromSimpleOneAPI(r *peerReader, doc *yaml.Node) (*Config, error) {
	top := r.object(doc, "", soaTopKeys)
	cfg := &Config{}
	cfg.Server.Listen = r.listenAddr(top.get("server_port"), "server_port")
	if cfg.Server.Listen == "" {
		cfg.Server.Listen = soaDefaultPort
	}
	cfg.Log.Level = soaLogLevel(r, top)
	cfg.Routing.Strategy = soaStrategy(r, top)
	cfg.Breaker = soaBreaker(r, top)
	cfg.ModelRedirect = soaRedirect(r, top)
	cfg.Channels = soaServices(r, top, soaReadProxy(r, top))
	cfg.Clients = soaClients(r, top, soaServable(cfg))
	switch {
	case len(cfg.Channels) > 0 || len(r.errs) > 0:
	case soaNoServices(top):
		// Its users add channels in its web panel (config_web.json):
		// here, through the admin API or the dashboard, which need an
		// admin token (validation says so when there is none).
		r.note("no services: add channels through the admin API (/api/channels) or the dashboard (/admin)")
	default:
		r.fail("services", "no service that Sluice can serve")
	}
	if on, _ := r.boolean(top.get("enable_web"), "enable_web"); on {
		r.note("enable_web: the dashboard is served at /admin when an admin token is set (admin.token or SLUICE_ADMIN_TOKEN)")
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	cfg.Notes = r.notes
	return cfg, nil
}

// soaNoServices reports whether services lists no service at all (as
// opposed to services Sluice cannot serve).
func soaNoServices(top peerObject) bool {
	n := deref(top.get("services"))
	if isNull(n) {
		return true
	}
	if n.Kind != yaml.MappingNode {
		return false
	}
	for i := 1; i < len(n.Content); i += 2 {
		if v := deref(n.Content[i]); !isNull(v) && len(v.Content) > 0 {
			return false
		}
	}
	return true
}

// soaLogLevel maps log_level; simple-one-api also accepts zap's preset
// names (dev, prod, prodj, ...), which select an encoder as well.
func soaLogLevel(r *peerReader, top peerObject) string {
	lvl := strings.ToLower(strings.TrimSpace(r.str(top.get("log_level"), "log_level")))
	switch lvl {
	case "":
		return ""
	case "debug", "dev", "development":
		return "debug"
	case "info", "prod", "production", "prodj", "prodjson", "productionjson":
		return "info"
	case "warn", "warning":
		return "warn"
	case "error":
		return "error"
	}
	r.fail("log_level", "unsupported log level %q (want debug, info, warn or error)", lvl)
	return ""
}

// soaStrategy maps load_balancing. simple-one-api applies it both to the
// services serving a model and to the keys of a credential_list.
//
// "hash" is not sticky: getHashIndex in pkg/config/lb_strategy.go hashes
// the model name (or the service's key-pool name) together with the
// current time to the millisecond, so consecutive requests spread like
// random ones and no client, IP or session is pinned. The faithful native
// equivalent is therefore strategy random without affinity.
func soaStrategy(r *peerReader, top peerObject) string {
	lb := strings.ToLower(strings.TrimSpace(r.str(top.get("load_balancing"), "load_balancing")))
	switch lb {
	case "":
		return "" // simple-one-api defaults to random; native weighted with equal weights is the same
	case "first":
		return "first"
	case "random", "rand", "hash":
		return "random"
	case "round_robin", "rr":
		return "round_robin"
	}
	r.fail("load_balancing", "unsupported value %q (want first, random, round_robin or hash)", lb)
	return ""
}

// soaBreaker maps circuit_breaker. simple-one-api's defaults (5 failures,
// 30s, 1 probe) equal the native ones, so only given values are copied.
func soaBreaker(r *peerReader, top peerObject) Breaker {
	o := r.object(top.get("circuit_breaker"), "circuit_breaker",
		[]string{"enabled", "failure_threshold", "recovery_timeout_seconds", "half_open_max_requests"})
	var b Breaker
	b.Failures = int(r.count(o.get("failure_threshold"), o.at("failure_threshold")))
	b.OpenTimeout = r.duration(o.get("recovery_timeout_seconds"), o.at("recovery_timeout_seconds"), time.Second)
	b.HalfOpenProbes = int(r.count(o.get("half_open_max_requests"), o.at("half_open_max_requests")))
	if on, ok := r.boolean(o.get("enabled"), o.at("enabled")); ok && !on {
		// The native breaker has no off switch; a failure count that is
		// never reached has the same effect.
		b.Failures = math.MaxInt32
	}
	return b
}

// soaRedirect maps the global model_redirect. simple-one-api checks the
// key "all" first and, when present, redirects every model to its target
// ("all" as a target means a random model); other entries are then never
// used, so they are left out.
func soaRedirect(r *peerReader, top peerObject) map[string]string {
	m := r.strMap(top.get("model_redirect"), "model_redirect")
	if to, ok := m["all"]; ok {
		if to == "all" {
			to = "random"
		}
		return map[string]string{"all": to}
	}
	return m
}

// soaClients maps api_key and api_keys. simple-one-api checks them in
// two steps: when api_key is set, only a request carrying exactly that key
// passes; then, when api_keys is non-empty, the key must also be listed
// there and the model must be among its supported_models ("*" for any).
// So with both set, only api_key can ever be used, with the models its
// api_keys entries allow.
func soaClients(r *peerReader, top peerObject, servable func(string) bool) []Client {
	master := strings.TrimSpace(r.str(top.get("api_key"), "api_key"))
	var listed []Client
	for i, item := range r.list(top.get("api_keys"), "api_keys") {
		p := idx("api_keys", i)
		o := r.object(item, p, []string{"api_key", "key", "supported_models"})
		key := r.str(o.get("api_key"), o.at("api_key"))
		if key == "" {
			key = r.str(o.get("key"), o.at("key"))
		}
		if key == "" {
			r.fail(o.at("api_key"), "required")
			continue
		}
		models, ok := soaSupportedModels(r, o.get("supported_models"), o.at("supported_models"), servable)
		if !ok {
			continue
		}
		listed = append(listed, Client{Key: key, Models: models})
	}
	switch {
	case master == "":
		return mergeClients(listed)
	case len(listed) == 0:
		return []Client{{Key: master}}
	}
	var mine []Client
	for _, c := range listed {
		if c.Key == master {
			mine = append(mine, c)
		}
	}
	if len(mine) == 0 {
		r.fail("api_keys", "api_key is not listed here, so simple-one-api accepts no request at all; list it with its supported_models")
		return nil
	}
	return mergeClients(mine)
}

// soaSupportedModels reads supported_models: an object of lists (the
// keys are only labels) or a plain list. "*" allows every model, which is
// the native empty list. Models nothing serves are left out: simple-one-api
// cannot route them either. A list left empty allows no model at all,
// which has no native equivalent.
func soaSupportedModels(r *peerReader, n *yaml.Node, path string, servable func(string) bool) ([]string, bool) {
	var models []string
	if n = deref(n); n != nil && n.Kind == yaml.MappingNode {
		for _, f := range r.object(n, path, nil).fields {
			models = append(models, r.strs(f.val, f.path)...)
		}
	} else {
		models = r.strs(n, path)
	}
	models = cleanNames(models)
	if slices.Contains(models, "*") {
		return nil, true
	}
	listed := len(models)
	models = slices.DeleteFunc(models, func(m string) bool { return !servable(m) })
	switch {
	case listed == 0:
		r.fail(path, `empty: simple-one-api lets this key use no model; list the models or "*"`)
		return nil, false
	case len(models) == 0:
		r.fail(path, "no enabled service serves any of these models, so simple-one-api lets this key use none")
		return nil, false
	}
	return models, true
}

// soaServable returns whether a converted config can route a model
// name: an enabled channel serves it, a redirect covers it, or it means
// any model.
func soaServable(c *Config) func(string) bool {
	return func(model string) bool {
		if IsAnyModel(model) || c.ModelRedirect[model] != "" || c.ModelRedirect["all"] != "" {
			return true
		}
		return slices.ContainsFunc(c.Channels, func(ch Channel) bool {
			return ch.IsEnabled() && slices.Contains(ch.Models, model)
		})
	}
}

// mergeClients joins entries repeating a key into one client.
func mergeClients(in []Client) []Client {
	var out []Client
	for _, c := range in {
		i := slices.IndexFunc(out, func(o Client) bool { return o.Key == c.Key })
		switch {
		case i < 0:
			out = append(out, c)
		case len(out[i].Models) == 0 || len(c.Models) == 0:
			out[i].Models = nil // one of them allows every model
		default:
			out[i].Models = cleanNames(out[i].Models, c.Models)
		}
	}
	return out
}
