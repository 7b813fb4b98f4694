package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(strings.Fields(
		"-addr :1234 -latency 5ms -jitter 2ms -failure-rate 0.1 -rate-limit-rate 0.2 -retry-after 3s "+
			"-stream-chunks 4 -chunk-interval 7ms -reply-tokens 9 -fail-after-chunks 2 -embedding-dims 5 "+
			"-keys sk-a,,sk-b -models a,b -seed 11 -log-level debug"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := mock.Config{
		Latency: 5 * time.Millisecond, Jitter: 2 * time.Millisecond, FailureRate: 0.1, RateLimitRate: 0.2,
		RetryAfter: 3 * time.Second, StreamChunks: 4, ChunkInterval: 7 * time.Millisecond, ReplyTokens: 9,
		FailAfterChunks: 2, EmbeddingDims: 5, Keys: []string{"sk-a", "sk-b"}, Models: []string{"a", "b"}, Seed: 11,
	}
	if !reflect.DeepEqual(o.cfg, want) || o.addr != ":1234" || o.logLevel != slog.LevelDebug {
		t.Errorf("got %+v addr %q level %v\nwant %+v", o.cfg, o.addr, o.logLevel, want)
	}

	for _, bad := range []string{"-failure-rate 2", "-rate-limit-rate -1", "-nope", "extra"} {
		if _, err := parseFlags(strings.Fields(bad), io.Discard); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestHandler(t *testing.T) {
	ts := httptest.NewServer(newHandler(mock.New(mock.Config{Keys: []string{"k"}}), slog.New(slog.DiscardHandler)))
	defer ts.Close()
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/healthz", http.StatusOK}, // no key needed
		{http.MethodGet, "/v1/models", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, nil)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
	}
}

func TestRunShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, options{addr: "127.0.0.1:0", shutdownTimeout: time.Second}, slog.New(slog.DiscardHandler))
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the context ended")
	}
}
