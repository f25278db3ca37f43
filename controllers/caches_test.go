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
// token, and of the operator's Secrets only the operator's own managedFields entries; every
// other field stays.
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
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Annotations: map[string]string{"a": "b"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}, {Manager: string(fieldOwner), Operation: metav1.ManagedFieldsOperationUpdate}}},
		Data: map[string][]byte{"k": []byte("v")}}
	if _, err := ownManagedFields(s); err != nil {
		t.Fatal(err)
	}
	if len(s.ManagedFields) != 1 || s.ManagedFields[0].Manager != string(fieldOwner) || !hasUpdateEntry(s) ||
		s.Annotations["a"] != "b" || string(s.Data["k"]) != "v" {
		t.Errorf("Secret after the transform: %+v", s)
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
