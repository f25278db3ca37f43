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

package config_test

import (
	"bufio"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

const (
	alertsFile     = "prometheus/alerts.yaml"
	alertTestsFile = "prometheus/alerts_test.yaml"
	// runbooks is where every alert's runbook_url points: a section of docs/troubleshooting.md.
	runbooks = "https://github.com/dingtalk-token-operator/dingtalk-token-operator/blob/main/docs/troubleshooting.md#"
)

// alertRule is a rule of the PrometheusRule in config/prometheus/alerts.yaml.
type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// ruleSpec is the PrometheusRule's spec: the rule groups of a Prometheus rule file.
type ruleSpec struct {
	Groups []struct {
		Name  string      `json:"name"`
		Rules []alertRule `json:"rules"`
	} `json:"groups"`
}

// readAlerts reads the spec of config/prometheus/alerts.yaml.
func readAlerts(t *testing.T) ruleSpec {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       ruleSpec       `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(b, &rule); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	if rule.Kind != "PrometheusRule" || len(rule.Spec.Groups) == 0 {
		t.Fatalf("%s holds a %s with %d rule groups, want a PrometheusRule with its alerts", alertsFile, rule.Kind, len(rule.Spec.Groups))
	}
	return rule.Spec
}

// TestAlertRules runs Prometheus' own rule tester on the alerts: `promtool check rules` on the
// PrometheusRule's groups, then `promtool test rules` on config/prometheus/alerts_test.yaml (for
// each alert, series that fire it at the minute it should and series that must not). promtool is
// built by `make promtool` (module hack/promtool).
func TestAlertRules(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := testenv.PromtoolDir(root)
	if err != nil {
		t.Fatal(err)
	}
	// promtool reads plain rule files: write the PrometheusRule's spec as one, where the tests
	// name it, beside a copy of the tests.
	tmp := t.TempDir()
	rules, err := yaml.Marshal(readAlerts(t))
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(alertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"alerts.rules.yaml": rules, "alerts_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	promtool := filepath.Join(dir, "promtool")
	for _, args := range [][]string{
		{"check", "rules", filepath.Join(tmp, "alerts.rules.yaml")},
		{"test", "rules", filepath.Join(tmp, "alerts_test.yaml")},
	} {
		out, err := exec.CommandContext(t.Context(), promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args[:2], " "), err, out)
			continue
		}
		t.Logf("promtool %s:\n%s", strings.Join(args[:2], " "), out)
	}
}

// TestAlertsAreExplained: every alert has a severity, a summary, a description and a runbook_url
// pointing at a section of docs/troubleshooting.md that exists; docs/metrics.md lists it; and the
// rule tests both fire it and check a case where it must not fire.
func TestAlertsAreExplained(t *testing.T) {
	anchors := headingAnchors(t, filepath.Join("..", "docs", "troubleshooting.md"))
	metricsDoc, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	fires, quiet := ruleTests(t)
	var names []string
	for _, g := range readAlerts(t).Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			if !slices.Contains([]string{"warning", "critical"}, r.Labels["severity"]) {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, r.Labels["severity"])
			}
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("%s has no %s", r.Alert, k)
				}
			}
			if url := r.Annotations["runbook_url"]; !strings.HasPrefix(url, runbooks) || !anchors[strings.TrimPrefix(url, runbooks)] {
				t.Errorf("%s: runbook_url %s is not a section of docs/troubleshooting.md (%s<anchor>)", r.Alert, url, runbooks)
			}
			if !strings.Contains(string(metricsDoc), "`"+r.Alert+"`") {
				t.Errorf("docs/metrics.md does not list %s", r.Alert)
			}
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("%s: %s must fire it in one test (fires: %t) and check that it does not in another (checked quiet: %t)",
					r.Alert, alertTestsFile, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
	for _, want := range []string{"DingTalkTokenRefreshFailing", "DingTalkTokenExpiringSoon", "DingTalkTokenNotReady",
		"DingTalkTokenTicketStreamDown", "DingTalkClusterTokenNamespacesFailing", "DingTalkTokenOperatorDown"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s has no alert %s", alertsFile, want)
		}
	}
}

// ruleTests reads alerts_test.yaml: the alerts some test expects to fire, and those some test
// expects not to fire at an evaluation time.
func ruleTests(t *testing.T) (fires, quiet map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(alertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatalf("%s: %v", alertTestsFile, err)
	}
	fires, quiet = map[string]bool{}, map[string]bool{}
	for _, tc := range file.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	return fires, quiet
}

// headingAnchors are the anchors GitHub gives the headings of a Markdown file (outside code
// blocks): lower case, punctuation dropped, spaces as hyphens.
func headingAnchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	drop := regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
	anchors := map[string]bool{}
	s := bufio.NewScanner(f)
	code := false
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "```") {
			code = !code
		}
		if h, ok := strings.CutPrefix(strings.TrimLeft(s.Text(), "#"), " "); ok && !code && strings.HasPrefix(s.Text(), "#") {
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(strings.TrimSpace(h)), ""), " ", "-")] = true
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return anchors
}

// TestGrafanaDashboard: config/grafana renders the dashboard as a ConfigMap that Grafana's sidecar
// picks (label grafana_dashboard "1"), holding config/grafana/dingtalk-token-operator.json as is; the
// dashboard is JSON with a fixed uid, its panels query the data source chosen in its variable,
// and it has a panel for each thing an operator of the operator looks at.
func TestGrafanaDashboard(t *testing.T) {
	file := filepath.Join("grafana", "dingtalk-token-operator.json")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cm *corev1.ConfigMap
	for _, o := range render(t, filesys.MakeFsOnDisk(), "grafana") {
		if o.GetKind() != "ConfigMap" {
			t.Errorf("config/grafana renders a %s", o.GetKind())
			continue
		}
		cm = convert[corev1.ConfigMap](t, o)
	}
	if cm == nil {
		t.Fatal("config/grafana renders no ConfigMap")
	}
	if cm.Labels["grafana_dashboard"] != "1" || cm.Namespace != "" {
		t.Errorf("ConfigMap %s/%s labels %v: want grafana_dashboard \"1\" and no namespace (applied with -n)", cm.Namespace, cm.Name, cm.Labels)
	}
	if cm.Data["dingtalk-token-operator.json"] != string(raw) {
		t.Errorf("ConfigMap data %v does not hold %s as is", slices.Collect(maps.Keys(cm.Data)), file)
	}

	var dash struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name, Type string
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if dash.UID != "dingtalk-token-operator" || dash.Title == "" {
		t.Errorf("dashboard uid %q title %q", dash.UID, dash.Title)
	}
	variables := map[string]string{}
	for _, v := range dash.Templating.List {
		variables[v.Name] = v.Type
	}
	if variables["datasource"] != "datasource" || variables["job"] != "query" || variables["namespace"] != "query" {
		t.Errorf("dashboard variables %v: want datasource, job and namespace", variables)
	}
	var queries []string
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %q, %d queries; want ${datasource} and a query", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, q := range p.Targets {
			queries = append(queries, q.Expr)
		}
	}
	// What the dashboard is for (which metrics exist is test/e2e's TestMonitoring).
	all := strings.Join(queries, "\n")
	for what, metric := range map[string]string{
		"tokens by Ready reason":             "dingtalk_token_ready_reason",
		"time to expiry":                     "dingtalk_token_expiration_timestamp_seconds",
		"refresh failures":                   "dingtalk_token_failed_attempts",
		"DingTalk calls by endpoint, result": "dingtalk_api_requests_total",
		"DingTalk latency by endpoint":       "dingtalk_api_request_duration_seconds_bucket",
		"Stream connections":                 "dingtalk_stream_connections",
		"Stream events":                      "dingtalk_stream_events_total",
		"reconcile rate":                     "controller_runtime_reconcile_total",
		"reconcile errors":                   "controller_runtime_reconcile_errors_total",
		"workqueue depth":                    "workqueue_depth",
		"memory":                             "process_resident_memory_bytes",
		"ClusterDingTalkToken namespaces":    "dingtalk_cluster_token_namespaces",
		"the leader":                         "leader_election_master_status",
	} {
		if !strings.Contains(all, metric) {
			t.Errorf("no panel shows %s (%s)", what, metric)
		}
	}
}
