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

package policy

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestEffectiveRefreshBefore(t *testing.T) {
	tests := map[string]struct {
		lifetime time.Duration    // the token's lifetime (expiresAt - issue time)
		spec     *metav1.Duration // spec.refreshBefore
		want     time.Duration
	}{
		"default is a third of DingTalk's 2h":          {lifetime: 2 * time.Hour, want: 40 * time.Minute},
		"spec value is used":                           {lifetime: 2 * time.Hour, spec: dur(30 * time.Minute), want: 30 * time.Minute},
		"spec value is clamped to half the lifetime":   {lifetime: 2 * time.Hour, spec: dur(90 * time.Minute), want: time.Hour},
		"spec value below 2m is raised to 2m":          {lifetime: 2 * time.Hour, spec: dur(time.Minute), want: 2 * time.Minute},
		"short test token keeps lifetime/3 below 2m":   {lifetime: 30 * time.Second, want: 10 * time.Second},
		"2m spec on a 60s token is clamped to half":    {lifetime: time.Minute, spec: dur(2 * time.Minute), want: 30 * time.Second},
		"zero lifetime gives zero, never a negative":   {lifetime: 0, want: 0},
		"negative lifetime gives zero, never negative": {lifetime: -time.Second, want: 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := effectiveRefreshBefore(tc.lifetime, tc.spec); got != tc.want {
				t.Errorf("effectiveRefreshBefore(%s, %v) = %s, want %s", tc.lifetime, tc.spec, got, tc.want)
			}
		})
	}
}

func TestRefreshAtJitter(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	issued := clk.Now()
	expires := issued.Add(2 * time.Hour)
	eff := 40 * time.Minute
	seen := map[time.Time]bool{}
	for i := range 200 {
		uid := types.UID(strings.Repeat("u", i%7+1) + string(rune('a'+i%26)) + string(rune('a'+i/26)))
		at := refreshAt(string(uid), issued, expires, nil)
		// Within [expiresAt - effective - 10%, expiresAt - effective], whole seconds.
		if at.After(expires.Add(-eff)) || at.Before(expires.Add(-eff-eff/10-time.Second)) {
			t.Fatalf("refreshAt(%s) = %s, outside the jitter window", uid, at)
		}
		if at.Nanosecond() != 0 {
			t.Fatalf("refreshAt(%s) = %s, not truncated to the second", uid, at)
		}
		// Stable: the same inputs give the same time on every pass.
		if again := refreshAt(string(uid), issued, expires, nil); !again.Equal(at) {
			t.Fatalf("refreshAt(%s) not stable: %s then %s", uid, at, again)
		}
		seen[at] = true
	}
	if len(seen) < 20 {
		t.Errorf("200 UIDs share only %d refresh times: the jitter does not spread them", len(seen))
	}
	if got := refreshAt("u", time.Time{}, expires, nil); !got.IsZero() {
		t.Errorf("refreshAt without an issue time = %s, want zero (due now)", got)
	}
}

func TestBackoffDelay(t *testing.T) {
	tests := map[string]struct {
		n    int32         // failed attempts
		base time.Duration // the delay before jitter
	}{
		"first failure: 5s":       {n: 1, base: 5 * time.Second},
		"second failure: 10s":     {n: 2, base: 10 * time.Second},
		"fourth failure: 40s":     {n: 4, base: 40 * time.Second},
		"seventh failure: capped": {n: 7, base: 5 * time.Minute},
		"huge count: capped":      {n: 1000, base: 5 * time.Minute},
		"zero counts as first":    {n: 0, base: 5 * time.Second},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := backoffDelay("some-uid", tc.n)
			lo, hi := time.Duration(float64(tc.base)*0.9), time.Duration(float64(tc.base)*1.1)
			if got < lo || got > hi {
				t.Errorf("backoffDelay(%d) = %s, want within [%s, %s]", tc.n, got, lo, hi)
			}
			if again := backoffDelay("some-uid", tc.n); again != got {
				t.Errorf("backoffDelay not deterministic: %s then %s", got, again)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	const uid = types.UID("0f6c1d5e-uid")
	issued := t0
	expires := t0.Add(2 * time.Hour)
	due := refreshAt(string(uid), issued, expires, nil) // about t0+80m
	// base is a healthy token issued at t0 with the credentials unchanged.
	base := func(now time.Time) Input {
		return Input{
			Now: now, UID: uid, IssuedAt: issued, ExpiresAt: expires,
			LastCredentialsDigest: "hmac:c1", CredentialsDigest: "hmac:c1",
			LastSuiteTicketDigest: "hmac:t1", SuiteTicketDigest: "hmac:t1",
		}
	}
	failed := func(in Input, reason string, n int32, at time.Time) Input {
		in.FailureReason, in.FailedAttempts, in.LastFailure = reason, n, at
		return in
	}
	tests := map[string]struct {
		in        Input     // everything the decision reads
		wantFetch bool      // whether the pass calls DingTalk
		wantNext  time.Time // nextAttempt (status.refreshTime)
	}{
		"first pass: no token, nothing known": {
			in:        Input{Now: t0, UID: uid, CredentialsDigest: "hmac:c1"},
			wantFetch: true, wantNext: t0,
		},
		"valid token not due: no call (a status write or a target edit triggered the pass)": {
			in: base(t0.Add(time.Minute)), wantFetch: false, wantNext: due,
		},
		"restart: valid token from the Secret, not due: no call": {
			in: base(due.Add(-time.Second)), wantFetch: false, wantNext: due,
		},
		"due: call": {
			in: base(due), wantFetch: true, wantNext: due,
		},
		"spec refreshBefore moves the due time earlier: call": {
			in: func() Input {
				in := base(t0.Add(70 * time.Minute))
				in.RefreshBefore, in.SpecChanged = dur(59*time.Minute), true
				return in
			}(),
			wantFetch: true, wantNext: refreshAt(string(uid), issued, expires, dur(59*time.Minute)),
		},
		"credentials changed: call at once, even while valid": {
			in: func() Input {
				in := base(t0.Add(time.Minute))
				in.CredentialsDigest = "hmac:c2"
				return in
			}(),
			wantFetch: true, wantNext: due,
		},
		"credentials changed: bypasses the hourly retry of CredentialsRejected": {
			in: func() Input {
				in := failed(base(due.Add(time.Minute)), v1alpha1.ReasonCredentialsRejected, 1, due)
				in.CredentialsDigest = "hmac:c2"
				return in
			}(),
			wantFetch: true, wantNext: due.Add(time.Hour),
		},
		"credentials could not be read: no change assumed": {
			in: func() Input {
				in := base(t0.Add(time.Minute))
				in.CredentialsDigest = ""
				return in
			}(),
			wantFetch: false, wantNext: due,
		},
		"suite ticket alone changed: waits for the due time": {
			in: func() Input {
				in := base(t0.Add(time.Minute))
				in.SuiteTicketDigest = "hmac:t2"
				return in
			}(),
			wantFetch: false, wantNext: due,
		},
		"suite ticket changed after a failed attempt: call at once": {
			in: func() Input {
				in := failed(base(due.Add(time.Minute)), v1alpha1.ReasonCredentialsRejected, 1, due)
				in.SuiteTicketDigest = "hmac:t2"
				return in
			}(),
			wantFetch: true, wantNext: due.Add(time.Hour),
		},
		"transient failure: backs off 5s, held to 6s by the call budget (status times are whole seconds)": {
			in:        failed(base(due.Add(2*time.Second)), v1alpha1.ReasonProviderUnavailable, 1, due),
			wantFetch: false, wantNext: due.Add(6 * time.Second),
		},
		"transient failure: retries once the backoff and the call budget passed": {
			in:        failed(base(due.Add(6*time.Second)), v1alpha1.ReasonProviderUnavailable, 1, due),
			wantFetch: true, wantNext: due.Add(6 * time.Second),
		},
		"transient failure, second step: the backoff is longer than the call budget": {
			in:        failed(base(due.Add(7*time.Second)), v1alpha1.ReasonProviderUnavailable, 2, due),
			wantFetch: false, wantNext: due.Add(backoffDelay(uid, 2)),
		},
		"transient failure: the backoff never passes the expiry": {
			in:        failed(base(expires.Add(-time.Minute)), v1alpha1.ReasonRateLimited, 9, expires.Add(-2*time.Minute)),
			wantFetch: false, wantNext: expires,
		},
		"transient failure: spec change lifts the backoff": {
			in: func() Input {
				in := failed(base(due.Add(6*time.Second)), v1alpha1.ReasonProviderUnavailable, 3, due)
				in.SpecChanged = true
				return in
			}(),
			wantFetch: true, wantNext: due.Add(6 * time.Second),
		},
		"transient failure: spec change does not lift the call budget": {
			in: func() Input {
				in := failed(base(due.Add(2*time.Second)), v1alpha1.ReasonProviderUnavailable, 3, due)
				in.SpecChanged = true
				return in
			}(),
			wantFetch: false, wantNext: due.Add(6 * time.Second),
		},
		"call budget: a refresh request 2s after a refresh waits": {
			in: func() Input {
				in := base(t0.Add(2 * time.Second))
				in.RefreshRequestedAt = t0.Add(time.Second)
				return in
			}(),
			wantFetch: false, wantNext: t0.Add(6 * time.Second),
		},
		"call budget: a refresh request is honoured once it passed": {
			in: func() Input {
				in := base(t0.Add(6 * time.Second))
				in.RefreshRequestedAt = t0.Add(time.Second)
				return in
			}(),
			wantFetch: true, wantNext: t0.Add(6 * time.Second),
		},
		"call budget: alternating a local failure cannot shorten it": {
			in:        failed(Input{Now: t0.Add(3 * time.Second), UID: uid}, v1alpha1.ReasonCredentialsNotFound, 2, t0.Add(time.Second)),
			wantFetch: false, wantNext: t0.Add(time.Second + backoffDelay(uid, 2)),
		},
		"call budget: readable credentials after a local failure are used when it passes, not at the re-check": {
			in:        failed(Input{Now: t0.Add(3 * time.Second), UID: uid, CredentialsDigest: "hmac:c1"}, v1alpha1.ReasonCredentialsNotFound, 4, t0.Add(time.Second)),
			wantFetch: false, wantNext: t0.Add(7 * time.Second),
		},
		"credentials changed 3s after a call: held for 10s": {
			in: func() Input {
				in := base(t0.Add(3 * time.Second))
				in.CredentialsDigest = "hmac:c2"
				return in
			}(),
			wantFetch: false, wantNext: t0.Add(11 * time.Second),
		},
		"credentials changed: acted on when the hold ends": {
			in: func() Input {
				in := base(t0.Add(11 * time.Second))
				in.CredentialsDigest = "hmac:c2"
				return in
			}(),
			wantFetch: true, wantNext: due,
		},
		"credentials changed during the hourly retry of CredentialsRejected: held 10s, not an hour": {
			in: func() Input {
				in := failed(base(due.Add(4*time.Second)), v1alpha1.ReasonCredentialsRejected, 1, due)
				in.CredentialsDigest = "hmac:c2"
				return in
			}(),
			wantFetch: false, wantNext: due.Add(11 * time.Second),
		},
		"suite ticket changed after a failure: held 10s too": {
			in: func() Input {
				in := failed(base(due.Add(3*time.Second)), v1alpha1.ReasonCredentialsRejected, 1, due)
				in.SuiteTicketDigest = "hmac:t2"
				return in
			}(),
			wantFetch: false, wantNext: due.Add(11 * time.Second),
		},
		"credentials changed under a Retry-After floor: the floor wins": {
			in: func() Input {
				in := base(t0.Add(3 * time.Second))
				in.CredentialsDigest = "hmac:c2"
				in.RetryAfterFloor = t0.Add(time.Minute)
				return in
			}(),
			wantFetch: false, wantNext: t0.Add(time.Minute),
		},
		"restart keeps the backoff (it comes from status)": {
			in:        failed(Input{Now: t0.Add(30 * time.Second), UID: uid, CredentialsDigest: "hmac:c1", LastCredentialsDigest: "hmac:c1"}, v1alpha1.ReasonProviderUnavailable, 5, t0),
			wantFetch: false, wantNext: t0.Add(backoffDelay(uid, 5)),
		},
		"CredentialsRejected: at most hourly": {
			in:        failed(base(due.Add(59*time.Minute)), v1alpha1.ReasonCredentialsRejected, 1, due),
			wantFetch: false, wantNext: due.Add(time.Hour),
		},
		"QuotaExceeded: retried after an hour": {
			in:        failed(base(due.Add(time.Hour)), v1alpha1.ReasonQuotaExceeded, 2, due),
			wantFetch: true, wantNext: due.Add(time.Hour),
		},
		"ReauthorizationRequired: spec change does not lift the hourly limit": {
			in: func() Input {
				in := failed(base(due.Add(time.Minute)), v1alpha1.ReasonReauthorizationRequired, 1, due)
				in.SpecChanged = true
				return in
			}(),
			wantFetch: false, wantNext: due.Add(time.Hour),
		},
		"Retry-After floor holds back even a credentials change": {
			in: func() Input {
				in := base(due)
				in.CredentialsDigest = "hmac:c2"
				in.RetryAfterFloor = due.Add(30 * time.Second)
				return in
			}(),
			wantFetch: false, wantNext: due.Add(30 * time.Second),
		},
		"Retry-After floor over: call": {
			in: func() Input {
				in := base(due.Add(31 * time.Second))
				in.RetryAfterFloor = due.Add(30 * time.Second)
				return in
			}(),
			wantFetch: true, wantNext: due.Add(30 * time.Second),
		},
		"local failure (missing Secret): only the call budget gates the call, re-checked on the backoff schedule": {
			in:        failed(Input{Now: t0.Add(6 * time.Second), UID: uid}, v1alpha1.ReasonCredentialsNotFound, 2, t0),
			wantFetch: true, wantNext: t0.Add(backoffDelay(uid, 2)),
		},
		"refresh requested after the token was issued: call at once, though not due": {
			in: func() Input {
				in := base(t0.Add(time.Minute))
				in.RefreshRequestedAt = t0.Add(30 * time.Second)
				return in
			}(),
			wantFetch: true, wantNext: t0.Add(30 * time.Second),
		},
		"request older than the held token: nothing to do": {
			in: func() Input {
				in := base(t0.Add(time.Minute))
				in.RefreshRequestedAt = t0.Add(-time.Minute)
				return in
			}(),
			wantFetch: false, wantNext: due,
		},
		"request for a second just ahead (a clock running ahead): waits for it, then calls": {
			in: func() Input {
				in := base(t0.Add(time.Minute))
				in.RefreshRequestedAt = t0.Add(time.Minute + 5*time.Second)
				return in
			}(),
			wantFetch: false, wantNext: t0.Add(time.Minute + 5*time.Second),
		},
		"request while backing off: waits for the backoff (held to 6s by the call budget)": {
			in: func() Input {
				in := failed(base(due.Add(2*time.Second)), v1alpha1.ReasonProviderUnavailable, 1, due)
				in.RefreshRequestedAt = due.Add(time.Second)
				return in
			}(),
			wantFetch: false, wantNext: due.Add(6 * time.Second),
		},
		"request after CredentialsRejected: still hourly": {
			in: func() Input {
				in := failed(base(t0.Add(time.Minute)), v1alpha1.ReasonCredentialsRejected, 1, t0)
				in.RefreshRequestedAt = t0.Add(30 * time.Second)
				return in
			}(),
			wantFetch: false, wantNext: t0.Add(time.Hour),
		},
		"request while DingTalk's Retry-After holds: waits for it": {
			in: func() Input {
				in := base(t0.Add(time.Minute))
				in.RefreshRequestedAt = t0.Add(30 * time.Second)
				in.RetryAfterFloor = t0.Add(2 * time.Minute)
				return in
			}(),
			wantFetch: false, wantNext: t0.Add(2 * time.Minute),
		},
		"Stream: no suite ticket pushed yet and none in the Secret: no call, no wake-up (the push re-queues)": {
			in:        Input{Now: t0, UID: uid, CredentialsDigest: "hmac:c1", AwaitingTicket: true},
			wantFetch: false, wantNext: time.Time{},
		},
		"Stream: still no ticket after a local failure: no call, no wake-up": {
			in: func() Input {
				in := failed(Input{Now: t0.Add(time.Minute), UID: uid, CredentialsDigest: "hmac:c1"}, v1alpha1.ReasonCredentialsNotFound, 1, t0)
				in.AwaitingTicket = true
				return in
			}(),
			wantFetch: false, wantNext: time.Time{},
		},
		"Stream: the first ticket arrives: fetch the first token": {
			in:        Input{Now: t0, UID: uid, CredentialsDigest: "hmac:c1", SuiteTicketDigest: "hmac:t1"},
			wantFetch: true, wantNext: t0,
		},
		"Stream: a pushed ticket while the token is valid and the last attempt succeeded: no call": {
			in: func() Input {
				in := base(t0.Add(time.Hour))
				in.SuiteTicketDigest = "hmac:t2"
				return in
			}(),
			wantFetch: false, wantNext: due,
		},
		"nothing uses the token (no namespace selected): no call, nothing scheduled": {
			in: func() Input {
				in := base(due.Add(time.Minute))
				in.Unused = true
				return in
			}(),
			wantFetch: false,
		},
		"nothing uses the token and there is none: no call, nothing scheduled": {
			in:        Input{Now: t0, UID: uid, CredentialsDigest: "hmac:c1", Unused: true},
			wantFetch: false,
		},
		"expired token, refresh failing: call when the backoff allows": {
			in:        failed(base(expires.Add(time.Minute)), v1alpha1.ReasonProviderUnavailable, 4, expires),
			wantFetch: true, wantNext: expires.Add(backoffDelay(uid, 4)),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Decide(tc.in)
			if got.Fetch != tc.wantFetch {
				t.Errorf("Decide().Fetch = %v (%s), want %v", got.Fetch, got.Why, tc.wantFetch)
			}
			if next := NextAttempt(tc.in); !next.Equal(tc.wantNext) {
				t.Errorf("NextAttempt() = %s, want %s", next, tc.wantNext)
			}
		})
	}
}

func TestRequeueAfter(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	now := clk.Now()
	tests := map[string]struct {
		ts   []time.Time // wake-up candidates
		want time.Duration
	}{
		"earliest future time":            {ts: []time.Time{now.Add(time.Hour), now.Add(time.Minute)}, want: time.Minute},
		"a past time is never zero":       {ts: []time.Time{now.Add(-time.Hour)}, want: minRequeue},
		"now is never zero":               {ts: []time.Time{now}, want: minRequeue},
		"sub-second rounds up to 1s":      {ts: []time.Time{now.Add(10 * time.Millisecond)}, want: minRequeue},
		"zero times are ignored":          {ts: []time.Time{{}, now.Add(time.Minute)}, want: time.Minute},
		"nothing to wait for: no requeue": {ts: []time.Time{{}}, want: 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := RequeueAfter(now, tc.ts...); got != tc.want {
				t.Errorf("requeueAfter = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRefreshScheduleOverTime walks a fake clock through a token's life: not due, due, a failing
// refresh backing off up to the expiry, and never a zero or negative requeue.
func TestRefreshScheduleOverTime(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	const uid = types.UID("walk")
	in := Input{UID: uid, IssuedAt: t0, ExpiresAt: t0.Add(60 * time.Second), CredentialsDigest: "c", LastCredentialsDigest: "c"}
	calls, lives := 0, 1
	var last time.Time
	for clk.Now().Before(t0.Add(3 * time.Minute)) {
		in.Now = clk.Now()
		if Decide(in).Fetch {
			calls++
			if !last.IsZero() && in.Now.Sub(last) < minCallInterval {
				t.Fatalf("calls at %s and %s: closer than the call budget", last, in.Now)
			}
			last = in.Now
			if in.ExpiresAt.Before(in.Now) {
				// The provider came back after the expiry: a new token.
				lives++
				in.IssuedAt, in.ExpiresAt, in.FailedAttempts, in.FailureReason, in.LastFailure = in.Now, in.Now.Add(60*time.Second), 0, "", time.Time{}
			} else {
				in.FailedAttempts++
				in.FailureReason = v1alpha1.ReasonProviderUnavailable
				in.LastFailure = in.Now
			}
		}
		d := RequeueAfter(in.Now, NextAttempt(in), in.ExpiresAt)
		if d <= 0 {
			t.Fatalf("at %s: requeue %s", in.Now, d)
		}
		clk.Step(d)
	}
	// Per 60s token: due at ~40s, failures at ~40s, ~46s, ~56s and just after the expiry (61s,
	// where the provider answers again): at most 4 calls a life.
	if calls < 4 || calls > 4*lives {
		t.Errorf("%d calls in 3 minutes over %d token lives, want at most 4 a life (bounded backoff)", calls, lives)
	}
}

// TestAcceptShared: a token another object of the set fetched is taken when it is newer than the
// held one, not itself due, and issued no earlier than a pending refresh request.
func TestAcceptShared(t *testing.T) {
	const uid = types.UID("accept")
	held := Input{Now: t0.Add(time.Minute), UID: uid, IssuedAt: t0, ExpiresAt: t0.Add(2 * time.Hour)}
	fresh := Issued{IssuedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(time.Minute + 2*time.Hour)}
	tests := map[string]struct {
		in   Input  // the taker's state
		t    Issued // the token on offer
		want bool
	}{
		"newer and fresh: taken":                 {in: held, t: fresh, want: true},
		"no token held: taken":                   {in: Input{Now: held.Now, UID: uid}, t: fresh, want: true},
		"not newer than the held one: not taken": {in: held, t: Issued{IssuedAt: t0, ExpiresAt: t0.Add(2 * time.Hour)}},
		"itself due already: not taken":          {in: func() Input { in := held; in.Now = t0.Add(119 * time.Minute); return in }(), t: Issued{IssuedAt: t0.Add(time.Second), ExpiresAt: t0.Add(2*time.Hour + time.Second)}},
		"issued before a pending request: not taken": {in: func() Input {
			in := held
			in.RefreshRequestedAt = t0.Add(90 * time.Second)
			in.Now = t0.Add(2 * time.Minute)
			return in
		}(), t: fresh},
		"issued at or after the request: taken": {in: func() Input { in := held; in.RefreshRequestedAt = t0.Add(time.Minute); return in }(), t: fresh, want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := AcceptShared(tc.in, tc.t); got != tc.want {
				t.Errorf("AcceptShared() = %v, want %v", got, tc.want)
			}
		})
	}
}
