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
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// bumpAnnotation is what the concurrent writer changes on the target Secret.
const bumpAnnotation = "reliability.test/bumped"

// testTargetUpdateConflict: another writer (a tool annotating Secrets, say) updates the target
// Secret between the operator's read and its write, three times in a row, at the refresh. Each
// write the operator makes then gets a real 409 Conflict from the API server. The refreshed token
// still lands, with no second DingTalk call, and the other writer's annotation survives.
//
// The interceptor does not fake the conflict: just before the operator's write reaches the API
// server, it has the test's own client update the Secret for real, so the operator's write
// carries a resourceVersion that is no longer current.
func testTargetUpdateConflict(t *testing.T) {
	const conflicts = 3
	ns := env.CreateNamespace(t, "rel-conflict")
	s := newSuite(t, ns, "creds", 30*time.Second)

	var mu sync.Mutex
	armed, bumps, seen := 0, 0, 0 // armed: conflicts still to cause; seen: 409s the operator got
	bump := func(ctx context.Context, obj client.Object) {
		mu.Lock()
		defer mu.Unlock()
		if armed == 0 || obj.GetNamespace() != ns || obj.GetName() != "tok" || !isSecret(obj) {
			return
		}
		live := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), live); err != nil {
			return
		}
		bumps++
		if live.Annotations == nil {
			live.Annotations = map[string]string{}
		}
		live.Annotations[bumpAnnotation] = strconv.Itoa(bumps)
		if err := env.Client.Update(ctx, live); err == nil {
			armed--
		}
	}
	observe := func(err error) error {
		if apierrors.IsConflict(err) {
			mu.Lock()
			seen++
			mu.Unlock()
		}
		return err
	}
	funcs := &interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			bump(ctx, obj)
			return observe(c.Update(ctx, obj, opts...))
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			bump(ctx, obj)
			return observe(c.Patch(ctx, obj, patch, opts...))
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			bump(ctx, appliedSecret(obj))
			return observe(c.Apply(ctx, obj, opts...))
		},
	}
	startManager(t, ns, funcs)
	track(t, ns)
	env.Create(t, testenv.NewToken(ns, "tok", v1alpha1.TokenTypeThirdPartySuite, "creds"))
	tok := env.WaitReady(t, ns, "tok")
	g := NewWithT(t)
	first := targetToken(g, ns, "tok")
	issued := tok.Status.LastRefreshTime.Time
	before, _ := calls(simulator.PathSuiteAccessToken, s.key)

	mu.Lock()
	armed = conflicts
	mu.Unlock()
	eventually(t, time.Until(tok.Status.ExpiresAt.Time)+30*time.Second, func(g Gomega) {
		tok = env.GetToken(g, ns, "tok")
		g.Expect(tok.Status.LastRefreshTime.Time).To(BeTemporally(">", issued))
		sec := env.Secret(g, ns, "tok")
		g.Expect(string(sec.Data[v1alpha1.DefaultTargetKey])).NotTo(Equal(first), "the refreshed token landed")
		g.Expect(sec.Annotations[v1alpha1.ExpiresAtAnnotation]).To(Equal(tok.Status.ExpiresAt.UTC().Format(time.RFC3339)))
		g.Expect(string(sec.Data[v1alpha1.ExpiresAtKey])).To(Equal(tok.Status.ExpiresAt.UTC().Format(time.RFC3339)))
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonTokenValid))
	})
	mu.Lock()
	g.Expect(armed).To(BeZero(), "every planned concurrent write happened")
	g.Expect(seen).To(BeNumerically(">=", conflicts), "the operator's writes met real conflicts")
	mu.Unlock()
	sec := env.Secret(g, ns, "tok")
	g.Expect(sec.Annotations).To(HaveKeyWithValue(bumpAnnotation, strconv.Itoa(conflicts)),
		"the other writer's annotation survives the operator's write")
	live, _ := simValidate(t, string(sec.Data[v1alpha1.DefaultTargetKey]))
	g.Expect(live).To(BeTrue())
	after, _ := calls(simulator.PathSuiteAccessToken, s.key)
	g.Expect(after-before).To(BeEquivalentTo(1), "a conflicting write does not fetch the token again")
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued))
}

// testTargetTakenThenDeleted: the operator's create of the target Secret is refused because a
// Secret of that name exists, and that Secret is deleted before the operator reads it: the pass
// finds nothing under the name, fails with NotFound (no panic) and is retried; the next create
// writes the token.
//
// Nothing is faked: just before the operator's create reaches the API server, the test creates a
// Secret of that name for real, and deletes it right after the API server refused the create.
func testTargetTakenThenDeleted(t *testing.T) {
	ns := env.CreateNamespace(t, "rel-taken")
	newApp(t, ns, "creds", 2*time.Minute)
	var mu sync.Mutex
	armed, raced := true, false
	funcs := &interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			mu.Lock()
			defer mu.Unlock()
			if !armed || obj.GetNamespace() != ns || obj.GetName() != "tok" || !isSecret(obj) {
				return c.Create(ctx, obj, opts...)
			}
			armed = false
			taken := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tok"}}
			if err := env.Client.Create(ctx, taken); err != nil {
				return err
			}
			err := c.Create(ctx, obj, opts...)
			if derr := env.Client.Delete(ctx, taken); derr != nil {
				return derr
			}
			raced = apierrors.IsAlreadyExists(err)
			return err
		},
	}
	startManager(t, ns, funcs)
	env.Create(t, testenv.NewToken(ns, "tok", v1alpha1.TokenTypeInternalApp, "creds"))
	tok := env.WaitReady(t, ns, "tok")
	g := NewWithT(t)
	mu.Lock()
	g.Expect(raced).To(BeTrue(), "the operator's first create met a Secret of that name")
	mu.Unlock()
	sec := env.Secret(g, ns, "tok")
	g.Expect(metav1.IsControlledBy(sec, tok)).To(BeTrue())
	live, _ := simValidate(t, string(sec.Data[v1alpha1.DefaultTargetKey]))
	g.Expect(live).To(BeTrue())
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, ns) {
			g.Expect(line).NotTo(ContainSubstring("panic"))
		}
	}
}

// testTargetDeletedMidRefresh: the target Secret is deleted while the refresh call is in flight
// (the simulator delays the answer). The operator writes the refreshed token into a new Secret,
// owned by the DingTalkToken, without calling DingTalk again.
func testTargetDeletedMidRefresh(t *testing.T) {
	// Below the client's timeout: the delayed answer is a success.
	const latency = dingtalkTimeout * 3 / 4
	ns := env.CreateNamespace(t, "rel-deleted")
	s := newSuite(t, ns, "creds", 30*time.Second)
	startManager(t, ns, nil)
	track(t, ns)
	env.Create(t, testenv.NewToken(ns, "tok", v1alpha1.TokenTypeThirdPartySuite, "creds"))
	tok := env.WaitReady(t, ns, "tok")
	g := NewWithT(t)
	old := env.Secret(g, ns, "tok")
	first := string(old.Data[v1alpha1.DefaultTargetKey])
	before, _ := calls(simulator.PathSuiteAccessToken, s.key)

	// A delay-only fault: the next call (the due refresh) is answered normally, latency later.
	setFault(t, simulator.Fault{Credential: s.key, Latency: simulator.Duration(latency), Count: 1})
	NewWithT(t).Eventually(func() bool { return faultPending(s.key) }).
		WithTimeout(time.Until(tok.Status.ExpiresAt.Time)+10*time.Second).WithPolling(20*time.Millisecond).
		Should(BeFalse(), "the refresh call arrived")
	g.Expect(env.Client.Delete(quiet, old)).To(Succeed())
	inFlight, _ := calls(simulator.PathSuiteAccessToken, s.key)
	g.Expect(inFlight).To(Equal(before), "the Secret was deleted before DingTalk answered")

	eventually(t, latency+30*time.Second, func(g Gomega) {
		sec := env.Secret(g, ns, "tok")
		g.Expect(sec.UID).NotTo(Equal(old.UID), "a new Secret")
		g.Expect(string(sec.Data[v1alpha1.DefaultTargetKey])).NotTo(Equal(first), "holding the refreshed token")
		tok = env.GetToken(g, ns, "tok")
		g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonTokenValid))
	})
	sec := env.Secret(g, ns, "tok")
	live, _ := simValidate(t, string(sec.Data[v1alpha1.DefaultTargetKey]))
	g.Expect(live).To(BeTrue())
	owner := metav1.GetControllerOf(sec)
	g.Expect(owner).NotTo(BeNil())
	g.Expect(owner.UID).To(Equal(tok.UID))
	g.Expect(owner.BlockOwnerDeletion).To(HaveValue(BeTrue()))
	g.Expect(sec.Labels).To(HaveKeyWithValue(v1alpha1.ManagedByLabel, v1alpha1.ManagedByValue))
	after, _ := calls(simulator.PathSuiteAccessToken, s.key)
	g.Expect(after-before).To(BeEquivalentTo(1), "the deletion did not cause another DingTalk call")
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Reason).To(Equal(v1alpha1.ReasonTokenIssued))
}

// appliedSecret is the Secret a server-side apply configuration names (an empty ConfigMap for
// anything else, which no fault matches).
func appliedSecret(obj runtime.ApplyConfiguration) client.Object {
	ac, ok := obj.(*corev1ac.SecretApplyConfiguration)
	if !ok {
		return &corev1.ConfigMap{}
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ptr.Deref(ac.Namespace, ""), Name: ptr.Deref(ac.Name, "")}}
}
