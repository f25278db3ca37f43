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
// restart with no token due needs tokens that are valid and not due.
const longLifetime = 7200 * time.Second

// bench is a run: the parameters, the manager binary and every scenario's results.
type bench struct {
	p      params
	dir    string
	bin    string
	source string // the commit the manager was built from
	extra  []string
	// managers counts the managers started (their log files are numbered).
	managers int
	sizes    []sizeResult
	oneNS    []oneNSResult
	shards   *shardsResult
	fan      *fanoutResult
	proxy    *proxyResult
	started  time.Time
	finished time.Time
}

// world is one scenario's control plane, simulator, client and watcher.
type world struct {
	env        *testenv.Environment
	kubeconfig string
	k8s        client.Client
	sim        *simulator.Server
	w          *watcher
	stop       context.CancelFunc
}

// sizeResult holds the figures of one size. Times are from the bench's clock; load averages
// (1, 5 and 15 minutes) are noted at each phase's start.
type sizeResult struct {
	s    size
	load map[string]string // by phase

	createSpan, allReady time.Duration
	p50, p99             time.Duration
	scaleCalls           int64
	scaleRequests        float64       // API requests the manager made while issuing the tokens
	scaleCPU             float64       // CPU seconds of the manager while issuing them
	scaleCPCPU           float64       // CPU seconds of the control plane (kube-apiserver, etcd) meanwhile
	scaleBusy            float64       // CPU seconds the whole machine was busy meanwhile
	scaleWindow          time.Duration // how long those were measured
	baseMem              memory        // the manager before the first create (no DingTalkToken yet)
	baseHeap             int64         // KiB
	scaleMem             memory        // right after all were Ready (hwm: the peak so far)
	scaleHeap            int64         // KiB, live heap right after all were Ready
	scaleSettled         memory        // the same process --settle later, the largest RSS of --rss-samples
	scaleSettledHeap     int64         // KiB
	scalePeak            int64         // KiB, VmHWM of the first process when it was stopped
	scrape               scrapeCost    // one scrape of the metrics, settled
	peakAll              int64         // KiB, the largest VmHWM of any manager process of the size

	steadyCalls, steadyIdeal int64
	steadySpan               time.Duration
	steadyCPU                float64
	peak                     int
	peakAt                   time.Time
	minRemaining             time.Duration
	notReady                 int

	dueWait        time.Duration // how long the tokens waited, manager down, until all were due
	dueCalls       int64
	dueRefreshed   time.Duration // from the new process's start to every token refreshed
	dueNotReady    int           // tokens seen not Ready meanwhile
	dueCPU         float64
	noneCalls      int64
	noneReady      time.Duration
	noneCPU        float64
	memNone        memory // fresh process, tokens Ready, no unrelated Secrets (max of samples)
	memNoneAll     []int64
	memNoise       memory // fresh process, with them
	memNoiseAll    []int64
	memLive        memory // the process that was running while they were created
	heapNone       int64  // KiB
	heapNoise      int64  // KiB
	noiseCreate    time.Duration
	noiseCalls     int64
	noiseReady     time.Duration
	settledCPU     float64 // CPU seconds of the fresh process over --settle, tokens Ready
	settledCPUSpan time.Duration
}

// run runs every scenario and returns their results (report renders them).
func run(ctx context.Context, p params) (*bench, error) {
	b := &bench{p: p, extra: strings.Fields(p.managerArgs), started: time.Now()}
	dir, err := os.MkdirTemp("", "dingtalk-bench-")
	if err != nil {
		return nil, err
	}
	b.dir = dir
	logf("Working directory %s (manager logs)", dir)
	if p.profileDir != "" {
		if err := os.MkdirAll(p.profileDir, 0o755); err != nil {
			return nil, err
		}
	}
	b.bin, b.source = p.managerBin, "the binary "+b.localPath(p.managerBin)
	if b.bin == "" {
		b.source = sourceRevision(p.root, p.rev)
	}
	if b.bin == "" && (len(p.sizes) > 0 || len(p.oneNamespace) > 0 || p.shards.tokens > 0 || p.fanout > 0) { // the proxy phase needs no manager
		b.bin = filepath.Join(dir, "manager")
		logf("Building the manager")
		if err := buildBinary(p.root, p.rev, "./cmd", b.bin, releaseFlags...); err != nil {
			return nil, err
		}
	}
	for _, s := range p.sizes {
		r, err := b.runSize(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("size %s: %w", s, err)
		}
		b.sizes = append(b.sizes, r)
	}
	for _, s := range p.oneNamespace {
		r, err := b.runOneNamespace(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("one namespace, size %s: %w", s, err)
		}
		b.oneNS = append(b.oneNS, r)
	}
	if p.shards.tokens > 0 {
		r, err := b.runShards(ctx, p.shards)
		if err != nil {
			return nil, fmt.Errorf("two shards, size %s: %w", p.shards, err)
		}
		b.shards = &r
	}
	if p.fanout > 0 {
		f, err := b.runFanout(ctx)
		if err != nil {
			return nil, fmt.Errorf("fan-out: %w", err)
		}
		b.fan = &f
	}
	if p.proxy.enabled {
		r, err := b.runProxy(ctx)
		if err != nil {
			return nil, fmt.Errorf("dingtalk-token-proxy: %w", err)
		}
		b.proxy = &r
	}
	b.finished = time.Now()
	return b, nil
}

// startWorld starts envtest (with the CRDs), a kubeconfig for the manager, the simulator with
// apps, the bench's client and its watcher.
func (b *bench) startWorld(ctx context.Context, apps []simulator.App) (*world, error) {
	return b.startWorldWatching(ctx, apps, true)
}

// startWorldWatching is startWorld, without the watcher unless watch is set (a scenario that reads
// status by listing, as a platform team's script would).
func (b *bench) startWorldWatching(ctx context.Context, apps []simulator.App, watch bool) (*world, error) {
	logf("Starting envtest (KUBEBUILDER_ASSETS=%s)", os.Getenv("KUBEBUILDER_ASSETS"))
	env, err := testenv.Start(testenv.Options{Root: b.p.root, StartTimeout: 2 * time.Minute, Simulator: &simulator.Config{Apps: apps}})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &world{env: env, k8s: env.Client, sim: env.Sim, stop: func() { cancel(); _ = env.Stop() }}
	// The manager authenticates with a client certificate envtest issues, as cluster admin.
	w.kubeconfig = filepath.Join(b.dir, fmt.Sprintf("kubeconfig-%d", time.Now().UnixNano()))
	if err := env.AdminKubeconfig(w.kubeconfig, "dingtalk-token-operator-bench"); err != nil {
		w.stop()
		return nil, err
	}
	if !watch {
		return w, nil
	}
	if w.w, err = newWatcher(wctx, testenv.Unthrottled(env.Config), env.Scheme); err != nil {
		w.stop()
		return nil, err
	}
	return w, nil
}

// calls is the simulator's count of token calls so far.
func (w *world) calls() int64 { return w.sim.Stats().Total }

func (b *bench) start(w *world) (*manager, error) { return b.startAt(w, w.sim.URL()) }

// startAt starts a manager calling DingTalk at endpoint, with the bench's extra flags and then
// more (a shard's selector and lease).
func (b *bench) startAt(w *world, endpoint string, more ...string) (*manager, error) {
	b.managers++
	var env []string
	if b.p.gomemlimit != "" {
		env = []string{"GOMEMLIMIT=" + b.p.gomemlimit}
	}
	m, err := startManager(b.bin, w.kubeconfig, endpoint, filepath.Join(b.dir, fmt.Sprintf("manager-%d.log", b.managers)),
		env, append(slices.Clone(b.extra), more...))
	if err == nil {
		logf("Started manager %d (pid %d)", b.managers, m.Pid())
		if b.p.scrapeInterval > 0 {
			go m.scrapeEvery(b.p.scrapeInterval)
		}
	}
	return m, err
}

// runSize runs the phases of one size in a control plane of its own.
func (b *bench) runSize(ctx context.Context, s size) (sizeResult, error) {
	r := sizeResult{s: s, load: map[string]string{}}
	apps := newApps(s)
	w, err := b.startWorld(ctx, apps)
	if err != nil {
		return r, err
	}
	defer w.stop()
	sz := sizeRun{b: b, w: w, r: &r, apps: apps}
	err = sz.phases(ctx)
	// Every process is stopped, and its peak RSS noted, before the figures are returned.
	for _, m := range sz.running {
		sz.retire(m)
	}
	return r, err
}

// phases runs the size's phases one after the other; the managers it starts are in z.running.
func (z *sizeRun) phases(ctx context.Context) error {
	m, err := z.scale(ctx)
	if err != nil || z.b.p.scaleOnly {
		return err
	}
	if err := z.steady(ctx, m); err != nil {
		return err
	}
	m2, err := z.restartDue(ctx, m)
	if err != nil {
		return err
	}
	if err := z.longLifetimes(ctx); err != nil {
		return err
	}
	m3, err := z.restartNoneDue(ctx, m2)
	if err != nil {
		return err
	}
	return z.memory(ctx, m3)
}

// newApps are the simulator apps of a size's credential sets.
func newApps(s size) []simulator.App {
	var apps []simulator.App
	for i := range s.sets {
		apps = append(apps, simulator.App{
			AppKey:        fmt.Sprintf("benchapp%04d", i),
			AppSecret:     "bench-secret-" + testutil.RandHex(8),
			TokenLifetime: simulator.Duration(s.lifetime),
		})
	}
	return apps
}

// sizeRun is the state of one size's run.
type sizeRun struct {
	b    *bench
	w    *world
	r    *sizeResult
	apps []simulator.App
	// running are the managers started and not yet retired.
	running []*manager
}

func (z *sizeRun) namespace(set int) string { return fmt.Sprintf("bench-%d", set%z.b.p.namespaces) }

// name prefixes the size's profile files.
func (z *sizeRun) name(phase string) string { return fmt.Sprintf("%d-%s.pprof", z.r.s.tokens, phase) }

// scale creates the namespaces and credentials Secrets, starts the manager, then creates every
// DingTalkToken at once and waits until all are Ready.
func (z *sizeRun) scale(ctx context.Context) (*manager, error) {
	p, r, w := z.b.p, z.r, z.w
	r.load["scale"] = loadavg()
	for i := range p.namespaces {
		if err := w.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i)}}); err != nil {
			return nil, err
		}
	}
	if err := createCredentials(ctx, w, z.apps, z.namespace); err != nil {
		return nil, err
	}
	m, err := z.start()
	if err != nil {
		return nil, err
	}
	if err := waitServing(ctx, m); err != nil {
		return m, err
	}
	r.baseMem, _ = m.memoryKiB()
	r.baseHeap = heapKiB(m)
	// The client learns the kind's REST mapping before the clock starts.
	if err := w.k8s.List(ctx, &v1alpha1.DingTalkTokenList{}, client.Limit(1)); err != nil {
		return m, err
	}
	cpu0, _ := m.cpuSeconds()
	cp0, busy0, w0 := controlPlaneCPU(), machineBusy(), time.Now()
	req0, reqErr := m.apiRequests()
	logf("Scale: creating %d DingTalkTokens over %d credential sets", r.s.tokens, r.s.sets)
	profiled := z.b.cpuProfile(ctx, m, z.name("cpu-scale"))
	stopPeak := z.b.peakProfile(ctx, m, z.name("heap-peak"))
	defer stopPeak()
	t0 := time.Now()
	err = parallel(32, r.s.tokens, func(j int) error {
		tok := bareToken(z.namespace(j%r.s.sets), j, r.s.sets, nil)
		if err := w.k8s.Create(ctx, tok); err != nil {
			return err
		}
		w.w.created(tokenKey(tok.Namespace, tok.Name), time.Now())
		return nil
	})
	if err != nil {
		return m, err
	}
	r.createSpan = time.Since(t0)
	if err := waitFor(ctx, p.readyTimeout, func() bool { return countReady(w.w) == r.s.tokens }); err != nil {
		return m, fmt.Errorf("only %d of %d tokens Ready after %s", countReady(w.w), r.s.tokens, p.readyTimeout)
	}
	var last time.Time
	var lat []time.Duration
	for _, st := range w.w.snapshot() {
		lat = append(lat, st.ready.Sub(st.created))
		if st.ready.After(last) {
			last = st.ready
		}
	}
	slices.Sort(lat)
	r.allReady = last.Sub(t0)
	r.p50, r.p99 = percentile(lat, 50), percentile(lat, 99)
	r.scaleCalls = w.calls()
	cpu1, _ := m.cpuSeconds()
	r.scaleCPCPU, r.scaleBusy, r.scaleWindow = controlPlaneCPU()-cp0, machineBusy()-busy0, time.Since(w0)
	// Memory first: the request count is read by a scrape of the metrics, which costs memory of
	// its own (measured below).
	r.scaleMem, _ = m.memoryKiB()
	req1, err := m.apiRequests()
	r.scaleCPU, r.scaleRequests = cpu1-cpu0, req1-req0
	if reqErr != nil || err != nil {
		r.scaleRequests = -1 // unknown
	}
	r.scaleHeap = heapKiB(m)
	logf("Scale: all Ready after %s (p50 %s, p99 %s), %d DingTalk calls, %.0f API requests, %.1f CPU seconds, RSS %d KiB",
		r.allReady.Round(time.Millisecond), r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond),
		r.scaleCalls, r.scaleRequests, r.scaleCPU, r.scaleMem.rss)
	<-profiled
	stopPeak()
	if err := m.profile(ctx, z.b.p.profileDir, z.name("heap-ready"), "heap?gc=1"); err != nil {
		logf("  %v", err)
	}
	// The same process, settled: what it keeps once the burst of issuing is over.
	r.load["scale-settled"] = loadavg()
	if err := sleep(ctx, p.settle); err != nil {
		return m, err
	}
	if r.scaleSettled, _, r.scaleSettledHeap, err = sampleMemory(ctx, p, m); err != nil {
		return m, err
	}
	logf("Scale: settled RSS %d KiB (peak %d KiB), live heap %d KiB", r.scaleSettled.rss, r.scaleSettled.hwm, r.scaleSettledHeap)
	if err := m.profile(ctx, z.b.p.profileDir, z.name("heap-scale-settled"), "heap?gc=1"); err != nil {
		logf("  %v", err)
	}
	r.scrape = m.scrapeCost(ctx)
	logf("Scale: one scrape of the metrics: %d bytes in %s, RSS %d -> %d KiB", r.scrape.bytes, r.scrape.took.Round(time.Millisecond),
		r.scrape.before.rss, r.scrape.after.rss)
	return m, nil
}

// start starts a manager of the size; retire stops it.
func (z *sizeRun) start() (*manager, error) {
	m, err := z.b.start(z.w)
	if m != nil {
		z.running = append(z.running, m)
	}
	return m, err
}

// retire stops a manager of the size with SIGKILL, after noting its peak RSS (VmHWM).
func (z *sizeRun) retire(m *manager) {
	i := slices.Index(z.running, m)
	if i < 0 {
		return // retired already
	}
	z.running = slices.Delete(z.running, i, i+1)
	if v, err := m.memoryKiB(); err == nil {
		z.r.peakAll = max(z.r.peakAll, v.hwm)
		if z.r.scalePeak == 0 {
			z.r.scalePeak = v.hwm // the first process retired is the one that issued the tokens
		}
	}
	m.Kill()
}

// heapPerToken is the settled live heap of the process that issued the tokens over the tokens:
// in all, and over its heap before the first create (what each token adds), in KiB.
func (r sizeResult) heapPerToken() (all, added float64) {
	n := float64(r.s.tokens)
	return float64(r.scaleSettledHeap) / n, float64(r.scaleSettledHeap-r.baseHeap) / n
}

// cpuProfile takes a CPU profile of --profile-seconds in the background; the channel closes when
// it is written (at once when profiles are off).
func (b *bench) cpuProfile(ctx context.Context, m *manager, name string) <-chan struct{} {
	done := make(chan struct{})
	if b.p.profileDir == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		if err := m.profile(ctx, b.p.profileDir, name, fmt.Sprintf("profile?seconds=%d", b.p.profileSeconds)); err != nil {
			logf("  %v", err)
		}
	}()
	return done
}

// peakProfile writes a heap profile (as of the last collection, none forced) to name whenever the
// manager's RSS is 2% over the most it had when the last one was written, while tokens are
// issued: the heap of the moment memory peaks. The returned function stops it and waits.
func (b *bench) peakProfile(ctx context.Context, m *manager, name string) func() {
	if b.p.profileDir == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var top int64
		for ctx.Err() == nil {
			if v, err := m.memoryKiB(); err == nil && v.rss > top+top/50 {
				top = v.rss
				if err := m.profile(ctx, b.p.profileDir, name, "heap"); err == nil {
					logf("  (the heap at RSS %d KiB)", v.rss)
				}
			}
			_ = sleep(ctx, 2*time.Second)
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

func countReady(w *watcher) int {
	n := 0
	for _, st := range w.snapshot() {
		if st.readyNow {
			n++
		}
	}
	return n
}

// steady counts DingTalk calls while every token is refreshed --cycles times.
func (z *sizeRun) steady(ctx context.Context, m *manager) error {
	p, r, w := z.b.p, z.r, z.w
	r.load["steady"] = loadavg()
	logf("Steady state: waiting for %d refresh cycles of %s tokens", p.cycles, r.s.lifetime)
	before := refreshCounts(w.w)
	callsA, tA := w.calls(), time.Now()
	cpu0, _ := m.cpuSeconds()
	w.w.setSteady(true)
	timeout := time.Duration(p.cycles+2) * r.s.lifetime
	err := waitFor(ctx, timeout, func() bool { return allRefreshed(w.w, before, p.cycles) })
	w.w.setSteady(false)
	if err != nil {
		return fmt.Errorf("not every token was refreshed %d times within %s", p.cycles, timeout)
	}
	r.steadyCalls, r.steadySpan = w.calls()-callsA, time.Since(tA)
	r.steadyIdeal = int64(r.s.sets * p.cycles)
	cpu1, _ := m.cpuSeconds()
	r.steadyCPU = cpu1 - cpu0
	r.peak, r.peakAt, r.minRemaining = w.w.peak()
	for _, st := range w.w.snapshot() {
		r.notReady += st.notReady
	}
	logf("Steady state: %d calls for an ideal %d; at most %d target Secrets changed in one second; least remaining lifetime %s",
		r.steadyCalls, r.steadyIdeal, r.peak, r.minRemaining.Round(time.Millisecond))
	return nil
}

func refreshCounts(w *watcher) map[string]int {
	out := map[string]int{}
	for k, st := range w.snapshot() {
		out[k] = st.refreshes
	}
	return out
}

// allRefreshed reports whether every token was refreshed n times since before.
func allRefreshed(w *watcher, before map[string]int, n int) bool {
	for k, st := range w.snapshot() {
		if st.refreshes-before[k] < n {
			return false
		}
	}
	return true
}

// restartDue kills the manager, waits until every token is due (status.refreshTime passed), then
// starts a new process and counts the DingTalk calls until every token is refreshed.
func (z *sizeRun) restartDue(ctx context.Context, old *manager) (*manager, error) {
	r, w := z.r, z.w
	r.load["restart-due"] = loadavg()
	logf("Restart with every token due: SIGKILL, then a new manager once every token is due")
	z.retire(old)
	t0 := time.Now()
	var due time.Time
	for _, st := range w.w.snapshot() {
		due = latest(due, st.refreshTime)
	}
	if err := sleep(ctx, time.Until(due.Add(time.Second))); err != nil {
		return nil, err
	}
	r.dueWait = time.Since(t0)
	before := refreshCounts(w.w)
	notReady := 0
	for _, st := range w.w.snapshot() {
		notReady += st.notReady
	}
	calls0 := w.calls()
	m, err := z.start()
	if err != nil {
		return nil, err
	}
	err = waitFor(ctx, z.b.p.readyTimeout, func() bool { return allRefreshed(w.w, before, 1) || m.Exited() })
	if err != nil || m.Exited() {
		return m, fmt.Errorf("not every due token was refreshed after the restart (see %s)", m.logPath)
	}
	r.dueRefreshed = time.Since(m.started)
	r.dueCalls = w.calls() - calls0
	r.dueCPU, _ = m.cpuSeconds()
	for _, st := range w.w.snapshot() {
		r.dueNotReady += st.notReady
	}
	r.dueNotReady -= notReady
	logf("Restart with every token due: %d DingTalk calls (ideal %d), every token refreshed %s after the start",
		r.dueCalls, r.s.sets, r.dueRefreshed.Round(time.Millisecond))
	return m, nil
}

// longLifetimes makes the simulator issue 2-hour tokens from now on and waits until every
// DingTalkToken holds one (at its next due refresh).
func (z *sizeRun) longLifetimes(ctx context.Context) error {
	logf("Switching the simulator to %s tokens and waiting for every token to hold one", longLifetime)
	for _, a := range z.apps {
		a.TokenLifetime = simulator.Duration(longLifetime)
		if err := z.w.sim.AddApp(a); err != nil {
			return err
		}
	}
	timeout := 2*z.r.s.lifetime + z.b.p.readyTimeout
	return waitFor(ctx, timeout, func() bool {
		for _, st := range z.w.w.snapshot() {
			if st.lifetime < time.Hour || !st.readyNow {
				return false
			}
		}
		return true
	})
}

// restartNoneDue kills the manager with SIGKILL, starts a new one and counts DingTalk calls in
// the restart window and the time until the new process reports every token Ready.
func (z *sizeRun) restartNoneDue(ctx context.Context, old *manager) (*manager, error) {
	r := z.r
	r.load["restart-none-due"] = loadavg()
	logf("Restart with no token due: SIGKILL and a new manager with %d valid tokens", r.s.tokens)
	z.retire(old)
	m, calls, ready, err := z.restart(ctx)
	r.noneCalls, r.noneReady = calls, ready
	if err == nil {
		r.noneCPU, _ = m.cpuSeconds()
		logf("Restart with no token due: %d DingTalk calls in %s; all Ready (new process) after %s",
			calls, z.b.p.restartWindow, ready.Round(time.Millisecond))
	}
	return m, err
}

// restart starts a manager and watches it for the restart window.
func (z *sizeRun) restart(ctx context.Context) (*manager, int64, time.Duration, error) {
	p := z.b.p
	before := z.w.calls()
	m, err := z.start()
	if err != nil {
		return nil, 0, 0, err
	}
	var ready time.Duration
	end := m.started.Add(p.restartWindow)
	for time.Now().Before(end) || ready == 0 {
		if n, err := m.readyTokens(); err == nil && n == z.r.s.tokens && ready == 0 {
			ready = time.Since(m.started)
		}
		if m.Exited() {
			return m, 0, 0, fmt.Errorf("the manager exited (see %s)", m.logPath)
		}
		if time.Since(m.started) > p.readyTimeout {
			return m, 0, 0, fmt.Errorf("the new manager did not report all tokens Ready within %s", p.readyTimeout)
		}
		// A scrape costs the manager about 0.1 ms per token: at most ten a second, fewer for
		// many tokens.
		if err := sleep(ctx, max(100*time.Millisecond, time.Duration(z.r.s.tokens)*100*time.Microsecond)); err != nil {
			return m, 0, 0, err
		}
	}
	// Calls in the window only: a token due later is not a restart's doing.
	return m, z.w.calls() - before, ready, nil
}

// memory samples the RSS and live heap of a freshly started manager with the tokens Ready and
// no unrelated Secrets, creates the unrelated Secrets, samples the running manager again, then
// restarts it and samples the new process: the ratio compares two freshly started processes that
// differ only in the cluster's Secret count.
func (z *sizeRun) memory(ctx context.Context, m *manager) error {
	p, r, w := z.b.p, z.r, z.w
	r.load["memory"] = loadavg()
	// CPU while nothing is due: from the end of the restart window to the last sample.
	cpu0, _ := m.cpuSeconds()
	t0 := time.Now()
	if err := settle(ctx, m, r.noneReady, p.settle); err != nil {
		return err
	}
	logf("Memory: sampling the manager's RSS with no unrelated Secrets")
	var err error
	if r.memNone, r.memNoneAll, r.heapNone, err = sampleMemory(ctx, p, m); err != nil {
		return err
	}
	cpu1, _ := m.cpuSeconds()
	r.settledCPU, r.settledCPUSpan = cpu1-cpu0, time.Since(t0)
	if err := m.profile(ctx, p.profileDir, z.name("heap-settled"), "heap?gc=1"); err != nil {
		logf("  %v", err)
	}
	logf("Memory: creating %d unrelated %d-byte Secrets", p.noise, p.noiseSize)
	t1 := time.Now()
	noiseNS := max(1, min(10, p.noise/100))
	for i := range noiseNS {
		if err := w.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("noise-%d", i)}}); err != nil {
			return err
		}
	}
	err = parallel(32, p.noise, func(i int) error {
		blob := make([]byte, p.noiseSize)
		_, _ = rand.Read(blob)
		return w.k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("noise-%d", i%noiseNS), Name: fmt.Sprintf("unrelated-%05d", i)},
			Data:       map[string][]byte{"blob": blob},
		})
	})
	if err != nil {
		return err
	}
	r.noiseCreate = time.Since(t1)
	if err := settle(ctx, m, time.Since(m.started), p.settle); err != nil {
		return err
	}
	if r.memLive, _, _, err = sampleMemory(ctx, p, m); err != nil {
		return err
	}
	logf("Memory: restarting the manager with the unrelated Secrets in the cluster")
	z.retire(m)
	m3, calls, ready, err := z.restart(ctx)
	if m3 != nil {
		defer z.retire(m3)
	}
	if err != nil {
		return err
	}
	r.noiseCalls, r.noiseReady = calls, ready
	if err := settle(ctx, m3, ready, p.settle); err != nil {
		return err
	}
	if r.memNoise, r.memNoiseAll, r.heapNoise, err = sampleMemory(ctx, p, m3); err != nil {
		return err
	}
	if err := m3.profile(ctx, p.profileDir, z.name("heap-noise"), "heap?gc=1"); err != nil {
		logf("  %v", err)
	}
	logf("Memory: RSS %d KiB without, %d KiB with the unrelated Secrets (ratio %.3f)", r.memNone.rss, r.memNoise.rss,
		float64(r.memNoise.rss)/float64(r.memNone.rss))
	return nil
}

// sampleMemory reads the manager's memory --rss-samples times and returns the sample with the
// largest RSS, every RSS, and then its live heap (after a forced collection, read once the RSS
// samples are taken: a collection lets the runtime return memory).
func sampleMemory(ctx context.Context, p params, m *manager) (memory, []int64, int64, error) {
	var all []int64
	var best memory
	for i := range p.rssSamples {
		if i > 0 {
			if err := sleep(ctx, p.rssInterval); err != nil {
				return best, nil, 0, err
			}
		}
		v, err := m.memoryKiB()
		if err != nil {
			return best, nil, 0, err
		}
		all = append(all, v.rss)
		if v.rss > best.rss {
			best = v
		}
	}
	return best, all, heapKiB(m), nil
}

// heapKiB is the manager's live Go heap (manager.liveHeap) in KiB, 0 when unknown.
func heapKiB(m *manager) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := m.liveHeap(ctx)
	if err != nil {
		logf("  the live heap of manager %d: %v", m.Pid(), err)
		return 0
	}
	return h / 1024
}

// settle waits until the manager has had every token Ready for d, logging its RSS.
func settle(ctx context.Context, m *manager, ready, d time.Duration) error {
	until := m.started.Add(ready + d)
	for time.Now().Before(until) {
		if v, err := m.memoryKiB(); err == nil {
			logf("  manager RSS %d KiB", v.rss)
		}
		if err := sleep(ctx, min(10*time.Second, time.Until(until))); err != nil {
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
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return testenv.Sleep(ctx, d)
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
