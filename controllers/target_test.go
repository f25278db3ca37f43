package controllers

import (
	"maps"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

// testTemplateInvalid: a refused template is reported before any DingTalk call; fixing the spec
// makes the token Ready.
func testTemplateInvalid(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 60*time.Second)
	tok := newToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials")
	tok.Spec.Target = &v1alpha1.Target{Template: &v1alpha1.TargetTemplate{Data: map[string]string{
		"config": `{{ range .AccessToken }}{{ . }}{{ end }}`,
	}}}
	create(t, tok)
	tok = waitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTemplateInvalid, 30*time.Second)
	g.Expect(cond(tok, v1alpha1.ConditionReady).Message).To(ContainSubstring("spec.target.template.data[config]: range is not allowed"))
	g.Expect(calls(simulator.PathAppAccessToken, a.key)).To(BeZero())

	updateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) {
		d.Spec.Target.Template.Data["config"] = `token={{ .AccessToken | quote }}`
	})
	tok = waitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 15*time.Second)
	g.Expect(cond(tok, v1alpha1.ConditionRefreshed).Status).To(Equal(metav1.ConditionTrue))
	s := secretOf(t, ns, "app")
	g.Expect(string(s.Data["config"])).To(Equal(`token="` + string(s.Data["accessToken"]) + `"`))

	// Broken again while a token is held: the Secret keeps its token (Ready stays True), Refreshed
	// says why nothing is written.
	updateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) {
		d.Spec.Target.Template.Data["config"] = `{{ define "x" }}{{ end }}`
	})
	tok = waitFor(t, ns, "app", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonTemplateInvalid, 10*time.Second)
	g.Expect(cond(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(secretOf(t, ns, "app").Data).To(Equal(s.Data))

	// Metadata the API server refuses (a label value with spaces): TemplateInvalid naming the
	// field, not the value; no returned error; the Secret keeps its token.
	const badValue = "not a valid label value"
	updateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) {
		d.Spec.Target.Template.Data["config"] = `token={{ .AccessToken | quote }}`
		d.Spec.Target.Template.Metadata = &v1alpha1.TargetTemplateMetadata{Labels: map[string]string{"team": badValue}}
	})
	g.Eventually(func(g Gomega) {
		tok := getToken(t, ns, "app")
		c := cond(tok, v1alpha1.ConditionRefreshed)
		g.Expect(c.Reason).To(Equal(v1alpha1.ReasonTemplateInvalid))
		g.Expect(c.ObservedGeneration).To(Equal(tok.Generation))
		g.Expect(c.Message).To(ContainSubstring("spec.target.template.metadata.labels"))
		g.Expect(c.Message).NotTo(ContainSubstring(badValue))
		g.Expect(cond(tok, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(secretOf(t, ns, "app").Data).To(Equal(s.Data))
	g.Expect(loggedFor(ns, "is invalid")).To(BeFalse(), "a refused template is a condition, not a returned error")
	updateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) { d.Spec.Target.Template.Metadata.Labels["team"] = "crm" })
	waitFor(t, ns, "app", v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, 10*time.Second)
	g.Expect(secretOf(t, ns, "app").Labels).To(HaveKeyWithValue("team", "crm"))
}

// testTargetConflict: a Secret this DingTalkToken does not own is never written; two
// DingTalkTokens naming one target do not fight; the conflict clears once the name is free.
func testTargetConflict(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 60*time.Second)
	foreign := createSecret(t, ns, "taken", map[string]string{"mine": "value"})
	tok := newToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials")
	tok.Spec.Target = &v1alpha1.Target{Name: "taken"}
	create(t, tok)
	tok = waitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTargetConflict, 30*time.Second)
	g.Expect(cond(tok, v1alpha1.ConditionReady).Message).To(ContainSubstring("Secret taken exists and is not owned"))
	s := secretOf(t, ns, "taken")
	g.Expect(s.Data).To(Equal(map[string][]byte{"mine": []byte("value")}))
	g.Expect(s.OwnerReferences).To(BeEmpty())
	g.Expect(s.ResourceVersion).To(Equal(foreign.ResourceVersion), "the foreign Secret was written")
	g.Expect(calls(simulator.PathAppAccessToken, a.key)).To(BeZero(), "no call for a token that cannot be written")

	// Two DingTalkTokens, one target: the first owns it, the second reports the conflict.
	one := newToken(ns, "one", v1alpha1.TokenTypeInternalApp, "app-credentials")
	one.Spec.Target = &v1alpha1.Target{Name: "shared"}
	create(t, one)
	one = waitReady(t, ns, "one")
	two := newToken(ns, "two", v1alpha1.TokenTypeInternalApp, "app-credentials")
	two.Spec.Target = &v1alpha1.Target{Name: "shared", Key: "other"}
	create(t, two)
	waitFor(t, ns, "two", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTargetConflict, 30*time.Second)
	shared := secretOf(t, ns, "shared")
	g.Consistently(func(g Gomega) {
		s := secretOf(t, ns, "shared")
		g.Expect(s.ResourceVersion).To(Equal(shared.ResourceVersion))
		ownedBy(g, s, one)
	}).Within(3 * time.Second).Should(Succeed())

	// The name is freed: the next re-check (backoff) creates the Secret.
	must(t, env.k8s.Delete(ctxT(t), foreign))
	tok = waitFor(t, ns, "app", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 45*time.Second)
	ownedBy(g, secretOf(t, ns, "taken"), tok)
}

// testDriftRepair: an owned target that is edited or deleted is restored from memory, without a
// DingTalk call.
func testDriftRepair(t *testing.T, ns string) {
	g := NewWithT(t)
	a := newApp(t, ns, "app-credentials", 60*time.Second)
	tok := newToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials")
	tok.Spec.Target = &v1alpha1.Target{Template: &v1alpha1.TargetTemplate{Metadata: &v1alpha1.TargetTemplateMetadata{Labels: map[string]string{"team": "a"}}}}
	create(t, tok)
	tok = waitReady(t, ns, "app")
	want := secretOf(t, ns, "app")
	restored := func(g Gomega) {
		s := &corev1.Secret{}
		g.Expect(env.k8s.Get(ctxT(t), keyOf(ns, "app"), s)).To(Succeed())
		g.Expect(s.Data).To(Equal(want.Data))
		g.Expect(s.Labels).To(Equal(want.Labels))
		g.Expect(s.Annotations).To(HaveKeyWithValue(v1alpha1.ExpiresAtAnnotation, want.Annotations[v1alpha1.ExpiresAtAnnotation]))
		ownedBy(g, s, tok)
	}

	// Edited: the token overwritten, a key added, the expiry annotation removed.
	edit := want.DeepCopy()
	edit.Data["accessToken"] = []byte("tampered")
	edit.Data["extra"] = []byte("x")
	delete(edit.Annotations, v1alpha1.ExpiresAtAnnotation)
	must(t, env.k8s.Update(ctxT(t), edit))
	g.Eventually(restored).WithTimeout(10 * time.Second).Should(Succeed())

	// The managed-by label removed: the Secret leaves the cache, and is still restored.
	updateSecretLabels(t, ns, "app", map[string]string{"team": "a"})
	g.Eventually(restored).WithTimeout(10 * time.Second).Should(Succeed())

	// Deleted: re-created with the same token.
	must(t, env.k8s.Delete(ctxT(t), want))
	g.Eventually(restored).WithTimeout(10 * time.Second).Should(Succeed())

	g.Expect(calls(simulator.PathAppAccessToken, a.key)).To(BeEquivalentTo(1), "drift repair called DingTalk")
	// The credentials Secret was read once: unchanged (same resourceVersion in the metadata
	// cache), it is not read again on passes that are about something else.
	g.Expect(env.secretGets(ns, "app-credentials")).To(BeEquivalentTo(1))
	g.Expect(cond(getToken(t, ns, "app"), v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))

	// A label removed from the template is removed from the Secret; one someone else set stays.
	theirs := maps.Clone(want.Labels)
	theirs["theirs"] = "x"
	updateSecretLabels(t, ns, "app", theirs)
	updateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) {
		d.Spec.Target.Template.Metadata.Labels = map[string]string{"tier": "b"}
	})
	g.Eventually(func(g Gomega) {
		s := secretOf(t, ns, "app")
		g.Expect(s.Labels).NotTo(HaveKey("team"))
		g.Expect(s.Labels).To(HaveKeyWithValue("tier", "b"))
		g.Expect(s.Labels).To(HaveKeyWithValue("theirs", "x"))
		g.Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.ManagedByLabel, v1alpha1.ManagedByValue))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	updateToken(t, ns, "app", func(d *v1alpha1.DingTalkToken) { d.Spec.Target.Template = nil })
	g.Eventually(func(g Gomega) {
		s := secretOf(t, ns, "app")
		g.Expect(s.Labels).NotTo(HaveKey("tier"))
		g.Expect(s.Labels).To(HaveKeyWithValue("theirs", "x"))
		g.Expect(s.Annotations).NotTo(HaveKey("dingtalk.tokens.dev/template-keys"))
		g.Expect(s.Data).To(Equal(want.Data))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	g.Expect(calls(simulator.PathAppAccessToken, a.key)).To(BeEquivalentTo(1), "a metadata change called DingTalk")
}

// testSuspend: no DingTalk call while suspended; Ready stays True while the Secret's token is
// valid, then turns False (Suspended) at its expiry; resuming refreshes.
func testSuspend(t *testing.T, ns string) {
	g := NewWithT(t)
	su := newSuite(t, ns, "suite-credentials", 30*time.Second)
	create(t, newToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "suite-credentials"))
	st := waitReady(t, ns, "suite").Status
	s := secretOf(t, ns, "suite")

	// Suspended and resumed while the token is valid: Refreshed goes back to True, no call.
	updateToken(t, ns, "suite", func(d *v1alpha1.DingTalkToken) { d.Spec.Suspend = true })
	waitFor(t, ns, "suite", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonSuspended, 10*time.Second)
	updateToken(t, ns, "suite", func(d *v1alpha1.DingTalkToken) { d.Spec.Suspend = false })
	waitFor(t, ns, "suite", v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, 10*time.Second)
	g.Expect(calls(simulator.PathSuiteAccessToken, su.key)).To(BeEquivalentTo(1))

	updateToken(t, ns, "suite", func(d *v1alpha1.DingTalkToken) { d.Spec.Suspend = true })
	tok := waitFor(t, ns, "suite", v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonSuspended, 10*time.Second)
	g.Expect(cond(tok, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonTokenValid))
	g.Expect(tok.Status.RefreshTime).To(BeNil(), "nothing is planned while suspended")
	g.Eventually(func() *float64 {
		return metricValue(t, "dingtalk_token_refresh_timestamp_seconds", ns, "suite", nil)
	}).Should(BeNil(), "a stale refresh time is exported while suspended")
	// Past the due time and the expiry: no call, the Secret keeps what it has.
	waitFor(t, ns, "suite", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSuspended, 40*time.Second)
	g.Expect(time.Now()).To(BeTemporally("~", st.ExpiresAt.Time, 3*time.Second), "Ready turned False at the expiry")
	g.Expect(calls(simulator.PathSuiteAccessToken, su.key)).To(BeEquivalentTo(1))
	g.Expect(secretOf(t, ns, "suite").Data).To(Equal(s.Data))
	g.Expect(eventCounts(t, ns, "suite")).NotTo(HaveKey("RefreshFailed"), "suspending is no failure")

	updateToken(t, ns, "suite", func(d *v1alpha1.DingTalkToken) { d.Spec.Suspend = false })
	waitFor(t, ns, "suite", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, 10*time.Second)
	g.Expect(calls(simulator.PathSuiteAccessToken, su.key)).To(BeEquivalentTo(2))
	g.Eventually(func() *float64 {
		return metricValue(t, "dingtalk_token_refresh_timestamp_seconds", ns, "suite", nil)
	}).ShouldNot(BeNil(), "the refresh time is exported again once resumed")
}

// testDeletion: the operator's Secrets carry the controller ownerReference (UID,
// blockOwnerDeletion) the garbage collector deletes them by; the metrics series go with the CR.
func testDeletion(t *testing.T, ns string) {
	g := NewWithT(t)
	newApp(t, ns, "app-credentials", 60*time.Second)
	newUser(t, ns, "user-credentials", 60*time.Second, "refreshToken")
	create(t, newToken(ns, "app", v1alpha1.TokenTypeInternalApp, "app-credentials"))
	create(t, newToken(ns, "user", v1alpha1.TokenTypeUser, "user-credentials"))
	app, user := waitReady(t, ns, "app"), waitReady(t, ns, "user")
	ownedBy(g, secretOf(t, ns, "app"), app)
	ownedBy(g, secretOf(t, ns, "user"), user)
	ownedBy(g, secretOf(t, ns, "user-refresh-token"), user)
	g.Expect(metricValue(t, "dingtalk_token_expiration_timestamp_seconds", ns, "app", nil)).NotTo(BeNil())

	for _, tok := range []*v1alpha1.DingTalkToken{app, user} {
		must(t, env.k8s.Delete(ctxT(t), tok))
	}
	for _, n := range []string{"app", "user"} {
		g.Eventually(func() bool {
			return apierrors.IsNotFound(env.k8s.Get(ctxT(t), keyOf(ns, n), &v1alpha1.DingTalkToken{}))
		}).Should(BeTrue())
		g.Eventually(func() *float64 {
			return metricValue(t, "dingtalk_token_expiration_timestamp_seconds", ns, n, nil)
		}).WithTimeout(10*time.Second).Should(BeNil(), "metrics series of a deleted DingTalkToken")
		g.Expect(metricValue(t, "dingtalk_token_ready_status", ns, n, nil)).To(BeNil())
	}
}

// TestShownExpiry: Ready follows the token the target Secret holds. A newer held token that has
// not reached the Secret (its refresh-token store failed, so the pass ended before the target
// write) leaves the Secret's token, still valid, in force.
func TestShownExpiry(t *testing.T) {
	old := &heldToken{AccessToken: "old", ExpiresAt: t0.Add(time.Hour)}
	fresh := &heldToken{AccessToken: "new", ExpiresAt: t0.Add(2 * time.Hour)}
	tests := map[string]struct {
		inSecret    string     // the token value in the target Secret
		held, shown *heldToken // the held token; the token last written to the Secret
		want        time.Time
	}{
		"the Secret holds the held token":          {inSecret: "new", held: fresh, shown: fresh, want: fresh.ExpiresAt},
		"a newer token is not written yet":         {inSecret: "old", held: fresh, shown: old, want: old.ExpiresAt},
		"the Secret holds something else":          {inSecret: "tampered", held: fresh, shown: old},
		"nothing known (after a restart, no held)": {inSecret: "old"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tok := &v1alpha1.DingTalkToken{}
			s := &corev1.Secret{Data: map[string][]byte{tok.TargetKey(): []byte(tc.inSecret)}}
			if got := shownExpiry(tok.TargetKey(), s, tc.held, tc.shown); !got.Equal(tc.want) {
				t.Errorf("shownExpiry() = %s, want %s", got, tc.want)
			}
		})
	}
}
