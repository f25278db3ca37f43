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

package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

func podTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
}

var selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}

func deployment(t *testing.T, ns, name string) {
	t.Helper()
	env.Create(t, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{Selector: selector, Template: podTemplate()}})
}

func statefulSet(t *testing.T, ns, name string) {
	t.Helper()
	env.Create(t, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.StatefulSetSpec{Selector: selector, Template: podTemplate()}})
}

// templateAnnotations reads a workload's pod-template annotations.
func templateAnnotations(t *testing.T, obj client.Object) map[string]string {
	t.Helper()
	envtesting.Must(t, env.Client.Get(envtesting.Ctx(t), client.ObjectKeyFromObject(obj), obj))
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Template.Annotations
	case *appsv1.StatefulSet:
		return o.Spec.Template.Annotations
	}
	return nil
}

// testRolloutRestart: when the token value changes, the rollout targets' pod templates get the
// tokenDigest, at most once per 10 minutes; a same-value renewal restarts nothing; a missing
// workload is RolloutRestartFailed while the token is still written.
func testRolloutRestart(t *testing.T, ns string) {
	g := NewWithT(t)
	newSuite(t, ns, "suite-credentials", 30*time.Second)
	newApp(t, ns, "app-credentials", 30*time.Second)
	deployment(t, ns, "suite-web")
	statefulSet(t, ns, "suite-db")
	deployment(t, ns, "app-web")
	web := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "suite-web"}}
	db := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "suite-db"}}
	appWeb := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-web"}}

	suite := testenv.NewToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "suite-credentials")
	suite.Spec.RolloutRestartTargets = []v1alpha1.RolloutRestartTarget{
		{Kind: v1alpha1.WorkloadKindDeployment, Name: "suite-web"}, {Kind: v1alpha1.WorkloadKindStatefulSet, Name: "suite-db"}}
	env.Create(t, suite)
	app := testenv.NewToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials")
	app.Spec.RolloutRestartTargets = []v1alpha1.RolloutRestartTarget{{Kind: v1alpha1.WorkloadKindDeployment, Name: "app-web"}}
	env.Create(t, app)
	missing := testenv.NewToken(ns, "missing", v1alpha1.TokenTypeThirdPartySuite, "suite-credentials")
	missing.Spec.Target = &v1alpha1.Target{Name: "missing-token"}
	missing.Spec.RolloutRestartTargets = []v1alpha1.RolloutRestartTarget{{Kind: v1alpha1.WorkloadKindDaemonSet, Name: "nowhere"}}
	env.Create(t, missing)

	first := env.WaitReady(t, ns, "suite").Status
	env.WaitReady(t, ns, "app")
	// The first token restarts nothing (pods that start now read it).
	g.Expect(templateAnnotations(t, web)).NotTo(HaveKey(v1alpha1.TokenDigestAnnotation))

	// The suite token's value changes at its refresh: both workloads get the new digest.
	second := env.WaitRefreshedAfter(t, ns, "suite", first.LastRefreshTime.Time, 45*time.Second).Status
	g.Expect(second.TokenDigest).NotTo(Equal(first.TokenDigest))
	for _, obj := range []client.Object{web, db} {
		g.Eventually(func() map[string]string { return templateAnnotations(t, obj) }).
			Should(HaveKeyWithValue(v1alpha1.TokenDigestAnnotation, second.TokenDigest))
		g.Expect(templateAnnotations(t, obj)).To(HaveKey(v1alpha1.RestartedAtAnnotation))
	}
	g.Eventually(func() string { return env.GetToken(g, ns, "suite").Status.RolloutRestartDigest }).Should(Equal(second.TokenDigest))

	// The internal app's renewal keeps the value: nothing restarts.
	appTok := env.WaitRefreshedAfter(t, ns, "app", env.GetToken(g, ns, "app").Status.LastRefreshTime.Time, 45*time.Second)
	g.Expect(templateAnnotations(t, appWeb)).NotTo(HaveKey(v1alpha1.TokenDigestAnnotation))
	g.Expect(appTok.Status.RolloutRestartDigest).To(Equal(appTok.Status.TokenDigest))

	// A missing workload: RolloutRestartFailed on Refreshed, the token written, Ready True.
	tok := env.WaitFor(t, ns, "missing", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonRolloutRestartFailed, 45*time.Second)
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionRefreshed).Message).To(ContainSubstring("DaemonSet nowhere: not found"))
	g.Expect(testenv.Condition(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	// missing shares its credentials with suite: its status and Secret are read as one pass wrote them.
	tok, target := tokenAndSecret(t, ns, "missing", "missing-token", "accessToken")
	g.Expect(target.Data["accessToken"]).NotTo(BeEmpty())
	g.Expect(controllers.TokenDigest(envtesting.Ctx(t), env.Client, "default", tok.UID, string(target.Data["accessToken"]))).To(Equal(tok.Status.TokenDigest))

	// The next value change comes within 10 minutes of the restart: held back.
	third := env.WaitRefreshedAfter(t, ns, "suite", second.LastRefreshTime.Time, 45*time.Second).Status
	g.Expect(third.TokenDigest).NotTo(Equal(second.TokenDigest))
	g.Consistently(func() map[string]string { return templateAnnotations(t, web) }).Within(2 * time.Second).
		Should(HaveKeyWithValue(v1alpha1.TokenDigestAnnotation, second.TokenDigest))
	g.Expect(env.GetToken(g, ns, "suite").Status.RolloutRestartDigest).To(Equal(second.TokenDigest), "the restart is pending")
}
