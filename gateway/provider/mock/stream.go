package mock

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// chunk is a chat.completion.chunk. Usage is omitted unless the client
// asked for it, then null on every chunk but the last.
type chunk struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	ServiceTier       string          `json:"service_tier"`
	SystemFingerprint string          `json:"system_fingerprint"`
	Choices           []chunkChoice   `json:"choices"`
	Usage             json.RawMessage `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int       `json:"index"`
	Delta        delta     `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"` // always null
	FinishReason *string   `json:"finish_reason"`
}

type delta struct {
	Role      string     `json:"role,omitempty"`
	Content   *string    `json:"content,omitempty"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

// streamChat sends plan as server-sent events the way OpenAI does: per
// choice a role chunk, content (or tool argument) chunks, a finish chunk;
// then the usage chunk if asked for, then [DONE]. Choices are interleaved.
func (s *Server) streamChat(w http.ResponseWriter, r *http.Request, plan *chatPlan) {
	s.streams.Add(1)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{
		ctx:      r.Context(),
		w:        w,
		rc:       http.NewResponseController(w),
		plan:     plan,
		interval: s.conf().ChunkInterval,
	}
	if err := sw.rc.Flush(); err != nil {
		s.canceled.Add(1)
		return
	}
	if err := s.sendStream(sw); err != nil {
		s.canceled.Add(1)
		return
	}
	s.countUsage(plan.usage)
}

// sendStream writes every event of sw's plan.
func (s *Server) sendStream(sw *sseWriter) error {
	plan := sw.plan
	pieces := make([][]string, len(plan.answers))
	steps := 0
	for i, a := range plan.answers {
		if a.call != nil {
			pieces[i] = splitText(a.call.arguments, s.conf().StreamChunks)
		} else {
			pieces[i] = splitWords(a.words, s.conf().StreamChunks)
		}
		steps = max(steps, len(pieces[i]))
	}

	for i, a := range plan.answers {
		d := delta{Role: "assistant"}
		if a.call != nil {
			d.ToolCalls = []toolCall{{Index: new(0), ID: a.call.id, Type: "function",
				Function: toolFunction{Name: a.call.name}}}
		} else {
			d.Content = new("")
		}
		if err := sw.send(i, d, nil); err != nil {
			return err
		}
	}
	sent := 0
	for step := range steps {
		for i, a := range plan.answers {
			if step >= len(pieces[i]) {
				continue
			}
			var d delta
			if a.call != nil {
				d.ToolCalls = []toolCall{{Index: new(0), Function: toolFunction{Arguments: pieces[i][step]}}}
			} else {
				d.Content = &pieces[i][step]
			}
			if err := sw.send(i, d, nil); err != nil {
				return err
			}
			sent++
			if s.conf().FailAfterChunks > 0 && sent == s.conf().FailAfterChunks {
				s.aborted.Add(1)
				panic(http.ErrAbortHandler)
			}
		}
	}
	for i, a := range plan.answers {
		if err := sw.send(i, delta{}, &a.finish); err != nil {
			return err
		}
	}
	// OpenAI writes the usage chunk and [DONE] right after the last
	// finish chunk, with no pause between them.
	sw.atOnce = true
	if plan.includeUsage {
		u, err := json.Marshal(plan.usage)
		if err != nil {
			return fmt.Errorf("encode usage: %w", err)
		}
		if err := sw.event(sw.chunk([]chunkChoice{}, u)); err != nil {
			return err
		}
	}
	return sw.write([]byte("data: [DONE]\n\n"))
}

// sseWriter writes the events of one stream, pausing between them.
type sseWriter struct {
	ctx      context.Context
	w        http.ResponseWriter
	rc       *http.ResponseController
	plan     *chatPlan
	interval time.Duration
	started  bool
	atOnce   bool // no more pauses: the answer's tail
}

// send writes a chunk with one choice.
func (sw *sseWriter) send(index int, d delta, finish *string) error {
	var u json.RawMessage
	if sw.plan.includeUsage {
		u = json.RawMessage("null")
	}
	return sw.event(sw.chunk([]chunkChoice{{Index: index, Delta: d, FinishReason: finish}}, u))
}

func (sw *sseWriter) chunk(choices []chunkChoice, u json.RawMessage) chunk {
	p := sw.plan
	return chunk{
		ID:                p.id,
		Object:            "chat.completion.chunk",
		Created:           p.created,
		Model:             p.model,
		ServiceTier:       serviceTier,
		SystemFingerprint: systemFingerprint,
		Choices:           choices,
		Usage:             u,
	}
}

// event writes c as a "data:" event.
func (sw *sseWriter) event(c chunk) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode chunk: %w", err)
	}
	buf := make([]byte, 0, len(b)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, b...)
	buf = append(buf, "\n\n"...)
	return sw.write(buf)
}

// write pauses for the chunk interval (except before the first event
// and in the answer's tail), then writes and flushes b.
func (sw *sseWriter) write(b []byte) error {
	if sw.started && !sw.atOnce && !sleep(sw.ctx, sw.interval) {
		return fmt.Errorf("stream: %w", context.Cause(sw.ctx))
	}
	sw.started = true
	if err := sw.ctx.Err(); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	if _, err := sw.w.Write(b); err != nil {
		return fmt.Errorf("stream write: %w", err)
	}
	if err := sw.rc.Flush(); err != nil {
		return fmt.Errorf("stream flush: %w", err)
	}
	return nil
}

// splitWords spreads words over at most n pieces of nearly equal size,
// one word at least each. The pieces concatenate to the words joined by
// spaces: every piece but the first starts with a space.
func splitWords(words []string, n int) []string {
	n = min(n, len(words))
	pieces := make([]string, n)
	for j := range n {
		lo, hi := j*len(words)/n, (j+1)*len(words)/n
		p := strings.Join(words[lo:hi], " ")
		if j > 0 {
			p = " " + p
		}
		pieces[j] = p
	}
	return pieces
}

// splitText cuts s into at most n pieces of nearly equal length, on rune
// boundaries.
func splitText(s string, n int) []string {
	runes := utf8.RuneCountInString(s)
	n = min(n, runes)
	pieces := make([]string, 0, n)
	rest := s
	for j := range n {
		want := (j+1)*runes/n - j*runes/n
		cut := 0
		for range want {
			_, size := utf8.DecodeRuneInString(rest[cut:])
			cut += size
		}
		pieces = append(pieces, rest[:cut])
		rest = rest[cut:]
	}
	return pieces
}

// openEventStream starts a text/event-stream answer and returns a writer
// for its events, pausing interval between them. It fails if the client
// is already gone.
func openEventStream(w http.ResponseWriter, r *http.Request, interval time.Duration) (*sseWriter, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{ctx: r.Context(), w: w, rc: http.NewResponseController(w), interval: interval}
	if err := sw.rc.Flush(); err != nil {
		return nil, fmt.Errorf("stream flush: %w", err)
	}
	return sw, nil
}

// jsonEvent writes one event: head (such as "event: ping\ndata: "), v as
// JSON, then end (such as "\n\n").
func (sw *sseWriter) jsonEvent(head string, v any, end string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	buf := make([]byte, 0, len(head)+len(b)+len(end))
	buf = append(buf, head...)
	buf = append(buf, b...)
	buf = append(buf, end...)
	return sw.write(buf)
}
