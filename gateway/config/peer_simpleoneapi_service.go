package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// soaEntryKeys are the keys of one services.<type>[i] entry.
var soaEntryKeys = []string{
	"id", "provider", "upstream_protocol", "enabled", "models", "embedding_models",
	"reasoning_models", "server_url", "credentials", "credential_list", "model_map",
	"model_redirect", "limit", "embedding_limit", "model_limits", "use_proxy", "timeout",
}

// soaTypes are the service types simple-one-api knows, current and
// retired. Other names are accepted when they are native types.
var soaTypes = []string{
	"openai", "azure", "deepseek", "zhipu", "groq", "ollama", "gemini", "claude",
	"qianfan", "hunyuan", "xinghuo", "minimax", "huoshan", "dashscope", "bailian",
	"dify", "vertexai", "aliyun", "coze", "cozecn", "cozecom", "agentbuilder", "jiutian",
}

// soaNoCompat says why a service type has no OpenAI-compatible upstream
// Sluice could call instead.
var soaNoCompat = map[string]string{
	"coze":         "Coze bots do not speak the OpenAI API (simple-one-api no longer supports them either)",
	"cozecn":       "Coze bots do not speak the OpenAI API (simple-one-api no longer supports them either)",
	"cozecom":      "Coze bots do not speak the OpenAI API (simple-one-api no longer supports them either)",
	"agentbuilder": "Baidu AgentBuilder does not speak the OpenAI API (simple-one-api no longer supports it either)",
	"jiutian":      "the China Mobile Jiutian API is not supported",
}

// soaCompatType is the native OpenAI-compatible type for service types
// whose simple-one-api handler speaks another protocol.
var soaCompatType = map[string]string{
	"aliyun": "qwen", "dashscope": "qwen", "bailian": "qwen",
	"huoshan": "huoshan", "hunyuan": "hunyuan", "qianfan": "qianfan",
	"claude": "openai", "gemini": "openai", "xinghuo": "openai", "vertexai": "openai",
}

// soaDefaultModels are the models simple-one-api serves for an entry
// that lists none (DefaultSupportModelMap in pkg/config/default_config.go).
var soaDefaultModels = map[string][]string{
	"hunyuan":  {"hunyuan-lite", "hunyuan-standard", "hunyuan-standard-256K", "hunyuan-pro"},
	"deepseek": {"deepseek-chat", "deepseek-coder"},
	"zhipu":    {"glm-3-turbo", "glm-4-0520", "glm-4", "glm-4-air", "glm-4-airx", "glm-4-flash", "glm-4v"},
	"minimax":  {"abab6.5", "abab6.5s", "abab6.5t", "abab6.5g", "abab5.5s"},
	"huoshan":  {"Doubao-pro-4k", "Doubao-pro-32k", "Doubao-pro-128k", "Doubao-lite-4k", "Doubao-lite-32k", "Doubao-lite-128k"},
	"groq":     {"llama3-70b-8192", "llama3-8b-8192", "gemma-7b-it", "mixtral-8x7b-32768"},
	"aliyun":   {"qwen-turbo", "qwen-plus", "qwen-max", "qwen-max-longcontext"},
	"qianfan":  {"yi_34b_chat", "ERNIE-Speed-8K", "ERNIE-Speed-128K", "ERNIE-Lite-8K", "ERNIE-Lite-8K-0922", "ERNIE-Tiny-8K"},
	"xinghuo":  {"spark-lite", "spark-v2.0", "spark-pro", "spark-max"},
	"gemini":   {"gemini-1.5-pro", "gemini-1.5-flash", "gemini-1.0-pro", "gemini-pro-vision"},
}

// soaDefaultWait is how long simple-one-api lets a request wait for a
// limiter when limit.timeout is unset (defaultReqTimeout, seconds).
const soaDefaultWait = Duration(10 * time.Second)

// soaEntry is what one services.<type>[i] entry says.
type soaEntry struct {
	svc, path, name     string
	enabled             bool
	protocol, serverURL string
	chat, embed         []string
	modelMap, redirect  map[string]string
	limit, embedLimit   Limits
	useProxy            *bool
	timeout             Duration
	creds               []soaCred
	modelLimits         map[string]Limits // model_limits: per model, for the service as a whole
	// domain is the Spark domain the xinghuo credentials name, sent
	// upstream for every model; sparkHTTP is set when some xinghuo
	// credential uses Spark's HTTP API. Both are set by soaXinghuo.
	domain    string
	sparkHTTP bool
	// address is the endpoint qianfan credentials name (addresss) for the
	// models Baidu's table leaves to the user.
	address string
}

// soaCred is one set of credentials of an entry.
type soaCred struct {
	path    string
	key     string
	obj     peerObject
	id      string
	enabled *bool
	limits  Limits
	// xinghuo only: appid and api_secret (with key as the API key) sign
	// Spark's WebSocket API; domain overrides the Spark domain.
	appID, apiSecret, domain string
	// qianfan, hunyuan and huoshan: the secret of the key pair whose ID
	// is key (api_key, secret_id, access_key).
	secretKey string
	// qianfan: addresss, the endpoint of models without one of their own.
	address string
	// vertexai: the project, the location and the service account's key
	// file.
	project, region, file string
}

// at returns the path of a key of the entry.
func (e *soaEntry) at(key string) string { return join(e.path, key) }

// soaServices converts every services entry, in file order.
func soaServices(r *peerReader, top peerObject, proxy soaProxy) []Channel {
	var out []Channel
	for _, svc := range r.object(top.get("services"), "services", nil).fields {
		items := r.list(svc.val, svc.path)
		if typ := strings.ToLower(svc.key); !slices.Contains(soaTypes, typ) {
			if _, ok := lookupServed(typ); !ok {
				r.fail(svc.path, "unknown service type %q", svc.key)
				continue
			}
		}
		for i, item := range items {
			out = append(out, soaService(r, svc.key, idx(svc.path, i), i, item, proxy)...)
		}
	}
	return out
}

// soaService converts one entry into one channel, or two when its
// embedding models have limits of their own. A disabled entry that Sluice
// could not serve is left out: it takes no traffic in simple-one-api
// either.
func soaService(r *peerReader, svc, path string, i int, n *yaml.Node, proxy soaProxy) []Channel {
	e := soaRead(r, svc, path, i, n)
	typ, base, prob := soaUpstream(e)
	if prob != nil || len(e.chat)+len(e.embed) == 0 {
		if e.enabled {
			if prob == nil {
				prob = &FieldError{Path: e.at("models"), Msg: "at least one chat or embedding model is required"}
			}
			r.errs = append(r.errs, prob)
		}
		return nil
	}
	// A service's limit caps the service as a whole, all its keys
	// together; a key's own limit caps that key.
	// model_limits cap one model's calls, the service's as a whole and
	// each key's: per-model limits.
	ch := Channel{Name: e.name, Type: typ, BaseURL: base, Timeout: e.timeout, SharedLimits: withModels(e.limit, e.modelLimits)}
	if !e.enabled {
		ch.Enabled = Bool(false)
	}
	if typ != "ollama" { // simple-one-api's ollama handler ignores the configured proxy
		ch.Proxy = proxy.forService(e.useProxy)
	}
	redirected := slices.Sorted(maps.Keys(e.redirect))
	embedOnly := slices.DeleteFunc(slices.Clone(e.embed), func(m string) bool { return slices.Contains(e.chat, m) })
	split := len(embedOnly) > 0 && len(e.chat) > 0 && !e.embedLimit.Equal(e.limit)
	var chans []Channel
	if split {
		emb := ch
		emb.Name += "-embeddings"
		emb.SharedLimits = withModels(e.embedLimit, e.modelLimits)
		emb.Models = embedOnly
		chans = append(chans, emb)
		ch.Models = cleanNames(e.chat, redirected)
	} else {
		ch.Models = cleanNames(e.chat, embedOnly, redirected)
	}
	chans = append([]Channel{ch}, chans...)
	for k := range chans {
		c := &chans[k]
		c.ModelMap = soaModelMap(e, c.Models)
		c.Credentials = soaCredentials(e, c)
	}
	return chans
}

// soaRead reads the fields of an entry.
func soaRead(r *peerReader, svc, path string, i int, n *yaml.Node) *soaEntry {
	o := r.object(n, path, soaEntryKeys)
	e := &soaEntry{svc: strings.ToLower(svc), path: path}
	e.name = strings.TrimSpace(r.str(o.get("id"), o.at("id")))
	if e.name == "" {
		e.name = fmt.Sprintf("%s-%d", e.svc, i+1) // simple-one-api's own stable id
	}
	e.enabled, _ = r.boolean(o.get("enabled"), o.at("enabled")) // simple-one-api: absent means disabled
	_ = r.str(o.get("provider"), o.at("provider"))              // a label; routing follows the service type
	_ = r.strMap(o.get("reasoning_models"), o.at("reasoning_models"))
	e.protocol = strings.ToLower(strings.TrimSpace(r.str(o.get("upstream_protocol"), o.at("upstream_protocol"))))
	e.serverURL = strings.TrimSpace(r.str(o.get("server_url"), o.at("server_url")))
	e.chat = cleanNames(r.strs(o.get("models"), o.at("models")))
	if len(e.chat) == 0 {
		e.chat = soaDefaultModels[e.svc]
	}
	e.embed = cleanNames(r.strs(o.get("embedding_models"), o.at("embedding_models")))
	e.modelMap = r.strMap(o.get("model_map"), o.at("model_map"))
	e.redirect = r.strMap(o.get("model_redirect"), o.at("model_redirect"))
	e.limit = soaLimit(r, o.get("limit"), o.at("limit"))
	e.embedLimit = soaLimit(r, o.get("embedding_limit"), o.at("embedding_limit"))
	e.modelLimits = soaModelLimits(r, o)
	if on, ok := r.boolean(o.get("use_proxy"), o.at("use_proxy")); ok {
		e.useProxy = &on
	}
	e.timeout = r.duration(o.get("timeout"), o.at("timeout"), time.Second)
	e.creds = soaReadCreds(r, o, e)
	return e
}

// soaModelLimits reads model_limits: a limit object per model name, each
// with its wait (Sluice has one wait per credential or channel: the
// entry's own, else the longest of its models').
func soaModelLimits(r *peerReader, o peerObject) map[string]Limits {
	var out map[string]Limits
	for _, f := range r.object(o.get("model_limits"), o.at("model_limits"), nil).fields {
		l := soaLimit(r, f.val, f.path)
		if l.IsZero() {
			continue
		}
		if out == nil {
			out = map[string]Limits{}
		}
		out[strings.TrimSpace(f.key)] = l
	}
	return out
}

// withModels returns l with per-model limits, which wait as long as l
// does (or, when l sets no limit of its own, as long as the longest of
// theirs).
func withModels(l Limits, models map[string]Limits) Limits {
	if len(models) == 0 {
		return l
	}
	var wait Duration
	l.Models = make(map[string]Limits, len(models))
	for name, ml := range models {
		wait = max(wait, ml.WaitTimeout)
		ml.WaitTimeout = 0
		l.Models[name] = ml
	}
	if l.WaitTimeout == 0 {
		l.WaitTimeout = wait
	}
	return l
}

// soaReadCreds reads credential_list or, when it is empty, credentials
// (simple-one-api ignores credentials when credential_list has entries).
func soaReadCreds(r *peerReader, o peerObject, e *soaEntry) []soaCred {
	items := r.list(o.get("credential_list"), o.at("credential_list"))
	paths := make([]string, len(items))
	for i := range items {
		paths[i] = idx(o.at("credential_list"), i)
	}
	if len(items) == 0 && o.has("credentials") {
		items, paths = []*yaml.Node{o.get("credentials")}, []string{o.at("credentials")}
	}
	var creds []soaCred
	for i, item := range items {
		c := soaCred{path: paths[i], obj: r.object(item, paths[i], nil)}
		c.id = strings.TrimSpace(r.str(c.obj.get("id"), c.obj.at("id")))
		// Every type Sluice serves from simple-one-api authenticates with
		// api_key (minimax's group_id only served its older protocol),
		// xinghuo's WebSocket API with appid and api_secret besides.
		c.key = r.str(c.obj.get("api_key"), c.obj.at("api_key"))
		switch e.svc {
		case "xinghuo":
			soaReadSpark(r, &c)
		case "qianfan", "hunyuan", "huoshan":
			soaReadPair(r, &c, e.svc)
		case "vertexai":
			c.project = strings.TrimSpace(r.str(c.obj.get("project_id"), c.obj.at("project_id")))
			c.region = strings.TrimSpace(r.str(c.obj.get("location"), c.obj.at("location")))
			c.file = strings.TrimSpace(r.str(c.obj.get("json_file"), c.obj.at("json_file")))
			_ = r.str(c.obj.get("model_id"), c.obj.at("model_id")) // unused by simple-one-api too
		}
		if on, ok := r.boolean(c.obj.get("enabled"), c.obj.at("enabled")); ok {
			c.enabled = &on
		}
		c.limits = withModels(soaLimit(r, c.obj.get("limit"), c.obj.at("limit")), soaModelLimits(r, c.obj))
		creds = append(creds, c)
	}
	return creds
}

// soaReadPair reads the key pair of a qianfan (api_key, secret_key),
// hunyuan (secret_id, secret_key) or huoshan (access_key, secret_key)
// credential; one with an api_key alone is an API key of the type's
// OpenAI-compatible endpoint. qianfan's addresss (the endpoint of the
// models Baidu's table leaves to the user) goes into model_map.
func soaReadPair(r *peerReader, c *soaCred, svc string) {
	c.secretKey = r.str(c.obj.get("secret_key"), c.obj.at("secret_key"))
	switch svc {
	case "hunyuan":
		if id := r.str(c.obj.get("secret_id"), c.obj.at("secret_id")); id != "" || c.secretKey != "" {
			c.key = id
		}
	case "huoshan":
		if ak := r.str(c.obj.get("access_key"), c.obj.at("access_key")); ak != "" || c.secretKey != "" {
			if c.key != "" {
				c.secretKey = "" // simple-one-api prefers the api_key
				return
			}
			c.key = ak
		}
	case "qianfan":
		c.address = strings.TrimSpace(r.str(c.obj.get("addresss"), c.obj.at("addresss")))
	}
}

// soaReadSpark reads the fields of a xinghuo credential. One without
// appid and api_secret is an API password of Spark's HTTP API, given as
// api_password or api_key.
func soaReadSpark(r *peerReader, c *soaCred) {
	c.appID = strings.TrimSpace(r.str(c.obj.get("appid"), c.obj.at("appid")))
	c.apiSecret = r.str(c.obj.get("api_secret"), c.obj.at("api_secret"))
	c.domain = strings.TrimSpace(r.str(c.obj.get("domain"), c.obj.at("domain")))
	password := r.str(c.obj.get("api_password"), c.obj.at("api_password"))
	if c.appID == "" && c.apiSecret == "" {
		c.key = or(password, c.key)
	}
}

// soaLimit maps a limit object. simple-one-api applies every limit given
// at once; qpm and rpm are both a one-minute request window (both set:
// the tighter wins); timeout is how many seconds a request may wait for
// room before a 429, 10 when unset.
func soaLimit(r *peerReader, n *yaml.Node, path string) Limits {
	o := r.object(n, path, []string{"qps", "qpm", "rpm", "tpm", "concurrency", "timeout"})
	l := Limits{
		QPS:         r.num(o.get("qps"), o.at("qps")),
		RPM:         minSet(r.count(o.get("qpm"), o.at("qpm")), r.count(o.get("rpm"), o.at("rpm"))),
		TPM:         r.count(o.get("tpm"), o.at("tpm")),
		Concurrency: r.count(o.get("concurrency"), o.at("concurrency")),
	}
	wait := r.duration(o.get("timeout"), o.at("timeout"), time.Second)
	if l.IsZero() {
		return l // a timeout alone limits nothing
	}
	l.WaitTimeout = or(wait, soaDefaultWait)
	return l
}

// minSet returns the smaller of the values that are set (non-zero).
func minSet[T int64 | float64](a, b T) T {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// soaModelMap computes the upstream name of each client-facing model:
// the entry's model_redirect applies first, then its model_map. For
// xinghuo, a credential's domain then replaces every name, as
// simple-one-api sends it instead of the model's own domain; without one,
// the HTTP API gets the domain of simple-one-api's model names.
func soaModelMap(e *soaEntry, models []string) map[string]string {
	var m map[string]string
	for _, name := range models {
		up := or(e.redirect[name], name)
		up = or(e.modelMap[up], up)
		switch {
		case e.domain != "":
			up = e.domain
		case e.sparkHTTP:
			up = or(soaSparkDomains[strings.ToLower(up)], up)
		case e.address != "" && slices.Contains(soaQianfanUserEndpoints, strings.ToLower(up)):
			up = e.address
		}
		if up != name {
			if m == nil {
				m = make(map[string]string)
			}
			m[name] = up
		}
	}
	return m
}

// soaCredentials converts the entry's credentials for one of its channels.
func soaCredentials(e *soaEntry, ch *Channel) []Credential {
	var out []Credential
	for _, c := range e.creds {
		cr := Credential{Key: c.key, AppID: c.appID, APISecret: c.apiSecret, Enabled: c.enabled, Limits: c.limits,
			SecretKey: c.secretKey, Region: c.region, Project: c.project, CredentialsFile: c.file}
		if c.id != "" {
			cr.ID = ch.Name + "#" + c.id
		}
		out = append(out, cr)
	}
	return out
}

// soaQianfanUserEndpoints are the models, lower case, that simple-one-api's
// Baidu table (qianfan_model2address.go) maps to "{}": their endpoint is
// the one a qianfan credential's addresss names.
var soaQianfanUserEndpoints = []string{
	"ernie-lite-8k-0725", "ernie-lite-4k-0704", "ernie-lite-4k-0516", "ernie-lite-128k-0419",
	"gemma-2b-it", "mistral-7b-instruct", "linly-chinese-llama-2-7b", "qianfan-chinese-llama-2-7b-32k",
	"linly-chinese-llama-2-13b", "qianfan-chinese-llama-2-13b-v2", "qianfan-llama-2-70b-compressed",
	"qianfan-chinese-llama-2-1.3b", "chatglm3-6b", "chatglm3-6b-32k", "chatglm2-6b-int4", "chatglm2-6b",
	"baichuan2-7b-chat", "baichuan2-13b-chat", "xverse-13b-chat", "disc-medllm", "falcon-7b",
	"rwkv-4-world", "rwkv-4-pile-14b", "rwkv-raven-14b", "openllama-7b", "dolly-12b",
	"mpt-7b-instruct", "mpt-30b-instruct", "oa-pythia-12b-sft-4",
}
