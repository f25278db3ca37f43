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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// The kinds, as the passes name them in messages, logs and the record of their writes.
const (
	kindToken   = "DingTalkToken"
	kindCluster = "ClusterDingTalkToken"
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

// specOfClusterDingTalkToken is a ClusterDingTalkToken's tokenSpec: its credentials Secret, and
// the Secret keeping its pushed suite tickets, are in the namespace its credentialsRef names.
func specOfClusterDingTalkToken(tok *v1alpha1.ClusterDingTalkToken) tokenSpec {
	ref := tok.Spec.CredentialsRef
	ticketNS, ticketName := tok.SuiteTicketSecretKey()
	return tokenSpec{
		Type:           tok.Spec.Type,
		Credentials:    types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name},
		Keys:           ref.Keys.WithDefaults(),
		CorpID:         tok.Spec.CorpID,
		RefreshBefore:  tok.Spec.RefreshBefore,
		Suspend:        tok.Spec.Suspend,
		TargetKey:      tok.TargetKey(),
		Template:       tok.Spec.Target.Template,
		RefreshRequest: tok.Annotations[v1alpha1.RefreshRequestedAtAnnotation],
		TicketSource:   tok.TicketSource(),
		TicketSecret:   types.NamespacedName{Namespace: ticketNS, Name: ticketName},
	}
}

// specOrRequestChanged lets an update of a token (either kind) through when its spec changed
// (the generation moved) or its refresh-requested-at annotation did: status writes and other
// metadata edits start no pass.
func specOrRequestChanged() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			const a = v1alpha1.RefreshRequestedAtAnnotation
			return e.ObjectOld.GetAnnotations()[a] != e.ObjectNew.GetAnnotations()[a]
		},
	})
}
