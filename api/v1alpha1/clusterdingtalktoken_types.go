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

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReasonTargetWriteFailed is the reason of a namespace of a ClusterDingTalkToken whose target
// Secret the API server did not accept (a quota, a namespace being deleted, ...).
const ReasonTargetWriteFailed = "TargetWriteFailed"

// ReasonSelectorInvalid is Ready's reason when a ClusterDingTalkToken's namespaceSelector cannot
// be used.
const ReasonSelectorInvalid = "SelectorInvalid"

// MaxFailedNamespaces bounds status.failedNamespaces of a ClusterDingTalkToken.
const MaxFailedNamespaces = 20

// ClusterCredentialsReference names the Secret, in one namespace, that holds the credentials.
type ClusterCredentialsReference struct {
	// namespace of the credentials Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="spec.credentialsRef.namespace must be a namespace name (a DNS-1123 label): lower-case letters, digits and '-', starting and ending with a letter or digit"
	Namespace string `json:"namespace"`
	// name of the credentials Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.credentialsRef.name must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	Name string `json:"name"`
	// keys maps each credential to its key in the Secret. Unset fields use the defaults:
	// appKey, appSecret, suiteKey, suiteSecret, suiteTicket.
	// +optional
	Keys *CredentialKeys `json:"keys,omitempty"`
}

// ClusterTarget describes the Secret written into every selected namespace.
// +kubebuilder:validation:XValidation:rule="!has(self.key) || (self.key != 'expiresAt' && self.key != 'corpId')",message="spec.target.key may not be expiresAt or corpId: the operator writes those keys",fieldPath=".key"
// +kubebuilder:validation:XValidation:rule="!has(self.template) || !has(self.template.data) || !self.template.data.exists(k, k == (has(self.key) ? self.key : 'accessToken') || k == 'expiresAt' || k == 'corpId')",message="spec.target.template.data keys may not be the token key (spec.target.key), expiresAt or corpId",fieldPath=".template.data"
type ClusterTarget struct {
	// name of the Secret written into every selected namespace. Required, immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.target.name must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.target.name is immutable: create a new ClusterDingTalkToken to write another Secret"
	Name string `json:"name"`
	// key of the access token in each target Secret.
	// +optional
	// +kubebuilder:default=accessToken
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
	// template adds labels, annotations and templated keys to each target Secret, as in a
	// DingTalkToken.
	// +optional
	Template *TargetTemplate `json:"template,omitempty"`
}

// ClusterDingTalkTokenSpec is the desired token, and the namespaces it is written into.
// +kubebuilder:validation:XValidation:rule="self.type == 'ThirdPartyApp' ? has(self.corpId) : !has(self.corpId)",message="spec.corpId is required when spec.type is ThirdPartyApp (the authorizing organisation) and must not be set for any other type",fieldPath=".corpId"
// +kubebuilder:validation:XValidation:rule="self.target.name != self.credentialsRef.name",message="spec.target.name must differ from spec.credentialsRef.name: the operator never writes into the credentials Secret",fieldPath=".target.name"
// +kubebuilder:validation:XValidation:rule="!has(self.suiteTicket) || self.type == 'ThirdPartyApp' || self.type == 'ThirdPartySuite'",message="spec.suiteTicket is only for the types that use a suite ticket (ThirdPartyApp, ThirdPartySuite): remove it for InternalApp",fieldPath=".suiteTicket"
type ClusterDingTalkTokenSpec struct {
	// type of DingTalk token: InternalApp, ThirdPartyApp (for the organisation in spec.corpId) or
	// ThirdPartySuite. User tokens belong to one person and are never fanned out. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self != 'User'",message="spec.type User is not allowed in a ClusterDingTalkToken: a user's token belongs to one person; use a DingTalkToken"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.type is immutable: create a new ClusterDingTalkToken for another type"
	Type TokenType `json:"type"`

	// credentialsRef names the Secret, in the namespace it gives, holding the credentials the
	// type needs: InternalApp: appKey, appSecret. ThirdPartyApp and ThirdPartySuite: suiteKey,
	// suiteSecret, suiteTicket.
	// +required
	CredentialsRef ClusterCredentialsReference `json:"credentialsRef"`

	// The fields both kinds share: corpId, refreshBefore, suspend, suiteTicket.
	TokenSpecCommon `json:",inline"`

	// namespaceSelector picks the namespaces the token is written into. Required; an empty
	// selector ({}) selects every namespace. Whoever can create or label a Namespace so that it
	// matches receives the token: select by kubernetes.io/metadata.name (set by the API server
	// alone), or by a label only the platform team may set.
	// +required
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector"`

	// target is the Secret written into each selected namespace.
	// +required
	Target ClusterTarget `json:"target"`
}

// NamespaceCounts counts the namespaces of a ClusterDingTalkToken.
type NamespaceCounts struct {
	// matched is how many namespaces the selector picks (namespaces being deleted excluded).
	Matched int32 `json:"matched"`
	// provisioned is how many of them hold the current token.
	Provisioned int32 `json:"provisioned"`
	// failed is how many of them could not be written.
	Failed int32 `json:"failed"`
	// summary is "provisioned/matched", for kubectl's NAMESPACES column.
	// +kubebuilder:validation:MaxLength=32
	Summary string `json:"summary"`
}

// FailedNamespace is a namespace whose target Secret could not be written.
type FailedNamespace struct {
	// namespace that failed.
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// reason: TargetConflict (a Secret of that name not owned by this ClusterDingTalkToken),
	// TemplateInvalid or TargetWriteFailed.
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason"`
	// message says what happened, without any secret.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
}

// ClusterDingTalkTokenStatus is the observed state of a ClusterDingTalkToken. It never holds a
// token or a credential.
type ClusterDingTalkTokenStatus struct {
	TokenStatus `json:",inline"`

	// namespaces counts the selected, provisioned and failed namespaces.
	// +optional
	Namespaces *NamespaceCounts `json:"namespaces,omitempty"`

	// failedNamespaces lists, in name order, the first namespaces that could not be written.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	// +listType=atomic
	FailedNamespaces []FailedNamespace `json:"failedNamespaces,omitempty"`
}

// ClusterDingTalkToken keeps one DingTalk access token fresh in a Secret of every namespace a
// selector picks, from one credentials Secret, with one DingTalk call per refresh.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cdtt,categories=dingtalk
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Namespaces",type=string,JSONPath=`.status.namespaces.summary`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Refresh",type=string,JSONPath=`.status.refreshTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="!has(self.spec.suiteTicket) || self.spec.suiteTicket.source != 'Stream' || (self.spec.credentialsRef.name != self.metadata.name + '-suite-ticket' && self.spec.target.name != self.metadata.name + '-suite-ticket')",message="with spec.suiteTicket.source Stream, spec.credentialsRef.name and spec.target.name may not be <metadata.name>-suite-ticket: the operator keeps the pushed suite ticket there",fieldPath=".spec"
type ClusterDingTalkToken struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired token and where it goes.
	// +required
	Spec ClusterDingTalkTokenSpec `json:"spec"`

	// status is the observed state of the token.
	// +optional
	Status ClusterDingTalkTokenStatus `json:"status,omitempty"`
}

// ClusterDingTalkTokenList is a list of ClusterDingTalkTokens.
// +kubebuilder:object:root=true
type ClusterDingTalkTokenList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterDingTalkToken `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ClusterDingTalkToken{}, &ClusterDingTalkTokenList{})
}

// TargetKey is the key of the access token in each target Secret.
func (t *ClusterDingTalkToken) TargetKey() string {
	if t.Spec.Target.Key != "" {
		return t.Spec.Target.Key
	}
	return DefaultTargetKey
}

// SuiteTicketSecretKey names the Secret keeping the newest suite ticket pushed over DingTalk
// Stream mode: <metadata.name>-suite-ticket in the credentials Secret's namespace, beside the
// credentials it belongs with (a cluster-scoped object has no namespace of its own).
func (t *ClusterDingTalkToken) SuiteTicketSecretKey() (namespace, name string) {
	return t.Spec.CredentialsRef.Namespace, t.Name + SuiteTicketSecretSuffix
}

// TicketSource is where the token's suite ticket comes from (Secret unless spec.suiteTicket says
// Stream; always Secret for InternalApp).
func (t *ClusterDingTalkToken) TicketSource() SuiteTicketSource {
	if t.Spec.Type != TokenTypeThirdPartyApp && t.Spec.Type != TokenTypeThirdPartySuite {
		return SuiteTicketSourceSecret
	}
	return TicketSourceOf(t.Spec.SuiteTicket)
}
