package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// composeCommand finds Docker Compose: the v2 plugin or the v1 binary.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	msg := "Docker Compose is not installed (neither `docker compose` nor `docker-compose`)"
	if os.Getenv("SLUICE_REQUIRE_DOCKER") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return nil
}

// TestCompose starts deploy/compose.yaml as a user would (with the
// locally built images), sends calls through its three instances, and
// finds their traces in its Jaeger.
func TestCompose(t *testing.T) {
	img := images(t)
	compose := composeCommand(t)
	ports := freePorts(t, 4)
	project := fmt.Sprintf("sluice-it-%d", time.Now().UnixNano()%1_000_000)
	env := append(os.Environ(),
		"SLUICE_IMAGE="+img.sluice, "MOCKLLM_IMAGE="+img.mockllm, "REDIS_IMAGE="+img.redis, "JAEGER_IMAGE="+img.jaeger,
		fmt.Sprintf("SLUICE_PORT_1=%d", ports[0]), fmt.Sprintf("SLUICE_PORT_2=%d", ports[1]),
		fmt.Sprintf("SLUICE_PORT_3=%d", ports[2]), fmt.Sprintf("JAEGER_UI_PORT=%d", ports[3]),
	)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(compose[0], append(append(compose[1:], "-f", "../deploy/compose.yaml", "-p", project), args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v %v: %v\n%s", compose, args, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			cmd := exec.Command(compose[0], append(compose[1:], "-f", "../deploy/compose.yaml", "-p", project, "logs", "--tail", "50")...)
			cmd.Env = env
			out, _ := cmd.CombinedOutput()
			t.Logf("compose logs:\n%s", out)
		}
		cmd := exec.Command(compose[0], append(compose[1:], "-f", "../deploy/compose.yaml", "-p", project, "down", "-v", "--remove-orphans")...)
		cmd.Env = env
		_ = cmd.Run()
	})
	run("up", "-d")

	for _, p := range ports[:3] {
		waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", p), time.Minute)
	}
	for i, p := range ports[:3] {
		resp, body, err := postKey(fmt.Sprintf("http://127.0.0.1:%d", p), "gpt-4o-mini", "sk-demo")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("instance %d: %v %s", i+1, err, body)
		}
	}
	// The three instances share one quota: sluice quota would show it; here
	// the metrics of each count their own calls, and Jaeger has them all.
	deadline := time.Now().Add(45 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/services", ports[3]))
		if err == nil {
			var out struct{ Data []string }
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = json.Unmarshal(b, &out)
			if strings.Contains(strings.Join(out.Data, ","), "sluice") && strings.Contains(strings.Join(out.Data, ","), "mockllm") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the compose Jaeger never saw sluice and mockllm spans")
		}
		time.Sleep(time.Second)
	}
	if m := scrape(t, fmt.Sprintf("http://127.0.0.1:%d", ports[0])); !strings.Contains(m, "sluice_requests_total") {
		t.Fatal("no metrics on /metrics")
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var lns []net.Listener
	for range n {
		ln := listen(t)
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func waitHTTP(t *testing.T, url string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s never answered 200", url)
}

func postKey(base, model, key string) (*http.Response, []byte, error) {
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b, nil
}
