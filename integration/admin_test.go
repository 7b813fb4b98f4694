package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/integration/redistest"
)

const (
	itAdminToken = "it-admin-token-0123456789"
	itSecretKey  = "it-sealing-key-0123456789abcdef"
	itUpKey      = "sk-it-upstream-key-secret-42"
)

// adminConfig is the file of the control plane tests: a channel of two
// credentials and a client key.
func adminConfig(redisAddr, upstream, extra string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
redis: {url: "redis://%s", timeout: 200ms}
admin: {token: %s}
clients: [{name: team, key: sk-it-team}]
channels:
  - {name: pair, type: openai, base_url: "%s/v1", models: [m], credentials: [{id: c1, key: %s}, {id: c2, key: %s}]}
%s`, redisAddr, itAdminToken, upstream, itUpKey, itUpKey, extra)
}

// adminCall calls an admin route and returns the status and the body.
func adminCall(t *testing.T, p *process, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, p.url()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+itAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(b), itUpKey) || strings.Contains(string(b), itAdminToken) {
		t.Fatalf("%s %s answered a secret", method, path)
	}
	return resp.StatusCode, string(b)
}

// chatCall sends one chat call and returns the status and the credential.
func chatCall(t *testing.T, p *process, key, model string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", p.url()+"/v1/chat/completions", strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Sluice-Credential")
}

// within polls cond until it holds, and returns how long that took.
func within(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestControlPlaneAcrossInstances runs three instances on one Redis and
// steers them through one instance's admin API.
func TestControlPlaneAcrossInstances(t *testing.T) {
	redis := redistest.Start(t)
	up := start(t, "mockllm", "-addr", "127.0.0.1:0")
	t.Setenv("SLUICE_SECRET_KEY", itSecretKey)
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	os.WriteFile(path, []byte(adminConfig(redis.Addr, up.url(), "")), 0o600)
	insts := []*process{}
	for range 3 {
		insts = append(insts, start(t, "sluice", "serve", "--config", path))
	}
	a, b, c := insts[0], insts[1], insts[2]

	t.Run("every route refuses without the admin token", func(t *testing.T) {
		for _, auth := range []string{"", "Bearer sk-it-team"} {
			req, _ := http.NewRequest("GET", b.url()+"/api/channels", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Fatalf("with %q: %d", auth, resp.StatusCode)
			}
		}
	})

	t.Run("a credential disabled on one instance stops on the others within 1s", func(t *testing.T) {
		if code, body := adminCall(t, a, "PATCH", "/api/credentials/c1", `{"enabled":false}`); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		took := within(t, time.Second, "instance b stops routing to c1", func() bool {
			for range 10 {
				if _, cred := chatCall(t, b, "sk-it-team", "m"); cred == "c1" {
					return false
				}
			}
			return true
		})
		t.Logf("c1 disabled on a, not routed to by b after %v", took)
		adminCall(t, a, "PATCH", "/api/credentials/c1", `{"enabled":true}`)
	})

	t.Run("a client key revoked on one instance is refused by the others within 1s", func(t *testing.T) {
		code, body := adminCall(t, a, "POST", "/api/clients", `{"name":"temp","models":["m"]}`)
		var made struct{ Key string }
		json.Unmarshal([]byte(body), &made)
		if code != 201 || made.Key == "" {
			t.Fatalf("%d %s", code, body)
		}
		within(t, time.Second, "the new key works on c", func() bool { s, _ := chatCall(t, c, made.Key, "m"); return s == 200 })
		adminCall(t, a, "PATCH", "/api/clients/temp", `{"enabled":false}`)
		took := within(t, time.Second, "the revoked key is refused by b", func() bool { s, _ := chatCall(t, b, made.Key, "m"); return s == 401 })
		t.Logf("revoked on a, refused by b after %v", took)
	})

	t.Run("a channel added through the API is routed through by every instance", func(t *testing.T) {
		code, body := adminCall(t, a, "POST", "/api/channels", fmt.Sprintf(`{"name":"added","type":"openai","base_url":"%s/v1","models":["added-model"],"credentials":[{"id":"n1","key":"%s"}]}`, up.url(), itUpKey))
		if code != 201 {
			t.Fatalf("%d %s", code, body)
		}
		for _, p := range insts {
			within(t, time.Second, "routed through the added channel", func() bool { s, cred := chatCall(t, p, "sk-it-team", "added-model"); return s == 200 && cred == "n1" })
		}
		// Its key is sealed in Redis.
		raw, _ := redis.Client(t).Get(t.Context(), "sluice:{adm}:overlay").Result()
		if strings.Contains(raw, itUpKey) || !strings.Contains(raw, "enc:v1:") {
			t.Fatal("the added channel's key is not sealed in Redis")
		}
	})

	t.Run("a reload under load drops no request", func(t *testing.T) {
		var failed, done atomic.Int64
		stopLoad := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				p := insts[i%3]
				for {
					select {
					case <-stopLoad:
						return
					default:
					}
					if s, _ := chatCall(t, p, "sk-it-team", "m"); s != 200 {
						failed.Add(1)
					}
					done.Add(1)
				}
			})
		}
		time.Sleep(300 * time.Millisecond)
		// The file gains a channel and loses none of those under load.
		os.WriteFile(path, []byte(adminConfig(redis.Addr, up.url(),
			fmt.Sprintf(`  - {name: reloaded, type: openai, base_url: "%s/v1", models: [reloaded-model]}`, up.url()))), 0o600)
		if code, body := adminCall(t, b, "POST", "/api/reload", ""); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		for _, p := range insts {
			within(t, time.Second, "the reloaded channel served", func() bool { s, _ := chatCall(t, p, "sk-it-team", "reloaded-model"); return s == 200 })
		}
		// And a second reload removes it again.
		os.WriteFile(path, []byte(adminConfig(redis.Addr, up.url(), "")), 0o600)
		if code, body := adminCall(t, c, "POST", "/api/reload", ""); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		for _, p := range insts {
			within(t, time.Second, "the removed channel gone", func() bool { s, _ := chatCall(t, p, "sk-it-team", "reloaded-model"); return s == 404 })
		}
		time.Sleep(300 * time.Millisecond)
		close(stopLoad)
		wg.Wait()
		t.Logf("%d requests during two reloads, %d failed", done.Load(), failed.Load())
		if failed.Load() != 0 || done.Load() < 50 {
			t.Fatalf("%d of %d requests failed", failed.Load(), done.Load())
		}
	})

	t.Run("an invalid reload is refused with exact paths, traffic flowing", func(t *testing.T) {
		os.WriteFile(path, []byte(adminConfig(redis.Addr, up.url(), `  - {name: bad, type: openai, base_url: "ftp://x", models: [q], credentials: [{limits: {qps: -1}}]}`)), 0o600)
		code, body := adminCall(t, a, "POST", "/api/reload", "")
		if code != 400 || !strings.Contains(body, "channels[1].base_url") || !strings.Contains(body, "channels[1].credentials[0].limits.qps: must be > 0") {
			t.Fatalf("%d %s", code, body)
		}
		if s, _ := chatCall(t, a, "sk-it-team", "m"); s != 200 {
			t.Fatalf("traffic after a refused reload: %d", s)
		}
		// SIGHUP with the same file is refused alike.
		a.cmd.Process.Signal(syscall.SIGHUP)
		within(t, 5*time.Second, "the SIGHUP refusal logged", func() bool { return strings.Contains(a.log(), "SIGHUP: the config file is invalid") })
		os.WriteFile(path, []byte(adminConfig(redis.Addr, up.url(), "")), 0o600)
	})

	t.Run("instances list their config versions", func(t *testing.T) {
		within(t, 10*time.Second, "three instances on one config version", func() bool {
			_, body := adminCall(t, a, "GET", "/api/instances", "")
			var out struct {
				Instances []struct {
					ConfigVersion string `json:"config_version"`
				}
				ConfigVersion string `json:"config_version"`
			}
			json.Unmarshal([]byte(body), &out)
			if len(out.Instances) != 3 {
				return false
			}
			for _, in := range out.Instances {
				if in.ConfigVersion != out.ConfigVersion {
					return false
				}
			}
			return true
		})
	})

	t.Run("a restart of every instance keeps what the API changed", func(t *testing.T) {
		for _, p := range insts {
			p.cmd.Process.Signal(syscall.SIGTERM)
			<-p.done
		}
		restarted := []*process{}
		for range 3 {
			restarted = append(restarted, start(t, "sluice", "serve", "--config", path))
		}
		for _, p := range restarted {
			if s, cred := chatCall(t, p, "sk-it-team", "added-model"); s != 200 || cred != "n1" {
				t.Fatalf("the API's channel after a restart: %d %q", s, cred)
			}
		}
		if _, body := adminCall(t, restarted[0], "GET", "/api/config", ""); !strings.Contains(body, "added") {
			t.Fatalf("config after a restart: %s", body)
		}
	})

	for _, p := range insts {
		if strings.Contains(p.log(), itUpKey) || strings.Contains(p.log(), itAdminToken) {
			t.Fatal("a secret in the logs")
		}
	}
}
