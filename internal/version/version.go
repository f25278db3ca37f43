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

// Package version holds the version stamped into every binary at build time:
//
//	go build -ldflags "-X github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version.Version=v0.2.0 \
//	  -X github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version.Commit=$(git rev-parse HEAD)"
package version

// Version is the release version, "dev" when not stamped.
var Version = "dev"

// Commit is the source commit, empty when not stamped.
var Commit = ""

// String is the version and, when stamped, the commit: "v0.2.0 (commit 62e7dd2)".
func String() string {
	if Commit == "" {
		return Version
	}
	c := Commit
	if len(c) > 12 {
		c = c[:12]
	}
	return Version + " (commit " + c + ")"
}
