package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluice-gateway/sluice/gateway/ingress"
	"github.com/sluice-gateway/sluice/quota"
)

// Errors a request can end with. Each maps to one HTTP status and one
// OpenAI error type and code in httpError; handlers wrap them with %w and
// a lowercase phrase saying what went wrong.
var (
	ErrUnauthorized     = errors.New("invalid API key")
	ErrModelNotAllowed  = errors.New("model not allowed for this API key")
	ErrModelNotFound    = errors.New("model not found")
	ErrBadRequest       = errors.New("invalid request")
	ErrBodyTooLarge     = errors.New("request body too large")
	ErrMediaType        = errors.New("unsupported content type")
	ErrRateLimited      = errors.New("rate limit reached")
	ErrNoUpstream       = errors.New("no upstream credential available")
	ErrUpstream         = errors.New("upstream failed")
	ErrUpstreamTimeout  = errors.New("upstream timed out")
	ErrQuotaUnavailable = errors.New("quota backend unavailable")
	ErrDraining         = errors.New("server is shutting down")
	ErrBudgetExceeded   = errors.New("budget exceeded")
	ErrServerBusy       = errors.New("server busy")
	ErrBodyTimeout      = errors.New("request body timed out")
	ErrNotFound         = errors.New("not found")
	ErrMethodNotAllowed = errors.New("method not allowed")
)

// errorKind is how one sentinel error is shown to API clients.
type errorKind struct {
	status int
	typ    string // OpenAI error "type"
	code   string // OpenAI error "code"
}

var errorKinds = []struct {
	err  error
	kind errorKind
}{
	{ErrUnauthorized, errorKind{http.StatusUnauthorized, "invalid_request_error", "invalid_api_key"}},
	{ErrModelNotAllowed, errorKind{http.StatusForbidden, "invalid_request_error", "model_not_allowed"}},
	{ErrModelNotFound, errorKind{http.StatusNotFound, "invalid_request_error", "model_not_found"}},
	{ErrBadRequest, errorKind{http.StatusBadRequest, "invalid_request_error", "invalid_request"}},
	{ErrBodyTooLarge, errorKind{http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large"}},
	{ErrMediaType, errorKind{http.StatusUnsupportedMediaType, "invalid_request_error", "unsupported_media_type"}},
	{ErrRateLimited, errorKind{http.StatusTooManyRequests, "requests", "rate_limit_exceeded"}},
	{ErrBudgetExceeded, errorKind{http.StatusTooManyRequests, "insufficient_quota", "budget_exceeded"}},
	{ErrNoUpstream, errorKind{http.StatusServiceUnavailable, "server_error", "no_upstream_available"}},
	{ErrUpstreamTimeout, errorKind{http.StatusGatewayTimeout, "server_error", "upstream_timeout"}},
	{ErrUpstream, errorKind{http.StatusBadGateway, "server_error", "upstream_error"}},
	{ErrQuotaUnavailable, errorKind{http.StatusServiceUnavailable, "server_error", "quota_unavailable"}},
	{ErrDraining, errorKind{http.StatusServiceUnavailable, "server_error", "shutting_down"}},
	{ErrServerBusy, errorKind{http.StatusServiceUnavailable, "server_error", "server_busy"}},
	{ErrBodyTimeout, errorKind{http.StatusRequestTimeout, "invalid_request_error", "request_timeout"}},
	{ErrClientClosed, errorKind{499, "invalid_request_error", "client_closed_request"}},
	{ErrNotFound, errorKind{http.StatusNotFound, "invalid_request_error", "unknown_url"}},
	{ErrMethodNotAllowed, errorKind{http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed"}},
}

// paramError names the request parameter at fault.
type paramError struct {
	param string
	err   error
}

func (e *paramError) Error() string { return e.err.Error() }
func (e *paramError) Unwrap() error { return e.err }

func badParam(param, format string, args ...any) error {
	return &paramError{param: param, err: fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, args...)...)}
}

// refusal is a 429 (or 503) decided by the quota, carrying the decision
// that becomes the rate-limit headers.
type refusal struct {
	d   quota.Decision
	err error
}

func (e *refusal) Error() string { return e.err.Error() }
func (e *refusal) Unwrap() error { return e.err }

// upstreamError is an upstream answer passed on to the client as it was:
// an error that is the client's own (400, 404 on a bad parameter, 422).
type upstreamError struct {
	status int
	header http.Header
	body   []byte
	native bool // body is in the client's own API, not OpenAI's
}

func (e *upstreamError) Error() string { return "upstream answered " + strconv.Itoa(e.status) }

// openAIError is the body of every error response.
type openAIError struct {
	Error openAIErrorBody `json:"error"`
}

type openAIErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// httpError is the echo HTTPErrorHandler: the one place where errors
// become HTTP responses.
func (g *Gateway) httpError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	if unreadBody(c) {
		// Answer at once and close: the server would otherwise read the
		// rest of the body, as slowly as the client sends it, before
		// answering or after.
		c.Response().Header().Set("Connection", "close")
		_ = http.NewResponseController(c.Response()).SetReadDeadline(time.Now())
	}
	codec := callOf(c).codec
	var up *upstreamError
	if errors.As(err, &up) {
		passOn(c, codec, up)
		return
	}
	err = fromEcho(c, err)
	kind := kindOf(err)
	body := openAIErrorBody{Message: err.Error(), Type: kind.typ, Code: &kind.code}
	if kind.status == http.StatusInternalServerError {
		g.log.ErrorContext(c.Request().Context(), "internal error", slog.String("error", err.Error()))
		body.Message = "internal error"
	}
	var pe *paramError
	if errors.As(err, &pe) {
		body.Param = &pe.param
	}
	var rf *refusal
	if errors.As(err, &rf) {
		setRateLimitHeaders(c.Response().Header(), rf.d)
	}
	if kind.status == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	}
	if codec != nil {
		_ = c.Blob(kind.status, "application/json", clientErrorBody(codec, kind.status, body))
		return
	}
	_ = c.JSON(kind.status, openAIError{Error: body})
}

// passOn answers with an upstream's error, in the client's API.
func passOn(c echo.Context, codec ingress.Codec, up *upstreamError) {
	if v := up.header.Get("Retry-After"); v != "" {
		c.Response().Header().Set("Retry-After", v)
	}
	body := up.body
	if e, ok := openAIErrorOf(body); ok && codec != nil && !up.native {
		body = clientErrorBody(codec, up.status, e)
	}
	_ = c.Blob(up.status, "application/json", body)
}

// fromEcho turns echo's own errors (no route, no such method) into ours.
func fromEcho(c echo.Context, err error) error {
	var he *echo.HTTPError
	if !errors.As(err, &he) {
		return err
	}
	switch he.Code {
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s %s", ErrNotFound, excerpt(c.Request().Method), excerpt(c.Request().URL.Path))
	case http.StatusMethodNotAllowed:
		return fmt.Errorf("%w: %s %s", ErrMethodNotAllowed, excerpt(c.Request().Method), excerpt(c.Request().URL.Path))
	case http.StatusRequestEntityTooLarge:
		return ErrBodyTooLarge
	}
	return fmt.Errorf("%w: %v", ErrBadRequest, he.Message)
}

// kindOf finds how an error is shown: an internal error unless it wraps
// one of the sentinels.
func kindOf(err error) errorKind {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return errorKind{http.StatusInternalServerError, "server_error", "internal_error"}
}

// setRateLimitHeaders writes OpenAI's x-ratelimit-* headers and, on a
// refusal, Retry-After.
func setRateLimitHeaders(h http.Header, d quota.Decision) {
	// Every answer carries these: their names are written canonical
	// already and their values share one allocation.
	meters := [...]quota.Meter{d.Requests, d.Tokens}
	vals := make([]string, 0, 3*len(meters))
	for i, m := range meters {
		if m.Limit == 0 {
			continue
		}
		vals = append(vals, strconv.FormatInt(m.Limit, 10), strconv.FormatInt(m.Remaining, 10), m.Reset.Round(1e6).String())
		n := len(vals)
		for j, key := range rateLimitHeaders[i] {
			h[key] = vals[n-3+j : n-2+j : n-2+j]
		}
	}
	if d.Mode != "" {
		// The shared quota store is unreachable: say which policy decided.
		h.Set("X-Sluice-Quota-Mode", d.Mode)
	}
	if !d.Allowed && d.RetryAfter > 0 {
		secs := int64((d.RetryAfter + 999_999_999) / 1e9)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
		h.Set("retry-after-ms", strconv.FormatInt(d.RetryAfter.Milliseconds()+1, 10))
	}
}

// rateLimitHeaders are the canonical names of the limit, remaining and
// reset headers of requests and of tokens, as OpenAI names them.
var rateLimitHeaders = [2][3]string{
	{"X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests"},
	{"X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens"},
}

// errorEvent is the SSE event that ends a stream that failed after its
// first byte reached the client.
func errorEvent(msg, code string) []byte {
	body, _ := json.Marshal(openAIError{Error: openAIErrorBody{Message: msg, Type: "server_error", Code: &code}})
	var b bytes.Buffer
	b.WriteString("data: ")
	b.Write(body)
	b.WriteString("\n\n")
	return b.Bytes()
}

// redactedError hides the config's secrets in an error's message, keeping
// what it wraps for errors.Is and errors.As. Every error a request ends
// with goes through it before it is answered or logged.
func (g *Gateway) redactedError(c echo.Context, err error) error {
	st := stateOf(c)
	if st == nil {
		st = g.current()
	}
	msg := err.Error()
	if safe := st.redactor.String(msg); safe != msg {
		return &redactedErr{msg: safe, err: err}
	}
	return err
}

type redactedErr struct {
	msg string
	err error
}

func (e *redactedErr) Error() string { return e.msg }
func (e *redactedErr) Unwrap() error { return e.err }
