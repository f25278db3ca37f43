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

// Package install installs the Helm chart (charts/dingtalk-token-operator) into an envtest API
// server and runs the manager binary as the chart's ServiceAccount, with the flags the chart's
// Deployment passes: every rendered object is accepted with server-side apply, and the chart's
// RBAC is enough to make tokens Ready, cluster-wide and in namespaced mode. The chart is rendered
// by hack/release (Helm's Go API lives in that module, so as not to move this module's
// Kubernetes libraries), exactly as `make release` packages it.
package install

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

// fieldOwner is the field manager the chart's objects are applied with, as `helm install
// --server-side` (Helm 4) names it.
const fieldOwner = "helm"

var (
	env        *envtesting.Env
	root       string
	tmp        string
	managerBin string // the manager binary built from ./cmd
	// renderer is hack/release, built once: `render` prints the chart's manifests.
	renderer string
)

func TestMain(m *testing.M) {
	// This process runs no controller: its clients' messages are of no interest.
	ctrl.SetLogger(logr.Discard())
	os.Exit(envtesting.Main(m, testenv.Options{
		Simulator: &simulator.Config{},
		// The manager, and the chart renderer (module hack/release: `render` prints the chart).
		Build: []testenv.Binary{
			{Package: "./cmd", Out: "manager", Race: testenv.RaceEnabled},
			{Module: "hack/release", Package: ".", Out: "release"},
		},
	}, func(e *envtesting.Env, dir string) error {
		env, root, tmp = e, e.Root, dir
		managerBin, renderer = filepath.Join(dir, "manager"), filepath.Join(dir, "release")
		return nil
	}))
}

// release is one install of the chart.
type release struct {
	name, namespace string
	// values are --set flags; valuesFile, when set, is a values file's content.
	values     []string
	valuesFile string
	objs       []*unstructured.Unstructured
}

// render renders the chart for the release with hack/release (Helm's Go API, values checked
// against values.schema.json).
func (r *release) render(t *testing.T) {
	t.Helper()
	// The source chart names no image (a release stamps its IMAGE_REPO): the tests run the
	// manager binary, not the image, so any repository does.
	args := []string{"render", "--root", root, "--release-name", r.name, "--namespace", r.namespace,
		"--set", "image.repository=registry.example.com/dingtalk-token-operator"}
	for _, v := range r.values {
		args = append(args, "--set", v)
	}
	if r.valuesFile != "" {
		f := filepath.Join(t.TempDir(), "values.yaml")
		envtesting.Must(t, os.WriteFile(f, []byte(r.valuesFile), 0o600))
		args = append(args, "-f", f)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), renderer, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("rendering the chart: %v: %s", err, stderr.String())
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(&stdout, 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if len(m) > 0 {
			r.objs = append(r.objs, &unstructured.Unstructured{Object: m})
		}
	}
	if len(r.objs) == 0 {
		t.Fatal("the chart rendered nothing")
	}
}

// install creates the release's namespace and applies every rendered object with server-side
// apply, CRDs first (as Helm orders them). The API server validates each one: schema, CEL
// rules of the CRDs, RBAC and admission policy objects.
func (r *release) install(t *testing.T) {
	t.Helper()
	ctx := envtesting.Ctx(t)
	createNamespace(t, r.namespace, nil)
	objs := slices.Clone(r.objs)
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
		return boolInt(b.GetKind() == "CustomResourceDefinition") - boolInt(a.GetKind() == "CustomResourceDefinition")
	})
	for _, o := range objs {
		if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner(fieldOwner)); err != nil {
			t.Errorf("server-side apply of %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("applied %d objects of release %s", len(objs), r.name)
}

// deployment is the rendered Deployment of the manager.
func (r *release) deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	for _, o := range r.objs {
		if o.GetKind() == "Deployment" {
			d := &appsv1.Deployment{}
			envtesting.Must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d))
			return d
		}
	}
	t.Fatal("the chart rendered no Deployment")
	return nil
}

// startManager runs the manager binary as the chart's ServiceAccount (a client certificate with
// its user name and groups, so that exactly the chart's RBAC applies) with the flags of the
// chart's Deployment. Only what a pod gets from its environment is added: the Lease's namespace
// (in a pod, the service account's namespace), $(POD_NAMESPACE) expanded as the kubelet does, and
// loopback addresses for metrics and probes.
func (r *release) startManager(t *testing.T) (p *testenv.Process, metricsAddr, probeAddr string) {
	t.Helper()
	d := r.deployment(t)
	pod := d.Spec.Template.Spec
	kubeconfig, err := env.ServiceAccountKubeconfig(t.TempDir(), r.namespace, pod.ServiceAccountName)
	envtesting.Must(t, err)
	metricsAddr, probeAddr = envtesting.FreeAddr(t), envtesting.FreeAddr(t)
	args := []string{"--kubeconfig=" + kubeconfig, "--leader-election-namespace=" + r.namespace}
	for _, a := range pod.Containers[0].Args {
		a = strings.ReplaceAll(a, "$(POD_NAMESPACE)", r.namespace) // the kubelet expands it
		switch {
		case strings.HasPrefix(a, "--metrics-bind-address="):
			a = "--metrics-bind-address=" + metricsAddr
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			a = "--health-probe-bind-address=" + probeAddr
		}
		args = append(args, a)
	}
	p = envtesting.StartProcess(t, r.name, managerBin, args...)
	// /readyz answers 200 once every informer has synced: every list and watch the manager needs
	// was allowed.
	NewWithT(t).Eventually(func() int {
		resp, err := http.Get("http://" + probeAddr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(Equal(http.StatusOK), "the manager never became ready")
	return p, metricsAddr, probeAddr
}

// TestChartClusterWide installs the chart cluster-wide with rollout restart, a PodDisruptionBudget,
// scheduling values, extra volumes, the NetworkPolicy and the namespace-labels policy on (the API
// server validates each object), runs the manager as its ServiceAccount and checks that the chart's
// RBAC lets it make a DingTalkToken and a ClusterDingTalkToken Ready, restart a Deployment and
// serve metrics to a scraper bound to the chart's metrics-reader ClusterRole.
func TestChartClusterWide(t *testing.T) {
	g := NewWithT(t)
	ctx := envtesting.Ctx(t)
	rel := &release{name: "dingtalk", namespace: "dingtalk-system",
		values: []string{"dingtalk.endpoint=" + env.Sim.URL(), "rolloutRestart.enabled=true",
			"podDisruptionBudget.enabled=true", "replicaCount=2", "logging.level=debug"},
		valuesFile: `
priorityClassName: system-cluster-critical
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: ops, effect: NoSchedule}]
topologySpreadConstraints:
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector: {matchLabels: {app.kubernetes.io/name: dingtalk-token-operator}}
podLabels: {team: platform}
serviceAccount: {annotations: {example.com/role: operator}}
extraEnv: [{name: SSL_CERT_FILE, value: /etc/corporate-ca/ca.crt}]
extraVolumes: [{name: corporate-ca, configMap: {name: corporate-ca-bundle}}]
extraVolumeMounts: [{name: corporate-ca, mountPath: /etc/corporate-ca, readOnly: true}]
networkPolicy:
  enabled: true
  metricsFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
  extraEgress: [{ports: [{port: 3128, protocol: TCP}], to: [{ipBlock: {cidr: 10.1.2.3/32}}]}]
admissionPolicy: {namespaceLabels: {enabled: true, group: platform-admins}}
`}
	rel.render(t)
	rel.install(t)
	p, metricsAddr, _ := rel.startManager(t)

	// A DingTalkToken that restarts a Deployment when its token's value changes: a suite token,
	// whose value changes at each refresh, refreshed once on request.
	ns := env.CreateNamespace(t, "apps")
	key := addApp(t, ns, "crm-credentials")
	addSuite(t, ns, "suite-credentials")
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "crm"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "crm"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "crm"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "crm", Image: "crm:1"}}},
			},
		},
	}
	env.Create(t, dep)
	tok := testenv.NewToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "suite-credentials")
	tok.Spec.RolloutRestartTargets = []v1alpha1.RolloutRestartTarget{{Kind: v1alpha1.WorkloadKindDeployment, Name: "crm"}}
	env.Create(t, tok)
	first := env.WaitReady(t, ns, "suite")
	env.Sensitive.AddSecret(env.Secret(g, ns, "suite"))
	// A request in whole seconds (as kubectl dingtalk refresh writes it) that is after the first
	// token's issue time, whatever its fraction of a second.
	g.Eventually(time.Now).WithTimeout(5 * time.Second).Should(BeTemporally(">", first.Status.LastRefreshTime.Add(2*time.Second)))
	env.UpdateToken(t, ns, "suite", func(tok *v1alpha1.DingTalkToken) {
		tok.Annotations = map[string]string{v1alpha1.RefreshRequestedAtAnnotation: time.Now().UTC().Format(time.RFC3339)}
	})
	second := env.WaitRefreshedAfter(t, ns, "suite", first.Status.LastRefreshTime.Time, 30*time.Second)
	g.Expect(second.Status.TokenDigest).NotTo(Equal(first.Status.TokenDigest))
	env.Sensitive.AddSecret(env.Secret(g, ns, "suite"))
	g.Eventually(func(g Gomega) {
		d := &appsv1.Deployment{}
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(dep), d)).To(Succeed())
		g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(v1alpha1.TokenDigestAnnotation, second.Status.TokenDigest))
	}).WithTimeout(30*time.Second).Should(Succeed(), "the Deployment was not restarted (rollout restart RBAC)")

	// A ClusterDingTalkToken fanned out to two namespaces.
	var selected []string
	for range 2 {
		n := env.CreateNamespace(t, "team")
		envtesting.Must(t, testenv.Update(ctx, env.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}},
			func(o *corev1.Namespace) { o.Labels = map[string]string{"example.com/crm": "yes"} }))
		selected = append(selected, n)
	}
	cluster := &v1alpha1.ClusterDingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Name: "crm-" + strings.ToLower(key[len(key)-6:])},
		Spec: v1alpha1.ClusterDingTalkTokenSpec{
			Type:              v1alpha1.TokenTypeInternalApp,
			CredentialsRef:    v1alpha1.ClusterCredentialsReference{Namespace: ns, Name: "crm-credentials"},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"example.com/crm": "yes"}},
			Target:            v1alpha1.ClusterTarget{Name: "crm-token"},
		},
	}
	env.Create(t, cluster)
	g.Eventually(func(g Gomega) {
		c := &v1alpha1.ClusterDingTalkToken{}
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(cluster), c)).To(Succeed())
		g.Expect(c.Status.Conditions).To(ContainElement(And(
			HaveField("Type", v1alpha1.ConditionReady), HaveField("Status", metav1.ConditionTrue))), "%+v", c.Status)
		g.Expect(c.Status.Namespaces).To(HaveField("Provisioned", int32(len(selected))))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	for _, n := range selected {
		env.Sensitive.AddSecret(env.Secret(g, n, "crm-token"))
	}

	// Metrics over HTTPS to a scraper bound to the chart's metrics-reader: the chart's
	// metrics-auth binding lets the manager check it.
	token := scraperToken(t, rel.namespace, "dingtalk-dingtalk-token-operator-metrics-reader")
	g.Eventually(func() (string, error) {
		status, body, err := testenv.Get("https://"+metricsAddr+"/metrics", token)
		if status != http.StatusOK {
			return "", fmt.Errorf("status %d: %v", status, err)
		}
		return body, err
	}).WithTimeout(30 * time.Second).Should(ContainSubstring("dingtalk_token_ready_status"))
	status, _, _ := testenv.Get("https://"+metricsAddr+"/metrics", "")
	g.Expect(status).To(Equal(http.StatusUnauthorized), "an anonymous scrape")

	env.ScanLeaks(t, []byte(p.Output()))
}

// TestChartNamespaced installs a second release that serves one namespace (watchNamespaces), with
// the CRDs left to the first (crds.enabled=false, as a team installs it after a cluster admin),
// and checks that its Roles are enough to make a token Ready there and grant nothing elsewhere.
func TestChartNamespaced(t *testing.T) {
	g := NewWithT(t)
	ctx := envtesting.Ctx(t)
	team := env.CreateNamespace(t, "team-a")
	rel := &release{name: "team-a", namespace: "team-a-ops",
		values: []string{"dingtalk.endpoint=" + env.Sim.URL(), "watchNamespaces={" + team + "}", "crds.enabled=false"}}
	rel.render(t)
	for _, o := range rel.objs {
		if o.GetKind() == "ClusterRoleBinding" && o.GetName() != "team-a-dingtalk-token-operator-metrics-auth-rolebinding" {
			t.Errorf("namespaced mode renders %s %s", o.GetKind(), o.GetName())
		}
	}
	rel.install(t)
	p, _, _ := rel.startManager(t)

	addApp(t, team, "bot-credentials")
	env.Create(t, testenv.NewToken(team, "bot", v1alpha1.TokenTypeInternalApp, "bot-credentials"))
	env.WaitReady(t, team, "bot")
	env.Sensitive.AddSecret(env.Secret(g, team, "bot"))

	// The installation's digest key is in the release namespace, never in the served one; the
	// leader election Lease there is the release's own (several releases may share the namespace).
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: rel.namespace, Name: controllers.DigestKeySecretName}, &corev1.Secret{})).
		To(Succeed(), "no digest key in the release namespace")
	err := env.Client.Get(ctx, client.ObjectKey{Namespace: team, Name: controllers.DigestKeySecretName}, &corev1.Secret{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "a digest key in the served namespace %s: %v", team, err)
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: rel.namespace, Name: "team-a-dingtalk-token-operator.dingtalk.tokens.dev"},
		&coordinationv1.Lease{})).To(Succeed(), "the release's leader election Lease")

	// The service account may read Secrets in the watched namespace and nowhere else.
	sa := "system:serviceaccount:" + rel.namespace + ":" + rel.deployment(t).Spec.Template.Spec.ServiceAccountName
	c, err := env.UserClient(sa, "system:serviceaccounts", "system:serviceaccounts:"+rel.namespace)
	envtesting.Must(t, err)
	// In its own namespace the operator reads its digest key by name (and may create it), but may
	// list no Secret.
	g.Expect(apierrors.IsForbidden(c.List(ctx, &corev1.SecretList{}, client.InNamespace(rel.namespace)))).To(BeTrue(),
		"the operator may list the Secrets of its own namespace")
	g.Expect(c.List(ctx, &corev1.SecretList{}, client.InNamespace(team))).To(Succeed())
	other := env.CreateNamespace(t, "other")
	for _, list := range []func() error{
		func() error { return c.List(ctx, &corev1.SecretList{}, client.InNamespace(other)) },
		func() error { return c.List(ctx, &corev1.SecretList{}) },
	} {
		g.Expect(apierrors.IsForbidden(list())).To(BeTrue(), "the namespaced operator may list Secrets outside %s", team)
	}
	// A token outside the watched namespace is not served.
	addApp(t, other, "bot-credentials")
	env.Create(t, testenv.NewToken(other, "bot", v1alpha1.TokenTypeInternalApp, "bot-credentials"))
	g.Consistently(func() []metav1.Condition {
		tok, err := testenv.GetToken(ctx, env.Client, other, "bot")
		g.Expect(err).NotTo(HaveOccurred())
		return tok.Status.Conditions
	}).WithTimeout(3 * time.Second).Should(BeEmpty())

	env.ScanLeaks(t, []byte(p.Output()))
}

// addApp adds an app to the simulator and its credentials Secret to ns, and returns the appKey.
func addApp(t *testing.T, ns, secret string) string {
	t.Helper()
	key := env.Sensitive.New(testenv.Credential, "dingapp")
	appSecret := env.Sensitive.New(testenv.Credential, "appsecret-")
	envtesting.Must(t, env.Sim.AddApp(simulator.App{AppKey: key, AppSecret: appSecret, TokenLifetime: simulator.Duration(time.Minute)}))
	env.CreateSecret(t, ns, secret, map[string]string{"appKey": key, "appSecret": appSecret})
	return key
}

// addSuite adds a third-party suite to the simulator and its credentials Secret to ns.
func addSuite(t *testing.T, ns, secret string) {
	t.Helper()
	key := env.Sensitive.New(testenv.Credential, "suite")
	suiteSecret := env.Sensitive.New(testenv.Credential, "suitesecret-")
	ticket := env.Sensitive.New(testenv.Credential, "ticket-")
	envtesting.Must(t, env.Sim.AddSuite(simulator.Suite{SuiteKey: key, SuiteSecret: suiteSecret, SuiteTicket: ticket,
		TokenLifetime: simulator.Duration(time.Minute)}))
	env.CreateSecret(t, ns, secret, map[string]string{"suiteKey": key, "suiteSecret": suiteSecret, "suiteTicket": ticket})
}

// createNamespace creates a namespace with a fixed name (a release's), unless it exists.
func createNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	err := env.Client.Create(envtesting.Ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// scraperToken creates a service account bound to the metrics-reader ClusterRole and returns a
// token for it, as Prometheus would hold.
func scraperToken(t *testing.T, ns, readerRole string) string {
	t.Helper()
	ctx := envtesting.Ctx(t)
	env.Create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prometheus"}})
	env.Create(t, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-prometheus-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: readerRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "prometheus"}},
	})
	tr, err := kubernetes.NewForConfigOrDie(env.Config).CoreV1().ServiceAccounts(ns).
		CreateToken(ctx, "prometheus", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	envtesting.Must(t, err)
	return tr.Status.Token
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
