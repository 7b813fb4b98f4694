package provider

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// vertex speaks Gemini on Google Vertex AI: generateContent and
// streamGenerateContent for chat, predict (the text embedding models) for
// embeddings, at
// https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{method}
// (aiplatform.googleapis.com for the location "global"). A base URL, when
// the channel sets one (a proxy, a test server), replaces the scheme and
// host and may add a path prefix; Target.APIVersion replaces v1 (v1beta1).
//
// Calls are authorized by a service account: Target.Key holds its JSON key
// file (type service_account, client_email, private_key, private_key_id,
// project_id, token_uri). Target.Project names the project (default: the
// key file's project_id), Target.Region the location (required). The
// access token comes from Google's OAuth 2.0 JWT bearer grant (RFC 7523,
// "Using OAuth 2.0 for Server to Server Applications"): a JWT signed with
// the private key (RS256) is exchanged at the token URL (the channel's
// token_url, else the key file's token_uri, else
// https://oauth2.googleapis.com/token) for a token of the cloud-platform
// scope, which lives an hour and is cached in Target.Tokens. Vertex AI
// answers a revoked or expired token with 401 UNAUTHENTICATED, which
// TokenRefused recognizes, so that the relay fetches a fresh token and
// sends the call once more.
//
// The bodies and answers of chat are Gemini's, so the translation is the
// gemini adapter's, with all it translates, ignores and refuses (see
// gemini). Embeddings: each input text becomes one instance's content and
// dimensions becomes parameters.outputDimensionality; encoding_format
// (vectors come back as floats) and user are ignored; token inputs are
// refused. The usage of embeddings is the token counts Vertex AI reports.
//
// Refusals are returned as an *Error with Status 400; a credential that
// cannot be used (no region, a key that is not a service account's) is a
// plain error, whose message never holds the key.
type vertex struct{}

// The constants of Google's service account flow.
const (
	// googleTokenURL is Google's OAuth 2.0 token endpoint.
	googleTokenURL = "https://oauth2.googleapis.com/token"
	// vertexScope is the scope Vertex AI's tokens need.
	vertexScope = "https://www.googleapis.com/auth/cloud-platform"
	// jwtBearerGrant is RFC 7523's grant type.
	jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// vertexAssertionLife is the longest life Google accepts for an
	// assertion: an hour.
	vertexAssertionLife = time.Hour
	// vertexClockSkew backdates an assertion's iat, as Google's own
	// libraries do, so that a clock slightly ahead of Google's does not
	// make it refused.
	vertexClockSkew = 10 * time.Second
	// DefaultVertexAPIVersion is the API version used when neither the
	// config nor the base URL names one.
	DefaultVertexAPIVersion = "v1"
)

// vertexLocation matches a location: us-central1, europe-west4, global.
var vertexLocation = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Format implements Translator.
func (vertex) Format() Format { return FormatGemini }

// NewRequest implements Adapter. The model is the canonical body's, else
// Target.Model.
func (vertex) NewRequest(ctx context.Context, t Target, ep Endpoint, body []byte) (*http.Request, error) {
	native, model, method, stream, err := vertexTranslate(ep, body)
	if err != nil {
		return nil, err
	}
	if model, err = vertexModel(model, t.Model); err != nil {
		return nil, err
	}
	key, err := parseServiceAccount(t.Key)
	if err != nil {
		return nil, err
	}
	project := t.Project
	if project == "" {
		project = key.ProjectID
	}
	u, err := vertexURL(t, project, model, method, stream)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(native)
	if err != nil {
		return nil, fmt.Errorf("vertexai: encode request: %w", err)
	}
	tok, err := token(ctx, t, "", func(ctx context.Context) (string, time.Duration, error) {
		return vertexToken(ctx, t, key)
	})
	if err != nil {
		return nil, err
	}
	t.Key, t.Spec.AuthHeader = tok, "" // sent as "Authorization: Bearer <token>"
	return newJSONRequest(ctx, u, t, out)
}

// vertexTranslate translates the canonical body into the native one and
// names the method that takes it.
func vertexTranslate(ep Endpoint, body []byte) (native any, model, method string, stream bool, err error) {
	switch ep {
	case Chat:
		native, model, stream, err = geminiChatRequest(body)
		method = "generateContent"
		if stream {
			method = "streamGenerateContent"
		}
	case Embeddings:
		native, model, err = vertexEmbedRequest(body)
		method = "predict"
	default:
		return nil, "", "", false, fmt.Errorf("vertexai: endpoint %q is not supported", ep)
	}
	if err != nil {
		return nil, "", "", false, vertexRefusal(err)
	}
	return native, model, method, stream, nil
}

// vertexRefusal turns a request that cannot be translated into an error a
// client may be shown.
func vertexRefusal(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "vertexai: " + err.Error()}
}

// vertexModel picks the model (the body's, else the channel's) and reads
// it as a Google publisher model's ID: "gemini-2.5-flash",
// "models/gemini-2.5-flash" and "publishers/google/models/gemini-2.5-flash"
// all name gemini-2.5-flash.
func vertexModel(model, fallback string) (string, error) {
	if model == "" {
		model = fallback
	}
	model = strings.TrimPrefix(model, "publishers/google/")
	model = strings.TrimPrefix(model, "models/")
	switch {
	case model == "":
		return "", errors.New("vertexai: no model")
	case strings.ContainsAny(model, "/:?#"):
		return "", vertexRefusal(fmt.Errorf("model: %q is not the ID of a Google publisher model", model))
	}
	return model, nil
}

// vertexURL builds a method's URL.
func vertexURL(t Target, project, model, method string, stream bool) (string, error) {
	loc := t.Region
	switch {
	case !vertexLocation.MatchString(loc):
		return "", errors.New("vertexai: the credential needs a region: the Vertex AI location (us-central1, europe-west4, global…)")
	case project == "" || strings.ContainsAny(project, "/?#"):
		return "", errors.New("vertexai: the credential needs a project: set project, or use a key file with a project_id")
	}
	host := loc + "-aiplatform.googleapis.com"
	if loc == "global" {
		host = "aiplatform.googleapis.com"
	}
	u := &url.URL{Scheme: "https", Host: host}
	prefix, version := "", t.APIVersion
	if t.BaseURL != "" {
		base, err := url.Parse(t.BaseURL)
		if err != nil || base.Host == "" {
			return "", errors.New("vertexai: invalid upstream base URL")
		}
		u.Scheme, u.Host, u.RawQuery = base.Scheme, base.Host, base.RawQuery
		var baseVersion string
		prefix, baseVersion = vertexBasePath(base.Path)
		if version == "" {
			version = baseVersion
		}
	}
	if version == "" {
		version = DefaultVertexAPIVersion
	}
	u.Path = prefix + "/" + version + "/projects/" + project + "/locations/" + loc +
		"/publishers/google/models/" + model + ":" + method
	if stream {
		q := u.Query()
		q.Set("alt", "sse")
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// vertexBasePath splits a base URL's path into a prefix and the API
// version it ends with, if any; a path that names a resource
// ("…/v1/projects/…") is cut back to its base.
func vertexBasePath(p string) (prefix, version string) {
	p = strings.TrimRight(p, "/")
	if i := strings.Index(p+"/", "/projects/"); i >= 0 {
		p = p[:i]
	}
	if i := strings.LastIndex(p, "/"); i >= 0 && geminiVersionSegment.MatchString(p[i+1:]) {
		return p[:i], p[i+1:]
	}
	return p, ""
}

// vxPredictRequest is a PredictRequest to a text embedding model.
type vxPredictRequest struct {
	Instances  []vxEmbedInstance `json:"instances"`
	Parameters *vxEmbedParams    `json:"parameters,omitempty"`
}

// vxEmbedInstance is one text to embed (TextEmbeddingPredictionInstance).
type vxEmbedInstance struct {
	Content string `json:"content"`
}

// vxEmbedParams are a text embedding model's parameters
// (TextEmbeddingPredictionParams).
type vxEmbedParams struct {
	OutputDimensionality *int64 `json:"outputDimensionality,omitempty"`
}

// vertexEmbedRequest translates an embeddings request: the input texts,
// read as the gemini adapter reads them, become one instance each.
func vertexEmbedRequest(body []byte) (*vxPredictRequest, string, error) {
	g, model, err := geminiEmbedRequest(body)
	if err != nil {
		return nil, "", err
	}
	req := &vxPredictRequest{Instances: make([]vxEmbedInstance, len(g.Requests))}
	for i, r := range g.Requests {
		req.Instances[i] = vxEmbedInstance{Content: r.Content.Parts[0].Text}
	}
	if d := g.Requests[0].OutputDimensionality; d != nil {
		req.Parameters = &vxEmbedParams{OutputDimensionality: d}
	}
	return req, model, nil
}

// Response implements Translator: chat answers are Gemini's.
func (vertex) Response(ep Endpoint, body []byte, model string) ([]byte, error) {
	switch ep {
	case Chat:
		return geminiChatResponse(body, model)
	case Embeddings:
		return vertexEmbedResponse(body, model)
	}
	return nil, fmt.Errorf("vertexai: endpoint %q is not supported", ep)
}

// vxPredictResponse is a text embedding model's PredictResponse.
type vxPredictResponse struct {
	Predictions []struct {
		Embeddings struct {
			Values     []float64 `json:"values"`
			Statistics struct {
				// TokenCount is a protobuf Value: a JSON number that may
				// be written as a float.
				TokenCount float64 `json:"token_count"`
			} `json:"statistics"`
		} `json:"embeddings"`
	} `json:"predictions"`
}

// vertexEmbedResponse converts a PredictResponse to an embeddings list,
// with the token counts of the inputs as the usage.
func vertexEmbedResponse(body []byte, model string) ([]byte, error) {
	var r vxPredictResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("vertexai: decode embeddings: %w", err)
	}
	out := wire.EmbeddingResponse{Object: "list", Model: model, Data: make([]wire.Embedding, len(r.Predictions))}
	for i, p := range r.Predictions {
		vec := p.Embeddings.Values
		if vec == nil {
			vec = []float64{}
		}
		out.Data[i] = wire.Embedding{Object: "embedding", Index: i, Embedding: vec}
		out.Usage.PromptTokens += int64(p.Embeddings.Statistics.TokenCount)
	}
	out.Usage.TotalTokens = out.Usage.PromptTokens
	return json.Marshal(out)
}

// Stream implements Translator: streamed answers are Gemini's.
func (vertex) Stream(body io.Reader, model string) Stream { return gemini{}.Stream(body, model) }

// Error implements Translator. Vertex AI's errors are Google's
// (google.rpc.Status), as the gemini adapter reads them.
func (vertex) Error(status int, body []byte) []byte {
	d := geminiErrorDetail(body)
	if d == nil {
		msg := fmt.Sprintf("vertexai answered HTTP %d", status)
		if ex := geminiExcerpt(body, 200); ex != "" {
			msg += ": " + ex
		}
		typ, code := geminiErrorType(&gmErrorDetail{}, status)
		return wire.NewError(typ, code, msg)
	}
	typ, code := geminiErrorType(d, status)
	return wire.NewError(typ, code, d.Message)
}

// TokenRefused implements TokenAuth: Vertex AI answers a missing, expired
// or revoked token with 401 UNAUTHENTICATED.
func (vertex) TokenRefused(ctx context.Context, t Target, req *http.Request, status int, body []byte) bool {
	if status != http.StatusUnauthorized {
		return false
	}
	if d := geminiErrorDetail(body); d != nil && d.Status != "" && d.Status != "UNAUTHENTICATED" {
		return false
	}
	tok, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	revoke(ctx, t, "", tok)
	return true
}

// serviceAccount is the part of a service account's JSON key file Sluice
// reads.
type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"` // PEM: PKCS #8 (or PKCS #1) RSA
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// parseServiceAccount reads a JSON key file. Its errors never quote it.
func parseServiceAccount(raw string) (*serviceAccount, error) {
	var k serviceAccount
	if err := json.Unmarshal([]byte(raw), &k); err != nil {
		return nil, errors.New("vertexai: the key is not a service account's JSON key file")
	}
	switch {
	case k.Type != "" && k.Type != "service_account":
		return nil, errors.New("vertexai: the key file is not a service account's (its type is not service_account)")
	case k.ClientEmail == "" || k.PrivateKey == "":
		return nil, errors.New("vertexai: the service account key file has no client_email or no private_key")
	}
	return &k, nil
}

// rsaKey decodes the private key. Its errors never quote it.
func (k *serviceAccount) rsaKey() (*rsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(k.PrivateKey))
	if block == nil {
		return nil, errors.New("vertexai: the service account's private_key is not PEM-encoded")
	}
	if parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if key, ok := parsed.(*rsa.PrivateKey); ok {
			return key, nil
		}
		return nil, errors.New("vertexai: the service account's private_key is not an RSA key")
	}
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("vertexai: the service account's private_key is not a PKCS #8 or PKCS #1 RSA private key")
	}
	return key, nil
}

// jwtHeader is a JWS header (RFC 7515 §4).
type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid,omitempty"`
}

// jwtGrantClaims is the claim set of a service account's token request:
// the account (iss), the scope asked for, the token URL (aud) and the
// assertion's life. Google's claim set has no sub unless the account
// acts for a user of a Workspace domain, which Sluice does not do.
type jwtGrantClaims struct {
	Iss   string `json:"iss"`
	Scope string `json:"scope"`
	Aud   string `json:"aud"`
	Exp   int64  `json:"exp"`
	Iat   int64  `json:"iat"`
}

// assertion returns the signed JWT that asks aud for a token.
func (k *serviceAccount) assertion(aud string, now time.Time) (string, error) {
	key, err := k.rsaKey()
	if err != nil {
		return "", err
	}
	iat := now.Add(-vertexClockSkew)
	header, err := json.Marshal(jwtHeader{Alg: "RS256", Typ: "JWT", Kid: k.PrivateKeyID})
	if err != nil {
		return "", fmt.Errorf("vertexai: encode JWT header: %w", err)
	}
	claims, err := json.Marshal(jwtGrantClaims{
		Iss:   k.ClientEmail,
		Scope: vertexScope,
		Aud:   aud,
		Iat:   iat.Unix(),
		Exp:   iat.Add(vertexAssertionLife).Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("vertexai: encode JWT claims: %w", err)
	}
	return signRS256(key, header, claims)
}

// signRS256 returns the JWS Compact Serialization (RFC 7515 §7.1) of
// payload under header, signed with RSASSA-PKCS1-v1_5 using SHA-256
// (RFC 7518 §3.3: "RS256").
func signRS256(key *rsa.PrivateKey, header, payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("vertexai: sign the token request: %w", err)
	}
	return input + "." + enc.EncodeToString(sig), nil
}

// vertexTokenURL is where the credential's tokens come from: the
// channel's token_url, else the key file's token_uri, else Google's.
func vertexTokenURL(t Target, key *serviceAccount) string {
	switch {
	case t.TokenURL != "":
		return t.TokenURL
	case key.TokenURI != "":
		return key.TokenURI
	case t.Spec.TokenURL != "":
		return t.Spec.TokenURL
	}
	return googleTokenURL
}

// vertexToken fetches an access token: POST {token URL} with the form
// grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>,
// answered {"access_token","expires_in","token_type"} or
// {"error","error_description"}.
func vertexToken(ctx context.Context, t Target, key *serviceAccount) (string, time.Duration, error) {
	aud := vertexTokenURL(t, key)
	if u, err := url.Parse(aud); err != nil || u.Host == "" {
		return "", 0, errors.New("vertexai: invalid token URL")
	}
	jwt, err := key.assertion(aud, time.Now())
	if err != nil {
		return "", 0, err
	}
	form := url.Values{"grant_type": {jwtBearerGrant}, "assertion": {jwt}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, aud, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("vertexai: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return fetchToken(t, req, "vertexai", readGoogleToken)
}

// readGoogleToken reads the token endpoint's answer: the token and its
// life, or why there is none.
func readGoogleToken(body []byte) (string, time.Duration, string) {
	var r struct {
		AccessToken      string `json:"access_token"`
		ExpiresIn        int64  `json:"expires_in"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &r) != nil {
		return "", 0, "unreadable answer"
	}
	if r.AccessToken == "" {
		why := strings.Trim(r.Error+": "+r.ErrorDescription, ": ")
		if why == "" {
			why = "no access_token in the answer"
		}
		return "", 0, why
	}
	return r.AccessToken, time.Duration(r.ExpiresIn) * time.Second, ""
}
