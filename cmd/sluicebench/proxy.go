package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// runProxy serves a bare httputil.ReverseProxy with a pooled transport
// and nothing else: the floor a gateway step is compared with.
//
//	sluicebench proxy -listen 127.0.0.1:0 -to http://127.0.0.1:9000
func runProxy(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluicebench proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	to := fs.String("to", "", "upstream base URL")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	up, err := url.Parse(*to)
	if err != nil || up.Host == "" {
		fmt.Fprintln(stderr, "sluicebench proxy: -to: want a URL")
		return 2
	}
	p := httputil.NewSingleHostReverseProxy(up)
	// Read the request body before sending it on, as every gateway does
	// (it must read the model): a body still streaming in while the
	// answer streams out makes the transport cut streams short.
	direct := p.Director
	p.Director = func(r *http.Request) {
		direct(r)
		if r.Body != nil && r.Body != http.NoBody {
			b, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
			r.Body.Close()
			if err == nil {
				r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
				r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
			}
		}
	}
	p.Transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	p.FlushInterval = -1 // flush every write: streams pass at once
	p.ErrorLog = log.New(stderr, "", 0)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "sluicebench proxy:", err)
		return 1
	}
	fmt.Fprintf(stderr, "proxy listening addr=%s\n", ln.Addr())
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(stderr, "sluicebench proxy:", err)
		return 1
	}
	return 0
}
