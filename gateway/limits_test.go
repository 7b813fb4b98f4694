package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// burst fires n calls at once and returns their statuses and responses.
func burst(t *testing.T, n int, do func() *http.Response) []*http.Response {
	t.Helper()
	out := make([]*http.Response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp := do()
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			out[i] = resp
		})
	}
	wg.Wait()
	return out
}

func countStatus(resps []*http.Response, status int) int {
	n := 0
	for _, r := range resps {
		if r.StatusCode == status {
			n++
		}
	}
	return n
}

func TestQPSLimitRefusesWithHeaders(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
channels: [{type: openai, base_url: U, models: [m], credentials: [{id: a, limits: {qps: 1, burst: 5}}]}]
`, "U", up.URL)
	resps := burst(t, 12, func() *http.Response { return call(t, srv, "/v1/chat/completions", chatBody("m")) })
	ok, limited := countStatus(resps, 200), countStatus(resps, 429)
	if ok != 5 || limited != 7 {
		t.Fatalf("ok=%d limited=%d, want 5 and 7", ok, limited)
	}
	for _, r := range resps {
		if r.StatusCode != 429 {
			continue
		}
		if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 {
			t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
		}
		if r.Header.Get("x-ratelimit-limit-requests") != "5" || r.Header.Get("x-ratelimit-remaining-requests") != "0" {
			t.Fatalf("rate-limit headers: %v", r.Header)
		}
	}
	if up.hits.Load() != 5 {
		t.Fatalf("upstream saw %d calls, want 5", up.hits.Load())
	}
}

func TestFullCredentialIsSkipped(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
routing: {strategy: first}
channels:
  - {type: openai, base_url: U, models: [m], credentials: [{id: small, limits: {rpm: 3}}, {id: big}]}
`, "U", up.URL)
	served := map[string]int{}
	for range 10 {
		resp, body := chat(t, srv, "m")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		served[resp.Header.Get("X-Sluice-Credential")]++
		if resp.Header.Get("X-Sluice-Attempts") != "1" {
			t.Fatal("a full credential is skipped without an upstream attempt")
		}
	}
	if served["small"] != 3 || served["big"] != 7 {
		t.Fatalf("served %v, want small=3 big=7", served)
	}
}

func TestWaitTimeoutQueuesBriefly(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
channels: [{type: openai, base_url: U, models: [m], credentials: [{id: a, limits: {qps: 10, burst: 1, wait_timeout: 5s}}]}]
`, "U", up.URL)
	start := time.Now()
	resps := burst(t, 5, func() *http.Response { return call(t, srv, "/v1/chat/completions", chatBody("m")) })
	if n := countStatus(resps, 200); n != 5 {
		t.Fatalf("%d of 5 served; with wait_timeout all must wait their turn", n)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatal("5 requests at 10 QPS burst 1 cannot all pass in under 400ms")
	}

	_, srv2 := startGateway(t, `
channels: [{type: openai, base_url: U, models: [m], credentials: [{id: a, limits: {qps: 0.1, burst: 1, wait_timeout: 1s}}]}]
`, "U", up.URL)
	chat(t, srv2, "m")
	start = time.Now()
	resp, _ := chat(t, srv2, "m")
	if resp.StatusCode != 429 || time.Since(start) > 900*time.Millisecond {
		t.Fatalf("a wait longer than wait_timeout must be refused at once: %d after %v", resp.StatusCode, time.Since(start))
	}
}

func TestConcurrencyLimit(t *testing.T) {
	up := mockUpstream(t, mock.Config{Latency: 300 * time.Millisecond})
	_, srv := startGateway(t, `
channels: [{type: openai, base_url: U, models: [m], credentials: [{id: a, limits: {concurrency: 2}}]}]
`, "U", up.URL)
	resps := burst(t, 5, func() *http.Response { return call(t, srv, "/v1/chat/completions", chatBody("m")) })
	if ok := countStatus(resps, 200); ok != 2 {
		t.Fatalf("%d served at once, want 2", ok)
	}
	// Slots are released when calls end.
	if resp, _ := chat(t, srv, "m"); resp.StatusCode != 200 {
		t.Fatalf("after the burst: %d", resp.StatusCode)
	}
}

func TestTPMReservesAndSettles(t *testing.T) {
	up := mockUpstream(t, mock.Config{ReplyTokens: 10})
	_, srv := startGateway(t, `
channels: [{type: openai, base_url: U, models: [m], credentials: [{id: a, limits: {tpm: 1000}}]}]
`, "U", up.URL)
	body := func(maxTokens int) string {
		return fmt.Sprintf(`{"model":"m","max_tokens":%d,"messages":[{"role":"user","content":"hi"}]}`, maxTokens)
	}
	// Each call reserves ~400 tokens but uses ~11: the reservation is
	// corrected when it ends, so many calls fit one minute.
	for i := range 10 {
		resp := call(t, srv, "/v1/chat/completions", body(400))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("call %d: %d; settled usage must free the reservation", i, resp.StatusCode)
		}
	}
	// A call that can never fit is refused outright.
	resp := call(t, srv, "/v1/chat/completions", body(5000))
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 {
		t.Fatalf("oversized reservation: %d %s", resp.StatusCode, b)
	}
}

func TestClientQuota(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
clients:
  - {name: small, key: sk-small, limits: {rpm: 3}}
  - {name: big, key: sk-big}
channels: [{type: openai, base_url: U, models: [m]}]
`, "U", up.URL)
	for i := range 3 {
		resp, _ := chat(t, srv, "m", "Authorization", "Bearer sk-small")
		if resp.StatusCode != 200 {
			t.Fatalf("call %d: %d", i, resp.StatusCode)
		}
		if want := strconv.Itoa(2 - i); resp.Header.Get("x-ratelimit-remaining-requests") != want {
			t.Fatalf("remaining %q, want %s", resp.Header.Get("x-ratelimit-remaining-requests"), want)
		}
	}
	resp, body := chat(t, srv, "m", "Authorization", "Bearer sk-small")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over quota: %d %s", resp.StatusCode, body)
	}
	if e := apiError(t, body); code(e) != "rate_limit_exceeded" {
		t.Fatalf("error %+v", e)
	}
	if resp, _ := chat(t, srv, "m", "Authorization", "Bearer sk-big"); resp.StatusCode != 200 {
		t.Fatal("one client's quota must not affect another")
	}
}

func TestSharedChannelLimits(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
routing: {strategy: first}
channels:
  - name: account
    type: openai
    base_url: U
    models: [m]
    shared_limits: {rpm: 5}
    credentials: [{id: k1, limits: {rpm: 3}}, {id: k2, limits: {rpm: 3}}]
`, "U", up.URL)
	served := map[string]int{}
	for range 8 {
		resp, _ := chat(t, srv, "m")
		served[fmt.Sprint(resp.StatusCode, resp.Header.Get("X-Sluice-Credential"))]++
	}
	// k1 takes its 3, k2 only 2 before the account's 5 are spent.
	if served["200k1"] != 3 || served["200k2"] != 2 || served["429"] != 3 {
		t.Fatalf("served %v", served)
	}
}
