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
	"runtime"
	"strings"
	"time"
)

// report renders the figures, the machine and the parameters as Markdown.
func (b *bench) report() string {
	r, p := b.r, b.p
	var s strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	sec := func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
	mib := func(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	ratio := float64(r.steadyCalls) / float64(r.steadyIdeal)
	rss := float64(r.rssNoise) / float64(r.rssNone)

	w("# Benchmarks")
	w("")
	w("Written by `%s` on %s (`make bench` runs it at full size). The figures are what one", p.command, r.started.UTC().Format("2006-01-02 15:04 MST"))
	w("run measured on the machine below; benchmarks report and do not fail on timing.")
	w("")
	w("| # | measure | figure | target | |")
	w("|---|---|---|---|---|")
	w("| 1 | Scale: %d DingTalkTokens over %d credential sets created at once, all Ready after | %s | <= 15 s | %s |",
		p.tokens, p.sets, sec(r.allReady), verdict(r.allReady <= 15*time.Second))
	w("| 1 | Scale: create -> Ready, p50 / p99 | %s / %s | | |", sec(r.p50), sec(r.p99))
	w("| 1 | Scale: DingTalk calls to issue them | %d (ideal %d) | | |", r.scaleCalls, p.sets)
	w("| 2 | Steady state, %d refresh cycles of %s tokens: DingTalk calls / ideal | %d / %d = %.2fx | <= 1.05x | %s |",
		p.cycles, p.lifetime, r.steadyCalls, r.steadyIdeal, ratio, verdict(ratio <= 1.05))
	w("| 2 | Steady state: most target Secrets changed in one second | %d | | |", r.peak)
	w("| 2 | Steady state: least remaining lifetime seen in any target Secret | %s (of %s) | > 0 | %s |",
		sec(r.minRemaining), p.lifetime, verdict(r.minRemaining > 0))
	w("| 3 | Memory: manager RSS with %d unrelated %d-byte Secrets / without, %d tokens managed | %s / %s = %.3f | <= 1.15 | %s |",
		p.noise, p.noiseSize, p.tokens, mib(r.rssNoise), mib(r.rssNone), rss, verdict(rss <= 1.15))
	w("| 4 | Restart (SIGKILL, %d valid tokens): DingTalk calls in the first %s | %d | 0 | %s |",
		p.tokens, p.restartWindow, r.restartCalls, verdict(r.restartCalls == 0))
	w("| 4 | Restart: all Ready again, as the new process reports it | %s after its start | | |", sec(r.restartReady))
	w("")
	w("How each figure is taken:")
	w("")
	w("1. The DingTalkTokens are created by 32 concurrent clients (%s for all of them), after their %d", sec(r.createSpan), p.sets)
	w("   credentials Secrets. \"All Ready\" runs from the first create to the last token seen Ready")
	w("   (`Ready=True` through a watch in the bench); create -> Ready is per token, from its create's answer.")
	w("   Calls are the simulator's count.")
	w("2. From the moment all are Ready until every token's `status.lastRefreshTime` changed %d times", p.cycles)
	w("   (%s): DingTalk calls divided by credential sets x cycles. The per-second figure counts target", sec(r.steadySpan))
	w("   Secrets whose token or expiry changed, by the second a watch delivered the change (the")
	w("   busiest second was %s). The least remaining lifetime is the `dingtalk.tokens.dev/expires-at`", r.peakAt.UTC().Format(time.TimeOnly))
	w("   annotation minus the time, sampled every second over all target Secrets and at every change.")
	w("   Tokens seen not Ready after their first Ready: %d. All tokens were issued within seconds of each", r.notReady)
	w("   other, so every cycle finds them due together, spread by the refresh jitter (up to 10%% of the")
	w("   refresh-before time, here %s).", p.lifetime/3/10)
	w("3. Two freshly started manager processes, each with the %d tokens Ready and left alone for %s,", p.tokens, p.settle)
	w("   differ only in the %d unrelated Secrets (in their own namespaces; created in %s). VmRSS from", p.noise, sec(r.noiseCreate))
	w("   `/proc/<pid>/status`, %d samples %s apart, the maximum: without %s, with %s.", p.rssSamples, p.rssInterval, kibList(r.rssNoneAll), kibList(r.rssNoiseAll))
	w("   The process that was running while the Secrets were created read %s afterwards. The live Go", mib(r.rssLive))
	w("   heap as of the last GC (`go_gc_heap_live_bytes` from the manager's metrics, same samples): %s", mib(r.heapNone))
	w("   without, %s with (%.3f; %+.0f bytes per unrelated Secret).", mib(r.heapNoise),
		float64(r.heapNoise)/float64(max(r.heapNone, 1)), float64(r.heapNoise-r.heapNone)*1024/float64(max(p.noise, 1)))
	w("4. After SIGKILL, a new process: DingTalk calls (simulator) during the first %s after its start,", p.restartWindow)
	w("   and the time until its `dingtalk_token_ready_status{condition=\"True\"}` is 1 for all %d tokens", p.tokens)
	w("   (the metric is set when that process reconciles a token). Before the restart the simulator was")
	w("   switched to %s tokens and every token refreshed once, so all are valid and none is due.", longLifetime)
	w("   The restart of phase 3, with the unrelated Secrets present: %d calls, all Ready after %s.", r.noiseRestartCalls, sec(r.noiseRestartReady))
	w("")
	w("## Machine and parameters")
	w("")
	w("- CPUs (`nproc`): %d, %s", runtime.NumCPU(), cpuModel())
	w("- Memory: %s", memTotal())
	w("- Go: %s, %s/%s; kernel %s", runtime.Version(), runtime.GOOS, runtime.GOARCH, readTrim("/proc/sys/kernel/osrelease"))
	w("- Date: %s; run took %s", r.started.UTC().Format(time.RFC3339), r.finished.Sub(r.started).Round(time.Second))
	w("- Load average (1, 5, 15 min) at start: %s; at the end: %s (the machine was shared)", r.loadStart, r.loadEnd)
	w("- Source: %s", b.source)
	w("- Control plane: envtest kube-apiserver and etcd from `KUBEBUILDER_ASSETS` (%s)", os.Getenv("KUBEBUILDER_ASSETS"))
	w("- Manager: the binary built from `./cmd`, its flag defaults except `--kubeconfig`, `--dingtalk-endpoint`")
	w("  (the simulator), `--metrics-secure=false` with a loopback `--metrics-bind-address` (scraped by the bench),")
	w("  `--leader-elect=false`%s", extraArgs(b.extra))
	w("- Parameters: --tokens %d --sets %d --namespaces %d --lifetime %s --cycles %d --noise %d --noise-size %d",
		p.tokens, p.sets, p.namespaces, p.lifetime, p.cycles, p.noise, p.noiseSize)
	w("  --restart-window %s --settle %s --rss-samples %d --rss-interval %s", p.restartWindow, p.settle, p.rssSamples, p.rssInterval)
	return s.String()
}

func kibList(v []int64) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, fmt.Sprintf("%d", x))
	}
	return strings.Join(parts, ", ") + " KiB"
}

func extraArgs(extra []string) string {
	if len(extra) == 0 {
		return ""
	}
	return ", and " + "`" + strings.Join(extra, " ") + "`"
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
