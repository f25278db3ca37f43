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
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// testRefreshRequest: the refresh-requested-at annotation refreshes a token once per new value,
// for every type, without a spec change (the generation does not move) and with one DingTalk
// call; an old, malformed or far-future value is ignored with an event saying why.
func testRefreshRequest(t *testing.T, ns string) {
	const life = 3 * time.Minute // no refresh falls due while the scenario runs
	a := newApp(t, ns, "app-credentials", life)
	s := newSuite(t, ns, "suite-credentials", life)
	u := newUser(t, ns, "user-credentials", life, "refreshToken")
	kinds := []struct {
		name, credentials string
		typ               v1alpha1.TokenType
		path, id          string // the DingTalk call and the credential it counts under
	}{
		{"app", "app-credentials", v1alpha1.TokenTypeInternalApp, simulator.PathAppAccessToken, a.key},
		{"corp", "suite-credentials", v1alpha1.TokenTypeThirdPartyApp, simulator.PathCorpAccessToken, s.key},
		{"suite", "suite-credentials", v1alpha1.TokenTypeThirdPartySuite, simulator.PathSuiteAccessToken, s.key},
		{"user", "user-credentials", v1alpha1.TokenTypeUser, simulator.PathUserAccessToken, u.clientID},
	}
	var wg sync.WaitGroup
	for _, k := range kinds {
		wg.Go(func() {
			g := NewWithT(t)
			tok := testenv.NewToken(ns, k.name, k.typ, k.credentials)
			if k.typ == v1alpha1.TokenTypeThirdPartyApp {
				tok.Spec.CorpID = s.corp
			}
			env.Create(t, tok)
			tok = env.WaitReady(t, ns, k.name)
			g.Expect(env.Calls(k.path, k.id)).To(BeEquivalentTo(1), k.name)

			// A request newer than the last refresh: one refresh, one call, no spec change.
			requested := latestSecond(time.Now(), tok.Status.LastRefreshTime.Add(time.Second))
			request(t, ns, k.name, requested)
			after := env.WaitRefreshedAfter(t, ns, k.name, tok.Status.LastRefreshTime.Time, 20*time.Second)
			g.Expect(after.Generation).To(Equal(tok.Generation), "%s: an annotation is not a spec change", k.name)
			g.Expect(after.Status.LastRefreshTime.Time).NotTo(BeTemporally("<", requested), k.name)
			g.Expect(env.Calls(k.path, k.id)).To(BeEquivalentTo(2), "%s: one call for the request", k.name)
			// Once: the request is served, later passes do not refresh again.
			g.Consistently(func() int64 { return env.Calls(k.path, k.id) }).WithTimeout(3*time.Second).
				Should(BeEquivalentTo(2), "%s: a served request refreshes once", k.name)
		})
	}
	wg.Wait()

	// Values that request nothing: each ignored with an event, and no call.
	g := NewWithT(t)
	tok := env.GetToken(g, ns, "app")
	for _, v := range []string{
		tok.Status.LastRefreshTime.Add(-time.Minute).UTC().Format(time.RFC3339), // older than the last refresh
		"yesterday", // not a time
		time.Now().Add(time.Hour).UTC().Format(time.RFC3339), // in the future
	} {
		env.UpdateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) {
			d.Annotations = map[string]string{v1alpha1.RefreshRequestedAtAnnotation: v}
		})
		g.Eventually(func(g Gomega) {
			g.Expect(ignoredRequests(g, ns, "app")).To(ContainElement(ContainSubstring(v)))
		}).WithTimeout(10 * time.Second).Should(Succeed())
	}
	notes := ignoredRequests(g, ns, "app")
	g.Expect(notes).To(ContainElement(ContainSubstring("is not newer than the last refresh")))
	g.Expect(notes).To(ContainElement(ContainSubstring("is not an RFC 3339 time")))
	g.Expect(notes).To(ContainElement(ContainSubstring("lies in the future")))
	g.Expect(env.Calls(simulator.PathAppAccessToken, a.key)).To(BeEquivalentTo(2), "ignored requests call nothing")
	g.Expect(env.GetToken(g, ns, "app").Status.LastRefreshTime.Time).To(Equal(tok.Status.LastRefreshTime.Time))
}

// request sets the refresh-requested-at annotation of a DingTalkToken to at.
func request(t *testing.T, ns, name string, at time.Time) {
	env.UpdateToken(t, ns, name, func(d *v1alpha1.DingTalkToken) {
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[v1alpha1.RefreshRequestedAtAnnotation] = at.UTC().Format(time.RFC3339)
	})
}

// latestSecond is the later of a and b, truncated to the second.
func latestSecond(a, b time.Time) time.Time {
	if b.After(a) {
		a = b
	}
	return a.Truncate(time.Second)
}

// ignoredRequests lists the notes of the RefreshRequestIgnored events about a DingTalkToken.
func ignoredRequests(g Gomega, ns, name string) []string {
	var list eventsv1.EventList
	g.Expect(env.Client.List(testenv.Quiet(context.Background()), &list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Reason == "RefreshRequestIgnored" && e.Regarding.Name == name {
			out = append(out, e.Note)
		}
	}
	return out
}
