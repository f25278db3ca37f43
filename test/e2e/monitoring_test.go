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
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dingtalkv1alpha1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

// TestMonitoring runs the manager binary with leader election (the RBAC of config/default) and
// tokens in every state the alerts and the dashboard are about: Ready, failing from the start
// (credentials rejected), Stream-sourced, and a ClusterDingTalkToken that one of its namespaces
// refuses. An authorized scraper reads the metrics endpoint as Prometheus does:
//   - the per-token series follow each token's status, with the kind label;
//   - a token whose credentials DingTalk starts rejecting, then whose DingTalk goes down for two
//     calls: dingtalk_token_failed_attempts and dingtalk_token_refreshed_status move as
//     docs/metrics.md says (Ready stays True) and go back on success;
//   - every metric named by an alert expression or template (config/prometheus/alerts.yaml) or a
//     dashboard panel or variable (config/grafana), as Prometheus' parser reads them (metricnames,
//     `make promtool`), exists;
//   - nothing secret is in the metrics served, the log, the events or the statuses.
func TestMonitoring(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	root := env.Root
	tools, err := testenv.PromtoolDir(root)
	g.Expect(err).NotTo(HaveOccurred())
	ns := env.CreateNamespace(t, "monitoring")
	refusing := env.CreateNamespace(t, "monitoring-refusing")

	// Credentials known to the simulator, with lifetimes long enough that no refresh falls due.
	life := simulator.Duration(time.Hour)
	const suiteKey, suiteSecret = "monitoring-suite", "monitoring-suite-secret"
	apps := map[string]string{"ready": "monitoring-ready-secret", "flaky": "monitoring-flaky-secret"}
	for key, secret := range apps {
		g.Expect(sim.AddApp(simulator.App{AppKey: "monitoring-" + key, AppSecret: secret, TokenLifetime: life})).To(Succeed())
		env.CreateSecret(t, ns, key+"-creds", map[string]string{"appKey": "monitoring-" + key, "appSecret": secret})
		env.Sensitive.Add(testenv.Credential, secret)
	}
	env.CreateSecret(t, ns, "broken-creds", map[string]string{"appKey": "monitoring-ready", "appSecret": "monitoring-wrong-secret"})
	g.Expect(sim.AddSuite(simulator.Suite{SuiteKey: suiteKey, SuiteSecret: suiteSecret, SuiteTicket: "monitoring-initial-ticket", TokenLifetime: life})).To(Succeed())
	env.CreateSecret(t, ns, "isv", map[string]string{"suiteKey": suiteKey, "suiteSecret": suiteSecret})
	env.Sensitive.Add(testenv.Credential, "monitoring-wrong-secret", suiteSecret)
	env.Sensitive.Add(testenv.SuiteTicket, "monitoring-initial-ticket")
	// A Secret of the ClusterDingTalkToken's target name that it does not own: that namespace fails.
	env.CreateSecret(t, refusing, "monitoring-token", map[string]string{"foreign": "yes"})

	stream := testenv.NewToken(ns, "stream", dingtalkv1alpha1.TokenTypeThirdPartySuite, "isv")
	stream.Spec.SuiteTicket = &dingtalkv1alpha1.SuiteTicketConfig{Source: dingtalkv1alpha1.SuiteTicketSourceStream}
	tokens := []*dingtalkv1alpha1.DingTalkToken{
		testenv.NewToken(ns, "ready", dingtalkv1alpha1.TokenTypeInternalApp, "ready-creds"),
		testenv.NewToken(ns, "flaky", dingtalkv1alpha1.TokenTypeInternalApp, "flaky-creds"),
		testenv.NewToken(ns, "broken", dingtalkv1alpha1.TokenTypeInternalApp, "broken-creds"),
		stream,
	}
	for _, tok := range tokens {
		g.Expect(k8s.Create(ctx, tok)).To(Succeed())
		// Gone after the test: the managers of the next tests serve every namespace (a Stream
		// token left behind would hold a connection of theirs).
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), tok) })
	}
	cluster := &dingtalkv1alpha1.ClusterDingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: dingtalkv1alpha1.ClusterDingTalkTokenSpec{
			Type:           dingtalkv1alpha1.TokenTypeInternalApp,
			CredentialsRef: dingtalkv1alpha1.ClusterCredentialsReference{Namespace: ns, Name: "ready-creds"},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{ns, refusing}}}},
			Target: dingtalkv1alpha1.ClusterTarget{Name: "monitoring-token"},
		},
	}
	g.Expect(k8s.Create(ctx, cluster)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), cluster) })

	manager := startManager(t, "monitoring", operatorKubeconfig,
		"--leader-elect", "--leader-election-namespace="+operatorNamespace, "--leader-election-id=e2e-monitoring",
		"--dingtalk-endpoint="+sim.URL(), "--zap-log-level=127",
		"--metrics-bind-address="+envtesting.FreeAddr(t), "--health-probe-bind-address="+envtesting.FreeAddr(t))
	scraper := serviceAccountToken(t, ns, "monitoring-scraper", true)
	metrics := func(g Gomega) testenv.Metrics {
		fams, err := scrape(manager, scraper)
		g.Expect(err).NotTo(HaveOccurred())
		return fams
	}
	id := func(name string) map[string]string {
		return map[string]string{"kind": "DingTalkToken", "namespace": ns, "name": name}
	}
	clusterID := map[string]string{"kind": "ClusterDingTalkToken", "namespace": "", "name": cluster.Name}

	waitReady(g, ns, []*dingtalkv1alpha1.DingTalkToken{tokens[0], tokens[1]})
	waitTicketStream(g, ns, "stream", dingtalkv1alpha1.ReasonConnected)
	_, err = sim.PushTickets(simulator.PushRequest{SuiteKey: suiteKey, Ticket: "monitoring-pushed-ticket"})
	g.Expect(err).NotTo(HaveOccurred())
	env.Sensitive.Add(testenv.SuiteTicket, "monitoring-pushed-ticket")
	waitReady(g, ns, []*dingtalkv1alpha1.DingTalkToken{stream})

	t.Run("each state's series", func(t *testing.T) {
		g := NewWithT(t)
		g.Eventually(func(g Gomega) {
			m := metrics(g)
			// Ready: the token is valid and the last attempt issued it.
			g.Expect(m.Value("dingtalk_token_ready_status", with(id("ready"), "condition", "True"))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_ready_reason", with(id("ready"), "reason", dingtalkv1alpha1.ReasonTokenValid))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_refreshed_status", with(id("ready"), "condition", "True"))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_failed_attempts", id("ready"))).To(Equal(0.0))
			g.Expect(m.Value("dingtalk_token_last_failure_timestamp_seconds", id("ready"))).To(Equal(-1.0), "no failure, no series")
			g.Expect(m.Value("dingtalk_token_ticket_stream_status", id("ready"))).To(Equal(-1.0), "not Stream-sourced, no series")
			// Failing from the start: never Ready, the reason on both.
			broken := env.GetToken(g, ns, "broken")
			g.Expect(broken.Status.FailedAttempts).To(BeNumerically(">=", 1))
			g.Expect(m.Value("dingtalk_token_ready_status", with(id("broken"), "condition", "False"))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_ready_reason", with(id("broken"), "reason", dingtalkv1alpha1.ReasonCredentialsRejected))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_refreshed_status", with(id("broken"), "condition", "False"))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_failed_attempts", id("broken"))).To(Equal(float64(broken.Status.FailedAttempts)))
			g.Expect(m.Value("dingtalk_token_last_failure_timestamp_seconds", with(id("broken"), "reason", dingtalkv1alpha1.ReasonCredentialsRejected))).
				To(Equal(float64(broken.Status.LastFailureTime.Unix())))
			// Stream-sourced: connected.
			g.Expect(m.Value("dingtalk_token_ticket_stream_status", with(id("stream"), "condition", "True"))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_ticket_stream_status", with(id("stream"), "condition", "False"))).To(Equal(0.0))
			// The ClusterDingTalkToken: one namespace refuses its target, so Ready is False with
			// that reason, one series for the object, none per namespace.
			g.Expect(m.Value("dingtalk_cluster_token_namespaces", map[string]string{"name": cluster.Name, "state": "failed"})).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_cluster_token_namespaces", map[string]string{"name": cluster.Name, "state": "provisioned"})).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_ready_reason", with(clusterID, "reason", dingtalkv1alpha1.ReasonTargetConflict))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_refreshed_status", with(clusterID, "condition", "True"))).To(Equal(1.0))
			g.Expect(m.Count("dingtalk_token_ready_status", map[string]string{"name": cluster.Name, "condition": "False"}, 1)).To(Equal(1))
			g.Expect(m.Value("dingtalk_token_operator_build_info", nil)).To(Equal(1.0))
		}).WithTimeout(30 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	})

	t.Run("credentials rejected, then fixed", func(t *testing.T) {
		g := NewWithT(t)
		env.UpdateSecret(t, ns, "flaky-creds", map[string]string{"appSecret": "monitoring-flaky-rejected"})
		env.Sensitive.Add(testenv.Credential, "monitoring-flaky-rejected")
		g.Eventually(func(g Gomega) {
			m := metrics(g)
			g.Expect(m.Value("dingtalk_token_failed_attempts", id("flaky"))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_refreshed_status", with(id("flaky"), "condition", "False"))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_refreshed_status", with(id("flaky"), "condition", "True"))).To(Equal(0.0))
			g.Expect(m.Value("dingtalk_token_last_failure_timestamp_seconds", with(id("flaky"), "reason", dingtalkv1alpha1.ReasonCredentialsRejected))).
				To(BeNumerically(">", 0))
			// The last good token stays: Ready is still True.
			g.Expect(m.Value("dingtalk_token_ready_status", with(id("flaky"), "condition", "True"))).To(Equal(1.0))
		}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

		env.UpdateSecret(t, ns, "flaky-creds", map[string]string{"appSecret": apps["flaky"]})
		g.Eventually(func(g Gomega) {
			m := metrics(g)
			g.Expect(m.Value("dingtalk_token_failed_attempts", id("flaky"))).To(Equal(0.0))
			g.Expect(m.Value("dingtalk_token_refreshed_status", with(id("flaky"), "condition", "True"))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_last_failure_timestamp_seconds", id("flaky"))).To(Equal(-1.0))
		}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	})

	t.Run("DingTalk down for two calls", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(sim.SetFault(simulator.Fault{Endpoint: simulator.PathAppAccessToken, Credential: "monitoring-flaky", Status: http.StatusServiceUnavailable, Count: 2})).To(Succeed())
		env.UpdateToken(t, ns, "flaky", func(d *dingtalkv1alpha1.DingTalkToken) {
			// 2 s ahead (within the accepted skew): newer than the token refreshed this second.
			d.Annotations = map[string]string{dingtalkv1alpha1.RefreshRequestedAtAnnotation: time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339)}
		})
		// The series as scraped, every 250 ms: the failed attempts climb 1, 2 (the backoff is 5 s,
		// then 10 s) with Refreshed False and Ready True, then the third call succeeds.
		seen := []float64{0} // as the last subtest left it
		g.Eventually(func(g Gomega) {
			m := metrics(g)
			n := m.Value("dingtalk_token_failed_attempts", id("flaky"))
			if seen[len(seen)-1] != n {
				seen = append(seen, n)
			}
			if n > 0 {
				g.Expect(m.Value("dingtalk_token_refreshed_status", with(id("flaky"), "condition", "False"))).To(Equal(1.0))
				g.Expect(m.Value("dingtalk_token_last_failure_timestamp_seconds", with(id("flaky"), "reason", dingtalkv1alpha1.ReasonProviderUnavailable))).
					To(BeNumerically(">", 0))
			}
			g.Expect(m.Value("dingtalk_token_ready_status", with(id("flaky"), "condition", "True"))).To(Equal(1.0))
			g.Expect(seen).To(Equal([]float64{0, 1, 2, 0}))
			g.Expect(m.Value("dingtalk_token_refreshed_status", with(id("flaky"), "condition", "True"))).To(Equal(1.0))
			g.Expect(m.Value("dingtalk_token_last_failure_timestamp_seconds", id("flaky"))).To(Equal(-1.0))
		}).WithTimeout(60*time.Second).WithPolling(250*time.Millisecond).Should(Succeed(), "failed attempts seen: %v", seen)
		g.Expect(sim.Faults()).To(BeEmpty(), "both faults were used")
	})

	t.Run("every metric the alerts and the dashboard name exists", func(t *testing.T) {
		g := NewWithT(t)
		files, err := filepath.Glob(filepath.Join(root, "config", "grafana", "*.json"))
		g.Expect(err).NotTo(HaveOccurred())
		files = append(files, filepath.Join(root, "config", "prometheus", "alerts.yaml"))
		var stderr bytes.Buffer
		cmd := exec.CommandContext(t.Context(), filepath.Join(tools, "metricnames"), files...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		g.Expect(err).NotTo(HaveOccurred(), "metricnames: %s", stderr.String())
		named := map[string][]string{} // metric -> where
		for l := range strings.Lines(string(out)) {
			f := strings.Split(strings.TrimSuffix(l, "\n"), "\t")
			g.Expect(f).To(HaveLen(3), "metricnames printed %q", l)
			rel, _ := filepath.Rel(root, f[1])
			named[f[0]] = append(named[f[0]], rel+": "+f[2])
		}
		g.Expect(named).To(HaveKey("dingtalk_token_failed_attempts"), "metricnames read the alerts")
		g.Expect(named).To(HaveKey("workqueue_depth"), "metricnames read the dashboard")
		g.Eventually(func(g Gomega) {
			m := metrics(g)
			var missing []string
			for name, where := range named {
				if !exported(m, name) {
					missing = append(missing, fmt.Sprintf("%s (%s)", name, strings.Join(slices.Compact(slices.Sorted(slices.Values(where))), "; ")))
				}
			}
			slices.Sort(missing)
			g.Expect(missing).To(BeEmpty(), "metrics named by the alerts or the dashboard that the manager does not export")
		}).WithTimeout(20 * time.Second).WithPolling(time.Second).Should(Succeed())
		t.Logf("%d metrics named by the alerts and the dashboard, all exported", len(named))
	})

	// Nothing secret in what the manager served, logged or wrote.
	code, body, err := testenv.Get("https://"+manager.Flag("metrics-bind-address")+"/metrics", scraper)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(manager.Terminate(30 * time.Second)).To(Succeed())
	env.ScanLeaks(t, []byte(manager.Output()), `"No refresh"`)
	envtesting.ScanOutput(t, env.Sensitive, map[string][]byte{"metrics served": []byte(body)})
}

// exported says whether a metric family of that name has a series, a histogram's _bucket, _sum
// and _count included.
func exported(m testenv.Metrics, name string) bool {
	if len(m[name].GetMetric()) > 0 {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f := m[base]; f.GetType() == dto.MetricType_HISTOGRAM && len(f.GetMetric()) > 0 {
				return true
			}
		}
	}
	return false
}
