package gateway

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
)

// cloudChannels serves one model per cloud provider's native API, each
// credential holding what that provider's own clients hold: key pairs,
// a service account's key, an app key. All of them are the one mock,
// which checks every signature and token as its provider does.
const cloudChannels = `
clients: [{name: app, key: sk-app}]
channels:
  - {name: ernie, type: qianfan, base_url: U, models: [ERNIE-Speed-8K, Embedding-V1],
     credentials: [{id: qf-1, key: qf-api-key, secret_key: qf-secret-key}]}
  - {name: hunyuan, type: hunyuan, base_url: U, models: [hunyuan-lite, hunyuan-embedding],
     credentials: [{id: hy-1, key: AKIDsluice, secret_key: tc-secret-key, region: ap-guangzhou}]}
  - {name: ark, type: huoshan, base_url: U/api/v3, token_url: U, models: [doubao-pro, doubao-embedding],
     model_map: {doubao-pro: ep-20240612090709-hzjz5, doubao-embedding: ep-20240612090709-embed},
     credentials: [{id: ark-1, key: AKLTsluice, secret_key: volc-secret-key}]}
  - {name: vertex, type: vertexai, base_url: U, models: [gemini-2.0-flash, text-embedding-005],
     credentials: [{id: vx-1, region: us-central1, key: 'SERVICE_ACCOUNT'}]}
  - {name: dify, type: dify, base_url: U/v1, models: [dify-app], credentials: [{id: dify-1, key: app-dify-key}]}
  - {name: dashscope, type: dashscope, base_url: U, models: [qwen-plus, text-embedding-v3], credentials: [{id: ds-1, key: sk-dashscope}]}
  - {name: bailian, type: bailian, base_url: U, models: [qwen-max], credentials: [{id: bl-1, key: sk-bailian}]}
`

// cloudUpstream is the mock with every credential of cloudChannels, and
// the service account's key file pointed at its token endpoint.
func cloudUpstream(t testing.TB) (*upstream, *mock.Server, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	const email = "sluice@sluice-project.iam.gserviceaccount.com"
	srv := mock.New(mock.Config{
		StreamChunks: 4,
		Keys:         []string{"app-dify-key", "sk-dashscope", "sk-bailian"},
		Accounts: []mock.Account{
			{ID: "qf-api-key", Secret: "qf-secret-key"},
			{ID: "AKIDsluice", Secret: "tc-secret-key"},
			{ID: "AKLTsluice", Secret: "volc-secret-key"},
		},
		ServiceAccounts: map[string]string{email: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))},
	})
	up := newUpstream(t, srv)
	sa, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "sluice-project", "private_key_id": "k1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": email, "token_uri": up.URL + "/token",
	})
	return up, srv, string(sa)
}

// TestOpenAISDKCloudChannels drives each new native channel type with the
// official OpenAI SDK: chat, stream, tools where the provider has them,
// embeddings where it has them.
func TestOpenAISDKCloudChannels(t *testing.T) {
	up, srv, sa := cloudUpstream(t)
	_, gw := startGateway(t, cloudChannels, "U", up.URL, "SERVICE_ACCOUNT", sa)
	client := sdkClient(gw, "sk-app")
	ctx := context.Background()

	for _, tc := range []struct {
		model, embed string
		tools        bool
	}{
		{"ERNIE-Speed-8K", "Embedding-V1", true},
		{"hunyuan-lite", "hunyuan-embedding", true},
		{"doubao-pro", "doubao-embedding", true},
		{"gemini-2.0-flash", "text-embedding-005", true},
		{"dify-app", "", false},
		{"qwen-plus", "text-embedding-v3", true},
		{"qwen-max", "", true},
	} {
		t.Run(tc.model, func(t *testing.T) {
			res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
				Model:    tc.model,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Hello!")},
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Choices[0].Message.Content == "" || res.Choices[0].FinishReason != "stop" || res.Usage.TotalTokens == 0 {
				t.Fatalf("chat %s", res.RawJSON())
			}

			stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
				Model:         tc.model,
				Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story")},
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			})
			var acc openai.ChatCompletionAccumulator
			chunks := 0
			for stream.Next() {
				acc.AddChunk(stream.Current())
				chunks++
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if chunks < 3 || acc.Choices[0].Message.Content == "" || acc.Usage.TotalTokens == 0 {
				t.Fatalf("stream: %d chunks, %+v", chunks, acc.ChatCompletion)
			}

			params := openai.ChatCompletionNewParams{
				Model:    tc.model,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What's the weather in Paris?")},
				Tools:    []openai.ChatCompletionToolUnionParam{weatherTool},
			}
			if !tc.tools {
				var apiErr *openai.Error
				if _, err := client.Chat.Completions.New(ctx, params); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
					t.Fatalf("tools on an upstream without them: %v, want a 400", err)
				}
			} else {
				res, err := client.Chat.Completions.New(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				checkToolCall(t, res.Choices[0].FinishReason, res.Choices[0].Message.ToolCalls)
				stream := client.Chat.Completions.NewStreaming(ctx, params)
				var acc openai.ChatCompletionAccumulator
				for stream.Next() {
					acc.AddChunk(stream.Current())
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				checkToolCall(t, acc.Choices[0].FinishReason, acc.Choices[0].Message.ToolCalls)
			}

			if tc.embed != "" {
				res, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
					Model: tc.embed,
					Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "bc"}},
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Data) != 2 || len(res.Data[1].Embedding) == 0 || res.Data[1].Index != 1 {
					t.Fatalf("embeddings %s", res.RawJSON())
				}
			}
		})
	}
	st := srv.Stats()
	// Qianfan's token, Vertex AI's token and Ark's keys (one per
	// endpoint) were fetched once each for all these calls.
	if st.TokensIssued != 4 || st.TokensRefused != 0 {
		t.Fatalf("%d tokens issued, %d refused: want 4 and 0", st.TokensIssued, st.TokensRefused)
	}
	// No upstream secret reached a client: the SDK saw no error at all,
	// and the gateway's answers carry none (checked on the last ones).
	for _, secret := range []string{"qf-secret-key", "tc-secret-key", "volc-secret-key", "PRIVATE KEY"} {
		if strings.Contains(up.lastBody(), secret) {
			t.Fatalf("%q sent upstream in a body", secret)
		}
	}
}
