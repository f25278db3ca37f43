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
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// ownedSecret is a Secret a DingTalkToken controls, holding data.
func ownedSecret(data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "tok", UID: "secret-uid", ResourceVersion: "7",
			Labels: ManagedLabels(nil), Annotations: map[string]string{v1alpha1.ExpiresAtAnnotation: "2026-11-25T15:30:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "DingTalkToken",
				Name: "tok", UID: "owner-uid", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: string(FieldOwner), FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:data":{"f:accessToken":{}}}`)}},
				{Manager: "kubectl", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{"f:x":{}}}}`)}},
			}},
		Data: data,
	}
}

// TestSecretView: what the cache keeps of a labelled Secret. A foreign one (no controller
// reference to a DingTalkToken or ClusterDingTalkToken) keeps its identity only; an owned one
// keeps its metadata with digests for annotation and data values and this operator's managed
// fields only; one over the bounds keeps no maps and is marked truncated; a view is its own view
// (a transform may see its output again); and the comparisons the passes make hold on views.
func TestSecretView(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 768<<10)
	foreign := ownedSecret(map[string][]byte{"blob": big})
	foreign.OwnerReferences = nil
	v := View(foreign, true)
	if v.Data != nil || v.Labels != nil || len(v.Annotations) != 1 || v.ManagedFields != nil || v.UID != "secret-uid" || v.ResourceVersion != "7" {
		t.Errorf("foreign Secret's view = %+v, want its identity only", v.ObjectMeta)
	}
	otherKind := ownedSecret(map[string][]byte{"blob": big})
	otherKind.OwnerReferences[0].APIVersion = "apps/v1"
	if v := View(otherKind, true); v.Data != nil || v.OwnerReferences != nil {
		t.Error("a Secret controlled by another kind keeps more than its identity")
	}

	owned := ownedSecret(map[string][]byte{"accessToken": []byte("tok-value"), v1alpha1.UsedBootstrapKey: []byte("hmac:1\nhmac:2")})
	v = View(owned, true)
	if !Holds(v, "accessToken", "tok-value") || Holds(v, "accessToken", "other") || len(v.Data["accessToken"]) != viewDigestSize {
		t.Error("an owned Secret's view does not hold the digest of its token")
	}
	if string(v.Data[v1alpha1.UsedBootstrapKey]) != "hmac:1\nhmac:2" {
		t.Error("the used-bootstrap list (HMACs) is not kept as is")
	}
	if !holdsAnnotations(v, map[string]string{v1alpha1.ExpiresAtAnnotation: "2026-11-25T15:30:00Z"}) ||
		strings.Contains(v.Annotations[v1alpha1.ExpiresAtAnnotation], "2026") {
		t.Error("annotation values are not digests")
	}
	if len(v.ManagedFields) != 1 || v.ManagedFields[0].Manager != string(FieldOwner) {
		t.Errorf("managed fields %v, want this operator's only", v.ManagedFields)
	}
	if !metav1.IsControlledBy(v, &metav1.ObjectMeta{UID: "owner-uid"}) || Truncated(v) {
		t.Error("the view lost its controller reference, or is truncated")
	}
	if again := View(v, true); again != v {
		t.Error("a view's view is not itself: digests would be digested again")
	}
	forged := ownedSecret(map[string][]byte{"accessToken": []byte("tok-value")})
	forged.Annotations[viewAnnotation] = "guess"
	if fv := View(forged, true); fv == forged || !IsView(fv) || View(fv, true) != fv {
		t.Error("a Secret carrying a forged view annotation is kept as is, or its view is not one")
	}

	many := map[string][]byte{}
	for i := range maxViewKeys + 1 {
		many[strings.Repeat("k", 8)+string(rune('a'+i%26))+strings.Repeat("z", i/26)] = []byte("v")
	}
	stuffed := ownedSecret(many)
	if v := View(stuffed, true); !Truncated(v) || v.Data != nil {
		t.Error("an owned Secret over the bounds is not truncated in the cache")
	}
	if v := View(stuffed, false); Truncated(v) || len(v.Data) != len(many) {
		t.Error("a Secret read uncached is truncated")
	}

	d := Desired{Labels: ManagedLabels(nil), Annotations: map[string]string{v1alpha1.ExpiresAtAnnotation: "2026-11-25T15:30:00Z"},
		Data: map[string][]byte{"accessToken": []byte("tok-value"), v1alpha1.UsedBootstrapKey: []byte("hmac:1\nhmac:2")}}
	owner := &metav1.ObjectMeta{UID: "owner-uid"}
	if !UpToDate(owner, View(owned, true), d) {
		t.Error("the view of a Secret holding d is not up to date")
	}
	d.Data["accessToken"] = []byte("rotated")
	if UpToDate(owner, View(owned, true), d) {
		t.Error("the view of a Secret holding an older token is up to date")
	}
}

// TestCachedSecretMemory: the cache's transform keeps a few hundred bytes of a 768 KiB labelled
// Secret it does not own, and of one it owns.
func TestCachedSecretMemory(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 768<<10)
	foreign := ownedSecret(map[string][]byte{"blob": big})
	foreign.OwnerReferences = nil
	for name, s := range map[string]*corev1.Secret{"foreign": foreign, "owned": ownedSecret(map[string][]byte{"blob": big})} {
		out, err := Transform(s)
		if err != nil {
			t.Fatal(err)
		}
		kept := 0
		for k, v := range out.(*corev1.Secret).Data {
			kept += len(k) + len(v)
		}
		if kept > 64 {
			t.Errorf("%s: the view keeps %d bytes of data", name, kept)
		}
	}
}

// TestMemoryStale: a cached copy older than this process's own write is stale; once the cache
// shows that write (or a later one) the write is forgotten.
func TestMemoryStale(t *testing.T) {
	m := NewWrites()
	key := types.NamespacedName{Namespace: "ns", Name: "t"}
	at := func(rv string) *metav1.ObjectMeta {
		return &metav1.ObjectMeta{Namespace: "ns", Name: "t", ResourceVersion: rv}
	}
	if m.Stale(key, "DingTalkToken", at("5")) {
		t.Fatal("stale without a write")
	}
	m.Wrote(key, "DingTalkToken", at("10"))
	if !m.Stale(key, "DingTalkToken", at("9")) {
		t.Error("a copy older than the write is not stale")
	}
	if m.Stale(key, "Secret", at("9")) {
		t.Error("another kind's copy is stale")
	}
	if m.Stale(key, "DingTalkToken", at("11")) {
		t.Error("a copy newer than the write is stale")
	}
	if len(m.written) != 0 {
		t.Errorf("the write is still remembered once the cache caught up: %v", m.written)
	}
	if m.Stale(key, "DingTalkToken", at("9")) {
		t.Error("stale after the cache caught up")
	}
}

// TestCacheTransforms: of the operator's Secrets the cache keeps a view with only the operator's
// own managedFields entries and digests of the values, and no kubectl last-applied copy. (What it
// keeps of the tokens: package controllers' TestCacheTransforms.)
func TestCacheTransforms(t *testing.T) {
	s := ownedSecret(map[string][]byte{"k": []byte("v")})
	s.Annotations = map[string]string{"a": "b", "kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}, {Manager: string(FieldOwner), Operation: metav1.ManagedFieldsOperationUpdate}}
	out, err := Transform(s)
	if err != nil {
		t.Fatal(err)
	}
	v := out.(*corev1.Secret)
	if len(v.ManagedFields) != 1 || v.ManagedFields[0].Manager != string(FieldOwner) || !hasUpdateEntry(v) ||
		!holdsAnnotations(v, map[string]string{"a": "b"}) || !Holds(v, "k", "v") || string(v.Data["k"]) == "v" {
		t.Errorf("Secret after the transform: %+v", v)
	}
}
