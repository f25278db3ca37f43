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

// Package scale tests what the operator's scale work rests on: the credentials watch, which
// keeps nothing of Secrets no token names, still sees a credentials change within seconds
// (cluster-wide and namespaced, and for a ClusterDingTalkToken whose credentials live in another
// namespace); --watch-label-selector splits the tokens between operators that never touch each
// other's objects; a target write under way survives a stopping manager. One control plane, the
// DingTalk simulator over real HTTP, in-process managers built by internal/operator, and the leak
// scan over everything at the end.
//
// Every manager here serves only the objects labelled with its scenario's selector (the
// selector the sharding scenario proves), so the scenarios run at once without serving each
// other's tokens.
package scale

import (
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/logcap"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// scenarioLabel is the label each scenario puts on its tokens; its managers select on it.
const scenarioLabel = "scale.test.dingtalk.tokens.dev/scenario"

var (
	env  *envtesting.Env
	logs = &testutil.SyncBuffer{}
	log  = zap.New(zap.WriteTo(io.Discard))
	// runID makes the scenario labels of this run unique.
	runID = testutil.RandHex(3)
)

// TestScale runs every scenario at once, then the leak scan over all of them.
func TestScale(t *testing.T) {
	var sink = zapcore.AddSync(logs)
	if os.Getenv("TEST_LOGS") != "" {
		sink = zapcore.AddSync(io.MultiWriter(logs, os.Stderr))
	}
	// The highest verbosity: the leak scan is only meaningful over everything.
	// Capped where the manager binary caps it (below client-go's request and response bodies),
	// since the leader election's client logs through it.
	log = logcap.Cap(zap.New(zap.WriteTo(sink), zap.Level(zapcore.Level(-127))))
	ctrl.SetLogger(log)
	klog.SetLogger(log)
	env = envtesting.Start(t, testenv.Options{Simulator: &simulator.Config{}})

	scenarios := map[string]func(*testing.T){
		"CredentialsWatchClusterWide": testCredentialsWatchClusterWide,
		"CredentialsWatchNamespaced":  testCredentialsWatchNamespaced,
		"WatchLabelSelector":          testWatchLabelSelector,
		"TargetWriteOnShutdown":       testTargetWriteOnShutdown,
		"RateLimitDefers":             testRateLimitDefers,
	}
	t.Run("scenarios", func(t *testing.T) {
		var wg sync.WaitGroup
		for name, run := range scenarios {
			wg.Go(func() { t.Run(name, run) })
		}
		wg.Wait()
	})
	t.Run("LeakScan", func(t *testing.T) {
		env.ScanLeaks(t, logs.Bytes(), `"No refresh"`)
	})
	if t.Failed() {
		if f, err := os.CreateTemp("", "scale-envtest-*.log"); err == nil {
			_, _ = f.Write(logs.Bytes())
			_ = f.Close()
			t.Logf("manager logs: %s", f.Name())
		}
	}
}

// scenario is the label value of a scenario's objects, unique per run.
func scenario(name string) string { return name + "-" + runID }

// managerOptions are a manager's flags for a scenario: its objects only (selector, extra
// requirements appended), in namespaces (none: every namespace), against the simulator sim.
func managerOptions(sc string, sim *simulator.Server, extra string, namespaces ...string) operator.Options {
	o := env.ManagerOptions(namespaces...)
	o.WatchLabelSelector = scenarioLabel + "=" + sc
	if extra != "" {
		o.WatchLabelSelector += "," + extra
	}
	o.DingTalkEndpoint = sim.URL()
	o.DingTalkTimeout = 5 * time.Second
	return o
}

// newApp adds an internal app to sim with a lifetime and returns its key and secret (recorded
// for the leak scan).
func newApp(t *testing.T, sim *simulator.Server, life time.Duration) (string, string) {
	key := "dingscale" + testutil.RandHex(6)
	env.Sensitive.Add(testenv.Credential, key)
	secret := env.Sensitive.New(testenv.Credential, "scale-secret-")
	envtesting.Must(t, sim.AddApp(simulator.App{AppKey: key, AppSecret: secret, TokenLifetime: simulator.Duration(life)}))
	return key, secret
}

// rotateApp gives the app a new secret at DingTalk and returns it.
func rotateApp(t *testing.T, sim *simulator.Server, key string, life time.Duration) string {
	secret := env.Sensitive.New(testenv.Credential, "scale-rotated-")
	envtesting.Must(t, sim.AddApp(simulator.App{AppKey: key, AppSecret: secret, TokenLifetime: simulator.Duration(life)}))
	return secret
}

// labelledToken is an InternalApp DingTalkToken with labels.
func labelledToken(ns, name, credentials string, labels map[string]string) *v1alpha1.DingTalkToken {
	tok := testenv.NewToken(ns, name, v1alpha1.TokenTypeInternalApp, credentials)
	tok.Labels = labels
	return tok
}

// labelledNamespace creates a namespace with labels and returns its name.
func labelledNamespace(t *testing.T, prefix string, labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	envtesting.Must(t, env.Client.Create(envtesting.Ctx(t), ns))
	return ns.Name
}

// calls is sim's count of appAccessToken calls for an app.
func calls(sim *simulator.Server, key string) int64 {
	return sim.Stats().Endpoints[simulator.PathAppAccessToken].Credentials[key].Total
}

// startSimulator starts a simulator of the scenario's own (closed when the test ends).
func startSimulator(t *testing.T) *simulator.Server {
	sim, err := testenv.StartSimulator(simulator.Config{})
	envtesting.Must(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

// readyWithin waits until the DingTalkToken is Ready and returns it.
func readyWithin(t *testing.T, ns, name string, timeout time.Duration) *v1alpha1.DingTalkToken {
	t.Helper()
	tok, err := testenv.WaitForToken(envtesting.Ctx(t), env.Client, ns, name, timeout, testenv.IsReady)
	envtesting.Must(t, err)
	return tok
}

// budgetFree is the earliest time the operator may act on a credentials change of an object that
// called DingTalk at lastCall: a credentials change within 10 s of a call waits for that hold.
func budgetFree(lastCall time.Time) time.Time { return lastCall.Add(11 * time.Second) }

// latest is the later of two times.
func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// describe names a duration for messages.
func describe(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

var _ = NewWithT // Gomega is used by the scenario files.
