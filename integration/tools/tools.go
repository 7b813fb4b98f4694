//go:build tools

// Package tools pins the Jaeger version the integration suite builds into
// a local image (no registry is reachable where the suite runs):
//
//	cd integration/tools && CGO_ENABLED=0 go build -o jaeger github.com/jaegertracing/jaeger/cmd/jaeger
package tools

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
