// Package provider turns a relayed call into a request for one upstream
// API. Upstream types that differ from OpenAI only in their base URL, auth
// header or path are data (a Spec); only real wire differences are code
// (an Adapter).
package provider

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// API is the wire protocol an upstream speaks.
type API string

// APIs Sluice speaks to upstreams.
const (
	APIOpenAI API = "openai" // OpenAI-compatible HTTP API
	APIAzure  API = "azure"  // Azure OpenAI deployments
	APIMock   API = "mock"   // the built-in fake upstream, served in-process
	APIClaude API = "claude" // Anthropic Messages API
	APIGemini API = "gemini" // Google Generative Language API (Gemini)
	APISpark  API = "spark"  // iFlytek Spark's WebSocket API

	APIQianfan   API = "qianfan"   // Baidu Qianfan's native ERNIE API, with an OAuth access token
	APIHunyuan   API = "hunyuan"   // Tencent Cloud API 3.0 (hunyuan ChatCompletions), TC3-HMAC-SHA256 signed
	APIArk       API = "ark"       // Volcengine Ark with access keys: an API key issued through the V4-signed control plane
	APIVertex    API = "vertex"    // Gemini on Google Vertex AI, with a service account's OAuth token
	APIDify      API = "dify"      // a Dify app's chat-messages API
	APIDashScope API = "dashscope" // Alibaba Cloud DashScope's native text-generation and embedding APIs
)

// Spec describes an upstream type as data.
type Spec struct {
	// Type is the name used in configs ("openai", "deepseek", ...).
	Type string
	// API is the wire protocol.
	API API
	// BaseURL is the default base URL; "" means the config must give one.
	BaseURL string
	// AuthHeader is the header carrying the credential: "Authorization"
	// (as "Bearer <key>") unless set.
	AuthHeader string
	// Unsupported, when set, says why configs may name this type but
	// Sluice cannot serve it yet.
	Unsupported string
	// Signed, when set, is the Spec of this type's credentials that hold
	// a secret_key besides their key: the provider's native API, signed
	// or authorized with the pair (see ForCredential).
	Signed *Spec
	// TokenURL is where the native API's access tokens come from, unless
	// the channel names another (token_url).
	TokenURL string
}

// specs lists the known upstream types. It is never modified.
var specs = map[string]Spec{
	"openai":      {API: APIOpenAI, BaseURL: "https://api.openai.com/v1"},
	"azure":       {API: APIAzure, AuthHeader: "api-key"},
	"mock":        {API: APIMock, BaseURL: "http://mock.sluice.internal/v1"},
	"deepseek":    {API: APIOpenAI, BaseURL: "https://api.deepseek.com/v1"},
	"moonshot":    {API: APIOpenAI, BaseURL: "https://api.moonshot.cn/v1"},
	"groq":        {API: APIOpenAI, BaseURL: "https://api.groq.com/openai/v1"},
	"mistral":     {API: APIOpenAI, BaseURL: "https://api.mistral.ai/v1"},
	"openrouter":  {API: APIOpenAI, BaseURL: "https://openrouter.ai/api/v1"},
	"together":    {API: APIOpenAI, BaseURL: "https://api.together.xyz/v1"},
	"fireworks":   {API: APIOpenAI, BaseURL: "https://api.fireworks.ai/inference/v1"},
	"xai":         {API: APIOpenAI, BaseURL: "https://api.x.ai/v1"},
	"perplexity":  {API: APIOpenAI, BaseURL: "https://api.perplexity.ai"},
	"siliconflow": {API: APIOpenAI, BaseURL: "https://api.siliconflow.cn/v1"},
	"zhipu":       {API: APIOpenAI, BaseURL: "https://open.bigmodel.cn/api/paas/v4"},
	"qwen":        {API: APIOpenAI, BaseURL: "https://dashscope.aliyuncs.com/compatible-mode/v1"},
	"baichuan":    {API: APIOpenAI, BaseURL: "https://api.baichuan-ai.com/v1"},
	"minimax":     {API: APIOpenAI, BaseURL: "https://api.minimax.chat/v1"},
	"lingyiwanwu": {API: APIOpenAI, BaseURL: "https://api.lingyiwanwu.com/v1"},
	"stepfun":     {API: APIOpenAI, BaseURL: "https://api.stepfun.com/v1"},
	"hunyuan": {API: APIOpenAI, BaseURL: "https://api.hunyuan.cloud.tencent.com/v1",
		Signed: &Spec{API: APIHunyuan, BaseURL: "https://hunyuan.tencentcloudapi.com"}},
	"doubao":  arkSpec,
	"huoshan": arkSpec,
	"qianfan": {API: APIOpenAI, BaseURL: "https://qianfan.baidubce.com/v2",
		Signed: &Spec{API: APIQianfan, BaseURL: "https://aip.baidubce.com", TokenURL: "https://aip.baidubce.com/oauth/2.0/token"}},
	"ollama":   {API: APIOpenAI, BaseURL: "http://localhost:11434/v1"},
	"vllm":     {API: APIOpenAI},
	"lmstudio": {API: APIOpenAI, BaseURL: "http://localhost:1234/v1"},

	"claude": {API: APIClaude, BaseURL: "https://api.anthropic.com", AuthHeader: "x-api-key"},
	"gemini": {API: APIGemini, BaseURL: "https://generativelanguage.googleapis.com", AuthHeader: "x-goog-api-key"},
	// iFlytek Spark: its OpenAI-compatible HTTP API (the API password as
	// the key); credentials with app_id and api_secret use its native
	// WebSocket API instead (SparkSpec).
	"xinghuo": {API: APIOpenAI, BaseURL: "https://spark-api-open.xf-yun.com/v1"},

	"vertexai":  {API: APIVertex, TokenURL: "https://oauth2.googleapis.com/token"},
	"dify":      {API: APIDify, BaseURL: "https://api.dify.ai/v1"},
	"dashscope": {API: APIDashScope, BaseURL: "https://dashscope.aliyuncs.com"},
	// Bailian (Alibaba Cloud Model Studio) is DashScope's console: its
	// API keys call the same API.
	"bailian": {API: APIDashScope, BaseURL: "https://dashscope.aliyuncs.com"},
}

// arkSpec is Volcengine Ark (Doubao): its OpenAI-compatible API with an
// API key, or with an access key pair the API keys it issues.
var arkSpec = Spec{API: APIOpenAI, BaseURL: "https://ark.cn-beijing.volces.com/api/v3",
	Signed: &Spec{API: APIArk, BaseURL: "https://ark.cn-beijing.volces.com/api/v3", TokenURL: "https://open.volcengineapi.com"}}

// Lookup returns the Spec of an upstream type.
func Lookup(typ string) (Spec, bool) {
	s, ok := specs[strings.ToLower(typ)]
	s.Type = strings.ToLower(typ)
	return s, ok
}

// SparkSpec is the Spec of xinghuo credentials that have an app_id and
// api_secret: iFlytek Spark's native WebSocket API.
func SparkSpec() Spec {
	return Spec{Type: "xinghuo", API: APISpark, BaseURL: "wss://spark-api.xf-yun.com"}
}

// ForCredential returns the Spec serving a credential of type s: its
// Signed Spec when the credential holds a secret key, else s itself.
func (s Spec) ForCredential(hasSecretKey bool) Spec {
	if !hasSecretKey || s.Signed == nil {
		return s
	}
	signed := *s.Signed
	signed.Type = s.Type
	return signed
}

// Types returns the names of the types Sluice can serve, sorted.
func Types() []string {
	var names []string
	for name, s := range specs {
		if s.Unsupported == "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Endpoint is the OpenAI operation being relayed.
type Endpoint string

// Endpoints Sluice relays.
const (
	Chat       Endpoint = "chat/completions"
	Embeddings Endpoint = "embeddings"
)

// Target is one upstream credential, resolved for one attempt.
type Target struct {
	Spec       Spec
	BaseURL    string // as configured: a base URL or a full endpoint URL
	Key        string // the upstream secret; never logged
	APIVersion string // Azure's api-version, Anthropic's anthropic-version, Gemini's API version (v1beta)
	Model      string // the upstream's name for the model
	Headers    map[string]string
	// MaxTokens is the completion cap sent to upstreams that require one
	// (Anthropic) when the request sets none.
	MaxTokens int64
	// AppID and APISecret sign iFlytek Spark's WebSocket API (with Key as
	// its API key); never logged.
	AppID, APISecret string
	// SecretKey, with Key as its ID, signs or authorizes the native API
	// of a Signed Spec: Qianfan's secret_key (Key: its api_key), Tencent
	// Cloud's SecretKey (Key: the SecretId), Volcengine's secret access
	// key (Key: the access key ID). Never logged.
	SecretKey string
	// Region is the cloud region: Tencent Cloud's and Volcengine's
	// (optional), Vertex AI's location (required).
	Region string
	// Project is the Google Cloud project of a Vertex AI credential.
	Project string
	// TokenURL, when set, replaces the Spec's TokenURL.
	TokenURL string
	// CredentialID is the credential's stable, non-secret ID: the key its
	// access tokens are cached by.
	CredentialID string
	// Tokens caches the access tokens issued for the credential's
	// secrets; nil fetches one for every call.
	Tokens Tokens
	// Client, when set, is the channel's HTTP client (its proxy and
	// connection pool), for the requests an adapter makes itself: token
	// requests. Default http.DefaultClient.
	Client *http.Client
	// ClientHeader holds, for a body relayed natively (Native), the
	// client's own headers of the upstream's API (ingress.Codec's
	// NativeHeaders), never its credentials.
	ClientHeader http.Header
}

// Adapter builds the upstream HTTP request for one call. body is the
// OpenAI-shaped request body, already rewritten for the upstream.
type Adapter interface {
	NewRequest(ctx context.Context, t Target, ep Endpoint, body []byte) (*http.Request, error)
}

// For returns the Adapter for a wire API.
func For(api API) (Adapter, error) {
	switch api {
	case APIOpenAI, APIMock:
		return openAI{}, nil
	case APIAzure:
		return azure{}, nil
	case APIClaude:
		return claude{}, nil
	case APIGemini:
		return gemini{}, nil
	case APISpark:
		return spark{}, nil
	case APIQianfan:
		return qianfan{}, nil
	case APIHunyuan:
		return hunyuan{}, nil
	case APIArk:
		return ark{}, nil
	case APIVertex:
		return vertex{}, nil
	case APIDify:
		return dify{}, nil
	case APIDashScope:
		return dashScope{}, nil
	}
	return nil, fmt.Errorf("no adapter for upstream API %q", api)
}

// setAuth puts the credential in the header its Spec names.
func setAuth(h http.Header, t Target) {
	if t.Key == "" {
		return
	}
	if t.Spec.AuthHeader == "" || strings.EqualFold(t.Spec.AuthHeader, "Authorization") {
		h.Set("Authorization", "Bearer "+t.Key)
		return
	}
	h.Set(t.Spec.AuthHeader, t.Key)
}
