package admin

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/gateway/config"
)

// The dashboard logs in with an admin token once and then carries a
// session cookie: HttpOnly (no script reads it), SameSite=Strict (no other
// site's page sends it), Secure behind TLS, signed with a key derived from
// the token, so that every instance of a cluster accepts it and changing
// the token ends every session. A request with the cookie must also carry
// the dashboard's header (a form of another site cannot set one) and, if
// it names an origin, this one.

// SessionCookie is the dashboard's session cookie.
const SessionCookie = "sluice_admin"

// DashboardHeader must accompany every request a session authenticates.
const DashboardHeader = "X-Sluice-Dashboard"

// sessionTTL is how long a session lasts.
const sessionTTL = 12 * time.Hour

// ErrBadToken is a login with a token that is not an admin token.
var ErrBadToken = errors.New("not an admin token")

// tokens lists the admin tokens with their names.
func (c *Control) tokens() []config.AdminToken {
	a := c.Effective().Admin
	out := []config.AdminToken{}
	if a.Token != "" {
		out = append(out, config.AdminToken{Name: "admin", Token: a.Token})
	}
	return append(out, a.Tokens...)
}

// tokenName finds the name of an admin token, comparing digests in
// constant time.
func (c *Control) tokenName(token string) (string, bool) {
	got := sha256.Sum256([]byte(token))
	for _, t := range c.tokens() {
		want := sha256.Sum256([]byte(t.Token))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			return t.Name, true
		}
	}
	return "", false
}

// Login checks an admin token from address ip and returns the session
// cookie for it. Failed logins count against the address like any failed
// admin authentication.
func (c *Control) Login(r *http.Request, token string) (*http.Cookie, error) {
	ip := remoteIP(r)
	if wait := c.guard.blocked(ip); wait > 0 {
		return nil, &apiError{status: http.StatusTooManyRequests, code: "too_many_attempts", msg: "too many failed attempts; retry later", retryAfter: wait}
	}
	name, ok := c.tokenName(strings.TrimSpace(token))
	if !ok {
		c.guard.fail(ip)
		return nil, ErrBadToken
	}
	expires := c.cfg.Now().Add(sessionTTL)
	value := c.sign(name, expires)
	return &http.Cookie{Name: SessionCookie, Value: value, Path: "/", Expires: expires, MaxAge: int(sessionTTL.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: isTLS(r)}, nil
}

// LogoutCookie is the cookie that ends a session.
func LogoutCookie(r *http.Request) *http.Cookie {
	return &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: isTLS(r)}
}

// isTLS reports whether a request came over TLS, to Sluice or to the proxy
// in front of it.
func isTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// sign makes a session value: the token's name and the expiry, with their
// HMAC under the token's key.
func (c *Control) sign(name string, expires time.Time) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(name)) + "." + strconv.FormatInt(expires.Unix(), 10)
	return payload + "." + hex.EncodeToString(c.mac(name, payload))
}

// mac is a session's signature, keyed by the named token.
func (c *Control) mac(name, payload string) []byte {
	for _, t := range c.tokens() {
		if t.Name == name {
			key := sha256.Sum256([]byte("sluice dashboard session\x00" + t.Token))
			m := hmac.New(sha256.New, key[:])
			m.Write([]byte(payload))
			return m.Sum(nil)
		}
	}
	return nil
}

// Session returns the name of the admin token a request's session cookie
// was made with, if the cookie is valid and the request is one the
// dashboard made (its header, and the same origin).
func (c *Control) Session(r *http.Request) (string, bool) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil || r.Header.Get(DashboardHeader) == "" || !SameOrigin(r) {
		return "", false
	}
	return c.verify(ck.Value)
}

// PageSession is Session for the dashboard's own pages, which a browser
// loads without the header: they only show the shell, and every action
// they take goes through /api/ with it.
func (c *Control) PageSession(r *http.Request) (string, bool) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil {
		return "", false
	}
	return c.verify(ck.Value)
}

// verify checks a session value.
func (c *Control) verify(v string) (string, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return "", false
	}
	nameB, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || c.cfg.Now().Unix() >= exp {
		return "", false
	}
	want := c.mac(string(nameB), parts[0]+"."+parts[1])
	got, err := hex.DecodeString(parts[2])
	if want == nil || err != nil || !hmac.Equal(got, want) {
		return "", false
	}
	return string(nameB), true
}

// SameOrigin reports whether a request is not another site's: its
// Sec-Fetch-Site, when a browser sends one, says same-origin, and its
// Origin, when it names one, is this one. An opaque origin ("null": a
// sandboxed frame, a redirect from elsewhere) is not this one. A client
// that sends neither (curl) is not a browser another site can drive.
func SameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return o != "null" && err == nil && strings.EqualFold(u.Host, r.Host)
}
