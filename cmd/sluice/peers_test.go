package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/gateway/config"
	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/integration/redistest"
)

// TestChatAIPluginRedisSharesLimits runs two instances of ChatAI-Plugin's
// config.yaml as the plugin writes it, with its redis section enabled (the
// plugin's Redis, on the test's port) and a per-minute quota of 5 on its
// first channel: the two instances admit 5 calls in all, not 5 each.
func TestChatAIPluginRedisSharesLimits(t *testing.T) {
	rs := redistest.Start(t)
	_, port, _ := strings.Cut(rs.Addr, ":")
	up := httptest.NewServer(mock.New(mock.Config{Keys: []string{"sk-test-1", "sk-test-2"}}))
	defer up.Close()
	t.Setenv("SLUICE_E2E_UPSTREAM", up.URL)

	fixture := readFile(t, "../../gateway/testdata/peers/chatai-plugin.yaml")
	doc := strings.Replace(fixture, "redis:\n  enabled: false\n  host: 127.0.0.1\n  port: 6379\n", "redis:\n  enabled: true\n  host: 127.0.0.1\n  port: "+port+"\n", 1)
	doc = strings.Replace(doc, "perMinute: 0", "perMinute: 5", 1) // the first channel's quota
	if doc == fixture {
		t.Fatal("the fixture's redis section or quota moved: update this test")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bases []string
	for range 2 {
		cfg, format, err := config.Parse([]byte(doc))
		if err != nil || format != config.FormatChannels {
			t.Fatalf("parse: %v (%s)", err, format)
		}
		if cfg.Redis == nil || cfg.Redis.URL != "redis://127.0.0.1:"+port+"/0" {
			t.Fatalf("redis %+v: want the plugin's", cfg.Redis)
		}
		cfg.Server.Listen = "127.0.0.1:0" // two instances on one machine
		cfg.Provision()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		addr := make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- serveConfig(ctx, func() {}, cfg, slog.New(slog.DiscardHandler), func(a string) { addr <- a })
		}()
		select {
		case a := <-addr:
			bases = append(bases, "http://"+a)
		case err := <-done:
			t.Fatalf("serve: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("serve did not start")
		}
	}
	ok, limited := 0, 0
	for i := range 20 {
		resp, err := http.Post(bases[i%2]+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case 200:
			ok++
		case 429:
			limited++
		default:
			t.Fatalf("call %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if ok != 5 || limited != 15 {
		t.Fatalf("two instances admitted %d and refused %d of 20 calls, want 5 and 15 (a per-minute quota of 5 for the cluster)", ok, limited)
	}
	// The quota's state is in the plugin's Redis, for operators to see.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	keys, _ := rdb.Keys(context.Background(), "sluice:*").Result()
	if len(keys) == 0 {
		t.Fatal("no sluice keys in the plugin's Redis")
	}
	t.Logf("5 of 20 admitted across 2 instances; %s keys in Redis", strconv.Itoa(len(keys)))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
