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

// Command metricnames prints the metric names that the PromQL of alert rules and Grafana
// dashboards selects, parsed with Prometheus' own parser:
//
//	metricnames config/prometheus/alerts.yaml config/grafana/dingtalk-token-operator.json
//
// A .json file is a Grafana dashboard: every panel target's expr and every query variable
// (label_values(...), query_result(...)) is read, with Grafana's interval variables
// ($__rate_interval, ...) replaced by a duration. Any other file is YAML holding rule groups (a
// Prometheus rule file, or a PrometheusRule whose spec holds them): every expr is read, and the
// queries of the annotation templates (`query "..."`, `printf "..." ... | query`, with the printf
// verbs replaced by a value). Each line is NAME, a tab, FILE, a tab and where it was found. An
// expression that does not parse is an error: exit status 1.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: metricnames FILE...")
		os.Exit(2)
	}
	var errs []error
	for _, file := range os.Args[1:] {
		uses, err := read(file)
		errs = append(errs, err)
		for _, u := range uses {
			fmt.Printf("%s\t%s\t%s\n", u.name, file, u.where)
		}
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// use is a metric name and where an expression selected it.
type use struct{ name, where string }

// query is an expression and where it was found.
type query struct{ expr, where string }

func read(file string) ([]use, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var queries []query
	if filepath.Ext(file) == ".json" {
		queries, err = dashboardQueries(b)
	} else {
		queries, err = ruleQueries(b)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var (
		uses []use
		errs []error
	)
	p := parser.NewParser(parser.Options{})
	for _, q := range queries {
		names, err := metricNames(p, q.expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", file, q.where, err))
		}
		for _, n := range names {
			uses = append(uses, use{name: n, where: q.where})
		}
	}
	return uses, errors.Join(errs...)
}

// metricNames are the metric names expr selects, sorted, each once.
func metricNames(p parser.Parser, expr string) ([]string, error) {
	e, err := p.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" && name == "" {
					name = m.Value
				}
			}
			if name != "" {
				seen[name] = true
			}
		}
		return nil
	})
	return slices.Sorted(maps.Keys(seen)), nil
}

// ruleQueries reads rule groups: a rule file's, or a PrometheusRule's spec.
func ruleQueries(b []byte) ([]query, error) {
	type rule struct {
		Alert       string            `yaml:"alert"`
		Record      string            `yaml:"record"`
		Expr        string            `yaml:"expr"`
		Annotations map[string]string `yaml:"annotations"`
	}
	type groups struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	var doc struct {
		groups `yaml:",inline"`
		Spec   groups `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	gs := append(doc.Groups, doc.Spec.Groups...)
	if len(gs) == 0 {
		return nil, errors.New("no rule groups")
	}
	var out []query
	for _, g := range gs {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			out = append(out, query{expr: r.Expr, where: name + " expr"})
			for _, k := range slices.Sorted(maps.Keys(r.Annotations)) {
				for _, q := range templateQueries(r.Annotations[k]) {
					out = append(out, query{expr: q, where: name + " annotation " + k})
				}
			}
		}
	}
	return out, nil
}

var (
	// templateQuery finds the string a template queries: `query "..."`, or `printf "..."` piped
	// into query.
	templateQuery = regexp.MustCompile(`(?s)(?:query|printf)\s+"((?:[^"\\]|\\.)*)"`)
	// printfVerb is a verb of a printf format.
	printfVerb = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z]`)
)

// templateQueries are the PromQL queries of an annotation template.
func templateQueries(text string) []string {
	var out []string
	for _, m := range templateQuery.FindAllStringSubmatch(text, -1) {
		out = append(out, printfVerb.ReplaceAllString(m[1], "x"))
	}
	return out
}

var (
	// grafanaInterval is one of Grafana's built-in interval variables, which stand for a duration.
	grafanaInterval = regexp.MustCompile(`\$(?:__rate_interval|__interval|__range|\{__rate_interval\}|\{__interval\}|\{__range\})\b`)
	// variableQuery is a Grafana query variable's function of a PromQL expression.
	variableQuery = regexp.MustCompile(`(?s)^\s*(label_values|query_result)\((.*)\)\s*$`)
	// labelValuesLabel is the label argument that ends label_values(expr, label).
	labelValuesLabel = regexp.MustCompile(`,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*$`)
)

// dashboardQueries reads a Grafana dashboard's panel targets and query variables.
func dashboardQueries(b []byte) ([]query, error) {
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	var out []query
	var walk func(v any, where string)
	walk = func(v any, where string) {
		switch v := v.(type) {
		case map[string]any:
			if title, ok := v["title"].(string); ok {
				where = "panel " + title
			}
			if expr, ok := v["expr"].(string); ok && expr != "" {
				out = append(out, query{expr: grafanaInterval.ReplaceAllString(expr, "5m"), where: where})
			}
			for k, c := range v {
				if k == "templating" {
					out = append(out, variableQueries(c)...)
					continue
				}
				walk(c, where)
			}
		case []any:
			for _, c := range v {
				walk(c, where)
			}
		}
	}
	walk(doc, "dashboard")
	return out, nil
}

// variableQueries reads the query variables of a dashboard's templating.
func variableQueries(templating any) []query {
	var out []query
	list, _ := templating.(map[string]any)["list"].([]any)
	for _, v := range list {
		v, _ := v.(map[string]any)
		if v["type"] != "query" {
			continue
		}
		q := v["query"]
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		s, _ := q.(string)
		m := variableQuery.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		expr := m[2]
		if m[1] == "label_values" {
			expr = labelValuesLabel.ReplaceAllString(expr, "")
			if !strings.ContainsAny(expr, "{(") && !strings.Contains(m[2], ",") {
				continue // label_values(label): no metric
			}
		}
		out = append(out, query{expr: grafanaInterval.ReplaceAllString(expr, "5m"), where: fmt.Sprintf("variable %v", v["name"])})
	}
	return out
}
