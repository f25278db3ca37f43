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

package scale

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

const (
	// life is the simulator's token lifetime here: no refresh falls due during a scenario's
	// credentials change, so the refresh seen is the change's.
	life = 2 * time.Minute
	// seenWithin is how soon a credentials change must be acted on, once the call budget allows.
	seenWithin = 8 * time.Second
	// unrelatedSecrets are created beside the credentials: the watch drops them.
	unrelatedSecrets = 40
)

// testCredentialsWatchClusterWide: an operator serving every namespace sees a credentials change
// within seconds, for a Secret that existed (unchanged) before the token naming it, for one
// created after its token, and for a ClusterDingTalkToken's credentials in a namespace no other
// token uses; Secrets no token names are around the whole time.
func testCredentialsWatchClusterWide(t *testing.T) {
	sc := scenario("credwatch-cluster")
	sim := startSimulator(t)
	ns := env.CreateNamespace(t, "credwatch")
	for i := range unrelatedSecrets {
		env.CreateSecret(t, ns, fmt.Sprintf("unrelated-%02d", i), map[string]string{"blob": "not a credential"})
	}
	preKey, preSecret := newApp(t, sim, life)
	env.CreateSecret(t, ns, "pre", map[string]string{"appKey": preKey, "appSecret": preSecret})
	env.StartManager(t, managerOptions(sc, sim, ""), operator.Hooks{Logger: log})

	// Named only after the watch listed it (unreferenced then, so not kept): a pass reads it and
	// the watch learns its resourceVersion.
	env.Create(t, labelledToken(ns, "pre-token", "pre", map[string]string{scenarioLabel: sc}))
	changeSeen(t, sim, ns, "pre-token", "pre", preKey)

	// Created after its token: CredentialsNotFound, then Ready within seconds, then a change seen.
	lateKey, lateSecret := newApp(t, sim, life)
	env.Create(t, labelledToken(ns, "late-token", "late", map[string]string{scenarioLabel: sc}))
	env.WaitFor(t, ns, "late-token", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsNotFound, 30*time.Second)
	created := time.Now()
	env.CreateSecret(t, ns, "late", map[string]string{"appKey": lateKey, "appSecret": lateSecret})
	readyWithin(t, ns, "late-token", seenWithin)
	t.Logf("a credentials Secret created after its token: Ready after %s", describe(time.Since(created)))
	changeSeen(t, sim, ns, "late-token", "late", lateKey)

	// A ClusterDingTalkToken's credentials in a namespace of their own, fanned out to two others.
	credNS := env.CreateNamespace(t, "credwatch-platform")
	platKey, platSecret := newApp(t, sim, life)
	env.CreateSecret(t, credNS, "platform", map[string]string{"appKey": platKey, "appSecret": platSecret})
	pick := map[string]string{"scale.test.dingtalk.tokens.dev/fanout": sc}
	targets := []string{labelledNamespace(t, "credwatch-fan", pick), labelledNamespace(t, "credwatch-fan", pick)}
	cdt := &v1alpha1.ClusterDingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Name: "credwatch-" + sc, Labels: map[string]string{scenarioLabel: sc}},
		Spec: v1alpha1.ClusterDingTalkTokenSpec{
			Type:              v1alpha1.TokenTypeInternalApp,
			CredentialsRef:    v1alpha1.ClusterCredentialsReference{Namespace: credNS, Name: "platform"},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: pick},
			Target:            v1alpha1.ClusterTarget{Name: "platform-token"},
		},
	}
	env.Create(t, cdt)
	before := waitCluster(t, cdt.Name, 30*time.Second, func(c *v1alpha1.ClusterDingTalkToken) error {
		if r := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue {
			return errors.New("not Ready")
		}
		return nil
	})
	oldTokens := map[string]string{}
	g := NewWithT(t)
	for _, ns := range targets {
		oldTokens[ns] = string(env.Secret(g, ns, "platform-token").Data[v1alpha1.DefaultTargetKey])
	}
	rotated := rotateApp(t, sim, platKey, life)
	changed := time.Now()
	env.UpdateSecret(t, credNS, "platform", map[string]string{"appSecret": rotated})
	deadline := latest(changed, budgetFree(before.Status.LastRefreshTime.Time)).Add(seenWithin)
	waitCluster(t, cdt.Name, time.Until(deadline), func(c *v1alpha1.ClusterDingTalkToken) error {
		if c.Status.CredentialsDigest == before.Status.CredentialsDigest {
			return errors.New("the credentials digest did not change")
		}
		return nil
	})
	g.Eventually(func(g Gomega) {
		for _, ns := range targets {
			g.Expect(string(env.Secret(g, ns, "platform-token").Data[v1alpha1.DefaultTargetKey])).NotTo(Equal(oldTokens[ns]), ns)
		}
	}).WithTimeout(time.Until(deadline.Add(5 * time.Second))).Should(Succeed())
	t.Logf("a ClusterDingTalkToken's credentials change in another namespace: seen after %s", describe(time.Since(changed)))
	g.Expect(calls(sim, platKey)).To(BeEquivalentTo(2), "one call for the fan-out, one for the change")
}

// testCredentialsWatchNamespaced: an operator restricted to a namespace sees a credentials change
// there within seconds.
func testCredentialsWatchNamespaced(t *testing.T) {
	sc := scenario("credwatch-ns")
	sim := startSimulator(t)
	ns := env.CreateNamespace(t, "credwatch-ns")
	for i := range unrelatedSecrets {
		env.CreateSecret(t, ns, fmt.Sprintf("unrelated-%02d", i), map[string]string{"blob": "not a credential"})
	}
	key, secret := newApp(t, sim, life)
	env.CreateSecret(t, ns, "app", map[string]string{"appKey": key, "appSecret": secret})
	env.Create(t, labelledToken(ns, "token", "app", map[string]string{scenarioLabel: sc}))
	env.StartManager(t, managerOptions(sc, sim, "", ns), operator.Hooks{Logger: log})
	changeSeen(t, sim, ns, "token", "app", key)
}

// changeSeen rotates an app's secret at DingTalk and in its credentials Secret, and checks that
// the DingTalkToken is refreshed with the new credentials within seenWithin of the moment the
// call budget allows it.
func changeSeen(t *testing.T, sim *simulator.Server, ns, name, secretName, appKey string) {
	t.Helper()
	before := readyWithin(t, ns, name, 30*time.Second)
	callsBefore := calls(sim, appKey)
	rotated := rotateApp(t, sim, appKey, life)
	changed := time.Now()
	env.UpdateSecret(t, ns, secretName, map[string]string{"appSecret": rotated})
	deadline := latest(changed, budgetFree(before.Status.LastRefreshTime.Time)).Add(seenWithin)
	tok, err := testenv.WaitForToken(envtesting.Ctx(t), env.Client, ns, name, time.Until(deadline), func(tok *v1alpha1.DingTalkToken) error {
		if tok.Status.CredentialsDigest == before.Status.CredentialsDigest {
			return errors.New("the credentials digest did not change")
		}
		return testenv.HasCondition(v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued)(tok)
	})
	envtesting.Must(t, err)
	t.Logf("%s/%s: credentials change seen after %s", ns, name, describe(time.Since(changed)))
	g := NewWithT(t)
	g.Expect(tok.Status.TokenDigest).NotTo(Equal(before.Status.TokenDigest))
	g.Expect(calls(sim, appKey)).To(Equal(callsBefore+1), "one call for the change")
	g.Expect(sim.Stats().Endpoints[simulator.PathAppAccessToken].Credentials[appKey].Results).
		To(HaveKeyWithValue("success", callsBefore+1), "every call succeeded: the old secret was never sent after the change")
}

// waitCluster reads a ClusterDingTalkToken until check accepts it.
func waitCluster(t *testing.T, name string, timeout time.Duration, check func(*v1alpha1.ClusterDingTalkToken) error) *v1alpha1.ClusterDingTalkToken {
	t.Helper()
	var got *v1alpha1.ClusterDingTalkToken
	last := errors.New("never read")
	NewWithT(t).Eventually(func() error {
		c := &v1alpha1.ClusterDingTalkToken{}
		if err := env.Client.Get(context.Background(), types.NamespacedName{Name: name}, c); err != nil {
			last = err
			return err
		}
		if err := check(c); err != nil {
			last = err
			return err
		}
		got = c
		return nil
	}).WithTimeout(timeout).WithPolling(testenv.PollInterval).Should(Succeed(), "ClusterDingTalkToken %s: %v", name, last)
	return got
}
