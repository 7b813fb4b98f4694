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
	"github.com/sluice-gateway/sluice/gateway/ingress"
	"github.com/sluice-gateway/sluice/gateway/redact"
	"github.com/sluice-gateway/sluice/quota"
)

// maxEventSize caps one upstream SSE event (a chunk carrying a large tool
// call argument or an image can be big, but not unbounded).
const maxEventSize = 8 << 20

// relayStream relays a streamed answer event by event, in the client's
// API, flushing each to the client as it comes. Until the first event
// has been written the attempt can still fail over; after it, an upstream
// failure ends the stream with an error event, never with a silent
// truncation.
func (g *Gateway) relayStream(c echo.Context, req *request, ans *answer, actx context.Context,
	attemptTimer *time.Timer, cancel context.CancelCauseFunc, adm *admitted, r *attemptResult) outcome {
	ctx := c.Request().Context()
	w := c.Response()
	cred := adm.cand.cred
	sink := newSink(req, ans)
	seen := &streamUsage{native: ans.native, content: g.captureContent}
	var (
		committed, done   bool
		idle              *time.Timer
		readErr, writeErr error
		fault             *streamFault
	)
	defer func() {
		if idle != nil {
			idle.Stop()
		}
		if committed {
			deadline(w, 0)
		}
	}()

	for {
		ev, err := ans.events.next()
		if err == io.EOF {
			done = true
			break
		}
		if errors.As(err, &fault) {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		// The channel timeout may fire just as the first event arrives:
		// then the attempt timed out, before any byte left.
		if !committed && (!attemptTimer.Stop() || actx.Err() != nil) {
			readErr = context.Cause(actx)
			break
		}
		// Encoded before anything is committed: a first event that cannot
		// be encoded fails over like any bad start.
		seen.observe(ev, &r.info)
		out, err := sink.event(ev)
		if err != nil {
			fault = &streamFault{msg: "the upstream's stream could not be read: " + err.Error()}
			break
		}
		if !committed {
			idle = time.AfterFunc(cred.ch.idleTimeout, func() { cancel(errStreamIdle) })
			if ans.idle != nil {
				ans.idle.timer, ans.idle.idle = idle, cred.ch.idleTimeout
			}
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
		} else {
			idle.Reset(cred.ch.idleTimeout)
		}
		if len(out) == 0 {
			continue
		}
		deadline(w, g.writeTimeout(adm))
		if _, writeErr = w.Write(out); writeErr != nil {
			break
		}
		w.Flush()
	}

	used := req.prompt + seen.chunks // about one token per chunk, when the upstream reports no usage
	if seen.usage != nil {
		if !done && seen.usage.CompletionTokens < float64(seen.chunks) {
			// Cut short: the counts seen may predate most of the output
			// (Anthropic's message_start says 1 output token).
			u := *seen.usage
			u.CompletionTokens = float64(seen.chunks)
			u.TotalTokens = u.PromptTokens + u.CompletionTokens
			seen.usage = &u
		}
		used = seen.usage.total(used)
		r.usage = seen.usage
	}
	if !committed {
		switch {
		case ctx.Err() != nil || readErr != nil && !errors.Is(readErr, errEndedEarly):
			return g.transportFailure(ctx, actx, orEOF(readErr), r, false)
		case fault != nil:
			r.breakerErr, r.used = errors.New("upstream stream began with an error event"), 0
			return outcome{retry: true, err: fmt.Errorf("%w: the upstream stream began with an error: %s", ErrUpstream, fault.message(g.redactor))}
		}
		r.breakerErr, r.used = io.ErrUnexpectedEOF, 0
		return outcome{retry: true, err: fmt.Errorf("%w: the upstream stream ended before its first event", ErrUpstream)}
	}

	r.used = used
	if done {
		r.breakerErr = nil
		if end := sink.end(); len(end) > 0 {
			deadline(w, g.writeTimeout(adm))
			if _, err := w.Write(end); err != nil {
				return outcome{committed: true, err: fmt.Errorf("%w: %v", ErrClientClosed, err)}
			}
			w.Flush()
		}
		return outcome{committed: true}
	}

	// The stream broke after its first byte reached the client.
	if ctx.Err() != nil || writeErr != nil {
		if errors.Is(context.Cause(ctx), ErrDraining) {
			r.breakerErr = breaker.ErrNotCounted
			deadline(w, time.Second)
			_, _ = w.Write(sink.fail("the server is shutting down and could not finish this stream", "shutting_down"))
			w.Flush()
			return outcome{committed: true, err: ErrDraining}
		}
		r.breakerErr = context.Canceled
		return outcome{committed: true, err: ErrClientClosed}
	}
	var msg string
	switch {
	case fault != nil:
		msg = "the upstream sent an error: " + fault.message(g.redactor)
	case errors.Is(context.Cause(actx), errStreamIdle):
		msg = errStreamIdle.Error()
	case errors.Is(readErr, errEndedEarly):
		msg = errEndedEarly.Error()
	default:
		msg = g.redactor.String(transportMessage(readErr))
	}
	r.breakerErr = errors.New(msg)
	deadline(w, g.writeTimeout(adm))
	_, _ = w.Write(sink.fail("stream interrupted: "+msg, "upstream_stream_error"))
	w.Flush()
	return outcome{committed: true, err: fmt.Errorf("%w: stream interrupted: %s", ErrUpstream, msg)}
}

// message is what a client may be told of a fault: never a secret.
func (f *streamFault) message(r *redact.Redactor) string {
	if f.msg != "" {
		return excerpt(r.String(f.msg))
	}
	return upstreamMessage(r.JSON([]byte(f.data)))
}

// streamSink writes a stream's events in the client's API.
type streamSink interface {
	event(ev sse.Event) ([]byte, error) // what to write for one upstream event (nothing: nil)
	end() []byte                        // after the last event of a complete answer
	fail(msg, code string) []byte       // the end of a stream broken after its first event
}

func newSink(req *request, ans *answer) streamSink {
	switch {
	case req.codec == nil:
		return openAISink{includeUsage: req.includeUsage}
	case ans.native:
		return nativeSink{req}
	}
	return &codecSink{enc: req.codec.NewStream(req.model)}
}

// openAISink writes chunks as they came.
type openAISink struct{ includeUsage bool }

func (s openAISink) event(ev sse.Event) ([]byte, error) {
	if _, usageOnly := scanUsage(ev.Data); usageOnly && !s.includeUsage {
		return nil, nil // Sluice asked for it to settle quotas; the client did not
	}
	return eventBytes(ev), nil
}

func (openAISink) end() []byte                  { return []byte("data: [DONE]\n\n") }
func (openAISink) fail(msg, code string) []byte { return errorEvent(msg, code) }

// nativeSink relays events in the client's own API as they came.
type nativeSink struct{ req *request }

func (nativeSink) event(ev sse.Event) ([]byte, error) { return eventBytes(ev), nil }
func (nativeSink) end() []byte                        { return nil }
func (s nativeSink) fail(msg, code string) []byte {
	return eventBytes(sse.Event{Type: "error", Data: string(s.req.codec.Error(http.StatusBadGateway, "server_error", code, msg))})
}

// codecSink encodes canonical chunks in the client's API.
type codecSink struct{ enc ingress.StreamEncoder }

func (s *codecSink) event(ev sse.Event) ([]byte, error) {
	evs, err := s.enc.Chunk([]byte(ev.Data))
	return ingressEvents(evs), err
}
func (s *codecSink) end() []byte               { return ingressEvents(s.enc.End()) }
func (s *codecSink) fail(msg, _ string) []byte { return ingressEvents(s.enc.Fail(msg)) }

func ingressEvents(evs []ingress.Event) []byte {
	var b []byte
	for _, ev := range evs {
		b = append(b, eventBytes(sse.Event{Type: ev.Type, Data: ev.Data})...)
	}
	return b
}

// streamUsage is what a stream's events say of its usage and answer.
type streamUsage struct {
	native, content bool
	usage           *usage
	chunks          int64
	anthropicSoFar  anthropicUsage // native streams: the counts reported so far
}

func (s *streamUsage) observe(ev sse.Event, info *answerInfo) {
	s.chunks++
	if s.native {
		s.anthropic(ev, info)
		return
	}
	info.chunk(ev.Data, s.content)
	if u, _ := scanUsage(ev.Data); u != nil {
		s.usage = u
	}
}

func orEOF(err error) error {
	if err == nil {
		return io.ErrUnexpectedEOF
	}
	return err
}

// eventBytes encodes one SSE event.
func eventBytes(ev sse.Event) []byte {
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
	return []byte(b.String())
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
func (g *Gateway) upstreamRefused(ctx context.Context, ans *answer, adm *admitted, r *attemptResult) outcome {
	cred := adm.cand.cred
	body, status := ans.errBody, ans.status
	if status == http.StatusBadRequest && !ans.native && rejectsCredential(body) {
		status = http.StatusUnauthorized // Gemini's API_KEY_INVALID is a 400
	}
	r.used = 0
	switch {
	case status == http.StatusTooManyRequests:
		cool := g.cooldownFor(ans.header)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := g.limiter.Cooldown(cctx, cred.id, cool); err != nil {
			g.log.WarnContext(ctx, "cool-down failed", "credential", cred.id, "error", err.Error())
		}
		r.breakerErr = breaker.ErrNotCounted
		d := quota.Decision{Scope: quota.ScopeCredential, Reason: quota.ReasonCooldown, RetryAfter: cool}
		return outcome{retry: true, err: &refusal{d: d, err: fmt.Errorf("%w: the upstream rate-limited credential %s; retry after %s", ErrRateLimited, cred.id, roundUp(cool))}}
	case status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusPaymentRequired:
		// 402: the credential's account is out of credit (DeepSeek's
		// "Insufficient Balance", Anthropic's billing_error).
		r.breakerErr = fmt.Errorf("upstream rejected the credential (%d)", status)
		return outcome{retry: true, err: fmt.Errorf("%w: the upstream rejected credential %s (%d)", ErrUpstream, cred.id, status)}
	case status == http.StatusNotFound || status == http.StatusRequestTimeout || status >= 500 || status < 400:
		r.breakerErr = fmt.Errorf("upstream answered %d", status)
		return outcome{retry: true, err: fmt.Errorf("%w: the upstream answered %d: %s", ErrUpstream, status, upstreamMessage(body))}
	}
	// The upstream is healthy; the request was wrong: neither a success
	// nor a failure for the breaker.
	r.breakerErr = breaker.ErrNotCounted
	switch msg := "upstream answered " + strconv.Itoa(status) + ": " + upstreamMessage(body); {
	case !ans.native && !isOpenAIError(body):
		body, _ = json.Marshal(openAIError{Error: openAIErrorBody{Message: msg, Type: "invalid_request_error"}})
	case ans.native && !isAnthropicError(body):
		// A proxy's HTML page or an empty body, not Anthropic's answer.
		body = ingress.Anthropic.Error(status, "invalid_request_error", "", msg)
	}
	return outcome{err: &upstreamError{status: status, header: ans.header, body: body, native: ans.native}}
}

// rejectsCredential reports whether an OpenAI error body says the
// upstream rejected the credential, whatever its status.
func rejectsCredential(body []byte) bool {
	e, ok := openAIErrorOf(body)
	return ok && (e.Type == "authentication_error" || e.Code != nil && *e.Code == "invalid_api_key")
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

// isAnthropicError reports whether a body is an Anthropic error object.
func isAnthropicError(body []byte) bool {
	var e struct {
		Type  string `json:"type"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Type == "error" && e.Error != nil
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

// anthropic reads an Anthropic Messages event relayed natively.
func (s *streamUsage) anthropic(ev sse.Event, info *answerInfo) {
	switch ev.Type {
	case "message_start":
		var e struct {
			Message struct {
				ID    string         `json:"id"`
				Model string         `json:"model"`
				Usage anthropicUsage `json:"usage"`
			} `json:"message"`
		}
		if json.Unmarshal([]byte(ev.Data), &e) == nil {
			info.id, info.model = e.Message.ID, e.Message.Model
			s.anthropicSoFar = e.Message.Usage
			s.usage = s.anthropicSoFar.canonical()
		}
	case "message_delta":
		var e struct {
			Delta struct {
				StopReason string `json:"stop_reason"`
			} `json:"delta"`
			Usage *anthropicUsage `json:"usage"`
		}
		if json.Unmarshal([]byte(ev.Data), &e) != nil {
			return
		}
		if e.Delta.StopReason != "" {
			info.finish = append(info.finish, e.Delta.StopReason)
		}
		if e.Usage != nil {
			// Counts in message_delta are cumulative, and a count it
			// leaves out (input counts, before newer API versions) stands
			// as message_start gave it.
			s.anthropicSoFar = s.anthropicSoFar.merge(*e.Usage)
			s.usage = s.anthropicSoFar.canonical()
		}
	case "content_block_delta":
		if !s.content {
			return
		}
		var e struct {
			Delta struct {
				Text string `json:"text"`
			} `json:"delta"`
		}
		if json.Unmarshal([]byte(ev.Data), &e) == nil {
			info.completion += e.Delta.Text
		}
	}
}

// anthropicUsage is an Anthropic Messages usage object.
type anthropicUsage struct {
	InputTokens              float64 `json:"input_tokens"`
	CacheCreationInputTokens float64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     float64 `json:"cache_read_input_tokens"`
	OutputTokens             float64 `json:"output_tokens"`
}

// merge takes the higher of each count: counts only grow.
func (u anthropicUsage) merge(later anthropicUsage) anthropicUsage {
	return anthropicUsage{
		InputTokens:              max(u.InputTokens, later.InputTokens),
		CacheCreationInputTokens: max(u.CacheCreationInputTokens, later.CacheCreationInputTokens),
		CacheReadInputTokens:     max(u.CacheReadInputTokens, later.CacheReadInputTokens),
		OutputTokens:             max(u.OutputTokens, later.OutputTokens),
	}
}

// canonical counts every input token, cached or not, as prompt tokens.
func (u anthropicUsage) canonical() *usage {
	in := u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
	return &usage{PromptTokens: in, CompletionTokens: u.OutputTokens, TotalTokens: in + u.OutputTokens}
}

// parseAnthropicAnswer reads a native Anthropic Messages answer's usage
// and telemetry, best effort.
func parseAnthropicAnswer(data []byte, content bool) (answerInfo, *usage) {
	var a struct {
		ID         string          `json:"id"`
		Model      string          `json:"model"`
		StopReason string          `json:"stop_reason"`
		Usage      *anthropicUsage `json:"usage"`
		Content    []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	}
	if json.Unmarshal(data, &a) != nil {
		return answerInfo{}, nil
	}
	info := answerInfo{id: a.ID, model: a.Model}
	if a.StopReason != "" {
		info.finish = []string{a.StopReason}
	}
	if content {
		for _, b := range a.Content {
			if b.Type == "text" {
				info.completion += b.Text
			}
		}
	}
	if a.Usage == nil {
		return info, nil
	}
	return info, a.Usage.canonical()
}
