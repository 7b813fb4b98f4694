package ingress

import (
	"encoding/json"
	"fmt"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// anthropicStream encodes canonical chunks as Anthropic Messages stream
// events: message_start; per content block content_block_start, its
// deltas and content_block_stop; message_delta (stop reason and usage);
// message_stop. Only the first choice is read.
type anthropicStream struct {
	model   string
	started bool
	block   int    // the open content block's index, or -1
	kind    string // the open block's type: text or tool_use
	blocks  int    // content blocks started
	tools   []streamTool
	stop    string
	usage   *wire.Usage
}

// streamTool is a tool call met in a stream: its canonical index (nil
// when the upstream sent none), the upstream's id for it (possibly "") and
// its output position (an Anthropic content block index, or a Responses
// output index).
type streamTool struct {
	index *int
	id    string
	pos   int
}

// findTool returns the stream's tool call a canonical tool call fragment
// belongs to, or -1 when it starts a new one: the latest call of the same
// index (for a fragment without an index, the last call), unless the
// fragment carries another id.
func findTool(tools []streamTool, tc toolCall) int {
	for i := len(tools) - 1; i >= 0; i-- {
		t := tools[i]
		if tc.Index != nil && (t.index == nil || *t.index != *tc.Index) {
			continue
		}
		if tc.ID != "" && t.id != "" && tc.ID != t.id {
			return -1
		}
		return i
	}
	return -1
}

// anthropicEvent encodes one stream event.
func anthropicEvent(typ string, v any) Event {
	return Event{Type: typ, Data: string(mustMarshal(v))}
}

// Chunk implements StreamEncoder.
func (s *anthropicStream) Chunk(data []byte) ([]Event, error) {
	c, err := parseChunk(data)
	if err != nil {
		return nil, fmt.Errorf("anthropic stream: %w", err)
	}
	var events []Event
	if !s.started {
		events = append(events, s.start(c.ID, c.Model))
	}
	if c.Usage != nil {
		s.usage = c.Usage
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue
		}
		for _, text := range []*string{ch.Delta.Content, ch.Delta.Refusal} {
			if text == nil || *text == "" {
				continue
			}
			if s.kind != "text" {
				events = append(events, s.open("text", map[string]string{"type": "text", "text": ""})...)
			}
			events = append(events, s.delta(map[string]string{"type": "text_delta", "text": *text}))
		}
		for _, tc := range ch.Delta.ToolCalls {
			events = append(events, s.toolCall(tc)...)
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			events = append(events, s.close()...)
			s.stop = anthropicStopReason(*ch.FinishReason, len(s.tools) > 0)
		}
	}
	return events, nil
}

// toolCall encodes a tool call fragment: a new call opens a tool_use
// block; arguments become input_json_delta events.
func (s *anthropicStream) toolCall(tc toolCall) []Event {
	var events []Event
	i := findTool(s.tools, tc)
	if i < 0 {
		events = s.open("tool_use", anthropicToolUse{Type: "tool_use", ID: toolUseID(tc.ID), Name: tc.Function.Name, Input: json.RawMessage(`{}`)})
		s.tools = append(s.tools, streamTool{index: tc.Index, id: tc.ID, pos: s.block})
		i = len(s.tools) - 1
	}
	if tc.Function.Arguments != "" {
		events = append(events, anthropicEvent("content_block_delta", anthropicBlockDelta{
			Type: "content_block_delta", Index: s.tools[i].pos,
			Delta: map[string]string{"type": "input_json_delta", "partial_json": tc.Function.Arguments},
		}))
	}
	return events
}

// anthropicBlockDelta is a content_block_delta event.
type anthropicBlockDelta struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
	Delta any    `json:"delta"`
}

// start encodes message_start.
func (s *anthropicStream) start(id, model string) Event {
	s.started = true
	if s.model != "" {
		model = s.model
	}
	return anthropicEvent("message_start", struct {
		Type    string              `json:"type"`
		Message anthropicMessageOut `json:"message"`
	}{"message_start", anthropicMessageOut{
		ID: newID("msg_", id), Type: "message", Role: "assistant", Model: model, Content: []json.RawMessage{},
	}})
}

// open closes the open block and starts a new one.
func (s *anthropicStream) open(kind string, block any) []Event {
	events := s.close()
	s.block, s.kind = s.blocks, kind
	s.blocks++
	return append(events, anthropicEvent("content_block_start", struct {
		Type         string `json:"type"`
		Index        int    `json:"index"`
		ContentBlock any    `json:"content_block"`
	}{"content_block_start", s.block, block}))
}

// delta encodes a delta of the open block.
func (s *anthropicStream) delta(d any) Event {
	return anthropicEvent("content_block_delta", anthropicBlockDelta{Type: "content_block_delta", Index: s.block, Delta: d})
}

// close stops the open block, if any.
func (s *anthropicStream) close() []Event {
	if s.block < 0 {
		return nil
	}
	e := anthropicEvent("content_block_stop", struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
	}{"content_block_stop", s.block})
	s.block, s.kind = -1, ""
	return []Event{e}
}

// End implements StreamEncoder.
func (s *anthropicStream) End() []Event {
	var events []Event
	if !s.started {
		events = append(events, s.start("", ""))
	}
	events = append(events, s.close()...)
	stop := s.stop
	if stop == "" {
		stop = anthropicStopReason("", len(s.tools) > 0)
	}
	events = append(events, anthropicEvent("message_delta", anthropicMessageDelta{
		Type: "message_delta", Delta: anthropicStop{StopReason: stop}, Usage: anthropicUsageOf(s.usage),
	}))
	return append(events, anthropicEvent("message_stop", map[string]string{"type": "message_stop"}))
}

// anthropicMessageDelta is the message_delta event: the stop reason and
// the final usage.
type anthropicMessageDelta struct {
	Type  string         `json:"type"`
	Delta anthropicStop  `json:"delta"`
	Usage anthropicUsage `json:"usage"`
}

// anthropicStop is why a message stopped.
type anthropicStop struct {
	StopReason   string  `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"` // always null: canonical answers do not say
}

// Fail implements StreamEncoder: an error event (api_error).
func (s *anthropicStream) Fail(message string) []Event {
	return []Event{anthropicEvent("error", anthropicError{
		Type: "error", Error: anthropicErrorDetail{Type: "api_error", Message: message},
	})}
}
