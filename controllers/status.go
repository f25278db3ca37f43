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
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

// statusWriteTimeout bounds a pass's status write (on a context detached from the reconcile's).
const statusWriteTimeout = 10 * time.Second

// pass is one reconcile of one DingTalkToken: the shared refresh state (tokenPass) plus what a
// DingTalkToken adds, its one target Secret and its rollout restarts. Steps return outcomes; the
// record methods here and in tokenPass are the only writers of the status, and finish writes it
// once.
type pass struct {
	tokenPass
	r      *DingTalkTokenReconciler
	tok    *v1alpha1.DingTalkToken
	before *v1alpha1.DingTalkToken
	// target is what the target Secret's name held when the pass started.
	target targetState
	// targetExpiry is the expiry of the token the target Secret verifiably holds (zero: none).
	targetExpiry time.Time
	// wakeups are extra requeue times (a rollout restart held back by its 10-minute limit).
	wakeups []time.Time
}

func (r *DingTalkTokenReconciler) startPass(ctx context.Context, tok *v1alpha1.DingTalkToken) *pass {
	log := ctrl.LoggerFrom(ctx).WithValues("dingtalktoken", klog.KObj(tok))
	return &pass{
		tokenPass: r.Machinery.startTokenPass(log, tok, specOfDingTalkToken(tok), &tok.Status.TokenStatus),
		r:         r,
		tok:       tok,
		before:    tok.DeepCopy(),
	}
}

// isNew reports whether the object has never been through a pass that recorded status (its first
// pass): no token and no failure to recover, so its target needs no look before a call is due.
func (p *pass) isNew() bool {
	st := &p.tok.Status
	return st.ObservedGeneration == 0 && len(st.Conditions) == 0 && st.TokenDigest == ""
}

// recovering reports whether the pass must recover the last good token from the target Secret:
// memory holds none (after a restart) and status says one was issued.
func (p *pass) recovering() bool {
	return p.st.TokenDigest != "" && p.shared.memory.token(p.key, p.uid) == nil
}

// observeTarget records what the target Secret holds and the last good token: memory's, else the
// one the owned Secret holds when status vouches for it (after a restart); and the expiry of the
// token the Secret verifiably holds, which Ready follows.
func (p *pass) observeTarget(t targetState) {
	p.target = t
	mem := p.shared.memory
	p.held = mem.token(p.key, p.uid)
	if p.held == nil && t.live != nil {
		if h := recoverHeld(p.shared.digests, p.uid, p.st, p.spec.TargetKey, t.live); h != nil {
			p.held = h
			mem.setToken(p.key, *h)
			mem.setShown(p.key, *h)
			// A rollout restart digest an earlier version wrote for this token is this token's:
			// the new digest restarts nothing.
			if st := &p.tok.Status; p.shared.digests.matches(st.RolloutRestartDigest, p.uid, "token", h.AccessToken) {
				st.RolloutRestartDigest = p.shared.digests.token(p.uid, h.AccessToken)
			}
		}
	}
	if t.secret != nil {
		// The held token, or the one written before it when a newer token has not reached the
		// Secret yet (its refresh-token store failed, say).
		p.targetExpiry = shownExpiry(p.spec.TargetKey, t.secret, p.held, mem.shownToken(p.key, p.uid))
	}
}

// recordAttempt records a refresh attempt; a first token, or one nobody restarts workloads for,
// needs no rollout.
func (p *pass) recordAttempt(a attempt) {
	prev := p.tok.Status.TokenDigest
	p.tokenPass.recordAttempt(a)
	if a.token != nil && a.failure == nil && (prev == "" || !p.rolloutWanted()) {
		p.tok.Status.RolloutRestartDigest = p.tok.Status.TokenDigest
	}
}

// recordTarget records the outcome of writing the target Secret.
func (p *pass) recordTarget(w targetWrite) {
	if w.failure != nil {
		p.fail(*w.failure)
		return
	}
	if !w.written {
		return
	}
	if w.secret != nil {
		p.r.memory.wrote(p.key, "Secret", w.secret)
		switch old := p.target.secret; {
		case old == nil:
			p.log.V(1).Info("Created Secret", "secret", p.tok.TargetName())
		case !holds(old, p.spec.TargetKey, p.held.AccessToken) && p.targetExpiry.IsZero() &&
			p.tok.Status.TokenDigest == p.before.Status.TokenDigest:
			p.log.Info("Restored target Secret", "secret", p.tok.TargetName())
		default:
			p.log.V(1).Info("Updated target Secret", "secret", p.tok.TargetName())
		}
	}
	p.targetExpiry = p.held.ExpiresAt
	p.recordWritten()
}

// recordRollout records the outcome of the rollout restarts (nil: none was due).
func (p *pass) recordRollout(o *rolloutOutcome) {
	if o == nil {
		return
	}
	st := &p.tok.Status
	p.wakeups = append(p.wakeups, o.wakeups...)
	c := refreshedCondition(&st.TokenStatus)
	if len(o.failed) > 0 {
		msg := "Token written, but restarting failed for " + strings.Join(o.failed, "; ")
		if c == nil || c.Reason != v1alpha1.ReasonRolloutRestartFailed || c.Message != msg {
			p.log.Info("Rollout restart failed", "workloads", len(o.failed))
		}
		p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonRolloutRestartFailed, msg)
		return
	}
	if c != nil && c.Reason == v1alpha1.ReasonRolloutRestartFailed {
		p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued,
			fmt.Sprintf("Token valid until %s; workloads restarted", rfc3339(p.held.ExpiresAt)))
	}
	if o.done {
		st.RolloutRestartDigest = st.TokenDigest
	}
}

// finish writes status once (when it changed), emits the events of its transitions, updates the
// metrics and computes RequeueAfter. err is the pass's API-server error, returned as is. A
// deferred pass writes nothing: it comes back when its place under the rate limit is due.
func (p *pass) finish(ctx context.Context, err error) (ctrl.Result, error) {
	if res, deferred := p.deferred(); deferred && err == nil {
		return res, nil
	}
	ready := p.ready(p.targetExpiry, "Secret "+p.tok.TargetName())
	next := p.settle(ready)
	werr := p.writeStatus(ctx, statusWrite{client: p.r.Client, events: p.r.Recorder, kind: "DingTalkToken",
		obj: p.tok, before: p.before, changed: !equality.Semantic.DeepEqual(p.before.Status, p.tok.Status),
		beforeStatus: &p.before.Status.TokenStatus})
	if err == nil {
		err = werr
	}
	var expires time.Time
	if p.held != nil {
		expires = p.held.ExpiresAt
	}
	metrics.SetToken(p.tok.Namespace, p.tok.Name, string(p.spec.Type), expires, next, string(ready.status))
	if err != nil {
		return ctrl.Result{}, err
	}
	var expiry time.Time
	if p.now.Before(p.targetExpiry) {
		expiry = p.targetExpiry // Ready turns False at that moment
	}
	return ctrl.Result{RequeueAfter: requeueAfter(p.now, append(p.wakeups, next, expiry)...)}, nil
}
