package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/breaker"
	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

const streamBody = `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`

func TestStreamRelay(t *testing.T) {
	up := mockUpstream(t, mock.Config{StreamChunks: 5})
	_, srv := startGateway(t, `channels: [{type: openai, base_url: U, models: [m]}]`, "U", up.URL)
	for _, tt := range []struct {
		name      string
		body      string
		wantUsage bool
	}{
		{"without usage", streamBody, false},
		{"with usage", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := call(t, srv, "/v1/chat/completions", tt.body)
			defer resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			events := readSSE(t, resp.Body)
			if len(events) < 3 || events[len(events)-1] != "[DONE]" {
				t.Fatalf("stream must end with [DONE]: %q", events)
			}
			var text strings.Builder
			sawUsage := false
			for _, e := range events[:len(events)-1] {
				var chunk struct {
					Object  string `json:"object"`
					Choices []struct {
						Delta struct{ Content string } `json:"delta"`
					} `json:"choices"`
					Usage *wire.Usage `json:"usage"`
				}
				if err := json.Unmarshal([]byte(e), &chunk); err != nil || chunk.Object != "chat.completion.chunk" {
					t.Fatalf("bad chunk %q: %v", e, err)
				}
				for _, c := range chunk.Choices {
					text.WriteString(c.Delta.Content)
				}
				if chunk.Usage != nil {
					sawUsage = true
				}
			}
			if text.Len() == 0 {
				t.Fatal("no content streamed")
			}
			if sawUsage != tt.wantUsage {
				t.Fatalf("usage chunk present = %v, want %v", sawUsage, tt.wantUsage)
			}
			// Sluice always asks the upstream for usage, to settle token quotas.
			_, sent := up.lastRequest()
			if opts, _ := sent["stream_options"].(map[string]any); opts["include_usage"] != true {
				t.Fatalf("upstream not asked for usage: %v", sent["stream_options"])
			}
		})
	}
}

// TestStreamFlushesEachChunk holds the upstream after its first chunk and
// checks that the client already has it.
func TestStreamFlushesEachChunk(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"first"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"second"}}]}`+"\n\ndata: [DONE]\n\n")
	}))
	_, srv := startGateway(t, `channels: [{type: openai, base_url: U, models: [m]}]`, "U", up.URL)
	resp := call(t, srv, "/v1/chat/completions", streamBody)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() {
		line, _ := br.ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if !strings.Contains(line, "first") {
			t.Fatalf("first line %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first chunk was not flushed while the upstream was still streaming")
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "second") || !strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("rest of stream: %q", rest)
	}
}

func TestStreamFailsOverBeforeFirstEvent(t *testing.T) {
	// a answers 200 and then closes without a single event.
	a := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
	}))
	b := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, twoChannels, "A", a.URL, "B", b.URL)
	resp := call(t, srv, "/v1/chat/completions", streamBody)
	defer resp.Body.Close()
	events := readSSE(t, resp.Body)
	if resp.Header.Get("X-Sluice-Credential") != "b" || events[len(events)-1] != "[DONE]" {
		t.Fatalf("credential %q, events %q", resp.Header.Get("X-Sluice-Credential"), events)
	}
}

func TestStreamErrorEventBeforeFirstChunkFailsOver(t *testing.T) {
	a := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"error":{"message":"overloaded","type":"server_error"}}`+"\n\n")
	}))
	b := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, twoChannels, "A", a.URL, "B", b.URL)
	resp := call(t, srv, "/v1/chat/completions", streamBody)
	defer resp.Body.Close()
	events := readSSE(t, resp.Body)
	if resp.Header.Get("X-Sluice-Credential") != "b" || events[len(events)-1] != "[DONE]" {
		t.Fatalf("credential %q, events %q", resp.Header.Get("X-Sluice-Credential"), events)
	}
}

func TestStreamBrokenMidway(t *testing.T) {
	a := mockUpstream(t, mock.Config{StreamChunks: 10, FailAfterChunks: 3})
	b := mockUpstream(t, mock.Config{})
	g, srv := startGateway(t, strings.Replace(twoChannels, "failures: 100", "failures: 1, open_timeout: 1h", 1), "A", a.URL, "B", b.URL)
	resp := call(t, srv, "/v1/chat/completions", streamBody)
	defer resp.Body.Close()
	events := readSSE(t, resp.Body)
	last := events[len(events)-1]
	if resp.Header.Get("X-Sluice-Credential") != "a" {
		t.Fatalf("served by %q", resp.Header.Get("X-Sluice-Credential"))
	}
	if !strings.Contains(last, `"error"`) || !strings.Contains(last, "upstream_stream_error") {
		t.Fatalf("a broken stream must end with an error event, got %q", events)
	}
	for _, e := range events {
		if e == "[DONE]" {
			t.Fatal("a broken stream must not claim [DONE]")
		}
	}
	if b.hits.Load() != 0 {
		t.Fatal("no failover after the first byte")
	}
	waitFor(t, func() bool { return g.breakers.State("a") == breaker.Open })
	// The next request avoids the broken credential.
	resp2 := call(t, srv, "/v1/chat/completions", streamBody)
	readSSE(t, resp2.Body)
	resp2.Body.Close()
	if resp2.Header.Get("X-Sluice-Credential") != "b" {
		t.Fatalf("next request went to %q", resp2.Header.Get("X-Sluice-Credential"))
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	_, srv := startGateway(t, `channels: [{type: openai, base_url: U, models: [m], stream_idle_timeout: 200ms}]`, "U", up.URL)
	resp := call(t, srv, "/v1/chat/completions", streamBody)
	defer resp.Body.Close()
	events := readSSE(t, resp.Body)
	if len(events) != 2 || !strings.Contains(events[1], "stream_idle_timeout") {
		t.Fatalf("events %q", events)
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	up := mockUpstream(t, mock.Config{StreamChunks: 1000, ChunkInterval: 20 * time.Millisecond})
	_, srv := startGateway(t, `channels: [{type: openai, base_url: U, models: [m]}]`, "U", up.URL)
	resp := call(t, srv, "/v1/chat/completions", streamBody)
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // the client goes away mid-stream
	waitFor(t, func() bool { return up.canceled.Load() == 1 })
}

func TestEmbeddingsRelay(t *testing.T) {
	up := mockUpstream(t, mock.Config{EmbeddingDims: 8})
	_, srv := startGateway(t, `channels: [{type: openai, base_url: U, models: [emb]}]`, "U", up.URL)
	resp := call(t, srv, "/v1/embeddings", `{"model":"emb","input":["a","b"]}`)
	defer resp.Body.Close()
	var out struct {
		Data []struct {
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
		Usage wire.Usage `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	if len(out.Data) != 2 || len(out.Data[0].Embedding) != 8 || out.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings %+v", out)
	}
}

// TestStreamReusesUpstreamConnection relays streams one after another
// and counts the upstream connections they took: a finished stream's
// connection goes back to the pool (its body is read to its end), so
// the next first token does not wait for a new connection.
func TestStreamReusesUpstreamConnection(t *testing.T) {
	var conns atomic.Int64
	stream := mock.New(mock.Config{StreamChunks: 3})
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stream.ServeHTTP(w, r)
		// The end of the chunked body comes a moment after [DONE], as
		// it may from a busy upstream.
		time.Sleep(5 * time.Millisecond)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	_, srv := startGateway(t, `channels: [{type: openai, base_url: U, models: [m]}]`, "U", up.URL)
	const streams = 20
	for range streams {
		resp := call(t, srv, "/v1/chat/completions", streamBody)
		events := readSSE(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || events[len(events)-1] != "[DONE]" {
			t.Fatalf("status %d, events %q", resp.StatusCode, events)
		}
	}
	if n := conns.Load(); n > 2 {
		t.Fatalf("%d streams took %d upstream connections; finished streams must give theirs back", streams, n)
	}
}

// TestStreamEndsWhenUpstreamLingers: an upstream that holds its stream
// open after [DONE] does not hold the client's answer; the drain gives
// up within its bound.
func TestStreamEndsWhenUpstreamLingers(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}`+"\n\ndata: [DONE]\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	_, srv := startGateway(t, `channels: [{type: openai, base_url: U, models: [m]}]`, "U", up.URL)
	resp := call(t, srv, "/v1/chat/completions", streamBody)
	defer resp.Body.Close()
	done := make(chan []string, 1)
	go func() { done <- readSSE(t, resp.Body) }()
	select {
	case events := <-done:
		if events[len(events)-1] != "[DONE]" {
			t.Fatalf("events %q", events)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client's stream did not end while the upstream lingered after [DONE]")
	}
}
