// Package quota decides whether a request may use an upstream credential
// now. It owns the limits of credentials, channels and client keys (rates,
// sliding windows of requests, tokens or money, calendar budgets that
// reset at midnight or on the 1st, concurrency; each optionally per
// model), and cool-downs after an upstream asked to back off.
//
// A limit is data: a list of Window values (window.go) that every backend
// handles the same way. The Limiter interface has a memory backend
// (Memory, one process), a Redis backend (one cluster; one script run per
// decision) and a lease mode on top of Redis (Leased); they share the
// math of math.go, mirrored by the Lua scripts. Being refused is a
// Decision, never an error: an error means the backend itself failed.
package quota

import (
	"context"
	"errors"
	"time"
)

// Candidate is one credential a request may use, with its limit.
// ID is a stable, non-secret identifier.
type Candidate struct {
	ID    string
	Limit Limit
	// Model is the model the candidate would serve, when it is not the
	// request's (a model group routes one request to several): the
	// candidate's and its channel's windows of that model apply.
	Model string
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
	// Group names the client's group ("" for none) and GroupLimit is the
	// group's: checked and held with the client's.
	Group      string
	GroupLimit Limit
	// Candidates are tried in order; the first with capacity is granted.
	Candidates []Candidate
	// Model is the model called (config.ModelKey): the windows of that
	// model apply, with the windows of every model.
	Model string
	// Reserve is what the request may use at most: held against the
	// token and money windows until Settle corrects it to what it used.
	Reserve Amount
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
	ID       string // credential granted
	Index    int    // its position in Request.Candidates
	Client   string
	Model    string    // the request's model
	Served   string    // the candidate's model, when it is not the request's
	Reserved Amount    // what the request reserved
	At       time.Time // when the reservation was recorded (backend clock)
	Lease    string    // concurrency lease, when the backend issues one

	CredentialLimit Limit
	ClientLimit     Limit
	Group           string
	GroupLimit      Limit
	Pool            string
	PoolLimit       Limit

	// Backend names the limiter that issued the grant, so that a grant
	// issued during a fallback is settled where it was taken.
	Backend string
}

// served is the model a candidate serves.
func (c Candidate) served(req Request) string {
	if c.Model != "" {
		return c.Model
	}
	return req.Model
}

// served is the model the granted credential serves.
func (g Grant) served() string {
	if g.Served != "" {
		return g.Served
	}
	return g.Model
}

// Split separates a grant into its credential part and its client part
// (the client's and its group's).
// A request that fails over keeps its one place in the client's quota: it
// settles each attempt's credential part when the attempt ends, acquires
// later attempts without the client, and settles the client part once,
// when the request ends.
func (g Grant) Split() (credential, client Grant) {
	credential = g
	credential.Client, credential.ClientLimit, credential.Group, credential.GroupLimit = "", Limit{}, "", Limit{}
	client = Grant{Client: g.Client, ClientLimit: g.ClientLimit, Group: g.Group, GroupLimit: g.GroupLimit,
		Model: g.Model, Reserved: g.Reserved, At: g.At, Lease: g.Lease, Backend: g.Backend}
	return credential, client
}

// Scope says whose limit refused a request.
type Scope string

// Scopes of a refusal.
const (
	ScopeClient     Scope = "client"
	ScopeGroup      Scope = "group" // the client's group
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
	ReasonTooLarge    Reason = "too_large" // the estimate exceeds a limit outright
	ReasonBudget      Reason = "budget"    // a calendar budget (or a money window) is used up
	ReasonRequests    Reason = "requests"  // a requests window of another width
	ReasonTokens      Reason = "tokens"    // a tokens window of another width
)

// Meter reports one limit for rate-limit response headers. A zero Limit
// means nothing to report.
type Meter struct {
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
	Requests Meter
	Tokens   Meter

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
	// the reservation to what the request used.
	Settle(ctx context.Context, g Grant, used Amount) error
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

// Usage is the live state of one subject: each of its windows, requests
// in flight and the cool-down left.
type Usage struct {
	Windows      []Level       `json:"windows"`
	InFlight     int64         `json:"in_flight"`
	CooldownLeft time.Duration `json:"cooldown_left"`
}

// Level is one window's state.
type Level struct {
	Name  string `json:"name"` // Window.Name: rpm, tpd, usd/month, rpm@gpt-4o
	Unit  Unit   `json:"unit"`
	Model string `json:"model,omitempty"`
	Meter
	// Resets is when a calendar window starts again from zero.
	Resets time.Time `json:"resets,omitzero"`
	kind   Kind
}

// Level returns the meter of the window named name (zero if none).
func (u Usage) Level(name string) Meter {
	for _, l := range u.Windows {
		if l.Name == name {
			return l.Meter
		}
	}
	return Meter{}
}

// Find returns the level of the window named name.
func (u Usage) Find(name string) (Level, bool) {
	for _, l := range u.Windows {
		if l.Name == name {
			return l, true
		}
	}
	return Level{}, false
}
