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
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// app is an internal app known to the simulator.
type app struct{ key, secret string }

// newApp adds an internal app to the simulator and its credentials Secret to ns.
func newApp(t *testing.T, ns, secretName string, life time.Duration) app {
	t.Helper()
	a := app{key: env.secret("dingapp"), secret: env.secret("appsecret-")}
	envtesting.Must(t, env.Sim.AddApp(simulator.App{AppKey: a.key, AppSecret: a.secret, TokenLifetime: simulator.Duration(life)}))
	if secretName != "" {
		env.CreateSecret(t, ns, secretName, map[string]string{"appKey": a.key, "appSecret": a.secret})
	}
	return a
}

// suiteCreds is a third-party suite known to the simulator, with one authorizing org.
type suiteCreds struct{ key, secret, ticket, corp string }

func newSuite(t *testing.T, ns, secretName string, life time.Duration) suiteCreds {
	t.Helper()
	s := suiteCreds{key: env.secret("suite"), secret: env.secret("suitesecret-"), ticket: env.secret("ticket-"), corp: "dingcorp" + testutil.RandHex(4)}
	envtesting.Must(t, env.Sim.AddSuite(simulator.Suite{SuiteKey: s.key, SuiteSecret: s.secret, SuiteTicket: s.ticket,
		AuthorizedCorps: []string{s.corp}, TokenLifetime: simulator.Duration(life)}))
	if secretName != "" {
		env.CreateSecret(t, ns, secretName, map[string]string{"suiteKey": s.key, "suiteSecret": s.secret, "suiteTicket": s.ticket})
	}
	return s
}

// metricValue reads a series of the controller-runtime registry for a DingTalkToken (nil: none).
func metricValue(t *testing.T, name, ns, tokName string, extra map[string]string) *float64 {
	t.Helper()
	m, err := testenv.Gather()
	envtesting.Must(t, err)
	labels := map[string]string{"namespace": ns, "name": tokName}
	maps.Copy(labels, extra)
	if v, ok := m.Sample(name, labels); ok {
		return &v
	}
	return nil
}

// testIssuesInternalApp: the first token, the target Secret's shape (keys, template, metadata,
// ownerReference, expiry annotation), the status fields, the event, the metrics, and that passes
// not triggered by a due time make no DingTalk call.
func testIssuesInternalApp(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "crm-credentials", 60*time.Second)
	tok := testenv.NewToken(ns, "crm-bot", v1alpha1.TokenTypeInternalApp, "crm-credentials")
	tok.Spec.Target = &v1alpha1.Target{
		Name: "crm-token",
		Key:  "token",
		Template: &v1alpha1.TargetTemplate{
			Metadata: &v1alpha1.TargetTemplateMetadata{Labels: map[string]string{"team": "crm"}, Annotations: map[string]string{"owner": "crm-team"}},
			Data:     map[string]string{"config.json": `{"token":{{ toJson .AccessToken }},"expiresAt":"{{ .ExpiresAt }}","type":"{{ .Type }}"}`},
		},
	}
	env.Create(t, tok)
	env.WaitReady(t, ns, "crm-bot")
	tok, s := tokenAndSecret(t, ns, "crm-bot", "crm-token", "token")
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued))
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(tok.Status.ObservedGeneration).To(Equal(tok.Generation))

	token := string(s.Data["token"])
	g.Expect(env.Sim.Valid(token)).To(BeTrue(), "the simulator does not know the token")
	g.Expect(s.Type).To(Equal(corev1.SecretTypeOpaque))
	g.Expect(s.Data).To(HaveLen(3), "keys: token, expiresAt, config.json")
	exp := string(s.Data[v1alpha1.ExpiresAtKey])
	g.Expect(exp).To(MatchRegexp(rfc3339UTC.String()))
	g.Expect(s.Annotations[v1alpha1.ExpiresAtAnnotation]).To(Equal(exp))
	g.Expect(exp).To(Equal(tok.Status.ExpiresAt.UTC().Format(time.RFC3339)))
	g.Expect(string(s.Data["config.json"])).To(Equal(`{"token":"` + token + `","expiresAt":"` + exp + `","type":"InternalApp"}`))
	g.Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.ManagedByLabel, v1alpha1.ManagedByValue))
	g.Expect(s.Labels).To(HaveKeyWithValue("team", "crm"))
	g.Expect(s.Annotations).To(HaveKeyWithValue("owner", "crm-team"))
	envtesting.ExpectOwnedBy(g, s, tok)
	for _, v := range s.Data {
		g.Expect(string(v)).NotTo(ContainSubstring(a.secret))
		g.Expect(string(v)).NotTo(ContainSubstring(a.key))
	}

	// Status: timing from the answer, digests that reveal nothing.
	st := tok.Status
	g.Expect(st.ExpiresAt.Sub(st.LastRefreshTime.Time)).To(Equal(60 * time.Second))
	eff := 20 * time.Second // lifetime/3
	g.Expect(st.RefreshTime.Time).To(BeTemporally("<=", st.ExpiresAt.Add(-eff)))
	g.Expect(st.RefreshTime.Time).To(BeTemporally(">=", st.ExpiresAt.Add(-eff-eff/10-time.Second)))
	g.Expect(st.TokenDigest).To(HavePrefix("hmac:"))
	g.Expect(st.TokenDigest).NotTo(ContainSubstring(token))
	g.Expect(st.CredentialsDigest).To(HavePrefix("hmac:"))
	g.Expect(st.SuiteTicketDigest).To(BeEmpty())
	g.Expect(st.FailedAttempts).To(BeZero())
	g.Expect(st.LastFailureTime).To(BeNil())
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).ObservedGeneration).To(Equal(tok.Generation))

	g.Eventually(func() map[string]int { return env.EventCounts(g, ns, "crm-bot") }).Should(HaveKeyWithValue(v1alpha1.ReasonTokenIssued, 1))
	g.Expect(metricValue(t, "dingtalk_token_expiration_timestamp_seconds", ns, "crm-bot", nil)).
		To(HaveValue(BeNumerically("==", float64(st.ExpiresAt.Unix()))))
	g.Expect(metricValue(t, "dingtalk_token_ready_status", ns, "crm-bot", map[string]string{"condition": "True"})).
		To(HaveValue(BeNumerically("==", 1)))
	g.Expect(env.Calls(simulator.PathAppAccessToken, a.key)).To(BeEquivalentTo(1))

	// Passes not triggered by a due time, a spec change or a credentials change make no call:
	// a metadata edit of the object, an unrelated Secret, a label on the credentials Secret.
	env.UpdateToken(t, ns, "crm-bot", func(d *v1alpha1.DingTalkToken) { d.Labels = map[string]string{"touched": "yes"} })
	env.CreateSecret(t, ns, "unrelated", map[string]string{"x": "y"})
	updateSecretLabels(t, ns, "crm-credentials", map[string]string{"touched": "yes"})
	g.Consistently(func() int64 { return env.Calls(simulator.PathAppAccessToken, a.key) }).
		Within(3 * time.Second).Should(BeEquivalentTo(1))
	g.Expect(env.GetToken(g, ns, "crm-bot").Status).To(Equal(st), "status changed without a refresh")

	// The operator's cache holds its own Secrets only: not the credentials, not unrelated ones.
	var cached corev1.SecretList
	envtesting.Must(t, env.mainCache.List(envtesting.Ctx(t), &cached, client.InNamespace(ns)))
	names := []string{}
	for _, s := range cached.Items {
		names = append(names, s.Name)
	}
	g.Expect(names).To(ConsistOf("crm-token"))
}

// testIssuesEveryType: each type issues a token the simulator says is valid; custom keys; the
// user's corpId; no credential or refresh token in any target Secret.
func testIssuesEveryType(t *testing.T, ns string) {
	g := NewWithT(t)
	su := newSuite(t, ns, "", 60*time.Second)
	env.CreateSecret(t, ns, "suite-credentials", map[string]string{"SUITE_KEY": su.key, "SUITE_SECRET": su.secret, "suiteTicket": su.ticket})
	keys := &v1alpha1.CredentialKeys{SuiteKey: "SUITE_KEY", SuiteSecret: "SUITE_SECRET"}

	corp := testenv.NewToken(ns, "corp", v1alpha1.TokenTypeThirdPartyApp, "suite-credentials")
	corp.Spec.CredentialsRef.Keys = keys
	corp.Spec.CorpID = su.corp
	env.Create(t, corp)
	suiteTok := testenv.NewToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "suite-credentials")
	suiteTok.Spec.CredentialsRef.Keys = keys
	env.Create(t, suiteTok)

	u := newUser(t, ns, "user-credentials", 60*time.Second, "authCode")
	env.Create(t, testenv.NewToken(ns, "user", v1alpha1.TokenTypeUser, "user-credentials"))
	app := newApp(t, ns, "app-credentials", 60*time.Second)
	env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials"))

	for _, name := range []string{"corp", "suite", "user", "app"} {
		env.WaitReady(t, ns, name)
	}
	rt := env.Sim.CurrentRefreshToken(u.clientID)
	g.Expect(rt).NotTo(BeEmpty())
	credentials := []string{su.key, su.secret, su.ticket, u.clientID, u.secret, u.bootstrap, app.key, app.secret, rt}
	for _, name := range []string{"corp", "suite", "user", "app"} {
		tok := env.GetToken(g, ns, name)
		s := env.Secret(g, ns, name)
		token := string(s.Data[v1alpha1.DefaultTargetKey])
		g.Expect(env.Sim.Valid(token)).To(BeTrue(), "%s: the simulator does not know the token", name)
		envtesting.ExpectOwnedBy(g, s, tok)
		for k, v := range s.Data {
			for _, c := range credentials {
				g.Expect(string(v)).NotTo(ContainSubstring(c), "%s: key %s holds a credential or refresh token", name, k)
			}
		}
		if name == "user" {
			g.Expect(s.Data).To(HaveKeyWithValue(v1alpha1.CorpIDKey, []byte(u.corp)))
			g.Expect(s.Data).To(HaveLen(3))
		} else {
			g.Expect(s.Data).To(HaveLen(2))
		}
	}
	g.Expect(env.Calls(simulator.PathCorpAccessToken, su.key)).To(BeEquivalentTo(1))
	g.Expect(env.Calls(simulator.PathSuiteAccessToken, su.key)).To(BeEquivalentTo(1))
	// The user's rotated refresh token is kept in the owned <name>-refresh-token Secret (the Secret
	// and DingTalk's current refresh token are read until no rotation falls between the reads).
	var rs *corev1.Secret
	g.Eventually(func(g Gomega) { rs = checkRefreshSecret(t, g, ns, "user", u) }).Should(Succeed())
	g.Expect(string(rs.Data[v1alpha1.RefreshTokenKey])).NotTo(BeEmpty())
	envtesting.ExpectOwnedBy(g, rs, env.GetToken(g, ns, "user"))
	g.Expect(rs.Labels).To(HaveKeyWithValue(v1alpha1.ManagedByLabel, v1alpha1.ManagedByValue))
}

// testRefreshCycles: tokens are refreshed before they expire, the Secret never holds an expired or
// unknown token, corp and suite tokens change value at each refresh while the internal app's stays.
func testRefreshCycles(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 30*time.Second)
	su := newSuite(t, ns, "suite-credentials", 30*time.Second)
	env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials"))
	env.Create(t, testenv.NewToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "suite-credentials"))
	corp := testenv.NewToken(ns, "corp", v1alpha1.TokenTypeThirdPartyApp, "suite-credentials")
	corp.Spec.CorpID = su.corp
	env.Create(t, corp)
	names := []string{"app", "suite", "corp"}
	for _, n := range names {
		env.WaitReady(t, ns, n)
	}
	values := map[string]map[string]bool{}
	expiries := map[string]map[string]bool{}
	for _, n := range names {
		values[n], expiries[n] = map[string]bool{}, map[string]bool{}
	}
	// Watch for two refresh windows (lifetime 30s, refresh ~10-11s before expiry).
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range names {
			s := env.Secret(g, ns, n)
			token := string(s.Data[v1alpha1.DefaultTargetKey])
			exp, err := time.Parse(time.RFC3339, string(s.Data[v1alpha1.ExpiresAtKey]))
			g.Expect(err).NotTo(HaveOccurred())
			// Never an expired token, and always one DingTalk knows; refreshed well before expiry.
			g.Expect(exp).To(BeTemporally(">", time.Now().Add(5*time.Second)), "%s holds a token about to expire", n)
			g.Expect(env.Sim.Valid(token)).To(BeTrue(), "%s holds a token the simulator does not accept", n)
			values[n][token] = true
			expiries[n][exp.String()] = true
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, n := range names {
		g.Expect(len(expiries[n])).To(BeNumerically(">=", 3), "%s refreshed %d times", n, len(expiries[n])-1)
		env.WaitReady(t, ns, n)
	}
	g.Expect(values["app"]).To(HaveLen(1), "an internal app's token is renewed, not replaced")
	g.Expect(len(values["suite"])).To(BeNumerically(">=", 3), "a suite token changes value at each refresh")
	g.Expect(len(values["corp"])).To(BeNumerically(">=", 3), "a corp token changes value at each refresh")
	g.Expect(env.Calls(simulator.PathAppAccessToken, a.key)).To(BeNumerically("<=", len(expiries["app"])))
	g.Expect(env.EventCounts(g, ns, "app")[v1alpha1.ReasonTokenIssued]).To(Equal(1), "a same-value renewal is no new token")
}

// testSharedFetch: DingTalkTokens with equal credential sets share one DingTalk call per refresh,
// and hold the same token.
func testSharedFetch(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "", 30*time.Second)
	su := newSuite(t, ns, "", 30*time.Second)
	names := []string{"a", "b", "c"}
	for _, n := range names {
		// Each has its own Secret, with equal values: the full credential set is what is compared.
		env.CreateSecret(t, ns, "app-credentials-"+n, map[string]string{"appKey": a.key, "appSecret": a.secret})
		env.CreateSecret(t, ns, "suite-credentials-"+n, map[string]string{"suiteKey": su.key, "suiteSecret": su.secret, "suiteTicket": su.ticket})
		env.Create(t, testenv.NewToken(ns, "app-"+n, v1alpha1.TokenTypeInternalApp, "app-credentials-"+n))
		env.Create(t, testenv.NewToken(ns, "suite-"+n, v1alpha1.TokenTypeThirdPartySuite, "suite-credentials-"+n))
	}
	sameToken := func(prefix string) func(g Gomega) {
		return func(g Gomega) {
			var first string
			for _, n := range names {
				c := testenv.Condition(env.GetToken(g, ns, prefix+n), v1alpha1.ConditionReady)
				g.Expect(c.Reason).To(Equal(v1alpha1.ReasonTokenValid))
				v := string(env.Secret(g, ns, prefix+n).Data[v1alpha1.DefaultTargetKey])
				if first == "" {
					first = v
				}
				g.Expect(v).To(Equal(first), "%s%s holds another token", prefix, n)
			}
		}
	}
	g.Eventually(sameToken("suite-")).WithTimeout(30 * time.Second).Should(Succeed())
	g.Eventually(sameToken("app-")).WithTimeout(30 * time.Second).Should(Succeed())
	g.Expect(env.Calls(simulator.PathSuiteAccessToken, su.key)).To(BeEquivalentTo(1), "three suite tokens, one call")
	g.Expect(env.Calls(simulator.PathAppAccessToken, a.key)).To(BeEquivalentTo(1), "three app tokens, one call")

	// Two refresh windows later: one call per window for each set, and again one token each.
	first := env.GetToken(g, ns, "suite-a").Status.ExpiresAt.Time
	env.WaitRefreshedAfter(t, ns, "suite-a", first.Add(-30*time.Second+time.Second), 30*time.Second)
	second := env.GetToken(g, ns, "suite-a").Status.ExpiresAt.Time
	env.WaitRefreshedAfter(t, ns, "suite-a", second.Add(-30*time.Second+time.Second), 30*time.Second)
	g.Eventually(sameToken("suite-")).WithTimeout(5 * time.Second).Should(Succeed())
	g.Eventually(sameToken("app-")).WithTimeout(5 * time.Second).Should(Succeed())
	g.Expect(env.Calls(simulator.PathSuiteAccessToken, su.key)).To(BeEquivalentTo(3), "%s", fmtCalls(simulator.PathSuiteAccessToken, su.key))
	g.Expect(env.Calls(simulator.PathAppAccessToken, a.key)).To(BeNumerically("<=", 3), "%s", fmtCalls(simulator.PathAppAccessToken, a.key))
}

// testRestart: after the operator restarts, a token whose Secret is valid and not due is not
// fetched again (memory is empty: the target Secret and status are trusted); drift is still
// repaired without a call; the next refresh happens on time. The second manager runs without
// --enable-rollout-restart: a token value change then restarts nothing.
func testRestart(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 60*time.Second)
	su := newSuite(t, ns, "suite-credentials", 60*time.Second)
	deployment(t, ns, "web")
	first := env.startManager(t, []string{ns}, true, operator.Hooks{})
	env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials"))
	suite := testenv.NewToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "suite-credentials")
	suite.Spec.RolloutRestartTargets = []v1alpha1.RolloutRestartTarget{{Kind: v1alpha1.WorkloadKindDeployment, Name: "web"}}
	env.Create(t, suite)
	u := newUser(t, ns, "user-credentials", 30*time.Second, "refreshToken")
	env.Create(t, testenv.NewToken(ns, "user", v1alpha1.TokenTypeUser, "user-credentials"))
	before := map[string]v1alpha1.DingTalkTokenStatus{}
	for _, n := range []string{"app", "suite", "user"} {
		before[n] = env.WaitReady(t, ns, n).Status
	}
	secretBefore := env.Secret(g, ns, "suite")
	envtesting.Must(t, first.Stop())
	// The user's refresh-token Secret is deleted while the operator is down: memory is empty too.
	envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "user-refresh-token"}}))

	env.startManager(t, []string{ns}, false, operator.Hooks{})
	g.Consistently(func() []int64 {
		return []int64{env.Calls(simulator.PathAppAccessToken, a.key), env.Calls(simulator.PathSuiteAccessToken, su.key)}
	}).Within(4*time.Second).Should(Equal([]int64{1, 1}), "a restart fetched valid tokens again")
	for _, n := range []string{"app", "suite"} {
		tok := env.GetToken(g, ns, n)
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(tok.Status.RefreshTime).To(Equal(before[n].RefreshTime), "the refresh time moved across the restart")
	}
	// Drift repair after the restart takes the token from the Secret's last state, not DingTalk.
	envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "suite"}}))
	g.Eventually(func(g Gomega) {
		s := &corev1.Secret{}
		g.Expect(env.Client.Get(envtesting.Ctx(t), keyOf(ns, "suite"), s)).To(Succeed())
		g.Expect(s.Data).To(Equal(secretBefore.Data))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(env.Calls(simulator.PathSuiteAccessToken, su.key)).To(BeEquivalentTo(1))

	// The next refresh comes on time from the new manager; the value changed, nothing restarts.
	tok := env.WaitRefreshedAfter(t, ns, "suite", before["suite"].LastRefreshTime.Time, 60*time.Second)
	g.Expect(tok.Status.TokenDigest).NotTo(Equal(before["suite"].TokenDigest))
	g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally("<", before["suite"].ExpiresAt.Time))
	var d appsv1.Deployment
	envtesting.Must(t, env.Client.Get(envtesting.Ctx(t), keyOf(ns, "web"), &d))
	g.Expect(d.Spec.Template.Annotations).NotTo(HaveKey(v1alpha1.TokenDigestAnnotation))

	// The user's record is lost: the used bootstrap refresh token left in the credentials Secret
	// is not replayed at the due refresh (the simulator saw one call, a success); a new authCode
	// re-authorizes.
	tok = env.WaitFor(t, ns, "user", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonReauthorizationRequired, 40*time.Second)
	g.Expect(tok.Status.LastFailureTime.Time).To(BeTemporally(">=", before["user"].RefreshTime.Time))
	g.Expect(env.Results(simulator.PathUserAccessToken, u.clientID)).To(Equal(map[string]int64{"success": 1}), "the used bootstrap value was replayed")
	code := env.secret("code-")
	envtesting.Must(t, env.Sim.AddAuthCode(u.clientID, code))
	env.UpdateSecret(t, ns, "user-credentials", map[string]string{"authCode": code})
	env.WaitFor(t, ns, "user", v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, 10*time.Second)
	g.Eventually(func(g Gomega) { checkRefreshSecret(t, g, ns, "user", u) }).WithTimeout(10 * time.Second).Should(Succeed())
	env.WaitReady(t, ns, "user")
}

// updateSecretLabels sets labels on a Secret (no data change).
func updateSecretLabels(t *testing.T, ns, name string, labels map[string]string) {
	t.Helper()
	NewWithT(t).Eventually(func() error {
		s := &corev1.Secret{}
		if err := env.Client.Get(envtesting.Ctx(t), keyOf(ns, name), s); err != nil {
			return err
		}
		s.Labels = labels
		return env.Client.Update(envtesting.Ctx(t), s)
	}).Should(Succeed())
}
