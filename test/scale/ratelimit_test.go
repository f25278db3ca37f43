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
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

// testRateLimitDefers: a credential set whose DingTalk call must wait for its place under the
// client-side rate limit does not hold the workers meanwhile. With one call per 20 s, the
// objects of a set that already has its token turn Ready at once while another set's objects
// wait for their place; those write nothing while they wait (no status, no failure), and their
// set is called once when the place comes.
func testRateLimitDefers(t *testing.T) {
	sc := scenario("ratelimit")
	sim := startSimulator(t)
	ns := env.CreateNamespace(t, "ratelimit")
	fetched, fetchedSecret := newApp(t, sim, life)
	waiting, waitingSecret := newApp(t, sim, life)
	env.CreateSecret(t, ns, "fetched", map[string]string{"appKey": fetched, "appSecret": fetchedSecret})
	env.CreateSecret(t, ns, "waiting", map[string]string{"appKey": waiting, "appSecret": waitingSecret})

	o := managerOptions(sc, sim, "", ns)
	o.DingTalkQPS, o.DingTalkBurst = 0.05, 1 // one place now, the next 20 s later
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	m, err := env.Environment.StartManager(ctx, o, operator.Hooks{Logger: log})
	envtesting.Must(t, err)
	defer func() { envtesting.Must(t, m.Stop()) }()

	labels := map[string]string{scenarioLabel: sc}
	env.Create(t, labelledToken(ns, "fetched-0", "fetched", labels))
	readyWithin(t, ns, "fetched-0", 30*time.Second)
	// More objects than workers wait for the second set's place; then the first set grows.
	for i := range 6 {
		env.Create(t, labelledToken(ns, fmt.Sprintf("waiting-%d", i), "waiting", labels))
	}
	for i := 1; i <= 8; i++ {
		env.Create(t, labelledToken(ns, fmt.Sprintf("fetched-%d", i), "fetched", labels))
	}
	start := time.Now()
	for i := 1; i <= 8; i++ {
		readyWithin(t, ns, fmt.Sprintf("fetched-%d", i), 30*time.Second)
	}
	g := NewWithT(t)
	// The statuses are read first: with no call made after them, they were read while waiting.
	for i := range 6 {
		var tok v1alpha1.DingTalkToken
		g.Expect(env.Client.Get(envtesting.Ctx(t), types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("waiting-%d", i)}, &tok)).To(Succeed())
		g.Expect(tok.Status.Conditions).To(BeEmpty(), "%s recorded a status while it waited for its place", tok.Name)
	}
	g.Expect(calls(sim, waiting)).To(BeZero(),
		"the waiting set was called before the first set's objects were Ready (%s): they waited behind it", describe(time.Since(start)))
	for i := range 6 {
		tok := readyWithin(t, ns, fmt.Sprintf("waiting-%d", i), 40*time.Second)
		g.Expect(tok.Status.FailedAttempts).To(BeZero(), "%s failed while it waited for its place", tok.Name)
	}
	g.Expect(calls(sim, waiting)).To(BeEquivalentTo(1))
	g.Expect(calls(sim, fetched)).To(BeEquivalentTo(1))
}
