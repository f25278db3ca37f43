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
// over HTTP on loopback, and the manager in-process, wired like cmd/main.go (the same cache
// options, SetupWithManager, the real DingTalk HTTP client), one per case, each restricted to the
// case's own namespace (--watch-namespaces) so cases run in parallel without seeing each other.
// Simulator faults are scoped to the case's own credential ids for the same reason.
//
// Run with KUBEBUILDER_ASSETS set (make test does it): go test ./test/reliability/
package reliability

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

var (
	scheme  = newScheme()
	restCfg *rest.Config
	// k8s is the tests' own client (uncached, not rate limited).
	k8s client.Client
	// sim is the DingTalk simulator every case shares; each case adds its own credentials.
	sim *simulator.Server
	// logs receives every manager's log at the highest verbosity, plus client-go's (klog).
	logs testutil.SyncBuffer
	// logger writes into logs.
	logger logr.Logger
	// leaks collects every credential and token value the suite handles: none may appear in a
	// log line, an event, a status or a metric.
	leaks = &secretSet{values: map[string]string{}}
)

func newScheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test`, or `make envtest` and "+
			"KUBEBUILDER_ASSETS=$PWD/bin/k8s/<version> go test ./test/reliability/")
		return 1
	}
	// The manager's own flag, at its highest value: --zap-log-level=127 enables logr's V(127).
	zopts := zap.Options{}
	fs := flag.NewFlagSet("zap", flag.ContinueOnError)
	zopts.BindFlags(fs)
	if err := fs.Parse([]string{"--zap-log-level=127"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logger = zap.New(zap.UseFlagOptions(&zopts), zap.WriteTo(&logs))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)

	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	env := &envtest.Environment{
		CRDDirectoryPaths:        []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 90 * time.Second,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	// The managers get the default client-side limits; the tests' own client is not throttled.
	restCfg = cfg
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = 1000, 2000
	if k8s, err = client.New(fast, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if sim, err = simulator.Start(simulator.Config{}, clock.RealClock{}); err != nil {
		fmt.Fprintln(os.Stderr, "starting the simulator:", err)
		return 1
	}
	defer func() { _ = sim.Close() }()

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

// secretSet holds values that must never leak, each with a description of what it is.
type secretSet struct {
	mu     sync.Mutex
	values map[string]string
}

func (s *secretSet) add(what, v string) {
	if v == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.values[v]; !ok {
		s.values[v] = what
	}
}

func (s *secretSet) snapshot() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.values))
	for k, v := range s.values {
		out[k] = v
	}
	return out
}

// secretValue returns a fresh credential value (recorded as one that must never leak). Its
// shape differs from the simulator's 32-hex-digit tokens so that the scan can tell them apart.
func secretValue(what string) string {
	v := "rel-" + what + "-" + testutil.RandHex(9)
	leaks.add(what, v)
	return v
}

// quiet is the context of the tests' own API calls: its logger discards, so that client-go's
// body dumps of the tests' own reads (Secrets included) never reach the managers' log buffer,
// whose lines the leak scan attributes to the managers.
var quiet = logr.NewContext(context.Background(), logr.Discard())

// testContext is a quiet context ending with the test.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(quiet)
	t.Cleanup(cancel)
	return ctx
}

// newNamespace creates a namespace with a unique name (envtest never finishes deleting one).
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rel-" + prefix + "-" + testutil.RandHex(3)}}
	if err := k8s.Create(quiet, ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}
