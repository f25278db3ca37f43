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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// Suite tickets pushed over DingTalk Stream mode (spec.suiteTicket.source Stream), against the
// simulator's gateway over real HTTP and websocket. The simulator keeps no grace period for a
// replaced ticket: a token call that succeeds after a push proves the pushed ticket was used.

// newStreamSuite adds a suite to the simulator and creates its credentials Secret in ns with
// suiteKey and suiteSecret only: with Stream mode the ticket comes by push.
func newStreamSuite(t *testing.T, ns, secretName string, life time.Duration) suiteCreds {
	t.Helper()
	s := suiteCreds{key: env.secret("suite"), secret: env.secret("suitesecret-"), ticket: env.secret("ticket-"), corp: "dingcorp" + testutil.RandHex(4)}
	envtesting.Must(t, env.Sim.AddSuite(simulator.Suite{SuiteKey: s.key, SuiteSecret: s.secret, SuiteTicket: s.ticket,
		AuthorizedCorps: []string{s.corp}, TokenLifetime: simulator.Duration(life)}))
	env.CreateSecret(t, ns, secretName, map[string]string{"suiteKey": s.key, "suiteSecret": s.secret})
	return s
}

// streamToken is a DingTalkToken of a third-party type whose suite tickets come from Stream mode.
func streamToken(ns, name string, typ v1alpha1.TokenType, credentials, corp string) *v1alpha1.DingTalkToken {
	tok := testenv.NewToken(ns, name, typ, credentials)
	tok.Spec.SuiteTicket = &v1alpha1.SuiteTicketConfig{Source: v1alpha1.SuiteTicketSourceStream}
	if typ == v1alpha1.TokenTypeThirdPartyApp {
		tok.Spec.CorpID = corp
	}
	return tok
}

// push makes the simulator push a new ticket to the suite, as DingTalk does every few hours, and
// returns it (recorded for the leak scan).
func push(t *testing.T, suiteKey string) string {
	t.Helper()
	ticket := env.secret("pushed-")
	_, err := env.Sim.PushTickets(simulator.PushRequest{SuiteKey: suiteKey, Ticket: ticket})
	envtesting.Must(t, err)
	return ticket
}

// streamStats reads the simulator's gateway counters of a suite.
func streamStats(suiteKey string) func() simulator.SuiteStreamStats {
	return func() simulator.SuiteStreamStats { return env.Sim.StreamStats().Suites[suiteKey] }
}

// storedTicket reads the ticket kept in a DingTalkToken's suite-ticket Secret.
func storedTicket(g Gomega, ns, name string) string {
	return string(env.Secret(g, ns, name+v1alpha1.SuiteTicketSecretSuffix).Data[v1alpha1.SuiteTicketKey])
}

// waitConnected waits until the DingTalkToken's TicketStream condition is True.
func waitConnected(t *testing.T, ns, name string) *v1alpha1.DingTalkToken {
	t.Helper()
	return env.WaitFor(t, ns, name, v1alpha1.ConditionTicketStream, metav1.ConditionTrue, v1alpha1.ReasonConnected, 30*time.Second)
}

// testStreamFirstPush: a ThirdPartyApp and a ThirdPartySuite with source Stream and no suiteTicket
// in their credentials Secret connect and wait (Ready False Pending, no DingTalk call, no
// refresh time) until the first push; then both are Ready with one token call each, the ticket
// kept in each one's owned <name>-suite-ticket Secret, stored before the ack. The two share one
// connection. A duplicate push is idempotent: no write, no call.
func testStreamFirstPush(t *testing.T, ns string) {
	g := NewWithT(t)
	su := newStreamSuite(t, ns, "isv-suite", 60*time.Second)
	env.Create(t, streamToken(ns, "app", v1alpha1.TokenTypeThirdPartyApp, "isv-suite", su.corp))
	env.Create(t, streamToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "isv-suite", ""))
	names := []string{"app", "suite"}
	for _, name := range names {
		tok := waitConnected(t, ns, name)
		g.Eventually(func(g Gomega) {
			tok = env.GetToken(g, ns, name)
			ready := testenv.Condition(tok, v1alpha1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonPending))
			g.Expect(ready.Message).To(ContainSubstring("Waiting for the first suite ticket"))
		}).WithTimeout(10 * time.Second).Should(Succeed())
		g.Expect(tok.Status.RefreshTime).To(BeNil(), "%s: no refresh is planned before a ticket exists", name)
		g.Expect(tok.Status.SuiteTicketTime).To(BeNil())
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Type).To(BeEmpty(), "%s: no attempt yet", name)
	}
	calls := func() []int64 {
		return []int64{env.Calls(simulator.PathCorpAccessToken, su.key), env.Calls(simulator.PathSuiteAccessToken, su.key)}
	}
	g.Consistently(calls).Within(2*time.Second).Should(Equal([]int64{0, 0}), "a token was fetched without a ticket")
	g.Expect(streamStats(su.key)()).To(And(HaveField("Open", 1), HaveField("Connections", BeEquivalentTo(1))),
		"the two DingTalkTokens of one suite share one connection")

	ticket := push(t, su.key)
	pushed := time.Now()
	for _, name := range names {
		tok := env.WaitReady(t, ns, name)
		g.Expect(tok.Status.SuiteTicketTime).NotTo(BeNil())
		g.Expect(tok.Status.SuiteTicketTime.Time).To(BeTemporally("~", pushed, 2*time.Second))
		s := env.Secret(g, ns, name+v1alpha1.SuiteTicketSecretSuffix)
		g.Expect(string(s.Data[v1alpha1.SuiteTicketKey])).To(Equal(ticket))
		g.Expect(s.Data).To(HaveLen(1))
		g.Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.ManagedByLabel, v1alpha1.ManagedByValue))
		g.Expect(s.Annotations).To(HaveKey(v1alpha1.SuiteTicketPushedAtAnnotation))
		envtesting.ExpectOwnedBy(g, s, tok)
	}
	g.Expect(calls()).To(Equal([]int64{1, 1}), "one token call per DingTalkToken for the first push")
	g.Expect(env.Results(simulator.PathCorpAccessToken, su.key)).To(Equal(map[string]int64{"success": 1}))
	g.Eventually(streamStats(su.key)).Should(And(HaveField("Acked", BeEquivalentTo(1)), HaveField("Pending", 0)))
	creds := env.Secret(g, ns, "isv-suite")
	g.Expect(creds.Data).NotTo(HaveKey("suiteTicket"), "the credentials Secret is never written")

	// The same ticket delivered again (DingTalk's duplicates): acked, nothing written or called.
	before := env.Secret(g, ns, "suite"+v1alpha1.SuiteTicketSecretSuffix).ResourceVersion
	_, err := env.Sim.PushTickets(simulator.PushRequest{SuiteKey: su.key, Ticket: ticket, Duplicates: 2})
	envtesting.Must(t, err)
	g.Eventually(streamStats(su.key)).Should(And(HaveField("Acked", BeEquivalentTo(2)), HaveField("Pending", 0)))
	g.Consistently(calls).Within(2 * time.Second).Should(Equal([]int64{1, 1}))
	g.Expect(env.Secret(g, ns, "suite"+v1alpha1.SuiteTicketSecretSuffix).ResourceVersion).To(Equal(before))
	g.Expect(streamStats(su.key)()).To(HaveField("Connections", BeEquivalentTo(1)))
}

// testStreamTicketReplaced: a pushed ticket replaces the stored one at once, with no DingTalk
// call while the last attempt succeeded (calls per push: 0); the next due refresh uses it.
// When DingTalk replaced the ticket without the push reaching the operator, the due refresh
// fails; the push that follows refreshes at once (one call).
func testStreamTicketReplaced(t *testing.T, ns string) {
	g := NewWithT(t)
	su := newStreamSuite(t, ns, "isv", 30*time.Second)
	env.Create(t, streamToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "isv", ""))
	waitConnected(t, ns, "suite")
	t1 := push(t, su.key)
	st := env.WaitReady(t, ns, "suite").Status
	g.Expect(storedTicket(g, ns, "suite")).To(Equal(t1))
	calls := func() int64 { return env.Calls(simulator.PathSuiteAccessToken, su.key) }
	g.Expect(calls()).To(BeEquivalentTo(1))

	t2 := push(t, su.key)
	pushed := time.Now()
	g.Eventually(func(g Gomega) string { return storedTicket(g, ns, "suite") }).WithTimeout(5 * time.Second).Should(Equal(t2))
	g.Consistently(calls).Within(3*time.Second).Should(BeEquivalentTo(1), "a push after a successful attempt called DingTalk")
	// The due refresh: the simulator refuses t1 now, so a new token proves t2 was used.
	tok := env.WaitRefreshedAfter(t, ns, "suite", st.LastRefreshTime.Time, 40*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued))
	g.Expect(env.Results(simulator.PathSuiteAccessToken, su.key)).To(Equal(map[string]int64{"success": 2}))
	g.Expect(tok.Status.SuiteTicketDigest).NotTo(Equal(st.SuiteTicketDigest))
	g.Expect(tok.Status.SuiteTicketTime.Time).To(BeTemporally("~", pushed, 2*time.Second))

	// DingTalk moves to a ticket whose push is lost: the due refresh fails, hourly retry...
	envtesting.Must(t, env.Sim.SetSuiteTicket(su.key, env.secret("lost-ticket-")))
	tok = env.WaitFor(t, ns, "suite", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonCredentialsRejected, 40*time.Second)
	n := calls()
	// ...until the next push: after a failed attempt a new ticket refreshes at once, or when the
	// call budget's 10s hold of a credentials change after the failed call ends.
	start := time.Now()
	push(t, su.key)
	holdEnd := tok.Status.LastFailureTime.Add(11 * time.Second)
	env.WaitFor(t, ns, "suite", v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, time.Until(holdEnd)+10*time.Second)
	t.Logf("a push after a failed attempt refreshed the token %s later with %d call(s)", time.Since(start).Round(time.Millisecond), calls()-n)
	g.Expect(calls()).To(Equal(n+1), "calls for the push that followed a failed attempt")
	g.Expect(tok.Status.FailedAttempts).To(BeEquivalentTo(1))
}

// testStreamConnections: one connection per suite however many DingTalkTokens use it; a dropped
// connection comes back within the first backoff step; suspending the only holder closes it and
// resuming opens it again; a source changed back to Secret releases it; deleting the last
// DingTalkToken of a suite closes its connection, deleting any other does not.
func testStreamConnections(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newStreamSuite(t, ns, "suite-a", 60*time.Second)
	b := newStreamSuite(t, ns, "suite-b", 60*time.Second)
	for _, name := range []string{"a1", "a2", "a3"} {
		env.Create(t, streamToken(ns, name, v1alpha1.TokenTypeThirdPartySuite, "suite-a", ""))
	}
	env.Create(t, streamToken(ns, "b1", v1alpha1.TokenTypeThirdPartySuite, "suite-b", ""))
	for _, name := range []string{"a1", "a2", "a3", "b1"} {
		waitConnected(t, ns, name)
	}
	push(t, a.key)
	push(t, b.key)
	for _, name := range []string{"a1", "a2", "a3", "b1"} {
		env.WaitReady(t, ns, name)
	}
	g.Expect(streamStats(a.key)()).To(And(HaveField("Open", 1), HaveField("Connections", BeEquivalentTo(1))), "three DingTalkTokens, one suite")
	g.Expect(streamStats(b.key)()).To(And(HaveField("Open", 1), HaveField("Connections", BeEquivalentTo(1))))

	// A dropped connection: back after the first backoff step (1 s, at most 20 % jitter).
	start := time.Now()
	g.Expect(env.Sim.DropStreams(a.key)).To(Equal(1))
	g.Eventually(streamStats(a.key)).WithTimeout(5 * time.Second).WithPolling(20 * time.Millisecond).
		Should(And(HaveField("Connections", BeEquivalentTo(2)), HaveField("Open", 1)))
	reconnect := time.Since(start)
	t.Logf("reconnected %s after a drop", reconnect.Round(time.Millisecond))
	g.Expect(reconnect).To(BeNumerically("<", 3*time.Second), "the first backoff step is 1.2 s at most")
	waitConnected(t, ns, "a1")

	// Suspending the only DingTalkToken of suite b closes its connection; resuming reopens it.
	env.UpdateToken(t, ns, "b1", func(tok *v1alpha1.DingTalkToken) { tok.Spec.Suspend = true })
	g.Eventually(env.Sim.OpenStreams).WithArguments(b.key).WithTimeout(10 * time.Second).Should(BeZero())
	tok := env.WaitFor(t, ns, "b1", v1alpha1.ConditionTicketStream, metav1.ConditionFalse, v1alpha1.ReasonStreamUnavailable, 10*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionTicketStream).Message).To(ContainSubstring("spec.suspend is true"))
	env.UpdateToken(t, ns, "b1", func(tok *v1alpha1.DingTalkToken) { tok.Spec.Suspend = false })
	waitConnected(t, ns, "b1")
	g.Expect(streamStats(b.key)()).To(And(HaveField("Open", 1), HaveField("Connections", BeEquivalentTo(2))))

	// Back to the credentials Secret's ticket: the connection is released, TicketStream removed.
	env.UpdateSecret(t, ns, "suite-b", map[string]string{"suiteTicket": env.Sim.SuiteTicket(b.key)})
	env.UpdateToken(t, ns, "b1", func(tok *v1alpha1.DingTalkToken) {
		tok.Spec.SuiteTicket.Source = v1alpha1.SuiteTicketSourceSecret
	})
	g.Eventually(env.Sim.OpenStreams).WithArguments(b.key).WithTimeout(10 * time.Second).Should(BeZero())
	g.Eventually(func(g Gomega) {
		tok := env.GetToken(g, ns, "b1")
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionTicketStream).Type).To(BeEmpty())
		g.Expect(tok.Status.SuiteTicketTime).To(BeNil())
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// Deleting DingTalkTokens of suite a: the connection stays while one is left.
	for _, name := range []string{"a1", "a2"} {
		envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), &v1alpha1.DingTalkToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}))
	}
	g.Consistently(env.Sim.OpenStreams).WithArguments(a.key).Within(2 * time.Second).Should(Equal(1))
	envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), &v1alpha1.DingTalkToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a3"}}))
	g.Eventually(env.Sim.OpenStreams).WithArguments(a.key).WithTimeout(10*time.Second).Should(BeZero(),
		"deleting the last DingTalkToken of a suite closes its connection")
	g.Expect(streamStats(a.key)()).To(HaveField("Connections", BeEquivalentTo(2)))
}

// testStreamRestart: a new manager reads the stored ticket back (the credentials Secret has none
// and nothing was pushed since), fetches nothing that is not due, reconnects once, and its due
// refresh succeeds with the stored ticket.
func testStreamRestart(t *testing.T, ns string) {
	g := NewWithT(t)
	su := newStreamSuite(t, ns, "isv", 30*time.Second)
	first := env.startManager(t, []string{ns}, false, operator.Hooks{})
	env.Create(t, streamToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "isv", ""))
	waitConnected(t, ns, "suite")
	ticket := push(t, su.key)
	before := env.WaitReady(t, ns, "suite").Status
	g.Expect(storedTicket(g, ns, "suite")).To(Equal(ticket))
	envtesting.Must(t, first.Stop())
	g.Eventually(env.Sim.OpenStreams).WithArguments(su.key).WithTimeout(10*time.Second).Should(BeZero(), "a stopped manager closes its connections")
	pushes := streamStats(su.key)().Pushes

	env.startManager(t, []string{ns}, false, operator.Hooks{})
	g.Eventually(streamStats(su.key)).WithTimeout(10 * time.Second).Should(And(HaveField("Open", 1), HaveField("Connections", BeEquivalentTo(2))))
	g.Consistently(func() int64 { return env.Calls(simulator.PathSuiteAccessToken, su.key) }).
		Within(2*time.Second).Should(BeEquivalentTo(1), "a restart fetched a valid token again")
	tok := env.WaitRefreshedAfter(t, ns, "suite", before.LastRefreshTime.Time, 40*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued))
	g.Expect(env.Results(simulator.PathSuiteAccessToken, su.key)).To(Equal(map[string]int64{"success": 2}))
	g.Expect(tok.Status.SuiteTicketDigest).To(Equal(before.SuiteTicketDigest), "the refresh used the stored ticket")
	g.Expect(tok.Status.SuiteTicketTime).To(Equal(before.SuiteTicketTime))
	st := streamStats(su.key)()
	g.Expect(st.Pushes).To(Equal(pushes), "nothing was pushed since the restart")
	g.Expect(st.Connections).To(BeEquivalentTo(2), "the new manager reconnected once")
	g.Expect(env.Secret(g, ns, "isv").Data).NotTo(HaveKey("suiteTicket"))
	waitConnected(t, ns, "suite")
}

// testStreamSuiteKeyChange: a stored suite ticket is tied to the suiteKey it was pushed for. The
// credentials Secret moves to another suite (suiteKey and suiteSecret): the old suite's ticket is
// never sent with the new suiteKey (no call at all until the new suite's first push), then the
// new suite's push refreshes the token.
func testStreamSuiteKeyChange(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newStreamSuite(t, ns, "isv-suite", 60*time.Second)
	env.Create(t, streamToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "isv-suite", ""))
	waitConnected(t, ns, "suite")
	push(t, a.key)
	first := env.WaitReady(t, ns, "suite").Status
	g.Expect(env.Secret(g, ns, "suite"+v1alpha1.SuiteTicketSecretSuffix).Annotations).To(HaveKey(v1alpha1.SuiteTicketSuiteAnnotation))

	b := suiteCreds{key: env.secret("suite"), secret: env.secret("suitesecret-"), ticket: env.secret("ticket-")}
	envtesting.Must(t, env.Sim.AddSuite(simulator.Suite{SuiteKey: b.key, SuiteSecret: b.secret, SuiteTicket: b.ticket,
		TokenLifetime: simulator.Duration(60 * time.Second)}))
	env.UpdateSecret(t, ns, "isv-suite", map[string]string{"suiteKey": b.key, "suiteSecret": b.secret})
	// The change is acted on within 10 s: with a's ticket it would be a call, refused.
	g.Eventually(streamStats(b.key)).WithTimeout(20 * time.Second).Should(HaveField("Open", 1))
	g.Consistently(func() int64 { return env.Calls(simulator.PathSuiteAccessToken, b.key) }).Within(12*time.Second).
		Should(BeZero(), "the old suite's ticket was sent with the new suiteKey")
	tok := env.GetToken(g, ns, "suite")
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonTokenValid), "the old token stays in force")

	push(t, b.key)
	g.Eventually(func(g Gomega) {
		tok = env.GetToken(g, ns, "suite")
		g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally(">", first.LastRefreshTime.Time))
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	g.Expect(env.Results(simulator.PathSuiteAccessToken, b.key)).To(Equal(map[string]int64{"success": 1}))
}
