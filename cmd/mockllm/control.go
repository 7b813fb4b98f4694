package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// knobs are the settings the control endpoint reads and changes, with
// durations written as "250ms".
type knobs struct {
	Latency         *string  `json:"latency,omitempty"`
	Jitter          *string  `json:"jitter,omitempty"`
	FailureRate     *float64 `json:"failure_rate,omitempty"`
	RateLimitRate   *float64 `json:"rate_limit_rate,omitempty"`
	StreamChunks    *int     `json:"stream_chunks,omitempty"`
	ChunkInterval   *string  `json:"chunk_interval,omitempty"`
	ReplyTokens     *int     `json:"reply_tokens,omitempty"`
	FailAfterChunks *int     `json:"fail_after_chunks,omitempty"`
	Overloaded      *bool    `json:"overloaded,omitempty"`
}

func knobsOf(c mock.Config) knobs {
	s := func(d time.Duration) *string { v := d.String(); return &v }
	return knobs{
		Latency: s(c.Latency), Jitter: s(c.Jitter), FailureRate: &c.FailureRate, RateLimitRate: &c.RateLimitRate,
		StreamChunks: &c.StreamChunks, ChunkInterval: s(c.ChunkInterval), ReplyTokens: &c.ReplyTokens,
		FailAfterChunks: &c.FailAfterChunks, Overloaded: &c.Overloaded,
	}
}

// apply changes the fields k sets.
func (k knobs) apply(c mock.Config) (mock.Config, error) {
	for _, d := range []struct {
		v   *string
		dst *time.Duration
	}{{k.Latency, &c.Latency}, {k.Jitter, &c.Jitter}, {k.ChunkInterval, &c.ChunkInterval}} {
		if d.v == nil {
			continue
		}
		v, err := time.ParseDuration(*d.v)
		if err != nil || v < 0 {
			return c, fmt.Errorf("invalid duration %q", *d.v)
		}
		*d.dst = v
	}
	for _, r := range []struct {
		v   *float64
		dst *float64
	}{{k.FailureRate, &c.FailureRate}, {k.RateLimitRate, &c.RateLimitRate}} {
		if r.v == nil {
			continue
		}
		if *r.v < 0 || *r.v > 1 {
			return c, fmt.Errorf("rates are between 0 and 1, got %v", *r.v)
		}
		*r.dst = *r.v
	}
	for _, n := range []struct {
		v   *int
		dst *int
	}{{k.StreamChunks, &c.StreamChunks}, {k.ReplyTokens, &c.ReplyTokens}, {k.FailAfterChunks, &c.FailAfterChunks}} {
		if n.v != nil {
			*n.dst = *n.v
		}
	}
	if k.Overloaded != nil {
		c.Overloaded = *k.Overloaded
	}
	return c, nil
}

// control serves /_mock/config (GET reads, PUT changes the knobs it
// names) and /_mock/stats, so that tests and demos can make a running
// upstream fail, slow down or recover.
func control(srv *mock.Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_mock/config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, knobsOf(srv.Config()))
	})
	mux.HandleFunc("PUT /_mock/config", func(w http.ResponseWriter, r *http.Request) {
		var k knobs
		if err := json.NewDecoder(r.Body).Decode(&k); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		cfg, err := k.apply(srv.Config())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		srv.SetConfig(cfg)
		writeJSON(w, http.StatusOK, knobsOf(srv.Config()))
	})
	mux.HandleFunc("GET /_mock/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, srv.Stats())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
