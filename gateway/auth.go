package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/quota"
)

// client is an authenticated caller.
type client struct {
	name   string
	models []string // model keys (config.ModelKey); nil: every model
	limit  quota.Limit
	group  string        // the client's group ("" for none)
	shared quota.Limit   // the group's limits and budgets
	wait   time.Duration // how long a request may wait for the client's quota
	digest [32]byte      // SHA-256 of the key

	// slots holds a place for each of the client's requests in flight on
	// this instance, before its body is read: the cluster admits at most
	// limit.Concurrency, so more here would be refused anyway. Nil
	// without a concurrency limit.
	slots chan struct{}
	// refused remembers the client's last refusal by a request rate
	// (qps, rpm, rpd) until it may pass again, so that the next requests
	// are refused before their body is read.
	refused atomic.Pointer[remembered]
}

// remembered is a refusal kept until it may pass.
type remembered struct {
	until time.Time
	d     quota.Decision
}

// enter holds the client's place for one request, before its body is
// read: it refuses at once when the client is known to be over a request
// rate, or waits (within the client's wait_timeout) for one of its
// concurrency slots on this instance.
func (c *client) enter(ctx context.Context) (leave func(), err error) {
	if rf := c.refused.Load(); rf != nil {
		if left := time.Until(rf.until); left > c.wait {
			d := rf.d
			d.RetryAfter = left
			return nil, &refusal{d: d, err: clientRefusal(c, d)}
		}
	}
	if c.slots == nil {
		return func() {}, nil
	}
	select {
	case c.slots <- struct{}{}:
		return func() { <-c.slots }, nil
	default:
	}
	d := quota.Decision{Scope: quota.ScopeClient, Reason: quota.ReasonConcurrency, RetryAfter: time.Second}
	if c.wait <= 0 {
		return nil, &refusal{d: d, err: clientRefusal(c, d)}
	}
	t := time.NewTimer(c.wait)
	defer t.Stop()
	select {
	case c.slots <- struct{}{}:
		return func() { <-c.slots }, nil
	case <-ctx.Done():
		return nil, ErrClientClosed
	case <-t.C:
		return nil, &refusal{d: d, err: clientRefusal(c, d)}
	}
}

// remember keeps a refusal of the client by a request rate until it may
// pass: a refusal by tokens depends on each request's size, and one by
// concurrency on requests ending, so neither is kept.
func (c *client) remember(d quota.Decision) {
	switch d.Reason {
	case quota.ReasonQPS, quota.ReasonRPM, quota.ReasonRPD:
	default:
		return
	}
	if d.Scope != quota.ScopeClient || d.RetryAfter <= 0 {
		return
	}
	kept := quota.Decision{Scope: d.Scope, Reason: d.Reason, Requests: d.Requests, Mode: d.Mode}
	c.refused.Store(&remembered{until: time.Now().Add(d.RetryAfter), d: kept})
}

// anonymous is the caller when no client keys are configured.
var anonymous = &client{name: "anonymous"}

// allows reports whether the client may request a model name, compared
// by config.ModelKey like everything else that reads model names.
func (c *client) allows(model string) bool {
	return c.models == nil || slices.Contains(c.models, config.ModelKey(model))
}

// clients authenticates client keys. Keys are kept only as SHA-256
// digests, looked up by digest and compared in constant time.
type clients struct {
	byDigest map[[32]byte]keyEntry
	now      func() time.Time
}

// keyEntry is one accepted key: a client's current key, or a rotated one
// still accepted until its time.
type keyEntry struct {
	client   *client
	digest   [32]byte
	until    time.Time // zero: no end but the client's own expiry
	disabled bool      // the client's key was revoked
	expires  time.Time // zero: never
}

func newClients(cfg []config.Client, groups []config.Group) *clients {
	if len(cfg) == 0 {
		return &clients{}
	}
	cs := &clients{byDigest: make(map[[32]byte]keyEntry, len(cfg)), now: time.Now}
	for _, c := range cfg {
		cl := &client{name: c.Name, limit: clientLimit(c), wait: c.Limits.WaitTimeout.D()}
		for _, g := range groups {
			if g.Name == c.Group {
				cl.group, cl.shared = g.Name, groupLimit(g)
				cl.wait = max(cl.wait, g.Limits.WaitTimeout.D())
			}
		}
		if n := c.Limits.Concurrency; n > 0 {
			cl.slots = make(chan struct{}, n)
		}
		if len(c.Models) > 0 && !slices.Contains(c.Models, "*") {
			for _, m := range c.Models {
				cl.models = append(cl.models, config.ModelKey(m))
			}
		}
		e := keyEntry{client: cl, disabled: !c.IsEnabled()}
		if c.ExpiresAt != nil {
			e.expires = *c.ExpiresAt
		}
		cl.digest = digestOf(c.Key, c.KeySHA256)
		e.digest = cl.digest
		cs.byDigest[cl.digest] = e
		for _, pk := range c.PreviousKeys {
			prev := e
			prev.digest, prev.until = digestOf("", pk.SHA256), pk.Until
			cs.byDigest[prev.digest] = prev
		}
	}
	return cs
}

// digestOf is the digest of a key given as written or as its hex digest.
func digestOf(key, hexDigest string) [32]byte {
	if key != "" {
		return sha256.Sum256([]byte(key))
	}
	var d [32]byte
	_, _ = hex.Decode(d[:], []byte(strings.ToLower(hexDigest)))
	return d
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
	e, ok := cs.byDigest[digest]
	if !ok || subtle.ConstantTimeCompare(e.digest[:], digest[:]) != 1 {
		return nil, fmt.Errorf("%w: incorrect API key provided", ErrUnauthorized)
	}
	now := cs.now()
	switch {
	case e.disabled:
		return nil, fmt.Errorf("%w: this API key has been disabled", ErrUnauthorized)
	case !e.expires.IsZero() && !now.Before(e.expires):
		return nil, fmt.Errorf("%w: this API key expired at %s", ErrUnauthorized, e.expires.UTC().Format(time.RFC3339))
	case !e.until.IsZero() && !now.Before(e.until):
		return nil, fmt.Errorf("%w: this API key was rotated; its grace period ended at %s", ErrUnauthorized, e.until.UTC().Format(time.RFC3339))
	}
	return e.client, nil
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
