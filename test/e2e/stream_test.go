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

package e2e

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dingtalkv1alpha1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// TestStreamLeaderOnly runs two managers with leader election (processes, under the RBAC of
// config/default) and a ThirdPartySuite DingTalkToken whose suite tickets come from DingTalk
// Stream mode, with no suiteTicket in its credentials Secret. Only the leader opens the suite's
// connection (dingtalk_stream_connections 1 there, 0 on the standby); it stores the pushed
// ticket (dingtalk_stream_events_total{type="suite_ticket"}) and the token becomes Ready. When
// the leader is killed the standby connects, once, stores the next push, and its metrics follow.
// SIGTERM closes the connection. No process prints a ticket or the suite secret.
func TestStreamLeaderOnly(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := env.CreateNamespace(t, "stream")
	const (
		suiteKey    = "e2e-stream-suite"
		suiteSecret = "e2e-stream-suite-secret"
	)
	g.Expect(sim.AddSuite(simulator.Suite{SuiteKey: suiteKey, SuiteSecret: suiteSecret, SuiteTicket: "e2e-stream-initial-ticket",
		TokenLifetime: simulator.Duration(time.Hour)})).To(Succeed())
	env.CreateSecret(t, ns, "isv", map[string]string{"suiteKey": suiteKey, "suiteSecret": suiteSecret})
	tok := testenv.NewToken(ns, "suite", dingtalkv1alpha1.TokenTypeThirdPartySuite, "isv")
	tok.Spec.SuiteTicket = &dingtalkv1alpha1.SuiteTicketConfig{Source: dingtalkv1alpha1.SuiteTicketSourceStream}
	g.Expect(k8s.Create(ctx, tok)).To(Succeed())
	stats := func() simulator.SuiteStreamStats { return sim.StreamStats().Suites[suiteKey] }

	leader, standby := startLeaderPair(t, g)

	// Only the leader connects; the token waits for its first ticket.
	waitTicketStream(g, ns, "suite", dingtalkv1alpha1.ReasonConnected)
	g.Expect(stats()).To(And(HaveField("Open", 1), HaveField("Connections", BeEquivalentTo(1))))
	scraper := serviceAccountToken(t, ns, "stream-scraper", true)
	streamMetrics := func(p *testenv.Process) func(g Gomega) [2]float64 {
		return func(g Gomega) [2]float64 {
			fams, err := scrape(p, scraper)
			g.Expect(err).NotTo(HaveOccurred())
			return [2]float64{fams.Value("dingtalk_stream_connections", nil),
				fams.Total("dingtalk_stream_events_total", map[string]string{"type": "suite_ticket"})}
		}
	}
	g.Eventually(streamMetrics(leader)).WithTimeout(20*time.Second).WithPolling(500*time.Millisecond).
		Should(Equal([2]float64{1, 0}), "leader: one connection, no ticket yet")
	g.Eventually(streamMetrics(standby)).WithTimeout(20*time.Second).WithPolling(500*time.Millisecond).
		Should(Equal([2]float64{0, 0}), "standby: no connection")

	first := "e2e-stream-pushed-ticket-1"
	_, err := sim.PushTickets(simulator.PushRequest{SuiteKey: suiteKey, Ticket: first})
	g.Expect(err).NotTo(HaveOccurred())
	waitReady(g, ns, []*dingtalkv1alpha1.DingTalkToken{tok})
	g.Eventually(storedTicketOf(ns, "suite")).WithTimeout(10 * time.Second).Should(Equal(first))
	g.Eventually(streamMetrics(leader)).WithTimeout(20*time.Second).WithPolling(500*time.Millisecond).
		Should(Equal([2]float64{1, 1}), "leader: one ticket received")
	g.Consistently(func() int64 { return stats().Connections }).WithTimeout(2*time.Second).WithPolling(250*time.Millisecond).
		Should(BeEquivalentTo(1), "the standby connected")

	// Kill the leader: the standby takes over and connects once.
	leader.Kill()
	g.Eventually(func() bool { return standby.Logged(leaseAcquired) }).
		WithTimeout(60*time.Second).WithPolling(250*time.Millisecond).Should(BeTrue(), "the standby took over")
	g.Eventually(stats).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).
		Should(And(HaveField("Open", 1), HaveField("Connections", BeEquivalentTo(2))))
	waitTicketStream(g, ns, "suite", dingtalkv1alpha1.ReasonConnected)
	second := "e2e-stream-pushed-ticket-2"
	_, err = sim.PushTickets(simulator.PushRequest{SuiteKey: suiteKey, Ticket: second})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(storedTicketOf(ns, "suite")).WithTimeout(10 * time.Second).Should(Equal(second))
	g.Eventually(streamMetrics(standby)).WithTimeout(20*time.Second).WithPolling(500*time.Millisecond).
		Should(Equal([2]float64{1, 1}), "new leader: one connection, one ticket received")
	g.Expect(stats()).To(HaveField("Connections", BeEquivalentTo(2)))

	// SIGTERM: the connection is closed with the manager.
	g.Expect(standby.Terminate(30 * time.Second)).To(Succeed())
	g.Eventually(func() int { return stats().Open }).WithTimeout(10 * time.Second).Should(BeZero())
	for _, p := range []*testenv.Process{leader, standby} {
		for _, v := range []string{first, second, suiteSecret, "e2e-stream-initial-ticket"} {
			g.Expect(p.Output()).NotTo(ContainSubstring(v), "manager %s printed a secret", p.Name)
		}
	}
}

// waitTicketStream waits until the DingTalkToken's TicketStream condition has reason.
func waitTicketStream(g *WithT, ns, name, reason string) {
	g.Eventually(func(g Gomega) {
		cur := &dingtalkv1alpha1.DingTalkToken{}
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, cur)).To(Succeed())
		c := testenv.Condition(cur, dingtalkv1alpha1.ConditionTicketStream)
		g.Expect(c.Reason).To(Equal(reason), "TicketStream: %s", c.Message)
	}).WithTimeout(60 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
}

// storedTicketOf reads the ticket kept in a DingTalkToken's suite-ticket Secret.
func storedTicketOf(ns, name string) func(g Gomega) string {
	return func(g Gomega) string {
		s := &corev1.Secret{}
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name + dingtalkv1alpha1.SuiteTicketSecretSuffix}, s)).To(Succeed())
		return string(s.Data[dingtalkv1alpha1.SuiteTicketKey])
	}
}
