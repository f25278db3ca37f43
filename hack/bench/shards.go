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
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// The two-shard run: two managers on one control plane, each with a --watch-label-selector of
// its own (disjoint) and a Lease of its own, as docs/install.md's sharding section sets them up.
// The credential sets are split between the shards with their tokens (a set's tokens all carry
// its shard's label), and each shard calls DingTalk through an endpoint of its own, which records
// the calls with their credential set (testenv.CallRecorder).

const (
	// shardLabel selects a DingTalkToken's shard.
	shardLabel = "bench.dingtalk.tokens.dev/shard"
	// leaseNamespace holds the shards' Leases (out of a cluster the manager needs one named).
	leaseNamespace = "default"
)

// shardNames are the two shards, by the label value.
var shardNames = [2]string{"a", "b"}

// shardResult is one shard's figures. Memory in KiB.
type shardResult struct {
	name         string
	tokens, sets int
	allReady     time.Duration // from the first create to its last token Ready
	ready        memory        // when its last token was Ready (hwm: the peak so far)
	readyHeap    int64
	settled      memory
	settledHeap  int64
	peak         int64 // VmHWM at the end
	issueCalls   int64 // through its endpoint, to issue its tokens
	steadyCalls  int64 // through its endpoint, over the refresh cycles
	served       int   // its tokens its metrics report
	leader       bool  // it held its Lease
}

// shardsResult holds the two-shard run's figures.
type shardsResult struct {
	s          size
	load       map[string]string
	createSpan time.Duration
	allReady   time.Duration // from the first create to the last token Ready, both shards
	shards     [2]shardResult
	// servedByBoth and servedByNone count the tokens both shards' metrics report, and neither's;
	// calledByBoth the credential sets called for through both shards' endpoints.
	servedByBoth, servedByNone, calledByBoth int
}

// shardOf is the shard (0 or 1) of credential set i, and so of its tokens.
func shardOf(set int) int { return set % 2 }

// runShards runs the two-shard run of size s (tokens and sets in all) in a control plane of its own.
func (b *bench) runShards(ctx context.Context, s size) (shardsResult, error) {
	p := b.p
	r := shardsResult{s: s, load: map[string]string{"scale": loadavg()}}
	apps := newApps(s)
	w, err := b.startWorld(ctx, apps)
	if err != nil {
		return r, err
	}
	defer w.stop()
	nsOf := func(set int) string { return fmt.Sprintf("bench-%d", set%p.namespaces) }
	for i := range p.namespaces {
		if err := w.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i)}}); err != nil {
			return r, err
		}
	}
	if err := createCredentials(ctx, w, apps, nsOf); err != nil {
		return r, err
	}
	var managers [2]*manager
	var counters [2]*testenv.CallRecorder
	for i, name := range shardNames {
		sh := &r.shards[i]
		sh.name = name
		for j := range s.tokens {
			if shardOf(j%s.sets) == i {
				sh.tokens++
				sh.sets += btoi(j < s.sets)
			}
		}
		if counters[i], err = testenv.StartCallRecorder(w.sim.URL()); err != nil {
			return r, err
		}
		defer counters[i].Close()
		m, err := b.startAt(w, counters[i].URL(), "--watch-label-selector="+shardLabel+"="+name,
			"--leader-elect=true", "--leader-election-id=bench-shard-"+name, "--leader-election-namespace="+leaseNamespace)
		if err != nil {
			return r, err
		}
		defer m.Kill()
		managers[i] = m
	}
	for i, m := range managers {
		if err := waitServing(ctx, m); err != nil {
			return r, err
		}
		lease := "bench-shard-" + shardNames[i]
		err := waitFor(ctx, time.Minute, func() bool {
			fams, err := m.scrape()
			return err == nil && fams.Value("leader_election_master_status", map[string]string{"name": lease}) == 1
		})
		if err != nil {
			return r, fmt.Errorf("shard %s never held its Lease %s (see %s)", shardNames[i], lease, m.logPath)
		}
		r.shards[i].leader = true
	}

	logf("Two shards: creating %d DingTalkTokens over %d credential sets, split between shards a and b", s.tokens, s.sets)
	t0 := time.Now()
	err = parallel(32, s.tokens, func(j int) error {
		set := j % s.sets
		tok := bareToken(nsOf(set), j, s.sets, map[string]string{shardLabel: shardNames[shardOf(set)]})
		if err := w.k8s.Create(ctx, tok); err != nil {
			return err
		}
		w.w.created(tokenKey(tok.Namespace, tok.Name), time.Now())
		return nil
	})
	if err != nil {
		return r, err
	}
	r.createSpan = time.Since(t0)
	// Each shard's memory is read as soon as its own tokens are all Ready.
	var pending = [2]bool{true, true}
	err = waitFor(ctx, p.readyTimeout, func() bool {
		ready, last := shardReadiness(w, s)
		for i, m := range managers {
			if pending[i] && ready[i] == r.shards[i].tokens {
				pending[i] = false
				sh := &r.shards[i]
				sh.allReady = last[i].Sub(t0)
				sh.ready, _ = m.memoryKiB()
				sh.readyHeap = heapKiB(m)
				sh.issueCalls = int64(len(counters[i].Calls()))
			}
		}
		return !pending[0] && !pending[1]
	})
	if err != nil {
		return r, fmt.Errorf("not every token was Ready after %s", p.readyTimeout)
	}
	r.allReady = max(r.shards[0].allReady, r.shards[1].allReady)
	for _, sh := range r.shards {
		logf("Two shards: shard %s: %d tokens all Ready after %s, %d DingTalk calls, RSS %d KiB (peak %d KiB), live heap %d KiB",
			sh.name, sh.tokens, sh.allReady.Round(time.Millisecond), sh.issueCalls, sh.ready.rss, sh.ready.hwm, sh.readyHeap)
	}

	r.load["settled"] = loadavg()
	if err := sleep(ctx, p.settle); err != nil {
		return r, err
	}
	for i, m := range managers {
		sh := &r.shards[i]
		if sh.settled, _, sh.settledHeap, err = sampleMemory(ctx, p, m); err != nil {
			return r, err
		}
		if err := m.profile(ctx, p.profileDir, fmt.Sprintf("shard-%s-heap-settled.pprof", sh.name), "heap?gc=1"); err != nil {
			logf("  %v", err)
		}
	}

	if p.scaleOnly {
		for i, m := range managers {
			end, _ := m.memoryKiB()
			r.shards[i].peak = end.hwm
		}
		return r, nil
	}
	r.load["steady"] = loadavg()
	logf("Two shards: waiting for %d refresh cycles of %s tokens", p.cycles, s.lifetime)
	before := refreshCounts(w.w)
	var calls0 [2]int64
	for i := range counters {
		calls0[i] = int64(len(counters[i].Calls()))
	}
	timeout := time.Duration(p.cycles+2) * s.lifetime
	if err := waitFor(ctx, timeout, func() bool { return allRefreshed(w.w, before, p.cycles) }); err != nil {
		return r, fmt.Errorf("not every token was refreshed %d times within %s", p.cycles, timeout)
	}
	served := map[string]int{}
	for i, m := range managers {
		sh := &r.shards[i]
		sh.steadyCalls = int64(len(counters[i].Calls())) - calls0[i]
		end, _ := m.memoryKiB()
		sh.peak = end.hwm
		keys, err := servedTokens(m)
		if err != nil {
			return r, err
		}
		for k := range keys {
			served[k]++
			if want := shardNames[shardOf(setOf(k, s.sets))]; want == sh.name {
				sh.served++
			}
		}
	}
	for k := range w.w.snapshot() {
		switch served[k] {
		case 0:
			r.servedByNone++
		case 1:
		default:
			r.servedByBoth++
		}
	}
	other := credentials(counters[1])
	for k := range credentials(counters[0]) {
		if other[k] {
			r.calledByBoth++
		}
	}
	logf("Two shards: %d tokens served by both, %d by neither, %d credential sets called for through both endpoints",
		r.servedByBoth, r.servedByNone, r.calledByBoth)
	return r, nil
}

// shardReadiness counts each shard's Ready tokens and when its last one became Ready.
func shardReadiness(w *world, s size) (ready [2]int, last [2]time.Time) {
	for k, st := range w.w.snapshot() {
		if !st.readyNow {
			continue
		}
		i := shardOf(setOf(k, s.sets))
		ready[i]++
		last[i] = latest(last[i], st.ready)
	}
	return ready, last
}

// setOf is the credential set of the token namespace/tok-NNNNN (its number modulo sets).
func setOf(key string, sets int) int {
	j, _ := strconv.Atoi(key[strings.LastIndexByte(key, '-')+1:])
	return j % sets
}

// servedTokens are the DingTalkTokens (namespace/name) a manager reports in
// dingtalk_token_ready_status: those it reconciled.
func servedTokens(m *manager) (map[string]bool, error) {
	fams, err := m.scrape()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, s := range fams["dingtalk_token_ready_status"].GetMetric() {
		var ns, name string
		for _, l := range s.GetLabel() {
			switch l.GetName() {
			case "namespace":
				ns = l.GetValue()
			case "name":
				name = l.GetValue()
			}
		}
		out[tokenKey(ns, name)] = true
	}
	return out, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// credentials are the credentials called for through a shard's endpoint.
func credentials(rec *testenv.CallRecorder) map[string]bool {
	out := map[string]bool{}
	for _, c := range rec.Calls() {
		out[c.Credential] = true
	}
	return out
}
