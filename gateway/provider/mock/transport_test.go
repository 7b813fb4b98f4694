package mock_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// waitTimeout bounds waits for things that should happen at once; it is
// generous so that a loaded machine does not fail the tests.
const waitTimeout = 10 * time.Second

var streamBody = map[string]any{"model": "m", "stream": true, "messages": userMsg("hi")}

func TestFailAfterChunks(t *testing.T) {
	eachTarget(t, mock.Config{StreamChunks: 8, FailAfterChunks: 3}, func(t *testing.T, tg target) {
		resp := tg.post(t, "/v1/chat/completions", streamBody)
		defer resp.Body.Close()
		events, err := readSSE(resp.Body)
		if err == nil {
			t.Fatalf("stream ended cleanly after %d events, want a read error", len(events))
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Logf("read error %v (not io.ErrUnexpectedEOF)", err)
		}
		if len(events) != 1+3 { // role chunk + 3 content chunks
			t.Errorf("%d events before the abort, want 4: %q", len(events), events)
		}
		if st := tg.srv.Stats(); st.Aborted != 1 || st.Streams != 1 || st.CompletionTokens != 0 {
			t.Errorf("stats %+v", st)
		}
		// Plain answers are not affected.
		var cc completion
		decode(t, tg.post(t, "/v1/chat/completions", map[string]any{"model": "m", "messages": userMsg("hi")}), http.StatusOK, &cc)
	})
	t.Run("more than the stream has", func(t *testing.T) {
		eachTarget(t, mock.Config{StreamChunks: 4, FailAfterChunks: 5}, func(t *testing.T, tg target) {
			resp := tg.post(t, "/v1/chat/completions", streamBody)
			defer resp.Body.Close()
			events, err := readSSE(resp.Body)
			if err != nil || events[len(events)-1] != "[DONE]" {
				t.Errorf("want a complete stream, got %d events, err %v", len(events), err)
			}
		})
	})
}

// watched wraps h, closing the returned channel when a call returns.
func watched(h http.Handler) (http.Handler, <-chan struct{}) {
	done := make(chan struct{})
	var once atomic.Bool
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if once.CompareAndSwap(false, true) {
				close(done)
			}
		}()
		h.ServeHTTP(w, r)
	}), done
}

func waitDone(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("handler still running")
	}
}

func TestTransportStopsHandler(t *testing.T) {
	slow := mock.Config{ChunkInterval: time.Hour}
	cases := []struct {
		name string
		stop func(cancel context.CancelFunc, body io.Closer)
	}{
		{"context cancelled", func(cancel context.CancelFunc, _ io.Closer) { cancel() }},
		{"body closed", func(_ context.CancelFunc, body io.Closer) { body.Close() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := mock.New(slow)
			h, done := watched(srv)
			tg := target{base: "http://mock.test", client: &http.Client{Transport: mock.Transport(h)}}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			resp := tg.do(t, ctx, http.MethodPost, "/v1/chat/completions", streamBody)
			br := bufio.NewReader(resp.Body)
			if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
				t.Fatalf("first line %q, %v", line, err)
			}
			tc.stop(cancel, resp.Body)
			waitDone(t, done)
			if _, err := io.ReadAll(br); err == nil {
				t.Error("body read after the stop succeeded, want an error")
			}
			if st := srv.Stats(); st.Canceled != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
	t.Run("cancelled during latency", func(t *testing.T) {
		h, done := watched(mock.New(mock.Config{Latency: time.Hour}))
		client := &http.Client{Transport: mock.Transport(h)}
		ctx, cancel := context.WithCancel(t.Context())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://mock.test/v1/chat/completions", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(20*time.Millisecond, cancel)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			t.Fatal("request succeeded, want the cancellation")
		} else if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		waitDone(t, done)
	})
}

func TestTransportPanics(t *testing.T) {
	cases := []struct {
		name         string
		handler      http.HandlerFunc
		roundTripErr bool   // the error comes from RoundTrip, not the body
		unexpected   bool   // the body error wraps io.ErrUnexpectedEOF
		partial      string // body read before the error
	}{
		{name: "abort before header", roundTripErr: true,
			handler: func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }},
		{name: "abort mid-body", unexpected: true, partial: "partial",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "partial")
				panic(http.ErrAbortHandler)
			}},
		{name: "panic before header", roundTripErr: true,
			handler: func(http.ResponseWriter, *http.Request) { panic("boom") }},
		{name: "panic mid-body", partial: "x",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, "x")
				panic(errors.New("boom"))
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := &http.Client{Transport: mock.Transport(tc.handler)}
			resp, err := client.Get("http://mock.test/")
			if tc.roundTripErr {
				if err == nil {
					resp.Body.Close()
					t.Fatal("RoundTrip succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err == nil || string(got) != tc.partial {
				t.Fatalf("body %q, err %v; want %q then an error", got, err, tc.partial)
			}
			if tc.unexpected && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %v, want io.ErrUnexpectedEOF", err)
			}
		})
	}
}

func TestTransportRequestAndResponse(t *testing.T) {
	release := make(chan struct{})
	var bodyClosed atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Seen", r.Method+" "+r.Host+" "+r.RequestURI+" "+r.URL.Query().Get("q")+" "+r.Header.Get("X-Test"))
			w.Header().Set("Content-Length", "6")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write(b[:6])
		case "/empty":
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/early":
			w.WriteHeader(http.StatusAccepted)
			http.NewResponseController(w).Flush()
			<-release
			_, _ = io.WriteString(w, "late")
		}
	})
	client := &http.Client{Transport: mock.Transport(h)}

	t.Run("request seen by the handler", func(t *testing.T) {
		body := &closeRecorder{Reader: strings.NewReader("hello world"), closed: &bodyClosed}
		req, _ := http.NewRequest(http.MethodPut, "http://mock.test/echo?q=1", body)
		req.Header.Set("X-Test", "yes")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != "hello " || resp.StatusCode != http.StatusCreated || resp.ContentLength != 6 {
			t.Errorf("status %d length %d body %q err %v", resp.StatusCode, resp.ContentLength, got, err)
		}
		if seen := resp.Header.Get("X-Seen"); seen != "PUT mock.test /echo?q=1 1 yes" {
			t.Errorf("handler saw %q", seen)
		}
		if !bodyClosed.Load() {
			t.Error("request body not closed")
		}
	})
	t.Run("handler writes nothing", func(t *testing.T) {
		resp, err := client.Get("http://mock.test/empty")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(got) != 0 || resp.StatusCode != http.StatusOK {
			t.Errorf("status %d body %q err %v", resp.StatusCode, got, err)
		}
	})
	t.Run("no content", func(t *testing.T) {
		resp, err := client.Get("http://mock.test/nocontent")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("response before the handler returns", func(t *testing.T) {
		resp, err := client.Get("http://mock.test/early")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("status %d", resp.StatusCode)
		}
		close(release)
		if got, err := io.ReadAll(resp.Body); err != nil || string(got) != "late" {
			t.Errorf("body %q err %v", got, err)
		}
	})
}

type closeRecorder struct {
	io.Reader
	closed *atomic.Bool
}

func (c *closeRecorder) Close() error {
	c.closed.Store(true)
	return nil
}
