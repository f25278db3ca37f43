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

// Package envtesting is internal/testenv for test code: the same environment and fixtures, taking
// a testing.TB and failing the test instead of returning errors, with Gomega flavours where a
// scenario asserts inside Eventually. Programs (the bench, the demo) use internal/testenv itself.
package envtesting

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega" //nolint:revive // Gomega's DSL reads best unqualified
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// ReadyTimeout is how long WaitReady waits for a first token.
const ReadyTimeout = 30 * time.Second

// Env is a testenv.Environment with the values the suite must never leak.
type Env struct {
	*testenv.Environment
	// Sensitive collects every credential and token the tests handle, for the leak scan.
	Sensitive *testenv.Sensitive
}

// Wrap binds an environment started elsewhere (in TestMain) to the test helpers.
func Wrap(e *testenv.Environment) *Env {
	return &Env{Environment: e, Sensitive: &testenv.Sensitive{}}
}

// Main is a suite's TestMain (os.Exit(Main(m, o, setup))): it makes a scratch directory, starts
// the environment of o while building o.Build (an Out that is not absolute is a name in the
// scratch directory), calls setup with the environment and that directory, runs the tests, and
// stops everything. Without the envtest binaries the suite is skipped, as Start skips a test.
func Main(m *testing.M, o testenv.Options, setup func(env *Env, dir string) error) int {
	dir, err := os.MkdirTemp("", "dingtalk-suite-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	for i, b := range o.Build {
		if !filepath.IsAbs(b.Out) {
			o.Build[i].Out = filepath.Join(dir, b.Out)
		}
	}
	e, err := testenv.Start(o)
	if errors.Is(err, testenv.ErrNoAssets) {
		fmt.Fprintln(os.Stderr, "skipped:", err)
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = e.Stop() }()
	if setup != nil {
		if err := setup(Wrap(e), dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// Start starts an environment for the test (skipped when the envtest binaries are missing) and
// stops it when the test ends.
func Start(tb testing.TB, o testenv.Options) *Env {
	tb.Helper()
	e, err := testenv.Start(o)
	if errors.Is(err, testenv.ErrNoAssets) {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.Stop(); err != nil {
			tb.Logf("stopping the environment: %v", err)
		}
	})
	return Wrap(e)
}

// Ctx is a quiet context (see testenv.Quiet) that ends with the test.
func Ctx(tb testing.TB) context.Context { return testenv.Quiet(tb.Context()) }

// Must fails the test on an error.
func Must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// StartManager starts an in-process manager (see testenv.Environment.StartManager) that stops
// when the test ends.
func (e *Env) StartManager(tb testing.TB, o operator.Options, hooks operator.Hooks) *testenv.Manager {
	tb.Helper()
	m, err := e.Environment.StartManager(context.Background(), o, hooks)
	Must(tb, err)
	tb.Cleanup(func() {
		if err := m.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return m
}

// CreateNamespace creates a namespace with a unique name starting with prefix.
func (e *Env) CreateNamespace(tb testing.TB, prefix string) string {
	tb.Helper()
	ns, err := testenv.CreateNamespace(Ctx(tb), e.Client, prefix)
	Must(tb, err)
	return ns
}

// Create creates obj.
func (e *Env) Create(tb testing.TB, obj client.Object) {
	tb.Helper()
	Must(tb, e.Client.Create(Ctx(tb), obj))
}

// CreateSecret creates a Secret with data.
func (e *Env) CreateSecret(tb testing.TB, ns, name string, data map[string]string) *corev1.Secret {
	tb.Helper()
	s, err := testenv.CreateSecret(Ctx(tb), e.Client, ns, name, data)
	Must(tb, err)
	return s
}

// UpdateSecret sets keys of a Secret ("" deletes a key), retrying on conflicts.
func (e *Env) UpdateSecret(tb testing.TB, ns, name string, data map[string]string) {
	tb.Helper()
	Must(tb, testenv.UpdateSecret(Ctx(tb), e.Client, ns, name, data))
}

// Reads take a Gomega rather than a testing.TB, so that they work inside Eventually as well as
// outside it (with g := NewWithT(t)).

// quiet is the context of reads (see testenv.Quiet).
var quiet = testenv.Quiet(context.Background())

// Secret reads a Secret uncached and records the values of an operator-written one as
// sensitive (Sensitive.AddSecret).
func (e *Env) Secret(g Gomega, ns, name string) *corev1.Secret {
	s := &corev1.Secret{}
	g.ExpectWithOffset(1, e.Client.Get(quiet, client.ObjectKey{Namespace: ns, Name: name}, s)).To(Succeed())
	e.Sensitive.AddSecret(s)
	return s
}

// GetToken reads a DingTalkToken.
func (e *Env) GetToken(g Gomega, ns, name string) *v1alpha1.DingTalkToken {
	tok, err := testenv.GetToken(quiet, e.Client, ns, name)
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return tok
}

// UpdateToken changes a DingTalkToken, retrying on conflicts.
func (e *Env) UpdateToken(tb testing.TB, ns, name string, change func(*v1alpha1.DingTalkToken)) {
	tb.Helper()
	Must(tb, testenv.UpdateToken(Ctx(tb), e.Client, ns, name, change))
}

// WaitFor waits until the DingTalkToken's condition typ has status and reason for its current
// generation, and returns that version.
func (e *Env) WaitFor(tb testing.TB, ns, name, typ string, status metav1.ConditionStatus, reason string, timeout time.Duration) *v1alpha1.DingTalkToken {
	tb.Helper()
	tok, err := testenv.WaitForToken(Ctx(tb), e.Client, ns, name, timeout, testenv.HasCondition(typ, status, reason))
	Must(tb, err)
	return tok
}

// WaitReady waits at most ReadyTimeout until the DingTalkToken is Ready with a token.
func (e *Env) WaitReady(tb testing.TB, ns, name string) *v1alpha1.DingTalkToken {
	tb.Helper()
	tok, err := testenv.WaitForToken(Ctx(tb), e.Client, ns, name, ReadyTimeout, testenv.IsReady)
	Must(tb, err)
	return tok
}

// WaitRefreshedAfter waits until status.lastRefreshTime is after since, and returns that version.
func (e *Env) WaitRefreshedAfter(tb testing.TB, ns, name string, since time.Time, timeout time.Duration) *v1alpha1.DingTalkToken {
	tb.Helper()
	tok, err := testenv.WaitForToken(Ctx(tb), e.Client, ns, name, timeout, testenv.RefreshedAfter(since))
	Must(tb, err)
	return tok
}

// EventCounts counts the events about one DingTalkToken by reason.
func (e *Env) EventCounts(g Gomega, ns, name string) map[string]int {
	n, err := testenv.EventCounts(quiet, e.Client, ns, name)
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return n
}

// EventReasons lists the reasons of every event in ns.
func (e *Env) EventReasons(g Gomega, ns string) []string {
	r, err := testenv.EventReasons(quiet, e.Client, ns)
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return r
}

// Calls is the simulator's number of calls on path for a credential id.
func (e *Env) Calls(path, id string) int64 {
	return e.Sim.Stats().Endpoints[path].Credentials[id].Total
}

// Results is the simulator's count of calls on path for a credential id, by result.
func (e *Env) Results(path, id string) map[string]int64 {
	return e.Sim.Stats().Endpoints[path].Credentials[id].Results
}

// ExpectOwnedBy asserts that obj is owned by tok as the garbage collector needs (see
// testenv.CheckOwnedBy).
func ExpectOwnedBy(g Gomega, obj metav1.Object, tok *v1alpha1.DingTalkToken) {
	g.ExpectWithOffset(1, testenv.CheckOwnedBy(obj, tok)).To(Succeed())
}

// ScanLeaks runs the leak scan over logs and everything the managers wrote (see
// testenv.LeakScan) and reports each leak as a test error.
func (e *Env) ScanLeaks(tb testing.TB, logs []byte, mustLog ...string) *testenv.LeakReport {
	tb.Helper()
	r, err := testenv.LeakScan{Values: e.Sensitive, Logs: logs, MustLog: mustLog}.Run(Ctx(tb), e.Client)
	Must(tb, err)
	for _, l := range r.Leaks {
		tb.Error(l)
	}
	tb.Logf("leak scan: %s: %d findings", r.Scanned, len(r.Leaks))
	return r
}

// ScanOutput runs the leak scan over the output of a program that is not a manager (see
// testenv.Sensitive.ScanOutput) and reports each leak as a test error.
func ScanOutput(tb testing.TB, values *testenv.Sensitive, sources map[string][]byte) {
	tb.Helper()
	leaks, err := values.ScanOutput(sources)
	Must(tb, err)
	for _, l := range leaks {
		tb.Error(l)
	}
	n := 0
	for _, b := range sources {
		n += len(b)
	}
	tb.Logf("leak scan: %d values against %d bytes in %d sources: %d findings", values.Len(), n, len(sources), len(leaks))
}

// FreeAddr returns a free loopback address.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	a, err := testenv.FreeAddr()
	Must(tb, err)
	return a
}

// StartProcess runs bin with args, output kept in memory; the test's cleanup kills it and, when
// the test failed, logs the end of its output.
func StartProcess(tb testing.TB, name, bin string, args ...string) *testenv.Process {
	tb.Helper()
	p, err := testenv.StartProcess(name, bin, "", args...)
	Must(tb, err)
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("--- end of %s's output ---\n%s", name, p.Tail(80))
		}
	})
	return p
}
