package gateway

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
	"github.com/sluice-gateway/sluice/gateway/redact"
)

// state is everything a Gateway builds from one version of its config:
// channels ready to relay, the enabled credentials, client keys, routes.
// It never changes once built; Apply swaps in a new one.
type state struct {
	cfg           *config.Config
	channels      []*channel
	creds         []*credential // the enabled ones
	clients       *clients
	router        *router
	redactor      *redact.Redactor     // every secret of the config, kept from clients, logs and spans
	nativeFormats map[wire.Format]bool // client APIs that some channel speaks natively
	built         map[[32]byte]built   // each channel by the digest of its config, for the next state
}

// built is a channel with its credentials (enabled or not), in config order.
type built struct {
	ch    *channel
	creds []*credential
}

// newState builds the state of a config. A channel whose config did not
// change since prev is kept as it was, credentials included, so that
// their in-flight counts go on.
func (g *Gateway) newState(cfg *config.Config, prev *state) (*state, error) {
	st := &state{cfg: cfg, redactor: redact.New(cfg.Secrets()...), nativeFormats: map[wire.Format]bool{}, built: map[[32]byte]built{}}
	for i, chc := range cfg.Channels {
		b, err := g.buildChannel(chc, prev)
		if err != nil {
			return nil, fmt.Errorf("channels[%d]: %w", i, err)
		}
		st.built[digest(chc)] = b
		st.channels = append(st.channels, b.ch)
		if tr, ok := b.ch.adapter.(provider.Translator); ok {
			if _, native := b.ch.adapter.(provider.Native); native {
				st.nativeFormats[tr.Format()] = true
			}
		}
		if !chc.IsEnabled() {
			continue
		}
		for j, crc := range chc.Credentials {
			if crc.IsEnabled() {
				st.creds = append(st.creds, b.creds[j])
			}
		}
	}
	st.clients = newClients(cfg.Clients, cfg.Groups)
	st.router = newRouter(cfg, st.channels, st.creds, newStrategy(cfg.Routing.Strategy, g.signals, cfg.Routing.Latency.Explore))
	return st, nil
}

// buildChannel builds a channel and its credentials, or keeps them from
// prev when the channel's config is the same.
func (g *Gateway) buildChannel(chc config.Channel, prev *state) (built, error) {
	if prev != nil {
		if b, ok := prev.built[digest(chc)]; ok {
			return b, nil
		}
	}
	ch, err := g.newChannel(chc)
	if err != nil {
		return built{}, err
	}
	b := built{ch: ch}
	for _, crc := range chc.Credentials {
		b.creds = append(b.creds, newCredential(ch, chc, crc))
	}
	return b, nil
}

// digest identifies a channel's config.
func digest(c config.Channel) [32]byte {
	b, _ := json.Marshal(c)
	return sha256.Sum256(b)
}

// transports are the connection pools to upstreams, kept across states:
// one shared, and one per proxy.
type transports struct {
	shared *http.Transport

	mu      sync.Mutex
	proxied map[string]*http.Transport
}

func newTransports() *transports {
	return &transports{shared: newTransport(""), proxied: map[string]*http.Transport{}}
}

// get returns the transport for a proxy ("" for none).
func (t *transports) get(proxy string) http.RoundTripper {
	if proxy == "" {
		return t.shared
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := t.proxied[proxy]
	if tr == nil {
		tr = newTransport(proxy)
		t.proxied[proxy] = tr
	}
	return tr
}

func (g *Gateway) newChannel(c config.Channel) (*channel, error) {
	spec, _ := provider.Lookup(c.Type)
	adapter, err := provider.For(spec.API)
	if err != nil {
		return nil, err
	}
	p, err := encodeParams(c.Params.Defaults, c.Params.Overrides)
	if err != nil {
		return nil, err
	}
	rt := g.upstream.get(c.Proxy)
	if spec.API == provider.APIMock {
		rt = mock.Transport(mock.New(mockConfig(c.Mock)))
	}
	// Redirects are not followed: an upstream's secret headers (Azure's
	// api-key, channel headers) would go to wherever it points. A 3xx is
	// an upstream failure and fails over.
	client := &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &channel{
		name: c.Name, spec: spec, adapter: adapter, client: client,
		models: c.Models, modelMap: c.ModelMap, priority: c.Priority,
		timeout: c.Timeout.D(), idleTimeout: c.StreamIdleTimeout.D(),
		params: p, nativeParams: p.native(adapter), headers: c.Headers, apiVersion: c.APIVersion, maxTokens: c.MaxTokens,
		pricing: c.Pricing, tokenURL: c.TokenURL, tokens: g.tokens,
	}, nil
}

func newCredential(ch *channel, chc config.Channel, c config.Credential) *credential {
	l := credentialLimits(chc, c)
	cr := &credential{
		id: c.ID, ch: ch, spec: ch.spec, adapter: ch.adapter, key: c.Key, baseURL: or(c.BaseURL, chc.BaseURL),
		weight: chc.Weight * c.Weight, limit: quotaLimit(l), wait: l.WaitTimeout.D(),
		secretKey: c.SecretKey, region: c.Region, project: c.Project,
	}
	if c.SecretKey != "" {
		// A credential with a secret key speaks its type's native API,
		// signed or authorized with the pair.
		cr.spec = ch.spec.ForCredential(true)
		cr.adapter, _ = provider.For(cr.spec.API)
		if sameHost(cr.baseURL, ch.spec.BaseURL) { // the compatible API's host, by default or as written
			cr.baseURL = cr.spec.BaseURL
		}
	}
	if c.AppID != "" {
		// iFlytek Spark credentials with an app_id and api_secret speak
		// its native WebSocket API; the others its OpenAI-compatible one.
		cr.spec = provider.SparkSpec()
		cr.adapter, _ = provider.For(cr.spec.API)
		cr.appID, cr.secret = c.AppID, c.APISecret
		if sameHost(cr.baseURL, ch.spec.BaseURL) { // the HTTP API's host, by default or as written
			cr.baseURL = cr.spec.BaseURL
		}
	}
	if shared := channelLimit(chc); !shared.IsZero() {
		cr.pool, cr.shared = poolName(chc.Name), shared
		cr.wait = max(cr.wait, chc.SharedLimits.WaitTimeout.D())
	}
	return cr
}

// sameHost reports whether two URLs name the same host (and port).
func sameHost(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	return errA == nil && errB == nil && ua.Host != "" && strings.EqualFold(ua.Host, ub.Host)
}

// credentialLimits are a credential's effective limits: its own over its
// channel's, field by field.
func credentialLimits(ch config.Channel, c config.Credential) config.Limits {
	return mergeLimits(ch.Limits, c.Limits)
}

// mergeLimits overrides base with every non-zero field of over.
func mergeLimits(base, over config.Limits) config.Limits {
	base.QPS = or(over.QPS, base.QPS)
	base.Burst = or(over.Burst, base.Burst)
	base.RPM = or(over.RPM, base.RPM)
	base.RPD = or(over.RPD, base.RPD)
	base.TPM = or(over.TPM, base.TPM)
	base.TPD = or(over.TPD, base.TPD)
	base.Concurrency = or(over.Concurrency, base.Concurrency)
	base.WaitTimeout = or(over.WaitTimeout, base.WaitTimeout)
	if len(over.Models) > 0 {
		models := maps.Clone(base.Models)
		if models == nil {
			models = map[string]config.Limits{}
		}
		for m, l := range over.Models {
			models[m] = mergeLimits(models[m], l)
		}
		base.Models = models
	}
	return base
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func mockConfig(m *config.Mock) mock.Config {
	if m == nil {
		return mock.Config{}
	}
	return mock.Config{
		Latency: m.Latency.D(), Jitter: m.Jitter.D(), FailureRate: m.FailureRate, RateLimitRate: m.RateLimitRate,
		StreamChunks: m.StreamChunks, ChunkInterval: m.ChunkInterval.D(), ReplyTokens: m.ReplyTokens,
	}
}

// newTransport returns the transport for upstream calls, through a proxy
// when one is given (validated by config: http, https, socks5, socks5h).
func newTransport(proxy string) *http.Transport {
	t := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if proxy != "" {
		if u, err := url.Parse(proxy); err == nil {
			t.Proxy = http.ProxyURL(u)
		}
	}
	return t
}
