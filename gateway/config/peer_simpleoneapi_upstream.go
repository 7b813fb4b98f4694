package config

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/sluice-gateway/sluice/gateway/provider"
)

// soaUpstream picks the native type and base URL of an entry, or says
// why Sluice cannot serve it. The result mirrors what each simple-one-api
// handler (pkg/handler/openai_*_handler.go) calls.
func soaUpstream(e *soaEntry) (typ, base string, prob *FieldError) {
	native := false
	switch e.protocol {
	case "", "auto":
		native = true
	case "chat_completions":
	case "responses":
		return "", "", &FieldError{Path: e.at("upstream_protocol"), Msg: `"responses" upstreams are not supported: Sluice calls OpenAI-compatible upstreams with the Chat Completions API; use chat_completions`}
	case "anthropic_messages":
		return "", "", &FieldError{Path: e.at("upstream_protocol"), Msg: `"anthropic_messages" upstreams are served by the claude service type: move the entry to services.claude`}
	default:
		return "", "", &FieldError{Path: e.at("upstream_protocol"), Msg: fmt.Sprintf("unknown protocol %q (want auto, chat_completions, responses or anthropic_messages)", e.protocol)}
	}
	if e.serverURL != "" {
		// Only simple-one-api's xinghuo handler takes a WebSocket URL.
		spark := native && e.svc == "xinghuo"
		if _, ok := httpURL(e.serverURL); !ok && !(spark && wsURL(e.serverURL)) {
			want := "an http:// or https:// URL"
			if spark {
				want = "a ws://, wss://, http:// or https:// URL"
			}
			return "", "", &FieldError{Path: e.at("server_url"), Msg: fmt.Sprintf("want %s, got %q", want, e.serverURL)}
		}
	}
	if native {
		return soaNativeUpstream(e)
	}
	return soaCompatUpstream(e)
}

// wsURL reports whether raw is an absolute ws:// or wss:// URL.
func wsURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Host != "" && isWebSocket(u.Scheme)
}

// soaCompatUpstream handles upstream_protocol chat_completions: the entry
// is an OpenAI-compatible endpoint whatever its service type.
func soaCompatUpstream(e *soaEntry) (string, string, *FieldError) {
	typ := e.svc
	if t, ok := soaCompatType[typ]; ok {
		typ = t
	} else if _, ok := lookupServed(typ); !ok {
		typ = "openai"
	}
	spec, _ := lookupServed(typ)
	if e.serverURL == "" && (spec.BaseURL == "" || typ == "openai" && e.svc != "openai") {
		return "", "", &FieldError{Path: e.at("server_url"), Msg: "required: the OpenAI-compatible endpoint to call"}
	}
	return typ, orDefault(typ, e.serverURL), nil
}

// soaNativeUpstream maps an entry that uses its service type's own handler.
func soaNativeUpstream(e *soaEntry) (string, string, *FieldError) {
	switch e.svc {
	case "openai":
		return soaOpenAI(e)
	case "aliyun": // the old name of the DashScope OpenAI-compatible mode
		return "qwen", orDefault("qwen", e.serverURL), nil
	case "dashscope", "bailian":
		// The handler calls DashScope's native API at a fixed URL, as the
		// dashscope type does (bailian's handler does nothing at all:
		// Bailian is DashScope's console, and its keys are DashScope's).
		return e.svc, orDefault(e.svc, rebase(e.serverURL, "")), nil
	case "vertexai":
		return soaVertex(e)
	case "dify":
		// The handler posts to {server_url}/chat-messages.
		return "dify", orDefault("dify", strings.TrimSuffix(strings.TrimRight(e.serverURL, "/"), "/chat-messages")), nil
	case "azure":
		if e.serverURL == "" {
			return "", "", &FieldError{Path: e.at("server_url"), Msg: "required for azure: the resource endpoint"}
		}
		// simple-one-api keeps only scheme and host and names the
		// deployment after the model, as the native azure type does.
		return "azure", rebase(e.serverURL, ""), nil
	case "minimax":
		// The handler speaks MiniMax's chatcompletion_pro protocol; the
		// same key serves its OpenAI-compatible API at .../v1.
		return "minimax", orDefault("minimax", minimaxBase(e.serverURL)), nil
	case "ollama":
		// The handler calls Ollama's native /api/chat; Sluice calls its
		// OpenAI-compatible /v1 on the same server.
		return "ollama", orDefault("ollama", ollamaBase(e.serverURL)), nil
	case "hunyuan", "huoshan", "qianfan":
		return soaSigned(e)
	case "claude":
		return soaClaude(e)
	case "gemini":
		return soaGemini(e)
	case "xinghuo":
		return soaXinghuo(e)
	}
	if why, ok := soaNoCompat[e.svc]; ok {
		return "", "", &FieldError{Path: e.path, Msg: fmt.Sprintf("service type %q: %s", e.svc, why)}
	}
	// deepseek, zhipu, groq, and native OpenAI-compatible type names.
	return e.svc, orDefault(e.svc, e.serverURL), nil
}

// soaVertex handles vertexai: each credential names its project, its
// location and its service account's key file, which the vertexai type
// takes as they are.
func soaVertex(e *soaEntry) (string, string, *FieldError) {
	for _, c := range e.creds {
		switch {
		case c.file == "":
			return "", "", &FieldError{Path: c.path, Msg: "json_file is required: the service account's key file"}
		case c.region == "":
			return "", "", &FieldError{Path: c.path, Msg: "location is required"}
		}
	}
	if len(e.creds) == 0 {
		return "", "", &FieldError{Path: e.at("credentials"), Msg: "required: project_id, location and json_file"}
	}
	return "vertexai", rebase(e.serverURL, ""), nil
}

// soaClaude handles claude. simple-one-api posts to server_url as it is
// (default https://api.anthropic.com/v1/messages), with the api_key in
// x-api-key; the claude type takes that Messages endpoint as its base.
func soaClaude(e *soaEntry) (string, string, *FieldError) {
	if e.serverURL == "" {
		return "claude", "", nil
	}
	u, _ := httpURL(e.serverURL)
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, "/messages") {
		return "", "", &FieldError{Path: e.at("server_url"), Msg: fmt.Sprintf(
			"want Anthropic's Messages endpoint, ending in /messages (simple-one-api posts to server_url as it is), got %q", DisplayURL(e.serverURL))}
	}
	if spec, _ := lookupServed("claude"); u.RawQuery == "" && u.Scheme+"://"+u.Host+p == spec.BaseURL+"/v1/messages" {
		return "claude", "", nil
	}
	return "claude", e.serverURL, nil
}

// geminiVersion matches a Gemini API version path segment (v1, v1beta).
var geminiVersion = regexp.MustCompile(`^v\d+((alpha|beta)\d*)?$`)

// soaGemini handles gemini. simple-one-api calls
// {server_url}/{model}:generateContent (default server_url
// https://generativelanguage.googleapis.com/v1beta/models), with the
// api_key in the query; the gemini type takes the part before /models as
// its base, keeping the API version, and sends the key in x-goog-api-key.
func soaGemini(e *soaEntry) (string, string, *FieldError) {
	if e.serverURL == "" {
		return "gemini", "", nil
	}
	u, _ := httpURL(e.serverURL)
	p := strings.TrimRight(u.Path, "/")
	dir, last := path.Split(p)
	if last != "models" || !geminiVersion.MatchString(path.Base(dir)) || u.RawQuery != "" || u.Fragment != "" {
		return "", "", &FieldError{Path: e.at("server_url"), Msg: fmt.Sprintf(
			"want the models URL of a Gemini API version, such as https://generativelanguage.googleapis.com/v1beta/models (simple-one-api appends /<model>:generateContent), got %q", DisplayURL(e.serverURL))}
	}
	u.Path, u.RawPath = strings.TrimSuffix(p, "/models"), ""
	base := u.String()
	if spec, _ := lookupServed("gemini"); base == spec.BaseURL+"/"+provider.DefaultGeminiAPIVersion {
		return "gemini", "", nil
	}
	return "gemini", base, nil
}

// soaSparkWS is the default base of Spark's WebSocket API.
const soaSparkWS = "wss://spark-api.xf-yun.com"

// soaSparkDomains maps simple-one-api's xinghuo model names to the Spark
// domains it sends for them (getURLAndDomain in
// pkg/handler/openai_xinghuo_handler.go), which are also the model names
// of Spark's HTTP API.
var soaSparkDomains = map[string]string{
	"spark-lite":     "lite",
	"general":        "lite",
	"spark-v2.0":     "generalv2",
	"spark-pro":      "generalv3",
	"spark-pro-128k": "pro-128k",
	"spark-max":      "generalv3.5",
	"spark3.5-max":   "generalv3.5",
	"spark-max32k":   "max-32k",
	"4.0ultra":       "4.0Ultra",
}

// soaXinghuo handles xinghuo. simple-one-api calls Spark's WebSocket API,
// signing with the credentials' appid, api_key and api_secret; server_url
// replaces the endpoint it picks by model name, and a credential's domain
// the Spark domain. Such credentials become native WebSocket credentials.
// A credential without appid and api_secret is served by Spark's HTTP API
// instead, its api_password (or api_key) as the key.
func soaXinghuo(e *soaEntry) (string, string, *FieldError) {
	const signs = "Spark's WebSocket API signs with appid, api_key and api_secret"
	ws := wsURL(e.serverURL)
	if len(e.creds) > 0 {
		e.domain = e.creds[0].domain
	}
	for _, c := range e.creds {
		switch {
		case c.appID != "" && c.apiSecret == "":
			return "", "", &FieldError{Path: c.path, Msg: "api_secret is required with appid (" + signs + ")"}
		case c.appID == "" && c.apiSecret != "":
			return "", "", &FieldError{Path: c.path, Msg: "appid is required with api_secret (" + signs + ")"}
		case c.appID != "" && c.key == "":
			return "", "", &FieldError{Path: c.path, Msg: "api_key is required with appid and api_secret (" + signs + ")"}
		case c.appID == "" && ws:
			return "", "", &FieldError{Path: c.path, Msg: "appid, api_key and api_secret are required: server_url is Spark's WebSocket API (" + signs + ")"}
		case c.appID == "":
			e.sparkHTTP = true
		}
		if c.domain != e.domain {
			return "", "", &FieldError{Path: c.obj.at("domain"), Msg: fmt.Sprintf(
				"%q, but %s has domain %q: a channel sends one domain per model; give credentials with another domain an entry of their own",
				c.domain, e.creds[0].path, e.domain)}
		}
	}
	base := e.serverURL
	if ws && strings.TrimRight(base, "/") == soaSparkWS {
		base = "" // the WebSocket credentials' default
	}
	return "xinghuo", orDefault("xinghuo", base), nil
}

// soaSigned handles qianfan, hunyuan and huoshan. Their simple-one-api
// handlers call each provider's native API with a cloud account's key
// pair (Baidu's api_key/secret_key, Tencent's secret_id/secret_key,
// Volcengine's access_key/secret_key), as Sluice's types of the same
// names do for credentials with a secret_key; a credential with an
// api_key alone calls the type's OpenAI-compatible endpoint. qianfan's
// and hunyuan's handlers call fixed hosts, whatever server_url says.
func soaSigned(e *soaEntry) (string, string, *FieldError) {
	for _, c := range e.creds {
		if c.key == "" {
			return "", "", &FieldError{Path: c.path, Msg: soaPairNeeded[e.svc]}
		}
	}
	if len(e.creds) == 0 {
		return "", "", &FieldError{Path: e.at("credentials"), Msg: "required: " + soaPairNeeded[e.svc]}
	}
	if e.svc == "qianfan" {
		return "qianfan", "", soaQianfanAddress(e)
	}
	if e.svc != "huoshan" {
		return e.svc, "", nil
	}
	return e.svc, orDefault(e.svc, e.serverURL), nil
}

// soaQianfanAddress sets the entry's addresss, which its credentials
// must agree on: a channel maps each model to one endpoint.
func soaQianfanAddress(e *soaEntry) *FieldError {
	for _, c := range e.creds {
		if c.address == "" {
			continue
		}
		if e.address != "" && c.address != e.address {
			return &FieldError{Path: c.obj.at("addresss"), Msg: fmt.Sprintf(
				"%q, but another credential of the entry has %q: a channel sends one endpoint per model; give credentials with another addresss an entry of their own", c.address, e.address)}
		}
		e.address = c.address
	}
	return nil
}

// soaPairNeeded says what a credential of a signed service holds.
var soaPairNeeded = map[string]string{
	"qianfan": "api_key and secret_key (Baidu's OAuth client credentials), or an api_key of Qianfan's v2 OpenAI-compatible API",
	"hunyuan": "secret_id and secret_key (Tencent Cloud API signing), or an api_key of Hunyuan's OpenAI-compatible API",
	"huoshan": "access_key and secret_key (Volcengine signing), or an api_key of Ark's OpenAI-compatible API",
}

// soaOpenAI handles the openai service type. Without server_url,
// simple-one-api picks the upstream from the model name's prefix
// (getDefaultServerURL in pkg/handler/openai_openai_handler.go).
func soaOpenAI(e *soaEntry) (string, string, *FieldError) {
	if e.serverURL != "" {
		return "openai", orDefault("openai", e.serverURL), nil
	}
	var types []string
	for _, m := range cleanNames(e.chat, e.embed) {
		up := or(e.redirect[m], m)
		up = strings.ToLower(or(e.modelMap[up], up))
		t := ""
		for prefix, pt := range map[string]string{"gpt-": "openai", "glm-": "zhipu", "deepseek-": "deepseek", "yi-": "lingyiwanwu"} {
			if strings.HasPrefix(up, prefix) {
				t = pt
			}
		}
		if t == "" {
			return "", "", &FieldError{Path: e.at("server_url"), Msg: fmt.Sprintf("required: simple-one-api infers it only for gpt-, glm-, deepseek- and yi- models, not %q", up)}
		}
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	if len(types) > 1 {
		return "", "", &FieldError{Path: e.at("server_url"), Msg: fmt.Sprintf("required: the models belong to different upstreams (%s)", strings.Join(types, ", "))}
	}
	if len(types) == 0 {
		return "openai", "", nil
	}
	return types[0], "", nil
}

// rebase keeps the scheme and host of raw and sets its path; "" stays "".
func rebase(raw, path string) string {
	u, ok := httpURL(raw)
	if !ok {
		return raw
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: path}).String()
}

// minimaxBase turns a chatcompletion_pro/_v2 URL into the API base.
func minimaxBase(raw string) string {
	u, ok := httpURL(raw)
	if !ok {
		return raw
	}
	if i := strings.Index(u.Path, "/text/chatcompletion"); i >= 0 {
		u.Path, u.RawPath, u.RawQuery = u.Path[:i], "", ""
	}
	return u.String()
}

// ollamaBase turns an Ollama native URL (.../api/chat) into its
// OpenAI-compatible base (.../v1).
func ollamaBase(raw string) string {
	u, ok := httpURL(raw)
	if !ok {
		return raw
	}
	p := strings.TrimRight(u.Path, "/")
	for _, native := range []string{"/api/chat", "/api/generate", "/api"} {
		if strings.HasSuffix(p, native) {
			u.Path, u.RawPath = strings.TrimSuffix(p, native)+"/v1", ""
			return u.String()
		}
	}
	if p == "" {
		u.Path = "/v1"
	}
	return u.String()
}

// soaProxy is simple-one-api's global proxy and the strategy deciding
// which services use it (IsProxyEnabled in pkg/config/config.go).
type soaProxy struct {
	strategy string // disabled, default, all or force_all
	url      string
}

// forService returns the proxy URL for an entry with the given use_proxy.
func (p soaProxy) forService(useProxy *bool) string {
	switch {
	case p.strategy == "force_all",
		p.strategy == "all" && (useProxy == nil || *useProxy),
		p.strategy == "default" && useProxy != nil && *useProxy:
		return p.url
	}
	return ""
}

// soaReadProxy reads proxy{strategy, type, http_proxy, https_proxy,
// socks5_proxy, timeout}. An unset strategy means disabled. The timeout
// (a dial timeout) has no native equivalent and is ignored.
func soaReadProxy(r *peerReader, top peerObject) soaProxy {
	o := r.object(top.get("proxy"), "proxy", []string{"strategy", "type", "http_proxy", "https_proxy", "socks5_proxy", "timeout"})
	p := soaProxy{strategy: strings.ToLower(strings.TrimSpace(r.str(o.get("strategy"), o.at("strategy"))))}
	typ := strings.ToLower(strings.TrimSpace(r.str(o.get("type"), o.at("type"))))
	httpP := strings.TrimSpace(r.str(o.get("http_proxy"), o.at("http_proxy")))
	httpsP := strings.TrimSpace(r.str(o.get("https_proxy"), o.at("https_proxy")))
	socks := strings.TrimSpace(r.str(o.get("socks5_proxy"), o.at("socks5_proxy")))
	_ = r.num(o.get("timeout"), o.at("timeout"))
	switch p.strategy {
	case "", "disabled":
		return soaProxy{strategy: "disabled"}
	case "default", "all", "force_all":
	default:
		r.fail(o.at("strategy"), "unsupported value %q (want disabled, default, all or force_all)", p.strategy)
		return soaProxy{}
	}
	path := o.at("http_proxy")
	switch typ {
	case "http":
		p.url = or(httpP, httpsP)
	case "socks5":
		p.url, path = socks, o.at("socks5_proxy")
		if socks != "" && !strings.Contains(socks, "://") {
			p.url = "socks5://" + socks
		}
	case "":
		r.fail(o.at("type"), "required when the proxy strategy is %s", p.strategy)
		return soaProxy{}
	default:
		r.fail(o.at("type"), "unsupported value %q (want http or socks5)", typ)
		return soaProxy{}
	}
	if !validProxy(p.url) {
		r.fail(path, "want a proxy URL (http://, https:// or socks5://), got %q", DisplayURL(p.url))
		return soaProxy{}
	}
	return p
}
