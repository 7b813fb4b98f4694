package admin

import (
	"net/http"

	"github.com/sluice-gateway/sluice/gateway/provider"
)

// The schema is what the dashboard's "add channel" form is built from:
// each channel type with its defaults, and the fields of the native
// schema with their help (docs/config.md says the same at length).

// field is one field of the channel form.
type field struct {
	Name     string   `json:"name"` // its path in the native schema
	Label    string   `json:"label"`
	Kind     string   `json:"kind"` // text, secret, number, duration, list, select
	Help     string   `json:"help"`
	Required bool     `json:"required,omitempty"`
	Types    []string `json:"types,omitempty"` // only for these types (all when empty)
}

// channelType is one type of channel, with its defaults.
type channelType struct {
	Type    string `json:"type"`
	API     string `json:"api"`
	BaseURL string `json:"base_url,omitempty"` // the default; "" means required
	Auth    string `json:"auth"`               // the header the key goes in
}

var channelFields = []field{
	{Name: "name", Label: "Name", Kind: "text", Required: true, Help: "Identifies the channel in logs, metrics and the API. Unique."},
	{Name: "type", Label: "Type", Kind: "select", Required: true, Help: "The upstream's API: openai for any OpenAI-compatible service, or a named one."},
	{Name: "base_url", Label: "Base URL", Kind: "text", Help: "The upstream API's base (https://api.example.com/v1) or its full chat/completions URL. Empty: the type's default."},
	{Name: "models", Label: "Models", Kind: "list", Required: true, Help: "The model names clients request, comma-separated."},
	{Name: "api_version", Label: "API version", Kind: "text", Types: []string{"azure", "claude", "gemini"}, Help: "Azure's api-version (2024-10-21), Anthropic's anthropic-version (2023-06-01) or Gemini's API version (v1beta)."},
	{Name: "priority", Label: "Priority", Kind: "number", Help: "Higher tiers are tried first; lower ones only when every credential above is unavailable. Default 0."},
	{Name: "weight", Label: "Weight", Kind: "number", Help: "The channel's share under the weighted strategy. Default 1."},
	{Name: "timeout", Label: "Timeout", Kind: "duration", Help: "Bounds an attempt until the upstream's answer begins (60s)."},
	{Name: "credentials[].id", Label: "Credential ID", Kind: "text", Help: "The credential's stable name in logs, metrics and quota state. Default <channel>#<index>."},
	{Name: "credentials[].key", Label: "Key", Kind: "secret", Help: "The upstream's API key. Stored sealed (AES-GCM); shown as *** once saved."},
	{Name: "credentials[].limits.rpm", Label: "RPM", Kind: "number", Help: "Requests per sliding minute, for the whole cluster."},
	{Name: "credentials[].limits.tpm", Label: "TPM", Kind: "number", Help: "Tokens per sliding minute, reserved before a call and settled with its real usage."},
	{Name: "credentials[].limits.qps", Label: "QPS", Kind: "number", Help: "Sustained requests per second (a token bucket)."},
	{Name: "credentials[].limits.concurrency", Label: "Concurrency", Kind: "number", Help: "Requests in flight at once, streams to their end."},
}

func (c *Control) schema(w http.ResponseWriter, _ *http.Request, _ string) error {
	var types []channelType
	for _, name := range provider.Types() {
		spec, _ := provider.Lookup(name)
		auth := spec.AuthHeader
		if auth == "" {
			auth = "Authorization: Bearer"
		}
		types = append(types, channelType{Type: name, API: string(spec.API), BaseURL: spec.BaseURL, Auth: auth})
	}
	writeJSON(w, http.StatusOK, map[string]any{"types": types, "fields": channelFields})
	return nil
}
