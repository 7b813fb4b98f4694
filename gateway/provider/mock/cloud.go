package mock

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The cloud providers' native APIs authenticate in one of two ways, and
// the mock checks both as the providers do:
//
//   - a signature over each request with an account's secret key (Tencent
//     Cloud's TC3-HMAC-SHA256, Volcengine's V4), checked against
//     Config.Accounts;
//   - an access token the provider issued for the account's secrets
//     (Qianfan's OAuth client credentials, Google's JWT bearer grant,
//     the API keys Volcengine Ark's control plane issues), which the mock
//     issues, remembers until it expires, and can revoke (RevokeTokens),
//     so that tests see a refresh.
//
// serveCloud routes these APIs by what is unique to each: Qianfan's
// paths, Tencent Cloud's X-TC-Action header, Volcengine's Action query,
// Google's token path and Vertex AI's resource paths, Dify's
// chat-messages and DashScope's service paths.

// Account is one cloud account key pair: an ID (Qianfan's api_key,
// Tencent's SecretId, Volcengine's AccessKeyId) and its secret.
type Account struct{ ID, Secret string }

// account returns the configured account with this ID.
func (s *Server) account(id string) (Account, bool) {
	for _, a := range s.conf().Accounts {
		if subtle.ConstantTimeCompare([]byte(a.ID), []byte(id)) == 1 {
			return a, true
		}
	}
	return Account{}, false
}

// serveCloud answers a call to one of the cloud providers' native APIs;
// it returns false when the call is for another format.
func (s *Server) serveCloud(w http.ResponseWriter, r *http.Request, c *call) bool {
	p := strings.TrimRight(r.URL.Path, "/")
	switch {
	case strings.HasSuffix(p, "/oauth/2.0/token"):
		s.serveQianfanToken(w, r)
	case strings.Contains(p, "/wenxinworkshop/"):
		s.serveQianfan(w, r, c)
	case r.Header.Get("X-TC-Action") != "":
		s.serveHunyuan(w, r, c)
	case r.URL.Query().Get("Action") != "":
		s.serveVolcengine(w, r, c)
	case p == "/token" || strings.HasSuffix(p, "/oauth2/token"):
		s.serveGoogleToken(w, r)
	case strings.Contains(p, "/projects/") && strings.Contains(p, "/publishers/google/models/"):
		s.serveVertex(w, r, c)
	case strings.HasSuffix(p, "/chat-messages"):
		s.serveDify(w, r, c)
	case strings.Contains(p, "/api/v1/services/"):
		s.serveDashScope(w, r, c)
	default:
		return false
	}
	return true
}

// tokenStore holds the access tokens the mock issued, until they expire
// or are revoked.
type tokenStore struct {
	mu      sync.Mutex
	live    map[string]time.Time // token → expiry
	issued  atomic.Int64
	refused atomic.Int64
}

// issue returns a new token that lives for ttl.
func (t *tokenStore) issue(prefix string, ttl time.Duration) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := prefix + hex.EncodeToString(b)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live == nil {
		t.live = map[string]time.Time{}
	}
	now := time.Now()
	for k, exp := range t.live {
		if now.After(exp) {
			delete(t.live, k)
		}
	}
	t.live[tok] = now.Add(ttl)
	t.issued.Add(1)
	return tok
}

// valid reports whether tok was issued and is still live.
func (t *tokenStore) valid(tok string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.live[tok]
	return ok && time.Now().Before(exp)
}

// check is valid, counting a refusal.
func (t *tokenStore) check(tok string) bool {
	if t.valid(tok) {
		return true
	}
	t.refused.Add(1)
	return false
}

// RevokeTokens invalidates every access token issued so far, as a
// provider does when a key is rotated: calls carrying one are refused
// until the client fetches a new token.
func (s *Server) RevokeTokens() {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	clear(s.tokens.live)
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) string {
	v := r.Header.Get("Authorization")
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}
