package gateway

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/quota"
)

// channel is a configured channel, ready to relay.
type channel struct {
	name        string
	spec        provider.Spec
	adapter     provider.Adapter
	client      *http.Client
	models      []string
	modelMap    map[string]string
	priority    int
	timeout     time.Duration
	idleTimeout time.Duration
	params      *params
	// nativeParams are params in the channel's own API, for bodies relayed
	// natively (Anthropic Messages to claude); nil when there are none.
	nativeParams *params
	headers      map[string]string
	apiVersion   string
	maxTokens    int64
	pricing      map[string]config.Price // the channel's own prices, over the config's
	tokenURL     string                  // where the native API's access tokens come from, when not the default
	tokens       provider.Tokens         // the access tokens of its credentials
}

// credential is one upstream key, ready for routing.
type credential struct {
	id      string
	ch      *channel
	spec    provider.Spec    // the channel's, or the native API a credential's fields select
	adapter provider.Adapter // speaks spec's API
	key     string           // the upstream secret: only ever put in upstream requests
	baseURL string
	appID   string // iFlytek Spark's WebSocket API
	secret  string // iFlytek Spark's api_secret: only ever used to sign upstream requests
	// secretKey signs or authorizes a cloud provider's native API (with
	// key as its ID); only ever used for upstream requests and tokens.
	secretKey       string
	region, project string
	weight          int
	limit           quota.Limit
	pool            string      // the channel, when it has shared limits or budgets
	shared          quota.Limit // the channel's shared limits and budgets
	wait            time.Duration

	inflight atomic.Int64 // requests in flight on this instance
}

// target resolves the credential for one attempt at a model.
func (c *credential) target(upstreamModel string) provider.Target {
	return provider.Target{
		Spec: c.spec, BaseURL: c.baseURL, Key: c.key, APIVersion: c.ch.apiVersion,
		Model: upstreamModel, Headers: c.ch.headers, MaxTokens: c.ch.maxTokens,
		AppID: c.appID, APISecret: c.secret,
		SecretKey: c.secretKey, Region: c.region, Project: c.project, TokenURL: c.ch.tokenURL,
		CredentialID: c.id, Tokens: c.ch.tokens, Client: c.ch.client,
	}
}

// candidate is a credential considered for a request, with the model it
// would serve (by the client's name for it).
type candidate struct {
	cred  *credential
	model string
}

// upstreamModel is the upstream's name for the candidate's model.
func (c candidate) upstreamModel() string {
	if m, ok := c.cred.ch.modelMap[c.model]; ok {
		return m
	}
	return c.model
}

// router maps requested model names to candidate credentials. Every
// name is looked up by its config.ModelKey, so that redirects, groups,
// "auto", client keys' model lists and routing agree on what a name
// means; each candidate keeps its channel's own spelling of the model.
type router struct {
	byModel  map[string][]candidate // by model key: enabled credentials, with their channel's name for it
	all      []*credential          // every enabled credential
	groups   map[string][]string    // by group key: member names
	redirect map[string]string      // by model key
	names    map[string]string      // model and group keys → the name as configured
	models   []string               // served models and groups, sorted, for /v1/models
	strategy strategy
}

func newRouter(cfg *config.Config, channels []*channel, creds []*credential, s strategy) *router {
	r := &router{
		byModel:  make(map[string][]candidate),
		groups:   make(map[string][]string),
		redirect: make(map[string]string),
		names:    make(map[string]string),
		strategy: s,
	}
	for _, c := range creds {
		r.all = append(r.all, c)
		for _, m := range c.ch.models {
			k := config.ModelKey(m)
			r.byModel[k] = append(r.byModel[k], candidate{cred: c, model: m})
			if _, ok := r.names[k]; !ok {
				r.names[k] = m
			}
		}
	}
	for g, members := range cfg.ModelGroups {
		r.groups[config.ModelKey(g)] = members
		r.names[config.ModelKey(g)] = g
	}
	for from, to := range cfg.ModelRedirect {
		r.redirect[config.ModelKey(from)] = to
	}
	for _, name := range r.names {
		r.models = append(r.models, name)
	}
	slices.Sort(r.models)
	return r
}

// label is the name under which a requested model is recorded in
// metrics: the configured name it routes by, or "unknown". A label never
// comes from request text, so clients cannot grow the label space.
func (r *router) label(requested string) string {
	k := config.ModelKey(requested)
	switch name, ok := r.names[k]; {
	case ok:
		return name
	case config.IsAnyModel(k):
		return k
	}
	return unknownModel
}

// unknownModel labels every model no route serves.
const unknownModel = "unknown"

// resolve returns the candidates for a requested model, ordered by
// priority tier and strategy. It applies model_redirect, then expands
// groups and the "any model" names.
func (r *router) resolve(requested string) ([]candidate, error) {
	name := requested
	if to, ok := r.redirect[config.ModelKey(name)]; ok {
		name = to
	} else if to, ok := r.redirect["all"]; ok {
		name = to
	}

	var cands []candidate
	key := config.ModelKey(name)
	switch members, isGroup := r.groups[key]; {
	case config.IsAnyModel(key):
		for _, c := range r.all {
			cands = append(cands, candidate{cred: c, model: c.ch.models[rand.IntN(len(c.ch.models))]})
		}
	case isGroup:
		seen := make(map[*credential]bool)
		for _, m := range members {
			for _, c := range r.byModel[config.ModelKey(m)] {
				if !seen[c.cred] {
					seen[c.cred] = true
					cands = append(cands, c)
				}
			}
		}
	default:
		cands = slices.Clone(r.byModel[key])
	}
	if len(cands) == 0 {
		if key != config.ModelKey(requested) {
			return nil, fmt.Errorf("%w: %q (redirected to %q) is not served by any enabled channel", ErrModelNotFound, requested, name)
		}
		return nil, fmt.Errorf("%w: the model %q does not exist or is not served by any enabled channel", ErrModelNotFound, requested)
	}
	orderTiers(r.strategy, key, cands)
	return cands, nil
}

// listModels returns the model names a client may see.
func (r *router) listModels(cl *client) []string {
	var out []string
	for _, m := range r.models {
		if cl.allows(m) {
			out = append(out, m)
		}
	}
	return out
}

// promote moves the candidate with credential id to the front, keeping
// the others in order. It reports whether id was among the candidates.
func promote(cands []candidate, id string) bool {
	i := slices.IndexFunc(cands, func(c candidate) bool { return c.cred.id == id })
	if i < 0 {
		return false
	}
	c := cands[i]
	copy(cands[1:i+1], cands[:i])
	cands[0] = c
	return true
}

// ownedBy is the "owned_by" of a model in /v1/models.
func ownedBy(creds []*credential, model string) string {
	for _, c := range creds {
		if slices.Contains(c.ch.models, model) {
			return c.spec.Type
		}
	}
	return "sluice"
}
