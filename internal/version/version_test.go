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

package version

import "testing"

func TestString(t *testing.T) {
	for name, tc := range map[string]struct {
		version, commit string // what -ldflags -X stamped
		want            string
	}{
		"release":     {"v1.2.3", "abc1234", "v1.2.3 (commit abc1234)"},
		"full commit": {"v1.2.3", "0123456789abcdef0123456789abcdef01234567", "v1.2.3 (commit 0123456789ab)"},
		"unstamped":   {"dev", "", "dev"},
	} {
		t.Run(name, func(t *testing.T) {
			v, c := Version, Commit
			t.Cleanup(func() { Version, Commit = v, c })
			Version, Commit = tc.version, tc.commit
			if got := String(); got != tc.want {
				t.Errorf("String = %q, want %q", got, tc.want)
			}
		})
	}
}
