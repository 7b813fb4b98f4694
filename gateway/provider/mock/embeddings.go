package mock

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// Embedding request limits, as OpenAI's.
const (
	maxEmbeddingInputs = 2048
	maxEmbeddingDims   = 8192
)

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
}

type embeddingList struct {
	Object string          `json:"object"`
	Data   []embeddingItem `json:"data"`
	Model  string          `json:"model"`
	Usage  embeddingUsage  `json:"usage"`
}

type embeddingItem struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string
}

type embeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// embeddingInput is one text or token array to embed.
type embeddingInput struct {
	key    []byte // what the vector is derived from
	tokens int
}

// serveEmbeddings answers POST …/embeddings with deterministic unit
// vectors.
func (s *Server) serveEmbeddings(w http.ResponseWriter, r *http.Request, deployment string) {
	var req embeddingRequest
	if !decodeBody(w, r, &req) {
		return
	}
	model := req.Model
	if deployment != "" {
		model = deployment
	}
	if model == "" {
		badRequest(w, "model", "you must provide a model parameter")
		return
	}
	resp, err := s.embed(&req, model)
	if err != nil {
		var re *requestError
		if errors.As(err, &re) {
			badRequest(w, re.param, re.message)
			return
		}
		badRequest(w, "", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, resp)
	s.promptTokens.Add(int64(resp.Usage.PromptTokens))
}

// embed validates req and computes its answer.
func (s *Server) embed(req *embeddingRequest, model string) (*embeddingList, error) {
	inputs, err := parseEmbeddingInput(req.Input)
	if err != nil {
		return nil, err
	}
	dims := s.conf().EmbeddingDims
	if req.Dimensions != nil {
		dims = *req.Dimensions
		if dims < 1 || dims > maxEmbeddingDims {
			return nil, invalid("dimensions", "Invalid 'dimensions': expected a value between 1 and %d, but got %d instead.", maxEmbeddingDims, dims)
		}
	}
	asBase64 := false
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		asBase64 = true
	default:
		return nil, invalid("encoding_format", "Invalid value: '%s'. Supported values are: 'float' and 'base64'.", req.EncodingFormat)
	}

	resp := &embeddingList{Object: "list", Model: model, Data: make([]embeddingItem, len(inputs))}
	for i, in := range inputs {
		v := embeddingVector(in.key, dims)
		item := embeddingItem{Object: "embedding", Index: i, Embedding: v}
		if asBase64 {
			item.Embedding = encodeFloats(v)
		}
		resp.Data[i] = item
		resp.Usage.PromptTokens += in.tokens
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens
	return resp, nil
}

// parseEmbeddingInput reads "input": a string, an array of strings, an
// array of token ints or an array of token arrays.
func parseEmbeddingInput(raw json.RawMessage) ([]embeddingInput, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, invalid("input", "Missing required parameter: 'input'.")
	}
	bad := invalid("input", "Invalid type for 'input': expected a string, an array of strings, an array of integers or an array of integer arrays.")
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, bad
		}
		in, err := textInput(s, "input")
		return []embeddingInput{in}, err
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, bad
	}
	if len(items) == 0 || len(items) > maxEmbeddingInputs {
		return nil, invalid("input", "Invalid 'input': expected an array of 1 to %d items, but got %d.", maxEmbeddingInputs, len(items))
	}
	switch first := bytes.TrimSpace(items[0]); {
	case len(first) > 0 && first[0] == '"':
		var texts []string
		if err := json.Unmarshal(raw, &texts); err != nil {
			return nil, bad
		}
		inputs := make([]embeddingInput, len(texts))
		for i, t := range texts {
			in, err := textInput(t, fmt.Sprintf("input[%d]", i))
			if err != nil {
				return nil, err
			}
			inputs[i] = in
		}
		return inputs, nil
	case len(first) > 0 && first[0] == '[':
		var arrays [][]int64
		if err := json.Unmarshal(raw, &arrays); err != nil {
			return nil, bad
		}
		inputs := make([]embeddingInput, len(arrays))
		for i, a := range arrays {
			if len(a) == 0 {
				return nil, invalid(fmt.Sprintf("input[%d]", i), "Invalid 'input[%d]': empty token array.", i)
			}
			inputs[i] = tokenInput(a)
		}
		return inputs, nil
	default:
		var tokens []int64
		if err := json.Unmarshal(raw, &tokens); err != nil {
			return nil, bad
		}
		return []embeddingInput{tokenInput(tokens)}, nil
	}
}

func textInput(s, param string) (embeddingInput, error) {
	if s == "" {
		return embeddingInput{}, invalid(param, "Invalid '%s': empty string.", param)
	}
	return embeddingInput{key: []byte("text:" + s), tokens: textTokens(utf8.RuneCountInString(s))}, nil
}

func tokenInput(tokens []int64) embeddingInput {
	key := []byte("tokens:")
	for _, t := range tokens {
		key = strconv.AppendInt(key, t, 10)
		key = append(key, ',')
	}
	return embeddingInput{key: key, tokens: len(tokens)}
}

// embeddingVector derives a unit vector of dims floats from key. Shorter
// vectors of a key are its longer ones cut and rescaled, as OpenAI's
// dimensions parameter does.
func embeddingVector(key []byte, dims int) []float32 {
	h := fnv.New64a()
	h.Write(key)
	rng := rand.New(rand.NewPCG(h.Sum64(), 0))
	v := make([]float64, dims)
	norm := 0.0
	for i := range v {
		v[i] = rng.NormFloat64()
		norm += v[i] * v[i]
	}
	norm = math.Sqrt(norm)
	out := make([]float32, dims)
	for i := range v {
		out[i] = float32(v[i] / norm)
	}
	return out
}

// encodeFloats is OpenAI's base64 encoding: little-endian float32s.
func encodeFloats(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}
