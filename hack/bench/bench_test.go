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
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// TestBenchSmall runs every phase of the bench at a size that fits in CI: the report is written,
// and the figures that do not depend on the machine hold (one DingTalk call per credential set to
// issue the tokens and after a restart with every token due, none after a restart with none due,
// one call per fan-out refresh).
func TestBenchSmall(t *testing.T) {
	p := smallParams(t)
	p.sizes = []size{{tokens: 20, sets: 4, lifetime: 15 * time.Second}}
	p.noise, p.noiseSize = 50, 256
	p.fanout, p.fanoutLifetime, p.fanoutCycles = 10, 15*time.Second, 1
	p.restartWindow = 3 * time.Second
	p.profileDir = t.TempDir()
	p.profileSeconds = 2
	p.proxy = proxyParams{enabled: true, rate: 200, duration: time.Second, concurrency: 4}
	b, err := run(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	report := b.report()
	t.Log(report)
	for _, want := range []string{"## DingTalkTokens", "## Fan-out: one ClusterDingTalkToken, 10 namespaces", "## dingtalk-token-proxy", "## Machine and parameters"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report has no %q", want)
		}
	}
	z := b.sizes[0]
	if z.scaleCalls != 4 || z.dueCalls != 4 || z.noneCalls != 0 || z.noiseCalls != 0 {
		t.Errorf("DingTalk calls: %d to issue, %d after a restart with every token due, %d and %d after restarts with none due; want 4, 4, 0, 0",
			z.scaleCalls, z.dueCalls, z.noneCalls, z.noiseCalls)
	}
	if z.baseHeap <= 0 || z.scaleSettled.rss <= 0 || z.scaleSettledHeap <= 0 || z.scalePeak < z.scaleMem.hwm || z.peakAll < z.scalePeak {
		t.Errorf("memory figures missing: base heap %d KiB, settled %+v (heap %d KiB), peaks %d, %d KiB (at Ready %d KiB)",
			z.baseHeap, z.scaleSettled, z.scaleSettledHeap, z.scalePeak, z.peakAll, z.scaleMem.hwm)
	}
	if pr := b.proxy; pr.rateProxy.failed+pr.satProxy.failed+pr.rateDirect.failed+pr.satDirect.failed != 0 || pr.rateProxy.sent != 200 ||
		pr.proxiedOnly != pr.rateProxy.sent+pr.satProxy.sent || pr.rssPeak == 0 {
		t.Errorf("proxy: %+v; want no failure, 200 requests at the fixed rate, each through the proxy reaching the simulator once, an RSS", *pr)
	}
	if b.fan.firstCalls != 1 || b.fan.cycles[0].calls != 1 {
		t.Errorf("fan-out: %d calls to issue, %d for the refresh; want 1 and 1", b.fan.firstCalls, b.fan.cycles[0].calls)
	}
	for _, name := range []string{"20-cpu-scale.pprof", "20-heap-ready.pprof", "20-heap-scale-settled.pprof", "20-heap-settled.pprof", "20-heap-noise.pprof", "fanout-heap.pprof"} {
		if st, err := os.Stat(p.profileDir + "/" + name); err != nil || st.Size() == 0 {
			t.Errorf("profile %s not written: %v", name, err)
		}
	}
}

// TestBenchShapesSmall runs the one-namespace shape and the two-shard run at a size that fits in
// CI: the figures that do not depend on the machine hold (one DingTalk call per credential set to
// issue the tokens and per refresh cycle, per shard too; no token served, nor credential set
// called for, by both shards; every token served by its own shard), the memory figures are read,
// and every manager runs with the GOMEMLIMIT given.
func TestBenchShapesSmall(t *testing.T) {
	p := smallParams(t)
	p.oneNamespace = []size{{tokens: 20, sets: 4, lifetime: 15 * time.Second}}
	p.shards = size{tokens: 24, sets: 4, lifetime: 15 * time.Second}
	p.gomemlimit = "200MiB"
	b, err := run(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	report := b.report()
	t.Log(report)
	for _, want := range []string{"## One namespace, sequential creates", "## Two shards: 24 tokens over 4 sets", "`GOMEMLIMIT=200MiB`"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report has no %q", want)
		}
	}

	z := b.oneNS[0]
	if z.issueCalls != 4 || z.steadyCalls != z.ideal || z.ideal != 4 {
		t.Errorf("one namespace: %d DingTalk calls to issue, %d for a refresh cycle (ideal %d); want 4, 4", z.issueCalls, z.steadyCalls, z.ideal)
	}
	if z.allReady <= 0 || z.createSpan <= 0 || z.ready.rss <= 0 || z.ready.hwm < z.ready.rss || z.peak < z.ready.hwm ||
		z.settled.rss <= 0 || z.settledHeap <= 0 || z.baseHeap <= 0 {
		t.Errorf("one namespace: figures missing: %+v", z)
	}
	if z.memLimit != 200<<20 {
		t.Errorf("the manager ran with GOMEMLIMIT %v bytes, want 200 MiB", z.memLimit)
	}

	r := b.shards
	if r.servedByBoth != 0 || r.servedByNone != 0 || r.calledByBoth != 0 {
		t.Errorf("two shards: %d tokens served by both, %d by neither, %d credential sets called for by both; want 0",
			r.servedByBoth, r.servedByNone, r.calledByBoth)
	}
	for _, sh := range r.shards {
		if sh.tokens != 12 || sh.sets != 2 || sh.served != sh.tokens || !sh.leader {
			t.Errorf("shard %s: %d tokens over %d sets, %d served, leader %v; want 12 over 2, all served, leader",
				sh.name, sh.tokens, sh.sets, sh.served, sh.leader)
		}
		if sh.issueCalls != 2 || sh.steadyCalls != 2 {
			t.Errorf("shard %s: %d DingTalk calls to issue, %d for a refresh cycle; want 2 and 2", sh.name, sh.issueCalls, sh.steadyCalls)
		}
		if sh.allReady <= 0 || sh.ready.rss <= 0 || sh.settled.rss <= 0 || sh.peak < sh.ready.hwm {
			t.Errorf("shard %s: figures missing: %+v", sh.name, sh)
		}
	}
}

// smallParams are the parameters of a run that fits in CI, with no scenario selected; it skips the
// test when the envtest binaries are missing.
func smallParams(t *testing.T) params {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.AssetsDir(root); errors.Is(err, testenv.ErrNoAssets) {
		t.Skip(err)
	}
	if _, err := testenv.SetLogger(io.Discard, "error"); err != nil {
		t.Fatal(err)
	}
	p := defaultParams()
	p.root, p.command = root, t.Name()
	p.sizes, p.oneNamespace, p.shards, p.fanout, p.proxy.enabled = nil, nil, size{}, 0, false
	p.namespaces, p.cycles = 2, 1
	p.settle, p.rssSamples, p.rssInterval = time.Second, 1, time.Second
	p.readyTimeout = 2 * time.Minute
	return p
}

// TestReportNamesNoLocalPaths: the report (committed as docs/benchmarks.md) names paths inside
// the repository relative to it, and others by their last element only.
func TestReportNamesNoLocalPaths(t *testing.T) {
	root := t.TempDir()
	b := &bench{p: params{root: root}}
	for in, want := range map[string]string{
		root + "/bin/k8s/1.37.2":  "bin/k8s/1.37.2",
		"/var/tmp/run-7/profiles": "<outside the repository>/profiles",
		"docs/benchmarks.md":      "docs/benchmarks.md",
		"":                        "",
	} {
		if got := b.localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
	got := b.localPaths("go run ./hack/bench --profile-dir /var/tmp/p --out=" + root + "/docs/benchmarks.md --sizes 10/1")
	if want := "go run ./hack/bench --profile-dir <outside the repository>/p --out=docs/benchmarks.md --sizes 10/1"; got != want {
		t.Errorf("localPaths = %q, want %q", got, want)
	}
}
