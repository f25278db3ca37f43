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
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// longLifetime is DingTalk's real token lifetime, used once the steady state is measured: the
// restart phase needs tokens that are valid and not due.
const longLifetime = 7200 * time.Second

// bench is one run's world.
type bench struct {
	p          params
	dir        string
	kubeconfig string
	k8s        client.Client
	sim        *simulator.Server
	w          *watcher
	apps       []simulator.App
	extra      []string
	managers   int
	source     string // the commit the manager was built from
	r          results
}

// results are the figures.
type results struct {
	started, finished    time.Time
	loadStart, loadEnd   string
	createSpan, allReady time.Duration
	p50, p99             time.Duration
	scaleCalls           int64

	steadyCalls, steadyIdeal int64
	steadySpan               time.Duration
	peak                     int
	peakAt                   time.Time
	minRemaining             time.Duration
	notReady                 int

	restartCalls int64
	restartReady time.Duration

	rssNone, rssLive, rssNoise int64 // KiB, max of the samples
	rssNoneAll, rssNoiseAll    []int64
	heapNone, heapNoise        int64 // KiB, Go heap live after the last GC (max of the samples)
	noiseCreate                time.Duration
	noiseRestartCalls          int64
	noiseRestartReady          time.Duration
}

func run(ctx context.Context, p params) (string, error) {
	b := &bench{p: p, extra: strings.Fields(p.managerArgs)}
	b.r.started, b.r.loadStart = time.Now(), loadavg()
	dir, err := os.MkdirTemp("", "dingtalk-bench-")
	if err != nil {
		return "", err
	}
	b.dir = dir
	logf("Working directory %s (manager logs)", dir)

	bin := p.managerBin
	built := make(chan error, 1)
	b.source = "the binary " + bin
	if bin == "" {
		b.source = sourceRevision(p.root, p.rev)
		bin = filepath.Join(dir, "manager")
		go func() { built <- buildManager(p.root, p.rev, bin) }()
	} else {
		built <- nil
	}
	stop, err := b.startWorld(ctx)
	if stop != nil {
		defer stop()
	}
	if err != nil {
		<-built
		return "", err
	}
	if err := <-built; err != nil {
		return "", err
	}

	m, err := b.phaseScale(ctx, bin)
	if m != nil {
		defer func() { m.Kill() }()
	}
	if err != nil {
		return "", err
	}
	if err := b.phaseSteady(ctx); err != nil {
		return "", err
	}
	if err := b.longLifetimes(ctx); err != nil {
		return "", err
	}
	m2, err := b.phaseRestart(ctx, bin, m)
	if m2 != nil {
		defer func() { m2.Kill() }()
	}
	if err != nil {
		return "", err
	}
	if err := b.phaseMemory(ctx, bin, m2); err != nil {
		return "", err
	}
	b.r.finished, b.r.loadEnd = time.Now(), loadavg()
	return b.report(), nil
}

// startWorld starts envtest (with the CRD), a kubeconfig for the manager, the simulator with
// one internal app per credential set, the bench's client and its watcher.
func (b *bench) startWorld(ctx context.Context) (func(), error) {
	for i := range b.p.sets {
		b.apps = append(b.apps, simulator.App{
			AppKey:        fmt.Sprintf("benchapp%03d", i),
			AppSecret:     "bench-secret-" + testutil.RandHex(8),
			TokenLifetime: simulator.Duration(b.p.lifetime),
		})
	}
	logf("Starting envtest (KUBEBUILDER_ASSETS=%s)", os.Getenv("KUBEBUILDER_ASSETS"))
	env, err := testenv.Start(testenv.Options{Root: b.p.root, StartTimeout: 2 * time.Minute, Simulator: &simulator.Config{Apps: b.apps}})
	if err != nil {
		return nil, err
	}
	stop := func() { _ = env.Stop() }
	// The manager authenticates with a client certificate envtest issues, as cluster admin.
	b.kubeconfig = filepath.Join(b.dir, "kubeconfig")
	if err := env.AdminKubeconfig(b.kubeconfig, "dingtalk-token-operator-bench"); err != nil {
		return stop, err
	}
	b.k8s, b.sim = env.Client, env.Sim
	if b.w, err = newWatcher(ctx, testenv.Unthrottled(env.Config), env.Scheme); err != nil {
		return stop, err
	}
	return stop, nil
}

// calls is the simulator's count of token calls so far.
func (b *bench) calls() int64 { return b.sim.Stats().Total }

func (b *bench) start(bin string) (*manager, error) {
	b.managers++
	m, err := startManager(bin, b.kubeconfig, b.sim.URL(), filepath.Join(b.dir, fmt.Sprintf("manager-%d.log", b.managers)), b.extra)
	if err == nil {
		logf("Started manager %d (pid %d)", b.managers, m.Pid())
	}
	return m, err
}

// phaseScale creates the namespaces and credentials Secrets, starts the manager, then creates
// every DingTalkToken at once and waits until all are Ready.
func (b *bench) phaseScale(ctx context.Context, bin string) (*manager, error) {
	for i := range b.p.namespaces {
		if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i)}}); err != nil {
			return nil, err
		}
	}
	for i, a := range b.apps {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: b.setNamespace(i), Name: fmt.Sprintf("creds-%03d", i)},
			StringData: map[string]string{"appKey": a.AppKey, "appSecret": a.AppSecret},
		}
		if err := b.k8s.Create(ctx, s); err != nil {
			return nil, err
		}
	}
	m, err := b.start(bin)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, time.Minute, func() bool { _, err := m.readyTokens(); return err == nil || m.Exited() }); err != nil || m.Exited() {
		return m, fmt.Errorf("the manager did not serve metrics (see %s)", m.logPath)
	}

	// The client learns the kind's REST mapping before the clock starts.
	if err := b.k8s.List(ctx, &v1alpha1.DingTalkTokenList{}, client.Limit(1)); err != nil {
		return m, err
	}
	logf("Scale: creating %d DingTalkTokens over %d credential sets", b.p.tokens, b.p.sets)
	t0 := time.Now()
	err = parallel(32, b.p.tokens, func(j int) error {
		set := j % b.p.sets
		tok := &v1alpha1.DingTalkToken{
			ObjectMeta: metav1.ObjectMeta{Namespace: b.setNamespace(set), Name: fmt.Sprintf("tok-%04d", j)},
			Spec: v1alpha1.DingTalkTokenSpec{
				Type:           v1alpha1.TokenTypeInternalApp,
				CredentialsRef: v1alpha1.CredentialsReference{Name: fmt.Sprintf("creds-%03d", set)},
			},
		}
		if err := b.k8s.Create(ctx, tok); err != nil {
			return err
		}
		b.w.created(tokenKey(tok.Namespace, tok.Name), time.Now())
		return nil
	})
	if err != nil {
		return m, err
	}
	b.r.createSpan = time.Since(t0)
	if err := waitFor(ctx, b.p.readyTimeout, func() bool { return b.countReady() == b.p.tokens }); err != nil {
		return m, fmt.Errorf("only %d of %d tokens Ready after %s", b.countReady(), b.p.tokens, b.p.readyTimeout)
	}
	var last time.Time
	var lat []time.Duration
	for _, st := range b.w.snapshot() {
		lat = append(lat, st.ready.Sub(st.created))
		if st.ready.After(last) {
			last = st.ready
		}
	}
	slices.Sort(lat)
	b.r.allReady = last.Sub(t0)
	b.r.p50, b.r.p99 = percentile(lat, 50), percentile(lat, 99)
	b.r.scaleCalls = b.calls()
	logf("Scale: all Ready after %s (p50 %s, p99 %s), %d DingTalk calls", b.r.allReady.Round(time.Millisecond),
		b.r.p50.Round(time.Millisecond), b.r.p99.Round(time.Millisecond), b.r.scaleCalls)
	return m, nil
}

func (b *bench) setNamespace(set int) string { return fmt.Sprintf("bench-%d", set%b.p.namespaces) }

func (b *bench) countReady() int {
	n := 0
	for _, st := range b.w.snapshot() {
		if st.readyNow {
			n++
		}
	}
	return n
}

// phaseSteady counts DingTalk calls while every token is refreshed --cycles times.
func (b *bench) phaseSteady(ctx context.Context) error {
	logf("Steady state: waiting for %d refresh cycles of %s tokens", b.p.cycles, b.p.lifetime)
	before := b.snapshotRefreshes()
	callsA, tA := b.calls(), time.Now()
	b.w.setSteady(true)
	timeout := time.Duration(b.p.cycles+2) * b.p.lifetime
	err := waitFor(ctx, timeout, func() bool {
		for k, st := range b.w.snapshot() {
			if st.refreshes-before[k] < b.p.cycles {
				return false
			}
		}
		return true
	})
	b.w.setSteady(false)
	if err != nil {
		return fmt.Errorf("not every token was refreshed %d times within %s", b.p.cycles, timeout)
	}
	b.r.steadyCalls, b.r.steadySpan = b.calls()-callsA, time.Since(tA)
	b.r.steadyIdeal = int64(b.p.sets * b.p.cycles)
	b.r.peak, b.r.peakAt, b.r.minRemaining = b.w.peak()
	for _, st := range b.w.snapshot() {
		b.r.notReady += st.notReady
	}
	logf("Steady state: %d calls for an ideal %d; at most %d target Secrets changed in one second; least remaining lifetime %s",
		b.r.steadyCalls, b.r.steadyIdeal, b.r.peak, b.r.minRemaining.Round(time.Millisecond))
	return nil
}

func (b *bench) snapshotRefreshes() map[string]int {
	out := map[string]int{}
	for k, st := range b.w.snapshot() {
		out[k] = st.refreshes
	}
	return out
}

// longLifetimes makes the simulator issue 2-hour tokens from now on and waits until every
// DingTalkToken holds one (at its next due refresh).
func (b *bench) longLifetimes(ctx context.Context) error {
	logf("Switching the simulator to %s tokens and waiting for every token to hold one", longLifetime)
	for _, a := range b.apps {
		a.TokenLifetime = simulator.Duration(longLifetime)
		if err := b.sim.AddApp(a); err != nil {
			return err
		}
	}
	timeout := 2*b.p.lifetime + time.Minute
	return waitFor(ctx, timeout, func() bool {
		for _, st := range b.w.snapshot() {
			if st.lifetime < time.Hour || !st.readyNow {
				return false
			}
		}
		return true
	})
}

// phaseRestart kills the manager with SIGKILL, starts a new one and counts DingTalk calls in the
// restart window and the time until the new process reports every token Ready.
func (b *bench) phaseRestart(ctx context.Context, bin string, old *manager) (*manager, error) {
	logf("Restart: SIGKILL and a new manager with %d valid tokens", b.p.tokens)
	old.Kill()
	m, calls, ready, err := b.restart(ctx, bin)
	b.r.restartCalls, b.r.restartReady = calls, ready
	if err == nil {
		logf("Restart: %d DingTalk calls in %s; all Ready (new process) after %s", calls, b.p.restartWindow, ready.Round(time.Millisecond))
	}
	return m, err
}

// restart starts a manager and watches it for the restart window.
func (b *bench) restart(ctx context.Context, bin string) (*manager, int64, time.Duration, error) {
	before := b.calls()
	m, err := b.start(bin)
	if err != nil {
		return nil, 0, 0, err
	}
	var ready time.Duration
	end := m.started.Add(b.p.restartWindow)
	for time.Now().Before(end) || ready == 0 {
		if n, err := m.readyTokens(); err == nil && n == b.p.tokens && ready == 0 {
			ready = time.Since(m.started)
		}
		if m.Exited() {
			return m, 0, 0, fmt.Errorf("the manager exited (see %s)", m.logPath)
		}
		if time.Since(m.started) > b.p.readyTimeout {
			return m, 0, 0, fmt.Errorf("the new manager did not report all tokens Ready within %s", b.p.readyTimeout)
		}
		if err := testenv.Sleep(ctx, 250*time.Millisecond); err != nil {
			return m, 0, 0, err
		}
	}
	// Calls in the window only: a token due later is not a restart's doing.
	return m, b.calls() - before, ready, nil
}

// phaseMemory samples the manager's RSS with the tokens managed and no unrelated Secrets, creates
// the unrelated Secrets, samples the running manager again, then restarts it and samples the new
// process: the ratio compares two freshly started processes that differ only in the cluster's
// Secret count.
func (b *bench) phaseMemory(ctx context.Context, bin string, m *manager) error {
	// Settled: every token Ready for --settle.
	if err := b.settle(ctx, m, b.r.restartReady); err != nil {
		return err
	}
	logf("Memory: sampling the manager's RSS with no unrelated Secrets")
	var err error
	if b.r.rssNone, b.r.rssNoneAll, b.r.heapNone, err = b.sampleRSS(ctx, m); err != nil {
		return err
	}
	logf("Memory: creating %d unrelated %d-byte Secrets", b.p.noise, b.p.noiseSize)
	t0 := time.Now()
	noiseNS := max(1, min(10, b.p.noise/100))
	for i := range noiseNS {
		if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("noise-%d", i)}}); err != nil {
			return err
		}
	}
	err = parallel(32, b.p.noise, func(i int) error {
		blob := make([]byte, b.p.noiseSize)
		_, _ = rand.Read(blob)
		return b.k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("noise-%d", i%noiseNS), Name: fmt.Sprintf("unrelated-%05d", i)},
			Data:       map[string][]byte{"blob": blob},
		})
	})
	if err != nil {
		return err
	}
	b.r.noiseCreate = time.Since(t0)
	if err := b.settle(ctx, m, time.Since(m.started)); err != nil {
		return err
	}
	if b.r.rssLive, _, _, err = b.sampleRSS(ctx, m); err != nil {
		return err
	}
	logf("Memory: restarting the manager with the unrelated Secrets in the cluster")
	m.Kill()
	m3, calls, ready, err := b.restart(ctx, bin)
	if m3 != nil {
		defer m3.Kill()
	}
	if err != nil {
		return err
	}
	b.r.noiseRestartCalls, b.r.noiseRestartReady = calls, ready
	if err := b.settle(ctx, m3, ready); err != nil {
		return err
	}
	if b.r.rssNoise, b.r.rssNoiseAll, b.r.heapNoise, err = b.sampleRSS(ctx, m3); err != nil {
		return err
	}
	logf("Memory: RSS %d KiB without, %d KiB with the unrelated Secrets (ratio %.3f)", b.r.rssNone, b.r.rssNoise,
		float64(b.r.rssNoise)/float64(b.r.rssNone))
	return nil
}

// sampleRSS reads the manager's RSS --rss-samples times and returns the maximum and all samples,
// and the most live Go heap (as of the last GC) it reported at the same moments.
func (b *bench) sampleRSS(ctx context.Context, m *manager) (int64, []int64, int64, error) {
	var all []int64
	var heap int64
	for i := range b.p.rssSamples {
		if i > 0 {
			if err := testenv.Sleep(ctx, b.p.rssInterval); err != nil {
				return 0, nil, 0, err
			}
		}
		v, err := m.rssKiB()
		if err != nil {
			return 0, nil, 0, err
		}
		all = append(all, v)
		if h, err := m.gauge("go_gc_heap_live_bytes"); err == nil {
			heap = max(heap, int64(h)/1024)
		}
	}
	return slices.Max(all), all, heap, nil
}

// settle waits until the manager has had every token Ready for --settle, logging its RSS.
func (b *bench) settle(ctx context.Context, m *manager, ready time.Duration) error {
	until := m.started.Add(ready + b.p.settle)
	for time.Now().Before(until) {
		if v, err := m.rssKiB(); err == nil {
			logf("  manager RSS %d KiB", v)
		}
		if err := testenv.Sleep(ctx, min(10*time.Second, time.Until(until))); err != nil {
			return err
		}
	}
	return nil
}

// sourceRevision names the commit the manager is built from: rev (exported as committed), or
// the working tree's HEAD and the files that differ from it where the manager's code lives.
func sourceRevision(root, rev string) string {
	at := rev
	if at == "" {
		at = "HEAD"
	}
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", at).Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	desc := "commit " + strings.TrimSpace(string(out))
	if rev != "" {
		return desc + " (built from `git archive`)"
	}
	st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", "cmd", "controllers", "internal", "api", "go.mod").Output()
	if err != nil {
		return desc
	}
	var dirty []string
	for _, l := range strings.Split(strings.TrimSpace(string(st)), "\n") {
		if f := strings.Fields(l); len(f) == 2 && !strings.HasSuffix(f[1], "_test.go") {
			dirty = append(dirty, f[1])
		}
	}
	if len(dirty) == 0 {
		return desc + ", clean working tree"
	}
	return desc + " with uncommitted changes to " + strings.Join(dirty, ", ")
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(workers, n int, f func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitFor polls cond every 100ms until it holds or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		if err := testenv.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}
