// Package telemetry sets up what Sluice reports about itself: structured
// logs today; traces and metrics build on it.
package telemetry

import (
	"io"
	"log/slog"
	"strings"
)

// LogConfig configures the logger. Level is debug, info (the default),
// warn or error; Format is json (the default) or text.
type LogConfig struct {
	Level  string
	Format string
}

// NewLogger returns a slog logger writing to w. Sluice never logs secrets
// or message content: callers log credential IDs, client names, models,
// statuses and timings only.
func NewLogger(c LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.Format, "text") {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
