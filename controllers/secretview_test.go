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
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// ownedSecret is a Secret a DingTalkToken controls, holding data.
func ownedSecret(data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "tok", UID: "secret-uid", ResourceVersion: "7",
			Labels: managedLabels(nil), Annotations: map[string]string{v1alpha1.ExpiresAtAnnotation: "2026-11-25T15:30:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "DingTalkToken",
				Name: "tok", UID: "owner-uid", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: string(fieldOwner), FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:data":{"f:accessToken":{}}}`)}},
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
	v := secretView(foreign, true)
	if v.Data != nil || v.Labels != nil || len(v.Annotations) != 1 || v.ManagedFields != nil || v.UID != "secret-uid" || v.ResourceVersion != "7" {
		t.Errorf("foreign Secret's view = %+v, want its identity only", v.ObjectMeta)
	}
	otherKind := ownedSecret(map[string][]byte{"blob": big})
	otherKind.OwnerReferences[0].APIVersion = "apps/v1"
	if v := secretView(otherKind, true); v.Data != nil || v.OwnerReferences != nil {
		t.Error("a Secret controlled by another kind keeps more than its identity")
	}

	owned := ownedSecret(map[string][]byte{"accessToken": []byte("tok-value"), v1alpha1.UsedBootstrapKey: []byte("hmac:1\nhmac:2")})
	v = secretView(owned, true)
	if !holds(v, "accessToken", "tok-value") || holds(v, "accessToken", "other") || len(v.Data["accessToken"]) != viewDigestSize {
		t.Error("an owned Secret's view does not hold the digest of its token")
	}
	if string(v.Data[v1alpha1.UsedBootstrapKey]) != "hmac:1\nhmac:2" {
		t.Error("the used-bootstrap list (HMACs) is not kept as is")
	}
	if !holdsAnnotations(v, map[string]string{v1alpha1.ExpiresAtAnnotation: "2026-11-25T15:30:00Z"}) ||
		strings.Contains(v.Annotations[v1alpha1.ExpiresAtAnnotation], "2026") {
		t.Error("annotation values are not digests")
	}
	if len(v.ManagedFields) != 1 || v.ManagedFields[0].Manager != string(fieldOwner) {
		t.Errorf("managed fields %v, want this operator's only", v.ManagedFields)
	}
	if !metav1.IsControlledBy(v, &metav1.ObjectMeta{UID: "owner-uid"}) || truncated(v) {
		t.Error("the view lost its controller reference, or is truncated")
	}
	if again := secretView(v, true); again != v {
		t.Error("a view's view is not itself: digests would be digested again")
	}
	forged := ownedSecret(map[string][]byte{"accessToken": []byte("tok-value")})
	forged.Annotations[viewAnnotation] = "guess"
	if fv := secretView(forged, true); fv == forged || !isView(fv) || secretView(fv, true) != fv {
		t.Error("a Secret carrying a forged view annotation is kept as is, or its view is not one")
	}

	many := map[string][]byte{}
	for i := range maxViewKeys + 1 {
		many[strings.Repeat("k", 8)+string(rune('a'+i%26))+strings.Repeat("z", i/26)] = []byte("v")
	}
	stuffed := ownedSecret(many)
	if v := secretView(stuffed, true); !truncated(v) || v.Data != nil {
		t.Error("an owned Secret over the bounds is not truncated in the cache")
	}
	if v := secretView(stuffed, false); truncated(v) || len(v.Data) != len(many) {
		t.Error("a Secret read uncached is truncated")
	}

	d := desiredSecret{Labels: managedLabels(nil), Annotations: map[string]string{v1alpha1.ExpiresAtAnnotation: "2026-11-25T15:30:00Z"},
		Data: map[string][]byte{"accessToken": []byte("tok-value"), v1alpha1.UsedBootstrapKey: []byte("hmac:1\nhmac:2")}}
	owner := &metav1.ObjectMeta{UID: "owner-uid"}
	if !upToDate(owner, secretView(owned, true), d) {
		t.Error("the view of a Secret holding d is not up to date")
	}
	d.Data["accessToken"] = []byte("rotated")
	if upToDate(owner, secretView(owned, true), d) {
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
		out, err := cachedSecret(s)
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
