package config

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func parseOK(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg, format, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if format != FormatNative {
		t.Fatalf("format %s, want native", format)
	}
	cfg.Provision()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return cfg
}

func TestNativeYAMLAndJSON(t *testing.T) {
	yamlCfg := parseOK(t, `
server: {listen: ":9000", max_body_bytes: 1MiB, drain_timeout: 45s}
clients: [{name: a, key: k1, models: [gpt-4o], limits: {rpm: 10, tpd: 1000}}]
routing: {strategy: round_robin, affinity: {by: header}, retry: {max_attempts: 2, max_time: 10}}
channels:
  - name: oa
    type: openai
    models: [gpt-4o]
    timeout: 1m30s
    proxy: socks5://127.0.0.1:1080
    credentials: [{key: sk-1, limits: {qps: 2.5, burst: 5, wait_timeout: 1.5}}]
`)
	jsonCfg := parseOK(t, `{
  "server": {"listen": ":9000", "max_body_bytes": 1048576, "drain_timeout": "45s"},
  "clients": [{"name": "a", "key": "k1", "models": ["gpt-4o"], "limits": {"rpm": 10, "tpd": 1000}}],
  "routing": {"strategy": "round_robin", "affinity": {"by": "header"}, "retry": {"max_attempts": 2, "max_time": 10}},
  "channels": [{"name": "oa", "type": "openai", "models": ["gpt-4o"], "timeout": "90s",
    "proxy": "socks5://127.0.0.1:1080",
    "credentials": [{"key": "sk-1", "limits": {"qps": 2.5, "burst": 5, "wait_timeout": "1500ms"}}]}]
}`)
	if !reflect.DeepEqual(yamlCfg, jsonCfg) {
		t.Fatalf("YAML and JSON differ:\n%+v\n%+v", yamlCfg, jsonCfg)
	}
	c := yamlCfg
	if c.Server.MaxBodyBytes != 1<<20 || c.Server.DrainTimeout.D() != 45*time.Second {
		t.Fatalf("server %+v", c.Server)
	}
	if c.Routing.Retry.MaxTime.D() != 10*time.Second || c.Routing.Affinity.Header != "X-Session-ID" {
		t.Fatalf("routing %+v", c.Routing)
	}
	ch := c.Channels[0]
	if ch.BaseURL != "https://api.openai.com/v1" || ch.Timeout.D() != 90*time.Second || ch.Weight != 1 {
		t.Fatalf("channel defaults %+v", ch)
	}
	cr := ch.Credentials[0]
	if cr.ID != "oa#0" || cr.Limits.QPS != 2.5 || cr.Limits.WaitTimeout.D() != 1500*time.Millisecond {
		t.Fatalf("credential %+v", cr)
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Setenv("SLUICE_TEST_KEY", "sk-from-env: #not a comment")
	t.Setenv("SLUICE_TEST_QPS", "7")
	t.Setenv("SLUICE_TEST_EMPTY", "")
	cfg := parseOK(t, `
channels:
  - type: openai
    base_url: ${SLUICE_TEST_URL:-https://example.com/v1}
    models: [m]
    headers: {X-Literal: "$${NOT_EXPANDED}", X-Empty: "${SLUICE_TEST_EMPTY:-fallback}"}
    credentials:
      - id: ${SLUICE_TEST_QPS}
        key: ${SLUICE_TEST_KEY}
        limits: {qps: "${SLUICE_TEST_QPS}"}
`)
	ch := cfg.Channels[0]
	if ch.Credentials[0].Key != "sk-from-env: #not a comment" || ch.Credentials[0].ID != "7" {
		t.Fatalf("key %q", ch.Credentials[0].Key)
	}
	if ch.Credentials[0].Limits.QPS != 7 {
		t.Fatalf("a plain ${VAR} must be able to expand to a number: qps %v", ch.Credentials[0].Limits.QPS)
	}
	if ch.BaseURL != "https://example.com/v1" || ch.Headers["X-Literal"] != "${NOT_EXPANDED}" || ch.Headers["X-Empty"] != "fallback" {
		t.Fatalf("channel %+v", ch)
	}

	_, _, err := Parse([]byte(`
channels:
  - type: openai
    models: [m]
    credentials: [{key: k}, {key: "${SLUICE_TEST_UNSET_VAR}"}]
`))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "channels[0].credentials[1].key" || !strings.Contains(fe.Msg, "SLUICE_TEST_UNSET_VAR is not set") {
		t.Fatalf("want a path error for the unset variable, got %v", err)
	}
}

func TestUnknownFieldsNamedByPath(t *testing.T) {
	_, _, err := Parse([]byte(`
routing: {strategy: first, stratgy: oops}
channels:
  - type: openai
    models: [m]
    credentials: [{key: k, limits: {qpm: 5}}]
`))
	for _, want := range []string{"routing.stratgy: unknown field (line 2)", "channels[0].credentials[0].limits.qpm: unknown field"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

func TestValidationPaths(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"no channels", `server: {listen: ":1"}`, []string{"channels: at least one channel is required (or an admin token, admin.token or SLUICE_ADMIN_TOKEN, to add them through /api/channels)"}},
		{"pprof listeners", "server: {listen: \":1\", pprof_listen: \":1\"}\nchannels: [{type: openai, models: [m]}]",
			[]string{"server.pprof_listen: must differ from server.listen, telemetry.metrics.listen and admin.listen"}},
		{"pprof address", "server: {pprof_listen: \"localhost\"}\nchannels: [{type: openai, models: [m]}]",
			[]string{`server.pprof_listen: want host:port or :port, got "localhost"`}},
		{"bad limits", `
channels:
  - {type: openai, models: [m]}
  - {type: openai, models: [m]}
  - type: openai
    models: [m]
    limits: {burst: 3}
    credentials: [{key: a, limits: {qps: -1, rpm: -2, wait_timeout: -1s}}]
`, []string{
			"channels[2].limits.burst: needs qps",
			"channels[2].credentials[0].limits.qps: must be > 0",
			"channels[2].credentials[0].limits.rpm: must be > 0",
			"channels[2].credentials[0].limits.wait_timeout: must not be negative",
		}},
		{"types and urls", `
channels:
  - {type: openai, base_url: "ftp://x", models: [m]}
  - {type: martian, models: [m]}
  - {type: vertexai, models: [m], credentials: [{key: "{}", secret_key: s}]}
  - {type: vllm, models: [m]}
  - {type: openai, models: [m], proxy: "gopher://x:1"}
  - {type: openai, base_url: "wss://x/v1", models: [m]}
`, []string{
			`channels[0].base_url: want an http:// or https:// URL, got "ftp://x"`,
			`channels[1].type: unknown provider type "martian"`,
			"channels[2].credentials[0].key: want a service account's JSON key, with client_email and private_key",
			"channels[2].credentials[0].region: required for vertexai: the location (us-central1, global, ...)",
			"channels[2].credentials[0].secret_key: only for types qianfan, hunyuan, huoshan and doubao (their native APIs)",
			"channels[3].base_url: required for type vllm",
			"channels[4].proxy: want an http://, https://, socks5:// or socks5h:// URL",
			`channels[5].base_url: want an http:// or https:// URL, got "wss://x/v1" (ws:// and wss:// are for type xinghuo only)`,
		}},
		{"spark credentials and max_tokens", `
channels:
  - {type: xinghuo, base_url: "wss://spark-api.xf-yun.com/v3.5/chat", models: [m], credentials: [{key: pw}]}
  - type: xinghuo
    models: [m]
    credentials:
      - {key: k, app_id: a}
      - {key: k, api_secret: s3cret-value}
      - {app_id: a, api_secret: s3cret-value}
      - {key: pw, base_url: "ws://127.0.0.1:9/v1.1/chat"}
      - {key: k, base_url: "ftp://x"}
  - type: openai
    models: [m]
    max_tokens: -1
    credentials: [{key: k, app_id: a, api_secret: s3cret-value}]
`, []string{
			`channels[0].credentials[0]: a ws:// or wss:// base_url is Spark's WebSocket API, which needs app_id and api_secret; without them the key is the API password of Spark's HTTP API (https://)`,
			"channels[1].credentials[0].api_secret: required with app_id (Spark's WebSocket API signs with app_id, key (its API key) and api_secret)",
			"channels[1].credentials[1].app_id: required with api_secret (",
			"channels[1].credentials[2].key: required with app_id and api_secret (",
			"channels[1].credentials[3].base_url: a ws:// or wss:// base_url is Spark's WebSocket API",
			`channels[1].credentials[4].base_url: want an http://, https://, ws:// or wss:// URL, got "ftp://x"`,
			"channels[2].max_tokens: must be >= 0",
			"channels[2].credentials[0].app_id: only for type xinghuo",
			"channels[2].credentials[0].api_secret: only for type xinghuo",
		}},
		{"names and ids", `
channels:
  - {name: x, type: openai, models: [m], credentials: [{id: dup}]}
  - {name: x, type: openai, models: [m, ""], credentials: [{id: dup}], model_map: {other: y}}
`, []string{
			`channels[1].name: duplicate channel name "x" (also channels[0])`,
			`channels[1].credentials[0].id: duplicate credential id "dup" (also channels[0].credentials[0])`,
			"channels[1].models[1]: empty model name",
			`channels[1].model_map.other: model "other" is not in channels[1].models`,
		}},
		{"models, groups, clients", `
model_redirect: {old: nowhere}
model_groups: {g: [m, missing], m: [m]}
clients:
  - {key: a, models: [m, typo]}
  - {key: a}
  - {name: client-0, key: b, limits: {tpm: -5}}
channels: [{type: openai, models: [m]}]
`, []string{
			`model_redirect.old: target "nowhere" is not served by any enabled channel nor a group`,
			`model_groups.g[1]: model "missing" is not served by any enabled channel`,
			`model_groups.m: group name "m" is also a model name`,
			`clients[0].models[1]: model "typo" is not served`,
			"clients[1].key: same key as clients[0]",
			`clients[2].name: duplicate client name "client-0"`,
			"clients[2].limits.tpm: must be > 0",
		}},
		{"reserved names", `
routing: {affinity: {by: client}}
server: {read_header_timeout: -1s}
channels:
  - type: openai
    models: [m, Auto]
    params: {defaults: {temperature: 1}, overrides: {model: x, stream: true}}
`, []string{
			`channels[0].models[1]: "Auto" is reserved`,
			"channels[0].params.overrides.model: Sluice sets model itself",
			"channels[0].params.overrides.stream: Sluice sets stream itself",
			"routing.affinity.by: client affinity needs client keys",
			"server.read_header_timeout: must not be negative",
		}},
		{"routing", `
server: {listen: "nope", trusted_proxies: [10.0.0.0/8, "not-an-ip"]}
log: {level: loud}
routing: {strategy: fastest, affinity: {by: cookie}, retry: {max_attempts: -1}}
breaker: {failure_ratio: 2}
channels: [{type: openai, models: [m]}]
`, []string{
			`server.listen: want host:port or :port, got "nope"`,
			`server.trusted_proxies[1]: want an IP address or CIDR, got "not-an-ip"`,
			"log.level: must be one of debug, info, warn, error",
			`routing.strategy: unknown strategy "fastest"`,
			`routing.affinity.by: unknown affinity "cookie"`,
			"routing.retry.max_attempts: must be >= 1",
			"breaker.failure_ratio: must be between 0 and 1",
		}},
		{"money", `
pricing:
  gpt-4o: {input: 2.5, output: -10}
  GPT-4o: {input: 1}
billing: {max_output_tokens: -1}
usage: {records: {to: [stdout, file, kafka], queue: -1}, retention: 1h}
groups:
  - {name: eng, budget: {usd: 100, period: fortnight, timezone: Mars/Olympus}}
  - {name: eng, limits: {rpm: -1}}
clients:
  - key: a
    group: nope
    budget: {usd: -5}
    budgets: [{tokens: 10, period: daily}, {period: month}]
  - key: b
    limits: {rpm: 10, models: {m: {rpm: -1, wait_timeout: 1s, models: {x: {rpm: 1}}}}}
channels:
  - type: openai
    models: [m]
    pricing: {m: {per_request: .nan}}
    budget: {usd: 10, period: 100ms}
`, []string{
			"pricing.gpt-4o.output: must be a price in dollars between 0 and 1000000",
			"pricing.gpt-4o: same model as pricing.GPT-4o",
			"billing.max_output_tokens: must be between 1 and 16777216",
			`usage.records.to[2]: unknown sink "kafka"`,
			"usage.records.file: required by the file sink",
			"usage.records.queue: must be between 1 and 10000000",
			"usage.retention: at least 24h",
			`groups[0].budget.period: want day, week, month or a duration of at least 1s, got "fortnight"`,
			`groups[1].name: duplicate group name "eng" (also groups[0])`,
			"groups[1].limits.rpm: must be > 0",
			`clients[0].group: no group "nope" in groups`,
			"clients[0].budget.usd: must be between 0 and 1000000000",
			`groups[0].budget.timezone: unknown time zone "Mars/Olympus"`,
			"clients[0].budgets[0]: same period as clients[0].budget: give one budget per period",
			"clients[0].budgets[1]: a budget needs usd, tokens or requests",
			"clients[1].limits.models.m.rpm: must be > 0",
			"clients[1].limits.models.m.wait_timeout: set wait_timeout once, for every model, at clients[1].limits.wait_timeout",
			"clients[1].limits.models.m.models: a model's limits cannot have models of their own",
			"channels[0].pricing.m.per_request: must be a price",
			`channels[0].budget.period: want day, week, month or a duration of at least 1s, got "100ms"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Provision()
			err = cfg.Validate()
			if err == nil {
				t.Fatal("want errors")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("missing %q in:\n%v", want, err)
				}
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Errorf("an error shows a secret:\n%v", err)
			}
		})
	}
}

// TestNativeClaudeGeminiXinghuo covers the channel fields of the native
// claude, gemini and xinghuo types.
func TestNativeClaudeGeminiXinghuo(t *testing.T) {
	cfg := parseOK(t, `
channels:
  - {type: claude, api_version: "2023-06-01", max_tokens: 8192, models: [claude-3-5-sonnet], credentials: [{key: sk-ant}]}
  - {type: gemini, base_url: "https://generativelanguage.googleapis.com/v1", models: [gemini-2.0-flash], credentials: [{key: AIza}]}
  - {type: xinghuo, models: [lite], credentials: [{key: api-password}]}
  - type: xinghuo
    base_url: wss://spark-api.xf-yun.com/v3.5/chat
    models: [generalv3.5]
    credentials: [{app_id: app, key: api-key, api_secret: secret}]
  - type: xinghuo
    models: [spark-lite, 4.0Ultra]
    credentials:
      - {app_id: app, key: api-key, api_secret: secret}
      - {key: api-password}
      - {app_id: app2, key: api-key2, api_secret: secret2, base_url: "ws://127.0.0.1:9"}
`)
	want := []struct{ base string }{
		{"https://api.anthropic.com"}, {"https://generativelanguage.googleapis.com/v1"},
		{"https://spark-api-open.xf-yun.com/v1"}, {"wss://spark-api.xf-yun.com/v3.5/chat"}, {"https://spark-api-open.xf-yun.com/v1"},
	}
	for i, ch := range cfg.Channels {
		if ch.BaseURL != want[i].base {
			t.Errorf("channels[%d].base_url %q, want %q", i, ch.BaseURL, want[i].base)
		}
	}
	if c := cfg.Channels[0]; c.MaxTokens != 8192 || c.APIVersion != "2023-06-01" {
		t.Errorf("claude channel %+v", c)
	}
	if cr := cfg.Channels[3].Credentials[0]; cr.AppID != "app" || cr.Key != "api-key" || cr.APISecret != "secret" {
		t.Errorf("spark credential %+v", cr)
	}
}

func TestYAMLAnchorsAndMergeKeys(t *testing.T) {
	cfg := parseOK(t, `
x-limits: &limits {qps: 5, burst: 10}
x-channel: &channel
  type: openai
  models: [m]
channels:
  - <<: *channel
    name: a
    limits: *limits
  - <<: *channel
    name: b
`)
	if cfg.Channels[0].Limits.QPS != 5 || cfg.Channels[1].Type != "openai" {
		t.Fatalf("anchors: %+v", cfg.Channels)
	}
}

func TestParseSizesAndDurations(t *testing.T) {
	for in, want := range map[string]ByteSize{"512": 512, "1KB": 1000, "1KiB": 1024, "16MiB": 16 << 20, "2 gb": 2e9, "1.5k": 1500} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := ParseByteSize("12XB"); err == nil {
		t.Error("unknown unit accepted")
	}
	for in, want := range map[string]time.Duration{"30s": 30 * time.Second, "1m30s": 90 * time.Second, "2": 2 * time.Second, "0.25": 250 * time.Millisecond, "90d": 90 * 24 * time.Hour, "0.5d": 12 * time.Hour} {
		if got, err := ParseDuration(in); err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseDuration("soon"); err == nil || func() bool { _, err := ParseDuration("-1d"); return err == nil }() {
		t.Error("bad duration accepted")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	cfg, _, err := Parse([]byte(`
model_redirect: {all: m}
routing: {strategy: first, retry: {cooldown: 2s}}
channels:
  - name: c
    type: azure
    base_url: https://r.openai.azure.com
    api_version: 2024-06-01
    models: [m]
    model_map: {m: my-deployment}
    enabled: false
    params: {defaults: {temperature: 0.3}, overrides: {seed: 7}}
    credentials: [{key: k, limits: {tpm: 100, wait_timeout: 3s}}]
  - {type: mock, models: [m], mock: {latency: 5ms}}
`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, format, err := Parse(out)
	if err != nil || format != FormatNative {
		t.Fatalf("re-parse: %v %s\n%s", err, format, out)
	}
	if !reflect.DeepEqual(cfg, again) {
		t.Fatalf("round trip changed the config:\n%s", out)
	}
}

func TestFallbackValidation(t *testing.T) {
	cfg, _, err := Parse([]byte(`
routing:
  strategy: latency
  latency: {alpha: 2, explore: 1}
  fallbacks:
    - {model: a, to: [b, nope, a], on: [rate_limit, sunspots]}
    - {model: A, to: [b]}
    - {model: b, to: [c]}
    - {model: c, to: [a]}
    - {model: missing, to: []}
channels: [{type: openai, models: [a, b, c]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Provision()
	err = cfg.Validate()
	for _, want := range []string{
		"routing.latency.alpha: must be above 0 and at most 1",
		"routing.latency.explore: must be at least 0 and below 1",
		`routing.fallbacks[0].to[1]: model "nope" is not served by any enabled channel`,
		"routing.fallbacks[0].to[2]: a model cannot fall back to itself",
		`routing.fallbacks[0].on[1]: unknown reason "sunspots"`,
		`routing.fallbacks[1].model: model "A" already has a chain (routing.fallbacks[0])`,
		"routing.fallbacks[2]: the chains loop: b → c → a → b",
		`routing.fallbacks[4].model: model "missing" is not served`,
		"routing.fallbacks[4].to: at least one model to fall back to",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	ok, _, _ := Parse([]byte(`
routing: {fallbacks: [{model: a, to: [b]}]}
channels: [{type: openai, models: [a, b]}]
`))
	ok.Provision()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if to, on := ok.Routing.Chain("A"); len(to) != 1 || !slices.Equal(on, DefaultFallbackOn) {
		t.Fatalf("chain of A: %v on %v", to, on)
	}
}
