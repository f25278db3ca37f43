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

package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// ModulePath is the repository's Go module.
const ModulePath = "github.com/dingtalk-token-operator/dingtalk-token-operator"

// ErrNoAssets says the envtest binaries (kube-apiserver, etcd) are not where they were looked for.
var ErrNoAssets = errors.New("envtest binaries missing")

// RepoRoot finds the repository root: from this source file when it is on disk (go test, go run),
// else upwards from the working directory to the module's go.mod.
func RepoRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		if dir := filepath.Join(filepath.Dir(file), "..", ".."); isModuleRoot(dir) {
			return filepath.Abs(dir)
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isModuleRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of " + ModulePath + " in the working directory or above")
		}
		dir = parent
	}
}

func isModuleRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && strings.Contains(string(b), "module "+ModulePath+"\n")
}

// EnvtestVersion is the Kubernetes version the envtest binaries are built from: the
// k8s.io/kubernetes requirement of hack/envtest/go.mod, as the Makefile reads it.
func EnvtestVersion(root string) (string, error) {
	f, err := os.Open(filepath.Join(root, "hack", "envtest", "go.mod"))
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "k8s.io/kubernetes" {
			return strings.TrimPrefix(fields[1], "v"), nil
		}
	}
	return "", errors.New("hack/envtest/go.mod does not require k8s.io/kubernetes")
}

// AssetsDir is where the envtest binaries are: $KUBEBUILDER_ASSETS when set (a user's own
// binaries win, as in the Makefile), else <root>/bin/k8s/<version> as `make envtest` builds them.
// The error wraps ErrNoAssets when kube-apiserver or etcd is not there.
func AssetsDir(root string) (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		version, err := EnvtestVersion(root)
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin", "k8s", version)
	}
	return dir, CheckAssets(dir)
}

// CheckAssets returns an error wrapping ErrNoAssets unless dir holds kube-apiserver and etcd.
func CheckAssets(dir string) error {
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return fmt.Errorf("%w: no %s in %s (run `make envtest`, or set KUBEBUILDER_ASSETS)", ErrNoAssets, bin, dir)
		}
	}
	return nil
}

// ErrNoPromtool says promtool or metricnames (built by `make promtool`) is not where it was
// looked for.
var ErrNoPromtool = errors.New("promtool missing")

// PrometheusVersion is the Prometheus module promtool is built from: the
// github.com/prometheus/prometheus requirement of hack/promtool/go.mod, as the Makefile reads it.
func PrometheusVersion(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "hack", "promtool", "go.mod"))
	if err != nil {
		return "", err
	}
	for l := range strings.Lines(string(b)) {
		if fields := strings.Fields(l); len(fields) >= 2 && fields[0] == "github.com/prometheus/prometheus" {
			return fields[1], nil
		}
	}
	return "", errors.New("hack/promtool/go.mod does not require github.com/prometheus/prometheus")
}

// PromtoolDir is where `make promtool` builds promtool and metricnames:
// <root>/bin/prometheus/<version>. The error wraps ErrNoPromtool when either is not there.
func PromtoolDir(root string) (string, error) {
	version, err := PrometheusVersion(root)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bin", "prometheus", version)
	for _, bin := range []string{"promtool", "metricnames"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("%w: no %s in %s (run `make promtool`)", ErrNoPromtool, bin, dir)
		}
	}
	return dir, nil
}
