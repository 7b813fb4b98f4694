package provider

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestVolcSignPublishedExample checks the signer against the worked example
// Volcengine publishes with its signature method ("签名示例",
// https://www.volcengine.com/docs/6369/67270; the same Authorization value
// is quoted in Volcengine's common-parameters pages): IAM ListUsers signed
// at 20201230T081805Z in cn-north-1 with a demo key pair.
func TestVolcSignPublishedExample(t *testing.T) {
	const (
		ak = "AKLTMjI2ODVlYzI3ZGY1NGU4ZjhjYWRjMTlmNTM5OTZkYzE"
		sk = "TnpCak5XWXpZV1U0WkRaaE5ERmxaR0ZpTmpjeVkyUXlZek0wTWpJMU1qWQ=="

		wantCanonical = "GET\n/\nAction=ListUsers&Limit=10&Offset=0&Version=2018-01-01\n" +
			"content-type:application/x-www-form-urlencoded; charset=utf-8\n" +
			"host:iam.volcengineapi.com\n" +
			"x-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n" +
			"x-date:20201230T081805Z\n\n" +
			"content-type;host;x-content-sha256;x-date\n" +
			"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
		wantCanonicalHash = "3a4d4dee07c3308a52da01bc12d7a83c3705bfa543f51648f46de880bb2a7447"
		wantAuth          = "HMAC-SHA256 Credential=AKLTMjI2ODVlYzI3ZGY1NGU4ZjhjYWRjMTlmNTM5OTZkYzE/20201230/cn-north-1/iam/request, " +
			"SignedHeaders=content-type;host;x-content-sha256;x-date, " +
			"Signature=28eeabbbd726b87002e0fe58ad8c1c768e619b06e2646f35b6ad7ed029a6d8a7"
	)
	req, err := http.NewRequest(http.MethodGet, "https://iam.volcengineapi.com/?Action=ListUsers&Version=2018-01-01&Limit=10&Offset=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	volcSign(req, nil, volcCredential{accessKeyID: ak, secretAccessKey: sk, region: "cn-north-1", service: "iam"},
		time.Date(2020, 12, 30, 8, 18, 5, 0, time.UTC))

	signed, headers := volcCanonicalHeaders(req)
	canonical := volcCanonicalRequest(req, headers, signed, req.Header.Get("X-Content-Sha256"))
	if canonical != wantCanonical {
		t.Errorf("canonical request:\n%s\nwant\n%s", canonical, wantCanonical)
	}
	if got := volcSHA256([]byte(canonical)); got != wantCanonicalHash {
		t.Errorf("canonical request hash %s, want %s", got, wantCanonicalHash)
	}
	if got := req.Header.Get("Authorization"); got != wantAuth {
		t.Errorf("Authorization:\n got  %s\n want %s", got, wantAuth)
	}
	if req.Header.Get("X-Date") != "20201230T081805Z" {
		t.Errorf("X-Date %q", req.Header.Get("X-Date"))
	}
}

func TestVolcCanonicalParts(t *testing.T) {
	if got := volcCanonicalURI(""); got != "/" {
		t.Errorf("empty path: %q", got)
	}
	if got := volcCanonicalURI("/api/v3/a b/ü~"); got != "/api/v3/a%20b/%C3%BC~" {
		t.Errorf("path: %q", got)
	}
	q := map[string][]string{"b": {"2", "1"}, "A": {"x y+z"}, "a": {"*"}}
	if got := volcCanonicalQuery(q); got != "A=x%20y%2Bz&a=%2A&b=2&b=1" {
		t.Errorf("query: %q", got)
	}
	req, _ := http.NewRequest(http.MethodPost, "https://open.volcengineapi.com:443/", strings.NewReader("{}"))
	if got := volcHost(req); got != "open.volcengineapi.com" {
		t.Errorf("host: %q", got)
	}
	req.Host = "127.0.0.1:8080"
	if got := volcHost(req); got != "127.0.0.1:8080" {
		t.Errorf("host with port: %q", got)
	}
}
