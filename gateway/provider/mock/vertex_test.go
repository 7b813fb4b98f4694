package mock_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/auth/credentials"
	"cloud.google.com/go/auth/httptransport"
	"google.golang.org/genai"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

const (
	vertexAccount = "sluice-test@sluice-project.iam.gserviceaccount.com"
	vertexScope   = "https://www.googleapis.com/auth/cloud-platform"
	vertexGrant   = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	vertexAud     = "https://oauth2.googleapis.com/token"
	vertexModel   = "/v1/projects/sluice-project/locations/us-central1/publishers/google/models/"
)

// vertexKeys are two RSA keys: the account's, and another.
var vertexKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var keys [2]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

// vertexPublicPEM is a key's public half in PEM (PKIX).
func vertexPublicPEM(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// vertexConfig is a mock config that knows the account by its first key.
func vertexConfig(t *testing.T) mock.Config {
	return mock.Config{ReplyTokens: 6, StreamChunks: 3, ServiceAccounts: map[string]string{vertexAccount: vertexPublicPEM(t, vertexKeys()[0])}}
}

// vertexClaims is a valid claim set for aud.
func vertexClaims(aud string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{"iss": vertexAccount, "scope": vertexScope, "aud": aud, "iat": now - 10, "exp": now + 3590}
}

// vertexJWT signs claims with key, as RFC 7515 §7.1's compact
// serialization under {"alg":"RS256","typ":"JWT"}.
func vertexJWT(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc.EncodeToString(sig)
}

// vertexToken asks the mock's token endpoint for a token.
func vertexToken(t *testing.T, tg target, form url.Values) *http.Response {
	t.Helper()
	resp, err := tg.client.PostForm(tg.base+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// vertexGrantForm is the token request carrying assertion.
func vertexGrantForm(assertion string) url.Values {
	return url.Values{"grant_type": {vertexGrant}, "assertion": {assertion}}
}

type vertexTokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	TokenType   string `json:"token_type"`
}

type vertexOAuthErr struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func TestVertexToken(t *testing.T) {
	eachTarget(t, vertexConfig(t), func(t *testing.T, tg target) {
		var tok vertexTokenAnswer
		decode(t, vertexToken(t, tg, vertexGrantForm(vertexJWT(t, vertexKeys()[0], vertexClaims(vertexAud)))), http.StatusOK, &tok)
		if !strings.HasPrefix(tok.AccessToken, "ya29.") || tok.ExpiresIn != 3600 || tok.TokenType != "Bearer" {
			t.Errorf("token %+v", tok)
		}
		// The endpoint's own URL is an audience too (a test's token_uri).
		decode(t, vertexToken(t, tg, vertexGrantForm(vertexJWT(t, vertexKeys()[0], vertexClaims(tg.base+"/token")))), http.StatusOK, &tok)
		if st := tg.srv.Stats(); st.TokensIssued != 2 {
			t.Errorf("issued %d", st.TokensIssued)
		}
	})
}

func TestVertexTokenRefusals(t *testing.T) {
	with := func(k string, v any) map[string]any {
		c := vertexClaims(vertexAud)
		c[k] = v
		return c
	}
	now := time.Now().Unix()
	cases := []struct {
		name   string
		form   func(t *testing.T) url.Values
		status int
		code   string
		desc   string
	}{
		{"other key", func(t *testing.T) url.Values {
			return vertexGrantForm(vertexJWT(t, vertexKeys()[1], vertexClaims(vertexAud)))
		}, 400, "invalid_grant", "Invalid JWT Signature."},
		{"unknown account", func(t *testing.T) url.Values {
			return vertexGrantForm(vertexJWT(t, vertexKeys()[0], with("iss", "nobody@x.iam.gserviceaccount.com")))
		}, 400, "invalid_grant", "Invalid grant: account not found"},
		{"expired", func(t *testing.T) url.Values {
			return vertexGrantForm(vertexJWT(t, vertexKeys()[0], with("exp", now-1)))
		}, 400, "invalid_grant", "short-lived"},
		{"too long", func(t *testing.T) url.Values {
			return vertexGrantForm(vertexJWT(t, vertexKeys()[0], with("exp", now+7200)))
		}, 400, "invalid_grant", "short-lived"},
		{"future", func(t *testing.T) url.Values {
			c := with("iat", now+3600)
			c["exp"] = now + 3700
			return vertexGrantForm(vertexJWT(t, vertexKeys()[0], c))
		}, 400, "invalid_grant", "short-lived"},
		{"audience", func(t *testing.T) url.Values {
			return vertexGrantForm(vertexJWT(t, vertexKeys()[0], with("aud", "https://example.com/token")))
		}, 400, "invalid_grant", "audience"},
		{"scope", func(t *testing.T) url.Values {
			return vertexGrantForm(vertexJWT(t, vertexKeys()[0], with("scope", "https://www.googleapis.com/auth/devstorage.read_only")))
		}, 400, "invalid_scope", "Invalid OAuth scope"},
		{"delegation", func(t *testing.T) url.Values {
			return vertexGrantForm(vertexJWT(t, vertexKeys()[0], with("sub", "someone@example.com")))
		}, 401, "unauthorized_client", "unauthorized"},
		{"garbage", func(t *testing.T) url.Values { return vertexGrantForm("not.a.jwt") }, 400, "invalid_grant", "Invalid JWT"},
		{"no assertion", func(t *testing.T) url.Values { return url.Values{"grant_type": {vertexGrant}} }, 400, "invalid_request", "assertion"},
		{"grant type", func(t *testing.T) url.Values {
			return url.Values{"grant_type": {"client_credentials"}, "assertion": {"x"}}
		}, 400, "unsupported_grant_type", "client_credentials"},
	}
	eachTarget(t, vertexConfig(t), func(t *testing.T, tg target) {
		for _, tc := range cases {
			var e vertexOAuthErr
			decode(t, vertexToken(t, tg, tc.form(t)), tc.status, &e)
			if e.Error != tc.code || !strings.Contains(e.ErrorDescription, tc.desc) {
				t.Errorf("%s: %+v, want %s %q", tc.name, e, tc.code, tc.desc)
			}
		}
		if st := tg.srv.Stats(); st.TokensIssued != 0 {
			t.Errorf("issued %d", st.TokensIssued)
		}
	})
}

func TestVertexTokenWithoutAccounts(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		// Any well-formed assertion is taken; its claims are still checked.
		var tok vertexTokenAnswer
		decode(t, vertexToken(t, tg, vertexGrantForm(vertexJWT(t, vertexKeys()[1], vertexClaims(vertexAud)))), http.StatusOK, &tok)
		var e vertexOAuthErr
		decode(t, vertexToken(t, tg, vertexGrantForm(vertexJWT(t, vertexKeys()[1], vertexClaims("https://example.com/")))), http.StatusBadRequest, &e)
		// And calls need no token.
		var r geminiResponse
		decode(t, tg.post(t, vertexModel+"gemini-mock:generateContent", geminiUser("hi")), http.StatusOK, &r)
	})
}

func TestVertexAuth(t *testing.T) {
	eachTarget(t, vertexConfig(t), func(t *testing.T, tg target) {
		path := vertexModel + "gemini-mock:generateContent"
		resp := tg.post(t, path, geminiUser("hi"))
		if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer realm=") {
			t.Errorf("WWW-Authenticate %q", h)
		}
		e := expectGeminiError(t, resp, http.StatusUnauthorized, "UNAUTHENTICATED")
		if len(e.Error.Details) != 1 || e.Error.Details[0]["reason"] != "CREDENTIALS_MISSING" {
			t.Errorf("details %v", e.Error.Details)
		}
		expectGeminiError(t, tg.post(t, path, geminiUser("hi"), "Authorization", "Bearer ya29.forged"), http.StatusUnauthorized, "UNAUTHENTICATED")

		var tok vertexTokenAnswer
		decode(t, vertexToken(t, tg, vertexGrantForm(vertexJWT(t, vertexKeys()[0], vertexClaims(vertexAud)))), http.StatusOK, &tok)
		var r geminiResponse
		decode(t, tg.post(t, path, geminiUser("hi"), "Authorization", "Bearer "+tok.AccessToken), http.StatusOK, &r)
		if len(strings.Fields(r.text())) != 6 || r.ModelVersion != "gemini-mock" {
			t.Errorf("answer %+v", r)
		}

		tg.srv.RevokeTokens()
		e = expectGeminiError(t, tg.post(t, path, geminiUser("hi"), "Authorization", "Bearer "+tok.AccessToken), http.StatusUnauthorized, "UNAUTHENTICATED")
		if e.Error.Details[0]["reason"] != "ACCESS_TOKEN_EXPIRED" {
			t.Errorf("details %v", e.Error.Details)
		}
		if st := tg.srv.Stats(); st.TokensRefused != 3 || st.TokensIssued != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestVertexRoutes(t *testing.T) {
	eachTarget(t, mock.Config{ReplyTokens: 6, StreamChunks: 3}, func(t *testing.T, tg target) {
		events, err := geminiEvents(t, tg.post(t, "/v1beta1/projects/p/locations/global/publishers/google/models/gemini-mock:streamGenerateContent?alt=sse", geminiUser("hi")))
		if err != nil || len(events) != 3 || events[2].UsageMetadata == nil || events[2].Candidates[0].FinishReason != "STOP" {
			t.Errorf("stream: %v, %+v", err, events)
		}
		geminiBadRequest := func(resp *http.Response) { expectGeminiError(t, resp, http.StatusBadRequest, "INVALID_ARGUMENT") }
		geminiBadRequest(tg.post(t, vertexModel+"gemini-mock:streamGenerateContent", geminiUser("hi")))
		for _, p := range []string{
			vertexModel + "gemini-mock:countTokens",
			"/v2/projects/p/locations/l/publishers/google/models/gemini-mock:generateContent",
			"/v1/projects/p/locations/l/publishers/google/models/:generateContent",
		} {
			expectGeminiError(t, tg.post(t, p, geminiUser("hi")), http.StatusNotFound, "NOT_FOUND")
		}
	})
}

type vertexPredictions struct {
	Predictions []struct {
		Embeddings struct {
			Values     []float64 `json:"values"`
			Statistics struct {
				Truncated  bool `json:"truncated"`
				TokenCount int  `json:"token_count"`
			} `json:"statistics"`
		} `json:"embeddings"`
	} `json:"predictions"`
	Metadata struct {
		BillableCharacterCount int `json:"billableCharacterCount"`
	} `json:"metadata"`
}

func TestVertexPredict(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		path := vertexModel + "text-embedding-005:predict"
		var p vertexPredictions
		decode(t, tg.post(t, path, map[string]any{
			"instances":  []map[string]any{{"content": "hello world", "task_type": "RETRIEVAL_QUERY"}, {"content": "two"}},
			"parameters": map[string]any{"outputDimensionality": 8, "autoTruncate": false},
		}), http.StatusOK, &p)
		if len(p.Predictions) != 2 || len(p.Predictions[0].Embeddings.Values) != 8 ||
			p.Predictions[0].Embeddings.Statistics.TokenCount < 1 || p.Metadata.BillableCharacterCount != 14 {
			t.Fatalf("predictions %+v", p)
		}
		// The vector is the one OpenAI's format gives the same text.
		var list embeddingList
		decode(t, tg.post(t, "/v1/embeddings", map[string]any{"model": "m", "input": "hello world", "dimensions": 8}), http.StatusOK, &list)
		want := list.vectors(t, false)[0]
		for i, v := range p.Predictions[0].Embeddings.Values {
			if float32(v) != want[i] {
				t.Fatalf("value %d: %v, want %v", i, v, want[i])
			}
		}
		for _, body := range []any{
			map[string]any{"instances": []any{}},
			map[string]any{"instances": []any{map[string]any{"content": ""}}},
			map[string]any{"instances": []any{map[string]any{"title": "no content"}}},
			map[string]any{"instances": []any{map[string]any{"content": "x"}}, "parameters": map[string]any{"outputDimensionality": -1}},
		} {
			expectGeminiError(t, tg.post(t, path, body), http.StatusBadRequest, "INVALID_ARGUMENT")
		}
	})
}

// vertexKeyFile is a service account's JSON key file for key, whose
// tokens come from tokenURI.
func vertexKeyFile(t *testing.T, key *rsa.PrivateKey, tokenURI string) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "sluice-project",
		"private_key_id": "key-1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   vertexAccount,
		"client_id":      "1234567890",
		"token_uri":      tokenURI,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vertexClients returns official Go SDK clients of Vertex AI for a mock
// with cfg, over a socket and through mock.Transport, authorized by
// Google's own auth library: it signs the assertion and fetches the
// token from the mock.
func vertexClients(t *testing.T, cfg mock.Config, key *rsa.PrivateKey) map[string]*genai.Client {
	ts := httptest.NewServer(mock.New(cfg))
	t.Cleanup(ts.Close)
	inProcess := mock.New(cfg)
	clients := make(map[string]*genai.Client)
	for name, hc := range map[string]struct {
		base   string
		client func() *http.Client
	}{
		"socket":    {ts.URL, func() *http.Client { return &http.Client{Transport: ts.Client().Transport} }},
		"transport": {"http://mock.test", func() *http.Client { return &http.Client{Transport: mock.Transport(inProcess)} }},
	} {
		// Two clients: the token requests must not pass through the
		// authorizing middleware.
		creds, err := credentials.NewCredentialsFromJSON(credentials.ServiceAccount, vertexKeyFile(t, key, hc.base+"/token"),
			&credentials.DetectOptions{Scopes: []string{vertexScope}, Client: hc.client()})
		if err != nil {
			t.Fatalf("credentials: %v", err)
		}
		httpClient := hc.client()
		if err := httptransport.AddAuthorizationMiddleware(httpClient, creds); err != nil {
			t.Fatal(err)
		}
		c, err := genai.NewClient(t.Context(), &genai.ClientConfig{
			Backend:     genai.BackendVertexAI,
			Project:     "sluice-project",
			Location:    "us-central1",
			HTTPClient:  httpClient,
			HTTPOptions: genai.HTTPOptions{BaseURL: hc.base + "/", APIVersion: "v1"},
		})
		if err != nil {
			t.Fatalf("genai client: %v", err)
		}
		clients[name] = c
	}
	return clients
}

func TestVertexOfficialSDK(t *testing.T) {
	for name, client := range vertexClients(t, vertexConfig(t), vertexKeys()[0]) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			plain, err := client.Models.GenerateContent(ctx, "gemini-mock", genai.Text("hello"), nil)
			if err != nil {
				t.Fatalf("GenerateContent: %v", err)
			}
			if len(strings.Fields(plain.Text())) != 6 || plain.UsageMetadata.CandidatesTokenCount != 6 {
				t.Errorf("response %+v", plain)
			}
			var text strings.Builder
			for resp, err := range client.Models.GenerateContentStream(ctx, "gemini-mock", genai.Text("hello"), nil) {
				if err != nil {
					t.Fatalf("stream: %v", err)
				}
				text.WriteString(resp.Text())
			}
			if text.String() != plain.Text() {
				t.Errorf("streamed %q, plain %q", text.String(), plain.Text())
			}
			dims := int32(4)
			emb, err := client.Models.EmbedContent(ctx, "text-embedding-005", []*genai.Content{
				genai.NewContentFromText("one", genai.RoleUser), genai.NewContentFromText("two", genai.RoleUser),
			}, &genai.EmbedContentConfig{OutputDimensionality: &dims, TaskType: "RETRIEVAL_DOCUMENT"})
			if err != nil {
				t.Fatalf("EmbedContent: %v", err)
			}
			if len(emb.Embeddings) != 2 || len(emb.Embeddings[0].Values) != 4 || emb.Embeddings[0].Statistics.TokenCount < 1 {
				t.Errorf("embeddings %+v", emb.Embeddings)
			}
		})
	}
}

func TestVertexOfficialSDKWrongKey(t *testing.T) {
	for name, client := range vertexClients(t, vertexConfig(t), vertexKeys()[1]) {
		t.Run(name, func(t *testing.T) {
			_, err := client.Models.GenerateContent(t.Context(), "gemini-mock", genai.Text("hello"), nil)
			if err == nil || !strings.Contains(err.Error(), "Invalid JWT Signature") {
				t.Errorf("error %v", err)
			}
			var apiErr genai.APIError
			if errors.As(err, &apiErr) {
				t.Errorf("the call was sent: %v", apiErr)
			}
		})
	}
}
