package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// BenchmarkRelay measures what Sluice adds to a call: the same request
// sent straight to a mock upstream ("direct", the baseline) and through
// the gateway ("sluice"), both over loopback sockets, in the same run.
// Compare the two ns/op; the ratio is the overhead.
func BenchmarkRelay(b *testing.B) {
	up := httptest.NewServer(mock.New(mock.Config{StreamChunks: 8}))
	defer up.Close()
	cfg := loadConfig(b, `
channels:
  - {type: openai, base_url: U, models: [m], credentials: [{id: a, limits: {qps: 1000000, rpm: 100000000, concurrency: 10000}}, {id: b}]}
`, "U", up.URL)
	g, err := New(cfg, Deps{Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	gw := httptest.NewServer(g)
	defer gw.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	for _, kind := range []struct{ name, body string }{
		{"chat", chatBody("m")},
		{"stream", streamBody},
	} {
		for _, target := range []struct{ name, url string }{
			{"direct", up.URL + "/v1/chat/completions"},
			{"sluice", gw.URL + "/v1/chat/completions"},
		} {
			b.Run(kind.name+"/"+target.name, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						resp, err := client.Post(target.url, "application/json", strings.NewReader(kind.body))
						if err != nil {
							b.Fatal(err)
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							b.Fatalf("status %d", resp.StatusCode)
						}
					}
				})
			})
		}
	}
}
