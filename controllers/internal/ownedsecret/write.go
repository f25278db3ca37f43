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

package ownedsecret

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/util/csaupgrade"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// Owned Secrets (targets, refresh-token and suite-ticket Secrets) are written under one field owner, FieldOwner.
// The first write is a create, so that a Secret someone else created under that name a moment
// earlier is never taken over (AlreadyExists). Every later write is a server-side apply, forced,
// under the resourceVersion the pass read (a Secret replaced meanwhile is a conflict, not
// overwritten): what the operator stops setting (a label dropped from the template, a data key)
// is removed by the API server, and what others set on the Secret's metadata stays. Data keys
// someone else added are removed: an owned Secret holds exactly the operator's data.

// FieldOwner is the field manager of every write the operator makes (its controllers' name).
const FieldOwner = client.FieldOwner("dingtalktoken")

// Desired is what an owned Secret must hold.
type Desired struct {
	Namespace, Name     string
	Labels, Annotations map[string]string
	Data                map[string][]byte
}

// writer writes Secrets owned (controller ownerReference) by an object.
type writer struct {
	client client.Client
	scheme *runtime.Scheme
	// reader reads uncached: the full managedFields an ownership upgrade rewrites (a view keeps
	// only this field manager's entries; a Secret read uncached has them all).
	reader client.Reader
}

// create creates the Secret owned by owner. AlreadyExists is returned as is.
func (w writer) create(ctx context.Context, owner client.Object, d Desired) (*corev1.Secret, error) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name, Labels: d.Labels, Annotations: d.Annotations},
		Type:       corev1.SecretTypeOpaque,
		Data:       d.Data,
	}
	if err := controllerutil.SetControllerReference(owner, s, w.scheme); err != nil {
		return nil, err
	}
	if err := w.client.Create(ctx, s, FieldOwner); err != nil {
		return nil, err
	}
	return s, nil
}

// apply makes the existing owned Secret live (a view) hold d, under live's resourceVersion, and
// returns the resourceVersion written.
func (w writer) apply(ctx context.Context, owner client.Object, live *corev1.Secret, d Desired) (string, error) {
	rv := live.ResourceVersion
	if stale := staleFields(live, d); stale && hasUpdateEntry(live) {
		// The fields the create set are held by an Update entry of this field owner, which an
		// apply does not release: merge it into the apply entry once, so that they can go.
		full, err := w.uncached(ctx, live)
		if err != nil {
			return "", err
		}
		patch, err := csaupgrade.UpgradeManagedFieldsPatch(full, sets.New(string(FieldOwner)), string(FieldOwner))
		if err != nil {
			return "", err
		}
		if patch != nil {
			upgraded := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: live.Namespace, Name: live.Name}}
			if err := w.client.Patch(ctx, upgraded, client.RawPatch(types.JSONPatchType, patch), FieldOwner); err != nil {
				return "", err
			}
			rv = upgraded.ResourceVersion
		}
	}
	ref, err := controllerRef(owner, w.scheme)
	if err != nil {
		return "", err
	}
	ac := corev1ac.Secret(d.Name, d.Namespace).
		WithResourceVersion(rv).
		WithType(corev1.SecretTypeOpaque).
		WithLabels(d.Labels).
		WithAnnotations(d.Annotations).
		WithOwnerReferences(ref).
		WithData(d.Data)
	if err := w.client.Apply(ctx, ac, FieldOwner, client.ForceOwnership); err != nil {
		return "", err
	}
	rv = ptr.Deref(ac.ResourceVersion, "")
	if extra := extraKeys(ac.Data, d.Data); len(extra) > 0 {
		// Keys someone else added stay with the apply (they are theirs): remove them.
		remove := map[string]any{}
		for _, k := range extra {
			remove[k] = nil
		}
		body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": rv}, "data": remove})
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name}}
		if err := w.client.Patch(ctx, s, client.RawPatch(types.MergePatchType, body), FieldOwner); err != nil {
			return "", err
		}
		rv = s.ResourceVersion
	}
	return rv, nil
}

// uncached is live with every managedFields entry, read from the API server unless live was;
// a Secret changed since the pass read it is a conflict (the pass is repeated).
func (w writer) uncached(ctx context.Context, live *corev1.Secret) (*corev1.Secret, error) {
	if !IsView(live) {
		return live, nil
	}
	full := &corev1.Secret{}
	if err := w.reader.Get(ctx, client.ObjectKeyFromObject(live), full); err != nil {
		return nil, err
	}
	if full.ResourceVersion != live.ResourceVersion {
		return nil, apierrors.NewConflict(corev1.Resource("secrets"), live.Name, errors.New("changed since it was read"))
	}
	return full, nil
}

// controllerRef is the controller ownerReference to owner.
func controllerRef(owner client.Object, scheme *runtime.Scheme) (*metav1ac.OwnerReferenceApplyConfiguration, error) {
	gvk, err := apiutil.GVKForObject(owner, scheme)
	if err != nil {
		return nil, err
	}
	return metav1ac.OwnerReference().
		WithAPIVersion(gvk.GroupVersion().String()).
		WithKind(gvk.Kind).
		WithName(owner.GetName()).
		WithUID(owner.GetUID()).
		WithController(true).
		WithBlockOwnerDeletion(true), nil
}

// UpToDate reports whether the owned Secret live (a view) already holds exactly d: the same data,
// d's labels and annotations, the controller reference, and no label, annotation or data key this
// field owner set earlier and d no longer has. A truncated view is never up to date.
func UpToDate(owner metav1.Object, live *corev1.Secret, d Desired) bool {
	return !Truncated(live) && metav1.IsControlledBy(live, owner) && blocksOwnerDeletion(live, owner) &&
		holdsData(live, d.Data) &&
		contains(live.Labels, d.Labels) && holdsAnnotations(live, d.Annotations) &&
		!staleFields(live, d)
}

// staleFields reports whether this field owner holds a label, annotation or data key of live
// that d does not have.
func staleFields(live *corev1.Secret, d Desired) bool {
	for _, e := range live.ManagedFields {
		if e.Manager != string(FieldOwner) || e.FieldsV1 == nil {
			continue
		}
		var f map[string]any
		if json.Unmarshal(e.FieldsV1.Raw, &f) != nil {
			continue
		}
		meta, _ := f["f:metadata"].(map[string]any)
		if outside(meta["f:labels"], d.Labels) || outside(meta["f:annotations"], d.Annotations) ||
			outside(f["f:data"], d.Data) {
			return true
		}
	}
	return false
}

// outside reports whether a managed-fields map node names a key ("f:<key>") that want lacks.
func outside[V any](node any, want map[string]V) bool {
	m, _ := node.(map[string]any)
	for k := range m {
		key, ok := strings.CutPrefix(k, "f:")
		if !ok {
			continue
		}
		if _, there := want[key]; !there {
			return true
		}
	}
	return false
}

// hasUpdateEntry reports whether this field owner holds fields of live through an Update entry
// (its create).
func hasUpdateEntry(live *corev1.Secret) bool {
	for _, e := range live.ManagedFields {
		if e.Manager == string(FieldOwner) && e.Operation == metav1.ManagedFieldsOperationUpdate {
			return true
		}
	}
	return false
}

// extraKeys lists the keys of have that want lacks.
func extraKeys(have, want map[string][]byte) []string {
	var out []string
	for k := range have {
		if _, ok := want[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

func blocksOwnerDeletion(s *corev1.Secret, owner metav1.Object) bool {
	for _, ref := range s.OwnerReferences {
		if ref.UID == owner.GetUID() {
			return ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion
		}
	}
	return false
}

func contains(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// ManagedLabels are the labels every owned Secret carries: the cache selects them by it.
func ManagedLabels(extra map[string]string) map[string]string {
	out := make(map[string]string, len(extra)+1)
	maps.Copy(out, extra)
	out[v1alpha1.ManagedByLabel] = v1alpha1.ManagedByValue
	return out
}
