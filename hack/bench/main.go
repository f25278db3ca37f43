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
// built from ./cmd and run with a kubeconfig envtest issues. It prints one table and, with
// --out, writes it with the machine and the parameters to a Markdown file.
//
//  1. Scale: --tokens DingTalkTokens over --sets credential sets, created at once.
//  2. Steady state: --cycles refresh cycles with --lifetime simulator tokens.
//  3. Memory: the manager's RSS with --noise unrelated Secrets in the cluster, over its RSS
//     without them, both with the tokens managed.
//  4. Restart: SIGKILL and a new process with every token valid.
//
// Benchmarks report; they do not fail on timing. `make bench` runs the full size; every size is
// a flag, so a small run fits in CI:
//
//	go run ./hack/bench --tokens 50 --sets 5 --noise 200 --lifetime 30s --cycles 1 --restart-window 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// params are the benchmark's sizes and timings, one flag each.
type params struct {
	tokens, sets, namespaces int
	lifetime                 time.Duration
	cycles                   int
	noise, noiseSize         int
	restartWindow            time.Duration
	settle                   time.Duration
	rssSamples               int
	rssInterval              time.Duration
	readyTimeout             time.Duration
	managerBin               string
	rev                      string
	managerArgs              string
	root                     string
	out                      string
	command                  string
}

func main() {
	p := params{}
	flag.IntVar(&p.tokens, "tokens", 1000, "DingTalkTokens created at once")
	flag.IntVar(&p.sets, "sets", 100, "distinct credential sets (internal apps) the tokens spread over")
	flag.IntVar(&p.namespaces, "namespaces", 10, "namespaces the tokens and their credentials spread over")
	flag.DurationVar(&p.lifetime, "lifetime", 60*time.Second, "simulator token lifetime during the scale and steady-state phases")
	flag.IntVar(&p.cycles, "cycles", 3, "refresh cycles measured in the steady state")
	flag.IntVar(&p.noise, "noise", 10000, "unrelated Secrets created for the memory measurement")
	flag.IntVar(&p.noiseSize, "noise-size", 4096, "bytes of data in each unrelated Secret")
	flag.DurationVar(&p.restartWindow, "restart-window", 60*time.Second, "how long DingTalk calls are counted after a restart")
	flag.DurationVar(&p.settle, "settle", 20*time.Second, "how long a manager runs with all tokens Ready before its RSS is sampled")
	flag.IntVar(&p.rssSamples, "rss-samples", 5, "RSS samples per measurement (the maximum is reported)")
	flag.DurationVar(&p.rssInterval, "rss-interval", 2*time.Second, "time between RSS samples")
	flag.DurationVar(&p.readyTimeout, "ready-timeout", 5*time.Minute, "give up waiting for tokens after this long")
	flag.StringVar(&p.managerBin, "manager-bin", "", "manager binary to run (default: built from ./cmd into a temporary directory)")
	flag.StringVar(&p.rev, "rev", "", "build the manager from this git revision (e.g. HEAD) instead of the working tree")
	flag.StringVar(&p.managerArgs, "manager-args", "", "extra manager flags, space-separated (e.g. --max-concurrent-reconciles=8)")
	flag.StringVar(&p.root, "root", ".", "repository root (for config/crd/bases and ./cmd)")
	flag.StringVar(&p.out, "out", "", "also write the report to this Markdown file")
	flag.Parse()
	p.command = "go run ./hack/bench " + strings.Join(os.Args[1:], " ")
	if flag.NArg() > 0 || p.tokens < 1 || p.sets < 1 || p.sets > p.tokens || p.namespaces < 1 || p.cycles < 1 || p.rssSamples < 1 {
		fmt.Fprintln(os.Stderr, "bench: invalid flags (need tokens >= sets >= 1, namespaces, cycles and rss-samples >= 1)")
		os.Exit(2)
	}
	// The bench's own controller-runtime and client-go messages stay quiet; the manager logs to a file.
	if _, err := testenv.SetLogger(os.Stderr, "error"); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	report, err := run(ctx, p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
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

// logf prints a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// buildManager builds ./cmd like `make build`: from the working tree at root, or, when rev is
// set, from that revision exported into a directory of its own.
func buildManager(root, rev, out string) error {
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
	return testenv.Build(dir, "./cmd", out, false)
}
