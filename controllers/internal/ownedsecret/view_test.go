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
	"maps"
	"runtime"
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
// keeps its identity, controller reference and labels, digests of its annotation and data values
// and which keys this operator's field manager owns; one over the bounds keeps no maps and is
// marked truncated; a view is its own view (a transform may see its output again); and the
// comparisons the passes make hold on views.
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
	if v := View(otherKind, true); v.Data != nil || v.OwnerReferences != nil || len(v.Annotations[viewAnnotation]) != len(viewMark) {
		t.Error("a Secret controlled by another kind keeps more than its identity")
	}

	owned := ownedSecret(map[string][]byte{"accessToken": []byte("tok-value"), v1alpha1.UsedBootstrapKey: []byte("hmac:1\nhmac:2")})
	v = View(owned, true)
	if !Holds(v, "accessToken", "tok-value") || Holds(v, "accessToken", "other") || Holds(v, "other", "tok-value") {
		t.Error("an owned Secret's view does not hold the digest of its token")
	}
	if string(v.Data[v1alpha1.UsedBootstrapKey]) != "hmac:1\nhmac:2" || len(v.Data) != 1 {
		t.Errorf("view data %q: want the used-bootstrap list (HMACs) as is, and nothing else", v.Data)
	}
	if !holdsAnnotations(v, map[string]string{v1alpha1.ExpiresAtAnnotation: "2026-11-25T15:30:00Z"}) ||
		holdsAnnotations(v, map[string]string{v1alpha1.ExpiresAtAnnotation: "2026-11-25T15:30:01Z"}) ||
		len(v.Annotations) != 1 || strings.Contains(v.Annotations[viewAnnotation], "2026") || strings.Contains(v.Annotations[viewAnnotation], "tok-value") {
		t.Errorf("the view's annotations %q: want one, with digests of the values", v.Annotations)
	}
	if v.ManagedFields != nil || !maps.Equal(v.Labels, ManagedLabels(nil)) {
		t.Errorf("the view keeps managed fields %v, labels %v; want none, and the Secret's labels", v.ManagedFields, v.Labels)
	}
	if !metav1.IsControlledBy(v, &metav1.ObjectMeta{UID: "owner-uid"}) || Truncated(v) || hasUpdateEntry(v) {
		t.Error("the view lost its controller reference, is truncated, or shows an Update entry the Secret does not have")
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
	if v := View(stuffed, true); !Truncated(v) || v.Data != nil || v.Labels != nil || holdsData(v, nil) != true {
		t.Error("an owned Secret over the bounds is not truncated in the cache")
	}
	if v := View(stuffed, false); Truncated(v) || !holdsData(v, many) {
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
	d.Data["accessToken"] = []byte("tok-value")
	d.Data["extra"] = []byte("x")
	if UpToDate(owner, View(owned, true), d) {
		t.Error("the view of a Secret lacking a data key is up to date")
	}
}

// TestStaleFields: an apply is due when this operator's field manager owns a label, annotation or
// data key the desired content no longer has, and not for keys other managers own.
func TestStaleFields(t *testing.T) {
	s := ownedSecret(map[string][]byte{"accessToken": []byte("t"), "old": []byte("o")})
	s.Labels = map[string]string{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue, "team": "a", "x": "theirs"}
	s.Annotations["note"] = "n"
	s.ManagedFields = []metav1.ManagedFieldsEntry{
		{Manager: string(FieldOwner), Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: &metav1.FieldsV1{Raw: []byte(
			`{"f:data":{"f:accessToken":{},"f:old":{}},"f:metadata":{"f:labels":{"f:team":{},"f:app.kubernetes.io/managed-by":{}},"f:annotations":{"f:note":{},"f:dingtalk.tokens.dev/expires-at":{}}}}`)}},
		{Manager: "kubectl", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{"f:x":{}}}}`)}},
	}
	v := View(s, true)
	if !hasUpdateEntry(v) {
		t.Error("the create's Update entry is not seen")
	}
	all := Desired{Labels: ManagedLabels(map[string]string{"team": "a"}),
		Annotations: map[string]string{"note": "n", v1alpha1.ExpiresAtAnnotation: "2026-11-25T15:30:00Z"},
		Data:        map[string][]byte{"accessToken": []byte("t"), "old": []byte("o")}}
	if staleFields(v, all) {
		t.Error("stale with every owned key desired")
	}
	for name, drop := range map[string]func(d *Desired){
		"a label":       func(d *Desired) { delete(d.Labels, "team") },
		"an annotation": func(d *Desired) { delete(d.Annotations, "note") },
		"a data key":    func(d *Desired) { delete(d.Data, "old") },
	} {
		d := Desired{Labels: maps.Clone(all.Labels), Annotations: maps.Clone(all.Annotations), Data: maps.Clone(all.Data)}
		drop(&d)
		if !staleFields(v, d) {
			t.Errorf("%s no longer desired: not stale", name)
		}
	}
}

// TestViewSize: what the cache keeps of a target Secret decoded from the API server's protobuf,
// per Secret: a regression guard for the cache's memory (about 2.3 KiB before views were compact).
func TestViewSize(t *testing.T) {
	s := ownedSecret(map[string][]byte{"accessToken": bytes.Repeat([]byte("t"), 32), v1alpha1.ExpiresAtKey: []byte("2026-11-25T15:30:00Z")})
	s.Type = corev1.SecretTypeOpaque
	s.Annotations[v1alpha1.TokenDigestAnnotation] = strings.Repeat("d", 44)
	s.ManagedFields[0].Operation = metav1.ManagedFieldsOperationApply
	s.ManagedFields[0].FieldsV1.Raw = []byte(`{"f:data":{"f:accessToken":{},"f:expiresAt":{}},"f:metadata":{"f:annotations":{"f:dingtalk.tokens.dev/expires-at":{},` +
		`"f:dingtalk.tokens.dev/token-digest":{}},"f:labels":{"f:app.kubernetes.io/managed-by":{}},"f:ownerReferences":{"k:{\"uid\":\"owner-uid\"}":{}}},"f:type":{}}`)
	raw, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	views := make([]*corev1.Secret, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range views {
		in := &corev1.Secret{}
		if err := in.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		views[i] = View(in, true)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("a target Secret's view: %.0f bytes", per)
	if per > 1200 {
		t.Errorf("a target Secret's view takes %.0f bytes, want at most 1200", per)
	}
	runtime.KeepAlive(views)
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
	s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}, {Manager: string(FieldOwner), Operation: metav1.ManagedFieldsOperationUpdate,
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:data":{"f:k":{}}}`)}}}
	out, err := Transform(s)
	if err != nil {
		t.Fatal(err)
	}
	v := out.(*corev1.Secret)
	if v.ManagedFields != nil || !hasUpdateEntry(v) || !holdsAnnotations(v, map[string]string{"a": "b"}) || !Holds(v, "k", "v") ||
		v.Data != nil || strings.Contains(v.Annotations[viewAnnotation], "{...}") {
		t.Errorf("Secret after the transform: %+v", v)
	}
}
