package controllers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
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
	{name: "Restart", ownManager: true, run: testRestart},
}

// suite is the shared test environment.
type suite struct {
	cfg    *rest.Config
	k8s    client.Client // uncached, straight to the API server
	scheme *runtime.Scheme
	sim    *simulator.Server
	logs   *testutil.SyncBuffer
	log    logr.Logger
	runID  string
	// mainCache is the main manager's cache (what the operator holds in memory).
	mainCache crcache.Cache

	// sensitive holds every credential and token value the tests used, for the leak scan.
	sensitive sync.Map
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
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		def := filepath.Join("..", "bin", "k8s", "1.37.2")
		if _, err := os.Stat(filepath.Join(def, "kube-apiserver")); err != nil {
			t.Skip("KUBEBUILDER_ASSETS unset and bin/k8s not built: run `make envtest`")
		}
		abs, _ := filepath.Abs(def)
		t.Setenv("KUBEBUILDER_ASSETS", abs)
	}
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
		// All at once: the scenarios mostly wait for token lifetimes, so they run concurrently
		// from goroutines (t.Parallel would cap them at -test.parallel, i.e. GOMAXPROCS).
		var wg sync.WaitGroup
		for _, sc := range scenarios {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.Run(sc.name, func(t *testing.T) { sc.run(t, env.namespace(sc.name)) })
			}()
		}
		wg.Wait()
	})
	t.Run("LeakScan", testLeakScan)
	if t.Failed() {
		// Everything the managers logged, for the post-mortem (the leak scan passed or failed above).
		f, err := os.CreateTemp("", "controllers-envtest-*.log")
		if err == nil {
			_, _ = f.WriteString(env.logs.String())
			_ = f.Close()
			t.Logf("manager logs: %s", f.Name())
		}
	}
}

func setupSuite(t *testing.T) *suite {
	s := &suite{logs: &testutil.SyncBuffer{}, runID: testutil.RandHex(3)}
	var sink = zapcore.AddSync(s.logs)
	if os.Getenv("TEST_LOGS") != "" {
		sink = zapcore.AddSync(ioMulti{s.logs, os.Stderr})
	}
	// The highest verbosity: every V-level the code and controller-runtime have.
	s.log = zap.New(zap.WriteTo(sink), zap.Level(zapcore.Level(-127)))
	ctrl.SetLogger(s.log)
	klog.SetLogger(s.log)

	testEnv := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := testEnv.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := testEnv.Stop(); err != nil {
			t.Logf("stopping envtest: %v", err)
		}
	})
	s.cfg = cfg
	s.scheme = runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s.scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s.scheme); err != nil {
		t.Fatal(err)
	}
	if s.k8s, err = client.New(cfg, client.Options{Scheme: s.scheme}); err != nil {
		t.Fatal(err)
	}
	if s.sim, err = simulator.Start(simulator.Config{}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.sim.Close() })

	// The in-pass retry of a refresh-token write gives up after ~1s here (minutes in production),
	// so a scenario can also prove that a write failing longer stays pending and is never dropped.
	refreshTokenWriteBackoff = wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Steps: 5}

	var mainNamespaces []string
	for _, sc := range scenarios {
		ns := s.namespace(sc.name)
		if err := s.k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		if !sc.ownManager {
			mainNamespaces = append(mainNamespaces, ns)
		}
	}
	if len(mainNamespaces) == 0 {
		// A focused run of own-manager scenarios only: an empty list would mean every namespace,
		// and the main manager would reconcile theirs too.
		idle := s.namespace("idle")
		if err := s.k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: idle}}); err != nil {
			t.Fatal(err)
		}
		mainNamespaces = []string{idle}
	}
	stop := s.startManager(t, mainNamespaces, func(r *DingTalkTokenReconciler) {
		r.Client = faultyWrites{Client: r.Client, s: s}
		r.APIReader = countingReader{Reader: r.APIReader, s: s}
	}, &s.mainCache)
	t.Cleanup(stop)
	return s
}

type ioMulti []interface{ Write([]byte) (int, error) }

func (m ioMulti) Write(p []byte) (int, error) {
	for _, w := range m {
		_, _ = w.Write(p)
	}
	return len(p), nil
}

// namespace is the scenario's namespace: unique per run (envtest namespaces never finish deleting).
func (s *suite) namespace(scenario string) string {
	return strings.ToLower(scenario) + "-" + s.runID
}

// startManager runs a manager with the reconciler for namespaces; mutate adjusts the reconciler
// before setup. The returned function stops it and waits.
func (s *suite) startManager(t *testing.T, namespaces []string, mutate func(*DingTalkTokenReconciler), cache ...*crcache.Cache) func() {
	mgr, err := ctrl.NewManager(s.cfg, ctrl.Options{
		Scheme:                 s.scheme,
		Logger:                 s.log,
		Cache:                  CacheOptions(namespaces),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	dt, err := dingtalk.New(dingtalk.Options{BaseURL: s.sim.URL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := &DingTalkTokenReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Scheme:                  mgr.GetScheme(),
		Recorder:                mgr.GetEventRecorder("dingtalk-token-operator"),
		DingTalk:                dt,
		Endpoint:                s.sim.URL(),
		WatchNamespaces:         namespaces,
		EnableRolloutRestart:    true,
		MaxConcurrentReconciles: 4,
	}
	if mutate != nil {
		mutate(r)
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	for _, c := range cache {
		*c = mgr.GetCache()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
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

// --- helpers -------------------------------------------------------------------------------

// secret returns a fresh random credential value and remembers it for the leak scan.
func (s *suite) secret(prefix string) string {
	v := prefix + testutil.RandHex(12)
	s.sensitive.Store(v, true)
	return v
}

// remember adds a token or credential seen in the tests to the leak scan.
func (s *suite) remember(vs ...string) {
	for _, v := range vs {
		if len(v) >= 8 {
			s.sensitive.Store(v, true)
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// createSecret creates a credentials Secret.
func createSecret(t *testing.T, ns, name string, data map[string]string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	if err := env.k8s.Create(ctxT(t), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// updateSecret sets keys of a Secret (a value of "" deletes the key).
func updateSecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func() error {
		s := &corev1.Secret{}
		if err := env.k8s.Get(ctxT(t), types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
			return err
		}
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range data {
			if v == "" {
				delete(s.Data, k)
			} else {
				s.Data[k] = []byte(v)
			}
		}
		return env.k8s.Update(ctxT(t), s)
	}).Should(Succeed())
}

// newToken builds a DingTalkToken.
func newToken(ns, name string, typ v1alpha1.TokenType, credentials string) *v1alpha1.DingTalkToken {
	return &v1alpha1.DingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.DingTalkTokenSpec{
			Type:           typ,
			CredentialsRef: v1alpha1.CredentialsReference{Name: credentials},
		},
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.k8s.Create(ctxT(t), obj); err != nil {
		t.Fatal(err)
	}
}

func getToken(t *testing.T, ns, name string) *v1alpha1.DingTalkToken {
	t.Helper()
	tok := &v1alpha1.DingTalkToken{}
	if err := env.k8s.Get(ctxT(t), types.NamespacedName{Namespace: ns, Name: name}, tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

// updateToken changes a DingTalkToken's spec, retrying on conflicts.
func updateToken(t *testing.T, ns, name string, change func(*v1alpha1.DingTalkToken)) {
	t.Helper()
	NewWithT(t).Eventually(func() error {
		tok := &v1alpha1.DingTalkToken{}
		if err := env.k8s.Get(ctxT(t), types.NamespacedName{Namespace: ns, Name: name}, tok); err != nil {
			return err
		}
		change(tok)
		return env.k8s.Update(ctxT(t), tok)
	}).Should(Succeed())
}

// cond returns a condition of the DingTalkToken, or an empty one.
func cond(tok *v1alpha1.DingTalkToken, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(tok.Status.Conditions, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// waitFor waits until the DingTalkToken's condition has status and reason, and returns it.
func waitFor(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string, timeout time.Duration) *v1alpha1.DingTalkToken {
	t.Helper()
	var tok *v1alpha1.DingTalkToken
	NewWithT(t).Eventually(func(g Gomega) {
		tok = &v1alpha1.DingTalkToken{}
		g.Expect(env.k8s.Get(ctxT(t), types.NamespacedName{Namespace: ns, Name: name}, tok)).To(Succeed())
		c := cond(tok, typ)
		g.Expect(c.Status).To(Equal(status), "%s/%s %s: %s %s", ns, name, typ, c.Reason, c.Message)
		g.Expect(c.Reason).To(Equal(reason), "%s/%s %s: %s", ns, name, typ, c.Message)
		g.Expect(c.ObservedGeneration).To(Equal(tok.Generation))
	}).WithTimeout(timeout).WithPolling(100 * time.Millisecond).Should(Succeed())
	return tok
}

func waitReady(t *testing.T, ns, name string) *v1alpha1.DingTalkToken {
	t.Helper()
	return waitFor(t, ns, name, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 30*time.Second)
}

// waitRefreshedAfter waits until status.lastRefreshTime is after since and returns the token.
func waitRefreshedAfter(t *testing.T, ns, name string, since time.Time, timeout time.Duration) *v1alpha1.DingTalkToken {
	t.Helper()
	var tok *v1alpha1.DingTalkToken
	NewWithT(t).Eventually(func(g Gomega) {
		tok = getToken(t, ns, name)
		g.Expect(tok.Status.LastRefreshTime).NotTo(BeNil())
		g.Expect(tok.Status.LastRefreshTime.Time.After(since)).To(BeTrue(), "last refresh %s", tok.Status.LastRefreshTime)
	}).WithTimeout(timeout).WithPolling(200 * time.Millisecond).Should(Succeed())
	return tok
}

// secretOf reads a Secret uncached; every value in it joins the leak scan.
func secretOf(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := env.k8s.Get(ctxT(t), types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	rememberSecret(s)
	return s
}

func rememberSecret(s *corev1.Secret) {
	for k, v := range s.Data {
		if k == v1alpha1.ExpiresAtKey || k == v1alpha1.CorpIDKey || k == v1alpha1.UsedBootstrapKey {
			continue
		}
		env.remember(string(v))
	}
}

// calls is the number of simulator calls on path for the credential id.
func calls(path, id string) int64 {
	return env.sim.Stats().Endpoints[path].Credentials[id].Total
}

// results is the simulator's per-result count on path for the credential id.
func results(path, id string) map[string]int64 {
	return env.sim.Stats().Endpoints[path].Credentials[id].Results
}

// events lists the events about one DingTalkToken, by reason.
func eventCounts(t *testing.T, ns, name string) map[string]int {
	t.Helper()
	var list eventsv1.EventList
	if err := env.k8s.List(ctxT(t), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Regarding.Kind == "DingTalkToken" {
			n := int32(1)
			if e.Series != nil {
				n = e.Series.Count
			}
			out[e.Reason] += int(n)
		}
	}
	return out
}

// ownedBy asserts the controller ownerReference that lets the garbage collector delete obj with
// the DingTalkToken (envtest has no garbage collector: the reference is what can be checked).
func ownedBy(g Gomega, obj metav1.Object, tok *v1alpha1.DingTalkToken) {
	refs := obj.GetOwnerReferences()
	g.Expect(refs).To(HaveLen(1))
	ref := refs[0]
	g.Expect(ref.UID).To(Equal(tok.UID))
	g.Expect(ref.Kind).To(Equal("DingTalkToken"))
	g.Expect(ref.APIVersion).To(Equal(v1alpha1.GroupVersion.String()))
	g.Expect(ref.Controller).To(Equal(ptr.To(true)))
	g.Expect(ref.BlockOwnerDeletion).To(Equal(ptr.To(true)))
}

// lifetime is a simulator token lifetime.
func lifetime(d time.Duration) simulator.Duration { return simulator.Duration(d) }

// rfc3339UTC matches what the operator writes for expiresAt.
var rfc3339UTC = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func fmtCalls(path, id string) string {
	return fmt.Sprintf("%d calls (%v)", calls(path, id), results(path, id))
}
