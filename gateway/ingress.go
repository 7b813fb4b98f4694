package gateway

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/sluice-gateway/sluice/gateway/ingress"
	"github.com/sluice-gateway/sluice/gateway/provider"
	"github.com/sluice-gateway/sluice/gateway/provider/wire"
)

// Clients that speak another API than OpenAI Chat Completions (Anthropic
// Messages, OpenAI Responses) are served by the same relay: their request
// is decoded to a canonical chat.completions body, routed, limited and
// failed over like any other, and the canonical answer is encoded back in
// their format. Errors reach them in their own shape too.

// messages serves POST /v1/messages (Anthropic Messages).
func (g *Gateway) messages(c echo.Context) error { return g.relayVia(c, ingress.Anthropic) }

// responses serves POST /v1/responses (OpenAI Responses, stateless).
func (g *Gateway) responses(c echo.Context) error { return g.relayVia(c, ingress.Responses) }

// speaks is the route middleware that records which API a route's client
// speaks, so that every error, authentication's included, is in its shape.
func speaks(codec ingress.Codec) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			callOf(c).codec = codec
			return next(c)
		}
	}
}

// relayVia decodes a request of another API into the canonical form and
// relays it.
func (g *Gateway) relayVia(c echo.Context, codec ingress.Codec) error {
	native := stateOf(c).nativeFormats[codec.Format()]
	req, err := g.intake(c, func(body []byte) (*request, error) { return decodeVia(codec, body, native) })
	if err != nil {
		return err
	}
	if native {
		req.nativeHeader = http.Header{}
		for _, k := range codec.NativeHeaders() {
			if vs := c.Request().Header.Values(k); len(vs) > 0 {
				req.nativeHeader[http.CanonicalHeaderKey(k)] = vs
			}
		}
	}
	return g.serve(c, req)
}

// decodeVia decodes a request of another API into a parsed canonical one,
// keeping the client's own body when a channel may take it natively.
func decodeVia(codec ingress.Codec, body []byte, native bool) (*request, error) {
	dec, err := codec.Decode(body)
	var re *ingress.RequestError
	if errors.As(err, &re) {
		return nil, badParam(re.Param, "%s", re.Message)
	}
	if err != nil {
		return nil, badParam("", "%v", err)
	}
	req, err := parseRequest(provider.Chat, dec.Canonical)
	if err != nil {
		return nil, err
	}
	req.codec = codec
	if native {
		if err := json.Unmarshal(body, &req.native); err != nil {
			return nil, badParam("", "invalid JSON body: %v", err)
		}
		dropNulls(req.native)
	}
	return req, nil
}

// nativeFor returns the native side of an adapter whose upstream speaks
// the client's own API: the attempt relays the client's body
// untranslated. ok is false otherwise.
func (req *request) nativeFor(a provider.Adapter) (provider.Native, bool) {
	if req.codec == nil || req.native == nil {
		return nil, false
	}
	return nativeIn(a, req.codec.Format())
}

// nativeIn returns the native side of an adapter that speaks format f.
func nativeIn(a provider.Adapter, f wire.Format) (provider.Native, bool) {
	tr, ok := a.(provider.Translator)
	if !ok || tr.Format() != f {
		return nil, false
	}
	n, ok := a.(provider.Native)
	return n, ok
}

// clientErrorBody is the body of an error response in the shape of the
// client's API.
func clientErrorBody(codec ingress.Codec, status int, e openAIErrorBody) []byte {
	code, param := "", ""
	if e.Code != nil {
		code = *e.Code
	}
	if e.Param != nil {
		param = *e.Param
	}
	if param != "" && status == http.StatusBadRequest {
		return ingress.RequestErrorBody(codec, &ingress.RequestError{Param: param, Message: e.Message})
	}
	return codec.Error(status, e.Type, code, e.Message)
}

// openAIErrorOf reads an OpenAI error body; ok is false for another shape.
func openAIErrorOf(body []byte) (e openAIErrorBody, ok bool) {
	var wrapper struct {
		Error *struct {
			Message string          `json:"message"`
			Type    string          `json:"type"`
			Param   *string         `json:"param"`
			Code    json.RawMessage `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &wrapper) != nil || wrapper.Error == nil || wrapper.Error.Message == "" {
		return e, false
	}
	w := wrapper.Error
	e = openAIErrorBody{Message: w.Message, Type: w.Type, Param: w.Param}
	var code string
	if json.Unmarshal(w.Code, &code) == nil && code != "" {
		e.Code = &code
	}
	return e, true
}
