package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/gateway/config"
)

// Row 10 of issue 9: the CLI never prints a secret. import keeps ${VAR}
// references as written, even when the file has a number given by
// reference; check does not print a URL's password or query values.
func TestCLIPrintsNoSecret(t *testing.T) {
	const secret = "sk-import-secret-0123456789"
	t.Setenv("ROW10_KEY", secret)
	t.Setenv("ROW10_QPS", "5")
	t.Setenv("ROW10_BASE", "https://api.example.com/v1")
	dir := t.TempDir()
	for name, file := range map[string]string{
		"native.yaml": `
channels:
  - {type: openai, base_url: "${ROW10_BASE}", models: [m], credentials: [{key: "${ROW10_KEY}", limits: {qps: "${ROW10_QPS}"}}]}`,
		"simple-one-api.json": `{"services": {"openai": [{"models": ["m"], "enabled": true, "limit": {"qps": "${ROW10_QPS}"},
  "credentials": {"api_key": "${ROW10_KEY}"}, "server_url": "${ROW10_BASE}/chat/completions"}]}}`,
	} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(file), 0o600)
		var out, errOut bytes.Buffer
		if code := run([]string{"import", path}, &out, &errOut); code != 0 {
			t.Fatalf("import %s: exit %d: %s", name, code, errOut.String())
		}
		if strings.Contains(out.String()+errOut.String(), secret) {
			t.Fatalf("import %s printed the secret:\n%s%s", name, out.String(), errOut.String())
		}
		if !strings.Contains(out.String(), "${ROW10_KEY}") {
			t.Fatalf("import %s must keep the reference:\n%s", name, out.String())
		}
		// What it printed loads, with the same secret.
		cfg, _, err := config.Parse(out.Bytes())
		if err != nil {
			t.Fatalf("import %s printed a config that does not load: %v\n%s", name, err, out.String())
		}
		cfg.Provision()
		ch := cfg.Channels[0]
		if err := cfg.Validate(); err != nil || ch.Credentials[0].Key != secret || max(ch.Limits.QPS, ch.SharedLimits.QPS, ch.Credentials[0].Limits.QPS) != 5 {
			t.Fatalf("import %s: %v %+v", name, err, cfg.Channels[0].Credentials)
		}
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`channels: [{type: openai, base_url: "ftp://admin:hunter2-secret@host/v1?token=tok-secret-99", models: [m]}]`), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--config", bad}, &out, &errOut); code != 1 {
		t.Fatalf("check: exit %d", code)
	}
	if s := out.String() + errOut.String(); strings.Contains(s, "hunter2-secret") || strings.Contains(s, "tok-secret-99") ||
		!strings.Contains(s, "channels[0].base_url") {
		t.Fatalf("check output:\n%s", s)
	}
}

// Row 11 of issue 9: with telemetry.metrics.listen, metrics are served
// there and not to API clients.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startServe(t, ctx, `
server: {listen: "127.0.0.1:0"}
telemetry: {metrics: {listen: "`+metricsAddr+`"}}
clients: [{name: team-secret-name, key: sk-client-row11}]
channels: [{type: mock, models: [m]}]
`)
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-client-row11")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("call: %v", err)
	}
	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(base + "/metrics"); code != 404 {
		t.Fatalf("metrics on the API listener: %d", code)
	}
	code, body := get("http://" + metricsAddr + "/metrics")
	if code != 200 || !strings.Contains(body, "sluice_requests_total") {
		t.Fatalf("metrics listener: %d %.200s", code, body)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no shutdown")
	}
}

// TestPprofOnItsOwnListener: server.pprof_listen serves the profiles
// there, never on the API listener, and a CPU profile of a call can be
// taken.
func TestPprofOnItsOwnListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pprofAddr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startServe(t, ctx, `
server: {listen: "127.0.0.1:0", pprof_listen: "`+pprofAddr+`"}
channels: [{type: mock, models: [m]}]
`)
	get := func(u string) (int, []byte) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, _ := get(base + "/debug/pprof/"); code == 200 {
		t.Fatal("profiles on the API listener")
	}
	if code, body := get("http://" + pprofAddr + "/debug/pprof/mutex?debug=1"); code != 200 || !bytes.Contains(body, []byte("sampling period=100")) {
		t.Fatalf("mutex profile: %d %.200s", code, body)
	}
	if code, body := get("http://" + pprofAddr + "/debug/pprof/profile?seconds=1"); code != 200 || len(body) < 100 {
		t.Fatalf("CPU profile: %d, %d bytes", code, len(body))
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no shutdown")
	}
}
