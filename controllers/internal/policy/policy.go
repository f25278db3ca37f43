/*
Copyright 2026 The dingtalk-token-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package policy is the refresh policy: every rule that says WHEN DingTalk is called. Each rule is
// a named, pure function of Input (no clock, no I/O), tried in order, so that the whole policy is
// tested as a table with a fake clock. docs/design.md ("The refresh decision") explains them.
package policy

import (
	"encoding/binary"
	"math"
	"strconv"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// Timing constants of the refresh policy.
const (
	// minRefreshBefore is the lower clamp of spec.refreshBefore (admission enforces it too).
	minRefreshBefore = 2 * time.Minute
	// refreshJitter is the upper bound of the refresh jitter, as a fraction of refreshBefore.
	refreshJitter = 0.10
	// backoffBase and backoffCap shape the retry delay after a failure: min(5s*2^(n-1), 5m).
	backoffBase = 5 * time.Second
	backoffCap  = 5 * time.Minute
	// backoffJitter is the +-fraction applied to the backoff delay.
	backoffJitter = 0.10
	// stickyRetry is how often failures a retry cannot fix (rejected credentials, exhausted quota,
	// a refused refresh token) are retried while the credentials stay the same.
	stickyRetry = time.Hour
	// minRequeue is the shortest RequeueAfter ever returned: never zero or negative.
	minRequeue = time.Second
	// requestSkew is how far in the future a refresh request (the refresh-requested-at
	// annotation) may lie and still count: the clock of whoever set it may run ahead of ours.
	requestSkew = time.Minute
	// minCallInterval spaces the DingTalk calls of one object, whatever starts its passes.
	minCallInterval = 5 * time.Second
	// credentialsChangeInterval spaces the calls credentials changes trigger: a tenant rewriting
	// its Secret in a loop gets one call per interval; a change during the hold is acted on when
	// it ends.
	credentialsChangeInterval = 10 * time.Second
	// stampPrecision is the precision of status times (whole seconds, rounded down): the holds
	// counted from them add it, so that the real interval is never shorter.
	stampPrecision = time.Second
)

// failureKind tells how a failed attempt gates the next DingTalk call.
type failureKind int

const (
	// failureNone: the last attempt succeeded (or there was none).
	failureNone failureKind = iota
	// failureLocal: the pass failed before calling DingTalk (missing credentials, a conflict, a bad
	// template). Nothing gates the next call; the pass is only re-checked on the backoff schedule.
	failureLocal
	// failureTransient: DingTalk was unavailable or throttled; retried with exponential backoff.
	failureTransient
	// failureSticky: retrying cannot help until the credentials change; retried at most hourly.
	failureSticky
)

// Failed reports whether a Refreshed reason is a failure (Ready then reports it while no valid
// token is held).
func Failed(reason string) bool { return kindOf(reason) != failureNone }

// kindOf classifies a Refreshed reason.
func kindOf(reason string) failureKind {
	switch reason {
	case "", v1alpha1.ReasonTokenIssued, v1alpha1.ReasonRolloutRestartFailed, v1alpha1.ReasonPending:
		return failureNone
	case v1alpha1.ReasonRateLimited, v1alpha1.ReasonProviderUnavailable:
		return failureTransient
	case v1alpha1.ReasonCredentialsRejected, v1alpha1.ReasonQuotaExceeded, v1alpha1.ReasonReauthorizationRequired:
		return failureSticky
	default:
		return failureLocal
	}
}

// Input is everything the refresh decision depends on. The pass builds it from what it gathered
// (clock, status, spec, the token the target holds) and the credentials just read; nothing in it
// is a secret.
type Input struct {
	// Now is the clock's time for this pass.
	Now time.Time
	// UID seeds the backoff jitter (and the refresh jitter when JitterSeed is empty).
	UID types.UID
	// JitterSeed seeds the refresh jitter of the held token: it names the token, so every object
	// holding the same token (a credential set) falls due at the same time, and the jitter spreads
	// credential sets instead of pulling each set forward to its earliest member.
	JitterSeed string
	// RefreshBefore is spec.refreshBefore (nil: one third of the lifetime).
	RefreshBefore *metav1.Duration
	// IssuedAt and ExpiresAt bound the last good token; both zero when there is none.
	IssuedAt, ExpiresAt time.Time
	// FailedAttempts, LastFailure and FailureReason describe the failures since the last success.
	FailedAttempts int32
	LastFailure    time.Time
	FailureReason  string
	// LastCredentialsDigest and LastSuiteTicketDigest are the digests of the credentials the last
	// attempt used (status).
	LastCredentialsDigest, LastSuiteTicketDigest string
	// CredentialsDigest and SuiteTicketDigest are the digests of the credentials read in this pass
	// ("" when they could not be read, or when the type has no suite ticket).
	CredentialsDigest, SuiteTicketDigest string
	// SpecChanged is true when metadata.generation differs from status.observedGeneration.
	SpecChanged bool
	// RetryAfterFloor is the earliest call DingTalk allows for this credential set (zero: none).
	RetryAfterFloor time.Time
	// RefreshRequestedAt is the time of a refresh requested with the refresh-requested-at
	// annotation, in whole seconds, at most a minute ahead of Now (zero: none, or not valid).
	RefreshRequestedAt time.Time
	// AwaitingTicket: the suite ticket comes from DingTalk Stream mode and none was pushed yet
	// (nor seeded by the credentials Secret).
	AwaitingTicket bool
	// Unused: nothing would receive a token (a ClusterDingTalkToken that selects no namespace).
	Unused bool
}

// Issued is a token's timing as the policies see it: a token another object of the same
// credential set fetched moments ago (AcceptShared).
type Issued struct {
	IssuedAt, ExpiresAt time.Time
	// JitterSeed seeds the token's refresh jitter (Input.JitterSeed).
	JitterSeed string
}

// Decision says whether this pass calls DingTalk, and why (for the logs).
type Decision struct {
	Fetch bool
	Why   string
}

// rule is one rule of the refresh decision: it decides (ok) or leaves it to the next rule.
type rule func(in Input) (d Decision, ok bool)

// rules are the rules in order; the first that decides wins. A pass triggered by
// anything but a due time, a spec or credentials change or a refresh request finds nothing due
// and makes no call.
var rules = append([]rule{holdWhileUnused, waitForSuiteTicket, waitForRetryAfter, holdForCallBudget}, budgetedRules...)

// budgetedRules are the rules the call budget holds back.
var budgetedRules = []rule{
	holdCredentialsChange,
	refreshOnCredentialsChange,
	refreshOnTicketAfterFailure,
	refreshOnRequest,
	holdWhileValid,
	holdForBackoff,
	fetchFirstToken,
	refreshWhenDue,
}

// Decide is the refresh policy: whether this pass calls DingTalk.
func Decide(in Input) Decision { return decideBy(rules, in) }

func decideBy(policies []rule, in Input) Decision {
	for _, p := range policies {
		if d, ok := p(in); ok {
			return d
		}
	}
	return Decision{Why: "no rule applies"}
}

// holdWhileUnused: a token nothing would receive is not fetched; the namespace that starts to
// match re-queues the object.
func holdWhileUnused(in Input) (Decision, bool) {
	return Decision{Why: "nothing uses the token"}, in.Unused
}

// waitForSuiteTicket: without any suite ticket there is nothing to call DingTalk with; the first
// push re-queues the object.
func waitForSuiteTicket(in Input) (Decision, bool) {
	return Decision{Why: "no suite ticket pushed yet"}, in.AwaitingTicket
}

// waitForRetryAfter: DingTalk's Retry-After for the credential set holds back every call.
func waitForRetryAfter(in Input) (Decision, bool) {
	return Decision{Why: "DingTalk asked to retry later"}, in.Now.Before(in.RetryAfterFloor)
}

// holdForCallBudget: one object never calls DingTalk more often than once per minCallInterval,
// counted from the last time status shows it may have called (a token issued, a failure), so that
// a restart keeps the spacing and no sequence of passes or failures shortens it.
func holdForCallBudget(in Input) (Decision, bool) {
	return Decision{Why: "call budget: the last call was less than 5s ago"}, in.Now.Before(in.callFloor())
}

// holdCredentialsChange: a credentials change is acted on at most once per
// credentialsChangeInterval; one during the hold is acted on when it ends (NextAttempt).
func holdCredentialsChange(in Input) (Decision, bool) {
	return Decision{Why: "credentials changed less than 10s after the last call: held"},
		in.credentialsChangePending() && in.Now.Before(in.credentialsHoldEnd())
}

// refreshOnCredentialsChange: new credentials (other than the suite ticket) refresh at once,
// even past a backoff or the hourly retry of a rejected credential, once the hold allows.
func refreshOnCredentialsChange(in Input) (Decision, bool) {
	return Decision{Fetch: true, Why: "credentials changed"}, in.credentialsChanged() && in.LastCredentialsDigest != ""
}

// refreshOnTicketAfterFailure: a new suite ticket alone waits for the due time (DingTalk pushes
// one every few hours), unless the last attempt failed: then it may be the fix.
func refreshOnTicketAfterFailure(in Input) (Decision, bool) {
	return Decision{Fetch: true, Why: "suite ticket changed after a failed attempt"}, in.ticketChanged() && in.FailedAttempts > 0
}

// refreshOnRequest: a refresh requested after the held token was issued refreshes once, when the
// requested time has come and the backoff allows.
func refreshOnRequest(in Input) (Decision, bool) {
	return Decision{Fetch: true, Why: "refresh requested"},
		in.requestPending() && !in.Now.Before(in.RefreshRequestedAt) && !in.Now.Before(in.Gate())
}

// holdWhileValid: a token that is not due yet is kept.
func holdWhileValid(in Input) (Decision, bool) {
	return Decision{Why: "not due"}, in.hasToken() && in.Now.Before(in.dueAt())
}

// holdForBackoff: after a failure, the next call waits for the backoff (or the hourly retry).
func holdForBackoff(in Input) (Decision, bool) {
	return Decision{Why: "backing off"}, in.Now.Before(in.Gate())
}

// fetchFirstToken: without a token, fetch one.
func fetchFirstToken(in Input) (Decision, bool) {
	return Decision{Fetch: true, Why: "no token"}, !in.hasToken()
}

// refreshWhenDue: the held token is due.
func refreshWhenDue(Input) (Decision, bool) {
	return Decision{Fetch: true, Why: "refresh due"}, true
}

// AcceptShared is the policy for a token another object of the same credential set fetched
// moments ago: it is taken instead of a call when it is newer than the held one, not itself due
// for this object, and issued after a refresh this object's owner requested. One call per
// refresh window then serves the whole set; its due time is the token's (its JitterSeed), the
// same for every member.
func AcceptShared(in Input, t Issued) bool {
	newer := !in.hasToken() || t.ExpiresAt.After(in.ExpiresAt)
	notDue := in.Now.Before(refreshAt(seedOr(t.JitterSeed, in.UID), t.IssuedAt, t.ExpiresAt, in.RefreshBefore))
	servesRequest := !in.requestPending() || !t.IssuedAt.Before(in.RefreshRequestedAt)
	return newer && notDue && servesRequest
}

// hasToken reports whether a last good token exists (expired or not).
func (in Input) hasToken() bool { return !in.ExpiresAt.IsZero() }

// dueAt is when the held token should be refreshed; zero (always due) when there is no token.
func (in Input) dueAt() time.Time {
	if !in.hasToken() {
		return time.Time{}
	}
	return refreshAt(seedOr(in.JitterSeed, in.UID), in.IssuedAt, in.ExpiresAt, in.RefreshBefore)
}

// seedOr is the refresh jitter's seed: a token's seed, else the object's UID.
func seedOr(seed string, uid types.UID) string {
	if seed != "" {
		return seed
	}
	return string(uid)
}

// requestPending reports whether a refresh was requested after the held token was issued.
func (in Input) requestPending() bool {
	return !in.RefreshRequestedAt.IsZero() && in.RefreshRequestedAt.After(in.IssuedAt)
}

// credentialsChanged reports whether the credentials (other than the suite ticket) differ from those
// of the last attempt.
func (in Input) credentialsChanged() bool {
	return in.CredentialsDigest != "" && in.CredentialsDigest != in.LastCredentialsDigest
}

// ticketChanged reports whether only the suite ticket differs from the last attempt's.
func (in Input) ticketChanged() bool {
	return in.SuiteTicketDigest != "" && in.LastSuiteTicketDigest != "" &&
		in.SuiteTicketDigest != in.LastSuiteTicketDigest
}

// credentialsChangePending reports whether a credentials change waits to be acted on: new
// credentials, or a new suite ticket after a failed attempt.
func (in Input) credentialsChangePending() bool {
	return in.credentialsChanged() && in.LastCredentialsDigest != "" || in.ticketChanged() && in.FailedAttempts > 0
}

// lastCall is the latest status time at which this object may have called DingTalk: its token's
// issue time or its last failure (zero: none).
func (in Input) lastCall() time.Time { return latest(in.IssuedAt, in.LastFailure) }

// callFloor is the earliest time the call budget allows the next call (zero: none).
func (in Input) callFloor() time.Time {
	if last := in.lastCall(); !last.IsZero() {
		return last.Add(stampPrecision + minCallInterval)
	}
	return time.Time{}
}

// credentialsHoldEnd is the earliest time a credentials change may call DingTalk (zero: at once).
func (in Input) credentialsHoldEnd() time.Time {
	if last := in.lastCall(); !last.IsZero() {
		return last.Add(stampPrecision + credentialsChangeInterval)
	}
	return time.Time{}
}

// Gate is the earliest time the backoff allows the next DingTalk call (zero: no gate).
func (in Input) Gate() time.Time {
	if in.FailedAttempts <= 0 || in.LastFailure.IsZero() {
		return time.Time{}
	}
	switch kindOf(in.FailureReason) {
	case failureSticky:
		return in.LastFailure.Add(stickyRetry)
	case failureTransient:
		if in.SpecChanged {
			return time.Time{}
		}
		next := in.LastFailure.Add(backoffDelay(in.UID, in.FailedAttempts))
		// Never back off past the token's expiry: that is the last moment a retry can still help.
		if in.hasToken() && in.ExpiresAt.After(in.LastFailure) && in.ExpiresAt.Before(next) {
			next = in.ExpiresAt
		}
		return next
	default:
		return time.Time{}
	}
}

// NextAttempt is when the next refresh attempt will happen if nothing else changes: the due time
// (or a pending request's time, when earlier), held back by the backoff, by DingTalk's
// Retry-After and by the call budget; or the end of the hold of a credentials change. It is what
// status.refreshTime shows.
func NextAttempt(in Input) time.Time {
	if in.AwaitingTicket || in.Unused {
		return time.Time{} // a push, or a namespace that starts to match, re-queues the object
	}
	if in.credentialsChangePending() && in.Now.Before(in.credentialsHoldEnd()) {
		// A held credentials change is acted on when the hold ends, past any backoff.
		return latest(in.credentialsHoldEnd(), in.RetryAfterFloor)
	}
	if floor := in.callFloor(); in.Now.Before(floor) && in.CredentialsDigest != "" && decideBy(budgetedRules, in).Fetch {
		// A call the budget alone held back (readable credentials, a token due or missing) is
		// made when the budget allows, not on the slower re-check schedule of a local failure.
		return latest(floor, in.RetryAfterFloor)
	}
	next := in.dueAt()
	if next.IsZero() {
		next = in.Now
	}
	if in.requestPending() && in.RefreshRequestedAt.Before(next) {
		next = in.RefreshRequestedAt
	}
	gate := in.Gate()
	if k := kindOf(in.FailureReason); k == failureLocal && in.FailedAttempts > 0 && !in.LastFailure.IsZero() {
		// Nothing was called: re-check (the Secret may exist now, the conflict may be gone) on the
		// ordinary backoff schedule.
		gate = in.LastFailure.Add(backoffDelay(in.UID, in.FailedAttempts))
	}
	return latest(next, gate, in.RetryAfterFloor, in.callFloor())
}

// effectiveRefreshBefore is how long before expiry a token of this lifetime is refreshed: the spec
// value, or one third of the lifetime, at most half the lifetime. The 2m lower clamp applies to the
// spec value only, so short-lived (test) tokens keep lifetime/3.
func effectiveRefreshBefore(lifetime time.Duration, spec *metav1.Duration) time.Duration {
	eff := lifetime / 3
	if spec != nil {
		eff = max(spec.Duration, minRefreshBefore)
	}
	return max(min(eff, lifetime/2), 0)
}

// refreshAt is expiresAt - effective - j, j in [0, 10% of effective) from hash(seed, expiresAt),
// truncated to the second: stable across passes, spread across seeds (tokens).
func refreshAt(seed string, issuedAt, expiresAt time.Time, spec *metav1.Duration) time.Time {
	lifetime := expiresAt.Sub(issuedAt)
	if issuedAt.IsZero() || lifetime <= 0 {
		// Without a known lifetime nothing can be planned: due now (the zero time).
		return time.Time{}
	}
	eff := effectiveRefreshBefore(lifetime, spec)
	j := time.Duration(unitFraction(types.UID(seed), "refresh", timeKey(expiresAt)) * refreshJitter * float64(eff))
	return expiresAt.Add(-eff - j).Truncate(time.Second)
}

// backoffDelay is min(5s*2^(n-1), 5m) +-10%, the jitter from hash(UID, n).
func backoffDelay(uid types.UID, n int32) time.Duration {
	if n < 1 {
		n = 1
	}
	d := backoffCap
	if n <= 10 {
		d = min(time.Duration(float64(backoffBase)*math.Pow(2, float64(n-1))), backoffCap)
	}
	f := 1 + backoffJitter*(2*unitFraction(uid, "backoff", strconv.Itoa(int(min(n, 11))))-1)
	return time.Duration(float64(d) * f).Truncate(time.Millisecond)
}

// RequeueAfter is the delay until the earliest future wake-up among ts (zero times ignored), never
// below minRequeue; zero when there is none.
func RequeueAfter(now time.Time, ts ...time.Time) time.Duration {
	var first time.Time
	for _, t := range ts {
		if t.IsZero() {
			continue
		}
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	if first.IsZero() {
		return 0
	}
	return max(first.Sub(now), minRequeue)
}

// latest returns the latest of ts.
func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

// RequestedAt parses a refresh-requested-at value: the requested time, rounded up to whole
// seconds like the issue times it is compared with (a token issued in the second of a request with
// a fraction may predate it), or why it is ignored. A time up to requestSkew ahead
// (the requester's clock running ahead of ours) is honoured when it comes, not before: a token
// issued earlier would not be newer than the request, and would be fetched again.
func RequestedAt(value string, now time.Time) (time.Time, string) {
	if value == "" {
		return time.Time{}, ""
	}
	t, err := time.Parse(time.RFC3339, value)
	switch {
	case err != nil:
		return time.Time{}, "is not an RFC 3339 time such as 2026-11-25T14:50:12Z"
	case t.After(now.Add(requestSkew)):
		return time.Time{}, "lies in the future"
	case t.Equal(t.Truncate(time.Second)):
		return t, ""
	default:
		return t.Truncate(time.Second).Add(time.Second), ""
	}
}

// unitFraction maps (uid, parts) to a stable number in [0, 1): the source of every jitter, so
// that a pass recomputes the same refresh time and backoff as the pass before it.
func unitFraction(uid types.UID, parts ...string) float64 {
	s := digest.KeyedSum([]byte("jitter:"+string(uid)), parts...)
	return float64(binary.BigEndian.Uint64(s[:8])>>11) / float64(1<<53)
}

// timeKey renders t for hashing.
func timeKey(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
