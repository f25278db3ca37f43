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
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/safe"
)

// RBAC: rollout restart needs get and patch on apps deployments, statefulsets and daemonsets. That
// grant is deliberately not a +kubebuilder:rbac marker (controller-gen would put it into the base
// manager-role): it ships as the optional kustomize component config/components/rollout-restart,
// next to the --enable-rollout-restart flag it goes with.

const (
	// rolloutRestartInterval is the least time between two restarts of one workload.
	rolloutRestartInterval = 10 * time.Minute
	// rolloutRetry is when a failed restart is tried again.
	rolloutRetry = time.Minute
)

// workload returns an empty object of the kind, and its pod template once read.
func workload(kind v1alpha1.WorkloadKind) (client.Object, func() *corev1.PodTemplateSpec) {
	switch kind {
	case v1alpha1.WorkloadKindStatefulSet:
		o := &appsv1.StatefulSet{}
		return o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	case v1alpha1.WorkloadKindDaemonSet:
		o := &appsv1.DaemonSet{}
		return o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	default:
		o := &appsv1.Deployment{}
		return o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	}
}

// rolloutOutcome is the outcome of restarting spec.rolloutRestartTargets.
type rolloutOutcome struct {
	// done is set when every target carries the token's digest (or none needs it).
	done bool
	// failed lists the targets that could not be restarted, each with a short reason.
	failed []string
	// wakeups are when restarts held back by the 10-minute limit, or a retry, are due.
	wakeups []time.Time
}

// rolloutRestart restarts spec.rolloutRestartTargets when the token's value changed (status
// tokenDigest differs from rolloutRestartDigest): it sets their pod-template annotation
// dingtalk.tokens.dev/token-digest to the tokenDigest, at most once per 10 minutes per workload
// (the time is kept in the pod template too, so several DingTalkTokens share the limit). Failures
// are reported as Refreshed=False RolloutRestartFailed; the token is written regardless.
// It returns nil when nothing was due.
func (r *DingTalkTokenReconciler) rolloutRestart(ctx context.Context, p *pass) *rolloutOutcome {
	st := &p.tok.Status
	if st.TokenDigest == "" || st.RolloutRestartDigest == st.TokenDigest || !p.now.Before(p.targetExpiry) {
		return nil
	}
	if !p.rolloutWanted() {
		return &rolloutOutcome{done: true}
	}
	out := &rolloutOutcome{done: true}
	for _, t := range p.tok.Spec.RolloutRestartTargets {
		done, wait, err := r.restartWorkload(ctx, p, t)
		switch {
		case err != nil:
			out.failed = append(out.failed, fmt.Sprintf("%s %s: %s", t.Kind, t.Name, err))
			out.done = false
		case !done:
			out.done = false
			out.wakeups = append(out.wakeups, wait)
		}
	}
	if len(out.failed) > 0 {
		out.wakeups = append(out.wakeups, p.now.Add(rolloutRetry))
	}
	return out
}

// rolloutWanted reports whether this DingTalkToken restarts workloads when its token changes.
func (p *pass) rolloutWanted() bool {
	return p.r.EnableRolloutRestart && len(p.tok.Spec.RolloutRestartTargets) > 0
}

// restartWorkload patches one workload's pod template, unless it already carries the digest; when
// it was restarted less than 10 minutes ago it returns done=false and when to try again.
func (r *DingTalkTokenReconciler) restartWorkload(ctx context.Context, p *pass, t v1alpha1.RolloutRestartTarget) (bool, time.Time, error) {
	obj, template := workload(t.Kind)
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: p.tok.Namespace, Name: t.Name}, obj); err != nil {
		return false, time.Time{}, apiReason(err)
	}
	ann := template().Annotations
	digest := p.tok.Status.TokenDigest
	if ann[v1alpha1.TokenDigestAnnotation] == digest {
		return true, time.Time{}, nil
	}
	if last, err := time.Parse(time.RFC3339, ann[v1alpha1.RestartedAtAnnotation]); err == nil {
		if next := last.Add(rolloutRestartInterval); p.now.Before(next) {
			p.log.V(1).Info("Rollout restart held back", "kind", t.Kind, "name", t.Name, "until", rfc3339(next))
			return false, next, nil
		}
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{
			v1alpha1.TokenDigestAnnotation: digest,
			v1alpha1.RestartedAtAnnotation: rfc3339(p.now),
		}}}}})
	if err := r.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return false, time.Time{}, apiReason(err)
	}
	p.log.Info("Restarted workload", "kind", t.Kind, "name", t.Name)
	return true, time.Time{}, nil
}

// apiReason shortens an API error to its reason, for a condition message.
func apiReason(err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("not found")
	case apierrors.IsForbidden(err):
		return fmt.Errorf("forbidden (the rollout-restart RBAC component is not installed?)")
	default:
		return safe.APIError(err)
	}
}
