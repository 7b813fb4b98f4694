package mock

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Google's service account flow and the Gemini API of Vertex AI.
//
// The token endpoint, POST /token (or …/oauth2/token), is Google's OAuth
// 2.0 JWT bearer grant (RFC 7523): a form with
// grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer and assertion, a
// JWT signed with RS256 whose claims are iss (the service account's
// email), scope, aud (https://oauth2.googleapis.com/token, or this
// endpoint's own URL), iat and exp (at most an hour apart). It answers
// {"access_token":"ya29.…","expires_in":…,"token_type":"Bearer"}, or
// Google's {"error","error_description"} (invalid_grant for a bad
// signature, an unknown account or an out-of-range iat/exp). When
// Config.ServiceAccounts is set the assertion must be signed by the key of
// the account it names; without it any well-formed assertion is taken.
// The mock serves only Vertex AI, so it refuses (invalid_scope) an
// assertion whose scope lacks cloud-platform; a sub other than the account
// itself (domain-wide delegation) is unauthorized_client.
//
// Vertex AI's paths are
// …/{v1,v1beta1}/projects/{project}/locations/{location}/publishers/google/models/{model}:{method}
// with the methods generateContent and streamGenerateContent (only with
// ?alt=sse), answered exactly as the Gemini API answers them (see
// gemini.go), and predict for the text embedding models. When
// Config.ServiceAccounts is set, calls carry "Authorization: Bearer
// <token>" with a token the mock issued and has not revoked; others get
// 401 UNAUTHENTICATED.

// Google's constants of the flow.
const (
	googleTokenAudience = "https://oauth2.googleapis.com/token"
	jwtBearerGrantType  = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	cloudPlatformScope  = "https://www.googleapis.com/auth/cloud-platform"
	// maxAssertionLife is the longest exp - iat Google accepts.
	maxAssertionLife = time.Hour
	// assertionSkew is how far in the future an iat may be.
	assertionSkew = 5 * time.Minute
	// maxPredictInstances is the text embedding models' batch limit.
	maxPredictInstances = 250
	// googleAuthDocs is where Google's 401s point.
	googleAuthDocs = "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)

// googleOAuthError is an error of Google's token endpoint.
type googleOAuthError struct {
	status      int
	code        string // error
	description string // error_description
}

// googleInvalidGrant is the error of a grant Google does not take.
func googleInvalidGrant(description string) *googleOAuthError {
	return &googleOAuthError{http.StatusBadRequest, "invalid_grant", description}
}

var (
	errGoogleBadSignature = googleInvalidGrant("Invalid JWT Signature.")
	errGoogleBadTimes     = googleInvalidGrant("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
)

// writeGoogleOAuthError sends {"error","error_description"}.
func writeGoogleOAuthError(w http.ResponseWriter, e *googleOAuthError) {
	writeJSON(w, e.status, struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}{e.code, e.description})
}

// serveGoogleToken answers the JWT bearer grant.
func (s *Server) serveGoogleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeGoogleOAuthError(w, &googleOAuthError{http.StatusMethodNotAllowed, "invalid_request", "The token endpoint takes POST."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		writeGoogleOAuthError(w, &googleOAuthError{http.StatusBadRequest, "invalid_request", "Could not read the form: " + err.Error()})
		return
	}
	if err := s.checkGoogleGrant(r); err != nil {
		writeGoogleOAuthError(w, err)
		return
	}
	ttl := s.conf().TokenTTL
	w.Header().Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		TokenType   string `json:"token_type"`
	}{s.tokens.issue("ya29.", ttl), int64(ttl / time.Second), "Bearer"})
}

// checkGoogleGrant checks the grant's form and its assertion.
func (s *Server) checkGoogleGrant(r *http.Request) *googleOAuthError {
	grant := r.PostForm.Get("grant_type")
	switch {
	case grant == "":
		return &googleOAuthError{http.StatusBadRequest, "invalid_request", "Required parameter is missing: grant_type"}
	case grant != jwtBearerGrantType:
		return &googleOAuthError{http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: " + grant}
	case r.PostForm.Get("assertion") == "":
		return &googleOAuthError{http.StatusBadRequest, "invalid_request", "Required parameter is missing: assertion"}
	}
	claims, err := s.verifyGoogleAssertion(r.PostForm.Get("assertion"))
	if err != nil {
		return err
	}
	return claims.check(r, time.Now())
}

// googleGrantClaims is an assertion's claim set.
type googleGrantClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Scope string `json:"scope"`
	Aud   string `json:"aud"`
	Exp   int64  `json:"exp"`
	Iat   int64  `json:"iat"`
}

// verifyGoogleAssertion decodes a JWS compact serialization (RFC 7515 §7.1)
// signed with RS256 and, when service accounts are configured, checks
// its signature with the public key of the account it names.
func (s *Server) verifyGoogleAssertion(jwt string) (*googleGrantClaims, *googleOAuthError) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, googleInvalidGrant("Invalid JWT: the assertion is not a signed JWT.")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	var claims googleGrantClaims
	sig, sigErr := base64.RawURLEncoding.DecodeString(parts[2])
	if decodeJWTSegment(parts[0], &header) != nil || decodeJWTSegment(parts[1], &claims) != nil || sigErr != nil {
		return nil, googleInvalidGrant("Invalid JWT: the assertion is not a signed JWT.")
	}
	if header.Alg != "RS256" {
		return nil, errGoogleBadSignature
	}
	if claims.Iss == "" {
		return nil, googleInvalidGrant("Invalid JWT: iss is missing.")
	}
	accounts := s.conf().ServiceAccounts
	if len(accounts) == 0 {
		return &claims, nil
	}
	pemKey, ok := accounts[claims.Iss]
	if !ok {
		return nil, googleInvalidGrant("Invalid grant: account not found")
	}
	pub, err := parseRSAPublicKey(pemKey)
	if err != nil {
		return nil, errGoogleBadSignature // the mock's own configuration is wrong
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) != nil {
		return nil, errGoogleBadSignature
	}
	return &claims, nil
}

// decodeJWTSegment decodes one base64url JSON segment of a JWT.
func decodeJWTSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// parseRSAPublicKey reads an RSA public key in PEM: an X.509 certificate (as
// Google publishes its service accounts' keys), a PKIX public key or a
// PKCS #1 one.
func parseRSAPublicKey(s string) (*rsa.PublicKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("not PEM")
	}
	var (
		pub any
		err error
	)
	switch block.Type {
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	}
	if err != nil {
		return nil, err
	}
	key, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	return key, nil
}

// check checks the claims: the account itself as the subject, the
// audience, the times and the scope.
func (c *googleGrantClaims) check(r *http.Request, now time.Time) *googleOAuthError {
	switch {
	case c.Sub != "" && c.Sub != c.Iss:
		return &googleOAuthError{http.StatusUnauthorized, "unauthorized_client",
			"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}
	case !isGoogleTokenAudience(c.Aud, r):
		return googleInvalidGrant("Invalid JWT: Failed audience check. The right audience is " + googleTokenAudience)
	case c.Iat == 0 || c.Exp == 0:
		return errGoogleBadTimes
	}
	iat, exp := time.Unix(c.Iat, 0), time.Unix(c.Exp, 0)
	if iat.After(now.Add(assertionSkew)) || !exp.After(now) || exp.Sub(iat) > maxAssertionLife {
		return errGoogleBadTimes
	}
	if !slices.Contains(strings.Fields(c.Scope), cloudPlatformScope) {
		return &googleOAuthError{http.StatusBadRequest, "invalid_scope", "Invalid OAuth scope or ID token audience provided."}
	}
	return nil
}

// isGoogleTokenAudience reports whether aud names Google's token endpoint
// or this one (a test's token URL), whatever its scheme.
func isGoogleTokenAudience(aud string, r *http.Request) bool {
	if aud == googleTokenAudience {
		return true
	}
	u, err := url.Parse(aud)
	return err == nil && u.Host == r.Host && strings.TrimRight(u.Path, "/") == strings.TrimRight(r.URL.Path, "/")
}

// serveVertex answers a Vertex AI call: latency, auth, route, injected
// faults, then the method.
func (s *Server) serveVertex(w http.ResponseWriter, r *http.Request, c *call) {
	if !sleep(r.Context(), c.delay) {
		return
	}
	if !s.vertexAuthorized(w, r) {
		return
	}
	model, method, ok := vertexRoute(r.URL.Path)
	if !ok || r.Method != http.MethodPost {
		writeGeminiError(w, http.StatusNotFound, "NOT_FOUND",
			"The mock does not serve "+r.Method+" "+r.URL.Path+"; it serves POST "+
				"…/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent, "+
				":streamGenerateContent?alt=sse and :predict.")
		return
	}
	stream := method == "streamGenerateContent"
	if stream && r.URL.Query().Get("alt") != "sse" {
		geminiBadRequest(w, "The mock serves streamGenerateContent only as server-sent events: add ?alt=sse.")
		return
	}
	if s.injectGeminiFault(w, c) {
		return
	}
	if method == "predict" {
		s.servePredict(w, r)
		return
	}
	s.serveGenerateContent(w, r, c, model, stream)
}

// vertexRoute reads
// "…/{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{model}:{method}"
// for a method the mock serves.
func vertexRoute(p string) (model, method string, ok bool) {
	i := strings.Index(p, "/projects/")
	if i < 0 || !(strings.HasSuffix(p[:i], "/v1") || strings.HasSuffix(p[:i], "/v1beta1")) {
		return "", "", false
	}
	seg := strings.Split(p[i+len("/projects/"):], "/")
	if len(seg) != 7 || seg[0] == "" || seg[1] != "locations" || seg[2] == "" ||
		seg[3] != "publishers" || seg[4] != "google" || seg[5] != "models" {
		return "", "", false
	}
	model, method, ok = strings.Cut(seg[6], ":")
	if !ok || model == "" {
		return "", "", false
	}
	switch method {
	case "generateContent", "streamGenerateContent", "predict":
		return model, method, true
	}
	return "", "", false
}

// vertexAuthorized checks the bearer token when service accounts are
// configured, answering Google's 401 itself when it is missing or not
// one the mock issued (or revoked).
func (s *Server) vertexAuthorized(w http.ResponseWriter, r *http.Request) bool {
	if len(s.conf().ServiceAccounts) == 0 {
		return true
	}
	tok := bearer(r)
	if tok != "" && s.tokens.check(tok) {
		return true
	}
	reason, msg := "ACCESS_TOKEN_EXPIRED", "Request had invalid authentication credentials. "
	challenge := `Bearer realm="https://accounts.google.com/", error="invalid_token"`
	switch {
	case tok == "":
		s.tokens.refused.Add(1)
		reason, msg = "CREDENTIALS_MISSING", "Request is missing required authentication credential. "
		challenge = `Bearer realm="https://accounts.google.com/"`
	case !strings.HasPrefix(tok, "ya29."):
		reason = "ACCESS_TOKEN_TYPE_UNSUPPORTED"
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeGeminiError(w, http.StatusUnauthorized, "UNAUTHENTICATED",
		msg+"Expected OAuth 2 access token, login cookie or other valid authentication credential. "+googleAuthDocs,
		map[string]any{
			"@type":    "type.googleapis.com/google.rpc.ErrorInfo",
			"reason":   reason,
			"domain":   "googleapis.com",
			"metadata": map[string]string{"service": "aiplatform.googleapis.com"},
		})
	return false
}

// vertexPredictRequest is a PredictRequest to a text embedding model.
type vertexPredictRequest struct {
	Instances  []vertexEmbedInstance
	Parameters vertexEmbedParams
}

func (q *vertexPredictRequest) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{"instances": &q.Instances, "parameters": &q.Parameters})
}

// vertexEmbedInstance is a TextEmbeddingPredictionInstance.
type vertexEmbedInstance struct {
	Content  *string
	TaskType string
	Title    string
}

func (q *vertexEmbedInstance) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{"content": &q.Content, "taskType": &q.TaskType, "title": &q.Title})
}

// vertexEmbedParams are TextEmbeddingPredictionParams.
type vertexEmbedParams struct {
	OutputDimensionality int
	AutoTruncate         *bool
}

func (q *vertexEmbedParams) UnmarshalJSON(b []byte) error {
	return protoObject(b, map[string]any{"outputDimensionality": &q.OutputDimensionality, "autoTruncate": &q.AutoTruncate})
}

// vertexPrediction is one text's embedding, with its statistics.
type vertexPrediction struct {
	Embeddings struct {
		Values     []float32 `json:"values"`
		Statistics struct {
			Truncated  bool `json:"truncated"`
			TokenCount int  `json:"token_count"`
		} `json:"statistics"`
	} `json:"embeddings"`
}

// servePredict answers :predict with one embedding per instance: the
// vector the Gemini API (and OpenAI's format) gives the same text.
func (s *Server) servePredict(w http.ResponseWriter, r *http.Request) {
	var req vertexPredictRequest
	if _, err := readJSONBody(w, r, &req); err != nil {
		geminiBadRequest(w, "Invalid JSON payload received. "+err.Error())
		return
	}
	if n := len(req.Instances); n == 0 || n > maxPredictInstances {
		geminiBadRequest(w, fmt.Sprintf("* PredictRequest.instances: must hold 1 to %d instances, got %d.", maxPredictInstances, n))
		return
	}
	out := make([]vertexPrediction, len(req.Instances))
	total, chars := 0, 0
	for i, inst := range req.Instances {
		er := geminiEmbedRequest{OutputDimensionality: req.Parameters.OutputDimensionality}
		if inst.Content != nil {
			er.Content = &geminiContent{Parts: []geminiPart{{Text: *inst.Content}}}
			chars += utf8.RuneCountInString(*inst.Content)
		}
		e, tokens, err := s.geminiEmbed(&er, fmt.Sprintf("PredictRequest.instances[%d]", i))
		if err != nil {
			geminiBadRequest(w, err.Error())
			return
		}
		out[i].Embeddings.Values = e.Values
		out[i].Embeddings.Statistics.TokenCount = tokens
		total += tokens
	}
	writeJSON(w, http.StatusOK, struct {
		Predictions []vertexPrediction `json:"predictions"`
		Metadata    map[string]int     `json:"metadata"`
	}{out, map[string]int{"billableCharacterCount": chars}})
	s.promptTokens.Add(int64(total))
}
