package gateway

import (
	"fmt"
	"testing"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

const stickyChannels = `
channels:
  - name: pool
    type: openai
    base_url: U
    models: [m, emb]
    credentials: [{id: c0}, {id: c1}, {id: c2}, {id: c3}, {id: c4}, {id: c5}]
`

func TestStickyByHeader(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, "routing: {strategy: random, affinity: {by: header, header: X-Session-ID, ttl: 1m}}\n"+stickyChannels, "U", up.URL)
	seen := map[string]bool{}
	for s := range 8 {
		session := fmt.Sprint("session-", s)
		first := ""
		for i := range 10 {
			resp, body := chat(t, srv, "m", "X-Session-ID", session)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			got := resp.Header.Get("X-Sluice-Credential")
			if i == 0 {
				first = got
				seen[got] = true
			} else if got != first {
				t.Fatalf("%s moved from %s to %s on call %d", session, first, got, i)
			}
		}
	}
	if len(seen) < 2 {
		t.Fatalf("8 sessions all landed on %v: stickiness must not mean one credential", seen)
	}
	// Without the header, requests are not sticky.
	spread := map[string]bool{}
	for range 30 {
		resp, _ := chat(t, srv, "m")
		spread[resp.Header.Get("X-Sluice-Credential")] = true
	}
	if len(spread) < 2 {
		t.Fatal("requests without a session header must spread")
	}
}

func TestStickyByClientIPBehindTrustedProxy(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
server: {trusted_proxies: [127.0.0.1, "::1"]}
routing: {strategy: random, affinity: {by: ip}}
`+stickyChannels, "U", up.URL)
	byIP := map[string]string{}
	for i := range 40 {
		ip := fmt.Sprint("203.0.113.", i%4)
		resp, _ := chat(t, srv, "m", "X-Forwarded-For", "198.51.100.1, "+ip)
		got := resp.Header.Get("X-Sluice-Credential")
		if prev, ok := byIP[ip]; ok && prev != got {
			t.Fatalf("client %s moved from %s to %s", ip, prev, got)
		}
		byIP[ip] = got
	}
}

func TestStickyByClientKeySeparatesModels(t *testing.T) {
	up := mockUpstream(t, mock.Config{})
	_, srv := startGateway(t, `
clients: [{name: one, key: sk-one}]
routing: {strategy: random, affinity: {by: client}}
`+stickyChannels, "U", up.URL)
	first := map[string]string{}
	for range 10 {
		for _, m := range []string{"m", "emb"} {
			path, body := "/v1/chat/completions", chatBody(m)
			if m == "emb" {
				path, body = "/v1/embeddings", `{"model":"emb","input":"x"}`
			}
			resp := call(t, srv, path, body, "Authorization", "Bearer sk-one")
			resp.Body.Close()
			got := resp.Header.Get("X-Sluice-Credential")
			if first[m] == "" {
				first[m] = got
			} else if first[m] != got {
				t.Fatalf("model %s moved from %s to %s", m, first[m], got)
			}
		}
	}
}

func TestStickyCredentialReplacedWhenBroken(t *testing.T) {
	good := mockUpstream(t, mock.Config{})
	bad := statusUpstream(t, 500, nil, `{}`)
	g, srv := startGateway(t, `
routing: {strategy: first, affinity: {by: header}}
breaker: {failures: 1, open_timeout: 1h}
channels:
  - {name: a, type: openai, base_url: GOOD, models: [m], credentials: [{id: a}]}
  - {name: b, type: openai, base_url: GOOD, models: [m], credentials: [{id: b}]}
`, "GOOD", good.URL)
	resp, _ := chat(t, srv, "m", "X-Session-ID", "s")
	if resp.Header.Get("X-Sluice-Credential") != "a" {
		t.Fatalf("first pick %q", resp.Header.Get("X-Sluice-Credential"))
	}
	// Credential a breaks: point it at the failing upstream.
	for _, c := range g.current().creds {
		if c.id == "a" {
			c.baseURL = bad.URL
		}
	}
	resp, _ = chat(t, srv, "m", "X-Session-ID", "s")
	if resp.StatusCode != 200 || resp.Header.Get("X-Sluice-Credential") != "b" {
		t.Fatalf("failover: %d %q", resp.StatusCode, resp.Header.Get("X-Sluice-Credential"))
	}
	// a's breaker is open: the session now sticks to b.
	for range 5 {
		resp, _ = chat(t, srv, "m", "X-Session-ID", "s")
		if got := resp.Header.Get("X-Sluice-Credential"); got != "b" || resp.Header.Get("X-Sluice-Attempts") != "1" {
			t.Fatalf("sticky after replacement: %q attempts %s", got, resp.Header.Get("X-Sluice-Attempts"))
		}
	}
	if bad.hits.Load() != 1 {
		t.Fatalf("the broken credential was tried %d times", bad.hits.Load())
	}
}
