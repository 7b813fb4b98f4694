package gateway

import (
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/gateway/provider/mock"
	"github.com/sluice-gateway/sluice/gateway/tokens"
	"github.com/sluice-gateway/sluice/integration/redistest"
)

// qianfanCluster is a native Qianfan channel with one key pair.
const qianfanCluster = `
channels:
  - name: ernie
    type: qianfan
    base_url: UPSTREAM
    models: [ERNIE-Speed-8K]
    credentials:
      - {id: qf-main, key: qf-api-key, secret_key: qf-secret-key}
`

// TestTokensSharedAcrossInstances: three instances on one Redis serve 300
// concurrent calls with one token request in all; when Qianfan revokes
// the token, one refresh serves every call again, each refused call
// retried, none failed.
func TestTokensSharedAcrossInstances(t *testing.T) {
	rs := redistest.Start(t)
	srv := mock.New(mock.Config{Accounts: []mock.Account{{ID: "qf-api-key", Secret: "qf-secret-key"}}})
	up := httptest.NewServer(srv)
	defer up.Close()
	var gws []*httptest.Server
	for range 3 {
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
		t.Cleanup(func() { rdb.Close() })
		_, gw := startGatewayDeps(t, Deps{Tokens: tokens.New(tokens.Config{Redis: rdb, Prefix: "sluice:"})}, qianfanCluster, "UPSTREAM", up.URL)
		gws = append(gws, gw)
	}
	load := func() (failed int64) {
		var wg sync.WaitGroup
		var bad atomic.Int64
		for i := range 300 {
			wg.Go(func() {
				resp, body := chat(t, gws[i%3], "ERNIE-Speed-8K")
				if resp.StatusCode != 200 {
					bad.Add(1)
					t.Logf("call %d: %d %s", i, resp.StatusCode, body)
				}
			})
		}
		wg.Wait()
		return bad.Load()
	}
	if failed := load(); failed != 0 {
		t.Fatalf("%d of 300 calls failed", failed)
	}
	if st := srv.Stats(); st.TokensIssued != 1 || st.TokensRefused != 0 {
		t.Fatalf("3 instances, 300 calls: %d token requests and %d refusals, want 1 and 0", st.TokensIssued, st.TokensRefused)
	}

	srv.RevokeTokens()
	if failed := load(); failed != 0 {
		t.Fatalf("after the revoke, %d of 300 calls failed", failed)
	}
	st := srv.Stats()
	if st.TokensIssued != 2 {
		t.Fatalf("after the revoke: %d token requests in all, want 2 (one refresh for the cluster)", st.TokensIssued)
	}
	// Each call that carried the revoked token was refused once and then
	// retried with the fresh one: at most one refusal per call in flight.
	if st.TokensRefused == 0 || st.TokensRefused > 300 {
		t.Fatalf("%d calls refused for the revoked token", st.TokensRefused)
	}
	t.Logf("after the revoke: %d calls refused and retried, 1 refresh", st.TokensRefused)
}
