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
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// nonRoot is the user and group the manager runs as (distroless' "nonroot").
	nonRoot = 65532
	// entrypoint is the manager's path in the image.
	entrypoint = "/manager"
)

// imageBinaries are the image's executables, by their path in it (from /) and their main package:
// the manager, the entrypoint, and dingtalk-token-proxy, which a sidecar runs with
// `command: [/dingtalk-token-proxy]`.
var imageBinaries = []struct{ name, pkg string }{{"manager", "./cmd"}, {"dingtalk-token-proxy", proxyPkg}}

// ImageFile names the image tarball of one platform in the output directory.
func ImageFile(version, platform string) string {
	return fmt.Sprintf("dingtalk-token-operator-image-%s-%s.tar", version, strings.ReplaceAll(platform, "/", "-"))
}

// BuildImages builds the image's binaries for each image platform and writes one image tarball
// per platform. It returns the files written.
func BuildImages(ctx context.Context, o Options) ([]string, error) {
	tmp, err := os.MkdirTemp("", "release-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var files []string
	for _, platform := range o.ImagePlatforms {
		bins := filepath.Join(tmp, strings.ReplaceAll(platform, "/", "-"))
		for _, b := range imageBinaries {
			if err := goBuild(ctx, &o, b.pkg, platform, filepath.Join(bins, b.name)); err != nil {
				return nil, err
			}
		}
		out := filepath.Join(o.Out, ImageFile(o.Version, platform))
		if err := WriteImage(bins, platform, &o, out); err != nil {
			return nil, fmt.Errorf("image for %s: %w", platform, err)
		}
		files = append(files, out)
	}
	return files, nil
}

// WriteImage puts the binaries of the directory bins (imageBinaries) into an image with no base
// (FROM scratch) and writes it to out as an OCI image layout in a tar file, with a docker-style
// manifest.json beside index.json, so that `docker load`, `podman load`, `skopeo copy
// oci-archive:` and `crane push` all read it.
func WriteImage(bins, platform string, o *Options, out string) error {
	img, err := Image(bins, platform, o)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "release-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	goos, goarch, _ := strings.Cut(platform, "/")
	err = p.AppendImage(img,
		layout.WithPlatform(v1.Platform{OS: goos, Architecture: goarch}),
		layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": o.Version,
			"io.containerd.image.name":          o.ImageRef(),
		}))
	if err != nil {
		return err
	}
	if err := writeDockerManifest(dir, img, o.ImageRef()); err != nil {
		return err
	}
	return tarDir(dir, out, o.Created)
}

// Image is the manager's image for one platform: one layer with the binaries of the directory
// bins (imageBinaries) and the nonroot user's passwd and group entries, run as 65532:65532. No
// shell, no package manager, no CA bundle (the binaries carry their own roots).
func Image(bins, platform string, o *Options) (v1.Image, error) {
	goos, goarch, _ := strings.Cut(platform, "/")
	executables := map[string][]byte{}
	for _, b := range imageBinaries {
		body, err := os.ReadFile(filepath.Join(bins, b.name))
		if err != nil {
			return nil, err
		}
		executables[b.name] = body
	}
	layerTar, err := rootFS(executables, o.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Created}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: created, CreatedBy: "make image: COPY manager dingtalk-token-proxy /", Comment: "dingtalk-token-operator " + o.Version},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = goos, goarch
	cfg.Created = created
	cfg.Config.User = fmt.Sprintf("%d:%d", nonRoot, nonRoot)
	cfg.Config.Entrypoint = []string{entrypoint}
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "dingtalk-token-operator",
		"org.opencontainers.image.description": "Keeps DingTalk access tokens fresh in Kubernetes Secrets",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Commit,
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
	return mutate.ConfigFile(img, cfg)
}

// rootFS is the layer's tar: the executables at /, and /etc/passwd and /etc/group naming the
// nonroot user (what distroless/static:nonroot holds), all owned by root so that the processes
// cannot change them.
func rootFS(executables map[string][]byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	type entry struct {
		name string
		mode int64
		body []byte
	}
	entries := []entry{
		{"etc/", 0o755, nil},
		{"etc/group", 0o644, fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", nonRoot)},
		{"etc/passwd", 0o644, fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonRoot, nonRoot)},
	}
	for _, name := range slices.Sorted(maps.Keys(executables)) {
		entries = append(entries, entry{name, 0o755, executables[name]})
	}
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), ModTime: mtime, Format: tar.FormatPAX, Typeflag: tar.TypeReg}
		if strings.HasSuffix(e.name, "/") {
			hdr.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeDockerManifest adds the manifest.json of `docker save` to an OCI layout, pointing at the
// layout's blobs, for tools that predate OCI archives.
func writeDockerManifest(dir string, img v1.Image, ref string) error {
	cfg, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	entry := struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{Config: blobPath(cfg), RepoTags: []string{ref}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		entry.Layers = append(entry.Layers, blobPath(d))
	}
	b, err := json.Marshal([]any{entry})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// tarDir writes the files under dir to a tar file, in name order with one modification time, so
// that the same image gives the same bytes.
func tarDir(dir, out string, mtime time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		names = append(names, path)
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(names)
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(out + ".tmp")
	tw := tar.NewWriter(f)
	for _, path := range names {
		if err := addFile(tw, dir, path, mtime); err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

func addFile(tw *tar.Writer, dir, path string, mtime time.Time) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, path)
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: info.Size()}
	if info.IsDir() {
		hdr.Name += "/"
		hdr.Mode, hdr.Typeflag, hdr.Size = 0o755, tar.TypeDir, 0
		return tw.WriteHeader(hdr)
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	_, err = io.Copy(tw, src)
	return err
}
