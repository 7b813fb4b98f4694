package provider

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

const vertexTestAccount = "sluice@sluice-project.iam.gserviceaccount.com"

// vertexTestKeys are two RSA keys: the account's, and another.
var vertexTestKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
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

// vertexKeyFile is a service account's JSON key file: PKCS #8 PEM, as
// Google issues them.
func vertexKeyFile(t *testing.T, key *rsa.PrivateKey, tokenURI string) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "sluice-project",
		"private_key_id": "0123abcd",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   vertexTestAccount,
		"client_id":      "1234567890",
		"token_uri":      tokenURI,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// vertexTestTokens is a Tokens cache in a map.
type vertexTestTokens struct {
	mu      sync.Mutex
	tokens  map[string]string
	fetched int
	revoked []string
}

func (c *vertexTestTokens) Token(ctx context.Context, id string, fetch FetchToken) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok, ok := c.tokens[id]; ok {
		return tok, nil
	}
	tok, _, err := fetch(ctx)
	if err != nil {
		return "", err
	}
	if c.tokens == nil {
		c.tokens = map[string]string{}
	}
	c.tokens[id] = tok
	c.fetched++
	return tok, nil
}

func (c *vertexTestTokens) Revoke(_ context.Context, id, tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokens[id] == tok {
		delete(c.tokens, id)
	}
	c.revoked = append(c.revoked, tok)
}

// vertexTarget is a vertexai Target whose token is cached already.
func vertexTarget(t *testing.T) Target {
	spec, _ := Lookup("vertexai")
	tg := Target{
		Spec:         spec,
		Key:          vertexKeyFile(t, vertexTestKeys()[0], ""),
		Region:       "us-central1",
		Model:        "gemini-2.5-flash",
		CredentialID: "cred-1",
	}
	return withCachedToken(tg)
}

// withCachedToken gives a Target a cache holding a token for it (the
// cache key covers region, project and base URL: set them first).
func withCachedToken(tg Target) Target {
	tg.Tokens = &vertexTestTokens{tokens: map[string]string{tokenKey(tg, ""): "ya29.cached"}}
	return tg
}

// TestVertexSignRS256Vector signs RFC 7515 Appendix A.2's example (its
// header, payload and RSA key) and expects the signature printed there:
// RSASSA-PKCS1-v1_5 is deterministic.
func TestVertexSignRS256Vector(t *testing.T) {
	num := func(s string) *big.Int {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return new(big.Int).SetBytes(b)
	}
	n := num("ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ")
	d := num("Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ")
	p := num("4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc")
	q, rem := new(big.Int).QuoRem(n, p, new(big.Int))
	if rem.Sign() != 0 {
		t.Fatal("p does not divide n")
	}
	key := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: 65537}, D: d, Primes: []*big.Int{p, q}}
	key.Precompute()
	if err := key.Validate(); err != nil {
		t.Fatal(err)
	}
	header := []byte(`{"alg":"RS256"}`)
	payload := []byte("{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}")
	got, err := signRS256(key, header, payload)
	if err != nil {
		t.Fatal(err)
	}
	const want = "eyJhbGciOiJSUzI1NiJ9" +
		".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ" +
		".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4" +
		"BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv" +
		"hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestVertexAssertion checks the token request: a form with the JWT
// bearer grant and a JWT (RFC 7519) whose header, claims and signature
// are Google's ("Using OAuth 2.0 for Server to Server Applications").
func TestVertexAssertion(t *testing.T) {
	var form url.Values
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			t.Errorf("%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		_ = r.ParseForm()
		form = r.PostForm
		_, _ = io.WriteString(w, `{"access_token":"ya29.fresh","expires_in":3599,"token_type":"Bearer"}`)
	}))
	defer ts.Close()
	tg := vertexTarget(t)
	tg.Key = vertexKeyFile(t, vertexTestKeys()[0], ts.URL+"/token")
	tg.Tokens = nil
	start := time.Now()
	req, err := vertex{}.NewRequest(context.Background(), tg, Chat, []byte(`{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer ya29.fresh" {
		t.Errorf("Authorization %q", got)
	}
	if form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || len(form) != 2 {
		t.Errorf("form %v", form)
	}
	parts := strings.Split(form.Get("assertion"), ".")
	if len(parts) != 3 {
		t.Fatalf("assertion has %d parts", len(parts))
	}
	segment := func(s string, v any) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("segment %q is not unpadded base64url: %v", s, err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	var header map[string]string
	segment(parts[0], &header)
	if len(header) != 3 || header["alg"] != "RS256" || header["typ"] != "JWT" || header["kid"] != "0123abcd" {
		t.Errorf("header %v", header)
	}
	var claims map[string]any
	segment(parts[1], &claims)
	iat, exp := int64(claims["iat"].(float64)), int64(claims["exp"].(float64))
	if len(claims) != 5 || claims["iss"] != vertexTestAccount || claims["aud"] != ts.URL+"/token" ||
		claims["scope"] != "https://www.googleapis.com/auth/cloud-platform" || exp-iat != 3600 ||
		iat > start.Unix() || iat < start.Unix()-30 {
		t.Errorf("claims %v", claims)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&vertexTestKeys()[0].PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		t.Errorf("signature: %v", err)
	}
}

func TestVertexTokenURL(t *testing.T) {
	key := &serviceAccount{TokenURI: "https://key.example/token"}
	spec, _ := Lookup("vertexai")
	for _, tc := range []struct {
		t    Target
		key  *serviceAccount
		want string
	}{
		{Target{Spec: spec, TokenURL: "https://channel.example/token"}, key, "https://channel.example/token"},
		{Target{Spec: spec}, key, "https://key.example/token"},
		{Target{Spec: spec}, &serviceAccount{}, "https://oauth2.googleapis.com/token"},
		{Target{}, &serviceAccount{}, "https://oauth2.googleapis.com/token"},
	} {
		if got := vertexTokenURL(tc.t, tc.key); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
}

func TestVertexURL(t *testing.T) {
	const chat = `{"model":"%s","messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		region, project, base, version, model string
		stream                                bool
		want                                  string
	}{
		{"us-central1", "", "", "", "gemini-2.5-flash", false,
			"https://us-central1-aiplatform.googleapis.com/v1/projects/sluice-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"},
		{"global", "other", "", "", "models/gemini-2.5-pro", true,
			"https://aiplatform.googleapis.com/v1/projects/other/locations/global/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"},
		{"europe-west4", "", "", "v1beta1", "publishers/google/models/gemini-2.0-flash-001", false,
			"https://europe-west4-aiplatform.googleapis.com/v1beta1/projects/sluice-project/locations/europe-west4/publishers/google/models/gemini-2.0-flash-001:generateContent"},
		{"us-east5", "", "http://127.0.0.1:8080", "", "", true,
			"http://127.0.0.1:8080/v1/projects/sluice-project/locations/us-east5/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"},
		{"us-east5", "", "https://proxy.example/vertex/v1beta1/projects/x/locations/y", "", "gemini-2.5-flash", false,
			"https://proxy.example/vertex/v1beta1/projects/sluice-project/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"},
	}
	for _, tt := range tests {
		body := strings.Replace(chat, "%s", tt.model, 1)
		if tt.stream {
			body = strings.Replace(body, `{"model"`, `{"stream":true,"model"`, 1)
		}
		tg := vertexTarget(t)
		tg.Region, tg.Project, tg.BaseURL, tg.APIVersion = tt.region, tt.project, tt.base, tt.version
		tg = withCachedToken(tg)
		tg.Headers = map[string]string{"X-Extra": "1", "Authorization": "Bearer channel"}
		req, err := vertex{}.NewRequest(context.Background(), tg, Chat, []byte(body))
		if err != nil {
			t.Fatalf("%+v: %v", tt, err)
		}
		if got := req.URL.String(); got != tt.want {
			t.Errorf("\n got  %s\n want %s", got, tt.want)
		}
		if req.Method != http.MethodPost || req.Header.Get("Authorization") != "Bearer ya29.cached" ||
			req.Header.Get("Content-Type") != "application/json" || req.Header.Get("X-Extra") != "1" || req.Header.Get("x-goog-api-key") != "" {
			t.Errorf("method %s, headers %v", req.Method, req.Header)
		}
	}
}

func TestVertexChatBody(t *testing.T) {
	tg := vertexTarget(t)
	body := `{"model":"gemini-2.5-flash","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],
		"max_tokens":50,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required"}`
	req, err := vertex{}.NewRequest(context.Background(), tg, Chat, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(req.Body)
	// The body is exactly the gemini adapter's.
	native, _, _, err := geminiChatRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(native)
	if string(got) != string(want) {
		t.Errorf("body\n got  %s\n want %s", got, want)
	}
	if !strings.Contains(string(got), `"systemInstruction":{"parts":[{"text":"be brief"}]}`) ||
		!strings.Contains(string(got), `"functionCallingConfig":{"mode":"ANY"}`) {
		t.Errorf("body %s", got)
	}
}

func TestVertexRefusals(t *testing.T) {
	for _, tc := range []struct {
		ep   Endpoint
		body string
		want string
	}{
		{Chat, `{"model":"g","messages":[{"role":"user","content":"hi"}],"logprobs":true}`, "vertexai: logprobs"},
		{Chat, `{"model":"g","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, "image URLs"},
		{Chat, `{"model":"publishers/anthropic/models/claude","messages":[{"role":"user","content":"hi"}]}`, "vertexai: model"},
		{Embeddings, `{"model":"text-embedding-005","input":[1,2,3]}`, "text only"},
		{Embeddings, `{"model":"text-embedding-005","input":[]}`, "must not be empty"},
	} {
		_, err := vertex{}.NewRequest(context.Background(), vertexTarget(t), tc.ep, []byte(tc.body))
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Type != "invalid_request_error" ||
			!strings.HasPrefix(e.Message, "vertexai: ") || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: %v, want a 400 about %q", tc.body, err, tc.want)
		}
	}
}

func TestVertexCredentialErrors(t *testing.T) {
	key := vertexTestKeys()[0]
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ecKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}))
	file := func(mutate func(m map[string]string)) string {
		var m map[string]string
		_ = json.Unmarshal([]byte(vertexKeyFile(t, key, "")), &m)
		mutate(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	secret := "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGtleSBtYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
	for _, tc := range []struct {
		name   string
		change func(tg *Target)
		want   string
	}{
		{"no region", func(tg *Target) { tg.Region = "" }, "region"},
		{"bad region", func(tg *Target) { tg.Region = "evil.com/x" }, "region"},
		{"no project", func(tg *Target) { tg.Key = file(func(m map[string]string) { delete(m, "project_id") }) }, "project"},
		{"not JSON", func(tg *Target) { tg.Key = "AIza-" + secret }, "not a service account"},
		{"user credentials", func(tg *Target) { tg.Key = file(func(m map[string]string) { m["type"] = "authorized_user" }) }, "not a service account"},
		{"no email", func(tg *Target) { tg.Key = file(func(m map[string]string) { delete(m, "client_email") }) }, "client_email"},
		{"garbled key", func(tg *Target) {
			tg.Key, tg.Tokens = file(func(m map[string]string) { m["private_key"] = secret }), nil
		}, "PKCS #8"},
		{"not PEM", func(tg *Target) {
			tg.Key, tg.Tokens = file(func(m map[string]string) { m["private_key"] = "c2VjcmV0" }), nil
		}, "PEM"},
		{"not RSA", func(tg *Target) {
			tg.Key, tg.Tokens = file(func(m map[string]string) { m["private_key"] = ecKey }), nil
		}, "RSA"},
	} {
		tg := vertexTarget(t)
		tc.change(&tg)
		_, err := vertex{}.NewRequest(context.Background(), tg, Chat, []byte(`{"model":"g","messages":[{"role":"user","content":"hi"}]}`))
		var e *Error
		if err == nil || errors.As(err, &e) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a credential error about %q", tc.name, err, tc.want)
			continue
		}
		for _, leak := range []string{"c2VjcmV0", "BEGIN", "MII"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("%s: the error quotes the key: %v", tc.name, err)
			}
		}
	}
}

func TestVertexTokenFetchErrors(t *testing.T) {
	var answer string
	status := http.StatusBadRequest
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	defer ts.Close()
	for _, tc := range []struct{ answer, want string }{
		{`{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`, "invalid_grant: Invalid JWT Signature."},
		{`<html>bad gateway</html>`, "unreadable answer"},
		{`{}`, "no access_token"},
	} {
		answer = tc.answer
		tg := vertexTarget(t)
		tg.Tokens = nil
		tg.TokenURL = ts.URL + "/token"
		_, err := vertex{}.NewRequest(context.Background(), tg, Chat, []byte(`{"model":"g","messages":[{"role":"user","content":"hi"}]}`))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "HTTP 400") {
			t.Errorf("%s: %v", tc.answer, err)
		}
		if err != nil && (strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), "eyJ")) {
			t.Errorf("the error quotes a secret: %v", err)
		}
	}
}

func TestVertexEmbeddings(t *testing.T) {
	tg := vertexTarget(t)
	req, err := vertex{}.NewRequest(context.Background(), tg, Embeddings,
		[]byte(`{"model":"text-embedding-005","input":["one","two"],"dimensions":256,"encoding_format":"base64","user":"u"}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://us-central1-aiplatform.googleapis.com/v1/projects/sluice-project/locations/us-central1/publishers/google/models/text-embedding-005:predict"; req.URL.String() != want {
		t.Errorf("URL %s", req.URL)
	}
	body, _ := io.ReadAll(req.Body)
	if want := `{"instances":[{"content":"one"},{"content":"two"}],"parameters":{"outputDimensionality":256}}`; string(body) != want {
		t.Errorf("body %s", body)
	}
	req, _ = vertex{}.NewRequest(context.Background(), tg, Embeddings, []byte(`{"model":"text-embedding-005","input":"solo"}`))
	if body, _ = io.ReadAll(req.Body); string(body) != `{"instances":[{"content":"solo"}]}` {
		t.Errorf("body %s", body)
	}

	answer := `{"predictions":[{"embeddings":{"values":[0.1,-0.2],"statistics":{"truncated":false,"token_count":3}}},
		{"embeddings":{"values":[0.3,0.4],"statistics":{"truncated":false,"token_count":4.0}}}],"metadata":{"billableCharacterCount":6}}`
	out, err := vertex{}.Response(Embeddings, []byte(answer), "text-embedding-005")
	if err != nil {
		t.Fatal(err)
	}
	var list wire.EmbeddingResponse
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatal(err)
	}
	if list.Object != "list" || list.Model != "text-embedding-005" || len(list.Data) != 2 || list.Data[1].Index != 1 ||
		list.Data[1].Embedding[1] != 0.4 || list.Usage.PromptTokens != 7 || list.Usage.TotalTokens != 7 {
		t.Errorf("list %s", out)
	}
}

func TestVertexResponseAndStream(t *testing.T) {
	answer := `{"candidates":[{"content":{"role":"model","parts":[{"text":"Hello"}]},"finishReason":"STOP"}],
		"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1,"totalTokenCount":4},"responseId":"r1"}`
	out, err := vertex{}.Response(Chat, []byte(answer), "gemini-2.5-flash")
	if err != nil {
		t.Fatal(err)
	}
	var cc wire.ChatResponse
	if err := json.Unmarshal(out, &cc); err != nil || cc.Choices[0].Message.Text() != "Hello" || cc.Usage.TotalTokens != 4 || cc.ID != "chatcmpl-r1" {
		t.Errorf("completion %s (%v)", out, err)
	}

	stream := "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hel\"}]}}]}\r\n\r\n" +
		"data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"lo\"}]},\"finishReason\":\"STOP\"}]," +
		"\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":1,\"totalTokenCount\":4}}\r\n\r\n"
	s := vertex{}.Stream(strings.NewReader(stream), "gemini-2.5-flash")
	var text strings.Builder
	var last wire.ChatChunk
	for {
		b, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = wire.ChatChunk{}
		if err := json.Unmarshal(b, &last); err != nil {
			t.Fatal(err)
		}
		for _, c := range last.Choices {
			if c.Delta.Content != nil {
				text.WriteString(*c.Delta.Content)
			}
		}
	}
	if text.String() != "Hello" || last.Usage == nil || last.Usage.TotalTokens != 4 || len(last.Choices) != 0 {
		t.Errorf("streamed %q, last chunk %+v", text.String(), last)
	}
}

func TestVertexError(t *testing.T) {
	for _, tc := range []struct {
		status      int
		body        string
		typ, substr string
	}{
		{401, `{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`,
			"authentication_error", "invalid authentication"},
		{404, `{"error":{"code":404,"message":"Publisher Model was not found.","status":"NOT_FOUND"}}`, "not_found_error", "not found"},
		{429, `[{"error":{"code":429,"message":"Quota exceeded.","status":"RESOURCE_EXHAUSTED"}}]`, "requests", "Quota"},
		{502, `<html>Bad Gateway</html>`, "server_error", "vertexai answered HTTP 502: <html>"},
		{403, ``, "permission_error", "vertexai answered HTTP 403"},
	} {
		var e wire.ErrorBody
		if err := json.Unmarshal(vertex{}.Error(tc.status, []byte(tc.body)), &e); err != nil {
			t.Fatal(err)
		}
		if e.Error.Type != tc.typ || !strings.Contains(e.Error.Message, tc.substr) {
			t.Errorf("%d %s: %+v", tc.status, tc.body, e.Error)
		}
	}
}

func TestVertexTokenRefused(t *testing.T) {
	tg := vertexTarget(t)
	cache := tg.Tokens.(*vertexTestTokens)
	req, err := vertex{}.NewRequest(context.Background(), tg, Chat, []byte(`{"model":"g","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var a TokenAuth = vertex{}
	if a.TokenRefused(context.Background(), tg, req, http.StatusForbidden, []byte(`{"error":{"code":403,"status":"PERMISSION_DENIED","message":"no"}}`)) ||
		a.TokenRefused(context.Background(), tg, req, http.StatusTooManyRequests, nil) {
		t.Error("a refusal other than 401 revoked the token")
	}
	if !a.TokenRefused(context.Background(), tg, req, http.StatusUnauthorized,
		[]byte(`{"error":{"code":401,"status":"UNAUTHENTICATED","message":"Request had invalid authentication credentials."}}`)) {
		t.Fatal("401 UNAUTHENTICATED did not revoke the token")
	}
	if len(cache.revoked) != 1 || cache.revoked[0] != "ya29.cached" || len(cache.tokens) != 0 {
		t.Errorf("cache %+v", cache)
	}
}

// vertexMock serves a mock that knows the account by its first key, and
// returns a Target whose key file fetches tokens from it.
func vertexMock(t *testing.T, cfg mock.Config, key *rsa.PrivateKey) (*mock.Server, *httptest.Server, Target) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&vertexTestKeys()[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServiceAccounts = map[string]string{vertexTestAccount: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}
	srv := mock.New(cfg)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	tg := vertexTarget(t)
	tg.Key = vertexKeyFile(t, key, ts.URL+"/token")
	tg.BaseURL = ts.URL
	tg.Tokens = &vertexTestTokens{}
	return srv, ts, tg
}

// vertexSend builds the request for body and sends it.
func vertexSend(t *testing.T, ts *httptest.Server, tg Target, ep Endpoint, body string) (*http.Request, *http.Response) {
	t.Helper()
	req, err := vertex{}.NewRequest(context.Background(), tg, ep, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return req, resp
}

// vertexRead reads a 2xx answer and translates it.
func vertexRead(t *testing.T, resp *http.Response, ep Endpoint, v any) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	out, err := vertex{}.Response(ep, body, "gemini-mock")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatal(err)
	}
}

func TestVertexMockRoundTrip(t *testing.T) {
	srv, ts, tg := vertexMock(t, mock.Config{ReplyTokens: 5, StreamChunks: 3}, vertexTestKeys()[0])
	const hello = `{"model":"gemini-mock","messages":[{"role":"user","content":"hello"}]}`

	_, resp := vertexSend(t, ts, tg, Chat, hello)
	var cc wire.ChatResponse
	vertexRead(t, resp, Chat, &cc)
	if len(strings.Fields(cc.Choices[0].Message.Text())) != 5 || cc.Choices[0].FinishReason != "stop" || cc.Usage.CompletionTokens != 5 {
		t.Errorf("completion %+v", cc)
	}

	_, resp = vertexSend(t, ts, tg, Chat, `{"model":"gemini-mock","stream":true,"messages":[{"role":"user","content":"hello"}]}`)
	s := vertex{}.Stream(resp.Body, "gemini-mock")
	var text strings.Builder
	var last wire.ChatChunk
	for {
		b, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = wire.ChatChunk{}
		_ = json.Unmarshal(b, &last)
		for _, c := range last.Choices {
			if c.Delta.Content != nil {
				text.WriteString(*c.Delta.Content)
			}
		}
	}
	if text.String() != cc.Choices[0].Message.Text() || last.Usage == nil || last.Usage.CompletionTokens != 5 {
		t.Errorf("streamed %q, last %+v", text.String(), last)
	}

	_, resp = vertexSend(t, ts, tg, Chat, `{"model":"gemini-mock","messages":[{"role":"user","content":"weather?"}],
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]}`)
	vertexRead(t, resp, Chat, &cc)
	if calls := cc.Choices[0].Message.ToolCalls; len(calls) != 1 || calls[0].Function.Name != "get_weather" ||
		calls[0].Function.Arguments != `{"city":"sample"}` || cc.Choices[0].FinishReason != "tool_calls" {
		t.Errorf("tool calls %+v", cc.Choices[0])
	}

	_, resp = vertexSend(t, ts, tg, Embeddings, `{"model":"text-embedding-005","input":["one","two"],"dimensions":6}`)
	var list wire.EmbeddingResponse
	vertexRead(t, resp, Embeddings, &list)
	if len(list.Data) != 2 || len(list.Data[1].Embedding) != 6 || list.Usage.PromptTokens < 2 {
		t.Errorf("embeddings %+v", list)
	}

	if st := srv.Stats(); st.TokensIssued != 1 || st.TokensRefused != 0 {
		t.Errorf("stats %+v: one token serves every call", st)
	}
}

func TestVertexMockRevokedToken(t *testing.T) {
	srv, ts, tg := vertexMock(t, mock.Config{}, vertexTestKeys()[0])
	const hello = `{"model":"gemini-mock","messages":[{"role":"user","content":"hello"}]}`
	_, resp := vertexSend(t, ts, tg, Chat, hello)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	srv.RevokeTokens()
	req, resp := vertexSend(t, ts, tg, Chat, hello)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || !(vertex{}).TokenRefused(context.Background(), tg, req, resp.StatusCode, body) {
		t.Fatalf("status %d %s: the refusal was not a token's", resp.StatusCode, body)
	}
	var e wire.ErrorBody
	_ = json.Unmarshal(vertex{}.Error(resp.StatusCode, body), &e)
	if e.Error.Type != "authentication_error" {
		t.Errorf("error %+v", e)
	}
	// The relay's retry builds the request again: with a fresh token.
	_, resp = vertexSend(t, ts, tg, Chat, hello)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("retry: status %d", resp.StatusCode)
	}
	if st := srv.Stats(); st.TokensIssued != 2 || st.TokensRefused != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestVertexMockWrongKey(t *testing.T) {
	srv, ts, tg := vertexMock(t, mock.Config{}, vertexTestKeys()[1])
	_, err := vertex{}.NewRequest(context.Background(), tg, Chat, []byte(`{"model":"gemini-mock","messages":[{"role":"user","content":"hi"}]}`))
	if err == nil || !strings.Contains(err.Error(), "invalid_grant: Invalid JWT Signature.") {
		t.Errorf("error %v", err)
	}
	// Without a token, the mock refuses the call as Vertex AI does.
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/projects/p/locations/us-central1/publishers/google/models/g:generateContent",
		strings.NewReader(`{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`))
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "UNAUTHENTICATED") {
		t.Errorf("status %d: %s", resp.StatusCode, body)
	}
	if st := srv.Stats(); st.TokensIssued != 0 {
		t.Errorf("stats %+v", st)
	}
}
