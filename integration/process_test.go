// Package integration drives Sluice from the outside, over HTTP only:
// the real binaries as processes here, and (with Docker) a multi-instance
// cluster on containers.
package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// binaries are built once per test run.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binary returns the path of a binary built from this tree, or from the
// directory SLUICE_BIN_DIR names (to measure an earlier build the same way).
func binary(t *testing.T, name string) string {
	t.Helper()
	if dir := os.Getenv("SLUICE_BIN_DIR"); dir != "" {
		return filepath.Join(dir, name)
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sluice-bin-")
		if buildErr != nil {
			return
		}
		for _, cmd := range []string{"sluice", "mockllm"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, cmd), "../cmd/"+cmd).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

func TestMain(m *testing.M) {
	// The testcontainers reaper's image cannot be pulled where this suite
	// runs; the tests terminate their own containers.
	setDefault("TESTCONTAINERS_RYUK_DISABLED", "true")
	// With a local engine, published ports are on this machine's loopback
	// (testcontainers would otherwise guess the default gateway's address
	// when it believes it runs inside a container).
	if h := os.Getenv("DOCKER_HOST"); h == "" || strings.HasPrefix(h, "unix://") {
		setDefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func setDefault(key, value string) {
	if os.Getenv(key) == "" {
		os.Setenv(key, value)
	}
}

// process is a running binary whose log announces its address.
type process struct {
	cmd  *exec.Cmd
	addr string
	logs *strings.Builder
	mu   *sync.Mutex
	done chan error
}

var addrRE = regexp.MustCompile(`"?addr"?[=:]"?([0-9a-f.:\[\]]+:[0-9]+)`)

// start runs a binary and waits for the log line with "listening" and its
// address.
func start(t *testing.T, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(binary(t, name), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, logs: &strings.Builder{}, mu: &sync.Mutex{}, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		// Lines are read whatever their length: a process that cannot
		// write its log blocks.
		br := bufio.NewReader(stderr)
		for {
			line, err := br.ReadString('\n')
			if err != nil && line == "" {
				break
			}
			line = strings.TrimSuffix(line, "\n")
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := addrRE.FindStringSubmatch(line); m != nil && strings.Contains(line, "listening") {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, p.log())
		}
	})
	select {
	case p.addr = <-addr:
		return p
	case err := <-p.done:
		t.Fatalf("%s exited before listening: %v\n%s", name, err, p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start:\n%s", name, p.log())
	}
	return nil
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *process) url() string { return "http://" + p.addr }

// TestBinaries runs mockllm and sluice as processes and talks to Sluice
// with the official SDK, then stops Sluice with SIGTERM mid-stream.
func TestBinaries(t *testing.T) {
	up := start(t, "mockllm", "-addr", "127.0.0.1:0", "-keys", "sk-upstream", "-stream-chunks", "20", "-chunk-interval", "50ms", "-reply-tokens", "40")
	cfgPath := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
server: {listen: "127.0.0.1:0", drain_timeout: 20s}
clients: [{name: it, key: sk-client}]
channels:
  - name: mock
    type: openai
    base_url: %s/v1
    models: [gpt-4o-mini]
    credentials: [{key: "${SLUICE_IT_UPSTREAM_KEY}"}]
`, up.url())), 0o600)
	t.Setenv("SLUICE_IT_UPSTREAM_KEY", "sk-upstream") // the secret comes from the environment
	sluice := start(t, "sluice", "serve", "--config", cfgPath)

	client := openai.NewClient(option.WithBaseURL(sluice.url()+"/v1/"), option.WithAPIKey("sk-client"), option.WithMaxRetries(0))
	ctx := context.Background()
	res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Choices[0].Message.Content == "" {
		t.Fatal("empty answer")
	}

	// A stream in flight when SIGTERM arrives finishes; then the process exits 0.
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream")},
	})
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	if err := sluice.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	chunks := 1
	for stream.Next() {
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream cut by shutdown after %d chunks: %v", chunks, err)
	}
	if chunks < 22 { // role chunk, 20 content chunks, finish chunk
		t.Fatalf("only %d chunks", chunks)
	}
	select {
	case err := <-sluice.done:
		if err != nil {
			t.Fatalf("sluice exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sluice did not exit after SIGTERM")
	}
	if _, err := http.Get(sluice.url() + "/healthz"); err == nil {
		t.Fatal("still listening after exit")
	}
	if strings.Contains(sluice.log(), "sk-upstream") || strings.Contains(sluice.log(), "sk-client") {
		t.Fatal("a secret appeared in the logs")
	}
}

// listen opens a loopback listener for a test server.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
