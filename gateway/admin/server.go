package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Handler serves the /api/ routes. Every route needs an admin token
// ("Authorization: Bearer <token>"); a client key is not one.
func (c *Control) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range []struct {
		pattern string
		h       func(w http.ResponseWriter, r *http.Request, actor string) error
	}{
		{"GET /api/instances", c.instances},
		{"GET /api/overview", c.overview},
		{"GET /api/schema", c.schema},
		{"GET /api/channels", c.channels},
		{"POST /api/channels/test", c.testChannel},
		{"POST /api/channels", c.addChannel},
		{"PUT /api/channels/{name}", c.replaceChannel},
		{"PATCH /api/channels/{name}", c.enableChannel},
		{"DELETE /api/channels/{name}", c.deleteChannel},
		{"PATCH /api/credentials/{id}", c.enableCredential},
		{"POST /api/credentials/{id}/reset", c.resetCredential},
		{"GET /api/clients", c.clients},
		{"POST /api/clients", c.addClient},
		{"PATCH /api/clients/{name}", c.patchClient},
		{"POST /api/clients/{name}/rotate", c.rotateClient},
		{"DELETE /api/clients/{name}", c.deleteClient},
		{"POST /api/reload", c.reload},
		{"GET /api/config", c.config},
		{"GET /api/audit", c.auditLog},
		{"GET /api/usage", c.usage},
	} {
		mux.Handle(r.pattern, c.route(r.h))
	}
	mux.Handle("/api/", c.route(func(http.ResponseWriter, *http.Request, string) error {
		return &apiError{status: http.StatusNotFound, code: "unknown_route", msg: "no such admin route"}
	}))
	return mux
}

// route authenticates an admin request, bounds its body, and answers its
// error in one shape.
func (c *Control) route(h func(w http.ResponseWriter, r *http.Request, actor string) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		actor, err := c.authenticate(r)
		if err == nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			err = h(w, r, actor)
		}
		if err != nil {
			c.writeError(w, err)
		}
	})
}

// maxBody caps an admin request's body.
const maxBody = 1 << 20

// authenticate finds the admin token's name, comparing digests in
// constant time; failures from one address are limited against guessing.
func (c *Control) authenticate(r *http.Request) (string, error) {
	ip := remoteIP(r)
	if wait := c.guard.blocked(ip); wait > 0 {
		return "", &apiError{status: http.StatusTooManyRequests, code: "too_many_attempts",
			msg: "too many failed admin authentications from this address; retry later", retryAfter: wait}
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if strings.EqualFold(scheme, "Bearer") && token != "" {
		if name, ok := c.tokenName(token); ok {
			return name, nil
		}
	} else if name, ok := c.Session(r); ok {
		return name, nil
	}
	c.guard.fail(ip)
	return "", &apiError{status: http.StatusUnauthorized, code: "invalid_admin_token",
		msg: "an admin token is required: send it as 'Authorization: Bearer <admin token>'; a client key is not one"}
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// apiError is an admin request refused: the status, a code, a message,
// and, for an invalid config, every problem with its path.
type apiError struct {
	status     int
	code       string
	msg        string
	problems   []string
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.msg }

// writeError answers an error, never with a secret in it.
func (c *Control) writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	var inv *invalidError
	var re *ReloadError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &inv):
		ae = &apiError{status: http.StatusBadRequest, code: "invalid_config", msg: "the change makes the config invalid", problems: inv.problems}
	case errors.As(err, &re):
		ae = &apiError{status: http.StatusBadRequest, code: "invalid_config", msg: re.Error(), problems: re.Problems}
	case errors.Is(err, ErrConflict):
		ae = &apiError{status: http.StatusConflict, code: "version_conflict", msg: err.Error() + "; read it again and retry"}
	case errors.Is(err, ErrNoSecretKey):
		ae = &apiError{status: http.StatusBadRequest, code: "no_secret_key", msg: err.Error()}
	default:
		ae = &apiError{status: http.StatusInternalServerError, code: "internal_error", msg: "internal error"}
		c.cfg.Logger.Error("admin request failed", "error", c.redactor().String(err.Error()))
	}
	if ae.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(ae.retryAfter.Seconds())+1))
	}
	rd := c.redactor()
	body := map[string]any{"message": rd.String(ae.msg), "type": "admin_error", "code": ae.code}
	if len(ae.problems) > 0 {
		problems := make([]string, len(ae.problems))
		for i, p := range ae.problems {
			problems[i] = rd.String(p)
		}
		body["problems"] = problems
	}
	writeJSON(w, ae.status, map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// decode reads a JSON request body strictly: an unknown field is an error
// naming it.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: "the request body is empty; send a JSON object"}
		}
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &apiError{status: http.StatusRequestEntityTooLarge, code: "request_too_large", msg: fmt.Sprintf("the limit is %d bytes", tooLarge.Limit)}
		}
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: "invalid JSON body: " + err.Error()}
	}
	return nil
}

// ifMatch reads the version a write is based on (If-Match), or -1.
func ifMatch(r *http.Request) (int64, error) {
	v := strings.Trim(strings.TrimPrefix(strings.TrimSpace(r.Header.Get("If-Match")), "W/"), `"`)
	if v == "" || v == "*" {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: "If-Match: want the version a change is based on, as GET returns it in ETag"}
	}
	return n, nil
}

// etag sets the ETag of an answer to the overlay's version.
func etag(w http.ResponseWriter, version int64) {
	w.Header().Set("ETag", `"`+strconv.FormatInt(version, 10)+`"`)
}

// guard limits failed admin authentications per address: after
// guardFailures in guardWindow, an address is refused until the window
// ends. It remembers at most guardMax addresses.
type guard struct {
	now func() time.Time

	mu    sync.Mutex
	fails map[string]*attempts
}

type attempts struct {
	n     int
	start time.Time
}

const (
	guardFailures = 10
	guardWindow   = time.Minute
	guardMax      = 10000
)

func newGuard(now func() time.Time) *guard { return &guard{now: now, fails: map[string]*attempts{}} }

// blocked returns how long an address is still refused (0: it is not).
func (g *guard) blocked(ip string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.fails[ip]
	if a == nil || a.n < guardFailures {
		return 0
	}
	left := a.start.Add(guardWindow).Sub(g.now())
	if left <= 0 {
		delete(g.fails, ip)
		return 0
	}
	return left
}

// fail counts a failed authentication.
func (g *guard) fail(ip string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	a := g.fails[ip]
	if a == nil || now.Sub(a.start) > guardWindow {
		if len(g.fails) >= guardMax {
			for k, old := range g.fails {
				if now.Sub(old.start) > guardWindow {
					delete(g.fails, k)
				}
			}
		}
		if len(g.fails) >= guardMax {
			return // full of live entries: count no new address
		}
		a = &attempts{start: now}
		g.fails[ip] = a
	}
	a.n++
}

// ctx bounds an admin request's work.
func ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 30*time.Second)
}
