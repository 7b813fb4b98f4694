package provider

import (
	"context"
	"errors"
	"net/http"
)

// dify is a placeholder, replaced by the adapter's own file.
type dify struct{}

// NewRequest implements Adapter.
func (dify) NewRequest(context.Context, Target, Endpoint, []byte) (*http.Request, error) {
	return nil, errors.New("dify: not implemented yet")
}
