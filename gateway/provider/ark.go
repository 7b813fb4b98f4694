package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ark speaks Volcengine Ark (Doubao) for credentials that hold an access
// key pair (Target.Key: the AccessKeyId, Target.SecretKey: the
// SecretAccessKey) instead of an Ark API key.
//
// Ark's data plane is OpenAI-compatible: {base}/chat/completions and
// {base}/embeddings (base https://ark.cn-beijing.volces.com/api/v3), with
// the model an inference endpoint ID ("ep-20240612090709-hzjz5"), and
// {base}/bots/chat/completions for an application bot ("bot-…"). The body
// is relayed unchanged and the answers are OpenAI's, so ark is not a
// Translator. The data plane only takes API keys ("Authorization: Bearer
// …"); for access keys, Ark's control plane issues temporary ones:
// GetApiKey (POST {token URL}/?Action=GetApiKey&Version=2024-01-01,
// service "ark", region Target.Region or cn-beijing, signed with
// Volcengine's signature V4, see volcsign.go) with
//
//	{"DurationSeconds": 604800, "ResourceType": "endpoint", "ResourceIds": ["ep-…"]}
//
// answered {"ResponseMetadata": {…}, "Result": {"ApiKey": "…",
// "ExpiredTime": <unix seconds>}}, or a ResponseMetadata.Error. A key
// serves only the resources it was issued for, so keys are cached per
// resource (Target.Tokens, scope "endpoint/ep-…") until they expire; when
// the data plane refuses one (401, AuthenticationError), TokenRefused
// revokes it and the relay retries with a fresh one.
//
// Resource types, by the model's ID, as Volcengine's SDKs tell them:
// "bot-…" a bot, "ep-m-…" and plain model names ("doubao-pro-32k-240525")
// a preset endpoint, which needs the credential's project (Target.Project,
// sent as ProjectName and X-Project-Name), "ep-…" an endpoint. A plain
// model name without a project, and embeddings with a bot, are refused.
type ark struct{}

var _ TokenAuth = ark{}

// Ark's control plane.
const (
	arkAPIVersion    = "2024-01-01"
	arkService       = "ark"
	arkDefaultRegion = "cn-beijing"
	// arkKeyLife is the life asked of issued keys: the SDKs' default, a
	// week (Ark allows up to 30 days).
	arkKeyLife = 7 * 24 * time.Hour
)

// Resource types GetApiKey issues keys for.
const (
	arkEndpoint       = "endpoint"
	arkBot            = "bot"
	arkPresetEndpoint = "presetendpoint"
)

// arkResource is what an API key is issued for.
type arkResource struct {
	typ, id string
	project string // a preset endpoint's project
}

// scope is the resource's key in the token cache.
func (r arkResource) scope() string {
	if r.project != "" {
		return r.typ + "/" + r.project + "/" + r.id
	}
	return r.typ + "/" + r.id
}

// NewRequest implements Adapter: it fetches (or reuses) the API key for
// the request's model and builds the OpenAI-compatible request with it.
func (ark) NewRequest(ctx context.Context, t Target, ep Endpoint, body []byte) (*http.Request, error) {
	if ep != Chat && ep != Embeddings {
		return nil, fmt.Errorf("ark: endpoint %q is not supported", ep)
	}
	res, err := arkResourceOf(arkModel(body, t.Model), t.Project)
	if err != nil {
		return nil, err
	}
	if res.typ == arkBot && ep == Embeddings {
		return nil, arkRefusal("model: %q is a bot: bots chat, they do not embed", res.id)
	}
	key, err := token(ctx, t, res.scope(), func(ctx context.Context) (string, time.Duration, error) {
		return arkIssueKey(ctx, t, res)
	})
	if err != nil {
		return nil, err
	}
	u, err := arkDataURL(t.BaseURL, ep, res)
	if err != nil {
		return nil, err
	}
	dt := t
	dt.Key, dt.Spec.AuthHeader = key, ""
	req, err := newJSONRequest(ctx, u, dt, body)
	if err != nil {
		return nil, err
	}
	if res.project != "" {
		req.Header.Set("X-Project-Name", res.project)
	}
	return req, nil
}

// arkRefusal is a request Ark cannot be asked with access keys.
func arkRefusal(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "ark: " + fmt.Sprintf(format, args...)}
}

// arkModel is the body's model, else the target's.
func arkModel(body []byte, fallback string) string {
	var b struct {
		Model string `json:"model"`
	}
	if json.Unmarshal(body, &b) == nil && b.Model != "" {
		return b.Model
	}
	return fallback
}

// arkResourceOf tells the resource a model ID names.
func arkResourceOf(model, project string) (arkResource, error) {
	switch {
	case model == "":
		return arkResource{}, arkRefusal("model: no model: Ark needs an endpoint ID (ep-…)")
	case strings.HasPrefix(model, "bot-"):
		return arkResource{typ: arkBot, id: model}, nil
	case strings.HasPrefix(model, "ep-") && !strings.HasPrefix(model, "ep-m-"):
		return arkResource{typ: arkEndpoint, id: model}, nil
	case project == "":
		return arkResource{}, arkRefusal("model: %q is not an endpoint ID (ep-…): with access keys, Ark issues API keys "+
			"per endpoint; name the endpoint, or give the credential the project of its preset endpoint", model)
	}
	return arkResource{typ: arkPresetEndpoint, id: model, project: project}, nil
}

// arkDataURL is the data plane's URL for ep: bots have their own chat
// path.
func arkDataURL(base string, ep Endpoint, res arkResource) (string, error) {
	if res.typ == arkBot {
		return endpointURL(base, "bots/"+Chat)
	}
	return endpointURL(base, ep)
}

// arkKeyRequest is GetApiKey's body.
type arkKeyRequest struct {
	DurationSeconds int64    `json:"DurationSeconds"`
	ResourceType    string   `json:"ResourceType"`
	ResourceIds     []string `json:"ResourceIds"`
	ProjectName     string   `json:"ProjectName,omitempty"`
}

// arkKeyAnswer is GetApiKey's answer.
type arkKeyAnswer struct {
	ResponseMetadata struct {
		Error *struct {
			Code    string `json:"Code"`
			Message string `json:"Message"`
		} `json:"Error"`
	} `json:"ResponseMetadata"`
	Result *struct {
		APIKey      string `json:"ApiKey"`
		ExpiredTime int64  `json:"ExpiredTime"`
	} `json:"Result"`
}

// arkIssueKey asks the control plane for an API key for res. Its errors
// never carry the credential's secrets.
func arkIssueKey(ctx context.Context, t Target, res arkResource) (string, time.Duration, error) {
	if t.Key == "" || t.SecretKey == "" {
		return "", 0, errors.New("ark: the credential needs an access key ID and a secret access key")
	}
	req, body, err := arkKeyHTTPRequest(ctx, tokenURL(t), res)
	if err != nil {
		return "", 0, err
	}
	region := t.Region
	if region == "" {
		region = arkDefaultRegion
	}
	volcSign(req, body, volcCredential{accessKeyID: t.Key, secretAccessKey: t.SecretKey, region: region, service: arkService}, time.Now())
	status, answer, err := doToken(t, req, "ark: GetApiKey")
	if err != nil {
		return "", 0, err
	}
	return arkReadKey(status, answer, t.Key, time.Now())
}

// arkKeyHTTPRequest builds the GetApiKey call to the control plane at
// base, returning its body for signing.
func arkKeyHTTPRequest(ctx context.Context, base string, res arkResource) (*http.Request, []byte, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, nil, errors.New("ark: invalid token URL")
	}
	if u.Path == "" {
		u.Path = "/"
	}
	q := u.Query()
	q.Set("Action", "GetApiKey")
	q.Set("Version", arkAPIVersion)
	u.RawQuery = q.Encode()
	body, err := json.Marshal(arkKeyRequest{
		DurationSeconds: int64(arkKeyLife / time.Second),
		ResourceType:    res.typ,
		ResourceIds:     []string{res.id},
		ProjectName:     res.project,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("ark: encode GetApiKey: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("ark: GetApiKey request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	return req, body, nil
}

// arkReadKey reads GetApiKey's answer: the key and how long it lives. A
// refusal's message is kept (with the access key ID, which Volcengine
// quotes in some, masked): it says what is wrong with the credential.
func arkReadKey(status int, body []byte, accessKeyID string, now time.Time) (string, time.Duration, error) {
	var a arkKeyAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return "", 0, fmt.Errorf("ark: GetApiKey answered HTTP %d, unreadable: %w", status, err)
	}
	if e := a.ResponseMetadata.Error; e != nil {
		msg := strings.ReplaceAll(e.Message, accessKeyID, "***")
		return "", 0, fmt.Errorf("ark: GetApiKey refused (HTTP %d): %s: %s", status, e.Code, msg)
	}
	if status < 200 || status > 299 || a.Result == nil || a.Result.APIKey == "" {
		return "", 0, fmt.Errorf("ark: GetApiKey answered HTTP %d without a key", status)
	}
	ttl := arkKeyLife
	if a.Result.ExpiredTime > 0 {
		ttl = time.Unix(a.Result.ExpiredTime, 0).Sub(now)
	}
	if ttl <= 0 {
		return "", 0, errors.New("ark: GetApiKey issued a key that has already expired")
	}
	return a.Result.APIKey, ttl, nil
}

// TokenRefused implements TokenAuth: Ark refuses an expired or revoked
// API key with 401 (its error code AuthenticationError).
func (ark) TokenRefused(ctx context.Context, t Target, req *http.Request, status int, body []byte) bool {
	if status != http.StatusUnauthorized && !arkAuthenticationError(body) {
		return false
	}
	key, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok || key == "" {
		return false
	}
	res, err := arkResourceOf(arkModel(arkRequestBody(req), t.Model), req.Header.Get("X-Project-Name"))
	if err != nil {
		return false
	}
	revoke(ctx, t, res.scope(), key)
	return true
}

// arkAuthenticationError reports whether an error body is Ark's
// AuthenticationError.
func arkAuthenticationError(body []byte) bool {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Error.Code == "AuthenticationError"
}

// arkRequestBody re-reads a sent request's body (nil if it cannot).
func arkRequestBody(req *http.Request) []byte {
	if req.GetBody == nil {
		return nil
	}
	rc, err := req.GetBody()
	if err != nil {
		return nil
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return b
}
