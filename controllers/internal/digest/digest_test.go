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

package digest

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// TestDigester: digests are keyed by the installation's key (two installations differ, one
// installation is stable), include the UID (two objects with one token differ), and a digest an
// earlier version keyed by the UID alone is recognised, never produced. (What the pass makes of
// it, the credentials and bootstrap digests, is tested in package controllers.)
func TestDigester(t *testing.T) {
	const uid, other = types.UID("uid-1"), types.UID("uid-2")
	a, b := New([]byte(strings.Repeat("a", 32))), New([]byte(strings.Repeat("b", 32)))
	again := New([]byte(strings.Repeat("a", 32)))
	legacy := UIDKeyed(uid, "token", "tok")
	for name, ok := range map[string]bool{
		"two installations differ":   a.Token(uid, "tok") != b.Token(uid, "tok"),
		"one installation is stable": a.Token(uid, "tok") == again.Token(uid, "tok"),
		"two objects differ":         a.Token(uid, "tok") != a.Token(other, "tok"),
		"two tokens differ":          a.Token(uid, "tok") != a.Token(uid, "tok2"),
		"not the UID-keyed digest":   a.Token(uid, "tok") != legacy,
		"prefixed and short":         strings.HasPrefix(a.Token(uid, "tok"), "hmac:") && len(a.Token(uid, "tok")) == len("hmac:")+16,
		"matches its own":            a.Matches(a.Token(uid, "tok"), uid, "token", "tok"),
		"matches the UID-keyed one":  a.Matches(legacy, uid, "token", "tok"),
		"not another installation's": !a.Matches(b.Token(uid, "tok"), uid, "token", "tok"),
		"not another value's":        !a.Matches(a.Token(uid, "tok2"), uid, "token", "tok"),
		"empty matches nothing":      !a.Matches("", uid, "token", "tok"),
		"bootstrap is its own kind":  a.Bootstrap(uid, "code") != a.Of(uid, "token", "code"),
	} {
		if !ok {
			t.Error(name)
		}
	}
}
