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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

// The one-namespace shape: every DingTalkToken in one namespace, created one after the other by
// one client, the manager at its flag defaults, status read by listing the DingTalkTokens every
// second (in chunks of 500, as kubectl does) rather than through a watch: the load of a platform
// team applying a generated manifest and waiting with a script.

const (
	// oneNamespace holds every token and credentials Secret of the shape.
	oneNamespace = "bench-one"
	// listInterval is how often the shape lists the DingTalkTokens.
	listInterval = time.Second
	// listChunk is the page size of a List, as kubectl's.
	listChunk = 500
)

// oneNSResult holds the one-namespace shape's figures for one size. Memory in KiB.
type oneNSResult struct {
	s    size
	load map[string]string

	base               memory // the manager before the first create (no DingTalkToken yet)
	baseHeap           int64
	memLimit           float64       // bytes, the GOMEMLIMIT the manager reports (go_gc_gomemlimit_bytes)
	createSpan         time.Duration // the sequential creates
	allReady           time.Duration // from the first create to the first List that shows all Ready
	issueCalls         int64
	ready              memory // right after all were Ready (hwm: the peak so far)
	readyHeap          int64
	settled            memory // after --settle, the largest RSS of --rss-samples
	settledAll         []int64
	settledHeap        int64
	steadyCalls, ideal int64
	peak               int64 // VmHWM at the end of the shape
}

// heapPerToken is the live heap over the tokens, settled: in all, and over the manager's heap
// before the first create (what each token adds), in KiB.
func (r oneNSResult) heapPerToken() (all, added float64) {
	n := float64(r.s.tokens)
	return float64(r.settledHeap) / n, float64(r.settledHeap-r.baseHeap) / n
}

// listed is one DingTalkToken as a List shows it.
type listed struct {
	ready       bool
	lastRefresh time.Time
}

// listTokens lists the DingTalkTokens of ns in chunks, as `kubectl get dtt` does.
func listTokens(ctx context.Context, c client.Client, ns string) (map[string]listed, error) {
	out := map[string]listed{}
	cont := ""
	for {
		var l v1alpha1.DingTalkTokenList
		if err := c.List(ctx, &l, client.InNamespace(ns), client.Limit(listChunk), client.Continue(cont)); err != nil {
			return nil, err
		}
		for i := range l.Items {
			st := &l.Items[i].Status
			c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
			t := listed{ready: c != nil && c.Status == metav1.ConditionTrue}
			if st.LastRefreshTime != nil {
				t.lastRefresh = st.LastRefreshTime.Time
			}
			out[l.Items[i].Name] = t
		}
		if cont = l.Continue; cont == "" {
			return out, nil
		}
	}
}

// runOneNamespace runs the one-namespace shape of size s in a control plane of its own.
func (b *bench) runOneNamespace(ctx context.Context, s size) (oneNSResult, error) {
	p := b.p
	r := oneNSResult{s: s, load: map[string]string{"scale": loadavg()}}
	apps := newApps(s)
	w, err := b.startWorldWatching(ctx, apps, false)
	if err != nil {
		return r, err
	}
	defer w.stop()
	if err := w.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: oneNamespace}}); err != nil {
		return r, err
	}
	if err := createCredentials(ctx, w, apps, func(int) string { return oneNamespace }); err != nil {
		return r, err
	}
	m, err := b.start(w)
	if err != nil {
		return r, err
	}
	defer m.Kill()
	if err := waitServing(ctx, m); err != nil {
		return r, err
	}
	r.base, _ = m.memoryKiB()
	r.baseHeap = heapKiB(m)
	r.memLimit, _ = m.gauge("go_gc_gomemlimit_bytes")

	logf("One namespace: creating %d DingTalkTokens over %d credential sets one after the other", s.tokens, s.sets)
	profiled := b.cpuProfile(ctx, m, fmt.Sprintf("one-%d-cpu-scale.pprof", s.tokens))
	stopPeak := b.peakProfile(ctx, m, fmt.Sprintf("one-%d-heap-peak.pprof", s.tokens))
	defer stopPeak()
	t0 := time.Now()
	created := make(chan error, 1)
	go func() {
		for j := range s.tokens {
			if err := w.k8s.Create(ctx, bareToken(oneNamespace, j, s.sets, nil)); err != nil {
				created <- err
				return
			}
		}
		r.createSpan = time.Since(t0)
		created <- nil
	}()
	var createErr error
	done := false
	err = pollList(ctx, w, p.readyTimeout, func(tokens map[string]listed) bool {
		if !done {
			select {
			case createErr = <-created:
				done = true
			default:
			}
		}
		return createErr != nil || done && countListed(tokens) == s.tokens
	})
	if createErr != nil {
		return r, createErr
	}
	if err != nil {
		return r, fmt.Errorf("not every token was Ready after %s: %w", p.readyTimeout, err)
	}
	r.allReady = time.Since(t0)
	r.issueCalls = w.calls()
	r.ready, _ = m.memoryKiB()
	r.readyHeap = heapKiB(m)
	logf("One namespace: created in %s, all Ready after %s, %d DingTalk calls, RSS %d KiB (peak %d KiB), live heap %d KiB",
		r.createSpan.Round(time.Millisecond), r.allReady.Round(time.Millisecond), r.issueCalls, r.ready.rss, r.ready.hwm, r.readyHeap)
	<-profiled
	stopPeak()
	if err := m.profile(ctx, p.profileDir, fmt.Sprintf("one-%d-heap-ready.pprof", s.tokens), "heap?gc=1"); err != nil {
		logf("  %v", err)
	}

	r.load["settled"] = loadavg()
	if err := sleep(ctx, p.settle); err != nil {
		return r, err
	}
	if r.settled, r.settledAll, r.settledHeap, err = sampleMemory(ctx, p, m); err != nil {
		return r, err
	}
	if err := m.profile(ctx, p.profileDir, fmt.Sprintf("one-%d-heap-settled.pprof", s.tokens), "heap?gc=1"); err != nil {
		logf("  %v", err)
	}
	if p.scaleOnly {
		end, _ := m.memoryKiB()
		r.peak = end.hwm
		logf("One namespace: settled RSS %d KiB, live heap %d KiB; peak RSS %d KiB", r.settled.rss, r.settledHeap, r.peak)
		return r, nil
	}
	r.load["steady"] = loadavg()
	if r.steadyCalls, err = listedCycles(ctx, w, p.cycles, s.lifetime); err != nil {
		return r, err
	}
	r.ideal = int64(s.sets * p.cycles)
	end, _ := m.memoryKiB()
	r.peak = end.hwm
	logf("One namespace: settled RSS %d KiB, live heap %d KiB; %d refresh cycles: %d calls for an ideal %d; peak RSS %d KiB",
		r.settled.rss, r.settledHeap, p.cycles, r.steadyCalls, r.ideal, r.peak)
	return r, nil
}

// listedCycles counts the DingTalk calls while every token of the namespace is refreshed cycles
// times, as listing shows it (lastRefreshTime moved).
func listedCycles(ctx context.Context, w *world, cycles int, lifetime time.Duration) (int64, error) {
	logf("One namespace: waiting for %d refresh cycles of %s tokens", cycles, lifetime)
	last, err := listTokens(ctx, w.k8s, oneNamespace)
	if err != nil {
		return 0, err
	}
	seen := map[string]int{}
	calls0 := w.calls()
	err = pollList(ctx, w, time.Duration(cycles+2)*lifetime, func(tokens map[string]listed) bool {
		complete := true
		for name, t := range tokens {
			if !t.lastRefresh.Equal(last[name].lastRefresh) {
				seen[name]++
				last[name] = t
			}
			complete = complete && seen[name] >= cycles
		}
		return complete
	})
	if err != nil {
		return 0, fmt.Errorf("not every token was refreshed %d times: %w", cycles, err)
	}
	return w.calls() - calls0, nil
}

// pollList lists the shape's DingTalkTokens every listInterval until cond holds.
func pollList(ctx context.Context, w *world, timeout time.Duration, cond func(map[string]listed) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		tokens, err := listTokens(ctx, w.k8s, oneNamespace)
		if err == nil && cond(tokens) {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("timed out after %s", timeout)
			}
			return err
		}
		if err := sleep(ctx, listInterval); err != nil {
			return err
		}
	}
}

func countListed(tokens map[string]listed) int {
	n := 0
	for _, t := range tokens {
		if t.ready {
			n++
		}
	}
	return n
}

// createCredentials creates each app's credentials Secret creds-NNNN in the namespace nsOf
// gives its index.
func createCredentials(ctx context.Context, w *world, apps []simulator.App, nsOf func(int) string) error {
	return parallel(32, len(apps), func(i int) error {
		a := apps[i]
		return w.k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: nsOf(i), Name: fmt.Sprintf("creds-%04d", i)},
			StringData: map[string]string{"appKey": a.AppKey, "appSecret": a.AppSecret},
		})
	})
}

// bareToken is DingTalkToken tok-NNNNN of credential set j%sets in ns, with labels.
func bareToken(ns string, j, sets int, labels map[string]string) *v1alpha1.DingTalkToken {
	return &v1alpha1.DingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("tok-%05d", j), Labels: labels},
		Spec: v1alpha1.DingTalkTokenSpec{
			Type:           v1alpha1.TokenTypeInternalApp,
			CredentialsRef: v1alpha1.CredentialsReference{Name: fmt.Sprintf("creds-%04d", j%sets)},
		},
	}
}

// waitServing waits until the manager serves its metrics.
func waitServing(ctx context.Context, m *manager) error {
	if err := waitFor(ctx, time.Minute, func() bool { _, err := m.readyTokens(); return err == nil || m.Exited() }); err != nil || m.Exited() {
		return fmt.Errorf("the manager did not serve metrics (see %s)", m.logPath)
	}
	return nil
}
