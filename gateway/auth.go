package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/quota"
)

// client is an authenticated caller.
type client struct {
	name   string
	models []string // nil: every model
	limit  quota.Limit
	wait   time.Duration // how long a request may wait for the client's quota
	digest [32]byte      // SHA-256 of the key
}

// anonymous is the caller when no client keys are configured.
var anonymous = &client{name: "anonymous"}

// allows reports whether the client may request a model name ("auto"
// and "random" in any case, as routing reads them).
func (c *client) allows(model string) bool {
	if c.models == nil || slices.Contains(c.models, model) {
		return true
	}
	return config.IsAnyModel(model) && slices.ContainsFunc(c.models, func(m string) bool { return strings.EqualFold(m, model) })
}

// clients authenticates client keys. Keys are kept only as SHA-256
// digests, looked up by digest and compared in constant time.
type clients struct {
	byDigest map[[32]byte]*client
}

func newClients(cfg []config.Client) *clients {
	if len(cfg) == 0 {
		return &clients{}
	}
	cs := &clients{byDigest: make(map[[32]byte]*client, len(cfg))}
	for _, c := range cfg {
		cl := &client{name: c.Name, limit: quotaLimit(c.Limits), wait: c.Limits.WaitTimeout.D(), digest: sha256.Sum256([]byte(c.Key))}
		if len(c.Models) > 0 && !slices.Contains(c.Models, "*") {
			cl.models = slices.Clone(c.Models)
		}
		cs.byDigest[cl.digest] = cl
	}
	return cs
}

// open reports whether the gateway serves without authentication.
func (cs *clients) open() bool { return cs.byDigest == nil }

// authenticate finds the client of a request from its Authorization
// ("Bearer <key>") or x-api-key header.
func (cs *clients) authenticate(h http.Header) (*client, error) {
	if cs.open() {
		return anonymous, nil
	}
	key := presentedKey(h)
	if key == "" {
		return nil, fmt.Errorf("%w: no API key provided; send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'", ErrUnauthorized)
	}
	digest := sha256.Sum256([]byte(key))
	// Secrets are never compared byte by byte: the lookup is by digest,
	// and the digests are compared again in constant time.
	cl, ok := cs.byDigest[digest]
	if !ok || subtle.ConstantTimeCompare(cl.digest[:], digest[:]) != 1 {
		return nil, fmt.Errorf("%w: incorrect API key provided", ErrUnauthorized)
	}
	return cl, nil
}

// presentedKey returns the key a request carries: a bearer token, else
// x-api-key (Anthropic clients), else api-key (Azure clients).
func presentedKey(h http.Header) string {
	scheme, token, ok := strings.Cut(h.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) != "" {
		return strings.TrimSpace(token)
	}
	if k := h.Get("x-api-key"); k != "" {
		return strings.TrimSpace(k)
	}
	return strings.TrimSpace(h.Get("api-key"))
}

// quotaLimit converts configured limits.
func quotaLimit(l config.Limits) quota.Limit {
	return quota.Limit{
		QPS: l.QPS, Burst: l.Burst, RPM: l.RPM, RPD: l.RPD,
		TPM: l.TPM, TPD: l.TPD, Concurrency: l.Concurrency,
	}
}
