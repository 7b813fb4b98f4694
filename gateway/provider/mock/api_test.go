package mock_test

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

type embeddingList struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Usage usage `json:"usage"`
}

// vectors decodes the embeddings of a list, float or base64.
func (l embeddingList) vectors(t *testing.T, asBase64 bool) [][]float32 {
	t.Helper()
	var out [][]float32
	for i, d := range l.Data {
		if d.Object != "embedding" || d.Index != i {
			t.Errorf("item %d: object %q index %d", i, d.Object, d.Index)
		}
		var v []float32
		if asBase64 {
			var s string
			if err := json.Unmarshal(d.Embedding, &s); err != nil {
				t.Fatalf("item %d: want a base64 string: %v", i, err)
			}
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(b)%4 != 0 {
				t.Fatalf("item %d: bad base64 (%v)", i, err)
			}
			for j := 0; j < len(b); j += 4 {
				v = append(v, math.Float32frombits(binary.LittleEndian.Uint32(b[j:])))
			}
		} else if err := json.Unmarshal(d.Embedding, &v); err != nil {
			t.Fatalf("item %d: want floats: %v", i, err)
		}
		out = append(out, v)
	}
	return out
}

func TestEmbeddings(t *testing.T) {
	cases := []struct {
		name   string
		path   string
		body   map[string]any
		model  string
		n      int // vectors
		dims   int
		tokens int
	}{
		{name: "string", path: "/v1/embeddings", body: map[string]any{"model": "mock-embed", "input": "hello world!"},
			model: "mock-embed", n: 1, dims: 16, tokens: 3},
		{name: "strings", path: "/v1/embeddings", body: map[string]any{"model": "mock-embed", "input": []string{"a", "bb", "hello world!"}},
			model: "mock-embed", n: 3, dims: 16, tokens: 1 + 1 + 3},
		{name: "tokens", path: "/v1/embeddings", body: map[string]any{"model": "mock-embed", "input": []int{1, 2, 3, 4, 5}},
			model: "mock-embed", n: 1, dims: 16, tokens: 5},
		{name: "token arrays", path: "/v1/embeddings", body: map[string]any{"model": "mock-embed", "input": [][]int{{1, 2}, {3, 4, 5}}},
			model: "mock-embed", n: 2, dims: 16, tokens: 5},
		{name: "dimensions", path: "/v1/embeddings", body: map[string]any{"model": "mock-embed", "input": "x", "dimensions": 7},
			model: "mock-embed", n: 1, dims: 7, tokens: 1},
		{name: "azure deployment", path: "/openai/deployments/emb/embeddings?api-version=2024-10-21", body: map[string]any{"input": "x"},
			model: "emb", n: 1, dims: 16, tokens: 1},
	}
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var floats, encoded embeddingList
				decode(t, tg.post(t, tc.path, tc.body), http.StatusOK, &floats)
				b64 := map[string]any{"encoding_format": "base64"}
				for k, v := range tc.body {
					b64[k] = v
				}
				decode(t, tg.post(t, tc.path, b64), http.StatusOK, &encoded)

				if floats.Object != "list" || floats.Model != tc.model || len(floats.Data) != tc.n {
					t.Fatalf("object %q model %q %d items", floats.Object, floats.Model, len(floats.Data))
				}
				if floats.Usage.PromptTokens != tc.tokens || floats.Usage.TotalTokens != tc.tokens {
					t.Errorf("usage %+v, want %d tokens", floats.Usage, tc.tokens)
				}
				fv, bv := floats.vectors(t, false), encoded.vectors(t, true)
				if !reflect.DeepEqual(fv, bv) {
					t.Errorf("float and base64 vectors differ:\n%v\n%v", fv, bv)
				}
				for i, v := range fv {
					if len(v) != tc.dims {
						t.Errorf("vector %d: %d dims, want %d", i, len(v), tc.dims)
					}
					norm := 0.0
					for _, f := range v {
						norm += float64(f) * float64(f)
					}
					if math.Abs(norm-1) > 1e-4 {
						t.Errorf("vector %d: squared norm %v, want 1", i, norm)
					}
				}
			})
		}
	})
}

func TestEmbeddingsDeterministic(t *testing.T) {
	tg := target{base: "http://mock.test", client: &http.Client{Transport: mock.Transport(mock.New(mock.Config{EmbeddingDims: 32}))}}
	var a, b embeddingList
	decode(t, tg.post(t, "/v1/embeddings", map[string]any{"model": "e", "input": []string{"same", "other"}}), http.StatusOK, &a)
	decode(t, tg.post(t, "/v1/embeddings", map[string]any{"model": "e", "input": "same"}), http.StatusOK, &b)
	av, bv := a.vectors(t, false), b.vectors(t, false)
	if !reflect.DeepEqual(av[0], bv[0]) {
		t.Errorf("same input, different vectors")
	}
	if reflect.DeepEqual(av[0], av[1]) {
		t.Errorf("different inputs, same vector")
	}
	if len(av[0]) != 32 {
		t.Errorf("%d dims, want 32", len(av[0]))
	}
}

func TestModels(t *testing.T) {
	for _, tc := range []struct {
		name   string
		models []string
		want   []string
	}{
		{"default", nil, mock.DefaultModels()},
		{"configured", []string{"a", "b", "c"}, []string{"a", "b", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachTarget(t, mock.Config{Models: tc.models}, func(t *testing.T, tg target) {
				var list struct {
					Object string `json:"object"`
					Data   []struct {
						ID      string `json:"id"`
						Object  string `json:"object"`
						Created int64  `json:"created"`
						OwnedBy string `json:"owned_by"`
					} `json:"data"`
				}
				decode(t, tg.do(t, t.Context(), http.MethodGet, "/v1/models", nil), http.StatusOK, &list)
				var ids []string
				for _, m := range list.Data {
					ids = append(ids, m.ID)
					if m.Object != "model" || m.Created == 0 || m.OwnedBy == "" {
						t.Errorf("model %+v", m)
					}
				}
				if list.Object != "list" || !reflect.DeepEqual(ids, tc.want) {
					t.Errorf("object %q models %v, want %v", list.Object, ids, tc.want)
				}
			})
		})
	}
}

func TestAuth(t *testing.T) {
	cfg := mock.Config{Keys: []string{"sk-one", "sk-two"}}
	chat := map[string]any{"model": "m", "messages": userMsg("hi")}
	cases := []struct {
		name    string
		path    string
		headers []string
		ok      bool
	}{
		{"no key", "/v1/chat/completions", nil, false},
		{"wrong key", "/v1/chat/completions", []string{"Authorization", "Bearer sk-three"}, false},
		{"key without Bearer", "/v1/chat/completions", []string{"Authorization", "sk-one"}, false},
		{"bearer", "/v1/chat/completions", []string{"Authorization", "Bearer sk-one"}, true},
		{"second key", "/v1/chat/completions", []string{"Authorization", "Bearer sk-two"}, true},
		{"azure api-key", "/openai/deployments/d/chat/completions?api-version=2024-10-21", []string{"api-key", "sk-two"}, true},
		{"azure wrong api-key", "/openai/deployments/d/chat/completions?api-version=2024-10-21", []string{"api-key", "sk-x"}, false},
		{"unknown path needs a key too", "/v1/nothing", nil, false},
	}
	eachTarget(t, cfg, func(t *testing.T, tg target) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				resp := tg.post(t, tc.path, chat, tc.headers...)
				if !tc.ok {
					expectError(t, resp, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key")
					return
				}
				var cc completion
				decode(t, resp, http.StatusOK, &cc)
			})
		}
	})
}

func TestFaults(t *testing.T) {
	chat := map[string]any{"model": "m", "messages": userMsg("hi")}
	t.Run("failure rate 1", func(t *testing.T) {
		eachTarget(t, mock.Config{FailureRate: 1, Seed: 7}, func(t *testing.T, tg target) {
			for range 5 {
				expectError(t, tg.post(t, "/v1/chat/completions", chat), http.StatusInternalServerError, "server_error", "")
			}
			if st := tg.srv.Stats(); st.Failures != 5 || st.Requests != 5 || st.RateLimited != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	})
	t.Run("rate limit rate 1", func(t *testing.T) {
		eachTarget(t, mock.Config{RateLimitRate: 1, RetryAfter: 1500 * time.Millisecond, Seed: 7}, func(t *testing.T, tg target) {
			for _, path := range []string{"/v1/chat/completions", "/v1/embeddings"} {
				resp := tg.post(t, path, chat)
				if got := resp.Header.Get("Retry-After"); got != "2" {
					t.Errorf("Retry-After %q, want 2 (1.5s rounded up)", got)
				}
				if got := resp.Header.Get("retry-after-ms"); got != "1500" {
					t.Errorf("retry-after-ms %q, want 1500", got)
				}
				expectError(t, resp, http.StatusTooManyRequests, "requests", "rate_limit_exceeded")
			}
			if st := tg.srv.Stats(); st.RateLimited != 2 || st.Failures != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	})
	t.Run("default Retry-After", func(t *testing.T) {
		eachTarget(t, mock.Config{RateLimitRate: 1}, func(t *testing.T, tg target) {
			resp := tg.post(t, "/v1/chat/completions", chat)
			if resp.Header.Get("Retry-After") != "1" || resp.Header.Get("retry-after-ms") != "1000" {
				t.Errorf("headers %v", resp.Header)
			}
			expectError(t, resp, http.StatusTooManyRequests, "requests", "rate_limit_exceeded")
		})
	})
	t.Run("seeded rates", func(t *testing.T) {
		cfg := mock.Config{FailureRate: 0.3, RateLimitRate: 0.2, Seed: 42}
		const calls = 200
		var runs [2][]int
		for run := range runs {
			srv := mock.New(cfg)
			tg := target{base: "http://mock.test", client: &http.Client{Transport: mock.Transport(srv)}}
			for range calls {
				resp := tg.post(t, "/v1/chat/completions", chat)
				resp.Body.Close()
				runs[run] = append(runs[run], resp.StatusCode)
			}
			st := srv.Stats()
			// Generous bounds: 60 and 40 expected.
			if st.Failures < 30 || st.Failures > 90 || st.RateLimited < 15 || st.RateLimited > 70 {
				t.Errorf("%d calls: %d failures, %d rate limited", calls, st.Failures, st.RateLimited)
			}
			if st.Requests != calls {
				t.Errorf("%d requests counted", st.Requests)
			}
		}
		if !reflect.DeepEqual(runs[0], runs[1]) {
			t.Errorf("same seed, different outcomes")
		}
	})
}

func TestLatency(t *testing.T) {
	eachTarget(t, mock.Config{Latency: 50 * time.Millisecond, Jitter: 20 * time.Millisecond}, func(t *testing.T, tg target) {
		start := time.Now()
		resp := tg.post(t, "/v1/chat/completions", map[string]any{"model": "m", "messages": userMsg("hi")})
		resp.Body.Close()
		if took := time.Since(start); took < 50*time.Millisecond {
			t.Errorf("answered in %v, before the latency", took)
		}
		if ms, err := strconv.Atoi(resp.Header.Get("openai-processing-ms")); err != nil || ms < 50 {
			t.Errorf("openai-processing-ms %q", resp.Header.Get("openai-processing-ms"))
		}
	})
}
