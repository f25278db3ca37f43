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
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// proxyPkg is dingtalk-token-proxy's main package: in the image, and archived for each image
// platform for those who run it outside one.
const proxyPkg = "./cmd/dingtalk-token-proxy"

// ProxyFile names dingtalk-token-proxy's archive for one platform.
func ProxyFile(version, platform string) string {
	return fmt.Sprintf("dingtalk-token-proxy-%s-%s.tar.gz", version, strings.ReplaceAll(platform, "/", "-"))
}

// buildProxy builds dingtalk-token-proxy for each image platform and archives each binary.
func buildProxy(ctx context.Context, o Options) error {
	tmp, err := os.MkdirTemp("", "release-proxy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, platform := range o.ImagePlatforms {
		bin := filepath.Join(tmp, strings.ReplaceAll(platform, "/", "-"), "dingtalk-token-proxy")
		if err := goBuild(ctx, &o, proxyPkg, platform, bin); err != nil {
			return err
		}
		if err := tarGz(filepath.Join(o.Out, ProxyFile(o.Version, platform)), bin, o.Created); err != nil {
			return err
		}
	}
	return nil
}
