package gateway

import (
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// The sample configs simple-one-api v0.10.4 ships in its samples/
// folder, copied as they are (placeholder keys "xxx") into
// testdata/peers/simple-one-api-samples.
const samplesDir = "testdata/peers/simple-one-api-samples"

// sampleAccount is what the samples' placeholders are, to the mock: the
// API keys, every cloud key pair and the Spark credentials.
const sampleSecret = "xxx"

// TestSimpleOneAPISamples loads every sample as `sluice check` does, then
// points each channel at the mock, which checks each call's key,
// signature or token as its provider does, and sends a chat and a stream
// to every model the sample serves.
func TestSimpleOneAPISamples(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(samplesDir, "*.json"))
	if len(files) != 16 {
		t.Fatalf("%d samples, want simple-one-api's 16", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if strings.HasSuffix(file, "config_web.json") {
				// No services: channels come through the admin API.
				t.Setenv("SLUICE_ADMIN_TOKEN", "sample-admin-token")
			}
			cfg, format, err := config.Load(file)
			if err != nil {
				t.Fatalf("sluice check: %v", err)
			}
			if format != config.FormatSimpleOneAPI {
				t.Fatalf("detected %s", format)
			}
			var keys []string // ollama's sample has none: its server asks for none
			for _, ch := range cfg.Channels {
				for _, cr := range ch.Credentials {
					if cr.Key != "" {
						keys = []string{sampleSecret}
					}
				}
			}
			srv := mock.New(mock.Config{
				Keys:     keys,
				Accounts: []mock.Account{{ID: sampleSecret, Secret: sampleSecret}},
				Spark:    []mock.SparkKey{{AppID: sampleSecret, APIKey: sampleSecret, APISecret: sampleSecret}},
			})
			up := httptest.NewServer(srv)
			defer up.Close()
			pointAtMock(t, cfg, up.URL)
			g, err := New(cfg, Deps{Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			gw := httptest.NewServer(g)
			defer gw.Close()
			for _, ch := range cfg.Channels {
				for _, model := range ch.Models {
					sampleCalls(t, gw, ch, model)
				}
			}
			// Qianfan's OAuth token and Ark's issued API key are fetched
			// once, for every call of the sample.
			wantTokens := map[string]int64{"config.json": 1, "config_qianfan.json": 1, "config_huoshan.json": 1}[filepath.Base(file)]
			if n := srv.Stats().TokensIssued; n != wantTokens {
				t.Errorf("the mock issued %d tokens, want %d", n, wantTokens)
			}
			if n := srv.Stats().TokensRefused; n != 0 {
				t.Errorf("the mock refused %d tokens", n)
			}
			if len(cfg.Channels) == 0 || keys == nil {
				return
			}
			// The same calls with other secrets upstream: the mock must
			// refuse them (a test of its checks as much as of ours).
			srv.SetConfig(mock.Config{
				Keys:     []string{"other"},
				Accounts: []mock.Account{{ID: sampleSecret, Secret: "other"}},
				Spark:    []mock.SparkKey{{AppID: sampleSecret, APIKey: sampleSecret, APISecret: "other"}},
			})
			srv.RevokeTokens()
			ch := cfg.Channels[0]
			if resp, body := chat(t, gw, ch.Models[0]); resp.StatusCode == 200 {
				t.Fatalf("%s: served with wrong upstream secrets: %s", ch.Name, body)
			}
		})
	}
}

// sampleCalls sends a chat and a stream for one model and checks both
// answers.
func sampleCalls(t *testing.T, gw *httptest.Server, ch config.Channel, model string) {
	t.Helper()
	resp, body := chat(t, gw, model)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: chat %d: %s", ch.Name, model, resp.StatusCode, body)
	}
	if !strings.Contains(string(body), `"content":"`) || strings.Contains(string(body), `"content":""`) {
		t.Fatalf("%s %s: chat answer without text: %s", ch.Name, model, body)
	}
	sresp := call(t, gw, "/v1/chat/completions",
		`{"model":"`+model+`","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}`)
	defer sresp.Body.Close()
	sb, _ := io.ReadAll(sresp.Body)
	events := string(sb)
	if sresp.StatusCode != 200 || !strings.Contains(events, `"delta":{"content":"`) || !strings.HasSuffix(strings.TrimSpace(events), "data: [DONE]") ||
		!strings.Contains(events, `"completion_tokens":`) {
		t.Fatalf("%s %s: stream %d: %s", ch.Name, model, sresp.StatusCode, events)
	}
}

// pointAtMock moves every upstream of cfg to the mock at base, keeping
// each URL's path: the hosts of Baidu, Tencent, Volcengine, iFlytek and
// the rest are all the mock.
func pointAtMock(t *testing.T, cfg *config.Config, base string) {
	t.Helper()
	mu, _ := url.Parse(base)
	move := func(raw string) string {
		if raw == "" {
			return ""
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("url %q: %v", raw, err)
		}
		u.Host = mu.Host
		switch u.Scheme {
		case "ws", "wss":
			u.Scheme = "ws"
		default:
			u.Scheme = "http"
		}
		return u.String()
	}
	for i := range cfg.Channels {
		ch := &cfg.Channels[i]
		ch.BaseURL = move(ch.BaseURL)
		if spec, _ := provider.Lookup(ch.Type); spec.Signed != nil && spec.Signed.TokenURL != "" && spec.Signed.API != provider.APIQianfan {
			ch.TokenURL = move(spec.Signed.TokenURL) // Volcengine's control plane
		}
		for j := range ch.Credentials {
			ch.Credentials[j].BaseURL = move(ch.Credentials[j].BaseURL)
		}
	}
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		b, _ := config.Marshal(cfg)
		t.Logf("config pointed at the mock:\n%s", b)
	}
}
