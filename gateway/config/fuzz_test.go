package config

import (
	"os"
	"path/filepath"
	"testing"
)

// nativeSeed is a small native config for the fuzz corpus.
const nativeSeed = `
server: {listen: ":8080", trusted_proxies: [10.0.0.0/8]}
clients: [{key: k1, models: [gpt-4o], limits: {rpm: 60}}]
routing: {strategy: weighted, affinity: {by: header}}
model_redirect: {gpt-4: gpt-4o}
channels:
  - type: openai
    models: [gpt-4o]
    params: {defaults: {temperature: 0.2}}
    credentials: [{key: sk-1, limits: {qps: 2, wait_timeout: 1s}}]
  - type: mock
    models: [gpt-4o]
    mock: {latency: 10ms}
`

// FuzzParse feeds arbitrary bytes to Parse and, when they parse, runs the
// rest of loading and Marshal: none of it may panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(nativeSeed))
	files, err := filepath.Glob(filepath.Join("testdata", "peers", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := Parse(data)
		if err != nil {
			return
		}
		cfg.Provision()
		_ = cfg.Validate()
		if _, err := Marshal(cfg); err != nil {
			t.Errorf("Marshal after a successful Parse: %v", err)
		}
	})
}
