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
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"iter"
	"maps"
	"slices"
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
//   - A Secret one of them controls: its identity, its controller reference and labels, and one
//     string (the view annotation) that holds, for each annotation and data key, a short digest of
//     its value and whether this operator's field manager owns it, which label keys it owns, and
//     whether it holds fields through an Update entry (its create): enough to tell whether the
//     Secret holds what the operator would write and what an apply would remove. The used-bootstrap
//     list of a refresh-token Secret (HMACs) is kept as it is, in Data. A view whose maps or managed
//     fields are over a bound keeps none of them and is marked truncated: whoever needs them reads
//     the Secret uncached.
// Memory then follows the number of the operator's own Secrets, never their size: a target
// Secret's view is about 1 KiB, where one with its maps, digests and managed-fields entries was
// about 2.3 KiB (docs/performance.md). Every Secret the reconcilers compare is a view (View also
// normalises the ones read uncached); the few steps that need a value (recovering a token after a
// restart, rotating a refresh token) read the Secret uncached.

const (
	// maxViewKeys bounds the labels, the annotations and the data keys a view keeps (an owned
	// Secret has at most 65 of each: 64 from the template and the operator's own).
	maxViewKeys = 128
	// maxViewKeyBytes bounds the bytes of the keys of those maps, all together.
	maxViewKeyBytes = 32 << 10
	// maxViewManagedFields bounds the bytes of the operator's managed-fields entries a view reads.
	maxViewManagedFields = 64 << 10
	// maxViewUsedBootstrap is the longest used-bootstrap list kept as is (16 HMACs of 21 bytes).
	maxViewUsedBootstrap = 1 << 10
	// viewDigestSize is the size of a value's digest in a view.
	viewDigestSize = 16
)

// viewAnnotation is a view's one annotation: this process's viewMark (which no Secret can carry: a
// transform may see its own output again, and must not digest digests), then the view's entries.
const viewAnnotation = "dingtalk.tokens.dev/view"

// viewMark is a random per-process value: no Secret from the API server carries it.
var viewMark = func() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}()

// A view's entries follow its mark and a header byte: viewTruncated (no entries: read the Secret
// uncached), viewUpdate (this field manager holds fields through an Update entry) or viewPlain.
// Each entry is a kind byte, a key, a NUL (no key holds one) and, for annotations and data, the
// value's digest (viewDigestSize bytes). The kind is lower case, upper case when this operator's
// field manager owns the key.
const (
	viewTruncated, viewUpdate, viewPlain = 'T', 'U', '-'

	entryLabel, entryAnnotation, entryData = 'l', 'a', 'd'
)

// Shared parts of views: owned Secrets carry the same label set, controller flags and kinds.
var (
	managedLabels   = ManagedLabels(nil)
	viewTrue        = true
	ownerAPIVersion = v1alpha1.GroupVersion.String()
)

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
		ObjectMeta: metav1.ObjectMeta{
			Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion,
			CreationTimestamp: s.CreationTimestamp, DeletionTimestamp: s.DeletionTimestamp,
		},
	}
	if s.Type == corev1.SecretTypeOpaque {
		v.Type = corev1.SecretTypeOpaque // the constant, not the decoded copy
	} else {
		v.Type = s.Type
	}
	ref := metav1.GetControllerOfNoCopy(s)
	if ref == nil || !ownerKind(ref) {
		v.Annotations = map[string]string{viewAnnotation: viewMark}
		return v // not the operator's: its identity is all it needs
	}
	v.OwnerReferences = []metav1.OwnerReference{compactRef(*ref)}
	if bounded && overBounds(s) {
		v.Annotations = map[string]string{viewAnnotation: viewMark + string(rune(viewTruncated))}
		return v
	}
	v.Labels = s.Labels
	if maps.Equal(s.Labels, managedLabels) {
		v.Labels = managedLabels // shared: views are never changed
	}
	o := ownedKeys(s)
	var b strings.Builder
	b.WriteString(viewMark)
	if o.update {
		b.WriteByte(viewUpdate)
	} else {
		b.WriteByte(viewPlain)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		if o.labels[k] {
			writeEntry(&b, ownedKind(entryLabel, true), k, nil)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Annotations)) {
		writeEntry(&b, ownedKind(entryAnnotation, o.annotations[k]), k, valueDigest([]byte(s.Annotations[k])))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Data)) {
		val := s.Data[k]
		writeEntry(&b, ownedKind(entryData, o.data[k]), k, valueDigest(val))
		if k == v1alpha1.UsedBootstrapKey && len(val) <= maxViewUsedBootstrap {
			v.Data = map[string][]byte{k: val} // HMACs, not secrets: read as they are (bootstrap claims)
		}
	}
	v.Annotations = map[string]string{viewAnnotation: b.String()}
	return v
}

func ownedKind(kind byte, owned bool) byte {
	if owned {
		return kind - ('a' - 'A')
	}
	return kind
}

func writeEntry(b *strings.Builder, kind byte, key string, digest []byte) {
	b.WriteByte(kind)
	b.WriteString(key)
	b.WriteByte(0)
	b.Write(digest)
}

// compactRef is the controller reference ref with the strings and flags every view shares.
func compactRef(ref metav1.OwnerReference) metav1.OwnerReference {
	if ref.APIVersion == ownerAPIVersion {
		ref.APIVersion = ownerAPIVersion
	}
	switch ref.Kind {
	case kindToken:
		ref.Kind = kindToken
	case kindCluster:
		ref.Kind = kindCluster
	}
	if ref.Controller != nil && *ref.Controller {
		ref.Controller = &viewTrue
	}
	if ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion {
		ref.BlockOwnerDeletion = &viewTrue
	}
	return ref
}

// The kinds that own Secrets.
const (
	kindToken   = "DingTalkToken"
	kindCluster = "ClusterDingTalkToken"
)

// owned are the label, annotation and data keys this operator's field manager owns in a Secret,
// and whether it holds any through an Update entry (its create).
type owned struct {
	labels, annotations, data map[string]bool
	update                    bool
}

// ownedKeys reads the keys this field manager owns from s's managed fields.
func ownedKeys(s *corev1.Secret) owned {
	var o owned
	for _, e := range s.ManagedFields {
		if e.Manager != string(FieldOwner) || e.FieldsV1 == nil {
			continue
		}
		o.update = o.update || e.Operation == metav1.ManagedFieldsOperationUpdate
		var f map[string]any
		if json.Unmarshal(e.FieldsV1.Raw, &f) != nil {
			continue
		}
		meta, _ := f["f:metadata"].(map[string]any)
		o.labels = addKeys(o.labels, meta["f:labels"])
		o.annotations = addKeys(o.annotations, meta["f:annotations"])
		o.data = addKeys(o.data, f["f:data"])
	}
	return o
}

// addKeys adds to set the keys a managed-fields map node names ("f:<key>").
func addKeys(set map[string]bool, node any) map[string]bool {
	m, _ := node.(map[string]any)
	for k := range m {
		if key, ok := strings.CutPrefix(k, "f:"); ok {
			if set == nil {
				set = map[string]bool{}
			}
			set[key] = true
		}
	}
	return set
}

// IsView reports whether s is a view made by this process.
func IsView(s *corev1.Secret) bool { return strings.HasPrefix(s.Annotations[viewAnnotation], viewMark) }

// header is the view's header byte (0: not a view, or the view of a foreign Secret).
func header(s *corev1.Secret) byte {
	v := s.Annotations[viewAnnotation]
	if len(v) <= len(viewMark) || !strings.HasPrefix(v, viewMark) {
		return 0
	}
	return v[len(viewMark)]
}

// Truncated reports whether a view kept no maps (over the bounds): read the Secret uncached.
func Truncated(s *corev1.Secret) bool { return header(s) == viewTruncated }

// entry is one of a view's entries: its kind (lower case), key, digest (annotations and data)
// and whether this field manager owns it.
type entry struct {
	kind        byte
	key, digest string
	owned       bool
}

// entries are the view s's entries, in order.
func entries(s *corev1.Secret) iter.Seq[entry] {
	return func(yield func(entry) bool) {
		h := header(s)
		if h != viewUpdate && h != viewPlain {
			return
		}
		rest := s.Annotations[viewAnnotation][len(viewMark)+1:]
		for len(rest) > 0 {
			e := entry{kind: rest[0]}
			if e.kind < 'a' {
				e.kind, e.owned = e.kind+('a'-'A'), true
			}
			key, after, ok := strings.Cut(rest[1:], "\x00")
			if !ok {
				return
			}
			e.key, rest = key, after
			if e.kind != entryLabel {
				if len(rest) < viewDigestSize {
					return
				}
				e.digest, rest = rest[:viewDigestSize], rest[viewDigestSize:]
			}
			if !yield(e) {
				return
			}
		}
	}
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

// find is the view s's entry of kind and key.
func find(s *corev1.Secret, kind byte, key string) (entry, bool) {
	for e := range entries(s) {
		if e.kind == kind && e.key == key {
			return e, true
		}
	}
	return entry{}, false
}

// Holds reports whether the view s holds value under data key k.
func Holds(s *corev1.Secret, k, value string) bool {
	e, ok := find(s, entryData, k)
	return ok && e.digest == string(valueDigest([]byte(value)))
}

// holdsData reports whether the view s holds exactly data (the same keys, the same values).
func holdsData(s *corev1.Secret, data map[string][]byte) bool {
	n := 0
	for e := range entries(s) {
		if e.kind != entryData {
			continue
		}
		n++
		v, ok := data[e.key]
		if !ok || e.digest != string(valueDigest(v)) {
			return false
		}
	}
	return n == len(data)
}

// holdsAnnotations reports whether the view s carries every annotation of want with its value.
func holdsAnnotations(s *corev1.Secret, want map[string]string) bool {
	for k, v := range want {
		e, ok := find(s, entryAnnotation, k)
		if !ok || e.digest != string(valueDigest([]byte(v))) {
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

// staleFields reports whether this field owner holds a label, annotation or data key of the view
// live that d does not have.
func staleFields(live *corev1.Secret, d Desired) bool {
	for e := range entries(live) {
		if !e.owned {
			continue
		}
		var there bool
		switch e.kind {
		case entryLabel:
			_, there = d.Labels[e.key]
		case entryAnnotation:
			_, there = d.Annotations[e.key]
		case entryData:
			_, there = d.Data[e.key]
		}
		if !there {
			return true
		}
	}
	return false
}

// hasUpdateEntry reports whether this field owner holds fields of the view live through an Update
// entry (its create).
func hasUpdateEntry(live *corev1.Secret) bool { return header(live) == viewUpdate }

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
