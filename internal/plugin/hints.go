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

package plugin

import (
	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// hint is what a person can do about a failing reason, from docs/troubleshooting.md.
// name is the DingTalkToken's name, for hints that quote a command.
func hint(reason string, typ v1alpha1.TokenType, name string) string {
	switch reason {
	case v1alpha1.ReasonPending:
		return "No attempt has finished yet, DingTalk asked to wait (Retry-After), or the expired token's refresh is under way. " +
			"If it stays Pending, check that the operator runs and watches this namespace."
	case v1alpha1.ReasonSuspended:
		return "spec.suspend is true: the operator makes no DingTalk calls. Set spec.suspend to false to resume."
	case v1alpha1.ReasonCredentialsNotFound:
		if typ == v1alpha1.TokenTypeUser {
			return "The credentials Secret or a key is missing (see the message). Create the Secret in this namespace with clientId " +
				"and clientSecret, then sign the user in: kubectl dingtalk authorize " + name
		}
		return "The credentials Secret or a key it needs is missing (see the message). Create it in this namespace, " +
			"or map your key names with spec.credentialsRef.keys."
	case v1alpha1.ReasonCredentialsInvalid:
		return "A value in the credentials Secret is refused before any DingTalk call (over 4 KiB). Fix the key the message names."
	case v1alpha1.ReasonCredentialsRejected:
		if typ == v1alpha1.TokenTypeThirdPartyApp || typ == v1alpha1.TokenTypeThirdPartySuite {
			return "DingTalk refused the credentials. Fix the value in the credentials Secret; for invalidSuiteTicket write the " +
				"newest ticket DingTalk pushed; for invalidAuthInfo check that spec.corpId authorized your suite. Retried hourly, at once on a Secret change."
		}
		return "DingTalk refused the credentials. Fix the value in the credentials Secret: the operator retries at once when it changes (else hourly)."
	case v1alpha1.ReasonReauthorizationRequired:
		return "DingTalk refused the refresh token or authorization code (revoked, expired, already used). Sign the user in again: kubectl dingtalk authorize " + name
	case v1alpha1.ReasonCredentialsConflict:
		return "Another DingTalkToken already uses this user grant (named in the message). Keep one DingTalkToken per grant and mount its Secret where needed."
	case v1alpha1.ReasonRateLimited:
		return "DingTalk throttled the calls (or the operator's --dingtalk-qps did). The operator waits for Retry-After or backs off; " +
			"check other systems calling DingTalk with the same app."
	case v1alpha1.ReasonQuotaExceeded:
		return "The organisation's monthly API quota is used up. Raise it with DingTalk; retried hourly, the last token stays until it expires."
	case v1alpha1.ReasonProviderUnavailable:
		return "DingTalk answered 5xx, garbage or nothing. Check egress from the operator to the endpoint (NetworkPolicy, proxy, DNS) " +
			"and --dingtalk-endpoint; the operator backs off 5s to 5m."
	case v1alpha1.ReasonTemplateInvalid:
		return "A spec.target.template.data value is refused (the message names the key). Use only field actions and quote, b64enc, toJson."
	case v1alpha1.ReasonTargetConflict:
		return "A Secret of the target's name exists and this DingTalkToken does not own it. Delete or rename that Secret, " +
			"or create a DingTalkToken with another spec.target.name."
	case v1alpha1.ReasonRolloutRestartFailed:
		return "The token was written, but a workload in spec.rolloutRestartTargets was not restarted: run the operator with " +
			"--enable-rollout-restart and its RBAC component, or fix the list."
	case v1alpha1.ReasonStreamUnavailable:
		return "The operator cannot hold its DingTalk Stream connection for this suite (see the message) and reconnects with " +
			"backoff; the last pushed ticket stays in use. Check egress to the API host and wss-open-connection.dingtalk.com:443."
	default:
		return ""
	}
}

// clusterHint is hint for a ClusterDingTalkToken: the reasons about its namespaces and selector,
// and its credentials in their own namespace; the others as for a DingTalkToken.
func clusterHint(reason string, typ v1alpha1.TokenType, name string) string {
	switch reason {
	case v1alpha1.ReasonPending:
		return "No namespace matches spec.namespaceSelector (label the namespaces it should select), no attempt has finished " +
			"yet, or DingTalk asked to wait (Retry-After). If it stays Pending, check that the operator runs and serves every " +
			"namespace: under --watch-namespaces ClusterDingTalkTokens are not served."
	case v1alpha1.ReasonCredentialsNotFound:
		return "The credentials Secret spec.credentialsRef names (in its namespace) or a key it needs is missing (see the message). " +
			"Create it there, or map your key names with spec.credentialsRef.keys."
	case v1alpha1.ReasonTargetConflict:
		return "A Secret of the target's name exists in a selected namespace and this ClusterDingTalkToken does not own it " +
			"(see Failed namespaces). Delete or rename that Secret, or take the namespace out of spec.namespaceSelector; " +
			"the other namespaces keep their token."
	case v1alpha1.ReasonTargetWriteFailed:
		return "The API server refused the target Secret in a selected namespace (a ResourceQuota on Secrets, an admission " +
			"webhook: see the message). Fix what refuses it, or take the namespace out of spec.namespaceSelector; retried every 30s."
	case v1alpha1.ReasonSelectorInvalid:
		return "spec.namespaceSelector cannot be used (see the message): fix it. Nothing is written meanwhile."
	}
	return hint(reason, typ, name)
}
