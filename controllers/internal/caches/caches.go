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

// Package caches says what the manager's informer caches hold and what they keep of each object:
// the operator's own Secrets as data-free views, the DingTalkTokens and ClusterDingTalkTokens a
// shard serves with only what the passes read, and no managedFields.
package caches

import (
	"unique"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
)

// Options returns the manager's cache options: Secrets are cached only when labelled
// app.kubernetes.io/managed-by=dingtalk-token-operator, as views that hold no data
// (ownedsecret.Transform), DingTalkTokens and ClusterDingTalkTokens only when tokens matches them
// (nil or empty: all; the operator serves no other) and only with what the passes read of them
// (compactToken), and everything only in namespaces (empty: all). Memory then follows the number
// of the operator's own Secrets, not the cluster's Secrets nor their size. managedFields are
// dropped (stripManagedFields).
func Options(namespaces []string, tokens labels.Selector) cache.Options {
	if tokens != nil && tokens.Empty() {
		tokens = nil
	}
	return cache.Options{
		DefaultNamespaces: namespaceConfig(namespaces),
		DefaultTransform:  stripManagedFields,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Label:     labels.SelectorFromSet(labels.Set{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}),
				Transform: ownedsecret.Transform,
			},
			&v1alpha1.DingTalkToken{}:        {Label: tokens, Transform: compactToken},
			&v1alpha1.ClusterDingTalkToken{}: {Label: tokens, Transform: compactToken},
		},
	}
}

func namespaceConfig(namespaces []string) map[string]cache.Config {
	if len(namespaces) == 0 {
		return nil
	}
	out := make(map[string]cache.Config, len(namespaces))
	for _, ns := range namespaces {
		out[ns] = cache.Config{}
	}
	return out
}

// What the informer caches keep of each object. managedFields are most of a cached object's
// size (about 1 KiB for a DingTalkToken whose status the operator writes), and `kubectl apply`
// keeps a copy of the whole object in an annotation: the operator reads neither, but its own
// field manager's entries on its Secrets, which the Secrets' own transform keeps
// (ownedsecret.Transform: no data, no foreign entries, no last-applied copy).

// lastApplied is the annotation `kubectl apply` keeps the whole applied object in.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// stripManagedFields drops managedFields and kubectl's last-applied copy of the object:
// DingTalkTokens, ClusterDingTalkTokens and Namespaces.
var stripManagedFields toolscache.TransformFunc = func(in any) (any, error) {
	obj, err := meta.Accessor(in)
	if err != nil {
		return in, nil
	}
	if obj.GetManagedFields() != nil {
		obj.SetManagedFields(nil)
	}
	if a := obj.GetAnnotations(); a[lastApplied] != "" {
		delete(a, lastApplied)
		obj.SetAnnotations(a)
	}
	return in, nil
}

// compactToken keeps of a DingTalkToken or ClusterDingTalkToken what the passes read: its identity
// (name, namespace, uid, resourceVersion, generation, deletion), its refresh-requested-at
// annotation, its spec and its status. Its labels (the cache selects by them on the API server),
// its other annotations, ownerReferences, finalizers and managedFields go: a token applied by Helm
// or Argo CD carries several of each. The strings most tokens repeat (the namespace, the type,
// the conditions' types, statuses and reasons) are shared (unique.Make), not one copy per token.
var compactToken toolscache.TransformFunc = func(in any) (any, error) {
	switch t := in.(type) {
	case *v1alpha1.DingTalkToken:
		compactMeta(&t.ObjectMeta)
		t.Spec.Type = v1alpha1.TokenType(intern(string(t.Spec.Type)))
		compactStatus(&t.Status.TokenStatus)
	case *v1alpha1.ClusterDingTalkToken:
		compactMeta(&t.ObjectMeta)
		t.Spec.Type = v1alpha1.TokenType(intern(string(t.Spec.Type)))
		t.Spec.CredentialsRef.Namespace = intern(t.Spec.CredentialsRef.Namespace)
		compactStatus(&t.Status.TokenStatus)
	default:
		return stripManagedFields(in)
	}
	return in, nil
}

// compactMeta leaves the metadata a pass reads.
func compactMeta(m *metav1.ObjectMeta) {
	var ann map[string]string
	if v, ok := m.Annotations[v1alpha1.RefreshRequestedAtAnnotation]; ok {
		ann = map[string]string{v1alpha1.RefreshRequestedAtAnnotation: v}
	}
	*m = metav1.ObjectMeta{
		Name: m.Name, Namespace: intern(m.Namespace), UID: m.UID, ResourceVersion: m.ResourceVersion,
		Generation: m.Generation, CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp, DeletionGracePeriodSeconds: m.DeletionGracePeriodSeconds,
		Annotations: ann,
	}
}

// compactStatus shares the status strings tokens repeat.
func compactStatus(st *v1alpha1.TokenStatus) {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		c.Type, c.Status, c.Reason = intern(c.Type), metav1.ConditionStatus(intern(string(c.Status))), intern(c.Reason)
	}
	st.LastFailureReason = intern(st.LastFailureReason)
}

// intern is the one shared copy of s.
func intern(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}
