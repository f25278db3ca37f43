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
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const (
	// InstallFile is config/default rendered with the release's image.
	InstallFile = "install.yaml"
	// CRDsFile is config/crd rendered: the CustomResourceDefinitions alone, for those who install
	// them apart from the operator (a namespaced install, a GitOps repository of CRDs).
	CRDsFile = "crds.yaml"
	// SumsFile lists the SHA-256 of every other file, in `sha256sum` format.
	SumsFile = "SHA256SUMS"
	// pluginPkg is the kubectl plugin's main package.
	pluginPkg = "./cmd/kubectl-dingtalk"
	// managerImage is the image config/manager names; install.yaml replaces it.
	managerImage = "dingtalk-token-operator"
)

// PluginFile names the kubectl plugin's archive for one platform.
func PluginFile(version, platform string) string {
	return fmt.Sprintf("kubectl-dingtalk-%s-%s.tar.gz", version, strings.ReplaceAll(platform, "/", "-"))
}

// HasPlugin says whether the repository holds the kubectl plugin's sources.
func HasPlugin(root string) bool {
	_, err := os.Stat(filepath.Join(root, pluginPkg))
	return err == nil
}

// Release writes everything a release ships into the output directory: install.yaml, crds.yaml,
// the chart package, the image tarballs, the kubectl plugin's archives, dingtalk-token-proxy's
// archives and SHA256SUMS.
func Release(ctx context.Context, o Options) error {
	start := time.Now()
	// SHA256SUMS covers every file in the directory: a leftover would be published as part of this release.
	if entries, err := os.ReadDir(o.Out); err != nil || len(entries) > 0 {
		return fmt.Errorf("the output directory %s must be empty (%d entries, %v)", o.Out, len(entries), err)
	}
	install, err := InstallYAML(o.Root, o.ImageRepo, o.Version)
	if err != nil {
		return fmt.Errorf("install.yaml: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.Out, InstallFile), install, 0o644); err != nil {
		return err
	}
	crds, err := CRDsYAML(o.Root, o.Version)
	if err != nil {
		return fmt.Errorf("crds.yaml: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.Out, CRDsFile), crds, 0o644); err != nil {
		return err
	}
	if _, err := PackageChart(o); err != nil {
		return err
	}
	if _, err := BuildImages(ctx, o); err != nil {
		return err
	}
	if err := buildPlugin(ctx, o); err != nil {
		return err
	}
	if err := buildProxy(ctx, o); err != nil {
		return err
	}
	if err := WriteSums(o.Out); err != nil {
		return err
	}
	fmt.Fprintf(o.Log, "release %s written to %s in %s\n", o.Version, o.Out, time.Since(start).Round(time.Second))
	return nil
}

// InstallYAML renders config/default with kustomize, the manager's image set to name:tag.
func InstallYAML(root, name, tag string) ([]byte, error) {
	image := name + ":" + tag
	// An overlay of config/default, as `kustomize edit set image` would write it.
	overlay := fmt.Sprintf("resources:\n- ../config/default\nimages:\n- name: %s\n  newName: %s\n  newTag: %s\n", managerImage, name, tag)
	body, err := kustomize(root, overlay)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(body, []byte("image: "+image+"\n")) {
		return nil, fmt.Errorf("config/default names no image %s to replace", managerImage)
	}
	header := fmt.Sprintf("# dingtalk-token-operator %s: the operator, cluster-wide (config/default), image %s.\n"+
		"#   kubectl apply --server-side -f install.yaml\n", tag, image)
	return append([]byte(header), body...), nil
}

// CRDsYAML renders config/crd with kustomize: the CustomResourceDefinitions alone.
func CRDsYAML(root, version string) ([]byte, error) {
	body, err := kustomize(root, "resources:\n- ../config/crd\n")
	if err != nil {
		return nil, err
	}
	header := fmt.Sprintf("# dingtalk-token-operator %s: the CustomResourceDefinitions alone (config/crd), for a cluster\n"+
		"# admin who installs them once before namespaced operators (Helm with crds.enabled=false).\n"+
		"#   kubectl apply --server-side -f crds.yaml\n", version)
	return append([]byte(header), body...), nil
}

// kustomize renders an overlay (a kustomization.yaml beside config/, which it names as
// ../config/...) over an in-memory copy of the repository's config/.
func kustomize(root, overlay string) ([]byte, error) {
	fsys := filesys.MakeFsInMemory()
	if err := copyTree(fsys, filepath.Join(root, "config"), "/repo/config"); err != nil {
		return nil, err
	}
	if err := fsys.WriteFile("/repo/release/kustomization.yaml", []byte(overlay)); err != nil {
		return nil, err
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, "/repo/release")
	if err != nil {
		return nil, err
	}
	return m.AsYaml()
}

// copyTree copies the YAML files under src into fsys under dst.
func copyTree(fsys filesys.FileSystem, src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return fsys.WriteFile(filepath.Join(dst, filepath.ToSlash(rel)), b)
	})
}

// buildPlugin builds kubectl-dingtalk for each plugin platform and archives each binary. A tree
// without cmd/kubectl-dingtalk (before the plugin landed) releases without it.
func buildPlugin(ctx context.Context, o Options) error {
	if !HasPlugin(o.Root) {
		fmt.Fprintf(o.Log, "no %s in %s: the release has no kubectl plugin\n", pluginPkg, o.Root)
		return nil
	}
	tmp, err := os.MkdirTemp("", "release-plugin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, platform := range o.PluginPlatforms {
		bin := filepath.Join(tmp, strings.ReplaceAll(platform, "/", "-"), "kubectl-dingtalk")
		if err := goBuild(ctx, &o, pluginPkg, platform, bin); err != nil {
			return err
		}
		if err := tarGz(filepath.Join(o.Out, PluginFile(o.Version, platform)), bin, o.Created); err != nil {
			return err
		}
	}
	return nil
}

// tarGz archives one executable under its base name (the layout krew expects).
func tarGz(out, binary string, mtime time.Time) error {
	body, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	hdr := &tar.Header{Name: filepath.Base(binary), Mode: 0o755, Size: int64(len(body)), ModTime: mtime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := tw.Write(body); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// WriteSums writes SHA256SUMS for every other file in dir, sorted by name.
func WriteSums(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var lines []string
	for _, e := range entries {
		if e.IsDir() || e.Name() == SumsFile {
			continue
		}
		sum, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		lines = append(lines, sum+"  "+e.Name()+"\n")
	}
	slices.Sort(lines)
	return os.WriteFile(filepath.Join(dir, SumsFile), []byte(strings.Join(lines, "")), 0o644)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
