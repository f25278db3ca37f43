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
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/refreshtoken"
)

// TestDigester: the digests the pass makes of credentials and bootstrap values recognise those an
// earlier version keyed by the UID alone (an upgrade is no credentials change, and replays no used
// bootstrap value). The digests themselves: package digest's TestDigester.
func TestDigester(t *testing.T) {
	const uid = types.UID("uid-1")
	a := digest.New([]byte(strings.Repeat("a", 32)))
	creds := &credentials{typ: v1alpha1.TokenTypeInternalApp}
	creds.app.AppKey, creds.app.AppSecret = "k", "s"
	for name, ok := range map[string]bool{
		"credentials: an upgrade is no change":       creds.isDigest(a, digest.UIDKeyed(uid, creds.values()...), uid),
		"credentials: its own digest":                creds.isDigest(a, creds.digest(a, uid), uid),
		"bootstrap: the UID-keyed used list is read": refreshtoken.Record{Used: []string{digest.UIDKeyed(uid, "bootstrap", "code")}}.UsedValue(a, uid, "code"),
		"bootstrap: another value is not used":       !refreshtoken.Record{Used: []string{a.Bootstrap(uid, "code")}}.UsedValue(a, uid, "code2"),
	} {
		if !ok {
			t.Error(name)
		}
	}
}
