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

package controllers_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"

	. "github.com/onsi/gomega"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// The envtest suite: a real kube-apiserver and etcd, the DingTalk simulator over real HTTP, and the
// reconciler in a real manager. Every scenario runs in parallel in a namespace of its own; the
// main manager watches all of those namespaces, scenarios that stop and start managers get a
// manager of their own. After all of them, the leak scan reads everything the managers logged (at
// the highest verbosity), every event, every status and the metrics.

// scenario is one envtest scenario.
type scenario struct {
	name string
	// ownManager: the scenario starts its own managers; the main manager does not watch its namespace.
	ownManager bool
	run        func(t *testing.T, ns string)
}

// scenarios lists every scenario; see the files named by concern for their bodies.
var scenarios = []scenario{
	{name: "IssuesInternalApp", run: testIssuesInternalApp},
	{name: "IssuesEveryType", run: testIssuesEveryType},
	{name: "RefreshCycles", run: testRefreshCycles},
	{name: "CredentialsChange", run: testCredentialsChange},
	{name: "SuiteTicket", run: testSuiteTicket},
	{name: "CredentialsRejected", run: testCredentialsRejected},
	{name: "CredentialsNotFound", run: testCredentialsNotFound},
	{name: "Outage", run: testOutage},
	{name: "ExpiryWhileFailing", run: testExpiryWhileFailing},
	{name: "RetryAfter", run: testRetryAfter},
	{name: "QuotaExceeded", run: testQuotaExceeded},
	{name: "TemplateInvalid", run: testTemplateInvalid},
	{name: "TargetConflict", run: testTargetConflict},
	{name: "DriftRepair", run: testDriftRepair},
	{name: "SharedFetch", run: testSharedFetch},
	{name: "UserRotation", run: testUserRotation},
	{name: "UserReauthorization", run: testUserReauthorization},
	{name: "Suspend", run: testSuspend},
	{name: "Deletion", run: testDeletion},
	{name: "RolloutRestart", run: testRolloutRestart},
	{name: "RefreshRequest", run: testRefreshRequest},
	{name: "Restart", ownManager: true, run: testRestart},
	{name: "StreamFirstPush", run: testStreamFirstPush},
	{name: "StreamTicketReplaced", run: testStreamTicketReplaced},
	{name: "StreamConnections", run: testStreamConnections},
	{name: "StreamRestart", ownManager: true, run: testStreamRestart},
	{name: "StreamSuiteKeyChange", run: testStreamSuiteKeyChange},
}

// suite is the shared test environment: a control plane and the simulator (envtesting.Env),
// the managers' logs, and the faults and counts the main manager's reconciler is wired with.
type suite struct {
	*envtesting.Env
	logs  *testutil.SyncBuffer
	log   logr.Logger
	runID string
	// mainCache is the main manager's cache (what the operator holds in memory).
	mainCache crcache.Cache

	// failRefreshWrites: namespace -> *atomic.Int32, writes of refresh-token Secrets to fail.
	failRefreshWrites sync.Map
	// failStatusWrites: namespace -> *atomic.Int32, DingTalkToken status writes to fail.
	failStatusWrites sync.Map
	// writeLog: namespace -> *writeLog, the order of successful Secret writes.
	writeLog sync.Map
	// secretReads: "namespace/name" -> *atomic.Int32, uncached Secret reads by the main manager.
	secretReads sync.Map
}

var env *suite

func TestEnvtest(t *testing.T) {
	// SCENARIOS=regexp runs some scenarios (and the leak scan over them): a focused run.
	if f := os.Getenv("SCENARIOS"); f != "" {
		re := regexp.MustCompile(f)
		var keep []scenario
		for _, sc := range scenarios {
			if re.MatchString(sc.name) {
				keep = append(keep, sc)
			}
		}
		scenarios = keep
	}
	env = setupSuite(t)
	t.Run("scenarios", func(t *testing.T) {
		runs := make(map[string]func(*testing.T), len(scenarios))
		for _, sc := range scenarios {
			runs[sc.name] = func(t *testing.T) { sc.run(t, env.namespace(sc.name)) }
		}
		envtesting.RunConcurrently(t, runs)
	})
	t.Run("LeakScan", testLeakScan)
}

// testLeakScan runs after every scenario: everything the managers logged at the highest verbosity,
// every event, every DingTalkToken status and the metrics must hold none of the credential, token,
// refresh-token and suite-ticket values the scenarios used (see testenv.LeakScan for every rule).
func testLeakScan(t *testing.T) {
	// The scan is only meaningful if the managers did log at debug level: V(1) and V(5) messages,
	// and (when the Stream scenarios ran) what the stream connections and the ticket sink logged.
	mustLog := []string{`"No refresh"`, `"Reconciling"`}
	for _, sc := range scenarios {
		switch sc.name {
		case "StreamFirstPush":
			mustLog = append(mustLog, `"Stored a pushed suite ticket"`, `"DingTalk stream state changed"`)
		case "StreamConnections":
			mustLog = append(mustLog, `"Reconnecting to the DingTalk stream"`) // V(1), after the drop
		}
	}
	env.ScanLeaks(t, env.logs.Bytes(), mustLog...)
	if n := env.Sensitive.Len(); n < 3*len(scenarios) {
		t.Errorf("only %d values scanned: the scenarios did not record what they used", n)
	}
}

func setupSuite(t *testing.T) *suite {
	s := &suite{runID: testutil.RandHex(3)}
	// The highest verbosity: every V-level the code and controller-runtime have.
	s.logs, s.log = envtesting.SuiteLogs(t, "controllers-envtest")
	s.Env = envtesting.Start(t, testenv.Options{Simulator: &simulator.Config{}})

	// The in-pass retry of a refresh-token write gives up after ~1s here (minutes in production),
	// so a scenario can also prove that a write failing longer stays pending and is never dropped.
	controllers.SetRefreshTokenWriteBackoff(wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Steps: 5})

	var mainNamespaces []string
	for _, sc := range scenarios {
		ns := s.namespace(sc.name)
		s.Create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		if !sc.ownManager {
			mainNamespaces = append(mainNamespaces, ns)
		}
	}
	if len(mainNamespaces) == 0 {
		// A focused run of own-manager scenarios only: an empty list would mean every namespace,
		// and the main manager would reconcile theirs too.
		idle := s.namespace("idle")
		s.Create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: idle}})
		mainNamespaces = []string{idle}
	}
	m := s.startManager(t, mainNamespaces, true, operator.Hooks{
		WrapClient:    func(c client.Client) client.Client { return faultyWrites{Client: c, s: s} },
		WrapAPIReader: func(r client.Reader) client.Reader { return countingReader{Reader: r, s: s} },
	})
	s.mainCache = m.GetCache()
	return s
}

// namespace is the scenario's namespace: unique per run (envtest namespaces never finish deleting).
func (s *suite) namespace(scenario string) string {
	return strings.ToLower(scenario) + "-" + s.runID
}

// startManager runs a manager built by internal/operator for namespaces, with
// --enable-rollout-restart set to rollout, a 5s --dingtalk-timeout and hooks; it stops when the
// test ends (or earlier, with Stop).
func (s *suite) startManager(t *testing.T, namespaces []string, rollout bool, hooks operator.Hooks) *testenv.Manager {
	o := s.ManagerOptions(namespaces...)
	o.EnableRolloutRestart = rollout
	o.DingTalkTimeout = 5 * time.Second
	hooks.Logger = s.log
	return s.StartManager(t, o, hooks)
}

// countingReader counts the reconciler's uncached Secret reads, per namespace/name.
type countingReader struct {
	client.Reader
	s *suite
}

func (c countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		v, _ := c.s.secretReads.LoadOrStore(key.String(), &atomic.Int32{})
		v.(*atomic.Int32).Add(1)
	}
	return c.Reader.Get(ctx, key, obj, opts...)
}

// secretGets is how often the main manager read a Secret uncached.
func (s *suite) secretGets(ns, name string) int32 {
	v, ok := s.secretReads.Load(keyOf(ns, name).String())
	if !ok {
		return 0
	}
	return v.(*atomic.Int32).Load()
}

// faultyWrites fails writes of refresh-token Secrets in namespaces that asked for it: an API
// server refusing the write, for the in-process retry to overcome.
type faultyWrites struct {
	client.Client
	s *suite
}

func (c faultyWrites) inject(obj client.Object) error {
	if _, ok := obj.(*corev1.Secret); !ok || !strings.HasSuffix(obj.GetName(), v1alpha1.RefreshTokenSecretSuffix) {
		return nil
	}
	v, ok := c.s.failRefreshWrites.Load(obj.GetNamespace())
	if !ok {
		return nil
	}
	if n := v.(*atomic.Int32); n.Add(-1) >= 0 {
		return apierrors.NewServiceUnavailable("injected write failure")
	}
	return nil
}

func (c faultyWrites) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	if err := c.inject(obj); err != nil {
		return err
	}
	return c.record(obj, c.Client.Create(ctx, obj, opts...))
}

func (c faultyWrites) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	if err := c.inject(obj); err != nil {
		return err
	}
	return c.record(obj, c.Client.Update(ctx, obj, opts...))
}

func (c faultyWrites) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	return c.record(obj, c.Client.Patch(ctx, obj, patch, opts...))
}

// Apply injects and records server-side applies of Secrets like the other writes.
func (c faultyWrites) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	ac, ok := obj.(*corev1ac.SecretApplyConfiguration)
	if !ok {
		return c.Client.Apply(ctx, obj, opts...)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ptr.Deref(ac.Namespace, ""), Name: ptr.Deref(ac.Name, "")}}
	if err := c.inject(s); err != nil {
		return err
	}
	return c.record(s, c.Client.Apply(ctx, obj, opts...))
}

// Status fails status writes in namespaces that asked for it (failNextStatusWrites).
func (c faultyWrites) Status() client.SubResourceWriter {
	return faultyStatus{SubResourceWriter: c.Client.Status(), s: c.s}
}

type faultyStatus struct {
	client.SubResourceWriter
	s *suite
}

func (c faultyStatus) inject(obj client.Object) error {
	if v, ok := c.s.failStatusWrites.Load(obj.GetNamespace()); ok && v.(*atomic.Int32).Add(-1) >= 0 {
		return apierrors.NewServiceUnavailable("injected status write failure")
	}
	return nil
}

func (c faultyStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if err := c.inject(obj); err != nil {
		return err
	}
	return c.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

func (c faultyStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	if err := c.inject(obj); err != nil {
		return err
	}
	return c.SubResourceWriter.Update(ctx, obj, opts...)
}

// failNextStatusWrites makes the next n DingTalkToken status writes in ns fail.
func (s *suite) failNextStatusWrites(ns string, n int32) *atomic.Int32 {
	v, _ := s.failStatusWrites.LoadOrStore(ns, &atomic.Int32{})
	c := v.(*atomic.Int32)
	c.Store(n)
	return c
}

// record appends a successful Secret write to its namespace's write log: "R" for a refresh-token
// Secret, "T" for any other (a target).
func (c faultyWrites) record(obj client.Object, err error) error {
	if _, ok := obj.(*corev1.Secret); ok && err == nil {
		kind := "T"
		if strings.HasSuffix(obj.GetName(), v1alpha1.RefreshTokenSecretSuffix) {
			kind = "R"
		}
		v, _ := c.s.writeLog.LoadOrStore(obj.GetNamespace(), &writeLog{})
		l := v.(*writeLog)
		l.mu.Lock()
		l.seq += kind
		l.mu.Unlock()
	}
	return err
}

// writeLog is the order of a namespace's successful Secret writes.
type writeLog struct {
	mu  sync.Mutex
	seq string
}

func (s *suite) writes(ns string) string {
	v, ok := s.writeLog.Load(ns)
	if !ok {
		return ""
	}
	l := v.(*writeLog)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// failRefreshWrites makes the next n writes of refresh-token Secrets in ns fail.
func (s *suite) failNextRefreshWrites(ns string, n int32) *atomic.Int32 {
	v, _ := s.failRefreshWrites.LoadOrStore(ns, &atomic.Int32{})
	c := v.(*atomic.Int32)
	c.Store(n)
	return c
}

// secret returns a fresh random credential value and records it for the leak scan.
func (s *suite) secret(prefix string) string { return s.Sensitive.New(testenv.Credential, prefix) }

func keyOf(ns, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: ns, Name: name}
}

// tokenAndSecret reads a DingTalkToken and its target Secret as one pass wrote them. A pass writes
// the Secret, then the status: two reads with a pass between them (a refresh of another
// DingTalkToken sharing the credentials, say) disagree. It reads both until status.tokenDigest and
// status.expiresAt describe the Secret's token.
func tokenAndSecret(t *testing.T, ns, name, secret, key string) (*v1alpha1.DingTalkToken, *corev1.Secret) {
	t.Helper()
	var tok *v1alpha1.DingTalkToken
	var s *corev1.Secret
	NewWithT(t).Eventually(func(g Gomega) {
		tok, s = env.GetToken(g, ns, name), env.Secret(g, ns, secret)
		g.Expect(tok.Status.ExpiresAt).NotTo(BeNil())
		g.Expect(controllers.TokenDigest(testenv.Quiet(context.Background()), env.Client, "default", tok.UID, string(s.Data[key]))).To(Equal(tok.Status.TokenDigest), "status.tokenDigest")
		g.Expect(string(s.Data[v1alpha1.ExpiresAtKey])).To(Equal(tok.Status.ExpiresAt.UTC().Format(time.RFC3339)), "status.expiresAt")
	}).WithTimeout(10 * time.Second).Should(Succeed())
	return tok, s
}

// rfc3339UTC matches what the operator writes for expiresAt.
var rfc3339UTC = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

func fmtCalls(path, id string) string {
	return fmt.Sprintf("%d calls (%v)", env.Calls(path, id), env.Results(path, id))
}
