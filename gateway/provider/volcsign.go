package provider

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Volcengine's OpenAPI (open.volcengineapi.com) authenticates each call
// with its signature V4, an HMAC-SHA256 scheme like AWS's SigV4 with its
// own names (https://www.volcengine.com/docs/6369/67269, and the worked
// example at https://www.volcengine.com/docs/6369/67270):
//
//	CanonicalRequest = Method \n CanonicalURI \n CanonicalQueryString \n
//	                   CanonicalHeaders \n SignedHeaders \n hex(SHA256(body))
//	StringToSign     = "HMAC-SHA256" \n X-Date \n CredentialScope \n
//	                   hex(SHA256(CanonicalRequest))
//	CredentialScope  = YYYYMMDD/region/service/request
//	kSigning         = HMAC(HMAC(HMAC(HMAC(secret, YYYYMMDD), region), service), "request")
//	Authorization    = HMAC-SHA256 Credential=AccessKeyId/CredentialScope,
//	                   SignedHeaders=…, Signature=hex(HMAC(kSigning, StringToSign))
//
// Unlike AWS, the secret is used as it is (no "AWS4" prefix). Sluice signs
// the headers Volcengine's SDKs sign: content-type, host,
// x-content-sha256 and x-date.

// volcCredential is a Volcengine access key pair and the scope a
// signature is for.
type volcCredential struct {
	accessKeyID, secretAccessKey string
	region, service              string
}

// volcTimeFormat is X-Date's format: ISO 8601 basic, UTC.
const volcTimeFormat = "20060102T150405Z"

// volcSign signs req, whose body is body, at time now: it sets X-Date,
// X-Content-Sha256 and Authorization. Content-Type must be set before.
func volcSign(req *http.Request, body []byte, c volcCredential, now time.Time) {
	date := now.UTC().Format(volcTimeFormat)
	payload := volcSHA256(body)
	req.Header.Set("X-Date", date)
	req.Header.Set("X-Content-Sha256", payload)
	signed, canonical := volcCanonicalHeaders(req)
	scope := date[:8] + "/" + c.region + "/" + c.service + "/request"
	toSign := "HMAC-SHA256\n" + date + "\n" + scope + "\n" + volcSHA256([]byte(volcCanonicalRequest(req, canonical, signed, payload)))
	key := volcSigningKey(c.secretAccessKey, date[:8], c.region, c.service)
	sig := hex.EncodeToString(volcHMAC(key, toSign))
	req.Header.Set("Authorization", "HMAC-SHA256 Credential="+c.accessKeyID+"/"+scope+
		", SignedHeaders="+signed+", Signature="+sig)
}

// volcCanonicalRequest is the canonical form of req.
func volcCanonicalRequest(req *http.Request, canonicalHeaders, signedHeaders, payloadHash string) string {
	return strings.Join([]string{
		req.Method,
		volcCanonicalURI(req.URL.Path),
		volcCanonicalQuery(req.URL.Query()),
		canonicalHeaders,
		signedHeaders,
		payloadHash,
	}, "\n")
}

// volcCanonicalHeaders returns the signed header names (lowercase, sorted,
// joined by ";") and their canonical entries ("name:value\n" each).
func volcCanonicalHeaders(req *http.Request) (signed, canonical string) {
	values := map[string]string{
		"host":             volcHost(req),
		"x-content-sha256": req.Header.Get("X-Content-Sha256"),
		"x-date":           req.Header.Get("X-Date"),
	}
	if ct := req.Header.Get("Content-Type"); ct != "" {
		values["content-type"] = ct
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		b.WriteString(name + ":" + strings.TrimSpace(values[name]) + "\n")
	}
	return strings.Join(names, ";"), b.String()
}

// volcHost is the Host header the request will carry, without a default
// port, as the SDKs sign it.
func volcHost(req *http.Request) string {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if h, port, ok := strings.Cut(host, ":"); ok && (port == "80" || port == "443") {
		return h
	}
	return host
}

// volcCanonicalURI encodes each path segment (RFC 3986: all but the
// unreserved characters); an empty path is "/".
func volcCanonicalURI(path string) string {
	if path == "" {
		return "/"
	}
	segments := strings.Split(path, "/")
	for i, s := range segments {
		segments[i] = volcEscape(s)
	}
	return strings.Join(segments, "/")
}

// volcCanonicalQuery sorts the parameters by name (a name's values keep
// their order) and encodes names and values as RFC 3986 does: a space is
// %20, not +.
func volcCanonicalQuery(q url.Values) string {
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names)
	var pairs []string
	for _, name := range names {
		for _, v := range q[name] {
			pairs = append(pairs, volcEscape(name)+"="+volcEscape(v))
		}
	}
	return strings.Join(pairs, "&")
}

// volcEscape percent-encodes every byte but the unreserved characters
// A-Z a-z 0-9 - _ . ~, in uppercase hex.
func volcEscape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// volcSigningKey derives kSigning.
func volcSigningKey(secret, date, region, service string) []byte {
	k := volcHMAC([]byte(secret), date)
	k = volcHMAC(k, region)
	k = volcHMAC(k, service)
	return volcHMAC(k, "request")
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
