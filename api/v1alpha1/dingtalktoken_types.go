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

// TokenType names the kind of DingTalk access token to fetch.
// +kubebuilder:validation:Enum=InternalApp;ThirdPartyApp;ThirdPartySuite;User
type TokenType string

const (
	// TokenTypeInternalApp is an internal (self-built) app's token, from appKey and appSecret
	// (POST /v1.0/oauth2/accessToken).
	TokenTypeInternalApp TokenType = "InternalApp"
	// TokenTypeThirdPartyApp is a third-party app's token for one authorizing organisation
	// (corp token), from suiteKey, suiteSecret, suiteTicket and spec.corpId
	// (POST /v1.0/oauth2/corpAccessToken).
	TokenTypeThirdPartyApp TokenType = "ThirdPartyApp"
	// TokenTypeThirdPartySuite is a third-party suite's own token, from suiteKey, suiteSecret and
	// suiteTicket (POST /v1.0/oauth2/suiteAccessToken).
	TokenTypeThirdPartySuite TokenType = "ThirdPartySuite"
	// TokenTypeUser is a user's OAuth2 token, from clientId, clientSecret and a refreshToken or a
	// one-time authCode (POST /v1.0/oauth2/userAccessToken).
	TokenTypeUser TokenType = "User"
)

// Default keys of the credentials Secret, one per CredentialKeys field.
const (
	DefaultAppKeyKey       = "appKey"
	DefaultAppSecretKey    = "appSecret"
	DefaultSuiteKeyKey     = "suiteKey"
	DefaultSuiteSecretKey  = "suiteSecret"
	DefaultSuiteTicketKey  = "suiteTicket"
	DefaultClientIDKey     = "clientId"
	DefaultClientSecretKey = "clientSecret"
	DefaultRefreshTokenKey = "refreshToken"
	DefaultAuthCodeKey     = "authCode"
)

// Keys and names of the Secrets the operator writes.
const (
	// DefaultTargetKey is the key of the access token in the target Secret.
	DefaultTargetKey = "accessToken"
	// ExpiresAtKey is the target Secret key holding the token's expiry (RFC 3339, UTC).
	ExpiresAtKey = "expiresAt"
	// CorpIDKey is the target Secret key holding the user's corpId (User tokens only).
	CorpIDKey = "corpId"
	// RefreshTokenKey is the key of the newest refresh token in the <name>-refresh-token Secret.
	RefreshTokenKey = "refreshToken"
	// RefreshTokenSecretSuffix names the Secret that keeps a User token's newest refresh token.
	RefreshTokenSecretSuffix = "-refresh-token"

	// ManagedByLabel selects the Secrets the operator manages (and caches).
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of ManagedByLabel on managed Secrets.
	ManagedByValue = "dingtalk-token-operator"
	// ExpiresAtAnnotation on the target Secret holds the token's expiry (RFC 3339, UTC).
	ExpiresAtAnnotation = "dingtalk.tokens.dev/expires-at"
	// TokenDigestAnnotation is set on rollout restart targets' pod templates to the tokenDigest.
	TokenDigestAnnotation = "dingtalk.tokens.dev/token-digest"
	// RestartedAtAnnotation is set beside TokenDigestAnnotation on a rollout restart target's pod
	// template to the time of the restart (RFC 3339, UTC); it enforces one restart per 10 minutes.
	RestartedAtAnnotation = "dingtalk.tokens.dev/restarted-at"
	// RefreshRequestedAtAnnotation on a DingTalkToken asks for one refresh: when its value (an
	// RFC 3339 time) is newer than status.lastRefreshTime, the next pass refreshes the token,
	// within the call budget and the backoff. `kubectl dingtalk refresh` sets it to the current time.
	RefreshRequestedAtAnnotation = "dingtalk.tokens.dev/refresh-requested-at"
	// UsedBootstrapKey is the key of the <name>-refresh-token Secret listing digests (HMACs keyed
	// by the installation's digest key, of the DingTalkToken's UID and the value) of the bootstrap
	// refreshToken/authCode values already used, one a line.
	UsedBootstrapKey = "usedBootstrap"
	// SuiteTicketSecretSuffix names the Secret that keeps the newest suite ticket DingTalk pushed
	// over Stream mode to a token with spec.suiteTicket.source Stream.
	SuiteTicketSecretSuffix = "-suite-ticket"
	// SuiteTicketKey is the key of the suite ticket in the <name>-suite-ticket Secret.
	SuiteTicketKey = "suiteTicket"
	// SuiteTicketPushedAtAnnotation on the <name>-suite-ticket Secret is when DingTalk pushed the
	// ticket it holds (the event's eventBornTime, RFC 3339 with milliseconds, UTC): the newest wins.
	SuiteTicketPushedAtAnnotation = "dingtalk.tokens.dev/suite-ticket-pushed-at"
	// SuiteTicketSuiteAnnotation on the <name>-suite-ticket Secret ties the ticket it holds to the
	// suiteKey it was pushed for (an HMAC keyed by the ticket, never the suiteKey): after a
	// suiteKey change, the old suite's ticket is never used.
	SuiteTicketSuiteAnnotation = "dingtalk.tokens.dev/suite-ticket-suite"
)

// MaxCredentialValueSize is the largest credential value the operator accepts (4 KiB): a key, a
// secret, a suite ticket, a code or a refresh token, whether in a credentials Secret or read back
// from the operator's own Secrets.
const MaxCredentialValueSize = 4 << 10

// Condition types.
const (
	// ConditionReady is True while the target Secret holds a token that has not expired.
	ConditionReady = "Ready"
	// ConditionRefreshed is the outcome of the last refresh attempt.
	ConditionRefreshed = "Refreshed"
	// ConditionTicketStream is set on tokens with spec.suiteTicket.source Stream: True
	// (ReasonConnected) while the operator's DingTalk Stream connection for the suite is open,
	// False (ReasonStreamUnavailable or ReasonCredentialsRejected) while it is not.
	ConditionTicketStream = "TicketStream"
)

// Condition reasons.
const (
	ReasonTokenValid              = "TokenValid"
	ReasonTokenIssued             = "TokenIssued"
	ReasonPending                 = "Pending"
	ReasonSuspended               = "Suspended"
	ReasonCredentialsNotFound     = "CredentialsNotFound"
	ReasonCredentialsRejected     = "CredentialsRejected"
	ReasonReauthorizationRequired = "ReauthorizationRequired"
	ReasonCredentialsConflict     = "CredentialsConflict"
	ReasonRateLimited             = "RateLimited"
	ReasonQuotaExceeded           = "QuotaExceeded"
	ReasonProviderUnavailable     = "ProviderUnavailable"
	ReasonTemplateInvalid         = "TemplateInvalid"
	ReasonTargetConflict          = "TargetConflict"
	ReasonRolloutRestartFailed    = "RolloutRestartFailed"

	// ReasonCredentialsInvalid: a credential value is over MaxCredentialValueSize (in the
	// credentials Secret, or read back from the operator's own refresh-token or suite-ticket
	// Secret); it is refused before any call to DingTalk (no DingTalk credential comes near
	// that size).
	ReasonCredentialsInvalid = "CredentialsInvalid"

	// ReasonConnected (TicketStream True): the DingTalk Stream connection of the suite is open;
	// suite tickets arrive by push.
	ReasonConnected = "Connected"
	// ReasonStreamUnavailable (TicketStream False): no open DingTalk Stream connection for the
	// suite yet, or it dropped; the operator reconnects with backoff (1 s doubling to 60 s). The
	// last pushed ticket stays in use. (TicketStream False CredentialsRejected: connections/open
	// refused the suiteKey or suiteSecret; retried every 5 minutes and at once when they change.)
	ReasonStreamUnavailable = "StreamUnavailable"
)

// SuiteTicketSource says where the suite ticket of a ThirdPartyApp or ThirdPartySuite token comes from.
// +kubebuilder:validation:Enum=Secret;Stream
type SuiteTicketSource string

const (
	// SuiteTicketSourceSecret: the credentials Secret's suiteTicket key, kept current by something
	// else (the default).
	SuiteTicketSourceSecret SuiteTicketSource = "Secret"
	// SuiteTicketSourceStream: the operator receives the tickets DingTalk pushes over DingTalk
	// Stream mode itself and keeps the newest in the owned Secret <name>-suite-ticket.
	SuiteTicketSourceStream SuiteTicketSource = "Stream"
)

// SuiteTicketConfig says where the suite ticket comes from.
type SuiteTicketConfig struct {
	// source of the suite ticket. Secret (default): the credentials Secret's suiteTicket key.
	// Stream: the operator's leader holds one DingTalk Stream connection per suite, receives the
	// tickets DingTalk pushes and keeps the newest in the owned Secret <name>-suite-ticket (key
	// suiteTicket), which wins over the credentials Secret's suiteTicket key: that key is then
	// optional and only seeds the first fetch. Enable Stream mode and the suite_ticket event for
	// the suite in DingTalk's developer console.
	// +optional
	// +kubebuilder:default=Secret
	Source SuiteTicketSource `json:"source,omitempty"`
}

// TicketSourceOf returns the source a spec.suiteTicket gives (Secret when unset).
func TicketSourceOf(c *SuiteTicketConfig) SuiteTicketSource {
	if c == nil || c.Source == "" {
		return SuiteTicketSourceSecret
	}
	return c.Source
}

// CredentialKeys says under which key of the credentials Secret each credential sits.
// Every field is optional; unset fields use the default key named in its description.
// Only the fields the token type needs are read.
type CredentialKeys struct {
	// appKey is the Secret key holding the internal app's AppKey (InternalApp). Default "appKey".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	AppKey string `json:"appKey,omitempty"`
	// appSecret is the Secret key holding the internal app's AppSecret (InternalApp). Default "appSecret".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	AppSecret string `json:"appSecret,omitempty"`
	// suiteKey is the Secret key holding the suite's SuiteKey (ThirdPartyApp, ThirdPartySuite). Default "suiteKey".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	SuiteKey string `json:"suiteKey,omitempty"`
	// suiteSecret is the Secret key holding the suite's SuiteSecret (ThirdPartyApp, ThirdPartySuite). Default "suiteSecret".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	SuiteSecret string `json:"suiteSecret,omitempty"`
	// suiteTicket is the Secret key holding the newest suite ticket DingTalk pushed
	// (ThirdPartyApp, ThirdPartySuite). Default "suiteTicket".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	SuiteTicket string `json:"suiteTicket,omitempty"`
	// clientId is the Secret key holding the OAuth2 client id (User). Default "clientId".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	ClientID string `json:"clientId,omitempty"`
	// clientSecret is the Secret key holding the OAuth2 client secret (User). Default "clientSecret".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	ClientSecret string `json:"clientSecret,omitempty"`
	// refreshToken is the Secret key holding a bootstrap refresh token (User). Default "refreshToken".
	// Used once: the operator keeps the rotated refresh token in its own Secret <name>-refresh-token.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	RefreshToken string `json:"refreshToken,omitempty"`
	// authCode is the Secret key holding a one-time OAuth2 authorization code (User). Default "authCode".
	// A new value there re-authorizes the user.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	AuthCode string `json:"authCode,omitempty"`
}

// CredentialsReference names the Secret, in the DingTalkToken's own namespace, that holds the credentials.
type CredentialsReference struct {
	// name of the credentials Secret in the same namespace as the DingTalkToken.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.credentialsRef.name must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	Name string `json:"name"`
	// keys maps each credential to its key in the Secret. Unset fields use the defaults:
	// appKey, appSecret, suiteKey, suiteSecret, suiteTicket, clientId, clientSecret, refreshToken, authCode.
	// +optional
	Keys *CredentialKeys `json:"keys,omitempty"`
}

// TargetTemplateMetadata is copied (not templated) onto the target Secret.
type TargetTemplateMetadata struct {
	// labels added to the target Secret. Keys may not use the dingtalk.tokens.dev/ prefix or
	// app.kubernetes.io/managed-by.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('dingtalk.tokens.dev/') && k != 'app.kubernetes.io/managed-by')",message="spec.target.template.metadata.labels may not use the dingtalk.tokens.dev/ prefix or app.kubernetes.io/managed-by: the operator owns them"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 253 && self[k].size() <= 63)",message="spec.target.template.metadata.labels keys must be at most 253 characters and values at most 63"
	Labels map[string]string `json:"labels,omitempty"`
	// annotations added to the target Secret. Keys may not use the dingtalk.tokens.dev/ prefix or
	// app.kubernetes.io/managed-by.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('dingtalk.tokens.dev/') && k != 'app.kubernetes.io/managed-by')",message="spec.target.template.metadata.annotations may not use the dingtalk.tokens.dev/ prefix or app.kubernetes.io/managed-by: the operator owns them"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 253 && self[k].size() <= 4096)",message="spec.target.template.metadata.annotations keys must be at most 253 characters and values at most 4096"
	Annotations map[string]string `json:"annotations,omitempty"`
}

// TargetTemplate shapes the target Secret beyond the token key.
type TargetTemplate struct {
	// metadata: labels and annotations copied onto the target Secret.
	// +optional
	Metadata *TargetTemplateMetadata `json:"metadata,omitempty"`
	// data adds keys to the target Secret. Each value is a Go text/template over the fields
	// .AccessToken, .ExpiresAt, .Type and .CorpID, with only field actions and the functions
	// quote, b64enc and toJson (range, with, define, template and block are refused).
	// Example: config.json: '{"token":"{{ .AccessToken }}"}'. Keys match ^[-._a-zA-Z0-9]+$ and
	// may not be the token key, expiresAt or corpId. The rendered output is at most 64 KiB.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 253 && k.matches('^[-._a-zA-Z0-9]+$'))",message="spec.target.template.data keys must match ^[-._a-zA-Z0-9]+$ (letters, digits, '-', '_' and '.') and be at most 253 characters"
	// +kubebuilder:validation:XValidation:rule="self.all(k, self[k].size() <= 8192)",message="spec.target.template.data values must be at most 8192 characters"
	Data map[string]string `json:"data,omitempty"`
}

// Target describes the Secret the operator writes the token into.
// +kubebuilder:validation:XValidation:rule="self.key != 'expiresAt' && self.key != 'corpId'",message="spec.target.key may not be expiresAt or corpId: the operator writes those keys",fieldPath=".key"
// +kubebuilder:validation:XValidation:rule="!has(self.template) || !has(self.template.data) || !self.template.data.exists(k, k == self.key || k == 'expiresAt' || k == 'corpId')",message="spec.target.template.data keys may not be the token key (spec.target.key), expiresAt or corpId",fieldPath=".template.data"
type Target struct {
	// name of the Secret to write, in the DingTalkToken's namespace. Defaults to metadata.name.
	// Immutable. It must differ from spec.credentialsRef.name.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.target.name must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	Name string `json:"name,omitempty"`
	// key of the access token in the target Secret.
	// +optional
	// +kubebuilder:default=accessToken
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
	// template adds labels, annotations and templated keys to the target Secret.
	// +optional
	Template *TargetTemplate `json:"template,omitempty"`
}

// WorkloadKind is a kind of workload whose pods can be restarted when the token changes.
// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
type WorkloadKind string

// Workload kinds accepted in rolloutRestartTargets.
const (
	WorkloadKindDeployment  WorkloadKind = "Deployment"
	WorkloadKindStatefulSet WorkloadKind = "StatefulSet"
	WorkloadKindDaemonSet   WorkloadKind = "DaemonSet"
)

// RolloutRestartTarget names a workload in the same namespace to restart when the token value changes.
type RolloutRestartTarget struct {
	// kind of the workload: Deployment, StatefulSet or DaemonSet.
	// +required
	Kind WorkloadKind `json:"kind"`
	// name of the workload in the DingTalkToken's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.rolloutRestartTargets[].name must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	Name string `json:"name"`
}

// TokenSpecCommon is the part of the spec both kinds share (inlined: the fields sit directly
// under spec). Rules that relate them to spec.type are on each kind's spec.
type TokenSpecCommon struct {
	// corpId of the organisation that authorized the suite. Required for ThirdPartyApp,
	// forbidden for the other types.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[-_a-zA-Z0-9]+$`
	CorpID string `json:"corpId,omitempty"`

	// refreshBefore is how long before expiry the token is refreshed, as a duration such as
	// 30m or 1h15m; at least 2m. Default: one third of the token's lifetime. It is clamped to at
	// most half the lifetime.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$') || duration(self) >= duration('2m')",message="spec.refreshBefore must be at least 2m"
	RefreshBefore *metav1.Duration `json:"refreshBefore,omitempty"`

	// suspend stops all calls to DingTalk and all writes for this token; its target Secrets keep
	// what they have. A suspended token holds no DingTalk Stream connection either.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// suiteTicket says where the suite ticket comes from: the credentials Secret (default) or
	// DingTalk Stream mode ({source: Stream}). ThirdPartyApp and ThirdPartySuite only. With
	// Stream, the newest pushed ticket is kept in the owned Secret <metadata.name>-suite-ticket:
	// in the DingTalkToken's namespace, or, for a ClusterDingTalkToken, in the namespace of its
	// credentials Secret.
	// +optional
	SuiteTicket *SuiteTicketConfig `json:"suiteTicket,omitempty"`
}

// DingTalkTokenSpec is the desired token: its type, where its credentials are and where it goes.
// +kubebuilder:validation:XValidation:rule="self.type == 'ThirdPartyApp' ? has(self.corpId) : !has(self.corpId)",message="spec.corpId is required when spec.type is ThirdPartyApp (the authorizing organisation) and must not be set for any other type",fieldPath=".corpId"
// +kubebuilder:validation:XValidation:rule="!has(self.suiteTicket) || self.type == 'ThirdPartyApp' || self.type == 'ThirdPartySuite'",message="spec.suiteTicket is only for the types that use a suite ticket (ThirdPartyApp, ThirdPartySuite): remove it for InternalApp and User",fieldPath=".suiteTicket"
type DingTalkTokenSpec struct {
	// type of DingTalk token: InternalApp, ThirdPartyApp (a third-party app's token for the
	// organisation in spec.corpId), ThirdPartySuite or User (OAuth2). Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.type is immutable: create a new DingTalkToken for another type"
	Type TokenType `json:"type"`

	// credentialsRef names the Secret, in this namespace, holding the credentials the type needs:
	// InternalApp: appKey, appSecret. ThirdPartyApp and ThirdPartySuite: suiteKey, suiteSecret,
	// suiteTicket. User: clientId, clientSecret, and refreshToken or authCode.
	// +required
	CredentialsRef CredentialsReference `json:"credentialsRef"`

	// The fields both kinds share: corpId, refreshBefore, suspend, suiteTicket.
	TokenSpecCommon `json:",inline"`

	// target is the Secret the token is written to. Default: a Secret named like this
	// DingTalkToken with the key accessToken.
	// +optional
	Target *Target `json:"target,omitempty"`

	// rolloutRestartTargets are workloads in this namespace whose pods are restarted (their pod
	// template annotation dingtalk.tokens.dev/token-digest is set) when the token value changes,
	// at most once per 10 minutes each. Needs the operator flag --enable-rollout-restart.
	// +optional
	// +listType=map
	// +listMapKey=kind
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=20
	RolloutRestartTargets []RolloutRestartTarget `json:"rolloutRestartTargets,omitempty"`
}

// TokenStatus is the part of the status every token kind shares: the state of the token and of the
// attempts to refresh it. It never holds a token or a credential.
type TokenStatus struct {
	// observedGeneration is the metadata.generation this status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the target Secret holds an unexpired token), Refreshed (the outcome
	// of the last refresh attempt) and, with spec.suiteTicket.source Stream, TicketStream (the
	// DingTalk Stream connection that receives the suite tickets).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// expiresAt is when the token in the target Secret expires.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// refreshTime is when the next refresh is due.
	// +optional
	RefreshTime *metav1.Time `json:"refreshTime,omitempty"`

	// lastRefreshTime is when the current token was fetched.
	// +optional
	LastRefreshTime *metav1.Time `json:"lastRefreshTime,omitempty"`

	// lastFailureTime is when the last failed attempt happened; cleared on success.
	// +optional
	LastFailureTime *metav1.Time `json:"lastFailureTime,omitempty"`

	// failedAttempts counts the failed attempts since the last success.
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`

	// lastFailureReason is the reason of the last failed attempt (one of the Refreshed reasons); cleared on success.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	LastFailureReason string `json:"lastFailureReason,omitempty"`

	// tokenDigest is a digest of the token (an HMAC keyed by the installation's random digest key,
	// of this object's UID and the token): it shows that the token changed, never the token, and
	// nobody without the key can test a guess against it.
	// +optional
	TokenDigest string `json:"tokenDigest,omitempty"`

	// credentialsDigest is a digest (keyed like tokenDigest) of the credentials used by the last
	// attempt except the suite ticket: it shows a change, never a value.
	// +optional
	CredentialsDigest string `json:"credentialsDigest,omitempty"`

	// suiteTicketDigest is a digest (keyed like tokenDigest) of the suite ticket used by the last
	// attempt (ThirdPartyApp and ThirdPartySuite).
	// +optional
	SuiteTicketDigest string `json:"suiteTicketDigest,omitempty"`

	// suiteTicketTime is when DingTalk pushed the suite ticket the operator holds for this token
	// and uses for its next fetch (spec.suiteTicket.source Stream; the push's eventBornTime).
	// Unset before the first push.
	// +optional
	SuiteTicketTime *metav1.Time `json:"suiteTicketTime,omitempty"`
}

// DingTalkTokenStatus is the observed state of a DingTalkToken. It never holds a token or a credential.
type DingTalkTokenStatus struct {
	TokenStatus `json:",inline"`

	// rolloutRestartDigest is the tokenDigest last rolled out to every rolloutRestartTarget; while
	// it differs from tokenDigest, restarts are pending (for example held back by the limit of one
	// restart per workload per 10 minutes).
	// +optional
	RolloutRestartDigest string `json:"rolloutRestartDigest,omitempty"`
}

// The limit of metadata.name below is set in the CRD by hack/crdpatch: no marker reaches
// metadata.name.

// DingTalkToken keeps a DingTalk access token fresh in a Secret.
// Its metadata.name is at most 239 characters so that <name>-refresh-token is a valid Secret name.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dtt,categories=dingtalk
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Refresh",type=string,JSONPath=`.status.refreshTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="(has(self.spec.target) && has(self.spec.target.name) ? self.spec.target.name : self.metadata.name) != self.spec.credentialsRef.name",message="spec.target.name (or metadata.name when it is unset) must differ from spec.credentialsRef.name: the operator never writes into the credentials Secret",fieldPath=".spec.target.name"
// +kubebuilder:validation:XValidation:rule="self.spec.type != 'User' || (self.spec.credentialsRef.name != self.metadata.name + '-refresh-token' && (has(self.spec.target) && has(self.spec.target.name) ? self.spec.target.name : self.metadata.name) != self.metadata.name + '-refresh-token')",message="for type User, spec.credentialsRef.name and spec.target.name may not be <metadata.name>-refresh-token: the operator keeps the refresh token there",fieldPath=".spec"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.suiteTicket) || self.spec.suiteTicket.source != 'Stream' || (self.spec.credentialsRef.name != self.metadata.name + '-suite-ticket' && (!has(self.spec.target) || !has(self.spec.target.name) || self.spec.target.name != self.metadata.name + '-suite-ticket'))",message="with spec.suiteTicket.source Stream, spec.credentialsRef.name and spec.target.name may not be <metadata.name>-suite-ticket: the operator keeps the pushed suite ticket there",fieldPath=".spec"
// +kubebuilder:validation:XValidation:rule="(has(self.spec.target) && has(self.spec.target.name) ? self.spec.target.name : self.metadata.name) == (has(oldSelf.spec.target) && has(oldSelf.spec.target.name) ? oldSelf.spec.target.name : oldSelf.metadata.name)",message="spec.target.name is immutable (it defaults to metadata.name): create a new DingTalkToken to write another Secret",fieldPath=".spec.target.name"
type DingTalkToken struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired token.
	// +required
	Spec DingTalkTokenSpec `json:"spec"`

	// status is the observed state of the token.
	// +optional
	Status DingTalkTokenStatus `json:"status,omitempty"`
}

// DingTalkTokenList is a list of DingTalkTokens.
// +kubebuilder:object:root=true
type DingTalkTokenList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DingTalkToken `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DingTalkToken{}, &DingTalkTokenList{})
}

// TargetName is the name of the target Secret: spec.target.name, or metadata.name when unset.
func (t *DingTalkToken) TargetName() string {
	if t.Spec.Target != nil && t.Spec.Target.Name != "" {
		return t.Spec.Target.Name
	}
	return t.Name
}

// TargetKey is the key of the access token in the target Secret.
func (t *DingTalkToken) TargetKey() string {
	if t.Spec.Target != nil && t.Spec.Target.Key != "" {
		return t.Spec.Target.Key
	}
	return DefaultTargetKey
}

// RefreshTokenSecretName is the name of the Secret keeping a User token's newest refresh token.
func (t *DingTalkToken) RefreshTokenSecretName() string {
	return t.Name + RefreshTokenSecretSuffix
}

// SuiteTicketSecretName is the name of the Secret, in the DingTalkToken's namespace, keeping the
// newest suite ticket pushed over DingTalk Stream mode.
func (t *DingTalkToken) SuiteTicketSecretName() string {
	return t.Name + SuiteTicketSecretSuffix
}

// TicketSource is where the token's suite ticket comes from (Secret unless spec.suiteTicket says
// Stream; always Secret for the types without a suite ticket).
func (t *DingTalkToken) TicketSource() SuiteTicketSource {
	if t.Spec.Type != TokenTypeThirdPartyApp && t.Spec.Type != TokenTypeThirdPartySuite {
		return SuiteTicketSourceSecret
	}
	return TicketSourceOf(t.Spec.SuiteTicket)
}

// WithDefaults returns the keys with every unset field set to its default key. k may be nil.
func (k *CredentialKeys) WithDefaults() CredentialKeys {
	var out CredentialKeys
	if k != nil {
		out = *k
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&out.AppKey, DefaultAppKeyKey)
	def(&out.AppSecret, DefaultAppSecretKey)
	def(&out.SuiteKey, DefaultSuiteKeyKey)
	def(&out.SuiteSecret, DefaultSuiteSecretKey)
	def(&out.SuiteTicket, DefaultSuiteTicketKey)
	def(&out.ClientID, DefaultClientIDKey)
	def(&out.ClientSecret, DefaultClientSecretKey)
	def(&out.RefreshToken, DefaultRefreshTokenKey)
	def(&out.AuthCode, DefaultAuthCodeKey)
	return out
}
