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
