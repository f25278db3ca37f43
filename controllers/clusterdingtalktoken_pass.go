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
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/memory"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/policy"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/safe"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

// The fan-out of a ClusterDingTalkToken: one token, held like a DingTalkToken's (tokenPass), and
// a target Secret per picked namespace, each written like a DingTalkToken's target (targets),
// through the same pass skeleton (pass.go).

const (
	// provisionWorkers bounds the target writes of one pass in flight at once.
	provisionWorkers = 8
	// provisionRetry is when a namespace whose write failed is tried again.
	provisionRetry = 30 * time.Second
)

// clusterPass is one reconcile of one ClusterDingTalkToken.
type clusterPass struct {
	tokenPass
	r      *ClusterDingTalkTokenReconciler
	tok    *v1alpha1.ClusterDingTalkToken
	before *v1alpha1.ClusterDingTalkToken
	// counts and failed are what status.namespaces and status.failedNamespaces will say.
	counts v1alpha1.NamespaceCounts
	failed []v1alpha1.FailedNamespace
	// selectorInvalid says why spec.namespaceSelector could not be used ("": it could).
	selectorInvalid string
	// targets writes the target Secrets; fan is what the pass saw of the namespaces.
	targets targets
	fan     fanOut
}

func (r *ClusterDingTalkTokenReconciler) startPass(ctx context.Context, tok *v1alpha1.ClusterDingTalkToken) *clusterPass {
	log := ctrl.LoggerFrom(ctx).WithValues("clusterdingtalktoken", klog.KObj(tok))
	return &clusterPass{
		tokenPass: r.startTokenPass(log, tok, specOfClusterDingTalkToken(tok), &tok.Status.TokenStatus),
		r:         r,
		tok:       tok,
		before:    tok.DeepCopy(),
		targets:   targets{store: r.secrets, owner: tok, ownerKind: kindCluster},
	}
}

// observe sees where the token goes (the namespaces the selector picks and the target Secrets
// this object already owns) and recovers the last good token (memory, else an owned target
// status vouches for).
func (p *clusterPass) observe(ctx context.Context) error {
	fan, err := p.r.observeFanOut(ctx, p)
	if err != nil {
		return err
	}
	p.observeFanOut(fan)
	return nil
}

// prepare stops the pass before a DingTalk call when a template cannot render (it blocks every
// write); namespaces no longer picked lose their Secret.
func (p *clusterPass) prepare(ctx context.Context) (*failure, error) {
	if f := dryRunTemplates(p.spec); f != nil {
		return f, nil
	}
	return nil, p.r.unprovision(ctx, p, p.fan)
}

// beforeCall: nothing to check: a target name taken in a namespace fails that namespace alone.
func (p *clusterPass) beforeCall(context.Context, policy.Input) (*failure, error) { return nil, nil }

// refresh fetches the token, shared with every object of the same credential set (admission
// refuses the User type, whose tokens are never shared).
func (p *clusterPass) refresh(ctx context.Context, in policy.Input) (attempt, error) {
	return p.shared.refresh(ctx, &p.tokenPass, in)
}

// write writes the last good token into every picked namespace.
func (p *clusterPass) write(ctx context.Context) error {
	p.recordProvisioning(p.r.provision(ctx, p, p.fan))
	return nil
}

// fanOut is what a pass sees of the namespaces of a ClusterDingTalkToken.
type fanOut struct {
	// matched are the namespaces the selector picks, being deleted or not, in name order.
	matched []string
	// owned are the target Secrets the object owns, by namespace (cached views).
	owned map[string]*corev1.Secret
	// recovered is the last good token an owned target holds, read uncached after a restart
	// (nil: memory holds one, or none could be verified).
	recovered *memory.Token
	// selectorInvalid says why the selector could not be used ("": it could).
	selectorInvalid string
}

// observeFanOut lists the namespaces the selector picks (metadata, cached) and the Secrets the
// object owns (cached, by the controller-owner index). Namespaces being deleted are not picked:
// nothing is created in them, and their deletion removes what they hold.
func (r *ClusterDingTalkTokenReconciler) observeFanOut(ctx context.Context, p *clusterPass) (fanOut, error) {
	fan := fanOut{owned: map[string]*corev1.Secret{}}
	var secrets corev1.SecretList
	if err := r.List(ctx, &secrets, client.MatchingFields{controllerUIDIndex: string(p.uid)}); err != nil {
		return fan, err
	}
	for i := range secrets.Items {
		if s := &secrets.Items[i]; s.Name == p.tok.Spec.Target.Name {
			fan.owned[s.Namespace] = s
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(p.tok.Spec.NamespaceSelector)
	if err != nil {
		fan.selectorInvalid = "spec.namespaceSelector is invalid: " + err.Error()
		return fan, nil
	}
	namespaces := &metav1.PartialObjectMetadataList{}
	namespaces.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := r.List(ctx, namespaces, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return fan, err
	}
	for _, ns := range namespaces.Items {
		if ns.DeletionTimestamp.IsZero() {
			fan.matched = append(fan.matched, ns.Name)
		}
	}
	slices.Sort(fan.matched)
	fan.recovered, err = r.recoverFanOut(ctx, p, fan)
	return fan, err
}

// recoverFanOut recovers the last good token after a restart (memory holds none, status says one
// was issued) from the first owned target, read uncached, that holds the token status vouches for.
func (r *ClusterDingTalkTokenReconciler) recoverFanOut(ctx context.Context, p *clusterPass, fan fanOut) (*memory.Token, error) {
	if p.st.TokenDigest == "" || r.memory.Token(p.key, p.uid) != nil {
		return nil, nil
	}
	for _, ns := range fan.matched {
		if fan.owned[ns] == nil {
			continue
		}
		st, err := r.secrets.Live(ctx, p.tok, types.NamespacedName{Namespace: ns, Name: p.tok.Spec.Target.Name})
		if err != nil {
			return nil, err
		}
		if st.Live == nil {
			continue
		}
		if h := recoverHeld(p.shared.digests, p.uid, p.st, p.spec.TargetKey, st.Live); h != nil {
			return h, nil
		}
	}
	return nil, nil
}

// observeFanOut records what the namespaces hold: the last good token (memory's, else one an
// owned target holds that status vouches for, after a restart), and how many picked namespaces
// hold it.
func (p *clusterPass) observeFanOut(fan fanOut) {
	p.fan = fan
	mem := p.shared.memory
	p.selectorInvalid = fan.selectorInvalid
	p.unused = len(fan.matched) == 0
	p.held = mem.Token(p.key, p.uid)
	if p.held == nil && fan.recovered != nil {
		p.held = fan.recovered
		mem.SetToken(p.key, *fan.recovered)
	}
	p.counts = v1alpha1.NamespaceCounts{Matched: int32(len(fan.matched))}
	for _, ns := range fan.matched {
		if s := fan.owned[ns]; s != nil && p.now.Before(heldExpiry(p.spec.TargetKey, s, p.held)) {
			p.counts.Provisioned++
		}
	}
}

// provisioning is the outcome of writing the token into the picked namespaces.
type provisioning struct {
	provisioned int32
	// failed are the namespaces that could not be written, in name order.
	failed []v1alpha1.FailedNamespace
}

// provision writes the held token into the target Secret of every picked namespace, a few at a
// time: created where there is none, restored where it drifted. A namespace that fails (a foreign
// Secret of that name, an API error) fails alone.
func (r *ClusterDingTalkTokenReconciler) provision(ctx context.Context, p *clusterPass, fan fanOut) provisioning {
	var out provisioning
	h := p.held
	if h == nil || !p.now.Before(h.ExpiresAt) {
		return out
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(provisionWorkers)
	for _, ns := range fan.matched {
		g.Go(func() error {
			if gctx.Err() != nil {
				return nil // the manager is stopping: writes under way finish, no new one starts
			}
			key := types.NamespacedName{Namespace: ns, Name: p.tok.Spec.Target.Name}
			var state ownedsecret.State
			var err error
			if cached := fan.owned[ns]; cached != nil {
				// The owned Secret from the cache (read again when the cache may predate this
				// process's own write); else nothing known: the write creates it, and a name
				// taken by someone else is found then.
				state, err = r.secrets.Checked(gctx, p.tok, cached)
			}
			var w targetWrite
			if err == nil {
				w, err = p.targets.write(gctx, p.spec, h, p.now, key, state)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				out.failed = append(out.failed, v1alpha1.FailedNamespace{Namespace: ns,
					Reason: v1alpha1.ReasonTargetWriteFailed, Message: safe.APIError(err).Error()})
			case w.failure != nil:
				out.failed = append(out.failed, v1alpha1.FailedNamespace{Namespace: ns, Reason: w.failure.reason, Message: w.failure.message})
			case w.written:
				out.provisioned++
			}
			return nil
		})
	}
	_ = g.Wait()
	slices.SortFunc(out.failed, func(a, b v1alpha1.FailedNamespace) int { return strings.Compare(a.Namespace, b.Namespace) })
	return out
}

// unprovision deletes the target Secrets of namespaces the selector no longer picks (or that are
// being deleted). The delete is preconditioned on the Secret's UID: a Secret re-created meanwhile
// is not touched.
func (r *ClusterDingTalkTokenReconciler) unprovision(ctx context.Context, p *clusterPass, fan fanOut) error {
	if fan.selectorInvalid != "" {
		return nil
	}
	for ns, s := range fan.owned {
		if _, picked := slices.BinarySearch(fan.matched, ns); picked {
			continue
		}
		switch err := r.Delete(ctx, s, client.Preconditions{UID: &s.UID}); {
		case err == nil:
			p.log.Info("Removed target Secret from a namespace no longer selected", "namespace", ns)
		case !apierrors.IsNotFound(err) && !apierrors.IsConflict(err):
			return fmt.Errorf("removing the target Secret from namespace %s: %w", ns, safe.APIError(err))
		}
	}
	return nil
}

// recordProvisioning records the outcome of the writes.
func (p *clusterPass) recordProvisioning(o provisioning) {
	p.counts.Provisioned = o.provisioned
	p.failed = o.failed
	for _, f := range o.failed {
		if f.Reason == v1alpha1.ReasonTemplateInvalid {
			// The API server refused the template's metadata: the same in every namespace.
			p.fail(failure{reason: f.Reason, message: f.Message})
			return
		}
	}
	if len(o.failed) > 0 {
		p.wakeups = append(p.wakeups, p.now.Add(provisionRetry))
	}
	if o.provisioned == p.counts.Matched && o.provisioned > 0 {
		p.recordWritten()
	}
}

// ready is Ready: True while every picked namespace holds a valid token, which turns False at
// its expiry. It settles status.namespaces and status.failedNamespaces first.
func (p *clusterPass) ready() (readyState, time.Time) {
	st := &p.tok.Status
	counts := p.counts
	counts.Failed = int32(len(p.failed))
	counts.Summary = fmt.Sprintf("%d/%d", counts.Provisioned, counts.Matched)
	st.Namespaces = &counts
	st.FailedNamespaces = p.failed[:min(len(p.failed), v1alpha1.MaxFailedNamespaces)]
	if len(st.FailedNamespaces) == 0 {
		st.FailedNamespaces = nil
	}
	ready := p.readyState()
	var until time.Time
	if ready.status == metav1.ConditionTrue {
		until = p.heldUntil()
	}
	return ready, until
}

// readyState is Ready from the namespace counts and failures.
func (p *clusterPass) readyState() readyState {
	c := p.counts
	switch {
	case p.selectorInvalid != "":
		return readyState{metav1.ConditionFalse, v1alpha1.ReasonSelectorInvalid, p.selectorInvalid}
	case c.Matched == 0:
		return readyState{metav1.ConditionFalse, v1alpha1.ReasonPending, "No namespace matches spec.namespaceSelector"}
	case len(p.failed) > 0 && !p.suspended:
		names := make([]string, 0, 3)
		for _, f := range p.failed[:min(3, len(p.failed))] {
			names = append(names, fmt.Sprintf("%s (%s)", f.Namespace, f.Reason))
		}
		more := ""
		if len(p.failed) > 3 {
			more = ", ..."
		}
		return readyState{metav1.ConditionFalse, p.failed[0].Reason, fmt.Sprintf(
			"%d of %d selected namespaces could not be written: %s%s", len(p.failed), c.Matched, strings.Join(names, ", "), more)}
	}
	var validUntil time.Time
	if c.Provisioned == c.Matched && p.held != nil {
		validUntil = p.held.ExpiresAt
	}
	return p.readyFor(validUntil, fmt.Sprintf("Every selected namespace (%d)", c.Matched))
}

func (p *clusterPass) statusWrite() statusWrite {
	return statusWrite{client: p.r.Client, events: p.r.Recorder, kind: kindCluster, obj: p.tok, before: p.before,
		changed: !equality.Semantic.DeepEqual(p.before.Status, p.tok.Status), beforeStatus: &p.before.Status.TokenStatus}
}

// setMetrics publishes the status settle wrote (Ready and the next refresh included).
func (p *clusterPass) setMetrics() {
	c := p.tok.Status.Namespaces
	metrics.SetClusterToken(p.tok.Name, string(p.spec.Type), &p.tok.Status.TokenStatus, c.Matched, c.Provisioned, c.Failed)
}
