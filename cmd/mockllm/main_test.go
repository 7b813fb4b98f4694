package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(strings.Fields(
		"-addr :1234 -latency 5ms -jitter 2ms -failure-rate 0.1 -rate-limit-rate 0.2 -retry-after 3s "+
			"-stream-chunks 4 -chunk-interval 7ms -reply-tokens 9 -fail-after-chunks 2 -embedding-dims 5 "+
			"-keys sk-a,,sk-b -models a,b -seed 11 -log-level debug -overloaded -spark-keys app1:key1:sec:ret1,app2:key2:s2 "+
			"-accounts qf-ak:qf-sk,AKID1:tc:secret -token-ttl 2m -service-account sa@p.iam.gserviceaccount.com="+pemFile(t)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := mock.Config{
		Latency: 5 * time.Millisecond, Jitter: 2 * time.Millisecond, FailureRate: 0.1, RateLimitRate: 0.2,
		RetryAfter: 3 * time.Second, StreamChunks: 4, ChunkInterval: 7 * time.Millisecond, ReplyTokens: 9,
		FailAfterChunks: 2, EmbeddingDims: 5, Keys: []string{"sk-a", "sk-b"}, Models: []string{"a", "b"}, Seed: 11,
		Overloaded: true, Spark: []mock.SparkKey{{AppID: "app1", APIKey: "key1", APISecret: "sec:ret1"}, {AppID: "app2", APIKey: "key2", APISecret: "s2"}},
		Accounts:        []mock.Account{{ID: "qf-ak", Secret: "qf-sk"}, {ID: "AKID1", Secret: "tc:secret"}},
		TokenTTL:        2 * time.Minute,
		ServiceAccounts: map[string]string{"sa@p.iam.gserviceaccount.com": testPEM},
	}
	if !reflect.DeepEqual(o.cfg, want) || o.addr != ":1234" || o.logLevel != slog.LevelDebug {
		t.Errorf("got %+v addr %q level %v\nwant %+v", o.cfg, o.addr, o.logLevel, want)
	}

	for _, bad := range []string{"-failure-rate 2", "-rate-limit-rate -1", "-nope", "extra", "-spark-keys app:key", "-spark-keys app::secret", "-accounts nocolon", "-accounts :secret", "-service-account nofile", "-service-account a@b=/nonexistent.pem"} {
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
		{http.MethodPost, "/v1/messages", http.StatusUnauthorized},
		{http.MethodPost, "/v1beta/models/gemini:generateContent", http.StatusForbidden},
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
	srv := mock.New(mock.Config{})
	ts := httptest.NewServer(newHandler(srv, true, slog.New(slog.DiscardHandler)))
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
	if put(`{"overloaded": true}`) != 200 || !srv.Config().Overloaded {
		t.Fatal("overloaded switched on")
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

func TestHandlerServesSpark(t *testing.T) {
	key := mock.SparkKey{AppID: "app", APIKey: "key", APISecret: "secret"}
	ts := httptest.NewServer(newHandler(mock.New(mock.Config{Spark: []mock.SparkKey{key}, StreamChunks: 2}), false, slog.New(slog.DiscardHandler)))
	defer ts.Close()
	u, err := mock.SparkURL(ts.URL, "/v3.5/chat", key.APIKey, key.APISecret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.CloseNow()
	req := map[string]any{
		"header":    map[string]any{"app_id": key.AppID},
		"parameter": map[string]any{"chat": map[string]any{"domain": "generalv3.5"}},
		"payload":   map[string]any{"message": map[string]any{"text": []map[string]string{{"role": "user", "content": "hi"}}}},
	}
	if err := wsjson.Write(ctx, conn, req); err != nil {
		t.Fatal(err)
	}
	var statuses []int
	for {
		var f struct {
			Header struct {
				Code   int `json:"code"`
				Status int `json:"status"`
			} `json:"header"`
		}
		if err := wsjson.Read(ctx, conn, &f); err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Errorf("read: %v", err)
			}
			break
		}
		if f.Header.Code != 0 {
			t.Fatalf("error frame %+v", f)
		}
		statuses = append(statuses, f.Header.Status)
	}
	if !reflect.DeepEqual(statuses, []int{0, 2}) {
		t.Errorf("frame statuses %v, want [0 2]", statuses)
	}
}

// testPEM stands for a service account's public key.
const testPEM = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"

// pemFile writes testPEM to a file and returns its path.
func pemFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sa.pem")
	if err := os.WriteFile(path, []byte(testPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
