package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/sluice-gateway/sluice/gateway/ingress"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// A streamed answer is relayed event by event, in the client's API,
// flushing each to the client as it comes. Until the first event has been
// written the attempt can still fail over; after it, an upstream failure
// ends the stream with an error event, never with a silent truncation.

// streamed is a stream's progress.
type streamed struct {
	events   int64 // events read from the upstream
	begun    bool  // the first event reached the client
	complete bool  // the answer ended as it should
}

// used is the tokens a stream is charged: what the upstream reported,
// else the prompt plus about one token per event.
func (s *streamed) used(prompt int64, u *wire.Usage) int64 {
	return u.Total(prompt + s.events)
}

// pump relays a streamed answer and says how it ended.
func (a *attempt) pump(ans *answer) report {
	sink := newSink(a.req, ans, a.usagePrice)
	a.stream = &streamed{}
	defer a.endStream()
	for {
		ev, err := ans.events.Next()
		if err != nil {
			a.settleUsage(ans.events, errors.Is(err, io.EOF))
			return a.streamEnded(err, sink)
		}
		if !a.stream.begun && a.timedOutAtStart() {
			a.settleUsage(ans.events, false)
			return a.transportFailed(context.Cause(a.actx), false)
		}
		a.stream.events++
		out, err := sink.event(ev)
		if err != nil {
			// Encoded before anything is committed: a first event that
			// cannot be encoded fails over like any bad start.
			a.settleUsage(ans.events, false)
			return a.streamEnded(&provider.Error{Message: "the upstream's stream could not be read: " + err.Error()}, sink)
		}
		if !a.stream.begun {
			a.beginStream(ans)
		} else {
			a.idle.Reset(a.cred.ch.idleTimeout)
		}
		if len(out) > 0 {
			if err := a.write(out); err != nil {
				a.settleUsage(ans.events, false)
				return a.streamEnded(err, sink)
			}
		}
	}
}

// endStream clears what a begun stream set on the connection.
func (a *attempt) endStream() {
	if a.stream.begun {
		deadline(a.c.Response(), 0)
		a.g.metrics.streams.Add(a.ctx, -1)
	}
}

// timedOutAtStart reports whether the channel timeout fired as the first
// event arrived: then the attempt timed out before any byte left.
func (a *attempt) timedOutAtStart() bool {
	return !a.timer.Stop() || a.actx.Err() != nil
}

// beginStream commits the answer: from now on the stream idle timeout
// bounds each wait for the upstream, and for the client.
func (a *attempt) beginStream(ans *answer) {
	a.idle = time.AfterFunc(a.cred.ch.idleTimeout, func() { a.cancel(errStreamIdle) })
	if ans.idle != nil {
		ans.idle.timer, ans.idle.idle = a.idle, a.cred.ch.idleTimeout
	}
	w := a.c.Response()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Trailer", costHeader) // what the stream cost, once it ended
	a.begin()
	w.WriteHeader(http.StatusOK)
	a.stream.begun = true
	a.g.metrics.streams.Add(a.ctx, 1)
}

// write sends bytes to the client within the stream idle timeout.
func (a *attempt) write(b []byte) error {
	w := a.c.Response()
	deadline(w, a.cred.ch.idleTimeout)
	if _, err := w.Write(b); err != nil {
		return &clientWriteError{err}
	}
	w.Flush()
	return nil
}

// clientWriteError is a failed write to the client.
type clientWriteError struct{ err error }

func (e *clientWriteError) Error() string { return e.err.Error() }

// settleUsage keeps what the stream's events said of the answer. The
// counts of a stream cut short may predate most of its output (Anthropic's
// message_start says 1 output token): then each event counts one.
func (a *attempt) settleUsage(src provider.EventStream, complete bool) {
	a.sum = src.Summary()
	if u := a.sum.Usage; u != nil && !complete && u.CompletionTokens < a.stream.events {
		c := *u
		c.CompletionTokens = a.stream.events
		c.TotalTokens = c.PromptTokens + c.CompletionTokens
		a.sum.Usage = &c
	}
}

// streamEnded says how a stream ended: err is io.EOF for a complete
// answer.
func (a *attempt) streamEnded(err error, sink streamSink) report {
	var fault *provider.Error
	isFault, early := errors.As(err, &fault), errors.Is(err, io.ErrUnexpectedEOF)
	switch {
	case a.stream.begun && errors.Is(err, io.EOF):
		a.stream.complete = true
		if end := sink.end(); len(end) > 0 {
			if err := a.write(end); err != nil {
				return report{what: answered, err: fmt.Errorf("%w: %v", ErrClientClosed, err)}
			}
		}
		return report{what: answered}
	case a.stream.begun:
		return a.brokenMidway(err, sink)
	case a.ctx.Err() != nil || !isFault && !early && !errors.Is(err, io.EOF):
		rep := a.transportFailed(err, false)
		if rep.what == unreachable {
			rep.what = streamFailedEarly
		}
		return rep
	case isFault:
		return report{what: badStart, err: fmt.Errorf("%w: the upstream stream began with an error: %s", ErrUpstream, a.faultMessage(fault))}
	}
	return report{what: emptyStream, err: fmt.Errorf("%w: the upstream stream ended before its first event", ErrUpstream)}
}

// brokenMidway ends a stream that broke after its first byte reached the
// client, telling the client why.
func (a *attempt) brokenMidway(err error, sink streamSink) report {
	var werr *clientWriteError
	if a.ctx.Err() != nil || errors.As(err, &werr) {
		if errors.Is(context.Cause(a.ctx), ErrDraining) {
			w := a.c.Response()
			deadline(w, time.Second)
			_, _ = w.Write(sink.fail("the server is shutting down and could not finish this stream", "shutting_down"))
			w.Flush()
			return report{what: drainedMidway, err: ErrDraining}
		}
		return report{what: leftMidway, err: ErrClientClosed}
	}
	var fault *provider.Error
	var msg string
	switch {
	case errors.As(err, &fault):
		msg = "the upstream sent an error: " + a.faultMessage(fault)
	case errors.Is(context.Cause(a.actx), errStreamIdle):
		msg = errStreamIdle.Error()
	case errors.Is(err, io.ErrUnexpectedEOF):
		msg = errEndedEarly.Error()
	default:
		msg = a.st.redactor.String(transportMessage(err))
	}
	_ = a.write(sink.fail("stream interrupted: "+msg, "upstream_stream_error"))
	return report{what: brokenMidway, err: fmt.Errorf("%w: stream interrupted: %s", ErrUpstream, msg)}
}

// faultMessage is what a client may be told of an upstream's stream
// error: never a secret.
func (a *attempt) faultMessage(f *provider.Error) string {
	return excerpt(a.st.redactor.String(f.Message))
}

// errEndedEarly is a stream that closed before its answer finished.
var errEndedEarly = errors.New("the upstream closed the stream before it finished")

// streamSink writes a stream's events in the client's API.
type streamSink interface {
	event(ev sse.Event) ([]byte, error) // what to write for one upstream event (nothing: nil)
	end() []byte                        // after the last event of a complete answer
	fail(msg, code string) []byte       // the end of a stream broken after its first event
}

func newSink(req *request, ans *answer, price func(*wire.Usage) (int64, bool)) streamSink {
	switch {
	case req.codec == nil:
		return openAISink{includeUsage: req.includeUsage, price: price}
	case ans.native != nil:
		return nativeSink{req.codec}
	}
	return &codecSink{enc: req.codec.NewStream(req.model)}
}

// openAISink writes chunks as they came, the chunk with the usage with
// what the call cost.
type openAISink struct {
	includeUsage bool
	price        func(*wire.Usage) (int64, bool)
}

func (s openAISink) event(ev sse.Event) ([]byte, error) {
	u, usageOnly := scanUsage(ev.Data)
	if usageOnly && !s.includeUsage {
		return nil, nil // Sluice asked for it to settle quotas; the client did not
	}
	if u != nil && s.price != nil {
		if cost, ok := s.price(u); ok {
			ev.Data = withCost(ev.Data, cost)
		}
	}
	return eventBytes(ev), nil
}

func (openAISink) end() []byte                  { return []byte("data: [DONE]\n\n") }
func (openAISink) fail(msg, code string) []byte { return errorEvent(msg, code) }

// nativeSink relays events in the client's own API as they came.
type nativeSink struct{ codec ingress.Codec }

func (nativeSink) event(ev sse.Event) ([]byte, error) { return eventBytes(ev), nil }
func (nativeSink) end() []byte                        { return nil }
func (s nativeSink) fail(msg, code string) []byte {
	return eventBytes(sse.Event{Type: "error", Data: string(s.codec.Error(http.StatusBadGateway, "server_error", code, msg))})
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
