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

package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

const (
	// fanoutName names the ClusterDingTalkToken and its target Secrets.
	fanoutName = "bench-fanout"
	// fanoutLabel picks the namespaces it is written into.
	fanoutLabel = "bench.dingtalk.tokens.dev/fanout"
)

// fanoutResult holds the fan-out figures.
type fanoutResult struct {
	namespaces int
	lifetime   time.Duration
	load       map[string]string

	nsCreate    time.Duration // creating the namespaces (before the manager starts)
	provisioned time.Duration // from the create to the last namespace's target Secret
	statusAll   time.Duration // from the create to status.namespaces.provisioned == namespaces
	firstCalls  int64
	cycles      []fanoutCycle
	cpuIssue    float64
	mem         memory
	heap        int64
	cpu         float64 // CPU seconds over the whole scenario
	span        time.Duration
}

// fanoutCycle is one refresh of the fan-out.
type fanoutCycle struct {
	due     time.Time     // status.refreshTime before the refresh
	spread  time.Duration // from the first to the last namespace holding the new token
	dueLast time.Duration // from the due time to the last namespace holding it
	calls   int64
}

// runFanout writes one ClusterDingTalkToken into --fanout namespaces and follows --fanout-cycles
// refreshes, in a control plane of its own.
func (b *bench) runFanout(ctx context.Context) (fanoutResult, error) {
	p := b.p
	f := fanoutResult{namespaces: p.fanout, lifetime: p.fanoutLifetime, load: map[string]string{"start": loadavg()}}
	app := simulator.App{AppKey: "benchfanout", AppSecret: "bench-secret-" + testutil.RandHex(8), TokenLifetime: simulator.Duration(p.fanoutLifetime)}
	w, err := b.startWorld(ctx, []simulator.App{app})
	if err != nil {
		return f, err
	}
	defer w.stop()
	logf("Fan-out: creating %d namespaces", p.fanout)
	t0 := time.Now()
	if err := w.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench-platform"}}); err != nil {
		return f, err
	}
	err = parallel(32, p.fanout, func(i int) error {
		return w.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("team-%04d", i), Labels: map[string]string{fanoutLabel: "true"}}})
	})
	if err != nil {
		return f, err
	}
	f.nsCreate = time.Since(t0)
	if err := w.k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench-platform", Name: "credentials"},
		StringData: map[string]string{"appKey": app.AppKey, "appSecret": app.AppSecret},
	}); err != nil {
		return f, err
	}
	m, err := b.start(w)
	if err != nil {
		return f, err
	}
	defer m.Kill()
	if err := waitServing(ctx, m); err != nil {
		return f, err
	}
	cpu0, _ := m.cpuSeconds()
	profiled := b.cpuProfile(ctx, m, "fanout-cpu.pprof")
	logf("Fan-out: one ClusterDingTalkToken into %d namespaces", p.fanout)
	t1 := time.Now()
	if err := w.k8s.Create(ctx, &v1alpha1.ClusterDingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Name: fanoutName},
		Spec: v1alpha1.ClusterDingTalkTokenSpec{
			Type:              v1alpha1.TokenTypeInternalApp,
			CredentialsRef:    v1alpha1.ClusterCredentialsReference{Namespace: "bench-platform", Name: "credentials"},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{fanoutLabel: "true"}},
			Target:            v1alpha1.ClusterTarget{Name: fanoutName},
		},
	}); err != nil {
		return f, err
	}
	key := tokenKey("", fanoutName)
	err = waitFor(ctx, p.readyTimeout, func() bool {
		st := w.w.token(key)
		return len(w.w.secretsNamed(fanoutName)) == p.fanout && st.provisioned == int32(p.fanout) && st.readyNow
	})
	if err != nil {
		return f, fmt.Errorf("%d of %d namespaces provisioned after %s", len(w.w.secretsNamed(fanoutName)), p.fanout, p.readyTimeout)
	}
	var last time.Time
	for _, s := range w.w.secretsNamed(fanoutName) {
		last = latest(last, s.first)
	}
	f.provisioned = last.Sub(t1)
	f.statusAll = w.w.token(key).ready.Sub(t1)
	f.firstCalls = w.calls()
	cpu1, _ := m.cpuSeconds()
	f.cpuIssue = cpu1 - cpu0
	logf("Fan-out: every namespace provisioned after %s (status after %s), %d DingTalk calls",
		f.provisioned.Round(time.Millisecond), f.statusAll.Round(time.Millisecond), f.firstCalls)
	<-profiled

	f.load["refresh"] = loadavg()
	for range p.fanoutCycles {
		c, err := fanoutRefresh(ctx, w, p)
		if err != nil {
			return f, err
		}
		f.cycles = append(f.cycles, c)
		logf("Fan-out: a refresh reached every namespace %s after it was due (%s from the first to the last), %d DingTalk calls",
			c.dueLast.Round(time.Millisecond), c.spread.Round(time.Millisecond), c.calls)
	}
	f.mem, _ = m.memoryKiB()
	f.heap = heapKiB(m)
	cpu2, _ := m.cpuSeconds()
	f.cpu, f.span = cpu2, time.Since(m.started)
	if err := m.profile(ctx, p.profileDir, "fanout-heap.pprof", "heap?gc=1"); err != nil {
		logf("  %v", err)
	}
	return f, nil
}

// fanoutRefresh waits for the next refresh of the fan-out to reach every namespace.
func fanoutRefresh(ctx context.Context, w *world, p params) (fanoutCycle, error) {
	key := tokenKey("", fanoutName)
	st := w.w.token(key)
	c := fanoutCycle{due: st.refreshTime}
	calls0 := w.calls()
	before := w.w.secretsNamed(fanoutName)
	var first, last time.Time
	err := waitFor(ctx, p.fanoutLifetime+p.readyTimeout, func() bool {
		now := w.w.secretsNamed(fanoutName)
		first, last = time.Time{}, time.Time{}
		for ns, s := range now {
			if s.token == before[ns].token && s.expiry.Equal(before[ns].expiry) {
				return false
			}
			if first.IsZero() || s.changed.Before(first) {
				first = s.changed
			}
			last = latest(last, s.changed)
		}
		return len(now) == p.fanout
	})
	if err != nil {
		return c, fmt.Errorf("a refresh did not reach every namespace: %w", err)
	}
	c.spread, c.dueLast, c.calls = last.Sub(first), last.Sub(c.due), w.calls()-calls0
	return c, nil
}
