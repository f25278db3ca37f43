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
	"testing"
	"time"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dingtalkv1alpha1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// TestAdmissionPolicy checks the shipped ValidatingAdmissionPolicy against the real API server:
// a DingTalkToken is admitted only when its author may read the credentials Secret, create
// Secrets in the namespace (update on the target alone is refused) and patch each rollout restart
// target; writes that leave the spec alone (status, labels) are not checked.
func TestAdmissionPolicy(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := env.CreateNamespace(t, "admission")
	env.CreateSecret(t, ns, "creds", map[string]string{"appKey": "k", "appSecret": "s"})

	alice, err := env.UserClient("alice")
	g.Expect(err).NotTo(HaveOccurred())
	grant(t, ns, "alice", "dtt-author", rbacv1.PolicyRule{
		APIGroups: []string{dingtalkv1alpha1.GroupVersion.Group}, Resources: []string{"dingtalktokens"},
		Verbs: []string{"get", "create", "update", "patch"}})

	tok := testenv.NewToken(ns, "bot", dingtalkv1alpha1.TokenTypeInternalApp, "creds")
	// Dry runs until the last step: the policy is loaded asynchronously after TestMain created it,
	// and a create admitted before that must not make every later attempt AlreadyExists.
	create := func() error { return alice.Create(ctx, tok.DeepCopy(), client.DryRunAll) }

	// Alice may not read the credentials: refused, naming the field.
	g.Eventually(create).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).
		Should(MatchError(And(ContainSubstring("spec.credentialsRef.name"), ContainSubstring("may not get Secret creds"))))

	// She may read them but not create Secrets.
	grant(t, ns, "alice", "read-creds", rbacv1.PolicyRule{
		APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"creds"}, Verbs: []string{"get"}})
	g.Eventually(create).WithTimeout(10 * time.Second).Should(MatchError(ContainSubstring("may not create Secrets in namespace " + ns)))

	// Updating the named target is not enough: the operator would create it (and, for a User
	// token, a refresh-token Secret), which she may not.
	grant(t, ns, "alice", "update-target", rbacv1.PolicyRule{
		APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"bot"}, Verbs: []string{"update"}})
	g.Consistently(create).WithTimeout(3 * time.Second).Should(MatchError(ContainSubstring("spec.target")))

	// get on the credentials and create on Secrets: admitted.
	grant(t, ns, "alice", "create-secrets", rbacv1.PolicyRule{
		APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}})
	g.Eventually(create).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(alice.Create(ctx, tok.DeepCopy())).To(Succeed())

	// A rollout restart target she may not patch is refused on update.
	addTarget := func() error {
		cur := &dingtalkv1alpha1.DingTalkToken{}
		if err := alice.Get(ctx, client.ObjectKeyFromObject(tok), cur); err != nil {
			return err
		}
		cur.Spec.RolloutRestartTargets = []dingtalkv1alpha1.RolloutRestartTarget{{Kind: dingtalkv1alpha1.WorkloadKindDeployment, Name: "web"}}
		return alice.Update(ctx, cur)
	}
	g.Expect(addTarget()).To(MatchError(ContainSubstring("spec.rolloutRestartTargets")))
	grant(t, ns, "alice", "restart-web", rbacv1.PolicyRule{
		APIGroups: []string{"apps"}, Resources: []string{"deployments"}, ResourceNames: []string{"web"}, Verbs: []string{"patch"}})
	g.Eventually(addTarget).WithTimeout(10 * time.Second).Should(Succeed())

	// Bob may only relabel DingTalkTokens and write their status, as the operator does: the
	// policy does not look at writes that keep the spec.
	bob, err := env.UserClient("bob")
	g.Expect(err).NotTo(HaveOccurred())
	grant(t, ns, "bob", "relabel", rbacv1.PolicyRule{
		APIGroups: []string{dingtalkv1alpha1.GroupVersion.Group}, Resources: []string{"dingtalktokens", "dingtalktokens/status"},
		Verbs: []string{"get", "update", "patch"}})
	g.Eventually(func() error {
		cur := &dingtalkv1alpha1.DingTalkToken{}
		if err := bob.Get(ctx, client.ObjectKeyFromObject(tok), cur); err != nil {
			return err
		}
		cur.Labels = map[string]string{"team": "crm"}
		return bob.Update(ctx, cur)
	}).WithTimeout(10 * time.Second).Should(Succeed())
	cur := &dingtalkv1alpha1.DingTalkToken{}
	g.Expect(bob.Get(ctx, client.ObjectKeyFromObject(tok), cur)).To(Succeed())
	cur.Status.FailedAttempts = 1
	g.Expect(bob.Status().Update(ctx, cur)).To(Succeed())
	// But a spec change by Bob is checked, and refused.
	cur.Spec.Suspend = true
	g.Expect(bob.Update(ctx, cur)).To(MatchError(ContainSubstring("may not get Secret creds")))

	g.Expect(k8s.Delete(ctx, tok)).To(Succeed())
}

// grant gives user one rule in namespace ns through a Role and RoleBinding named name.
func grant(t *testing.T, ns, user, name string, rule rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: []rbacv1.PolicyRule{rule}}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	for _, o := range []client.Object{role, rb} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}
