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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
)

// TestCacheTransforms: the caches keep no managedFields and no kubectl last-applied copy of a
// token; every other field of a token stays. (Of the operator's Secrets they keep a view:
// ownedsecret's TestCacheTransforms.)
func TestCacheTransforms(t *testing.T) {
	tok := &v1alpha1.DingTalkToken{ObjectMeta: metav1.ObjectMeta{
		Name: "t", Annotations: map[string]string{lastApplied: "{...}", v1alpha1.RefreshRequestedAtAnnotation: "2026-11-25T14:50:12Z"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}, {Manager: string(ownedsecret.FieldOwner)}},
	}}
	if _, err := stripManagedFields(tok); err != nil {
		t.Fatal(err)
	}
	if tok.ManagedFields != nil || tok.Annotations[lastApplied] != "" || tok.Annotations[v1alpha1.RefreshRequestedAtAnnotation] == "" {
		t.Errorf("token after the transform: managedFields %v, annotations %v", tok.ManagedFields, tok.Annotations)
	}
}
