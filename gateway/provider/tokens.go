package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// Some upstreams do not take a credential's secrets on each call but an
// access token issued for them: Qianfan (OAuth client credentials), Vertex
// AI (a service account's signed JWT), Volcengine Ark with access keys (an
// API key issued by its control plane). Tokens live for minutes to days;
// fetching one per call would double every call's latency and hit the
// issuer's own rate limits, so adapters ask a Tokens cache, which the
// gateway shares across the cluster through Redis when it has one.

// FetchToken asks the issuer for a new token. ttl is how long the issuer
// says it lives.
type FetchToken func(ctx context.Context) (token string, ttl time.Duration, err error)

// Tokens caches access tokens by credential ID.
type Tokens interface {
	// Token returns the credential's cached token, or fetches a new one
	// with fetch: one fetch per credential at a time, in the process and,
	// when the cache is shared, in the cluster.
	Token(ctx context.Context, credentialID string, fetch FetchToken) (string, error)
	// Revoke drops token, which the upstream refused, when it is still
	// the cached one; the next Token fetches a new one.
	Revoke(ctx context.Context, credentialID, token string)
}

// TokenAuth is implemented by adapters whose requests carry an access
// token issued for the credential's secrets. When the upstream refuses a
// request's token (it was revoked or expired early), the relay calls
// TokenRefused and, when it returns true, builds the request once more:
// with a fresh token.
type TokenAuth interface {
	// TokenRefused reports whether a refusal (status and body) of req
	// means that its token was not accepted; if so, it has revoked it.
	TokenRefused(ctx context.Context, t Target, req *http.Request, status int, body []byte) bool
}

// token returns the credential's access token for scope ("" when its
// tokens serve every call; Ark's API keys are issued per endpoint): from
// t.Tokens, else fetched for this call alone.
func token(ctx context.Context, t Target, scope string, fetch FetchToken) (string, error) {
	if t.Tokens == nil {
		tok, _, err := fetch(ctx)
		return tok, err
	}
	return t.Tokens.Token(ctx, tokenKey(t, scope), fetch)
}

// revoke drops a refused token from t.Tokens.
func revoke(ctx context.Context, t Target, scope, tok string) {
	if t.Tokens != nil && tok != "" {
		t.Tokens.Revoke(ctx, tokenKey(t, scope), tok)
	}
}

// tokenKey is the cache key of a credential's token for scope: its ID,
// a fingerprint of what the token was issued for, and the scope. A
// credential whose secrets, token URL, host, project or region change
// under the same ID (a reload, credentials reordered) never gets a token
// issued for the old ones.
func tokenKey(t Target, scope string) string {
	key := t.CredentialID + "~" + tokenFingerprint(t)
	if scope != "" {
		key += "/" + scope
	}
	return key
}

// tokenFingerprint is a one-way digest of what a token is issued for:
// 64 bits of SHA-256, which says whether two credentials are the same
// without saying anything of their secrets.
func tokenFingerprint(t Target) string {
	h := sha256.New()
	for _, part := range []string{string(t.Spec.API), t.Key, t.SecretKey, tokenURL(t), t.BaseURL, t.Project, t.Region} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// tokenURL is where t's tokens come from: the channel's token_url, else
// the Spec's default.
func tokenURL(t Target) string {
	if t.TokenURL != "" {
		return t.TokenURL
	}
	return t.Spec.TokenURL
}
