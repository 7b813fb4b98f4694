package ingress

import (
	"fmt"
	"strings"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// responsesStream encodes canonical chunks as Responses stream events:
// response.created and response.in_progress; per output item
// response.output_item.added, its deltas, its done events and
// response.output_item.done; response.completed (or response.incomplete,
// or response.failed). Every event carries an increasing sequence_number.
// Only the first choice is read.
type responsesStream struct {
	model   string
	started bool
	seq     int
	base    string // the canonical answer's id, from which ids derive
	resp    responsesObject
	items   []*responsesStreamItem
	open    int // the open item's index in items, or -1
	tools   []streamTool
	finish  string
	usage   *wire.Usage
}

// responsesStreamItem is an output item being streamed.
type responsesStreamItem struct {
	kind   string // message or function_call
	id     string
	callID string
	name   string
	buf    strings.Builder // a function call's arguments
	parts  []*streamPart   // a message's content parts; all but the last are done
	status string          // in_progress, completed, incomplete
}

// streamPart is a message's content part: output text or a refusal.
type streamPart struct {
	refusal bool
	text    strings.Builder
}

// value is the part as the Responses API writes it.
func (p *streamPart) value() any {
	if p.refusal {
		return map[string]string{"type": "refusal", "refusal": p.text.String()}
	}
	return outputText(p.text.String())
}

// snapshot is the item as it stands: a message in progress has no content
// yet.
func (it *responsesStreamItem) snapshot() any {
	if it.kind == "function_call" {
		return responsesFunctionCall{
			Type: "function_call", ID: it.id, CallID: it.callID, Name: it.name, Arguments: it.buf.String(), Status: it.status,
		}
	}
	content := []any{}
	if it.status != "in_progress" {
		for _, p := range it.parts {
			content = append(content, p.value())
		}
	}
	return responsesMessageItem{Type: "message", ID: it.id, Status: it.status, Role: "assistant", Content: content}
}

// emit encodes one event, numbering it.
func (s *responsesStream) emit(typ string, fields map[string]any) Event {
	fields["type"] = typ
	fields["sequence_number"] = s.seq
	s.seq++
	return Event{Type: typ, Data: string(mustMarshal(fields))}
}

// start encodes response.created and response.in_progress.
func (s *responsesStream) start(id string, created int64, model string) []Event {
	s.started, s.base = true, id
	if s.model != "" {
		model = s.model
	}
	s.resp = newResponsesObject(id, created, model)
	return []Event{
		s.emit("response.created", map[string]any{"response": s.resp}),
		s.emit("response.in_progress", map[string]any{"response": s.resp}),
	}
}

// Chunk implements StreamEncoder.
func (s *responsesStream) Chunk(data []byte) ([]Event, error) {
	c, err := parseChunk(data)
	if err != nil {
		return nil, fmt.Errorf("responses stream: %w", err)
	}
	var events []Event
	if !s.started {
		events = s.start(c.ID, c.Created, c.Model)
	}
	if c.Usage != nil {
		s.usage = c.Usage
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue
		}
		if t := ch.Delta.Content; t != nil && *t != "" {
			events = append(events, s.text(*t, false)...)
		}
		if t := ch.Delta.Refusal; t != nil && *t != "" {
			events = append(events, s.text(*t, true)...)
		}
		for _, tc := range ch.Delta.ToolCalls {
			events = append(events, s.toolCall(tc)...)
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			s.finish = *ch.FinishReason
		}
	}
	return events, nil
}

// add closes the open item and starts a new one.
func (s *responsesStream) add(it *responsesStreamItem) []Event {
	events := s.close("completed")
	s.open = len(s.items)
	s.items = append(s.items, it)
	return append(events, s.emit("response.output_item.added", map[string]any{
		"output_index": s.open, "item": it.snapshot(),
	}))
}

// itemID is the id of the output item at index i.
func (s *responsesStream) itemID(prefix string, i int) string {
	return fmt.Sprintf("%s_%d", newID(prefix, s.base), i)
}

// text encodes a text or refusal delta, opening a message item if needed,
// and a content part of its kind: output_text.delta or refusal.delta.
func (s *responsesStream) text(delta string, refusal bool) []Event {
	var events []Event
	if s.open < 0 || s.items[s.open].kind != "message" {
		events = s.add(&responsesStreamItem{kind: "message", id: s.itemID("msg_", len(s.items)), status: "in_progress"})
	}
	it := s.items[s.open]
	if n := len(it.parts); n == 0 || it.parts[n-1].refusal != refusal {
		events = append(events, s.endPart(s.open)...)
		p := &streamPart{refusal: refusal}
		it.parts = append(it.parts, p)
		events = append(events, s.emit("response.content_part.added", map[string]any{
			"item_id": it.id, "output_index": s.open, "content_index": len(it.parts) - 1, "part": p.value(),
		}))
	}
	i := len(it.parts) - 1
	it.parts[i].text.WriteString(delta)
	if refusal {
		return append(events, s.emit("response.refusal.delta", map[string]any{
			"item_id": it.id, "output_index": s.open, "content_index": i, "delta": delta,
		}))
	}
	return append(events, s.emit("response.output_text.delta", map[string]any{
		"item_id": it.id, "output_index": s.open, "content_index": i, "delta": delta, "logprobs": []any{},
	}))
}

// endPart ends the last content part of the message at index pos:
// output_text.done or refusal.done, then content_part.done.
func (s *responsesStream) endPart(pos int) []Event {
	it := s.items[pos]
	if len(it.parts) == 0 {
		return nil
	}
	i, p := len(it.parts)-1, it.parts[len(it.parts)-1]
	typ, fields := "response.output_text.done", map[string]any{
		"item_id": it.id, "output_index": pos, "content_index": i, "text": p.text.String(), "logprobs": []any{},
	}
	if p.refusal {
		typ, fields = "response.refusal.done", map[string]any{
			"item_id": it.id, "output_index": pos, "content_index": i, "refusal": p.text.String(),
		}
	}
	return []Event{s.emit(typ, fields), s.emit("response.content_part.done", map[string]any{
		"item_id": it.id, "output_index": pos, "content_index": i, "part": p.value(),
	})}
}

// toolCall encodes a tool call fragment: a new call opens a function_call
// item; arguments become function_call_arguments.delta events.
func (s *responsesStream) toolCall(tc toolCall) []Event {
	var events []Event
	i := findTool(s.tools, tc)
	if i < 0 {
		it := &responsesStreamItem{
			kind: "function_call", id: s.itemID("fc_", len(s.items)), callID: callID(tc.ID), name: tc.Function.Name, status: "in_progress",
		}
		events = s.add(it)
		s.tools = append(s.tools, streamTool{index: tc.Index, id: tc.ID, pos: s.open})
		i = len(s.tools) - 1
	}
	if tc.Function.Arguments == "" {
		return events
	}
	pos := s.tools[i].pos
	it := s.items[pos]
	it.buf.WriteString(tc.Function.Arguments)
	return append(events, s.emit("response.function_call_arguments.delta", map[string]any{
		"item_id": it.id, "output_index": pos, "delta": tc.Function.Arguments,
	}))
}

// close ends the open item, if any, with status.
func (s *responsesStream) close(status string) []Event {
	if s.open < 0 {
		return nil
	}
	i, it := s.open, s.items[s.open]
	s.open = -1
	it.status = status
	var events []Event
	if it.kind == "message" {
		events = s.endPart(i)
	} else {
		events = append(events, s.emit("response.function_call_arguments.done", map[string]any{
			"item_id": it.id, "output_index": i, "arguments": it.buf.String(),
		}))
	}
	return append(events, s.emit("response.output_item.done", map[string]any{"output_index": i, "item": it.snapshot()}))
}

// final is the Response with every item as it stands.
func (s *responsesStream) final() responsesObject {
	o := s.resp
	o.Output = make([]any, 0, len(s.items))
	for _, it := range s.items {
		o.Output = append(o.Output, it.snapshot())
	}
	o.Usage = responsesUsageOf(s.usage)
	return o
}

// End implements StreamEncoder: response.completed, or
// response.incomplete when the answer was cut short.
func (s *responsesStream) End() []Event {
	var events []Event
	if !s.started {
		events = s.start("", 0, "")
	}
	s.resp.finish(s.finish)
	status, typ := "completed", "response.completed"
	if s.resp.Status == "incomplete" {
		status, typ = "incomplete", "response.incomplete"
	}
	events = append(events, s.close(status)...)
	return append(events, s.emit(typ, map[string]any{"response": s.final()}))
}

// Fail implements StreamEncoder: response.failed, with the output so far
// (an item left open is incomplete).
func (s *responsesStream) Fail(message string) []Event {
	var events []Event
	if !s.started {
		events = s.start("", 0, "")
	}
	if s.open >= 0 {
		s.items[s.open].status = "incomplete"
		s.open = -1
	}
	o := s.final()
	o.Status, o.Error = "failed", &responsesError{Code: "server_error", Message: message}
	return append(events, s.emit("response.failed", map[string]any{"response": o}))
}
