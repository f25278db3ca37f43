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

// Package config_test renders the shipped kustomizations with kustomize's Go API and asserts the
// manager's hardening and the operator's least-privilege RBAC, so that a change weakening either
// fails here.
package config_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	dingtalkv1alpha1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers"
)

const (
	operatorNamespace = "dingtalk-token-operator-system"
	// namespacedNamespace is the namespace config/namespaced serves, namespacedOperatorNamespace
	// the one its operator runs in (and keeps its digest key in).
	namespacedNamespace         = "dingtalk-tokens"
	namespacedOperatorNamespace = "dingtalk-tokens-operator"
	deploymentName              = "dingtalk-token-operator-controller-manager"
	serviceAccountName          = "dingtalk-token-operator-controller-manager"
)

// operatorGrants is what the manager role (config/rbac/role.yaml, generated from the markers in
// controllers/) grants: group/resource -> verbs. It is granted cluster-wide by config/default and
// in one namespace by config/namespaced. A verb the code does not use does not belong here.
var operatorGrants = map[string][]string{
	// Credentials are read through the API reader (get) and watched as metadata (list, watch);
	// the target and refresh-token Secrets are cached (list, watch), created and updated (patch:
	// server-side apply); a ClusterDingTalkToken's target is deleted from a namespace it no
	// longer selects.
	"/secrets":                                  {"get", "list", "watch", "create", "update", "patch", "delete"},
	"dingtalk.tokens.dev/dingtalktokens":        {"get", "list", "watch"},
	"dingtalk.tokens.dev/dingtalktokens/status": {"update", "patch"},
	// Owner references with blockOwnerDeletion need update on the owner's finalizers.
	"dingtalk.tokens.dev/dingtalktokens/finalizers":        {"update"},
	"dingtalk.tokens.dev/clusterdingtalktokens":            {"get", "list", "watch"},
	"dingtalk.tokens.dev/clusterdingtalktokens/status":     {"update", "patch"},
	"dingtalk.tokens.dev/clusterdingtalktokens/finalizers": {"update"},
	// ClusterDingTalkTokens select namespaces by label (watched as metadata; never written).
	"/namespaces":          {"get", "list", "watch"},
	"events.k8s.io/events": {"create", "patch"},
}

// leaderElectionGrants are granted only in the operator's own namespace: its Lease and the
// events announcing a new leader.
var leaderElectionGrants = map[string][]string{
	"coordination.k8s.io/leases": {"get", "create", "update"},
	"/events":                    {"create", "patch"},
}

// digestKeyGrants are granted only in the operator's own namespace: creating the installation's
// digest key Secret on the first start (RBAC cannot limit create to a name) and reading that one
// Secret (get, limited to its name: scope "<namespace>/named").
var digestKeyGrants = map[string][]string{"/secrets": {"get", "create"}}

// assertDigestKeyGrants checks the digest key Role: get on the one Secret by name, create, in
// namespace only.
func assertDigestKeyGrants(t *testing.T, objs []*unstructured.Unstructured, grants []grant, namespace string) {
	t.Helper()
	role := find[rbacv1.Role](t, objs, "Role", namespace, "dingtalk-token-operator-digest-key-role")
	if role == nil {
		t.Fatalf("no Role dingtalk-token-operator-digest-key-role in %s (config/rbac/digest_key_role.yaml)", namespace)
	}
	for _, r := range role.Rules {
		if slices.Contains(r.Verbs, "get") && !slices.Equal(r.ResourceNames, []string{controllers.DigestKeySecretName}) {
			t.Errorf("the digest key Role grants get on Secrets %v, want only %s", r.ResourceNames, controllers.DigestKeySecretName)
		}
	}
	if !slices.ContainsFunc(grants, func(g grant) bool { return g.key == "/secrets" && g.verb == "get" && g.scope == namespace+"/named" }) {
		t.Errorf("get on Secret %s is not granted in %s", controllers.DigestKeySecretName, namespace)
	}
	if !slices.ContainsFunc(grants, func(g grant) bool { return g.key == "/secrets" && g.verb == "create" && g.scope == namespace }) {
		t.Errorf("create on Secrets is not granted in %s (the digest key)", namespace)
	}
}

// metricsAuthGrants let the metrics endpoint authenticate and authorize scrapes (cluster-wide:
// these resources are not namespaced).
var metricsAuthGrants = map[string][]string{
	"authentication.k8s.io/tokenreviews":        {"create"},
	"authorization.k8s.io/subjectaccessreviews": {"create"},
}

// rolloutRestartGrants is what config/components/rollout-restart adds, and only it.
var rolloutRestartGrants = map[string][]string{
	"apps/deployments":  {"get", "patch"},
	"apps/statefulsets": {"get", "patch"},
	"apps/daemonsets":   {"get", "patch"},
}

func TestDefaultHardening(t *testing.T) {
	objs := render(t, filesys.MakeFsOnDisk(), "default")
	dep := deployment(t, objs, operatorNamespace)
	assertHardened(t, dep)

	args := dep.Spec.Template.Spec.Containers[0].Args
	for _, want := range []string{"--leader-elect", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081"} {
		if !slices.Contains(args, want) {
			t.Errorf("manager args %q lack %s", args, want)
		}
	}
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--metrics-secure=") && a != "--metrics-secure=true":
			t.Errorf("manager args turn off secure metrics: %s", a)
		case strings.HasPrefix(a, "--dingtalk-endpoint"):
			t.Errorf("manager args override the DingTalk endpoint: %s", a)
		case a == "--enable-rollout-restart":
			t.Errorf("config/default enables rollout restart; it belongs to config/components/rollout-restart")
		case strings.HasPrefix(a, "--watch-namespaces"):
			t.Errorf("config/default is cluster-wide but sets %s", a)
		}
	}

	// The manager waits up to controllers.ShutdownBudget for running reconciles on SIGTERM; the
	// kubelet must wait longer.
	if g := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= controllers.ShutdownBudget {
		t.Errorf("terminationGracePeriodSeconds = %v, want more than the manager's %s graceful shutdown", g, controllers.ShutdownBudget)
	}

	ns := find[corev1.Namespace](t, objs, "Namespace", "", operatorNamespace)
	if ns == nil {
		t.Fatalf("config/default creates no Namespace %s", operatorNamespace)
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("Namespace %s enforces pod security %q, want restricted", operatorNamespace, got)
	}

	// The metrics Service reaches the HTTPS metrics port of the manager's pods.
	svc := find[corev1.Service](t, objs, "Service", operatorNamespace, "dingtalk-token-operator-controller-manager-metrics-service")
	if svc == nil {
		t.Fatal("config/default has no metrics Service")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8443 || svc.Spec.Ports[0].TargetPort.String() != "https-metrics" {
		t.Errorf("metrics Service ports = %+v, want 8443 -> https-metrics", svc.Spec.Ports)
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("metrics Service selects %s=%s, which the manager's pods do not carry", k, v)
		}
	}
	if find[map[string]any](t, objs, "CustomResourceDefinition", "", "dingtalktokens.dingtalk.tokens.dev") == nil {
		t.Error("config/default does not install the DingTalkToken CRD")
	}
}

func TestDefaultRBACIsLeastPrivilege(t *testing.T) {
	objs := render(t, filesys.MakeFsOnDisk(), "default")
	grants := grantsTo(t, objs, operatorNamespace, serviceAccountName)
	assertOnly(t, grants, merge(operatorGrants, leaderElectionGrants, metricsAuthGrants, digestKeyGrants))
	assertGranted(t, grants, operatorGrants, "*")
	assertGranted(t, grants, metricsAuthGrants, "*")
	assertGranted(t, grants, leaderElectionGrants, operatorNamespace)
	assertDigestKeyGrants(t, objs, grants, operatorNamespace)
	for _, g := range grants {
		if _, ok := leaderElectionGrants[g.key]; ok && g.scope != operatorNamespace {
			t.Errorf("%s %s granted in scope %q; want only namespace %s", g.key, g.verb, g.scope, operatorNamespace)
		}
	}
	// The digest key lives in the operator's namespace, the one the pod runs in.
	c := deployment(t, objs, operatorNamespace).Spec.Template.Spec.Containers[0]
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_NAMESPACE" })
	if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != "metadata.namespace" ||
		!slices.Contains(c.Args, "--operator-namespace=$(POD_NAMESPACE)") {
		t.Errorf("the manager is not told its namespace (POD_NAMESPACE from metadata.namespace, --operator-namespace=$(POD_NAMESPACE)): env %+v args %q", c.Env, c.Args)
	}
	// The manager role comes from the markers; its name is what the bindings reference.
	if find[rbacv1.ClusterRole](t, objs, "ClusterRole", "", "dingtalk-token-operator-manager-role") == nil {
		t.Error("config/default lacks ClusterRole dingtalk-token-operator-manager-role (config/rbac/role.yaml, from make manifests)")
	}
	// Nothing in the rendering may be bound to a built-in superuser role or to a group.
	for _, b := range bindings(t, objs) {
		if b.roleRef.Name == "cluster-admin" || b.roleRef.Name == "admin" || b.roleRef.Name == "edit" {
			t.Errorf("%s binds the built-in role %s", b.name, b.roleRef.Name)
		}
		for _, s := range b.subjects {
			if s.Kind != rbacv1.ServiceAccountKind {
				t.Errorf("%s binds %s %s; config binds only the operator's service account", b.name, s.Kind, s.Name)
			}
		}
	}
}

// TestNamespacedVariant: config/namespaced runs the operator in a namespace of its own and serves
// another: the operator's rights on Secrets and DingTalkTokens are a Role in the served namespace
// only; the digest key (get on its one Secret, create), the Lease and the operator's own events
// are Roles in the operator's namespace, where the served namespace's team has nothing. The
// manager keeps the digest key in the namespace it runs in (--operator-namespace=$(POD_NAMESPACE))
// and watches the served one.
func TestNamespacedVariant(t *testing.T) {
	objs := render(t, filesys.MakeFsOnDisk(), "namespaced")
	dep := deployment(t, objs, namespacedOperatorNamespace)
	assertHardened(t, dep)

	c := dep.Spec.Template.Spec.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if !slices.Contains(c.Args, "--watch-namespaces=$(WATCH_NAMESPACE)") || env["WATCH_NAMESPACE"].Value != namespacedNamespace {
		t.Errorf("namespaced manager args %q env %+v do not watch %s alone", c.Args, c.Env, namespacedNamespace)
	}
	if pn := env["POD_NAMESPACE"]; pn.ValueFrom == nil || pn.ValueFrom.FieldRef == nil || pn.ValueFrom.FieldRef.FieldPath != "metadata.namespace" ||
		!slices.Contains(c.Args, "--operator-namespace=$(POD_NAMESPACE)") {
		t.Errorf("the namespaced manager does not keep its digest key in the namespace it runs in: env %+v args %q", c.Env, c.Args)
	}
	for _, ns := range []string{namespacedNamespace, namespacedOperatorNamespace} {
		if find[corev1.Namespace](t, objs, "Namespace", "", ns) != nil {
			t.Errorf("config/namespaced creates (and would relabel) Namespace %s; the namespaces belong to their team", ns)
		}
	}

	grants := grantsTo(t, objs, namespacedOperatorNamespace, serviceAccountName)
	assertOnly(t, grants, merge(operatorGrants, leaderElectionGrants, metricsAuthGrants, digestKeyGrants))
	assertGranted(t, grants, operatorGrants, namespacedNamespace)
	assertGranted(t, grants, leaderElectionGrants, namespacedOperatorNamespace)
	assertDigestKeyGrants(t, objs, grants, namespacedOperatorNamespace)
	for _, g := range grants {
		_, clusterScoped := metricsAuthGrants[g.key]
		_, ownNamespace := merge(leaderElectionGrants, digestKeyGrants)[g.key]
		switch scope := strings.TrimSuffix(g.scope, "/named"); {
		case clusterScoped:
		case scope == namespacedOperatorNamespace && (ownNamespace || g.via == "Role dingtalk-token-operator-digest-key-role"):
		case scope == namespacedNamespace && g.via == "Role dingtalk-token-operator-manager-role":
		default:
			t.Errorf("namespaced variant grants %s %s in scope %q through %s", g.key, g.verb, g.scope, g.via)
		}
	}
	// The digest key's Role is in the operator's namespace and nowhere else.
	if find[rbacv1.Role](t, objs, "Role", namespacedNamespace, "dingtalk-token-operator-digest-key-role") != nil {
		t.Errorf("the digest key Role is in the served namespace %s", namespacedNamespace)
	}
}

func TestRolloutRestartComponent(t *testing.T) {
	for _, variant := range []struct{ dir, namespace, scope string }{
		{"default", operatorNamespace, "*"},
		{"namespaced", namespacedOperatorNamespace, namespacedNamespace},
	} {
		t.Run(variant.dir, func(t *testing.T) {
			// Enable the component the way the kustomization's comment says, on an in-memory copy.
			mem := copyToMemory(t, ".")
			path := "/config/" + variant.dir + "/kustomization.yaml"
			b, err := mem.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			enabled := strings.Replace(string(b), "#components:\n#- ../components/rollout-restart", "components:\n- ../components/rollout-restart", 1)
			if enabled == string(b) {
				t.Fatalf("%s has no commented rollout-restart component to enable", path)
			}
			if err := mem.WriteFile(path, []byte(enabled)); err != nil {
				t.Fatal(err)
			}
			objs := render(t, mem, "/config/"+variant.dir)

			dep := deployment(t, objs, variant.namespace)
			if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--enable-rollout-restart") {
				t.Errorf("the component does not add --enable-rollout-restart: %q", dep.Spec.Template.Spec.Containers[0].Args)
			}
			grants := grantsTo(t, objs, variant.namespace, serviceAccountName)
			assertOnly(t, grants, merge(operatorGrants, leaderElectionGrants, metricsAuthGrants, digestKeyGrants, rolloutRestartGrants))
			assertGranted(t, grants, rolloutRestartGrants, variant.scope)
		})
	}
	// And without the component, no workload may be touched.
	grants := grantsTo(t, render(t, filesys.MakeFsOnDisk(), "default"), operatorNamespace, serviceAccountName)
	for _, g := range grants {
		if strings.HasPrefix(g.key, "apps/") {
			t.Errorf("config/default grants %s %s without the rollout-restart component", g.key, g.verb)
		}
	}
}

func TestAdmissionPolicy(t *testing.T) {
	objs := render(t, filesys.MakeFsOnDisk(), "default")
	policy := find[admissionv1.ValidatingAdmissionPolicy](t, objs, "ValidatingAdmissionPolicy", "", "dingtalk-token-operator-requester-access")
	if policy == nil {
		t.Fatal("config/default ships no ValidatingAdmissionPolicy dingtalk-token-operator-requester-access")
	}
	binding := find[admissionv1.ValidatingAdmissionPolicyBinding](t, objs, "ValidatingAdmissionPolicyBinding", "", "dingtalk-token-operator-requester-access")
	if binding == nil {
		t.Fatal("config/default ships no ValidatingAdmissionPolicyBinding for the policy")
	}
	if binding.Spec.PolicyName != policy.Name || !slices.Contains(binding.Spec.ValidationActions, admissionv1.Deny) {
		t.Errorf("binding = %+v, want policyName %s with action Deny", binding.Spec, policy.Name)
	}
	if policy.Spec.FailurePolicy == nil || *policy.Spec.FailurePolicy != admissionv1.Fail {
		t.Error("the policy must fail closed (failurePolicy: Fail)")
	}
	rules := policy.Spec.MatchConstraints.ResourceRules
	if len(rules) != 1 || !slices.Equal(rules[0].Resources, []string{"dingtalktokens"}) ||
		!slices.Contains(rules[0].Operations, admissionv1.Create) || !slices.Contains(rules[0].Operations, admissionv1.Update) {
		t.Errorf("the policy matches %+v, want CREATE and UPDATE of dingtalktokens (not their status)", rules)
	}
	var exprs string
	for _, v := range policy.Spec.Validations {
		exprs += v.Expression + "\n"
	}
	for _, want := range []string{"check('get')", "check('create')", "check('patch')", "credentialsRef.name", "rolloutRestartTargets"} {
		if !strings.Contains(exprs, want) {
			t.Errorf("the policy's validations do not contain %s", want)
		}
	}
	// update on the target is no way around create: the operator creates Secrets no update covers.
	if strings.Contains(exprs, "check('update')") {
		t.Error("the policy admits a requester who may only update Secrets")
	}
	// The namespaced variant ships the same policy.
	if find[admissionv1.ValidatingAdmissionPolicy](t, render(t, filesys.MakeFsOnDisk(), "namespaced"), "ValidatingAdmissionPolicy", "", policy.Name) == nil {
		t.Error("config/namespaced does not ship the ValidatingAdmissionPolicy")
	}
}

func TestPrometheus(t *testing.T) {
	objs := render(t, filesys.MakeFsOnDisk(), "prometheus")
	mon := find[map[string]any](t, objs, "ServiceMonitor", operatorNamespace, "dingtalk-token-operator-controller-manager-metrics-monitor")
	if mon == nil {
		t.Fatal("config/prometheus has no ServiceMonitor")
	}
	ep := (*mon)["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)
	if ep["scheme"] != "https" || ep["port"] != "https" || ep["bearerTokenFile"] == nil {
		t.Errorf("ServiceMonitor endpoint %v: want https on port https with Prometheus' bearer token", ep)
	}
	if ep["honorLabels"] != true {
		t.Errorf("ServiceMonitor endpoint %v: want honorLabels, or the tokens' namespace label becomes exported_namespace", ep)
	}
	// The metrics certificate is verified: a CA from a Secret and the Service's name, never
	// insecureSkipVerify by default (Prometheus' token goes to whoever answers).
	tls, _ := ep["tlsConfig"].(map[string]any)
	ca, _ := tls["ca"].(map[string]any)
	if tls["insecureSkipVerify"] == true || ca["secret"] == nil ||
		tls["serverName"] != "dingtalk-token-operator-controller-manager-metrics-service.dingtalk-token-operator-system.svc" {
		t.Errorf("ServiceMonitor tlsConfig %v: want the certificate verified against a CA Secret as the metrics Service's name", tls)
	}
	rule := find[map[string]any](t, objs, "PrometheusRule", operatorNamespace, "dingtalk-token-operator-alerts")
	if rule == nil {
		t.Fatal("config/prometheus has no PrometheusRule")
	}
	b, _ := yaml.Marshal(rule)
	for _, want := range []string{
		"dingtalk_token_expiration_timestamp_seconds - time() < 15 * 60",
		`dingtalk_token_ready_status{condition="False"} == 1`,
		"for: 10m",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("PrometheusRule lacks %q", want)
		}
	}
}

func TestSamples(t *testing.T) {
	objs := render(t, filesys.MakeFsOnDisk(), "samples")
	secrets := map[string]bool{}
	types := map[dingtalkv1alpha1.TokenType]bool{}
	var tokens []*dingtalkv1alpha1.DingTalkToken
	for _, o := range objs {
		switch o.GetKind() {
		case "Secret":
			secrets[o.GetName()] = true
		case "DingTalkToken":
			tok := &dingtalkv1alpha1.DingTalkToken{}
			b, _ := yaml.Marshal(o.Object)
			if err := yaml.UnmarshalStrict(b, tok); err != nil {
				t.Errorf("sample %s does not decode strictly: %v", o.GetName(), err)
				continue
			}
			types[tok.Spec.Type] = true
			tokens = append(tokens, tok)
		default:
			t.Errorf("config/samples holds a %s; want only Secrets and DingTalkTokens", o.GetKind())
		}
		if o.GetNamespace() != "" {
			t.Errorf("sample %s/%s sets a namespace; samples are applied with -n", o.GetKind(), o.GetName())
		}
	}
	for _, want := range []dingtalkv1alpha1.TokenType{
		dingtalkv1alpha1.TokenTypeInternalApp, dingtalkv1alpha1.TokenTypeThirdPartyApp,
		dingtalkv1alpha1.TokenTypeThirdPartySuite, dingtalkv1alpha1.TokenTypeUser,
	} {
		if !types[want] {
			t.Errorf("config/samples has no %s DingTalkToken", want)
		}
	}
	for _, tok := range tokens {
		if !secrets[tok.Spec.CredentialsRef.Name] {
			t.Errorf("sample %s names credentials Secret %s, which the samples do not hold", tok.Name, tok.Spec.CredentialsRef.Name)
		}
	}
}

// assertHardened checks the manager's pod against the restricted Pod Security Standard and more.
func assertHardened(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	pod := dep.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod securityContext.seccompProfile is not RuntimeDefault")
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Error("the pod shares a host namespace")
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("the pod mounts host path %s", v.HostPath.Path)
		}
	}
	if pod.ServiceAccountName != "dingtalk-token-operator-controller-manager" {
		t.Errorf("the pod runs as service account %q", pod.ServiceAccountName)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("the pod has %d containers, want the manager only", len(pod.Containers))
	}
	for _, c := range append(pod.InitContainers, pod.Containers...) {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Fatalf("container %s has no securityContext", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("container %s is privileged", c.Name)
		case sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot:
			t.Errorf("container %s: runAsNonRoot is false", c.Name)
		case sc.RunAsUser != nil && *sc.RunAsUser == 0:
			t.Errorf("container %s runs as root", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("container %s: capabilities %+v, want drop ALL and add none", c.Name, sc.Capabilities)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				t.Errorf("container %s has no %s request", c.Name, r)
			}
			if _, ok := c.Resources.Limits[r]; !ok {
				t.Errorf("container %s has no %s limit", c.Name, r)
			}
		}
	}
	c := pod.Containers[0]
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path {
			t.Errorf("container %s: %s probe is not an HTTP GET of %s", c.Name, name, path)
			return
		}
		port := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool {
			return cp.Name == p.HTTPGet.Port.String() && cp.ContainerPort == 8081
		})
		if port < 0 {
			t.Errorf("container %s: %s probe port %s is not the probe port 8081", c.Name, name, p.HTTPGet.Port.String())
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
}

// grant is one verb on one group/resource, in a namespace or cluster-wide ("*").
type grant struct {
	key, verb, scope, via string
}

// binding is a RoleBinding or ClusterRoleBinding, reduced to what matters here.
type binding struct {
	name      string
	namespace string // "" for a ClusterRoleBinding
	roleRef   rbacv1.RoleRef
	subjects  []rbacv1.Subject
}

func bindings(t *testing.T, objs []*unstructured.Unstructured) []binding {
	var out []binding
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRoleBinding":
			b := convert[rbacv1.ClusterRoleBinding](t, o)
			out = append(out, binding{b.Name, "", b.RoleRef, b.Subjects})
		case "RoleBinding":
			b := convert[rbacv1.RoleBinding](t, o)
			out = append(out, binding{b.Name, b.Namespace, b.RoleRef, b.Subjects})
		}
	}
	return out
}

// grantsTo lists every verb the rendered objects grant to a service account. A verb on a
// wildcard, an escalating verb or a non-resource URL fails the test at once.
func grantsTo(t *testing.T, objs []*unstructured.Unstructured, namespace, name string) []grant {
	t.Helper()
	var out []grant
	for _, b := range bindings(t, objs) {
		if !slices.ContainsFunc(b.subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Name == name && s.Namespace == namespace
		}) {
			continue
		}
		var rules []rbacv1.PolicyRule
		switch b.roleRef.Kind {
		case "ClusterRole":
			r := find[rbacv1.ClusterRole](t, objs, "ClusterRole", "", b.roleRef.Name)
			if r == nil {
				t.Fatalf("%s references ClusterRole %s, which is not rendered", b.name, b.roleRef.Name)
			}
			rules = r.Rules
		case "Role":
			if b.namespace == "" {
				t.Fatalf("ClusterRoleBinding %s references a Role", b.name)
			}
			r := find[rbacv1.Role](t, objs, "Role", b.namespace, b.roleRef.Name)
			if r == nil {
				t.Fatalf("%s references Role %s/%s, which is not rendered", b.name, b.namespace, b.roleRef.Name)
			}
			rules = r.Rules
		}
		scope := b.namespace
		if scope == "" {
			scope = "*"
		}
		for _, r := range rules {
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("%s grants the operator non-resource URLs %v", b.roleRef.Name, r.NonResourceURLs)
			}
			scope := scope
			if len(r.ResourceNames) > 0 {
				scope += "/named"
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						if g == "*" || res == "*" || v == "*" {
							t.Errorf("%s grants a wildcard: groups %v resources %v verbs %v", b.roleRef.Name, r.APIGroups, r.Resources, r.Verbs)
						}
						if v == "escalate" || v == "bind" || v == "impersonate" {
							t.Errorf("%s grants %s on %s", b.roleRef.Name, v, res)
						}
						out = append(out, grant{key: g + "/" + res, verb: v, scope: scope, via: b.roleRef.Kind + " " + b.roleRef.Name})
					}
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("nothing is granted to service account %s/%s", namespace, name)
	}
	return out
}

// assertOnly fails for every grant outside allowed.
func assertOnly(t *testing.T, grants []grant, allowed map[string][]string) {
	t.Helper()
	for _, g := range grants {
		if !slices.Contains(allowed[g.key], g.verb) {
			t.Errorf("%s grants %s on %s (scope %s), which the operator does not need; if the code now needs it, "+
				"add it to the grant tables above with a comment saying why", g.via, g.verb, g.key, g.scope)
		}
	}
}

// assertGranted fails when a needed verb is not granted in scope ("*" for cluster-wide).
func assertGranted(t *testing.T, grants []grant, needed map[string][]string, scope string) {
	t.Helper()
	for key, verbs := range needed {
		for _, v := range verbs {
			if !slices.ContainsFunc(grants, func(g grant) bool { return g.key == key && g.verb == v && g.scope == scope }) {
				t.Errorf("%s %s is not granted in scope %s", key, v, scope)
			}
		}
	}
}

// merge returns the union of grant tables.
func merge(tables ...map[string][]string) map[string][]string {
	out := map[string][]string{}
	for _, tab := range tables {
		for k, v := range tab {
			out[k] = append(out[k], v...)
		}
	}
	return out
}

func deployment(t *testing.T, objs []*unstructured.Unstructured, namespace string) *appsv1.Deployment {
	t.Helper()
	d := find[appsv1.Deployment](t, objs, "Deployment", namespace, deploymentName)
	if d == nil {
		t.Fatalf("no Deployment %s/%s rendered", namespace, deploymentName)
	}
	return d
}

// find returns the rendered object of that kind, namespace and name, converted to T, or nil.
func find[T any](t *testing.T, objs []*unstructured.Unstructured, kind, namespace, name string) *T {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return convert[T](t, o)
		}
	}
	return nil
}

func convert[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if m, ok := any(out).(*map[string]any); ok {
		*m = o.Object
		return out
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, out); err != nil {
		t.Fatalf("converting %s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return out
}

// render builds a kustomization with kustomize's Go API, as `kubectl apply -k dir` would.
func render(t *testing.T, fsys filesys.FileSystem, dir string) []*unstructured.Unstructured {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range m.Resources() {
		obj, err := r.Map()
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
	return out
}

// copyToMemory copies the config directory into an in-memory file system under /config.
func copyToMemory(t *testing.T, root string) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/config", path), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

// TestNamespaceLabelsComponent: config/components/namespace-labels, enabled the way its
// comment says, adds the policy on Namespace labels (failing closed, for creates and updates of
// Namespaces, with its prefix and group as variables) and its binding; config/default alone
// ships neither. test/fanout runs the policy against the API server.
func TestNamespaceLabelsComponent(t *testing.T) {
	mem := copyToMemory(t, ".")
	path := "/config/default/kustomization.yaml"
	b, err := mem.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	enabled := strings.Replace(string(b), "#components:\n#- ../components/rollout-restart", "components:\n- ../components/namespace-labels", 1)
	if enabled == string(b) {
		t.Fatalf("%s has no commented components list", path)
	}
	if err := mem.WriteFile(path, []byte(enabled)); err != nil {
		t.Fatal(err)
	}
	objs := render(t, mem, "/config/default")
	policy := find[admissionv1.ValidatingAdmissionPolicy](t, objs, "ValidatingAdmissionPolicy", "", "dingtalk-token-operator-namespace-labels")
	binding := find[admissionv1.ValidatingAdmissionPolicyBinding](t, objs, "ValidatingAdmissionPolicyBinding", "", "dingtalk-token-operator-namespace-labels")
	if policy == nil || binding == nil {
		t.Fatal("the component renders no namespace-labels policy and binding")
	}
	if binding.Spec.PolicyName != policy.Name || !slices.Contains(binding.Spec.ValidationActions, admissionv1.Deny) {
		t.Errorf("binding = %+v, want policyName %s with action Deny", binding.Spec, policy.Name)
	}
	if policy.Spec.FailurePolicy == nil || *policy.Spec.FailurePolicy != admissionv1.Fail {
		t.Error("the policy must fail closed (failurePolicy: Fail)")
	}
	rules := policy.Spec.MatchConstraints.ResourceRules
	// The status and finalize subresources' updates carry the labels too.
	if len(rules) != 1 || !slices.Equal(rules[0].Resources, []string{"namespaces", "namespaces/status", "namespaces/finalize"}) ||
		!slices.Equal(rules[0].Operations, []admissionv1.OperationType{admissionv1.Create, admissionv1.Update}) {
		t.Errorf("the policy matches %+v, want CREATE and UPDATE of namespaces and their status and finalize", rules)
	}
	vars := map[string]string{}
	for _, v := range policy.Spec.Variables {
		vars[v.Name] = v.Expression
	}
	if vars["prefix"] != "'dingtalk.tokens.dev/'" || vars["group"] != "'dingtalk-token-admins'" {
		t.Errorf("policy variables %v, want the prefix dingtalk.tokens.dev/ and the group dingtalk-token-admins", vars)
	}
	if find[admissionv1.ValidatingAdmissionPolicy](t, render(t, filesys.MakeFsOnDisk(), "default"), "ValidatingAdmissionPolicy", "", policy.Name) != nil {
		t.Error("config/default ships the namespace-labels policy without its component")
	}
}
