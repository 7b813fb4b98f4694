package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

// budgetConfig prices model m at a dollar per thousand tokens and gives
// the client buyer $1 a day; each instance writes its usage records to a
// file of its own.
func budgetConfig(redisAddr, upstream, records, redisExtra string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
redis: {url: "redis://%s", timeout: 1s%s}
pricing: {m: {input: 1000, output: 1000}}
clients: [{name: buyer, key: sk-buyer, budget: {usd: 1}}]
usage: {records: {to: [file], file: %q}}
channels: [{name: up, type: openai, base_url: "%s/v1", models: [m], credentials: [{id: c1}, {id: c2}]}]
`, redisAddr, redisExtra, records, upstream)
}

// budgetCall is what one call cost, as its answer says.
type budgetCall struct {
	status    int
	requestID string
	header    float64 // X-Sluice-Cost, dollars
	usage     int64   // micro-dollars, from the usage the upstream reported
	code      string  // the error code of a refusal
}

func callBudget(t *testing.T, p *process) budgetCall {
	req, _ := http.NewRequest("POST", p.url()+"/v1/chat/completions",
		strings.NewReader(`{"model":"m","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-buyer")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("call: %v", err)
		return budgetCall{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	c := budgetCall{status: resp.StatusCode, requestID: resp.Header.Get("X-Request-Id")}
	if resp.StatusCode != 200 {
		var e struct{ Error struct{ Code string } }
		_ = json.Unmarshal(body, &e)
		c.code = e.Error.Code
		return c
	}
	c.header, _ = strconv.ParseFloat(resp.Header.Get("X-Sluice-Cost"), 64)
	var a struct {
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	_ = json.Unmarshal(body, &a)
	c.usage = 1000 * (a.Usage.PromptTokens + a.Usage.CompletionTokens)
	return c
}

// TestBudgetAcrossInstances offers a $1 budget five times what it covers,
// concurrently, through three instances on one Redis, in exact and lease
// mode: what is spent is never above the budget, and never below it by
// more than one call's reservation. Every call leaves one usage record.
func TestBudgetAcrossInstances(t *testing.T) {
	for _, mode := range []struct{ name, redis string }{{"exact", ""}, {"lease", ", lease: {enabled: true}"}} {
		t.Run(mode.name, func(t *testing.T) {
			redis := redistest.Start(t)
			up := start(t, "mockllm", "-addr", "127.0.0.1:0", "-reply-tokens", "10")
			dir := t.TempDir()
			var insts []*process
			var files []string
			for i := range 3 {
				records := filepath.Join(dir, fmt.Sprintf("usage-%d.jsonl", i))
				path := filepath.Join(dir, fmt.Sprintf("sluice-%d.yaml", i))
				os.WriteFile(path, []byte(budgetConfig(redis.Addr, up.url(), records, mode.redis)), 0o600)
				insts = append(insts, start(t, "sluice", "serve", "--config", path))
				files = append(files, records)
			}

			// A call reserves its input bound ("hi" is 4 bytes, with two
			// messages' framing: 36 tokens) and 20 output tokens: $0.056.
			// It costs about $0.011: the budget covers about 90 calls.
			const maxCost = 56_000
			const workers, each = 30, 15 // 450 offered
			var mu sync.Mutex
			var calls []budgetCall
			var wg sync.WaitGroup
			start := time.Now()
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						c := callBudget(t, insts[(w+i)%3])
						mu.Lock()
						calls = append(calls, c)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			took := time.Since(start)
			// What leased batches held goes back within a hold; then one
			// more call per instance shows the budget is used up.
			time.Sleep(time.Second)
			for _, p := range insts {
				calls = append(calls, callBudget(t, p))
			}

			var spent, headers int64
			var ok, refused int
			ids := map[string]bool{}
			for _, c := range calls {
				ids[c.requestID] = true
				switch {
				case c.status == 200:
					ok++
					spent += c.usage
					headers += int64(c.header*1e6 + 0.5)
				case c.status == 429 && c.code == "budget_exceeded":
					refused++
				default:
					t.Fatalf("a call answered %d %s", c.status, c.code)
				}
			}
			t.Logf("%s: %d calls in %v: %d answered, %d refused; spent $%.6f of $1 (at least $%.6f)",
				mode.name, len(calls), took.Round(time.Millisecond), ok, refused, float64(spent)/1e6, float64(1_000_000-maxCost)/1e6)
			if spent != headers {
				t.Errorf("the X-Sluice-Cost headers add up to %d, the usage to %d", headers, spent)
			}
			if spent > 1_000_000 {
				t.Errorf("spent %d micro-dollars: over the budget", spent)
			}
			if spent < 1_000_000-maxCost {
				t.Errorf("spent %d micro-dollars: more than one call's reservation (%d) left unspent", spent, maxCost)
			}
			if ok*5 > len(calls) {
				t.Errorf("%d of %d answered: the load was not five times what the budget covers", ok, len(calls))
			}

			// Every call has one record, in one instance's file.
			var records map[string]int
			waitFor(t, 10*time.Second, "every usage record written", func() bool {
				records = map[string]int{}
				for _, f := range files {
					readRecords(t, f, records)
				}
				return len(records) >= len(ids)
			})
			for id := range ids {
				if records[id] != 1 {
					t.Fatalf("request %s has %d usage records", id, records[id])
				}
			}
		})
	}
}

// readRecords counts the records of a JSON-lines file by request ID.
func readRecords(t *testing.T, path string, into map[string]int) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct {
			RequestID string `json:"request_id"`
			Client    string `json:"client"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue // a line being written
		}
		if r.Client != "buyer" {
			t.Fatalf("a record of client %q", r.Client)
		}
		into[r.RequestID]++
	}
}
