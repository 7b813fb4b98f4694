package provider

import (
	"context"
	"errors"
	"net/http"
)

// hunyuan is a placeholder, replaced by the adapter's own file.
type hunyuan struct{}

// NewRequest implements Adapter.
func (hunyuan) NewRequest(context.Context, Target, Endpoint, []byte) (*http.Request, error) {
	return nil, errors.New("hunyuan: not implemented yet")
}
