package gateway

import (
	"net/http/httptest"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// TestPeerConfigsEndToEnd loads each peer gateway's config file as its
// users have it and routes real requests through it.
func TestPeerConfigsEndToEnd(t *testing.T) {
	tests := []struct {
		file        string
		format      config.Format
		auth        []string
		model       string
		wantModel   string   // the model the upstream must receive
		wantKeys    []string // upstream keys that may serve it
		wantDefault string   // a channel parameter default that must reach the upstream
		allKeys     bool     // every key of wantKeys takes its turn
	}{
		{"simple-one-api.json", config.FormatSimpleOneAPI, []string{"Authorization", "Bearer sk-soa-client"},
			"gpt-4", "deepseek-chat", []string{"sk-deepseek-1", "sk-deepseek-2"}, "", false},
		{"aiload.json", config.FormatAILoad, []string{"Authorization", "Bearer sk-aiload-client"},
			"auto", "", []string{"sk-up-1", "sk-up-2"}, "", false},
		{"channels.yaml", config.FormatChannels, nil,
			"gpt-4o", "gpt-4o", []string{"sk-primary"}, "max_tokens", false},
		// Its first channel's two apiKeys take turns by its strategy
		// (round-robin), with advanced.llm's temperature as a default.
		{"chatai-plugin.yaml", config.FormatChannels, nil,
			"gpt-4o", "gpt-4o", []string{"sk-test-1", "sk-test-2"}, "temperature", true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			up := mockUpstream(t, mock.Config{Keys: []string{"sk-deepseek-1", "sk-deepseek-2", "sk-up-1", "sk-up-2", "sk-primary", "sk-backup", "sk-test-1", "sk-test-2"}})
			t.Setenv("SLUICE_E2E_UPSTREAM", up.URL)
			cfg, format, err := config.Load("testdata/peers/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if format != tt.format {
				t.Fatalf("detected %s, want %s", format, tt.format)
			}
			g, err := New(cfg, Deps{Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(g)
			defer srv.Close()

			if tt.auth != nil {
				if resp, _ := chat(t, srv, tt.model); resp.StatusCode != 401 {
					t.Fatalf("without the peer's client key: %d, want 401", resp.StatusCode)
				}
			}
			keys := map[string]bool{}
			for range 6 {
				resp, body := chat(t, srv, tt.model, tt.auth...)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				h, sent := up.lastRequest()
				if tt.wantModel != "" && sent["model"] != tt.wantModel {
					t.Fatalf("upstream model %v, want %s", sent["model"], tt.wantModel)
				}
				if tt.wantDefault != "" && sent[tt.wantDefault] == nil {
					t.Fatalf("channel default %s not applied: %v", tt.wantDefault, sent)
				}
				keys[h.Get("Authorization")[len("Bearer "):]] = true
			}
			if tt.allKeys && len(keys) != len(tt.wantKeys) {
				t.Fatalf("served with keys %v, want each of %v in turn", keys, tt.wantKeys)
			}
			for k := range keys {
				found := false
				for _, w := range tt.wantKeys {
					found = found || k == w
				}
				if !found {
					t.Fatalf("served with key %q, want one of %v", k, tt.wantKeys)
				}
			}
		})
	}
}
