package provider

import (
	"io"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// TestNativeStreamUsage: a natively relayed Anthropic stream is charged
// its input and output tokens, whichever events report them (Anthropic's
// documented message_delta carries output_tokens only). (Moved from the
// gateway package with the native stream reading.)
func TestNativeStreamUsage(t *testing.T) {
	start := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":1000,\"cache_read_input_tokens\":24,\"output_tokens\":1}}}\n\n"
	for _, tc := range []struct {
		name  string
		delta string
		want  wire.Usage
	}{
		{"output only", `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}`, wire.Usage{PromptTokens: 1024, CompletionTokens: 15, TotalTokens: 1039}},
		{"cumulative input too", `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":1000,"cache_read_input_tokens":24,"output_tokens":15}}`, wire.Usage{PromptTokens: 1024, CompletionTokens: 15, TotalTokens: 1039}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := claude{}.NativeEvents(strings.NewReader(start+"event: message_delta\ndata: "+tc.delta+"\n\n"), false)
			defer s.Close()
			for {
				if _, err := s.Next(); err != nil {
					break
				}
			}
			u := s.Summary().Usage
			if u == nil || u.PromptTokens != tc.want.PromptTokens || u.CompletionTokens != tc.want.CompletionTokens || u.Cached() != 24 || u.Total(0) != tc.want.TotalTokens {
				t.Fatalf("usage %+v, want %+v", u, tc.want)
			}
			if sum := s.Summary(); sum.ID != "msg_1" || sum.Model != "claude" || len(sum.Finish) != 1 || sum.Finish[0] != "end_turn" {
				t.Fatalf("summary %+v", sum)
			}
		})
	}
}

// TestNativeDataOnlyEvents: an Anthropic-compatible upstream that sends
// data-only events (no "event:" lines) is read by the payload's type: the
// answer ends at message_stop, not as a stream cut short.
func TestNativeDataOnlyEvents(t *testing.T) {
	body := "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\n" +
		"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n" +
		"data: {\"type\":\"message_stop\"}\n\n"
	events := claude{}.NativeEvents(strings.NewReader(body), false)
	defer events.Close()
	var types []string
	for {
		ev, err := events.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %v: %v", types, err)
		}
		types = append(types, ev.Type)
	}
	if strings.Join(types, ",") != "message_start,content_block_delta,message_stop" {
		t.Fatalf("events %v", types)
	}
}
