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
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/mod/semver"
)

// versionPkg is where -ldflags -X stamps the version of every binary.
const versionPkg = "github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version"

var (
	// DefaultImagePlatforms are the platforms of the manager's image.
	DefaultImagePlatforms = []string{"linux/amd64", "linux/arm64"}
	// DefaultPluginPlatforms are the platforms kubectl-dingtalk is built for.
	DefaultPluginPlatforms = []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"}
)

// Options say what to build and where.
type Options struct {
	// Root is the repository's root directory.
	Root string
	// Version is the release version with a leading v (v1.2.3); complete adds the v.
	Version string
	// Commit is the git commit built (complete reads it from git when empty).
	Commit string
	// Created is the time stamped into the images: the commit's time, so that a rebuild of one
	// commit gives the same image.
	Created time.Time
	// Out is the output directory.
	Out string
	// ImageRepo is the repository the image is tagged with and the manifests point at.
	ImageRepo string
	// ImagePlatforms and PluginPlatforms are os/arch pairs.
	ImagePlatforms, PluginPlatforms []string
	// Log receives progress lines.
	Log io.Writer
}

// complete checks the options and fills in the version's v, the commit and its time.
func (o *Options) complete(ctx context.Context) error {
	if o.Log == nil {
		o.Log = io.Discard
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return err
	}
	o.Root = root
	if o.Version == "" {
		return errors.New("--version is required, e.g. --version 1.2.3")
	}
	o.Version = "v" + strings.TrimPrefix(o.Version, "v")
	if !semver.IsValid(o.Version) {
		return fmt.Errorf("--version %s is not a semantic version", o.Version)
	}
	if err := ValidateImageRepo(o.ImageRepo); err != nil {
		return err
	}
	for _, p := range append(append([]string{}, o.ImagePlatforms...), o.PluginPlatforms...) {
		if _, _, ok := strings.Cut(p, "/"); !ok {
			return fmt.Errorf("platform %q is not os/arch", p)
		}
	}
	if o.Commit == "" {
		// Outside a git checkout the binaries say "dev"-style: no commit.
		o.Commit, _ = git(ctx, o.Root, "rev-parse", "HEAD")
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0).UTC()
		if ts, err := git(ctx, o.Root, "log", "-1", "--format=%ct"); err == nil {
			if sec, err := strconv.ParseInt(ts, 10, 64); err == nil {
				o.Created = time.Unix(sec, 0).UTC()
			}
		}
	}
	o.Out, err = filepath.Abs(o.Out)
	if err != nil {
		return err
	}
	return os.MkdirAll(o.Out, 0o755)
}

// ValidateImageRepo refuses an empty repository and one without a registry host: a bare name
// such as dingtalk-token-operator means docker.io/library/dingtalk-token-operator, which does
// not exist, and the chart and install.yaml would point the cluster at it.
func ValidateImageRepo(repo string) error {
	if repo == "" {
		return errors.New("--image-repo is required (make: IMAGE_REPO): the registry repository you push the image tarballs to, " +
			"which the chart's values.yaml and install.yaml point at, e.g. registry.example.com/dingtalk-token-operator")
	}
	if _, err := name.NewRepository(repo, name.StrictValidation); err != nil {
		return fmt.Errorf("--image-repo %q (make: IMAGE_REPO) must be a repository with its registry host and no tag, "+
			"e.g. registry.example.com/dingtalk-token-operator: %w", repo, err)
	}
	return nil
}

// ImageRef is the image's name with the release tag.
func (o *Options) ImageRef() string { return o.ImageRepo + ":" + o.Version }

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	return strings.TrimSpace(string(b)), err
}

// goBuild builds a static, stamped binary of pkg (relative to the root) for platform (os/arch):
// no cgo, no local paths (-trimpath), no symbol table.
func goBuild(ctx context.Context, o *Options, pkg, platform, out string) error {
	goos, goarch, _ := strings.Cut(platform, "/")
	ldflags := fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Commit=%s", versionPkg, o.Version, versionPkg, o.Commit)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = o.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %v\n%s", pkg, platform, err, b)
	}
	fmt.Fprintf(o.Log, "built %s for %s in %s\n", pkg, platform, time.Since(start).Round(100*time.Millisecond))
	return nil
}
