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
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// The goals the report judges figures against.
const (
	readyGoal1k   = 10 * time.Second // 1,000 DingTalkTokens over 100 sets all Ready
	readyGoal10k  = 60 * time.Second // 10,000 over 1,000 sets all Ready
	rssGoal10kKiB = 150 * 1024       // 10,000 tokens: RSS
	heapGoalKiB   = 3                // live heap per token
	callsGoal     = 1.05             // DingTalk calls over one per credential set per cycle
	noiseGoal     = 1.03             // RSS with 10,000 unrelated Secrets over without
)

func sec(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
func mib(kib int64) string       { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
func ratio(a, b float64) float64 { return a / max(b, 1e-9) }
func cpus(v float64) string      { return fmt.Sprintf("%.1f s", v) }
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// report renders the figures, the machine and the parameters as Markdown.
func (b *bench) report() string {
	var s strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	w("# Benchmarks")
	w("")
	w("Written by `%s` on %s. The figures are what one run measured on the machine below; benchmarks", b.localPaths(b.p.command), b.started.UTC().Format("2006-01-02 15:04 MST"))
	w("report and do not fail on timing. Load averages (1, 5, 15 min) are noted where each phase started.")
	w("How the figures moved from version to version, and what the profiles show: [performance.md](performance.md).")
	w("")
	if len(b.sizes) > 0 {
		b.sizeTable(w)
	}
	if b.fan != nil {
		b.fanoutTable(w)
	}
	if len(b.oneNS) > 0 {
		b.oneNamespaceTable(w)
	}
	if b.shards != nil {
		b.shardsTable(w)
	}
	if b.proxy != nil {
		b.proxyTable(w)
	}
	if len(b.sizes) > 0 || len(b.oneNS) > 0 || b.shards != nil || b.fan != nil {
		b.method(w)
	}
	w("## Machine and parameters")
	w("")
	w("- CPUs (`nproc`): %d, %s", runtime.NumCPU(), cpuModel())
	w("- Memory: %s", memTotal())
	w("- Go: %s, %s/%s; kernel %s", runtime.Version(), runtime.GOOS, runtime.GOARCH, readTrim("/proc/sys/kernel/osrelease"))
	w("- Date: %s; run took %s; load average at the end: %s (the machine was shared)", b.started.UTC().Format(time.RFC3339),
		b.finished.Sub(b.started).Round(time.Second), loadavg())
	w("- Source: %s", b.source)
	w("- Control plane: envtest kube-apiserver and etcd from `KUBEBUILDER_ASSETS` (%s), one per scenario", b.localPath(os.Getenv("KUBEBUILDER_ASSETS")))
	w("- Manager: the binary built from `./cmd` as a release builds it (without cgo, `-trimpath -ldflags=-s -w`), its flag")
	w("  defaults except `--kubeconfig`, `--dingtalk-endpoint`")
	w("  (the simulator), `--metrics-secure=false` with a loopback `--metrics-bind-address` (scraped by the bench),")
	w("  `--leader-elect=false`, a loopback `--pprof-bind-address` (the live heap is read there%s)%s; the two shards add their", profiledArgs(b.localPath(b.p.profileDir)), extraArgs(b.extra))
	w("  `--watch-label-selector` and a Lease each")
	w("  (`--leader-elect=true`, `--leader-election-id`, `--leader-election-namespace`); environment: %s", memLimitEnv(b.p.gomemlimit))
	w("- Every manager's metrics are scraped every %s from its start, as Prometheus does through the chart's ServiceMonitor", b.p.scrapeInterval)
	w("  (`--scrape-interval`; the text format, gzipped): a scrape's memory is part of the manager's")
	var sizes, one []string
	for _, z := range b.sizes {
		sizes = append(sizes, z.s.String())
	}
	for _, z := range b.oneNS {
		one = append(one, z.s.String())
	}
	shards := ""
	if b.shards != nil {
		shards = b.shards.s.String()
	}
	w("- Parameters: --sizes %s --one-namespace %s --shards %s --gomemlimit %s --scrape-interval %s --namespaces %d --cycles %d",
		strings.Join(sizes, ","), strings.Join(one, ","), shards, b.p.gomemlimit, b.p.scrapeInterval, b.p.namespaces, b.p.cycles)
	w("  --noise %d --noise-size %d", b.p.noise, b.p.noiseSize)
	w("  --fanout %d --fanout-lifetime %s", b.p.fanout, b.p.fanoutLifetime)
	w("  --fanout-cycles %d --restart-window %s --settle %s --rss-samples %d --rss-interval %s", b.p.fanoutCycles,
		b.p.restartWindow, b.p.settle, b.p.rssSamples, b.p.rssInterval)
	if b.proxy != nil {
		w("- dingtalk-token-proxy: built from `./cmd/dingtalk-token-proxy` as a release builds it (`-trimpath -ldflags=-s -w`);")
		w("  --proxy-rate %d --proxy-duration %s --proxy-concurrency %d --proxy-args %q --proxy-env %q", b.p.proxy.rate, b.p.proxy.duration,
			b.p.proxy.concurrency, b.p.proxy.args, b.p.proxy.env)
	}
	return s.String()
}

// tableHead writes a section's title and the head of its table: a column per size, then the goal.
func tableHead(w func(string, ...any), title string, sizes []size) {
	w("## %s", title)
	w("")
	head, rule := "| # | measure |", "|---|---|"
	for _, z := range sizes {
		head += fmt.Sprintf(" %d tokens, %d sets, %s tokens |", z.tokens, z.sets, z.lifetime)
		rule += "---|"
	}
	w("%s goal |", head)
	w("%s---|", rule)
}

// sizeTable is one row per measure, one column per size.
func (b *bench) sizeTable(w func(string, ...any)) {
	var sizes []size
	for _, z := range b.sizes {
		sizes = append(sizes, z.s)
	}
	tableHead(w, "DingTalkTokens", sizes)
	row := func(n, measure, goal string, cell func(z sizeResult) string) {
		line := fmt.Sprintf("| %s | %s |", n, measure)
		for _, z := range b.sizes {
			line += " " + cell(z) + " |"
		}
		w("%s %s |", line, goal)
	}
	row("1", "all Ready, from the first create", "<= 10 s (1,000 over 100 sets), <= 60 s (10,000 over 1,000)", func(z sizeResult) string {
		goal := map[int]time.Duration{1000: readyGoal1k, 10000: readyGoal10k}[z.s.tokens]
		v := sec(z.allReady)
		if goal > 0 && z.s.sets == z.s.tokens/10 {
			v += " " + verdict(z.allReady <= goal)
		}
		return v + " (load " + z.load["scale"] + ")"
	})
	row("1", "create -> Ready, p50 / p99", "", func(z sizeResult) string { return sec(z.p50) + " / " + sec(z.p99) })
	row("1", "DingTalk calls to issue them / ideal (one per set)", "", func(z sizeResult) string {
		return fmt.Sprintf("%d / %d", z.scaleCalls, z.s.sets)
	})
	row("1", "API requests of the manager per token issued", "", func(z sizeResult) string {
		if z.scaleRequests < 0 {
			return "unknown (the metrics scrape failed)"
		}
		return fmt.Sprintf("%.2f (%.0f)", z.scaleRequests/float64(z.s.tokens), z.scaleRequests)
	})
	row("1", "CPU while issuing them: manager / API server and etcd / whole machine (all CPUs)", "", func(z sizeResult) string {
		return fmt.Sprintf("%s / %s / %s of %s", cpus(z.scaleCPU), cpus(z.scaleCPCPU), cpus(z.scaleBusy),
			cpus(z.scaleWindow.Seconds()*float64(runtime.NumCPU())))
	})
	big := func(z sizeResult) bool { return z.s.tokens == 10000 && z.s.sets == 1000 }
	rss := func(z sizeResult, kib int64) string {
		if big(z) {
			return mib(kib) + " " + verdict(kib <= rssGoal10kKiB)
		}
		return mib(kib)
	}
	row("1", "manager RSS (anon + file) / live heap with every token Ready", "<= 150 MiB (10,000)", func(z sizeResult) string {
		return fmt.Sprintf("%s (%s + %s) / %s", rss(z, z.scaleMem.rss), mib(z.scaleMem.anon), mib(z.scaleMem.file), mib(z.scaleHeap))
	})
	row("1", fmt.Sprintf("the same process settled (%s later): RSS (anon + file) / live heap", b.p.settle), "<= 150 MiB (10,000)", func(z sizeResult) string {
		return fmt.Sprintf("%s (%s + %s) / %s (load %s)", rss(z, z.scaleSettled.rss), mib(z.scaleSettled.anon), mib(z.scaleSettled.file),
			mib(z.scaleSettledHeap), z.load["scale-settled"])
	})
	row("1", "peak RSS (VmHWM): when all were Ready / of that process at its end / of any manager process of the size", "<= 150 MiB (10,000)", func(z sizeResult) string {
		return mib(z.scaleMem.hwm) + " / " + rss(z, z.scalePeak) + " / " + rss(z, z.peakAll)
	})
	row("1", "live heap per token, settled: in all / over the manager before the first create", "<= 3 KiB", func(z sizeResult) string {
		all, added := z.heapPerToken()
		v := fmt.Sprintf("%.2f KiB / %.2f KiB", all, added)
		if big(z) {
			v += " " + verdict(all <= heapGoalKiB)
		}
		return v
	})
	row("1", "one scrape of the metrics, settled: exposition / time / RSS before and after", "", func(z sizeResult) string {
		if z.scrape.bytes == 0 {
			return "unknown"
		}
		return fmt.Sprintf("%.1f MiB / %s / %s -> %s", float64(z.scrape.bytes)/(1<<20), sec(z.scrape.took), mib(z.scrape.before.rss), mib(z.scrape.after.rss))
	})
	row("1", "the manager before the first create: RSS / live heap", "", func(z sizeResult) string {
		return mib(z.baseMem.rss) + " / " + mib(z.baseHeap)
	})
	row("2", fmt.Sprintf("steady state, %d refresh cycles: DingTalk calls / ideal", b.p.cycles), "<= 1.05x", func(z sizeResult) string {
		r := ratio(float64(z.steadyCalls), float64(z.steadyIdeal))
		return fmt.Sprintf("%d / %d = %.2fx %s (load %s)", z.steadyCalls, z.steadyIdeal, r, verdict(r <= callsGoal), z.load["steady"])
	})
	row("2", "steady state: least remaining lifetime in any target Secret", "> 0", func(z sizeResult) string {
		return sec(z.minRemaining) + " " + verdict(z.minRemaining > 0)
	})
	row("2", "steady state: most target Secrets changed in one second", "", func(z sizeResult) string { return fmt.Sprint(z.peak) })
	row("2", "steady state: manager CPU per refresh cycle", "", func(z sizeResult) string {
		return cpus(z.steadyCPU / float64(b.p.cycles))
	})
	row("3", "restart (SIGKILL) with every token due: DingTalk calls / ideal", "<= 1.05x", func(z sizeResult) string {
		r := ratio(float64(z.dueCalls), float64(z.s.sets))
		return fmt.Sprintf("%d / %d = %.2fx %s (load %s)", z.dueCalls, z.s.sets, r, verdict(r <= callsGoal), z.load["restart-due"])
	})
	row("3", "restart with every token due: all refreshed after the start / manager CPU", "", func(z sizeResult) string {
		return sec(z.dueRefreshed) + " / " + cpus(z.dueCPU)
	})
	row("4", "restart (SIGKILL) with no token due: DingTalk calls in the restart window", "0", func(z sizeResult) string {
		return fmt.Sprintf("%d %s (load %s)", z.noneCalls, verdict(z.noneCalls == 0), z.load["restart-none-due"])
	})
	row("4", "restart with no token due: all Ready after the start / manager CPU in the window", "", func(z sizeResult) string {
		return sec(z.noneReady) + " / " + cpus(z.noneCPU)
	})
	row("5", "memory: RSS (anon + file) / live heap, fresh process, no unrelated Secrets", "", func(z sizeResult) string {
		return fmt.Sprintf("%s (%s + %s) / %s (load %s)", mib(z.memNone.rss), mib(z.memNone.anon), mib(z.memNone.file), mib(z.heapNone), z.load["memory"])
	})
	row("5", fmt.Sprintf("memory: the same with %d unrelated %d-byte Secrets", b.p.noise, b.p.noiseSize), "", func(z sizeResult) string {
		return fmt.Sprintf("%s (%s + %s) / %s", mib(z.memNoise.rss), mib(z.memNoise.anon), mib(z.memNoise.file), mib(z.heapNoise))
	})
	row("5", "memory: RSS with the unrelated Secrets / without", "<= 1.03", func(z sizeResult) string {
		r := ratio(float64(z.memNoise.rss), float64(z.memNone.rss))
		return fmt.Sprintf("%.3f %s", r, verdict(r <= noiseGoal))
	})
	row("5", "memory: live heap per unrelated Secret", "", func(z sizeResult) string {
		return fmt.Sprintf("%+.0f bytes", float64(z.heapNoise-z.heapNone)*1024/float64(max(b.p.noise, 1)))
	})
	row("5", "manager CPU with every token Ready and nothing due", "", func(z sizeResult) string {
		return fmt.Sprintf("%s over %s", cpus(z.settledCPU), sec(z.settledCPUSpan))
	})
	w("")
}

// fanoutTable is the fan-out's figures.
func (b *bench) fanoutTable(w func(string, ...any)) {
	f := b.fan
	w("## Fan-out: one ClusterDingTalkToken, %d namespaces", f.namespaces)
	w("")
	w("| # | measure | figure | goal |")
	w("|---|---|---|---|")
	w("| 6 | every namespace holds the token (target Secret), from the create | %s (load %s) | |", sec(f.provisioned), f.load["start"])
	w("| 6 | status: all %d namespaces provisioned and Ready, from the create | %s | |", f.namespaces, sec(f.statusAll))
	w("| 6 | DingTalk calls to issue it | %d | 1 |", f.firstCalls)
	w("| 6 | manager CPU while provisioning | %s | |", cpus(f.cpuIssue))
	for i, c := range f.cycles {
		w("| 7 | refresh %d: the last namespace holds the new token, after it was due (first to last namespace) | %s (%s) (load %s) | |",
			i+1, sec(c.dueLast), sec(c.spread), f.load["refresh"])
		w("| 7 | refresh %d: DingTalk calls | %d %s | 1 |", i+1, c.calls, verdict(c.calls == 1))
	}
	w("| 8 | manager RSS (anon + file) / live heap at the end | %s (%s + %s) / %s | |", mib(f.mem.rss), mib(f.mem.anon), mib(f.mem.file), mib(f.heap))
	w("| 8 | manager CPU over the scenario | %s over %s | |", cpus(f.cpu), sec(f.span))
	w("")
}

// oneNamespaceTable is the one-namespace shape's figures, one column per size.
func (b *bench) oneNamespaceTable(w func(string, ...any)) {
	var sizes []size
	for _, z := range b.oneNS {
		sizes = append(sizes, z.s)
	}
	tableHead(w, "One namespace, sequential creates", sizes)
	row := func(measure, goal string, cell func(z oneNSResult) string) {
		line := "| 9 | " + measure + " |"
		for _, z := range b.oneNS {
			line += " " + cell(z) + " |"
		}
		w("%s %s |", line, goal)
	}
	big := func(z oneNSResult) bool { return z.s.tokens == 10000 && z.s.sets == 1000 }
	rss := func(z oneNSResult, kib int64) string {
		if big(z) {
			return mib(kib) + " " + verdict(kib <= rssGoal10kKiB)
		}
		return mib(kib)
	}
	row("all Ready, from the first create (a List every second)", "<= 60 s (10,000 over 1,000)", func(z oneNSResult) string {
		v := sec(z.allReady)
		if big(z) {
			v += " " + verdict(z.allReady <= readyGoal10k)
		}
		return v + " (load " + z.load["scale"] + ")"
	})
	row("the creates, one after the other", "", func(z oneNSResult) string {
		return fmt.Sprintf("%s (%.0f/s)", sec(z.createSpan), float64(z.s.tokens)/max(z.createSpan.Seconds(), 1e-9))
	})
	row("DingTalk calls to issue them / ideal (one per set)", "", func(z oneNSResult) string {
		return fmt.Sprintf("%d / %d", z.issueCalls, z.s.sets)
	})
	row(fmt.Sprintf("steady state, %d refresh cycles: DingTalk calls / ideal", b.p.cycles), "<= 1.05x", func(z oneNSResult) string {
		r := ratio(float64(z.steadyCalls), float64(z.ideal))
		return fmt.Sprintf("%d / %d = %.2fx %s (load %s)", z.steadyCalls, z.ideal, r, verdict(r <= callsGoal), z.load["steady"])
	})
	row("peak RSS (VmHWM): when all were Ready / at the end", "<= 150 MiB (10,000)", func(z oneNSResult) string {
		return mib(z.ready.hwm) + " / " + rss(z, z.peak)
	})
	row("RSS (anon + file) / live heap when all were Ready", "<= 150 MiB (10,000)", func(z oneNSResult) string {
		return fmt.Sprintf("%s (%s + %s) / %s", rss(z, z.ready.rss), mib(z.ready.anon), mib(z.ready.file), mib(z.readyHeap))
	})
	row(fmt.Sprintf("RSS (anon + file) / live heap settled (%s later)", b.p.settle), "<= 150 MiB (10,000)", func(z oneNSResult) string {
		return fmt.Sprintf("%s (%s + %s) / %s (load %s)", rss(z, z.settled.rss), mib(z.settled.anon), mib(z.settled.file), mib(z.settledHeap), z.load["settled"])
	})
	row("live heap per token, settled: in all / over the manager before the first create", "<= 3 KiB", func(z oneNSResult) string {
		all, added := z.heapPerToken()
		v := fmt.Sprintf("%.2f KiB / %.2f KiB", all, added)
		if big(z) {
			v += " " + verdict(all <= heapGoalKiB)
		}
		return v
	})
	row("the manager before the first create: RSS / live heap / its GOMEMLIMIT (`go_gc_gomemlimit_bytes`)", "", func(z oneNSResult) string {
		limit := "none"
		if z.memLimit > 0 && z.memLimit < 1<<62 {
			limit = mib(int64(z.memLimit) / 1024)
		}
		return mib(z.base.rss) + " / " + mib(z.baseHeap) + " / " + limit
	})
	w("")
}

// shardsTable is the two-shard run's figures, one column per shard.
func (b *bench) shardsTable(w func(string, ...any)) {
	r := b.shards
	a, c := r.shards[0], r.shards[1]
	w("## Two shards: %d tokens over %d sets, %s tokens", r.s.tokens, r.s.sets, r.s.lifetime)
	w("")
	w("| # | measure | shard %s (%d tokens, %d sets) | shard %s (%d tokens, %d sets) | goal |", a.name, a.tokens, a.sets, c.name, c.tokens, c.sets)
	w("|---|---|---|---|---|")
	row := func(measure, goal string, cell func(sh shardResult) string) {
		w("| 10 | %s | %s | %s | %s |", measure, cell(a), cell(c), goal)
	}
	row("all Ready, from the first create", "", func(sh shardResult) string { return sec(sh.allReady) + " (load " + r.load["scale"] + ")" })
	row("peak RSS (VmHWM): when all its tokens were Ready / at the end", "", func(sh shardResult) string {
		return mib(sh.ready.hwm) + " / " + mib(sh.peak)
	})
	row("RSS / live heap when all its tokens were Ready", "", func(sh shardResult) string { return mib(sh.ready.rss) + " / " + mib(sh.readyHeap) })
	row(fmt.Sprintf("RSS / live heap settled (%s later)", b.p.settle), "", func(sh shardResult) string {
		return mib(sh.settled.rss) + " / " + mib(sh.settledHeap)
	})
	row("DingTalk calls through its endpoint to issue its tokens / ideal", "", func(sh shardResult) string {
		return fmt.Sprintf("%d / %d", sh.issueCalls, sh.sets)
	})
	row(fmt.Sprintf("steady state, %d refresh cycles: its calls / ideal", b.p.cycles), "<= 1.05x", func(sh shardResult) string {
		ideal := int64(sh.sets * b.p.cycles)
		q := ratio(float64(sh.steadyCalls), float64(ideal))
		return fmt.Sprintf("%d / %d = %.2fx %s (load %s)", sh.steadyCalls, ideal, q, verdict(q <= callsGoal), r.load["steady"])
	})
	row("its own tokens its metrics report / held its Lease", "all / yes", func(sh shardResult) string {
		return fmt.Sprintf("%d of %d / %v", sh.served, sh.tokens, sh.leader)
	})
	w("| 10 | both shards: tokens served by both / by neither; credential sets called for through both endpoints | %d / %d; %d %s | | 0 / 0; 0 |",
		r.servedByBoth, r.servedByNone, r.calledByBoth, verdict(r.servedByBoth == 0 && r.servedByNone == 0 && r.calledByBoth == 0))
	w("| 10 | both shards: all Ready, from the first create (the creates took %s) | %s | | |", sec(r.createSpan), sec(r.allReady))
	w("")
}

// sizesMethod says how the figures of the sizes (1 to 5) are taken.
func (b *bench) sizesMethod(w func(string, ...any)) {
	w("1. Each size runs in a control plane of its own. The credentials Secrets (one per set) are")
	w("   created first, then the manager, then the DingTalkTokens by 32 concurrent clients")
	var spans []string
	for _, z := range b.sizes {
		spans = append(spans, fmt.Sprintf("%s for %d", sec(z.createSpan), z.s.tokens))
	}
	w("   (%s). \"All Ready\" runs from the first create to the last token seen Ready", strings.Join(spans, ", "))
	w("   (`Ready=True` through a watch in the bench); create -> Ready is per token, from its create's")
	w("   answer. Calls are the simulator's count; API requests are the manager's")
	w("   `rest_client_requests_total` (every verb, events included); CPU is user + system time from")
	w("   `/proc/<pid>/stat`; RSS is `VmRSS` (`RssAnon` + `RssFile`: the binary's pages) from")
	w("   `/proc/<pid>/status`; the live heap is the Go heap in use right after a collection the bench")
	w("   asks for (`HeapAlloc` of `/debug/pprof/heap?gc=1&debug=1`; `go_gc_heap_live_bytes` would count")
	w("   what a metrics scrape held when the last collection ran, about 4 KiB per token). Settled is")
	w("   the same process --settle after all were Ready (%d samples %s apart, the largest). Peak RSS", b.p.rssSamples, b.p.rssInterval)
	w("   is `VmHWM`, the most the process was ever resident (what an OOM kill sees), read when all were")
	w("   Ready and when each process was stopped (the restarts and the memory phase's processes too).")
	w("   Heap per token: the settled live heap over the tokens, and its growth over the manager's")
	w("   live heap before the first create, over the tokens.")
	w("2. From the moment all are Ready until every token's `status.lastRefreshTime` changed --cycles")
	w("   times: DingTalk calls divided by credential sets x cycles. The least remaining lifetime is the")
	w("   `dingtalk.tokens.dev/expires-at` annotation minus the time, sampled every second over all")
	w("   target Secrets and at every change. All tokens were issued within seconds of each other, so")
	w("   every cycle finds them due together, spread by the refresh jitter (up to 10%% of the")
	w("   refresh-before time, a third of the lifetime).")
	w("3. SIGKILL; the bench waits until every token's `status.refreshTime` has passed, then starts a")
	w("   new process and counts DingTalk calls until every token's `status.lastRefreshTime` moved.")
	w("4. Before this restart the simulator was switched to %s tokens and every token refreshed once,", longLifetime)
	w("   so all are valid and none is due. Calls during the first %s after the new process started;", b.p.restartWindow)
	w("   all Ready is when its `dingtalk_token_ready_status{condition=\"True\"}` is 1 for every token (the")
	w("   metric is set when that process reconciles a token).")
	w("5. Two freshly started manager processes, each with every token Ready and left alone for %s,", b.p.settle)
	w("   differ only in the %d unrelated Secrets (in namespaces of their own, no token there). %d", b.p.noise, b.p.rssSamples)
	w("   samples %s apart, the one with the largest RSS. Memory per sample and the process that was", b.p.rssInterval)
	w("   running while the unrelated Secrets were created:")
	for _, z := range b.sizes {
		w("   %d tokens: without %s, with %s KiB; that process %s afterwards; created in %s; the", z.s.tokens, kibList(z.memNoneAll),
			kibList(z.memNoiseAll), mib(z.memLive.rss), sec(z.noiseCreate))
		w("   restart with them made %d DingTalk calls and was all Ready after %s.", z.noiseCalls, sec(z.noiseReady))
	}
}

// method says how each figure is taken.
func (b *bench) method(w func(string, ...any)) {
	w("How each figure is taken:")
	w("")
	if len(b.sizes) > 0 {
		b.sizesMethod(w)
	}
	if b.fan != nil {
		w("6. The namespaces (labelled, %s to create) and the credentials Secret (in a namespace of its", sec(b.fan.nsCreate))
		w("   own) exist before the manager starts; the clock starts at the ClusterDingTalkToken's create.")
		w("   \"Holds the token\" is the last target Secret the bench's watch received.")
		w("7. For each refresh: from the ClusterDingTalkToken's `status.refreshTime` (when it was due) to")
		w("   the moment the last namespace's target Secret held the new token; in brackets, from the")
		w("   first namespace's to the last's. Calls are counted from the previous refresh to this one.")
	}
	if len(b.oneNS) > 0 {
		w("9. One namespace: the credentials Secrets and the DingTalkTokens all in one namespace; the")
		w("   manager starts first, then one client creates the tokens one after the other. No watch: the")
		w("   bench lists the DingTalkTokens every %s (chunks of %d, as `kubectl get` does); \"all Ready\"", listInterval, listChunk)
		w("   is the first List that shows every one Ready. Peak RSS is `VmHWM`; settled is --settle later")
		w("   (%d samples %s apart, the largest); the refresh cycles are counted by listing too.", b.p.rssSamples, b.p.rssInterval)
		w("   Heap per token: the settled live heap over the tokens, and its growth over the manager's")
		w("   live heap before the first create, over the tokens.")
	}
	if b.shards != nil {
		w("10. Two managers on one control plane with `--watch-label-selector=%s=a` and `=b` and", shardLabel)
		w("   Leases of their own; credential set i and its tokens belong to shard i %% 2; the tokens are")
		w("   created over %d namespaces by 32 concurrent clients and followed through a watch. Each shard", b.p.namespaces)
		w("   calls DingTalk through a counting proxy of its own in front of the simulator. A shard's")
		w("   all-Ready time is its last token's; its memory is read then.")
		w("   Served tokens are the `dingtalk_token_ready_status` series of each shard's metrics (the")
		w("   tokens it reconciled, and so wrote).")
	}
	w("")
}

func memLimitEnv(v string) string {
	if v == "" {
		return "no `GOMEMLIMIT`"
	}
	return "`GOMEMLIMIT=" + v + "` (as the chart sets it from its memory limit)"
}

func kibList(v []int64) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, fmt.Sprintf("%d", x))
	}
	return strings.Join(parts, ", ")
}

func extraArgs(extra []string) string {
	if len(extra) == 0 {
		return ""
	}
	return ", and " + "`" + strings.Join(extra, " ") + "`"
}

func profiledArgs(dir string) string {
	if dir == "" {
		return ""
	}
	return "; profiles in " + dir
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func loadavg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	return procField("/proc/cpuinfo", "model name")
}

func memTotal() string {
	v := procField("/proc/meminfo", "MemTotal")
	var kib int64
	if _, err := fmt.Sscanf(v, "%d kB", &kib); err != nil {
		return v
	}
	return fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// localPath names path as the report may: relative to the repository when inside it, else by its
// last element only (the report is committed: no path of the machine that ran it).
func (b *bench) localPath(path string) string {
	if path == "" || !filepath.IsAbs(path) {
		return path
	}
	if root, err := filepath.Abs(b.p.root); err == nil {
		if rel, err := filepath.Rel(root, path); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return rel
		}
	}
	return "<outside the repository>/" + filepath.Base(path)
}

// localPaths is command with each absolute path (an argument, or a --flag=value's value) named by
// localPath.
func (b *bench) localPaths(command string) string {
	fields := strings.Fields(command)
	for i, f := range fields {
		if flag, value, ok := strings.Cut(f, "="); ok && strings.HasPrefix(flag, "-") {
			fields[i] = flag + "=" + b.localPath(value)
			continue
		}
		fields[i] = b.localPath(f)
	}
	return strings.Join(fields, " ")
}
