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

// Package ownedsecret is the one home of the Secrets the operator owns (targets, refresh-token
// and suite-ticket Secrets): the data-free view the cache keeps of them, whether one holds what
// the operator would write, the writes (a create, then server-side apply under one field owner,
// never over a Secret another owner controls), and what this process last wrote, so that a cached
// copy older than its own write is read again (read-your-writes).
package ownedsecret

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// Secret views: what the operator holds of a Secret. Any namespace editor can label Secrets
// app.kubernetes.io/managed-by: dingtalk-token-operator, which puts them in the operator's cache,
// and any Secret may be up to 1 MiB. So the cache keeps no Secret data: a transform turns each
// labelled Secret into a view before it is stored.
//   - A Secret no DingTalkToken or ClusterDingTalkToken controls (no controller reference to one):
//     its identity only (name, namespace, uid, resourceVersion): enough to see it is not owned.
//   - A Secret one of them controls: its metadata, with annotation and data values replaced by
//     short digests (the used-bootstrap list of a refresh-token Secret, HMACs, kept as is when
//     short), and only this operator's managed-fields entries: enough to tell whether it holds
//     what the operator would write. A view whose maps or managed fields are over a bound keeps
//     none of them and is marked truncated: whoever needs them reads the Secret uncached.
// Memory then follows the number of the operator's own Secrets, never their size. Every Secret the
// reconcilers compare is a view (View also normalises the ones read uncached); the few
// steps that need a value (recovering a token after a restart, rotating a refresh token) read the
// Secret uncached.

const (
	// maxViewKeys bounds the labels, the annotations and the data keys a view keeps (an owned
	// Secret has at most 65 of each: 64 from the template and the operator's own).
	maxViewKeys = 128
	// maxViewKeyBytes bounds the bytes of the keys of those maps, all together.
	maxViewKeyBytes = 32 << 10
	// maxViewManagedFields bounds the bytes of the operator's managed-fields entries a view keeps.
	maxViewManagedFields = 64 << 10
	// maxViewUsedBootstrap is the longest used-bootstrap list kept as is (16 HMACs of 21 bytes).
	maxViewUsedBootstrap = 1 << 10
	// viewDigestSize is the size of a value's digest in a view.
	viewDigestSize = 16
)

// viewAnnotation marks a view (its value is this process's viewMark, which no Secret can carry:
// a transform may see its own output again, and must not digest digests).
const viewAnnotation = "dingtalk.tokens.dev/view"

// truncatedAnnotation marks a view that kept no maps: read the Secret uncached.
const truncatedAnnotation = "dingtalk.tokens.dev/view-truncated"

// viewMark is a random per-process value: no Secret from the API server carries it.
var viewMark = func() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}()

// Transform is the cache's transform: each Secret becomes its view.
func Transform(in any) (any, error) {
	s, ok := in.(*corev1.Secret)
	if !ok {
		return in, nil
	}
	return View(s, true), nil
}

// View returns the view of s (s itself when it is one). bounded: the view keeps no maps when
// they are over the bounds (the cache); else it keeps them whatever their size (a Secret read
// uncached, compared and dropped).
func View(s *corev1.Secret, bounded bool) *corev1.Secret {
	if IsView(s) {
		return s
	}
	v := &corev1.Secret{
		TypeMeta: s.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion,
			CreationTimestamp: s.CreationTimestamp, DeletionTimestamp: s.DeletionTimestamp,
			Annotations: map[string]string{viewAnnotation: viewMark},
		},
		Type: s.Type,
	}
	ref := metav1.GetControllerOfNoCopy(s)
	if ref == nil || !ownerKind(ref) {
		return v // not the operator's: its identity is all it needs
	}
	v.OwnerReferences = []metav1.OwnerReference{*ref}
	if bounded && overBounds(s) {
		v.Annotations[truncatedAnnotation] = "true"
		return v
	}
	v.Labels = s.Labels
	for k, val := range s.Annotations {
		if k != viewAnnotation && k != truncatedAnnotation { // the view's own marks win
			v.Annotations[k] = string(valueDigest([]byte(val)))
		}
	}
	v.Data = make(map[string][]byte, len(s.Data))
	for k, val := range s.Data {
		if k == v1alpha1.UsedBootstrapKey && len(val) <= maxViewUsedBootstrap {
			v.Data[k] = val // HMACs, not secrets: compared as they are (bootstrap claims)
			continue
		}
		v.Data[k] = valueDigest(val)
	}
	for _, e := range s.ManagedFields {
		if e.Manager == string(FieldOwner) {
			v.ManagedFields = append(v.ManagedFields, e)
		}
	}
	return v
}

// IsView reports whether s is a view made by this process.
func IsView(s *corev1.Secret) bool { return s.Annotations[viewAnnotation] == viewMark }

// Truncated reports whether a view kept no maps (over the bounds): read the Secret uncached.
func Truncated(s *corev1.Secret) bool {
	return IsView(s) && s.Annotations[truncatedAnnotation] == "true"
}

// ownerKind reports whether a controller reference names a DingTalkToken or a ClusterDingTalkToken.
func ownerKind(ref *metav1.OwnerReference) bool {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == v1alpha1.GroupVersion.Group && strings.HasSuffix(ref.Kind, "DingTalkToken")
}

// overBounds reports whether the maps or the operator's managed fields of s are over what a view
// of the cache keeps.
func overBounds(s *corev1.Secret) bool {
	if len(s.Labels) > maxViewKeys || len(s.Annotations) > maxViewKeys || len(s.Data) > maxViewKeys {
		return true
	}
	keyBytes := 0
	for k := range s.Labels {
		keyBytes += len(k)
	}
	for k := range s.Annotations {
		keyBytes += len(k)
	}
	for k := range s.Data {
		keyBytes += len(k)
	}
	fields := 0
	for _, e := range s.ManagedFields {
		if e.Manager == string(FieldOwner) && e.FieldsV1 != nil {
			fields += len(e.FieldsV1.Raw)
		}
	}
	return keyBytes > maxViewKeyBytes || fields > maxViewManagedFields
}

// valueDigest is what a view holds for a value: a short SHA-256 (in process memory only; it
// tells whether a value is the one expected, without keeping the value).
func valueDigest(v []byte) []byte {
	sum := sha256.Sum256(v)
	return sum[:viewDigestSize]
}

// Holds reports whether the view s holds value under data key k.
func Holds(s *corev1.Secret, k, value string) bool {
	got, ok := s.Data[k]
	return ok && bytes.Equal(got, valueDigest([]byte(value)))
}

// holdsData reports whether the view s holds exactly data (the same keys, the same values).
func holdsData(s *corev1.Secret, data map[string][]byte) bool {
	if len(s.Data) != len(data) {
		return false
	}
	for k, v := range data {
		if !Holds(s, k, string(v)) && !(k == v1alpha1.UsedBootstrapKey && bytes.Equal(s.Data[k], v)) {
			return false
		}
	}
	return true
}

// holdsAnnotations reports whether the view s carries every annotation of want with its value.
func holdsAnnotations(s *corev1.Secret, want map[string]string) bool {
	for k, v := range want {
		got, ok := s.Annotations[k]
		if !ok || got != string(valueDigest([]byte(v))) {
			return false
		}
	}
	return true
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
