package mock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// apiError is the body of OpenAI's error responses. Param and Code are
// null when empty.
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// writeError sends an OpenAI-shaped error: {"error":{"message","type",
// "param","code"}}.
func writeError(w http.ResponseWriter, status int, typ, message, param, code string) {
	e := apiError{Message: message, Type: typ}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	writeJSON(w, status, struct {
		Error apiError `json:"error"`
	}{e})
}

// badRequest sends a 400 invalid_request_error about param.
func badRequest(w http.ResponseWriter, param, message string) {
	writeError(w, http.StatusBadRequest, "invalid_request_error", message, param, "")
}

// writeJSON sends v as a JSON body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own types are marshalled; this is a bug.
		http.Error(w, fmt.Sprintf("mock: encode response: %v", err), http.StatusInternalServerError)
		return
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// maxBody bounds request bodies.
const maxBody = 32 << 20

// decodeBody reads a JSON request body into v, answering 400 (or 413)
// itself when it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "invalid_request_error",
			fmt.Sprintf("Request body too large: the limit is %d bytes.", tooBig.Limit), "", "")
		return false
	case err != nil:
		badRequest(w, "", fmt.Sprintf("Could not read the request body: %v", err))
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		badRequest(w, "", fmt.Sprintf("We could not parse the JSON body of your request: %v. "+
			"(HINT: This likely means you aren't using your HTTP library correctly. "+
			"The OpenAI API expects a JSON payload.)", err))
		return false
	}
	return true
}

// sleep waits d, or less if ctx ends first; it reports whether the full
// wait happened.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Alphabets for randomString.
const (
	hexDigits    = "0123456789abcdef"
	alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// randomString returns n characters of alphabet drawn from rng.
func randomString(rng *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// readJSONBody reads a JSON request body into v for the formats that
// answer their own error shapes. On failure it returns the status to
// answer, 400 or 413 (body over maxBody), and the reason.
func readJSONBody(w http.ResponseWriter, r *http.Request, v any) (int, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body too large: the limit is %d bytes", tooBig.Limit)
	case err != nil:
		return http.StatusBadRequest, fmt.Errorf("read request body: %w", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return http.StatusBadRequest, fmt.Errorf("invalid JSON body: %w", err)
	}
	return 0, nil
}
