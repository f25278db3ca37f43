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

package memory

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/refreshtoken"
)

// TestHolderOf: the refresh token memory holds for one DingTalkToken is found as another's
// bootstrap value; one's own is not a conflict.
func TestHolderOf(t *testing.T) {
	m := New()
	a, b := types.NamespacedName{Namespace: "ns", Name: "a"}, types.NamespacedName{Namespace: "ns", Name: "b"}
	m.SetUser(a, refreshtoken.Record{UID: "ua", RefreshToken: "rt-a"})
	if got := m.HolderOf("rt-a", b); got != a {
		t.Errorf("holderOf(a's token) for b = %v, want %v", got, a)
	}
	if got := m.HolderOf("rt-a", a); got.Name != "" {
		t.Errorf("holderOf(a's token) for a = %v, want none", got)
	}
	if got := m.HolderOf("", b); got.Name != "" {
		t.Errorf("holderOf(\"\") = %v, want none", got)
	}
}

// TestClaimsBounded: an object re-authorized again and again holds one claim, not one per value
// it ever used; another object's claim stands; forgetting an object drops its claim.
func TestClaimsBounded(t *testing.T) {
	m := New()
	a, b := types.NamespacedName{Namespace: "ns", Name: "a"}, types.NamespacedName{Namespace: "ns", Name: "b"}
	if got := m.Claim("b-code", b, "ub"); got != b {
		t.Fatalf("b's claim = %v", got)
	}
	for i := range 100 {
		if got := m.Claim(fmt.Sprintf("code-%d", i), a, "ua"); got != a {
			t.Fatalf("claim %d = %v, want a", i, got)
		}
	}
	if len(m.claims) != 2 {
		t.Errorf("after 100 re-authorizations: %d claims, want 2 (a's newest and b's)", len(m.claims))
	}
	if got := m.Claim("b-code", a, "ua"); got != b {
		t.Errorf("a took b's value: claimant %v", got)
	}
	m.Forget(a)
	if len(m.claims) != 1 {
		t.Errorf("after forgetting a: %d claims, want 1", len(m.claims))
	}
}
