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
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/memory"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
)

// TestShownExpiry: Ready follows the token the target Secret holds. A newer held token that has
// not reached the Secret (its refresh-token store failed, so the pass ended before the target
// write) leaves the Secret's token, still valid, in force.
func TestShownExpiry(t *testing.T) {
	old := &memory.Token{AccessToken: "old", ExpiresAt: t0.Add(time.Hour)}
	fresh := &memory.Token{AccessToken: "new", ExpiresAt: t0.Add(2 * time.Hour)}
	tests := map[string]struct {
		inSecret    string        // the token value in the target Secret
		held, shown *memory.Token // the held token; the token last written to the Secret
		want        time.Time
	}{
		"the Secret holds the held token":          {inSecret: "new", held: fresh, shown: fresh, want: fresh.ExpiresAt},
		"a newer token is not written yet":         {inSecret: "old", held: fresh, shown: old, want: old.ExpiresAt},
		"the Secret holds something else":          {inSecret: "tampered", held: fresh, shown: old},
		"nothing known (after a restart, no held)": {inSecret: "old"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tok := &v1alpha1.DingTalkToken{}
			// The passes compare views of Secrets (no values, digests).
			s := ownedsecret.View(targetOf(tok, map[string][]byte{tok.TargetKey(): []byte(tc.inSecret)}), false)
			if got := shownExpiry(tok.TargetKey(), s, tc.held, tc.shown); !got.Equal(tc.want) {
				t.Errorf("shownExpiry() = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestTargetDataCorpID: .CorpID is the org of the token: DingTalk's answer (User), else, for a
// ThirdPartyApp token (corpAccessToken answers no corpId), spec.corpId.
func TestTargetDataCorpID(t *testing.T) {
	tests := map[string]struct {
		typ      v1alpha1.TokenType // spec.type
		specCorp string             // spec.corpId
		heldCorp string             // the corpId held with the token
		want     string             // the rendered .CorpID
	}{
		"third-party app recovered after a restart": {typ: v1alpha1.TokenTypeThirdPartyApp, specCorp: "dingspec", want: "dingspec"},
		"third-party app as issued":                 {typ: v1alpha1.TokenTypeThirdPartyApp, specCorp: "dingnew", heldCorp: "dingissued", want: "dingissued"},
		"user: DingTalk's answer":                   {typ: v1alpha1.TokenTypeUser, heldCorp: "dinguser", want: "dinguser"},
		"internal app: none":                        {typ: v1alpha1.TokenTypeInternalApp, want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := specOfDingTalkToken(&v1alpha1.DingTalkToken{Spec: v1alpha1.DingTalkTokenSpec{
				Type:   tc.typ,
				Target: &v1alpha1.Target{Template: &v1alpha1.TargetTemplate{Data: map[string]string{"corp": "{{ .CorpID }}"}}},
			}})
			spec.CorpID = tc.specCorp
			d, err := targetSecret(spec, &memory.Token{AccessToken: "tok", CorpID: tc.heldCorp, ExpiresAt: t0}, types.NamespacedName{})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(d.Data["corp"]); got != tc.want {
				t.Errorf(".CorpID = %q, want %q", got, tc.want)
			}
		})
	}
}

// targetOf is tok's target Secret, owned by tok, holding data.
func targetOf(tok *v1alpha1.DingTalkToken, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "tok", UID: "secret-uid", ResourceVersion: "7",
			Labels: ownedsecret.ManagedLabels(nil),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: kindToken,
				Name: "tok", UID: tok.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Data: data,
	}
}
