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
	"slices"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

// shardLabel is the label the sharding scenario splits on.
const shardLabel = "sharding.dingtalk.tokens.dev/shard"

// testWatchLabelSelector: two operators, each with --watch-label-selector on its shard and a
// --leader-election-id of its own, split the DingTalkTokens and ClusterDingTalkTokens of one
// cluster (in one namespace too): each issues and writes its own shard's tokens, through its own
// DingTalk endpoint, and never writes a status or a Secret of the other shard; a token in neither
// shard is served by none; a token relabelled into the other shard is served there from then on.
func testWatchLabelSelector(t *testing.T) {
	sc := scenario("shard")
	g := NewWithT(t)
	ns := env.CreateNamespace(t, "shards")
	leaseNS := env.CreateNamespace(t, "shards-lease")
	// Each operator has a simulator of its own, and both know both apps: which simulator was
	// called tells which operator called.
	sims := map[string]*simulator.Server{"a": startSimulator(t), "b": startSimulator(t)}
	apps := map[string]string{}
	for _, shard := range []string{"a", "b"} {
		key, secret := newApp(t, sims["a"], life)
		envtesting.Must(t, sims["b"].AddApp(simulator.App{AppKey: key, AppSecret: secret, TokenLifetime: simulator.Duration(life)}))
		apps[shard] = key
		env.CreateSecret(t, ns, "creds-"+shard, map[string]string{"appKey": key, "appSecret": secret})
	}
	labels := func(shard string) map[string]string {
		return map[string]string{scenarioLabel: sc, shardLabel: shard}
	}
	for _, shard := range []string{"a", "b"} {
		for i := 1; i <= 2; i++ {
			env.Create(t, labelledToken(ns, fmt.Sprintf("%s-%d", shard, i), "creds-"+shard, labels(shard)))
		}
	}
	env.Create(t, labelledToken(ns, "none", "creds-a", map[string]string{scenarioLabel: sc}))
	// One ClusterDingTalkToken per shard, fanned out to a namespace of its own, with the
	// credentials of that shard's DingTalkTokens (one credential set: one call for all).
	fanNS := map[string]string{}
	for _, shard := range []string{"a", "b"} {
		pick := map[string]string{"scale.test.dingtalk.tokens.dev/fanout": sc + "-" + shard}
		fanNS[shard] = labelledNamespace(t, "shards-fan-"+shard, pick)
		env.Create(t, &v1alpha1.ClusterDingTalkToken{
			ObjectMeta: metav1.ObjectMeta{Name: "shard-" + shard + "-" + sc, Labels: labels(shard)},
			Spec: v1alpha1.ClusterDingTalkTokenSpec{
				Type:              v1alpha1.TokenTypeInternalApp,
				CredentialsRef:    v1alpha1.ClusterCredentialsReference{Namespace: ns, Name: "creds-" + shard},
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: pick},
				Target:            v1alpha1.ClusterTarget{Name: "shared-token"},
			},
		})
	}

	writes := map[string]*writeLog{"a": {}, "b": {}}
	for _, shard := range []string{"a", "b"} {
		o := managerOptions(sc, sims[shard], shardLabel+"="+shard)
		o.LeaderElection, o.LeaderElectionNamespace, o.LeaderElectionID = true, leaseNS, "shard-"+shard+".dingtalk.tokens.dev"
		env.StartManager(t, o, operator.Hooks{Logger: log, WrapClient: testenv.Intercept(writes[shard].funcs())})
	}
	for _, shard := range []string{"a", "b"} {
		for i := 1; i <= 2; i++ {
			readyWithin(t, ns, fmt.Sprintf("%s-%d", shard, i), time.Minute)
		}
		waitCluster(t, "shard-"+shard+"-"+sc, time.Minute, clusterReady)
	}
	// Both operators lead, each through its own Lease.
	for _, shard := range []string{"a", "b"} {
		var lease coordinationv1.Lease
		envtesting.Must(t, env.Client.Get(envtesting.Ctx(t), types.NamespacedName{Namespace: leaseNS, Name: "shard-" + shard + ".dingtalk.tokens.dev"}, &lease))
		g.Expect(ptr.Deref(lease.Spec.HolderIdentity, "")).NotTo(BeEmpty(), "Lease of shard %s", shard)
	}
	// One call per shard, to that shard's operator's endpoint only.
	for shard, other := range map[string]string{"a": "b", "b": "a"} {
		g.Expect(calls(sims[shard], apps[shard])).To(BeEquivalentTo(1), "shard %s: one call for its two tokens and its fan-out", shard)
		g.Expect(calls(sims[shard], apps[other])).To(BeZero(), "the operator of shard %s called for shard %s", shard, other)
	}
	// Neither served the token outside both shards.
	g.Consistently(func(g Gomega) {
		none := env.GetToken(g, ns, "none")
		g.Expect(none.Status.Conditions).To(BeEmpty(), "a token in no shard got a status")
		g.Expect(env.Client.Get(envtesting.Ctx(t), types.NamespacedName{Namespace: ns, Name: "none"}, &corev1.Secret{})).NotTo(Succeed())
	}).Within(2 * time.Second).Should(Succeed())
	// Each operator wrote its own shard's objects only.
	own := func(shard string) []string {
		out := []string{"ClusterDingTalkToken /shard-" + shard + "-" + sc, "Secret " + fanNS[shard] + "/shared-token"}
		for i := 1; i <= 2; i++ {
			out = append(out, fmt.Sprintf("DingTalkToken %s/%s-%d", ns, shard, i), fmt.Sprintf("Secret %s/%s-%d", ns, shard, i))
		}
		return out
	}
	for _, shard := range []string{"a", "b"} {
		got := writes[shard].objects()
		g.Expect(got).NotTo(BeEmpty())
		for _, o := range got {
			g.Expect(own(shard)).To(ContainElement(o), "the operator of shard %s wrote %s", shard, o)
		}
	}

	// a-2 moves to shard b, with a refresh request: b serves it (through its endpoint), a no more.
	mark := writes["a"].len()
	relabelled := time.Now()
	env.UpdateToken(t, ns, "a-2", func(tok *v1alpha1.DingTalkToken) {
		tok.Labels[shardLabel] = "b"
		tok.Annotations = map[string]string{v1alpha1.RefreshRequestedAtAnnotation: time.Now().UTC().Format(time.RFC3339)}
	})
	g.Eventually(func() int64 { return calls(sims["b"], apps["a"]) }).WithTimeout(30 * time.Second).Should(BeEquivalentTo(1))
	env.WaitRefreshedAfter(t, ns, "a-2", relabelled.Add(-time.Second), 30*time.Second)
	readyWithin(t, ns, "a-2", 10*time.Second)
	g.Expect(calls(sims["a"], apps["a"])).To(BeEquivalentTo(1), "shard a's operator called for a token it no longer serves")
	g.Expect(writes["a"].since(mark)).NotTo(ContainElement(ContainSubstring("/a-2")), "shard a's operator wrote a token it no longer serves")
	g.Expect(writes["b"].objects()).To(ContainElement("DingTalkToken " + ns + "/a-2"))
}

func clusterReady(c *v1alpha1.ClusterDingTalkToken) error {
	if r := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue {
		return fmt.Errorf("not Ready: %v", r)
	}
	return nil
}

// writeLog records every write a manager's reconcilers make: "Kind namespace/name".
type writeLog struct {
	mu      sync.Mutex
	entries []string
}

func (w *writeLog) add(kind, ns, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.entries = append(w.entries, kind+" "+ns+"/"+name)
}

func (w *writeLog) record(obj client.Object) {
	kind := fmt.Sprintf("%T", obj)
	switch obj.(type) {
	case *corev1.Secret:
		kind = "Secret"
	case *v1alpha1.DingTalkToken:
		kind = "DingTalkToken"
	case *v1alpha1.ClusterDingTalkToken:
		kind = "ClusterDingTalkToken"
	}
	w.add(kind, obj.GetNamespace(), obj.GetName())
}

func (w *writeLog) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.entries)
}

// since returns the entries recorded after the first n.
func (w *writeLog) since(n int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.entries[n:])
}

// objects returns the distinct objects written.
func (w *writeLog) objects() []string {
	all := w.since(0)
	slices.Sort(all)
	return slices.Compact(all)
}

// funcs records every write, then makes it.
func (w *writeLog) funcs() interceptor.Funcs {
	return interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			w.record(obj)
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			w.record(obj)
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			w.record(obj)
			return c.Patch(ctx, obj, patch, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			w.record(obj)
			return c.Delete(ctx, obj, opts...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			if s, ok := obj.(*corev1ac.SecretApplyConfiguration); ok {
				w.add("Secret", ptr.Deref(s.Namespace, ""), ptr.Deref(s.Name, ""))
			} else {
				w.add(fmt.Sprintf("%T", obj), "", "")
			}
			return c.Apply(ctx, obj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			w.record(obj)
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			w.record(obj)
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	}
}
