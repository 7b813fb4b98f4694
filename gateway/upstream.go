package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	sse "github.com/tmaxmax/go-sse"
	"go.opentelemetry.io/otel/propagation"

	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// An attempt speaks to its upstream in one of four ways, decided by the
// credential's adapter and the client's API:
//
//   - OpenAI-compatible upstreams get the canonical body and answer in it;
//   - translating adapters (Claude, Gemini) write their upstream's format
//     from the canonical body and bring the answer back to it;
//   - a client speaking the upstream's own API (Anthropic Messages to a
//     Claude channel) is relayed natively, its body and answer untouched
//     but for the model name;
//   - exchanging adapters (Spark's WebSocket API) make the whole call
//     themselves and hand back a canonical answer.
//
// Whatever the way, exchange returns the same answer, so that limits,
// breakers, failover and telemetry treat every upstream alike.

// answer is an upstream's answer to one attempt.
type answer struct {
	status  int
	header  http.Header
	errBody []byte      // a refusal's body (non-2xx): OpenAI's error shape unless native
	body    []byte      // a complete answer: a canonical chat.completion unless native
	events  eventSource // a streamed answer: canonical chunks unless native
	idle    *idleReader // the streamed HTTP body, whose reads keep the stream alive
	native  bool        // in the client's own API (Anthropic Messages)
	closers []func()
}

// close releases the answer's connection.
func (a *answer) close() {
	for _, c := range a.closers {
		c()
	}
}

// transportError is a failure to reach the upstream or to read its answer.
type transportError struct {
	err     error
	midBody bool // the upstream had begun answering
}

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// exchange sends one attempt's body to its credential's upstream and
// returns the answer. Its errors are a *provider.Error (the adapter cannot
// express the request), a *transportError, or another error (the request
// could not be built).
func (g *Gateway) exchange(ctx context.Context, c echo.Context, req *request, cred *credential, model string, body []byte, native provider.Native) (*answer, error) {
	t := cred.target(model)
	// The request ID and trace context go to every upstream.
	hdr := http.Header{}
	hdr.Set("X-Request-Id", callOf(c).id)
	g.propagator.Inject(ctx, propagation.HeaderCarrier(hdr))
	if ex, ok := cred.adapter.(provider.Exchanger); ok {
		t.Headers = maps.Clone(t.Headers)
		if t.Headers == nil {
			t.Headers = map[string]string{}
		}
		for k := range hdr {
			t.Headers[k] = hdr.Get(k)
		}
		return g.exchangeVia(ctx, ex, cred, t, req, body)
	}

	tr, translated := cred.adapter.(provider.Translator)
	var hreq *http.Request
	var err error
	if native != nil {
		translated = false
		hreq, err = native.NewNativeRequest(ctx, t, body)
		if err == nil && len(req.nativeBeta) > 0 && hreq.Header.Get("anthropic-beta") == "" {
			// The client's beta features, unless the channel sets its own.
			hreq.Header.Set("anthropic-beta", strings.Join(req.nativeBeta, ","))
		}
	} else {
		hreq, err = cred.adapter.NewRequest(ctx, t, req.ep, body)
	}
	if err != nil {
		return nil, err
	}
	for k := range hdr {
		hreq.Header.Set(k, hdr.Get(k))
	}
	resp, err := cred.ch.client.Do(hreq)
	if err != nil {
		return nil, &transportError{err: err}
	}
	ans := &answer{status: resp.StatusCode, header: resp.Header, native: native != nil}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		ans.errBody, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		ans.errBody = g.redactor.JSON(ans.errBody)
		if translated {
			ans.errBody = tr.Error(resp.StatusCode, ans.errBody)
		}
		return ans, nil
	}
	if req.stream {
		ans.idle = &idleReader{r: resp.Body}
		switch {
		case translated:
			ans.events = chunkEvents{tr.Stream(ans.idle, model)}
		default:
			ans.events = newSSEEvents(ans.idle, ans.native)
		}
		ans.closers = append(ans.closers, ans.events.close, func() { resp.Body.Close() })
		return ans, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody))
	if err != nil {
		return nil, &transportError{err: err, midBody: true}
	}
	if translated && validJSON(data) {
		out, err := tr.Response(req.ep, data, model)
		var upErr *provider.Error
		switch {
		case errors.As(err, &upErr):
			// An error sent with a 2xx status (Anthropic's error object
			// in a 200): handled as the refusal it is.
			ans.status = cmp.Or(upErr.Status, http.StatusBadGateway)
			ans.errBody = wire.NewError(upErr.Type, "", g.redactor.String(upErr.Message))
			return ans, nil
		case err != nil:
			return nil, &unreadableAnswer{err: err}
		}
		data = out
	}
	ans.body = data
	return ans, nil
}

// unreadableAnswer is a 2xx answer that could not be translated: the
// upstream answered (and billed), but the client cannot be given it.
type unreadableAnswer struct{ err error }

func (e *unreadableAnswer) Error() string {
	return "the upstream's answer could not be read: " + e.err.Error()
}

// exchangeVia makes an attempt through an Exchanger.
func (g *Gateway) exchangeVia(ctx context.Context, ex provider.Exchanger, cred *credential, t provider.Target, req *request, body []byte) (*answer, error) {
	rep, err := ex.Exchange(ctx, cred.ch.client, t, req.ep, body, req.stream)
	var refused *provider.Error
	switch {
	case errors.As(err, &refused):
		return nil, err
	case err != nil:
		return nil, &transportError{err: err}
	}
	ans := &answer{status: rep.Status, header: http.Header{}}
	switch {
	case rep.Status < 200 || rep.Status > 299:
		ans.errBody = g.redactor.JSON(rep.Body)
	case rep.Stream != nil:
		ans.events = chunkEvents{rep.Stream}
		ans.closers = append(ans.closers, ans.events.close)
	default:
		ans.body = rep.Body
	}
	return ans, nil
}

// translationRefusal is the error of a request an adapter cannot
// express: a 400 for the client, in OpenAI's error shape.
func translationRefusal(e *provider.Error) error {
	status := e.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	typ := e.Type
	if typ == "" {
		typ = "invalid_request_error"
	}
	body, _ := json.Marshal(openAIError{Error: openAIErrorBody{Message: e.Message, Type: typ}})
	return &upstreamError{status: status, header: http.Header{}, body: body}
}

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

// eventSource yields the events of a streamed answer. next returns io.EOF
// once the answer is complete, a *streamFault when the upstream reported
// an error, errEndedEarly when the stream ended before the answer did,
// and any other error when reading failed.
type eventSource interface {
	next() (sse.Event, error)
	close()
}

// streamFault is an error an upstream reported in its stream.
type streamFault struct {
	data string // the event's payload, to extract a message from
	msg  string // the message, when the adapter already knows it
}

func (f *streamFault) Error() string { return "upstream stream error" }

// errEndedEarly is a stream that closed before its answer finished.
var errEndedEarly = errors.New("the upstream closed the stream before it finished")

// sseEvents reads an upstream's server-sent events: OpenAI chunks, or
// Anthropic Messages events relayed natively.
type sseEvents struct {
	pull      func() (sse.Event, error, bool)
	stop      func()
	anthropic bool
	finished  bool // a chunk with a finish_reason; Anthropic's message_stop
}

func newSSEEvents(r io.Reader, anthropic bool) *sseEvents {
	pull, stop := iter.Pull2(sse.Read(r, &sse.ReadConfig{MaxEventSize: maxEventSize}))
	return &sseEvents{pull: pull, stop: stop, anthropic: anthropic}
}

func (s *sseEvents) next() (sse.Event, error) {
	for {
		if s.anthropic && s.finished {
			return sse.Event{}, io.EOF
		}
		ev, err, ok := s.pull()
		switch {
		case !ok && s.finished:
			// An upstream that ends cleanly after its last chunk without
			// [DONE] finished its answer all the same.
			return ev, io.EOF
		case !ok:
			return ev, errEndedEarly
		case err != nil:
			return ev, err
		case ev.Data == "":
			continue
		}
		if s.anthropic && ev.Type == "" {
			// Some Anthropic-compatible upstreams send data-only events:
			// the type is in the payload too.
			ev.Type = anthropicEventType(ev.Data)
		}
		switch {
		case ev.Type == "error" || !s.anthropic && isErrorPayload(ev.Data):
			return ev, &streamFault{data: ev.Data}
		case s.anthropic:
			s.finished = ev.Type == "message_stop"
			return ev, nil
		case ev.Data == "[DONE]":
			return ev, io.EOF
		}
		s.finished = s.finished || hasFinishReason(ev.Data)
		return ev, nil
	}
}

func (s *sseEvents) close() { s.stop() }

// anthropicEventType is the type an Anthropic event's payload names.
func anthropicEventType(data string) string {
	var e struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal([]byte(data), &e)
	return e.Type
}

// chunkEvents reads an adapter's canonical chunks.
type chunkEvents struct{ s provider.Stream }

func (c chunkEvents) next() (sse.Event, error) {
	b, err := c.s.Next()
	var pe *provider.Error
	switch {
	case err == nil:
		return sse.Event{Data: string(b)}, nil
	case errors.As(err, &pe):
		return sse.Event{}, &streamFault{msg: pe.Message}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return sse.Event{}, errEndedEarly
	}
	return sse.Event{}, err
}

func (c chunkEvents) close() {
	if cl, ok := c.s.(io.Closer); ok {
		_ = cl.Close()
	}
}
