package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
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

// idleReader restarts the stream's idle timer whenever the upstream sends
// anything, keep-alive comments included.
type idleReader struct {
	r     io.Reader
	timer *time.Timer // nil until the stream is committed
	idle  time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 && i.timer != nil {
		i.timer.Reset(i.idle)
	}
	return n, err
}

// relayStream relays a streamed answer event by event, flushing each to
// the client as it comes. Until the first event has been written the
// attempt can still fail over; after it, an upstream failure ends the
// stream with an error event, never with a silent truncation.
func (g *Gateway) relayStream(c echo.Context, req *request, resp *http.Response, actx context.Context,
	attemptTimer *time.Timer, cancel context.CancelCauseFunc, adm *admitted, r *attemptResult) outcome {
	ctx := c.Request().Context()
	w := c.Response()
	cred := adm.cand.cred
	body := &idleReader{r: resp.Body, idle: cred.ch.idleTimeout}
	var (
		committed, done, finished bool
		chunks                    int64
		usage                     *usage
		readErr, writeErr         error
		errEvent                  string // an error the upstream sent as an event
	)
	defer func() {
		if body.timer != nil {
			body.timer.Stop()
		}
		if committed {
			deadline(w, 0)
		}
	}()

	for ev, err := range sse.Read(body, &sse.ReadConfig{MaxEventSize: maxEventSize}) {
		if err != nil {
			readErr = err
			break
		}
		if ev.Data == "" {
			continue
		}
		if ev.Type == "error" || isErrorPayload(ev.Data) {
			errEvent = ev.Data
			break
		}
		if !committed {
			// The channel timeout may fire just as the first event
			// arrives: then the attempt timed out, before any byte left.
			if !attemptTimer.Stop() || actx.Err() != nil {
				readErr = context.Cause(actx)
				break
			}
			body.timer = time.AfterFunc(cred.ch.idleTimeout, func() { cancel(errStreamIdle) })
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			g.commit(c, adm)
			w.WriteHeader(http.StatusOK)
			committed = true
			g.metrics.streams.Add(ctx, 1)
			defer g.metrics.streams.Add(ctx, -1)
			callOf(c).ttfb = time.Since(callOf(c).start)
		}
		if ev.Data == "[DONE]" {
			done = true
			break
		}
		r.info.chunk(ev.Data, g.captureContent)
		if u, usageOnly := scanUsage(ev.Data); u != nil {
			usage = u
			if usageOnly && !req.includeUsage {
				continue // Sluice asked for it to settle quotas; the client did not
			}
		}
		finished = finished || hasFinishReason(ev.Data)
		chunks++
		deadline(w, g.writeTimeout(adm))
		if writeErr = writeEvent(w, ev); writeErr != nil {
			break
		}
		w.Flush()
	}

	used := req.prompt + chunks // about one token per chunk, when the upstream reports no usage
	if usage != nil {
		used = usage.total(used)
		r.usage = usage
	}
	if !committed {
		switch {
		case ctx.Err() != nil || readErr != nil:
			return g.transportFailure(ctx, actx, orEOF(readErr), r, false)
		case errEvent != "":
			r.breakerErr, r.used = errors.New("upstream stream began with an error event"), 0
			return outcome{retry: true, err: fmt.Errorf("%w: the upstream stream began with an error: %s", ErrUpstream, upstreamMessage(redact([]byte(errEvent), cred.key)))}
		}
		r.breakerErr, r.used = io.ErrUnexpectedEOF, 0
		return outcome{retry: true, err: fmt.Errorf("%w: the upstream stream ended before its first event", ErrUpstream)}
	}

	r.used = used
	// An upstream that ends cleanly after its last chunk without [DONE]
	// finished its answer all the same.
	if done || (readErr == nil && errEvent == "" && writeErr == nil && ctx.Err() == nil && actx.Err() == nil && finished) {
		r.breakerErr = nil
		deadline(w, g.writeTimeout(adm))
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
			deadline(w, time.Second)
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
		msg = transportMessage(readErr)
	default:
		msg = "the upstream closed the stream before it finished"
	}
	r.breakerErr = errors.New(msg)
	deadline(w, g.writeTimeout(adm))
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

// hasFinishReason reports whether a chunk ends a choice.
func hasFinishReason(data string) bool {
	i := strings.Index(data, `"finish_reason"`)
	if i < 0 {
		return false
	}
	rest := strings.TrimLeft(data[i+len(`"finish_reason"`):], " \t\r\n:")
	return rest != "" && !strings.HasPrefix(rest, "null")
}

// usage is the token usage an upstream reports. Numbers are read as
// floats: some upstreams write 12.0.
type usage struct {
	PromptTokens     float64 `json:"prompt_tokens"`
	CompletionTokens float64 `json:"completion_tokens"`
	TotalTokens      float64 `json:"total_tokens"`
}

// total returns the tokens used, or fallback when the upstream reported
// none.
func (u *usage) total(fallback int64) int64 {
	if u == nil {
		return fallback
	}
	t := u.TotalTokens
	if t <= 0 {
		t = u.PromptTokens + u.CompletionTokens
	}
	if t <= 0 || math.IsNaN(t) || t > math.MaxInt32 {
		return fallback
	}
	return int64(math.Ceil(t))
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

// validJSON reports whether a complete answer is a JSON object.
func validJSON(data []byte) bool {
	data = bytes.TrimSpace(data)
	return len(data) > 0 && data[0] == '{' && json.Valid(data)
}

// answerInfo is what telemetry records of an answer.
type answerInfo struct {
	id, model  string
	finish     []string
	completion string // only when content capture is on
}

// parseAnswer reads a complete answer's usage and telemetry, best effort.
func parseAnswer(data []byte, content bool) (answerInfo, *usage) {
	var a struct {
		ID      string `json:"id"`
		Model   string `json:"model"`
		Choices []struct {
			FinishReason string `json:"finish_reason"`
			Message      struct {
				Content json.RawMessage `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage *usage `json:"usage"`
	}
	if json.Unmarshal(data, &a) != nil {
		return answerInfo{}, nil
	}
	info := answerInfo{id: a.ID, model: a.Model}
	for _, c := range a.Choices {
		if c.FinishReason != "" {
			info.finish = append(info.finish, c.FinishReason)
		}
		if content {
			var text string
			if json.Unmarshal(c.Message.Content, &text) == nil {
				info.completion += text
			}
		}
	}
	return info, a.Usage
}

// chunkInfo adds what one stream chunk says to an answer's telemetry.
func (i *answerInfo) chunk(data string, content bool) {
	first := i.id == "" && i.model == ""
	if !first && !content && !hasFinishReason(data) {
		return
	}
	var c struct {
		ID      string `json:"id"`
		Model   string `json:"model"`
		Choices []struct {
			FinishReason *string `json:"finish_reason"`
			Delta        struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
	}
	if json.Unmarshal([]byte(data), &c) != nil {
		return
	}
	if first {
		i.id, i.model = c.ID, c.Model
	}
	for _, ch := range c.Choices {
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			i.finish = append(i.finish, *ch.FinishReason)
		}
		if content {
			i.completion += ch.Delta.Content
		}
	}
}

// upstreamRefused handles a non-2xx upstream answer, before anything
// reached the client: 429 cools the credential down; 401/403 (a bad
// credential), 404, 408, 3xx and 5xx count against its breaker and fail
// over; other 4xx are the client's own error and are passed on.
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
	// The upstream is healthy; the request was wrong: neither a success
	// nor a failure for the breaker.
	r.breakerErr = breaker.ErrNotCounted
	if !isOpenAIError(body) {
		body, _ = json.Marshal(openAIError{Error: openAIErrorBody{Message: "upstream answered " + strconv.Itoa(status) + ": " + upstreamMessage(body), Type: "invalid_request_error"}})
	}
	return outcome{err: &upstreamError{status: status, header: resp.Header, body: body}}
}

// isOpenAIError reports whether a body is an OpenAI error object.
func isOpenAIError(body []byte) bool {
	var e struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Error != nil && e.Error.Message != ""
}

// cooldownFor reads how long an upstream asked to be left alone, within
// routing.retry.max_cooldown.
func (g *Gateway) cooldownFor(h http.Header) time.Duration {
	retry := g.cfg.Routing.Retry
	limit := retry.MaxCooldown.D()
	d := retry.Cooldown.D()
	if ms, err := strconv.ParseFloat(h.Get("retry-after-ms"), 64); err == nil && ms > 0 {
		d = time.Duration(min(ms, float64(limit.Milliseconds())) * float64(time.Millisecond))
	} else if v := h.Get("Retry-After"); v != "" {
		if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 {
			d = time.Duration(min(secs, limit.Seconds()) * float64(time.Second))
		} else if t, err := http.ParseTime(v); err == nil && time.Until(t) > 0 {
			d = time.Until(t)
		}
	}
	return min(d, limit)
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
