package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"
)

// jsonEqual fails the test unless got and want encode the same JSON value.
func jsonEqual(t *testing.T, name string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: got invalid JSON %s: %v", name, got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: want invalid JSON %s: %v", name, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got  %s\n want %s", name, compactJSON(got), compactJSON(want))
	}
}

// compactJSON is b without insignificant space, or b as it is when it is
// not JSON.
func compactJSON(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

func TestOpenAIURL(t *testing.T) {
	tests := []struct {
		base string
		ep   Endpoint
		want string
	}{
		{"https://api.openai.com/v1", Chat, "https://api.openai.com/v1/chat/completions"},
		{"https://api.openai.com/v1/", Embeddings, "https://api.openai.com/v1/embeddings"},
		{"https://api.perplexity.ai", Chat, "https://api.perplexity.ai/chat/completions"},
		{"https://host/x/v1/chat/completions", Chat, "https://host/x/v1/chat/completions"},
		{"https://host/x/v1/chat/completions", Embeddings, "https://host/x/v1/embeddings"},
		{"http://127.0.0.1:11434/v1?foo=bar", Chat, "http://127.0.0.1:11434/v1/chat/completions?foo=bar"},
	}
	for _, tt := range tests {
		req, err := openAI{}.NewRequest(context.Background(), Target{BaseURL: tt.base, Key: "k"}, tt.ep, []byte("{}"))
		if err != nil {
			t.Fatalf("%s: %v", tt.base, err)
		}
		if got := req.URL.String(); got != tt.want {
			t.Errorf("%s %s: got %s, want %s", tt.base, tt.ep, got, tt.want)
		}
		if req.Header.Get("Authorization") != "Bearer k" {
			t.Errorf("auth header %q", req.Header.Get("Authorization"))
		}
	}
	if _, err := (openAI{}).NewRequest(context.Background(), Target{BaseURL: "not a url"}, Chat, nil); err == nil {
		t.Fatal("want an error for a bad base URL")
	}
}

func TestAzureURL(t *testing.T) {
	spec, _ := Lookup("azure")
	tests := []struct {
		base, version, model string
		ep                   Endpoint
		want                 string
	}{
		{"https://res.openai.azure.com", "", "gpt4o", Chat,
			"https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=" + DefaultAzureAPIVersion},
		{"https://res.openai.azure.com/", "2025-01-01-preview", "emb", Embeddings,
			"https://res.openai.azure.com/openai/deployments/emb/embeddings?api-version=2025-01-01-preview"},
		{"https://res.openai.azure.com/openai/deployments/dep1/chat/completions?api-version=2024-06-01", "", "ignored", Chat,
			"https://res.openai.azure.com/openai/deployments/dep1/chat/completions?api-version=2024-06-01"},
		{"https://res.openai.azure.com/openai/deployments/dep1/chat/completions?api-version=2024-06-01", "", "", Embeddings,
			"https://res.openai.azure.com/openai/deployments/dep1/embeddings?api-version=2024-06-01"},
		{"https://res.openai.azure.com/openai/v1", "", "gpt-4o", Chat,
			"https://res.openai.azure.com/openai/v1/chat/completions"},
		{"https://res.openai.azure.com/openai", "", "my deployment", Chat,
			"https://res.openai.azure.com/openai/deployments/my%20deployment/chat/completions?api-version=" + DefaultAzureAPIVersion},
	}
	for _, tt := range tests {
		req, err := azure{}.NewRequest(context.Background(), Target{Spec: spec, BaseURL: tt.base, APIVersion: tt.version, Model: tt.model, Key: "secret"}, tt.ep, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.base, err)
		}
		if got := req.URL.String(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
		if req.Header.Get("api-key") != "secret" || req.Header.Get("Authorization") != "" {
			t.Errorf("azure auth headers: %v", req.Header)
		}
	}
}

func TestLookup(t *testing.T) {
	if s, ok := Lookup("DeepSeek"); !ok || s.API != APIOpenAI || s.BaseURL == "" || s.Type != "deepseek" {
		t.Fatalf("deepseek: %+v %v", s, ok)
	}
	for typ, api := range map[string]API{"qianfan": APIQianfan, "hunyuan": APIHunyuan, "huoshan": APIArk, "doubao": APIArk} {
		s, _ := Lookup(typ)
		if s.API != APIOpenAI || s.ForCredential(false).API != APIOpenAI || s.ForCredential(true).API != api || s.ForCredential(true).Type != typ {
			t.Errorf("%s: an API key must use the compatible API and a key pair %s: %+v", typ, api, s)
		}
	}
	if _, ok := Lookup("nope"); ok {
		t.Fatal("unknown type found")
	}
	for _, typ := range Types() {
		s, _ := Lookup(typ)
		if _, err := For(s.API); err != nil {
			t.Errorf("type %s has no adapter: %v", typ, err)
		}
	}
}
