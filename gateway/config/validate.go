package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider"
)

// FieldError is a problem with one value of a config, named by its path
// ("channels[2].credentials[0].limits.qps").
type FieldError struct {
	Path string
	Msg  string
	Err  error // the cause, when there is one
}

// Unwrap returns the cause.
func (e *FieldError) Unwrap() error { return e.Err }

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Strategies are the routing strategies Sluice knows.
var strategies = []string{"weighted", "random", "round_robin", "first", "least_busy", "latency"}

// reservedParams are request fields a channel's params may not set: the
// relay depends on them.
var reservedParams = []string{"model", "stream", "stream_options", "messages", "input"}

// AnyModel lists the model names that mean "any enabled model".
var anyModel = []string{"auto", "random"}

// IsAnyModel reports whether a requested model name means "any model".
func IsAnyModel(name string) bool { return slices.Contains(anyModel, ModelKey(name)) }

// ModelKey is the one form in which model names are compared, everywhere:
// routing, model_redirect, model_groups, "auto" and "random", and client
// keys' model lists. Names differ only by more than case: "GPT-4o" is
// "gpt-4o". Upstreams still get the name as each channel writes it.
func ModelKey(name string) string { return strings.ToLower(name) }

// Provision fills in every default. It is idempotent.
func (c *Config) Provision() {
	s := &c.Server
	s.Listen = or(s.Listen, ":8080")
	s.MaxBodyBytes = or(s.MaxBodyBytes, 16<<20)
	s.DrainTimeout = or(s.DrainTimeout, Duration(30*time.Second))
	s.ReadHeaderTimeout = or(s.ReadHeaderTimeout, Duration(10*time.Second))
	s.IdleTimeout = or(s.IdleTimeout, Duration(120*time.Second))
	s.ReadBodyTimeout = or(s.ReadBodyTimeout, Duration(30*time.Second))
	s.MaxParsingBytes = or(s.MaxParsingBytes, max(32<<20, s.MaxBodyBytes))
	s.ParsingWait = or(s.ParsingWait, Duration(2*time.Second))
	c.Log.Level = or(c.Log.Level, "info")
	c.Log.Format = or(c.Log.Format, "json")

	r := &c.Routing
	r.Strategy = or(r.Strategy, "weighted")
	if r.Affinity.By == "header" {
		r.Affinity.Header = or(r.Affinity.Header, "X-Session-ID")
	}
	r.Affinity.TTL = or(r.Affinity.TTL, Duration(10*time.Minute))
	r.Retry.MaxAttempts = or(r.Retry.MaxAttempts, 3)
	r.Retry.MaxTime = or(r.Retry.MaxTime, Duration(60*time.Second))
	r.Retry.Cooldown = or(r.Retry.Cooldown, Duration(5*time.Second))
	r.Retry.MaxCooldown = or(r.Retry.MaxCooldown, Duration(5*time.Minute))

	b := &c.Breaker
	b.Failures = or(b.Failures, 5)
	b.MinRequests = or(b.MinRequests, 20)
	b.Interval = or(b.Interval, Duration(time.Minute))
	b.OpenTimeout = or(b.OpenTimeout, Duration(30*time.Second))
	b.HalfOpenProbes = or(b.HalfOpenProbes, 1)
	b.ProbeTimeout = or(b.ProbeTimeout, Duration(time.Minute))
	b.ProbeInterval = or(b.ProbeInterval, Duration(5*time.Second))

	for i := range c.Clients {
		c.Clients[i].Name = or(c.Clients[i].Name, fmt.Sprintf("client-%d", i))
	}
	c.Telemetry.Metrics.Path = or(c.Telemetry.Metrics.Path, "/metrics")
	c.Admin.AuditSize = or(c.Admin.AuditSize, 1000)
	c.provisionMoney()
	c.provisionRouting()
	c.Telemetry.Traces.Protocol = or(c.Telemetry.Traces.Protocol, "grpc")
	if rd := c.Redis; rd != nil {
		rd.KeyPrefix = or(rd.KeyPrefix, "sluice:")
		rd.HashTag = or(rd.HashTag, "q")
		rd.Timeout = or(rd.Timeout, Duration(250*time.Millisecond))
		rd.OnUnavailable = or(rd.OnUnavailable, "local")
		rd.MinDwell = or(rd.MinDwell, Duration(time.Second))
		rd.LeaseTTL = or(rd.LeaseTTL, Duration(30*time.Second))
	}
	for i := range c.Channels {
		ch := &c.Channels[i]
		ch.Type = strings.ToLower(ch.Type)
		ch.Name = or(ch.Name, fmt.Sprintf("%s-%d", ch.Type, i))
		if spec, ok := provider.Lookup(ch.Type); ok {
			ch.BaseURL = or(ch.BaseURL, spec.BaseURL)
		}
		ch.Weight = or(ch.Weight, 1)
		ch.Timeout = or(ch.Timeout, Duration(60*time.Second))
		ch.StreamIdleTimeout = or(ch.StreamIdleTimeout, Duration(60*time.Second))
		if len(ch.Credentials) == 0 {
			ch.Credentials = []Credential{{}}
		}
		for j := range ch.Credentials {
			cr := &ch.Credentials[j]
			cr.ID = or(cr.ID, fmt.Sprintf("%s#%d", ch.Name, j))
			cr.Weight = or(cr.Weight, 1)
		}
	}
}

// or returns v, or def when v is the zero value.
func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Validate reports every problem of a provisioned config, one FieldError
// per problem, joined.
func (c *Config) Validate() error {
	v := &validator{}
	c.validateServer(v)
	c.validateRouting(v)
	c.validateRedis(v)
	c.validateTelemetry(v)
	served := c.validateChannels(v)
	c.validateModels(v, served)
	c.validateFallbacks(v, served)
	c.validateClients(v, served)
	c.validateMoney(v)
	c.validateAdmin(v)
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validateServer(v *validator) {
	if _, _, err := net.SplitHostPort(c.Server.Listen); err != nil {
		v.add("server.listen", "want host:port or :port, got %q", c.Server.Listen)
	}
	if c.Server.MaxBodyBytes < 1024 {
		v.add("server.max_body_bytes", "must be at least 1KiB")
	}
	if c.Server.ReadHeaderTimeout < 0 {
		v.add("server.read_header_timeout", "must not be negative")
	}
	if c.Server.IdleTimeout < 0 {
		v.add("server.idle_timeout", "must not be negative")
	}
	if c.Server.ReadBodyTimeout < 0 {
		v.add("server.read_body_timeout", "must not be negative")
	}
	if c.Server.MaxParsingBytes < c.Server.MaxBodyBytes {
		v.add("server.max_parsing_bytes", "must be at least server.max_body_bytes (%d bytes), or no request could be parsed", c.Server.MaxBodyBytes)
	}
	if c.Server.ParsingWait < 0 {
		v.add("server.parsing_wait", "must not be negative")
	}
	for i, p := range c.Server.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			v.add(fmt.Sprintf("server.trusted_proxies[%d]", i), "%v", err)
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(c.Log.Level)) {
		v.add("log.level", "must be one of debug, info, warn, error")
	}
	if !slices.Contains([]string{"json", "text"}, strings.ToLower(c.Log.Format)) {
		v.add("log.format", "must be json or text")
	}
	if l := c.Server.PprofListen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			v.add("server.pprof_listen", "want host:port or :port, got %q", l)
		} else if slices.Contains([]string{c.Server.Listen, c.Telemetry.Metrics.Listen, c.Admin.Listen}, l) {
			v.add("server.pprof_listen", "must differ from server.listen, telemetry.metrics.listen and admin.listen")
		}
	}
}

// ParsePrefix reads a CIDR or a single address as a prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("want an IP address or CIDR, got %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (c *Config) validateRouting(v *validator) {
	r := c.Routing
	if !slices.Contains(strategies, r.Strategy) {
		v.add("routing.strategy", "unknown strategy %q (want one of %s)", r.Strategy, strings.Join(strategies, ", "))
	}
	switch r.Affinity.By {
	case "client":
		if len(c.Clients) == 0 {
			v.add("routing.affinity.by", "client affinity needs client keys (clients); without them every caller is the same")
		}
	case "", "ip":
	case "header":
		if r.Affinity.Header == "" {
			v.add("routing.affinity.header", "required when affinity is by header")
		}
	default:
		v.add("routing.affinity.by", "unknown affinity %q (want ip, header or client)", r.Affinity.By)
	}
	if r.Affinity.TTL < 0 {
		v.add("routing.affinity.ttl", "must be > 0")
	}
	if r.Retry.MaxAttempts < 1 {
		v.add("routing.retry.max_attempts", "must be >= 1")
	}
	for _, d := range []struct {
		path string
		d    Duration
	}{
		{"server.drain_timeout", c.Server.DrainTimeout}, {"server.shutdown_delay", c.Server.ShutdownDelay},
		{"routing.retry.max_time", r.Retry.MaxTime}, {"routing.retry.cooldown", r.Retry.Cooldown},
		{"routing.retry.max_cooldown", r.Retry.MaxCooldown},
		{"breaker.interval", c.Breaker.Interval}, {"breaker.open_timeout", c.Breaker.OpenTimeout},
		{"breaker.probe_timeout", c.Breaker.ProbeTimeout}, {"breaker.probe_interval", c.Breaker.ProbeInterval},
	} {
		if d.d < 0 {
			v.add(d.path, "must not be negative")
		}
	}
	b := c.Breaker
	if b.Failures < 1 {
		v.add("breaker.failures", "must be >= 1")
	}
	if b.FailureRatio < 0 || b.FailureRatio > 1 {
		v.add("breaker.failure_ratio", "must be between 0 and 1")
	}
	if b.MinRequests < 1 {
		v.add("breaker.min_requests", "must be >= 1")
	}
	if b.HalfOpenProbes < 1 {
		v.add("breaker.half_open_probes", "must be >= 1")
	}
}

func (c *Config) validateTelemetry(v *validator) {
	t := c.Telemetry
	if !slices.Contains([]string{"grpc", "http/protobuf", "http"}, t.Traces.Protocol) {
		v.add("telemetry.traces.protocol", "must be grpc or http/protobuf")
	}
	if t.Traces.SampleRatio < 0 || t.Traces.SampleRatio > 1 {
		v.add("telemetry.traces.sample_ratio", "must be between 0 and 1")
	}
	if !strings.HasPrefix(t.Metrics.Path, "/") || strings.HasPrefix(t.Metrics.Path, "/v1/") ||
		slices.Contains([]string{"/healthz", "/readyz"}, t.Metrics.Path) {
		v.add("telemetry.metrics.path", "must be a path of its own, such as /metrics")
	}
	if l := t.Metrics.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			v.add("telemetry.metrics.listen", "want host:port or :port, got %q", l)
		} else if l == c.Server.Listen {
			v.add("telemetry.metrics.listen", "must differ from server.listen (leave it empty to serve metrics there)")
		}
	}
}

func (c *Config) validateRedis(v *validator) {
	rd := c.Redis
	if rd == nil {
		return
	}
	switch {
	case rd.URL == "" && len(rd.Addrs) == 0:
		v.add("redis", "url or addrs is required (or set REDIS_URL)")
	case rd.URL != "" && len(rd.Addrs) > 0:
		v.add("redis.addrs", "give url or addrs, not both")
	case rd.URL != "":
		if u, err := url.Parse(rd.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			v.add("redis.url", "want redis://host:port or rediss://host:port")
		}
	}
	for i, a := range rd.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			v.add(fmt.Sprintf("redis.addrs[%d]", i), "want host:port, got %q", a)
		}
	}
	if rd.MasterName != "" && len(rd.Addrs) == 0 {
		v.add("redis.master_name", "needs the Sentinels in addrs")
	}
	if strings.ContainsAny(rd.HashTag, "{}") {
		v.add("redis.hash_tag", "must not contain braces")
	}
	if !slices.Contains([]string{"local", "open", "closed"}, rd.OnUnavailable) {
		v.add("redis.on_unavailable", "must be local, open or closed")
	}
	for _, d := range []struct {
		path string
		d    Duration
	}{{"redis.timeout", rd.Timeout}, {"redis.lease_ttl", rd.LeaseTTL}, {"redis.min_dwell", rd.MinDwell}, {"redis.lease.hold", rd.Lease.Hold}, {"redis.lease.max_deny", rd.Lease.MaxDeny}} {
		if d.d < 0 {
			v.add(d.path, "must not be negative")
		}
	}
	if rd.Lease.Batch < 0 {
		v.add("redis.lease.batch", "must not be negative")
	}
	if rd.PoolSize < 0 {
		v.add("redis.pool_size", "must not be negative")
	}
	if rd.TLS != nil && (rd.TLS.CertFile == "") != (rd.TLS.KeyFile == "") {
		v.add("redis.tls", "cert_file and key_file go together")
	}
}

// validateChannels checks every channel and returns the set of models
// that enabled channels serve.
func (c *Config) validateChannels(v *validator) map[string]bool {
	served := make(map[string]bool)
	names := make(map[string]int)
	ids := make(map[string]string)
	if len(c.Channels) == 0 && !c.Admin.IsEnabled() {
		// With the admin API on, channels can be added through it.
		v.add("channels", "at least one channel is required (or an admin token, admin.token or SLUICE_ADMIN_TOKEN, to add them through /api/channels)")
	}
	for i, ch := range c.Channels {
		p := fmt.Sprintf("channels[%d]", i)
		if j, dup := names[ch.Name]; dup {
			v.add(p+".name", "duplicate channel name %q (also channels[%d])", ch.Name, j)
		}
		names[ch.Name] = i
		spec, ok := provider.Lookup(ch.Type)
		switch {
		case ch.Type == "":
			v.add(p+".type", "required (one of %s)", strings.Join(provider.Types(), ", "))
		case !ok:
			v.add(p+".type", "unknown provider type %q (want one of %s)", ch.Type, strings.Join(provider.Types(), ", "))
		case spec.Unsupported != "":
			v.add(p+".type", "provider type %q: %s", ch.Type, spec.Unsupported)
		}
		if ch.BaseURL == "" && ok && spec.Unsupported == "" && spec.API != provider.APIVertex {
			v.add(p+".base_url", "required for type %s", ch.Type)
		} else if ch.BaseURL != "" {
			validateURL(v, p+".base_url", ch.BaseURL, ch.Type)
		}
		if ch.TokenURL != "" {
			validateURL(v, p+".token_url", ch.TokenURL, "")
		}
		if ch.Proxy != "" {
			if u, err := url.Parse(ch.Proxy); err != nil || u.Host == "" || !slices.Contains([]string{"http", "https", "socks5", "socks5h"}, u.Scheme) {
				v.add(p+".proxy", "want an http://, https://, socks5:// or socks5h:// URL")
			}
		}
		if len(ch.Models) == 0 {
			v.add(p+".models", "at least one model is required")
		}
		for j, m := range ch.Models {
			if strings.TrimSpace(m) == "" {
				v.add(fmt.Sprintf("%s.models[%d]", p, j), "empty model name")
			}
			if IsAnyModel(m) {
				v.add(fmt.Sprintf("%s.models[%d]", p, j), "%q is reserved: it means any enabled model", m)
			}
			if ch.IsEnabled() {
				served[ModelKey(m)] = true
			}
		}
		for _, from := range slices.Sorted(maps.Keys(ch.ModelMap)) {
			to := ch.ModelMap[from]
			if !slices.Contains(ch.Models, from) {
				v.add(p+".model_map."+from, "model %q is not in %s.models", from, p)
			}
			if to == "" {
				v.add(p+".model_map."+from, "empty upstream model name")
			}
		}
		if ch.Weight < 0 {
			v.add(p+".weight", "must be >= 0")
		}
		if ch.MaxTokens < 0 {
			v.add(p+".max_tokens", "must be >= 0")
		}
		if ch.Timeout < 0 {
			v.add(p+".timeout", "must be > 0")
		}
		if ch.StreamIdleTimeout < 0 {
			v.add(p+".stream_idle_timeout", "must be > 0")
		}
		if ch.Mock != nil && ch.Type != "mock" {
			v.add(p+".mock", "only for channels of type mock")
		}
		if m := ch.Mock; m != nil {
			if m.FailureRate < 0 || m.FailureRate > 1 || m.RateLimitRate < 0 || m.RateLimitRate > 1 {
				v.add(p+".mock", "failure_rate and rate_limit_rate must be between 0 and 1")
			}
		}
		validateLimits(v, p+".limits", ch.Limits)
		validateLimits(v, p+".shared_limits", ch.SharedLimits)
		for _, kind := range []struct {
			name   string
			values map[string]any
		}{{"defaults", ch.Params.Defaults}, {"overrides", ch.Params.Overrides}} {
			for _, k := range slices.Sorted(maps.Keys(kind.values)) {
				if slices.Contains(reservedParams, k) {
					v.add(p+".params."+kind.name+"."+k, "Sluice sets %s itself; a channel may not", k)
				}
			}
		}
		for j, cr := range ch.Credentials {
			cp := fmt.Sprintf("%s.credentials[%d]", p, j)
			if other, dup := ids[cr.ID]; dup {
				v.add(cp+".id", "duplicate credential id %q (also %s)", cr.ID, other)
			}
			ids[cr.ID] = cp
			if cr.BaseURL != "" {
				validateURL(v, cp+".base_url", cr.BaseURL, ch.Type)
			}
			if cr.Weight < 0 {
				v.add(cp+".weight", "must be >= 0")
			}
			validateSpark(v, cp, ch, cr)
			validateCloud(v, cp, ch, cr)
			validateLimits(v, cp+".limits", cr.Limits)
		}
	}
	return served
}

// validateURL checks a base URL of a channel of type typ: http:// or
// https://, or also ws:// or wss:// for xinghuo (Spark's WebSocket API).
func validateURL(v *validator, path, raw, typ string) {
	u, err := url.Parse(raw)
	ok := err == nil && u.Host != ""
	switch {
	case ok && (u.Scheme == "http" || u.Scheme == "https"):
	case ok && isWebSocket(u.Scheme) && typ == "xinghuo":
	case typ == "xinghuo":
		v.add(path, "want an http://, https://, ws:// or wss:// URL, got %q", DisplayURL(raw))
	case ok && isWebSocket(u.Scheme):
		v.add(path, "want an http:// or https:// URL, got %q (ws:// and wss:// are for type xinghuo only)", DisplayURL(raw))
	default:
		v.add(path, "want an http:// or https:// URL, got %q", DisplayURL(raw))
	}
}

// isWebSocket reports whether a URL scheme is ws or wss.
func isWebSocket(scheme string) bool { return scheme == "ws" || scheme == "wss" }

// validateSpark checks a credential's app_id and api_secret, which with
// key sign iFlytek Spark's WebSocket API (type xinghuo only). A xinghuo
// credential without them uses Spark's HTTP API, so it cannot be sent to
// a ws:// or wss:// URL.
func validateSpark(v *validator, cp string, ch Channel, cr Credential) {
	const signs = "Spark's WebSocket API signs with app_id, key (its API key) and api_secret"
	if ch.Type != "xinghuo" {
		if cr.AppID != "" {
			v.add(cp+".app_id", "only for type xinghuo")
		}
		if cr.APISecret != "" {
			v.add(cp+".api_secret", "only for type xinghuo")
		}
		return
	}
	switch {
	case cr.AppID != "" && cr.APISecret == "":
		v.add(cp+".api_secret", "required with app_id (%s)", signs)
	case cr.AppID == "" && cr.APISecret != "":
		v.add(cp+".app_id", "required with api_secret (%s)", signs)
	case cr.AppID != "" && cr.Key == "":
		v.add(cp+".key", "required with app_id and api_secret (%s)", signs)
	case cr.AppID == "":
		path, base := cp+".base_url", cr.BaseURL
		if base == "" {
			path, base = cp, ch.BaseURL
		}
		if u, err := url.Parse(base); err == nil && isWebSocket(u.Scheme) {
			v.add(path, "a ws:// or wss:// base_url is Spark's WebSocket API, which needs app_id and api_secret; without them the key is the API password of Spark's HTTP API (https://)")
		}
	}
}

// validateCloud checks the fields of the cloud providers' native APIs:
// secret_key for the types that have a signed API, region, project and
// the service account of vertexai.
func validateCloud(v *validator, cp string, ch Channel, cr Credential) {
	spec, _ := provider.Lookup(ch.Type)
	vertex := spec.API == provider.APIVertex
	switch {
	case cr.SecretKey != "" && spec.Signed == nil:
		v.add(cp+".secret_key", "only for types qianfan, hunyuan, huoshan and doubao (their native APIs)")
	case cr.SecretKey != "" && cr.Key == "":
		v.add(cp+".key", "required with secret_key: %s", secretKeyID(spec.Signed.API))
	}
	if cr.Region != "" && !vertex && spec.Signed == nil {
		v.add(cp+".region", "only for types vertexai, hunyuan, huoshan and doubao")
	}
	if !vertex {
		arkKeys := spec.Signed != nil && spec.Signed.API == provider.APIArk && cr.SecretKey != ""
		if cr.Project != "" && !arkKeys {
			v.add(cp+".project", "only for type vertexai, and huoshan or doubao credentials with a secret_key (the project of Ark's preset endpoints)")
		}
		if cr.CredentialsFile != "" {
			v.add(cp+".credentials_file", "only for type vertexai")
		}
		return
	}
	if cr.Region == "" {
		v.add(cp+".region", "required for vertexai: the location (us-central1, global, ...)")
	}
	switch {
	case cr.Key == "" && cr.CredentialsFile != "":
		return // read when the file is loaded (sluice import converts without reading it)
	case cr.Key == "":
		v.add(cp+".key", "required for vertexai: the service account's JSON key (or credentials_file)")
		return
	}
	var sa struct {
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
		ProjectID   string `json:"project_id"`
	}
	if err := json.Unmarshal([]byte(cr.Key), &sa); err != nil || sa.ClientEmail == "" || sa.PrivateKey == "" {
		v.add(cp+".key", "want a service account's JSON key, with client_email and private_key")
		return
	}
	if cr.Project == "" && sa.ProjectID == "" {
		v.add(cp+".project", "required: the service account's key names no project_id")
	}
}

// secretKeyID says what key holds beside a secret_key.
func secretKeyID(api provider.API) string {
	switch api {
	case provider.APIQianfan:
		return "the api_key"
	case provider.APIHunyuan:
		return "the SecretId"
	}
	return "the access key ID"
}

func validateLimits(v *validator, path string, l Limits) {
	if l.QPS < 0 || math.IsNaN(l.QPS) || math.IsInf(l.QPS, 0) {
		v.add(path+".qps", "must be > 0")
	}
	if l.Burst < 0 {
		v.add(path+".burst", "must be > 0")
	}
	if l.Burst > 0 && l.QPS == 0 {
		v.add(path+".burst", "needs qps")
	}
	for _, f := range []struct {
		name string
		n    int64
	}{{"rpm", l.RPM}, {"rpd", l.RPD}, {"tpm", l.TPM}, {"tpd", l.TPD}, {"concurrency", l.Concurrency}} {
		if f.n < 0 {
			v.add(path+"."+f.name, "must be > 0")
		}
	}
	if l.WaitTimeout < 0 {
		v.add(path+".wait_timeout", "must not be negative")
	}
	seen := map[string]string{}
	for _, model := range slices.Sorted(maps.Keys(l.Models)) {
		ml, mp := l.Models[model], path+".models."+model
		if other, dup := seen[ModelKey(model)]; dup {
			v.add(mp, "same model as %s.models.%s (model names are compared without regard to case)", path, other)
		}
		seen[ModelKey(model)] = model
		if len(ml.Models) > 0 {
			v.add(mp+".models", "a model's limits cannot have models of their own")
		}
		if ml.WaitTimeout != 0 {
			v.add(mp+".wait_timeout", "set wait_timeout once, for every model, at %s.wait_timeout", path)
		}
		validateLimits(v, mp, ml)
	}
}

// validateModels checks redirects and groups against the served models.
func (c *Config) validateModels(v *validator, served map[string]bool) {
	groups := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.ModelGroups)) {
		members := c.ModelGroups[name]
		p := "model_groups." + name
		if other, dup := groups[ModelKey(name)]; dup {
			v.add(p, "same group as model_groups.%s (model names are compared without regard to case)", other)
		}
		groups[ModelKey(name)] = name
		if served[ModelKey(name)] || IsAnyModel(name) {
			v.add(p, "group name %q is also a model name", name)
		}
		if len(members) == 0 {
			v.add(p, "a group needs at least one model")
		}
		for i, m := range members {
			if !served[ModelKey(m)] {
				v.add(fmt.Sprintf("%s[%d]", p, i), "model %q is not served by any enabled channel", m)
			}
		}
	}
	redirects := map[string]string{}
	for _, from := range slices.Sorted(maps.Keys(c.ModelRedirect)) {
		to := c.ModelRedirect[from]
		if other, dup := redirects[ModelKey(from)]; dup {
			v.add("model_redirect."+from, "same model as model_redirect.%s (model names are compared without regard to case)", other)
		}
		redirects[ModelKey(from)] = from
		if !c.routable(to, served) {
			v.add("model_redirect."+from, "target %q is not served by any enabled channel nor a group", to)
		}
	}
}

// routable reports whether a model name can be routed once redirected.
func (c *Config) routable(name string, served map[string]bool) bool {
	return served[ModelKey(name)] || c.isGroup(name) || IsAnyModel(name)
}

// isGroup reports whether name names a model group.
func (c *Config) isGroup(name string) bool {
	for g := range c.ModelGroups {
		if ModelKey(g) == ModelKey(name) {
			return true
		}
	}
	return false
}

// isRedirected reports whether model_redirect has an entry for name.
func (c *Config) isRedirected(name string) bool {
	for from, to := range c.ModelRedirect {
		if ModelKey(from) == ModelKey(name) && to != "" {
			return true
		}
	}
	return false
}

func (c *Config) validateClients(v *validator, served map[string]bool) {
	keys := make(map[string]string)
	names := make(map[string]int)
	for i, cl := range c.Clients {
		p := fmt.Sprintf("clients[%d]", i)
		digest, path := cl.KeySHA256, p+".key_sha256"
		switch {
		case cl.Key == "" && cl.KeySHA256 == "":
			v.add(p+".key", "required (or key_sha256, its SHA-256 digest)")
		case cl.Key != "" && cl.KeySHA256 != "":
			v.add(p+".key_sha256", "give key or key_sha256, not both")
		case cl.Key != "":
			digest, path = KeyDigest(cl.Key), p+".key"
		case !isDigest(cl.KeySHA256):
			v.add(path, "want the 64 hex digits of a SHA-256 digest")
		}
		if other, dup := keys[strings.ToLower(digest)]; dup && digest != "" {
			v.add(path, "same key as %s", other)
		}
		keys[strings.ToLower(digest)] = p
		for j, pk := range cl.PreviousKeys {
			if !isDigest(pk.SHA256) {
				v.add(fmt.Sprintf("%s.previous_keys[%d].sha256", p, j), "want the 64 hex digits of a SHA-256 digest")
			}
		}
		if j, dup := names[cl.Name]; dup {
			v.add(p+".name", "duplicate client name %q (also clients[%d])", cl.Name, j)
		}
		names[cl.Name] = i
		for j, m := range cl.Models {
			if m != "*" && !c.routable(m, served) && !c.isRedirected(m) {
				v.add(fmt.Sprintf("%s.models[%d]", p, j), "model %q is not served by any enabled channel, group or redirect", m)
			}
		}
		validateLimits(v, p+".limits", cl.Limits)
	}
}

// KeyDigest is the hex SHA-256 digest of a client key, as key_sha256
// holds it.
func KeyDigest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// isDigest reports whether s is a hex SHA-256 digest.
func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// minAdminToken is the shortest admin token accepted: a guessable token
// would hand over the whole gateway.
const minAdminToken = 16

func (c *Config) validateAdmin(v *validator) {
	a := c.Admin
	names := map[string]bool{}
	if a.Token != "" {
		names["admin"] = true
		if len(a.Token) < minAdminToken {
			v.add("admin.token", "at least %d characters (use a random token: openssl rand -hex 32)", minAdminToken)
		}
	}
	for i, t := range a.Tokens {
		p := fmt.Sprintf("admin.tokens[%d]", i)
		switch {
		case t.Name == "":
			v.add(p+".name", "required")
		case names[t.Name]:
			v.add(p+".name", "duplicate token name %q", t.Name)
		}
		names[t.Name] = true
		if len(t.Token) < minAdminToken {
			v.add(p+".token", "at least %d characters (use a random token: openssl rand -hex 32)", minAdminToken)
		}
	}
	if a.Listen != "" {
		if _, _, err := net.SplitHostPort(a.Listen); err != nil {
			v.add("admin.listen", "want host:port or :port, got %q", a.Listen)
		} else if a.Listen == c.Server.Listen || a.Listen == c.Telemetry.Metrics.Listen {
			v.add("admin.listen", "must differ from server.listen and telemetry.metrics.listen")
		}
	}
	if a.AuditSize < 0 {
		v.add("admin.audit_size", "must not be negative")
	}
}
