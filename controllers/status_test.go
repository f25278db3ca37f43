package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// TestSuspendResume: resuming restores the Refreshed condition from before the suspension (its
// failure reason gates the next call: hourly for sticky failures), through any number of
// suspended passes; with no attempt before, Refreshed is absent, never Unknown or a made-up
// TokenIssued.
func TestSuspendResume(t *testing.T) {
	issued := &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonTokenIssued,
		Message: "Token issued at 2026-11-25T11:00:00Z, valid until 2026-11-25T13:00:00Z"}
	rejected := &metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonCredentialsRejected,
		Message: "DingTalk /v1.0/oauth2/accessToken answered CredentialsRejected (HTTP 400, code invalidClientIdOrSecret)"}
	tests := map[string]struct {
		before *metav1.Condition // Refreshed before the suspension (nil: no attempt yet)
		failed int32             // status.failedAttempts before the suspension
		gate   bool              // whether the restored condition still holds the next call back
	}{
		"no attempt yet: Refreshed stays absent": {},
		"token issued: True TokenIssued again":   {before: issued},
		"credentials rejected: still gated":      {before: rejected, failed: 1, gate: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tok := &v1alpha1.DingTalkToken{}
			tok.UID, tok.Generation = "uid-1", 2
			tok.Status.FailedAttempts = tc.failed
			if tc.failed > 0 {
				tok.Status.LastFailureTime = stamp(t0)
			}
			if tc.before != nil {
				c := *tc.before
				c.Type, c.ObservedGeneration, c.LastTransitionTime = v1alpha1.ConditionRefreshed, 1, *stamp(t0)
				tok.Status.Conditions = []metav1.Condition{c}
			}
			p := &pass{tok: tok, now: t0.Add(time.Minute)}
			for range 2 { // two suspended passes: the second keeps what the first recorded
				p.suspend()
				if c := refreshedCondition(&tok.Status); c == nil || c.Reason != v1alpha1.ReasonSuspended {
					t.Fatalf("suspended: Refreshed = %+v, want False Suspended", c)
				}
			}
			p.now = t0.Add(2 * time.Minute)
			p.resume()
			got := meta.FindStatusCondition(tok.Status.Conditions, v1alpha1.ConditionRefreshed)
			switch {
			case tc.before == nil && got != nil:
				t.Fatalf("resumed without an attempt: Refreshed = %+v, want absent", got)
			case tc.before != nil && (got == nil || got.Status != tc.before.Status || got.Reason != tc.before.Reason || got.Message != tc.before.Message):
				t.Fatalf("resumed: Refreshed = %+v, want %s %s %q", got, tc.before.Status, tc.before.Reason, tc.before.Message)
			}
			in := p.refreshInput(nil)
			if gated := p.now.Before(in.gate()); gated != tc.gate {
				t.Errorf("next call gated = %v (gate %s), want %v", gated, in.gate(), tc.gate)
			}
		})
	}
}
