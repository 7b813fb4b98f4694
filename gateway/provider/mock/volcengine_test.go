package mock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// The demo key pair of Volcengine's published signature example
// (https://www.volcengine.com/docs/6369/67270).
const (
	volcDemoAK = "AKLTMjI2ODVlYzI3ZGY1NGU4ZjhjYWRjMTlmNTM5OTZkYzE"
	volcDemoSK = "TnpCak5XWXpZV1U0WkRaaE5ERmxaR0ZpTmpjeVkyUXlZek0wTWpJMU1qWQ=="
)

// TestVolcengineSignPublishedExample checks VolcengineSign (and so the
// mock's verifier, which shares its canonical form) against Volcengine's
// published example.
func TestVolcengineSignPublishedExample(t *testing.T) {
	req, err := http.NewRequest(http.MethodGet, "https://iam.volcengineapi.com/?Action=ListUsers&Version=2018-01-01&Limit=10&Offset=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	mock.VolcengineSign(req, nil, volcDemoAK, volcDemoSK, "cn-north-1", "iam", time.Date(2020, 12, 30, 8, 18, 5, 0, time.UTC))
	want := "HMAC-SHA256 Credential=" + volcDemoAK + "/20201230/cn-north-1/iam/request, " +
		"SignedHeaders=content-type;host;x-content-sha256;x-date, " +
		"Signature=28eeabbbd726b87002e0fe58ad8c1c768e619b06e2646f35b6ad7ed029a6d8a7"
	if got := req.Header.Get("Authorization"); got != want {
		t.Errorf("Authorization:\n got  %s\n want %s", got, want)
	}
}

// volcAnswer is a Volcengine answer.
type volcAnswer struct {
	ResponseMetadata struct {
		RequestID string `json:"RequestId"`
		Action    string `json:"Action"`
		Version   string `json:"Version"`
		Service   string `json:"Service"`
		Region    string `json:"Region"`
		Error     *struct {
			CodeN   int    `json:"CodeN"`
			Code    string `json:"Code"`
			Message string `json:"Message"`
		} `json:"Error"`
	} `json:"ResponseMetadata"`
	Result *struct {
		APIKey      string `json:"ApiKey"`
		ExpiredTime int64  `json:"ExpiredTime"`
	} `json:"Result"`
}

const getAPIKeyPath = "/?Action=GetApiKey&Version=2024-01-01"

// volcCall sends a GetApiKey-style call to path with body, signed with
// secret at now unless secret is empty, after edit (if any) changed the
// request.
func volcCall(t *testing.T, tg target, path, body, ak, secret string, now time.Time, edit func(*http.Request)) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, tg.base+path, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if secret != "" {
		mock.VolcengineSign(req, []byte(body), ak, secret, "cn-beijing", "ark", now)
	}
	if edit != nil {
		edit(req)
	}
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// volcDecode reads a Volcengine answer of the wanted status.
func volcDecode(t *testing.T, resp *http.Response, status int) volcAnswer {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, b)
	}
	var a volcAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if a.ResponseMetadata.RequestID == "" || a.ResponseMetadata.Service == "" || a.ResponseMetadata.Region == "" {
		t.Errorf("metadata %+v", a.ResponseMetadata)
	}
	return a
}

const arkKeyBody = `{"DurationSeconds":604800,"ResourceType":"endpoint","ResourceIds":["ep-20240612090709-hzjz5"]}`

// TestVolcengineGetAPIKey issues a key and uses it on Ark's data plane
// until it is revoked.
func TestVolcengineGetAPIKey(t *testing.T) {
	cfg := mock.Config{Accounts: []mock.Account{{ID: "AKtest", Secret: "secret"}}, Keys: []string{"sk-other"}, TokenTTL: time.Minute}
	eachTarget(t, cfg, func(t *testing.T, tg target) {
		a := volcDecode(t, volcCall(t, tg, getAPIKeyPath, arkKeyBody, "AKtest", "secret", time.Now(), nil), http.StatusOK)
		m := a.ResponseMetadata
		if m.Action != "GetApiKey" || m.Version != "2024-01-01" || m.Service != "ark" || m.Region != "cn-beijing" || m.Error != nil {
			t.Errorf("metadata %+v", m)
		}
		if a.Result == nil || a.Result.APIKey == "" {
			t.Fatalf("no key: %+v", a)
		}
		if exp := time.Unix(a.Result.ExpiredTime, 0); time.Until(exp) > time.Minute+time.Second || time.Until(exp) < 50*time.Second {
			t.Errorf("ExpiredTime %v: the TTL is a minute", exp)
		}
		chat := map[string]any{"model": "ep-20240612090709-hzjz5", "messages": userMsg("hi")}
		var c completion
		decode(t, tg.post(t, "/api/v3/chat/completions", chat, "Authorization", "Bearer "+a.Result.APIKey), http.StatusOK, &c)
		if len(c.Choices) != 1 || c.Model != "ep-20240612090709-hzjz5" {
			t.Errorf("completion %+v", c)
		}
		tg.srv.RevokeTokens()
		expectError(t, tg.post(t, "/api/v3/chat/completions", chat, "Authorization", "Bearer "+a.Result.APIKey),
			http.StatusUnauthorized, "invalid_request_error", "invalid_api_key")
		if st := tg.srv.Stats(); st.TokensIssued != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestVolcengineRefusals checks the signature checks and the body's
// validation, with Volcengine's codes and statuses.
func TestVolcengineRefusals(t *testing.T) {
	cfg := mock.Config{Accounts: []mock.Account{{ID: "AKtest", Secret: "secret"}}}
	now := time.Now()
	tests := []struct {
		name, path, body, ak, secret string
		at                           time.Time
		edit                         func(*http.Request)
		status                       int
		code                         string
	}{
		{"unsigned", getAPIKeyPath, arkKeyBody, "", "", now, nil, 401, "MissingAuthenticationToken"},
		{"wrong secret", getAPIKeyPath, arkKeyBody, "AKtest", "wrong", now, nil, 401, "SignatureDoesNotMatch"},
		{"unknown key", getAPIKeyPath, arkKeyBody, "AKother", "secret", now, nil, 401, "InvalidAccessKey"},
		{"stale date", getAPIKeyPath, arkKeyBody, "AKtest", "secret", now.Add(-time.Hour), nil, 403, "InvalidTimestamp"},
		{"other scheme", getAPIKeyPath, arkKeyBody, "AKtest", "secret", now, func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer x")
		}, 400, "InvalidAuthorization"},
		{"bad credential", getAPIKeyPath, arkKeyBody, "AKtest", "secret", now, func(r *http.Request) {
			r.Header.Set("Authorization", "HMAC-SHA256 Credential=AKtest/x, SignedHeaders=host;x-date, Signature=00")
		}, 400, "InvalidCredential"},
		{"tampered body", getAPIKeyPath, arkKeyBody, "AKtest", "secret", now, func(r *http.Request) {
			r.Body = io.NopCloser(bytes.NewReader([]byte(`{"DurationSeconds":2592000,"ResourceType":"endpoint","ResourceIds":["ep-1"]}`)))
			r.ContentLength = -1
		}, 401, "SignatureDoesNotMatch"},
		{"tampered query", getAPIKeyPath + "&Extra=1", arkKeyBody, "AKtest", "secret", now, func(r *http.Request) {
			r.URL.RawQuery = "Action=GetApiKey&Version=2024-01-01"
		}, 401, "SignatureDoesNotMatch"},
		{"other action", "/?Action=ListEndpoints&Version=2024-01-01", `{}`, "AKtest", "secret", now, nil, 404, "InvalidActionOrVersion"},
		{"other version", "/?Action=GetApiKey&Version=2023-01-01", arkKeyBody, "AKtest", "secret", now, nil, 404, "InvalidActionOrVersion"},
		{"no duration", getAPIKeyPath, `{"ResourceType":"endpoint","ResourceIds":["ep-1"]}`, "AKtest", "secret", now, nil, 400, "MissingParameter"},
		{"long duration", getAPIKeyPath, `{"DurationSeconds":2592001,"ResourceType":"endpoint","ResourceIds":["ep-1"]}`, "AKtest", "secret", now, nil,
			400, "InvalidParameter.DurationSeconds"},
		{"bad type", getAPIKeyPath, `{"DurationSeconds":60,"ResourceType":"model","ResourceIds":["ep-1"]}`, "AKtest", "secret", now, nil,
			400, "InvalidParameter.ResourceType"},
		{"no resources", getAPIKeyPath, `{"DurationSeconds":60,"ResourceType":"endpoint"}`, "AKtest", "secret", now, nil, 400, "MissingParameter"},
	}
	eachTarget(t, cfg, func(t *testing.T, tg target) {
		for _, tt := range tests {
			a := volcDecode(t, volcCall(t, tg, tt.path, tt.body, tt.ak, tt.secret, tt.at, tt.edit), tt.status)
			if e := a.ResponseMetadata.Error; e == nil || e.Code != tt.code || e.Message == "" || a.Result != nil {
				t.Errorf("%s: %+v, want %s", tt.name, a, tt.code)
			}
		}
	})
}

// TestVolcengineNoAuth serves unsigned calls when no account is
// configured, and answers injected faults in Volcengine's shape.
func TestVolcengineNoAuth(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		a := volcDecode(t, volcCall(t, tg, getAPIKeyPath, arkKeyBody, "", "", time.Now(), nil), http.StatusOK)
		if a.Result == nil || a.Result.APIKey == "" {
			t.Errorf("answer %+v", a)
		}
		tg.srv.SetConfig(mock.Config{FailureRate: 1})
		if a := volcDecode(t, volcCall(t, tg, getAPIKeyPath, arkKeyBody, "", "", time.Now(), nil), 500); a.ResponseMetadata.Error.Code != "InternalError" {
			t.Errorf("failure %+v", a)
		}
		tg.srv.SetConfig(mock.Config{RateLimitRate: 1})
		resp := volcCall(t, tg, getAPIKeyPath, arkKeyBody, "", "", time.Now(), nil)
		if resp.Header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
		if a := volcDecode(t, resp, 429); a.ResponseMetadata.Error.Code != "FlowLimitExceeded" {
			t.Errorf("rate limit %+v", a)
		}
	})
}
