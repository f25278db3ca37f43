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
	p.root = root
	p.sizes = []size{{tokens: 20, sets: 4, lifetime: 15 * time.Second}}
	p.namespaces, p.cycles = 2, 1
	p.noise, p.noiseSize = 50, 256
	p.fanout, p.fanoutLifetime, p.fanoutCycles = 10, 15*time.Second, 1
	p.restartWindow, p.settle, p.rssSamples, p.rssInterval = 3*time.Second, time.Second, 1, time.Second
	p.readyTimeout = 2 * time.Minute
	p.profileDir = t.TempDir()
	p.profileSeconds = 2
	p.command = "TestBenchSmall"
	b, err := run(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	report := b.report()
	t.Log(report)
	for _, want := range []string{"## DingTalkTokens", "## Fan-out: one ClusterDingTalkToken, 10 namespaces", "## Machine and parameters"} {
		if !strings.Contains(report, want) {
			t.Errorf("the report has no %q", want)
		}
	}
	z := b.sizes[0]
	if z.scaleCalls != 4 || z.dueCalls != 4 || z.noneCalls != 0 || z.noiseCalls != 0 {
		t.Errorf("DingTalk calls: %d to issue, %d after a restart with every token due, %d and %d after restarts with none due; want 4, 4, 0, 0",
			z.scaleCalls, z.dueCalls, z.noneCalls, z.noiseCalls)
	}
	if b.fan.firstCalls != 1 || b.fan.cycles[0].calls != 1 {
		t.Errorf("fan-out: %d calls to issue, %d for the refresh; want 1 and 1", b.fan.firstCalls, b.fan.cycles[0].calls)
	}
	for _, name := range []string{"20-cpu-scale.pprof", "20-heap-ready.pprof", "20-heap-settled.pprof", "20-heap-noise.pprof", "fanout-heap.pprof"} {
		if st, err := os.Stat(p.profileDir + "/" + name); err != nil || st.Size() == 0 {
			t.Errorf("profile %s not written: %v", name, err)
		}
	}
}
