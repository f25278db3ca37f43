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

package scale

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

// testTargetWriteOnShutdown: the manager is told to stop (its context cancelled, as SIGTERM
// does) while a pass is about to create the target Secret: the write is made all the same, on
// a context of its own, and the status records it.
func testTargetWriteOnShutdown(t *testing.T) {
	sc := scenario("shutdown")
	sim := startSimulator(t)
	ns := env.CreateNamespace(t, "shutdown")
	key, secret := newApp(t, sim, life)
	env.CreateSecret(t, ns, "app", map[string]string{"appKey": key, "appSecret": secret})

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	// writeCtxErr is what the target write's context said once the manager was stopping.
	var stopped atomic.Bool
	var writeCtxErr atomic.Value
	hooks := operator.Hooks{Logger: log, WrapClient: testenv.Intercept(interceptor.Funcs{
		Create: func(wctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if s, ok := obj.(*corev1.Secret); ok && s.Name == "victim" && stopped.CompareAndSwap(false, true) {
				stop() // SIGTERM: every context derived from the manager's ends now
				writeCtxErr.Store(errString(wctx.Err()))
			}
			return c.Create(wctx, obj, opts...)
		},
	})}
	m, err := env.Environment.StartManager(ctx, managerOptions(sc, sim, "", ns), hooks)
	envtesting.Must(t, err)
	tok := labelledToken(ns, "victim", "app", map[string]string{scenarioLabel: sc})
	env.Create(t, tok)

	g := NewWithT(t)
	g.Eventually(stopped.Load).WithTimeout(30*time.Second).Should(BeTrue(), "the target write never started")
	envtesting.Must(t, m.Stop())
	g.Expect(writeCtxErr.Load()).To(Equal(""), "the target write's context ended with the manager's")
	s := env.Secret(g, ns, "victim")
	g.Expect(s.Data[v1alpha1.DefaultTargetKey]).NotTo(BeEmpty(), "the target Secret was not written")
	// The pass that wrote it recorded it too (its status write is detached as well).
	got, err := testenv.WaitForToken(envtesting.Ctx(t), env.Client, ns, "victim", 10*time.Second, testenv.IsReady)
	envtesting.Must(t, err)
	g.Expect(got.Status.ExpiresAt.UTC().Format(time.RFC3339)).To(Equal(string(s.Data[v1alpha1.ExpiresAtKey])))
	g.Expect(calls(sim, key)).To(BeEquivalentTo(1))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
