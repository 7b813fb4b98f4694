// Package quota decides whether a request may use an upstream credential
// now. It owns per-credential limits (QPS with burst, RPM, TPM, daily
// requests and tokens, concurrency), per-client quotas, and cool-downs
// after an upstream asked to back off.
//
// The Limiter interface has a memory backend (Memory, one process) and a
// Redis backend (one cluster); both implement the same math, written once
// in math.go and mirrored by the Lua scripts. Being refused is a Decision,
// never an error: an error means the backend itself failed.
package quota

import (
	"context"
	"errors"
	"time"
)

// Limit is the capacity of one subject (a credential or a client key).
// The zero value means "unlimited": every zero field is a limit that is
// not enforced.
type Limit struct {
	// QPS is the sustained request rate of a token bucket (GCRA).
	QPS float64 `json:"qps,omitempty"`
	// Burst is how many requests may arrive at once on an idle bucket.
	// Zero means max(1, ceil(QPS)).
	Burst int64 `json:"burst,omitempty"`
	// RPM and RPD cap requests in any sliding 60 s and 24 h window.
	RPM int64 `json:"rpm,omitempty"`
	RPD int64 `json:"rpd,omitempty"`
	// TPM and TPD cap tokens in any sliding 60 s and 24 h window. A
	// request reserves its estimate when admitted and settles its real
	// usage when it ends.
	TPM int64 `json:"tpm,omitempty"`
	TPD int64 `json:"tpd,omitempty"`
	// Concurrency caps requests in flight.
	Concurrency int64 `json:"concurrency,omitempty"`
}

// IsZero reports whether l enforces nothing.
func (l Limit) IsZero() bool { return l == Limit{} }

// burst returns the effective bucket size.
func (l Limit) burst() int64 {
	if l.Burst > 0 {
		return l.Burst
	}
	b := int64(l.QPS)
	if float64(b) < l.QPS {
		b++
	}
	return max(b, 1)
}

// Candidate is one credential a request may use, with its limit.
// ID is a stable, non-secret identifier.
type Candidate struct {
	ID    string
	Limit Limit
	// Pool, when set, names a limit the candidate shares with others (the
	// credentials of one channel, together); PoolLimit caps them as a
	// whole. A candidate is granted only if both have room.
	Pool      string
	PoolLimit Limit
}

// Request asks for capacity on the first candidate that has some.
type Request struct {
	// Client names the client key ("" for none) and ClientLimit is its
	// quota; a client over its quota is refused whatever the candidates.
	Client      string
	ClientLimit Limit
	// Candidates are tried in order; the first with capacity is granted.
	Candidates []Candidate
	// Tokens is the estimate reserved against TPM/TPD until Settle.
	Tokens int64
	// Sticky, when set, names a sticky mapping (affinity.Key): the
	// candidate it maps to is tried first, and the candidate granted is
	// remembered under it for StickyTTL, restarted by every use. The
	// Redis backend reads and writes it in the same round trip.
	Sticky    string
	StickyTTL time.Duration
	// StickyTier limits stickiness to the first StickyTier candidates
	// (the top priority tier): a session that failed over to a fallback
	// goes back to the top tier as soon as it can. 0: any candidate.
	StickyTier int
}

// Grant is capacity held on one credential. Callers read ID and Index and
// hand the whole value back to Settle exactly once; the other fields are
// what the backend needs to undo or correct its bookkeeping.
type Grant struct {
	ID     string // credential granted
	Index  int    // its position in Request.Candidates
	Client string
	Tokens int64     // tokens reserved
	At     time.Time // when the reservation was recorded (backend clock)
	Lease  string    // concurrency lease, when the backend issues one

	CredentialLimit Limit
	ClientLimit     Limit
	Pool            string
	PoolLimit       Limit

	// Backend names the limiter that issued the grant, so that a grant
	// issued during a fallback is settled where it was taken.
	Backend string
}

// Split separates a grant into its credential part and its client part.
// A request that fails over keeps its one place in the client's quota: it
// settles each attempt's credential part when the attempt ends, acquires
// later attempts without the client, and settles the client part once,
// when the request ends.
func (g Grant) Split() (credential, client Grant) {
	credential = g
	credential.Client, credential.ClientLimit = "", Limit{}
	client = Grant{Client: g.Client, ClientLimit: g.ClientLimit, Tokens: g.Tokens, At: g.At, Lease: g.Lease, Backend: g.Backend}
	return credential, client
}

// Scope says whose limit refused a request.
type Scope string

// Scopes of a refusal.
const (
	ScopeClient     Scope = "client"
	ScopeCredential Scope = "credential"
)

// Reason names the limit that refused a request.
type Reason string

// Reasons for a refusal.
const (
	ReasonQPS         Reason = "qps"
	ReasonRPM         Reason = "rpm"
	ReasonRPD         Reason = "rpd"
	ReasonTPM         Reason = "tpm"
	ReasonTPD         Reason = "tpd"
	ReasonConcurrency Reason = "concurrency"
	ReasonCooldown    Reason = "cooldown"
	ReasonTooLarge    Reason = "too_large" // the estimate exceeds a token limit outright
)

// Window reports one limit for rate-limit response headers. A zero Limit
// means nothing to report.
type Window struct {
	Limit     int64
	Remaining int64
	Reset     time.Duration // until the window has room again (fully, for Remaining == Limit)
}

// Decision is the outcome of Acquire.
type Decision struct {
	Allowed bool
	Grant   Grant // valid when Allowed

	// When refused: whose limit, which limit, and when trying again may
	// succeed. RetryAfter <= 0 on a refusal means waiting will not help
	// (the request is larger than a limit).
	Scope      Scope
	Reason     Reason
	RetryAfter time.Duration

	// Requests and Tokens describe the tightest request and token limits
	// that apply to the caller: the client's when it has a quota, else
	// the binding credential's on a refusal.
	Requests Window
	Tokens   Window

	// StickyHit reports that the sticky mapping named a candidate, which
	// was tried first.
	StickyHit bool
	// Mode is "" while the shared backend decides; when it is unreachable
	// it names the fallback policy that decided instead ("local", "open").
	Mode string
}

// Limiter grants capacity on credentials. Implementations are safe for
// concurrent use.
type Limiter interface {
	// Acquire grants capacity on the first candidate that has it, and
	// records the take, atomically with the client's quota.
	Acquire(ctx context.Context, req Request) (Decision, error)
	// Settle ends a grant: it releases the concurrency slot and corrects
	// the token reservation to the tokens actually used.
	Settle(ctx context.Context, g Grant, usedTokens int64) error
	// Cooldown makes a credential unavailable for d (an upstream said
	// Retry-After). A shorter cool-down never shortens a longer one.
	Cooldown(ctx context.Context, id string, d time.Duration) error
}

// ErrBackend marks failures of the store behind a Limiter.
var ErrBackend = errors.New("quota backend unavailable")

// StickyStore keeps sticky mappings for a Memory limiter, instead of its
// own memory.
type StickyStore interface {
	// Get returns the credential stored for key ("" if none) and
	// restarts its time to live.
	Get(ctx context.Context, key string) (string, error)
	// Set stores the credential for key.
	Set(ctx context.Context, key, id string) error
}
