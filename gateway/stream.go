package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	sse "github.com/tmaxmax/go-sse"

	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/quota"
)

// maxEventSize caps one upstream SSE event (a chunk carrying a large tool
// call argument or an image can be big, but not unbounded).
const maxEventSize = 8 << 20

// relayStream relays a streamed answer event by event, flushing each to
// the client as it comes. Until the first event has been written the
// attempt can still fail over; after it, an upstream failure ends the
// stream with an error event, never with a silent truncation.
func (g *Gateway) relayStream(c echo.Context, req *request, resp *http.Response, actx context.Context,
	attemptTimer *time.Timer, cancel context.CancelCauseFunc, cred *credential, r *attemptResult) outcome {
	ctx := c.Request().Context()
	w := c.Response()
	var (
		committed, done bool
		chunks          int64
		usage           *usage
		idle            *time.Timer
		readErr         error
		errEvent        string // an error the upstream sent as an event
		writeErr        error
	)
	defer func() {
		if idle != nil {
			idle.Stop()
		}
	}()

	for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: maxEventSize}) {
		if err != nil {
			readErr = err
			break
		}
		if ev.Data == "" {
			continue
		}
		if isErrorPayload(ev.Data) {
			errEvent = ev.Data
			break
		}
		if !committed {
			attemptTimer.Stop()
			idle = time.AfterFunc(cred.ch.idleTimeout, func() { cancel(errStreamIdle) })
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
			committed = true
			callOf(c).ttfb = time.Since(callOf(c).start)
		} else {
			idle.Reset(cred.ch.idleTimeout)
		}
		if ev.Data == "[DONE]" {
			done = true
			break
		}
		if u, usageOnly := scanUsage(ev.Data); u != nil {
			usage = u
			if usageOnly && !req.includeUsage {
				continue // Sluice asked for it to settle quotas; the client did not
			}
		}
		chunks++
		if writeErr = writeEvent(w, ev); writeErr != nil {
			break
		}
		w.Flush()
	}

	used := req.prompt + chunks // about one token per chunk, when the upstream reports no usage
	if usage != nil {
		used = usage.total(used)
	}
	if !committed {
		r.used = 0
		switch {
		case ctx.Err() != nil || readErr != nil:
			return r.transportFailure(ctx, actx, orEOF(readErr))
		case errEvent != "":
			r.breakerErr = errors.New("upstream stream began with an error event")
			return outcome{retry: true, err: fmt.Errorf("%w: the upstream stream began with an error: %s", ErrUpstream, upstreamMessage(redact([]byte(errEvent), cred.key)))}
		}
		r.breakerErr = io.ErrUnexpectedEOF
		return outcome{retry: true, err: fmt.Errorf("%w: the upstream stream ended before its first event", ErrUpstream)}
	}

	r.used = used
	if done {
		r.breakerErr = nil
		if _, err := io.WriteString(w, "data: [DONE]\n\n"); err != nil {
			return outcome{committed: true, err: fmt.Errorf("%w: %v", ErrClientClosed, err)}
		}
		w.Flush()
		return outcome{committed: true}
	}

	// The stream broke after its first byte reached the client.
	if ctx.Err() != nil || writeErr != nil {
		if errors.Is(context.Cause(ctx), ErrDraining) {
			r.breakerErr = breaker.ErrNotCounted
			_, _ = w.Write(errorEvent("the server is shutting down and could not finish this stream", "shutting_down"))
			w.Flush()
			return outcome{committed: true, err: ErrDraining}
		}
		r.breakerErr = context.Canceled
		return outcome{committed: true, err: ErrClientClosed}
	}
	var msg string
	switch {
	case errEvent != "":
		msg = "the upstream sent an error: " + upstreamMessage(redact([]byte(errEvent), cred.key))
	case errors.Is(context.Cause(actx), errStreamIdle):
		msg = errStreamIdle.Error()
	case readErr != nil:
		msg = "the upstream connection failed: " + transportMessage(readErr)
	default:
		msg = "the upstream closed the stream before it finished"
	}
	r.breakerErr = errors.New(msg)
	_, _ = w.Write(errorEvent("stream interrupted: "+msg, "upstream_stream_error"))
	w.Flush()
	return outcome{committed: true, err: fmt.Errorf("%w: stream interrupted: %s", ErrUpstream, msg)}
}

func orEOF(err error) error {
	if err == nil {
		return io.ErrUnexpectedEOF
	}
	return err
}

// writeEvent writes one SSE event.
func writeEvent(w io.Writer, ev sse.Event) error {
	var b strings.Builder
	b.Grow(len(ev.Data) + 16)
	if ev.Type != "" {
		b.WriteString("event: ")
		b.WriteString(ev.Type)
		b.WriteByte('\n')
	}
	b.WriteString("data: ")
	b.WriteString(strings.ReplaceAll(ev.Data, "\n", "\ndata: "))
	b.WriteString("\n\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// isErrorPayload reports whether an event carries an error object instead
// of a chunk.
func isErrorPayload(data string) bool {
	return strings.HasPrefix(strings.TrimLeft(data, " \t\r\n"), `{"error"`)
}

// usage is the token usage an upstream reports.
type usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// total returns the tokens used, or fallback when the upstream reported
// none.
func (u *usage) total(fallback int64) int64 {
	switch {
	case u == nil:
		return fallback
	case u.TotalTokens > 0:
		return u.TotalTokens
	case u.PromptTokens+u.CompletionTokens > 0:
		return u.PromptTokens + u.CompletionTokens
	}
	return fallback
}

// scanUsage finds the usage of a chunk, cheaply skipping chunks without
// one. usageOnly is true for the final chunk that carries only usage.
func scanUsage(data string) (u *usage, usageOnly bool) {
	i := strings.Index(data, `"usage"`)
	if i < 0 {
		return nil, false
	}
	if rest := strings.TrimLeft(data[i+len(`"usage"`):], " \t\r\n:"); strings.HasPrefix(rest, "null") {
		return nil, false
	}
	var chunk struct {
		Choices []json.RawMessage `json:"choices"`
		Usage   *usage            `json:"usage"`
	}
	if json.Unmarshal([]byte(data), &chunk) != nil {
		return nil, false
	}
	return chunk.Usage, chunk.Usage != nil && len(chunk.Choices) == 0
}

// usageOf reads the usage of a complete answer.
type usageOf struct {
	Usage *usage `json:"usage"`
}

func (u *usageOf) parse(data []byte) error { return json.Unmarshal(data, u) }

func (u *usageOf) total(fallback int64) int64 { return u.Usage.total(fallback) }

// upstreamRefused handles a non-2xx upstream answer, before anything
// reached the client: 429 cools the credential down; 401/403 (a bad
// credential), 404, 408 and 5xx count against its breaker and fail over;
// other 4xx are the client's own error and are passed on as they are.
func (g *Gateway) upstreamRefused(ctx context.Context, resp *http.Response, adm *admitted, r *attemptResult) outcome {
	cred := adm.cand.cred
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	body = redact(body, cred.key)
	status := resp.StatusCode
	r.used = 0
	switch {
	case status == http.StatusTooManyRequests:
		cool := g.cooldownFor(resp.Header)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := g.limiter.Cooldown(cctx, cred.id, cool); err != nil {
			g.log.WarnContext(ctx, "cool-down failed", "credential", cred.id, "error", err.Error())
		}
		r.breakerErr = breaker.ErrNotCounted
		d := quota.Decision{Scope: quota.ScopeCredential, Reason: quota.ReasonCooldown, RetryAfter: cool}
		return outcome{retry: true, err: &refusal{d: d, err: fmt.Errorf("%w: the upstream rate-limited credential %s; retry after %s", ErrRateLimited, cred.id, roundUp(cool))}}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		r.breakerErr = fmt.Errorf("upstream rejected the credential (%d)", status)
		return outcome{retry: true, err: fmt.Errorf("%w: the upstream rejected credential %s (%d)", ErrUpstream, cred.id, status)}
	case status == http.StatusNotFound || status == http.StatusRequestTimeout || status >= 500 || status < 400:
		r.breakerErr = fmt.Errorf("upstream answered %d", status)
		return outcome{retry: true, err: fmt.Errorf("%w: the upstream answered %d: %s", ErrUpstream, status, upstreamMessage(body))}
	}
	r.breakerErr = nil // the upstream is healthy; the request was wrong
	if !json.Valid(body) {
		body, _ = json.Marshal(openAIError{Error: openAIErrorBody{Message: "upstream answered " + strconv.Itoa(status) + ": " + upstreamMessage(body), Type: "invalid_request_error"}})
	}
	return outcome{err: &upstreamError{status: status, header: resp.Header, body: body}}
}

// cooldownFor reads how long an upstream asked to be left alone.
func (g *Gateway) cooldownFor(h http.Header) time.Duration {
	retry := g.cfg.Routing.Retry
	d := retry.Cooldown.D()
	if ms, err := strconv.ParseInt(h.Get("retry-after-ms"), 10, 64); err == nil && ms > 0 {
		d = time.Duration(ms) * time.Millisecond
	} else if v := h.Get("Retry-After"); v != "" {
		if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 {
			d = time.Duration(secs * float64(time.Second))
		} else if t, err := http.ParseTime(v); err == nil && time.Until(t) > 0 {
			d = time.Until(t)
		}
	}
	return min(d, retry.MaxCooldown.D())
}

// upstreamMessage extracts an upstream error's message for our own error,
// falling back to a short excerpt of the body.
func upstreamMessage(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
			return excerpt(obj.Message)
		}
		var s string
		if json.Unmarshal(e.Error, &s) == nil && s != "" {
			return excerpt(s)
		}
	}
	return excerpt(string(bytes.TrimSpace(body)))
}

func excerpt(s string) string {
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// redact removes a credential's secret from an upstream body before it
// goes anywhere else.
func redact(body []byte, key string) []byte {
	if len(key) < 6 || !bytes.Contains(body, []byte(key)) {
		return body
	}
	return bytes.ReplaceAll(body, []byte(key), []byte("[redacted]"))
}
