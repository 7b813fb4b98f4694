// Package mock is a fake LLM upstream. It answers chat completions (plain,
// streamed, with tool calls), embeddings and the model list in OpenAI's
// wire format, with tunable latency, failures, rate limits and mid-stream
// aborts. Sluice's tests, quickstart and benchmarks use it, in-process
// through Transport or over a socket as the mockllm binary.
//
// It also speaks the providers' native formats, chosen by the request
// path (or header):
//
//   - Anthropic's Messages API: POST …/v1/messages (see anthropic.go);
//   - Google's Gemini API: POST /{v1,v1beta}/models/{model}:generateContent,
//     :streamGenerateContent?alt=sse, :embedContent and :batchEmbedContents
//     (see gemini.go);
//   - iFlytek Spark's WebSocket chat API: GET /v1.1/chat, /v3.1/chat,
//     /chat/pro-128k, /v3.5/chat, /chat/max-32k and /v4.0/chat upgraded to
//     a WebSocket, with iFlytek's signed URLs (see spark.go). WebSockets
//     need a real socket: Transport cannot upgrade;
//   - the cloud providers' APIs, which sign each request or take a token
//     the mock issues (see cloud.go): Baidu Qianfan's OAuth endpoint and
//     ERNIE API (qianfan.go), Tencent Cloud API 3.0's ChatCompletions and
//     GetEmbedding with TC3-HMAC-SHA256 (hunyuan.go), Volcengine's
//     V4-signed GetApiKey (volcengine.go), Google's OAuth JWT bearer grant
//     and Vertex AI (vertex.go), Dify's chat-messages (dify.go) and
//     DashScope's text-generation and text-embedding (dashscope.go).
//
// Every Config knob applies to every format, each answering faults and
// auth failures the way its real service does.
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
	// server_error JSON (Anthropic: 500 api_error, or 529 overloaded_error
	// with Overloaded; Gemini: 500 INTERNAL; Spark: an error frame with
	// code 10012). Default 0; 1 fails every call.
	FailureRate float64
	// Overloaded makes the Anthropic format's injected failures 529
	// overloaded_error instead of 500 api_error. Other formats ignore it.
	Overloaded bool
	// RateLimitRate is the share of calls answered 429 with Retry-After
	// and retry-after-ms headers and OpenAI's rate limit error JSON
	// (Anthropic: 429 rate_limit_error with retry-after; Gemini: 429
	// RESOURCE_EXHAUSTED with a RetryInfo detail; Spark: an error frame
	// with code 11202). Default 0. A call fails at most once: with FailureRate f and
	// RateLimitRate r, min(r, 1-f) of the calls get 429s.
	RateLimitRate float64
	// RetryAfter is the wait advertised with 429s. Zero means 1s.
	RetryAfter time.Duration
	// StreamChunks is the number of content chunks per streamed choice
	// (Anthropic: content_block_delta events; Gemini: events; Spark:
	// frames). Zero means 8. A reply of fewer words gets one chunk per
	// word. Gemini and Spark send a function call in one chunk.
	StreamChunks int
	// ChunkInterval is the pause between streamed chunks, events or
	// frames. Default 0.
	ChunkInterval time.Duration
	// ReplyTokens is the number of words (≈ tokens) per answer. Zero
	// means 16.
	ReplyTokens int
	// FailAfterChunks, when positive, makes a stream abort the connection
	// (panic(http.ErrAbortHandler)) right after this many content chunks:
	// a mid-stream upstream failure. Streams with fewer content chunks
	// finish normally; so do Gemini and Spark streams with exactly that
	// many, as their last content chunk also ends the answer. A Spark
	// WebSocket is dropped without a close frame. Default 0: never.
	FailAfterChunks int
	// Keys, when non-empty, are the accepted API keys, sent as
	// "Authorization: Bearer <key>" or (Azure) "api-key: <key>"; other
	// calls get 401 invalid_api_key. The Anthropic format takes them in
	// "x-api-key", the Gemini format in "x-goog-api-key" or "?key=".
	// Default: no auth.
	Keys []string
	// Spark, when non-empty, are the iFlytek credentials the Spark
	// WebSocket endpoints accept: the URL must be signed with one of them
	// and the request frame must carry its AppID. Default: no auth.
	Spark []SparkKey
	// Accounts, when non-empty, are the cloud account key pairs the
	// signed and token-issuing APIs accept (see cloud.go): Qianfan's
	// api_key/secret_key, Tencent Cloud's SecretId/SecretKey, Volcengine's
	// access keys. Their data calls must then carry a valid signature or
	// a token the mock issued. Default: no auth.
	Accounts []Account
	// ServiceAccounts, when non-empty, are the Google service accounts
	// whose signed JWTs the mock's OAuth token endpoint accepts, by
	// client_email, each with its public key in PEM. Vertex AI calls must
	// then carry a token the mock issued. Default: no auth.
	ServiceAccounts map[string]string
	// TokenTTL is the life of the access tokens the mock issues. Zero
	// means an hour.
	TokenTTL time.Duration
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
	c.Spark = append([]SparkKey(nil), c.Spark...)
	c.Accounts = append([]Account(nil), c.Accounts...)
	if c.TokenTTL <= 0 {
		c.TokenTTL = time.Hour
	}
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

	tokens tokenStore // the access tokens issued
}

// Stats are a Server's counters since it was created.
type Stats struct {
	Requests    int64 // calls received
	Streams     int64 // streamed chat answers started (Spark: every answer)
	Failures    int64 // 500s (or 529s, Spark 10012 frames) sent
	RateLimited int64 // 429s (or Spark 11202 frames) sent
	Aborted     int64 // streams cut off on purpose (FailAfterChunks)
	Canceled    int64 // streams stopped because the client went away
	// PromptTokens and CompletionTokens sum the usage of the answers sent
	// in full (streams that reached [DONE]).
	PromptTokens     int64
	CompletionTokens int64
	// TokensIssued counts the access tokens the token endpoints issued;
	// TokensRefused the calls refused for a missing, unknown, expired or
	// revoked token.
	TokensIssued  int64
	TokensRefused int64
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
		TokensIssued:     s.tokens.issued.Load(),
		TokensRefused:    s.tokens.refused.Load(),
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
	anthropicMessagesEndpoint
	geminiGenerateEndpoint
	geminiStreamEndpoint
	geminiEmbedEndpoint
	geminiBatchEmbedEndpoint
	geminiUnknownEndpoint // a Gemini model path with a method the mock lacks
	sparkEndpoint
)

// route maps a path to an endpoint and what the path names besides.
//
// OpenAI paths match by suffix, so "/v1/chat/completions",
// "/openai/v1/chat/completions" and "/chat/completions" all work; Azure
// deployment paths ("/openai/deployments/{deployment}/chat/completions")
// also return the deployment, which stands for the model. Anthropic's
// "…/messages" matches by suffix too. Gemini paths
// ("…/v1beta/models/{model}:{method}") return the model, and Spark paths
// ("…/v3.5/chat") the domain they serve.
func route(path string) (ep endpoint, arg string) {
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
	if ep, model, ok := geminiRoute(p); ok {
		return ep, model
	}
	if domain := sparkDomain(p); domain != "" {
		return sparkEndpoint, domain
	}
	switch {
	case strings.HasSuffix(p, "/chat/completions"):
		return chatEndpoint, ""
	case strings.HasSuffix(p, "/embeddings"):
		return embeddingsEndpoint, ""
	case strings.HasSuffix(p, "/models"):
		return modelsEndpoint, ""
	case strings.HasSuffix(p, "/messages"):
		return anthropicMessagesEndpoint, ""
	}
	return notFound, ""
}

// ServeHTTP answers one call: routing to a format, then for each format
// latency, auth, injected faults and the endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	c := s.newCall()
	if s.serveCloud(w, r, c) {
		return
	}
	ep, arg := route(r.URL.Path)
	switch ep {
	case anthropicMessagesEndpoint:
		s.serveAnthropic(w, r, c)
	case geminiGenerateEndpoint, geminiStreamEndpoint, geminiEmbedEndpoint, geminiBatchEmbedEndpoint, geminiUnknownEndpoint:
		s.serveGemini(w, r, c, ep, arg)
	case sparkEndpoint:
		s.serveSpark(w, r, c, arg)
	default:
		s.serveOpenAI(w, r, c, ep, arg)
	}
}

// serveOpenAI answers a call in OpenAI's format: latency, auth, method,
// injected faults, then the endpoint. Unknown paths get OpenAI's 404.
func (s *Server) serveOpenAI(w http.ResponseWriter, r *http.Request, c *call, ep endpoint, deployment string) {
	start := time.Now()
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

// authorized reports whether r carries one of the configured keys as a
// bearer token or an Azure api-key.
func (s *Server) authorized(r *http.Request) bool {
	var offered []string
	if v := r.Header.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		offered = append(offered, strings.TrimSpace(v[7:]))
	}
	if v := r.Header.Get("api-key"); v != "" {
		offered = append(offered, v)
	}
	if len(offered) == 1 && s.tokens.valid(offered[0]) {
		return true // an API key the mock issued (Volcengine Ark's control plane)
	}
	return s.keyAccepted(offered...)
}

// keyAccepted reports whether auth is off or one of offered is a
// configured key, comparing in constant time.
func (s *Server) keyAccepted(offered ...string) bool {
	if len(s.conf().Keys) == 0 {
		return true
	}
	ok := 0
	for _, o := range offered {
		for _, k := range s.conf().Keys {
			ok |= subtle.ConstantTimeCompare([]byte(o), []byte(k))
		}
	}
	return ok == 1
}

// fault is what the dice decided for a call.
type fault int

const (
	noFault fault = iota
	failureFault
	rateLimitFault
)

// drawFault reads c's dice against the failure and rate-limit rates and
// counts the fault it picks.
func (s *Server) drawFault(c *call) fault {
	switch {
	case c.roll < s.conf().FailureRate:
		s.failures.Add(1)
		return failureFault
	case c.roll < s.conf().FailureRate+s.conf().RateLimitRate:
		s.rateLimited.Add(1)
		return rateLimitFault
	}
	return noFault
}

// retryAfterSeconds is the advertised wait in whole seconds, rounded up.
func (s *Server) retryAfterSeconds() string {
	return strconv.FormatInt(int64(math.Ceil(s.conf().RetryAfter.Seconds())), 10)
}

// injectFault answers the call with a 500 or 429 if the dice say so.
func (s *Server) injectFault(w http.ResponseWriter, c *call) bool {
	switch s.drawFault(c) {
	case failureFault:
		writeError(w, http.StatusInternalServerError, "server_error",
			"The server had an error while processing your request. Sorry about that!", "", "")
		return true
	case rateLimitFault:
		ra := s.conf().RetryAfter
		h := w.Header()
		h.Set("Retry-After", s.retryAfterSeconds())
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
