package provider

import (
	"context"
	"errors"
	"net/http"
)

// vertex is a placeholder, replaced by the adapter's own file.
type vertex struct{}

// NewRequest implements Adapter.
func (vertex) NewRequest(context.Context, Target, Endpoint, []byte) (*http.Request, error) {
	return nil, errors.New("vertex: not implemented yet")
}
