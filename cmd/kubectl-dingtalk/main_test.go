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

package main_test

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// The plugin as a user runs it: the built kubectl-dingtalk binary, as a process, with a
// kubeconfig of a user holding only the permissions docs/plugin.md lists, against a real
// kube-apiserver (envtest), the DingTalk simulator and the operator (an in-process manager
// logging at the highest verbosity). After every scenario, the leak scan reads the plugin's
// output along with the manager's logs, events, statuses and metrics.

// -update rewrites the golden files: go test ./cmd/kubectl-dingtalk -run TestPlugin -update
var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// suite is the shared world of the scenarios.
type suite struct {
	env        *envtesting.Env
	bin        string
	kubeconfig string
	// logs are the manager's; output is everything the plugin printed.
	logs   *testutil.SyncBuffer
	output *testutil.SyncBuffer
}

func TestPlugin(t *testing.T) {
	s := &suite{logs: &testutil.SyncBuffer{}, output: &testutil.SyncBuffer{}}
	s.bin = filepath.Join(t.TempDir(), "kubectl-dingtalk")
	s.env = envtesting.Start(t, testenv.Options{Simulator: &simulator.Config{},
		Build: []testenv.Binary{{Package: "./cmd/kubectl-dingtalk", Out: s.bin, Race: testenv.RaceEnabled}}})
	// The highest verbosity: the leak scan is about everything the manager can log.
	log := zap.New(zap.WriteTo(s.logs), zap.Level(zapcore.Level(-127)))
	ctrl.SetLogger(log)
	klog.SetLogger(log)
	opts := s.env.ManagerOptions()
	opts.EnableRolloutRestart = true
	s.env.StartManager(t, opts, operator.Hooks{Logger: log})
	s.kubeconfig = s.pluginUser(t)

	t.Run("scenarios", func(t *testing.T) {
		t.Run("Version", s.testVersion)
		t.Run("Status", func(t *testing.T) { t.Parallel(); s.testStatus(t) })
		t.Run("Refresh", func(t *testing.T) { t.Parallel(); s.testRefresh(t) })
		t.Run("Authorize", func(t *testing.T) { t.Parallel(); s.testAuthorize(t) })
		t.Run("AuthorizeSecondCallback", func(t *testing.T) { t.Parallel(); s.testAuthorizeSecondCallback(t) })
		t.Run("AuthorizeRefusals", func(t *testing.T) { t.Parallel(); s.testAuthorizeRefusals(t) })
		t.Run("AuthorizeWrongState", func(t *testing.T) { t.Parallel(); s.testAuthorizeWrongState(t) })
		t.Run("ClusterStatus", func(t *testing.T) { t.Parallel(); s.testClusterStatus(t) })
		t.Run("ClusterRefresh", func(t *testing.T) { t.Parallel(); s.testClusterRefresh(t) })
		t.Run("StatusEscapesEvents", func(t *testing.T) { t.Parallel(); s.testStatusEscapesEvents(t) })
	})
	t.Run("LeakScan", func(t *testing.T) {
		if s.output.String() == "" {
			t.Fatal("the plugin printed nothing to scan")
		}
		logs := append(s.logs.Bytes(), s.output.Bytes()...)
		s.env.ScanLeaks(t, logs, `"Reconciling"`)
	})
	if t.Failed() {
		// The manager's logs and the plugin's output, for the post-mortem.
		if f, err := os.CreateTemp("", "kubectl-dingtalk-test-*.log"); err == nil {
			_, _ = f.Write(s.logs.Bytes())
			_, _ = f.WriteString("\n--- plugin output ---\n" + s.output.String())
			_ = f.Close()
			t.Logf("manager logs and plugin output: %s", f.Name())
		}
	}
}

// pluginUser writes a kubeconfig for a user bound to exactly the permissions docs/plugin.md
// lists for the plugin, and returns its path.
func (s *suite) pluginUser(t *testing.T) string {
	ctx := envtesting.Ctx(t)
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "kubectl-dingtalk-user"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"dingtalktokens", "clusterdingtalktokens"}, Verbs: []string{"get", "list", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list"}},
		},
	}
	envtesting.Must(t, s.env.Client.Create(ctx, role))
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubectl-dingtalk-user"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "plugin-user"}},
	}
	envtesting.Must(t, s.env.Client.Create(ctx, binding))
	path := filepath.Join(t.TempDir(), "plugin-user.kubeconfig")
	envtesting.Must(t, s.env.WriteKubeconfig(path, "plugin-user", "system:authenticated"))
	return path
}

// result is a finished run of the plugin.
type result struct {
	stdout, stderr string
	code           int
}

// run is a running plugin process.
type run struct {
	cmd            *exec.Cmd
	stdout, stderr *testutil.SyncBuffer
	done           chan struct{}
	err            error
}

// start runs the plugin with the user's kubeconfig and args.
func (s *suite) start(t *testing.T, args ...string) *run {
	t.Helper()
	r := &run{stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	r.cmd = exec.Command(s.bin, append([]string{"--kubeconfig", s.kubeconfig}, args...)...)
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	envtesting.Must(t, r.cmd.Start())
	go func() {
		r.err = r.cmd.Wait()
		_, _ = s.output.Write(r.stdout.Bytes())
		_, _ = s.output.Write(r.stderr.Bytes())
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// wait waits for the process to end and returns its output and exit status.
func (r *run) wait(t *testing.T, timeout time.Duration) result {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		_ = r.cmd.Process.Kill()
		<-r.done
		t.Fatalf("the plugin did not end within %s; output:\n%s\n%s", timeout, r.stdout.String(), r.stderr.String())
	}
	res := result{stdout: r.stdout.String(), stderr: r.stderr.String()}
	var exit *exec.ExitError
	switch {
	case r.err == nil:
	case errors.As(r.err, &exit):
		res.code = exit.ExitCode()
	default:
		t.Fatalf("running the plugin: %v", r.err)
	}
	return res
}

// plugin runs the plugin to its end.
func (s *suite) plugin(t *testing.T, args ...string) result {
	t.Helper()
	return s.start(t, args...).wait(t, 3*time.Minute)
}

// failsWithOneLine checks a failed run: exit status 1, nothing on stdout, one line on stderr
// holding want.
func failsWithOneLine(g Gomega, r result, want string) {
	g.ExpectWithOffset(1, r.code).To(Equal(1), "exit status; stdout %q stderr %q", r.stdout, r.stderr)
	g.ExpectWithOffset(1, r.stdout).To(BeEmpty())
	g.ExpectWithOffset(1, strings.Count(r.stderr, "\n")).To(Equal(1), "one line on stderr: %q", r.stderr)
	g.ExpectWithOffset(1, r.stderr).To(HavePrefix("error: "))
	g.ExpectWithOffset(1, r.stderr).To(ContainSubstring(want))
}

func (s *suite) testVersion(t *testing.T) {
	g := NewWithT(t)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := s.plugin(t, args...)
		g.Expect(r.code).To(BeZero())
		g.Expect(r.stdout).To(Equal("kubectl-dingtalk dev\n"))
	}
	r := s.plugin(t, "no-such-command")
	failsWithOneLine(g, r, `unknown command "no-such-command"`)
}

// newApp configures a simulator app and its credentials Secret, and returns the appKey.
func (s *suite) newApp(t *testing.T, ns, secretName string, lifetime time.Duration) string {
	t.Helper()
	key := "dingapp" + testutil.RandHex(4)
	secret := s.env.Sensitive.New(testenv.Credential, "appsecret-")
	envtesting.Must(t, s.env.Sim.AddApp(simulator.App{AppKey: key, AppSecret: secret, TokenLifetime: simulator.Duration(lifetime)}))
	s.env.CreateSecret(t, ns, secretName, map[string]string{"appKey": key, "appSecret": secret})
	return key
}

// Golden output: what changes from run to run (namespace, times, durations, counts, request
// ids) is replaced by placeholders and runs of spaces (tabwriter's alignment) by two.
var normalizers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z`), "<time>"},
	{regexp.MustCompile(`\b(in \d+[dhms](\d+[dhms])?|\d+[dhms](\d+[dhms])? ago|now)\b`), "<when>"},
	{regexp.MustCompile(`requestid [0-9A-Fa-f-]+`), "requestid <id>"},
	{regexp.MustCompile(`\b\d+ failed attempts?\b`), "<n> failed attempts"},
	{regexp.MustCompile(` \(x\d+\)`), ""},
	{regexp.MustCompile(` {2,}`), "  "},
}

func normalize(out, ns string) string {
	out = strings.ReplaceAll(out, ns, "<ns>")
	for _, n := range normalizers {
		out = n.re.ReplaceAllString(out, n.with)
	}
	return out
}

// checkGolden compares the normalized output with testdata/<name>.golden (-update rewrites it).
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		envtesting.Must(t, os.MkdirAll("testdata", 0o755))
		envtesting.Must(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s (run with -update to create it): %v", path, err)
	}
	if string(want) != got {
		t.Errorf("%s differs (run with -update after checking the output):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// testStatus: `status` of a Ready token, of tokens failing for every reason (each with its hint),
// of a suspended and of a pending one, as golden files; a missing object fails with one line.
func (s *suite) testStatus(t *testing.T) {
	g := NewWithT(t)
	ns := s.env.CreateNamespace(t, "plugin-status")
	sim := s.env.Sim

	s.newApp(t, ns, "ready-creds", time.Hour)
	s.env.Create(t, testenv.NewToken(ns, "ready", v1alpha1.TokenTypeInternalApp, "ready-creds"))

	s.newApp(t, ns, "suspended-creds", time.Hour)
	suspended := testenv.NewToken(ns, "suspended", v1alpha1.TokenTypeInternalApp, "suspended-creds")
	suspended.Spec.Suspend = true
	s.env.Create(t, suspended)

	s.env.Create(t, testenv.NewToken(ns, "no-credentials", v1alpha1.TokenTypeInternalApp, "absent-creds"))

	s.newApp(t, ns, "rejected-creds", time.Hour)
	s.env.UpdateSecret(t, ns, "rejected-creds", map[string]string{"appSecret": s.env.Sensitive.New(testenv.Credential, "wrongsecret-")})

	s.newApp(t, ns, "template-creds", time.Hour)
	templated := testenv.NewToken(ns, "bad-template", v1alpha1.TokenTypeInternalApp, "template-creds")
	templated.Spec.Target = &v1alpha1.Target{Template: &v1alpha1.TargetTemplate{Data: map[string]string{"config.json": `{{ env "HOME" }}`}}}
	s.env.Create(t, templated)

	s.newApp(t, ns, "conflict-creds", time.Hour)
	s.env.CreateSecret(t, ns, "conflict", map[string]string{"someone": "else"})
	s.env.Create(t, testenv.NewToken(ns, "conflict", v1alpha1.TokenTypeInternalApp, "conflict-creds"))

	down := s.newApp(t, ns, "down-creds", time.Hour)
	envtesting.Must(t, sim.SetFault(simulator.Fault{Endpoint: simulator.PathAppAccessToken, Credential: down, Status: 503}))
	s.env.Create(t, testenv.NewToken(ns, "unavailable", v1alpha1.TokenTypeInternalApp, "down-creds"))

	quota := s.newApp(t, ns, "quota-creds", time.Hour)
	envtesting.Must(t, sim.SetFault(simulator.Fault{Endpoint: simulator.PathAppAccessToken, Credential: quota, Status: 403,
		Code: "Forbidden.AccessDenied.ApiCountLimitForOrg"}))
	s.env.Create(t, testenv.NewToken(ns, "quota", v1alpha1.TokenTypeInternalApp, "quota-creds"))

	// A throttled token, and a second one of the same credentials that waits for Retry-After
	// without a call: Pending.
	throttled := s.newApp(t, ns, "throttled-creds", time.Hour)
	envtesting.Must(t, sim.SetFault(simulator.Fault{Endpoint: simulator.PathAppAccessToken, Credential: throttled, RetryAfter: 3600, Count: 1}))
	s.env.Create(t, testenv.NewToken(ns, "throttled", v1alpha1.TokenTypeInternalApp, "throttled-creds"))
	s.env.WaitFor(t, ns, "throttled", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonRateLimited, envtesting.ReadyTimeout)
	s.env.Create(t, testenv.NewToken(ns, "pending", v1alpha1.TokenTypeInternalApp, "throttled-creds"))

	// A credential over 4 KiB is refused before any call.
	s.newApp(t, ns, "huge-creds", time.Hour)
	s.env.UpdateSecret(t, ns, "huge-creds", map[string]string{"appSecret": s.env.Sensitive.New(testenv.Credential, strings.Repeat("x", 5000))})
	s.env.Create(t, testenv.NewToken(ns, "oversized", v1alpha1.TokenTypeInternalApp, "huge-creds"))

	// A User token whose refresh token DingTalk refuses; two that bootstrap from one grant.
	s.userCredentials(t, ns, "revoked-oauth", map[string]string{"refreshToken": s.env.Sensitive.New(testenv.Credential, "revoked-rt-")})
	s.env.Create(t, testenv.NewToken(ns, "revoked", v1alpha1.TokenTypeUser, "revoked-oauth"))
	grant := s.env.Sensitive.New(testenv.Credential, "shared-rt-")
	clientID := s.userCredentials(t, ns, "shared-oauth", map[string]string{"refreshToken": grant})
	envtesting.Must(t, s.env.Sim.AddRefreshToken(clientID, grant))
	s.env.Create(t, testenv.NewToken(ns, "first-user", v1alpha1.TokenTypeUser, "shared-oauth"))
	s.env.WaitReady(t, ns, "first-user")
	s.env.Create(t, testenv.NewToken(ns, "second-user", v1alpha1.TokenTypeUser, "shared-oauth"))

	// A new token value whose rollout restart target does not exist: the refresh reports it.
	restartApp := s.newApp(t, ns, "restart-creds", time.Hour)
	restart := testenv.NewToken(ns, "restart", v1alpha1.TokenTypeInternalApp, "restart-creds")
	restart.Spec.RolloutRestartTargets = []v1alpha1.RolloutRestartTarget{{Kind: v1alpha1.WorkloadKindDeployment, Name: "web"}}
	s.env.Create(t, restart)
	s.env.WaitReady(t, ns, "restart")
	var restartCreds corev1.Secret
	envtesting.Must(t, s.env.Client.Get(envtesting.Ctx(t), client.ObjectKey{Namespace: ns, Name: "restart-creds"}, &restartCreds))
	// The app configured anew forgets its token: the next call issues another value.
	envtesting.Must(t, s.env.Sim.AddApp(simulator.App{AppKey: restartApp, AppSecret: string(restartCreds.Data["appSecret"]),
		TokenLifetime: simulator.Duration(time.Hour)}))
	r := s.plugin(t, "refresh", "restart", "-n", ns, "--timeout", "60s")
	g.Expect(r.code).To(BeZero(), "stdout %q stderr %q", r.stdout, r.stderr)
	g.Expect(r.stdout).To(MatchRegexp(`^dingtalktoken ` + regexp.QuoteMeta(ns) + `/restart refreshed: token issued at \S+Z, expires in \S+ ` +
		`\(Refreshed RolloutRestartFailed: .*web.*\)\n$`))

	want := map[string]struct {
		status metav1.ConditionStatus
		reason string
	}{
		"oversized":      {metav1.ConditionFalse, v1alpha1.ReasonCredentialsInvalid},
		"revoked":        {metav1.ConditionFalse, v1alpha1.ReasonReauthorizationRequired},
		"second-user":    {metav1.ConditionFalse, v1alpha1.ReasonCredentialsConflict},
		"restart":        {metav1.ConditionTrue, v1alpha1.ReasonTokenValid},
		"ready":          {metav1.ConditionTrue, v1alpha1.ReasonTokenValid},
		"suspended":      {metav1.ConditionFalse, v1alpha1.ReasonSuspended},
		"no-credentials": {metav1.ConditionFalse, v1alpha1.ReasonCredentialsNotFound},
		"rejected":       {metav1.ConditionFalse, v1alpha1.ReasonCredentialsRejected},
		"bad-template":   {metav1.ConditionFalse, v1alpha1.ReasonTemplateInvalid},
		"conflict":       {metav1.ConditionFalse, v1alpha1.ReasonTargetConflict},
		"unavailable":    {metav1.ConditionFalse, v1alpha1.ReasonProviderUnavailable},
		"quota":          {metav1.ConditionFalse, v1alpha1.ReasonQuotaExceeded},
		"throttled":      {metav1.ConditionFalse, v1alpha1.ReasonRateLimited},
		"pending":        {metav1.ConditionFalse, v1alpha1.ReasonPending},
	}
	s.env.Create(t, testenv.NewToken(ns, "rejected", v1alpha1.TokenTypeInternalApp, "rejected-creds"))
	for name, w := range want {
		s.env.WaitFor(t, ns, name, v1alpha1.ConditionReady, w.status, w.reason, envtesting.ReadyTimeout)
	}
	// The ready token's event is there before its status is shown.
	g.Eventually(func() map[string]int { return s.env.EventCounts(g, ns, "ready") }, 10*time.Second).Should(HaveKey(v1alpha1.ReasonTokenIssued))
	g.Eventually(func() map[string]int { return s.env.EventCounts(g, ns, "rejected") }, 10*time.Second).Should(HaveKey("RefreshFailed"))

	for name, w := range want {
		r := s.plugin(t, "status", name, "-n", ns)
		g.Expect(r.code).To(BeZero(), "status %s: %s", name, r.stderr)
		g.Expect(r.stderr).To(BeEmpty())
		g.Expect(normalize(r.stdout, ns)).To(ContainSubstring(fmt.Sprintf("Ready:  %s, %s", w.status, w.reason)))
		checkGolden(t, "status-"+name, normalize(r.stdout, ns))
	}

	failsWithOneLine(g, s.plugin(t, "status", "nope", "-n", ns), fmt.Sprintf(`dingtalktoken "nope" not found in namespace %q`, ns))
	failsWithOneLine(g, s.plugin(t, "status", "-n", ns), "needs exactly one DingTalkToken NAME")
}

// testRefresh: `refresh NAME`, `-l`, `--all` and `--wait=false` against the operator; a missing
// object, a suspended token and a rejected refresh fail.
func (s *suite) testRefresh(t *testing.T) {
	g := NewWithT(t)
	ns := s.env.CreateNamespace(t, "plugin-refresh")
	for _, name := range []string{"a", "b", "c"} {
		s.newApp(t, ns, name+"-creds", time.Hour)
		tok := testenv.NewToken(ns, name, v1alpha1.TokenTypeInternalApp, name+"-creds")
		if name != "c" {
			tok.Labels = map[string]string{"team": "crm"}
		}
		s.env.Create(t, tok)
	}
	last := map[string]time.Time{}
	for _, name := range []string{"a", "b", "c"} {
		last[name] = s.env.WaitReady(t, ns, name).Status.LastRefreshTime.Time
	}
	refreshedLine := func(name string) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^dingtalktoken ` + regexp.QuoteMeta(ns+"/"+name) +
			` refreshed: token issued at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, expires in \d+m(\d+s)?$`)
	}
	// moved checks that the named tokens were refreshed (and records their new time) and that
	// the others were not.
	moved := func(names ...string) {
		t.Helper()
		for _, name := range []string{"a", "b", "c"} {
			tok := s.env.GetToken(g, ns, name)
			lr := tok.Status.LastRefreshTime.Time
			if strings.Contains(strings.Join(names, ","), name) {
				g.Expect(lr.After(last[name])).To(BeTrue(), "%s: lastRefreshTime %s, before %s", name, lr, last[name])
				at, err := time.Parse(time.RFC3339, tok.Annotations[v1alpha1.RefreshRequestedAtAnnotation])
				g.Expect(err).NotTo(HaveOccurred(), "the annotation is an RFC 3339 time")
				g.Expect(at.After(last[name])).To(BeTrue())
			} else {
				g.Expect(lr).To(Equal(last[name]), "%s was refreshed", name)
			}
			last[name] = lr
		}
	}

	r := s.plugin(t, "refresh", "a", "-n", ns, "--timeout", "60s")
	g.Expect(r.code).To(BeZero(), "stdout %q stderr %q", r.stdout, r.stderr)
	g.Expect(r.stdout).To(MatchRegexp(refreshedLine("a").String()))
	g.Expect(strings.Count(r.stdout, "\n")).To(Equal(1))
	moved("a")

	r = s.plugin(t, "refresh", "-l", "team=crm", "-n", ns, "--timeout", "60s")
	g.Expect(r.code).To(BeZero(), "stdout %q stderr %q", r.stdout, r.stderr)
	g.Expect(r.stdout).To(And(MatchRegexp(refreshedLine("a").String()), MatchRegexp(refreshedLine("b").String())))
	g.Expect(strings.Count(r.stdout, "\n")).To(Equal(2))
	moved("a", "b")

	r = s.plugin(t, "refresh", "--all", "-n", ns, "--timeout", "60s")
	g.Expect(r.code).To(BeZero(), "stdout %q stderr %q", r.stdout, r.stderr)
	for _, name := range []string{"a", "b", "c"} {
		g.Expect(r.stdout).To(MatchRegexp(refreshedLine(name).String()))
	}
	moved("a", "b", "c")

	r = s.plugin(t, "refresh", "c", "-n", ns, "--wait=false")
	g.Expect(r.code).To(BeZero())
	g.Expect(r.stdout).To(MatchRegexp(`^dingtalktoken ` + regexp.QuoteMeta(ns) + `/c refresh requested at \S+Z\n$`))
	g.Eventually(func() time.Time { return s.env.GetToken(g, ns, "c").Status.LastRefreshTime.Time }, time.Minute).Should(BeTemporally(">", last["c"]))

	failsWithOneLine(g, s.plugin(t, "refresh", "nope", "-n", ns), fmt.Sprintf(`dingtalktoken "nope" not found in namespace %q`, ns))
	failsWithOneLine(g, s.plugin(t, "refresh", "-l", "team=nobody", "-n", ns), `no dingtalktokens in namespace "`+ns+`" matching "team=nobody"`)
	failsWithOneLine(g, s.plugin(t, "refresh", "-n", ns), "name the DingTalkTokens to refresh")

	// A suspended token is not refreshed; a rejected refresh is reported as such.
	s.env.UpdateToken(t, ns, "b", func(tok *v1alpha1.DingTalkToken) { tok.Spec.Suspend = true })
	s.env.WaitFor(t, ns, "b", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonSuspended, envtesting.ReadyTimeout)
	r = s.plugin(t, "refresh", "b", "-n", ns)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.stdout).To(Equal(fmt.Sprintf("dingtalktoken %s/b not refreshed: spec.suspend is true (no calls to DingTalk while suspended)\n", ns)))
	g.Expect(r.stderr).To(Equal("error: 1 of 1 DingTalkToken was not refreshed\n"))

	var creds corev1.Secret
	envtesting.Must(t, s.env.Client.Get(envtesting.Ctx(t), client.ObjectKey{Namespace: ns, Name: "a-creds"}, &creds))
	envtesting.Must(t, s.env.Sim.AddApp(simulator.App{AppKey: string(creds.Data["appKey"]),
		AppSecret: s.env.Sensitive.New(testenv.Credential, "rotated-"), TokenLifetime: simulator.Duration(time.Hour)}))
	r = s.plugin(t, "refresh", "a", "-n", ns, "--timeout", "60s")
	g.Expect(r.code).To(Equal(1), "stdout %q stderr %q", r.stdout, r.stderr)
	g.Expect(r.stdout).To(MatchRegexp(`^dingtalktoken ` + regexp.QuoteMeta(ns) + `/a refresh failed: CredentialsRejected: DingTalk .*invalidClientIdOrSecret.*\n$`))
	g.Expect(r.stderr).To(Equal("error: 1 of 1 DingTalkToken was not refreshed\n"))
	// Rejected credentials are retried hourly: a second request is held, and said so at once.
	r = s.plugin(t, "refresh", "a", "-n", ns, "--timeout", "60s")
	g.Expect(r.code).To(Equal(1), "stdout %q stderr %q", r.stdout, r.stderr)
	g.Expect(r.stdout).To(MatchRegexp(`^dingtalktoken ` + regexp.QuoteMeta(ns) + `/a not refreshed yet: after 1 failed attempt \(CredentialsRejected\) ` +
		`the operator holds the next attempt until \S+Z \(in 59m\d+s\); the request is served then, or at once when the credentials Secret changes\n$`))
}

// userCredentials configures a simulator user and a credentials Secret with its clientId,
// clientSecret and extra keys; it returns the clientId.
func (s *suite) userCredentials(t *testing.T, ns, secretName string, extra map[string]string) string {
	t.Helper()
	clientID := "dinguser" + testutil.RandHex(4)
	secret := s.env.Sensitive.New(testenv.Credential, "clientsecret-")
	envtesting.Must(t, s.env.Sim.AddUser(simulator.User{ClientID: clientID, ClientSecret: secret, CorpID: "dingcorp1",
		TokenLifetime: simulator.Duration(time.Hour)}))
	data := map[string]string{"clientId": clientID, "clientSecret": secret}
	for k, v := range extra {
		data[k] = v
	}
	s.env.CreateSecret(t, ns, secretName, data)
	return clientID
}

// userToken configures a simulator user, its credentials Secret (clientId and clientSecret, no
// code yet) and a User DingTalkToken; it returns the clientId.
func (s *suite) userToken(t *testing.T, ns, name string) string {
	t.Helper()
	clientID := s.userCredentials(t, ns, name+"-oauth", nil)
	s.env.Create(t, testenv.NewToken(ns, name, v1alpha1.TokenTypeUser, name+"-oauth"))
	s.env.WaitFor(t, ns, name, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCredentialsNotFound, envtesting.ReadyTimeout)
	return clientID
}

// authorize starts `authorize name --no-browser` against the simulator's sign-in page and
// returns the process and the sign-in URL it printed.
func (s *suite) authorize(t *testing.T, ns, name string, extra ...string) (*run, *url.URL) {
	t.Helper()
	args := append([]string{"authorize", name, "-n", ns, "--no-browser", "--port", "0", "--login-endpoint", s.env.Sim.URL()}, extra...)
	r := s.start(t, args...)
	signIn := regexp.MustCompile(`(?m)^    (http://\S+/oauth2/auth\?\S+)$`)
	var raw string
	NewWithT(t).Eventually(func() string {
		if m := signIn.FindStringSubmatch(r.stdout.String()); m != nil {
			raw = m[1]
		}
		return raw
	}, 30*time.Second, 50*time.Millisecond).ShouldNot(BeEmpty(), "no sign-in URL printed: %s %s", r.stdout.String(), r.stderr.String())
	u, err := url.Parse(raw)
	envtesting.Must(t, err)
	return r, u
}

// signIn follows the sign-in URL through the simulator to the plugin's callback, as a browser
// does; it returns the callback's answer and the redirect's URL (with the code, recorded as
// sensitive).
func (s *suite) signIn(t *testing.T, u *url.URL) (int, string, *url.URL) {
	t.Helper()
	var callback *url.URL
	c := &http.Client{CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		callback = req.URL
		s.env.Sensitive.Add(testenv.Credential, req.URL.Query().Get("authCode"))
		return nil
	}}
	resp, err := c.Get(u.String())
	envtesting.Must(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if callback == nil {
		t.Fatalf("the sign-in page did not redirect: %d %s", resp.StatusCode, body)
	}
	return resp.StatusCode, string(body), callback
}

// get sends one request to the plugin's callback, without following redirects.
func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	envtesting.Must(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// noCode checks that the plugin's output holds no authorization code.
func noCode(g Gomega, r result, code string) {
	g.ExpectWithOffset(1, code).NotTo(BeEmpty())
	g.ExpectWithOffset(1, r.stdout+r.stderr).NotTo(ContainSubstring(code))
}

// testAuthorize: the first sign-in of a User token, through the simulator's sign-in page to the
// plugin's loopback callback; the DingTalkToken turns Ready with a user token.
func (s *suite) testAuthorize(t *testing.T) {
	g := NewWithT(t)
	ns := s.env.CreateNamespace(t, "plugin-authorize")
	clientID := s.userToken(t, ns, "alice")

	p, u := s.authorize(t, ns, "alice", "--timeout", "60s", "--ready-timeout", "60s")
	q := u.Query()
	g.Expect(u.Path).To(Equal("/oauth2/auth"))
	g.Expect(q.Get("client_id")).To(Equal(clientID))
	g.Expect(q.Get("response_type")).To(Equal("code"))
	g.Expect(q.Get("scope")).To(Equal("openid"))
	g.Expect(q.Get("prompt")).To(Equal("consent"))
	g.Expect(q.Get("state")).To(HaveLen(43))
	g.Expect(q.Get("redirect_uri")).To(MatchRegexp(`^http://127\.0\.0\.1:\d+/callback$`))

	status, page, callback := s.signIn(t, u)
	g.Expect(status).To(Equal(http.StatusOK), page)
	g.Expect(page).To(ContainSubstring("Signed in"))
	code := callback.Query().Get("authCode")
	g.Expect(page).NotTo(ContainSubstring(code))

	r := p.wait(t, 90*time.Second)
	g.Expect(r.code).To(BeZero(), "stdout %q stderr %q", r.stdout, r.stderr)
	g.Expect(r.stderr).To(BeEmpty())
	g.Expect(r.stdout).To(ContainSubstring(fmt.Sprintf("Stored the authorization code in Secret %s/alice-oauth (key authCode).", ns)))
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^dingtalktoken ` + regexp.QuoteMeta(ns) + `/alice is Ready: Secret alice holds a token valid until \S+Z$`))
	noCode(g, r, code)

	tok := s.env.WaitReady(t, ns, "alice")
	target := s.env.Secret(g, ns, "alice")
	g.Expect(s.env.Sim.Valid(string(target.Data[v1alpha1.DefaultTargetKey]))).To(BeTrue(), "the target holds a live user token")
	g.Expect(string(target.Data[v1alpha1.CorpIDKey])).To(Equal("dingcorp1"))
	envtesting.ExpectOwnedBy(g, s.env.Secret(g, ns, "alice-refresh-token"), tok)
	g.Expect(s.env.Results(simulator.PathUserAccessToken, clientID)).To(HaveKeyWithValue("success", BeNumerically(">=", 1)))

	// status of the authorized token: the refresh-token Secret is there and owned; key names only.
	st := s.plugin(t, "status", "alice", "-n", ns)
	g.Expect(st.code).To(BeZero(), st.stderr)
	noCode(g, st, code)
	checkGolden(t, "status-user-authorized", normalize(st.stdout, ns))

	failsWithOneLine(g, s.plugin(t, "authorize", "nope", "-n", ns, "--no-browser"), fmt.Sprintf(`dingtalktoken "nope" not found in namespace %q`, ns))
}

// testAuthorizeSecondCallback: while the plugin waits for Ready (DingTalk answers 503 once), a
// second redirect to its callback is refused with a clear page and line; the wait goes on to Ready.
func (s *suite) testAuthorizeSecondCallback(t *testing.T) {
	g := NewWithT(t)
	ns := s.env.CreateNamespace(t, "plugin-second")
	clientID := s.userToken(t, ns, "bob")
	envtesting.Must(t, s.env.Sim.SetFault(simulator.Fault{Endpoint: simulator.PathUserAccessToken, Credential: clientID, Status: 503, Count: 1}))

	p, u := s.authorize(t, ns, "bob", "--timeout", "60s", "--ready-timeout", "90s")
	status, page, callback := s.signIn(t, u)
	g.Expect(status).To(Equal(http.StatusOK), page)
	status, page = get(t, callback.String())
	g.Expect(status).To(Equal(http.StatusConflict))
	g.Expect(page).To(ContainSubstring("already completed: a second redirect is refused"))
	g.Eventually(p.stdout.String, 10*time.Second).Should(ContainSubstring("Refused a second sign-in redirect: this sign-in was already completed."))

	r := p.wait(t, 2*time.Minute)
	g.Expect(r.code).To(BeZero(), "stdout %q stderr %q", r.stdout, r.stderr)
	g.Expect(r.stdout).To(ContainSubstring(fmt.Sprintf("dingtalktoken %s/bob is Ready", ns)))
	g.Expect(s.env.Results(simulator.PathUserAccessToken, clientID)).To(And(HaveKey("fault:ServiceUnavailable"), HaveKey("success")))
	noCode(g, r, callback.Query().Get("authCode"))
}

// testAuthorizeRefusals: a timeout, a Secret changed meanwhile and a token that is not of type
// User are refused with one line; nothing is written.
func (s *suite) testAuthorizeRefusals(t *testing.T) {
	g := NewWithT(t)
	ns := s.env.CreateNamespace(t, "plugin-refusals")
	s.userToken(t, ns, "carol")
	noAuthCode := func() {
		t.Helper()
		var creds corev1.Secret
		envtesting.Must(t, s.env.Client.Get(envtesting.Ctx(t), client.ObjectKey{Namespace: ns, Name: "carol-oauth"}, &creds))
		g.Expect(creds.Data).NotTo(HaveKey("authCode"), "a code was written")
	}

	// No redirect at all.
	p, _ := s.authorize(t, ns, "carol", "--timeout", "3s")
	r := p.wait(t, 30*time.Second)
	failsWithOneLine(g, result{stderr: r.stderr, code: r.code}, "no sign-in redirect within 3s; nothing was written")
	noAuthCode()

	// The credentials Secret changes between the start and the redirect.
	p, u := s.authorize(t, ns, "carol")
	s.env.UpdateSecret(t, ns, "carol-oauth", map[string]string{"note": "edited meanwhile"})
	status, page, callback := s.signIn(t, u)
	g.Expect(status).To(Equal(http.StatusBadRequest))
	g.Expect(page).To(ContainSubstring("changed after authorize started"))
	r = p.wait(t, 30*time.Second)
	failsWithOneLine(g, result{stderr: r.stderr, code: r.code},
		fmt.Sprintf("the credentials Secret %s/carol-oauth changed after authorize started: the authorization code was not written", ns))
	noCode(g, r, callback.Query().Get("authCode"))
	noAuthCode()

	// Only User tokens sign a user in.
	s.newApp(t, ns, "app-creds", time.Hour)
	s.env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-creds"))
	failsWithOneLine(g, s.plugin(t, "authorize", "app", "-n", ns, "--no-browser"),
		fmt.Sprintf("dingtalktoken %s/app is of type InternalApp: authorize signs a user in for type User only", ns))
	// A busy port is refused with the way out.
	busy := envtesting.FreeAddr(t)
	_, port, _ := strings.Cut(busy, ":")
	holder := &http.Server{Addr: busy, ReadHeaderTimeout: time.Second}
	ln := mustListen(t, busy)
	go func() { _ = holder.Serve(ln) }()
	defer func() { _ = holder.Close() }()
	failsWithOneLine(g, s.plugin(t, "authorize", "carol", "-n", ns, "--no-browser", "--port", port),
		"cannot listen on 127.0.0.1:"+port+" for the sign-in redirect")
}

// testAuthorizeWrongState: requests to the callback with a forged state, without one, and a
// forged DingTalk error are answered 400 and ignored (the terminal says so); the sign-in with the
// right state that follows completes and the token turns Ready.
func (s *suite) testAuthorizeWrongState(t *testing.T) {
	g := NewWithT(t)
	ns := s.env.CreateNamespace(t, "plugin-state")
	s.userToken(t, ns, "dave")
	p, u := s.authorize(t, ns, "dave", "--timeout", "60s", "--ready-timeout", "60s")
	redirectURI := u.Query().Get("redirect_uri")
	for _, q := range []string{"?authCode=forged-code&state=forged", "?authCode=forged-code", "?error=access_denied&state=forged", "?authCode=forged-code&state="} {
		status, page := get(t, redirectURI+q)
		g.Expect(status).To(Equal(http.StatusBadRequest), q)
		g.Expect(page).To(ContainSubstring("state does not match"))
		g.Expect(page).NotTo(ContainSubstring("forged-code"))
	}
	g.Eventually(p.stdout.String, 10*time.Second).Should(ContainSubstring("(further ones are ignored silently)"))

	status, page, callback := s.signIn(t, u)
	g.Expect(status).To(Equal(http.StatusOK), page)
	r := p.wait(t, 90*time.Second)
	g.Expect(r.code).To(BeZero(), "stdout %q stderr %q", r.stdout, r.stderr)
	g.Expect(strings.Count(r.stdout, "Ignored a request to the callback whose state does not match this sign-in")).To(Equal(3))
	g.Expect(r.stdout).To(ContainSubstring(fmt.Sprintf("Stored the authorization code in Secret %s/dave-oauth (key authCode).", ns)))
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^dingtalktoken ` + regexp.QuoteMeta(ns) + `/dave is Ready: `))
	noCode(g, r, callback.Query().Get("authCode"))
	var creds corev1.Secret
	envtesting.Must(t, s.env.Client.Get(envtesting.Ctx(t), client.ObjectKey{Namespace: ns, Name: "dave-oauth"}, &creds))
	g.Expect(string(creds.Data["authCode"])).To(Equal(callback.Query().Get("authCode")), "the right code was stored, no forged one")
}

// clusterToken is a ClusterDingTalkToken of the InternalApp credentials in ns/secret, fanned out to
// the namespaces named (by kubernetes.io/metadata.name), into the target Secret "<secret>-token".
func clusterToken(name, ns, secret string, namespaces ...string) *v1alpha1.ClusterDingTalkToken {
	return &v1alpha1.ClusterDingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ClusterDingTalkTokenSpec{
			Type:           v1alpha1.TokenTypeInternalApp,
			CredentialsRef: v1alpha1.ClusterCredentialsReference{Namespace: ns, Name: secret},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: namespaces}}},
			Target: v1alpha1.ClusterTarget{Name: secret + "-token"},
		},
	}
}

// waitCluster waits until the ClusterDingTalkToken's Ready condition has status and reason.
func (s *suite) waitCluster(t *testing.T, name string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		var tok v1alpha1.ClusterDingTalkToken
		g.Expect(s.env.Client.Get(envtesting.Ctx(t), client.ObjectKey{Name: name}, &tok)).To(Succeed())
		var ready *metav1.Condition
		for i := range tok.Status.Conditions {
			if tok.Status.Conditions[i].Type == v1alpha1.ConditionReady {
				ready = &tok.Status.Conditions[i]
			}
		}
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(status), ready.Message)
		g.Expect(ready.Reason).To(Equal(reason), ready.Message)
	}, envtesting.ReadyTimeout, 200*time.Millisecond).Should(Succeed())
}

// testClusterStatus: `status cdtt/NAME` (and `--cluster NAME`) of a ClusterDingTalkToken that is
// Ready, of one that a namespace refuses (a foreign Secret of its target's name), and of one whose
// selector picks no namespace yet, as golden files.
func (s *suite) testClusterStatus(t *testing.T) {
	g := NewWithT(t)
	ns := s.env.CreateNamespace(t, "plugin-cdtt")
	refusing := s.env.CreateNamespace(t, "plugin-refusing")
	// Each its own credentials (no token shared between them) and target Secret.
	tokens := map[string]struct {
		namespaces []string
		status     metav1.ConditionStatus
		reason     string
	}{
		"ready":         {[]string{ns}, metav1.ConditionTrue, v1alpha1.ReasonTokenValid},
		"partly-failed": {[]string{ns, refusing}, metav1.ConditionFalse, v1alpha1.ReasonTargetConflict},
		"pending":       {[]string{ns + "-not-yet"}, metav1.ConditionFalse, v1alpha1.ReasonPending},
	}
	// A Secret of the partly failed one's target name that it does not own.
	s.env.CreateSecret(t, refusing, "partly-failed-token", map[string]string{"someone": "else"})
	for name, tc := range tokens {
		s.newApp(t, ns, name, time.Hour)
		tok := clusterToken(ns+"-"+name, ns, name, tc.namespaces...)
		s.env.Create(t, tok)
		t.Cleanup(func() { _ = s.env.Client.Delete(envtesting.Ctx(t), tok) })
	}
	for name, tc := range tokens {
		s.waitCluster(t, ns+"-"+name, tc.status, tc.reason)
	}
	// The issued tokens' events are there before their status is shown.
	for _, name := range []string{"ready", "partly-failed"} {
		g.Eventually(func() string {
			return s.plugin(t, "status", "cdtt/"+ns+"-"+name).stdout
		}, 10*time.Second, 200*time.Millisecond).Should(MatchRegexp(`TokenIssued +Issued a new token`))
	}

	for name, tc := range tokens {
		r := s.plugin(t, "status", "cdtt/"+ns+"-"+name)
		g.Expect(r.code).To(BeZero(), "status cdtt/%s: %s", name, r.stderr)
		g.Expect(r.stderr).To(BeEmpty())
		out := normalize(strings.ReplaceAll(r.stdout, refusing, "<refusing-ns>"), ns)
		g.Expect(out).To(ContainSubstring(fmt.Sprintf("Ready:  %s, %s", tc.status, tc.reason)))
		checkGolden(t, "status-cluster-"+name, out)
		same := s.plugin(t, "status", "--cluster", ns+"-"+name, "-n", "elsewhere")
		g.Expect(same.code).To(BeZero(), same.stderr)
		g.Expect(normalize(strings.ReplaceAll(same.stdout, refusing, "<refusing-ns>"), ns)).To(Equal(out), "--cluster NAME shows what cdtt/NAME shows")
	}

	failsWithOneLine(g, s.plugin(t, "status", "cdtt/nope-"+ns), fmt.Sprintf(`clusterdingtalktoken "nope-%s" not found`, ns))
	failsWithOneLine(g, s.plugin(t, "status", "--cluster", "dtt/x"), "names a DingTalkToken, but --cluster asks for ClusterDingTalkTokens")
	failsWithOneLine(g, s.plugin(t, "status", "deployment/x"), `not "deployment"`)
}

// testClusterRefresh: `refresh cdtt/NAME`, `refresh --cluster NAME` and `refresh --cluster -l`
// refresh a ClusterDingTalkToken and wait for it; a DingTalkToken and a ClusterDingTalkToken
// refreshed by one command.
func (s *suite) testClusterRefresh(t *testing.T) {
	g := NewWithT(t)
	ns := s.env.CreateNamespace(t, "plugin-cdtt-refresh")
	s.newApp(t, ns, "fan-creds", time.Hour)
	name := ns + "-fan"
	tok := clusterToken(name, ns, "fan-creds", ns)
	tok.Labels = map[string]string{"refresh-test": ns}
	s.env.Create(t, tok)
	t.Cleanup(func() { _ = s.env.Client.Delete(envtesting.Ctx(t), tok) })
	s.newApp(t, ns, "app-creds", time.Hour)
	s.env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-creds"))
	s.waitCluster(t, name, metav1.ConditionTrue, v1alpha1.ReasonTokenValid)
	s.env.WaitReady(t, ns, "app")

	lastRefresh := func() time.Time {
		var cur v1alpha1.ClusterDingTalkToken
		envtesting.Must(t, s.env.Client.Get(envtesting.Ctx(t), client.ObjectKey{Name: name}, &cur))
		return cur.Status.LastRefreshTime.Time
	}
	refreshed := regexp.MustCompile(`(?m)^clusterdingtalktoken ` + regexp.QuoteMeta(name) +
		` refreshed: token issued at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, expires in \d+m(\d+s)?$`)
	for _, args := range [][]string{
		{"refresh", "cdtt/" + name},
		{"refresh", "--cluster", name},
		{"refresh", "--cluster", "-l", "refresh-test=" + ns},
	} {
		before := lastRefresh()
		r := s.plugin(t, append(args, "--timeout", "60s")...)
		g.Expect(r.code).To(BeZero(), "%v: stdout %q stderr %q", args, r.stdout, r.stderr)
		g.Expect(r.stdout).To(MatchRegexp(refreshed.String()), "%v", args)
		g.Expect(strings.Count(r.stdout, "\n")).To(Equal(1))
		g.Expect(lastRefresh().After(before)).To(BeTrue(), "%v: lastRefreshTime did not move", args)
	}

	r := s.plugin(t, "refresh", "app", "cdtt/"+name, "-n", ns, "--timeout", "60s")
	g.Expect(r.code).To(BeZero(), "stdout %q stderr %q", r.stdout, r.stderr)
	g.Expect(r.stdout).To(And(MatchRegexp(refreshed.String()), ContainSubstring("dingtalktoken "+ns+"/app refreshed: ")))

	failsWithOneLine(g, s.plugin(t, "refresh", "cdtt/nope-"+ns), fmt.Sprintf(`clusterdingtalktoken "nope-%s" not found`, ns))
	failsWithOneLine(g, s.plugin(t, "refresh", "--cluster", "-l", "refresh-test=nobody"), `no clusterdingtalktokens matching "refresh-test=nobody"`)
	failsWithOneLine(g, s.plugin(t, "refresh", "--cluster", "--all", "-A"), "ClusterDingTalkTokens have no namespace")

	// Suspended: not refreshed, and said so.
	var cur v1alpha1.ClusterDingTalkToken
	envtesting.Must(t, s.env.Client.Get(envtesting.Ctx(t), client.ObjectKey{Name: name}, &cur))
	cur.Spec.Suspend = true
	envtesting.Must(t, s.env.Client.Update(envtesting.Ctx(t), &cur))
	r = s.plugin(t, "refresh", "cdtt/"+name)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.stdout).To(Equal("clusterdingtalktoken " + name + " not refreshed: spec.suspend is true (no calls to DingTalk while suspended)\n"))
	g.Expect(r.stderr).To(Equal("error: 1 of 1 ClusterDingTalkToken was not refreshed\n"))
}

// testStatusEscapesEvents: an event whose reason and message carry terminal escape sequences (a
// screen clear, colours, a carriage return, a window title) reaches the terminal with those
// characters replaced by their escapes.
func (s *suite) testStatusEscapesEvents(t *testing.T) {
	g := NewWithT(t)
	ns := s.env.CreateNamespace(t, "plugin-escapes")
	s.newApp(t, ns, "app-creds", time.Hour)
	s.env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-creds"))
	tok := s.env.WaitReady(t, ns, "app")
	// Anyone who may create events in the namespace (or a compromised controller) can write this.
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: ns, Name: "app.injected"},
		InvolvedObject: corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "DingTalkToken", Namespace: ns, Name: "app", UID: tok.UID},
		Type:           corev1.EventTypeWarning,
		Reason:         "Injected",
		Message:        "\x1b[2J\x1b[H\x1b[32mAll DingTalk tokens are valid\x1b[0m\r\x1b]0;owned\x07 \u202eeulav",
		Source:         corev1.EventSource{Component: "someone-else"},
		FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Count: 1,
	}
	envtesting.Must(t, s.env.Client.Create(envtesting.Ctx(t), ev))

	r := s.plugin(t, "status", "app", "-n", ns)
	g.Expect(r.code).To(BeZero(), r.stderr)
	g.Expect(r.stdout).To(ContainSubstring("Injected"))
	g.Expect(r.stdout).NotTo(ContainAny("\x1b", "\r", "\x07", "\u202e"), "a control character reached the terminal")
	g.Expect(r.stdout).To(ContainSubstring(`\x1b[2J\x1b[H\x1b[32mAll DingTalk tokens are valid\x1b[0m \x1b]0;owned\x07 \u202eeulav`))
}

// ContainAny matches a string holding any of subs.
func ContainAny(subs ...string) OmegaMatcher {
	var ms []OmegaMatcher
	for _, sub := range subs {
		ms = append(ms, ContainSubstring(sub))
	}
	return Or(ms...)
}

func mustListen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	envtesting.Must(t, err)
	return ln
}
