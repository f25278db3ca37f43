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
	"fmt"
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

// newApp adds an internal app to the simulator with tokens living life and, in ns, its
// credentials Secret named secret; it returns the appKey.
func newApp(t *testing.T, ns, secret string, life time.Duration) string {
	t.Helper()
	key, value := "hostileapp"+testutil.RandHex(6), env.Sensitive.New(testenv.Credential, "appsecret-")
	envtesting.Must(t, env.Sim.AddApp(simulator.App{AppKey: key, AppSecret: value, TokenLifetime: simulator.Duration(life)}))
	env.CreateSecret(t, ns, secret, map[string]string{"appKey": key, "appSecret": value})
	return key
}

// readyTokens creates n InternalApp DingTalkTokens named prefix-i on the credentials Secret and
// waits until every one is Ready.
func readyTokens(t *testing.T, ns, prefix, secret string, n int) {
	t.Helper()
	for i := range n {
		env.Create(t, testenv.NewToken(ns, fmt.Sprintf("%s-%d", prefix, i), v1alpha1.TokenTypeInternalApp, secret))
	}
	for i := range n {
		env.WaitReady(t, ns, fmt.Sprintf("%s-%d", prefix, i))
	}
}

// stillReady checks that the DingTalkTokens prefix-0..n-1 are Ready.
func stillReady(t *testing.T, g Gomega, ns, prefix string, n int) {
	t.Helper()
	for i := range n {
		tok := env.GetToken(g, ns, fmt.Sprintf("%s-%d", prefix, i))
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue), "%s/%s-%d", ns, prefix, i)
	}
}

// TestTemplateBombs: a tenant writes templates built to exhaust memory (the 40 quotes in
// one pipeline, nested quote/toJson/b64enc, long pipelines, many actions). Each is refused as
// TemplateInvalid, the manager's RSS stays within a few MiB, and another tenant's tokens stay
// Ready. Without the bounds, the 40 quotes alone need terabytes: the process is killed at 512 MiB.
func TestTemplateBombs(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	victim, bomber := env.CreateNamespace(t, "victim"), env.CreateNamespace(t, "bomber")
	p := manager(t, "templates", "", []string{victim, bomber})
	newApp(t, victim, "creds", time.Hour)
	readyTokens(t, victim, "ok", "creds", 3)
	newApp(t, bomber, "creds", time.Hour)

	chain := func(fn string, n int) string { return "{{ .AccessToken" + strings.Repeat(" | "+fn, n) + " }}" }
	nest := func(fn string, n int) string {
		return "{{ " + strings.Repeat(fn+" (", n) + ".AccessToken" + strings.Repeat(")", n) + " }}"
	}
	bombs := map[string]string{
		"forty-quotes":    chain("quote", 40), // the 338 characters
		"long-pipeline":   chain("b64enc", 12),
		"nested-quote":    nest("quote", 31),
		"nested-tojson":   nest("toJson", 31),
		"nested-b64enc":   nest("b64enc", 31),
		"nested-mixed":    "{{ " + strings.Repeat("toJson (quote (b64enc (", 11) + ".AccessToken" + strings.Repeat(")))", 11) + " }}",
		"many-actions":    strings.Repeat("{{ quote .AccessToken }}", 200),
		"growing-actions": strings.Repeat(nest("quote", 7), 30),
	}
	growth := peakRSS(t, p.Pid(), "template bombs", func() {
		for name, b := range bombs {
			tok := testenv.NewToken(bomber, name, v1alpha1.TokenTypeInternalApp, "creds")
			tok.Spec.Target = &v1alpha1.Target{Template: &v1alpha1.TargetTemplate{Data: map[string]string{"config": b}}}
			env.Create(t, tok)
		}
		for name := range bombs {
			tok := env.WaitFor(t, bomber, name, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTemplateInvalid, 30*time.Second)
			g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Message).To(ContainSubstring("spec.target.template.data[config]"))
		}
	})
	g.Expect(p.Exited()).To(BeFalse(), "the manager died")
	g.Expect(growth).To(BeNumerically("<", 16*mib), "RSS growth in KiB")
	stillReady(t, g, victim, "ok", 3)
}

// TestForeignLabelledSecrets: a tenant labels 60 Secrets of 768 KiB with the operator's
// managed-by label. They enter its cache as views without data: the manager's RSS grows by less
// than 25 MiB (a cache of full Secrets grows by their 45 MiB and more).
func TestForeignLabelledSecrets(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := env.CreateNamespace(t, "labels")
	p := manager(t, "labels", "", []string{ns})
	newApp(t, ns, "creds", time.Hour)
	readyTokens(t, ns, "ok", "creds", 2)
	blob := strings.Repeat("x", 768<<10)
	growth := peakRSS(t, p.Pid(), "60 foreign labelled 768 KiB Secrets", func() {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < 60; i += 4 {
					s := &corev1.Secret{
						ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("foreign-%d", i),
							Labels: map[string]string{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}},
						StringData: map[string]string{"blob": blob},
					}
					g.Expect(env.Client.Create(envtesting.Ctx(t), s)).To(Succeed())
				}
			}()
		}
		wg.Wait()
		// The manager's informer receives them one by one, shortly after: sample a while longer.
		g.Consistently(p.Exited).WithTimeout(5 * time.Second).Should(BeFalse())
	})
	g.Expect(growth).To(BeNumerically("<", 25*mib), "RSS growth in KiB")
	stillReady(t, g, ns, "ok", 2)
}

// TestOversizedCredential: 30 DingTalkTokens name one credentials Secret whose appSecret is
// 900 KiB. Each is CredentialsInvalid, naming the Secret and the key, and DingTalk is never
// called with it.
func TestOversizedCredential(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := env.CreateNamespace(t, "oversized")
	p := manager(t, "oversized", "", []string{ns})
	key := "hostilebig" + testutil.RandHex(6)
	huge := strings.Repeat("s", 900<<10)
	env.CreateSecret(t, ns, "creds", map[string]string{"appKey": key, "appSecret": huge})
	defer func() { measured(t, "30 tokens on a 900 KiB credential: %d DingTalk calls", dingtalk.Count(key)) }()
	peakRSS(t, p.Pid(), "30 tokens on a 900 KiB credential", func() {
		for i := range 30 {
			env.Create(t, testenv.NewToken(ns, fmt.Sprintf("tok-%d", i), v1alpha1.TokenTypeInternalApp, "creds"))
		}
		for i := range 30 {
			tok := env.WaitFor(t, ns, fmt.Sprintf("tok-%d", i), v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsInvalid, 30*time.Second)
			msg := testenv.Condition(tok, v1alpha1.ConditionReady).Message
			g.Expect(msg).To(And(ContainSubstring(`"creds"`), ContainSubstring(`"appSecret"`)))
			g.Expect(msg).NotTo(ContainSubstring("sss"))
		}
		// The re-checks of the backoff schedule do not call DingTalk either.
		g.Consistently(func() int { return dingtalk.Count(key) }).WithTimeout(6 * time.Second).Should(BeZero())
	})
	g.Expect(dingtalk.Count(key)).To(BeZero())
}

// TestCredentialChurn: a tenant rewrites its credentials Secret every 200 ms for 30 s. Its
// DingTalkToken calls DingTalk at most once per 10 s (the last change is acted on when the hold
// ends), and another tenant's refresh, due during the churn, happens on time.
func TestCredentialChurn(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	churner, victim := env.CreateNamespace(t, "churner"), env.CreateNamespace(t, "ontime")
	manager(t, "churn", "", []string{churner, victim})
	churnKey := newApp(t, churner, "creds", time.Hour)
	readyTokens(t, churner, "churn", "creds", 1)
	// The victim's 30 s token falls due about 20 s in, in the middle of the churn.
	newApp(t, victim, "creds", 30*time.Second)
	readyTokens(t, victim, "due", "creds", 1)
	due := env.GetToken(g, victim, "due-0").Status

	start, end, writes := churnSecret(t, churner, "creds", "appSecret", 30*time.Second)
	// The change written last is acted on when its hold ends.
	g.Eventually(func() int { return len(callsBetween(dingtalk.Of(churnKey), start, time.Now())) }).
		WithTimeout(15 * time.Second).Should(BeNumerically(">=", 1))
	calls := callsBetween(dingtalk.Of(churnKey), start, end.Add(12*time.Second))
	measured(t, "%d credential rewrites in %s: %d DingTalk calls, shortest interval %s",
		writes, end.Sub(start).Round(time.Second), len(calls), minGap(calls).Round(10*time.Millisecond))
	g.Expect(len(calls)).To(BeNumerically("<=", 5), "calls for 30 s of churn and the hold after it")
	if len(calls) > 1 {
		g.Expect(minGap(calls)).To(BeNumerically(">=", 9500*time.Millisecond), "interval between calls of one object")
	}
	tok := env.GetToken(g, victim, "due-0")
	measured(t, "the other tenant's refresh was due at %s and happened at %s", due.RefreshTime.Format(time.TimeOnly), tok.Status.LastRefreshTime.Format(time.TimeOnly))
	g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally(">", due.LastRefreshTime.Time), "the due refresh happened")
	g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally("~", due.RefreshTime.Time, 2*time.Second), "on time")
}

// callsBetween keeps the calls made in [from, to].
func callsBetween(ts []time.Time, from, to time.Time) []time.Time {
	var out []time.Time
	for _, t := range ts {
		if !t.Before(from) && !t.After(to) {
			out = append(out, t)
		}
	}
	return out
}

// TestShortLivedAnswer: DingTalk answers tokens living 1 s. Such a token is no token:
// ProviderUnavailable, retried with the backoff (6 s, 10 s, 20 s, ...), never more than once
// per 5 s.
func TestShortLivedAnswer(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := env.CreateNamespace(t, "expirein")
	p := manager(t, "expirein", "", []string{ns})
	key := newApp(t, ns, "creds", time.Second)
	start := time.Now()
	env.Create(t, testenv.NewToken(ns, "tok", v1alpha1.TokenTypeInternalApp, "creds"))
	// Watch it for 40 s: with the backoff, calls at 0, 6, 16 and 36 s.
	g.Consistently(p.Exited).WithTimeout(40 * time.Second).Should(BeFalse())
	calls := callsBetween(dingtalk.Of(key), start, time.Now())
	tok := env.GetToken(g, ns, "tok")
	measured(t, "expireIn 1: %d DingTalk calls in %s, shortest interval %s, Ready %s",
		len(calls), time.Since(start).Round(time.Second), minGap(calls).Round(10*time.Millisecond), testenv.Condition(tok, v1alpha1.ConditionReady).Reason)
	g.Expect(len(calls)).To(BeNumerically("<=", 5))
	g.Expect(minGap(calls)).To(BeNumerically(">=", 5*time.Second))
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonProviderUnavailable))
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Message).To(ContainSubstring("expireIn"))
	g.Expect(tok.Status.FailedAttempts).To(BeNumerically(">=", 3))
}
