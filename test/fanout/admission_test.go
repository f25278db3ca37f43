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

package fanout

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// testAdmission: the CRD refuses what a ClusterDingTalkToken may not say, each with a message
// naming the field; the shipped policy (config/admission) admits a ClusterDingTalkToken only
// from a requester who may get the credentials Secret and create Secrets in every namespace.
func testAdmission(t *testing.T) {
	g := NewWithT(t)
	valid := func() *v1alpha1.ClusterDingTalkToken {
		return clusterToken("adm-"+testutil.RandHex(4), "creds-ns", "creds", "token", map[string]string{"a": "b"})
	}
	refusals := map[string]struct {
		change func(*v1alpha1.ClusterDingTalkToken)
		want   string // a part of the refusal
	}{
		"User is never fanned out": {func(c *v1alpha1.ClusterDingTalkToken) { c.Spec.Type = v1alpha1.TokenTypeUser },
			"spec.type User is not allowed in a ClusterDingTalkToken"},
		"a selector is required": {func(c *v1alpha1.ClusterDingTalkToken) { c.Spec.NamespaceSelector = nil },
			"spec.namespaceSelector: Required value"},
		"a target name is required": {func(c *v1alpha1.ClusterDingTalkToken) { c.Spec.Target.Name = "" },
			"spec.target.name"},
		"a credentials namespace is required": {func(c *v1alpha1.ClusterDingTalkToken) { c.Spec.CredentialsRef.Namespace = "" },
			"spec.credentialsRef.namespace"},
		"the target is never the credentials Secret": {func(c *v1alpha1.ClusterDingTalkToken) { c.Spec.Target.Name = "creds" },
			"spec.target.name must differ from spec.credentialsRef.name"},
		"corpId only for ThirdPartyApp": {func(c *v1alpha1.ClusterDingTalkToken) { c.Spec.CorpID = "dingcorp" },
			"spec.corpId is required when spec.type is ThirdPartyApp"},
		"refreshBefore at least 2m": {func(c *v1alpha1.ClusterDingTalkToken) {
			c.Spec.RefreshBefore = &metav1.Duration{Duration: time.Minute}
		}, "spec.refreshBefore must be at least 2m"},
		"template keys may not shadow expiresAt": {func(c *v1alpha1.ClusterDingTalkToken) {
			c.Spec.Target.Template = &v1alpha1.TargetTemplate{Data: map[string]string{"expiresAt": "x"}}
		}, "spec.target.template.data keys may not be the token key"},
		"template labels may not use the operator's prefix": {func(c *v1alpha1.ClusterDingTalkToken) {
			c.Spec.Target.Template = &v1alpha1.TargetTemplate{Metadata: &v1alpha1.TargetTemplateMetadata{
				Labels: map[string]string{"dingtalk.tokens.dev/x": "y"}}}
		}, "may not use the dingtalk.tokens.dev/ prefix"},
		"suiteTicket only for the types with a suite ticket": {func(c *v1alpha1.ClusterDingTalkToken) {
			c.Spec.SuiteTicket = &v1alpha1.SuiteTicketConfig{Source: v1alpha1.SuiteTicketSourceStream}
		}, "spec.suiteTicket is only for the types that use a suite ticket (ThirdPartyApp, ThirdPartySuite)"},
		"the suite-ticket Secret is never the target": {func(c *v1alpha1.ClusterDingTalkToken) {
			c.Spec.Type = v1alpha1.TokenTypeThirdPartySuite
			c.Spec.SuiteTicket = &v1alpha1.SuiteTicketConfig{Source: v1alpha1.SuiteTicketSourceStream}
			c.Spec.Target.Name = c.Name + "-suite-ticket"
		}, "may not be <metadata.name>-suite-ticket"},
	}
	for name, tc := range refusals {
		obj := valid()
		tc.change(obj)
		err := env.Client.Create(envtesting.Ctx(t), obj)
		g.Expect(err).To(HaveOccurred(), name)
		g.Expect(err.Error()).To(ContainSubstring(tc.want), name)
	}
	// Immutable type and target name.
	obj := valid()
	envtesting.Must(t, env.Client.Create(envtesting.Ctx(t), obj))
	g.Eventually(func() error { // read again after a conflict with the operator's status write
		live := getCluster(g, obj.Name)
		live.Spec.Target.Name = "another"
		return env.Client.Update(envtesting.Ctx(t), live)
	}).WithTimeout(10 * time.Second).Should(MatchError(ContainSubstring("spec.target.name is immutable")))

	testRequesterPolicy(t)
}

// testRequesterPolicy installs the shipped policy and checks it against three requesters.
func testRequesterPolicy(t *testing.T) {
	g := NewWithT(t)
	install(t, filepath.Join(env.Root, "config", "admission", "cluster_requester_access_policy.yaml"))
	credNS := env.CreateNamespace(t, "adm-creds")
	env.CreateSecret(t, credNS, "creds", map[string]string{"appKey": "x", "appSecret": "y"})
	user := "platform-" + testutil.RandHex(4)
	grant := func(name string, rules ...rbacv1.PolicyRule) {
		envtesting.Must(t, env.Client.Create(envtesting.Ctx(t), &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}))
		envtesting.Must(t, env.Client.Create(envtesting.Ctx(t), &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}))
	}
	grant(user+"-cdtt", rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"clusterdingtalktokens"}, Verbs: []string{"create"}})
	c, err := env.UserClient(user)
	envtesting.Must(t, err)
	newToken := func() *v1alpha1.ClusterDingTalkToken {
		return clusterToken("adm-"+testutil.RandHex(4), credNS, "creds", "token", map[string]string{"adm": "none"})
	}

	// May create ClusterDingTalkTokens, but not read the credentials Secret: refused.
	g.Eventually(func() error { return c.Create(envtesting.Ctx(t), newToken()) }).WithTimeout(20 * time.Second).
		Should(MatchError(ContainSubstring("may not get Secret creds in namespace " + credNS)))

	// May read it, but may not create Secrets in every namespace (only in one): refused.
	grant(user+"-read", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"creds"}, Verbs: []string{"get"}})
	envtesting.Must(t, env.Client.Create(envtesting.Ctx(t), &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "create-here", Namespace: credNS},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}))
	g.Eventually(func() error { return c.Create(envtesting.Ctx(t), newToken()) }).WithTimeout(20 * time.Second).
		Should(MatchError(ContainSubstring("may not create Secrets in every namespace")))

	// May create Secrets cluster-wide too: admitted.
	grant(user+"-create", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}})
	g.Eventually(func() error { return c.Create(envtesting.Ctx(t), newToken()) }).WithTimeout(20 * time.Second).Should(Succeed())
}

// install creates every object of a multi-document YAML file.
func install(t *testing.T, path string) {
	for _, u := range readObjects(t, path) {
		envtesting.Must(t, env.Client.Create(envtesting.Ctx(t), u))
	}
}

// testNamespaceLabelPolicy installs the optional policy of config/components/namespace-labels
// (its prefix and group set, as the chart sets them, to values of this test alone: the other
// scenarios label namespaces at the same time) and checks it against the real API server: a user
// who may create and update Namespaces, but is not in the group, can neither create a namespace
// with a label under the prefix nor add, change or remove one, so a ClusterDingTalkToken that
// selects by such a label never reaches their namespace; a member of the group labels it and the
// namespace receives the token. Other labels stay free for everyone.
func testNamespaceLabelPolicy(t *testing.T) {
	g := NewWithT(t)
	suffix := testutil.RandHex(4)
	prefix, group := "labels-"+suffix+".dingtalk.tokens.dev/", "dingtalk-token-admins-"+suffix
	for _, obj := range readObjects(t, filepath.Join(env.Root, "config", "components", "namespace-labels", "namespace_label_policy.yaml")) {
		obj.SetName(obj.GetName() + "-" + suffix)
		switch obj.GetKind() {
		case "ValidatingAdmissionPolicy":
			vars, _, _ := unstructured.NestedSlice(obj.Object, "spec", "variables")
			for _, v := range vars {
				switch v := v.(map[string]any); v["name"] {
				case "prefix":
					v["expression"] = "'" + prefix + "'"
				case "group":
					v["expression"] = "'" + group + "'"
				}
			}
			envtesting.Must(t, unstructured.SetNestedSlice(obj.Object, vars, "spec", "variables"))
		case "ValidatingAdmissionPolicyBinding":
			envtesting.Must(t, unstructured.SetNestedField(obj.Object, obj.GetName(), "spec", "policyName"))
		}
		envtesting.Must(t, env.Client.Create(envtesting.Ctx(t), obj))
	}

	// Both users may create and update Namespaces; one is in the group.
	role := "namespace-editor-" + suffix
	envtesting.Must(t, env.Client.Create(envtesting.Ctx(t), &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces", "namespaces/status", "namespaces/finalize"},
			Verbs: []string{"get", "create", "update", "patch"}}}}))
	tenant, admin := "tenant-"+suffix, "platform-"+suffix
	for _, user := range []string{tenant, admin} {
		envtesting.Must(t, env.Client.Create(envtesting.Ctx(t), &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role + "-" + user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}))
	}
	tenantClient, err := env.UserClient(tenant)
	envtesting.Must(t, err)
	adminClient, err := env.UserClient(admin, group)
	envtesting.Must(t, err)

	// A ClusterDingTalkToken selecting by a label under the prefix.
	key, secret := newApp(t, 2*time.Minute)
	credNS := env.CreateNamespace(t, "labels-creds")
	env.CreateSecret(t, credNS, "creds", map[string]string{"appKey": key, "appSecret": secret})
	sel := map[string]string{prefix + "crm-bot": "true"}
	name := "labels-" + suffix
	env.Create(t, clusterToken(name, credNS, "creds", "labels-token", sel))

	refused := ContainSubstring(tenant + " may not set, change or remove the labels under " + prefix + " on a Namespace")
	labelled := func(c client.Client, ns string, labels map[string]string) error {
		return testenv.Update(envtesting.Ctx(t), c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			func(n *corev1.Namespace) { n.Labels = labels })
	}
	// Creating a namespace with the label: refused once the policy is in force. It is awaited with
	// dry runs (admission runs, nothing is stored): a real create admitted before then would leave
	// a labelled namespace for the token to match.
	labelledNS := func() *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "labels-", Labels: sel}}
	}
	g.Eventually(func() error {
		return tenantClient.Create(envtesting.Ctx(t), labelledNS(), client.DryRunAll)
	}).WithTimeout(20 * time.Second).Should(MatchError(refused))
	g.Expect(tenantClient.Create(envtesting.Ctx(t), labelledNS())).To(MatchError(refused))
	// Without it: admitted; other labels are free; adding the label afterwards: refused.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "labels-", Labels: map[string]string{"team": "crm"}}}
	envtesting.Must(t, tenantClient.Create(envtesting.Ctx(t), ns))
	envtesting.Must(t, labelled(tenantClient, ns.Name, map[string]string{"team": "crm", "tier": "web"}))
	g.Expect(labelled(tenantClient, ns.Name, withLabel(map[string]string{"team": "crm"}, prefix+"crm-bot", "true"))).To(MatchError(refused))
	// Nor through a subresource: an update of namespaces/status or namespaces/finalize carries
	// the object's labels too.
	for name, write := range map[string]func(*corev1.Namespace) error{
		"status": func(n *corev1.Namespace) error { return tenantClient.Status().Update(envtesting.Ctx(t), n) },
		"finalize": func(n *corev1.Namespace) error {
			return tenantClient.SubResource("finalize").Update(envtesting.Ctx(t), n)
		},
	} {
		cur := &corev1.Namespace{}
		envtesting.Must(t, env.Client.Get(envtesting.Ctx(t), client.ObjectKeyFromObject(ns), cur))
		cur.Labels = withLabel(cur.Labels, prefix+"crm-bot", "true")
		g.Expect(write(cur)).To(MatchError(refused), "the label set through namespaces/%s", name)
	}
	g.Consistently(func(g Gomega) { g.Expect(target(g, ns.Name, "labels-token")).To(BeNil()) }).
		WithTimeout(2*time.Second).Should(Succeed(), "the tenant's namespace received the token")

	// The platform team labels it: admitted, and the namespace receives the token.
	envtesting.Must(t, labelled(adminClient, ns.Name, withLabel(map[string]string{"team": "crm"}, prefix+"crm-bot", "true")))
	waitProvisioned(t, name, 1, 30*time.Second)
	g.Expect(target(g, ns.Name, "labels-token")).NotTo(BeNil())

	// The tenant may change other labels still, but not change or remove that one.
	envtesting.Must(t, labelled(tenantClient, ns.Name, withLabel(map[string]string{"team": "billing"}, prefix+"crm-bot", "true")))
	g.Expect(labelled(tenantClient, ns.Name, withLabel(map[string]string{"team": "billing"}, prefix+"crm-bot", "false"))).To(MatchError(refused))
	g.Expect(labelled(tenantClient, ns.Name, map[string]string{"team": "billing"})).To(MatchError(refused))
}

// readObjects decodes every object of a multi-document YAML file.
func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	b, err := os.ReadFile(path)
	envtesting.Must(t, err)
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}
