package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkCloudRelay measures a chat call through each native cloud
// channel against the same call through an OpenAI-compatible channel to
// the same mock, in the same run: what each adapter's translation,
// signing or cached token adds. (The mock verifies every signature and
// token, so its own cost is in the figures too.) Read the ratios, not the
// times: the machine is noisy.
func BenchmarkCloudRelay(b *testing.B) {
	up, _, sa := cloudUpstream(b)
	cfg := loadConfig(b, cloudChannels+`
  - {name: plain, type: openai, base_url: U/v1, models: [plain-gpt], credentials: [{id: plain-1, key: sk-dashscope}]}
`, "U", up.URL, "SERVICE_ACCOUNT", sa)
	g, err := New(cfg, Deps{Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	gw := httptest.NewServer(g)
	defer gw.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, model := range []string{"plain-gpt", "ERNIE-Speed-8K", "hunyuan-lite", "doubao-pro", "gemini-2.0-flash", "dify-app", "qwen-plus"} {
		b.Run(model, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("POST", gw.URL+"/v1/chat/completions", strings.NewReader(chatBody(model)))
					req.Header.Set("Authorization", "Bearer sk-app")
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatalf("%s: status %d", model, resp.StatusCode)
					}
				}
			})
		})
	}
}
