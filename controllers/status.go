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
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/memory"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/policy"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/safe"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/sharedfetch"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// What a pass records in status (both kinds): the record methods are the only writers of the
// status, and writeStatus writes it once, then emits the events of its transitions. The failures
// it records, and their messages, are at the end.

// statusWriteTimeout bounds a pass's status write (on a context detached from the reconcile's).
const statusWriteTimeout = 10 * time.Second

// stamp is a status time: API times have second precision, so memory and status agree.
func stamp(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.UTC().Truncate(time.Second))
	return &mt
}

func refreshedCondition(st *v1alpha1.TokenStatus) *metav1.Condition {
	return meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionRefreshed)
}

// setCondition sets a condition with this pass's generation and time.
func (p *tokenPass) setCondition(typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&p.st.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: p.generation, LastTransitionTime: *stamp(p.now),
	})
}

// recordAttempt records the outcome of a refresh attempt.
func (p *tokenPass) recordAttempt(a attempt) {
	if !a.deferredUntil.IsZero() {
		p.deferredUntil = a.deferredUntil
		return
	}
	if a.creds != nil {
		p.st.CredentialsDigest = a.creds.digest(p.shared.digests, p.uid)
		p.st.SuiteTicketDigest = a.creds.ticketDigest(p.shared.digests, p.uid)
	}
	switch {
	case a.failure != nil:
		p.fail(*a.failure)
	case a.token != nil:
		p.issue(*a.token, a.called)
	}
}

// issue records a token DingTalk answered (called: by this object's own call, not a shared one).
func (p *tokenPass) issue(t sharedfetch.Issued, called bool) {
	st := p.st
	prev := st.TokenDigest
	h := memory.Token{UID: p.uid, AccessToken: t.AccessToken, CorpID: t.CorpID, IssuedAt: t.IssuedAt, ExpiresAt: t.ExpiresAt}
	p.held = &h
	p.shared.memory.SetToken(p.key, h)
	digest := p.shared.digests.Token(p.uid, t.AccessToken)
	st.TokenDigest = digest
	st.ExpiresAt = stamp(t.ExpiresAt)
	st.LastRefreshTime = stamp(t.IssuedAt)
	st.FailedAttempts = 0
	st.LastFailureTime = nil
	st.LastFailureReason = ""
	msg := fmt.Sprintf("Token issued at %s, valid until %s", rfc3339(t.IssuedAt), rfc3339(t.ExpiresAt))
	if !called {
		msg += " (shared with objects using the same credentials)"
	}
	p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, msg)
	if digest != prev {
		p.log.Info("Issued token", "expiresAt", rfc3339(t.ExpiresAt), "shared", !called)
	} else {
		p.log.V(1).Info("Renewed token", "expiresAt", rfc3339(t.ExpiresAt), "shared", !called)
	}
}

// failOn records f as a failed attempt (nil: nothing failed).
func (p *tokenPass) failOn(f *failure) {
	if f != nil {
		p.fail(*f)
	}
}

// fail records a failed attempt.
func (p *tokenPass) fail(f failure) {
	st := p.st
	prev := refreshedCondition(st)
	st.FailedAttempts++
	st.LastFailureTime = stamp(p.now)
	st.LastFailureReason = f.reason
	p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionFalse, f.reason, f.message)
	if prev == nil || prev.Status != metav1.ConditionFalse || prev.Reason != f.reason {
		p.log.Info("Refresh failed", "reason", f.reason, "message", f.message, "failedAttempts", st.FailedAttempts)
	} else {
		p.log.V(1).Info("Refresh failed again", "reason", f.reason, "failedAttempts", st.FailedAttempts)
	}
}

// recordWritten records that every target holds the held token again: a TemplateInvalid or
// TargetConflict from an earlier pass is then over.
func (p *tokenPass) recordWritten() {
	p.shared.memory.SetShown(p.key, *p.held)
	c := refreshedCondition(p.st)
	if c == nil || c.Status != metav1.ConditionFalse {
		return
	}
	if c.Reason != v1alpha1.ReasonTemplateInvalid && c.Reason != v1alpha1.ReasonTargetConflict {
		return
	}
	p.st.FailedAttempts = 0
	p.st.LastFailureTime = nil
	p.st.LastFailureReason = ""
	p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued,
		fmt.Sprintf("Token written, valid until %s", rfc3339(p.held.ExpiresAt)))
}

// suspendedMessage is the Refreshed message while spec.suspend is true.
const suspendedMessage = "spec.suspend is true: no calls to DingTalk; the target Secret keeps what it has"

// suspend records that spec.suspend stopped the pass. The outcome of the last attempt stays in
// status.lastFailureReason, lastFailureTime, failedAttempts and lastRefreshTime, which resume reads.
func (p *tokenPass) suspend() {
	p.suspended = true
	c := refreshedCondition(p.st)
	if c != nil && c.Reason == v1alpha1.ReasonSuspended {
		return
	}
	p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonSuspended, suspendedMessage)
}

// resume ends a Suspended Refreshed condition once spec.suspend is false, from the status fields
// (so across restarts too): a failure before the suspension comes back as False with its reason
// (status.lastFailureReason, which also keeps the backoff and the hourly gate of
// CredentialsRejected, QuotaExceeded and ReauthorizationRequired); else a token issued before it
// comes back as True TokenIssued; without either there was no attempt and Refreshed is left
// absent. A refresh follows when due.
func (p *tokenPass) resume() {
	st := p.st
	c := refreshedCondition(st)
	if c == nil || c.Reason != v1alpha1.ReasonSuspended {
		return
	}
	switch {
	case st.LastFailureReason != "":
		p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionFalse, st.LastFailureReason,
			fmt.Sprintf("the last attempt before the suspension failed (%s)", st.LastFailureReason))
	case st.LastRefreshTime != nil:
		p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued,
			"the last attempt before the suspension issued a token")
	default:
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionRefreshed)
	}
}

// readyCondition is Ready: True while the targets hold an unexpired token (validUntil, held by
// holder: "Secret x" or "every matched namespace"), else the last failure, Suspended or Pending.
func (p *tokenPass) readyCondition(validUntil time.Time, holder string) (metav1.ConditionStatus, string, string) {
	if p.now.Before(validUntil) {
		return metav1.ConditionTrue, v1alpha1.ReasonTokenValid,
			fmt.Sprintf("%s holds a token valid until %s", holder, rfc3339(validUntil))
	}
	if p.suspended {
		return metav1.ConditionFalse, v1alpha1.ReasonSuspended, "spec.suspend is true and the target Secret holds no valid token"
	}
	if p.creds.awaitingTicket {
		return metav1.ConditionFalse, v1alpha1.ReasonPending, "Waiting for the first suite ticket DingTalk pushes over Stream mode " +
			"(the credentials Secret has none): see the TicketStream condition"
	}
	if c := refreshedCondition(p.st); c != nil && c.Status == metav1.ConditionFalse && policy.Failed(c.Reason) {
		return metav1.ConditionFalse, c.Reason, c.Message
	}
	if !p.creds.floor.IsZero() {
		return metav1.ConditionFalse, v1alpha1.ReasonPending, "Waiting for DingTalk's Retry-After until " + rfc3339(p.creds.floor)
	}
	if !validUntil.IsZero() {
		return metav1.ConditionFalse, v1alpha1.ReasonPending, "The token expired; a refresh is pending"
	}
	return metav1.ConditionFalse, v1alpha1.ReasonPending, "No token yet"
}

// readyState is the Ready condition a pass ends with.
type readyState struct {
	status          metav1.ConditionStatus
	reason, message string
}

// readyFor is readyCondition as a readyState.
func (p *tokenPass) readyFor(validUntil time.Time, holder string) readyState {
	s, r, m := p.readyCondition(validUntil, holder)
	return readyState{status: s, reason: r, message: m}
}

// settle brings the status in line with the end of the pass, before its one write: the held
// token's times (memory may be ahead of status when an earlier status write failed), Ready, the
// next attempt (returned; zero while suspended) and the observed generation.
func (p *tokenPass) settle(ready readyState) (next time.Time) {
	st := p.st
	if p.held != nil {
		st.TokenDigest = p.shared.digests.Token(p.uid, p.held.AccessToken)
		st.ExpiresAt = stamp(p.held.ExpiresAt)
		st.LastRefreshTime = stamp(p.held.IssuedAt)
	}
	if !p.suspended {
		next = policy.NextAttempt(p.input())
	}
	p.setCondition(v1alpha1.ConditionReady, ready.status, ready.reason, ready.message)
	// Before any attempt Refreshed stays absent: it is the outcome of the last attempt.
	for i := range st.Conditions {
		st.Conditions[i].ObservedGeneration = p.generation
	}
	st.ObservedGeneration = p.generation
	st.RefreshTime = nil
	if !next.IsZero() {
		st.RefreshTime = stamp(next)
	}
	return next
}

// emitEvents emits, after the status write that recorded them, the events of the transitions
// from before to the pass's status: TokenIssued, RefreshFailed and RefreshRecovered; and once
// per annotation value, why a refresh request was ignored.
func (p *tokenPass) emitEvents(rec events.EventRecorder, obj runtime.Object, before *v1alpha1.TokenStatus) {
	a := p.st
	if a.TokenDigest != "" && a.TokenDigest != before.TokenDigest {
		rec.Eventf(obj, nil, corev1.EventTypeNormal, v1alpha1.ReasonTokenIssued, "Refresh",
			"Issued a new token, valid until %s", rfc3339(a.ExpiresAt.Time))
	}
	failed := func(c *metav1.Condition) bool {
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason != v1alpha1.ReasonSuspended
	}
	bc, ac := refreshedCondition(before), refreshedCondition(a)
	switch {
	case failed(ac) && !failed(bc):
		rec.Eventf(obj, nil, corev1.EventTypeWarning, "RefreshFailed", "Refresh", "%s: %s", ac.Reason, ac.Message)
	case failed(bc) && ac != nil && ac.Status == metav1.ConditionTrue:
		rec.Eventf(obj, nil, corev1.EventTypeNormal, "RefreshRecovered", "Refresh",
			"Refreshed again after %s", bc.Reason)
		p.log.Info("Refresh recovered", "after", bc.Reason)
	}
	p.emitRequestEvent(rec, obj, before)
}

// emitRequestEvent tells, once per value, what became of a refresh-requested-at annotation
// that is not honoured: malformed, in the future, or not newer than the last refresh.
func (p *tokenPass) emitRequestEvent(rec events.EventRecorder, obj runtime.Object, before *v1alpha1.TokenStatus) {
	v := p.spec.RefreshRequest
	if v == "" || !p.shared.memory.FirstSight(p.key, p.uid, v) {
		return
	}
	why := p.requestIgnored
	if last := before.LastRefreshTime; why == "" && last != nil && !p.requestedAt.After(last.Time) {
		why = "is not newer than the last refresh (" + rfc3339(last.Time) + ")"
	}
	if why == "" {
		return
	}
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	rec.Eventf(obj, nil, corev1.EventTypeWarning, "RefreshRequestIgnored", "Refresh",
		"Annotation %s=%q %s: it is ignored", v1alpha1.RefreshRequestedAtAnnotation, v, why)
}

// statusWrite is a pass's one status write: obj's status, changed since before (a copy taken
// when the pass started), kind naming it in the record of this process's writes.
type statusWrite struct {
	client  client.Client
	events  events.EventRecorder
	kind    string
	obj     client.Object
	before  client.Object
	changed bool
	// beforeStatus is before's TokenStatus, for the events of the transitions.
	beforeStatus *v1alpha1.TokenStatus
}

// writeStatus writes the status once, when it changed, on a context detached from the reconcile
// (a pass cut short by a stopping manager still records what it did), then emits the events of
// its transitions: they follow the write that records them, since a pass whose write fails is
// repeated and would emit them again. It returns the write's error (none when the object is gone).
func (p *tokenPass) writeStatus(ctx context.Context, w statusWrite) error {
	if !w.changed {
		p.emitRequestEvent(w.events, w.obj, w.beforeStatus)
		return nil
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusWriteTimeout)
	err := w.client.Status().Patch(wctx, w.obj, client.MergeFrom(w.before))
	cancel()
	switch {
	case err == nil:
		p.shared.writes.Wrote(p.key, w.kind, w.obj)
		p.emitEvents(w.events, w.obj, w.beforeStatus)
		return nil
	case apierrors.IsNotFound(err):
		return nil
	default:
		return err
	}
}

// Failures and their messages: everything the operator says in a condition, an event or a
// returned error is built here and in package safe from classified fields only, never from a
// credential, a token or a DingTalk answer.

// failure is the outcome of a step that failed: a Refreshed reason and a message that holds no
// secret.
type failure struct {
	reason, message string
}

// dingTalkFailure is a failed DingTalk call as a failure, under the reason its class names.
func dingTalkFailure(err error) *failure {
	reason := string(dingtalk.ClassOf(err))
	switch reason {
	case v1alpha1.ReasonCredentialsRejected, v1alpha1.ReasonReauthorizationRequired, v1alpha1.ReasonRateLimited,
		v1alpha1.ReasonQuotaExceeded, v1alpha1.ReasonProviderUnavailable:
	default:
		reason = v1alpha1.ReasonProviderUnavailable
	}
	return &failure{reason: reason, message: safe.DingTalk(err)}
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// conflictMessage is CredentialsConflict's message: it names the other DingTalkToken only when it
// is in the same namespace (another namespace's objects are not this user's to know of).
func conflictMessage(ns string, other types.NamespacedName) string {
	who := "another DingTalkToken in another namespace"
	if other.Namespace == ns {
		who = "DingTalkToken " + other.String()
	}
	return who + " already uses this user's authCode/refreshToken: user tokens are never shared"
}

// targetConflict is TargetConflict for a Secret this object does not own.
func targetConflict(name, owner string) *failure {
	return &failure{reason: v1alpha1.ReasonTargetConflict, message: fmt.Sprintf(
		"Secret %s exists and is not owned by this %s: nothing is written to it", name, owner)}
}
