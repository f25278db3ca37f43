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
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
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

// Lint runs `helm lint --strict` on a chart directory or package with vals over its values.
func Lint(chartPath string, vals map[string]any) error {
	lint := action.NewLint()
	lint.Strict = true
	lint.Namespace = "dingtalk-token-operator-system"
	lint.KubeVersion = &KubeVersion
	res := lint.Run([]string{chartPath}, vals)
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
	return fmt.Errorf("helm lint %s: %w", chartPath, errors.Join(errs...))
}

// PackageChart packages the chart as `helm package --version --app-version` does, with the
// release's image repository stamped into its values.yaml (image.repository: the source chart
// has none), and lints the package as `helm lint --strict` does.
func PackageChart(o Options) (string, error) {
	chrt, err := loader.LoadDir(ChartDir(o.Root))
	if err != nil {
		return "", err
	}
	chrt.Metadata.Version = strings.TrimPrefix(o.Version, "v")
	chrt.Metadata.AppVersion = o.Version
	if err := StampImageRepository(chrt, o.ImageRepo); err != nil {
		return "", err
	}
	path, err := chartutil.Save(chrt, o.Out)
	if err != nil {
		return "", fmt.Errorf("packaging the chart: %w", err)
	}
	if err := Lint(path, nil); err != nil {
		return "", err
	}
	fmt.Fprintf(o.Log, "packaged the chart into %s (image %s)\n", path, o.ImageRef())
	return path, nil
}

// StampImageRepository sets image.repository in the chart's values.yaml to repo, keeping the
// file's comments and layout (only that line changes).
func StampImageRepository(chrt *chart.Chart, repo string) error {
	for _, f := range chrt.Raw {
		if f.Name != chartutil.ValuesfileName {
			continue
		}
		stamped, err := stampRepository(f.Data, repo)
		if err != nil {
			return err
		}
		vals, err := chartutil.ReadValues(stamped)
		if err != nil {
			return fmt.Errorf("values.yaml after stamping: %w", err)
		}
		if got, _ := vals.PathValue("image.repository"); got != repo {
			return fmt.Errorf("values.yaml after stamping has image.repository %v, want %s", got, repo)
		}
		f.Data, chrt.Values = stamped, vals
		return nil
	}
	return errors.New("the chart has no values.yaml")
}

// stampRepository replaces the value of the first `repository:` line of the top-level `image:`
// block.
func stampRepository(values []byte, repo string) ([]byte, error) {
	lines := strings.SplitAfter(string(values), "\n")
	inImage := false
	for i, line := range lines {
		switch {
		case strings.HasPrefix(line, "image:"):
			inImage = true
		case inImage && strings.HasPrefix(line, "  repository:"):
			quoted, err := json.Marshal(repo)
			if err != nil {
				return nil, err
			}
			lines[i] = "  repository: " + string(quoted) + "\n"
			return []byte(strings.Join(lines, "")), nil
		case inImage && line != "\n" && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "#"):
			inImage = false // the next top-level key
		}
	}
	return nil, errors.New("values.yaml has no image.repository line to stamp")
}
