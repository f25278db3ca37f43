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

package controllers

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// TestDigester: digests are keyed by the installation's key (two installations differ, one
// installation is stable), include the UID (two objects with one token differ), and a digest an
// earlier version keyed by the UID alone is recognised, never produced.
func TestDigester(t *testing.T) {
	const uid, other = types.UID("uid-1"), types.UID("uid-2")
	a, b := digester{key: []byte(strings.Repeat("a", 32))}, digester{key: []byte(strings.Repeat("b", 32))}
	again := digester{key: []byte(strings.Repeat("a", 32))}
	legacy := uidDigest(uid, "token", "tok")
	creds := &credentials{typ: v1alpha1.TokenTypeInternalApp}
	creds.app.AppKey, creds.app.AppSecret = "k", "s"
	for name, ok := range map[string]bool{
		"two installations differ":                   a.token(uid, "tok") != b.token(uid, "tok"),
		"one installation is stable":                 a.token(uid, "tok") == again.token(uid, "tok"),
		"two objects differ":                         a.token(uid, "tok") != a.token(other, "tok"),
		"two tokens differ":                          a.token(uid, "tok") != a.token(uid, "tok2"),
		"not the UID-keyed digest":                   a.token(uid, "tok") != legacy,
		"prefixed and short":                         strings.HasPrefix(a.token(uid, "tok"), "hmac:") && len(a.token(uid, "tok")) == len("hmac:")+16,
		"matches its own":                            a.matches(a.token(uid, "tok"), uid, "token", "tok"),
		"matches the UID-keyed one":                  a.matches(legacy, uid, "token", "tok"),
		"not another installation's":                 !a.matches(b.token(uid, "tok"), uid, "token", "tok"),
		"not another value's":                        !a.matches(a.token(uid, "tok2"), uid, "token", "tok"),
		"empty matches nothing":                      !a.matches("", uid, "token", "tok"),
		"credentials: an upgrade is no change":       a.sameCredentials(uidDigest(uid, creds.values()...), uid, creds),
		"bootstrap: the UID-keyed used list is read": userRecord{Used: []string{uidDigest(uid, "bootstrap", "code")}}.usedValue(a, uid, "code"),
		"bootstrap: another value is not used":       !userRecord{Used: []string{a.bootstrap(uid, "code")}}.usedValue(a, uid, "code2"),
	} {
		if !ok {
			t.Error(name)
		}
	}
}
