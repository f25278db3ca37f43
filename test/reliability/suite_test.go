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

// Package reliability asserts how the operator behaves when things go wrong: every fault class
// the DingTalk simulator can inject, API-server conflicts and deletions, user refresh-token
// rotations across write failures and manager restarts, a crowd of tokens with a failing subset,
// and, over all of it, that no credential or token ever reaches a log line, an event, a status or
// a metric.
//
// Everything is real except time's speed: an envtest kube-apiserver and etcd, the simulator
// over HTTP on loopback, and the manager in-process, built by internal/operator.NewManager as
// cmd/main.go builds it, one per case, each restricted to the case's own namespace
// (--watch-namespaces) so cases run in parallel without seeing each other. Simulator faults are
// scoped to the case's own credential ids for the same reason. API-server faults are injected
// through the reconciler's client (operator.Hooks.WrapClient).
//
// Run with KUBEBUILDER_ASSETS set, or after `make envtest`: go test ./test/reliability/
package reliability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-logr/logr"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

var (
	// env is the control plane and the DingTalk simulator every case shares; each case adds its
	// own credentials. env.Sensitive collects every credential and token value the suite handles:
	// none may appear in a log line, an event, a status or a metric.
	env *envtesting.Env
	// logs receives every manager's log at the highest verbosity, plus client-go's (klog).
	logs testutil.SyncBuffer
	// logger writes into logs.
	logger logr.Logger
	// quiet is the context of the tests' own API calls (see testenv.Quiet).
	quiet = testenv.Quiet(context.Background())
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// The manager's own flag, at its highest value: --zap-log-level=127 enables logr's V(127).
	var err error
	if logger, err = testenv.SetLogger(&logs, "127"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	e, err := testenv.Start(testenv.Options{Simulator: &simulator.Config{}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = e.Stop() }()
	env = envtesting.Wrap(e)

	code := m.Run()
	if code != 0 {
		if dir, err := os.MkdirTemp("", "reliability-logs-"); err == nil {
			path := filepath.Join(dir, "managers.log")
			if os.WriteFile(path, logs.Bytes(), 0o600) == nil {
				fmt.Fprintln(os.Stderr, "the managers' logs are in", path)
			}
		}
	}
	return code
}

// TestReliability runs every case at once (each in its own namespace, with its own manager and
// its own simulator credentials), then scans everything the managers produced for leaks.
//
// The cases are started from goroutines rather than with t.Parallel: go test runs at most
// -parallel (GOMAXPROCS, 2 on CI) parallel subtests at a time, and the cases mostly wait for
// token lifetimes to pass, so running them all together bounds the suite by its longest case.
func TestReliability(t *testing.T) {
	cases := map[string]func(*testing.T){
		"FaultRateLimitedWithRetryAfter": testRateLimitedWithRetryAfter,
		"TargetUpdateConflict":           testTargetUpdateConflict,
		"TargetDeletedMidRefresh":        testTargetDeletedMidRefresh,
		"TargetTakenThenDeleted":         testTargetTakenThenDeleted,
		"UserRefreshTokenRotations":      testUserRefreshTokenRotations,
		"ManyTokensWithFailingSubset":    testManyTokensWithFailingSubset,
	}
	for _, fc := range faultCases() {
		cases["Fault"+fc.name] = func(t *testing.T) { runFaultCase(t, fc) }
	}
	t.Run("cases", func(t *testing.T) {
		var wg sync.WaitGroup
		for name, f := range cases {
			wg.Go(func() { t.Run(name, f) })
		}
		wg.Wait()
	})
	t.Run("LeakScan", testLeakScan)
}

// testLeakScan runs after every case: no credential value (app, suite and client ids included)
// and no access or refresh token may appear in the managers' logs at their highest verbosity, in
// any event, in any DingTalkToken's status, or in the metrics registry; target Secrets hold their
// token but never a credential or a refresh token (see testenv.LeakScan for every rule).
func testLeakScan(t *testing.T) {
	if env.Sensitive.Len() == 0 {
		t.Skip("no case ran")
	}
	env.ScanLeaks(t, logs.Bytes(), `"level":"debug"`)
}

// secretValue returns a fresh credential value (recorded as one that must never leak). Its
// shape differs from the simulator's 32-hex-digit tokens so that the scan can tell them apart.
func secretValue(what string) string {
	return env.Sensitive.New(testenv.Credential, "rel-"+what+"-")
}
