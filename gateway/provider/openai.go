package provider

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// openAI speaks the OpenAI HTTP API to any compatible service.
type openAI struct{}

// NewRequest implements Adapter. The configured base URL may be a base
// ("https://api.deepseek.com/v1") or a full endpoint URL
// ("https://host/v1/chat/completions"); either way the endpoint asked for
// is what gets called.
func (openAI) NewRequest(ctx context.Context, t Target, ep Endpoint, body []byte) (*http.Request, error) {
	u, err := endpointURL(t.BaseURL, ep)
	if err != nil {
		return nil, err
	}
	return newJSONRequest(ctx, u, t, body)
}

// endpointURL joins a base URL and an endpoint, accepting a base that
// already names an endpoint.
func endpointURL(base string, ep Endpoint) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("invalid upstream base URL")
	}
	p := strings.TrimRight(u.Path, "/")
	for _, known := range []Endpoint{Chat, Embeddings, "completions"} {
		if strings.HasSuffix(p, "/"+string(known)) {
			p = strings.TrimSuffix(p, "/"+string(known))
			break
		}
	}
	u.Path = p + "/" + string(ep)
	u.RawPath = ""
	return u.String(), nil
}

func newJSONRequest(ctx context.Context, u string, t Target, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build upstream request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	setAuth(req.Header, t)
	return req, nil
}

// azure speaks to Azure OpenAI deployments.
type azure struct{}

// DefaultAzureAPIVersion is used when neither the config nor the base URL
// names an api-version.
const DefaultAzureAPIVersion = "2024-10-21"

// NewRequest implements Adapter. The base URL is the resource endpoint
// ("https://res.openai.azure.com"), in which case Target.Model names the
// deployment, or a full deployment URL ("…/openai/deployments/d/chat/
// completions?api-version=…"), or the v1 API ("…/openai/v1"), which takes
// the model in the body like OpenAI.
func (azure) NewRequest(ctx context.Context, t Target, ep Endpoint, body []byte) (*http.Request, error) {
	u, err := url.Parse(t.BaseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid upstream base URL")
	}
	q := u.Query()
	p := strings.TrimRight(u.Path, "/")
	switch {
	case strings.HasSuffix(p, "/openai/v1"):
		u.Path = p + "/" + string(ep)
	case strings.Contains(p, "/openai/deployments/"):
		dep := strings.TrimPrefix(p[strings.Index(p, "/openai/deployments/"):], "/openai/deployments/")
		dep, _, _ = strings.Cut(dep, "/")
		u.Path = p[:strings.Index(p, "/openai/deployments/")] + "/openai/deployments/" + dep + "/" + string(ep)
	default:
		if t.Model == "" {
			return nil, fmt.Errorf("azure: no deployment for the model")
		}
		u.Path = strings.TrimSuffix(p, "/openai") + "/openai/deployments/" + t.Model + "/" + string(ep)
	}
	u.RawPath = ""
	if t.APIVersion != "" {
		q.Set("api-version", t.APIVersion)
	} else if q.Get("api-version") == "" && !strings.HasSuffix(p, "/openai/v1") {
		q.Set("api-version", DefaultAzureAPIVersion)
	}
	u.RawQuery = q.Encode()
	return newJSONRequest(ctx, u.String(), t, body)
}
