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

// Package controllers holds the reconcilers of the operator's two kinds, DingTalkToken and
// ClusterDingTalkToken, and the pass they share: it fetches DingTalk access tokens, writes them
// into target Secrets and refreshes them before they expire. The mechanics the pass uses are the
// leaves under controllers/internal (docs/design.md, "Layout").
package controllers

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// +kubebuilder:rbac:groups=dingtalk.tokens.dev,resources=dingtalktokens,verbs=get;list;watch
// +kubebuilder:rbac:groups=dingtalk.tokens.dev,resources=dingtalktokens/status,verbs=update;patch
// +kubebuilder:rbac:groups=dingtalk.tokens.dev,resources=dingtalktokens/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// credentialsRefIndex indexes DingTalkTokens by spec.credentialsRef.name.
const credentialsRefIndex = ".spec.credentialsRef.name"

// controllerName names the DingTalkToken controller (and, as ownedsecret.FieldOwner, the field
// owner of every write).
const controllerName = "dingtalktoken"

// DingTalkTokenReconciler keeps each DingTalkToken's target Secret holding a valid token.
//
// Where the last good token lives: in memory (keyed by the DingTalkToken, checked against its UID)
// and in the target Secret itself. A pass that must restore an edited or deleted target takes the
// token from memory. After a restart memory is empty: the token in the target Secret is trusted
// again when its HMAC (keyed by the installation's digest key) equals status.tokenDigest; when the
// target was deleted or edited while the operator was down, nothing trustworthy is left and the
// token is fetched again.
type DingTalkTokenReconciler struct {
	// Client is the manager's client: cached reads of DingTalkTokens and of the operator's own
	// (labelled) Secrets, and every write.
	client.Client
	// APIReader reads uncached: credentials Secrets, refresh-token Secrets before a rotation,
	// workloads, and target names the cache cannot see.
	APIReader client.Reader
	// Recorder emits events on transitions only (mgr.GetEventRecorder).
	Recorder events.EventRecorder
	// WatchNamespaces restricts the credentials watch (empty: all namespaces). The manager's own
	// cache is restricted through CacheOptions.
	WatchNamespaces []string
	// EnableRolloutRestart allows patching spec.rolloutRestartTargets' pod templates.
	EnableRolloutRestart bool
	// MaxConcurrentReconciles is passed to the controller (0: controller-runtime's default of 1).
	MaxConcurrentReconciles int
	// Machinery is what every token kind's reconciler shares (required: NewMachinery).
	*Machinery
}

// SetupWithManager registers the controller: DingTalkTokens, their owned Secrets (targets and
// refresh-token Secrets, from the label-selected cache) and, through the credentials watch, the
// credentials Secrets they reference.
func (r *DingTalkTokenReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Machinery == nil || r.Recorder == nil {
		return errors.New("DingTalkTokenReconciler needs the Machinery and a Recorder")
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	ctx := context.Background()
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.DingTalkToken{}, credentialsRefIndex,
		func(o client.Object) []string {
			return []string{o.(*v1alpha1.DingTalkToken).Spec.CredentialsRef.Name}
		}); err != nil {
		return err
	}
	if err := r.setup(mgr, r.Client, r.APIReader, r.WatchNamespaces); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(controllerName).
		For(&v1alpha1.DingTalkToken{}, builder.WithPredicates(specOrRequestChanged())).
		Owns(&corev1.Secret{}).
		WatchesRawSource(r.credentials.Source(r.tokensForCredentials)).
		// DingTalk Stream: a connection's state changed or a pushed ticket was stored.
		WatchesRawSource(source.Channel(r.tickets.TokenEvents, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
}

// tokensForCredentials maps a Secret to the DingTalkTokens naming it as credentials.
func (r *DingTalkTokenReconciler) tokensForCredentials(ctx context.Context, s *metav1.PartialObjectMetadata) []reconcile.Request {
	var list v1alpha1.DingTalkTokenList
	if err := r.List(ctx, &list, client.InNamespace(s.Namespace), client.MatchingFields{credentialsRefIndex: s.Name}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list DingTalkTokens for a credentials Secret", "secret", s.Name)
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

// Reconcile converges one DingTalkToken: its target Secret holds a valid token, refreshed on time.
// The pass (pass.go) reads the target Secret, stores a pending User refresh token, reads the
// credentials, decides, refreshes, writes the target, restarts the rollout targets and writes
// status once.
func (r *DingTalkTokenReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return r.Machinery.reconcile(ctx, func(ctx context.Context) (kindPass, error) {
		// The object as this process last wrote it; gone or being deleted, nothing is left to
		// do (its Secrets go with it through their ownerReferences).
		tok := &v1alpha1.DingTalkToken{}
		found, err := r.loadFresh(ctx, r.Client, r.APIReader, kindToken, req.NamespacedName, tok)
		if err != nil || !found {
			return nil, err
		}
		return r.startPass(ctx, tok), nil
	})
}
