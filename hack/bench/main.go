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

// Command bench measures the operator: an envtest control plane (kube-apiserver and etcd), the
// DingTalk simulator in-process on loopback, and the real manager binary as its own process,
// built from ./cmd and run with a kubeconfig envtest issues. It prints one report and, with
// --out, writes it with the machine and the parameters to a Markdown file.
//
// For each size of --sizes (TOKENS/SETS[/LIFETIME]), in a control plane of its own:
//
//  1. Scale: the DingTalkTokens over their credential sets, created at once.
//  2. Steady state: --cycles refresh cycles.
//  3. Restart with every token due: SIGKILL, wait until every token is due, a new process.
//  4. Restart with none due: SIGKILL and a new process with every token valid for 2 h.
//  5. Memory: the manager's RSS and live heap with --noise unrelated Secrets, over the same
//     without them.
//
// Then the other load shapes, each in a control plane of its own:
//
//   - One namespace (--one-namespace TOKENS/SETS[/LIFETIME],...): every DingTalkToken in one
//     namespace, created one after the other by one client, status read by listing them every
//     second as a platform team's script would; peak RSS (VmHWM), RSS and live heap at all Ready
//     and settled, heap per token, all-Ready time, calls over the ideal.
//   - Two shards (--shards TOKENS/SETS[/LIFETIME]): two managers with disjoint
//     --watch-label-selector and leases of their own, the tokens (and their credential sets)
//     split between them; each shard's RSS, heap and all-Ready time, calls over the ideal through
//     an endpoint of its own, and that no token was served, nor a credential set called for, by both.
//   - The fan-out: one ClusterDingTalkToken written into --fanout namespaces.
//
// Then dingtalk-token-proxy (proxy.go): the binary as a process in front of the simulator, its
// added latency at --proxy-rate and at saturation, requests/s and RSS; --proxy-only runs it alone
// (no control plane), --proxy=false leaves it out.
//
// Every manager is the binary a release builds (static, stripped), runs with GOMEMLIMIT set as the
// chart sets it (--gomemlimit), and has its metrics scraped every --scrape-interval, as
// Prometheus would.
//
// Benchmarks report; they do not fail on timing. `make bench` runs the full size of 1,000
// tokens and the fan-out; the 10,000-token size is selected with --sizes. Every size is a flag,
// so a small run fits in CI:
//
//	go run ./hack/bench --sizes 50/5/20s --noise 200 --cycles 1 --restart-window 10s --fanout 50 \
//		--one-namespace 50/5/20s --shards 100/10/20s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// size is one scale scenario: tokens over sets credential sets, with simulator tokens of lifetime.
type size struct {
	tokens, sets int
	lifetime     time.Duration
}

func (s size) String() string { return fmt.Sprintf("%d/%d/%s", s.tokens, s.sets, s.lifetime) }

// params are the benchmark's sizes and timings, one flag each.
type params struct {
	sizes          []size
	oneNamespace   []size
	shards         size // tokens 0: no two-shard run
	gomemlimit     string
	scrapeInterval time.Duration
	namespaces     int
	cycles         int
	noise          int
	noiseSize      int
	fanout         int
	fanoutLifetime time.Duration
	fanoutCycles   int
	restartWindow  time.Duration
	settle         time.Duration
	rssSamples     int
	rssInterval    time.Duration
	readyTimeout   time.Duration
	profileDir     string
	profileSeconds int
	scaleOnly      bool
	managerBin     string
	rev            string
	managerArgs    string
	root           string
	out            string
	command        string
	proxy          proxyParams // the dingtalk-token-proxy phase (proxy.go)
}

// defaultParams are the flag defaults: the full size `make bench` runs.
func defaultParams() params {
	return params{
		sizes:          []size{{tokens: 1000, sets: 100}}, // lifetime: --lifetime
		oneNamespace:   []size{{tokens: 1000, sets: 100}},
		shards:         size{tokens: 2000, sets: 200},
		gomemlimit:     defaultGOMEMLIMIT,
		scrapeInterval: 30 * time.Second,
		namespaces:     10,
		cycles:         3,
		noise:          10000,
		noiseSize:      4096,
		fanout:         1000,
		fanoutLifetime: time.Minute,
		fanoutCycles:   2,
		restartWindow:  time.Minute,
		settle:         20 * time.Second,
		rssSamples:     5,
		rssInterval:    2 * time.Second,
		readyTimeout:   10 * time.Minute,
		profileSeconds: 30,
		root:           ".",
		proxy:          defaultProxyParams(),
	}
}

func main() {
	p := defaultParams()
	var tokens, sets int
	var lifetime time.Duration
	flag.Func("sizes", "comma-separated TOKENS/SETS[/LIFETIME] scale scenarios, each in a control plane of its own "+
		"(default 1000/100/1m; the 10,000-token scenario: 1000/100,10000/1000/6m)", func(v string) error {
		s, err := parseSizes(v)
		p.sizes = s
		return err
	})
	flag.Func("one-namespace", "comma-separated TOKENS/SETS[/LIFETIME] sizes of the one-namespace shape: every token in one namespace, "+
		"created one after the other, status read by listing (default 1000/100; the 10,000-token size: 10000/1000/6m; empty: none)", func(v string) error {
		s, err := parseSizes(v)
		p.oneNamespace = s
		return err
	})
	flag.Func("shards", "TOKENS/SETS[/LIFETIME] of the two-shard run: two managers with disjoint --watch-label-selector, "+
		"the tokens and sets split between them (default 2000/200; 20,000 tokens: 20000/2000/6m; empty: none)", func(v string) error {
		s, err := parseSizes(v)
		switch {
		case err != nil:
			return err
		case len(s) > 1:
			return errors.New("one size only")
		case len(s) == 0:
			p.shards = size{}
		default:
			p.shards = s[0]
		}
		return nil
	})
	flag.StringVar(&p.gomemlimit, "gomemlimit", p.gomemlimit, "GOMEMLIMIT of every manager process, as the chart sets it "+
		"(from its memory limit); empty: none")
	flag.DurationVar(&p.scrapeInterval, "scrape-interval", p.scrapeInterval, "scrape every manager's metrics this often, "+
		"as Prometheus does through the chart's ServiceMonitor (0: never)")
	flag.IntVar(&tokens, "tokens", 0, "shorthand for --sizes TOKENS/SETS/LIFETIME, with --sets and --lifetime")
	flag.IntVar(&sets, "sets", 0, "credential sets of --tokens (default a tenth of them)")
	flag.DurationVar(&lifetime, "lifetime", time.Minute, "simulator token lifetime of --tokens, and of sizes that name none")
	flag.IntVar(&p.namespaces, "namespaces", p.namespaces, "namespaces the tokens and their credentials spread over")
	flag.IntVar(&p.cycles, "cycles", p.cycles, "refresh cycles measured in the steady state")
	flag.IntVar(&p.noise, "noise", p.noise, "unrelated Secrets created for the memory measurement")
	flag.IntVar(&p.noiseSize, "noise-size", p.noiseSize, "bytes of data in each unrelated Secret")
	flag.IntVar(&p.fanout, "fanout", p.fanout, "namespaces one ClusterDingTalkToken is written into (0: no fan-out scenario)")
	flag.DurationVar(&p.fanoutLifetime, "fanout-lifetime", p.fanoutLifetime, "simulator token lifetime in the fan-out scenario")
	flag.IntVar(&p.fanoutCycles, "fanout-cycles", p.fanoutCycles, "refresh cycles measured in the fan-out scenario")
	flag.DurationVar(&p.restartWindow, "restart-window", p.restartWindow, "how long DingTalk calls are counted after a restart with no token due")
	flag.DurationVar(&p.settle, "settle", p.settle, "how long a manager runs with all tokens Ready before its RSS is sampled")
	flag.IntVar(&p.rssSamples, "rss-samples", p.rssSamples, "RSS samples per measurement (the maximum is reported)")
	flag.DurationVar(&p.rssInterval, "rss-interval", p.rssInterval, "time between RSS samples")
	flag.DurationVar(&p.readyTimeout, "ready-timeout", p.readyTimeout, "give up waiting for tokens after this long")
	flag.StringVar(&p.profileDir, "profile-dir", "", "serve the manager's pprof on loopback and write CPU and heap profiles of each phase here")
	flag.IntVar(&p.profileSeconds, "profile-seconds", p.profileSeconds, "length of the CPU profile taken from the first create")
	flag.BoolVar(&p.scaleOnly, "scale-only", false, "stop each size, each one-namespace size and the two shards once their tokens are Ready "+
		"and settled (experiments; the report leaves the other phases empty)")
	flag.StringVar(&p.managerBin, "manager-bin", "", "manager binary to run (default: built from ./cmd into a temporary directory)")
	flag.StringVar(&p.rev, "rev", "", "build the manager from this git revision (e.g. HEAD) instead of the working tree")
	flag.StringVar(&p.managerArgs, "manager-args", "", "extra manager flags, space-separated (e.g. --max-concurrent-reconciles=8)")
	flag.StringVar(&p.root, "root", p.root, "repository root (for config/crd/bases and ./cmd)")
	flag.StringVar(&p.out, "out", "", "also write the report to this Markdown file")
	p.proxy.register(flag.CommandLine)
	flag.Parse()
	if p.proxy.only {
		p.sizes, p.oneNamespace, p.shards, p.fanout, p.proxy.enabled = nil, nil, size{}, 0, true
	}
	p.command = "go run ./hack/bench " + strings.Join(os.Args[1:], " ")
	if tokens > 0 {
		if sets == 0 {
			sets = max(1, tokens/10)
		}
		p.sizes = []size{{tokens: tokens, sets: sets, lifetime: lifetime}}
	}
	for _, sizes := range [][]size{p.sizes, p.oneNamespace} {
		for i := range sizes {
			if sizes[i].lifetime == 0 {
				sizes[i].lifetime = lifetime
			}
		}
	}
	if p.shards.lifetime == 0 {
		p.shards.lifetime = lifetime
	}
	if err := p.validate(flag.NArg()); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	// The bench's own controller-runtime and client-go messages stay quiet; the manager logs to a file.
	if _, err := testenv.SetLogger(os.Stderr, "error"); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := run(ctx, p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	report := b.report()
	fmt.Println(report)
	if p.out != "" {
		if err := os.MkdirAll(filepath.Dir(p.out), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(p.out, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		logf("Wrote %s", p.out)
	}
}

// validate refuses flags the bench cannot run with.
func (p params) validate(args int) error {
	switch {
	case args > 0:
		return errors.New("unexpected arguments")
	case len(p.sizes) == 0 && len(p.oneNamespace) == 0 && p.shards.tokens == 0 && p.fanout == 0 && !p.proxy.enabled:
		return errors.New("nothing to run: no --sizes, --one-namespace, --shards or --fanout, and --proxy=false")
	case p.proxy.enabled && (p.proxy.rate < 1 || p.proxy.duration < time.Second || p.proxy.concurrency < 1):
		return errors.New("--proxy-rate and --proxy-concurrency must be at least 1, --proxy-duration at least 1s")
	case p.shards.tokens > 0 && p.shards.sets < 2:
		return fmt.Errorf("--shards %s: two shards need two credential sets or more", p.shards)
	case !validMemLimit(p.gomemlimit):
		return fmt.Errorf("--gomemlimit %q: want bytes, or a number with B, KiB, MiB, GiB or TiB (as Go reads GOMEMLIMIT)", p.gomemlimit)
	case p.namespaces < 1 || p.cycles < 1 || p.rssSamples < 1 || p.fanoutCycles < 1:
		return errors.New("--namespaces, --cycles, --fanout-cycles and --rss-samples must be at least 1")
	}
	all := append(slices.Clone(p.sizes), p.oneNamespace...)
	if p.shards.tokens > 0 {
		all = append(all, p.shards)
	}
	for _, s := range all {
		if s.tokens < 1 || s.sets < 1 || s.sets > s.tokens || s.lifetime < 15*time.Second {
			return fmt.Errorf("size %s: need tokens >= sets >= 1 and a lifetime of 15s or more", s)
		}
	}
	return nil
}

// parseSizes parses TOKENS/SETS[/LIFETIME],...
func parseSizes(v string) ([]size, error) {
	var out []size
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, "/")
		if len(parts) < 2 || len(parts) > 3 {
			return nil, fmt.Errorf("size %q: want TOKENS/SETS[/LIFETIME]", item)
		}
		var s size
		var err error
		if s.tokens, err = strconv.Atoi(parts[0]); err != nil {
			return nil, fmt.Errorf("size %q: %w", item, err)
		}
		if s.sets, err = strconv.Atoi(parts[1]); err != nil {
			return nil, fmt.Errorf("size %q: %w", item, err)
		}
		if len(parts) == 3 {
			if s.lifetime, err = time.ParseDuration(parts[2]); err != nil {
				return nil, fmt.Errorf("size %q: %w", item, err)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// defaultGOMEMLIMIT is what the chart sets by default: 40% of the container's memory limit
// (resources.limits.memory, 256Mi in charts/dingtalk-token-operator/values.yaml), in MiB;
// hack/release TestChartGOMEMLIMIT checks the chart's side.
const defaultGOMEMLIMIT = "102MiB"

// memLimit is the syntax of GOMEMLIMIT: bytes, or a number with a unit.
var memLimit = regexp.MustCompile(`^[0-9]+(B|KiB|MiB|GiB|TiB)?$`)

func validMemLimit(v string) bool { return v == "" || memLimit.MatchString(v) }

// logf prints a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// releaseFlags build a binary as a release does (hack/release): no local paths, no symbol table;
// buildBinary builds without cgo, as a release does too (a static binary).
var releaseFlags = []string{"-trimpath", "-ldflags=-s -w"}

// buildBinary builds a main package (./cmd, the manager) without cgo: from the working tree at
// root, or, when rev is set, from that revision exported into a directory of its own.
func buildBinary(root, rev, pkg, out string, flags ...string) error {
	if err := os.Setenv("CGO_ENABLED", "0"); err != nil {
		return err
	}
	dir := root
	if rev != "" {
		dir = filepath.Join(filepath.Dir(out), "src")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		export := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, rev, dir)
		if b, err := export.CombinedOutput(); err != nil {
			return fmt.Errorf("exporting %s: %v: %s", rev, err, b)
		}
	}
	return testenv.Build(dir, pkg, out, false, flags...)
}
