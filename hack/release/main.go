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

// Command release builds what the project ships, from Go modules only (no Docker engine, no helm
// or crane binary, no base-image pull). It is its own module because Helm's dependencies would
// move the operator's Kubernetes libraries.
//
//	release image   --version v1.2.3 --image-repo REPO --out dist # OCI image tarballs (the manager and
//	                                                              # dingtalk-token-proxy), linux/amd64 and linux/arm64
//	release chart   --version v1.2.3 --image-repo REPO --out dist # the Helm chart package, REPO in its values.yaml
//	release render  --namespace ns --set k=v -f values.yaml       # the chart's manifests, like `helm template`
//	release all     --version v1.2.3 --image-repo REPO --out dist # everything above, install.yaml (image
//	                                                              # REPO:v1.2.3), crds.yaml, the kubectl plugin
//	                                                              # for four platforms, dingtalk-token-proxy
//	                                                              # for the image's and SHA256SUMS
//
// The Makefile's `image` and `release` targets call it; run it from the repository root or pass
// --root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: release image|chart|render|all [flags]")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("release "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := Options{Log: stderr}
	fs.StringVar(&opts.Root, "root", "", "the repository's root directory (default: found above the working directory)")
	fs.StringVar(&opts.Version, "version", "", "the release version, e.g. 1.2.3 or v1.2.3 (required except for render)")
	fs.StringVar(&opts.Out, "out", "dist", "output directory")
	fs.StringVar(&opts.ImageRepo, "image-repo", "", "the registry repository the image is pushed to, which the chart and install.yaml point at, "+
		"e.g. registry.example.com/dingtalk-token-operator (required except for render)")
	var platforms, pluginPlatforms string
	fs.StringVar(&platforms, "platforms", strings.Join(DefaultImagePlatforms, ","), "image platforms")
	fs.StringVar(&pluginPlatforms, "plugin-platforms", strings.Join(DefaultPluginPlatforms, ","), "kubectl-dingtalk platforms")
	var sets, valueFiles stringList
	var namespace, releaseName, output string
	fs.Var(&sets, "set", "render: a chart value, key=value (repeatable)")
	fs.Var(&valueFiles, "f", "render: a values file (repeatable)")
	fs.StringVar(&namespace, "namespace", "dingtalk-token-operator-system", "render: the release namespace")
	fs.StringVar(&releaseName, "release-name", "dingtalk-token-operator", "render: the release name")
	fs.StringVar(&output, "o", "", "render: write the manifests to this file instead of stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if opts.Root == "" {
		root, err := findRoot()
		if err != nil {
			return err
		}
		opts.Root = root
	}
	opts.ImagePlatforms = splitComma(platforms)
	opts.PluginPlatforms = splitComma(pluginPlatforms)

	if cmd == "render" {
		manifests, err := RenderManifests(ChartDir(opts.Root), releaseName, namespace, sets, valueFiles)
		if err != nil {
			return err
		}
		if output == "" {
			_, err = io.WriteString(stdout, manifests)
			return err
		}
		return os.WriteFile(output, []byte(manifests), 0o644)
	}
	if err := opts.complete(ctx); err != nil {
		return err
	}
	switch cmd {
	case "image":
		_, err := BuildImages(ctx, opts)
		return err
	case "chart":
		_, err := PackageChart(opts)
		return err
	case "all":
		return Release(ctx, opts)
	}
	return fmt.Errorf("unknown command %q: want image, chart, render or all", cmd)
}

// rootModule is the operator's module, whose directory is the repository's root.
const rootModule = "module github.com/dingtalk-token-operator/dingtalk-token-operator\n"

// findRoot finds the repository's root at or above the working directory.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), rootModule) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no repository root (the operator's go.mod) above the working directory: pass --root")
		}
		dir = parent
	}
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
