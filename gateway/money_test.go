package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

func TestCostArithmetic(t *testing.T) {
	usage := func(prompt, cached, completion int64) *wire.Usage {
		u := &wire.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
		if cached > 0 {
			u.PromptTokensDetails = &wire.PromptTokensDetails{CachedTokens: cached}
		}
		return u
	}
	for _, tc := range []struct {
		name  string
		price config.Price
		usage *wire.Usage
		want  int64 // micro-dollars
	}{
		// $2.50/M input, $10/M output: 1000 in, 500 out.
		{"input and output", config.Price{Input: 2.5, Output: 10}, usage(1000, 0, 500), 2500 + 5000},
		// 400 of the 1000 input tokens read from the cache at $1.25/M.
		{"cached input", config.Price{Input: 2.5, Output: 10, CachedInput: 1.25}, usage(1000, 400, 500), 600*2.5 + 400*1.25 + 5000},
		{"cached input without a cached price", config.Price{Input: 2.5, Output: 10}, usage(1000, 400, 500), 2500 + 5000},
		{"per request", config.Price{PerRequest: 0.04}, usage(10, 0, 0), 40000},
		{"per request and tokens", config.Price{PerRequest: 0.01, Input: 1}, usage(100, 0, 0), 10000 + 100},
		// Fractions of a micro-dollar round up: never below a reservation.
		{"rounded up", config.Price{Input: 0.15}, usage(3, 0, 0), 1},
		{"no usage", config.Price{Input: 1, Output: 1}, nil, 0},
		{"free", config.Price{}, usage(1000, 0, 1000), 0},
	} {
		if got := costOf(tc.price, tc.usage); got != tc.want {
			t.Errorf("%s: %d micro-dollars, want %d", tc.name, got, tc.want)
		}
	}
	// The most a call can cost bounds what it costs, whatever the cache.
	p := config.Price{Input: 2.5, Output: 10, CachedInput: 1.25}
	if got := maxCostOf(p, 1000, 500); got != 7500 || got < costOf(p, usage(1000, 1000, 500)) {
		t.Errorf("max cost %d", got)
	}
	if got := maxCostOf(config.Price{Input: 1, CachedInput: 3}, 10, 0); got != 30 {
		t.Errorf("a cached price above the input price bounds the input: %d", got)
	}
	for micros, want := range map[int64]string{0: "0.000000", 5: "0.000005", 7500: "0.007500", 1234567: "1.234567", 25_000_000: "25.000000"} {
		if got := dollars(micros); got != want {
			t.Errorf("dollars(%d) = %q, want %q", micros, got, want)
		}
	}
}

// moneyConfig prices m at a dollar per thousand tokens, so that costs are
// easy to read: a token costs 1000 micro-dollars.
const moneyConfig = `
pricing: {m: {input: 1000, output: 1000}}
clients:
  - {name: c, key: sk-c, budget: {usd: BUDGET}}
  - {name: free, key: sk-free}
channels:
  - {name: up, type: openai, base_url: UP, models: [m, unpriced], credentials: [{key: k}]}
`

func TestCostReportedAndCharged(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	g, srv := startGateway(t, moneyConfig, "UP", up.URL+"/v1", "BUDGET", "10")

	// A non-streaming call: the header says what the usage in the body cost.
	resp, body := chat(t, srv, "m", "Authorization", "Bearer sk-c")
	var answer struct{ Usage wire.Usage }
	_ = json.Unmarshal(body, &answer)
	want := 1000 * (answer.Usage.PromptTokens + answer.Usage.CompletionTokens)
	if resp.StatusCode != 200 || resp.Header.Get(costHeader) != dollars(want) || want == 0 {
		t.Fatalf("%d, cost %q, want %q for %+v", resp.StatusCode, resp.Header.Get(costHeader), dollars(want), answer.Usage)
	}
	// The call set no max_tokens: under a budget, the reserved cap went
	// upstream, in the field OpenAI reads.
	if _, sent := up.lastRequest(); sent["max_completion_tokens"] != float64(4096) || sent["max_tokens"] != nil {
		t.Fatalf("upstream body: %v", sent)
	}
	spent := budgetSpent(t, g, "c")
	if spent != want {
		t.Fatalf("the budget was charged %d, want %d", spent, want)
	}

	// A stream: the usage chunk carries the cost, and so does the trailer.
	resp = call(t, srv, "/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"messages":[{"role":"user","content":"Say hello"}]}`,
		"Authorization", "Bearer sk-c")
	var chunkCost string
	var u wire.Usage
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var chunk struct {
			Usage *wire.Usage `json:"usage"`
		}
		var cost struct {
			Usage struct {
				Cost json.Number `json:"cost"`
			} `json:"usage"`
		}
		if json.Unmarshal([]byte(data), &chunk) == nil && chunk.Usage != nil && json.Unmarshal([]byte(data), &cost) == nil {
			chunkCost, u = cost.Usage.Cost.String(), *chunk.Usage
		}
	}
	resp.Body.Close()
	streamed := 1000 * (u.PromptTokens + u.CompletionTokens)
	if u.CompletionTokens != 5 || chunkCost != dollars(streamed) || resp.Trailer.Get(costHeader) != dollars(streamed) {
		t.Fatalf("stream: usage %+v, chunk cost %q, trailer %q, want %q", u, chunkCost, resp.Trailer.Get(costHeader), dollars(streamed))
	}
	if _, sent := up.lastRequest(); sent["max_tokens"] != float64(5) || sent["max_completion_tokens"] != nil {
		t.Fatalf("the client's own cap is sent as it is: %v", sent)
	}
	if got := budgetSpent(t, g, "c"); got != want+streamed {
		t.Fatalf("after the stream: %d spent, want %d", got, want+streamed)
	}

	// A model without a price is charged nothing; a client without a
	// budget gets no cap added.
	resp, _ = chat(t, srv, "unpriced", "Authorization", "Bearer sk-c")
	if resp.Header.Get(costHeader) != "0.000000" || budgetSpent(t, g, "c") != want+streamed {
		t.Fatalf("unpriced: %q", resp.Header.Get(costHeader))
	}
	chat(t, srv, "m", "Authorization", "Bearer sk-free")
	if _, sent := up.lastRequest(); sent["max_completion_tokens"] != nil {
		t.Fatalf("no budget, no cap: %v", sent)
	}
}

// budgetSpent is what a client key has spent of its daily budget.
func budgetSpent(t *testing.T, g *Gateway, name string) int64 {
	t.Helper()
	cls, err := g.Clients(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cls {
		if c.Name == name {
			l := c.Usage.Level("usd/day")
			return l.Limit - l.Remaining
		}
	}
	t.Fatalf("no client %q", name)
	return 0
}

func TestBudgetExceeded(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	g, srv := startGateway(t, moneyConfig, "UP", up.URL+"/v1", "BUDGET", "0.1")
	// Each call reserves its input bound and 10 output tokens ($0.053 at
	// most) and costs about $0.013: the $0.10 budget covers four.
	body := `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"Say hello"}]}`
	var costs int64
	for i := range 10 {
		resp := call(t, srv, "/v1/chat/completions", body, "Authorization", "Bearer sk-c")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			c, _ := strconv.ParseFloat(resp.Header.Get(costHeader), 64)
			costs += int64(c*1e6 + 0.5)
			continue
		}
		e := apiError(t, b)
		midnight := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != 429 || code(e) != "budget_exceeded" || e.Type != "insufficient_quota" ||
			!strings.Contains(e.Message, `the API key "c" has used its budget`) || !strings.Contains(e.Message, "resets at "+midnight.Format("2006-01-02T15:04:05Z")) ||
			time.Duration(retry)*time.Second < time.Until(midnight) || time.Duration(retry)*time.Second > time.Until(midnight)+2*time.Second {
			t.Fatalf("call %d: %d %s (Retry-After %q)", i, resp.StatusCode, b, resp.Header.Get("Retry-After"))
		}
		if i != 4 {
			t.Fatalf("refused at call %d, want the fifth", i)
		}
		break
	}
	spent := budgetSpent(t, g, "c")
	if spent != costs || spent > 100_000 || spent < 100_000-53_000 {
		t.Fatalf("spent %d (answers said %d): want at most the budget and more than the budget minus one call's reservation", spent, costs)
	}
	// A call that may cost more than the whole budget is told so.
	resp := call(t, srv, "/v1/chat/completions", `{"model":"m","max_tokens":1000,"messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer sk-c")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if e := apiError(t, b); resp.StatusCode != 429 || code(e) != "budget_exceeded" || !strings.Contains(e.Message, "more than a whole budget ($0.100000)") {
		t.Fatalf("a call over the whole budget: %d %s", resp.StatusCode, b)
	}
}

// TestOnlyTheAnswerIsBilled: a failed attempt that fails over is not
// billed, to the client's budget nor to its channel's.
func TestOnlyTheAnswerIsBilled(t *testing.T) {
	bad := statusUpstream(t, 500, nil, `{"error":{"message":"boom","type":"server_error"}}`)
	good := mockUpstream(t, mock.Config{})
	g, srv := startGateway(t, `
pricing: {m: {input: 1000, output: 1000}}
clients: [{name: c, key: sk-c, budget: {usd: 10}}]
channels:
  - {name: bad, type: openai, base_url: BAD, models: [m], priority: 10, budget: {usd: 10}, credentials: [{key: k}]}
  - {name: good, type: openai, base_url: GOOD, models: [m], budget: {usd: 10}, credentials: [{key: k}]}
`, "BAD", bad.URL+"/v1", "GOOD", good.URL+"/v1")
	resp, _ := chat(t, srv, "m", "Authorization", "Bearer sk-c")
	cost, _ := strconv.ParseFloat(resp.Header.Get(costHeader), 64)
	if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Attempts") != "2" || bad.hits.Load() != 1 {
		t.Fatalf("%d after %s attempts", resp.StatusCode, resp.Header.Get("X-Sluice-Attempts"))
	}
	want := int64(cost*1e6 + 0.5)
	if got := budgetSpent(t, g, "c"); got != want || want == 0 {
		t.Fatalf("the client was charged %d, want %d", got, want)
	}
	chans, err := g.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chans {
		l := ch.Shared.Usage.Level("usd/day")
		spent := l.Limit - l.Remaining
		if (ch.Name == "bad" && spent != 0) || (ch.Name == "good" && spent != want) {
			t.Fatalf("channel %s charged %d (the answer cost %d)", ch.Name, spent, want)
		}
	}
}

// TestStreamCutByTheClientIsCharged: a stream the client leaves before
// the upstream reported its usage is charged what it reserved.
func TestStreamCutByTheClientIsCharged(t *testing.T) {
	up := mockUpstream(t, mock.Config{StreamChunks: 40, ChunkInterval: 20 * time.Millisecond})
	g, srv := startGateway(t, moneyConfig, "UP", up.URL+"/v1", "BUDGET", "1")
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"m","stream":true,"max_tokens":30,"messages":[{"role":"user","content":"Say hello"}]}`))
	req.Header.Set("Authorization", "Bearer sk-c")
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil { // the first event
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	// The reservation: "Say hello" bounded at 11 bytes, two messages'
	// framing, and the 30 tokens it may answer.
	want := int64(1000 * (11 + 2*messageFraming + 30))
	deadline := time.Now().Add(5 * time.Second)
	for budgetSpent(t, g, "c") != want {
		if time.Now().After(deadline) {
			t.Fatalf("a stream left before its usage: charged %d, want the reservation %d", budgetSpent(t, g, "c"), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
