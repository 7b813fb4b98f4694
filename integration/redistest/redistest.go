// Package redistest starts real redis-server processes for tests: a single
// node or a three-master Redis Cluster on loopback ports. Tests skip when
// redis-server is not installed, unless SLUICE_REQUIRE_REDIS or
// SLUICE_REQUIRE_DOCKER is set (as in CI), in which case they fail.
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process.
type Server struct {
	Addr string
	dir  string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// binary finds redis-server or skips (fails, when required) the test.
func binary(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err == nil {
		return path
	}
	msg := "redis-server is not installed (apt-get install redis-server); Redis-backed tests need a real server"
	if os.Getenv("SLUICE_REQUIRE_REDIS") != "" || os.Getenv("SLUICE_REQUIRE_DOCKER") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start runs a single redis-server on a free port, stopped when the test
// ends. Extra arguments are redis-server options ("--maxmemory", "10mb").
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := binary(t)
	var lastErr error
	for range 5 {
		port := freePort(t)
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: t.TempDir()}
		s.args = append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", s.dir, "--protected-mode", "no", "--loglevel", "warning",
		}, extra...)
		if lastErr = s.start(bin); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return nil
}

func (s *Server) start(bin string) error {
	cmd := exec.Command(bin, s.args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %s", out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond); err == nil {
			c.Close()
			s.mu.Lock()
			s.cmd = cmd
			s.mu.Unlock()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return fmt.Errorf("redis-server did not listen on %s: %s", s.Addr, out.String())
}

// Stop kills the server (as a crash would); its data is gone.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	}
}

// Restart starts the server again on the same address.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	bin := binary(t)
	var err error
	for range 50 {
		if err = s.start(bin); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("restart redis-server: %v", err)
}

// Client returns a go-redis client for the server, closed with the test.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// Cluster is a Redis Cluster of three masters without replicas.
type Cluster struct {
	Nodes []*Server
}

// StartCluster runs three cluster-enabled redis-servers and joins them,
// all 16384 slots covered.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	for range 3 {
		c.Nodes = append(c.Nodes, Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"))
	}
	ctx := context.Background()
	first := c.Nodes[0].Client(t)
	for _, n := range c.Nodes[1:] {
		host, port, _ := net.SplitHostPort(n.Addr)
		if err := first.ClusterMeet(ctx, host, port).Err(); err != nil {
			t.Fatalf("cluster meet: %v", err)
		}
	}
	for i, n := range c.Nodes {
		lo, hi := i*16384/3, (i+1)*16384/3-1
		cl := n.Client(t)
		if err := cl.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			t.Fatalf("add slots: %v", err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, n := range c.Nodes {
			info, err := n.Client(t).ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				ok = false
			}
		}
		if ok {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster did not reach cluster_state:ok")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Client returns a cluster client, closed with the test.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr)
	}
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { cl.Close() })
	return cl
}

// Dir is where the server keeps its files.
func (s *Server) Dir() string { return filepath.Clean(s.dir) }
