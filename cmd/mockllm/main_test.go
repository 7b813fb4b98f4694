package main

import (
	"context"
	"encoding/json"
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
	ts := httptest.NewServer(newHandler(mock.New(mock.Config{Keys: []string{"k"}}), true, slog.New(slog.DiscardHandler)))
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

func TestControl(t *testing.T) {
	ts := httptest.NewServer(newHandler(mock.New(mock.Config{}), true, slog.New(slog.DiscardHandler)))
	defer ts.Close()
	chat := func() int {
		resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	put := func(body string) int {
		req, _ := http.NewRequest(http.MethodPut, ts.URL+"/_mock/config", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if chat() != 200 {
		t.Fatal("healthy first")
	}
	if put(`{"failure_rate": 1}`) != 200 || chat() != 500 {
		t.Fatal("failures switched on")
	}
	if put(`{"failure_rate": 0, "latency": "1ms"}`) != 200 || chat() != 200 {
		t.Fatal("and off again")
	}
	if put(`{"failure_rate": 2}`) != 400 || put(`{"latency": "soon"}`) != 400 {
		t.Fatal("bad knobs are refused")
	}
	resp, err := http.Get(ts.URL + "/_mock/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st mock.Stats
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Requests != 3 || st.Failures != 1 {
		t.Fatalf("stats %+v", st)
	}
}
