package telemetry

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(LogConfig{Level: "warn", Format: "json"}, &buf)
	log.Info("hidden")
	log.Warn("shown", "credential", "c1")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "shown" || rec["credential"] != "c1" {
		t.Fatalf("json log %q: %v", buf.String(), err)
	}
	buf.Reset()
	NewLogger(LogConfig{Level: "nonsense", Format: "TEXT"}, &buf).Info("x")
	if !strings.Contains(buf.String(), "msg=x") {
		t.Fatalf("text log at default level: %q", buf.String())
	}
}
