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

package controllers_test

import (
	"maps"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

// testTemplateInvalid: a refused template is reported before any DingTalk call; fixing the spec
// makes the token Ready.
func testTemplateInvalid(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 60*time.Second)
	tok := testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials")
	tok.Spec.Target = &v1alpha1.Target{Template: &v1alpha1.TargetTemplate{Data: map[string]string{
		"config": `{{ range .AccessToken }}{{ . }}{{ end }}`,
	}}}
	env.Create(t, tok)
	tok = env.WaitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTemplateInvalid, 30*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Message).To(ContainSubstring("spec.target.template.data[config]: range is not allowed"))
	g.Expect(env.Calls(simulator.PathAppAccessToken, a.key)).To(BeZero())

	env.UpdateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) {
		d.Spec.Target.Template.Data["config"] = `token={{ .AccessToken | quote }}`
	})
	tok = env.WaitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 15*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Status).To(Equal(metav1.ConditionTrue))
	s := env.Secret(g, ns, "app")
	g.Expect(string(s.Data["config"])).To(Equal(`token="` + string(s.Data["accessToken"]) + `"`))

	// Broken again while a token is held: the Secret keeps its token (Ready stays True), Refreshed
	// says why nothing is written.
	env.UpdateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) {
		d.Spec.Target.Template.Data["config"] = `{{ define "x" }}{{ end }}`
	})
	tok = env.WaitFor(t, ns, "app", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonTemplateInvalid, 10*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(env.Secret(g, ns, "app").Data).To(Equal(s.Data))

	// Metadata the API server refuses (a label value with spaces): TemplateInvalid naming the
	// field, not the value; no returned error; the Secret keeps its token.
	const badValue = "not a valid label value"
	env.UpdateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) {
		d.Spec.Target.Template.Data["config"] = `token={{ .AccessToken | quote }}`
		d.Spec.Target.Template.Metadata = &v1alpha1.TargetTemplateMetadata{Labels: map[string]string{"team": badValue}}
	})
	g.Eventually(func(g Gomega) {
		tok := env.GetToken(g, ns, "app")
		c := testenv.Condition(tok, v1alpha1.ConditionRefreshed)
		g.Expect(c.Reason).To(Equal(v1alpha1.ReasonTemplateInvalid))
		g.Expect(c.ObservedGeneration).To(Equal(tok.Generation))
		g.Expect(c.Message).To(ContainSubstring("spec.target.template.metadata.labels"))
		g.Expect(c.Message).NotTo(ContainSubstring(badValue))
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(env.Secret(g, ns, "app").Data).To(Equal(s.Data))
	g.Expect(loggedFor(ns, "is invalid")).To(BeFalse(), "a refused template is a condition, not a returned error")
	env.UpdateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) { d.Spec.Target.Template.Metadata.Labels["team"] = "crm" })
	env.WaitFor(t, ns, "app", v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, 10*time.Second)
	g.Expect(env.Secret(g, ns, "app").Labels).To(HaveKeyWithValue("team", "crm"))
}

// testTargetConflict: a Secret this DingTalkToken does not own is never written; two
// DingTalkTokens naming one target do not fight; the conflict clears once the name is free.
func testTargetConflict(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 60*time.Second)
	foreign := env.CreateSecret(t, ns, "taken", map[string]string{"mine": "value"})
	tok := testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials")
	tok.Spec.Target = &v1alpha1.Target{Name: "taken"}
	env.Create(t, tok)
	tok = env.WaitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTargetConflict, 30*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Message).To(ContainSubstring("Secret taken exists and is not owned"))
	s := env.Secret(g, ns, "taken")
	g.Expect(s.Data).To(Equal(map[string][]byte{"mine": []byte("value")}))
	g.Expect(s.OwnerReferences).To(BeEmpty())
	g.Expect(s.ResourceVersion).To(Equal(foreign.ResourceVersion), "the foreign Secret was written")
	g.Expect(env.Calls(simulator.PathAppAccessToken, a.key)).To(BeZero(), "no call for a token that cannot be written")

	// Two DingTalkTokens, one target: the first owns it, the second reports the conflict.
	one := testenv.NewToken(ns, "one", v1alpha1.TokenTypeInternalApp, "app-credentials")
	one.Spec.Target = &v1alpha1.Target{Name: "shared"}
	env.Create(t, one)
	one = env.WaitReady(t, ns, "one")
	two := testenv.NewToken(ns, "two", v1alpha1.TokenTypeInternalApp, "app-credentials")
	two.Spec.Target = &v1alpha1.Target{Name: "shared", Key: "other"}
	env.Create(t, two)
	env.WaitFor(t, ns, "two", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTargetConflict, 30*time.Second)
	shared := env.Secret(g, ns, "shared")
	g.Consistently(func(g Gomega) {
		s := env.Secret(g, ns, "shared")
		g.Expect(s.ResourceVersion).To(Equal(shared.ResourceVersion))
		envtesting.ExpectOwnedBy(g, s, one)
	}).Within(3 * time.Second).Should(Succeed())

	// The name is freed: the next re-check (backoff) creates the Secret.
	envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), foreign))
	tok = env.WaitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 45*time.Second)
	envtesting.ExpectOwnedBy(g, env.Secret(g, ns, "taken"), tok)
}

// testDriftRepair: an owned target that is edited or deleted is restored from memory, without a
// DingTalk call.
func testDriftRepair(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 60*time.Second)
	tok := testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials")
	tok.Spec.Target = &v1alpha1.Target{Template: &v1alpha1.TargetTemplate{Metadata: &v1alpha1.TargetTemplateMetadata{Labels: map[string]string{"team": "a"}}}}
	env.Create(t, tok)
	tok = env.WaitReady(t, ns, "app")
	want := env.Secret(g, ns, "app")
	restored := func(g Gomega) {
		s := &corev1.Secret{}
		g.Expect(env.Client.Get(envtesting.Ctx(t), keyOf(ns, "app"), s)).To(Succeed())
		g.Expect(s.Data).To(Equal(want.Data))
		g.Expect(s.Labels).To(Equal(want.Labels))
		g.Expect(s.Annotations).To(HaveKeyWithValue(v1alpha1.ExpiresAtAnnotation, want.Annotations[v1alpha1.ExpiresAtAnnotation]))
		envtesting.ExpectOwnedBy(g, s, tok)
	}

	// Edited: the token overwritten, a key added, the expiry annotation removed.
	edit := want.DeepCopy()
	edit.Data["accessToken"] = []byte("tampered")
	edit.Data["extra"] = []byte("x")
	delete(edit.Annotations, v1alpha1.ExpiresAtAnnotation)
	envtesting.Must(t, env.Client.Update(envtesting.Ctx(t), edit))
	g.Eventually(restored).WithTimeout(10 * time.Second).Should(Succeed())

	// The managed-by label removed: the Secret leaves the cache, and is still restored.
	updateSecretLabels(t, ns, "app", map[string]string{"team": "a"})
	g.Eventually(restored).WithTimeout(10 * time.Second).Should(Succeed())

	// Deleted: re-created with the same token.
	envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), want))
	g.Eventually(restored).WithTimeout(10 * time.Second).Should(Succeed())

	g.Expect(env.Calls(simulator.PathAppAccessToken, a.key)).To(BeEquivalentTo(1), "drift repair called DingTalk")
	// The credentials Secret was read once: unchanged (same resourceVersion in the metadata
	// cache), it is not read again on passes that are about something else.
	g.Expect(env.secretGets(ns, "app-credentials")).To(BeEquivalentTo(1))
	g.Expect(testenv.Condition(env.GetToken(g, ns, "app"), v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))

	// A label removed from the template is removed from the Secret; one someone else set stays.
	theirs := maps.Clone(want.Labels)
	theirs["theirs"] = "x"
	updateSecretLabels(t, ns, "app", theirs)
	env.UpdateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) {
		d.Spec.Target.Template.Metadata.Labels = map[string]string{"tier": "b"}
	})
	g.Eventually(func(g Gomega) {
		s := env.Secret(g, ns, "app")
		g.Expect(s.Labels).NotTo(HaveKey("team"))
		g.Expect(s.Labels).To(HaveKeyWithValue("tier", "b"))
		g.Expect(s.Labels).To(HaveKeyWithValue("theirs", "x"))
		g.Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.ManagedByLabel, v1alpha1.ManagedByValue))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	env.UpdateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) { d.Spec.Target.Template = nil })
	g.Eventually(func(g Gomega) {
		s := env.Secret(g, ns, "app")
		g.Expect(s.Labels).NotTo(HaveKey("tier"))
		g.Expect(s.Labels).To(HaveKeyWithValue("theirs", "x"))
		g.Expect(s.Annotations).NotTo(HaveKey("dingtalk.tokens.dev/template-keys"))
		g.Expect(s.Data).To(Equal(want.Data))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(env.Calls(simulator.PathAppAccessToken, a.key)).To(BeEquivalentTo(1), "a metadata change called DingTalk")
}

// testSuspend: no DingTalk call while suspended; Ready stays True while the Secret's token is
// valid, then turns False (Suspended) at its expiry; resuming refreshes.
func testSuspend(t *testing.T, ns string) {
	g := NewWithT(t)
	su := newSuite(t, ns, "suite-credentials", 30*time.Second)
	env.Create(t, testenv.NewToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "suite-credentials"))
	st := env.WaitReady(t, ns, "suite").Status
	s := env.Secret(g, ns, "suite")

	// Suspended and resumed while the token is valid: Refreshed goes back to True, no call.
	env.UpdateToken(t, ns, "suite", func(d *v1alpha1.DingTalkToken) { d.Spec.Suspend = true })
	env.WaitFor(t, ns, "suite", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonSuspended, 10*time.Second)
	env.UpdateToken(t, ns, "suite", func(d *v1alpha1.DingTalkToken) { d.Spec.Suspend = false })
	env.WaitFor(t, ns, "suite", v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, 10*time.Second)
	g.Expect(env.Calls(simulator.PathSuiteAccessToken, su.key)).To(BeEquivalentTo(1))

	env.UpdateToken(t, ns, "suite", func(d *v1alpha1.DingTalkToken) { d.Spec.Suspend = true })
	tok := env.WaitFor(t, ns, "suite", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonSuspended, 10*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonTokenValid))
	g.Expect(tok.Status.RefreshTime).To(BeNil(), "nothing is planned while suspended")
	g.Eventually(func() *float64 {
		return metricValue(t, "dingtalk_token_refresh_timestamp_seconds", ns, "suite", nil)
	}).Should(BeNil(), "a stale refresh time is exported while suspended")
	// Past the due time and the expiry: no call, the Secret keeps what it has.
	env.WaitFor(t, ns, "suite", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSuspended, 40*time.Second)
	g.Expect(time.Now()).To(BeTemporally("~", st.ExpiresAt.Time, 3*time.Second), "Ready turned False at the expiry")
	g.Expect(env.Calls(simulator.PathSuiteAccessToken, su.key)).To(BeEquivalentTo(1))
	g.Expect(env.Secret(g, ns, "suite").Data).To(Equal(s.Data))
	g.Expect(env.EventCounts(g, ns, "suite")).NotTo(HaveKey("RefreshFailed"), "suspending is no failure")

	env.UpdateToken(t, ns, "suite", func(d *v1alpha1.DingTalkToken) { d.Spec.Suspend = false })
	env.WaitFor(t, ns, "suite", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 10*time.Second)
	g.Expect(env.Calls(simulator.PathSuiteAccessToken, su.key)).To(BeEquivalentTo(2))
	g.Eventually(func() *float64 {
		return metricValue(t, "dingtalk_token_refresh_timestamp_seconds", ns, "suite", nil)
	}).ShouldNot(BeNil(), "the refresh time is exported again once resumed")
}

// testDeletion: the operator's Secrets carry the controller ownerReference (UID,
// blockOwnerDeletion) the garbage collector deletes them by; the metrics series go with the CR.
func testDeletion(t *testing.T, ns string) {
	g := NewWithT(t)
	newApp(t, ns, "app-credentials", 60*time.Second)
	newUser(t, ns, "user-credentials", 60*time.Second, "refreshToken")
	env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials"))
	env.Create(t, testenv.NewToken(ns, "user", v1alpha1.TokenTypeUser, "user-credentials"))
	app, user := env.WaitReady(t, ns, "app"), env.WaitReady(t, ns, "user")
	envtesting.ExpectOwnedBy(g, env.Secret(g, ns, "app"), app)
	envtesting.ExpectOwnedBy(g, env.Secret(g, ns, "user"), user)
	envtesting.ExpectOwnedBy(g, env.Secret(g, ns, "user-refresh-token"), user)
	g.Expect(metricValue(t, "dingtalk_token_expiration_timestamp_seconds", ns, "app", nil)).NotTo(BeNil())

	for _, tok := range []*v1alpha1.DingTalkToken{app, user} {
		envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), tok))
	}
	for _, n := range []string{"app", "user"} {
		g.Eventually(func() bool {
			return apierrors.IsNotFound(env.Client.Get(envtesting.Ctx(t), keyOf(ns, n), &v1alpha1.DingTalkToken{}))
		}).Should(BeTrue())
		g.Eventually(func() *float64 {
			return metricValue(t, "dingtalk_token_expiration_timestamp_seconds", ns, n, nil)
		}).WithTimeout(10*time.Second).Should(BeNil(), "metrics series of a deleted DingTalkToken")
		g.Expect(metricValue(t, "dingtalk_token_ready_status", ns, n, nil)).To(BeNil())
	}
}
