package mock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// Errors the response body of a Transport reports.
var (
	// errAborted ends the body of a response whose handler panicked with
	// http.ErrAbortHandler, like a dropped connection.
	errAborted = fmt.Errorf("mock transport: handler aborted the response: %w", io.ErrUnexpectedEOF)
	// errBodyClosed is what the handler's writes and context report once
	// the client closed the response body.
	errBodyClosed = errors.New("mock transport: response body closed by the client")
	// errHandlerDone is the cause of the handler's context after it
	// returned.
	errHandlerDone = errors.New("mock transport: handler returned")
)

// Transport returns an http.RoundTripper that serves requests with h
// in-process, without a socket.
//
// It streams: the *http.Response is returned as soon as h writes its
// header (or first body byte), and the body is a pipe fed by h as it
// writes; there is no buffer, so each write of h returns once the client
// has read it. Cancelling the request context stops h (its r.Context() is
// done) and makes body reads fail with the context's error; closing the
// body early also ends h's context and makes its writes fail. A handler
// that panics with http.ErrAbortHandler makes body reads fail with an
// error wrapping io.ErrUnexpectedEOF, never a clean EOF; any other panic
// becomes a RoundTrip or body read error too. A client that neither reads
// nor closes the body nor cancels leaves h blocked in Write, as a full
// socket would.
func Transport(h http.Handler) http.RoundTripper { return &transport{h: h} }

type transport struct{ h http.Handler }

// roundTripResult is what the handler hands to RoundTrip.
type roundTripResult struct {
	resp *http.Response
	err  error
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("mock transport: nil request URL")
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	pr, pw := io.Pipe()
	w := &responseWriter{
		ctx:    ctx,
		req:    req,
		header: make(http.Header),
		pw:     pw,
		body:   &responseBody{pr: pr, cancel: cancel},
		ready:  make(chan roundTripResult, 1),
	}
	stop := context.AfterFunc(ctx, func() { pw.CloseWithError(context.Cause(ctx)) })
	go t.serve(w, serverRequest(ctx, req), cancel, stop)

	select {
	case res := <-w.ready:
		return res.resp, res.err
	case <-req.Context().Done():
		return nil, fmt.Errorf("mock transport: %w", context.Cause(req.Context()))
	}
}

// serve runs the handler, turns its panics into errors and ends the
// response.
func (t *transport) serve(w *responseWriter, r *http.Request, cancel context.CancelCauseFunc, stop func() bool) {
	var err error
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				err = errAborted
			} else {
				err = fmt.Errorf("mock transport: handler panic: %v", p)
			}
		}
		if err == nil && w.ctx.Err() != nil {
			// Stopped by the client: never let it read a clean EOF.
			err = context.Cause(w.ctx)
		}
		r.Body.Close() // the client's request body, before it sees the end
		w.finish(err)
		stop()
		cancel(errHandlerDone)
	}()
	t.h.ServeHTTP(w, r)
}

// serverRequest turns a client request into what a server's handler
// sees.
func serverRequest(ctx context.Context, req *http.Request) *http.Request {
	r := req.Clone(ctx)
	r.RequestURI = req.URL.RequestURI()
	r.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	if r.Host == "" {
		r.Host = req.URL.Host
	}
	r.RemoteAddr = "192.0.2.1:1234"
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.GetBody = nil
	return r
}

// responseWriter is the handler's side of a Transport round trip. Only
// the handler goroutine uses it.
type responseWriter struct {
	ctx         context.Context
	req         *http.Request // the client's
	header      http.Header
	pw          *io.PipeWriter
	body        *responseBody
	ready       chan roundTripResult // gets one result
	wroteHeader bool
	noBody      bool // HEAD, 204 or 304
}

// Header implements http.ResponseWriter.
func (w *responseWriter) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter: it hands the response to
// RoundTrip. Informational (1xx) codes are dropped.
func (w *responseWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code)) // as net/http
	}
	if w.wroteHeader || code < 200 {
		return
	}
	w.wroteHeader = true
	resp := &http.Response{
		Status:        strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header.Clone(),
		Body:          w.body,
		ContentLength: -1,
		Request:       w.req,
	}
	if n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
		resp.ContentLength = n
	}
	if w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified {
		w.noBody = true
		resp.Body = http.NoBody
		if code != http.StatusOK || w.req.Method != http.MethodHead {
			resp.ContentLength = 0
		}
	}
	w.ready <- roundTripResult{resp: resp}
}

// Write implements http.ResponseWriter. It returns once the client has
// read p, or fails once the client is gone.
func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		if _, ok := w.header["Content-Type"]; !ok && len(p) > 0 {
			w.header.Set("Content-Type", http.DetectContentType(p))
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	return w.pw.Write(p)
}

// FlushError sends the header if not yet sent; writes are not buffered.
// It fails once the client is gone. http.ResponseController uses it.
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.ctx.Err() != nil {
		return fmt.Errorf("mock transport: %w", context.Cause(w.ctx))
	}
	return nil
}

// Flush implements http.Flusher.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// finish ends the response after the handler returned, with err if it
// panicked.
func (w *responseWriter) finish(err error) {
	if err == nil && !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.wroteHeader {
		w.wroteHeader = true
		w.ready <- roundTripResult{err: err}
	}
	w.pw.CloseWithError(err) // nil: the client reads EOF
}

// responseBody is the client's side of the pipe.
type responseBody struct {
	pr     *io.PipeReader
	cancel context.CancelCauseFunc
}

// Read implements io.Reader.
func (b *responseBody) Read(p []byte) (int, error) { return b.pr.Read(p) }

// Close makes the handler's writes fail and ends its context.
func (b *responseBody) Close() error {
	b.pr.CloseWithError(errBodyClosed)
	b.cancel(errBodyClosed)
	return nil
}
