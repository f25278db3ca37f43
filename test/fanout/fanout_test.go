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

// Package fanout tests ClusterDingTalkTokens: one token, one DingTalk call per refresh, written
// into every namespace a selector picks. It runs its own control plane with one manager serving
// every namespace (a ClusterDingTalkToken needs an operator that is not restricted to a list of
// namespaces), the DingTalk simulator over real HTTP, and scans everything for leaks at the end.
package fanout

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

var (
	env  *envtesting.Env
	logs *testutil.SyncBuffer
)

// TestFanOut runs every scenario at once (each with its own namespaces, labels and simulator
// app), then the leak scan over all of them.
func TestFanOut(t *testing.T) {
	var log logr.Logger
	logs, log = envtesting.SuiteLogs(t, "fanout-envtest")
	env = envtesting.Start(t, testenv.Options{Simulator: &simulator.Config{}})
	// No namespace list: the cluster-wide operator, which serves ClusterDingTalkTokens.
	env.StartManager(t, env.ManagerOptions(), operator.Hooks{Logger: log})
	watchNamespaceFinalizers(t)

	t.Run("scenarios", func(t *testing.T) {
		envtesting.RunConcurrently(t, map[string]func(*testing.T){
			"FanOutSharedFetch":  testFanOutSharedFetch,
			"NamespaceLifecycle": testNamespaceLifecycle,
			"Admission":          testAdmission,
			"NamespaceLabels":    testNamespaceLabelPolicy,
			"Idle":               testIdle,
			"StreamFanOut":       testStreamFanOut,
		})
	})
	t.Run("LeakScan", func(t *testing.T) {
		env.ScanLeaks(t, logs.Bytes(), `"No refresh"`, `"Stored a pushed suite ticket"`)
	})
}

// newApp adds an internal app to the simulator and returns its key and secret (both sensitive).
func newApp(t *testing.T, life time.Duration) (string, string) {
	key := "dingfan" + testutil.RandHex(6)
	env.Sensitive.Add(testenv.Credential, key)
	secret := env.Sensitive.New(testenv.Credential, "fan-secret-")
	envtesting.Must(t, env.Sim.AddApp(simulator.App{AppKey: key, AppSecret: secret, TokenLifetime: simulator.Duration(life)}))
	return key, secret
}

// labelledNamespace creates a namespace with labels.
func labelledNamespace(t *testing.T, prefix string, labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	envtesting.Must(t, env.Client.Create(envtesting.Ctx(t), ns))
	return ns.Name
}

// setLabels replaces a namespace's labels.
func setLabels(t *testing.T, name string, labels map[string]string) {
	envtesting.Must(t, testenv.Update(envtesting.Ctx(t), env.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}},
		func(ns *corev1.Namespace) { ns.Labels = labels }))
}

// clusterToken builds a ClusterDingTalkToken of an internal app whose credentials are credNS/cred.
func clusterToken(name, credNS, cred, target string, selector map[string]string) *v1alpha1.ClusterDingTalkToken {
	return &v1alpha1.ClusterDingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ClusterDingTalkTokenSpec{
			Type:              v1alpha1.TokenTypeInternalApp,
			CredentialsRef:    v1alpha1.ClusterCredentialsReference{Namespace: credNS, Name: cred},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: selector},
			Target:            v1alpha1.ClusterTarget{Name: target},
		},
	}
}

func getCluster(g Gomega, name string) *v1alpha1.ClusterDingTalkToken {
	tok := &v1alpha1.ClusterDingTalkToken{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Name: name}, tok)).To(Succeed())
	return tok
}

func condition(tok *v1alpha1.ClusterDingTalkToken, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(tok.Status.Conditions, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// waitProvisioned waits until the ClusterDingTalkToken is Ready with every one of want namespaces
// provisioned, and returns it.
func waitProvisioned(t *testing.T, name string, want int32, timeout time.Duration) *v1alpha1.ClusterDingTalkToken {
	var tok *v1alpha1.ClusterDingTalkToken
	NewWithT(t).Eventually(func(g Gomega) {
		tok = getCluster(g, name)
		c := condition(tok, v1alpha1.ConditionReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "Ready: %s %s", c.Reason, c.Message)
		g.Expect(c.ObservedGeneration).To(Equal(tok.Generation))
		g.Expect(tok.Status.Namespaces).NotTo(BeNil())
		g.Expect(*tok.Status.Namespaces).To(Equal(v1alpha1.NamespaceCounts{
			Matched: want, Provisioned: want, Summary: fmt.Sprintf("%d/%d", want, want)}))
	}).WithTimeout(timeout).WithPolling(100 * time.Millisecond).Should(Succeed())
	return tok
}

// target reads a target Secret (nil when there is none); its token joins the leak scan.
func target(g Gomega, ns, name string) *corev1.Secret {
	s := &corev1.Secret{}
	err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	g.Expect(err).NotTo(HaveOccurred())
	env.Sensitive.AddSecret(s)
	return s
}

// expectOwned checks the controller reference by which the garbage collector deletes a target
// with its ClusterDingTalkToken (envtest runs no garbage collector: the reference is what can be
// checked).
func expectOwned(g Gomega, s *corev1.Secret, tok *v1alpha1.ClusterDingTalkToken) {
	refs := s.OwnerReferences
	g.Expect(refs).To(HaveLen(1), "%s/%s ownerReferences", s.Namespace, s.Name)
	g.Expect(refs[0].UID).To(Equal(tok.UID))
	g.Expect(refs[0].Kind).To(Equal("ClusterDingTalkToken"))
	g.Expect(refs[0].APIVersion).To(Equal(v1alpha1.GroupVersion.String()))
	g.Expect(refs[0].Controller).To(HaveValue(BeTrue()))
	g.Expect(refs[0].BlockOwnerDeletion).To(HaveValue(BeTrue()))
}

// watchNamespaceFinalizers fails the test if any Namespace ever carries a finalizer in its
// metadata (the fan-out must never block a namespace's deletion; spec.finalizers, the API
// server's own "kubernetes" finalizer, is not ours and not checked).
func watchNamespaceFinalizers(t *testing.T) {
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	envtesting.Must(t, err)
	w, err := wc.Watch(envtesting.Ctx(t), &corev1.NamespaceList{})
	envtesting.Must(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ns, ok := ev.Object.(*corev1.Namespace); ok && len(ns.Finalizers) > 0 {
				t.Errorf("namespace %s carries the finalizers %v", ns.Name, ns.Finalizers)
			}
		}
	}()
	t.Cleanup(func() { w.Stop(); <-done })
}

// calls is the number of accessToken calls the simulator answered for an app.
func calls(appKey string) int64 { return env.Calls(simulator.PathAppAccessToken, appKey) }

// withLabel returns labels with one more.
func withLabel(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for lk, lv := range labels {
		out[lk] = lv
	}
	return out
}
