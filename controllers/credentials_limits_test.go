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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/credwatch"
)

// TestOversizedCredential: a value over 4 KiB under a key the type reads is CredentialsInvalid,
// naming the Secret and the key and never the value; keys the type does not read are ignored.
func TestOversizedCredential(t *testing.T) {
	big := strings.Repeat("s", credwatch.MaxValue+1)
	tests := map[string]struct {
		typ     v1alpha1.TokenType // the DingTalkToken's type
		keys    *v1alpha1.CredentialKeys
		data    map[string]string // the credentials Secret
		wantKey string            // the key named in CredentialsInvalid; "" when accepted
	}{
		"4 KiB exactly":                {typ: v1alpha1.TokenTypeInternalApp, data: map[string]string{"appKey": "k", "appSecret": strings.Repeat("s", credwatch.MaxValue)}},
		"app secret over 4 KiB":        {typ: v1alpha1.TokenTypeInternalApp, data: map[string]string{"appKey": "k", "appSecret": big}, wantKey: "appSecret"},
		"a key the type does not read": {typ: v1alpha1.TokenTypeInternalApp, data: map[string]string{"appKey": "k", "appSecret": "s", "suiteTicket": big}},
		"suite ticket":                 {typ: v1alpha1.TokenTypeThirdPartySuite, data: map[string]string{"suiteTicket": big}, wantKey: "suiteTicket"},
		"user auth code":               {typ: v1alpha1.TokenTypeUser, data: map[string]string{"authCode": big}, wantKey: "authCode"},
		"user bootstrap refresh token": {typ: v1alpha1.TokenTypeUser, data: map[string]string{"refreshToken": big}, wantKey: "refreshToken"},
		"a mapped key": {typ: v1alpha1.TokenTypeInternalApp, keys: &v1alpha1.CredentialKeys{AppSecret: "APP_SECRET"},
			data: map[string]string{"APP_SECRET": big, "appSecret": "s"}, wantKey: "APP_SECRET"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Data: map[string][]byte{}}
			for k, v := range tc.data {
				s.Data[k] = []byte(v)
			}
			spec := specOfDingTalkToken(&v1alpha1.DingTalkToken{Spec: v1alpha1.DingTalkTokenSpec{
				Type: tc.typ, CredentialsRef: v1alpha1.CredentialsReference{Name: "creds", Keys: tc.keys}}})
			keys := readKeys(spec)
			s.ResourceVersion = "1"
			data := credwatch.New(nil, nil).Remember(s, keys)
			for k, v := range data.Keys {
				if len(v) > credwatch.MaxValue {
					t.Fatalf("the %d-byte value of %q was kept", len(v), k)
				}
			}
			f := oversizedCredential(s.Name, data, keys)
			if tc.wantKey == "" {
				if f != nil {
					t.Fatalf("refused: %s", f.message)
				}
				return
			}
			if f == nil || f.reason != v1alpha1.ReasonCredentialsInvalid {
				t.Fatalf("got %v, want CredentialsInvalid", f)
			}
			if !strings.Contains(f.message, `"creds"`) || !strings.Contains(f.message, `"`+tc.wantKey+`"`) || strings.Contains(f.message, "sss") {
				t.Fatalf("message %q: want the Secret and key %q named, the value never", f.message, tc.wantKey)
			}
		})
	}
}
