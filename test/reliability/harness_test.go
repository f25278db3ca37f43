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
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// dingtalkTimeout is the managers' --dingtalk-timeout: shorter than the operator's default so
// that the timeout case stays short; the timeout fault's latency exceeds it.
const dingtalkTimeout = 2 * time.Second

// startManager starts a manager for namespace ns as internal/operator builds it for cmd/main.go
// (with --dingtalk-timeout=2s), logging under the name ns; funcs, when set, wrap the reconciler's
// client: API-server write faults around the real calls. It stops when the test ends.
func startManager(t *testing.T, ns string, funcs *interceptor.Funcs) *testenv.Manager {
	t.Helper()
	o := env.ManagerOptions(ns)
	o.DingTalkTimeout = dingtalkTimeout
	hooks := operator.Hooks{Logger: logger.WithName(ns)}
	if funcs != nil {
		hooks.WrapClient = testenv.Intercept(*funcs)
	}
	return env.StartManager(t, o, hooks)
}

// app is an internal app the simulator accepts, with its credentials Secret.
type app struct {
	key, secret string
	// secretName names the credentials Secret.
	secretName string
}

// newApp registers an internal app with the simulator (tokens living lifetime) and writes its
// credentials Secret into ns.
func newApp(t *testing.T, ns, secretName string, lifetime time.Duration) app {
	t.Helper()
	a := app{key: "relapp" + testutil.RandHex(6), secret: secretValue("appSecret"), secretName: secretName}
	env.Sensitive.Add(testenv.Credential, a.key)
	envtesting.Must(t, env.Sim.AddApp(simulator.App{AppKey: a.key, AppSecret: a.secret, TokenLifetime: simulator.Duration(lifetime)}))
	env.CreateSecret(t, ns, secretName, map[string]string{"appKey": a.key, "appSecret": a.secret})
	return a
}

// suite is a third-party suite the simulator accepts, with its credentials Secret. Suite calls
// issue a new token every time, so a refresh is visible as a new value.
type suite struct {
	key, secret, ticket string
	secretName          string
}

func newSuite(t *testing.T, ns, secretName string, lifetime time.Duration) suite {
	t.Helper()
	s := suite{key: "relsuite" + testutil.RandHex(6), secret: secretValue("suiteSecret"), ticket: secretValue("suiteTicket"), secretName: secretName}
	env.Sensitive.Add(testenv.Credential, s.key)
	envtesting.Must(t, env.Sim.AddSuite(simulator.Suite{SuiteKey: s.key, SuiteSecret: s.secret, SuiteTicket: s.ticket,
		TokenLifetime: simulator.Duration(lifetime)}))
	env.CreateSecret(t, ns, secretName, map[string]string{"suiteKey": s.key, "suiteSecret": s.secret, "suiteTicket": s.ticket})
	return s
}

// targetToken returns the token the target Secret holds (read uncached, recorded for the leak scan).
func targetToken(g Gomega, ns, name string) string {
	return string(env.Secret(g, ns, name).Data[v1alpha1.DefaultTargetKey])
}

// calls returns the simulator's call count for one credential id at one endpoint: all calls,
// and those answered by an injected fault (or abandoned by the caller during one).
func calls(endpoint, cred string) (total, faulted int64) {
	c := env.Sim.Stats().Endpoints[endpoint].Credentials[cred]
	for result, n := range c.Results {
		if strings.HasPrefix(result, "fault:") || result == "canceled" {
			faulted += n
		}
	}
	return c.Total, faulted
}

// setFault adds a simulator fault; cases scope theirs to their own credential ids.
func setFault(t *testing.T, f simulator.Fault) {
	t.Helper()
	if f.Credential == "" {
		t.Fatal("faults must be scoped to a credential: cases share the simulator")
	}
	envtesting.Must(t, env.Sim.SetFault(f))
}

// faultPending reports whether a fault for cred is still set (Count faults disappear when used up).
func faultPending(cred string) bool {
	for _, f := range env.Sim.Faults() {
		if f.Credential == cred {
			return true
		}
	}
	return false
}

// observation is one version of a DingTalkToken's status, as a watch delivered it.
type observation struct {
	at     time.Time
	status v1alpha1.DingTalkTokenStatus
}

// tracker records every status version of the DingTalkTokens in a namespace (through an
// informer: each watch event, in order) and every token value in its Secrets (for the leak scan).
type tracker struct {
	mu   sync.Mutex
	hist map[string][]observation
}

// track starts a tracker on ns; it stops with the test.
func track(t *testing.T, ns string) *tracker {
	t.Helper()
	tr := &tracker{hist: map[string][]observation{}}
	c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := envtesting.Ctx(t)
	tokInf, err := c.GetInformer(ctx, &v1alpha1.DingTalkToken{})
	if err != nil {
		t.Fatal(err)
	}
	record := func(obj any) {
		if tok, ok := obj.(*v1alpha1.DingTalkToken); ok {
			tr.mu.Lock()
			tr.hist[tok.Name] = append(tr.hist[tok.Name], observation{at: time.Now(), status: *tok.Status.DeepCopy()})
			tr.mu.Unlock()
		}
	}
	if _, err := tokInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { record(obj) },
		UpdateFunc: func(_, obj any) { record(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	secInf, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		t.Fatal(err)
	}
	collect := func(obj any) {
		if s, ok := obj.(*corev1.Secret); ok && s.Labels[v1alpha1.ManagedByLabel] == v1alpha1.ManagedByValue {
			env.Sensitive.AddSecret(s)
		}
	}
	if _, err := secInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    collect,
		UpdateFunc: func(_, obj any) { collect(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("tracker cache did not sync")
	}
	return tr
}

// history returns the status versions of one DingTalkToken so far.
func (tr *tracker) history(name string) []observation {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]observation(nil), tr.hist[name]...)
}

// attempt is one DingTalk attempt as status recorded it: a failure (status.lastFailureTime,
// numbered by status.failedAttempts) or a success (status.lastRefreshTime).
type attempt struct {
	at      time.Time // second precision, as status keeps it
	failure int32     // the failedAttempts it made (0: a success)
	reason  string    // Refreshed reason after it
}

// attempts turns a status history into the attempts it records, in order, from after the
// given time (exclusive).
func attempts(hist []observation, after time.Time) []attempt {
	var out []attempt
	var lastFail, lastOK time.Time
	for _, o := range hist {
		st := o.status
		if st.LastFailureTime != nil && st.FailedAttempts > 0 && !st.LastFailureTime.Time.Equal(lastFail) {
			lastFail = st.LastFailureTime.Time
			if lastFail.After(after) {
				out = append(out, attempt{at: lastFail, failure: st.FailedAttempts, reason: refreshedReason(st)})
			}
		}
		if st.LastRefreshTime != nil && !st.LastRefreshTime.Time.Equal(lastOK) {
			lastOK = st.LastRefreshTime.Time
			if lastOK.After(after) {
				out = append(out, attempt{at: lastOK, reason: refreshedReason(st)})
			}
		}
	}
	return out
}

func refreshedReason(st v1alpha1.DingTalkTokenStatus) string {
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionRefreshed); c != nil {
		return c.Reason
	}
	return ""
}

// backoff is the operator's delay after the n-th consecutive failure of a transient kind, without
// its jitter: 5s*2^(n-1), capped at 5m.
func backoff(n int32) time.Duration {
	d := 5 * time.Second
	for i := int32(1); i < n && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// lateness is how late a due attempt may start on a loaded 2-core machine with -race: requeue,
// queueing and status-write latency. It only widens the upper side of timing checks.
const lateness = 3 * time.Second

// window is the range in which the attempt following the n-th consecutive failure at prev must
// start: prev plus the backoff +-10%, widened by the second precision of status times on the
// early side and by lateness on the late side. When the token (expiring at expires, zero: none)
// expires after that failure but before the backoff ends, the attempt comes at the expiry
// instead: the gate never backs off past the token's last useful moment. A failure in the same
// second as the expiry or later cannot be followed by such an early attempt.
func window(prev time.Time, n int32, expires time.Time) (lo, hi time.Time) {
	d := backoff(n)
	lo, hi = prev.Add(d*9/10-time.Second), prev.Add(d*11/10+lateness)
	if !expires.IsZero() && expires.After(prev.Add(time.Second)) && expires.Before(prev.Add(d*11/10)) {
		if e := expires.Add(-time.Second); e.Before(lo) {
			lo = e
		}
		if e := expires.Add(time.Second + lateness); e.Before(hi) {
			hi = e
		}
	}
	return lo, hi
}

// errInjected is the error an injected API write failure returns.
var errInjected = apierrors.NewServiceUnavailable("injected write failure")

// isSecret reports whether obj is a Secret.
func isSecret(obj client.Object) bool {
	_, ok := obj.(*corev1.Secret)
	return ok
}

// eventually is a Gomega Eventually with a timeout and a 100ms polling interval.
func eventually(t *testing.T, timeout time.Duration, f func(g Gomega)) {
	t.Helper()
	NewWithT(t).Eventually(f).WithTimeout(timeout).WithPolling(testenv.PollInterval).Should(Succeed())
}

// describeAttempts renders attempts for failure messages.
func describeAttempts(as []attempt) string {
	var b strings.Builder
	for _, a := range as {
		kind := "success"
		if a.failure > 0 {
			kind = fmt.Sprintf("failure #%d", a.failure)
		}
		fmt.Fprintf(&b, "\n  %s %s (%s)", a.at.UTC().Format(time.TimeOnly), kind, a.reason)
	}
	return b.String()
}
