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
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/buildinfo"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The release under test: `make test-release` builds it with `make release` and passes its
// directory and version in RELEASE_DIST and RELEASE_VERSION; without them the tests build one
// here (several minutes from a cold build cache).
var (
	distOnce    sync.Once
	distDir     string
	distVersion string
	// distRepo is the image repository the release was built for (IMAGE_REPO).
	distRepo string
	distErr  error
	// pluginPlatforms are the platforms the release built kubectl-dingtalk for.
	pluginPlatforms = DefaultPluginPlatforms
)

func dist(t *testing.T) (dir, version string) {
	t.Helper()
	distOnce.Do(func() {
		if d := os.Getenv("RELEASE_DIST"); d != "" {
			distDir, distVersion = d, "v"+strings.TrimPrefix(os.Getenv("RELEASE_VERSION"), "v")
			distRepo = os.Getenv("RELEASE_IMAGE_REPO")
			if distVersion == "v" || distRepo == "" {
				distErr = errors.New("RELEASE_DIST is set but RELEASE_VERSION or RELEASE_IMAGE_REPO is not")
			}
			if p := os.Getenv("RELEASE_PLUGIN_PLATFORMS"); p != "" {
				pluginPlatforms = splitComma(p)
			}
			return
		}
		distDir, distErr = os.MkdirTemp("", "release-test-")
		if distErr != nil {
			return
		}
		distRepo = testRepo
		o := Options{Root: repoRoot, Version: "v0.0.0-test", Out: distDir, ImageRepo: distRepo,
			ImagePlatforms: DefaultImagePlatforms, PluginPlatforms: DefaultPluginPlatforms, Log: io.Discard}
		if distErr = o.complete(t.Context()); distErr == nil {
			distErr = Release(t.Context(), o)
		}
		distVersion = o.Version
	})
	if distErr != nil {
		t.Fatalf("building the release: %v", distErr)
	}
	return distDir, distVersion
}

// TestImages reads each image tarball as a container runtime would: the platform, the user, the
// entrypoint, a layer with the manager and dingtalk-token-proxy and nothing to run a shell with,
// Mozilla's CA roots compiled into the binaries; and runs the binaries of the machine's platform
// with --version.
func TestImages(t *testing.T) {
	dir, version := dist(t)
	for _, platform := range DefaultImagePlatforms {
		t.Run(platform, func(t *testing.T) {
			file := filepath.Join(dir, ImageFile(version, platform))
			goos, goarch, _ := strings.Cut(platform, "/")

			// The OCI layout: one image for the platform, tagged with the version.
			img, desc := imageFromLayout(t, file)
			if desc.Platform == nil || desc.Platform.OS != goos || desc.Platform.Architecture != goarch {
				t.Errorf("index.json platform = %+v, want %s", desc.Platform, platform)
			}
			if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != version {
				t.Errorf("index.json ref name = %q, want %q", got, version)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OS != goos || cfg.Architecture != goarch {
				t.Errorf("config platform = %s/%s, want %s", cfg.OS, cfg.Architecture, platform)
			}
			if cfg.Config.User != "65532:65532" {
				t.Errorf("user = %q, want 65532:65532", cfg.Config.User)
			}
			if !slices.Equal(cfg.Config.Entrypoint, []string{"/manager"}) || len(cfg.Config.Cmd) > 0 {
				t.Errorf("entrypoint %q cmd %q, want [/manager] and no cmd", cfg.Config.Entrypoint, cfg.Config.Cmd)
			}
			if cfg.Config.Labels["org.opencontainers.image.version"] != version {
				t.Errorf("labels = %v, want org.opencontainers.image.version %s", cfg.Config.Labels, version)
			}

			// The docker-save manifest.json in the same tarball names the same image.
			dockerImg, err := tarball.ImageFromPath(file, nil)
			if err != nil {
				t.Fatalf("reading %s as a docker archive: %v", file, err)
			}
			if a, b := mustDigest(t, img.ConfigName), mustDigest(t, dockerImg.ConfigName); a != b {
				t.Errorf("manifest.json config %s, index.json config %s", b, a)
			}

			files := layerFiles(t, img)
			if got := slices.Sorted(mapsKeys(files)); !slices.Equal(got, []string{"dingtalk-token-proxy", "etc/", "etc/group", "etc/passwd", "manager"}) {
				t.Errorf("the layer holds %q, want the manager, dingtalk-token-proxy, etc/passwd and etc/group only (no shell, no base image)", got)
			}
			proxy := files["dingtalk-token-proxy"]
			if proxy.hdr.Mode&0o111 == 0 || proxy.hdr.Uid != 0 {
				t.Errorf("dingtalk-token-proxy mode %o uid %d, want executable and owned by root", proxy.hdr.Mode, proxy.hdr.Uid)
			}
			assertStaticStampedBinary(t, proxy.body, platform, version)
			mgr := files["manager"]
			if mgr.hdr.Mode&0o111 == 0 || mgr.hdr.Uid != 0 {
				t.Errorf("manager mode %o uid %d, want executable and owned by root", mgr.hdr.Mode, mgr.hdr.Uid)
			}
			if !strings.Contains(string(files["etc/passwd"].body), ":65532:65532:") {
				t.Errorf("etc/passwd does not name user 65532:\n%s", files["etc/passwd"].body)
			}
			assertStaticStampedBinary(t, mgr.body, platform, version)

			if platform != runtime.GOOS+"/"+runtime.GOARCH {
				return
			}
			bin := filepath.Join(t.TempDir(), "manager")
			if err := os.WriteFile(bin, mgr.body, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(t.Context(), bin, "--version").CombinedOutput()
			if err != nil {
				t.Fatalf("manager --version: %v: %s", err, out)
			}
			if want := "dingtalk-token-operator " + version + " (commit "; !strings.HasPrefix(string(out), want) {
				t.Errorf("manager --version printed %q, want %q...", out, want)
			}
			assertProxyVersion(t, proxy.body, version)
		})
	}
}

// TestImageSizes logs each image's size: the tarball and the compressed layer a registry stores.
func TestImageSizes(t *testing.T) {
	dir, version := dist(t)
	for _, platform := range DefaultImagePlatforms {
		file := filepath.Join(dir, ImageFile(version, platform))
		img, _ := imageFromLayout(t, file)
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		compressed, err := layers[0].Size()
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		files := layerFiles(t, img)
		t.Logf("%s: tarball %.1f MiB, compressed layer %.1f MiB, /manager %.1f MiB, /dingtalk-token-proxy %.1f MiB", platform,
			mib(fi.Size()), mib(compressed), mib(int64(len(files["manager"].body))), mib(int64(len(files["dingtalk-token-proxy"].body))))
		// A static Go binary and nothing else: a regression to a base image would show here.
		if compressed > 40<<20 {
			t.Errorf("%s: the image's layer is %.1f MiB, over 40 MiB", platform, mib(compressed))
		}
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// assertStaticStampedBinary reads the Go build information of a binary: built for the platform
// without cgo, with -trimpath; it holds the version and links the fallback CA roots in.
func assertStaticStampedBinary(t *testing.T, bin []byte, platform, version string) {
	t.Helper()
	info, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("reading the build information: %v", err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	goos, goarch, _ := strings.Cut(platform, "/")
	for k, want := range map[string]string{"CGO_ENABLED": "0", "GOOS": goos, "GOARCH": goarch, "-trimpath": "true"} {
		if settings[k] != want {
			t.Errorf("built with %s=%q, want %q", k, settings[k], want)
		}
	}
	// -trimpath keeps -ldflags out of the build information: look for the stamped string.
	if !bytes.Contains(bin, []byte(version)) {
		t.Errorf("the binary does not hold its version %s (-ldflags -X %s.Version)", version, versionPkg)
	}
	if !slices.ContainsFunc(info.Deps, func(m *debug.Module) bool { return m.Path == "golang.org/x/crypto/x509roots/fallback" }) {
		t.Error("golang.org/x/crypto/x509roots/fallback is not linked in: the image has no CA roots")
	}
	// The bundle itself: the roots' names are in the binary (DingTalk's certificates chain to one of them).
	for _, root := range []string{"CN=DigiCert Global Root G2", "CN=ISRG Root X1", "CN=GlobalSign"} {
		if !bytes.Contains(bin, []byte(root)) {
			t.Errorf("the binary does not carry the CA root %s", root)
		}
	}
}

func imageFromLayout(t *testing.T, file string) (v1.Image, v1.Descriptor) {
	t.Helper()
	dir := t.TempDir()
	untar(t, file, dir)
	for _, f := range []string{"oci-layout", "index.json", "manifest.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s has no %s", file, f)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("%s is not an OCI layout: %v", file, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("%s holds %d images, want 1", file, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img, m.Manifests[0]
}

type layerFile struct {
	hdr  *tar.Header
	body []byte
}

// layerFiles reads the image's only layer.
func layerFiles(t *testing.T, img v1.Image) map[string]layerFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("the image has %d layers, want 1 (no base image)", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]layerFile{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = layerFile{hdr, body}
	}
}

func untar(t *testing.T, file, dir string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(path, dir+string(filepath.Separator)) {
			t.Fatalf("%s: entry %s escapes the archive", file, hdr.Name)
		}
		if hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
}

func mustDigest(t *testing.T, f func() (v1.Hash, error)) v1.Hash {
	t.Helper()
	h, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestRelease checks the release directory: every file a release lists, each in SHA256SUMS with
// a matching digest and nothing else; install.yaml with the image pinned to the version; the
// chart package stamped with it; the kubectl plugin for each platform built (four in a full
// release, RELEASE_PLUGIN_PLATFORMS in `make test`'s CI-sized one), stamped with the version.
func TestRelease(t *testing.T) {
	dir, version := dist(t)
	want := []string{InstallFile, CRDsFile, ChartFile(version), SumsFile}
	for _, p := range DefaultImagePlatforms {
		want = append(want, ImageFile(version, p))
	}
	plugin := HasPlugin(repoRoot)
	if plugin {
		for _, p := range pluginPlatforms {
			want = append(want, PluginFile(version, p))
		}
	}
	for _, p := range DefaultImagePlatforms {
		want = append(want, ProxyFile(version, p))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if slices.Sort(want); !slices.Equal(got, want) {
		t.Errorf("the release holds\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}

	t.Run("SHA256SUMS", func(t *testing.T) {
		sums, err := os.ReadFile(filepath.Join(dir, SumsFile))
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSuffix(string(sums), "\n"), "\n") {
			sum, name, ok := strings.Cut(line, "  ")
			if !ok || len(sum) != 64 {
				t.Fatalf("SHA256SUMS line %q is not `sha256sum` format", line)
			}
			actual, err := fileSHA256(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if actual != sum {
				t.Errorf("%s has SHA-256 %s, SHA256SUMS says %s", name, actual, sum)
			}
			listed[name] = true
		}
		for _, f := range want {
			if f != SumsFile && !listed[f] {
				t.Errorf("SHA256SUMS does not list %s", f)
			}
		}
		// And as a person would check it.
		if path, err := exec.LookPath("sha256sum"); err == nil {
			cmd := exec.CommandContext(t.Context(), path, "--check", "--strict", SumsFile)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("sha256sum --check: %v\n%s", err, out)
			}
		}
	})

	t.Run("install.yaml", func(t *testing.T) {
		objs := readObjects(t, filepath.Join(dir, InstallFile))
		var dep *appsv1.Deployment
		kinds := map[string]bool{}
		for _, o := range objs {
			kinds[o.GetKind()] = true
			if o.GetKind() == "Deployment" {
				dep = convert[appsv1.Deployment](t, o)
			}
		}
		for _, k := range []string{"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Deployment", "Service", "ValidatingAdmissionPolicy"} {
			if !kinds[k] {
				t.Errorf("install.yaml has no %s", k)
			}
		}
		if dep == nil {
			t.Fatal("install.yaml has no Deployment")
		}
		if img := dep.Spec.Template.Spec.Containers[0].Image; img != distRepo+":"+version {
			t.Errorf("install.yaml runs image %s, want the release's IMAGE_REPO and version, %s:%s", img, distRepo, version)
		}
		assertHardened(t, dep)
	})

	t.Run("crds.yaml", func(t *testing.T) {
		// The CRDs of config/crd/bases, each as it is there, and nothing else.
		got := readObjects(t, filepath.Join(dir, CRDsFile))
		var want []*unstructured.Unstructured
		files, _ := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
		for _, f := range files {
			want = append(want, readObjects(t, f)...)
		}
		if len(got) != len(want) || len(want) == 0 {
			t.Fatalf("crds.yaml holds %d objects, config/crd/bases %d CRDs", len(got), len(want))
		}
		for _, w := range want {
			i := slices.IndexFunc(got, func(o *unstructured.Unstructured) bool {
				return o.GetKind() == "CustomResourceDefinition" && o.GetName() == w.GetName()
			})
			if i < 0 {
				t.Errorf("crds.yaml lacks CRD %s", w.GetName())
				continue
			}
			assertSameBut(t, got[i], w)
		}
		b, err := os.ReadFile(filepath.Join(dir, CRDsFile))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "# dingtalk-token-operator "+version+": the CustomResourceDefinitions alone") {
			t.Errorf("crds.yaml does not start with its header naming the version:\n%.200s", b)
		}
	})

	t.Run("chart", func(t *testing.T) {
		chrt, err := loader.Load(filepath.Join(dir, ChartFile(version)))
		if err != nil {
			t.Fatal(err)
		}
		if chrt.Metadata.Version != strings.TrimPrefix(version, "v") || chrt.Metadata.AppVersion != version {
			t.Errorf("chart version %s appVersion %s, want %s and %s", chrt.Metadata.Version, chrt.Metadata.AppVersion, strings.TrimPrefix(version, "v"), version)
		}
		if chrt.Schema == nil {
			t.Error("the package has no values.schema.json")
		}
		// IMAGE_REPO stamped into values.yaml, the file's comments kept.
		if got, _ := chartutil.Values(chrt.Values).PathValue("image.repository"); got != distRepo {
			t.Errorf("the packaged chart's image.repository is %v, want the release's IMAGE_REPO %s", got, distRepo)
		}
		raw := slices.IndexFunc(chrt.Raw, func(f *chart.File) bool { return f.Name == chartutil.ValuesfileName })
		if raw < 0 || !strings.Contains(string(chrt.Raw[raw].Data), "  repository: \""+distRepo+"\"\n") ||
			!strings.Contains(string(chrt.Raw[raw].Data), "# -- The registry repository of the manager's image") {
			t.Error("the packaged values.yaml does not hold the stamped repository beside its comments")
		}
		rel, err := Render(filepath.Join(dir, ChartFile(version)), releaseName, releaseNS, nil)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll([]byte(rel.Manifest))
		if err != nil {
			t.Fatal(err)
		}
		r := &rendered{objs: objs}
		if img := r.deployment(t).Spec.Template.Spec.Containers[0].Image; img != distRepo+":"+version {
			t.Errorf("the packaged chart runs image %s with its defaults, want %s:%s", img, distRepo, version)
		}
		if len(r.ofKind("CustomResourceDefinition")) == 0 {
			t.Error("the packaged chart installs no CRD (generated/ was left out)")
		}
	})

	t.Run("kubectl-dingtalk", func(t *testing.T) {
		if !plugin {
			t.Skip("cmd/kubectl-dingtalk is not in this tree yet")
		}
		for _, p := range pluginPlatforms {
			body := readTarGz(t, filepath.Join(dir, PluginFile(version, p)), "kubectl-dingtalk")
			assertPluginBinary(t, body, p, version)
			if p != runtime.GOOS+"/"+runtime.GOARCH {
				continue
			}
			bin := filepath.Join(t.TempDir(), "kubectl-dingtalk")
			if err := os.WriteFile(bin, body, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(t.Context(), bin, "version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), version) {
				t.Errorf("kubectl-dingtalk version: %v, printed %q; want %s", err, out, version)
			}
		}
	})

	t.Run("dingtalk-token-proxy", func(t *testing.T) {
		for _, p := range DefaultImagePlatforms {
			body := readTarGz(t, filepath.Join(dir, ProxyFile(version, p)), "dingtalk-token-proxy")
			assertStaticStampedBinary(t, body, p, version)
			if p == runtime.GOOS+"/"+runtime.GOARCH {
				assertProxyVersion(t, body, version)
			}
		}
	})
}

// assertProxyVersion runs a dingtalk-token-proxy binary with --version.
func assertProxyVersion(t *testing.T, body []byte, version string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dingtalk-token-proxy")
	if err := os.WriteFile(bin, body, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "--version").CombinedOutput()
	if want := "dingtalk-token-proxy " + version + " (commit "; err != nil || !strings.HasPrefix(string(out), want) {
		t.Errorf("dingtalk-token-proxy --version: %v, printed %q, want %q...", err, out, want)
	}
}

// assertPluginBinary checks that a plugin binary was built for the platform with the version stamped.
func assertPluginBinary(t *testing.T, bin []byte, platform, version string) {
	t.Helper()
	info, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("%s: %v", platform, err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	goos, goarch, _ := strings.Cut(platform, "/")
	if settings["GOOS"] != goos || settings["GOARCH"] != goarch || settings["CGO_ENABLED"] != "0" {
		t.Errorf("kubectl-dingtalk for %s was built for %s/%s (cgo %s)", platform, settings["GOOS"], settings["GOARCH"], settings["CGO_ENABLED"])
	}
	if !bytes.Contains(bin, []byte(version)) {
		t.Errorf("kubectl-dingtalk for %s does not hold its version %s", platform, version)
	}
}

func readTarGz(t *testing.T, file, name string) []byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s has no %s: %v", file, name, err)
		}
		if hdr.Name == name {
			if hdr.Mode&0o111 == 0 {
				t.Errorf("%s: %s is not executable", file, name)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// TestReleaseNeedsImageRepo: a release without IMAGE_REPO, or with a bare name (which resolves
// to docker.io/library/..., an image that does not exist), is refused before anything is built,
// saying what to set.
func TestReleaseNeedsImageRepo(t *testing.T) {
	for repo, want := range map[string]string{
		"":                        "--image-repo is required (make: IMAGE_REPO)",
		"dingtalk-token-operator": "must be a repository with its registry host and no tag",
		"registry.example.com/dingtalk-token-operator:v1": "must be a repository with its registry host and no tag",
	} {
		out := t.TempDir()
		err := run(t.Context(), []string{"all", "--root", repoRoot, "--version", "1.2.3", "--out", out, "--image-repo", repo}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("release with --image-repo %q: %v; want a refusal saying %q", repo, err, want)
		}
		if entries, _ := os.ReadDir(out); len(entries) > 0 {
			t.Errorf("release with --image-repo %q wrote %d files before refusing", repo, len(entries))
		}
	}
}

// TestDockerfilePinsBaseImages: every base image of the Dockerfile (the equivalent of `make image`
// for those with Docker) is pinned by digest, so that a rebuild uses the images it was reviewed
// with; a stage built FROM an earlier stage needs none.
func TestDockerfilePinsBaseImages(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	pinned := regexp.MustCompile(`^[^\s@]+:[^\s@]+@sha256:[0-9a-f]{64}$`)
	stages := map[string]bool{}
	froms := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.EqualFold(f[0], "FROM") {
			continue
		}
		froms++
		args := slices.DeleteFunc(f[1:], func(a string) bool { return strings.HasPrefix(a, "--") })
		if image := args[0]; !stages[image] && !pinned.MatchString(image) {
			t.Errorf("Dockerfile: %q is not pinned by digest (image:tag@sha256:...)", line)
		}
		if len(args) == 3 && strings.EqualFold(args[1], "AS") {
			stages[args[2]] = true
		}
	}
	if froms < 2 {
		t.Errorf("the Dockerfile has %d FROM lines, want the builder and the runtime image", froms)
	}
}
