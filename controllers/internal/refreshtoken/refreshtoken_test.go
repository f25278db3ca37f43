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

package refreshtoken

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
)

// TestNextStoreStep: a rotated refresh token is written over the refresh token it consumed, over
// itself (a write whose answer was lost) or into a deleted Secret; any other refresh token in
// the Secret is another writer's, newer: adopted, never overwritten.
func TestNextStoreStep(t *testing.T) {
	rotated := Record{RefreshToken: "r2", Consumed: "r1"}
	stored := Record{RefreshToken: "r2", Consumed: "r2", Stored: true}
	bootstrap := Record{RefreshToken: "r1"} // a first grant: nothing stored before
	tests := map[string]struct {
		rec    Record // what the operator would write
		exists bool   // whether the Secret exists
		live   string // the refresh token the Secret holds
		want   storeStep
	}{
		"the Secret holds the consumed token":         {rec: rotated, exists: true, live: "r1", want: storeWrite},
		"the Secret holds the rotated one already":    {rec: rotated, exists: true, live: "r2", want: storeWrite},
		"the Secret was deleted meanwhile":            {rec: rotated, live: "", want: storeWrite},
		"another writer stored r3 meanwhile":          {rec: rotated, exists: true, live: "r3", want: storeAdopt},
		"another writer emptied it: no token to keep": {rec: rotated, exists: true, live: "", want: storeWrite},
		"a stored record, the Secret deleted":         {rec: stored, live: "", want: storeWrite},
		"a stored record, the used list edited":       {rec: stored, exists: true, live: "r2", want: storeWrite},
		"a stored record, another token written":      {rec: stored, exists: true, live: "r9", want: storeAdopt},
		"a first grant, no Secret yet":                {rec: bootstrap, live: "", want: storeWrite},
		"a first grant, a Secret written meanwhile":   {rec: bootstrap, exists: true, live: "r7", want: storeAdopt},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := nextStoreStep(tc.rec, tc.exists, tc.live); got != tc.want {
				t.Errorf("nextStoreStep = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestUsedSurvivesANewDigestKey: a bootstrap value marked used is recognised under the record's
// own salt, whatever the installation key (a new digest key must not make a used authCode look
// new); the salt is kept in the Secret, and read back with the list; a value listed by an earlier
// version under the installation key alone is recognised under that key only.
func TestUsedSurvivesANewDigestKey(t *testing.T) {
	const uid = types.UID("uid-1")
	oldKey, newKey := digest.New([]byte(strings.Repeat("a", 32))), digest.New([]byte(strings.Repeat("b", 32)))
	var rec Record
	rec.MarkUsed(uid, "code-1")
	rec.MarkUsed(uid, "code-1")
	if len(rec.Used) != 1 || rec.Salt == "" {
		t.Fatalf("marked twice: used %v, salt %q", rec.Used, rec.Salt)
	}
	tok := &v1alpha1.DingTalkToken{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "user"}}
	back := FromSecret(uid, &corev1.Secret{Data: rec.Desired(tok).Data})
	for name, ok := range map[string]bool{
		"used under the old key":        back.UsedValue(oldKey, uid, "code-1"),
		"used under a new key":          back.UsedValue(newKey, uid, "code-1"),
		"another value is not used":     !back.UsedValue(newKey, uid, "code-2"),
		"another object's is not":       !back.UsedValue(newKey, "uid-2", "code-1"),
		"the salt is read back":         back.Salt == rec.Salt,
		"legacy entry: under its key":   Record{Used: []string{oldKey.Bootstrap(uid, "code-1")}}.UsedValue(oldKey, uid, "code-1"),
		"legacy entry: not under a new": !Record{Used: []string{oldKey.Bootstrap(uid, "code-1")}}.UsedValue(newKey, uid, "code-1"),
		"the list stays at 16": func() bool {
			r := rec
			for i := range 40 {
				r.MarkUsed(uid, strings.Repeat("c", i+1))
			}
			return len(r.Used) == 16
		}(),
	} {
		if !ok {
			t.Error(name)
		}
	}
}

// TestOversized: a refresh-token Secret holding a value over 4 KiB, under either key the operator
// reads, is named; Save neither adopts nor overwrites it.
func TestOversized(t *testing.T) {
	big := []byte(strings.Repeat("x", v1alpha1.MaxCredentialValueSize+1))
	for key, want := range map[string]string{v1alpha1.RefreshTokenKey: v1alpha1.RefreshTokenKey, v1alpha1.UsedBootstrapKey: v1alpha1.UsedBootstrapKey, "other": ""} {
		if got := Oversized(&corev1.Secret{Data: map[string][]byte{key: big}}); got != want {
			t.Errorf("%s over the cap: Oversized = %q, want %q", key, got, want)
		}
	}
	if got := Oversized(&corev1.Secret{Data: map[string][]byte{v1alpha1.RefreshTokenKey: big[:v1alpha1.MaxCredentialValueSize]}}); got != "" {
		t.Errorf("4 KiB exactly: Oversized = %q", got)
	}
	rec := Record{UID: "uid-1", RefreshToken: "r2", Consumed: "r1"}
	_, conflicted, err := Secret{Owner: &v1alpha1.DingTalkToken{}}.Save(context.Background(), rec,
		&corev1.Secret{Data: map[string][]byte{v1alpha1.RefreshTokenKey: big}})
	if _, ok := errors.AsType[*OversizedError](err); !ok || conflicted {
		t.Errorf("Save over an oversized Secret: conflicted %v, err %v; want OversizedError", conflicted, err)
	}
}
