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

package fanout

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// testStreamFanOut: a ThirdPartySuite ClusterDingTalkToken with suite tickets from DingTalk Stream
// and no suiteTicket in its credentials Secret waits for the first push, connected, with nothing
// written; a DingTalkToken of the same suite shares its one connection. The push is kept in the
// ClusterDingTalkToken's own Secret <name>-suite-ticket in the credentials namespace (owned by it)
// and in the DingTalkToken's; both become Ready with one DingTalk call. Deleting both closes the
// connection.
func testStreamFanOut(t *testing.T) {
	g := NewWithT(t)
	suiteKey := "suitefan" + testutil.RandHex(6)
	env.Sensitive.Add(testenv.Credential, suiteKey)
	secret := env.Sensitive.New(testenv.Credential, "fan-suite-secret-")
	envtesting.Must(t, env.Sim.AddSuite(simulator.Suite{SuiteKey: suiteKey, SuiteSecret: secret,
		SuiteTicket: env.Sensitive.New(testenv.Credential, "fan-ticket-"), TokenLifetime: simulator.Duration(time.Minute)}))
	creds := map[string]string{"suiteKey": suiteKey, "suiteSecret": secret}
	credNS := env.CreateNamespace(t, "fan-isv")
	env.CreateSecret(t, credNS, "isv", creds)
	sel := map[string]string{"fanout.test/stream": testutil.RandHex(4)}
	namespaces := []string{labelledNamespace(t, "fan-stream", sel), labelledNamespace(t, "fan-stream", sel)}
	name := "stream-" + testutil.RandHex(3)
	cluster := clusterToken(name, credNS, "isv", "isv-token", sel)
	cluster.Spec.Type = v1alpha1.TokenTypeThirdPartySuite
	cluster.Spec.SuiteTicket = &v1alpha1.SuiteTicketConfig{Source: v1alpha1.SuiteTicketSourceStream}
	env.Create(t, cluster)
	env.CreateSecret(t, namespaces[0], "own-isv", creds)
	own := testenv.NewToken(namespaces[0], "own", v1alpha1.TokenTypeThirdPartySuite, "own-isv")
	own.Spec.SuiteTicket = &v1alpha1.SuiteTicketConfig{Source: v1alpha1.SuiteTicketSourceStream}
	env.Create(t, own)

	g.Eventually(func(g Gomega) {
		tok := getCluster(g, name)
		g.Expect(condition(tok, v1alpha1.ConditionTicketStream).Reason).To(Equal(v1alpha1.ReasonConnected))
		ready := condition(tok, v1alpha1.ConditionReady)
		g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonPending))
		g.Expect(ready.Message).To(ContainSubstring("Waiting for the first suite ticket"))
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	env.WaitFor(t, namespaces[0], "own", v1alpha1.ConditionTicketStream, metav1.ConditionTrue, v1alpha1.ReasonConnected, 30*time.Second)
	g.Expect(target(g, namespaces[1], "isv-token")).To(BeNil(), "nothing is written before a ticket exists")
	g.Expect(env.Sim.StreamStats().Suites[suiteKey]).To(And(HaveField("Open", 1), HaveField("Connections", BeEquivalentTo(1))),
		"a ClusterDingTalkToken and a DingTalkToken of one suite share one connection")

	ticket := env.Sensitive.New(testenv.Credential, "fan-pushed-")
	_, err := env.Sim.PushTickets(simulator.PushRequest{SuiteKey: suiteKey, Ticket: ticket})
	envtesting.Must(t, err)
	tok := waitProvisioned(t, name, 2, 30*time.Second)
	env.WaitReady(t, namespaces[0], "own")
	g.Expect(tok.Status.SuiteTicketTime).NotTo(BeNil())
	stored := target(g, credNS, name+v1alpha1.SuiteTicketSecretSuffix)
	g.Expect(stored).NotTo(BeNil(), "the suite-ticket Secret lives in the credentials namespace")
	g.Expect(string(stored.Data[v1alpha1.SuiteTicketKey])).To(Equal(ticket))
	expectOwned(g, stored, tok)
	g.Expect(string(target(g, namespaces[0], "own"+v1alpha1.SuiteTicketSecretSuffix).Data[v1alpha1.SuiteTicketKey])).To(Equal(ticket))
	g.Expect(env.Sim.Stats().Endpoints[simulator.PathSuiteAccessToken].Credentials[suiteKey].Results).
		To(Equal(map[string]int64{"success": 1}), "one call for the fan-out and the DingTalkToken")
	credSecret := &corev1.Secret{}
	envtesting.Must(t, env.Client.Get(envtesting.Ctx(t), types.NamespacedName{Namespace: credNS, Name: "isv"}, credSecret))
	g.Expect(credSecret.Data).NotTo(HaveKey("suiteTicket"), "the credentials Secret is never written")

	// Deleting the DingTalkToken leaves the connection to the ClusterDingTalkToken; deleting that
	// too closes it.
	envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), own))
	g.Consistently(env.Sim.OpenStreams).WithArguments(suiteKey).Within(2 * time.Second).Should(Equal(1))
	envtesting.Must(t, env.Client.Delete(envtesting.Ctx(t), tok))
	g.Eventually(env.Sim.OpenStreams).WithArguments(suiteKey).WithTimeout(10 * time.Second).Should(BeZero())
}
