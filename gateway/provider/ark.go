package provider

import (
	"context"
	"errors"
	"net/http"
)

// ark is a placeholder, replaced by the adapter's own file.
type ark struct{}

// NewRequest implements Adapter.
func (ark) NewRequest(context.Context, Target, Endpoint, []byte) (*http.Request, error) {
	return nil, errors.New("ark: not implemented yet")
}
