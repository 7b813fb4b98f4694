package main

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
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// environment is what --all starts: a mock upstream, a bare proxy, and
// Sluice in each mode, each Redis-backed one with a Redis of its own (so
// that the commands counted are its own).
type environment struct {
	mock    string // the mock upstream's address
	dir     string
	procs   []*proc
	targets []target
	limited []target // the limit check's instances (not measured in rounds)
}

// proc is a started process whose log announced its address.
type proc struct {
	name     string
	cmd      *exec.Cmd
	addr     string
	exited   chan struct{} // closed when the process has ended
	stopping atomic.Bool   // the bench ends it: its end is expected
}

var addrRE = regexp.MustCompile(`"?addr"?[=:]"?([0-9a-f.:\[\]]+:[0-9]+)`)

// startProc runs a command and waits for its "listening ... addr" line;
// the rest of its output is discarded.
func startProc(ctx context.Context, name string, cmd *exec.Cmd, logDir string) (*proc, error) {
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	var keep io.Writer = io.Discard
	if logDir != "" {
		f, err := os.Create(filepath.Join(logDir, strings.ReplaceAll(name, " ", "-")+".log"))
		if err != nil {
			p.kill()
			return nil, err
		}
		keep = f
		defer func() {
			if p.addr == "" {
				f.Close()
			}
		}()
	}
	found := make(chan string, 1)
	go func() {
		if c, ok := keep.(io.Closer); ok {
			defer c.Close()
		}
		br := bufio.NewReaderSize(stderr, 64<<10)
		for {
			line, err := br.ReadString('\n')
			_, _ = io.WriteString(keep, line)
			if m := addrRE.FindStringSubmatch(line); m != nil && strings.Contains(line, "listening") {
				select {
				case found <- m[1]:
				default:
				}
			}
			if err != nil {
				break
			}
		}
		p.wait() // the output ends when the process does
	}()
	select {
	case p.addr = <-found:
		return p, nil
	case <-time.After(60 * time.Second):
		p.kill()
		return nil, fmt.Errorf("%s did not start", name)
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	}
}

// wait waits for the process's end, and says so if nobody asked it to
// end: every figure after that is void.
func (p *proc) wait() {
	err := p.cmd.Wait()
	if !p.stopping.Load() {
		fmt.Fprintf(os.Stderr, "sluicebench: %s exited during the run: %v\n", p.name, err)
	}
	close(p.exited)
}

func (p *proc) kill() {
	p.stopping.Store(true)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// mockConfig changes the mock upstream's knobs (mockllm -control).
func (e *environment) mockConfig(ctx context.Context, knobs string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+e.mock+"/_mock/config", strings.NewReader(knobs))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("mock config: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("mock config %s: %s %s", knobs, resp.Status, b)
	}
	return nil
}

// stop ends every process started.
func (e *environment) stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].kill()
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

// startAll builds Sluice and mockllm from this checkout (or takes them
// from --bin), starts a mock upstream, Redis, a bare proxy and Sluice in
// each mode, and returns them as targets.
func startAll(ctx context.Context, o options, log io.Writer) (*environment, error) {
	e := &environment{}
	var err error
	if e.dir, err = os.MkdirTemp("", "sluicebench-"); err != nil {
		return nil, err
	}
	bin := o.binDir
	if bin == "" {
		bin = e.dir
		if err := build(ctx, bin, log); err != nil {
			e.stop()
			return nil, err
		}
	}
	raiseFileLimit()
	fail := func(err error) (*environment, error) { e.stop(); return nil, err }

	up, err := startProc(ctx, "mockllm", exec.CommandContext(ctx, filepath.Join(bin, "mockllm"),
		"-addr", o.mockListen, "-control", "-stream-chunks", "8", "-chunk-interval", "1ms", "-reply-tokens", "16"), o.logDir)
	if err != nil {
		return fail(err)
	}
	e.procs = append(e.procs, up)
	e.mock = up.addr
	upURL := "http://" + up.addr

	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	px, err := startProc(ctx, "proxy", exec.CommandContext(ctx, self, "proxy", "-listen", "127.0.0.1:0", "-to", upURL), o.logDir)
	if err != nil {
		return fail(err)
	}
	e.procs = append(e.procs, px)
	e.targets = append(e.targets,
		target{Name: "direct", URL: upURL},
		target{Name: "bare proxy", URL: "http://" + px.addr, pid: px.pid()})

	for _, mode := range []struct{ name, redis string }{
		{"sluice memory", ""},
		{"sluice redis exact", "redis: {url: \"redis://%s\"}\n"},
		{"sluice redis lease", "redis: {url: \"redis://%s\", lease: {enabled: true}}\n"},
	} {
		var redisAddr, redisConfig string
		if mode.redis != "" {
			rp, err := startRedis(ctx)
			if err != nil {
				return fail(fmt.Errorf("redis-server (apt-get install redis-server): %w", err))
			}
			e.procs = append(e.procs, rp)
			redisAddr, redisConfig = rp.addr, fmt.Sprintf(mode.redis, rp.addr)
		}
		var pprofAddr string
		if o.profileDir != "" || o.soak > 0 {
			port, err := freePort()
			if err != nil {
				return fail(err)
			}
			pprofAddr = "127.0.0.1:" + strconv.Itoa(port)
		}
		path := filepath.Join(e.dir, strings.ReplaceAll(mode.name, " ", "-")+".yaml")
		if err := os.WriteFile(path, []byte(sluiceConfig(upURL, redisConfig, pprofAddr)), 0o600); err != nil {
			return fail(err)
		}
		p, err := startProc(ctx, mode.name, exec.CommandContext(ctx, filepath.Join(bin, "sluice"), "serve", "--config", path), o.logDir)
		if err != nil {
			return fail(err)
		}
		e.procs = append(e.procs, p)
		e.targets = append(e.targets, target{Name: mode.name, URL: "http://" + p.addr, pid: p.pid(), redis: redisAddr, pprof: pprofAddr, sluice: true})
	}
	if o.limit > 0 {
		// The limit check's pair: one Redis, one limited credential.
		rp, err := startRedis(ctx)
		if err != nil {
			return fail(err)
		}
		e.procs = append(e.procs, rp)
		path := filepath.Join(e.dir, "limited.yaml")
		if err := os.WriteFile(path, []byte(limitedConfig(upURL, rp.addr, o.limit)), 0o600); err != nil {
			return fail(err)
		}
		for _, name := range []string{"limited a", "limited b"} {
			p, err := startProc(ctx, name, exec.CommandContext(ctx, filepath.Join(bin, "sluice"), "serve", "--config", path), o.logDir)
			if err != nil {
				return fail(err)
			}
			e.procs = append(e.procs, p)
			e.limited = append(e.limited, target{Name: name, URL: "http://" + p.addr, pid: p.pid()})
		}
	}
	fmt.Fprintf(log, "started: mock upstream %s, bare proxy %s, 3 Sluice instances (2 with a Redis each), %d for the limit check\n", up.addr, px.addr, len(e.limited))
	return e, nil
}

// limitedConfig is the config of the limit check's instances: one
// credential with an rpm limit, shared through one Redis (exact mode).
func limitedConfig(upstream, redis string, rpm int) string {
	return `server: {listen: "127.0.0.1:0"}
log: {level: info} # the bench reads the "listening" line
redis: {url: "redis://` + redis + `"}
channels:
  - name: mock
    type: openai
    base_url: ` + upstream + `/v1
    models: [gpt-4o-mini]
    credentials:
      - {id: limited, limits: {rpm: ` + strconv.Itoa(rpm) + `}}
`
}

// sluiceConfig is the config of a Sluice target: the mock upstream behind
// two credentials with limits (so that the quota does real work), the
// access log on (discarded), metrics on, and profiles served with
// --profile.
func sluiceConfig(upstream, redis, pprof string) string {
	server := `server: {listen: "127.0.0.1:0"}`
	if pprof != "" {
		server = `server: {listen: "127.0.0.1:0", pprof_listen: "` + pprof + `"}`
	}
	return server + `
log: {level: info}
` + redis + `channels:
  - name: mock
    type: openai
    base_url: ` + upstream + `/v1
    models: [gpt-4o-mini]
    credentials:
      - {id: a, limits: {qps: 1000000, rpm: 1000000000, tpm: 100000000000}}
      - {id: b, limits: {qps: 1000000, rpm: 1000000000, tpm: 100000000000}}
`
}

// build compiles sluice and mockllm from the checkout around the working
// directory.
func build(ctx context.Context, dir string, log io.Writer) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	for _, name := range []string{"sluice", "mockllm"} {
		fmt.Fprintf(log, "building %s...\n", name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", name, err, out)
		}
	}
	return nil
}

// moduleRoot finds the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from the Sluice checkout (no go.mod found), or give --bin")
		}
		dir = parent
	}
}

// startRedis runs a redis-server on a free loopback port, without
// persistence, and waits until it accepts connections.
func startRedis(ctx context.Context) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.CommandContext(ctx, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "notice")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{name: "redis", cmd: cmd, addr: addr, exited: make(chan struct{})}
	go p.wait()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.kill()
	return nil, fmt.Errorf("not listening on %s", addr)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// raiseFileLimit lets this process and the ones it starts hold many
// connections (--open-streams).
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return
	}
	// 10,000 open streams take 20,000 descriptors in the gateway (the
	// client's connection and the upstream's) and 10,000 here: raise the
	// hard limit too when allowed (root), else the soft one to it.
	if l.Max < wantFiles {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: wantFiles, Max: wantFiles}); err == nil {
			return
		}
	}
	l.Cur = l.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// wantFiles is the descriptor limit the bench asks for.
const wantFiles = 1 << 18
