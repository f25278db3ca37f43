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

package suiteticket

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// TestSuiteTag: a stored ticket is tied to the suiteKey it was pushed for, read back from its
// Secret; one an earlier version stored (no tag) is taken for any suiteKey; the tag does not hold
// the suiteKey. A ticket over 4 KiB is named oversized.
func TestSuiteTag(t *testing.T) {
	pushed := Ticket{UID: "uid-1", Value: "ticket-1", BornAt: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC), Suite: SuiteTag("ticket-1", "suite-a")}
	d := desired(types.NamespacedName{Namespace: "ns", Name: "tok-suite-ticket"}, pushed)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: d.Annotations}, Data: d.Data}
	back := Of("uid-1", secret)
	legacy := *back
	legacy.Suite = ""
	big := &corev1.Secret{Data: map[string][]byte{v1alpha1.SuiteTicketKey: []byte(strings.Repeat("x", v1alpha1.MaxCredentialValueSize+1))}}
	for name, ok := range map[string]bool{
		"read back as pushed":            back != nil && *back == pushed,
		"for its suite":                  back.For("suite-a"),
		"not for another suite":          !back.For("suite-b"),
		"the tag does not hold the key":  !strings.Contains(d.Annotations[v1alpha1.SuiteTicketSuiteAnnotation], "suite-a"),
		"an untagged one: for any suite": legacy.For("suite-a") && legacy.For("suite-b"),
		"over 4 KiB: oversized":          Oversized(big),
		"a ticket as pushed: not":        !Oversized(secret),
	} {
		if !ok {
			t.Error(name)
		}
	}
}
