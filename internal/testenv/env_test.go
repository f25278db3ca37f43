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

package testenv_test

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

// TestEnvironment: a control plane with the CRD and the simulator; a manager built by
// internal/operator whose reconciler writes through the hook; a token issued; identities for
// other users; and a leak scan with nothing to find.
func TestEnvironment(t *testing.T) {
	g := NewWithT(t)
	env := envtesting.Start(t, testenv.Options{Simulator: &simulator.Config{}})
	ns := env.CreateNamespace(t, "harness")
	g.Expect(ns).To(MatchRegexp(`^harness-[0-9a-f]{6}$`))

	key, secret := env.Sensitive.New(testenv.Credential, "dingapp"), env.Sensitive.New(testenv.Credential, "appsecret-")
	g.Expect(env.Sim.AddApp(simulator.App{AppKey: key, AppSecret: secret, TokenLifetime: simulator.Duration(time.Hour)})).To(Succeed())
	env.CreateSecret(t, ns, "creds", map[string]string{"appKey": key, "appSecret": secret})

	var secretWrites atomic.Int32
	count := func(obj client.Object) {
		if _, ok := obj.(*corev1.Secret); ok {
			secretWrites.Add(1)
		}
	}
	env.StartManager(t, env.ManagerOptions(ns), operator.Hooks{WrapClient: testenv.Intercept(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			count(obj)
			return c.Create(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			count(obj)
			return c.Patch(ctx, obj, p, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			count(obj)
			return c.Update(ctx, obj, opts...)
		},
	})})
	env.Create(t, testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "creds"))
	tok := env.WaitReady(t, ns, "app")
	target := env.Secret(g, ns, "app")
	g.Expect(env.Sim.Valid(string(target.Data[v1alpha1.DefaultTargetKey]))).To(BeTrue())
	envtesting.ExpectOwnedBy(g, target, tok)
	g.Expect(secretWrites.Load()).To(BeNumerically(">=", 1), "the target write went through the hook")
	g.Expect(env.Calls(simulator.PathAppAccessToken, key)).To(BeEquivalentTo(1))
	g.Eventually(func() map[string]int { return env.EventCounts(g, ns, "app") }).Should(HaveKey(v1alpha1.ReasonTokenIssued))
	m, err := testenv.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(m.Value("dingtalk_token_ready_status", map[string]string{"namespace": ns, "name": "app", "condition": "True"})).To(Equal(1.0))

	env.UpdateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) { d.Labels = map[string]string{"touched": "yes"} })
	g.Expect(env.GetToken(g, ns, "app").Labels).To(HaveKeyWithValue("touched", "yes"))

	// Another identity: a user without RBAC is refused; a service account's kubeconfig loads.
	stranger, err := env.UserClient("stranger")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(apierrors.IsForbidden(stranger.Get(envtesting.Ctx(t), client.ObjectKeyFromObject(target), &corev1.Secret{}))).To(BeTrue())
	path, err := env.ServiceAccountKubeconfig(t.TempDir(), ns, "operator")
	g.Expect(err).NotTo(HaveOccurred())
	kc, err := clientcmd.LoadFromFile(path)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kc.AuthInfos).NotTo(BeEmpty())
	info, err := os.Stat(path)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o600)))

	r := env.ScanLeaks(t, []byte(`{"level":"debug","msg":"Reconciling"}`+"\n"), "Reconciling")
	g.Expect(r.Leaks).To(BeEmpty())
}
