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
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// tokenSpec is what the shared machinery (credentials, the refresh decision, the shared fetch,
// the target layout) reads of a token kind's spec, whatever the kind.
type tokenSpec struct {
	Type v1alpha1.TokenType
	// Credentials names the credentials Secret.
	Credentials types.NamespacedName
	// Keys are the credentials Secret's keys, the defaults filled in.
	Keys          v1alpha1.CredentialKeys
	CorpID        string
	RefreshBefore *metav1.Duration
	Suspend       bool
	// TargetKey is the key of the token in a target Secret; Template shapes the rest of it.
	TargetKey string
	Template  *v1alpha1.TargetTemplate
	// RefreshRequest is the refresh-requested-at annotation's value ("": none).
	RefreshRequest string
	// TicketSource is where the suite ticket comes from (Secret for the types without one), and
	// TicketSecret the Secret that keeps the tickets pushed over DingTalk Stream mode.
	TicketSource v1alpha1.SuiteTicketSource
	TicketSecret types.NamespacedName
}

// specOfDingTalkToken is a DingTalkToken's tokenSpec: its credentials Secret is in its namespace.
func specOfDingTalkToken(tok *v1alpha1.DingTalkToken) tokenSpec {
	s := tokenSpec{
		Type:           tok.Spec.Type,
		Credentials:    types.NamespacedName{Namespace: tok.Namespace, Name: tok.Spec.CredentialsRef.Name},
		Keys:           tok.Spec.CredentialsRef.Keys.WithDefaults(),
		CorpID:         tok.Spec.CorpID,
		RefreshBefore:  tok.Spec.RefreshBefore,
		Suspend:        tok.Spec.Suspend,
		TargetKey:      tok.TargetKey(),
		RefreshRequest: tok.Annotations[v1alpha1.RefreshRequestedAtAnnotation],
		TicketSource:   tok.TicketSource(),
		TicketSecret:   types.NamespacedName{Namespace: tok.Namespace, Name: tok.SuiteTicketSecretName()},
	}
	if tok.Spec.Target != nil {
		s.Template = tok.Spec.Target.Template
	}
	return s
}

// refreshRequestedAt parses a refresh-requested-at value: the requested time, rounded up to whole
// seconds like the issue times it is compared with (a token issued in the second of a request with
// a fraction may predate it), or why it is ignored. A time up to requestSkew ahead
// (the requester's clock running ahead of ours) is honoured when it comes, not before: a token
// issued earlier would not be newer than the request, and would be fetched again.
func refreshRequestedAt(value string, now time.Time) (time.Time, string) {
	if value == "" {
		return time.Time{}, ""
	}
	t, err := time.Parse(time.RFC3339, value)
	switch {
	case err != nil:
		return time.Time{}, "is not an RFC 3339 time such as 2026-11-25T14:50:12Z"
	case t.After(now.Add(requestSkew)):
		return time.Time{}, "lies in the future"
	case t.Equal(t.Truncate(time.Second)):
		return t, ""
	default:
		return t.Truncate(time.Second).Add(time.Second), ""
	}
}
