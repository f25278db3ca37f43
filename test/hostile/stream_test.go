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
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// newStreamSuite adds a suite to the simulator and, in ns, its credentials Secret named secret
// (suiteKey and suiteSecret, no suiteTicket) and a ThirdPartySuite DingTalkToken named name that
// takes its suite ticket from DingTalk Stream mode. It returns the suiteKey.
func newStreamSuite(t *testing.T, ns, secret, name string) string {
	t.Helper()
	key, value := "hostilesuite"+testutil.RandHex(6), env.Sensitive.New(testenv.Credential, "suitesecret-")
	envtesting.Must(t, env.Sim.AddSuite(simulator.Suite{SuiteKey: key, SuiteSecret: value,
		SuiteTicket: env.Sensitive.New(testenv.Credential, "suiteticket-"), TokenLifetime: simulator.Duration(time.Hour)}))
	env.CreateSecret(t, ns, secret, map[string]string{"suiteKey": key, "suiteSecret": value})
	tok := testenv.NewToken(ns, name, v1alpha1.TokenTypeThirdPartySuite, secret)
	tok.Spec.SuiteTicket = &v1alpha1.SuiteTicketConfig{Source: v1alpha1.SuiteTicketSourceStream}
	env.Create(t, tok)
	return key
}

// opensOf lists the times of the connections/open calls made with a suiteKey.
func opensOf(suiteKey string) []time.Time {
	dingtalk.mu.Lock()
	defer dingtalk.mu.Unlock()
	var out []time.Time
	for _, c := range dingtalk.calls {
		if c.path == simulator.PathOpenConnection && c.credential == suiteKey {
			out = append(out, c.at)
		}
	}
	return out
}

// churnSecret writes a new random value into key of a Secret every 200 ms for d, as a tenant
// attacking the operator would, and returns when it began and ended and how many writes it made.
func churnSecret(t *testing.T, ns, secret, key string, d time.Duration) (start, end time.Time, writes int) {
	t.Helper()
	start = time.Now()
	for time.Since(start) < d {
		env.UpdateSecret(t, ns, secret, map[string]string{key: "churned-" + testutil.RandHex(8)})
		writes++
		time.Sleep(200 * time.Millisecond) // the attack's own pace
	}
	return start, time.Now(), writes
}

// TestSuiteSecretChurn: a tenant rewrites the suiteSecret of its Stream-sourced token every
// 200 ms for 20 s. Opening a Stream connection is a DingTalk call: a new suiteSecret opens at
// most one connection per 10 s, and refused ones back off (1 s doubling to 60 s) whatever the
// secret, so the churn costs at most 8 connections/open calls (without the bound, one per write).
// Another tenant's refresh, due during the churn, happens on time.
func TestSuiteSecretChurn(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	churner, victim := env.CreateNamespace(t, "streamchurn"), env.CreateNamespace(t, "streamontime")
	manager(t, "streamchurn", "", []string{churner, victim})
	suiteKey := newStreamSuite(t, churner, "isv", "suite")
	env.WaitFor(t, churner, "suite", v1alpha1.ConditionTicketStream, metav1.ConditionTrue, v1alpha1.ReasonConnected, 60*time.Second)
	// The victim's 24 s token falls due about 16 s in, in the middle of the churn.
	victimKey := newApp(t, victim, "creds", 24*time.Second)
	readyTokens(t, victim, "due", "creds", 1)
	due := env.GetToken(g, victim, "due-0").Status

	start, end, writes := churnSecret(t, churner, "isv", "suiteSecret", 20*time.Second)
	opens := func() []time.Time { return callsBetween(opensOf(suiteKey), start, time.Now()) }
	defer func() {
		measured(t, "%d suiteSecret rewrites in %s: %d connections/open calls in it and the 11 s after, shortest interval %s",
			writes, end.Sub(start).Round(time.Second), len(opens()), minGap(opens()).Round(10*time.Millisecond))
	}()
	// The secret written last may still be tried once its hold ends: watch the 11 s after too.
	g.Consistently(func() int { return len(opens()) }).WithTimeout(11*time.Second).WithPolling(500*time.Millisecond).
		Should(BeNumerically("<=", 8), "connections/open calls for 20 s of churn and the hold after it")

	// The victim's first call after the churn began is its due refresh (the next one is 16 s later).
	refreshes := callsBetween(dingtalk.of(victimKey), start, time.Now())
	g.Expect(refreshes).NotTo(BeEmpty(), "the other tenant's due refresh happened")
	measured(t, "the other tenant's refresh was due at %s and called DingTalk at %s",
		due.RefreshTime.Format(time.TimeOnly), refreshes[0].Format("15:04:05.000"))
	g.Expect(refreshes[0]).To(BeTemporally("~", due.RefreshTime.Time, 2*time.Second), "on time")
}
