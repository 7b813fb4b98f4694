package provider

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"runtime"
	"strings"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// Format is a wire format (wire.Format).
type Format = wire.Format

// Formats Sluice speaks upstream (see wire.Format).
const (
	FormatOpenAI    = wire.FormatOpenAI
	FormatAnthropic = wire.FormatAnthropic
	FormatGemini    = wire.FormatGemini
	FormatSpark     = wire.FormatSpark
)

// Translator is implemented by adapters whose upstream does not speak
// OpenAI's format. Their NewRequest takes the canonical (OpenAI) body and
// writes the upstream's own; the methods here bring the answers back.
type Translator interface {
	// Format is the upstream's native format.
	Format() Format
	// Response converts a complete 2xx answer to an OpenAI one: a
	// chat.completion for Chat, an embeddings list for Embeddings. model
	// is the model name to report.
	Response(ep Endpoint, body []byte, model string) ([]byte, error)
	// Stream reads the upstream's streamed answer (a 2xx HTTP body) as
	// OpenAI chat.completion.chunk payloads.
	Stream(body io.Reader, model string) Stream
	// Error converts the body of a non-2xx answer to an OpenAI error body.
	Error(status int, body []byte) []byte
}

// Stream yields an answer's OpenAI chat.completion.chunk payloads, the
// last one carrying usage when the upstream reports it.
type Stream interface {
	// Next returns the next chunk. It returns io.EOF when the answer is
	// complete, and any other error when the stream broke: an *Error
	// when the upstream said why (its message is safe to show a client).
	Next() ([]byte, error)
}

// Error is an error an upstream reported, translated.
type Error struct {
	Status  int    // the HTTP status it maps to (e.g. 529 → 503), or 0
	Type    string // OpenAI error type
	Message string
}

func (e *Error) Error() string { return e.Message }

// Native is implemented by translating adapters that also accept a body
// already in their upstream's format: a client speaking that format is
// relayed untranslated (Anthropic Messages to a Claude channel). Every
// format-specific part of such a relay is here, so that the relay itself
// knows no format by name.
type Native interface {
	// NewNativeRequest builds the upstream request from the client's own
	// body, with the client's headers of that API (Target.ClientHeader);
	// the channel's own headers win over them.
	NewNativeRequest(ctx context.Context, t Target, body []byte) (*http.Request, error)
	// NativeParams renames a channel's parameters, written in OpenAI's
	// terms, to the format's own, and leaves out those it has no place
	// for (nil when none is left).
	NativeParams(params map[string]json.RawMessage) map[string]json.RawMessage
	// NativeAnswer reads what Sluice records of a complete answer.
	NativeAnswer(body []byte, content bool) Summary
	// NativeEvents reads a streamed answer event by event.
	NativeEvents(body io.Reader, content bool) EventStream
	// NativeError returns a refusal's body in the format: the body
	// itself when it is an error of the format, else one carrying msg.
	NativeError(status int, body []byte, msg string) []byte
}

// Summary is what Sluice records of an answer, for telemetry and quotas.
type Summary struct {
	ID, Model string
	Finish    []string    // finish (or stop) reasons, as the upstream wrote them
	Usage     *wire.Usage // nil when the upstream reported none
	Text      string      // the answer's text, when content capture asked for it
}

// EventStream yields a streamed answer's events as they came.
type EventStream interface {
	// Next returns the next event. It returns io.EOF once the answer is
	// complete, an *Error when the upstream sent an error event,
	// io.ErrUnexpectedEOF when the stream ended before the answer did,
	// and any other error when reading failed.
	Next() (sse.Event, error)
	// Summary is what the events so far say.
	Summary() Summary
	// Close releases the stream's parser.
	Close() error
}

// Exchanger is implemented by adapters whose upstream is not a single
// HTTP exchange (iFlytek Spark's WebSocket API). Exchange sends the
// canonical request and returns the answer in OpenAI form: Body for a
// complete answer, Stream for a streamed one.
type Exchanger interface {
	Exchange(ctx context.Context, client *http.Client, t Target, ep Endpoint, body []byte, stream bool) (*Reply, error)
}

// Reply is an Exchanger's answer, already in OpenAI form.
type Reply struct {
	Status int // 200, or the HTTP status of a refusal
	Body   []byte
	Stream Stream
}

// chunkQueue holds a translated stream's chunks until Next returns them,
// and the error that ends the stream once they are drained (io.EOF when
// it ended well). Streams embed it.
type chunkQueue struct {
	pending [][]byte
	err     error
}

// pop returns the next queued chunk, or the stream's end. ok is false when
// neither is there yet: the stream must read more.
func (q *chunkQueue) pop() (chunk []byte, err error, ok bool) {
	switch {
	case len(q.pending) > 0:
		chunk, q.pending = q.pending[0], q.pending[1:]
		return chunk, nil, true
	case q.err != nil:
		return nil, q.err, true
	}
	return nil, nil, false
}

// chatID names a translated answer after the upstream's own id (a message,
// response, request or session id), else randomly.
func chatID(upstreamID string) string {
	if upstreamID != "" {
		return "chatcmpl-" + upstreamID
	}
	return "chatcmpl-" + rand.Text()
}

// chunkHead is what every chunk of a translated stream repeats: the
// answer's id, when it was created, and the model to report. Streams
// embed it.
type chunkHead struct {
	id      string
	created int64
	model   string
}

// chunk encodes a chat.completion.chunk. An answer whose upstream has not
// named it yet gets a random id.
func (h *chunkHead) chunk(choices []wire.ChunkChoice, usage *wire.Usage) []byte {
	if choices == nil {
		choices = []wire.ChunkChoice{}
	}
	if h.id == "" {
		h.id = chatID("")
	}
	// Marshalling cannot fail: the chunk holds only strings and integers.
	b, _ := json.Marshal(wire.ChatChunk{
		ID:      h.id,
		Object:  "chat.completion.chunk",
		Created: h.created,
		Model:   h.model,
		Choices: choices,
		Usage:   usage,
	})
	return b
}

// eventStream is what the translated SSE streams share: events come in,
// the format's translation queues chunks for them, and the end of the body
// ends the answer, with the usage in a chunk of its own. Streams embed it
// and call pump from their Next.
type eventStream struct {
	ssePull
	chunkHead
	chunkQueue
	name     string      // the upstream format, for errors
	finished bool        // the answer finished: a finish reason was seen
	usage    *wire.Usage // the last usage reported
}

func newEventStream(body io.Reader, name, model string) eventStream {
	return eventStream{ssePull: newSSEPull(body), chunkHead: chunkHead{model: model, created: time.Now().Unix()}, name: name}
}

// pump returns the next chunk, handing events to translate until one is
// queued or the stream ends. An error of translate ends the stream.
// Keep-alives (events without data) and [DONE] (a proxy's OpenAI habit)
// are skipped.
func (s *eventStream) pump(translate func(sse.Event) error) ([]byte, error) {
	for {
		if chunk, err, ok := s.pop(); ok {
			return chunk, err
		}
		ev, err, ok := s.next()
		switch {
		case !ok:
			s.end()
		case err != nil:
			s.fail(fmt.Errorf("%s: read stream: %w", s.name, err))
		case strings.TrimSpace(ev.Data) == "" || ev.Data == "[DONE]":
		default:
			if err := translate(ev); err != nil {
				s.fail(err)
			}
		}
	}
}

// end handles the end of the body: the usage chunk and io.EOF after a
// finished answer, io.ErrUnexpectedEOF after a cut one.
func (s *eventStream) end() {
	s.stop()
	if !s.finished {
		s.err = io.ErrUnexpectedEOF
		return
	}
	if s.usage != nil {
		s.pending = append(s.pending, s.chunk(nil, s.usage))
	}
	s.err = io.EOF
}

// fail ends the stream with an error.
func (s *eventStream) fail(err error) {
	s.stop()
	s.err = err
}

// maxStreamEvent caps one SSE event of a translated stream: a large tool
// input, function call or inline image can be big, but not unbounded.
const maxStreamEvent = 8 << 20

// ssePull reads a streamed body's SSE events one at a time. Translating
// streams embed it; its Close releases the parser's coroutine at once
// (not safe during a read).
type ssePull struct {
	next func() (sse.Event, error, bool)
	stop func()
}

func newSSEPull(body io.Reader) ssePull {
	next, stop := iter.Pull2(sse.Read(body, &sse.ReadConfig{MaxEventSize: maxStreamEvent}))
	return ssePull{next: next, stop: stop}
}

// Close implements io.Closer.
func (p ssePull) Close() error {
	p.stop()
	return nil
}

// releaseWhenCollected calls stop once s is garbage collected: a stream
// abandoned before its end without Close (the client went away) still
// releases its parser.
func releaseWhenCollected[T any](s *T, stop func()) {
	runtime.AddCleanup(s, func(stop func()) { stop() }, stop)
}
