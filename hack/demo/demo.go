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
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	dingtalkv1alpha1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/logcap"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

const (
	steps = 9
	// pollInterval is how often the demo reads the DingTalkTokens.
	pollInterval = 500 * time.Millisecond
	// readyTimeout bounds the wait for the first tokens.
	readyTimeout = 2 * time.Minute
)

// demo runs the steps and remembers what it needs to clean up and to report.
type demo struct {
	cfg   config
	out   io.Writer
	start time.Time

	env       *testenv.Environment
	client    client.Client
	sim       *simulator.Server
	mgr       *testenv.Manager
	proxy     *proxyDemo
	logFile   *os.File
	lifetime  time.Duration
	appliedAt time.Time
	table     string // last table of DingTalkTokens printed
	// clusterTable is the last table of ClusterDingTalkTokens printed.
	clusterTable string

	result result
}

// result is what the demo observed; the test asserts on it.
type result struct {
	// FirstReadyAfterApply is the time from applying the samples to the first Ready token whose
	// target Secret exists; FirstReadyAfterStart counts from the start of the demo.
	FirstReadyAfterApply, FirstReadyAfterStart time.Duration
	// Refreshed names the first DingTalkToken refreshed live; the target Secret's expiresAt
	// moved from ExpiresBefore to ExpiresAfter.
	Refreshed                   string
	ExpiresBefore, ExpiresAfter string
	// TokenChanged says whether the refresh brought a new token value (DingTalk renews a token
	// that is still valid under the same value).
	TokenChanged bool
	// Secrets lists the Secrets the demo showed (namespace/name).
	Secrets []string
	// StreamTokens names the DingTalkTokens whose suite tickets come from DingTalk Stream mode;
	// StreamReadyAfterPush is the time from the first push to all of them Ready; TicketPickedUp
	// says the second push reached their suite-ticket Secrets, and CallsForSecondPush how many
	// DingTalk token calls it caused (0: the token is refreshed with it when due).
	StreamTokens         []string
	StreamReadyAfterPush time.Duration
	TicketPickedUp       bool
	CallsForSecondPush   int64
	// ClusterObjects lists the objects of the cluster samples the demo created ("Kind name");
	// ClusterSecrets the target Secrets the ClusterDingTalkTokens wrote (namespace/name), and
	// ClusterCalls the DingTalk token calls made for them.
	ClusterObjects []string
	ClusterSecrets []string
	ClusterCalls   int64
	// ProxyBefore and ProxyAfter are the calls made through dingtalk-token-proxy before and after
	// the refresh of its token.
	ProxyBefore, ProxyAfter proxyCall
}

// stepError is a failed step: what failed and how to fix it.
type stepError struct {
	step string
	err  error
	fix  string
}

func (e *stepError) Error() string {
	msg := fmt.Sprintf("%s: %v", e.step, e.err)
	if e.fix != "" {
		msg += "\n  how to fix: " + e.fix
	}
	return msg
}

func (e *stepError) Unwrap() error { return e.err }

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

// since is the elapsed time since the demo started, for progress lines.
func (d *demo) since() string { return fmt.Sprintf("[+%5.1fs]", time.Since(d.start).Seconds()) }

func (d *demo) step(n int, format string, args ...any) time.Time {
	d.printf("%s [%d/%d] %s ... ", d.since(), n, steps, fmt.Sprintf(format, args...))
	return time.Now()
}

func (d *demo) done(t0 time.Time, format string, args ...any) {
	d.printf("done in %.1fs%s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
}

// run runs the steps in order. Each starts only while ctx is live: a Ctrl-C during a step that
// cannot be cut short (starting the control plane) ends the demo when that step is done.
func (d *demo) run(ctx context.Context) error {
	d.printf("dingtalk-token-operator demo: a local control plane, the DingTalk simulator and the operator.\n\n")
	for _, step := range []func(context.Context) error{
		func(context.Context) error { return d.resolvePaths() },
		func(context.Context) error { return d.startControlPlane() },
		func(context.Context) error { return d.startSimulator() },
		d.startOperator,
		func(context.Context) error { return d.writeKubeconfig() },
		d.applySamples,
		d.waitReady,
		d.pushTickets,
		d.applyClusterSamples,
		d.startProxy,
		d.waitRefresh,
		d.proxyAfterRefresh,
	} {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step(ctx); err != nil {
			return err
		}
	}
	d.printSummary()
	if d.cfg.exitAfterRefresh {
		return nil
	}
	d.printInstructions()
	return d.watch(ctx)
}

// resolvePaths finds the repository root and makes every path absolute.
func (d *demo) resolvePaths() error {
	c := &d.cfg
	if c.root == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return &stepError{step: "finding the repository", err: err,
				fix: "run `make demo` (or `go run ./hack/demo`) from the dingtalk-token-operator repository"}
		}
		c.root = root
	}
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(c.root, *p)
		}
	}
	if c.assets == "" {
		c.assets = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if c.assets == "" {
		version, err := testenv.EnvtestVersion(c.root)
		if err != nil {
			return &stepError{step: "finding the envtest version", err: err, fix: "run `make demo` from the repository root"}
		}
		c.assets = filepath.Join("bin", "k8s", version)
	}
	for _, p := range []*string{&c.assets, &c.simulatorConfig, &c.samples, &c.clusterSamples, &c.kubeconfig, &c.logFile} {
		abs(p)
	}
	return nil
}

func (d *demo) startControlPlane() error {
	t0 := d.step(1, "Starting a local control plane (kube-apiserver and etcd from %s)", d.rel(d.cfg.assets))
	if err := testenv.CheckAssets(d.cfg.assets); err != nil {
		d.printf("FAILED\n")
		return &stepError{step: "starting the control plane", err: err,
			fix: "run `make envtest` (builds kube-apiserver and etcd from Go modules once, about 10 minutes on 2 cores), " +
				"or set KUBEBUILDER_ASSETS to a directory holding them"}
	}
	env, err := testenv.Start(testenv.Options{Root: d.cfg.root, Assets: d.cfg.assets})
	if err != nil {
		d.printf("FAILED\n")
		return &stepError{step: "starting the control plane", err: err,
			fix: "check that " + d.cfg.assets + " holds working kube-apiserver and etcd binaries " +
				"(delete it and run `make envtest` to rebuild), and that no other demo is still running"}
	}
	d.env, d.client = env, env.Client
	// Discover the API now, so that step 4 measures the operator rather than client start-up.
	if err := d.client.List(context.Background(), &dingtalkv1alpha1.DingTalkTokenList{}); err != nil {
		d.printf("FAILED\n")
		return &stepError{step: "reading DingTalkTokens", err: err, fix: "check config/crd/bases (run `make manifests`)"}
	}
	d.done(t0, "; DingTalkToken CRD installed from config/crd/bases")
	return nil
}

func (d *demo) startSimulator() error {
	t0 := d.step(2, "Starting the DingTalk simulator with the demo credentials (%s)", d.rel(d.cfg.simulatorConfig))
	simCfg, err := simulator.LoadConfig(d.cfg.simulatorConfig)
	if err != nil {
		d.printf("FAILED\n")
		return &stepError{step: "loading the simulator credentials", err: err,
			fix: "restore config/simulator/credentials.yaml (git checkout config/simulator) or pass --simulator-config"}
	}
	if d.cfg.tokenLifetime > 0 {
		setLifetimes(&simCfg, d.cfg.tokenLifetime)
	}
	d.lifetime = shortestLifetime(simCfg)
	defer func() { d.env.Sim = d.sim }() // stopped with the control plane
	d.sim, err = testenv.StartSimulator(simCfg)
	if err != nil {
		d.printf("FAILED\n")
		return &stepError{step: "starting the simulator", err: err, fix: "check the simulator config; it listens on 127.0.0.1 at a free port"}
	}
	d.done(t0, "; listening on %s, tokens live %s", d.sim.URL(), d.lifetime)
	return nil
}

func (d *demo) startOperator(ctx context.Context) error {
	t0 := d.step(3, "Starting the operator (the manager of cmd/main.go) against the simulator")
	if err := os.MkdirAll(filepath.Dir(d.cfg.logFile), 0o755); err != nil {
		return &stepError{step: "creating the log directory", err: err}
	}
	f, err := os.Create(d.cfg.logFile)
	if err != nil {
		d.printf("FAILED\n")
		return &stepError{step: "creating the operator log", err: err, fix: "pass --log-file with a writable path"}
	}
	d.logFile = f
	logger := logcap.Cap(zap.New(zap.WriteTo(f), zap.Encoder(zapcore.NewJSONEncoder(zapcore.EncoderConfig{
		TimeKey: "ts", LevelKey: "level", NameKey: "logger", MessageKey: "msg", StacktraceKey: "stacktrace",
		EncodeTime: zapcore.ISO8601TimeEncoder, EncodeLevel: zapcore.LowercaseLevelEncoder, EncodeDuration: zapcore.StringDurationEncoder,
	}))))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger)

	// The manager cmd/main.go runs, built by internal/operator, pointed at the simulator.
	mgr, err := d.env.StartManager(ctx, d.env.ManagerOptions(), operator.Hooks{})
	if err != nil {
		d.printf("FAILED\n")
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		return &stepError{step: "starting the operator", err: err, fix: "see the operator log " + d.rel(d.cfg.logFile)}
	}
	d.mgr = mgr
	d.done(t0, "; its log: %s", d.rel(d.cfg.logFile))
	return nil
}

func (d *demo) writeKubeconfig() error {
	if err := d.env.AdminKubeconfig(d.cfg.kubeconfig, "demo-admin"); err != nil {
		return &stepError{step: "writing the kubeconfig", err: err, fix: "pass --kubeconfig-out with a writable path"}
	}
	return nil
}

func (d *demo) applySamples(ctx context.Context) error {
	t0 := d.step(4, "Applying %s to namespace %s", d.rel(d.cfg.samples), d.cfg.namespace)
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), d.cfg.samples)
	if err != nil {
		d.printf("FAILED\n")
		return &stepError{step: "rendering the samples", err: err, fix: "restore config/samples (git checkout config/samples) or pass --samples"}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.cfg.namespace}}
	if err := d.client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		d.printf("FAILED\n")
		return &stepError{step: "creating namespace " + d.cfg.namespace, err: err}
	}
	var objs, later []*unstructured.Unstructured
	for _, r := range m.Resources() {
		obj, err := r.Map()
		if err != nil {
			return &stepError{step: "decoding the samples", err: err}
		}
		u := &unstructured.Unstructured{Object: obj}
		u.SetNamespace(d.cfg.namespace)
		if u.GetKind() == "Secret" {
			objs = append(objs, u) // credentials before the tokens that name them
		} else {
			later = append(later, u)
		}
	}
	d.appliedAt = time.Now()
	counts := map[string]int{}
	for _, u := range append(objs, later...) {
		if err := d.client.Create(ctx, u); err != nil {
			d.printf("FAILED\n")
			return &stepError{step: fmt.Sprintf("creating %s %s", u.GetKind(), u.GetName()), err: err,
				fix: "the samples must pass the CRD's validation; see `go test ./config/`"}
		}
		counts[u.GetKind()]++
	}
	d.done(t0, "; %d Secrets with credentials, %d DingTalkTokens", counts["Secret"], counts["DingTalkToken"])
	return nil
}

// waitReady prints the tokens as they change until every one is Ready, then their Secrets. A
// token whose suite tickets come from DingTalk Stream mode can only wait, connected, for its
// first ticket: step 6 pushes it.
func (d *demo) waitReady(ctx context.Context) error {
	d.step(5, "Waiting for the operator to issue the tokens")
	d.printf("\n")
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		toks, err := d.list(ctx)
		if err != nil {
			return d.waitError(ctx, "waiting for Ready tokens", err)
		}
		d.printTable(toks)
		if d.result.FirstReadyAfterApply == 0 {
			for i := range toks {
				if isReady(&toks[i]) && d.secretExists(ctx, &toks[i]) {
					d.result.FirstReadyAfterApply = time.Since(d.appliedAt)
					d.result.FirstReadyAfterStart = time.Since(d.start)
					d.printf("%s First Ready token with its Secret: %s/%s, %.1fs after the samples were applied (%.1fs after the demo started)\n",
						d.since(), toks[i].Namespace, toks[i].TargetName(),
						d.result.FirstReadyAfterApply.Seconds(), d.result.FirstReadyAfterStart.Seconds())
					break
				}
			}
		}
		if plain, stream := splitStream(toks); len(toks) > 0 && allReady(plain) && allWaitingForTicket(stream) {
			return d.printSecrets(ctx, plain)
		}
		if err := testenv.Sleep(ctx, pollInterval); err != nil {
			return d.waitError(ctx, "waiting for Ready tokens", err)
		}
	}
}

// waitRefresh waits for the first live refresh: a target Secret whose expiresAt moves on.
func (d *demo) waitRefresh(ctx context.Context) error {
	toks, err := d.list(ctx)
	if err != nil {
		return d.waitError(ctx, "waiting for a refresh", err)
	}
	before := map[string]dingtalkv1alpha1.DingTalkToken{}
	var due time.Time
	for _, t := range toks {
		before[t.Name] = t
		if rt := t.Status.RefreshTime; rt != nil && (due.IsZero() || rt.Time.Before(due)) {
			due = rt.Time
		}
	}
	d.step(9, "Waiting for a live refresh: the first is due at %s (in %s; tokens are refreshed a third of their lifetime before expiry)",
		due.UTC().Format(time.TimeOnly), time.Until(due).Round(time.Second))
	d.printf("\n")
	for {
		if err := testenv.Sleep(ctx, pollInterval); err != nil {
			return d.waitError(ctx, "waiting for a refresh", err)
		}
		toks, err := d.list(ctx)
		if err != nil {
			return d.waitError(ctx, "waiting for a refresh", err)
		}
		d.printTable(toks)
		for i := range toks {
			t, old := &toks[i], before[toks[i].Name]
			if !refreshed(&old, t) {
				continue
			}
			sec := &corev1.Secret{}
			if err := d.client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.TargetName()}, sec); err != nil {
				return d.waitError(ctx, "reading the refreshed Secret", err)
			}
			after := string(sec.Data[dingtalkv1alpha1.ExpiresAtKey])
			if after != t.Status.ExpiresAt.UTC().Format(time.RFC3339) {
				continue // the status is ahead of the Secret we read; look again
			}
			d.result.Refreshed = t.Namespace + "/" + t.Name
			d.result.ExpiresBefore = old.Status.ExpiresAt.UTC().Format(time.RFC3339)
			d.result.ExpiresAfter = after
			d.result.TokenChanged = old.Status.TokenDigest != t.Status.TokenDigest
			value := "the same token value, renewed (DingTalk renews a token that is still valid)"
			if d.result.TokenChanged {
				value = "a new token value"
			}
			d.printf("%s Refreshed %s: Secret %s now expires at %s instead of %s, with %s\n",
				d.since(), d.result.Refreshed, t.TargetName(), d.result.ExpiresAfter, d.result.ExpiresBefore, value)
			return nil
		}
	}
}

// watch keeps printing changes until Ctrl-C.
func (d *demo) watch(ctx context.Context) error {
	for {
		if err := testenv.Sleep(ctx, pollInterval); err != nil {
			return err
		}
		toks, err := d.list(ctx)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			d.printf("%s reading DingTalkTokens failed: %v\n", d.since(), err)
			continue
		}
		d.printTable(toks)
	}
}

func (d *demo) printSummary() {
	d.printf("\nTime to the first Ready Secret: %.1fs after applying the samples, %.1fs after `make demo` started.\n",
		d.result.FirstReadyAfterApply.Seconds(), d.result.FirstReadyAfterStart.Seconds())
}

func (d *demo) printInstructions() {
	kc := d.rel(d.cfg.kubeconfig)
	ns := d.cfg.namespace
	d.printf(`
The cluster keeps running, and tokens keep being refreshed, until you press Ctrl-C.
In another terminal (kubectl is not needed for the demo itself):

  export KUBECONFIG=%[1]s
  # the tokens; REFRESH moves on about every %[3]s
  kubectl get dtt -n %[2]s -w
  # conditions and events
  kubectl describe dtt crm-bot -n %[2]s
  # what a pod mounts
  kubectl get secret crm-bot-token -n %[2]s -o yaml
  # break it: a wrong appSecret turns Refreshed False (CredentialsRejected); the token stays until it expires
  kubectl patch secret crm-bot-credentials -n %[2]s -p '{"stringData":{"appSecret":"wrong"}}'
  # what the DingTalk simulator answered
  curl -s %[4]s/_sim/stats
  # DingTalk Stream mode: push a new suite ticket; isv-stream-suite-ticket holds it at once
  curl -s -XPOST %[4]s/_sim/push -d '{"suiteKey":"suitestream"}'
  kubectl get secret isv-stream-suite-ticket -n %[2]s -o jsonpath='{.metadata.annotations}'
  kubectl get dtt isv-stream -n %[2]s -o jsonpath='{.status.conditions[?(@.type=="TicketStream")]}'
  # the ClusterDingTalkToken and the namespaces it fans its token out to
  kubectl get cdtt
  kubectl get secrets -A -l team=crm
  # call DingTalk (the simulator) through dingtalk-token-proxy, with no token: it adds the current one
  curl -s -XPOST http://%[6]s/topapi/v2/user/get -H 'Content-Type: application/json' -d '{"userid":"manager1"}'
  curl -s http://%[7]s/v1.0/contact/users/union123

The operator's log is %[5]s. Changes are printed below.
`, kc, ns, d.lifetime-d.lifetime/3, d.sim.URL(), d.rel(d.cfg.logFile), d.proxy.srv.Addrs["oapi"], d.proxy.srv.Addrs["api"])
}

// cleanup stops everything the demo started, in reverse order; a second call does nothing.
func (d *demo) cleanup() {
	if d.proxy != nil {
		d.proxy.close()
		d.proxy = nil
	}
	if d.mgr != nil {
		_ = d.mgr.Stop()
		d.mgr = nil
	}
	if d.env != nil {
		if err := d.env.Stop(); err != nil {
			d.printf("stopping the control plane: %v\n", err)
		}
		d.env = nil
		_ = os.Remove(d.cfg.kubeconfig)
	}
	if d.logFile != nil {
		_ = d.logFile.Close()
		d.logFile = nil
	}
}

func (d *demo) list(ctx context.Context) ([]dingtalkv1alpha1.DingTalkToken, error) {
	var l dingtalkv1alpha1.DingTalkTokenList
	if err := d.client.List(ctx, &l, client.InNamespace(d.cfg.namespace)); err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (d *demo) secretExists(ctx context.Context, t *dingtalkv1alpha1.DingTalkToken) bool {
	return d.client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.TargetName()}, &corev1.Secret{}) == nil
}

// waitError explains a failed wait: a timeout names the log and the tokens' reasons.
func (d *demo) waitError(ctx context.Context, what string, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return &stepError{step: what, err: errors.New("timed out"),
			fix: "look at the REASON column above (docs/troubleshooting.md explains each) and at the operator log " + d.rel(d.cfg.logFile)}
	}
	if errors.Is(err, context.Canceled) {
		return &stepError{step: what, err: errors.New("interrupted")}
	}
	return &stepError{step: what, err: err}
}

// rel shows a path relative to the repository root when it is inside it.
func (d *demo) rel(p string) string {
	if r, err := filepath.Rel(d.cfg.root, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

func setLifetimes(c *simulator.Config, d time.Duration) {
	for i := range c.Apps {
		c.Apps[i].TokenLifetime = simulator.Duration(d)
	}
	for i := range c.Suites {
		c.Suites[i].TokenLifetime = simulator.Duration(d)
	}
	for i := range c.Users {
		c.Users[i].TokenLifetime = simulator.Duration(d)
	}
}

// shortestLifetime is the shortest token lifetime the simulator will answer (2h when unset).
func shortestLifetime(c simulator.Config) time.Duration {
	shortest := 2 * time.Hour
	check := func(d simulator.Duration) {
		if d > 0 && time.Duration(d) < shortest {
			shortest = time.Duration(d)
		}
	}
	for _, a := range c.Apps {
		check(a.TokenLifetime)
	}
	for _, s := range c.Suites {
		check(s.TokenLifetime)
	}
	for _, u := range c.Users {
		check(u.TokenLifetime)
	}
	return shortest
}
