package provider

import (
	"context"
	"errors"
	"net/http"
)

type qianfan struct{}

func (qianfan) NewRequest(context.Context, Target, Endpoint, []byte) (*http.Request, error) {
	return nil, errors.New("qianfan: not implemented yet")
}
