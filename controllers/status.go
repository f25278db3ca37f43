package controllers

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

// statusWriteTimeout bounds a pass's status write (on a context detached from the reconcile's).
const statusWriteTimeout = 10 * time.Second

// pass is the state of one reconcile of one DingTalkToken. Steps record outcomes in it; finish
// turns them into one status write, the events of the transitions, the metrics and RequeueAfter.
type pass struct {
	r      *DingTalkTokenReconciler
	tok    *v1alpha1.DingTalkToken
	before *v1alpha1.DingTalkToken
	key    types.NamespacedName
	now    time.Time
	log    logr.Logger

	// held is the last good token (memory, the target Secret, or this pass's fetch).
	held *heldToken
	// targetExpiry is the expiry of the token the target Secret verifiably holds (zero: none).
	targetExpiry time.Time
	// floor is DingTalk's Retry-After for this credential set, when one is in force.
	floor time.Time
	// wakeups are extra requeue times (a rollout restart held back by its 10-minute limit).
	wakeups []time.Time
	// suspended is set when spec.suspend stopped the pass.
	suspended bool
}

func (r *DingTalkTokenReconciler) startPass(ctx context.Context, tok *v1alpha1.DingTalkToken) *pass {
	return &pass{
		r:      r,
		tok:    tok,
		before: tok.DeepCopy(),
		key:    client.ObjectKeyFromObject(tok),
		now:    r.Clock.Now(),
		log:    ctrl.LoggerFrom(ctx).WithValues("dingtalktoken", klog.KObj(tok)),
	}
}

// stamp is a status time: API times have second precision, so memory and status agree.
func stamp(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.UTC().Truncate(time.Second))
	return &mt
}

func tokenDigest(uid types.UID, token string) string { return uidDigest(uid, "token", token) }

func refreshedCondition(st *v1alpha1.DingTalkTokenStatus) *metav1.Condition {
	return meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionRefreshed)
}

// refreshInput builds the decision's input from this pass; creds may be nil (not read or missing).
func (p *pass) refreshInput(creds *credentials) refreshInput {
	st := &p.tok.Status
	in := refreshInput{
		Now:                   p.now,
		UID:                   p.tok.UID,
		RefreshBefore:         p.tok.Spec.RefreshBefore,
		FailedAttempts:        st.FailedAttempts,
		LastCredentialsDigest: st.CredentialsDigest,
		LastSuiteTicketDigest: st.SuiteTicketDigest,
		SpecChanged:           p.tok.Generation != st.ObservedGeneration,
		RetryAfterFloor:       p.floor,
	}
	if st.LastFailureTime != nil {
		in.LastFailure = st.LastFailureTime.Time
	}
	if st.FailedAttempts > 0 {
		// The failure reason is kept in its own field, so that a Refreshed condition replaced
		// meanwhile (Suspended, RolloutRestartFailed) does not lift the backoff or the hourly gate.
		in.FailureReason = st.LastFailureReason
	}
	if p.held != nil {
		in.IssuedAt, in.ExpiresAt = p.held.IssuedAt, p.held.ExpiresAt
	}
	if creds != nil {
		in.CredentialsDigest = creds.digest(p.tok.UID)
		in.SuiteTicketDigest = creds.ticketDigest(p.tok.UID)
		p.floor = p.r.fetcher.floor(p.r.fetchKey(p, creds))
		in.RetryAfterFloor = p.floor
	}
	return in
}

// fetchKey is the shared-fetch key of creds; User tokens are never shared, so theirs includes the UID.
func (r *DingTalkTokenReconciler) fetchKey(p *pass, creds *credentials) string {
	parts := creds.setParts(r.Endpoint)
	if !creds.shared() {
		parts = append(parts, string(p.tok.UID))
	}
	return r.fetcher.setKey(parts...)
}

// setCondition sets a condition with this pass's generation and time.
func (p *pass) setCondition(typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&p.tok.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: p.tok.Generation, LastTransitionTime: *stamp(p.now),
	})
}

// attempted records the credentials a DingTalk call used.
func (p *pass) attempted(creds *credentials) {
	p.tok.Status.CredentialsDigest = creds.digest(p.tok.UID)
	p.tok.Status.SuiteTicketDigest = creds.ticketDigest(p.tok.UID)
}

// issue records a token DingTalk answered (called: by this pass's own call, not a shared one).
func (p *pass) issue(t issued, called bool) {
	st := &p.tok.Status
	prev := st.TokenDigest
	h := heldToken{UID: p.tok.UID, AccessToken: t.AccessToken, CorpID: t.CorpID, IssuedAt: t.IssuedAt, ExpiresAt: t.ExpiresAt}
	p.held = &h
	p.r.memory.setToken(p.key, h)
	digest := tokenDigest(p.tok.UID, t.AccessToken)
	st.TokenDigest = digest
	st.ExpiresAt = stamp(t.ExpiresAt)
	st.LastRefreshTime = stamp(t.IssuedAt)
	st.FailedAttempts = 0
	st.LastFailureTime = nil
	st.LastFailureReason = ""
	if prev == "" || !p.r.EnableRolloutRestart || len(p.tok.Spec.RolloutRestartTargets) == 0 {
		// The first token and tokens nobody restarts for need no rollout.
		st.RolloutRestartDigest = digest
	}
	msg := fmt.Sprintf("Token issued at %s, valid until %s", rfc3339(t.IssuedAt), rfc3339(t.ExpiresAt))
	if !called {
		msg += " (shared with DingTalkTokens using the same credentials)"
	}
	p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, msg)
	if digest != prev {
		p.log.Info("Issued token", "expiresAt", rfc3339(t.ExpiresAt), "shared", !called)
	} else {
		p.log.V(1).Info("Renewed token", "expiresAt", rfc3339(t.ExpiresAt), "shared", !called)
	}
}

// fail records a failed attempt; msg must hold no secret.
func (p *pass) fail(reason, msg string) {
	st := &p.tok.Status
	prev := refreshedCondition(st)
	st.FailedAttempts++
	st.LastFailureTime = stamp(p.now)
	st.LastFailureReason = reason
	p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionFalse, reason, msg)
	if prev == nil || prev.Status != metav1.ConditionFalse || prev.Reason != reason {
		p.log.Info("Refresh failed", "reason", reason, "message", msg, "failedAttempts", st.FailedAttempts)
	} else {
		p.log.V(1).Info("Refresh failed again", "reason", reason, "failedAttempts", st.FailedAttempts)
	}
}

// failDingTalk records a DingTalk failure under the reason named by its class.
func (p *pass) failDingTalk(err error) {
	reason := string(dingtalk.ClassOf(err))
	switch reason {
	case v1alpha1.ReasonCredentialsRejected, v1alpha1.ReasonReauthorizationRequired, v1alpha1.ReasonRateLimited,
		v1alpha1.ReasonQuotaExceeded, v1alpha1.ReasonProviderUnavailable:
	default:
		reason = v1alpha1.ReasonProviderUnavailable
	}
	p.fail(reason, describe(err))
}

// suspendedMessage is the Refreshed message while spec.suspend is true.
const suspendedMessage = "spec.suspend is true: no calls to DingTalk; the target Secret keeps what it has"

// suspend records that spec.suspend stopped the pass. The outcome of the last attempt stays in
// status.lastFailureReason, lastFailureTime, failedAttempts and lastRefreshTime, which resume reads.
func (p *pass) suspend() {
	p.suspended = true
	c := refreshedCondition(&p.tok.Status)
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
func (p *pass) resume() {
	st := &p.tok.Status
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

// safeText keeps the characters of DingTalk codes and request ids; anything else is dropped, so an
// unexpected answer cannot smuggle text into a message.
var safeText = regexp.MustCompile(`[^A-Za-z0-9._:/-]`)

// safeReason keeps the characters of the client's fixed reasons ("malformed answer", ...).
var safeReason = regexp.MustCompile(`[^A-Za-z0-9 ,.:/()-]`)

func safe(s string) string {
	s = safeText.ReplaceAllString(s, "")
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// describe renders a DingTalk failure from its classified fields only: endpoint, HTTP status,
// code, request id and a fixed reason; never an answer body, a credential or a token.
func describe(err error) string {
	var de *dingtalk.Error
	if !errors.As(err, &de) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return "DingTalk did not answer in time"
		}
		return "DingTalk could not be reached"
	}
	msg := fmt.Sprintf("DingTalk %s answered %s", safe(de.Endpoint), de.Class)
	if de.HTTPStatus != 0 {
		msg += fmt.Sprintf(" (HTTP %d", de.HTTPStatus)
		if c := safe(de.Code); c != "" {
			msg += ", code " + c
		}
		if id := safe(de.RequestID); id != "" {
			msg += ", requestid " + id
		}
		msg += ")"
	}
	if de.Reason != "" {
		msg += ": " + safeReason.ReplaceAllString(de.Reason, "")
	}
	if de.RetryAfter > 0 {
		msg += fmt.Sprintf("; Retry-After %s", min(de.RetryAfter, maxRetryAfter))
	}
	return msg
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// readyCondition: True while the target Secret holds an unexpired token, else the last failure,
// Suspended or Pending.
func (p *pass) readyCondition() (metav1.ConditionStatus, string, string) {
	if p.now.Before(p.targetExpiry) {
		return metav1.ConditionTrue, v1alpha1.ReasonTokenValid,
			fmt.Sprintf("Secret %s holds a token valid until %s", p.tok.TargetName(), rfc3339(p.targetExpiry))
	}
	if p.suspended {
		return metav1.ConditionFalse, v1alpha1.ReasonSuspended, "spec.suspend is true and the target Secret holds no valid token"
	}
	if c := refreshedCondition(&p.tok.Status); c != nil && c.Status == metav1.ConditionFalse && kindOf(c.Reason) != failureNone {
		return metav1.ConditionFalse, c.Reason, c.Message
	}
	if !p.floor.IsZero() {
		return metav1.ConditionFalse, v1alpha1.ReasonPending, "Waiting for DingTalk's Retry-After until " + rfc3339(p.floor)
	}
	if !p.targetExpiry.IsZero() {
		return metav1.ConditionFalse, v1alpha1.ReasonPending, "The token expired; a refresh is pending"
	}
	return metav1.ConditionFalse, v1alpha1.ReasonPending, "No token yet"
}

// finish writes status once (when it changed), emits the events of its transitions, updates the
// metrics and computes RequeueAfter. err is the pass's API-server error, returned as is.
func (p *pass) finish(ctx context.Context, err error) (ctrl.Result, error) {
	st := &p.tok.Status
	if p.held != nil {
		// Memory may be ahead of status when an earlier status write failed.
		st.TokenDigest = tokenDigest(p.tok.UID, p.held.AccessToken)
		st.ExpiresAt = stamp(p.held.ExpiresAt)
		st.LastRefreshTime = stamp(p.held.IssuedAt)
	}
	next := nextAttempt(p.refreshInput(nil))
	if p.suspended {
		next = time.Time{}
	}
	status, reason, msg := p.readyCondition()
	p.setCondition(v1alpha1.ConditionReady, status, reason, msg)
	// Before any attempt Refreshed stays absent: it is the outcome of the last attempt.
	for i := range st.Conditions {
		st.Conditions[i].ObservedGeneration = p.tok.Generation
	}
	st.ObservedGeneration = p.tok.Generation
	st.RefreshTime = nil
	if !next.IsZero() {
		st.RefreshTime = stamp(next)
	}
	// Events follow the status write that records their transition: a pass whose write fails is
	// repeated, and would emit them again.
	if !equality.Semantic.DeepEqual(p.before.Status, *st) {
		// Detached: a pass cut short by a stopping manager still records what it did.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusWriteTimeout)
		perr := p.r.Status().Patch(wctx, p.tok, client.MergeFrom(p.before))
		cancel()
		switch {
		case perr == nil:
			p.r.memory.wrote(p.key, "DingTalkToken", p.tok)
			p.emitEvents()
		case !apierrors.IsNotFound(perr) && err == nil:
			err = perr
		}
	}
	var expires time.Time
	if p.held != nil {
		expires = p.held.ExpiresAt
	}
	metrics.SetToken(p.tok.Namespace, p.tok.Name, string(p.tok.Spec.Type), expires, next, string(status))
	if err != nil {
		return ctrl.Result{}, err
	}
	var expiry time.Time
	if p.now.Before(p.targetExpiry) {
		expiry = p.targetExpiry // Ready turns False at that moment
	}
	return ctrl.Result{RequeueAfter: requeueAfter(p.now, append(p.wakeups, next, expiry)...)}, nil
}

// emitEvents emits TokenIssued, RefreshFailed and RefreshRecovered on transitions only.
func (p *pass) emitEvents() {
	b, a := &p.before.Status, &p.tok.Status
	if a.TokenDigest != "" && a.TokenDigest != b.TokenDigest {
		p.r.Recorder.Eventf(p.tok, nil, corev1.EventTypeNormal, v1alpha1.ReasonTokenIssued, "Refresh",
			"Issued a new token, valid until %s", rfc3339(a.ExpiresAt.Time))
	}
	failed := func(c *metav1.Condition) bool {
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason != v1alpha1.ReasonSuspended
	}
	bc, ac := refreshedCondition(b), refreshedCondition(a)
	switch {
	case failed(ac) && !failed(bc):
		p.r.Recorder.Eventf(p.tok, nil, corev1.EventTypeWarning, "RefreshFailed", "Refresh", "%s: %s", ac.Reason, ac.Message)
	case failed(bc) && ac != nil && ac.Status == metav1.ConditionTrue:
		p.r.Recorder.Eventf(p.tok, nil, corev1.EventTypeNormal, "RefreshRecovered", "Refresh",
			"Refreshed again after %s", bc.Reason)
		p.log.Info("Refresh recovered", "after", bc.Reason)
	}
}
