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
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// faultCase is one class of DingTalk failure. The fault is injected when the token is Ready and
// fires on the next Count calls, which are the due refresh and its retries; it is over when its
// Count is used up, so the case knows exactly how many calls it answered.
type faultCase struct {
	name string
	// lifetime of the simulator's tokens.
	lifetime time.Duration
	// fault to inject; Credential is set to the case's app, Count is the number of failed attempts.
	fault simulator.Fault
	// reason is the expected Refreshed reason (and Ready's, once the token expired).
	reason string
	// message must appear in the Refreshed message: the failure is explained.
	message string
	// outlasts is set when the outage outlasts the token: Ready must turn False with the reason.
	outlasts bool
}

func faultCases() []faultCase {
	// 60s tokens are refreshed 20-22s before expiry; two failures (retries after 5s and 10s)
	// end before the token does. The long outage uses 30s tokens and four failures: attempts at
	// the due time, +5s, at the expiry (the 10s backoff would pass it), then +20s, and the
	// recovery 40s later.
	return []faultCase{
		{name: "ServerErrorBurst", lifetime: 60 * time.Second, fault: simulator.Fault{Status: http.StatusServiceUnavailable, Count: 2},
			reason: v1alpha1.ReasonProviderUnavailable, message: "HTTP 503"},
		{name: "LongOutage", lifetime: 30 * time.Second, fault: simulator.Fault{Status: http.StatusInternalServerError, Count: 4},
			reason: v1alpha1.ReasonProviderUnavailable, message: "HTTP 500", outlasts: true},
		{name: "Timeout", lifetime: 60 * time.Second, fault: simulator.Fault{Latency: simulator.Duration(dingtalkTimeout + 3*time.Second), Count: 2},
			reason: v1alpha1.ReasonProviderUnavailable, message: "timeout"},
		{name: "MalformedJSON", lifetime: 60 * time.Second, fault: simulator.Fault{Malformed: true, Count: 2},
			reason: v1alpha1.ReasonProviderUnavailable, message: "malformed answer"},
		{name: "ConnectionReset", lifetime: 60 * time.Second, fault: simulator.Fault{Close: true, Count: 2},
			reason: v1alpha1.ReasonProviderUnavailable, message: "connection failed"},
		{name: "ErrCodeInHTTP200", lifetime: 60 * time.Second, fault: simulator.Fault{ErrCode200: 88, Count: 2},
			reason: v1alpha1.ReasonProviderUnavailable, message: "HTTP 200, code 88"},
	}
}

// runFaultCase: a Ready token; the fault fires on its due refresh and the retries; meanwhile the
// last good token stays in the Secret (live at the simulator until its expiry), Refreshed (and,
// once the token expired, Ready) says why; every attempt comes on the backoff schedule; the
// simulator saw exactly one call per attempt; the first attempt after the fault is over succeeds.
func runFaultCase(t *testing.T, fc faultCase) {
	ns := env.CreateNamespace(t, "rel-"+strings.ToLower(fc.name))
	a := newApp(t, ns, "creds", fc.lifetime)
	startManager(t, ns, nil)
	tr := track(t, ns)
	env.Create(t, testenv.NewToken(ns, "tok", v1alpha1.TokenTypeInternalApp, "creds"))
	tok := env.WaitReady(t, ns, "tok")
	g := NewWithT(t)
	good := targetToken(g, ns, "tok")
	issued, expires, due := tok.Status.LastRefreshTime.Time, tok.Status.ExpiresAt.Time, tok.Status.RefreshTime.Time
	g.Expect(due).To(BeTemporally("<", expires), "the refresh is planned before the expiry")

	totalBefore, faultedBefore := calls(simulator.PathAppAccessToken, a.key)
	f := fc.fault
	f.Credential = a.key
	setFault(t, f)
	n := int32(f.Count)

	for i := int32(1); i <= n; i++ {
		// Each failed attempt: the last good token stays, and the conditions say why.
		eventually(t, time.Until(expires)+backoff(i)*2+time.Minute, func(g Gomega) {
			tok = env.GetToken(g, ns, "tok")
			g.Expect(tok.Status.FailedAttempts).To(BeNumerically(">=", i))
		})
		now := time.Now()
		g.Expect(targetToken(g, ns, "tok")).To(Equal(good), "the last good token stays in the Secret")
		refreshed := testenv.Condition(tok, v1alpha1.ConditionRefreshed)
		g.Expect(refreshed.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(refreshed.Reason).To(Equal(fc.reason))
		g.Expect(refreshed.Message).To(ContainSubstring(fc.message))
		if now.Before(expires.Add(-time.Second)) {
			live, simExpires := simValidate(t, good)
			g.Expect(live).To(BeTrue(), "the simulator still accepts the last good token")
			// status.expiresAt counts from the request's sending time in whole seconds: at most
			// the simulator's expiry, and not much before it.
			g.Expect(expires).To(BeTemporally("<=", simExpires), "status.expiresAt is not after the simulator's expiry")
			g.Expect(expires).To(BeTemporally(">", simExpires.Add(-2*time.Second)), "status.expiresAt is the simulator's expiry")
			g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonTokenValid),
				"a failed refresh while the token is valid keeps Ready True")
		}
	}
	if fc.outlasts {
		// The token expired during the outage: Ready says why, the Secret keeps what it had.
		eventually(t, time.Until(expires)+10*time.Second, func(g Gomega) {
			tok = env.GetToken(g, ns, "tok")
			ready := testenv.Condition(tok, v1alpha1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(fc.reason))
		})
		g.Expect(targetToken(g, ns, "tok")).To(Equal(good))
		live, _ := simValidate(t, good)
		g.Expect(live).To(BeFalse(), "the simulator agrees the token expired")
	}
	g.Expect(faultPending(a.key)).To(BeFalse(), "the fault is used up")

	// Recovery: the next attempt succeeds.
	eventually(t, backoff(n)*2+30*time.Second, func(g Gomega) {
		tok = env.GetToken(g, ns, "tok")
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued))
		g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally(">", issued))
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonTokenValid))
	})
	fresh := targetToken(g, ns, "tok")
	live, _ := simValidate(t, fresh)
	g.Expect(live).To(BeTrue(), "the Secret holds a token the simulator accepts")
	g.Expect(tok.Status.FailedAttempts).To(BeZero())

	// One call per attempt, nothing else: n faulted answers and one success.
	totalAfter, faultedAfter := calls(simulator.PathAppAccessToken, a.key)
	g.Expect(faultedAfter-faultedBefore).To(BeEquivalentTo(n), "faulted calls")
	g.Expect(totalAfter-totalBefore).To(BeEquivalentTo(n+1), "calls: %v", env.Results(simulator.PathAppAccessToken, a.key))

	// The schedule: the first attempt at the due time, then the backoff (or the expiry).
	as := attempts(tr.history("tok"), issued)
	t.Logf("due %s, expires %s; attempts:%s", due.UTC().Format(time.TimeOnly), expires.UTC().Format(time.TimeOnly), describeAttempts(as))
	g.Expect(as).To(HaveLen(int(n)+1), "attempts:%s", describeAttempts(as))
	g.Expect(as[0].failure).To(BeEquivalentTo(1))
	g.Expect(as[0].at).To(BeTemporally(">=", due.Add(-time.Second)), "not before the due time")
	g.Expect(as[0].at).To(BeTemporally("<=", due.Add(lateness)), "on the due time")
	for k := 1; k <= int(n); k++ {
		lo, hi := window(as[k-1].at, int32(k), expires)
		g.Expect(as[k].at).To(And(BeTemporally(">=", lo), BeTemporally("<=", hi)),
			"attempt %d must come within one backoff step of failure %d:%s", k+1, k, describeAttempts(as))
	}
	g.Expect(as[n].failure).To(BeZero(), "the first attempt after the fault is over succeeds")

	// The transitions were announced as events.
	eventually(t, 10*time.Second, func(g Gomega) {
		g.Expect(env.EventReasons(g, ns)).To(ContainElements("TokenIssued", "RefreshFailed", "RefreshRecovered"))
	})
}

// testRateLimitedWithRetryAfter: two DingTalkTokens share a credential set; DingTalk answers 429
// with Retry-After. No call for that set comes before the Retry-After ends, whichever token is
// due, and the one call after it serves both.
func testRateLimitedWithRetryAfter(t *testing.T) {
	const retryAfter = 12 * time.Second
	ns := env.CreateNamespace(t, "rel-ratelimited")
	a := newApp(t, ns, "creds", 60*time.Second)
	startManager(t, ns, nil)
	tr := track(t, ns)
	names := []string{"tok-a", "tok-b"}
	for _, name := range names {
		env.Create(t, testenv.NewToken(ns, name, v1alpha1.TokenTypeInternalApp, "creds"))
	}
	issued := map[string]time.Time{}
	good := map[string]string{}
	g := NewWithT(t)
	for _, name := range names {
		issued[name] = env.WaitReady(t, ns, name).Status.LastRefreshTime.Time
		good[name] = targetToken(g, ns, name)
	}
	totalBefore, _ := calls(simulator.PathAppAccessToken, a.key)
	g.Expect(totalBefore).To(BeEquivalentTo(1), "one call served both tokens")
	setFault(t, simulator.Fault{Credential: a.key, RetryAfter: int(retryAfter / time.Second), Count: 1})

	var failedAt time.Time
	eventually(t, 90*time.Second, func(g Gomega) {
		for _, name := range names {
			tok := env.GetToken(g, ns, name)
			if tok.Status.FailedAttempts == 0 {
				continue
			}
			refreshed := testenv.Condition(tok, v1alpha1.ConditionRefreshed)
			g.Expect(refreshed.Reason).To(Equal(v1alpha1.ReasonRateLimited))
			g.Expect(refreshed.Message).To(ContainSubstring("Retry-After"))
			g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonTokenValid))
			failedAt = tok.Status.LastFailureTime.Time
		}
		g.Expect(failedAt.IsZero()).To(BeFalse())
	})
	// While DingTalk asks to wait, the last good tokens stay, live at the simulator.
	for _, name := range names {
		g.Expect(targetToken(g, ns, name)).To(Equal(good[name]), name)
		live, _ := simValidate(t, good[name])
		g.Expect(live).To(BeTrue(), name)
	}
	eventually(t, retryAfter+30*time.Second, func(g Gomega) {
		for _, name := range names {
			tok := env.GetToken(g, ns, name)
			g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally(">", issued[name]), name)
			g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonTokenValid), name)
		}
	})
	totalAfter, faulted := calls(simulator.PathAppAccessToken, a.key)
	g.Expect(faulted).To(BeEquivalentTo(1))
	g.Expect(totalAfter-totalBefore).To(BeEquivalentTo(2), "the 429 and one call after Retry-After, shared: %v",
		env.Results(simulator.PathAppAccessToken, a.key))
	for _, name := range names {
		as := attempts(tr.history(name), issued[name])
		g.Expect(as).NotTo(BeEmpty())
		ok := as[len(as)-1]
		g.Expect(ok.failure).To(BeZero())
		g.Expect(ok.at).To(BeTemporally(">=", failedAt.Add(retryAfter-time.Second)), "%s: not before Retry-After:%s", name, describeAttempts(as))
		g.Expect(ok.at).To(BeTemporally("<=", failedAt.Add(retryAfter+time.Second+lateness)), "%s: soon after Retry-After:%s", name, describeAttempts(as))
		live, _ := simValidate(t, targetToken(g, ns, name))
		g.Expect(live).To(BeTrue())
	}
}

// simValidate asks the simulator, over HTTP, whether token is live and until when.
func simValidate(t *testing.T, token string) (bool, time.Time) {
	t.Helper()
	body, _ := json.Marshal(simulator.ValidateRequest{AccessToken: token})
	resp, err := http.Post(env.Sim.URL()+"/_sim/validate", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var ans simulator.ValidateAnswer
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		t.Fatal(err)
	}
	if !ans.Valid || ans.ExpiresAt == nil {
		return false, time.Time{}
	}
	return true, *ans.ExpiresAt
}
