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

package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/release"
)

// KubeVersion is the Kubernetes version the chart is rendered and linted for outside a cluster
// (Helm's library default is 1.20, older than the chart's kubeVersion allows).
var KubeVersion = chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

// ChartDir is the chart's directory in the repository.
func ChartDir(root string) string { return filepath.Join(root, "charts", "dingtalk-token-operator") }

// ChartFile names the packaged chart as `helm package` does.
func ChartFile(version string) string {
	return "dingtalk-token-operator-" + strings.TrimPrefix(version, "v") + ".tgz"
}

// Render renders the chart as `helm template --include-crds` does: values checked against
// values.schema.json, the chart's kubeVersion checked, manifests in install order, NOTES.txt.
func Render(chartDir, releaseName, namespace string, vals map[string]any) (*release.Release, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.IncludeCRDs = true
	install.ReleaseName = releaseName
	install.Namespace = namespace
	install.KubeVersion = &KubeVersion
	return install.Run(chrt, vals)
}

// RenderManifests renders the chart with values from --set and -f, like `helm template`.
func RenderManifests(chartDir, releaseName, namespace string, sets, valueFiles []string) (string, error) {
	vals, err := (&values.Options{Values: sets, ValueFiles: valueFiles}).MergeValues(getter.Providers{})
	if err != nil {
		return "", err
	}
	rel, err := Render(chartDir, releaseName, namespace, vals)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

// Lint runs `helm lint --strict` on the chart with its default values.
func Lint(chartDir string) error {
	lint := action.NewLint()
	lint.Strict = true
	lint.Namespace = "dingtalk-token-operator-system"
	lint.KubeVersion = &KubeVersion
	res := lint.Run([]string{chartDir}, nil)
	if len(res.Errors) == 0 {
		return nil
	}
	var errs []error
	for _, m := range res.Messages {
		errs = append(errs, errors.New(m.Error()))
	}
	if len(errs) == 0 {
		errs = res.Errors
	}
	return fmt.Errorf("helm lint %s: %w", chartDir, errors.Join(errs...))
}

// PackageChart lints the chart and packages it with the release's version and appVersion into
// the output directory, as `helm package --version --app-version` does.
func PackageChart(o Options) (string, error) {
	dir := ChartDir(o.Root)
	if err := Lint(dir); err != nil {
		return "", err
	}
	pkg := action.NewPackage()
	pkg.Version = strings.TrimPrefix(o.Version, "v")
	pkg.AppVersion = o.Version
	pkg.Destination = o.Out
	path, err := pkg.Run(dir, nil)
	if err != nil {
		return "", fmt.Errorf("helm package: %w", err)
	}
	fmt.Fprintf(o.Log, "packaged the chart into %s\n", path)
	return path, nil
}
