package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/sluice-gateway/sluice/breaker"
)

// What an upstream attempt's outcome means is decided here, in one
// table, and nowhere else: whether the request fails over to the next
// candidate, what the credential's breaker learns, how many tokens the
// attempt is charged and whether it is billed, whether the credential
// rests, and whether another model may answer instead. An attempt only
// says what happened (a happening); the failover loop reads the verdict.

// happening is what happened in one upstream attempt.
type happening int

const (
	// The answer was relayed whole: a 2xx body, or a stream to its end.
	answered happening = iota

	// Nothing was sent.
	notBuilt       // the upstream body could not be built
	notExpressible // the adapter cannot express the request for its upstream

	// Before the answer began.
	clientLeft         // the client went away (or the drain timeout ended the request)
	timedOut           // no answer within the channel timeout
	unreachable        // connecting or sending failed
	readFailed         // a complete answer began but could not be read
	rateLimited        // the upstream answered 429
	credentialRejected // 401, 403, 402 (out of credit), or an error naming the key invalid
	upstreamFailed     // 404, 408, 3xx or 5xx
	clientMistake      // another 4xx: the request was wrong, and the client is told
	invalidAnswer      // a 2xx that is not a JSON object
	untranslatable     // a 2xx the adapter could not translate (billed upstream)
	unencodable        // a 2xx the client's API codec could not encode (billed upstream)
	streamFailedEarly  // a stream whose reading failed before its first event
	badStart           // a stream that began with an error, or whose first event could not be encoded
	emptyStream        // a stream that ended before its first event

	// After the answer began: bytes reached the client.
	leftMidway    // the client went away
	drainedMidway // the server's drain timeout ended the stream
	brokenMidway  // the stream broke: an upstream error, idle, cut short, or a read failure

	happenings // the number of happenings
)

// verdict is what follows from a happening.
type verdict struct {
	retry     bool           // fail over to the next candidate
	committed bool           // bytes reached the client: no failover any more
	breaker   breakerOutcome // what the credential's breaker learns
	charge    charge         // the tokens the attempt is charged
	billed    bool           // the attempt's cost is charged to budgets (and reported)
	cooldown  bool           // the credential rests for the upstream's Retry-After
	fallback  fallbackReason // why another model may answer when no credential of this one does
}

// breakerOutcome is what a breaker learns of an attempt.
type breakerOutcome int

const (
	breakerSuccess   breakerOutcome = iota
	breakerFailure                  // counts towards opening it
	breakerIgnored                  // neither: the request's fault, a 429 (a cool-down instead), the server's drain
	breakerCancelled                // the client went away: never the credential's fault
)

// charge is how many tokens an attempt is charged.
type charge int

const (
	chargeNothing  charge = iota // no upstream work, or none the upstream bills
	chargeEstimate               // the reservation: the upstream may have spent it
	chargeUsage                  // what the upstream reported, else the estimate (streams: the chunks seen)
)

// outcomes is the table. Each row's reason is in docs/architecture.md.
// Only the attempt that ends the request is billed: the one that answered,
// or the one the client left (the upstream may bill it whole); failed
// attempts that fail over are not.
var outcomes = [happenings]verdict{
	answered: {committed: true, breaker: breakerSuccess, charge: chargeUsage, billed: true},

	notBuilt:       {breaker: breakerIgnored},
	notExpressible: {retry: true, breaker: breakerIgnored, fallback: reasonUnavailable},

	clientLeft:         {breaker: breakerCancelled, charge: chargeEstimate, billed: true},
	timedOut:           {retry: true, breaker: breakerFailure, charge: chargeEstimate, fallback: reasonTimeout},
	unreachable:        {retry: true, breaker: breakerFailure, fallback: reasonUnavailable},
	readFailed:         {retry: true, breaker: breakerFailure, charge: chargeEstimate, fallback: reasonUnavailable},
	rateLimited:        {retry: true, breaker: breakerIgnored, cooldown: true, fallback: reasonRateLimit},
	credentialRejected: {retry: true, breaker: breakerFailure, fallback: reasonUnavailable},
	upstreamFailed:     {retry: true, breaker: breakerFailure, fallback: reasonUnavailable},
	clientMistake:      {breaker: breakerIgnored, fallback: reasonOfError},
	invalidAnswer:      {retry: true, breaker: breakerFailure, fallback: reasonUnavailable},
	untranslatable:     {retry: true, breaker: breakerFailure, charge: chargeEstimate, fallback: reasonUnavailable},
	unencodable:        {retry: true, breaker: breakerFailure, charge: chargeUsage, fallback: reasonUnavailable},
	streamFailedEarly:  {retry: true, breaker: breakerFailure, fallback: reasonUnavailable},
	badStart:           {retry: true, breaker: breakerFailure, fallback: reasonUnavailable},
	emptyStream:        {retry: true, breaker: breakerFailure, fallback: reasonUnavailable},

	leftMidway:    {committed: true, breaker: breakerCancelled, charge: chargeUsage, billed: true},
	drainedMidway: {committed: true, breaker: breakerIgnored, charge: chargeUsage, billed: true},
	brokenMidway:  {committed: true, breaker: breakerFailure, charge: chargeUsage, billed: true},
}

// errUpstreamFault is what a breaker is told of a failure.
var errUpstreamFault = errors.New("upstream failure")

// err is the outcome for a breaker's done: nil for a success.
func (b breakerOutcome) err() error {
	switch b {
	case breakerFailure:
		return errUpstreamFault
	case breakerIgnored:
		return breaker.ErrNotCounted
	case breakerCancelled:
		return context.Canceled
	}
	return nil
}

// statusHappening classifies an upstream's non-2xx answer. rejected
// reports an error body that names the credential invalid whatever its
// status (Gemini's API_KEY_INVALID comes with a 400).
func statusHappening(status int, rejected bool) happening {
	switch {
	case status == http.StatusTooManyRequests:
		return rateLimited
	case status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusPaymentRequired, status == http.StatusBadRequest && rejected:
		return credentialRejected
	case status == http.StatusNotFound, status == http.StatusRequestTimeout, status >= 500, status < 400:
		return upstreamFailed
	}
	return clientMistake
}

// String names a happening in logs and tests.
func (h happening) String() string {
	if h < 0 || h >= happenings {
		return "unknown"
	}
	return happeningNames[h]
}

var happeningNames = [happenings]string{
	answered: "answered", notBuilt: "not built", notExpressible: "not expressible",
	clientLeft: "client left", timedOut: "timed out", unreachable: "unreachable",
	readFailed: "read failed", rateLimited: "rate limited", credentialRejected: "credential rejected",
	upstreamFailed: "upstream failed", clientMistake: "client mistake", invalidAnswer: "invalid answer",
	untranslatable: "untranslatable", unencodable: "unencodable", streamFailedEarly: "stream failed early",
	badStart: "bad start", emptyStream: "empty stream", leftMidway: "left midway",
	drainedMidway: "drained midway", brokenMidway: "broken midway",
}
