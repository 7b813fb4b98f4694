package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// dockerCluster is three Sluice containers sharing Redis, two mock
// upstreams and Jaeger, on private networks:
//
//	front  every Sluice container (its published port lives here)
//	data   Sluice and Redis (cutting a container off it partitions it from Redis)
//	up     Sluice, the mock upstreams and Jaeger
type dockerCluster struct {
	t               *testing.T
	img             imageSet
	front, data, up string // network names
	redis, jaeger   testcontainers.Container
	mock1, mock2    testcontainers.Container
	sluice          []testcontainers.Container
	mu              sync.Mutex
	urls            map[testcontainers.Container]string // published endpoints, per start
}

// dockerSluiceConfig is the config of the Sluice containers.
const dockerSluiceConfig = `
server: {listen: ":8080", shutdown_delay: 1s, drain_timeout: 20s}
# The timeout bounds every Redis call, dialing (and its DNS lookup through
# Docker) included. Exact limits need every call to finish within it, and
# a starved machine stalls round trips and lookups past 200ms: 1s keeps
# the fallback policy for real outages, and a request waiting on a dead
# Redis still answers well within case 5's 2s.
redis: {url: "redis://redis:6379", timeout: 1s, lease_ttl: 3s, on_unavailable: local}
telemetry: {traces: {endpoint: "jaeger:4317", insecure: true}}
breaker: {failures: 3, open_timeout: 2s, active_probes: false}
admin: {token: ` + itAdminToken + `}
clients:
  - {name: open, key: sk-open}
  - {name: limited, key: sk-limited, limits: {rpm: 100}}
routing:
  strategy: random
  affinity: {by: header, header: X-Session-ID}
channels:
  - {name: qps, type: openai, base_url: "http://mock1:9000/v1", models: [qps-model], credentials: [{id: qps-cred, limits: {qps: 20, burst: 20}}]}
  - {name: rpm, type: openai, base_url: "http://mock1:9000/v1", models: [rpm-model], credentials: [{id: rpm-cred, limits: {rpm: 100}}]}
  - name: pool
    type: openai
    base_url: "http://mock1:9000/v1"
    models: [free-model]
    credentials: [{id: p0}, {id: p1}, {id: p2}, {id: p3}, {id: p4}, {id: p5}]
  - {name: conc, type: openai, base_url: "http://mock1:9000/v1", models: [conc-model], credentials: [{id: conc-cred, limits: {concurrency: 4}}]}
  - {name: flaky, type: openai, base_url: "http://mock2:9000/v1", models: [flaky-model], credentials: [{id: flaky-cred}]}
  - {name: primary, type: openai, base_url: "http://mock2:9000/v1", models: [failover-model, stream-model], priority: 10, credentials: [{id: primary-cred}]}
  - {name: backup, type: openai, base_url: "http://mock1:9000/v1", models: [failover-model, stream-model], credentials: [{id: backup-cred}]}
`

// otelEnv makes spans reach Jaeger quickly.
var otelEnv = map[string]string{"OTEL_BSP_SCHEDULE_DELAY": "200"}

func startDockerCluster(t *testing.T) *dockerCluster {
	t.Helper()
	dc := &dockerCluster{t: t, img: images(t), urls: map[testcontainers.Container]string{}}
	// Docker publishes a container's ports through the network whose name
	// sorts first, so the names are chosen: front carries the published
	// port, and data can be cut without cutting clients off.
	run := fmt.Sprintf("sluice-it-%d", time.Now().UnixNano()%1_000_000_000)
	for _, n := range []struct {
		dst  *string
		name string
	}{{&dc.front, run + "-1front"}, {&dc.data, run + "-2data"}, {&dc.up, run + "-3up"}} {
		dc.docker("network", "create", n.name)
		*n.dst = n.name
		t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", n.name).Run() })
	}
	var wg sync.WaitGroup
	start := func(dst *testcontainers.Container, req testcontainers.ContainerRequest) {
		wg.Go(func() { *dst = dc.run(req) })
	}
	start(&dc.redis, testcontainers.ContainerRequest{
		Image: dc.img.redis, Networks: []string{dc.data}, NetworkAliases: map[string][]string{dc.data: {"redis"}},
		ExposedPorts: []string{"6379/tcp"}, WaitingFor: wait.ForListeningPort("6379/tcp"),
	})
	start(&dc.jaeger, testcontainers.ContainerRequest{
		Image: dc.img.jaeger, Networks: []string{dc.up}, NetworkAliases: map[string][]string{dc.up: {"jaeger"}},
		Env: map[string]string{"JAEGER_LISTEN_HOST": "0.0.0.0"}, ExposedPorts: []string{"16686/tcp"},
		WaitingFor: wait.ForHTTP("/api/services").WithPort("16686/tcp").WithStartupTimeout(2 * time.Minute),
	})
	for i, dst := range []*testcontainers.Container{&dc.mock1, &dc.mock2} {
		start(dst, testcontainers.ContainerRequest{
			Image: dc.img.mockllm, Cmd: []string{"-addr", "0.0.0.0:9000", "-control"},
			Networks: []string{dc.up}, NetworkAliases: map[string][]string{dc.up: {fmt.Sprint("mock", i+1)}},
			Env:          map[string]string{"OTEL_SERVICE_NAME": "mockllm", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318", "OTEL_BSP_SCHEDULE_DELAY": "200"},
			ExposedPorts: []string{"9000/tcp"}, WaitingFor: wait.ForHTTP("/healthz").WithPort("9000/tcp"),
		})
	}
	wg.Wait()
	dc.sluice = make([]testcontainers.Container, 3)
	for i := range dc.sluice {
		start(&dc.sluice[i], testcontainers.ContainerRequest{
			Image: dc.img.sluice, Cmd: []string{"serve", "--config", "/etc/sluice/config.yaml"},
			Networks: []string{dc.front, dc.data, dc.up},
			Env:      otelEnv,
			Files: []testcontainers.ContainerFile{{
				Reader: strings.NewReader(dockerSluiceConfig), ContainerFilePath: "/etc/sluice/config.yaml", FileMode: 0o644,
			}},
			ExposedPorts: []string{"8080/tcp"},
			WaitingFor:   wait.ForHTTP("/readyz").WithPort("8080/tcp").WithStartupTimeout(time.Minute),
		})
	}
	wg.Wait()
	if t.Failed() {
		return dc
	}
	waitHeartbeats(t, dc.redisClient(), 3) // every instance counts three
	return dc
}

// redisClient connects the test to the cluster's Redis, through its
// published port (read anew: a restart may move it).
func (dc *dockerCluster) redisClient() *redis.Client {
	dc.t.Helper()
	addr, err := dc.redis.PortEndpoint(context.Background(), "6379/tcp", "")
	if err != nil {
		dc.t.Fatalf("redis endpoint: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	dc.t.Cleanup(func() { c.Close() })
	return c
}

// run starts a container, terminated when the test ends.
func (dc *dockerCluster) run(req testcontainers.ContainerRequest) testcontainers.Container {
	ctx := context.Background()
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if err != nil {
		dc.t.Errorf("start %s: %v", req.Image, err)
		return nil
	}
	dc.t.Cleanup(func() {
		if dc.t.Failed() {
			if logs, err := c.Logs(context.Background()); err == nil {
				b, _ := io.ReadAll(logs)
				dc.t.Logf("logs of %s (%s):\n%s", req.Image, c.GetContainerID()[:12], notable(string(b), 4000))
			}
		}
		_ = c.Terminate(context.Background())
	})
	return c
}

// notable is what a failed test shows of a container's log: its
// warnings and errors (outages, breakers, restarts), then its last n bytes.
func notable(log string, n int) string {
	var b strings.Builder
	for line := range strings.Lines(log) {
		// (Without the per-request lines, which would crowd them out.)
		if (strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`)) && !strings.Contains(line, `"msg":"request"`) {
			b.WriteString(line)
		}
	}
	return tail(b.String(), n) + "\n--- last lines:\n" + tail(log, n)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// endpoint is a container's published endpoint for a port, read once per
// start of the container.
func (dc *dockerCluster) endpoint(c testcontainers.Container, port string) string {
	u, err := dc.tryEndpoint(c, port)
	if err != nil {
		dc.t.Fatalf("endpoint: %v", err)
	}
	return u
}

// tryEndpoint is endpoint for goroutines other than the test's, which
// must not fail it: a container being restarted has no published port
// until Docker has started it again.
func (dc *dockerCluster) tryEndpoint(c testcontainers.Container, port string) (string, error) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	key := c
	if u, ok := dc.urls[key]; ok && port == "8080/tcp" {
		return u, nil
	}
	u, err := c.PortEndpoint(context.Background(), port, "http")
	if err != nil {
		return "", err
	}
	if port == "8080/tcp" {
		dc.urls[key] = u
	}
	return u, nil
}

// forget drops a container's cached endpoint (after a restart).
func (dc *dockerCluster) forget(c testcontainers.Container) {
	dc.mu.Lock()
	delete(dc.urls, c)
	dc.mu.Unlock()
}

func (dc *dockerCluster) url(i int) string { return dc.endpoint(dc.sluice[i], "8080/tcp") }

// tryURL is url for goroutines other than the test's.
func (dc *dockerCluster) tryURL(i int) (string, error) {
	return dc.tryEndpoint(dc.sluice[i], "8080/tcp")
}

// mock changes a mock upstream's knobs at run time.
func (dc *dockerCluster) mock(c testcontainers.Container, knobs string) {
	dc.t.Helper()
	req, _ := http.NewRequest(http.MethodPut, dc.endpoint(c, "9000/tcp")+"/_mock/config", strings.NewReader(knobs))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		dc.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		dc.t.Fatalf("mock config %s: %d", knobs, resp.StatusCode)
	}
}

// mockRequests reads how many calls a mock upstream has served.
func (dc *dockerCluster) mockRequests(c testcontainers.Container) int64 {
	dc.t.Helper()
	resp, err := http.Get(dc.endpoint(c, "9000/tcp") + "/_mock/stats")
	if err != nil {
		dc.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct{ Requests int64 }
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st.Requests
}

// docker runs a docker CLI command against a container.
func (dc *dockerCluster) docker(args ...string) {
	dc.t.Helper()
	if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
		dc.t.Fatalf("docker %v: %v: %s", args, err, out)
	}
}

// post sends one chat call to an instance.
func post(base, model string, hdr ...string) (*http.Response, []byte, error) {
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-open")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b, nil
}

// instancesOf wraps the containers' endpoints as processes for the load
// helpers shared with the process suites.
func (dc *dockerCluster) instancesOf(idx ...int) []*process {
	var out []*process
	for _, i := range idx {
		out = append(out, &process{addr: strings.TrimPrefix(dc.url(i), "http://")})
	}
	return out
}

// jaegerTrace reads one trace from Jaeger's query API, waiting for it.
func (dc *dockerCluster) jaegerTrace(traceID string, ready func(jaegerTraceData) bool) jaegerTraceData {
	dc.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	var last jaegerTraceData
	for time.Now().Before(deadline) {
		resp, err := http.Get(dc.endpoint(dc.jaeger, "16686/tcp") + "/api/traces/" + traceID)
		if err == nil {
			var out struct {
				Data []jaegerTraceData `json:"data"`
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if json.Unmarshal(b, &out) == nil && len(out.Data) == 1 {
				last = out.Data[0]
				if ready(last) {
					return last
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	dc.t.Fatalf("trace %s not complete in Jaeger: %+v", traceID, last)
	return last
}

// jaegerTraceData is the part of Jaeger's trace JSON the tests read.
type jaegerTraceData struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

func (d jaegerTraceData) tag(i int, key string) string {
	for _, tg := range d.Spans[i].Tags {
		if tg.Key == key {
			return fmt.Sprint(tg.Value)
		}
	}
	return ""
}

func (d jaegerTraceData) parent(i int) string {
	for _, r := range d.Spans[i].References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (d jaegerTraceData) service(i int) string { return d.Processes[d.Spans[i].ProcessID].ServiceName }

// streamUntilDone reads a stream and returns its data payloads.
func streamLines(r io.Reader) []string {
	var out []string
	b, _ := io.ReadAll(r)
	for _, l := range strings.Split(string(b), "\n") {
		if d, ok := strings.CutPrefix(l, "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}
