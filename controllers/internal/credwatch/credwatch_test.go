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

package credwatch

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestCredentialsWatchBookkeeping: the watch keeps the resourceVersion of referenced Secrets
// only, enqueues their referrers when it moves (never for an older version than a pass already
// read), and forgets a Secret once nothing references it.
func TestCredentialsWatchBookkeeping(t *testing.T) {
	// refs: Secret name -> the token that references it (in namespace "ns").
	refs := map[string]string{"creds": "tok"}
	w := New(nil, nil)
	src := w.Source(func(_ context.Context, m *metav1.PartialObjectMetadata) []reconcile.Request {
		if tok, ok := refs[m.Name]; ok {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: tok}}}
		}
		return nil
	})
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	if err := src.Start(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	secret := func(name, rv string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: rv}}
	}
	creds := types.NamespacedName{Namespace: "ns", Name: "creds"}
	drain := func() []string {
		var out []string
		for q.Len() > 0 {
			r, _ := q.Get()
			out = append(out, r.Name)
			q.Done(r)
			q.Forget(r)
		}
		return out
	}
	st := watchStore{w: w, ctx: ctx, namespace: "ns"}

	for _, step := range []struct {
		name     string
		do       func()
		wantRV   string   // the resourceVersion held for ns/creds afterwards
		wantSize int      // Secrets held
		wantReqs []string // requests enqueued by the step
	}{
		{"a first list keeps the referenced Secret only", func() {
			_ = st.Replace([]any{secret("creds", "10"), secret("unrelated", "11")}, "11")
		}, "10", 1, []string{"tok"}},
		{"an unrelated Secret's event is dropped", func() { _ = st.Add(secret("other", "12")) }, "10", 1, nil},
		{"the referenced Secret changes: its token is enqueued", func() { _ = st.Update(secret("creds", "13")) }, "13", 1, []string{"tok"}},
		{"the same version again enqueues nothing", func() { _ = st.Update(secret("creds", "13")) }, "13", 1, nil},
		{"a pass read a newer version", func() { w.observe(creds, "15") }, "15", 1, nil},
		{"an older event is old news", func() { _ = st.Update(secret("creds", "14")) }, "15", 1, nil},
		{"a pass never moves it back", func() { w.observe(creds, "12") }, "15", 1, nil},
		{"a relist without it: deleted", func() { _ = st.Replace(nil, "20") }, "", 0, []string{"tok"}},
		{"created again", func() { _ = st.Add(secret("creds", "21")) }, "21", 1, []string{"tok"}},
		{"deleted", func() { _ = st.Delete(secret("creds", "22")) }, "", 0, []string{"tok"}},
		{"read by a pass after the watch saw it", func() { w.observe(creds, "23") }, "23", 1, nil},
		{"no longer referenced: forgotten at its next event", func() {
			delete(refs, "creds")
			_ = st.Update(secret("creds", "24"))
		}, "", 0, nil},
	} {
		step.do()
		if got := w.resourceVersion(creds); got != step.wantRV {
			t.Errorf("%s: resourceVersion = %q, want %q", step.name, got, step.wantRV)
		}
		if got := w.size(); got != step.wantSize {
			t.Errorf("%s: %d Secrets held, want %d", step.name, got, step.wantSize)
		}
		if got := drain(); !slices.Equal(got, step.wantReqs) {
			t.Errorf("%s: enqueued %q, want %q", step.name, got, step.wantReqs)
		}
	}
}

// TestCredentialsWatchRelistScope: a namespace's relist only judges the Secrets of that namespace.
func TestCredentialsWatchRelistScope(t *testing.T) {
	w := New(nil, []string{"a", "b"})
	w.Source(func(context.Context, *metav1.PartialObjectMetadata) []reconcile.Request {
		return []reconcile.Request{{}}
	})
	ctx := context.Background()
	w.observe(types.NamespacedName{Namespace: "a", Name: "x"}, "1")
	w.observe(types.NamespacedName{Namespace: "b", Name: "x"}, "2")
	_ = watchStore{w: w, ctx: ctx, namespace: "a"}.Replace(nil, "3")
	if got := w.resourceVersion(types.NamespacedName{Namespace: "b", Name: "x"}); got != "2" {
		t.Errorf("b/x after a relist of namespace a = %q, want 2", got)
	}
	if got := w.resourceVersion(types.NamespacedName{Namespace: "a", Name: "x"}); got != "" {
		t.Errorf("a/x after a relist of namespace a without it = %q, want forgotten", got)
	}
}

// TestCredentialsWatchValues: the values read of a credentials Secret serve every object naming
// it while its resourceVersion holds, for the keys read there; a change, a read of an older
// version or a key not read yet sends the next pass to the API server.
func TestCredentialsWatchValues(t *testing.T) {
	w := New(nil, nil)
	w.Source(func(context.Context, *metav1.PartialObjectMetadata) []reconcile.Request {
		return []reconcile.Request{{}}
	})
	key := types.NamespacedName{Namespace: "ns", Name: "creds"}
	secret := func(rv string, data map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds", ResourceVersion: rv}, Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	app := []string{"appKey", "appSecret"}
	if _, ok := w.Cached(key, app); ok {
		t.Fatal("values before any read")
	}
	got := w.Remember(secret("5", map[string]string{"appKey": " k ", "suiteKey": "s"}), app)
	if got.Keys["appKey"] != "k" || got.Keys["appSecret"] != "" || len(got.Keys) != 2 {
		t.Fatalf("remembered %v, want the keys read, trimmed, a missing one empty", got.Keys)
	}
	if v, ok := w.Cached(key, app); !ok || v.Keys["appKey"] != "k" {
		t.Fatalf("cachedValues = %v, %v: want what was read at version 5", v.Keys, ok)
	}
	if _, ok := w.Cached(key, []string{"suiteKey"}); ok {
		t.Fatal("a key not read yet was served")
	}
	st := watchStore{w: w, ctx: context.Background()}
	_ = st.Update(&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds", ResourceVersion: "6"}})
	if _, ok := w.Cached(key, app); ok {
		t.Fatal("values of version 5 served after the Secret changed")
	}
	w.Remember(secret("5", map[string]string{"appKey": "old"}), app) // a pass that read before the change
	if _, ok := w.Cached(key, app); ok {
		t.Fatal("values of an older version served")
	}
	big := strings.Repeat("x", MaxValue+1)
	got = w.Remember(secret("6", map[string]string{"appKey": "k", "appSecret": big}), app)
	if !got.Oversized["appSecret"] || got.Keys["appSecret"] != "" {
		t.Fatalf("an oversized value: oversized %v, kept %d bytes", got.Oversized, len(got.Keys["appSecret"]))
	}
	if v, ok := w.Cached(key, app); !ok || !v.Oversized["appSecret"] {
		t.Fatal("the oversized mark is not served")
	}
	_ = st.Delete(&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds", ResourceVersion: "7"}})
	if _, ok := w.Cached(key, app); ok || w.size() != 0 {
		t.Fatal("values kept after the Secret was deleted")
	}
}
