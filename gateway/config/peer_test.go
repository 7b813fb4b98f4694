package config

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider"
)

// peerFixtures are the valid peer configs in testdata/peers with the
// native config each must convert to.
var peerFixtures = []struct {
	file   string
	format Format
	want   *Config
}{
	{
		file:   "simple-one-api.json",
		format: FormatSimpleOneAPI,
		want: &Config{
			Server:        Server{Listen: ":9099"},
			Log:           Log{Level: "info"},
			Clients:       []Client{{Key: "sk-from-env"}},
			Routing:       Routing{Strategy: "random"}, // load_balancing: hash is not sticky
			Breaker:       Breaker{Failures: 3, OpenTimeout: Duration(time.Minute), HalfOpenProbes: 1},
			ModelRedirect: map[string]string{"gpt-4": "deepseek-chat"},
			Channels: []Channel{
				{
					Name: "deepseek-main", Type: "deepseek",
					Models:  []string{"deepseek-chat", "deepseek-reasoner"},
					Timeout: Duration(45 * time.Second),
					// The service's limit caps both keys together; key-a's own caps key-a.
					SharedLimits: Limits{RPM: 60, Concurrency: 5, WaitTimeout: Duration(20 * time.Second)},
					Credentials: []Credential{
						{ID: "deepseek-main#key-a", Key: "sk-deepseek-a", Limits: Limits{QPS: 2, RPM: 90, WaitTimeout: soaDefaultWait}},
						{ID: "deepseek-main#key-b", Key: "sk-deepseek-b", Enabled: Bool(false)},
					},
				},
				{
					Name: "openai-1", Type: "openai",
					BaseURL:     "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions",
					Models:      []string{"qwen-plus"},
					Credentials: []Credential{{Key: "sk-dashscope"}},
				},
				{
					Name: "openai-2", Type: "openai",
					Models:      []string{"gpt-4o-mini", "gpt-4o"},
					ModelMap:    map[string]string{"gpt-4o": "gpt-4o-mini"},
					Proxy:       "http://127.0.0.1:7890",
					Credentials: []Credential{{Key: "sk-openai"}},
				},
				{
					Name: "openai-3", Type: "zhipu", // inferred from the glm- model
					Models:      []string{"glm-4-flash"},
					ModelMap:    map[string]string{"glm-4-flash": "glm-4-flash-250414"},
					Credentials: []Credential{{Key: "sk-glm"}},
				},
				{
					Name: "zhipu-1", Type: "zhipu",
					Models:       []string{"glm-4-plus"},
					SharedLimits: Limits{RPM: 30, WaitTimeout: soaDefaultWait},
					Credentials:  []Credential{{Key: "sk-zhipu"}},
				},
				{
					Name: "zhipu-1-embeddings", Type: "zhipu",
					Models:       []string{"embedding-3"},
					SharedLimits: Limits{QPS: 10, WaitTimeout: soaDefaultWait},
					Credentials:  []Credential{{Key: "sk-zhipu"}},
				},
				{Name: "ollama-1", Type: "ollama", BaseURL: "http://127.0.0.1:11434/v1", Models: []string{"llama3"}},
				{Name: "minimax-1", Type: "minimax", Models: []string{"abab6.5s-chat"}, Credentials: []Credential{{Key: "sk-minimax"}}},
				{
					Name: "groq-1", Type: "groq", Enabled: Bool(false),
					Models:      []string{"llama3-70b-8192", "llama3-8b-8192", "gemma-7b-it", "mixtral-8x7b-32768"},
					Credentials: []Credential{{Key: "gsk-groq"}},
				},
				{
					// Disabled, but Sluice serves it, so it is kept.
					Name: "xinghuo-1", Type: "xinghuo", Enabled: Bool(false), Models: []string{"spark-lite"},
					Credentials: []Credential{{Key: "xxx", AppID: "xxx", APISecret: "xxx"}},
				},
			},
		},
	},
	{
		file:   "simple-one-api-keys.json",
		format: FormatSimpleOneAPI,
		want: &Config{
			Server:        Server{Listen: soaDefaultPort},
			Clients:       []Client{{Key: "sk-team-a", Models: []string{"deepseek-chat", "qwen-max"}}, {Key: "sk-team-b"}},
			Routing:       Routing{Strategy: "first"},
			ModelRedirect: map[string]string{"all": "random"},
			Channels: []Channel{
				{Name: "deepseek-1", Type: "deepseek", Models: []string{"deepseek-chat"}, Proxy: "socks5://127.0.0.1:1080", Credentials: []Credential{{Key: "sk-ds"}}},
				{Name: "dashscope-1", Type: "dashscope", Models: []string{"qwen-max"}, Credentials: []Credential{{Key: "sk-ali"}}},
				{
					Name: "azure-1", Type: "azure", BaseURL: "https://my-resource.openai.azure.com",
					Models: []string{"gpt-4o"}, Proxy: "socks5://127.0.0.1:1080", Credentials: []Credential{{Key: "azure-key"}},
				},
				{Name: "hunyuan-1", Type: "hunyuan", Models: []string{"hunyuan-turbo"}, Proxy: "socks5://127.0.0.1:1080", Credentials: []Credential{{Key: "sk-hunyuan"}}},
			},
		},
	},
	{
		file:   "simple-one-api-native.json", // claude, gemini and xinghuo served natively
		format: FormatSimpleOneAPI,
		want: &Config{
			Server:  Server{Listen: soaDefaultPort},
			Clients: []Client{{Key: "sk-client"}},
			Routing: Routing{Strategy: "round_robin"},
			Channels: []Channel{
				{
					// The default Messages URL is the claude type's default.
					Name: "anthropic", Type: "claude",
					Models:      []string{"claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022"},
					Credentials: []Credential{{Key: "sk-ant-1"}},
				},
				{
					Name: "claude-2", Type: "claude", BaseURL: "https://relay.example.com/anthropic/v1/messages",
					Models:   []string{"claude-relay"},
					ModelMap: map[string]string{"claude-relay": "claude-3-5-sonnet-20241022"},
					Credentials: []Credential{
						{ID: "claude-2#a", Key: "sk-relay-a"},
						{ID: "claude-2#b", Key: "sk-relay-b", Limits: Limits{RPM: 10, WaitTimeout: soaDefaultWait}},
					},
				},
				{
					Name: "gemini-1", Type: "gemini", Models: soaDefaultModels["gemini"],
					Credentials: []Credential{{Key: "AIza-gemini-1"}},
				},
				{
					// .../v1/models: the base keeps the API version.
					Name: "gemini-2", Type: "gemini", BaseURL: "https://generativelanguage.googleapis.com/v1",
					Models:      []string{"gemini-1.5-flash"},
					Credentials: []Credential{{Key: "AIza-gemini-2"}},
				},
				{
					Name: "spark-ws", Type: "xinghuo", Models: []string{"spark-lite", "spark3.5-max"},
					Credentials: []Credential{{Key: "key-1", AppID: "app-1", APISecret: "secret-1"}},
				},
				{
					// The credentials' domain replaces every model's.
					Name: "spark-ultra", Type: "xinghuo", Models: []string{"ultra"},
					ModelMap: map[string]string{"ultra": "4.0Ultra"},
					Credentials: []Credential{
						{Key: "key-2", AppID: "app-2", APISecret: "secret-2"},
						{Key: "key-3", AppID: "app-3", APISecret: "secret-3", Enabled: Bool(false)},
					},
				},
				{
					Name: "spark-max", Type: "xinghuo", BaseURL: "wss://spark-api.xf-yun.com/v3.5/chat",
					Models:      []string{"spark3.5-max"},
					Credentials: []Credential{{Key: "key-4", AppID: "app-4", APISecret: "secret-4"}},
				},
				{
					// An API password: Spark's HTTP API, whose model names
					// are the domains of simple-one-api's names.
					Name: "spark-http", Type: "xinghuo", Models: soaDefaultModels["xinghuo"],
					ModelMap: map[string]string{
						"spark-lite": "lite", "spark-v2.0": "generalv2", "spark-pro": "generalv3", "spark-max": "generalv3.5",
					},
					Credentials: []Credential{{Key: "pw-1"}},
				},
			},
		},
	},
	{
		file:   "aiload.json",
		format: FormatAILoad,
		want: &Config{
			Server:        Server{Listen: ":2081"},
			Clients:       []Client{{Key: "sk-4f8a0c2e9d7b61a3c5e0f9d2b8a7c61"}},
			Routing:       Routing{Strategy: "random"}, // ip_hash: false
			ModelRedirect: map[string]string{"all": "auto"},
			Channels: []Channel{
				{
					Type: "openai", BaseURL: "https://api.openai.com/v1/chat/completions", Models: []string{"gpt-4o"},
					Timeout: Duration(2 * time.Minute), Credentials: []Credential{{Key: "sk-openai-1"}, {Key: "sk-openai-2"}},
				},
				{
					Type: "openai", BaseURL: "https://api.deepseek.com/v1/chat/completions", Models: []string{"deepseek-chat"},
					Timeout: Duration(2 * time.Minute), Credentials: []Credential{{Key: "sk-deepseek"}},
				},
				{
					Type: "openai", BaseURL: "https://api.groq.com/openai/v1", Models: []string{"llama-3.3-70b-versatile"},
					Timeout: Duration(2 * time.Minute), Credentials: []Credential{{Key: "gsk-groq"}},
				},
			},
		},
	},
	{
		file:   "aiload-default.json", // AILoad's shipped config.json
		format: FormatAILoad,
		want: &Config{
			Server:        Server{Listen: ":2081"},
			Routing:       Routing{Strategy: "random", Affinity: Affinity{By: "ip", TTL: Duration(5 * time.Minute)}},
			ModelRedirect: map[string]string{"all": "auto"},
			Channels: []Channel{{
				Type: "openai", BaseURL: "https://api.openai.com/v1/chat/completions", Models: []string{"gpt-4o"},
				Timeout: Duration(2 * time.Minute), Credentials: []Credential{{Key: "sk-xxx"}},
			}},
		},
	},
	{
		file:   "channels.yaml",
		format: FormatChannels,
		want: &Config{
			Routing: Routing{Retry: Retry{MaxAttempts: 3}}, // 1 + the largest maxRetries
			Notes:   []string{"ignored, the bot's own settings: basic, trigger"},
			Channels: []Channel{
				{
					Name: "openai-primary", Type: "openai", Models: []string{"gpt-4o", "gpt-4o-mini"},
					Weight: 3, Priority: 2, Tags: []string{"prod"}, Timeout: Duration(30 * time.Second),
					Proxy:       "http://127.0.0.1:7890",
					Params:      Params{Defaults: map[string]any{"temperature": 0.7, "max_tokens": 1024}},
					Credentials: []Credential{{Key: "sk-from-env"}},
				},
				{
					Name: "relay", Type: "openai", BaseURL: "https://relay.example.com/v1", Models: []string{"gpt-4o"},
					Priority: 2, Proxy: "socks5://127.0.0.1:1080",
					Credentials: []Credential{{Key: "sk-relay-1"}, {Key: "sk-relay-2", Weight: 2}, {Key: "sk-relay-3", Enabled: Bool(false)}},
				},
				{
					Name: "deepseek-backup", Type: "deepseek", Models: []string{"deepseek-chat"},
					Priority: 1, Timeout: Duration(time.Minute),
					Params:      Params{Defaults: map[string]any{"max_tokens": 2048, "top_p": 0.9}},
					Headers:     map[string]string{"X-Source": "chatai"},
					Credentials: []Credential{{Key: "sk-deepseek"}},
				},
				{
					Name: "local", Type: "ollama", BaseURL: "http://127.0.0.1:11434/v1", Models: []string{"qwen2.5:7b"},
					Proxy: "http://10.0.0.2:3128", Enabled: Bool(false),
				},
			},
		},
	},
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "peers", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// diffConfigs fails with both configs in native YAML when they differ.
func diffConfigs(t *testing.T, got, want *Config) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	g, _ := Marshal(got)
	w, _ := Marshal(want)
	t.Errorf("config differs\n--- got\n%s\n--- want\n%s", g, w)
}

func TestPeerFixtures(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	t.Setenv("SOA_API_KEY", "sk-from-env")
	for _, tt := range peerFixtures {
		t.Run(tt.file, func(t *testing.T) {
			cfg, format, err := Parse(readFixture(t, tt.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if format != tt.format {
				t.Errorf("format %q, want %q", format, tt.format)
			}
			diffConfigs(t, cfg, tt.want)
			cfg.Provision()
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// TestPeerRoundTrip checks that a converted config written as native
// YAML reads back as the same config.
func TestPeerRoundTrip(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	for _, tt := range peerFixtures {
		t.Run(tt.file, func(t *testing.T) {
			cfg, _, err := Parse(readFixture(t, tt.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			out, err := Marshal(cfg)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			back, format, err := Parse(out)
			if err != nil {
				t.Fatalf("Parse of the native output: %v\n%s", err, out)
			}
			if format != FormatNative {
				t.Errorf("format %q, want %q", format, FormatNative)
			}
			cfg.Notes = nil // they describe the conversion, not the config
			diffConfigs(t, back, cfg)
		})
	}
}

// errorLines splits a joined error into its sorted messages.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	lines := strings.Split(err.Error(), "\n")
	slices.Sort(lines)
	return lines
}

func TestPeerErrors(t *testing.T) {
	const signs = "(Spark's WebSocket API signs with appid, api_key and api_secret)"
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{
			name: "simple-one-api unsupported fixture",
			doc:  string(readFixture(t, "simple-one-api-unsupported.json")),
			want: []string{
				`services.xinghuo[0].credentials: api_secret is required with appid ` + signs,
			},
		},
		{
			name: "simple-one-api bad values",
			doc: `{"load_balancing": "weighted", "server_port": "99999", "log_level": "loud", "colour": "red",
			  "services": {
			    "openai": [{"enabled": true, "models": ["llama3"], "credentials": {"api_key": "k"}},
			               {"enabled": true, "models": ["gpt-4o"], "upstream_protocol": "responses", "server_url": "https://x.example/v1"},
			               {"enabled": true, "models": ["gpt-4o"], "server_url": "wss://x.example/v1", "timeout": -1}],
			    "azure": [{"enabled": true, "models": ["gpt-4o"], "credentials": {"api_key": "k"}}],
			    "deepseek": [{"enabled": true, "model_limits": {"deepseek-chat": {"tpm": 1000}}, "limit": {"qps": "fast"}, "modle": 1}],
			    "huoshan": [{"enabled": true, "models": ["doubao-pro-32k"], "credential_list": [{"access_key": "ak", "secret_key": "sk"}]}],
			    "claude": [{"enabled": true, "models": ["claude-3-5-sonnet"], "server_url": "https://relay.example/v1/chat", "credentials": {"api_key": "k"}}],
			    "gemini": [{"enabled": true, "server_url": "https://relay.example/gemini", "credentials": {"api_key": "k"}},
			               {"enabled": true, "server_url": "https://relay.example/models", "credentials": {"api_key": "k"}},
			               {"enabled": true, "server_url": "wss://relay.example/v1beta/models", "credentials": {"api_key": "k"}}],
			    "xinghuo": [{"enabled": true, "credentials": {"api_secret": "s3cret-value"}},
			                {"enabled": true, "credentials": {"appid": "a", "api_secret": "s3cret-value"}},
			                {"enabled": true, "server_url": "wss://spark-api.xf-yun.com/v3.5/chat", "credentials": {"api_key": "s3cret-value"}},
			                {"enabled": true, "credential_list": [{"appid": "a", "api_key": "k", "api_secret": "s", "domain": "generalv3.5"},
			                                                      {"appid": "b", "api_key": "k", "api_secret": "s"}]},
			                {"enabled": true, "server_url": "ftp://spark", "credentials": {"api_key": "k"}},
			                {"enabled": true, "upstream_protocol": "chat_completions", "server_url": "wss://spark-api.xf-yun.com/v3.5/chat"}],
			    "qianfan": [{"enabled": true, "credentials": {"secret_key": "s"}}],
			    "vertexai": [{"enabled": true, "models": ["gemini-2.0-flash"], "credentials": {"project_id": "p", "json_file": "sa.json"}}],
			    "nosuch": [{"enabled": true}]
			  }}`,
			want: []string{
				`colour: unknown field (line 1)`,
				`load_balancing: unsupported value "weighted" (want first, random, round_robin or hash)`,
				`log_level: unsupported log level "loud" (want debug, info, warn or error)`,
				`server_port: want a port (1-65535) or host:port, got ":99999"`,
				`services.azure[0].server_url: required for azure: the resource endpoint`,
				`services.claude[0].server_url: want Anthropic's Messages endpoint, ending in /messages (simple-one-api posts to server_url as it is), got "https://relay.example/v1/chat"`,
				`services.deepseek[0].limit.qps: want a number, got "fast" (line 7)`,
				`services.deepseek[0].modle: unknown field (line 7)`,
				`services.gemini[0].server_url: want the models URL of a Gemini API version, such as https://generativelanguage.googleapis.com/v1beta/models (simple-one-api appends /<model>:generateContent), got "https://relay.example/gemini"`,
				`services.gemini[1].server_url: want the models URL of a Gemini API version, such as https://generativelanguage.googleapis.com/v1beta/models (simple-one-api appends /<model>:generateContent), got "https://relay.example/models"`,
				`services.gemini[2].server_url: want an http:// or https:// URL, got "wss://relay.example/v1beta/models"`,
				`services.nosuch: unknown service type "nosuch"`,
				`services.openai[0].server_url: required: simple-one-api infers it only for gpt-, glm-, deepseek- and yi- models, not "llama3"`,
				`services.openai[1].upstream_protocol: "responses" upstreams are not supported: Sluice calls OpenAI-compatible upstreams with the Chat Completions API; use chat_completions`,
				`services.openai[2].server_url: want an http:// or https:// URL, got "wss://x.example/v1"`,
				`services.openai[2].timeout: want a number >= 0, got -1`,
				`services.qianfan[0].credentials: api_key and secret_key (Baidu's OAuth client credentials), or an api_key of Qianfan's v2 OpenAI-compatible API`,
				`services.vertexai[0].credentials: location is required`,
				`services.xinghuo[0].credentials: appid is required with api_secret ` + signs,
				`services.xinghuo[1].credentials: api_key is required with appid and api_secret ` + signs,
				`services.xinghuo[2].credentials: appid, api_key and api_secret are required: server_url is Spark's WebSocket API ` + signs,
				`services.xinghuo[3].credential_list[1].domain: "", but services.xinghuo[3].credential_list[0] has domain "generalv3.5": a channel sends one domain per model; give credentials with another domain an entry of their own`,
				`services.xinghuo[4].server_url: want a ws://, wss://, http:// or https:// URL, got "ftp://spark"`,
				`services.xinghuo[5].server_url: want an http:// or https:// URL, got "wss://spark-api.xf-yun.com/v3.5/chat"`,
			},
		},
		{
			name: "simple-one-api keys",
			doc: `{"api_key": "master", "api_keys": [{"api_key": "other", "supported_models": {"x": ["*"]}}, {"supported_models": []}],
			  "services": {"deepseek": [{"enabled": true, "credentials": {"api_key": "k"}}]}}`,
			want: []string{
				`api_keys: api_key is not listed here, so simple-one-api accepts no request at all; list it with its supported_models`,
				`api_keys[1].api_key: required`,
			},
		},
		{
			name: "simple-one-api empty supported_models",
			doc:  `{"api_keys": [{"api_key": "a", "supported_models": {}}], "services": {"deepseek": [{"enabled": true}]}}`,
			want: []string{`api_keys[0].supported_models: empty: simple-one-api lets this key use no model; list the models or "*"`},
		},
		{
			name: "simple-one-api supported_models nothing serves",
			doc: `{"api_keys": [{"api_key": "a", "supported_models": {"x": ["gpt-9", "groq-model"]}}],
			  "services": {"deepseek": [{"enabled": true}], "groq": [{"models": ["groq-model"], "credentials": {"api_key": "k"}}]}}`,
			want: []string{`api_keys[0].supported_models: no enabled service serves any of these models, so simple-one-api lets this key use none`},
		},
		{
			name: "simple-one-api with only a disabled unsupported service",
			doc:  `{"services": {"jiutian": [{"models": ["jiutian-lan"], "credentials": {"api_key": "a"}}]}}`,
			want: []string{`services: no service that Sluice can serve`},
		},
		{
			name: "simple-one-api proxy",
			doc:  `{"proxy": {"strategy": "all", "type": "http"}, "services": {"deepseek": [{"enabled": true}]}}`,
			want: []string{`proxy.http_proxy: want a proxy URL (http://, https:// or socks5://), got ""`},
		},
		{
			name: "aiload",
			doc: `{"auth_token": "t", "settings": {"timeout": "soon", "ip_hash": "maybe"}, "server": {"port": 0},
			  "models": [{"api_key": "k", "base_url": "api.openai.com", "model": "gpt-4o", "weight": 2}, {"base_url": "https://x.example/v1"}]}`,
			want: []string{
				`models[0].base_url: want an http:// or https:// URL, got "api.openai.com"`,
				`models[0].weight: unknown field (line 2)`,
				`models[1].model: required`,
				`server.port: want a port (1-65535) or host:port, got ":0"`,
				`settings.ip_hash: want true or false (line 1)`,
				`settings.timeout: want a number, got "soon" (line 1)`,
			},
		},
		{
			name: "aiload without models",
			doc:  `{"auth_token": "t", "models": []}`,
			want: []string{`models: at least one entry is required`},
		},
		{
			name: "channels",
			doc: `
loadBalancing: {strategy: fastest}
channels:
  - name: a
    baseUrl: https://api.openai.com/v1
    apiKey: k
    model: gpt-4o
  - name: b
    type: wenxin
    apiKey: k
    model: ernie-4.0
    foo: bar
  - name: c
    baseUrl: ftp://example.com
    models: ["*"]
    timeout: -5
  - name: d
    type: nosuch
    apiKey: k
`,
			want: []string{
				`channels[1].foo: unknown field (line 12)`,
				`channels[1].type: unknown provider type "wenxin" (want one of ` + strings.Join(provider.Types(), ", ") + `)`,
				`channels[2].baseUrl: want an http:// or https:// URL, got "ftp://example.com"`,
				`channels[2].models[0]: "*" (any model) cannot be expressed in Sluice; list the models`,
				`channels[2].timeout: want a number >= 0, got -5`,
				`channels[3].model: required (model or models)`,
				`channels[3].type: unknown provider type "nosuch" (want one of ` + strings.Join(provider.Types(), ", ") + `)`,
				`loadBalancing.strategy: unsupported value "fastest" (want priority, round-robin, random or least-connection)`,
			},
		},
		{
			name: "channels with native sections",
			doc: `
clients: [{key: k1, nmae: x}]
channels:
  - baseUrl: https://api.openai.com/v1
    apiKey: k
    model: gpt-4o
`,
			want: []string{
				`clients[0].nmae: unknown field (line 2)`,
			},
		},
		{
			name: "ChatAI-Plugin channels with what a gateway cannot honour",
			doc: `
redis: {enabled: true, host: h, port: 6379, db: 0, cluster: true}
proxy:
  enabled: true
  profiles: [{id: p1, type: socks4, host: h, port: 1080, enabled: true}]
  scopes: {channel: {enabled: true, profileId: p1}}
channels:
  - name: a
    apiKey: k
    models: [gpt-4o]
    strategy: fastest
    chatPath: /v2/chat
    endpoints: {chat: /x}
    auth: {type: header, headerName: X-Key}
    overrides: {systemPromptPrefix: "Be brief."}
    advanced: {thinking: {enableReasoning: true, defaultLevel: extreme}}
    baseUrls: [https://a.example/v1]
    selectedBaseUrlIndex: 3
`,
			want: []string{
				`channels[0].advanced.thinking.defaultLevel: unsupported value "extreme" (want minimal, low, medium or high)`,
				`channels[0].auth.headerName: cannot be expressed in Sluice: leave it empty (the key goes where the provider expects it)`,
				`channels[0].auth.type: only bearer is supported (the key goes where the provider expects it)`,
				`channels[0].chatPath: cannot be expressed in Sluice: leave it empty (requests keep the provider's own shape and paths)`,
				`channels[0].endpoints.chat: cannot be expressed in Sluice: leave it empty (requests keep the provider's own paths)`,
				`channels[0].overrides.systemPromptPrefix: cannot be expressed in Sluice (it rewrites the conversation); put it in the bot's preset`,
				`channels[0].selectedBaseUrlIndex: 3 is past the 1 baseUrls`,
				`channels[0].strategy: unsupported value "fastest" (want round-robin, random, weighted, least-used or failover)`,
				`proxy.profiles[0].type: socks4 proxies are not supported (want http, https or socks5)`,
				`redis.cluster: unknown field (line 2)`,
			},
		},
		{
			name: "channels with server.port and server.listen",
			doc: `
server: {port: 8081, listen: ":8082"}
channels: [{apiKey: k, model: gpt-4o}]
`,
			want: []string{`server.port: set either server.listen or server.port and server.host`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tt.doc))
			if got := errorLines(err); !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err != nil && strings.Contains(err.Error(), "s3cret-value") {
				t.Errorf("an error shows a secret:\n%v", err)
			}
		})
	}
}

// TestPeerDetails covers single mappings the fixtures do not show.
func TestPeerDetails(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, cfg *Config)
	}{
		{
			name: "simple-one-api api_key with api_keys keeps only the master key",
			doc: `{"api_key": "m", "api_keys": [{"api_key": "m", "supported_models": {"a": ["deepseek-chat"]}},
			  {"api_key": "other", "supported_models": {"a": ["*"]}}], "services": {"deepseek": [{"enabled": true}]}}`,
			check: func(t *testing.T, cfg *Config) {
				want := []Client{{Key: "m", Models: []string{"deepseek-chat"}}}
				if !reflect.DeepEqual(cfg.Clients, want) {
					t.Errorf("clients %+v, want %+v", cfg.Clients, want)
				}
				if cfg.Channels[0].Models[0] != "deepseek-chat" {
					t.Errorf("default models not used: %v", cfg.Channels[0].Models)
				}
			},
		},
		{
			name: "simple-one-api supported_models drops what nothing serves",
			doc: `{"api_keys": [{"api_key": "a", "supported_models": ["deepseek-chat", "gpt-9", "random"]}],
			  "services": {"deepseek": [{"enabled": true}]}}`,
			check: func(t *testing.T, cfg *Config) {
				want := []Client{{Key: "a", Models: []string{"deepseek-chat", "random"}}}
				if !reflect.DeepEqual(cfg.Clients, want) {
					t.Errorf("clients %+v, want %+v", cfg.Clients, want)
				}
			},
		},
		{
			name: "simple-one-api breaker off and zap log level",
			doc:  `{"log_level": "warning", "circuit_breaker": {"enabled": false}, "services": {"deepseek": [{"enabled": true}]}}`,
			check: func(t *testing.T, cfg *Config) {
				if cfg.Breaker.Failures != math.MaxInt32 || cfg.Log.Level != "warn" {
					t.Errorf("breaker %+v, log %+v", cfg.Breaker, cfg.Log)
				}
			},
		},
		{
			name: "simple-one-api limits: qpm and rpm take the tighter, defaults for wait",
			doc:  `{"services": {"deepseek": [{"enabled": true, "limit": {"qpm": 30, "rpm": 20, "qps": 0.5, "tpm": 1000}}]}}`,
			check: func(t *testing.T, cfg *Config) {
				want := Limits{QPS: 0.5, RPM: 20, TPM: 1000, WaitTimeout: soaDefaultWait}
				if !cfg.Channels[0].SharedLimits.Equal(want) {
					t.Errorf("limits %+v, want %+v", cfg.Channels[0].SharedLimits, want)
				}
			},
		},
		{
			name: "simple-one-api model_limits: per-model limits of the service and of each key",
			doc: `{"services": {"deepseek": [{"enabled": true, "models": ["deepseek-chat", "deepseek-reasoner"],
			  "limit": {"rpm": 100},
			  "model_limits": {"deepseek-reasoner": {"rpm": 10, "concurrency": 2}},
			  "credential_list": [{"api_key": "k1", "model_limits": {"deepseek-chat": {"qps": 1, "timeout": 3}}}, {"api_key": "k2"}]}]}}`,
			check: func(t *testing.T, cfg *Config) {
				ch := cfg.Channels[0]
				want := Limits{RPM: 100, WaitTimeout: soaDefaultWait, Models: map[string]Limits{"deepseek-reasoner": {RPM: 10, Concurrency: 2}}}
				if !ch.SharedLimits.Equal(want) {
					t.Errorf("service limits %+v, want %+v", ch.SharedLimits, want)
				}
				key := Limits{WaitTimeout: Duration(3 * time.Second), Models: map[string]Limits{"deepseek-chat": {QPS: 1}}}
				if !ch.Credentials[0].Limits.Equal(key) || !ch.Credentials[1].Limits.IsZero() {
					t.Errorf("key limits %+v and %+v, want %+v and none", ch.Credentials[0].Limits, ch.Credentials[1].Limits, key)
				}
				cfg.Channels[0].BaseURL = "https://api.deepseek.com/v1"
				cfg.Provision()
				if err := cfg.Validate(); err != nil {
					t.Errorf("the imported config: %v", err)
				}
			},
		},
		{
			name: "simple-one-api chat_completions protocol on an unsupported type",
			doc: `{"services": {"xinghuo": [{"enabled": true, "models": ["4.0Ultra"], "upstream_protocol": "chat_completions",
			  "server_url": "https://spark-api-open.xf-yun.com/v1", "credentials": {"api_key": "pw"}}]}}`,
			check: func(t *testing.T, cfg *Config) {
				ch := cfg.Channels[0]
				if ch.Type != "openai" || ch.BaseURL != "https://spark-api-open.xf-yun.com/v1" || ch.Credentials[0].Key != "pw" {
					t.Errorf("channel %+v", ch)
				}
			},
		},
		{
			name: "simple-one-api ollama default and disabled unsupported entries",
			doc:  `{"services": {"ollama": [{"enabled": true, "models": ["llama3"]}], "jiutian": [{"models": ["app"]}]}}`,
			check: func(t *testing.T, cfg *Config) {
				if len(cfg.Channels) != 1 || cfg.Channels[0].BaseURL != "" {
					t.Errorf("channels %+v", cfg.Channels)
				}
			},
		},
		{
			name: "simple-one-api native key pairs",
			doc: `{"services": {
			  "qianfan": [{"enabled": true, "models": ["ERNIE-Speed-8K", "ChatGLM3-6B"], "credentials": {"api_key": "ak", "secret_key": "sk", "addresss": "my_chatglm3"}}],
			  "hunyuan": [{"enabled": true, "credentials": {"secret_id": "AKID", "secret_key": "tsk"}}],
			  "huoshan": [{"enabled": true, "models": ["doubao32k"], "model_map": {"doubao32k": "ep-1"}, "credential_list": [{"access_key": "AKLT", "secret_key": "vsk"}, {"api_key": "ark-key"}]}],
			  "vertexai": [{"enabled": true, "models": ["gemini-1.5-pro"], "credentials": {"project_id": "p", "location": "us-central1", "json_file": "sa.json"}}]}}`,
			check: func(t *testing.T, cfg *Config) {
				qf, hy, hs, vx := cfg.Channels[0], cfg.Channels[1], cfg.Channels[2], cfg.Channels[3]
				if qf.Type != "qianfan" || qf.Credentials[0].Key != "ak" || qf.Credentials[0].SecretKey != "sk" || qf.ModelMap["ChatGLM3-6B"] != "my_chatglm3" || qf.ModelMap["ERNIE-Speed-8K"] != "" {
					t.Errorf("qianfan %+v", qf)
				}
				if hy.Type != "hunyuan" || hy.Credentials[0].Key != "AKID" || hy.Credentials[0].SecretKey != "tsk" || len(hy.Models) != 4 {
					t.Errorf("hunyuan %+v", hy)
				}
				if hs.Type != "huoshan" || hs.Credentials[0].Key != "AKLT" || hs.Credentials[0].SecretKey != "vsk" || hs.Credentials[1].Key != "ark-key" || hs.Credentials[1].SecretKey != "" || hs.ModelMap["doubao32k"] != "ep-1" {
					t.Errorf("huoshan %+v", hs)
				}
				if c := vx.Credentials[0]; vx.Type != "vertexai" || c.Project != "p" || c.Region != "us-central1" || c.CredentialsFile != "sa.json" || c.Key != "" {
					t.Errorf("vertexai %+v", vx)
				}
			},
		},
		{
			name: "simple-one-api gemini and xinghuo default URLs are dropped",
			doc: `{"services": {
			  "gemini": [{"enabled": true, "server_url": "https://generativelanguage.googleapis.com/v1beta/models/", "credentials": {"api_key": "k"}}],
			  "xinghuo": [{"enabled": true, "server_url": "wss://spark-api.xf-yun.com/", "credentials": {"appid": "a", "api_key": "k", "api_secret": "s"}},
			              {"enabled": true, "server_url": "https://spark-api-open.xf-yun.com/v1", "credentials": {"api_key": "pw"}}]}}`,
			check: func(t *testing.T, cfg *Config) {
				for _, ch := range cfg.Channels {
					if ch.BaseURL != "" {
						t.Errorf("channel %s: base_url %q, want the default", ch.Name, ch.BaseURL)
					}
				}
				if cr := cfg.Channels[2].Credentials[0]; cr.Key != "pw" || cr.AppID != "" {
					t.Errorf("HTTP API credential %+v", cr)
				}
			},
		},
		{
			name: "simple-one-api xinghuo with WebSocket and HTTP API credentials",
			doc: `{"services": {"xinghuo": [{"enabled": true, "models": ["spark-lite", "4.0Ultra", "x1"], "model_redirect": {"spark": "spark-pro"},
			  "credential_list": [{"appid": "a", "api_key": "k", "api_secret": "s"}, {"api_key": "pw", "limit": {"qps": 2}}, {"api_password": "pw2", "api_key": "ignored"}]}]}}`,
			check: func(t *testing.T, cfg *Config) {
				ch := cfg.Channels[0]
				wantMap := map[string]string{"spark-lite": "lite", "spark": "generalv3"}
				wantCreds := []Credential{
					{Key: "k", AppID: "a", APISecret: "s"},
					{Key: "pw", Limits: Limits{QPS: 2, WaitTimeout: soaDefaultWait}},
					{Key: "pw2"},
				}
				if ch.Type != "xinghuo" || ch.BaseURL != "" || !reflect.DeepEqual(ch.ModelMap, wantMap) || !reflect.DeepEqual(ch.Credentials, wantCreds) {
					t.Errorf("channel %+v", ch)
				}
			},
		},
		{
			name: "simple-one-api claude and gemini with chat_completions stay OpenAI-compatible",
			doc: `{"services": {
			  "claude": [{"enabled": true, "models": ["claude-3-5-haiku"], "upstream_protocol": "chat_completions", "server_url": "https://api.anthropic.com/v1/", "credentials": {"api_key": "k"}}],
			  "gemini": [{"enabled": true, "models": ["gemini-2.0-flash"], "upstream_protocol": "chat_completions", "server_url": "https://generativelanguage.googleapis.com/v1beta/openai/", "credentials": {"api_key": "k"}}]}}`,
			check: func(t *testing.T, cfg *Config) {
				for _, ch := range cfg.Channels {
					if ch.Type != "openai" || ch.BaseURL == "" {
						t.Errorf("channel %+v", ch)
					}
				}
			},
		},
		{
			name: "channels: claude and gemini adapters are native",
			doc: `
channels:
  - name: anthropic
    adapterType: claude
    baseUrl: https://api.anthropic.com
    apiKey: sk-ant
    models: [claude-3-5-sonnet]
  - name: relay
    type: claude
    baseUrl: https://relay.example.com/v1/
    apiKeys: [k1, k2]
    models: [claude-3-5-haiku]
  - name: google
    adapterType: gemini
    baseUrl: https://generativelanguage.googleapis.com/v1beta
    apiKey: AIza
    models: [gemini-2.0-flash]
`,
			check: func(t *testing.T, cfg *Config) {
				want := []Channel{
					{Name: "anthropic", Type: "claude", Models: []string{"claude-3-5-sonnet"}, Credentials: []Credential{{Key: "sk-ant"}}},
					{Name: "relay", Type: "claude", BaseURL: "https://relay.example.com/v1", Models: []string{"claude-3-5-haiku"}, Credentials: []Credential{{Key: "k1"}, {Key: "k2"}}},
					{Name: "google", Type: "gemini", BaseURL: "https://generativelanguage.googleapis.com/v1beta", Models: []string{"gemini-2.0-flash"}, Credentials: []Credential{{Key: "AIza"}}},
				}
				if !reflect.DeepEqual(cfg.Channels, want) {
					t.Errorf("channels %+v\nwant %+v", cfg.Channels, want)
				}
			},
		},
		{
			name: "aiload ip_hash true",
			doc:  `{"auth_token": "", "models": [{"api_key": "k", "base_url": "https://x.example/v1", "model": "m"}], "settings": {"ip_hash": true}}`,
			check: func(t *testing.T, cfg *Config) {
				if cfg.Routing.Affinity != (Affinity{By: "ip", TTL: ailoadAffinityTTL}) || cfg.Clients != nil {
					t.Errorf("routing %+v clients %+v", cfg.Routing, cfg.Clients)
				}
			},
		},
		{
			name: "channels: server port, plain proxy, defaults",
			doc: `
server: {host: 127.0.0.1, port: 8081}
clients: [{key: k1}]
routing: {retry: {max_attempts: 5}}
loadBalancing: {strategy: least-connection}
channels:
  - apiKey: k
    model: gpt-4o
    maxRetries: 1
    proxy: 10.0.0.1:8080
    timeout: {connect: 5000, read: 90000}
`,
			check: func(t *testing.T, cfg *Config) {
				ch := cfg.Channels[0]
				if cfg.Server.Listen != "127.0.0.1:8081" || len(cfg.Clients) != 1 || cfg.Routing.Retry.MaxAttempts != 5 ||
					cfg.Routing.Strategy != "least_busy" || ch.Type != "openai" || ch.Proxy != "http://10.0.0.1:8080" ||
					ch.Timeout != Duration(90*time.Second) || ch.Priority != 0 {
					t.Errorf("config %+v", cfg)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, cfg)
			cfg.Provision()
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// TestPeerImportKeepsSparkSecrets checks that `sluice import` (ParseKeepEnv,
// then Marshal) keeps ${ENV} references of Spark credentials as written,
// and that its output reads back as the same config.
func TestPeerImportKeepsSparkSecrets(t *testing.T) {
	doc := `{"services": {"xinghuo": [{"id": "spark", "enabled": true, "models": ["spark-lite"],
	  "credentials": {"appid": "${XH_APPID}", "api_key": "${XH_API_KEY}", "api_secret": "${XH_API_SECRET}", "domain": "lite"}}]}}`
	cfg, format, err := ParseKeepEnv([]byte(doc))
	if err != nil || format != FormatSimpleOneAPI {
		t.Fatalf("ParseKeepEnv: %v (%s)", err, format)
	}
	out, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"app_id: ${XH_APPID}", "key: ${XH_API_KEY}", "api_secret: ${XH_API_SECRET}", "spark-lite: lite"} {
		if !strings.Contains(string(out), ref) {
			t.Errorf("output lacks %q:\n%s", ref, out)
		}
	}
	back, _, err := ParseKeepEnv(out)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, out)
	}
	diffConfigs(t, back, cfg)

	t.Setenv("XH_APPID", "app")
	t.Setenv("XH_API_KEY", "key")
	t.Setenv("XH_API_SECRET", "secret")
	expanded, _, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	expanded.Provision()
	if err := expanded.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if cr := expanded.Channels[0].Credentials[0]; cr.AppID != "app" || cr.Key != "key" || cr.APISecret != "secret" {
		t.Errorf("credential %+v", cr)
	}
}

// TestChatAIPluginConfig loads ChatAI-Plugin's config.yaml as the plugin
// writes it today (config.js getDefaultConfig, with three channels added
// through its panel and placeholder keys): its channels, keys, per-channel
// strategy, advanced parameters and redis section are understood, and
// the bot's own sections are listed as ignored.
func TestChatAIPluginConfig(t *testing.T) {
	cfg, format, err := Parse(readFixture(t, "chatai-plugin.yaml"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if format != FormatChannels {
		t.Errorf("format %q", format)
	}
	if cfg.Routing.Strategy != "round_robin" || cfg.Routing.Retry.MaxAttempts != 3 {
		t.Errorf("routing %+v: want the channels' round-robin over keys, retry.maxAttempts 3", cfg.Routing)
	}
	if cfg.Redis == nil || cfg.Redis.URL != "redis://127.0.0.1:6379/0" {
		t.Errorf("redis %+v: want the plugin's enabled Redis", cfg.Redis)
	}
	if len(cfg.Channels) != 3 {
		t.Fatalf("%d channels", len(cfg.Channels))
	}
	openai, deepseek, gemini := cfg.Channels[0], cfg.Channels[1], cfg.Channels[2]
	if len(openai.Credentials) != 2 || openai.Credentials[0].Key != "sk-test-1" || openai.Credentials[1].Enabled == nil || *openai.Credentials[1].Enabled {
		t.Errorf("openai credentials %+v: want sk-test-1 and a disabled sk-test-2", openai.Credentials)
	}
	if d := openai.Params.Defaults; d["temperature"] != 0.8 || d["max_tokens"] != 4000 || d["top_p"] != nil {
		t.Errorf("openai defaults %v: want advanced.llm's temperature and maxTokens (the plugin sends no others)", d)
	}
	if deepseek.Params.Defaults["reasoning_effort"] != "high" || deepseek.ModelMap["gpt-4o"] != "deepseek-chat" || !slices.Contains(deepseek.Models, "gpt-4o") {
		t.Errorf("deepseek %+v: want reasoning effort high and gpt-4o served as deepseek-chat", deepseek)
	}
	if openai.Priority <= deepseek.Priority {
		t.Errorf("priorities %d, %d: the plugin's priority 1 comes before 2", openai.Priority, deepseek.Priority)
	}
	if gemini.Type != "gemini" || gemini.Enabled == nil || *gemini.Enabled {
		t.Errorf("gemini %+v: want a disabled gemini channel", gemini)
	}
	if len(cfg.Notes) != 1 || !strings.Contains(cfg.Notes[0], "basic, admin, llm") || !strings.Contains(cfg.Notes[0], "memory, presets") {
		t.Errorf("notes %q: want the bot's sections listed once as ignored", cfg.Notes)
	}
	cfg.Provision()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	// Written as native YAML, it reads back the same (notes aside: they
	// describe the conversion, not the config).
	out, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	back, _, err := Parse(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	back.Provision()
	cfg.Notes = nil
	diffConfigs(t, back, cfg)
}

// TestChatAIPluginDetails covers the plugin's shapes the fixture leaves at
// their defaults: proxy profiles, per-channel strategies that differ, a
// disabled redis, mirrors of the base URL.
func TestChatAIPluginDetails(t *testing.T) {
	cfg, _, err := Parse([]byte(`
redis: {enabled: false, host: 127.0.0.1, port: 6379}
loadBalancing: {strategy: priority}
proxy:
  enabled: true
  profiles:
    - {id: p0, type: http, host: 10.0.0.1, port: 3128, enabled: true}
    - {id: p1, type: socks5, host: 10.0.0.2, port: 1080, username: u, password: pw, enabled: true}
  scopes: {browser: {enabled: true, profileId: p0}, channel: {enabled: true, profileId: p1}}
channels:
  - name: a
    apiKeys: [{key: k1}, {key: k2}]
    models: [gpt-4o]
    strategy: failover
    baseUrls: [https://one.example/v1, https://two.example/v1]
    selectedBaseUrlIndex: 1
    overrides: {stopSequences: ["###"]}
  - name: b
    apiKey: k3
    models: [gpt-4o-mini]
    strategy: random
    quota: {daily: 1000, hourly: 100, perMinute: 10}
`))
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.Channels[1]; b.SharedLimits.RPM != 10 || len(b.Budgets) != 2 ||
		b.Budgets[0] != (Budget{Requests: 1000, Period: "day", Timezone: "UTC"}) || b.Budgets[1] != (Budget{Requests: 100, Period: "1h"}) {
		t.Errorf("channel b's quota: limits %+v, budgets %+v", b.SharedLimits, b.Budgets)
	}
	if cfg.Redis != nil {
		t.Errorf("redis %+v: the plugin's redis is disabled", cfg.Redis)
	}
	a := cfg.Channels[0]
	if a.BaseURL != "https://two.example/v1" || a.Proxy != "socks5://u:pw@10.0.0.2:1080" {
		t.Errorf("channel a: base %q, proxy %q", a.BaseURL, a.Proxy)
	}
	if stop, _ := a.Params.Defaults["stop"].([]any); len(stop) != 1 || stop[0] != "###" {
		t.Errorf("stop %v", a.Params.Defaults["stop"])
	}
	if cfg.Routing.Strategy != "first" || len(cfg.Notes) != 2 || !strings.Contains(cfg.Notes[0], "channels[1].quota is enforced for the whole cluster") || !strings.Contains(cfg.Notes[1], "b (random)") {
		t.Errorf("strategy %q, notes %q: the first channel's strategy, the other noted", cfg.Routing.Strategy, cfg.Notes)
	}
}

// TestSimpleOneAPIWithoutServices: simple-one-api's config_web.json has no
// services (its users add them in its web panel). It loads, saying where
// channels are to be added, and validates once the admin API is on.
func TestSimpleOneAPIWithoutServices(t *testing.T) {
	cfg, format, err := Parse(readFixture(t, "simple-one-api-web.json"))
	if err != nil || format != FormatSimpleOneAPI {
		t.Fatalf("Parse: %v (%s)", err, format)
	}
	if len(cfg.Channels) != 0 || len(cfg.Notes) != 2 || !strings.Contains(cfg.Notes[0], "/api/channels") || !strings.Contains(cfg.Notes[1], "enable_web") {
		t.Fatalf("channels %d, notes %q", len(cfg.Channels), cfg.Notes)
	}
	cfg.Provision()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "SLUICE_ADMIN_TOKEN") {
		t.Fatalf("without an admin token: %v, want a pointer to it", err)
	}
	ApplyAdminToken(cfg, "adm-test-token-0123456789")
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with an admin token: %v", err)
	}
	// A services section whose services Sluice cannot serve is still an error.
	if _, _, err := Parse([]byte(`{"services": {"nosuch": [{"models": ["m"], "credentials": {"api_key": "k"}}]}}`)); err == nil {
		t.Fatal("services Sluice cannot serve were accepted")
	}
}
