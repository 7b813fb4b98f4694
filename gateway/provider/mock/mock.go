// Package mock is a fake OpenAI-compatible upstream. It answers chat
// completions (plain, streamed, with tool calls), embeddings and the model
// list in OpenAI's wire format, with tunable latency, failures, rate limits
// and mid-stream aborts. Sluice's tests, quickstart and benchmarks use it,
// in-process through Transport or over a socket as the mockllm binary.
//
// Answers are deterministic given the request: the reply text depends only
// on the model and the messages, and an embedding only on its input.
package mock

import (
	"crypto/subtle"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config tunes the fake upstream. The zero value answers at once, never
// fails, streams 8 chunks.
type Config struct {
	// Latency is the delay before response headers. Default 0.
	Latency time.Duration
	// Jitter adds a uniform extra latency in [0, Jitter). Default 0.
	Jitter time.Duration
	// FailureRate is the share of calls answered 500 with OpenAI's
	// server_error JSON. Default 0; 1 fails every call.
	FailureRate float64
	// RateLimitRate is the share of calls answered 429 with Retry-After
	// and retry-after-ms headers and OpenAI's rate limit error JSON.
	// Default 0. A call fails at most once: with FailureRate f and
	// RateLimitRate r, min(r, 1-f) of the calls get 429s.
	RateLimitRate float64
	// RetryAfter is the wait advertised with 429s. Zero means 1s.
	RetryAfter time.Duration
	// StreamChunks is the number of content chunks per streamed choice.
	// Zero means 8. A reply of fewer words gets one chunk per word.
	StreamChunks int
	// ChunkInterval is the pause between streamed chunks. Default 0.
	ChunkInterval time.Duration
	// ReplyTokens is the number of words (≈ tokens) per answer. Zero
	// means 16.
	ReplyTokens int
	// FailAfterChunks, when positive, makes a stream abort the connection
	// (panic(http.ErrAbortHandler)) right after this many content chunks:
	// a mid-stream upstream failure. Streams with fewer content chunks
	// finish normally. Default 0: never.
	FailAfterChunks int
	// Keys, when non-empty, are the accepted API keys, sent as
	// "Authorization: Bearer <key>" or (Azure) "api-key: <key>"; other
	// calls get 401 invalid_api_key. Default: no auth.
	Keys []string
	// Models is the list served at GET /v1/models. Default "mock-gpt",
	// "mock-embed". Chat and embeddings accept any model name.
	Models []string
	// EmbeddingDims is the length of embedding vectors unless a request
	// asks for other dimensions. Zero means 16.
	EmbeddingDims int
	// Seed seeds the failure and rate-limit dice, the jitter and the IDs,
	// for deterministic tests. Zero means a random seed.
	Seed uint64
}

// Defaults applied to zero Config fields.
const (
	defaultRetryAfter    = time.Second
	defaultStreamChunks  = 8
	defaultReplyTokens   = 16
	defaultEmbeddingDims = 16
)

// DefaultModels are the models listed when Config.Models is empty.
func DefaultModels() []string { return []string{"mock-gpt", "mock-embed"} }

// withDefaults fills in zero fields and clamps out-of-range ones.
func (c Config) withDefaults() Config {
	c.Latency = max(c.Latency, 0)
	c.Jitter = max(c.Jitter, 0)
	c.ChunkInterval = max(c.ChunkInterval, 0)
	c.FailureRate = clamp01(c.FailureRate)
	c.RateLimitRate = clamp01(c.RateLimitRate)
	if c.RetryAfter <= 0 {
		c.RetryAfter = defaultRetryAfter
	}
	if c.StreamChunks <= 0 {
		c.StreamChunks = defaultStreamChunks
	}
	if c.ReplyTokens <= 0 {
		c.ReplyTokens = defaultReplyTokens
	}
	if c.EmbeddingDims <= 0 {
		c.EmbeddingDims = defaultEmbeddingDims
	}
	if len(c.Models) == 0 {
		c.Models = DefaultModels()
	}
	c.Keys = append([]string(nil), c.Keys...)
	c.Models = append([]string(nil), c.Models...)
	return c
}

func clamp01(f float64) float64 {
	if math.IsNaN(f) {
		return 0
	}
	return min(max(f, 0), 1)
}

// Server is the fake upstream. It implements http.Handler and is safe for
// concurrent use.
type Server struct {
	cfg atomic.Pointer[Config]

	mu  sync.Mutex // guards rng
	rng *rand.Rand

	requests, streams, failures, rateLimited       atomic.Int64
	aborted, canceled, promptTokens, completionTok atomic.Int64
}

// Stats are a Server's counters since it was created.
type Stats struct {
	Requests    int64 // calls received
	Streams     int64 // streamed chat answers started
	Failures    int64 // 500s sent
	RateLimited int64 // 429s sent
	Aborted     int64 // streams cut off on purpose (FailAfterChunks)
	Canceled    int64 // streams stopped because the client went away
	// PromptTokens and CompletionTokens sum the usage of the answers sent
	// in full (streams that reached [DONE]).
	PromptTokens     int64
	CompletionTokens int64
}

// New returns a Server answering as cfg says.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	var src *rand.PCG
	if cfg.Seed != 0 {
		src = rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)
	} else {
		src = rand.NewPCG(rand.Uint64(), rand.Uint64())
	}
	s := &Server{rng: rand.New(src)}
	s.cfg.Store(&cfg)
	return s
}

// conf returns the Server's current configuration.
func (s *Server) conf() *Config { return s.cfg.Load() }

// Config returns the Server's current configuration.
func (s *Server) Config() Config { return *s.conf() }

// SetConfig changes how the Server answers from the next call on (tests
// and demos switch failures on and off this way). The RNG keeps its seed.
func (s *Server) SetConfig(cfg Config) {
	cfg = cfg.withDefaults()
	s.cfg.Store(&cfg)
}

// Stats returns the counters since the Server was created.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:         s.requests.Load(),
		Streams:          s.streams.Load(),
		Failures:         s.failures.Load(),
		RateLimited:      s.rateLimited.Load(),
		Aborted:          s.aborted.Load(),
		Canceled:         s.canceled.Load(),
		PromptTokens:     s.promptTokens.Load(),
		CompletionTokens: s.completionTok.Load(),
	}
}

// call is the per-request state drawn when a request arrives.
type call struct {
	delay time.Duration // latency plus jitter
	roll  float64       // fault dice in [0, 1)
	rng   *rand.Rand    // per-request source for IDs; not shared
}

// newCall draws a request's dice from the Server's RNG. It always draws
// the same amount so that a seeded Server is deterministic.
func (s *Server) newCall() *call {
	s.mu.Lock()
	jitter := s.rng.Int64N(math.MaxInt64)
	roll := s.rng.Float64()
	seed1, seed2 := s.rng.Uint64(), s.rng.Uint64()
	s.mu.Unlock()
	c := &call{delay: s.conf().Latency, roll: roll, rng: rand.New(rand.NewPCG(seed1, seed2))}
	if s.conf().Jitter > 0 {
		c.delay += time.Duration(jitter % int64(s.conf().Jitter))
	}
	return c
}

// endpoint is what a request path names.
type endpoint int

const (
	notFound endpoint = iota
	chatEndpoint
	embeddingsEndpoint
	modelsEndpoint
)

// route maps a path to an endpoint. OpenAI paths match by suffix, so
// "/v1/chat/completions", "/openai/v1/chat/completions" and
// "/chat/completions" all work; Azure deployment paths
// ("/openai/deployments/{deployment}/chat/completions") also return the
// deployment, which stands for the model.
func route(path string) (ep endpoint, deployment string) {
	p := strings.TrimRight(path, "/")
	if _, rest, ok := strings.Cut(p, "/openai/deployments/"); ok {
		dep, op, _ := strings.Cut(rest, "/")
		switch {
		case dep == "":
			return notFound, ""
		case op == "chat/completions":
			return chatEndpoint, dep
		case op == "embeddings":
			return embeddingsEndpoint, dep
		}
		return notFound, ""
	}
	switch {
	case strings.HasSuffix(p, "/chat/completions"):
		return chatEndpoint, ""
	case strings.HasSuffix(p, "/embeddings"):
		return embeddingsEndpoint, ""
	case strings.HasSuffix(p, "/models"):
		return modelsEndpoint, ""
	}
	return notFound, ""
}

// ServeHTTP answers one call: latency, auth, routing, injected faults,
// then the endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.requests.Add(1)
	c := s.newCall()
	h := w.Header()
	h.Set("x-request-id", "req_"+randomString(c.rng, hexDigits, 32))
	h.Set("openai-version", "2020-10-01")

	if !sleep(r.Context(), c.delay) {
		return
	}
	h.Set("openai-processing-ms", strconv.FormatInt(time.Since(start).Milliseconds(), 10))

	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, "invalid_request_error",
			"Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
			"", "invalid_api_key")
		return
	}
	ep, deployment := route(r.URL.Path)
	want := http.MethodPost
	switch ep {
	case notFound:
		writeError(w, http.StatusNotFound, "invalid_request_error",
			"Invalid URL ("+r.Method+" "+r.URL.Path+")", "", "")
		return
	case modelsEndpoint:
		want = http.MethodGet
	}
	if r.Method != want {
		h.Set("Allow", want)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request_error",
			"Invalid method for URL ("+r.Method+" "+r.URL.Path+")", "", "")
		return
	}
	if s.injectFault(w, c) {
		return
	}
	switch ep {
	case chatEndpoint:
		s.serveChat(w, r, c, deployment)
	case embeddingsEndpoint:
		s.serveEmbeddings(w, r, deployment)
	case modelsEndpoint:
		s.serveModels(w)
	}
}

// authorized reports whether r carries one of the configured keys.
func (s *Server) authorized(r *http.Request) bool {
	if len(s.conf().Keys) == 0 {
		return true
	}
	var offered []string
	if v := r.Header.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		offered = append(offered, strings.TrimSpace(v[7:]))
	}
	if v := r.Header.Get("api-key"); v != "" {
		offered = append(offered, v)
	}
	ok := 0
	for _, o := range offered {
		for _, k := range s.conf().Keys {
			ok |= subtle.ConstantTimeCompare([]byte(o), []byte(k))
		}
	}
	return ok == 1
}

// injectFault answers the call with a 500 or 429 if the dice say so.
func (s *Server) injectFault(w http.ResponseWriter, c *call) bool {
	switch {
	case c.roll < s.conf().FailureRate:
		s.failures.Add(1)
		writeError(w, http.StatusInternalServerError, "server_error",
			"The server had an error while processing your request. Sorry about that!", "", "")
		return true
	case c.roll < s.conf().FailureRate+s.conf().RateLimitRate:
		s.rateLimited.Add(1)
		ra := s.conf().RetryAfter
		secs := int64(math.Ceil(ra.Seconds()))
		h := w.Header()
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
		h.Set("retry-after-ms", strconv.FormatInt(ra.Milliseconds(), 10))
		h.Set("x-ratelimit-limit-requests", "60")
		h.Set("x-ratelimit-remaining-requests", "0")
		h.Set("x-ratelimit-reset-requests", ra.String())
		writeError(w, http.StatusTooManyRequests, "requests",
			"Rate limit reached for requests per min (RPM): Limit 60, Used 60, Requested 1. Please try again in "+ra.String()+".",
			"", "rate_limit_exceeded")
		return true
	}
	return false
}
