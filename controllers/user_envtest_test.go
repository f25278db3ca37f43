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
	"slices"
	"strings"
	"sync"
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

// user is a DingTalk user authorized for an OAuth2 client in the simulator.
type user struct{ clientID, secret, bootstrap, corp string }

// newUser adds a user with one bootstrap value (an authCode or a refreshToken, per kind) and,
// when secretName is set, its credentials Secret.
func newUser(t *testing.T, ns, secretName string, life time.Duration, kind string) user {
	t.Helper()
	u := user{clientID: env.secret("dinguser"), secret: env.secret("usersecret-"), bootstrap: env.secret(kind + "-"), corp: "dingcorp" + testutil.RandHex(4)}
	su := simulator.User{ClientID: u.clientID, ClientSecret: u.secret, CorpID: u.corp, TokenLifetime: simulator.Duration(life)}
	if kind == "authCode" {
		su.AuthCodes = []string{u.bootstrap}
	} else {
		su.RefreshTokens = []string{u.bootstrap}
	}
	envtesting.Must(t, env.Sim.AddUser(su))
	if secretName != "" {
		env.CreateSecret(t, ns, secretName, map[string]string{"clientId": u.clientID, "clientSecret": u.secret, kind: u.bootstrap})
	}
	return u
}

// refreshSecret reads <name>-refresh-token and checks it holds the simulator's newest refresh token.
func checkRefreshSecret(t *testing.T, g Gomega, ns, name string, u user) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	g.Expect(env.Client.Get(envtesting.Ctx(t), keyOf(ns, name+v1alpha1.RefreshTokenSecretSuffix), s)).To(Succeed())
	env.Sensitive.AddSecret(s)
	current := env.Sim.CurrentRefreshToken(u.clientID)
	env.Sensitive.Add(testenv.RefreshToken, current)
	g.Expect(string(s.Data[v1alpha1.RefreshTokenKey])).To(Equal(current), "the stored refresh token is not DingTalk's newest")
	return s
}

// testUserRotation: the rotated refresh token is stored first, over several cycles, with failed
// writes injected and retried in-process; the old bootstrap value left in the credentials Secret is
// never replayed; a deleted refresh-token Secret is restored; a new authCode re-authorizes at once.
func testUserRotation(t *testing.T, ns string) {
	g := NewWithT(t)
	u := newUser(t, ns, "user-credentials", 30*time.Second, "refreshToken")
	failures := env.failNextRefreshWrites(ns, 2)
	env.Create(t, testenv.NewToken(ns, "user", v1alpha1.TokenTypeUser, "user-credentials"))
	tok := env.WaitReady(t, ns, "user")
	g.Expect(failures.Load()).To(BeNumerically("<=", 0), "the injected failures were not hit")
	g.Eventually(func(g Gomega) { checkRefreshSecret(t, g, ns, "user", u) }).Should(Succeed())

	// Ready follows what the target Secret holds: a refresh whose refresh-token store failed leaves
	// the old, still valid token there, so Ready stays True throughout.
	notReady := watchNotReady(t, ns, "user")
	for cycle := range 3 {
		// Two failures are overcome by the in-pass retry; twelve outlast it (five tries here) in
		// two passes: the record stays pending in memory, the passes fail, and a later pass writes
		// it first.
		failures = env.failNextRefreshWrites(ns, []int32{2, 12, 2}[cycle])
		tok = env.WaitRefreshedAfter(t, ns, "user", tok.Status.LastRefreshTime.Time, 40*time.Second)
		g.Eventually(func(g Gomega) {
			checkRefreshSecret(t, g, ns, "user", u)
		}).WithTimeout(10*time.Second).Should(Succeed(), "cycle %d", cycle)
		g.Expect(failures.Load()).To(BeNumerically("<=", 0), "cycle %d: the injected failures were not hit", cycle)
		if cycle == 1 {
			g.Expect(loggedFor(ns, "Refresh-token Secret not written yet")).To(BeTrue(), "the write outlasting the retry did not stay pending")
		}
		tok = env.WaitReady(t, ns, "user")
		target := env.Secret(g, ns, "user")
		g.Expect(env.Sim.Valid(string(target.Data["accessToken"]))).To(BeTrue())
		for k, v := range target.Data {
			g.Expect(string(v)).NotTo(Equal(env.Sim.CurrentRefreshToken(u.clientID)), "key %s holds the refresh token", k)
		}
	}
	g.Expect(notReady()).To(BeEmpty(), "Ready was not True while the target held a valid token")
	// Each rotation stored the refresh token before the target was written: every target write (T)
	// follows a refresh-token write (R), failed writes injected or not.
	g.Expect(env.writes(ns)).To(MatchRegexp(`^(R+T)+$`), "the order of Secret writes")

	// The bootstrap refresh token is still in the credentials Secret and was never replayed: the
	// simulator refused nothing.
	g.Expect(env.Results(simulator.PathUserAccessToken, u.clientID)).To(Equal(map[string]int64{"success": 4}))
	g.Expect(env.Secret(g, ns, "user-credentials").Data).To(HaveKey("refreshToken"))

	// A deleted refresh-token Secret is restored from memory.
	envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "user-refresh-token"}}))
	g.Eventually(func(g Gomega) { checkRefreshSecret(t, g, ns, "user", u) }).WithTimeout(10 * time.Second).Should(Succeed())

	// Re-authorization: a new authCode in the credentials Secret wins, at once (or when the 10s
	// hold of a credentials change after the last call ends).
	code := env.secret("code-")
	envtesting.Must(t, env.Sim.AddAuthCode(u.clientID, code))
	env.UpdateSecret(t, ns, "user-credentials", map[string]string{"authCode": code})
	g.Eventually(func(g Gomega) {
		g.Expect(env.Results(simulator.PathUserAccessToken, u.clientID)).To(Equal(map[string]int64{"success": 5}))
		s := checkRefreshSecret(t, g, ns, "user", u)
		used := strings.Split(string(s.Data[v1alpha1.UsedBootstrapKey]), "\n")
		// The salt the used values are keyed by, then the bootstrap refresh token and the authCode.
		g.Expect(used).To(HaveLen(3))
		g.Expect(used[0]).To(HavePrefix("salt:"))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	env.WaitReady(t, ns, "user")
}

// testUserReauthorization: a second DingTalkToken with the same bootstrap value gets
// CredentialsConflict; DingTalk refusing the stored refresh token gives ReauthorizationRequired
// (Ready until the expiry, then False); a new authCode recovers.
func testUserReauthorization(t *testing.T, ns string) {
	g := NewWithT(t)
	u := newUser(t, ns, "user-credentials", 30*time.Second, "authCode")
	env.Create(t, testenv.NewToken(ns, "user", v1alpha1.TokenTypeUser, "user-credentials"))
	st := env.WaitReady(t, ns, "user").Status

	env.CreateSecret(t, ns, "copy-credentials", map[string]string{"clientId": u.clientID, "clientSecret": u.secret, "authCode": u.bootstrap})
	env.Create(t, testenv.NewToken(ns, "copy", v1alpha1.TokenTypeUser, "copy-credentials"))
	tok := env.WaitFor(t, ns, "copy", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsConflict, 30*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Message).To(ContainSubstring(ns + "/user"))
	g.Expect(env.Calls(simulator.PathUserAccessToken, u.clientID)).To(BeEquivalentTo(1))

	// DingTalk forgets the user's grants (revoked): the stored refresh token is refused.
	envtesting.Must(t, env.Sim.AddUser(simulator.User{ClientID: u.clientID, ClientSecret: u.secret, CorpID: u.corp, TokenLifetime: simulator.Duration(30 * time.Second)}))
	tok = env.WaitFor(t, ns, "user", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonReauthorizationRequired, 30*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	env.WaitFor(t, ns, "user", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonReauthorizationRequired, 20*time.Second)
	g.Expect(time.Now()).To(BeTemporally("~", st.ExpiresAt.Time, 3*time.Second))

	code := env.secret("code-")
	envtesting.Must(t, env.Sim.AddAuthCode(u.clientID, code))
	env.UpdateSecret(t, ns, "user-credentials", map[string]string{"authCode": code})
	env.WaitFor(t, ns, "user", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 10*time.Second)
	g.Eventually(func(g Gomega) { checkRefreshSecret(t, g, ns, "user", u) }).Should(Succeed())
}

// watchNotReady polls the DingTalkToken's Ready condition until the test ends; the returned
// function lists the non-True observations so far.
func watchNotReady(t *testing.T, ns, name string) func() []string {
	var mu sync.Mutex
	var seen []string
	ctx := envtesting.Ctx(t)
	go func() {
		for ctx.Err() == nil {
			tok := &v1alpha1.DingTalkToken{}
			if err := env.Client.Get(ctx, keyOf(ns, name), tok); err == nil {
				if c := testenv.Condition(tok, v1alpha1.ConditionReady); c.Status != metav1.ConditionTrue {
					mu.Lock()
					seen = append(seen, c.Reason+": "+c.Message)
					mu.Unlock()
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// loggedFor reports whether a manager logged msg for a DingTalkToken in ns.
func loggedFor(ns, msg string) bool {
	for _, line := range strings.Split(env.logs.String(), "\n") {
		if strings.Contains(line, msg) && strings.Contains(line, `"namespace":"`+ns+`"`) {
			return true
		}
	}
	return false
}
