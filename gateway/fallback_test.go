package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	anthropicopt "github.com/anthropics/anthropic-sdk-go/option"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// failing is an upstream that fails every call the way a reason says.
func failing(t *testing.T, why string) *upstream {
	switch why {
	case "rate_limit":
		return statusUpstream(t, 429, map[string]string{"Retry-After": "30"}, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`)
	case "unavailable":
		return statusUpstream(t, 503, nil, `{"error":{"message":"The server is overloaded","type":"server_error"}}`)
	case "timeout":
		return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}))
	case "context_window":
		return statusUpstream(t, 400, nil, `{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`)
	case "context_window_claude":
		return statusUpstream(t, 400, nil, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}`)
	case "context_window_gemini":
		return statusUpstream(t, 400, nil, `{"error":{"code":400,"message":"The input token count (1048579) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}`)
	case "content_policy":
		return statusUpstream(t, 400, nil, `{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","code":"content_policy_violation"}}`)
	case "bad_request":
		return statusUpstream(t, 400, nil, `{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}`)
	}
	t.Fatalf("no upstream for %q", why)
	return nil
}

// TestFallbackReasons: each reason of a chain falls back; another 4xx
// does not, and neither does a reason the chain does not name.
func TestFallbackReasons(t *testing.T) {
	good := nativeUpstream(t, mock.Config{})
	for _, tc := range []struct {
		upstream, typ string
		on            string
		falls         bool
	}{
		{"rate_limit", "openai", "", true},
		{"unavailable", "openai", "", true},
		{"timeout", "openai", "", true},
		{"context_window", "openai", "[context_window]", true},
		{"context_window_claude", "claude", "[context_window]", true},
		{"context_window_gemini", "gemini", "[context_window]", true},
		{"content_policy", "openai", "[content_policy]", true},
		{"context_window", "openai", "", false}, // the default reasons do not include it
		{"bad_request", "openai", "[rate_limit, unavailable, timeout, context_window, content_policy]", false},
	} {
		t.Run(tc.upstream+" "+tc.on, func(t *testing.T) {
			bad := failing(t, tc.upstream)
			on := ""
			if tc.on != "" {
				on = ", on: " + tc.on
			}
			base := bad.URL
			if tc.typ == "openai" {
				base += "/v1"
			}
			_, srv := startGateway(t, `
routing: {fallbacks: [{model: big, to: [small]ON}]}
channels:
  - {name: first, type: TYPE, base_url: BAD, models: [big], timeout: 300ms, credentials: [{id: bad, key: anthropic-key-1}]}
  - {name: second, type: openai, base_url: GOOD/v1, models: [small], credentials: [{id: good, key: anthropic-key-1}]}
`, "ON", on, "TYPE", tc.typ, "BAD", base, "GOOD", good.URL)
			resp, body := chat(t, srv, "big")
			if !tc.falls {
				if resp.StatusCode == 200 || resp.Header.Get("X-Sluice-Fallback") != "" {
					t.Fatalf("fell back: %d %s", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Fallback") != "big" || resp.Header.Get("X-Sluice-Model") != "small" ||
				resp.Header.Get("X-Sluice-Credential") != "good" {
				t.Fatalf("%d fallback %q model %q: %s", resp.StatusCode, resp.Header.Get("X-Sluice-Fallback"), resp.Header.Get("X-Sluice-Model"), body)
			}
		})
	}
}

// TestFallbackChain: a chain of three where the first two fail (the
// second by a rate limit of its own); the attempts and the time of the
// whole chain stay within routing.retry.
func TestFallbackChain(t *testing.T) {
	good := nativeUpstream(t, mock.Config{})
	down, limited := failing(t, "unavailable"), failing(t, "rate_limit")
	config := `
routing:
  retry: {max_attempts: ATTEMPTS, max_time: 10s}
  fallbacks: [{model: a, to: [b, c]}]
channels:
  - {name: a, type: openai, base_url: DOWN/v1, models: [a], credentials: [{id: a1, key: anthropic-key-1}, {id: a2, key: anthropic-key-1}]}
  - {name: b, type: openai, base_url: LIMITED/v1, models: [b], credentials: [{id: b1, key: anthropic-key-1}]}
  - {name: c, type: claude, base_url: GOOD, models: [c], credentials: [{id: c1, key: anthropic-key-1}]}
`
	_, srv := startGateway(t, config, "ATTEMPTS", "4", "DOWN", down.URL, "LIMITED", limited.URL, "GOOD", good.URL)
	resp, body := chat(t, srv, "a")
	if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Model") != "c" || resp.Header.Get("X-Sluice-Attempts") != "4" ||
		resp.Header.Get("X-Sluice-Credential") != "c1" {
		t.Fatalf("%d model %q after %s attempts: %s", resp.StatusCode, resp.Header.Get("X-Sluice-Model"), resp.Header.Get("X-Sluice-Attempts"), body)
	}
	// b1 rests after its 429: the next request skips it without an
	// attempt (a refusal by its quota is a rate limit too) and still
	// reaches c.
	resp, _ = chat(t, srv, "a")
	if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Model") != "c" || resp.Header.Get("X-Sluice-Attempts") != "3" {
		t.Fatalf("with b resting: %d after %s attempts", resp.StatusCode, resp.Header.Get("X-Sluice-Attempts"))
	}

	// Three attempts: a1, a2 and b1 use them up; c is never tried.
	_, srv = startGateway(t, config, "ATTEMPTS", "3", "DOWN", down.URL, "LIMITED", limited.URL, "GOOD", good.URL)
	resp, body = chat(t, srv, "a")
	if resp.StatusCode == 200 {
		t.Fatalf("answered beyond max_attempts: %s", body)
	}

	// Time: a timeout of 300ms per attempt and 500ms for the whole
	// request leave no time for the second model.
	slow := failing(t, "timeout")
	_, srv = startGateway(t, `
routing:
  retry: {max_attempts: 5, max_time: 500ms}
  fallbacks: [{model: a, to: [b, c]}]
channels:
  - {name: a, type: openai, base_url: SLOW/v1, models: [a], timeout: 300ms, credentials: [{id: a1, key: anthropic-key-1}]}
  - {name: b, type: openai, base_url: SLOW/v1, models: [b], timeout: 300ms, credentials: [{id: b1, key: anthropic-key-1}]}
  - {name: c, type: openai, base_url: GOOD/v1, models: [c], credentials: [{id: c1, key: anthropic-key-1}]}
`, "SLOW", slow.URL, "GOOD", good.URL)
	start := time.Now()
	resp, _ = chat(t, srv, "a")
	if took := time.Since(start); resp.StatusCode == 200 || took > 2*time.Second {
		t.Fatalf("%d after %v: the chain went past max_time", resp.StatusCode, took)
	}
}

// TestFallbackAcrossAPIs: an OpenAI model falls back to a Claude channel,
// and a Claude model asked for on /v1/messages falls back to an OpenAI
// channel, streaming and not; the client's model list is checked on the
// model it asked for only.
func TestFallbackAcrossAPIs(t *testing.T) {
	good := nativeUpstream(t, mock.Config{StreamChunks: 4})
	down := failing(t, "unavailable")
	_, srv := startGateway(t, `
clients: [{name: app, key: sk-app, models: [gpt-4o, claude-sonnet]}]
routing:
  fallbacks:
    - {model: gpt-4o, to: [claude-haiku]}
    - {model: claude-sonnet, to: [gpt-4o-mini]}
channels:
  - {name: openai-down, type: openai, base_url: DOWN/v1, models: [gpt-4o], credentials: [{id: o1, key: anthropic-key-1}]}
  - {name: claude-down, type: claude, base_url: DOWN, models: [claude-sonnet], credentials: [{id: c1, key: anthropic-key-1}]}
  - {name: claude, type: claude, base_url: GOOD, models: [claude-haiku], credentials: [{id: c2, key: anthropic-key-1}]}
  - {name: openai, type: openai, base_url: GOOD/v1, models: [gpt-4o-mini], credentials: [{id: o2, key: anthropic-key-1}]}
`, "DOWN", down.URL, "GOOD", good.URL)

	for _, stream := range []bool{false, true} {
		body := `{"model":"gpt-4o","stream":` + map[bool]string{false: "false", true: "true"}[stream] + `,"messages":[{"role":"user","content":"hi"}]}`
		resp := call(t, srv, "/v1/chat/completions", body, "Authorization", "Bearer sk-app")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Credential") != "c2" || resp.Header.Get("X-Sluice-Fallback") != "gpt-4o" ||
			!strings.Contains(string(b), "assistant") && !strings.Contains(string(b), "content") {
			t.Fatalf("stream %v: %d %s", stream, resp.StatusCode, b)
		}
		if _, sent := good.lastRequest(); sent["max_tokens"] == nil || sent["system"] != nil && stream {
			// A Claude request: max_tokens is always sent.
			t.Fatalf("claude upstream got %v", sent)
		}
	}

	client := anthropicClient(srv, "sk-app")
	params := anthropic.MessageNewParams{Model: "claude-sonnet", MaxTokens: 64,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello!"))}}
	var resp *http.Response
	msg, err := client.Messages.New(context.Background(), params, anthropicopt.WithResponseInto(&resp))
	if err != nil || resp.Header.Get("X-Sluice-Credential") != "o2" || len(msg.Content) == 0 || msg.Content[0].Text == "" {
		t.Fatalf("messages: %v %+v", err, msg)
	}
	if _, sent := good.lastRequest(); sent["messages"] == nil || sent["max_tokens"] == nil && sent["max_completion_tokens"] == nil {
		t.Fatalf("openai upstream got %v", sent)
	}
	stream := client.Messages.NewStreaming(context.Background(), params)
	var text strings.Builder
	for stream.Next() {
		if ev := stream.Current(); ev.Type == "content_block_delta" {
			text.WriteString(ev.Delta.Text)
		}
	}
	if stream.Err() != nil || text.Len() == 0 {
		t.Fatalf("messages stream: %v %q", stream.Err(), text.String())
	}

	// The fallback model is the operator's choice: the client may not
	// ask for it by name.
	resp2, _ := chat(t, srv, "claude-haiku", "Authorization", "Bearer sk-app")
	if resp2.StatusCode != http.StatusForbidden {
		t.Fatalf("asking for the fallback by name: %d", resp2.StatusCode)
	}
}

// TestClientQuotaDoesNotFallBack: a client over its own quota is refused,
// whatever the chain.
func TestClientQuotaDoesNotFallBack(t *testing.T) {
	good := nativeUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
clients: [{name: app, key: sk-app, limits: {rpm: 1}}]
routing: {fallbacks: [{model: a, to: [b]}]}
channels:
  - {name: a, type: openai, base_url: GOOD/v1, models: [a], credentials: [{id: a1, key: anthropic-key-1}]}
  - {name: b, type: openai, base_url: GOOD/v1, models: [b], credentials: [{id: b1, key: anthropic-key-1}]}
`, "GOOD", good.URL)
	chat(t, srv, "a", "Authorization", "Bearer sk-app")
	resp, _ := chat(t, srv, "a", "Authorization", "Bearer sk-app")
	if resp.StatusCode != 429 || resp.Header.Get("X-Sluice-Fallback") != "" {
		t.Fatalf("%d, fallback %q", resp.StatusCode, resp.Header.Get("X-Sluice-Fallback"))
	}
}
