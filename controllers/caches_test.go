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
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// TestCacheTransforms: the caches keep no managedFields and no kubectl last-applied copy of a
// token; of the operator's Secrets a view (secretView) with only the operator's own managedFields
// entries and digests of the values; every other field of a token stays.
func TestCacheTransforms(t *testing.T) {
	tok := &v1alpha1.DingTalkToken{ObjectMeta: metav1.ObjectMeta{
		Name: "t", Annotations: map[string]string{lastApplied: "{...}", v1alpha1.RefreshRequestedAtAnnotation: "2026-11-25T14:50:12Z"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}, {Manager: string(fieldOwner)}},
	}}
	if _, err := stripManagedFields(tok); err != nil {
		t.Fatal(err)
	}
	if tok.ManagedFields != nil || tok.Annotations[lastApplied] != "" || tok.Annotations[v1alpha1.RefreshRequestedAtAnnotation] == "" {
		t.Errorf("token after the transform: managedFields %v, annotations %v", tok.ManagedFields, tok.Annotations)
	}
	s := ownedSecret(map[string][]byte{"k": []byte("v")})
	s.Annotations = map[string]string{"a": "b", lastApplied: "{...}"}
	s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}, {Manager: string(fieldOwner), Operation: metav1.ManagedFieldsOperationUpdate}}
	out, err := cachedSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	v := out.(*corev1.Secret)
	if len(v.ManagedFields) != 1 || v.ManagedFields[0].Manager != string(fieldOwner) || !hasUpdateEntry(v) ||
		!holdsAnnotations(v, map[string]string{"a": "b"}) || !holds(v, "k", "v") || string(v.Data["k"]) == "v" {
		t.Errorf("Secret after the transform: %+v", v)
	}
}

// TestMemoryStale: a cached copy older than this process's own write is stale; once the cache
// shows that write (or a later one) the write is forgotten.
func TestMemoryStale(t *testing.T) {
	m := newMemory()
	key := types.NamespacedName{Namespace: "ns", Name: "t"}
	at := func(rv string) *metav1.ObjectMeta {
		return &metav1.ObjectMeta{Namespace: "ns", Name: "t", ResourceVersion: rv}
	}
	if m.stale(key, "DingTalkToken", at("5")) {
		t.Fatal("stale without a write")
	}
	m.wrote(key, "DingTalkToken", at("10"))
	if !m.stale(key, "DingTalkToken", at("9")) {
		t.Error("a copy older than the write is not stale")
	}
	if m.stale(key, "Secret", at("9")) {
		t.Error("another kind's copy is stale")
	}
	if m.stale(key, "DingTalkToken", at("11")) {
		t.Error("a copy newer than the write is stale")
	}
	if len(m.written) != 0 {
		t.Errorf("the write is still remembered once the cache caught up: %v", m.written)
	}
	if m.stale(key, "DingTalkToken", at("9")) {
		t.Error("stale after the cache caught up")
	}
}
