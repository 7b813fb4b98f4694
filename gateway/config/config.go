// Package config is Sluice's configuration: the native YAML/JSON model,
// loading with ${ENV} expansion, defaults, validation with exact paths,
// and conversion from the config files of peer gateways (simple-one-api,
// AILoad, channels YAML).
//
// Every field's zero value means its documented default; Provision fills
// the defaults in and Validate rejects nonsense, naming the exact path of
// each bad value. docs/config.md documents every field.
package config

import "time"

// Config is a whole Sluice configuration.
type Config struct {
	Server  Server   `yaml:"server,omitempty" json:"server,omitempty"`
	Log     Log      `yaml:"log,omitempty" json:"log,omitempty"`
	Clients []Client `yaml:"clients,omitempty" json:"clients,omitempty"`
	Routing Routing  `yaml:"routing,omitempty" json:"routing,omitempty"`
	Breaker Breaker  `yaml:"breaker,omitempty" json:"breaker,omitempty"`
	// Redis, when set, shares quotas, sticky mappings and breakers with
	// every other instance using the same Redis and key prefix. Without
	// it (and without REDIS_URL) each instance keeps its own state.
	Redis *Redis `yaml:"redis,omitempty" json:"redis,omitempty"`
	// Telemetry configures traces and metrics. The standard OTEL_*
	// environment variables work too; see docs/config.md.
	Telemetry Telemetry `yaml:"telemetry,omitempty" json:"telemetry,omitempty"`
	// Admin turns on the control plane (the /api/ routes) when it has a
	// token; SLUICE_ADMIN_TOKEN gives one too. See docs/admin.md.
	Admin Admin `yaml:"admin,omitempty" json:"admin,omitempty"`
	// ModelRedirect renames requested models before routing: "gpt-4":
	// "gpt-4o". The key "all" redirects every model that has no entry of
	// its own.
	ModelRedirect map[string]string `yaml:"model_redirect,omitempty" json:"model_redirect,omitempty"`
	// ModelGroups names sets of models: requesting a group's name routes
	// to any of its models. The names "auto" and "random" always mean
	// "any enabled model".
	ModelGroups map[string][]string `yaml:"model_groups,omitempty" json:"model_groups,omitempty"`
	// Pricing is what each model costs (USD per million tokens, or per
	// call), by model name; a channel's own pricing overrides it.
	Pricing map[string]Price `yaml:"pricing,omitempty" json:"pricing,omitempty"`
	// Groups are groups of client keys with shared limits and budgets.
	Groups []Group `yaml:"groups,omitempty" json:"groups,omitempty"`
	// Billing sets how budgets are reserved.
	Billing Billing `yaml:"billing,omitempty" json:"billing,omitzero"`
	// Usage sets the export of usage records and the rollups' retention.
	Usage    Usage     `yaml:"usage,omitempty" json:"usage,omitzero"`
	Channels []Channel `yaml:"channels" json:"channels"`
	// Notes say what converting a peer's config left out or
	// approximated (never silently): logged once when it is loaded,
	// printed by sluice check and sluice import. Not part of the file.
	Notes []string `yaml:"-" json:"-"`
}

// Server configures the HTTP listener.
type Server struct {
	// Listen is the address to serve on. Default ":8080".
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// MaxBodyBytes caps request bodies ("16MiB", "512KB" or bytes).
	// Default 16 MiB.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes,omitempty" json:"max_body_bytes,omitempty"`
	// DrainTimeout bounds how long shutdown waits for in-flight requests
	// and streams. Default 30s.
	DrainTimeout Duration `yaml:"drain_timeout,omitempty" json:"drain_timeout,omitempty"`
	// ShutdownDelay is how long /readyz reports "draining" before the
	// listener closes, so load balancers stop sending first. Default 0.
	ShutdownDelay Duration `yaml:"shutdown_delay,omitempty" json:"shutdown_delay,omitempty"`
	// ReadHeaderTimeout bounds reading request headers. Default 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout,omitempty" json:"read_header_timeout,omitempty"`
	// ReadBodyTimeout bounds reading a request's body, from the end of its
	// headers. Default 30s.
	ReadBodyTimeout Duration `yaml:"read_body_timeout,omitempty" json:"read_body_timeout,omitempty"`
	// MaxParsingBytes caps the request bytes being read and parsed at once,
	// across all requests, so that memory is bounded by configuration and
	// not by what clients send. A request beyond it waits up to
	// ParsingWait for room, then gets 503. Default 32 MiB; at least
	// max_body_bytes.
	MaxParsingBytes ByteSize `yaml:"max_parsing_bytes,omitempty" json:"max_parsing_bytes,omitempty"`
	// ParsingWait is how long a request may wait for MaxParsingBytes to
	// have room. Default 2s.
	ParsingWait Duration `yaml:"parsing_wait,omitempty" json:"parsing_wait,omitempty"`
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout Duration `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`
	// TrustedProxies lists the addresses or CIDRs of proxies whose
	// X-Forwarded-For is believed when finding the client IP. Default
	// none: the peer address is the client.
	TrustedProxies []string `yaml:"trusted_proxies,omitempty" json:"trusted_proxies,omitempty"`
	// PprofListen, when set, serves Go's profiles (/debug/pprof/: CPU,
	// heap, allocations, goroutines, and block and mutex contention,
	// sampled) on a listener of its own, without authentication: keep it
	// on loopback. Default off.
	PprofListen string `yaml:"pprof_listen,omitempty" json:"pprof_listen,omitempty"`
}

// Log configures structured logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level,omitempty" json:"level,omitempty"`
	// Format is json or text. Default json.
	Format string `yaml:"format,omitempty" json:"format,omitempty"`
}

// Client is one client key allowed to call Sluice. With no clients
// configured, Sluice serves without authentication.
type Client struct {
	// Name identifies the client in logs, metrics and quota state.
	// Default "client-<index>".
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Key is the secret the client sends as "Authorization: Bearer <key>"
	// or "x-api-key: <key>". Required, unless KeySHA256 is given.
	Key string `yaml:"key,omitempty" json:"key,omitempty"`
	// KeySHA256 is the hex SHA-256 digest of the key, for files (and the
	// admin API) that must not hold the key itself. Give key or this.
	KeySHA256 string `yaml:"key_sha256,omitempty" json:"key_sha256,omitempty"`
	// PreviousKeys are earlier keys of a rotated client, by digest, still
	// accepted until their time.
	PreviousKeys []PreviousKey `yaml:"previous_keys,omitempty" json:"previous_keys,omitempty"`
	// ExpiresAt, when set, is when the key stops working.
	ExpiresAt *time.Time `yaml:"expires_at,omitempty" json:"expires_at,omitempty"`
	// Enabled: false refuses the key. Default true.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// Models the client may use: model names, group names, "auto",
	// "random". Empty or "*" means every model.
	Models []string `yaml:"models,omitempty" json:"models,omitempty"`
	// Limits is the client's own quota (qps, rpm, rpd, tpm, tpd,
	// concurrency), across all credentials. Default unlimited.
	Limits Limits `yaml:"limits,omitempty" json:"limits,omitempty"`
	// Group names the group (groups[].name) whose limits and budgets the
	// key shares with the group's other keys.
	Group string `yaml:"group,omitempty" json:"group,omitempty"`
	// Budget caps what the key spends per period; Budgets adds more (a
	// daily and a monthly one).
	Budget  Budget   `yaml:"budget,omitempty" json:"budget,omitzero"`
	Budgets []Budget `yaml:"budgets,omitempty" json:"budgets,omitempty"`
}

// IsEnabled reports whether the client's key is accepted (expiry aside).
func (c Client) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// PreviousKey is a rotated client key still accepted until Until.
type PreviousKey struct {
	SHA256 string    `yaml:"sha256" json:"sha256"`
	Until  time.Time `yaml:"until" json:"until"`
}

// Admin configures the control plane.
type Admin struct {
	// Token is the admin token: every /api/ request must send it as
	// "Authorization: Bearer <token>". Use ${VAR}; SLUICE_ADMIN_TOKEN
	// fills it in. Without a token (here, in tokens or in the
	// environment), /api/ does not exist.
	Token string `yaml:"token,omitempty" json:"token,omitempty"`
	// Tokens are named admin tokens; the name is who the audit log says
	// made a change. Token above is named "admin".
	Tokens []AdminToken `yaml:"tokens,omitempty" json:"tokens,omitempty"`
	// Listen, when set, serves /api/ (and the dashboard) on a listener of
	// its own instead of the API listener.
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// WatchConfig reloads the config file whenever it changes.
	WatchConfig bool `yaml:"watch_config,omitempty" json:"watch_config,omitempty"`
	// StateFile keeps the changes made through the API when there is no
	// Redis, so that a restart keeps them. Default: the config file's path
	// with ".state.json" added.
	StateFile string `yaml:"state_file,omitempty" json:"state_file,omitempty"`
	// AuditSize is how many admin changes GET /api/audit keeps. Default 1000.
	AuditSize int `yaml:"audit_size,omitempty" json:"audit_size,omitempty"`
}

// AdminToken is one named admin token.
type AdminToken struct {
	Name  string `yaml:"name" json:"name"`
	Token string `yaml:"token" json:"token"`
}

// IsEnabled reports whether the control plane is on: it has a token.
func (a Admin) IsEnabled() bool { return a.Token != "" || len(a.Tokens) > 0 }

// Routing configures how a credential is chosen and retried.
type Routing struct {
	// Strategy orders the credentials within a priority tier: weighted
	// (default), random, round_robin, first (config order), least_busy
	// (fewest requests in flight, across the cluster with Redis) or
	// latency (fastest time to first byte, measured by the cluster).
	Strategy string `yaml:"strategy,omitempty" json:"strategy,omitempty"`
	// Latency tunes the latency strategy.
	Latency Latency `yaml:"latency,omitempty" json:"latency,omitzero"`
	// Fallbacks are the models a request falls back to, in order, when no
	// credential of the model it asked for can answer.
	Fallbacks []Fallback `yaml:"fallbacks,omitempty" json:"fallbacks,omitempty"`
	// Affinity sends requests with the same sticky key to the same
	// credential. Default off.
	Affinity Affinity `yaml:"affinity,omitempty" json:"affinity,omitempty"`
	// Retry bounds failover.
	Retry Retry `yaml:"retry,omitempty" json:"retry,omitempty"`
}

// Affinity configures sticky routing.
type Affinity struct {
	// By is what makes requests sticky: ip (the client IP behind
	// server.trusted_proxies), header (the value of Header), or client
	// (the client key). Empty: off.
	By string `yaml:"by,omitempty" json:"by,omitempty"`
	// Header names the header for by: header. Default X-Session-ID.
	Header string `yaml:"header,omitempty" json:"header,omitempty"`
	// TTL is how long an unused mapping lives; every use restarts it.
	// Default 10m.
	TTL Duration `yaml:"ttl,omitempty" json:"ttl,omitempty"`
}

// Retry bounds failover to other credentials.
type Retry struct {
	// MaxAttempts is how many upstream attempts one request may make.
	// Default 3.
	MaxAttempts int `yaml:"max_attempts,omitempty" json:"max_attempts,omitempty"`
	// MaxTime bounds the time spent on attempts before the first byte is
	// sent to the client. Default 60s.
	MaxTime Duration `yaml:"max_time,omitempty" json:"max_time,omitempty"`
	// Cooldown is how long a credential rests after an upstream 429 that
	// gave no Retry-After. Default 5s. An upstream Retry-After wins,
	// capped at MaxCooldown (default 5m).
	Cooldown    Duration `yaml:"cooldown,omitempty" json:"cooldown,omitempty"`
	MaxCooldown Duration `yaml:"max_cooldown,omitempty" json:"max_cooldown,omitempty"`
}

// Telemetry configures what Sluice reports about itself.
type Telemetry struct {
	// ServiceName names the service in traces and metrics. Default
	// "sluice"; OTEL_SERVICE_NAME wins.
	ServiceName string `yaml:"service_name,omitempty" json:"service_name,omitempty"`
	// Traces sends spans over OTLP. Without an endpoint here, the
	// OTEL_EXPORTER_OTLP_* variables decide; with neither, tracing is off.
	Traces Traces `yaml:"traces,omitempty" json:"traces,omitempty"`
	// Metrics serves Prometheus metrics.
	Metrics Metrics `yaml:"metrics,omitempty" json:"metrics,omitempty"`
	// CaptureContent records prompts and completions on spans (truncated
	// to 8 KiB). Default false: message content never leaves otherwise.
	CaptureContent bool `yaml:"capture_content,omitempty" json:"capture_content,omitempty"`
}

// Traces configures span export.
type Traces struct {
	// Endpoint of an OTLP receiver: "jaeger:4317" (gRPC) or
	// "http://jaeger:4318" (HTTP).
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	// Protocol is grpc (default) or http/protobuf.
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	// Insecure sends spans without TLS.
	Insecure bool `yaml:"insecure,omitempty" json:"insecure,omitempty"`
	// ForwardClientContext sends a client's own baggage and tracestate
	// headers on to upstreams. Default false: upstreams get Sluice's
	// traceparent (which continues the client's trace) and nothing else
	// the client put in its trace context.
	ForwardClientContext bool `yaml:"forward_client_context,omitempty" json:"forward_client_context,omitempty"`
	// SampleRatio samples that share of new traces (0 < r <= 1). Default:
	// OTEL_TRACES_SAMPLER, else every trace.
	SampleRatio float64 `yaml:"sample_ratio,omitempty" json:"sample_ratio,omitempty"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Enabled: false turns the endpoint off. Default true.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// Path of the endpoint. Default /metrics.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Listen, when set, serves metrics on a listener of their own
	// ("127.0.0.1:9090", ":9090") instead of the API listener: metrics
	// name client keys and credentials, which API clients need not see.
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
}

// IsEnabled reports whether metrics are served.
func (m Metrics) IsEnabled() bool { return m.Enabled == nil || *m.Enabled }

// Redis configures the shared state of a cluster of instances.
type Redis struct {
	// URL of a single Redis server: redis://[user:password@]host:port[/db],
	// or rediss:// for TLS. The environment variable REDIS_URL fills it in
	// when no other address is given (and adds this section when a config
	// has none, whatever its format).
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
	// Addrs lists several servers: the seeds of a Redis Cluster, or the
	// Sentinels when MasterName is set.
	Addrs []string `yaml:"addrs,omitempty" json:"addrs,omitempty"`
	// MasterName is the Sentinel master to use.
	MasterName string `yaml:"master_name,omitempty" json:"master_name,omitempty"`
	// Username and Password authenticate (ACL user, or password alone).
	Username string `yaml:"username,omitempty" json:"username,omitempty"`
	Password string `yaml:"password,omitempty" json:"password,omitempty"`
	// DB is the database number of a single server or Sentinel setup.
	DB int `yaml:"db,omitempty" json:"db,omitempty"`
	// TLS, when set, connects with TLS.
	TLS *TLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// KeyPrefix starts every key. Default "sluice:". Instances that share
	// a prefix share their state.
	KeyPrefix string `yaml:"key_prefix,omitempty" json:"key_prefix,omitempty"`
	// HashTag is the Redis Cluster hash tag of the quota keys. Default "q".
	HashTag string `yaml:"hash_tag,omitempty" json:"hash_tag,omitempty"`
	// Timeout bounds every Redis call, connecting included. Default 250ms.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// PoolSize is the connection pool size. Default 10 per CPU.
	PoolSize int `yaml:"pool_size,omitempty" json:"pool_size,omitempty"`
	// OnUnavailable is the policy while Redis cannot be reached: local
	// (default; each instance enforces limit / live instances in memory),
	// open (no limits) or closed (refuse with 503).
	OnUnavailable string `yaml:"on_unavailable,omitempty" json:"on_unavailable,omitempty"`
	// MinDwell is the shortest time the policy decides once Redis failed:
	// Sluice goes back to Redis only when a probe script has succeeded and
	// at least this long has passed, so that a Redis that answers some
	// calls and fails others cannot make it flap. Default 1s.
	MinDwell Duration `yaml:"min_dwell,omitempty" json:"min_dwell,omitempty"`
	// LeaseTTL is how long a concurrency slot outlives an instance that
	// died holding it. Default 30s.
	LeaseTTL Duration `yaml:"lease_ttl,omitempty" json:"lease_ttl,omitempty"`
	// Lease turns on lease mode: capacity is taken in batches and served
	// locally, for high request rates. Default off.
	Lease Lease `yaml:"lease,omitempty" json:"lease,omitempty"`
}

// TLS configures a TLS connection.
type TLS struct {
	// CAFile verifies the server (default: the system roots).
	CAFile string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	// CertFile and KeyFile present a client certificate.
	CertFile string `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"server_name,omitempty" json:"server_name,omitempty"`
	// InsecureSkipVerify turns verification off (testing only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty" json:"insecure_skip_verify,omitempty"`
}

// Lease configures lease mode (see docs/redis-keys.md).
type Lease struct {
	Enabled bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// Batch is the most requests one refill takes. Default 1000; batches
	// start at 16 and follow the instance's demand.
	Batch int `yaml:"batch,omitempty" json:"batch,omitempty"`
	// Hold is how long an instance may use a batch. Default 200ms, at
	// most 900ms.
	Hold Duration `yaml:"hold,omitempty" json:"hold,omitempty"`
	// MaxDeny is the longest a refusal is remembered. Default 50ms.
	MaxDeny Duration `yaml:"max_deny,omitempty" json:"max_deny,omitempty"`
}

// Breaker configures the per-credential circuit breakers.
type Breaker struct {
	// Failures is how many consecutive failures open a breaker. Default 5.
	Failures int `yaml:"failures,omitempty" json:"failures,omitempty"`
	// FailureRatio, when set, also opens a breaker when at least
	// MinRequests calls in one Interval saw this share of failures.
	FailureRatio float64 `yaml:"failure_ratio,omitempty" json:"failure_ratio,omitempty"`
	// MinRequests for FailureRatio. Default 20.
	MinRequests int `yaml:"min_requests,omitempty" json:"min_requests,omitempty"`
	// Interval after which a closed breaker forgets its counts. Default 60s.
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// OpenTimeout is how long a breaker stays open. Default 30s.
	OpenTimeout Duration `yaml:"open_timeout,omitempty" json:"open_timeout,omitempty"`
	// HalfOpenProbes is how many probe calls a half-open breaker lets
	// through. Default 1. With Redis, probes go one at a time across the
	// cluster, and an instance whose probes succeed this many times closes
	// the breaker everywhere.
	HalfOpenProbes int `yaml:"half_open_probes,omitempty" json:"half_open_probes,omitempty"`
	// ProbeTimeout is how long the cluster's single probe lease lasts if
	// the instance holding it dies mid-probe. Default 60s.
	ProbeTimeout Duration `yaml:"probe_timeout,omitempty" json:"probe_timeout,omitempty"`
	// ActiveProbes: a half-open breaker is probed in the background with
	// a minimal request (one instance of the cluster at a time), instead
	// of waiting for live traffic. Default true.
	ActiveProbes *bool `yaml:"active_probes,omitempty" json:"active_probes,omitempty"`
	// ProbeInterval is how often half-open breakers are looked for.
	// Default 5s.
	ProbeInterval Duration `yaml:"probe_interval,omitempty" json:"probe_interval,omitempty"`
}

// ActiveProbing reports whether half-open breakers are probed in the
// background.
func (b Breaker) ActiveProbing() bool { return b.ActiveProbes == nil || *b.ActiveProbes }

// Channel is a group of credentials of one upstream type serving the
// same models.
type Channel struct {
	// Name identifies the channel. Default "<type>-<index>".
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Type is the upstream type: openai (any OpenAI-compatible API),
	// azure, mock, or a named OpenAI-compatible service (deepseek,
	// moonshot, groq, ollama, ...; see docs/config.md).
	Type string `yaml:"type" json:"type"`
	// BaseURL of the upstream API; a base ("https://api.deepseek.com/v1")
	// or a full ".../chat/completions" URL. Default: the type's own.
	BaseURL string `yaml:"base_url,omitempty" json:"base_url,omitempty"`
	// TokenURL is where the access tokens of a provider's native API come
	// from: qianfan's OAuth endpoint (default on the base URL's host,
	// /oauth/2.0/token), huoshan's control plane (default
	// https://open.volcengineapi.com), vertexai's token endpoint (default:
	// the service account's token_uri).
	TokenURL string `yaml:"token_url,omitempty" json:"token_url,omitempty"`
	// APIVersion is Azure's api-version (default 2024-10-21), Anthropic's
	// anthropic-version header (default 2023-06-01), or the Gemini API
	// version in its URL (default v1beta).
	APIVersion string `yaml:"api_version,omitempty" json:"api_version,omitempty"`
	// MaxTokens is the completion cap sent to upstreams that require one
	// (claude) when a request sets none. Default 4096.
	MaxTokens int64 `yaml:"max_tokens,omitempty" json:"max_tokens,omitempty"`
	// Models the channel serves, by the names clients use. Required.
	Models []string `yaml:"models" json:"models"`
	// ModelMap renames models for this upstream (client name: upstream
	// name); for azure, the upstream name is the deployment.
	ModelMap map[string]string `yaml:"model_map,omitempty" json:"model_map,omitempty"`
	// Weight for the weighted strategy. Default 1.
	Weight int `yaml:"weight,omitempty" json:"weight,omitempty"`
	// Priority tier: higher tiers are tried first; lower tiers only when
	// every credential above is unavailable or failed. Default 0.
	Priority int `yaml:"priority,omitempty" json:"priority,omitempty"`
	// Tags are free-form labels for operators; Sluice does not act on them.
	Tags []string `yaml:"tags,omitempty" json:"tags,omitempty"`
	// Timeout bounds an attempt until the upstream's response headers
	// (and, for non-streaming calls, its whole body). Default 60s.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// StreamIdleTimeout ends a stream that sent nothing for this long.
	// Default 60s.
	StreamIdleTimeout Duration `yaml:"stream_idle_timeout,omitempty" json:"stream_idle_timeout,omitempty"`
	// Proxy for upstream connections: http://, https://, socks5:// or
	// socks5h:// URL. Default: none (the environment's HTTPS_PROXY is
	// not used).
	Proxy string `yaml:"proxy,omitempty" json:"proxy,omitempty"`
	// Params sets request parameters: Defaults fill in what the client
	// left out, Overrides replace what the client sent.
	Params Params `yaml:"params,omitempty" json:"params,omitempty"`
	// Headers are extra headers sent upstream.
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Enabled: false takes the channel out of routing. Default true.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// Limits are each credential's defaults: a credential's own limits
	// override them field by field.
	Limits Limits `yaml:"limits,omitempty" json:"limits,omitempty"`
	// SharedLimits cap the channel as a whole: all its credentials
	// together (a provider account's quota shared by several keys).
	SharedLimits Limits `yaml:"shared_limits,omitempty" json:"shared_limits,omitempty"`
	// Budget caps what the channel as a whole spends per period; Budgets
	// adds more.
	Budget  Budget   `yaml:"budget,omitempty" json:"budget,omitzero"`
	Budgets []Budget `yaml:"budgets,omitempty" json:"budgets,omitempty"`
	// Pricing overrides the config's prices for the calls this channel
	// serves (a discount, a self-hosted model's cost).
	Pricing map[string]Price `yaml:"pricing,omitempty" json:"pricing,omitempty"`
	// Mock tunes the built-in mock upstream (type mock only).
	Mock *Mock `yaml:"mock,omitempty" json:"mock,omitempty"`
	// Credentials are the upstream keys. At least one; a channel that
	// needs no key (ollama, mock) may list one with an empty key, and a
	// channel with no credentials gets one with an empty key.
	Credentials []Credential `yaml:"credentials,omitempty" json:"credentials,omitempty"`
}

// IsEnabled reports whether the channel takes traffic.
func (c Channel) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// Credential is one upstream key.
type Credential struct {
	// ID is the credential's stable, non-secret name in logs, metrics
	// and quota state. Default "<channel>#<index>". Set it to keep quota
	// state when credentials are reordered.
	ID string `yaml:"id,omitempty" json:"id,omitempty"`
	// Key is the upstream secret. Use ${ENV} to keep it out of the file.
	Key string `yaml:"key,omitempty" json:"key,omitempty"`
	// BaseURL overrides the channel's base URL for this credential.
	BaseURL string `yaml:"base_url,omitempty" json:"base_url,omitempty"`
	// AppID and APISecret, with Key as the API key, sign iFlytek Spark's
	// native WebSocket API (type xinghuo). Without them, a xinghuo
	// credential's Key is the API password of Spark's HTTP API.
	AppID     string `yaml:"app_id,omitempty" json:"app_id,omitempty"`
	APISecret string `yaml:"api_secret,omitempty" json:"api_secret,omitempty"`
	// SecretKey, with Key as its ID, authorizes a cloud provider's native
	// API: qianfan's secret_key (key: the api_key), hunyuan's SecretKey
	// (key: the SecretId), huoshan's or doubao's secret access key (key:
	// the access key ID). Without it, those types call their
	// OpenAI-compatible API with key as an API key.
	SecretKey string `yaml:"secret_key,omitempty" json:"secret_key,omitempty"`
	// Region is the cloud region: hunyuan's and huoshan's (optional),
	// vertexai's location (required).
	Region string `yaml:"region,omitempty" json:"region,omitempty"`
	// Project is a vertexai credential's Google Cloud project (default:
	// the service account's project_id), or the Volcengine project of a
	// huoshan or doubao credential with a secret_key (needed for Ark's
	// preset endpoints: plain model names and ep-m- ids).
	Project string `yaml:"project,omitempty" json:"project,omitempty"`
	// CredentialsFile is, for vertexai, the path of the service account's
	// JSON key file, read when the config loads; key may hold the JSON
	// itself instead.
	CredentialsFile string `yaml:"credentials_file,omitempty" json:"credentials_file,omitempty"`
	// Weight multiplies the channel's weight. Default 1.
	Weight int `yaml:"weight,omitempty" json:"weight,omitempty"`
	// Enabled: false takes the credential out of routing. Default true.
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// Limits override the channel's limits field by field.
	Limits Limits `yaml:"limits,omitempty" json:"limits,omitempty"`
}

// IsEnabled reports whether the credential takes traffic.
func (c Credential) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// Limits caps the use of a credential or a client key. Zero fields are
// unlimited.
type Limits struct {
	// QPS is the sustained request rate; Burst how many may come at once
	// (default ceil(QPS)).
	QPS   float64 `yaml:"qps,omitempty" json:"qps,omitempty"`
	Burst int64   `yaml:"burst,omitempty" json:"burst,omitempty"`
	// RPM and RPD cap requests per sliding minute and day.
	RPM int64 `yaml:"rpm,omitempty" json:"rpm,omitempty"`
	RPD int64 `yaml:"rpd,omitempty" json:"rpd,omitempty"`
	// TPM and TPD cap tokens (prompt + completion) per sliding minute
	// and day.
	TPM int64 `yaml:"tpm,omitempty" json:"tpm,omitempty"`
	TPD int64 `yaml:"tpd,omitempty" json:"tpd,omitempty"`
	// Concurrency caps requests in flight.
	Concurrency int64 `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// WaitTimeout is how long a request may wait for this credential to
	// have room when every candidate is at its limit, before a 429.
	// Default 0: refuse at once.
	WaitTimeout Duration `yaml:"wait_timeout,omitempty" json:"wait_timeout,omitempty"`
	// Models are limits of one model's calls (by the name clients use),
	// on top of the limits above, which count every call.
	Models map[string]Limits `yaml:"models,omitempty" json:"models,omitempty"`
}

// Params are request parameters set by the channel.
type Params struct {
	Defaults  map[string]any `yaml:"defaults,omitempty" json:"defaults,omitempty"`
	Overrides map[string]any `yaml:"overrides,omitempty" json:"overrides,omitempty"`
}

// Mock tunes the in-process mock upstream.
type Mock struct {
	// Latency before the answer starts, plus up to Jitter more.
	Latency Duration `yaml:"latency,omitempty" json:"latency,omitempty"`
	Jitter  Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	// FailureRate and RateLimitRate are the shares of calls answered 500
	// and 429.
	FailureRate   float64 `yaml:"failure_rate,omitempty" json:"failure_rate,omitempty"`
	RateLimitRate float64 `yaml:"rate_limit_rate,omitempty" json:"rate_limit_rate,omitempty"`
	// StreamChunks and ChunkInterval shape streamed answers. Defaults 8
	// and 0.
	StreamChunks  int      `yaml:"stream_chunks,omitempty" json:"stream_chunks,omitempty"`
	ChunkInterval Duration `yaml:"chunk_interval,omitempty" json:"chunk_interval,omitempty"`
	// ReplyTokens is the length of each answer in tokens. Default 16.
	ReplyTokens int `yaml:"reply_tokens,omitempty" json:"reply_tokens,omitempty"`
}
