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
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// newUser adds a DingTalk user to the simulator with a bootstrap refresh token and tokens living
// life, and its credentials Secret named secret in ns; it returns the clientId.
func newUser(t *testing.T, ns, secret string, life time.Duration) string {
	t.Helper()
	id := "hostileuser" + testutil.RandHex(6)
	clientSecret, bootstrap := env.Sensitive.New(testenv.Credential, "usersecret-"), env.Sensitive.New(testenv.RefreshToken, "bootstrap-")
	envtesting.Must(t, env.Sim.AddUser(simulator.User{ClientID: id, ClientSecret: clientSecret, RefreshTokens: []string{bootstrap},
		CorpID: "dingcorp" + testutil.RandHex(4), TokenLifetime: simulator.Duration(life)}))
	env.CreateSecret(t, ns, secret, map[string]string{"clientId": id, "clientSecret": clientSecret, "refreshToken": bootstrap})
	return id
}

// storedRefreshToken is what <name>-refresh-token holds.
func storedRefreshToken(g Gomega, ns, name string) string {
	s := env.Secret(g, ns, name+v1alpha1.RefreshTokenSecretSuffix)
	return string(s.Data[v1alpha1.RefreshTokenKey])
}

// refused lists the simulator's answers to a user's calls other than a success.
func refused(clientID string) map[string]int64 {
	out := map[string]int64{}
	for result, n := range env.Results(simulator.PathUserAccessToken, clientID) {
		if result != "success" {
			out[result] = n
		}
	}
	return out
}

// TestUserRefreshDuringOutage: a User token's refresh falls due while the API server is
// unreachable from the manager (a proxy in front of it is paused); then the manager is killed
// (SIGKILL), the API server comes back and a new manager starts. No refresh token was rotated
// that could not be stored (a rotation starts only after a live read of the refresh-token
// Secret), so the new manager refreshes with the stored one: Ready again, never
// ReauthorizationRequired.
func TestUserRefreshDuringOutage(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	proxy, err := env.APIServerProxy()
	envtesting.Must(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	kubeconfig, err := testenv.KubeconfigVia(adminKubeconfig, filepath.Join(t.TempDir(), "via-proxy.kubeconfig"), proxy.Addr())
	envtesting.Must(t, err)
	ns := env.CreateNamespace(t, "outage")
	id := newUser(t, ns, "creds", 30*time.Second)
	p := manager(t, "outage-1", kubeconfig, []string{ns})
	env.Create(t, testenv.NewToken(ns, "user", v1alpha1.TokenTypeUser, "creds"))
	st := env.WaitReady(t, ns, "user").Status
	g.Eventually(func(g Gomega) string { return storedRefreshToken(g, ns, "user") }).Should(Equal(env.Sim.CurrentRefreshToken(id)))

	// The API server goes away for the manager before the refresh falls due, and stays away
	// until 3 s past it.
	proxy.Pause()
	dueOver := st.RefreshTime.Add(3 * time.Second)
	g.Consistently(p.Exited).WithTimeout(time.Until(dueOver)).Should(BeFalse())
	rotations := env.Results(simulator.PathUserAccessToken, id)["success"]
	measured(t, "refresh due during an API-server outage: %d rotation(s) at DingTalk while the API server was unreachable", rotations-1)
	p.Kill()
	proxy.Resume()

	manager(t, "outage-2", kubeconfig, []string{ns})
	var tok *v1alpha1.DingTalkToken
	defer func() {
		if tok != nil {
			measured(t, "after SIGKILL and restart: Refreshed %s, refused calls %v",
				testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason, refused(id))
		}
	}()
	g.Eventually(func(g Gomega) {
		tok = env.GetToken(g, ns, "user")
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).NotTo(Equal(v1alpha1.ReasonReauthorizationRequired))
		g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally(">", st.LastRefreshTime.Time))
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonTokenValid))
	}).WithTimeout(40 * time.Second).Should(Succeed())
	g.Expect(refused(id)).To(BeEmpty(), "DingTalk refused a refresh token: one was lost")
	g.Eventually(func(g Gomega) string { return storedRefreshToken(g, ns, "user") }).Should(Equal(env.Sim.CurrentRefreshToken(id)))
}

// TestUserTwoWriters: while the operator stores a rotated refresh token, another writer stores
// a different one in <name>-refresh-token (between the operator's read and its write). The
// operator's write conflicts; it re-reads, keeps the other writer's refresh token (never
// overwritten) and reports CredentialsConflict; the next refresh uses the kept one.
func TestUserTwoWriters(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := env.CreateNamespace(t, "writers")
	id := newUser(t, ns, "creds", 30*time.Second)
	other := env.Sensitive.New(testenv.RefreshToken, "other-writer-")
	var armed atomic.Bool
	var raced atomic.Int32
	// Right before the operator's first write of the refresh-token Secret after arming, the
	// other writer stores its refresh token (for real, through the test's own client).
	race := func(ctx context.Context, obj client.Object) {
		if obj.GetNamespace() != ns || obj.GetName() != "user"+v1alpha1.RefreshTokenSecretSuffix || !armed.CompareAndSwap(true, false) {
			return
		}
		envtesting.Must(t, env.Sim.AddRefreshToken(id, other))
		envtesting.Must(t, testenv.UpdateSecret(testenv.Quiet(ctx), env.Client, ns, obj.GetName(), map[string]string{v1alpha1.RefreshTokenKey: other}))
		raced.Add(1)
	}
	opts := env.ManagerOptions(ns)
	env.StartManager(t, opts, operator.Hooks{WrapClient: testenv.Intercept(interceptor.Funcs{
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			if ac, ok := obj.(*corev1ac.SecretApplyConfiguration); ok {
				race(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ptr.Deref(ac.Namespace, ""), Name: ptr.Deref(ac.Name, "")}})
			}
			return c.Apply(ctx, obj, opts...)
		},
	})})
	env.Create(t, testenv.NewToken(ns, "user", v1alpha1.TokenTypeUser, "creds"))
	st := env.WaitReady(t, ns, "user").Status
	armed.Store(true)

	// At the due refresh the rotated token's write meets the other writer's.
	kept := false
	defer func() {
		measured(t, "two writers: after the conflict the refresh-token Secret held the other writer's refresh token: %t (writes raced: %d)",
			kept, raced.Load())
	}()
	tok := env.WaitFor(t, ns, "user", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonCredentialsConflict, 40*time.Second)
	g.Expect(raced.Load()).To(BeEquivalentTo(1))
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Message).To(ContainSubstring("another refresh token"))
	kept = storedRefreshToken(g, ns, "user") == other
	g.Expect(kept).To(BeTrue(), "the other writer's refresh token was overwritten")

	// The next refresh uses it: DingTalk accepts it, and the stored one is DingTalk's newest.
	tok = env.WaitRefreshedAfter(t, ns, "user", st.LastRefreshTime.Time, 30*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued))
	g.Expect(refused(id)).To(BeEmpty())
	g.Eventually(func(g Gomega) string { return storedRefreshToken(g, ns, "user") }).Should(Equal(env.Sim.CurrentRefreshToken(id)))
}

// TestUserRotatedTokenInABadAnswer: DingTalk answers 2xx with a rotated refresh token and an
// expireIn of 1 s (not a usable access token: ProviderUnavailable). The rotated refresh token is
// stored anyway, so each retry uses the newest one and DingTalk never refuses one.
func TestUserRotatedTokenInABadAnswer(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := env.CreateNamespace(t, "badanswer")
	p := manager(t, "badanswer", "", []string{ns})
	id := newUser(t, ns, "creds", time.Second)
	env.Create(t, testenv.NewToken(ns, "user", v1alpha1.TokenTypeUser, "creds"))
	// Three attempts: at once, then 6 s and 16 s later (the backoff).
	g.Consistently(p.Exited).WithTimeout(20 * time.Second).Should(BeFalse())
	tok := env.GetToken(g, ns, "user")
	measured(t, "2xx answers with a refresh token and expireIn 1: %d rotations, refused %v, Refreshed %s",
		env.Results(simulator.PathUserAccessToken, id)["success"], refused(id), testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason)
	g.Expect(env.Results(simulator.PathUserAccessToken, id)["success"]).To(BeNumerically(">=", 3))
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonProviderUnavailable))
	g.Expect(refused(id)).To(BeEmpty(), "DingTalk refused a refresh token: a rotated one was dropped")
	g.Eventually(func(g Gomega) string { return storedRefreshToken(g, ns, "user") }).Should(Equal(env.Sim.CurrentRefreshToken(id)))
}

// TestStoredRefreshTokenIsNoBootstrap: a tenant who can read another DingTalkToken's
// refresh-token Secret puts its refresh token into a second DingTalkToken's credentials as a
// bootstrap value. The second one is CredentialsConflict, naming the first, and never calls
// DingTalk with it: the first keeps its grant.
func TestStoredRefreshTokenIsNoBootstrap(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := env.CreateNamespace(t, "stolen")
	manager(t, "stolen", "", []string{ns})
	id := newUser(t, ns, "creds", time.Hour)
	env.Create(t, testenv.NewToken(ns, "owner", v1alpha1.TokenTypeUser, "creds"))
	env.WaitReady(t, ns, "owner")
	var stored string
	g.Eventually(func(g Gomega) {
		stored = storedRefreshToken(g, ns, "owner")
		g.Expect(stored).To(Equal(env.Sim.CurrentRefreshToken(id)))
	}).Should(Succeed())
	calls := env.Results(simulator.PathUserAccessToken, id)["success"]

	copied := env.Secret(g, ns, "creds").Data
	env.CreateSecret(t, ns, "copied", map[string]string{
		"clientId": string(copied["clientId"]), "clientSecret": string(copied["clientSecret"]), "refreshToken": stored})
	env.Create(t, testenv.NewToken(ns, "thief", v1alpha1.TokenTypeUser, "copied"))
	tok := env.WaitFor(t, ns, "thief", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsConflict, 30*time.Second)
	measured(t, "another DingTalkToken's stored refresh token as a bootstrap value: %s, %d calls with it",
		testenv.Condition(tok, v1alpha1.ConditionReady).Reason, env.Results(simulator.PathUserAccessToken, id)["success"]-calls)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Message).To(ContainSubstring(ns + "/owner"))
	g.Expect(env.Results(simulator.PathUserAccessToken, id)["success"]).To(Equal(calls))
	g.Expect(refused(id)).To(BeEmpty())
	g.Expect(storedRefreshToken(g, ns, "owner")).To(Equal(env.Sim.CurrentRefreshToken(id)), "the owner lost its grant")
}

// TestDigestKeyRecreatedKeepsUsers: a User token bootstrapped from an authCode that stays in its
// credentials Secret, as `kubectl dingtalk authorize` leaves it. The installation's digest key
// Secret is deleted and the manager restarted, so a new key is made: the used authCode must not
// look new. The next refresh uses the stored refresh token; DingTalk refuses nothing.
func TestDigestKeyRecreatedKeepsUsers(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	install, ns := env.CreateNamespace(t, "install-newkey"), env.CreateNamespace(t, "newkey")
	id := "hostileuser" + testutil.RandHex(6)
	clientSecret, code := env.Sensitive.New(testenv.Credential, "usersecret-"), env.Sensitive.New(testenv.Credential, "authcode-")
	envtesting.Must(t, env.Sim.AddUser(simulator.User{ClientID: id, ClientSecret: clientSecret, AuthCodes: []string{code},
		CorpID: "dingcorp" + testutil.RandHex(4), TokenLifetime: simulator.Duration(30 * time.Second)}))
	env.CreateSecret(t, ns, "creds", map[string]string{"clientId": id, "clientSecret": clientSecret, "authCode": code})
	first := manager(t, "newkey-1", "", []string{ns}, "--operator-namespace="+install)
	env.Create(t, testenv.NewToken(ns, "user", v1alpha1.TokenTypeUser, "creds"))
	st := env.WaitReady(t, ns, "user").Status
	g.Eventually(func(g Gomega) string { return storedRefreshToken(g, ns, "user") }).Should(Equal(env.Sim.CurrentRefreshToken(id)))
	g.Expect(first.Terminate(time.Minute)).To(Succeed())

	// A new installation key: the old one's Secret is gone.
	key := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: install, Name: controllers.DigestKeySecretName}}
	envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), key))
	manager(t, "newkey-2", "", []string{ns}, "--operator-namespace="+install)
	var tok *v1alpha1.DingTalkToken
	defer func() {
		if tok != nil {
			measured(t, "after a new digest key: Refreshed %s, refused calls %v",
				testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason, refused(id))
		}
	}()
	g.Eventually(func(g Gomega) {
		tok = env.GetToken(g, ns, "user")
		g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally(">", st.LastRefreshTime.Time), "the next refresh")
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued))
	}).WithTimeout(45 * time.Second).Should(Succeed())
	g.Expect(refused(id)).To(BeEmpty(), "the used authCode was sent again")
	g.Eventually(func(g Gomega) string { return storedRefreshToken(g, ns, "user") }).Should(Equal(env.Sim.CurrentRefreshToken(id)))
}

// TestOversizedOwnSecrets: a tenant writes 900 KiB into the refresh token of its User token's
// <name>-refresh-token Secret and into the ticket of its Stream-sourced token's <name>-suite-ticket
// Secret; the manager restarts, so both are read back. Each is CredentialsInvalid when its refresh
// falls due, no request carrying it (none over 4 KiB) reaches DingTalk, and the last good token
// stays in the target Secret.
func TestOversizedOwnSecrets(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := env.CreateNamespace(t, "oversized-own")
	huge := strings.Repeat("x", 900<<10)
	first := manager(t, "oversized-own-1", "", []string{ns})

	newUser(t, ns, "user-creds", 30*time.Second)
	env.Create(t, testenv.NewToken(ns, "user", v1alpha1.TokenTypeUser, "user-creds"))
	suiteKey := newStreamSuite(t, ns, "suite-creds", "suite", 30*time.Second)
	g.Eventually(func(g Gomega) {
		tok := env.GetToken(g, ns, "suite")
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionTicketStream).Reason).To(Equal(v1alpha1.ReasonConnected))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	_, err := env.Sim.PushTickets(simulator.PushRequest{SuiteKey: suiteKey, Ticket: env.Sensitive.New(testenv.SuiteTicket, "pushed-")})
	envtesting.Must(t, err)
	before := map[string]*v1alpha1.DingTalkToken{}
	good := map[string]string{}
	for _, name := range []string{"user", "suite"} {
		before[name] = env.WaitReady(t, ns, name)
		good[name] = string(env.Secret(g, ns, name).Data[v1alpha1.DefaultTargetKey])
	}
	env.UpdateSecret(t, ns, "user"+v1alpha1.RefreshTokenSecretSuffix, map[string]string{v1alpha1.RefreshTokenKey: huge})
	env.UpdateSecret(t, ns, "suite"+v1alpha1.SuiteTicketSecretSuffix, map[string]string{v1alpha1.SuiteTicketKey: huge})
	g.Expect(first.Terminate(time.Minute)).To(Succeed())
	manager(t, "oversized-own-2", "", []string{ns})

	for name, secret := range map[string]string{"user": "user" + v1alpha1.RefreshTokenSecretSuffix, "suite": "suite" + v1alpha1.SuiteTicketSecretSuffix} {
		var tok *v1alpha1.DingTalkToken
		g.Eventually(func(g Gomega) {
			tok = env.GetToken(g, ns, name)
			g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonCredentialsInvalid))
		}).WithTimeout(45*time.Second).Should(Succeed(), "%s: not refused", name)
		msg := testenv.Condition(tok, v1alpha1.ConditionRefreshed).Message
		g.Expect(msg).To(ContainSubstring(secret))
		g.Expect(msg).NotTo(ContainSubstring("xxxxxxxx"))
		g.Expect(string(env.Secret(g, ns, name).Data[v1alpha1.DefaultTargetKey])).To(Equal(good[name]), "%s: the last good token was replaced", name)
		g.Expect(tok.Status.LastRefreshTime.Time).To(Equal(before[name].Status.LastRefreshTime.Time))
	}
	measured(t, "900 KiB in a refresh-token and a suite-ticket Secret, then a restart: requests over 4 KiB at DingTalk: %d", larger(dingtalk.Calls(), 4<<10))
	g.Expect(larger(dingtalk.Calls(), 4<<10)).To(BeZero())
}
