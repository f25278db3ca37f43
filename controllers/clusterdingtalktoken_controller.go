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
	"errors"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
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

// +kubebuilder:rbac:groups=dingtalk.tokens.dev,resources=clusterdingtalktokens,verbs=get;list;watch
// +kubebuilder:rbac:groups=dingtalk.tokens.dev,resources=clusterdingtalktokens/status,verbs=update;patch
// +kubebuilder:rbac:groups=dingtalk.tokens.dev,resources=clusterdingtalktokens/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=delete

// clusterControllerName names the ClusterDingTalkToken controller.
const clusterControllerName = "clusterdingtalktoken"

// Indexes of the ClusterDingTalkToken controller.
const (
	// clusterCredentialsIndex indexes ClusterDingTalkTokens by "namespace/name" of their
	// credentials Secret.
	clusterCredentialsIndex = ".spec.credentialsRef"
	// controllerUIDIndex indexes the operator's Secrets by the UID of the ClusterDingTalkToken
	// that controls them (a DingTalkToken's Secrets are not indexed: an index entry per Secret).
	controllerUIDIndex = ".metadata.controllerUID"
)

// ClusterDingTalkTokenReconciler keeps the target Secret of each ClusterDingTalkToken, in every
// namespace its selector picks, holding a valid token: one token (one DingTalk call per refresh,
// shared with DingTalkTokens of the same credential set through the Machinery), written into
// many namespaces. Namespaces are watched as metadata; no finalizer is ever put on a Namespace.
type ClusterDingTalkTokenReconciler struct {
	// Client is the manager's client: cached reads (ClusterDingTalkTokens, the operator's
	// Secrets, Namespaces as metadata) and every write.
	client.Client
	// APIReader reads uncached: target names the cache cannot see.
	APIReader client.Reader
	// Recorder emits events on transitions only.
	Recorder events.EventRecorder
	// MaxConcurrentReconciles is passed to the controller.
	MaxConcurrentReconciles int
	// Machinery is shared with the DingTalkToken reconciler (required).
	*Machinery
}

// SetupWithManager registers the controller: ClusterDingTalkTokens, their target Secrets, the
// credentials Secrets they name (the Machinery's credentials watch) and Namespaces (metadata only).
func (r *ClusterDingTalkTokenReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Machinery == nil || r.Recorder == nil {
		return errors.New("ClusterDingTalkTokenReconciler needs the Machinery and a Recorder")
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if err := r.setup(mgr, r.Client, r.APIReader, nil); err != nil {
		return err
	}
	ctx := context.Background()
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.ClusterDingTalkToken{}, clusterCredentialsIndex,
		func(o client.Object) []string {
			ref := o.(*v1alpha1.ClusterDingTalkToken).Spec.CredentialsRef
			return []string{ref.Namespace + "/" + ref.Name}
		}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Secret{}, controllerUIDIndex,
		func(o client.Object) []string {
			if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "ClusterDingTalkToken" {
				return []string{string(ref.UID)}
			}
			return nil
		}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(clusterControllerName).
		For(&v1alpha1.ClusterDingTalkToken{}, builder.WithPredicates(specOrRequestChanged())).
		Owns(&corev1.Secret{}).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.tokensForNamespace)).
		WatchesRawSource(r.credentials.Source(r.tokensForCredentials)).
		// DingTalk Stream: a connection's state changed or a pushed ticket was stored.
		WatchesRawSource(source.Channel(r.tickets.ClusterEvents, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
}

// tokensForNamespace maps a Namespace (before and after a change) to the ClusterDingTalkTokens
// whose selector picks it: a namespace that starts or stops matching is provisioned or cleaned at
// once.
func (r *ClusterDingTalkTokenReconciler) tokensForNamespace(ctx context.Context, ns client.Object) []reconcile.Request {
	var list v1alpha1.ClusterDingTalkTokenList
	if err := r.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list ClusterDingTalkTokens for a namespace", "namespace", ns.GetName())
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		sel, err := metav1.LabelSelectorAsSelector(list.Items[i].Spec.NamespaceSelector)
		if err == nil && sel.Matches(labels.Set(ns.GetLabels())) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
		}
	}
	return out
}

// tokensForCredentials maps a Secret to the ClusterDingTalkTokens naming it as credentials.
func (r *ClusterDingTalkTokenReconciler) tokensForCredentials(ctx context.Context, s *metav1.PartialObjectMetadata) []reconcile.Request {
	var list v1alpha1.ClusterDingTalkTokenList
	if err := r.List(ctx, &list, client.MatchingFields{clusterCredentialsIndex: s.Namespace + "/" + s.Name}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list ClusterDingTalkTokens for a credentials Secret", "secret", s.Name)
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
	}
	return out
}

// Reconcile converges one ClusterDingTalkToken: every namespace its selector picks holds a valid
// token in the target Secret, refreshed on time; namespaces it no longer picks hold none. The pass
// (pass.go) sees the namespaces, reads the credentials (holding the suite's Stream connection
// whether namespaces are picked or not: tickets keep arriving), decides, refreshes (no call while
// no namespace is picked), writes every picked namespace and writes status once; per-namespace
// failures become status.
func (r *ClusterDingTalkTokenReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return r.Machinery.reconcile(ctx, func(ctx context.Context) (kindPass, error) {
		tok := &v1alpha1.ClusterDingTalkToken{}
		found, err := r.loadFresh(ctx, r.Client, r.APIReader, kindCluster, types.NamespacedName{Name: req.Name}, tok)
		if err != nil || !found {
			return nil, err
		}
		return r.startPass(ctx, tok), nil
	})
}
