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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/policy"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

// pass is one reconcile of one DingTalkToken: the shared refresh state (tokenPass) plus what a
// DingTalkToken adds, its one target Secret, its User refresh token and its rollout restarts.
// Steps return outcomes; the record methods here and in tokenPass are the only writers of the
// status, and finish writes it once.
type pass struct {
	tokenPass
	r      *DingTalkTokenReconciler
	tok    *v1alpha1.DingTalkToken
	before *v1alpha1.DingTalkToken
	// targets reads and writes the target Secret, named targetKey.
	targets   targets
	targetKey types.NamespacedName
	// target is what the target Secret's name held when the pass looked.
	target ownedsecret.State
	// targetExpiry is the expiry of the token the target Secret verifiably holds (zero: none).
	targetExpiry time.Time
}

func (r *DingTalkTokenReconciler) startPass(ctx context.Context, tok *v1alpha1.DingTalkToken) *pass {
	log := ctrl.LoggerFrom(ctx).WithValues("dingtalktoken", klog.KObj(tok))
	p := &pass{
		tokenPass: r.startTokenPass(log, tok, specOfDingTalkToken(tok), &tok.Status.TokenStatus),
		r:         r,
		tok:       tok,
		before:    tok.DeepCopy(),
		targetKey: types.NamespacedName{Namespace: tok.Namespace, Name: tok.TargetName()},
	}
	p.targets = targets{store: r.secrets, owner: tok, ownerKind: kindToken, recover: p.recovering()}
	return p
}

// observe sees what the target Secret holds and recovers the last good token. A new object's
// target the cache does not hold is looked up only before a DingTalk call (beforeCall). A rotated
// User refresh token not yet stored (or a deleted refresh-token Secret) is written next, before
// anything else.
func (p *pass) observe(ctx context.Context) error {
	target, err := p.targets.read(ctx, p.targetKey, !p.isNew())
	if err != nil {
		return err
	}
	p.observeTarget(target)
	return p.r.flushRefreshToken(ctx, p)
}

// prepare stops the pass before a DingTalk call when the target belongs to another owner (it is
// never written) or a template cannot render (it blocks every write).
func (p *pass) prepare(context.Context) (*failure, error) {
	return firstFailure(p.targets.conflict(p.target, p.targetKey.Name), dryRunTemplates(p.spec)), nil
}

// beforeCall looks an unverified target up on the API server before a refresh calls DingTalk (a
// name taken by another owner's Secret fails the pass first: TargetConflict); a refresh that
// takes a token another object of the set fetched moments ago calls nobody and needs no look:
// its create finds a taken name; nor does one that will wait for its place under the rate limit.
func (p *pass) beforeCall(ctx context.Context, in policy.Input) (*failure, error) {
	c := p.creds.values
	if !p.target.Unverified || c == nil || c.shared() && (p.shared.sharedTokenReady(p.creds.setKey, in) || p.shared.callWaits(p.creds.setKey)) {
		return nil, nil
	}
	target, err := p.targets.read(ctx, p.targetKey, true)
	if err != nil {
		return nil, err
	}
	p.observeTarget(target)
	return p.targets.conflict(target, p.targetKey.Name), nil
}

// refresh fetches the token: a User token with its own grant (never shared), any other shared
// with its credential set.
func (p *pass) refresh(ctx context.Context, in policy.Input) (attempt, error) {
	if c := p.creds.values; c != nil && !c.shared() && ctx.Err() == nil {
		return p.r.refreshUser(ctx, p, c)
	}
	return p.shared.refresh(ctx, &p.tokenPass, in)
}

// write writes the last good token into the target (create it, restore drift, or leave it as it
// is), then restarts the rollout targets when the token's value changed.
func (p *pass) write(ctx context.Context) error {
	w, err := p.targets.write(ctx, p.spec, p.held, p.now, p.targetKey, p.target)
	if err != nil {
		return err
	}
	p.recordTarget(w)
	p.recordRollout(p.r.rolloutRestart(ctx, p))
	return nil
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
	return p.st.TokenDigest != "" && p.shared.memory.Token(p.key, p.uid) == nil
}

// observeTarget records what the target Secret holds and the last good token: memory's, else the
// one the owned Secret holds when status vouches for it (after a restart); and the expiry of the
// token the Secret verifiably holds, which Ready follows.
func (p *pass) observeTarget(t ownedsecret.State) {
	p.target = t
	mem := p.shared.memory
	p.held = mem.Token(p.key, p.uid)
	if p.held == nil && t.Live != nil {
		if h := recoverHeld(p.shared.digests, p.uid, p.st, p.spec.TargetKey, t.Live); h != nil {
			p.held = h
			mem.SetToken(p.key, *h)
			mem.SetShown(p.key, *h)
			// A rollout restart digest an earlier version wrote for this token is this token's:
			// the new digest restarts nothing.
			if st := &p.tok.Status; p.shared.digests.Matches(st.RolloutRestartDigest, p.uid, "token", h.AccessToken) {
				st.RolloutRestartDigest = p.shared.digests.Token(p.uid, h.AccessToken)
			}
		}
	}
	if t.View != nil {
		// The held token, or the one written before it when a newer token has not reached the
		// Secret yet (its refresh-token store failed, say).
		p.targetExpiry = shownExpiry(p.spec.TargetKey, t.View, p.held, mem.Shown(p.key, p.uid))
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
	if w.changed {
		switch old := p.target.View; {
		case old == nil:
			p.log.V(1).Info("Created Secret", "secret", p.targetKey.Name)
		case !ownedsecret.Holds(old, p.spec.TargetKey, p.held.AccessToken) && p.targetExpiry.IsZero() &&
			p.tok.Status.TokenDigest == p.before.Status.TokenDigest:
			p.log.Info("Restored target Secret", "secret", p.targetKey.Name)
		default:
			p.log.V(1).Info("Updated target Secret", "secret", p.targetKey.Name)
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

// ready is Ready: True while the target Secret holds an unexpired token, which turns False at
// its expiry.
func (p *pass) ready() (readyState, time.Time) {
	var until time.Time
	if p.now.Before(p.targetExpiry) {
		until = p.targetExpiry
	}
	return p.readyFor(p.targetExpiry, "Secret "+p.targetKey.Name), until
}

func (p *pass) statusWrite() statusWrite {
	return statusWrite{client: p.r.Client, events: p.r.Recorder, kind: kindToken, obj: p.tok, before: p.before,
		changed: !equality.Semantic.DeepEqual(p.before.Status, p.tok.Status), beforeStatus: &p.before.Status.TokenStatus}
}

// setMetrics publishes the status settle wrote (Ready and the next refresh included).
func (p *pass) setMetrics() {
	metrics.SetToken(p.tok.Namespace, p.tok.Name, string(p.spec.Type), &p.tok.Status.TokenStatus)
}
