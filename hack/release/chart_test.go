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
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	releaseName = "dingtalk-token-operator"
	releaseNS   = "dingtalk-token-operator-system"
	// fullname is what the chart names its objects for releaseName.
	fullname = "dingtalk-token-operator"
)

// testRepo is the image repository the chart tests render with: the source chart has none
// (values.schema.json requires one), a release stamps its IMAGE_REPO.
const testRepo = "registry.example.com/dingtalk-token-operator"

// repoRoot is the repository's root, two directories above this module.
var repoRoot = filepath.Join("..", "..")

func chartDir() string { return ChartDir(repoRoot) }

// rendered is the chart's output for one set of values.
type rendered struct {
	objs  []*unstructured.Unstructured
	notes string
}

func renderChart(t *testing.T, vals map[string]any) *rendered {
	t.Helper()
	return renderRelease(t, releaseName, vals)
}

// renderRelease renders the chart for a release name, with image.repository set to testRepo
// unless vals set it.
func renderRelease(t *testing.T, name string, vals map[string]any) *rendered {
	t.Helper()
	vals = withRepo(vals)
	rel, err := Render(chartDir(), name, releaseNS, vals)
	if err != nil {
		t.Fatalf("rendering the chart with %v: %v", vals, err)
	}
	objs, err := decodeAll([]byte(rel.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	return &rendered{objs: objs, notes: rel.Info.Notes}
}

// withRepo returns a copy of vals with image.repository set to testRepo unless vals set it.
func withRepo(vals map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range vals {
		out[k] = v
	}
	image := map[string]any{}
	if m, ok := out["image"].(map[string]any); ok {
		for k, v := range m {
			image[k] = v
		}
	}
	if _, ok := image["repository"]; !ok {
		image["repository"] = testRepo
	}
	out["image"] = image
	return out
}

func decodeAll(b []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}

// key names an object as "Kind namespace/name" ("Kind name" when cluster-scoped).
func key(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetKind() + " " + o.GetName()
	}
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

func (r *rendered) keys() []string {
	var out []string
	for _, o := range r.objs {
		out = append(out, key(o))
	}
	slices.Sort(out)
	return out
}

func (r *rendered) find(k string) *unstructured.Unstructured {
	for _, o := range r.objs {
		if key(o) == k {
			return o
		}
	}
	return nil
}

func (r *rendered) ofKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func (r *rendered) deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	o := r.find("Deployment " + releaseNS + "/" + fullname)
	if o == nil {
		t.Fatalf("no Deployment %s/%s among %v", releaseNS, fullname, r.keys())
	}
	return convert[appsv1.Deployment](t, o)
}

func convert[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, out, true); err != nil {
		t.Fatalf("%s does not decode strictly as %T: %v", key(o), out, err)
	}
	return out
}

// The objects every install has, whatever the toggles (cluster-wide mode): the Deployment, its
// ServiceAccount, and each Role of config/rbac (leader election, the digest key, ...) in the
// release namespace, bound to the ServiceAccount.
var baseObjects = append([]string{
	"ServiceAccount " + releaseNS + "/" + fullname,
	"Deployment " + releaseNS + "/" + fullname,
}, configRoles()...)

func configRoles() []string {
	var out []string
	for _, role := range configObjects("config/rbac/*role.yaml", func(o *unstructured.Unstructured) string {
		if o.GetKind() != "Role" {
			return ""
		}
		return o.GetName()
	}) {
		out = append(out, "Role "+releaseNS+"/"+fullname+"-"+role,
			"RoleBinding "+releaseNS+"/"+fullname+"-"+strings.TrimSuffix(role, "-role")+"-rolebinding")
	}
	return out
}

// The objects of the operator's rights, cluster-wide.
var clusterRights = []string{
	"ClusterRole " + fullname + "-manager-role",
	"ClusterRoleBinding " + fullname + "-manager-rolebinding",
}

var metricsObjects = []string{
	"Service " + releaseNS + "/" + fullname + "-metrics",
	"ClusterRole " + fullname + "-metrics-reader",
	"ClusterRole " + fullname + "-metrics-auth-role",
	"ClusterRoleBinding " + fullname + "-metrics-auth-rolebinding",
}

// crdObjects are the CRDs of config/crd/bases, whichever they are.
var crdObjects = configObjects("config/crd/bases/*.yaml", func(o *unstructured.Unstructured) string {
	return "CustomResourceDefinition " + o.GetName()
})

// namespaceLabelObjects are the policy and binding of config/components/namespace-labels.
var namespaceLabelObjects = configObjects("config/components/namespace-labels/namespace_label_policy.yaml", func(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + fullname + "-" + o.GetName()
})

// policyVariables maps a ValidatingAdmissionPolicy's variables to their expressions.
func policyVariables(t *testing.T, policy *unstructured.Unstructured) map[string]string {
	t.Helper()
	if policy == nil {
		t.Fatal("no ValidatingAdmissionPolicy")
	}
	vars, _, _ := unstructured.NestedSlice(policy.Object, "spec", "variables")
	out := map[string]string{}
	for _, v := range vars {
		m := v.(map[string]any)
		out[m["name"].(string)] = m["expression"].(string)
	}
	return out
}

// admissionObjects are the policies and bindings of config/admission, whichever they are.
var admissionObjects = configObjects("config/admission/*.yaml", func(o *unstructured.Unstructured) string {
	if o.GetKind() == "Kustomization" {
		return ""
	}
	return o.GetKind() + " " + fullname + "-" + o.GetName()
})

// peopleRoles are the ClusterRoles of config/rbac that are not the operator's: the editor and
// viewer roles of each kind.
var peopleRoles = configObjects("config/rbac/*role.yaml", func(o *unstructured.Unstructured) string {
	if o.GetKind() != "ClusterRole" || slices.Contains([]string{"manager-role", "metrics-auth-role", "metrics-reader"}, o.GetName()) {
		return ""
	}
	return "ClusterRole " + fullname + "-" + o.GetName()
})

// configObjects names, with name, the objects in the config/ files matching glob ("" skips one).
func configObjects(glob string, name func(*unstructured.Unstructured) string) []string {
	files, err := filepath.Glob(filepath.Join(repoRoot, filepath.FromSlash(glob)))
	if err != nil || len(files) == 0 {
		panic(fmt.Sprintf("no files match %s: %v", glob, err))
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			panic(err)
		}
		objs, err := decodeAll(b)
		if err != nil {
			panic(fmt.Sprintf("%s: %v", f, err))
		}
		for _, o := range objs {
			if n := name(o); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}

var rolloutRestartCluster = []string{
	"ClusterRole " + fullname + "-rollout-restart-role",
	"ClusterRoleBinding " + fullname + "-rollout-restart-rolebinding",
}

func cat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func rightsIn(ns string, role string) []string {
	return []string{
		"Role " + ns + "/" + fullname + "-" + role + "-role",
		"RoleBinding " + ns + "/" + fullname + "-" + role + "-rolebinding",
	}
}

// TestChartRender renders the chart with its defaults and with each documented toggle, and checks
// the objects each gives, the manager's flags, and, for every case, the invariants: hardened
// pod and container security contexts, no wildcard or escalating RBAC, bindings only to the
// chart's ServiceAccount, and namespaced objects in the release namespace (or a watched one).
func TestChartRender(t *testing.T) {
	defaults := cat(baseObjects, clusterRights, metricsObjects, crdObjects, admissionObjects, peopleRoles)
	for name, tc := range map[string]struct {
		values map[string]any // the chart values set (on top of values.yaml)
		// objects is every object the chart must render, and nothing else.
		objects []string
		// args must be among the manager's flags; noArgs must not be (matched by prefix).
		args, noArgs []string
		check        func(t *testing.T, r *rendered) // more checks, if any
	}{
		"defaults": {
			objects: defaults,
			args: []string{"--leader-elect", "--leader-election-id=" + fullname + ".dingtalk.tokens.dev", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8443",
				"--metrics-secure=true", "--dingtalk-qps=20", "--dingtalk-burst=40", "--max-concurrent-reconciles=4", "--zap-log-level=info",
				"--stream-unhandled-events=redeliver"},
			noArgs: []string{"--watch-namespaces", "--watch-label-selector", "--enable-rollout-restart", "--dingtalk-endpoint"},
			check: func(t *testing.T, r *rendered) {
				d := r.deployment(t)
				if *d.Spec.Replicas != 1 {
					t.Errorf("replicas = %d, want 1", *d.Spec.Replicas)
				}
				if got := d.Spec.Template.Spec.Containers[0].Image; got != testRepo+":latest" {
					t.Errorf("image = %s, want image.repository with the appVersion tag, %s:latest", got, testRepo)
				}
				for _, crd := range r.ofKind("CustomResourceDefinition") {
					if crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
						t.Errorf("crds.keep is on by default but CRD %s lacks helm.sh/resource-policy: keep", crd.GetName())
					}
				}
				for _, want := range []string{"every namespace", "rollout status deployment/" + fullname, "-n apps"} {
					if !strings.Contains(r.notes, want) {
						t.Errorf("NOTES.txt lacks %q:\n%s", want, r.notes)
					}
				}
			},
		},
		"crds.enabled=false": {
			values:  map[string]any{"crds": map[string]any{"enabled": false}},
			objects: cat(baseObjects, clusterRights, metricsObjects, admissionObjects, peopleRoles),
			check: func(t *testing.T, r *rendered) {
				// The release's crds.yaml holds the CRDs alone; install.yaml is the whole
				// cluster-wide operator (a ClusterRole that reads every Secret).
				if !strings.Contains(r.notes, "kubectl apply --server-side -f crds.yaml") || strings.Contains(r.notes, "-f install.yaml") ||
					strings.Contains(r.notes, "-f dist/install.yaml") {
					t.Errorf("NOTES.txt does not tell to apply the release's crds.yaml (and only it) for the CRDs:\n%s", r.notes)
				}
			},
		},
		"crds.keep=false": {
			values:  map[string]any{"crds": map[string]any{"keep": false}},
			objects: defaults,
			check: func(t *testing.T, r *rendered) {
				for _, crd := range r.ofKind("CustomResourceDefinition") {
					if _, ok := crd.GetAnnotations()["helm.sh/resource-policy"]; ok {
						t.Errorf("crds.keep=false still annotates CRD %s with helm.sh/resource-policy", crd.GetName())
					}
				}
			},
		},
		"watchNamespaces": {
			values: map[string]any{"watchNamespaces": []any{"team-a", "team-b"}},
			objects: cat(baseObjects, rightsIn("team-a", "manager"), rightsIn("team-b", "manager"),
				metricsObjects, crdObjects, admissionObjects, peopleRoles),
			args:   []string{"--watch-namespaces=team-a,team-b"},
			noArgs: []string{"--enable-rollout-restart"},
			check: func(t *testing.T, r *rendered) {
				if !strings.Contains(r.notes, "team-a, team-b") || !strings.Contains(r.notes, "-n team-a") {
					t.Errorf("NOTES.txt does not name the watched namespaces:\n%s", r.notes)
				}
			},
		},
		"rolloutRestart.enabled": {
			values:  map[string]any{"rolloutRestart": map[string]any{"enabled": true}},
			objects: cat(defaults, rolloutRestartCluster),
			args:    []string{"--enable-rollout-restart"},
		},
		"rolloutRestart.enabled with watchNamespaces": {
			values: map[string]any{"rolloutRestart": map[string]any{"enabled": true}, "watchNamespaces": []any{"team-a"}},
			objects: cat(baseObjects, rightsIn("team-a", "manager"), rightsIn("team-a", "rollout-restart"),
				metricsObjects, crdObjects, admissionObjects, peopleRoles),
			args: []string{"--enable-rollout-restart", "--watch-namespaces=team-a"},
		},
		"admissionPolicy.enabled=false": {
			values:  map[string]any{"admissionPolicy": map[string]any{"enabled": false}},
			objects: cat(baseObjects, clusterRights, metricsObjects, crdObjects, peopleRoles),
		},
		"admissionPolicy.namespaceLabels": {
			values: map[string]any{"admissionPolicy": map[string]any{"namespaceLabels": map[string]any{
				"enabled": true, "group": "platform-admins", "prefix": "tokens.example.com/"}}},
			objects: cat(defaults, namespaceLabelObjects),
			check: func(t *testing.T, r *rendered) {
				vars := policyVariables(t, r.find("ValidatingAdmissionPolicy "+fullname+"-namespace-labels"))
				if vars["prefix"] != "'tokens.example.com/'" || vars["group"] != "'platform-admins'" {
					t.Errorf("policy variables %v, want the values' prefix and group", vars)
				}
				b := r.find("ValidatingAdmissionPolicyBinding " + fullname + "-namespace-labels")
				if name, _, _ := unstructured.NestedString(b.Object, "spec", "policyName"); name != fullname+"-namespace-labels" {
					t.Errorf("the binding names policy %s", name)
				}
			},
		},
		"rbac.userRoles=false": {
			values:  map[string]any{"rbac": map[string]any{"userRoles": false}},
			objects: cat(baseObjects, clusterRights, metricsObjects, crdObjects, admissionObjects),
		},
		"dingtalk endpoint, qps, burst, timeout": {
			values: map[string]any{"dingtalk": map[string]any{
				"endpoint": "https://dingtalk-proxy.example.com/api", "qps": 5.5, "burst": 7, "timeout": "30s"}},
			objects: defaults,
			args: []string{"--dingtalk-endpoint=https://dingtalk-proxy.example.com/api", "--dingtalk-qps=5.5",
				"--dingtalk-burst=7", "--dingtalk-timeout=30s"},
		},
		"concurrency and logging": {
			values:  map[string]any{"concurrency": 16, "logging": map[string]any{"level": "debug", "format": "console"}},
			objects: defaults,
			args:    []string{"--max-concurrent-reconciles=16", "--zap-log-level=debug", "--zap-encoder=console"},
		},
		"metrics.enabled=false": {
			values:  map[string]any{"metrics": map[string]any{"enabled": false}},
			objects: cat(baseObjects, clusterRights, crdObjects, admissionObjects, peopleRoles),
			args:    []string{"--metrics-bind-address=0"},
			noArgs:  []string{"--metrics-bind-address=:", "--metrics-secure"},
			check: func(t *testing.T, r *rendered) {
				for _, p := range r.deployment(t).Spec.Template.Spec.Containers[0].Ports {
					if p.ContainerPort != 8081 {
						t.Errorf("metrics off, but the container still declares port %s %d", p.Name, p.ContainerPort)
					}
				}
			},
		},
		"metrics.secure=false": {
			values: map[string]any{"metrics": map[string]any{"secure": false, "port": 8080}},
			objects: cat(baseObjects, clusterRights, crdObjects, admissionObjects, peopleRoles,
				[]string{"Service " + releaseNS + "/" + fullname + "-metrics", "ClusterRole " + fullname + "-metrics-reader"}),
			args: []string{"--metrics-bind-address=:8080", "--metrics-secure=false"},
			check: func(t *testing.T, r *rendered) {
				svc := convert[corev1.Service](t, r.find("Service "+releaseNS+"/"+fullname+"-metrics"))
				if p := svc.Spec.Ports[0]; p.Port != 8080 || p.Name != "http" || p.TargetPort.String() != "http-metrics" {
					t.Errorf("metrics Service port = %+v, want http 8080 -> http-metrics", p)
				}
			},
		},
		"serviceMonitor.enabled": {
			values: map[string]any{"serviceMonitor": map[string]any{"enabled": true, "interval": "30s", "labels": map[string]any{"release": "prom"},
				"tls": map[string]any{"caSecret": map[string]any{"name": "metrics-cert"}}}},
			objects: cat(defaults, []string{"ServiceMonitor " + releaseNS + "/" + fullname}),
			check: func(t *testing.T, r *rendered) {
				mon := r.find("ServiceMonitor " + releaseNS + "/" + fullname)
				// The Prometheus Operator's own types: an unknown or misspelt field fails here.
				typed := convert[monitoringv1.ServiceMonitor](t, mon)
				if len(typed.Spec.Endpoints) != 1 || typed.Spec.Endpoints[0].TLSConfig == nil {
					t.Fatalf("ServiceMonitor endpoints %+v, want one with a TLS config", typed.Spec.Endpoints)
				}
				if !typed.Spec.Endpoints[0].HonorLabels {
					t.Errorf("ServiceMonitor endpoint %+v: want honorLabels (the tokens' namespace label)", typed.Spec.Endpoints[0])
				}
				// Verified by default: the CA from the Secret, the metrics Service's name.
				tls := typed.Spec.Endpoints[0].TLSConfig
				if tls.InsecureSkipVerify != nil && *tls.InsecureSkipVerify || tls.CA.Secret == nil ||
					tls.CA.Secret.Name != "metrics-cert" || tls.CA.Secret.Key != "ca.crt" ||
					tls.ServerName == nil || *tls.ServerName != fullname+"-metrics."+releaseNS+".svc" {
					t.Errorf("ServiceMonitor TLS %+v: want the CA of Secret metrics-cert (ca.crt) and the name %s-metrics.%s.svc verified", tls, fullname, releaseNS)
				}
				if mon.GetLabels()["release"] != "prom" {
					t.Errorf("ServiceMonitor labels %v lack serviceMonitor.labels", mon.GetLabels())
				}
				ep := mon.Object["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)
				if ep["scheme"] != "https" || ep["port"] != "https" || ep["bearerTokenFile"] == nil || ep["interval"] != "30s" {
					t.Errorf("ServiceMonitor endpoint %v: want https on port https with Prometheus' token, every 30s", ep)
				}
				sel := mon.Object["spec"].(map[string]any)["selector"].(map[string]any)["matchLabels"].(map[string]any)
				svc := r.find("Service " + releaseNS + "/" + fullname + "-metrics")
				for k, v := range sel {
					if svc.GetLabels()[k] != v {
						t.Errorf("ServiceMonitor selects %s=%v, which the metrics Service does not carry", k, v)
					}
				}
			},
		},
		"serviceMonitor without verification, only when set": {
			values: map[string]any{"serviceMonitor": map[string]any{"enabled": true,
				"tls": map[string]any{"insecureSkipVerify": true, "caSecret": map[string]any{"name": "ignored"}}}},
			objects: cat(defaults, []string{"ServiceMonitor " + releaseNS + "/" + fullname}),
			check: func(t *testing.T, r *rendered) {
				tls := convert[monitoringv1.ServiceMonitor](t, r.find("ServiceMonitor "+releaseNS+"/"+fullname)).Spec.Endpoints[0].TLSConfig
				if tls == nil || tls.InsecureSkipVerify == nil || !*tls.InsecureSkipVerify || tls.CA.Secret != nil {
					t.Errorf("ServiceMonitor TLS %+v, want insecureSkipVerify alone", tls)
				}
			},
		},
		"prometheusRule.enabled": {
			values:  map[string]any{"prometheusRule": map[string]any{"enabled": true, "labels": map[string]any{"role": "alert-rules"}}},
			objects: cat(defaults, []string{"PrometheusRule " + releaseNS + "/" + fullname + "-alerts"}),
			check: func(t *testing.T, r *rendered) {
				rule := convert[monitoringv1.PrometheusRule](t, r.find("PrometheusRule "+releaseNS+"/"+fullname+"-alerts"))
				if rule.Labels["role"] != "alert-rules" || len(rule.Spec.Groups) == 0 || len(rule.Spec.Groups[0].Rules) == 0 {
					t.Errorf("PrometheusRule labels %v groups %+v, want prometheusRule.labels and the alerts", rule.Labels, rule.Spec.Groups)
				}
			},
		},
		"grafanaDashboard.enabled": {
			values: map[string]any{"grafanaDashboard": map[string]any{"enabled": true, "namespace": "monitoring",
				"annotations": map[string]any{"grafana_folder": "DingTalk"}}},
			objects: cat(defaults, []string{"ConfigMap monitoring/" + fullname + "-dashboard"}),
			check: func(t *testing.T, r *rendered) {
				cm := convert[corev1.ConfigMap](t, r.find("ConfigMap monitoring/"+fullname+"-dashboard"))
				// kube-prometheus-stack's Grafana sidecar picks ConfigMaps by this label by default.
				if cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "DingTalk" {
					t.Errorf("dashboard ConfigMap labels %v annotations %v, want grafana_dashboard \"1\" and grafanaDashboard.annotations", cm.Labels, cm.Annotations)
				}
			},
		},
		"podDisruptionBudget.enabled": {
			values:  map[string]any{"replicaCount": 2, "podDisruptionBudget": map[string]any{"enabled": true}},
			objects: cat(defaults, []string{"PodDisruptionBudget " + releaseNS + "/" + fullname}),
			check: func(t *testing.T, r *rendered) {
				pdb := convert[policyv1.PodDisruptionBudget](t, r.find("PodDisruptionBudget "+releaseNS+"/"+fullname))
				d := r.deployment(t)
				if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || pdb.Spec.MaxUnavailable != nil {
					t.Errorf("PDB spec = %+v, want minAvailable 1", pdb.Spec)
				}
				if !reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
					t.Errorf("PDB selects %v, the Deployment %v", pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
				}
				if *d.Spec.Replicas != 2 {
					t.Errorf("replicas = %d, want 2", *d.Spec.Replicas)
				}
			},
		},
		"podDisruptionBudget.maxUnavailable": {
			values:  map[string]any{"podDisruptionBudget": map[string]any{"enabled": true, "maxUnavailable": "50%"}},
			objects: cat(defaults, []string{"PodDisruptionBudget " + releaseNS + "/" + fullname}),
			check: func(t *testing.T, r *rendered) {
				pdb := convert[policyv1.PodDisruptionBudget](t, r.find("PodDisruptionBudget "+releaseNS+"/"+fullname))
				if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.String() != "50%" || pdb.Spec.MinAvailable != nil {
					t.Errorf("PDB spec = %+v, want maxUnavailable 50%% only", pdb.Spec)
				}
			},
		},
		"resources": {
			values: map[string]any{"resources": map[string]any{
				"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}, "limits": map[string]any{"cpu": "1", "memory": "512Mi"}}},
			objects: defaults,
			check: func(t *testing.T, r *rendered) {
				res := r.deployment(t).Spec.Template.Spec.Containers[0].Resources
				if res.Requests.Cpu().String() != "100m" || res.Limits.Memory().String() != "512Mi" {
					t.Errorf("resources = %+v, want the values' requests and limits", res)
				}
			},
		},
		"scheduling": {
			values: map[string]any{
				"nodeSelector":      map[string]any{"kubernetes.io/os": "linux"},
				"tolerations":       []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}},
				"priorityClassName": "system-cluster-critical",
				"affinity": map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{
					"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{
						"key": "kubernetes.io/arch", "operator": "In", "values": []any{"amd64", "arm64"}}}}}}}},
				"topologySpreadConstraints": []any{map[string]any{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
					"whenUnsatisfiable": "ScheduleAnyway", "labelSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "dingtalk-token-operator"}}}},
			},
			objects: defaults,
			check: func(t *testing.T, r *rendered) {
				pod := r.deployment(t).Spec.Template.Spec
				if pod.NodeSelector["kubernetes.io/os"] != "linux" || len(pod.Tolerations) != 1 || pod.Tolerations[0].Key != "dedicated" ||
					pod.PriorityClassName != "system-cluster-critical" || pod.Affinity == nil || pod.Affinity.NodeAffinity == nil ||
					len(pod.TopologySpreadConstraints) != 1 || pod.TopologySpreadConstraints[0].TopologyKey != "topology.kubernetes.io/zone" {
					t.Errorf("pod scheduling does not follow the values: %+v", pod)
				}
			},
		},
		"pod labels and annotations": {
			values:  map[string]any{"podLabels": map[string]any{"team": "platform"}, "podAnnotations": map[string]any{"example.com/scrape": "no"}},
			objects: defaults,
			check: func(t *testing.T, r *rendered) {
				d := r.deployment(t)
				if d.Spec.Template.Labels["team"] != "platform" || d.Spec.Template.Annotations["example.com/scrape"] != "no" {
					t.Errorf("pod template metadata = %+v, want the podLabels and podAnnotations", d.Spec.Template.ObjectMeta)
				}
				if _, ok := d.Spec.Selector.MatchLabels["team"]; ok {
					t.Error("podLabels leaked into the Deployment's (immutable) selector")
				}
			},
		},
		"extraArgs and extraEnv": {
			values: map[string]any{"extraArgs": []any{"--dingtalk-timeout=20s", "--zap-stacktrace-level=panic"},
				"extraEnv": []any{map[string]any{"name": "HTTPS_PROXY", "value": "http://proxy.internal:3128"}}},
			objects: defaults,
			args:    []string{"--dingtalk-timeout=20s", "--zap-stacktrace-level=panic"},
			check: func(t *testing.T, r *rendered) {
				env := r.deployment(t).Spec.Template.Spec.Containers[0].Env
				if !slices.ContainsFunc(env, func(e corev1.EnvVar) bool { return e.Name == "HTTPS_PROXY" }) ||
					!slices.ContainsFunc(env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" }) {
					t.Errorf("env = %+v, want GOMEMLIMIT and the extraEnv", env)
				}
			},
		},
		"serviceAccount.create=false": {
			values: map[string]any{"serviceAccount": map[string]any{"create": false, "name": "existing-sa"}},
			objects: slices.DeleteFunc(cat(defaults), func(k string) bool {
				return strings.HasPrefix(k, "ServiceAccount ")
			}),
			check: func(t *testing.T, r *rendered) {
				if sa := r.deployment(t).Spec.Template.Spec.ServiceAccountName; sa != "existing-sa" {
					t.Errorf("the pod runs as %s, want existing-sa", sa)
				}
				assertSubjects(t, r, "existing-sa")
			},
		},
		"serviceAccount name and annotations": {
			values: map[string]any{"serviceAccount": map[string]any{"name": "tokens",
				"annotations": map[string]any{"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}}},
			objects: slices.Concat(slices.DeleteFunc(cat(defaults), func(k string) bool {
				return strings.HasPrefix(k, "ServiceAccount ")
			}), []string{"ServiceAccount " + releaseNS + "/tokens"}),
			check: func(t *testing.T, r *rendered) {
				sa := r.find("ServiceAccount " + releaseNS + "/tokens")
				if sa.GetAnnotations()["eks.amazonaws.com/role-arn"] == "" {
					t.Error("serviceAccount.annotations are not on the ServiceAccount")
				}
				assertSubjects(t, r, "tokens")
			},
		},
		"image": {
			values: map[string]any{"image": map[string]any{"repository": "registry.example.com/dto", "tag": "v9.9.9", "pullPolicy": "Always"},
				"imagePullSecrets": []any{map[string]any{"name": "regcred"}}},
			objects: defaults,
			check: func(t *testing.T, r *rendered) {
				pod := r.deployment(t).Spec.Template.Spec
				if c := pod.Containers[0]; c.Image != "registry.example.com/dto:v9.9.9" || c.ImagePullPolicy != corev1.PullAlways {
					t.Errorf("image = %s (%s), want registry.example.com/dto:v9.9.9 (Always)", c.Image, c.ImagePullPolicy)
				}
				if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "regcred" {
					t.Errorf("imagePullSecrets = %v", pod.ImagePullSecrets)
				}
			},
		},
		"image digest": {
			values:  map[string]any{"image": map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32)}},
			objects: defaults,
			check: func(t *testing.T, r *rendered) {
				if got := r.deployment(t).Spec.Template.Spec.Containers[0].Image; got != testRepo+"@sha256:"+strings.Repeat("ab", 32) {
					t.Errorf("image = %s, want the digest pinned", got)
				}
			},
		},
		"leaderElection.id": {
			values:  map[string]any{"leaderElection": map[string]any{"id": "shard-a.dingtalk.tokens.dev"}},
			objects: defaults,
			args:    []string{"--leader-election-id=shard-a.dingtalk.tokens.dev"},
		},
		"stream.unhandledEvents": {
			values:  map[string]any{"stream": map[string]any{"unhandledEvents": "acknowledge"}},
			objects: defaults,
			args:    []string{"--stream-unhandled-events=acknowledge"},
		},
		"watchLabelSelector": {
			values:  map[string]any{"watchLabelSelector": "!sharding.dingtalk.tokens.dev/shard,team in (a, b)"},
			objects: defaults,
			args:    []string{"--watch-label-selector=!sharding.dingtalk.tokens.dev/shard,team in (a, b)"},
		},
		"extraVolumes and extraVolumeMounts": {
			// A corporate CA bundle from a ConfigMap, as docs/install.md shows it.
			values: map[string]any{
				"extraVolumes":      []any{map[string]any{"name": "corporate-ca", "configMap": map[string]any{"name": "corporate-ca-bundle"}}},
				"extraVolumeMounts": []any{map[string]any{"name": "corporate-ca", "mountPath": "/etc/corporate-ca", "readOnly": true}},
				"extraEnv":          []any{map[string]any{"name": "SSL_CERT_FILE", "value": "/etc/corporate-ca/ca.crt"}},
			},
			objects: defaults,
			check: func(t *testing.T, r *rendered) {
				pod := r.deployment(t).Spec.Template.Spec
				if len(pod.Volumes) != 1 || pod.Volumes[0].Name != "corporate-ca" || pod.Volumes[0].ConfigMap == nil ||
					pod.Volumes[0].ConfigMap.Name != "corporate-ca-bundle" {
					t.Errorf("volumes = %+v, want the corporate-ca ConfigMap", pod.Volumes)
				}
				c := pod.Containers[0]
				if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/corporate-ca" || !c.VolumeMounts[0].ReadOnly {
					t.Errorf("volumeMounts = %+v, want corporate-ca read-only at /etc/corporate-ca", c.VolumeMounts)
				}
				if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "SSL_CERT_FILE" }) {
					t.Errorf("env = %+v, want SSL_CERT_FILE", c.Env)
				}
			},
		},
		"networkPolicy.enabled": {
			values:  map[string]any{"networkPolicy": map[string]any{"enabled": true}},
			objects: cat(defaults, []string{"NetworkPolicy " + releaseNS + "/" + fullname}),
			check: func(t *testing.T, r *rendered) {
				np := networkPolicy(t, r)
				assertNetworkPolicySelects(t, r, np)
				// Ingress: the metrics port (any peer by default) and the probe port, nothing else.
				if got := ingressPorts(np); !slices.Equal(got, []string{"https-metrics", "probes"}) {
					t.Errorf("ingress ports %v, want https-metrics and probes only", got)
				}
				for _, in := range np.Spec.Ingress {
					if len(in.From) > 0 {
						t.Errorf("ingress %+v limits peers; the default lets any peer scrape", in)
					}
				}
				// Egress: DNS (UDP and TCP 53), the API server (443, 6443), DingTalk (443), to any address.
				if got := egressPorts(np); !slices.Equal(got, []string{"TCP/443", "TCP/443", "TCP/53", "TCP/6443", "UDP/53"}) {
					t.Errorf("egress ports %v, want DNS 53 UDP and TCP, the API server's 443 and 6443, DingTalk's 443", got)
				}
				for _, e := range np.Spec.Egress {
					if len(e.To) > 0 {
						t.Errorf("egress %+v names peers; the default allows the ports to any address", e)
					}
				}
			},
		},
		"networkPolicy with CIDRs, peers and extra egress, metrics off": {
			values: map[string]any{
				"metrics": map[string]any{"enabled": false},
				"networkPolicy": map[string]any{"enabled": true, "dns": false,
					"apiServer":   map[string]any{"ports": []any{6443}, "cidrs": []any{"10.0.0.1/32"}},
					"dingtalk":    map[string]any{"cidrs": []any{"203.0.113.0/24"}},
					"metricsFrom": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"name": "monitoring"}}}},
					"extraEgress": []any{map[string]any{"ports": []any{map[string]any{"port": 3128, "protocol": "TCP"}},
						"to": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.1.2.3/32"}}}}}}},
			objects: cat(baseObjects, clusterRights, crdObjects, admissionObjects, peopleRoles, []string{"NetworkPolicy " + releaseNS + "/" + fullname}),
			check: func(t *testing.T, r *rendered) {
				np := networkPolicy(t, r)
				if got := ingressPorts(np); !slices.Equal(got, []string{"probes"}) {
					t.Errorf("metrics off: ingress ports %v, want probes only", got)
				}
				if got := egressPorts(np); !slices.Equal(got, []string{"TCP/3128", "TCP/443", "TCP/6443"}) {
					t.Errorf("egress ports %v, want the API server's 6443, DingTalk's 443 and the proxy's 3128 (no DNS)", got)
				}
				want := map[string]string{"TCP/6443": "10.0.0.1/32", "TCP/443": "203.0.113.0/24", "TCP/3128": "10.1.2.3/32"}
				for _, e := range np.Spec.Egress {
					if len(e.To) != 1 || e.To[0].IPBlock == nil || e.To[0].IPBlock.CIDR != want[portKey(e.Ports[0])] {
						t.Errorf("egress %+v, want it limited to %s", e, want[portKey(e.Ports[0])])
					}
				}
			},
		},
		"terminationGracePeriodSeconds": {
			values:  map[string]any{"terminationGracePeriodSeconds": 120},
			objects: defaults,
			check: func(t *testing.T, r *rendered) {
				if g := r.deployment(t).Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 120 {
					t.Errorf("terminationGracePeriodSeconds = %v, want 120", g)
				}
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := renderChart(t, tc.values)
			want := slices.Sorted(slices.Values(tc.objects))
			if got := r.keys(); !slices.Equal(got, want) {
				t.Errorf("rendered objects:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			args := r.deployment(t).Spec.Template.Spec.Containers[0].Args
			for _, a := range tc.args {
				if !slices.Contains(args, a) {
					t.Errorf("manager args %q lack %s", args, a)
				}
			}
			for _, p := range tc.noArgs {
				if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, p) }) {
					t.Errorf("manager args %q contain %s", args, p)
				}
			}
			assertHardened(t, r.deployment(t))
			assertRBAC(t, r)
			assertNamespaces(t, r, tc.values)
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// TestChartGOMEMLIMIT: the manager's GOMEMLIMIT is 40% of its memory limit, in MiB (102MiB at the
// default 256Mi, what hack/bench's --gomemlimit defaults to), absent without a limit, and a limit
// the chart cannot read is refused with a message that names the value.
func TestChartGOMEMLIMIT(t *testing.T) {
	goMemLimit := func(r *rendered) (string, bool) {
		for _, e := range r.deployment(t).Spec.Template.Spec.Containers[0].Env {
			if e.Name == "GOMEMLIMIT" {
				return e.Value, true
			}
		}
		return "", false
	}
	for _, tc := range []struct {
		limit any // resources.limits.memory; nil removes it
		set   bool
		want  string
	}{
		{want: "102MiB"},
		{set: true, limit: "512Mi", want: "204MiB"},
		{set: true, limit: "1Gi", want: "409MiB"},
		{set: true, limit: "0.5Gi", want: "204MiB"},
		{set: true, limit: "300M", want: "114MiB"},
		{set: true, limit: 268435456, want: "102MiB"},
		{set: true, limit: nil, want: ""},
	} {
		vals := map[string]any{}
		if tc.set {
			vals["resources"] = map[string]any{"limits": map[string]any{"memory": tc.limit}}
		}
		got, ok := goMemLimit(renderChart(t, vals))
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("limits.memory %v (set: %v): GOMEMLIMIT %q (set: %v), want %q", tc.limit, tc.set, got, ok, tc.want)
		}
	}
	_, err := Render(chartDir(), releaseName, releaseNS, withRepo(map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "256 MB"}}}))
	if err == nil || !strings.Contains(err.Error(), `resources.limits.memory "256 MB"`) {
		t.Errorf("limits.memory \"256 MB\": err = %v, want one naming the value", err)
	}
}

func networkPolicy(t *testing.T, r *rendered) *networkingv1.NetworkPolicy {
	t.Helper()
	o := r.find("NetworkPolicy " + releaseNS + "/" + fullname)
	if o == nil {
		t.Fatalf("no NetworkPolicy among %v", r.keys())
	}
	np := convert[networkingv1.NetworkPolicy](t, o)
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("policyTypes %v, want Ingress and Egress (an empty egress list would allow all)", np.Spec.PolicyTypes)
	}
	return np
}

// assertNetworkPolicySelects checks that the policy selects the manager's pods and names only
// ports the manager's container declares.
func assertNetworkPolicySelects(t *testing.T, r *rendered, np *networkingv1.NetworkPolicy) {
	t.Helper()
	d := r.deployment(t)
	for k, v := range np.Spec.PodSelector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("the NetworkPolicy selects %s=%s, which the manager's pods do not carry", k, v)
		}
	}
	for _, in := range np.Spec.Ingress {
		for _, p := range in.Ports {
			if !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.Port.String() }) {
				t.Errorf("ingress names port %s, which the manager's container does not declare", p.Port)
			}
		}
	}
}

func portKey(p networkingv1.NetworkPolicyPort) string {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	return string(proto) + "/" + p.Port.String()
}

func ingressPorts(np *networkingv1.NetworkPolicy) []string {
	var out []string
	for _, in := range np.Spec.Ingress {
		for _, p := range in.Ports {
			out = append(out, p.Port.String())
		}
	}
	slices.Sort(out)
	return out
}

func egressPorts(np *networkingv1.NetworkPolicy) []string {
	var out []string
	for _, e := range np.Spec.Egress {
		for _, p := range e.Ports {
			out = append(out, portKey(p))
		}
	}
	slices.Sort(out)
	return out
}

// assertHardened checks the manager's pod against the restricted Pod Security Standard: non-root
// uid 65532, RuntimeDefault seccomp, read-only root, no privilege escalation, every capability
// dropped, no host namespace or path, requests and limits.
func assertHardened(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	pod := d.Spec.Template.Spec
	psc := pod.SecurityContext
	switch {
	case psc == nil:
		t.Fatal("the pod has no securityContext")
	case psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot:
		t.Error("pod securityContext.runAsNonRoot is not true")
	case psc.RunAsUser == nil || *psc.RunAsUser != 65532 || psc.RunAsGroup == nil || *psc.RunAsGroup != 65532:
		t.Errorf("pod runs as %v:%v, want 65532:65532", psc.RunAsUser, psc.RunAsGroup)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("pod securityContext.seccompProfile is not RuntimeDefault")
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC || slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.HostPath != nil }) {
		t.Error("the pod shares a host namespace or mounts a host path")
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("the pod has %d containers and %d init containers, want the manager only", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("the manager container has no securityContext")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation is not false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem is not true")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("the manager is privileged")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("container runAsNonRoot is not true")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities = %+v, want drop ALL and add none", sc.Capabilities)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("the manager lacks its /healthz liveness and /readyz readiness probes")
	}
}

// assertRBAC fails on any wildcard or escalating verb, any non-resource URL outside the
// metrics-reader role, and any binding to something other than the chart's ServiceAccount or
// to a role the chart does not render.
func assertRBAC(t *testing.T, r *rendered) {
	t.Helper()
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, o := range r.ofKind(kind) {
			role := convert[rbacv1.ClusterRole](t, o) // a Role has the same fields
			for _, rule := range role.Rules {
				for _, list := range [][]string{rule.APIGroups, rule.Resources, rule.Verbs, rule.NonResourceURLs} {
					if slices.Contains(list, "*") {
						t.Errorf("%s grants a wildcard: %+v", key(o), rule)
					}
				}
				for _, v := range []string{"escalate", "bind", "impersonate"} {
					if slices.Contains(rule.Verbs, v) {
						t.Errorf("%s grants %s", key(o), v)
					}
				}
				if len(rule.NonResourceURLs) > 0 && o.GetName() != fullname+"-metrics-reader" {
					t.Errorf("%s grants non-resource URLs %v", key(o), rule.NonResourceURLs)
				}
			}
			if len(o.GetLabels()) == 0 || o.GetLabels()["app.kubernetes.io/instance"] != releaseName {
				t.Errorf("%s lacks the chart's labels", key(o))
			}
		}
	}
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, o := range r.ofKind(kind) {
			b := convert[rbacv1.RoleBinding](t, o)
			ref := b.RoleRef.Kind + " " + b.RoleRef.Name
			if b.RoleRef.Kind == "Role" {
				ref = "Role " + b.Namespace + "/" + b.RoleRef.Name
			}
			if r.find(ref) == nil {
				t.Errorf("%s binds %s, which the chart does not render", key(o), ref)
			}
			if len(b.Subjects) != 1 || b.Subjects[0].Kind != rbacv1.ServiceAccountKind || b.Subjects[0].Namespace != releaseNS {
				t.Errorf("%s binds %+v; the chart binds only its ServiceAccount", key(o), b.Subjects)
			}
		}
	}
}

// assertSubjects checks that every binding names the ServiceAccount sa.
func assertSubjects(t *testing.T, r *rendered, sa string) {
	t.Helper()
	for _, o := range slices.Concat(r.ofKind("ClusterRoleBinding"), r.ofKind("RoleBinding")) {
		b := convert[rbacv1.RoleBinding](t, o)
		if b.Subjects[0].Name != sa {
			t.Errorf("%s binds ServiceAccount %s, want %s", key(o), b.Subjects[0].Name, sa)
		}
	}
}

// clusterScoped are the kinds the chart renders without a namespace.
var clusterScoped = []string{"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}

// assertNamespaces checks that namespaced objects go to the release namespace, except the
// operator's Roles in watched namespaces.
// dashboardNS is the namespace of the Grafana dashboard's ConfigMap: grafanaDashboard.namespace,
// else the release's.
func dashboardNS(vals map[string]any) string {
	if ns, _, _ := unstructured.NestedString(vals, "grafanaDashboard", "namespace"); ns != "" {
		return ns
	}
	return releaseNS
}

func assertNamespaces(t *testing.T, r *rendered, vals map[string]any) {
	t.Helper()
	watched, _ := vals["watchNamespaces"].([]any)
	for _, o := range r.objs {
		ns := o.GetNamespace()
		switch {
		case slices.Contains(clusterScoped, o.GetKind()):
			if ns != "" {
				t.Errorf("cluster-scoped %s has namespace %s", key(o), ns)
			}
		case ns == releaseNS:
		case (o.GetKind() == "Role" || o.GetKind() == "RoleBinding") && slices.Contains(watched, any(ns)):
		case o.GetKind() == "ConfigMap" && o.GetName() == fullname+"-dashboard" && ns == dashboardNS(vals):
			// The dashboard goes where Grafana's sidecar looks (grafanaDashboard.namespace).
		default:
			t.Errorf("%s is outside the release namespace %s", key(o), releaseNS)
		}
	}
}

// TestChartNamespacedModeRendersRolesOnly: with watchNamespaces, the operator's rights are Roles in
// those namespaces; the only cluster-wide grant left is the metrics endpoint's TokenReview and
// SubjectAccessReview (not namespaced resources), and none at all without secure metrics and the
// people's aggregated roles.
func TestChartNamespacedModeRendersRolesOnly(t *testing.T) {
	r := renderChart(t, map[string]any{"watchNamespaces": []any{"team-a", "team-b"}, "rolloutRestart": map[string]any{"enabled": true}})
	for _, o := range r.ofKind("ClusterRoleBinding") {
		b := convert[rbacv1.ClusterRoleBinding](t, o)
		role := convert[rbacv1.ClusterRole](t, r.find("ClusterRole "+b.RoleRef.Name))
		for _, rule := range role.Rules {
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					if gr := g + "/" + res; gr != "authentication.k8s.io/tokenreviews" && gr != "authorization.k8s.io/subjectaccessreviews" {
						t.Errorf("namespaced mode grants %v on %s cluster-wide through %s", rule.Verbs, gr, b.Name)
					}
				}
			}
		}
	}
	for _, ns := range []string{"team-a", "team-b"} {
		for _, role := range []string{"manager-role", "rollout-restart-role"} {
			if r.find("Role "+ns+"/"+fullname+"-"+role) == nil {
				t.Errorf("no Role %s in %s", role, ns)
			}
		}
		// A Role cannot grant cluster-scoped resources: the chart leaves their rules out, and
		// keeps every namespaced one.
		var granted []string
		for _, rule := range convert[rbacv1.Role](t, r.find("Role "+ns+"/"+fullname+"-manager-role")).Rules {
			for _, res := range rule.Resources {
				if res == "namespaces" || strings.HasPrefix(res, "clusterdingtalktokens") {
					t.Errorf("Role manager-role in %s names the cluster-scoped %s", ns, res)
				}
				granted = append(granted, res)
			}
		}
		for _, res := range []string{"secrets", "dingtalktokens", "dingtalktokens/status", "dingtalktokens/finalizers", "events"} {
			if !slices.Contains(granted, res) {
				t.Errorf("Role manager-role in %s does not grant %s", ns, res)
			}
		}
	}

	strict := renderChart(t, map[string]any{"watchNamespaces": []any{"team-a"},
		"metrics": map[string]any{"secure": false}, "rbac": map[string]any{"userRoles": false}})
	for _, kind := range []string{"ClusterRole", "ClusterRoleBinding"} {
		for _, o := range strict.ofKind(kind) {
			if o.GetName() != fullname+"-metrics-reader" { // grants nothing to the operator: Prometheus binds it
				t.Errorf("namespaced mode without secure metrics or aggregated roles renders %s", key(o))
			}
		}
	}
}

// TestChartMatchesConfig is the drift test: the chart's CRDs, roles, admission policy and
// alerts equal those in config/ (generated by `make manifests` from the markers, or written
// there), and its manager pod defaults equal config/manager's. Every CRD in config/crd/bases
// and every role in config/rbac is compared, so new ones are covered without a change here.
func TestChartMatchesConfig(t *testing.T) {
	r := renderChart(t, map[string]any{"rolloutRestart": map[string]any{"enabled": true}, "prometheusRule": map[string]any{"enabled": true}})

	t.Run("CRDs", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
		if len(files) == 0 {
			t.Fatal("no CRDs in config/crd/bases")
		}
		var names []string
		for _, f := range files {
			for _, want := range readObjects(t, f) {
				names = append(names, want.GetName())
				got := r.find("CustomResourceDefinition " + want.GetName())
				if got == nil {
					t.Errorf("the chart does not install CRD %s (%s): run `make manifests`", want.GetName(), f)
					continue
				}
				assertSameBut(t, got, want, "metadata")
				if !reflect.DeepEqual(want.GetAnnotations(), without(got.GetAnnotations(), "helm.sh/resource-policy")) {
					t.Errorf("CRD %s annotations %v, want %v", want.GetName(), got.GetAnnotations(), want.GetAnnotations())
				}
			}
		}
		for _, crd := range r.ofKind("CustomResourceDefinition") {
			if !slices.Contains(names, crd.GetName()) {
				t.Errorf("the chart installs CRD %s, which config/crd/bases does not hold", crd.GetName())
			}
		}
	})

	t.Run("roles", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(repoRoot, "config", "rbac", "*role.yaml"))
		more, _ := filepath.Glob(filepath.Join(repoRoot, "config", "components", "rollout-restart", "*role.yaml"))
		for _, f := range slices.Concat(files, more) {
			for _, want := range readObjects(t, f) {
				k := want.GetKind() + " " + fullname + "-" + want.GetName()
				if want.GetKind() == "Role" {
					k = "Role " + releaseNS + "/" + fullname + "-" + want.GetName()
				}
				got := r.find(k)
				if got == nil {
					t.Errorf("the chart does not render %s from %s: run `make manifests`", k, f)
					continue
				}
				assertSameBut(t, got, want, "metadata")
			}
		}
	})

	t.Run("admission policy", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(repoRoot, "config", "admission", "*.yaml"))
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			for _, want := range readObjects(t, f) {
				got := r.find(want.GetKind() + " " + fullname + "-" + want.GetName())
				if got == nil {
					t.Errorf("the chart does not render %s %s from %s", want.GetKind(), want.GetName(), f)
					continue
				}
				if want.GetKind() == "ValidatingAdmissionPolicyBinding" {
					// The binding names the chart's policy, prefixed like every object.
					_ = unstructured.SetNestedField(want.Object, fullname+"-"+want.Object["spec"].(map[string]any)["policyName"].(string), "spec", "policyName")
				}
				assertSameBut(t, got, want, "metadata")
			}
		}
	})

	t.Run("namespace labels policy", func(t *testing.T) {
		// With config's own group, the chart's policy is config's, names aside.
		r := renderChart(t, map[string]any{"admissionPolicy": map[string]any{"namespaceLabels": map[string]any{
			"enabled": true, "group": "dingtalk-token-admins"}}})
		for _, want := range readObjects(t, filepath.Join(repoRoot, "config", "components", "namespace-labels", "namespace_label_policy.yaml")) {
			got := r.find(want.GetKind() + " " + fullname + "-" + want.GetName())
			if got == nil {
				t.Fatalf("the chart does not render %s %s", want.GetKind(), want.GetName())
			}
			if want.GetKind() == "ValidatingAdmissionPolicyBinding" {
				_ = unstructured.SetNestedField(want.Object, fullname+"-"+want.Object["spec"].(map[string]any)["policyName"].(string), "spec", "policyName")
			}
			assertSameBut(t, got, want, "metadata")
		}
	})

	t.Run("alerts", func(t *testing.T) {
		for _, want := range readObjects(t, filepath.Join(repoRoot, "config", "prometheus", "alerts.yaml")) {
			got := r.find("PrometheusRule " + releaseNS + "/" + fullname + "-" + want.GetName())
			if got == nil {
				t.Fatalf("the chart renders no PrometheusRule %s", want.GetName())
			}
			assertSameBut(t, got, want, "metadata")
		}
	})

	t.Run("Grafana dashboard", func(t *testing.T) {
		r := renderChart(t, map[string]any{"grafanaDashboard": map[string]any{"enabled": true}})
		cm := r.find("ConfigMap " + releaseNS + "/" + fullname + "-dashboard")
		if cm == nil {
			t.Fatal("the chart renders no dashboard ConfigMap")
		}
		files, _ := filepath.Glob(filepath.Join(repoRoot, "config", "grafana", "*.json"))
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		if len(files) == 0 || len(data) != len(files) {
			t.Errorf("the dashboard ConfigMap holds %d files, config/grafana %d", len(data), len(files))
		}
		for _, f := range files {
			want, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if got := data[filepath.Base(f)]; got != strings.TrimSuffix(string(want), "\n") {
				t.Errorf("the chart's %s differs from %s: run `make manifests`", filepath.Base(f), f)
			}
		}
	})

	t.Run("manager pod", func(t *testing.T) {
		var want *appsv1.Deployment
		for _, o := range readObjects(t, filepath.Join(repoRoot, "config", "manager", "manager.yaml")) {
			if o.GetKind() == "Deployment" {
				want = convert[appsv1.Deployment](t, o)
			}
		}
		got := r.deployment(t)
		wp, gp := want.Spec.Template.Spec, got.Spec.Template.Spec
		// config_test.go checks config/manager's grace period against the manager's shutdown budget.
		if *gp.TerminationGracePeriodSeconds != *wp.TerminationGracePeriodSeconds {
			t.Errorf("terminationGracePeriodSeconds = %d, config/manager uses %d", *gp.TerminationGracePeriodSeconds, *wp.TerminationGracePeriodSeconds)
		}
		if !reflect.DeepEqual(gp.SecurityContext, wp.SecurityContext) {
			t.Errorf("pod securityContext = %+v, config/manager's is %+v", gp.SecurityContext, wp.SecurityContext)
		}
		wc, gc := wp.Containers[0], gp.Containers[0]
		if !reflect.DeepEqual(gc.SecurityContext, wc.SecurityContext) {
			t.Errorf("container securityContext = %+v, config/manager's is %+v", gc.SecurityContext, wc.SecurityContext)
		}
		if !reflect.DeepEqual(gc.Resources, wc.Resources) || len(gc.Env) < len(wc.Env) || !reflect.DeepEqual(gc.Env[:len(wc.Env)], wc.Env) {
			t.Errorf("resources %+v and env %+v differ from config/manager's %+v and %+v", gc.Resources, gc.Env, wc.Resources, wc.Env)
		}
		if !reflect.DeepEqual(gc.LivenessProbe, wc.LivenessProbe) || !reflect.DeepEqual(gc.ReadinessProbe, wc.ReadinessProbe) {
			t.Error("probes differ from config/manager's")
		}
		for _, a := range wc.Args {
			if !slices.Contains(gc.Args, a) {
				t.Errorf("config/manager passes %s; the chart does not", a)
			}
		}
	})
}

// readObjects decodes every object in a YAML file.
func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return objs
}

// assertSameBut fails when got and want differ outside the fields listed (a JSON round trip
// makes both comparable whatever YAML spelled them).
func assertSameBut(t *testing.T, got, want *unstructured.Unstructured, ignore ...string) {
	t.Helper()
	g, w := normalise(t, got.Object), normalise(t, want.Object)
	for _, f := range ignore {
		delete(g, f)
		delete(w, f)
	}
	if !reflect.DeepEqual(g, w) {
		gb, _ := yaml.Marshal(g)
		wb, _ := yaml.Marshal(w)
		t.Errorf("%s differs from config/ (run `make manifests`):\n--- chart\n%s\n--- config\n%s", key(got), gb, wb)
	}
}

func normalise(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := yaml.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func without(m map[string]string, k string) map[string]string {
	out := map[string]string{}
	for kk, v := range m {
		if kk != k {
			out[kk] = v
		}
	}
	return out
}

// TestChartSchema: values.schema.json refuses what the manager or Kubernetes would refuse later,
// each with a message naming the value (and, for the image, what to set).
func TestChartSchema(t *testing.T) {
	for name, tc := range map[string]struct {
		vals map[string]any // the values tried (image.repository is set unless they set it)
		want string         // a part of the refusal's message
	}{
		"unknown value":                  {map[string]any{"replicas": 2}, "replicas"},
		"replicaCount not a number":      {map[string]any{"replicaCount": "two"}, "/replicaCount"},
		"bad namespace":                  {map[string]any{"watchNamespaces": []any{"Team_A"}}, "/watchNamespaces/0"},
		"log level":                      {map[string]any{"logging": map[string]any{"level": "trace"}}, "/logging/level"},
		"grace period under shutdown":    {map[string]any{"terminationGracePeriodSeconds": 30}, "/terminationGracePeriodSeconds"},
		"digest":                         {map[string]any{"image": map[string]any{"digest": "latest"}}, "/image/digest"},
		"extra arg without dashes":       {map[string]any{"extraArgs": []any{"leader-elect"}}, "/extraArgs/0"},
		"qps zero":                       {map[string]any{"dingtalk": map[string]any{"qps": 0}}, "/dingtalk/qps"},
		"endpoint with a query":          {map[string]any{"dingtalk": map[string]any{"endpoint": "https://api.dingtalk.com/?x=1"}}, "/dingtalk/endpoint"},
		"concurrency zero":               {map[string]any{"concurrency": 0}, "/concurrency"},
		"metrics port on the probe port": {map[string]any{"metrics": map[string]any{"port": 8081}}, "/metrics/port"},
		"timeout not a duration":         {map[string]any{"dingtalk": map[string]any{"timeout": "10"}}, "/dingtalk/timeout"},
		// The source chart has no image: a forgotten --set must not end in ImagePullBackOff.
		"image.repository empty": {map[string]any{"image": map[string]any{"repository": ""}},
			"set image.repository to the registry repository holding the operator image, e.g. --set image.repository=registry.example.com/dingtalk-token-operator"},
		"leaderElection.id not a Lease name": {map[string]any{"leaderElection": map[string]any{"id": "Shard_A"}}, "/leaderElection/id"},
		"stream.unhandledEvents unknown":     {map[string]any{"stream": map[string]any{"unhandledEvents": "drop"}}, "/stream/unhandledEvents"},
		"a hostPath extra volume": {map[string]any{"extraVolumes": []any{map[string]any{"name": "host", "hostPath": map[string]any{"path": "/etc"}}}},
			"/extraVolumes/0"},
		"an extra mount without a path":   {map[string]any{"extraVolumeMounts": []any{map[string]any{"name": "ca"}}}, "/extraVolumeMounts/0"},
		"networkPolicy with a bad CIDR":   {map[string]any{"networkPolicy": map[string]any{"dingtalk": map[string]any{"cidrs": []any{"api.dingtalk.com"}}}}, "/networkPolicy/dingtalk/cidrs/0"},
		"networkPolicy without API ports": {map[string]any{"networkPolicy": map[string]any{"apiServer": map[string]any{"ports": []any{}}}}, "/networkPolicy/apiServer/ports"},
		"networkPolicy unknown key":       {map[string]any{"networkPolicy": map[string]any{"egress": []any{}}}, "egress"},
		// Verification is the default: a ServiceMonitor with no CA to verify against is refused.
		"serviceMonitor with no CA": {map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
			"serviceMonitor.tls.caSecret.name is required"},
		"serviceMonitor's old tlsConfig": {map[string]any{"serviceMonitor": map[string]any{"tlsConfig": map[string]any{"insecureSkipVerify": true}}},
			"tlsConfig"},
		"namespaceLabels without a group": {map[string]any{"admissionPolicy": map[string]any{"namespaceLabels": map[string]any{"enabled": true}}},
			"admissionPolicy.namespaceLabels.group is required"},
		"namespaceLabels prefix without a slash": {map[string]any{"admissionPolicy": map[string]any{"namespaceLabels": map[string]any{"prefix": "dingtalk.tokens.dev"}}},
			"/admissionPolicy/namespaceLabels/prefix"},
		"namespaceLabels group with a quote": {map[string]any{"admissionPolicy": map[string]any{"namespaceLabels": map[string]any{"group": "a' || true || '"}}},
			"/admissionPolicy/namespaceLabels/group"},
		// The digest key and the Lease live in the release namespace: never one a team is served in.
		"watchNamespaces with the release namespace": {map[string]any{"watchNamespaces": []any{"team-a", releaseNS}},
			"watchNamespaces lists the release namespace " + releaseNS + ": install the operator in a namespace of its own"},
		"image.repository with a digest": {map[string]any{"image": map[string]any{"repository": "registry.example.com/dto@sha256:" + strings.Repeat("ab", 32)}},
			"/image/repository"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Render(chartDir(), releaseName, releaseNS, withRepo(tc.vals))
			if err == nil {
				t.Fatalf("values %v were accepted", tc.vals)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("values %v refused with %q, want a message holding %q", tc.vals, err, tc.want)
			}
		})
	}
	// The chart as it is in the repository, with no value given: refused, saying what to set.
	if _, err := Render(chartDir(), releaseName, releaseNS, nil); err == nil || !strings.Contains(err.Error(), "set image.repository") {
		t.Errorf("the chart's own values rendered (or failed otherwise: %v); want a refusal saying to set image.repository", err)
	}
}

func TestChartLint(t *testing.T) {
	if err := Lint(chartDir(), withRepo(nil)); err != nil {
		t.Fatal(err)
	}
}

// TestChartTwoReleasesOneNamespace: two releases in one namespace (namespaced teams, or shards
// with watchLabelSelector) name every object apart and elect their leaders through distinct
// Leases.
func TestChartTwoReleasesOneNamespace(t *testing.T) {
	vals := map[string]any{"crds": map[string]any{"enabled": false}}
	a, b := renderRelease(t, "team-a", vals), renderRelease(t, "team-b", vals)
	leaseOf := func(r *rendered) string {
		for _, arg := range convert[appsv1.Deployment](t, r.ofKind("Deployment")[0]).Spec.Template.Spec.Containers[0].Args {
			if id, ok := strings.CutPrefix(arg, "--leader-election-id="); ok {
				return id
			}
		}
		t.Fatal("the manager has no --leader-election-id")
		return ""
	}
	la, lb := leaseOf(a), leaseOf(b)
	if la == lb || la != "team-a-dingtalk-token-operator.dingtalk.tokens.dev" || lb != "team-b-dingtalk-token-operator.dingtalk.tokens.dev" {
		t.Errorf("leader election ids %s and %s, want one per release named after it", la, lb)
	}
	for _, k := range a.keys() {
		if b.find(k) != nil {
			t.Errorf("both releases render %s: the second would take it over", k)
		}
	}
}
