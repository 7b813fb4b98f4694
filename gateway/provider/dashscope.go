package provider

import (
	"context"
	"errors"
	"net/http"
)

// dashScope is a placeholder, replaced by the adapter's own file.
type dashScope struct{}

// NewRequest implements Adapter.
func (dashScope) NewRequest(context.Context, Target, Endpoint, []byte) (*http.Request, error) {
	return nil, errors.New("dashscope: not implemented yet")
}
