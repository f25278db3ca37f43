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

package e2e

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	dingtalkv1alpha1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

const (
	appTokenPath  = "/v1.0/oauth2/accessToken"
	userTokenPath = "/v1.0/oauth2/userAccessToken"
	// leaseAcquired is in what client-go's leader election logs when a replica becomes the leader.
	leaseAcquired = "acquired lease"
)

// TestManagerFlags runs the binary with bad flags: each is refused with exit code 2 and a
// message naming the flag, before anything connects anywhere.
func TestManagerFlags(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string // flags given
		code int      // expected exit code
		want []string // substrings of the output
	}{
		"help lists every flag": {
			args: []string{"--help"}, code: 0,
			want: []string{"-dingtalk-endpoint", "-watch-namespaces", "-enable-rollout-restart", "-leader-elect",
				"-metrics-bind-address", "-health-probe-bind-address", "-max-concurrent-reconciles",
				"-dingtalk-qps", "-dingtalk-burst", "-zap-log-level", "-kubeconfig"},
		},
		"http endpoint refused":        {args: []string{"--dingtalk-endpoint=http://api.dingtalk.example"}, code: 2, want: []string{"--dingtalk-endpoint", "https"}},
		"endpoint with user info":      {args: []string{"--dingtalk-endpoint=https://u:p@api.dingtalk.com"}, code: 2, want: []string{"--dingtalk-endpoint", "user info"}},
		"bad namespace":                {args: []string{"--watch-namespaces=apps,Not_A_Namespace"}, code: 2, want: []string{"--watch-namespaces", "Not_A_Namespace"}},
		"no concurrent reconciles":     {args: []string{"--max-concurrent-reconciles=0"}, code: 2, want: []string{"--max-concurrent-reconciles"}},
		"zero qps":                     {args: []string{"--dingtalk-qps=0"}, code: 2, want: []string{"--dingtalk-qps"}},
		"unknown flag":                 {args: []string{"--dingtalk-endpoint-url=x"}, code: 2, want: []string{"dingtalk-endpoint-url"}},
		"stray argument is not a flag": {args: []string{"run"}, code: 2, want: []string{"unexpected arguments"}},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, managerBin, tc.args...).CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestLeaderElectionFailoverAndMetrics runs two managers with leader election under the RBAC of
// config/default. The leader issues the tokens and serves their metrics to an authorized
// scraper only; the standby does nothing. When the leader is killed, the standby takes over
// without fetching any token again, keeps the metrics, and shuts down gracefully on SIGTERM,
// releasing the lease.
func TestLeaderElectionFailoverAndMetrics(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := env.CreateNamespace(t, "failover")

	// Credentials known to the simulator, with lifetimes long enough that no refresh falls due.
	g.Expect(sim.AddApp(simulator.App{AppKey: "failover-app", AppSecret: "failover-app-secret",
		TokenLifetime: simulator.Duration(time.Hour)})).To(Succeed())
	g.Expect(sim.AddUser(simulator.User{ClientID: "failover-user", ClientSecret: "failover-user-secret",
		RefreshTokens: []string{"failover-refresh"}, CorpID: "dingfailover", TokenLifetime: simulator.Duration(time.Hour)})).To(Succeed())
	env.CreateSecret(t, ns, "app-credentials", map[string]string{"appKey": "failover-app", "appSecret": "failover-app-secret"})
	env.CreateSecret(t, ns, "user-credentials", map[string]string{
		"clientId": "failover-user", "clientSecret": "failover-user-secret", "refreshToken": "failover-refresh"})
	tokens := []*dingtalkv1alpha1.DingTalkToken{
		testenv.NewToken(ns, "app", dingtalkv1alpha1.TokenTypeInternalApp, "app-credentials"),
		testenv.NewToken(ns, "app-copy", dingtalkv1alpha1.TokenTypeInternalApp, "app-credentials"),
		testenv.NewToken(ns, "user", dingtalkv1alpha1.TokenTypeUser, "user-credentials"),
	}
	for _, tok := range tokens {
		g.Expect(k8s.Create(ctx, tok)).To(Succeed())
	}

	leader, standby := startLeaderPair(t, g)

	waitReady(g, ns, tokens)
	fetched := func() int64 {
		st := sim.Stats()
		return st.Endpoints[appTokenPath].Credentials["failover-app"].Total +
			st.Endpoints[userTokenPath].Credentials["failover-user"].Total
	}
	before := fetched()
	g.Expect(before).To(BeNumerically(">=", 2), "the leader fetched the app and user tokens")

	// Probes answer on both replicas: the standby is live and ready to take over.
	for _, p := range []*testenv.Process{leader, standby} {
		for _, path := range []string{"/healthz", "/readyz"} {
			g.Eventually(func() (int, error) {
				code, _, err := testenv.Get("http://"+p.Flag("health-probe-bind-address")+path, "")
				return code, err
			}).WithTimeout(20*time.Second).Should(Equal(http.StatusOK), "%s of manager %s", path, p.Name)
		}
	}

	// Metrics: no token -> 401; a token the API server does not authenticate -> refused
	// (controller-runtime's filter answers 500 there); a service account the API server does not
	// authorize -> 403; one bound to the metrics-reader ClusterRole -> the metrics.
	scraper, stranger := serviceAccountToken(t, ns, "scraper", true), serviceAccountToken(t, ns, "stranger", false)
	for _, tc := range []struct {
		token string
		code  types.GomegaMatcher
	}{
		{"", Equal(http.StatusUnauthorized)},
		{"not-a-token", BeNumerically(">=", 400)},
		{stranger, Equal(http.StatusForbidden)},
		{scraper, Equal(http.StatusOK)},
	} {
		g.Eventually(func() (int, error) {
			code, _, err := testenv.Get("https://"+leader.Flag("metrics-bind-address")+"/metrics", tc.token)
			return code, err
		}).WithTimeout(20 * time.Second).WithPolling(500 * time.Millisecond).Should(tc.code)
	}
	g.Eventually(func(g Gomega) {
		fams, err := scrape(leader, scraper)
		g.Expect(err).NotTo(HaveOccurred())
		for _, tok := range tokens {
			cur := &dingtalkv1alpha1.DingTalkToken{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tok), cur)).To(Succeed())
			id := map[string]string{"namespace": ns, "name": tok.Name}
			g.Expect(fams.Value("dingtalk_token_ready_status", with(id, "condition", "True"))).To(Equal(1.0), tok.Name)
			g.Expect(fams.Value("dingtalk_token_ready_status", with(id, "condition", "False"))).To(Equal(0.0), tok.Name)
			g.Expect(fams.Value("dingtalk_token_expiration_timestamp_seconds", with(id, "type", string(tok.Spec.Type)))).
				To(Equal(float64(cur.Status.ExpiresAt.Unix())), tok.Name)
			g.Expect(fams.Value("dingtalk_token_refresh_timestamp_seconds", with(id, "type", string(tok.Spec.Type)))).
				To(Equal(float64(cur.Status.RefreshTime.Unix())), tok.Name)
		}
		// The request counters and histograms agree with what the simulator answered.
		st := sim.Stats()
		g.Expect(fams.Value("dingtalk_api_requests_total", map[string]string{"endpoint": appTokenPath, "result": "success"})).
			To(BeNumerically(">=", float64(st.Endpoints[appTokenPath].Credentials["failover-app"].Results["success"])))
		g.Expect(fams.Value("dingtalk_api_requests_total", map[string]string{"endpoint": userTokenPath, "result": "success"})).
			To(BeNumerically(">=", 1.0))
		g.Expect(fams.Value("dingtalk_api_request_duration_seconds", map[string]string{"endpoint": appTokenPath})).
			To(BeNumerically(">=", 1.0))
		// controller-runtime's own metrics are there too.
		g.Expect(fams.Total("controller_runtime_reconcile_total", map[string]string{"controller": "dingtalktoken"})).To(BeNumerically(">", 0.0))
	}).WithTimeout(30 * time.Second).WithPolling(time.Second).Should(Succeed())

	// The standby reconciles nothing, so it has no token series.
	fams, err := scrape(standby, scraper)
	g.Expect(err).NotTo(HaveOccurred())
	_, found := fams.Sample("dingtalk_token_ready_status", map[string]string{"namespace": ns})
	g.Expect(found).To(BeFalse(), "the standby reconciled DingTalkTokens")

	// Kill the leader: the standby takes over once the lease expires.
	before = fetched()
	leader.Kill()
	g.Eventually(func() bool { return standby.Logged(leaseAcquired) }).
		WithTimeout(60*time.Second).WithPolling(250*time.Millisecond).Should(BeTrue(), "the standby took over")

	// The new leader reconciles every token (its gauges appear) without fetching any again:
	// the Secrets hold valid tokens that are not due.
	g.Eventually(func(g Gomega) {
		fams, err := scrape(standby, scraper)
		g.Expect(err).NotTo(HaveOccurred())
		for _, tok := range tokens {
			g.Expect(fams.Value("dingtalk_token_ready_status",
				map[string]string{"namespace": ns, "name": tok.Name, "condition": "True"})).To(Equal(1.0), tok.Name)
		}
	}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	g.Consistently(fetched).WithTimeout(3*time.Second).WithPolling(250*time.Millisecond).
		Should(Equal(before), "a token was fetched again after the failover")
	waitReady(g, ns, tokens)

	// A deleted DingTalkToken's series are deleted.
	g.Expect(k8s.Delete(ctx, tokens[1])).To(Succeed())
	g.Eventually(func(g Gomega) {
		fams, err := scrape(standby, scraper)
		g.Expect(err).NotTo(HaveOccurred())
		_, found := fams.Sample("dingtalk_token_expiration_timestamp_seconds", map[string]string{"namespace": ns, "name": tokens[1].Name})
		g.Expect(found).To(BeFalse())
	}).WithTimeout(20 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())

	// SIGTERM: the manager stops cleanly and releases the lease for the next replica.
	start := time.Now()
	g.Expect(standby.Terminate(30*time.Second)).To(Succeed(), "graceful shutdown exits 0")
	t.Logf("graceful shutdown took %s", time.Since(start).Round(10*time.Millisecond))
	lease := &coordinationv1.Lease{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: operator.LeaderElectionID}, lease)).To(Succeed())
	g.Expect(lease.Spec.HolderIdentity).To(Or(BeNil(), HaveValue(BeEmpty())), "the lease was released")
	g.Expect(fetched()).To(Equal(before))
}

// TestNamespacedMode runs the manager with the RBAC config/namespaced grants: the operator in a
// namespace of its own, a Role in the one namespace it serves. It serves that namespace with no
// RBAC error, leaves DingTalkTokens elsewhere alone, and keeps the installation's digest key in its
// own namespace, never in the served one (whose team can read the Secrets there).
func TestNamespacedMode(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	served, other := env.CreateNamespace(t, "team-a"), env.CreateNamespace(t, "team-b")
	own := env.CreateNamespace(t, "team-a-operator")

	// Render config/namespaced for the two namespaces and apply its namespaced RBAC.
	mem := copyConfig(t)
	path := "/config/namespaced/kustomization.yaml"
	b, err := mem.ReadFile(path)
	g.Expect(err).NotTo(HaveOccurred())
	k := strings.Replace(string(b), "namespace: dingtalk-tokens-operator\n", "namespace: "+own+"\n", 1)
	k = strings.Replace(k, "name: WATCH_NAMESPACE\n        value: dingtalk-tokens\n", "name: WATCH_NAMESPACE\n        value: "+served+"\n", 1)
	g.Expect(k).To(ContainSubstring("value: "+served), "config/namespaced sets WATCH_NAMESPACE no more")
	g.Expect(mem.WriteFile(path, []byte(k))).To(Succeed())
	objs, err := render(mem, "/config/namespaced")
	g.Expect(err).NotTo(HaveOccurred())
	var args []string
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding":
			g.Expect(o.GetNamespace()).To(BeElementOf(served, own), "%s %s", o.GetKind(), o.GetName())
			g.Expect(k8s.Create(ctx, o)).To(Succeed())
		case "Deployment":
			// Run with the Deployment's own arguments, $(POD_NAMESPACE) and $(WATCH_NAMESPACE)
			// expanded as the kubelet would.
			c, _, _ := unstructuredContainerArgs(o.Object)
			for _, a := range c {
				a = strings.NewReplacer("$(POD_NAMESPACE)", own, "$(WATCH_NAMESPACE)", served).Replace(a)
				switch {
				case a == "--leader-elect", strings.HasPrefix(a, "--metrics-bind-address"), strings.HasPrefix(a, "--health-probe-bind-address"):
					continue // ports of a pod; replaced below
				}
				args = append(args, a)
			}
		}
	}
	g.Expect(args).To(ContainElements("--watch-namespaces="+served, "--operator-namespace="+own))

	g.Expect(sim.AddApp(simulator.App{AppKey: "team-app", AppSecret: "team-app-secret", TokenLifetime: simulator.Duration(time.Hour)})).To(Succeed())
	for _, ns := range []string{served, other} {
		env.CreateSecret(t, ns, "credentials", map[string]string{"appKey": "team-app", "appSecret": "team-app-secret"})
		g.Expect(k8s.Create(ctx, testenv.NewToken(ns, "bot", dingtalkv1alpha1.TokenTypeInternalApp, "credentials"))).To(Succeed())
	}
	kubeconfig, err := env.ServiceAccountKubeconfig(t.TempDir(), own, operatorSA)
	g.Expect(err).NotTo(HaveOccurred())
	p := startManager(t, "namespaced", kubeconfig, append(args,
		"--dingtalk-endpoint="+sim.URL(), "--metrics-bind-address=0", "--health-probe-bind-address="+envtesting.FreeAddr(t))...)

	waitReady(g, served, []*dingtalkv1alpha1.DingTalkToken{testenv.NewToken(served, "bot", "", "")})
	g.Eventually(func() (int, error) {
		code, _, err := testenv.Get("http://"+p.Flag("health-probe-bind-address")+"/readyz", "")
		return code, err
	}).WithTimeout(20 * time.Second).Should(Equal(http.StatusOK))
	g.Consistently(func() []metav1.Condition {
		tok := &dingtalkv1alpha1.DingTalkToken{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: other, Name: "bot"}, tok)).To(Succeed())
		return tok.Status.Conditions
	}).WithTimeout(3*time.Second).Should(BeEmpty(), "a DingTalkToken outside --watch-namespaces was reconciled")
	// The digest key: in the operator's own namespace, not in the served one.
	key := client.ObjectKey{Namespace: own, Name: controllers.DigestKeySecretName}
	g.Expect(k8s.Get(ctx, key, &corev1.Secret{})).To(Succeed(), "no digest key in the operator's namespace")
	err = k8s.Get(ctx, client.ObjectKey{Namespace: served, Name: controllers.DigestKeySecretName}, &corev1.Secret{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "a digest key in the served namespace: %v", err)
	g.Expect(p.Output()).NotTo(ContainSubstring("forbidden"), "the namespaced Roles lack a permission the manager used")
	g.Expect(p.Terminate(30 * time.Second)).To(Succeed())
}

// waitReady waits until every token is Ready and its target Secret holds a token.
func waitReady(g *WithT, ns string, tokens []*dingtalkv1alpha1.DingTalkToken) {
	ctx := context.Background()
	g.Eventually(func(g Gomega) {
		for _, tok := range tokens {
			cur := &dingtalkv1alpha1.DingTalkToken{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: tok.Name}, cur)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(cur.Status.Conditions, dingtalkv1alpha1.ConditionReady)).To(BeTrue(),
				"%s: %v", tok.Name, cur.Status.Conditions)
			sec := &corev1.Secret{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: cur.TargetName()}, sec)).To(Succeed())
			g.Expect(sec.Data[cur.TargetKey()]).NotTo(BeEmpty())
		}
	}).WithTimeout(60 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
}

// serviceAccountToken creates a service account and returns a token for it; bound, it may read
// the metrics (ClusterRole dingtalk-token-operator-metrics-reader from config/rbac).
func serviceAccountToken(t *testing.T, ns, name string, bound bool) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := k8s.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if bound {
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name + "-metrics-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "dingtalk-token-operator-metrics-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
		}
		if err := k8s.Create(ctx, crb); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func with(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for lk, lv := range labels {
		out[lk] = lv
	}
	return out
}

// unstructuredContainerArgs returns the first container's args of a rendered Deployment.
func unstructuredContainerArgs(obj map[string]any) ([]string, bool, error) {
	// NoCopy: kustomize's maps hold ints, which the copying helpers refuse.
	field, ok, err := unstructured.NestedFieldNoCopy(obj, "spec", "template", "spec", "containers")
	containers, _ := field.([]any)
	if !ok || err != nil || len(containers) == 0 {
		return nil, false, err
	}
	var args []string
	for _, a := range containers[0].(map[string]any)["args"].([]any) {
		args = append(args, a.(string))
	}
	return args, true, nil
}

// copyConfig copies the repository's config directory into an in-memory file system under /config.
func copyConfig(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	dir := filepath.Join(env.Root, "config")
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		return mem.WriteFile(filepath.Join("/config", rel), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}
