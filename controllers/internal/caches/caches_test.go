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

package caches

import (
	"runtime"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

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

// TestCompactToken: the cache keeps of a token its identity, its refresh-requested-at annotation,
// its spec and its status, nothing else; the strings tokens repeat are shared.
func TestCompactToken(t *testing.T) {
	at := metav1.Now()
	tok := &v1alpha1.DingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "apps", UID: "uid", ResourceVersion: "9", Generation: 3, DeletionTimestamp: &at,
			Labels:          map[string]string{"app.kubernetes.io/instance": "crm", "helm.sh/chart": "crm-1.0.0"},
			Annotations:     map[string]string{lastApplied: "{...}", "meta.helm.sh/release-name": "crm", v1alpha1.RefreshRequestedAtAnnotation: "2026-11-25T14:50:12Z"},
			OwnerReferences: []metav1.OwnerReference{{Name: "app"}}, Finalizers: []string{"example.com/keep"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "helm"}}},
		Spec: v1alpha1.DingTalkTokenSpec{Type: v1alpha1.TokenTypeInternalApp, CredentialsRef: v1alpha1.CredentialsReference{Name: "creds"}},
		Status: v1alpha1.DingTalkTokenStatus{TokenStatus: v1alpha1.TokenStatus{TokenDigest: "d", Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonTokenValid, Message: "m"}}}},
	}
	want := tok.DeepCopy()
	out, err := compactToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*v1alpha1.DingTalkToken)
	if got.Labels != nil || got.OwnerReferences != nil || got.Finalizers != nil || got.ManagedFields != nil ||
		len(got.Annotations) != 1 || got.Annotations[v1alpha1.RefreshRequestedAtAnnotation] != "2026-11-25T14:50:12Z" {
		t.Errorf("the cached token's metadata keeps more than a pass reads: %+v", got.ObjectMeta)
	}
	if got.Name != want.Name || got.Namespace != want.Namespace || got.UID != want.UID || got.ResourceVersion != want.ResourceVersion ||
		got.Generation != want.Generation || !got.DeletionTimestamp.Equal(want.DeletionTimestamp) {
		t.Errorf("the cached token lost its identity: %+v", got.ObjectMeta)
	}
	if !equality.Semantic.DeepEqual(got.Spec, want.Spec) || !equality.Semantic.DeepEqual(got.Status, want.Status) {
		t.Error("the cached token's spec or status changed")
	}
	cluster := &v1alpha1.ClusterDingTalkToken{ObjectMeta: metav1.ObjectMeta{Name: "c", Labels: map[string]string{"a": "b"}}}
	if out, _ := compactToken(cluster); out.(*v1alpha1.ClusterDingTalkToken).Labels != nil {
		t.Error("a ClusterDingTalkToken keeps its labels")
	}
}

// tokenJSON is a Ready DingTalkToken as the API server sends it to the cache.
const tokenJSON = `{"apiVersion":"dingtalk.tokens.dev/v1alpha1","kind":"DingTalkToken","metadata":{"creationTimestamp":"2026-12-07T15:05:00Z",` +
	`"generation":1,"name":"tok-01234","namespace":"bench-3","resourceVersion":"123456","uid":"0b7c1a2e-3f4d-4e5f-8a9b-0c1d2e3f4a5b"},` +
	`"spec":{"credentialsRef":{"name":"creds-0234"},"type":"InternalApp"},"status":{"conditions":[{"lastTransitionTime":"2026-12-07T15:05:10Z",` +
	`"message":"Secret tok-01234 holds a token valid until 2026-12-07T15:11:10Z","observedGeneration":1,"reason":"TokenValid","status":"True","type":"Ready"},` +
	`{"lastTransitionTime":"2026-12-07T15:05:10Z","message":"Issued a token valid until 2026-12-07T15:11:10Z","observedGeneration":1,` +
	`"reason":"TokenIssued","status":"True","type":"Refreshed"}],"credentialsDigest":"hmac-sha256:Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA",` +
	`"expiresAt":"2026-12-07T15:11:10Z","lastRefreshTime":"2026-12-07T15:05:10Z","observedGeneration":1,"refreshTime":"2026-12-07T15:09:02Z",` +
	`"tokenDigest":"hmac-sha256:YmF6cXV4cXV1eHF1dXhxdXV4cXV1eGZvb2Jhcg"}}`

// TestCachedTokenSize: what the cache keeps of a Ready DingTalkToken decoded from the API server's
// JSON, per token: a regression guard for the cache's memory.
func TestCachedTokenSize(t *testing.T) {
	s := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	dec := serializer.NewCodecFactory(s).UniversalDeserializer()
	const n = 2000
	kept := make([]any, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range kept {
		obj, _, err := dec.Decode([]byte(tokenJSON), nil, &v1alpha1.DingTalkToken{})
		if err != nil {
			t.Fatal(err)
		}
		if kept[i], err = compactToken(obj); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("a cached DingTalkToken: %.0f bytes", per)
	if per > 1200 {
		t.Errorf("a cached DingTalkToken takes %.0f bytes, want at most 1200", per)
	}
	runtime.KeepAlive(kept)
}
