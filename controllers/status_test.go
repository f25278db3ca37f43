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

package controllers

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// TestSuspendResume: resuming restores the outcome of the last attempt before the suspension from
// the status fields (status.lastFailureReason gates the next call: hourly for sticky failures, the
// backoff for transient ones), through any number of suspended passes; with no attempt before,
// Refreshed is absent, never Unknown or a made-up TokenIssued.
func TestSuspendResume(t *testing.T) {
	issued := &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonTokenIssued,
		Message: "Token issued at 2026-11-25T11:00:00Z, valid until 2026-11-25T13:00:00Z"}
	rejected := &metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonCredentialsRejected,
		Message: "DingTalk /v1.0/oauth2/accessToken answered CredentialsRejected (HTTP 400, code invalidClientIdOrSecret)"}
	quota := &metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonQuotaExceeded,
		Message: "DingTalk /v1.0/oauth2/accessToken answered QuotaExceeded (HTTP 403, code quotaExceeded)"}
	unavailable := &metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonProviderUnavailable,
		Message: "DingTalk /v1.0/oauth2/accessToken answered ProviderUnavailable (HTTP 503)"}
	failedMsg := func(reason string) string {
		return fmt.Sprintf("the last attempt before the suspension failed (%s)", reason)
	}
	const issuedMsg = "the last attempt before the suspension issued a token"
	tests := map[string]struct {
		before    *metav1.Condition // Refreshed before the suspension (nil: no attempt yet)
		failed    int32             // status.failedAttempts before the suspension
		reason    string            // status.lastFailureReason before the suspension
		refreshed bool              // whether status.lastRefreshTime is set (a token was issued)
		wantMsg   string            // the restored Refreshed message
		gate      bool              // whether the restored status still holds the next call back
	}{
		"no attempt yet: Refreshed stays absent": {},
		"token issued: True TokenIssued again":   {before: issued, refreshed: true, wantMsg: issuedMsg},
		"credentials rejected: still gated": {before: rejected, failed: 1, reason: v1alpha1.ReasonCredentialsRejected,
			refreshed: true, wantMsg: failedMsg(v1alpha1.ReasonCredentialsRejected), gate: true},
		"quota exceeded, no token ever: reason from lastFailureReason, hourly gate holds": {before: quota, failed: 2,
			reason: v1alpha1.ReasonQuotaExceeded, wantMsg: failedMsg(v1alpha1.ReasonQuotaExceeded), gate: true},
		// Clearing spec.suspend is a spec change (generation 2, observed 0), which lifts a transient backoff.
		"provider unavailable: restored, the resuming spec edit lifts the backoff": {before: unavailable, failed: 7,
			reason: v1alpha1.ReasonProviderUnavailable, refreshed: true, wantMsg: failedMsg(v1alpha1.ReasonProviderUnavailable)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tok := &v1alpha1.DingTalkToken{}
			tok.UID, tok.Generation = "uid-1", 2
			tok.Status.FailedAttempts = tc.failed
			tok.Status.LastFailureReason = tc.reason
			if tc.failed > 0 {
				tok.Status.LastFailureTime = stamp(t0)
			}
			if tc.refreshed {
				tok.Status.LastRefreshTime = stamp(t0.Add(-time.Hour))
			}
			if tc.before != nil {
				c := *tc.before
				c.Type, c.ObservedGeneration, c.LastTransitionTime = v1alpha1.ConditionRefreshed, 1, *stamp(t0)
				tok.Status.Conditions = []metav1.Condition{c}
			}
			p := testPass(tok, t0.Add(time.Minute))
			for range 2 { // two suspended passes: the second keeps what the first recorded
				p.suspend()
				c := refreshedCondition(&tok.Status.TokenStatus)
				if c == nil || c.Reason != v1alpha1.ReasonSuspended {
					t.Fatalf("suspended: Refreshed = %+v, want False Suspended", c)
				}
				if c.Status != metav1.ConditionFalse || c.Message != suspendedMessage {
					t.Fatalf("suspended: Refreshed = %+v, want False Suspended %q", c, suspendedMessage)
				}
				// The gate reads the status fields, not the Suspended condition.
				if in := p.input(); in.FailureReason != tc.reason {
					t.Fatalf("suspended: failure reason = %q, want %q", in.FailureReason, tc.reason)
				}
			}
			p.now = t0.Add(2 * time.Minute)
			p.resume()
			got := meta.FindStatusCondition(tok.Status.Conditions, v1alpha1.ConditionRefreshed)
			switch {
			case tc.before == nil && got != nil:
				t.Fatalf("resumed without an attempt: Refreshed = %+v, want absent", got)
			case tc.before != nil && (got == nil || got.Status != tc.before.Status || got.Reason != tc.before.Reason || got.Message != tc.wantMsg):
				t.Fatalf("resumed: Refreshed = %+v, want %s %s %q", got, tc.before.Status, tc.before.Reason, tc.wantMsg)
			}
			in := p.input()
			if gated := p.now.Before(in.Gate()); gated != tc.gate {
				t.Errorf("next call gated = %v (gate %s), want %v", gated, in.Gate(), tc.gate)
			}
		})
	}
}

// TestFailureReasonField: fail records status.lastFailureReason, a success clears it, and the
// decision input reads it (not the Refreshed condition) while failedAttempts > 0.
func TestFailureReasonField(t *testing.T) {
	tok := &v1alpha1.DingTalkToken{}
	tok.UID, tok.Generation = "uid-1", 1
	p := testPass(tok, t0)
	p.fail(failure{reason: v1alpha1.ReasonQuotaExceeded, message: "quota"})
	if tok.Status.LastFailureReason != v1alpha1.ReasonQuotaExceeded || tok.Status.FailedAttempts != 1 {
		t.Fatalf("after fail: lastFailureReason %q, failedAttempts %d", tok.Status.LastFailureReason, tok.Status.FailedAttempts)
	}
	// Another writer replaces Refreshed: the hourly gate still holds.
	p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonRolloutRestartFailed, "x")
	p.now = t0.Add(time.Minute)
	if in := p.input(); in.FailureReason != v1alpha1.ReasonQuotaExceeded || !in.Gate().Equal(t0.Add(time.Hour)) {
		t.Fatalf("failure reason %q, gate %s; want %s, %s", in.FailureReason, in.Gate(), v1alpha1.ReasonQuotaExceeded, t0.Add(time.Hour))
	}
	// With no failed attempt the field is not read.
	tok.Status.FailedAttempts = 0
	if in := p.input(); in.FailureReason != "" {
		t.Fatalf("no failed attempt: failure reason %q, want none", in.FailureReason)
	}
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// testPass is a pass over tok at now, with nothing gathered yet.
func testPass(tok *v1alpha1.DingTalkToken, now time.Time) *pass {
	sh := NewMachinery(clocktesting.NewFakeClock(now), nil, "", nil)
	return &pass{tokenPass: sh.startTokenPass(logr.Discard(), tok, specOfDingTalkToken(tok), &tok.Status.TokenStatus), tok: tok, before: tok.DeepCopy()}
}
