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

package hostile

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

// TestDigestsPerInstallation: status digests are keyed by a random key each installation keeps in
// a Secret of its own namespace (created on its first start), not by the object's UID, which
// every reader of the object knows. They are stable across a restart (which still fetches no
// valid token again), and another installation shows other digests for the same token.
func TestDigestsPerInstallation(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	installA, installB := env.CreateNamespace(t, "install-a"), env.CreateNamespace(t, "install-b")
	ns := env.CreateNamespace(t, "digests")
	key := newApp(t, ns, "creds", time.Hour)

	a := manager(t, "install-a", "", []string{ns}, "--operator-namespace="+installA)
	env.Create(t, testenv.NewToken(ns, "tok", v1alpha1.TokenTypeInternalApp, "creds"))
	first := env.WaitReady(t, ns, "tok").Status
	token := string(env.Secret(g, ns, "tok").Data[v1alpha1.DefaultTargetKey])
	keyA := &corev1.Secret{}
	envtesting.Must(t, env.Client.Get(envtesting.Ctx(t), client.ObjectKey{Namespace: installA, Name: controllers.DigestKeySecretName}, keyA))
	g.Expect(keyA.Data[controllers.DigestKeyField]).To(HaveLen(32), "the installation's key was not created on the first start")
	g.Expect(a.Terminate(time.Minute)).To(Succeed())

	// A restart of the same installation: the same digests, and no call for the valid token.
	calls := dingtalk.Count(key)
	again := manager(t, "install-a-restarted", "", []string{ns}, "--operator-namespace="+installA)
	g.Consistently(func() int { return dingtalk.Count(key) }).WithTimeout(4*time.Second).Should(Equal(calls), "a restart fetched the valid token again")
	restarted := env.WaitReady(t, ns, "tok").Status
	g.Expect(restarted.TokenDigest).To(Equal(first.TokenDigest))
	g.Expect(restarted.CredentialsDigest).To(Equal(first.CredentialsDigest))
	g.Expect(again.Terminate(time.Minute)).To(Succeed())

	// Another installation (its own namespace, its own key) cannot vouch for the Secret's token
	// by its digest: it fetches once, gets the same token (DingTalk hands out the valid one
	// again), and shows another digest for it.
	manager(t, "install-b", "", []string{ns}, "--operator-namespace="+installB)
	var other *v1alpha1.DingTalkToken
	g.Eventually(func(g Gomega) {
		other = env.GetToken(g, ns, "tok")
		g.Expect(other.Status.TokenDigest).NotTo(Equal(first.TokenDigest))
		g.Expect(testenv.Condition(other, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonTokenValid))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	g.Expect(string(env.Secret(g, ns, "tok").Data[v1alpha1.DefaultTargetKey])).To(Equal(token), "the same token, another digest")
	g.Expect(other.Status.CredentialsDigest).NotTo(Equal(first.CredentialsDigest))
	measured(t, "digests: %s in installation A, the same after a restart (%d calls in all), %s for the same token in installation B",
		first.TokenDigest, calls, other.Status.TokenDigest)
}
