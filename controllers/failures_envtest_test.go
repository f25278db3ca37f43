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
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// testCredentialsChange: a changed credential refreshes within seconds, even while the token is
// valid and not due.
func testCredentialsChange(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 60*time.Second)
	env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials"))
	before := env.WaitReady(t, ns, "app").Status
	oldToken := string(env.Secret(g, ns, "app").Data[v1alpha1.DefaultTargetKey])

	// The app's secret is rotated at DingTalk and in the credentials Secret.
	newSecret := env.secret("rotated-")
	envtesting.Must(t, env.Sim.AddApp(simulator.App{AppKey: a.key, AppSecret: newSecret, TokenLifetime: simulator.Duration(60 * time.Second)}))
	changed := time.Now()
	env.UpdateSecret(t, ns, "app-credentials", map[string]string{"appSecret": newSecret})
	// The call budget acts on a credentials change at most 10s after the last call (status times
	// are whole seconds: 11s from lastRefreshTime), at once after that.
	holdEnd := before.LastRefreshTime.Add(11 * time.Second)
	deadline := holdEnd
	if changed.After(deadline) {
		deadline = changed
	}
	var refreshed *v1alpha1.DingTalkToken
	g.Eventually(func(g Gomega) {
		tok := env.GetToken(g, ns, "app")
		g.Expect(tok.Status.CredentialsDigest).NotTo(Equal(before.CredentialsDigest))
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued))
		refreshed = tok
	}).WithTimeout(time.Until(deadline) + 8*time.Second).Should(Succeed())
	g.Expect(refreshed.Status.LastRefreshTime.Time).To(BeTemporally(">=", holdEnd), "a credentials change within 10s of a call waits for the hold")
	g.Expect(time.Since(deadline)).To(BeNumerically("<", 8*time.Second))
	g.Expect(env.Calls(simulator.PathAppAccessToken, a.key)).To(BeEquivalentTo(2))
	g.Eventually(func() string {
		return string(env.Secret(g, ns, "app").Data[v1alpha1.DefaultTargetKey])
	}).ShouldNot(Equal(oldToken))
	env.WaitReady(t, ns, "app")

	// A spec change of what is read (spec.corpId) counts as a credentials change too: refreshed
	// within seconds, with the new corp. The first new corp never authorized the suite, so only a
	// call that used it is refused.
	su := newSuite(t, ns, "suite-credentials", 60*time.Second)
	corp := testenv.NewToken(ns, "corp", v1alpha1.TokenTypeThirdPartyApp, "suite-credentials")
	corp.Spec.CorpID = su.corp
	corp.Spec.Target = &v1alpha1.Target{Template: &v1alpha1.TargetTemplate{Data: map[string]string{"corp": "{{ .CorpID }}"}}}
	env.Create(t, corp)
	corpBefore := env.WaitReady(t, ns, "corp").Status
	g.Expect(string(env.Secret(g, ns, "corp").Data["corp"])).To(Equal(su.corp), ".CorpID of a ThirdPartyApp token")
	unauthorized := "dingcorp" + testutil.RandHex(4)
	env.UpdateToken(t, ns, "corp", func(d *v1alpha1.DingTalkToken) { d.Spec.CorpID = unauthorized })
	// Within 10s of the last call: held until then (see above).
	tok := env.WaitFor(t, ns, "corp", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonCredentialsRejected, 20*time.Second)
	g.Expect(tok.Status.CredentialsDigest).NotTo(Equal(corpBefore.CredentialsDigest))
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue), "the old corp's token is still valid")
	g.Expect(env.Calls(simulator.PathCorpAccessToken, su.key)).To(BeEquivalentTo(2))
	g.Consistently(func() string { return string(env.Secret(g, ns, "corp").Data["corp"]) }).
		Within(2*time.Second).Should(Equal(su.corp), "the old corp's token is shown with the old corp")
	// An authorized corp: a token for it, at once (the digest changed again).
	other := "dingcorp" + testutil.RandHex(4)
	envtesting.Must(t, env.Sim.AuthorizeCorp(su.key, other))
	env.UpdateToken(t, ns, "corp", func(d *v1alpha1.DingTalkToken) { d.Spec.CorpID = other })
	tok = env.WaitFor(t, ns, "corp", v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, 20*time.Second)
	g.Expect(tok.Status.TokenDigest).NotTo(Equal(corpBefore.TokenDigest))
	g.Expect(env.Results(simulator.PathCorpAccessToken, su.key)).To(HaveKeyWithValue("success", BeEquivalentTo(2)))
	env.WaitReady(t, ns, "corp")
	g.Eventually(func() string { return string(env.Secret(g, ns, "corp").Data["corp"]) }).Should(Equal(other))
}

// testSuiteTicket: a new suite ticket alone waits for the due refresh; after a failed attempt it
// is used at once. CredentialsRejected is retried at most hourly.
func testSuiteTicket(t *testing.T, ns string) {
	g := NewWithT(t)
	su := newSuite(t, ns, "suite-credentials", 30*time.Second)
	env.Create(t, testenv.NewToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "suite-credentials"))
	st := env.WaitReady(t, ns, "suite").Status

	// DingTalk pushes a new ticket; the app stores it: no refresh before the due time.
	t2 := env.secret("ticket2-")
	envtesting.Must(t, env.Sim.SetSuiteTicket(su.key, t2))
	env.UpdateSecret(t, ns, "suite-credentials", map[string]string{"suiteTicket": t2})
	g.Consistently(func() int64 { return env.Calls(simulator.PathSuiteAccessToken, su.key) }).
		Within(4 * time.Second).Should(BeEquivalentTo(1))
	tok := env.WaitRefreshedAfter(t, ns, "suite", st.LastRefreshTime.Time, 30*time.Second)
	g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally(">=", st.RefreshTime.Time))
	g.Expect(tok.Status.SuiteTicketDigest).NotTo(Equal(st.SuiteTicketDigest))
	g.Expect(tok.Status.CredentialsDigest).To(Equal(st.CredentialsDigest))

	// DingTalk pushes another ticket the Secret does not have yet: the due refresh fails and is
	// not retried (hourly)...
	t3 := env.secret("ticket3-")
	envtesting.Must(t, env.Sim.SetSuiteTicket(su.key, t3))
	tok = env.WaitFor(t, ns, "suite", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonCredentialsRejected, 30*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue), "a failed refresh of a valid token keeps Ready")
	g.Expect(tok.Status.FailedAttempts).To(BeEquivalentTo(1))
	n := env.Calls(simulator.PathSuiteAccessToken, su.key)
	g.Consistently(func() int64 { return env.Calls(simulator.PathSuiteAccessToken, su.key) }).
		Within(3 * time.Second).Should(Equal(n))
	// ...until the new ticket arrives: then at once, or when the 10s hold after the failed call ends.
	env.UpdateSecret(t, ns, "suite-credentials", map[string]string{"suiteTicket": t3})
	holdEnd := tok.Status.LastFailureTime.Add(11 * time.Second)
	tok = env.WaitFor(t, ns, "suite", v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, time.Until(holdEnd)+5*time.Second)
	g.Expect(tok.Status.FailedAttempts).To(BeZero())
	g.Eventually(func() map[string]int { return env.EventCounts(g, ns, "suite") }).Should(And(
		HaveKeyWithValue("RefreshFailed", 1), HaveKeyWithValue("RefreshRecovered", 1)))
}

// testCredentialsRejected: wrong credentials -> CredentialsRejected, no retry storm; a CR with the
// same appKey but a wrong secret is not served the shared token; fixed -> Ready within seconds.
func testCredentialsRejected(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "good-credentials", 60*time.Second)
	env.Create(t, testenv.NewToken(ns, "good", v1alpha1.TokenTypeInternalApp, "good-credentials"))
	env.WaitReady(t, ns, "good")

	wrong := env.secret("wrong-")
	env.CreateSecret(t, ns, "bad-credentials", map[string]string{"appKey": a.key, "appSecret": wrong})
	env.Create(t, testenv.NewToken(ns, "bad", v1alpha1.TokenTypeInternalApp, "bad-credentials"))
	tok := env.WaitFor(t, ns, "bad", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsRejected, 30*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonCredentialsRejected))
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Message).NotTo(ContainSubstring(wrong))
	g.Expect(tok.Status.FailedAttempts).To(BeEquivalentTo(1))
	g.Expect(tok.Status.LastFailureTime).NotTo(BeNil())
	g.Expect(tok.Status.RefreshTime.Time).To(BeTemporally("~", tok.Status.LastFailureTime.Add(time.Hour), time.Second))
	g.Expect(env.Results(simulator.PathAppAccessToken, a.key)).To(HaveKeyWithValue("invalidClientIdOrSecret", BeEquivalentTo(1)))
	err := env.Client.Get(envtesting.Ctx(t), keyOf(ns, "bad"), &corev1.Secret{})
	g.Expect(err).To(HaveOccurred(), "no target Secret without a token")
	g.Consistently(func() int64 { return env.Calls(simulator.PathAppAccessToken, a.key) }).
		Within(4 * time.Second).Should(BeEquivalentTo(2))
	g.Eventually(func() map[string]int { return env.EventCounts(g, ns, "bad") }).Should(HaveKeyWithValue("RefreshFailed", 1))

	// Fixed: Ready within seconds, from the shared token.
	env.UpdateSecret(t, ns, "bad-credentials", map[string]string{"appSecret": a.secret})
	env.WaitFor(t, ns, "bad", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 10*time.Second)
	g.Expect(string(env.Secret(g, ns, "bad").Data["accessToken"])).To(Equal(string(env.Secret(g, ns, "good").Data["accessToken"])))
	g.Eventually(func() map[string]int { return env.EventCounts(g, ns, "bad") }).Should(And(
		HaveKeyWithValue("RefreshFailed", 1), HaveKeyWithValue("RefreshRecovered", 1), HaveKeyWithValue(v1alpha1.ReasonTokenIssued, 1)))
	g.Expect(env.GetToken(g, ns, "bad").Status.FailedAttempts).To(BeZero())
}

// testCredentialsNotFound: a missing Secret, then a missing key, then the full Secret: Ready
// within seconds of the Secret being fixed (the metadata watch on credentials Secrets).
func testCredentialsNotFound(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "", 60*time.Second)
	// The first two status writes fail: the failure's event is emitted once, after the write that
	// records the transition, not once per pass that tried.
	statusFailures := env.failNextStatusWrites(ns, 2)
	env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "later"))
	tok := env.WaitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsNotFound, 30*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Message).To(ContainSubstring(`"later" not found`))
	g.Expect(statusFailures.Load()).To(BeNumerically("<=", 0), "the injected status write failures were not hit")
	g.Eventually(func() map[string]int { return env.EventCounts(g, ns, "app") }).Should(HaveKeyWithValue("RefreshFailed", 1))
	g.Consistently(func() map[string]int { return env.EventCounts(g, ns, "app") }).
		Within(2 * time.Second).Should(HaveKeyWithValue("RefreshFailed", 1))

	env.CreateSecret(t, ns, "later", map[string]string{"appKey": a.key})
	g.Eventually(func() string {
		return testenv.Condition(env.GetToken(g, ns, "app"), v1alpha1.ConditionReady).Message
	}).WithTimeout(10 * time.Second).Should(ContainSubstring("appSecret"))
	env.UpdateSecret(t, ns, "later", map[string]string{"appSecret": a.secret})
	env.WaitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 10*time.Second)
	g.Expect(env.Calls(simulator.PathAppAccessToken, a.key)).To(BeEquivalentTo(1))
}

// testOutage: DingTalk fails when the refresh is due: the last token stays, Ready stays True,
// retries back off (5s, 10s, ...), and the next success recovers.
func testOutage(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 60*time.Second)
	env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials"))
	st := env.WaitReady(t, ns, "app").Status
	before := env.Secret(g, ns, "app")
	envtesting.Must(t, env.Sim.SetFault(simulator.Fault{Credential: a.key, Status: 503, Count: 2}))

	tok := env.WaitFor(t, ns, "app", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonProviderUnavailable, 60*time.Second)
	firstFailure := tok.Status.LastFailureTime.Time
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(env.Secret(g, ns, "app").Data).To(Equal(before.Data), "the last good token stays")
	// Bounded: the second attempt ~5s later, not sooner.
	g.Consistently(func() int64 { return env.Calls(simulator.PathAppAccessToken, a.key) }).
		Within(2 * time.Second).Should(BeEquivalentTo(2))
	tok = env.WaitFor(t, ns, "app", v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, 30*time.Second)
	// 5s then 10s of backoff (+-10%; status times have second precision).
	g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally(">=", firstFailure.Add(13*time.Second)))
	g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally("<", st.ExpiresAt.Time))
	g.Expect(tok.Status.FailedAttempts).To(BeZero())
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(env.Results(simulator.PathAppAccessToken, a.key)).To(Equal(map[string]int64{"success": 2, "fault:ServiceUnavailable": 2}))
	g.Eventually(func() map[string]int { return env.EventCounts(g, ns, "app") }).Should(And(
		HaveKeyWithValue("RefreshFailed", 1), HaveKeyWithValue("RefreshRecovered", 1)))
}

// testExpiryWhileFailing: when the token expires while refreshing fails, Ready turns False at that
// moment (reason: the failure); the last token stays in the Secret; recovery follows.
func testExpiryWhileFailing(t *testing.T, ns string) {
	g := NewWithT(t)
	su := newSuite(t, ns, "suite-credentials", 30*time.Second)
	env.Create(t, testenv.NewToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "suite-credentials"))
	st := env.WaitReady(t, ns, "suite").Status
	before := env.Secret(g, ns, "suite")
	// Failures at the due time (~20s), +6s (the backoff's 5s, held to the call budget), then at the
	// expiry (30s) or, when the call budget holds it, a second later; the next try (+20s) works.
	envtesting.Must(t, env.Sim.SetFault(simulator.Fault{Credential: su.key, Status: 500, Count: 3}))
	tok := env.WaitFor(t, ns, "suite", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonProviderUnavailable, 45*time.Second)
	g.Expect(time.Now()).To(BeTemporally("~", st.ExpiresAt.Time, 3*time.Second), "Ready turned False at the expiry")
	g.Expect(tok.Status.FailedAttempts).To(BeNumerically(">=", 2))
	g.Eventually(func() int32 { return env.GetToken(g, ns, "suite").Status.FailedAttempts }).WithTimeout(5 * time.Second).Should(BeEquivalentTo(3))
	g.Expect(env.Secret(g, ns, "suite").Data).To(Equal(before.Data), "the last good token stays")
	env.WaitFor(t, ns, "suite", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 40*time.Second)
	g.Expect(env.Sim.Valid(string(env.Secret(g, ns, "suite").Data["accessToken"]))).To(BeTrue())
}

// testRetryAfter: a 429 with Retry-After holds back every DingTalkToken of that credential set
// until it passes (the backoff alone would retry after 5s).
func testRetryAfter(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 60*time.Second)
	envtesting.Must(t, env.Sim.SetFault(simulator.Fault{Credential: a.key, RetryAfter: 10, Count: 1}))
	env.Create(t, testenv.NewToken(ns, "first", v1alpha1.TokenTypeInternalApp, "app-credentials"))
	tok := env.WaitFor(t, ns, "first", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRateLimited, 30*time.Second)
	limitedAt := tok.Status.LastFailureTime.Time
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Message).To(ContainSubstring("Retry-After"))

	// A second DingTalkToken of the same set waits too: Pending, no call.
	env.CreateSecret(t, ns, "same-credentials", map[string]string{"appKey": a.key, "appSecret": a.secret})
	env.Create(t, testenv.NewToken(ns, "second", v1alpha1.TokenTypeInternalApp, "same-credentials"))
	second := env.WaitFor(t, ns, "second", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonPending, 10*time.Second)
	g.Expect(testenv.Condition(second, v1alpha1.ConditionRefreshed).Type).To(BeEmpty(), "Refreshed before any attempt")
	g.Consistently(func() int64 { return env.Calls(simulator.PathAppAccessToken, a.key) }).
		Within(time.Until(limitedAt.Add(8 * time.Second))).Should(BeEquivalentTo(1))

	for _, n := range []string{"first", "second"} {
		tok := env.WaitFor(t, ns, n, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 20*time.Second)
		g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally(">=", limitedAt.Add(9*time.Second)))
	}
	g.Expect(env.Results(simulator.PathAppAccessToken, a.key)).To(Equal(map[string]int64{"success": 1, "fault:Throttling": 1}))
}

// testQuotaExceeded: an exhausted quota is retried at most hourly, and at once when the
// credentials change.
func testQuotaExceeded(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 60*time.Second)
	envtesting.Must(t, env.Sim.SetFault(simulator.Fault{Credential: a.key, Status: 403, Code: "Forbidden.AccessDenied.ApiCountLimitForOrg", Count: 1}))
	env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials"))
	tok := env.WaitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonQuotaExceeded, 30*time.Second)
	g.Expect(tok.Status.RefreshTime.Time).To(BeTemporally("~", tok.Status.LastFailureTime.Add(time.Hour), time.Second))
	g.Consistently(func() int64 { return env.Calls(simulator.PathAppAccessToken, a.key) }).
		Within(4 * time.Second).Should(BeEquivalentTo(1))

	newSecret := env.secret("quota-")
	envtesting.Must(t, env.Sim.AddApp(simulator.App{AppKey: a.key, AppSecret: newSecret, TokenLifetime: simulator.Duration(60 * time.Second)}))
	env.UpdateSecret(t, ns, "app-credentials", map[string]string{"appSecret": newSecret})
	env.WaitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 10*time.Second)
}
