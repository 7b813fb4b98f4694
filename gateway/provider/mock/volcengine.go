package mock

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// Volcengine's OpenAPI gateway (open.volcengineapi.com): every call is
// POST /?Action={action}&Version={version} with a JSON body, signed with
// Volcengine's signature V4 (see VolcengineSign). The mock serves one
// action: Volcengine Ark's GetApiKey, Version 2024-01-01, body
//
//	{"DurationSeconds": 604800, "ResourceType": "endpoint", "ResourceIds": ["ep-…"], "ProjectName": "…"}
//
// answered {"ResponseMetadata": {"RequestId","Action","Version","Service",
// "Region"}, "Result": {"ApiKey","ExpiredTime"}}. The key lives
// DurationSeconds or Config.TokenTTL, whichever is shorter, and Ark's
// OpenAI-compatible data plane (the mock's …/api/v3/chat/completions and
// …/embeddings) takes it as a bearer token until it expires or
// RevokeTokens; it is good for any endpoint, where Ark's serves only the
// resources named.
//
// When Config.Accounts is set, each call must be signed by one of them
// (Account.ID: the AccessKeyId, Secret: the SecretAccessKey) for service
// ark, with an X-Date within 15 minutes of the mock's clock. Errors are
// Volcengine's: {"ResponseMetadata": {…, "Error": {"CodeN", "Code",
// "Message"}}}, with 401 MissingAuthenticationToken, MissingSignature,
// InvalidAccessKey or SignatureDoesNotMatch, 400 InvalidAuthorization or
// InvalidCredential, 403 InvalidTimestamp; 404 InvalidActionOrVersion for
// anything but GetApiKey; 400 MissingParameter and
// InvalidParameter.{name} for a bad body; the injected faults are 500
// InternalError and 429 FlowLimitExceeded.

// Volcengine constants.
const (
	volcTimeFormat    = "20060102T150405Z"
	volcMaxSkew       = 15 * time.Minute
	volcDefaultRegion = "cn-beijing"
	volcArkService    = "ark"
	volcArkVersion    = "2024-01-01"
	// volcMaxKeyLife is GetApiKey's longest DurationSeconds: 30 days.
	volcMaxKeyLife = 30 * 24 * time.Hour
)

// volcMetadata is a Volcengine answer's ResponseMetadata.
type volcMetadata struct {
	RequestID string     `json:"RequestId"`
	Action    string     `json:"Action"`
	Version   string     `json:"Version"`
	Service   string     `json:"Service"`
	Region    string     `json:"Region"`
	Error     *volcError `json:"Error,omitempty"`
}

// volcError is a Volcengine error, with the HTTP status it is sent with.
type volcError struct {
	status  int
	CodeN   int    `json:"CodeN,omitempty"`
	Code    string `json:"Code"`
	Message string `json:"Message"`
}

func (e *volcError) Error() string { return e.Code + ": " + e.Message }

// Volcengine's common errors.
func volcMissingAuth() *volcError {
	return &volcError{status: http.StatusUnauthorized, CodeN: 100003, Code: "MissingAuthenticationToken",
		Message: "Request is missing Authentication Token."}
}

func volcInvalidAuthorization() *volcError {
	return &volcError{status: http.StatusBadRequest, Code: "InvalidAuthorization",
		Message: "Invalid 'Authorization' header, Pls check authorization header."}
}

func volcInvalidCredential() *volcError {
	return &volcError{status: http.StatusBadRequest, Code: "InvalidCredential",
		Message: "Invalid credential in 'Authorization', Pls check credential in authorization header."}
}

func volcSignatureMismatch() *volcError {
	return &volcError{status: http.StatusUnauthorized, CodeN: 100010, Code: "SignatureDoesNotMatch",
		Message: "The request signature we calculated does not match the signature you provided. " +
			"Check your Secret Access Key and signing method. Consult the service documentation for details."}
}

func volcMissingParameter(name string) *volcError {
	return &volcError{status: http.StatusBadRequest, CodeN: 100002, Code: "MissingParameter",
		Message: "The request is missing " + name + " parameter."}
}

func volcInvalidParameter(name string) *volcError {
	return &volcError{status: http.StatusBadRequest, Code: "InvalidParameter." + name,
		Message: "The specified parameter " + name + " is invalid."}
}

// writeVolcError sends a Volcengine error.
func writeVolcError(w http.ResponseWriter, meta volcMetadata, e *volcError) {
	meta.Error = e
	writeJSON(w, e.status, struct {
		ResponseMetadata volcMetadata `json:"ResponseMetadata"`
	}{meta})
}

// serveVolcengine answers a call to Volcengine's OpenAPI: latency, the
// signature, the action, injected faults, then GetApiKey.
func (s *Server) serveVolcengine(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	meta := volcMetadata{
		RequestID: time.Now().UTC().Format("20060102150405") + strings.ToUpper(randomString(c.rng, hexDigits, 18)),
		Action:    q.Get("Action"), Version: q.Get("Version"),
		Service: volcArkService, Region: volcDefaultRegion,
	}
	if !sleep(r.Context(), c.delay) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeVolcError(w, meta, volcInvalidParameter("Body"))
		return
	}
	if len(s.conf().Accounts) > 0 {
		if e := s.volcVerify(r, body, &meta, time.Now()); e != nil {
			writeVolcError(w, meta, e)
			return
		}
	}
	if r.Method != http.MethodPost || meta.Action != "GetApiKey" || meta.Version != volcArkVersion || meta.Service != volcArkService {
		writeVolcError(w, meta, &volcError{status: http.StatusNotFound, CodeN: 100008, Code: "InvalidActionOrVersion",
			Message: fmt.Sprintf("Could not find operation %s for version %s.", meta.Action, meta.Version)})
		return
	}
	if s.injectVolcFault(w, c, meta) {
		return
	}
	s.serveGetAPIKey(w, body, meta)
}

// injectVolcFault answers 500 InternalError or 429 FlowLimitExceeded if
// the dice say so.
func (s *Server) injectVolcFault(w http.ResponseWriter, c *call, meta volcMetadata) bool {
	switch s.drawFault(c) {
	case failureFault:
		writeVolcError(w, meta, &volcError{status: http.StatusInternalServerError, CodeN: 100014, Code: "InternalError",
			Message: "The request has failed due to an unknown error, exception or failure."})
		return true
	case rateLimitFault:
		w.Header().Set("Retry-After", s.retryAfterSeconds())
		writeVolcError(w, meta, &volcError{status: http.StatusTooManyRequests, CodeN: 100018, Code: "FlowLimitExceeded",
			Message: "Request was denied due to api flow control."})
		return true
	}
	return false
}

// volcKeyRequest is GetApiKey's body.
type volcKeyRequest struct {
	DurationSeconds *int64   `json:"DurationSeconds"`
	ResourceType    string   `json:"ResourceType"`
	ResourceIds     []string `json:"ResourceIds"`
	ProjectName     string   `json:"ProjectName"`
}

// serveGetAPIKey issues an API key.
func (s *Server) serveGetAPIKey(w http.ResponseWriter, body []byte, meta volcMetadata) {
	var req volcKeyRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeVolcError(w, meta, volcInvalidParameter("Body"))
		return
	}
	life, e := volcKeyLife(&req)
	if e != nil {
		writeVolcError(w, meta, e)
		return
	}
	ttl := min(life, s.conf().TokenTTL)
	key := s.tokens.issue("ark-", ttl)
	writeJSON(w, http.StatusOK, struct {
		ResponseMetadata volcMetadata `json:"ResponseMetadata"`
		Result           any          `json:"Result"`
	}{meta, struct {
		APIKey      string `json:"ApiKey"`
		ExpiredTime int64  `json:"ExpiredTime"`
	}{key, time.Now().Add(ttl).Unix()}})
}

// volcKeyLife validates a GetApiKey body and returns the life asked for.
func volcKeyLife(req *volcKeyRequest) (time.Duration, *volcError) {
	switch {
	case req.DurationSeconds == nil:
		return 0, volcMissingParameter("DurationSeconds")
	case *req.DurationSeconds <= 0 || time.Duration(*req.DurationSeconds)*time.Second > volcMaxKeyLife:
		return 0, volcInvalidParameter("DurationSeconds")
	case req.ResourceType == "":
		return 0, volcMissingParameter("ResourceType")
	case !slices.Contains([]string{"endpoint", "bot", "presetendpoint", "action"}, req.ResourceType):
		return 0, volcInvalidParameter("ResourceType")
	case len(req.ResourceIds) == 0:
		return 0, volcMissingParameter("ResourceIds")
	case slices.Contains(req.ResourceIds, ""):
		return 0, volcInvalidParameter("ResourceIds")
	}
	return time.Duration(*req.DurationSeconds) * time.Second, nil
}

// volcAuthorization is a parsed Authorization header.
type volcAuthorization struct {
	accessKeyID, date, region, service string
	signedHeaders                      []string
	signature                          string
}

// volcVerify checks r's signature against the configured accounts, as of
// now; it records the credential's region and service in meta.
func (s *Server) volcVerify(r *http.Request, body []byte, meta *volcMetadata, now time.Time) *volcError {
	a, e := parseVolcAuthorization(r.Header.Get("Authorization"))
	if e != nil {
		return e
	}
	meta.Region, meta.Service = a.region, a.service
	acct, ok := s.account(a.accessKeyID)
	if !ok {
		return &volcError{status: http.StatusUnauthorized, CodeN: 100009, Code: "InvalidAccessKey",
			Message: "The accesskey [" + a.accessKeyID + "] included in the request is invalid."}
	}
	xdate := r.Header.Get("X-Date")
	at, err := time.Parse(volcTimeFormat, xdate)
	if err != nil || at.Sub(now) > volcMaxSkew || now.Sub(at) > volcMaxSkew {
		return &volcError{status: http.StatusForbidden, CodeN: 100006, Code: "InvalidTimestamp",
			Message: "The Signature of the request is expired"}
	}
	if xdate[:8] != a.date || !slices.Contains(a.signedHeaders, "host") || !slices.Contains(a.signedHeaders, "x-date") {
		return volcSignatureMismatch()
	}
	want := volcSignature(r, body, a.signedHeaders, acct.Secret, a.region, a.service)
	if subtle.ConstantTimeCompare([]byte(want), []byte(a.signature)) != 1 {
		return volcSignatureMismatch()
	}
	return nil
}

// parseVolcAuthorization reads "HMAC-SHA256 Credential=AK/date/region/
// service/request, SignedHeaders=a;b, Signature=hex".
func parseVolcAuthorization(h string) (volcAuthorization, *volcError) {
	var a volcAuthorization
	if strings.TrimSpace(h) == "" {
		return a, volcMissingAuth()
	}
	rest, ok := strings.CutPrefix(h, "HMAC-SHA256 ")
	if !ok {
		return a, volcInvalidAuthorization()
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) != 5 || cred[4] != "request" || cred[0] == "" {
		return a, volcInvalidCredential()
	}
	if fields["Signature"] == "" {
		return a, &volcError{status: http.StatusUnauthorized, CodeN: 100005, Code: "MissingSignature",
			Message: "The request is missing signature."}
	}
	a.accessKeyID, a.date, a.region, a.service = cred[0], cred[1], cred[2], cred[3]
	a.signedHeaders = strings.Split(fields["SignedHeaders"], ";")
	a.signature = fields["Signature"]
	return a, nil
}

// VolcengineSign signs r, whose body is body, with Volcengine's signature
// V4 at time now, as Volcengine's SDKs do: it sets X-Date,
// X-Content-Sha256 and Authorization, signing content-type (when set),
// host, x-content-sha256 and x-date. Tests and clients of the mock's
// Volcengine API use it.
func VolcengineSign(r *http.Request, body []byte, accessKeyID, secret, region, service string, now time.Time) {
	date := now.UTC().Format(volcTimeFormat)
	r.Header.Set("X-Date", date)
	r.Header.Set("X-Content-Sha256", volcSHA256(body))
	signed := []string{"host", "x-content-sha256", "x-date"}
	if r.Header.Get("Content-Type") != "" {
		signed = append([]string{"content-type"}, signed...)
	}
	sig := volcSignature(r, body, signed, secret, region, service)
	r.Header.Set("Authorization", "HMAC-SHA256 Credential="+accessKeyID+"/"+date[:8]+"/"+region+"/"+service+"/request, SignedHeaders="+
		strings.Join(signed, ";")+", Signature="+sig)
}

// volcSignature computes the signature of r over signedHeaders (lowercase
// names), with the date of its X-Date header.
func volcSignature(r *http.Request, body []byte, signedHeaders []string, secret, region, service string) string {
	xdate := r.Header.Get("X-Date")
	if len(xdate) < 8 {
		return ""
	}
	scope := xdate[:8] + "/" + region + "/" + service + "/request"
	toSign := "HMAC-SHA256\n" + xdate + "\n" + scope + "\n" + volcSHA256([]byte(volcCanonical(r, body, signedHeaders)))
	k := volcHMAC([]byte(secret), xdate[:8])
	for _, part := range []string{region, service, "request"} {
		k = volcHMAC(k, part)
	}
	return hex.EncodeToString(volcHMAC(k, toSign))
}

// volcCanonical is r's canonical request over signedHeaders, with the
// hash of the body received (not the X-Content-Sha256 claimed).
func volcCanonical(r *http.Request, body []byte, signedHeaders []string) string {
	var headers strings.Builder
	for _, name := range signedHeaders {
		headers.WriteString(name + ":" + strings.TrimSpace(volcHeader(r, name)) + "\n")
	}
	return strings.Join([]string{
		r.Method,
		volcPath(r.URL.Path),
		volcQuery(r.URL.Query()),
		headers.String(),
		strings.Join(signedHeaders, ";"),
		volcSHA256(body),
	}, "\n")
}

// volcHeader is the value of a signed header; host, from the request
// line, loses a default port.
func volcHeader(r *http.Request, name string) string {
	if name != "host" {
		return r.Header.Get(name)
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	if h, port, ok := strings.Cut(host, ":"); ok && (port == "80" || port == "443") {
		return h
	}
	return host
}

// volcPath encodes each path segment as RFC 3986 does; "" is "/".
func volcPath(p string) string {
	if p == "" {
		return "/"
	}
	segments := strings.Split(p, "/")
	for i, s := range segments {
		segments[i] = volcEncode(s)
	}
	return strings.Join(segments, "/")
}

// volcQuery sorts the parameters by name and encodes them as RFC 3986
// does.
func volcQuery(q url.Values) string {
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	var pairs []string
	for _, k := range names {
		for _, v := range q[k] {
			pairs = append(pairs, volcEncode(k)+"="+volcEncode(v))
		}
	}
	return strings.Join(pairs, "&")
}

// volcEncode percent-encodes all but A-Z a-z 0-9 - _ . ~.
func volcEncode(s string) string {
	const upperHex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-_.~", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
		}
	}
	return b.String()
}

func volcHMAC(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func volcSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
