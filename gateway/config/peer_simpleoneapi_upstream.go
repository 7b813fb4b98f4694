package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/sluice-gateway/sluice/gateway/provider"
)

// soaUpstream picks the native type and base URL of an entry, or says
// why Sluice cannot serve it. The result mirrors what each simple-one-api
// handler (pkg/handler/openai_*_handler.go) calls.
func soaUpstream(e *soaEntry) (typ, base string, prob *FieldError) {
	switch e.protocol {
	case "", "auto":
		typ, base, prob = soaNativeUpstream(e)
	case "chat_completions":
		typ, base, prob = soaCompatUpstream(e)
	case "responses", "anthropic_messages":
		prob = &FieldError{Path: e.at("upstream_protocol"), Msg: fmt.Sprintf("%q upstreams are not supported: Sluice calls upstreams with the OpenAI Chat Completions API", e.protocol)}
	default:
		prob = &FieldError{Path: e.at("upstream_protocol"), Msg: fmt.Sprintf("unknown protocol %q (want auto, chat_completions, responses or anthropic_messages)", e.protocol)}
	}
	if _, ok := httpURL(e.serverURL); prob == nil && e.serverURL != "" && !ok {
		prob = &FieldError{Path: e.at("server_url"), Msg: fmt.Sprintf("want an http:// or https:// URL, got %q", e.serverURL)}
	}
	return typ, base, prob
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
	case "dashscope":
		// The handler calls DashScope's native API at a fixed URL; the same
		// key serves its OpenAI-compatible mode.
		return "qwen", orDefault("qwen", rebase(e.serverURL, "/compatible-mode/v1")), nil
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
	case "hunyuan", "huoshan":
		return soaSigned(e)
	case "qianfan":
		return "", "", soaSpecProblem(e, "ernie")
	case "claude", "gemini", "xinghuo":
		return "", "", soaSpecProblem(e, e.svc)
	}
	if why, ok := soaNoCompat[e.svc]; ok {
		return "", "", &FieldError{Path: e.path, Msg: fmt.Sprintf("service type %q: %s", e.svc, why)}
	}
	// deepseek, zhipu, groq, and native OpenAI-compatible type names.
	return e.svc, orDefault(e.svc, e.serverURL), nil
}

// soaSpecProblem reports a service type that Sluice knows but cannot serve.
func soaSpecProblem(e *soaEntry, typ string) *FieldError {
	spec, _ := provider.Lookup(typ)
	return &FieldError{Path: e.path, Msg: fmt.Sprintf("provider type %q: %s", e.svc, spec.Unsupported)}
}

// soaSigned handles hunyuan and huoshan: their simple-one-api handlers
// sign requests with cloud account keys (Tencent secret_id/secret_key,
// Volcengine access_key/secret_key), which Sluice cannot do; credentials
// with an api_key are served by the OpenAI-compatible endpoint instead.
func soaSigned(e *soaEntry) (string, string, *FieldError) {
	typ, signing := "hunyuan", "Tencent Cloud API signing (secret_id/secret_key)"
	if e.svc == "huoshan" {
		typ, signing = "doubao", "Volcengine AK/SK signing (access_key/secret_key)"
	}
	for _, c := range e.creds {
		if c.key == "" {
			return "", "", &FieldError{Path: c.path, Msg: fmt.Sprintf("%s is not supported; set api_key to an API key of the OpenAI-compatible endpoint (type %s)", signing, typ)}
		}
	}
	if len(e.creds) == 0 {
		return "", "", &FieldError{Path: e.at("credentials"), Msg: "required: an api_key of the OpenAI-compatible endpoint"}
	}
	return typ, orDefault(typ, e.serverURL), nil
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
		r.fail(path, "want a proxy URL (http://, https:// or socks5://), got %q", p.url)
		return soaProxy{}
	}
	return p
}
