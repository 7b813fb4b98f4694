package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/semaphore"
)

// What a client sends is untrusted. The edge bounds it before anything
// else reads it: a client is authenticated from its headers alone, its
// own concurrency and remembered rate refusals apply before its body is
// read, the body is read within a size cap and a time limit, and the
// bytes being read and parsed at once across all requests are capped by
// configuration (server.max_parsing_bytes), so that memory and time per
// client are bounded by the config, never by the client.

// intake reads a request's body and parses it within the edge's bounds.
func (g *Gateway) intake(c echo.Context, parse func(body []byte) (*request, error)) (*request, error) {
	r := c.Request()
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, fmt.Errorf("%w: %q; send the body as application/json", ErrMediaType, excerpt(ct))
		}
	}
	limit := int64(g.static.Server.MaxBodyBytes)
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: the limit is %d bytes", ErrBodyTooLarge, limit)
	}
	weight := limit
	if r.ContentLength >= 0 {
		weight = max(r.ContentLength, 1)
	}
	release, err := g.parsing.acquire(r.Context(), weight)
	if err != nil {
		return nil, err
	}
	body, err := g.readBody(c, limit)
	if err != nil {
		release()
		return nil, err
	}
	// Decoding costs more than the bytes: charge what it will take, once
	// the body is known.
	if cost := parseCost(body); cost != weight {
		release()
		if cost > g.parsing.size {
			return nil, fmt.Errorf("%w: its %d JSON objects and arrays would take about %d bytes to parse, more than server.max_parsing_bytes (%d)",
				ErrBodyTooLarge, cost/nodeCost, cost, g.parsing.size)
		}
		if release, err = g.parsing.acquire(r.Context(), cost); err != nil {
			return nil, err
		}
	}
	defer release()
	return parse(body)
}

// nodeCost is what decoding one JSON object or array costs beyond its
// bytes: Go values, and the canonical request built from them (about a
// kilobyte for a small Anthropic message, measured).
const nodeCost = 1 << 10

// parseCost estimates the memory that parsing a body takes.
func parseCost(body []byte) int64 {
	nodes := bytes.Count(body, []byte{'{'}) + bytes.Count(body, []byte{'['})
	return max(int64(len(body))+nodeCost*int64(nodes), 1)
}

// readSized is io.ReadAll with its buffer sized for a body that declares
// its length: one allocation instead of doublings from 512 bytes. The
// declared length is a hint the sender controls: it is trusted only up to
// preallocMax, beyond which the buffer grows as the bytes come.
func readSized(r io.Reader, declared int64) ([]byte, error) {
	if declared <= 0 {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, min(declared, preallocMax)+1) // +1: room for the read that finds the end
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// preallocMax bounds what readSized allocates ahead of the bytes.
const preallocMax = 64 << 10

// readBody reads a request body within the size cap and the body read
// timeout.
func (g *Gateway) readBody(c echo.Context, limit int64) ([]byte, error) {
	r := c.Request()
	rc := http.NewResponseController(c.Response())
	if d := g.static.Server.ReadBodyTimeout.D(); d > 0 {
		_ = rc.SetReadDeadline(time.Now().Add(d))
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	body, err := readSized(http.MaxBytesReader(c.Response(), r.Body, limit), r.ContentLength)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, fmt.Errorf("%w: the limit is %d bytes", ErrBodyTooLarge, tooLarge.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, fmt.Errorf("%w: the body did not arrive within %s", ErrBodyTimeout, g.static.Server.ReadBodyTimeout)
	case err != nil && r.Context().Err() != nil:
		return nil, g.gone(r.Context())
	case err != nil:
		return nil, badParam("", "could not read the request body")
	}
	callOf(c).bodyRead = true
	return body, nil
}

// unreadBody reports whether a request came with a body that its handler
// did not read: its answer closes the connection, since the server would
// otherwise wait for the rest of the body before answering.
func unreadBody(c echo.Context) bool {
	r := c.Request()
	return !callOf(c).bodyRead && (r.ContentLength > 0 || r.ContentLength < 0 && len(r.TransferEncoding) > 0)
}

// parseBudget caps the bytes being read and parsed at once.
type parseBudget struct {
	sem  *semaphore.Weighted
	size int64
	wait time.Duration
}

func newParseBudget(size int64, wait time.Duration) *parseBudget {
	return &parseBudget{sem: semaphore.NewWeighted(size), size: size, wait: wait}
}

// acquire takes n bytes of the budget (at most all of it), waiting up to
// the configured time; release gives them back.
func (b *parseBudget) acquire(ctx context.Context, n int64) (release func(), err error) {
	n = min(n, b.size)
	if !b.sem.TryAcquire(n) { // the budget is rarely short: no timer unless it is
		wctx, cancel := context.WithTimeout(ctx, b.wait)
		defer cancel()
		if err := b.sem.Acquire(wctx, n); err != nil {
			if ctx.Err() != nil {
				return nil, ErrClientClosed
			}
			return nil, fmt.Errorf("%w: too many request bytes are being parsed at once; retry shortly", ErrServerBusy)
		}
	}
	var once sync.Once
	return func() { once.Do(func() { b.sem.Release(n) }) }, nil
}

// maxModelName bounds a requested model name: no model's name is longer,
// and the name is logged, traced and echoed in errors.
const maxModelName = 256

// checkModelName refuses model names that cannot be any model's: too long,
// not UTF-8, or holding control characters. It runs before a name is
// logged, traced or echoed.
func checkModelName(name string) error {
	switch {
	case name == "":
		return badParam("model", "you must provide a model parameter")
	case len(name) > maxModelName:
		return badParam("model", "the model name is %d bytes long; model names are at most %d", len(name), maxModelName)
	case !utf8.ValidString(name):
		return badParam("model", "the model name is not valid UTF-8")
	case strings.ContainsFunc(name, unicode.IsControl):
		return badParam("model", "the model name holds control characters")
	}
	return nil
}
