package gateway

import (
	"strings"
	"testing"

	sse "github.com/tmaxmax/go-sse"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/telemetry"
)

// The functions every call runs, one benchmark each (go test -bench Hot
// -benchmem). They run once in CI (-benchtime 1x) so that they keep
// compiling and working; their speed is read by people, as ratios.

// An answer and stream chunks as OpenAI writes them (the mock's).
const (
	hotAnswer     = `{"id":"chatcmpl-nlTBuk6xbOX3mcaGYqAU2KqIytxsU","object":"chat.completion","created":1796614979,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"see stays kept when quotas tokens so kept tell while budgets upstream now stays to calm","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":16,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_mock"}`
	hotFirstChunk = `{"id":"chatcmpl-LToeshhcpZb46jjnSOapEeoPlP6nb","object":"chat.completion.chunk","created":1796614178,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_mock","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}`
	hotChunk      = `{"id":"chatcmpl-LToeshhcpZb46jjnSOapEeoPlP6nb","object":"chat.completion.chunk","created":1796614178,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_mock","choices":[{"index":0,"delta":{"content":" kept when"},"logprobs":null,"finish_reason":null}],"usage":null}`
	hotUsageChunk = `{"id":"chatcmpl-LToeshhcpZb46jjnSOapEeoPlP6nb","object":"chat.completion.chunk","created":1796614178,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_mock","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":16,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`
	hotRequest    = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hi in five words."}],"temperature":0.2,"max_tokens":64}`
)

// BenchmarkHotParseAnswer reads what a non-streamed answer says of
// itself (id, model, finish reasons, usage), as every answer is read.
func BenchmarkHotParseAnswer(b *testing.B) {
	data := []byte(hotAnswer)
	b.ReportAllocs()
	for b.Loop() {
		if s := parseAnswer(data, false); s.Usage == nil || s.Usage.TotalTokens != 17 {
			b.Fatalf("%+v", s)
		}
	}
}

// BenchmarkHotValidAnswer checks an answer is a JSON object before it is
// relayed.
func BenchmarkHotValidAnswer(b *testing.B) {
	data := []byte(hotAnswer)
	b.ReportAllocs()
	for b.Loop() {
		if !validJSON(data) {
			b.Fatal("invalid")
		}
	}
}

// BenchmarkHotStreamChunk is one streamed chunk's way through Sluice,
// from its SSE data to the bytes written to the client: what it says of
// the answer, then its encoding for an OpenAI client.
func BenchmarkHotStreamChunk(b *testing.B) {
	for _, tc := range []struct{ name, data string }{
		{"first", hotFirstChunk}, {"content", hotChunk}, {"usage", hotUsageChunk},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sink := openAISink{includeUsage: true}
			b.ReportAllocs()
			for b.Loop() {
				var s chunkSummary
				if tc.name != "first" {
					s.ID = "chatcmpl-LToeshhcpZb46jjnSOapEeoPlP6nb" // the stream's first chunk has been read
				}
				s.chunk(tc.data)
				out, err := sink.event(sse.Event{Data: tc.data})
				if err != nil || len(out) < len(tc.data) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHotSSERead parses an upstream's stream of events.
func BenchmarkHotSSERead(b *testing.B) {
	var raw strings.Builder
	raw.WriteString("data: " + hotFirstChunk + "\n\n")
	for range 8 {
		raw.WriteString("data: " + hotChunk + "\n\n")
	}
	raw.WriteString("data: " + hotUsageChunk + "\n\ndata: [DONE]\n\n")
	stream := raw.String()
	b.ReportAllocs()
	for b.Loop() {
		ev := newChatEvents(strings.NewReader(stream), false)
		n := 0
		for {
			if _, err := ev.Next(); err != nil {
				break
			}
			n++
		}
		ev.Close()
		if n != 10 {
			b.Fatalf("%d events", n)
		}
	}
}

// BenchmarkHotParseRequest reads a client's chat request and builds the
// body sent upstream.
func BenchmarkHotParseRequest(b *testing.B) {
	body := []byte(hotRequest)
	b.ReportAllocs()
	for b.Loop() {
		req, err := parseRequest(provider.Chat, body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := req.upstreamBody("gpt-4o-mini", nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHotMetricLabels is the label set of a request's measurements:
// built per call ("built", as before attrSets) or looked up ("cached").
func BenchmarkHotMetricLabels(b *testing.B) {
	labels := func() []attribute.KeyValue {
		return []attribute.KeyValue{telemetry.Endpoint.String("chat"), telemetry.GenAIRequestModel.String("gpt-4o-mini"),
			telemetry.Channel.String("openai"), telemetry.HTTPStatus.Int(200), telemetry.Stream.Bool(true)}
	}
	b.Run("built", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if metric.WithAttributes(labels()...) == nil {
				b.Fatal("nil")
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		var c attrSets
		b.ReportAllocs()
		for b.Loop() {
			k := attrKey{kind: attrsRequest, s: [4]string{"chat", "gpt-4o-mini", "openai"}, n: 200, b: true}
			if c.get(k, telemetry.Endpoint.String("chat"), telemetry.GenAIRequestModel.String("gpt-4o-mini"),
				telemetry.Channel.String("openai"), telemetry.HTTPStatus.Int(200), telemetry.Stream.Bool(true)) == nil {
				b.Fatal("nil")
			}
		}
	})
}

// BenchmarkHotReadAnswer reads an answer body of a declared length.
func BenchmarkHotReadAnswer(b *testing.B) {
	for _, tc := range []struct {
		name     string
		declared int64
	}{{"unknown length", -1}, {"declared length", int64(len(hotAnswer))}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, err := readSized(strings.NewReader(hotAnswer), tc.declared)
				if err != nil || len(data) != len(hotAnswer) {
					b.Fatal(len(data), err)
				}
			}
		})
	}
}
