package mock_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/genai"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

const (
	geminiGenerate = "/v1beta/models/gemini-mock:generateContent"
	geminiStream   = "/v1beta/models/gemini-mock:streamGenerateContent?alt=sse"
)

// Wire shapes the tests read.

type geminiPart struct {
	Text         string `json:"text"`
	FunctionCall *struct {
		Name string          `json:"name"`
		Args json.RawMessage `json:"args"`
	} `json:"functionCall"`
}

type geminiResponse struct {
	Candidates []struct {
		Content struct {
			Role  string       `json:"role"`
			Parts []geminiPart `json:"parts"`
		} `json:"content"`
		FinishReason string `json:"finishReason"`
		Index        *int   `json:"index"`
	} `json:"candidates"`
	PromptFeedback *struct {
		BlockReason string `json:"blockReason"`
	} `json:"promptFeedback"`
	UsageMetadata *struct {
		PromptTokenCount     int `json:"promptTokenCount"`
		CandidatesTokenCount int `json:"candidatesTokenCount"`
		TotalTokenCount      int `json:"totalTokenCount"`
	} `json:"usageMetadata"`
	ModelVersion string `json:"modelVersion"`
	ResponseID   string `json:"responseId"`
}

// text is the first candidate's text.
func (r geminiResponse) text() string {
	var b strings.Builder
	for _, p := range r.Candidates[0].Content.Parts {
		b.WriteString(p.Text)
	}
	return b.String()
}

type geminiErr struct {
	Error struct {
		Code    int              `json:"code"`
		Message string           `json:"message"`
		Status  string           `json:"status"`
		Details []map[string]any `json:"details"`
	} `json:"error"`
}

// expectGeminiError checks a Google API error response.
func expectGeminiError(t *testing.T, resp *http.Response, code int, status string) geminiErr {
	t.Helper()
	var e geminiErr
	decode(t, resp, code, &e)
	if e.Error.Code != code || e.Error.Status != status || e.Error.Message == "" {
		t.Errorf("error %+v, want %d %s", e.Error, code, status)
	}
	return e
}

// geminiEvents reads a streamed answer, checking that events end in CRLF
// pairs as the real API's do.
func geminiEvents(t *testing.T, resp *http.Response) ([]geminiResponse, error) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	body, readErr := io.ReadAll(resp.Body)
	if len(body) > 0 && !strings.HasSuffix(string(body), "\r\n\r\n") {
		t.Errorf("events do not end in CRLF CRLF: %q", body[max(0, len(body)-20):])
	}
	raw, _ := readEvents(strings.NewReader(string(body)))
	var out []geminiResponse
	for _, e := range raw {
		var r geminiResponse
		if err := json.Unmarshal([]byte(e.data), &r); err != nil {
			t.Fatalf("event %s: %v", e.data, err)
		}
		out = append(out, r)
	}
	return out, readErr
}

// postRaw posts body as it is, JSON or not.
func (tg target) postRaw(t *testing.T, path, body string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, tg.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return resp
}

func geminiUser(text string) map[string]any {
	return map[string]any{"contents": []map[string]any{{"role": "user", "parts": []map[string]any{{"text": text}}}}}
}

// geminiTools declares get_weather (OpenAPI-style upper-case types) and
// get_time (a JSON schema).
var geminiTools = []map[string]any{{"functionDeclarations": []map[string]any{
	{
		"name": "get_weather",
		"parameters": map[string]any{
			"type": "OBJECT",
			"properties": map[string]any{
				"city": map[string]any{"type": "STRING"},
				"days": map[string]any{"type": "INTEGER"},
			},
			"required": []string{"city", "days"},
		},
	},
	{
		"name":                 "get_time",
		"parametersJsonSchema": map[string]any{"type": "object", "properties": map[string]any{"utc": map[string]any{"type": "boolean"}}},
	},
}}}

func TestGeminiGenerate(t *testing.T) {
	eachTarget(t, mock.Config{ReplyTokens: 12}, func(t *testing.T, tg target) {
		body := with(geminiUser("hello there"), "systemInstruction", map[string]any{"parts": []map[string]any{{"text": "be brief"}}})
		var r, again geminiResponse
		decode(t, tg.post(t, geminiGenerate, body), http.StatusOK, &r)
		if len(r.Candidates) != 1 || r.ModelVersion != "gemini-mock" || r.ResponseID == "" || r.PromptFeedback != nil {
			t.Fatalf("response %+v", r)
		}
		c := r.Candidates[0]
		if c.Content.Role != "model" || len(c.Content.Parts) != 1 || c.FinishReason != "STOP" || c.Index == nil || *c.Index != 0 {
			t.Errorf("candidate %+v", c)
		}
		if n := len(strings.Fields(r.text())); n != 12 {
			t.Errorf("%d words, want 12", n)
		}
		u := r.UsageMetadata
		if u == nil || u.PromptTokenCount < 1 || u.CandidatesTokenCount != 12 || u.TotalTokenCount != u.PromptTokenCount+12 {
			t.Errorf("usage %+v", u)
		}
		decode(t, tg.post(t, "/v1/models/gemini-mock:generateContent", body), http.StatusOK, &again)
		if again.text() != r.text() {
			t.Errorf("not deterministic: %q then %q", r.text(), again.text())
		}

		// snake_case fields, as in Google's REST examples.
		var short geminiResponse
		snake := with(geminiUser("hello there"), "generation_config", map[string]any{"max_output_tokens": 3})
		decode(t, tg.post(t, geminiGenerate, snake), http.StatusOK, &short)
		if short.Candidates[0].FinishReason != "MAX_TOKENS" || len(strings.Fields(short.text())) != 3 || short.UsageMetadata.CandidatesTokenCount != 3 {
			t.Errorf("max_output_tokens 3: %+v", short)
		}

		var many geminiResponse
		decode(t, tg.post(t, geminiGenerate, with(body, "generationConfig", map[string]any{"candidateCount": 3})), http.StatusOK, &many)
		if len(many.Candidates) != 3 || many.UsageMetadata.CandidatesTokenCount != 36 {
			t.Fatalf("candidateCount 3: %+v", many)
		}
		for i, c := range many.Candidates {
			if *c.Index != i || c.FinishReason != "STOP" {
				t.Errorf("candidate %d: %+v", i, c)
			}
		}
		if many.Candidates[0].Content.Parts[0].Text == many.Candidates[1].Content.Parts[0].Text {
			t.Errorf("candidates 0 and 1 are the same")
		}
	})
}

func TestGeminiStream(t *testing.T) {
	eachTarget(t, mock.Config{StreamChunks: 4, ReplyTokens: 10}, func(t *testing.T, tg target) {
		body := geminiUser("hello there")
		var plain geminiResponse
		decode(t, tg.post(t, geminiGenerate, body), http.StatusOK, &plain)

		events, err := geminiEvents(t, tg.post(t, geminiStream, body))
		if err != nil || len(events) != 4 {
			t.Fatalf("%d events, err %v", len(events), err)
		}
		var text strings.Builder
		for i, e := range events {
			last := i == len(events)-1
			c := e.Candidates[0]
			if c.Content.Role != "model" || e.ModelVersion != "gemini-mock" || e.ResponseID != events[0].ResponseID {
				t.Errorf("event %d: %+v", i, e)
			}
			if (c.FinishReason != "") != last || (e.UsageMetadata != nil) != last {
				t.Errorf("event %d: finishReason %q usage %v", i, c.FinishReason, e.UsageMetadata)
			}
			text.WriteString(e.text())
		}
		if text.String() != plain.text() || events[3].Candidates[0].FinishReason != "STOP" ||
			events[3].UsageMetadata.TotalTokenCount != plain.UsageMetadata.TotalTokenCount {
			t.Errorf("streamed %q, plain %q", text.String(), plain.text())
		}

		two, err := geminiEvents(t, tg.post(t, geminiStream, with(body, "generationConfig", map[string]any{"candidateCount": 2})))
		if err != nil || len(two) != 4 || len(two[0].Candidates) != 2 || *two[0].Candidates[1].Index != 1 {
			t.Errorf("candidateCount 2: %d events, err %v", len(two), err)
		}
		if st := tg.srv.Stats(); st.Streams != 2 || st.CompletionTokens != 10+10+20 {
			t.Errorf("stats %+v", st)
		}

		expectGeminiError(t, tg.post(t, "/v1beta/models/gemini-mock:streamGenerateContent", body), http.StatusBadRequest, "INVALID_ARGUMENT")
	})
}

func TestGeminiFunctionCalling(t *testing.T) {
	body := with(geminiUser("weather in Paris?"), "tools", geminiTools)
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		var r geminiResponse
		decode(t, tg.post(t, geminiGenerate, body), http.StatusOK, &r)
		fc := r.Candidates[0].Content.Parts[0].FunctionCall
		if fc == nil || fc.Name != "get_weather" || string(fc.Args) != `{"city":"sample","days":1}` || r.Candidates[0].FinishReason != "STOP" {
			t.Fatalf("response %+v", r)
		}

		events, err := geminiEvents(t, tg.post(t, geminiStream, body))
		if err != nil || len(events) != 1 {
			t.Fatalf("%d events, err %v", len(events), err)
		}
		if sfc := events[0].Candidates[0].Content.Parts[0].FunctionCall; sfc == nil || string(sfc.Args) != string(fc.Args) ||
			events[0].Candidates[0].FinishReason != "STOP" || events[0].UsageMetadata == nil {
			t.Errorf("streamed call %+v", events[0])
		}

		anyMode := func(mode string, names ...string) map[string]any {
			cfg := map[string]any{"mode": mode}
			if names != nil {
				cfg["allowedFunctionNames"] = names
			}
			return map[string]any{"functionCallingConfig": cfg}
		}
		for _, tc := range []struct {
			name string
			body map[string]any
			call string // "" for text
		}{
			{"AUTO", with(body, "toolConfig", anyMode("AUTO")), "get_weather"},
			{"ANY with allowed names", with(body, "toolConfig", anyMode("ANY", "get_time")), "get_time"},
			{"snake case", with(body, "tool_config", map[string]any{"function_calling_config": map[string]any{"mode": "ANY", "allowed_function_names": []string{"get_time"}}}), "get_time"},
			{"NONE", with(body, "toolConfig", anyMode("NONE")), ""},
			{"after a function response", with(body, "contents", []map[string]any{
				{"role": "user", "parts": []map[string]any{{"text": "weather in Paris?"}}},
				{"role": "model", "parts": []map[string]any{{"functionCall": map[string]any{"name": "get_weather", "args": map[string]any{"city": "Paris"}}}}},
				{"role": "user", "parts": []map[string]any{{"functionResponse": map[string]any{"name": "get_weather", "response": map[string]any{"sky": "clear"}}}}},
			}), ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var r geminiResponse
				decode(t, tg.post(t, geminiGenerate, tc.body), http.StatusOK, &r)
				p := r.Candidates[0].Content.Parts[0]
				switch {
				case tc.call == "" && (p.FunctionCall != nil || p.Text == ""):
					t.Errorf("want text, got %+v", p)
				case tc.call != "" && (p.FunctionCall == nil || p.FunctionCall.Name != tc.call):
					t.Errorf("want a call of %s, got %+v", tc.call, p)
				}
			})
		}
		expectGeminiError(t, tg.post(t, geminiGenerate, with(body, "toolConfig", anyMode("ANY", "nope"))), http.StatusBadRequest, "INVALID_ARGUMENT")
		expectGeminiError(t, tg.post(t, geminiGenerate, with(body, "toolConfig", anyMode("AUTO", "get_time"))), http.StatusBadRequest, "INVALID_ARGUMENT")
	})
}

func TestGeminiEmbeddings(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		var one struct {
			Embedding struct {
				Values []float32 `json:"values"`
			} `json:"embedding"`
		}
		content := map[string]any{"parts": []map[string]any{{"text": "hello world!"}}}
		decode(t, tg.post(t, "/v1beta/models/embed-mock:embedContent", map[string]any{"content": content}), http.StatusOK, &one)
		var openai embeddingList
		decode(t, tg.post(t, "/v1/embeddings", map[string]any{"model": "m", "input": "hello world!"}), http.StatusOK, &openai)
		if !reflect.DeepEqual(one.Embedding.Values, openai.vectors(t, false)[0]) {
			t.Errorf("Gemini and OpenAI vectors of the same text differ:\n%v\n%v", one.Embedding.Values, openai.vectors(t, false)[0])
		}

		var batch struct {
			Embeddings []struct {
				Values []float32 `json:"values"`
			} `json:"embeddings"`
		}
		reqs := map[string]any{"requests": []map[string]any{
			{"model": "models/embed-mock", "content": content, "outputDimensionality": 5},
			{"model": "models/embed-mock", "content": map[string]any{"parts": []map[string]any{{"text": "other"}}}, "output_dimensionality": 5},
		}}
		decode(t, tg.post(t, "/v1beta/models/embed-mock:batchEmbedContents", reqs), http.StatusOK, &batch)
		if len(batch.Embeddings) != 2 || len(batch.Embeddings[0].Values) != 5 || len(batch.Embeddings[1].Values) != 5 ||
			reflect.DeepEqual(batch.Embeddings[0].Values, batch.Embeddings[1].Values) {
			t.Errorf("batch %+v", batch)
		}

		for name, tc := range map[string]struct{ path, body string }{
			"wrong model":     {"batchEmbedContents", `{"requests":[{"model":"models/other","content":{"parts":[{"text":"x"}]}}]}`},
			"no model":        {"batchEmbedContents", `{"requests":[{"content":{"parts":[{"text":"x"}]}}]}`},
			"no requests":     {"batchEmbedContents", `{"requests":[]}`},
			"no content":      {"embedContent", `{}`},
			"empty text":      {"embedContent", `{"content":{"parts":[{"text":""}]}}`},
			"bad dimensions":  {"embedContent", `{"content":{"parts":[{"text":"x"}]},"outputDimensionality":-1}`},
			"not JSON at all": {"embedContent", `{`},
		} {
			t.Run(name, func(t *testing.T) {
				resp := tg.postRaw(t, "/v1beta/models/embed-mock:"+tc.path, tc.body)
				expectGeminiError(t, resp, http.StatusBadRequest, "INVALID_ARGUMENT")
			})
		}
	})
}

func TestGeminiBlocked(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		body := geminiUser("please BLOCK_ME now")
		var r geminiResponse
		decode(t, tg.post(t, geminiGenerate, body), http.StatusOK, &r)
		if r.PromptFeedback == nil || r.PromptFeedback.BlockReason != "SAFETY" || len(r.Candidates) != 0 || r.UsageMetadata == nil {
			t.Errorf("response %+v", r)
		}
		events, err := geminiEvents(t, tg.post(t, geminiStream, body))
		if err != nil || len(events) != 1 || events[0].PromptFeedback == nil || len(events[0].Candidates) != 0 {
			t.Errorf("stream: %d events, err %v", len(events), err)
		}
	})
}

func TestGeminiErrors(t *testing.T) {
	eachTarget(t, mock.Config{}, func(t *testing.T, tg target) {
		for name, body := range map[string]string{
			"no contents":     `{}`,
			"empty parts":     `{"contents":[{"role":"user","parts":[]}]}`,
			"bad role":        `{"contents":[{"role":"assistant","parts":[{"text":"x"}]}]}`,
			"many candidates": `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"candidateCount":9}}`,
			"bad mode":        `{"contents":[{"parts":[{"text":"x"}]}],"toolConfig":{"functionCallingConfig":{"mode":"SOMETIMES"}}}`,
			"not JSON":        `[`,
		} {
			t.Run(name, func(t *testing.T) {
				expectGeminiError(t, tg.postRaw(t, geminiGenerate, body), http.StatusBadRequest, "INVALID_ARGUMENT")
			})
		}
		expectGeminiError(t, tg.post(t, "/v1beta/models/gemini-mock:countTokens", geminiUser("x")), http.StatusNotFound, "NOT_FOUND")
		expectGeminiError(t, tg.do(t, t.Context(), http.MethodGet, geminiGenerate, nil), http.StatusNotFound, "NOT_FOUND")
	})
	t.Run("failure", func(t *testing.T) {
		eachTarget(t, mock.Config{FailureRate: 1}, func(t *testing.T, tg target) {
			expectGeminiError(t, tg.post(t, geminiStream, geminiUser("x")), http.StatusInternalServerError, "INTERNAL")
		})
	})
	t.Run("rate limit", func(t *testing.T) {
		eachTarget(t, mock.Config{RateLimitRate: 1, RetryAfter: 1500 * time.Millisecond}, func(t *testing.T, tg target) {
			e := expectGeminiError(t, tg.post(t, geminiGenerate, geminiUser("x")), http.StatusTooManyRequests, "RESOURCE_EXHAUSTED")
			if len(e.Error.Details) != 1 || e.Error.Details[0]["@type"] != "type.googleapis.com/google.rpc.RetryInfo" ||
				e.Error.Details[0]["retryDelay"] != "1.5s" {
				t.Errorf("details %v", e.Error.Details)
			}
			if st := tg.srv.Stats(); st.RateLimited != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	})
	t.Run("fail after chunks", func(t *testing.T) {
		eachTarget(t, mock.Config{StreamChunks: 8, FailAfterChunks: 3}, func(t *testing.T, tg target) {
			resp := tg.post(t, geminiStream, geminiUser("x"))
			defer resp.Body.Close()
			events, err := readEvents(resp.Body)
			if err == nil || len(events) != 3 {
				t.Errorf("%d events, err %v; want 3 and an error", len(events), err)
			}
			if st := tg.srv.Stats(); st.Aborted != 1 {
				t.Errorf("stats %+v", st)
			}
		})
		eachTarget(t, mock.Config{StreamChunks: 4, FailAfterChunks: 4}, func(t *testing.T, tg target) {
			events, err := geminiEvents(t, tg.post(t, geminiStream, geminiUser("x")))
			if err != nil || len(events) != 4 {
				t.Errorf("%d events, err %v; want a complete stream", len(events), err)
			}
		})
	})
}

func TestGeminiAuth(t *testing.T) {
	eachTarget(t, mock.Config{Keys: []string{"AIza-one"}}, func(t *testing.T, tg target) {
		var r geminiResponse
		decode(t, tg.post(t, geminiGenerate, geminiUser("x"), "x-goog-api-key", "AIza-one"), http.StatusOK, &r)
		decode(t, tg.post(t, geminiGenerate+"?key=AIza-one", geminiUser("x")), http.StatusOK, &r)
		expectGeminiError(t, tg.post(t, geminiGenerate, geminiUser("x")), http.StatusForbidden, "PERMISSION_DENIED")
		expectGeminiError(t, tg.post(t, geminiGenerate, geminiUser("x"), "Authorization", "Bearer AIza-one"), http.StatusForbidden, "PERMISSION_DENIED")
		e := expectGeminiError(t, tg.post(t, geminiStream+"&key=AIza-two", geminiUser("x")), http.StatusBadRequest, "INVALID_ARGUMENT")
		if len(e.Error.Details) != 1 || e.Error.Details[0]["reason"] != "API_KEY_INVALID" {
			t.Errorf("details %v", e.Error.Details)
		}
	})
}

// genaiClients returns official Go SDK clients for a mock with cfg, over
// a socket and through mock.Transport, with retries off.
func genaiClients(t *testing.T, cfg mock.Config) map[string]*genai.Client {
	ts := httptest.NewServer(mock.New(cfg))
	t.Cleanup(ts.Close)
	clients := make(map[string]*genai.Client)
	for name, hc := range map[string]struct {
		base   string
		client *http.Client
	}{
		"socket":    {ts.URL + "/", ts.Client()},
		"transport": {"http://mock.test/", &http.Client{Transport: mock.Transport(mock.New(cfg))}},
	} {
		c, err := genai.NewClient(t.Context(), &genai.ClientConfig{
			APIKey:      "AIza-test",
			Backend:     genai.BackendGeminiAPI,
			HTTPClient:  hc.client,
			HTTPOptions: genai.HTTPOptions{BaseURL: hc.base, APIVersion: "v1beta"},
		})
		if err != nil {
			t.Fatalf("genai client: %v", err)
		}
		clients[name] = c
	}
	return clients
}

func TestGeminiOfficialSDK(t *testing.T) {
	cfg := mock.Config{StreamChunks: 4, ReplyTokens: 10, Keys: []string{"AIza-test"}}
	for name, client := range genaiClients(t, cfg) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			conf := &genai.GenerateContentConfig{SystemInstruction: genai.NewContentFromText("be brief", genai.RoleUser)}
			plain, err := client.Models.GenerateContent(ctx, "gemini-mock", genai.Text("hello"), conf)
			if err != nil {
				t.Fatalf("GenerateContent: %v", err)
			}
			if len(strings.Fields(plain.Text())) != 10 || plain.Candidates[0].FinishReason != genai.FinishReasonStop ||
				plain.UsageMetadata.CandidatesTokenCount != 10 || plain.ModelVersion != "gemini-mock" {
				t.Errorf("response %+v", plain)
			}

			var text strings.Builder
			chunks := 0
			for resp, err := range client.Models.GenerateContentStream(ctx, "gemini-mock", genai.Text("hello"), conf) {
				if err != nil {
					t.Fatalf("stream: %v", err)
				}
				text.WriteString(resp.Text())
				chunks++
			}
			if text.String() != plain.Text() || chunks != 4 {
				t.Errorf("streamed %q in %d chunks, plain %q", text.String(), chunks, plain.Text())
			}

			conf.Tools = []*genai.Tool{{FunctionDeclarations: []*genai.FunctionDeclaration{{
				Name: "get_weather",
				Parameters: &genai.Schema{
					Type:       genai.TypeObject,
					Properties: map[string]*genai.Schema{"city": {Type: genai.TypeString}, "days": {Type: genai.TypeInteger}},
					Required:   []string{"city", "days"},
				},
			}}}}
			res, err := client.Models.GenerateContent(ctx, "gemini-mock", genai.Text("weather?"), conf)
			if err != nil {
				t.Fatalf("GenerateContent with tools: %v", err)
			}
			calls := res.FunctionCalls()
			if len(calls) != 1 || calls[0].Name != "get_weather" || calls[0].Args["city"] != "sample" || calls[0].Args["days"] != float64(1) {
				t.Fatalf("function calls %+v", calls)
			}
			history := append(genai.Text("weather?"), res.Candidates[0].Content,
				genai.NewContentFromFunctionResponse("get_weather", map[string]any{"sky": "clear"}, genai.RoleUser))
			res, err = client.Models.GenerateContent(ctx, "gemini-mock", history, conf)
			if err != nil || len(res.FunctionCalls()) != 0 || res.Text() == "" {
				t.Errorf("after the function response: %v %+v", err, res)
			}

			dims := int32(6)
			emb, err := client.Models.EmbedContent(ctx, "embed-mock", []*genai.Content{
				genai.NewContentFromText("one", genai.RoleUser), genai.NewContentFromText("two", genai.RoleUser),
			}, &genai.EmbedContentConfig{OutputDimensionality: &dims})
			if err != nil {
				t.Fatalf("EmbedContent: %v", err)
			}
			if len(emb.Embeddings) != 2 || len(emb.Embeddings[0].Values) != 6 {
				t.Errorf("embeddings %+v", emb.Embeddings)
			}
		})
	}
}

func TestGeminiOfficialSDKErrors(t *testing.T) {
	cases := []struct {
		name   string
		cfg    mock.Config
		code   int
		status string
	}{
		{"rate limited", mock.Config{RateLimitRate: 1}, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED"},
		{"server error", mock.Config{FailureRate: 1}, http.StatusInternalServerError, "INTERNAL"},
		{"bad key", mock.Config{Keys: []string{"AIza-other"}}, http.StatusBadRequest, "INVALID_ARGUMENT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for name, client := range genaiClients(t, tc.cfg) {
				t.Run(name, func(t *testing.T) {
					_, err := client.Models.GenerateContent(t.Context(), "gemini-mock", genai.Text("hi"), nil)
					var apiErr genai.APIError
					if !errors.As(err, &apiErr) || apiErr.Code != tc.code || apiErr.Status != tc.status {
						t.Errorf("error %v, want code %d status %s", err, tc.code, tc.status)
					}
					for _, err := range client.Models.GenerateContentStream(t.Context(), "gemini-mock", genai.Text("hi"), nil) {
						if !errors.As(err, &apiErr) || apiErr.Code != tc.code {
							t.Errorf("stream error %v, want code %d", err, tc.code)
						}
						break
					}
				})
			}
		})
	}
}
