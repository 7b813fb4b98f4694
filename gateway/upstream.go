package gateway

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"iter"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

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
//   - a client speaking the upstream's own API (provider.Native) is
//     relayed natively, its body and answer untouched but for the model
//     name and the channel's parameters;
//   - exchanging adapters (Spark's WebSocket API) make the whole call
//     themselves and hand back a canonical answer.
//
// Whatever the way, exchange returns the same answer, so that limits,
// breakers, failover and telemetry treat every upstream alike.

// answer is an upstream's answer to one attempt.
type answer struct {
	status  int
	header  http.Header
	errBody []byte               // a refusal's body (non-2xx): OpenAI's error shape unless native
	body    []byte               // a complete answer: a canonical chat.completion unless native
	events  provider.EventStream // a streamed answer: canonical chunks unless native
	idle    *idleReader          // the streamed HTTP body, whose reads keep the stream alive
	native  provider.Native      // set when the answer is in the client's own API
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

// unreadableAnswer is a 2xx answer that could not be translated: the
// upstream answered (and billed), but the client cannot be given it.
type unreadableAnswer struct{ err error }

func (e *unreadableAnswer) Error() string {
	return "the upstream's answer could not be read: " + e.err.Error()
}

// exchange sends an attempt's body to its credential's upstream and
// returns the answer. Its errors are a *provider.Error (the adapter cannot
// express the request), a *transportError, an *unreadableAnswer, or
// another error (the request could not be built).
func (a *attempt) exchange(body []byte, native provider.Native) (*answer, error) {
	t := a.cred.target(a.adm.cand.upstreamModel())
	if ex, ok := a.cred.adapter.(provider.Exchanger); ok {
		hdr := http.Header{}
		a.tag(hdr)
		t.Headers = maps.Clone(t.Headers)
		if t.Headers == nil {
			t.Headers = map[string]string{}
		}
		for k := range hdr {
			t.Headers[k] = hdr.Get(k)
		}
		return a.exchangeVia(ex, t, body)
	}
	resp, err := a.send(t, body, native)
	if err != nil {
		return nil, err
	}
	ans := &answer{status: resp.StatusCode, header: resp.Header, native: native}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		ans.errBody, _ = io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		ans.errBody = a.st.redactor.JSON(ans.errBody)
		if tr, translated := a.translator(native); translated {
			ans.errBody = tr.Error(resp.StatusCode, ans.errBody)
		}
		return ans, nil
	}
	if a.req.stream {
		a.streamFrom(ans, resp)
		return ans, nil
	}
	return a.readAnswer(ans, resp)
}

// send builds the upstream request and sends it. An adapter whose
// requests carry an access token (provider.TokenAuth) is asked whether a
// refusal means the token was refused; if so, the request is built once
// more, with a fresh token, and sent again.
func (a *attempt) send(t provider.Target, body []byte, native provider.Native) (*http.Response, error) {
	hreq, resp, err := a.sendOnce(t, body, native)
	if err != nil {
		return nil, err
	}
	ta, ok := a.cred.adapter.(provider.TokenAuth)
	if !ok || native != nil || !maybeRefusal(resp) {
		return resp, nil
	}
	limit := int64(maxUpstreamBody) // a whole answer, read again by readAnswer
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		limit = maxErrorBody // what exchange reads of a refusal
	}
	data, err := readSized(io.LimitReader(resp.Body, limit), resp.ContentLength)
	resp.Body.Close()
	if err != nil {
		return nil, &transportError{err: err, midBody: true}
	}
	if !ta.TokenRefused(a.actx, t, hreq, resp.StatusCode, data) {
		resp.Body = io.NopCloser(bytes.NewReader(data))
		return resp, nil
	}
	_, resp, err = a.sendOnce(t, body, native)
	return resp, err
}

// sendOnce builds and sends one upstream request.
func (a *attempt) sendOnce(t provider.Target, body []byte, native provider.Native) (*http.Request, *http.Response, error) {
	hreq, err := a.newRequest(t, body, native)
	if err != nil {
		return nil, nil, err
	}
	a.tag(hreq.Header)
	resp, err := a.cred.ch.client.Do(hreq)
	if err != nil {
		return nil, nil, &transportError{err: err}
	}
	return hreq, resp, nil
}

// maybeRefusal reports whether an answer may be a refusal of its token: a
// non-2xx status, or a JSON body where a stream was asked for or (some
// upstreams answer errors with a 200) any JSON answer.
func maybeRefusal(resp *http.Response) bool {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return true
	}
	return strings.Contains(resp.Header.Get("Content-Type"), "json")
}

// tag sets what goes to every upstream: the request ID and the trace
// context.
func (a *attempt) tag(h http.Header) {
	h["X-Request-Id"] = []string{callOf(a.c).id}
	a.g.propagator.Inject(a.actx, propagation.HeaderCarrier(h))
}

// newRequest builds the upstream HTTP request.
func (a *attempt) newRequest(t provider.Target, body []byte, native provider.Native) (*http.Request, error) {
	if native != nil {
		t.ClientHeader = a.req.nativeHeader
		return native.NewNativeRequest(a.actx, t, body)
	}
	return a.cred.adapter.NewRequest(a.actx, t, a.req.ep, body)
}

// translator returns the credential's adapter when it translates the
// answer (not when the client's own API is relayed natively).
func (a *attempt) translator(native provider.Native) (provider.Translator, bool) {
	tr, ok := a.cred.adapter.(provider.Translator)
	return tr, ok && native == nil
}

// streamFrom reads a streamed answer's body as events.
func (a *attempt) streamFrom(ans *answer, resp *http.Response) {
	ans.idle = &idleReader{r: resp.Body}
	tr, translated := a.translator(ans.native)
	switch {
	case ans.native != nil:
		ans.events = ans.native.NativeEvents(ans.idle, a.g.captureContent)
	case translated:
		ans.events = newChunkEvents(tr.Stream(ans.idle, a.adm.cand.upstreamModel()), a.g.captureContent)
	default:
		ans.events = newChatEvents(ans.idle, a.g.captureContent)
	}
	ans.closers = append(ans.closers, func() { _ = ans.events.Close() }, func() {
		if a.stream != nil && a.stream.complete {
			drain(resp.Body)
		}
		resp.Body.Close()
	})
}

// A stream's last event ([DONE], message_stop) comes just before the end
// of its chunked body. Go's transport reuses a connection only when the
// body was read to its end: without a drain, every stream would cost a
// new upstream connection (a TCP handshake before the next first token).
// The drain is bounded in bytes and in time, for upstreams that keep
// writing or holding the stream after its end.
const (
	drainBytes = 4 << 10
	drainWait  = 50 * time.Millisecond
)

// drain reads what is left of a finished stream's body, within bounds.
func drain(body io.ReadCloser) {
	t := time.AfterFunc(drainWait, func() { body.Close() })
	defer t.Stop()
	_, _ = io.Copy(io.Discard, io.LimitReader(body, drainBytes))
}

// readAnswer reads a complete 2xx answer, translated to the canonical
// form when the adapter translates.
func (a *attempt) readAnswer(ans *answer, resp *http.Response) (*answer, error) {
	defer resp.Body.Close()
	data, err := readSized(io.LimitReader(resp.Body, maxUpstreamBody), resp.ContentLength)
	if err != nil {
		return nil, &transportError{err: err, midBody: true}
	}
	if tr, translated := a.translator(ans.native); translated && validJSON(data) {
		out, err := tr.Response(a.req.ep, data, a.adm.cand.upstreamModel())
		var upErr *provider.Error
		switch {
		case errors.As(err, &upErr):
			// An error sent with a 2xx status (Anthropic's error object
			// in a 200): handled as the refusal it is.
			ans.status = cmp.Or(upErr.Status, http.StatusBadGateway)
			ans.errBody = wire.NewError(upErr.Type, "", a.st.redactor.String(upErr.Message))
			return ans, nil
		case err != nil:
			return nil, &unreadableAnswer{err: err}
		}
		data = out
	}
	ans.body = data
	return ans, nil
}

// maxUpstreamBody caps a non-streaming answer, maxErrorBody a refusal.
const (
	maxUpstreamBody = 256 << 20
	maxErrorBody    = 1 << 20
)

// exchangeVia makes an attempt through an Exchanger.
func (a *attempt) exchangeVia(ex provider.Exchanger, t provider.Target, body []byte) (*answer, error) {
	rep, err := ex.Exchange(a.actx, a.cred.ch.client, t, a.req.ep, body, a.req.stream)
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
		ans.errBody = a.st.redactor.JSON(rep.Body)
	case rep.Stream != nil:
		ans.events = newChunkEvents(rep.Stream, a.g.captureContent)
		ans.closers = append(ans.closers, func() { _ = ans.events.Close() })
	default:
		ans.body = rep.Body
	}
	return ans, nil
}

// translationRefusal is the error of a request an adapter cannot
// express: a 400 for the client, in OpenAI's error shape.
func translationRefusal(e *provider.Error) error {
	return &upstreamError{status: cmp.Or(e.Status, http.StatusBadRequest), header: http.Header{},
		body: openAIErrorJSON(e.Message, cmp.Or(e.Type, "invalid_request_error"))}
}

// transportMessage describes a transport error without the upstream URL.
func transportMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return "upstream connection failed: " + err.Error()
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

// maxEventSize caps one upstream SSE event (a chunk carrying a large tool
// call argument or an image can be big, but not unbounded).
const maxEventSize = 8 << 20

// chatEvents reads an OpenAI-compatible upstream's stream: chat.completion
// chunks, ending with [DONE] or with a chunk that finishes the answer.
type chatEvents struct {
	pull     func() (sse.Event, error, bool)
	stop     func()
	finished bool // a chunk with a finish_reason came
	sum      chunkSummary
}

func newChatEvents(r io.Reader, content bool) *chatEvents {
	pull, stop := iter.Pull2(sse.Read(r, &sse.ReadConfig{MaxEventSize: maxEventSize}))
	return &chatEvents{pull: pull, stop: stop, sum: chunkSummary{content: content}}
}

// Next implements provider.EventStream.
func (s *chatEvents) Next() (sse.Event, error) {
	for {
		ev, err, ok := s.pull()
		switch {
		case !ok && s.finished:
			// An upstream that ends cleanly after its last chunk without
			// [DONE] finished its answer all the same.
			return ev, io.EOF
		case !ok:
			return ev, io.ErrUnexpectedEOF
		case err != nil:
			return ev, err
		case ev.Data == "":
			continue
		case isErrorPayload(ev.Data):
			return ev, &provider.Error{Message: upstreamMessage([]byte(ev.Data))}
		case ev.Data == "[DONE]":
			return ev, io.EOF
		}
		s.finished = s.finished || hasFinishReason(ev.Data)
		s.sum.chunk(ev.Data)
		return ev, nil
	}
}

// Summary implements provider.EventStream.
func (s *chatEvents) Summary() provider.Summary { return s.sum.Summary }

// Close implements provider.EventStream.
func (s *chatEvents) Close() error {
	s.stop()
	return nil
}

// chunkEvents reads the canonical chunks an adapter hands back.
type chunkEvents struct {
	s   provider.Stream
	sum chunkSummary
}

func newChunkEvents(s provider.Stream, content bool) *chunkEvents {
	return &chunkEvents{s: s, sum: chunkSummary{content: content}}
}

// Next implements provider.EventStream.
func (c *chunkEvents) Next() (sse.Event, error) {
	b, err := c.s.Next()
	if err != nil {
		return sse.Event{}, err
	}
	c.sum.chunk(string(b))
	return sse.Event{Data: string(b)}, nil
}

// Summary implements provider.EventStream.
func (c *chunkEvents) Summary() provider.Summary { return c.sum.Summary }

// Close implements provider.EventStream.
func (c *chunkEvents) Close() error {
	if cl, ok := c.s.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}
