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

package fanout

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// testFanOutSharedFetch: one ClusterDingTalkToken provisions 50 namespaces with one DingTalk call,
// shared with a DingTalkToken of the same credentials; each refresh cycle costs exactly one call
// for all of them and reaches every namespace; a credentials change refreshes every namespace;
// every target carries the ownerReference that deletes it with the ClusterDingTalkToken.
func testFanOutSharedFetch(t *testing.T) {
	const n = 50
	g := NewWithT(t)
	key, secret := newApp(t, 30*time.Second)
	credNS := env.CreateNamespace(t, "fan-creds")
	creds := map[string]string{"appKey": key, "appSecret": secret}
	env.CreateSecret(t, credNS, "app-credentials", creds)
	sel := map[string]string{"fanout.test/shared": testutil.RandHex(4)}
	namespaces := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { namespaces[i] = labelledNamespace(t, "fan", sel) })
	}
	wg.Wait()
	// A DingTalkToken in one of them, with its own copy of the same credentials.
	env.CreateSecret(t, namespaces[0], "own-credentials", creds)
	env.Create(t, testenv.NewToken(namespaces[0], "own", v1alpha1.TokenTypeInternalApp, "own-credentials"))
	name := "shared-" + testutil.RandHex(3)
	env.Create(t, clusterToken(name, credNS, "app-credentials", "app-token", sel))

	tok := waitProvisioned(t, name, n, time.Minute)
	env.WaitReady(t, namespaces[0], "own")
	allHold := func(g Gomega, tok *v1alpha1.ClusterDingTalkToken) string {
		var value string
		for _, ns := range namespaces {
			s := target(g, ns, "app-token")
			g.Expect(s).NotTo(BeNil(), "namespace %s has no target Secret", ns)
			g.Expect(string(s.Data[v1alpha1.ExpiresAtKey])).To(Equal(tok.Status.ExpiresAt.UTC().Format(time.RFC3339)), ns)
			g.Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.ManagedByLabel, v1alpha1.ManagedByValue))
			if value == "" {
				value = string(s.Data[v1alpha1.DefaultTargetKey])
			}
			g.Expect(string(s.Data[v1alpha1.DefaultTargetKey])).To(Equal(value), "namespace %s holds another token", ns)
			expectOwned(g, s, tok)
		}
		return value
	}
	first := allHold(g, tok)
	g.Expect(env.Sim.Valid(first)).To(BeTrue())
	g.Expect(calls(key)).To(BeEquivalentTo(1), "one call for 50 namespaces and the DingTalkToken")

	// Two refresh cycles: each costs exactly one call for the whole fan-out and the DingTalkToken,
	// and reaches all 50 namespaces.
	for cycle := range 2 {
		issued := tok.Status.LastRefreshTime.Time
		g.Eventually(func(g Gomega) {
			tok = getCluster(g, name)
			g.Expect(tok.Status.LastRefreshTime.After(issued)).To(BeTrue(), "refreshed")
			allHold(g, tok)
			own, err := testenv.GetToken(context.Background(), env.Client, namespaces[0], "own")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(own.Status.LastRefreshTime.After(issued)).To(BeTrue(), "the DingTalkToken refreshed too")
		}).WithTimeout(45 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
		g.Expect(calls(key)).To(BeEquivalentTo(2+cycle), "cycle %d: one call for the whole set", cycle)
	}

	// Credentials change (another app): every namespace is refreshed at once, with one call.
	key2, secret2 := newApp(t, 30*time.Second)
	before := allHold(g, tok)
	env.UpdateSecret(t, credNS, "app-credentials", map[string]string{"appKey": key2, "appSecret": secret2})
	g.Eventually(func(g Gomega) {
		tok = getCluster(g, name)
		g.Expect(allHold(g, tok)).NotTo(Equal(before))
	}).WithTimeout(15 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	g.Expect(calls(key2)).To(BeEquivalentTo(1))

	// Metrics: one series per ClusterDingTalkToken, not per namespace.
	m, err := testenv.Gather()
	envtesting.Must(t, err)
	g.Expect(m.Value("dingtalk_cluster_token_namespaces", map[string]string{"name": name, "state": "provisioned"})).To(BeEquivalentTo(n))
	g.Expect(m.Count("dingtalk_token_ready_status", map[string]string{"name": name, "namespace": "", "condition": "True"}, 1)).To(Equal(1))

	// Deleted: nothing holds the ClusterDingTalkToken back (no finalizer), and every target carries
	// the ownerReference by which the garbage collector deletes it.
	envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), tok))
	g.Eventually(func() bool {
		return apierrors.IsNotFound(env.Client.Get(context.Background(), types.NamespacedName{Name: name}, &v1alpha1.ClusterDingTalkToken{}))
	}).WithTimeout(10 * time.Second).Should(BeTrue())
	for _, ns := range namespaces {
		s := target(g, ns, "app-token")
		g.Expect(s).NotTo(BeNil())
		expectOwned(g, s, tok)
	}
	g.Eventually(func() bool {
		m, err := testenv.Gather()
		return err == nil && m.Count("dingtalk_cluster_token_namespaces", map[string]string{"name": name}, n) == 0
	}).WithTimeout(10*time.Second).Should(BeTrue(), "a deleted ClusterDingTalkToken's series are deleted")
}

// testNamespaceLifecycle: a namespace labelled later gets its Secret within 2 s; one unlabelled
// loses it; a foreign Secret of the target name fails that namespace only; a namespace deleted
// while provisioned gets no finalizer and is not written again. None of it calls DingTalk again.
func testNamespaceLifecycle(t *testing.T) {
	g := NewWithT(t)
	key, secret := newApp(t, 2*time.Minute)
	credNS := env.CreateNamespace(t, "life-creds")
	env.CreateSecret(t, credNS, "creds", map[string]string{"appKey": key, "appSecret": secret})
	sel := map[string]string{"fanout.test/life": testutil.RandHex(4)}
	a, b := labelledNamespace(t, "life", sel), labelledNamespace(t, "life", sel)
	name := "life-" + testutil.RandHex(3)
	env.Create(t, clusterToken(name, credNS, "creds", "life-token", sel))
	tok := waitProvisioned(t, name, 2, time.Minute)

	// Labelled later: the Secret within 2 s.
	c := labelledNamespace(t, "life", nil)
	start := time.Now()
	setLabels(t, c, sel)
	g.Eventually(func(g Gomega) {
		s := target(g, c, "life-token")
		g.Expect(s).NotTo(BeNil())
		g.Expect(s.Data).To(HaveKey(v1alpha1.DefaultTargetKey))
	}).WithTimeout(2 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	t.Logf("a namespace labelled later held its Secret %s after the label", time.Since(start).Round(time.Millisecond))
	waitProvisioned(t, name, 3, 10*time.Second)

	// Unlabelled: its Secret is removed.
	setLabels(t, a, map[string]string{"other": "x"})
	g.Eventually(func(g Gomega) { g.Expect(target(g, a, "life-token")).To(BeNil()) }).WithTimeout(10 * time.Second).Should(Succeed())
	waitProvisioned(t, name, 2, 10*time.Second)

	// A foreign Secret of the target name fails that namespace only, and is left as it is.
	d := labelledNamespace(t, "life", nil)
	foreign := env.CreateSecret(t, d, "life-token", map[string]string{"theirs": "keep-me"})
	setLabels(t, d, sel)
	g.Eventually(func(g Gomega) {
		tok = getCluster(g, name)
		g.Expect(tok.Status.Namespaces).To(HaveValue(Equal(v1alpha1.NamespaceCounts{Matched: 3, Provisioned: 2, Failed: 1, Summary: "2/3"})))
		g.Expect(tok.Status.FailedNamespaces).To(HaveLen(1))
		g.Expect(tok.Status.FailedNamespaces[0].Namespace).To(Equal(d))
		g.Expect(tok.Status.FailedNamespaces[0].Reason).To(Equal(v1alpha1.ReasonTargetConflict))
		ready := condition(tok, v1alpha1.ConditionReady)
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonTargetConflict))
		g.Expect(ready.Message).To(ContainSubstring(d))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	s := target(g, d, "life-token")
	g.Expect(s.Data).To(Equal(foreign.Data))
	g.Expect(s.OwnerReferences).To(BeEmpty())
	for _, ns := range []string{b, c} {
		g.Expect(target(g, ns, "life-token")).NotTo(BeNil(), "the other namespaces keep their Secret")
	}
	g.Expect(condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued),
		"a namespace's conflict is not a failed refresh")

	// Deleted while provisioned: no finalizer (watchNamespaceFinalizers), and the namespace being
	// deleted is no longer written: its Secret is removed, not re-created.
	envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: b}}))
	g.Eventually(func(g Gomega) {
		ns := &corev1.Namespace{}
		g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Name: b}, ns)).To(Succeed())
		g.Expect(ns.DeletionTimestamp).NotTo(BeNil())
		g.Expect(ns.Finalizers).To(BeEmpty())
		g.Expect(target(g, b, "life-token")).To(BeNil())
		tok = getCluster(g, name)
		g.Expect(tok.Status.Namespaces).To(HaveValue(Equal(v1alpha1.NamespaceCounts{Matched: 2, Provisioned: 1, Failed: 1, Summary: "1/2"})))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(calls(key)).To(BeEquivalentTo(1), "namespaces coming and going call DingTalk no more")
}

// testIdle: a ClusterDingTalkToken that selects no namespace fetches nothing and does not
// requeue itself (its status stays as written: no write a second), until a namespace matches.
func testIdle(t *testing.T) {
	g := NewWithT(t)
	key, secret := newApp(t, 2*time.Minute)
	credNS := env.CreateNamespace(t, "idle-creds")
	env.CreateSecret(t, credNS, "creds", map[string]string{"appKey": key, "appSecret": secret})
	sel := map[string]string{"fanout.test/idle": testutil.RandHex(4)}
	name := "idle-" + testutil.RandHex(3)
	env.Create(t, clusterToken(name, credNS, "creds", "idle-token", sel))
	var tok *v1alpha1.ClusterDingTalkToken
	g.Eventually(func(g Gomega) {
		tok = getCluster(g, name)
		ready := condition(tok, v1alpha1.ConditionReady)
		g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonPending))
		g.Expect(ready.Message).To(ContainSubstring("No namespace matches"))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(tok.Status.RefreshTime).To(BeNil(), "nothing is scheduled")
	rv := tok.ResourceVersion
	g.Consistently(func(g Gomega) { g.Expect(getCluster(g, name).ResourceVersion).To(Equal(rv)) }).
		WithTimeout(5*time.Second).WithPolling(250*time.Millisecond).Should(Succeed(), "an idle object is not written again")
	g.Expect(calls(key)).To(BeZero(), "no token is fetched for nobody")

	// A namespace that starts to match: provisioned, with one call.
	labelledNamespace(t, "idle", sel)
	waitProvisioned(t, name, 1, 30*time.Second)
	g.Expect(calls(key)).To(BeEquivalentTo(1))
}
