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

package reliability

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// testManyTokensWithFailingSubset: 200 DingTalkTokens, 180 healthy over 18 credential sets and
// 20 failing over four sets that fail differently (5xx, timeouts that hold reconcile workers,
// 429 with Retry-After, rejected credentials). The healthy ones are all Ready, refresh on
// their due time without ever turning not Ready, and share one DingTalk call per set and
// refresh; the failing ones say why.
func testManyTokensWithFailingSubset(t *testing.T) {
	const (
		healthySets   = 18
		perSet        = 10
		lifetime      = 45 * time.Second
		failingPerSet = 5
		// onTimeMargin is how long before the old token's expiry its refresh must have landed:
		// of the 15s refresh window, at most 10s may go to queueing on a loaded machine.
		onTimeMargin = 5 * time.Second
	)
	ns := env.CreateNamespace(t, "rel-many")
	type set struct {
		app    app
		reason string // "" for a healthy set
	}
	var sets []set
	for i := range healthySets {
		sets = append(sets, set{app: newApp(t, ns, fmt.Sprintf("healthy-%02d", i), lifetime)})
	}
	failing := []struct {
		fault  simulator.Fault
		reason string
	}{
		{simulator.Fault{Status: http.StatusBadGateway}, v1alpha1.ReasonProviderUnavailable},
		{simulator.Fault{Latency: simulator.Duration(dingtalkTimeout + 3*time.Second)}, v1alpha1.ReasonProviderUnavailable},
		{simulator.Fault{RetryAfter: 5}, v1alpha1.ReasonRateLimited},
		{simulator.Fault{}, v1alpha1.ReasonCredentialsRejected}, // wrong secret, below
	}
	for i, f := range failing {
		a := newApp(t, ns, fmt.Sprintf("failing-%d", i), lifetime)
		if f.reason == v1alpha1.ReasonCredentialsRejected {
			// The simulator knows the app under another secret from now on.
			if err := env.Sim.AddApp(simulator.App{AppKey: a.key, AppSecret: secretValue("appSecret"), TokenLifetime: simulator.Duration(lifetime)}); err != nil {
				t.Fatal(err)
			}
		} else {
			f.fault.Credential = a.key
			setFault(t, f.fault) // for good: Count 0
		}
		sets = append(sets, set{app: a, reason: f.reason})
	}
	tr := track(t, ns)
	startManager(t, ns, nil)
	created := time.Now()
	type member struct {
		name string
		set  set
	}
	var members []member
	for _, s := range sets {
		n := perSet
		if s.reason != "" {
			n = failingPerSet
		}
		for j := range n {
			m := member{name: fmt.Sprintf("%s-%d", s.app.secretName, j), set: s}
			env.Create(t, testenv.NewToken(ns, m.name, v1alpha1.TokenTypeInternalApp, s.app.secretName))
			members = append(members, m)
		}
	}
	g := NewWithT(t)
	g.Expect(members).To(HaveLen(200))

	// All healthy ones Ready; the failing ones say why.
	first := map[string]*v1alpha1.DingTalkToken{}
	eventually(t, 90*time.Second, func(g Gomega) {
		var list v1alpha1.DingTalkTokenList
		g.Expect(env.Client.List(quiet, &list, client.InNamespace(ns))).To(Succeed())
		byName := map[string]*v1alpha1.DingTalkToken{}
		for i := range list.Items {
			byName[list.Items[i].Name] = &list.Items[i]
		}
		for _, m := range members {
			tok := byName[m.name]
			g.Expect(tok).NotTo(BeNil())
			ready := testenv.Condition(tok, v1alpha1.ConditionReady)
			if m.set.reason == "" {
				g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), m.name)
				first[m.name] = tok
			} else {
				g.Expect(ready.Status).To(Equal(metav1.ConditionFalse), m.name)
				g.Expect(ready.Reason).To(Equal(m.set.reason), m.name)
			}
		}
	})
	t.Logf("180 healthy tokens Ready %s after creation began", time.Since(created).Round(time.Millisecond))

	// Every healthy one refreshes on its due time (status.refreshTime), never turning not Ready.
	eventually(t, lifetime+60*time.Second, func(g Gomega) {
		for _, m := range members {
			if m.set.reason != "" {
				continue
			}
			tok := env.GetToken(g, ns, m.name)
			g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally(">", first[m.name].Status.LastRefreshTime.Time), m.name)
		}
	})
	var latest time.Duration
	for _, m := range members {
		if m.set.reason != "" {
			continue
		}
		due, expires := first[m.name].Status.RefreshTime.Time, first[m.name].Status.ExpiresAt.Time
		var refreshed time.Time
		for _, o := range tr.history(m.name) {
			if c := testenv.Condition(&v1alpha1.DingTalkToken{Status: o.status}, v1alpha1.ConditionReady); c.Status == metav1.ConditionFalse &&
				o.status.LastRefreshTime != nil {
				t.Errorf("%s was not Ready at %s (%s) after its first token", m.name, o.at.Format(time.TimeOnly), c.Reason)
			}
			if lr := o.status.LastRefreshTime; refreshed.IsZero() && lr != nil && lr.After(first[m.name].Status.LastRefreshTime.Time) {
				refreshed = o.at
			}
		}
		// On time: not before its due time (a token of the set due later takes the token an
		// earlier one fetched), and well before the old token expires.
		g.Expect(refreshed).To(BeTemporally(">=", due.Add(-time.Second)), "%s refreshed early (due %s)", m.name, due.Format(time.TimeOnly))
		g.Expect(refreshed).To(BeTemporally("<=", expires.Add(-onTimeMargin)), "%s refreshed late (due %s, expiring %s)",
			m.name, due.Format(time.TimeOnly), expires.Format(time.TimeOnly))
		latest = max(latest, refreshed.Sub(due))
	}
	t.Logf("healthy tokens refreshed at most %s after their due time", latest.Round(time.Millisecond))
	// One DingTalk call per token issued to a set, whatever number of its tokens took it: the
	// distinct status.lastRefreshTime values of the set's tokens are its issued tokens (a slow
	// machine may have let an early set start its next round already).
	for i, s := range sets[:healthySets] {
		eventually(t, 10*time.Second, func(g Gomega) {
			issued := map[time.Time]bool{}
			for _, m := range members {
				if m.set.app.key != s.app.key {
					continue
				}
				for _, o := range tr.history(m.name) {
					if lr := o.status.LastRefreshTime; lr != nil {
						issued[lr.Time] = true
					}
				}
			}
			total, _ := calls(simulator.PathAppAccessToken, s.app.key)
			g.Expect(len(issued)).To(BeNumerically(">=", 2), "healthy set %d issued and refreshed", i)
			g.Expect(total).To(BeEquivalentTo(len(issued)), "healthy set %d: one call per token issued, shared by its %d DingTalkTokens", i, perSet)
		})
	}
}
