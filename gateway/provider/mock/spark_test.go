package mock_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

var sparkKey = mock.SparkKey{AppID: "app-1", APIKey: "key-1", APISecret: "secret-1"}

// sparkPaths are the WebSocket chat paths and their domains.
var sparkPaths = []struct{ path, domain string }{
	{"/v1.1/chat", "lite"},
	{"/v3.1/chat", "generalv3"},
	{"/chat/pro-128k", "pro-128k"},
	{"/v3.5/chat", "generalv3.5"},
	{"/chat/max-32k", "max-32k"},
	{"/v4.0/chat", "4.0Ultra"},
}

// sparkServer serves a mock with cfg over a socket.
func sparkServer(t *testing.T, cfg mock.Config) (*mock.Server, *httptest.Server) {
	t.Helper()
	srv := mock.New(cfg)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return srv, ts
}

// signed returns the URL of path on ts signed with key at time now.
func signed(t *testing.T, ts *httptest.Server, path string, key mock.SparkKey, now time.Time) string {
	t.Helper()
	u, err := mock.SparkURL(ts.URL, path, key.APIKey, key.APISecret, now)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// sparkReq is a request frame for domain with the given messages, given as
// role, content pairs.
func sparkReq(appID, domain string, msgs ...string) map[string]any {
	var text []map[string]string
	for i := 0; i+1 < len(msgs); i += 2 {
		text = append(text, map[string]string{"role": msgs[i], "content": msgs[i+1]})
	}
	return map[string]any{
		"header":    map[string]any{"app_id": appID, "uid": "u-1"},
		"parameter": map[string]any{"chat": map[string]any{"domain": domain, "temperature": 0.5, "max_tokens": 1024}},
		"payload":   map[string]any{"message": map[string]any{"text": text}},
	}
}

// sparkFrame is a response frame as the tests read it.
type sparkFrame struct {
	Header struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Sid     string `json:"sid"`
		Status  *int   `json:"status"`
	} `json:"header"`
	Payload *struct {
		Choices struct {
			Status int `json:"status"`
			Seq    int `json:"seq"`
			Text   []struct {
				Content      *string `json:"content"`
				Role         string  `json:"role"`
				Index        *int    `json:"index"`
				FunctionCall *struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function_call"`
			} `json:"text"`
		} `json:"choices"`
		Usage *struct {
			Text struct {
				QuestionTokens   int `json:"question_tokens"`
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
				TotalTokens      int `json:"total_tokens"`
			} `json:"text"`
		} `json:"usage"`
	} `json:"payload"`
}

// sparkChat dials u, sends req and reads frames until the connection
// ends; err is the final read error.
func sparkChat(t *testing.T, u string, req any) (frames []sparkFrame, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		var body []byte
		if resp != nil {
			body, _ = io.ReadAll(resp.Body)
		}
		t.Fatalf("dial: %v (%s)", err, body)
	}
	defer conn.CloseNow()
	if err := wsjson.Write(ctx, conn, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return frames, err
		}
		if typ != websocket.MessageText {
			t.Errorf("frame of type %v", typ)
		}
		var f sparkFrame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatalf("frame %s: %v", data, err)
		}
		frames = append(frames, f)
	}
}

// closedNormally checks that the server ended the exchange with a close
// frame.
func closedNormally(t *testing.T, err error) {
	t.Helper()
	if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("connection ended with %v, want a normal closure", err)
	}
}

// sparkText joins the content of frames.
func sparkText(frames []sparkFrame) string {
	var b strings.Builder
	for _, f := range frames {
		if f.Payload != nil {
			for _, item := range f.Payload.Choices.Text {
				b.WriteString(*item.Content)
			}
		}
	}
	return b.String()
}

// sparkReject dials u expecting the handshake to fail, and returns the
// status and message of the rejection.
func sparkReject(t *testing.T, u string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, u, nil)
	if err == nil {
		conn.CloseNow()
		t.Fatal("handshake accepted")
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	var body struct {
		Message string `json:"message"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Errorf("rejection body: %v", err)
	}
	return resp.StatusCode, body.Message
}

func TestSparkURL(t *testing.T) {
	now := time.Date(2023, 5, 5, 10, 43, 39, 0, time.FixedZone("CST", 8*3600))
	u, err := mock.SparkURL("https://spark.example:8443/prefix/", "/v3.5/chat", "my-key", "my-secret", now)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Scheme != "wss" || parsed.Host != "spark.example:8443" || parsed.Path != "/prefix/v3.5/chat" {
		t.Errorf("URL %s", u)
	}
	q := parsed.Query()
	const date = "Fri, 05 May 2023 02:43:39 GMT"
	if q.Get("date") != date || q.Get("host") != "spark.example:8443" || len(q) != 3 {
		t.Errorf("query %v", q)
	}
	mac := hmac.New(sha256.New, []byte("my-secret"))
	mac.Write([]byte("host: spark.example:8443\ndate: " + date + "\nGET /prefix/v3.5/chat HTTP/1.1"))
	want := fmt.Sprintf(`api_key="my-key", algorithm="hmac-sha256", headers="host date request-line", signature="%s"`,
		base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	if got, err := base64.StdEncoding.DecodeString(q.Get("authorization")); err != nil || string(got) != want {
		t.Errorf("authorization %s (%v)\nwant %s", got, err, want)
	}

	if u, err := mock.SparkURL("ws://h", "/v1.1/chat", "k", "s", now); err != nil || !strings.HasPrefix(u, "ws://h/v1.1/chat?") {
		t.Errorf("ws URL %q (%v)", u, err)
	}
	for _, bad := range [][2]string{{"ftp://h", "/v1.1/chat"}, {"ws://", "/v1.1/chat"}, {"ws://h", "v1.1/chat"}, {"::", "/x"}} {
		if _, err := mock.SparkURL(bad[0], bad[1], "k", "s", now); err == nil {
			t.Errorf("SparkURL(%q, %q): no error", bad[0], bad[1])
		}
	}
}

func TestSparkChat(t *testing.T) {
	srv, ts := sparkServer(t, mock.Config{Spark: []mock.SparkKey{{AppID: "other", APIKey: "k0", APISecret: "s0"}, sparkKey}, StreamChunks: 4, ReplyTokens: 10})
	for _, sp := range sparkPaths {
		t.Run(sp.domain, func(t *testing.T) {
			req := sparkReq(sparkKey.AppID, sp.domain, "system", "be brief", "user", "hello there", "assistant", "hi", "user", "what now?")
			frames, err := sparkChat(t, signed(t, ts, sp.path, sparkKey, time.Now()), req)
			closedNormally(t, err)
			if len(frames) != 4 {
				t.Fatalf("%d frames, want 4", len(frames))
			}
			for i, f := range frames {
				status := []int{0, 1, 1, 2}[i]
				h := f.Header
				if h.Code != 0 || h.Message != "Success" || h.Status == nil || *h.Status != status || !strings.HasPrefix(h.Sid, "cht") || h.Sid != frames[0].Header.Sid {
					t.Errorf("frame %d header %+v", i, h)
				}
				c := f.Payload.Choices
				if c.Status != status || c.Seq != i || len(c.Text) != 1 || c.Text[0].Role != "assistant" || *c.Text[0].Index != 0 || c.Text[0].FunctionCall != nil {
					t.Errorf("frame %d choices %+v", i, c)
				}
				if (f.Payload.Usage != nil) != (status == 2) {
					t.Errorf("frame %d: usage %v", i, f.Payload.Usage)
				}
			}
			text := sparkText(frames)
			if len(strings.Fields(text)) != 10 {
				t.Errorf("reply %q, want 10 words", text)
			}
			u := frames[3].Payload.Usage.Text
			if u.CompletionTokens != 10 || u.PromptTokens < u.QuestionTokens || u.QuestionTokens < 1 || u.TotalTokens != u.PromptTokens+10 {
				t.Errorf("usage %+v", u)
			}
			again, _ := sparkChat(t, signed(t, ts, sp.path, sparkKey, time.Now()), req)
			if sparkText(again) != text {
				t.Errorf("not deterministic: %q then %q", text, sparkText(again))
			}
		})
	}
	if st := srv.Stats(); st.Streams != 12 || st.CompletionTokens != 120 || st.Requests != 12 {
		t.Errorf("stats %+v", st)
	}

	t.Run("max_tokens", func(t *testing.T) {
		req := sparkReq(sparkKey.AppID, "lite", "user", "hi")
		req["parameter"].(map[string]any)["chat"].(map[string]any)["max_tokens"] = 3
		frames, err := sparkChat(t, signed(t, ts, "/v1.1/chat", sparkKey, time.Now()), req)
		closedNormally(t, err)
		if n := len(strings.Fields(sparkText(frames))); n != 3 || frames[len(frames)-1].Payload.Usage.Text.CompletionTokens != 3 {
			t.Errorf("%d words in %d frames", n, len(frames))
		}
	})
	t.Run("one frame", func(t *testing.T) {
		_, ts := sparkServer(t, mock.Config{StreamChunks: 1})
		frames, err := sparkChat(t, ts.URL+"/v3.5/chat", sparkReq("any", "generalv3.5", "user", "hi"))
		closedNormally(t, err)
		if len(frames) != 1 || *frames[0].Header.Status != 2 || frames[0].Payload.Usage == nil {
			t.Errorf("frames %+v", frames)
		}
	})
}

func TestSparkChunkInterval(t *testing.T) {
	_, ts := sparkServer(t, mock.Config{StreamChunks: 3, ChunkInterval: 30 * time.Millisecond})
	start := time.Now()
	frames, err := sparkChat(t, ts.URL+"/v3.5/chat", sparkReq("a", "generalv3.5", "user", "hi"))
	closedNormally(t, err)
	if len(frames) != 3 || time.Since(start) < 60*time.Millisecond {
		t.Errorf("%d frames in %v", len(frames), time.Since(start))
	}
}

func TestSparkHandshake(t *testing.T) {
	_, ts := sparkServer(t, mock.Config{Spark: []mock.SparkKey{sparkKey}})
	now := time.Now()
	wrongSecret := sparkKey
	wrongSecret.APISecret = "nope"
	unknownKey := sparkKey
	unknownKey.APIKey = "nope"
	otherHost, err := mock.SparkURL("http://other.example:1", "/v3.5/chat", sparkKey.APIKey, sparkKey.APISecret, now)
	if err != nil {
		t.Fatal(err)
	}
	_, query, _ := strings.Cut(otherHost, "?")
	_, v31Query, _ := strings.Cut(signed(t, ts, "/v3.1/chat", sparkKey, now), "?")
	garbled := url.Values{"authorization": {"!!!"}, "date": {now.UTC().Format(http.TimeFormat)}, "host": {strings.TrimPrefix(ts.URL, "http://")}}

	for _, tc := range []struct {
		name    string
		url     string
		status  int
		message string
	}{
		{"no authorization", ts.URL + "/v3.5/chat", http.StatusUnauthorized, "Unauthorized"},
		{"garbled authorization", ts.URL + "/v3.5/chat?" + garbled.Encode(), http.StatusUnauthorized, "HMAC signature cannot be verified"},
		{"wrong secret", signed(t, ts, "/v3.5/chat", wrongSecret, now), http.StatusUnauthorized, "HMAC signature does not match"},
		{"unknown key", signed(t, ts, "/v3.5/chat", unknownKey, now), http.StatusUnauthorized, "HMAC signature does not match"},
		{"signed for another host", ts.URL + "/v3.5/chat?" + query, http.StatusUnauthorized, "HMAC signature does not match"},
		{"signed for another path", ts.URL + "/v3.5/chat?" + v31Query, http.StatusUnauthorized, "HMAC signature does not match"},
		{"stale date", signed(t, ts, "/v3.5/chat", sparkKey, now.Add(-301*time.Second)), http.StatusForbidden,
			"HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"},
		{"future date", signed(t, ts, "/v3.5/chat", sparkKey, now.Add(6*time.Minute)), http.StatusForbidden,
			"HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, msg := sparkReject(t, strings.Replace(tc.url, "http://", "ws://", 1))
			if status != tc.status || msg != tc.message {
				t.Errorf("status %d %q, want %d %q", status, msg, tc.status, tc.message)
			}
		})
	}
	t.Run("a date within the skew", func(t *testing.T) {
		frames, err := sparkChat(t, signed(t, ts, "/v3.5/chat", sparkKey, now.Add(-4*time.Minute)), sparkReq(sparkKey.AppID, "generalv3.5", "user", "hi"))
		closedNormally(t, err)
		if len(frames) == 0 || frames[0].Header.Code != 0 {
			t.Errorf("frames %+v", frames)
		}
	})
	t.Run("POST", func(t *testing.T) {
		resp, err := http.Post(ts.URL+"/v3.5/chat", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST: status %d", resp.StatusCode)
		}
	})
}

func TestSparkRequestErrors(t *testing.T) {
	srv, ts := sparkServer(t, mock.Config{Spark: []mock.SparkKey{sparkKey}})
	badRole := sparkReq(sparkKey.AppID, "generalv3.5", "robot", "hi")
	for _, tc := range []struct {
		name string
		req  any
		code int
	}{
		{"domain of another version", sparkReq(sparkKey.AppID, "generalv3", "user", "hi"), 10404},
		{"app_id of another key", sparkReq("app-2", "generalv3.5", "user", "hi"), 11200},
		{"no messages", sparkReq(sparkKey.AppID, "generalv3.5"), 10163},
		{"bad role", badRole, 10163},
		{"not an object", "hello", 10003},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames, err := sparkChat(t, signed(t, ts, "/v3.5/chat", sparkKey, time.Now()), tc.req)
			closedNormally(t, err)
			if len(frames) != 1 {
				t.Fatalf("%d frames, want one error frame", len(frames))
			}
			h := frames[0].Header
			if h.Code != tc.code || h.Message == "" || h.Sid == "" || h.Status == nil || *h.Status != 2 || frames[0].Payload != nil {
				t.Errorf("frame %+v, want code %d", frames[0], tc.code)
			}
		})
	}
	if st := srv.Stats(); st.Streams != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSparkWithoutCredentials(t *testing.T) {
	_, ts := sparkServer(t, mock.Config{StreamChunks: 2})
	frames, err := sparkChat(t, "ws"+strings.TrimPrefix(ts.URL, "http")+"/v4.0/chat", sparkReq("", "4.0Ultra", "user", "hi"))
	closedNormally(t, err)
	if len(frames) != 2 || frames[1].Payload.Usage == nil {
		t.Errorf("frames %+v", frames)
	}
	// A signed URL is fine too.
	frames, err = sparkChat(t, signed(t, ts, "/v4.0/chat", sparkKey, time.Now()), sparkReq("x", "4.0Ultra", "user", "hi"))
	closedNormally(t, err)
	if len(frames) != 2 {
		t.Errorf("%d frames", len(frames))
	}
}

func TestSparkFunctionCall(t *testing.T) {
	_, ts := sparkServer(t, mock.Config{Spark: []mock.SparkKey{sparkKey}})
	req := sparkReq(sparkKey.AppID, "4.0Ultra", "user", "weather in Hefei?")
	req["payload"].(map[string]any)["functions"] = map[string]any{"text": []any{
		map[string]any{
			"name":        "get_weather",
			"description": "weather in a city",
			"parameters": map[string]any{
				"type": "object",
				"properties": map[string]any{
					"city": map[string]any{"type": "string"},
					"unit": map[string]any{"type": "string", "enum": []string{"celsius", "fahrenheit"}},
				},
				"required": []string{"city", "unit"},
			},
		},
	}}
	frames, err := sparkChat(t, signed(t, ts, "/v4.0/chat", sparkKey, time.Now()), req)
	closedNormally(t, err)
	if len(frames) != 1 {
		t.Fatalf("%d frames, want 1", len(frames))
	}
	f := frames[0]
	item := f.Payload.Choices.Text[0]
	if *f.Header.Status != 2 || f.Payload.Choices.Status != 2 || item.Content == nil || *item.Content != "" || item.Role != "assistant" ||
		item.FunctionCall == nil || item.FunctionCall.Name != "get_weather" || item.FunctionCall.Arguments != `{"city":"sample","unit":"celsius"}` {
		t.Errorf("frame %+v item %+v", f, item)
	}
	if u := f.Payload.Usage; u == nil || u.Text.CompletionTokens < 1 || u.Text.TotalTokens != u.Text.PromptTokens+u.Text.CompletionTokens {
		t.Errorf("usage %+v", u)
	}

	// After the function's result the answer is text.
	msgs := req["payload"].(map[string]any)["message"].(map[string]any)
	msgs["text"] = append(msgs["text"].([]map[string]string),
		map[string]string{"role": "assistant", "content": ""},
		map[string]string{"role": "tool", "content": `{"sky":"clear"}`})
	frames, err = sparkChat(t, signed(t, ts, "/v4.0/chat", sparkKey, time.Now()), req)
	closedNormally(t, err)
	if sparkText(frames) == "" || frames[0].Payload.Choices.Text[0].FunctionCall != nil {
		t.Errorf("frames after the tool result %+v", frames)
	}
}

func TestSparkFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  mock.Config
		code int
	}{
		{"failure", mock.Config{FailureRate: 1}, 10012},
		{"rate limit", mock.Config{RateLimitRate: 1}, 11202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, ts := sparkServer(t, tc.cfg)
			frames, err := sparkChat(t, ts.URL+"/v3.5/chat", sparkReq("a", "generalv3.5", "user", "hi"))
			closedNormally(t, err)
			if len(frames) != 1 || frames[0].Header.Code != tc.code || *frames[0].Header.Status != 2 || frames[0].Header.Message == "" {
				t.Errorf("frames %+v", frames)
			}
			if st := srv.Stats(); st.Failures+st.RateLimited != 1 || st.Streams != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
	t.Run("fail after chunks", func(t *testing.T) {
		srv, ts := sparkServer(t, mock.Config{StreamChunks: 8, FailAfterChunks: 3})
		frames, err := sparkChat(t, ts.URL+"/v3.5/chat", sparkReq("a", "generalv3.5", "user", "hi"))
		if err == nil || websocket.CloseStatus(err) != -1 {
			t.Errorf("read error %v, want an abrupt end without a close frame", err)
		}
		if len(frames) != 3 || *frames[2].Header.Status != 1 {
			t.Errorf("%d frames before the abort, want 3", len(frames))
		}
		if st := srv.Stats(); st.Aborted != 1 || st.CompletionTokens != 0 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("fail after all chunks", func(t *testing.T) {
		_, ts := sparkServer(t, mock.Config{StreamChunks: 4, FailAfterChunks: 4})
		frames, err := sparkChat(t, ts.URL+"/v3.5/chat", sparkReq("a", "generalv3.5", "user", "hi"))
		closedNormally(t, err)
		if len(frames) != 4 {
			t.Errorf("%d frames, want a complete answer", len(frames))
		}
	})
}

func TestSparkOpenAICompatibleHTTP(t *testing.T) {
	// Spark's HTTP API is OpenAI's format with the API password as the
	// bearer key.
	eachTarget(t, mock.Config{Keys: []string{"spark-api-password"}}, func(t *testing.T, tg target) {
		body := map[string]any{"model": "generalv3.5", "messages": userMsg("hi")}
		var cc completion
		decode(t, tg.post(t, "/v1/chat/completions", body, "Authorization", "Bearer spark-api-password"), http.StatusOK, &cc)
		if cc.Model != "generalv3.5" || cc.Choices[0].FinishReason != "stop" {
			t.Errorf("completion %+v", cc)
		}
		expectError(t, tg.post(t, "/v1/chat/completions", body, "Authorization", "Bearer other"), http.StatusUnauthorized, "invalid_request_error", "invalid_api_key")
	})
}

func TestSparkNeedsASocket(t *testing.T) {
	client := &http.Client{Transport: mock.Transport(mock.New(mock.Config{}))}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://mock.test/v3.5/chat", &websocket.DialOptions{HTTPClient: client})
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("dial through Transport: %v, response %v; want 501", err, resp)
	}
}
