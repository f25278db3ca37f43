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
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/safe"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// Messages: everything the operator says in a condition, an event or a returned error is built
// here and in package safe from classified fields only, never from a credential, a token or a
// DingTalk answer.

// dingTalkFailure is a failed DingTalk call as a failure, under the reason its class names.
func dingTalkFailure(err error) *failure {
	reason := string(dingtalk.ClassOf(err))
	switch reason {
	case v1alpha1.ReasonCredentialsRejected, v1alpha1.ReasonReauthorizationRequired, v1alpha1.ReasonRateLimited,
		v1alpha1.ReasonQuotaExceeded, v1alpha1.ReasonProviderUnavailable:
	default:
		reason = v1alpha1.ReasonProviderUnavailable
	}
	return &failure{reason: reason, message: safe.DingTalk(err)}
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// conflictMessage is CredentialsConflict's message: it names the other DingTalkToken only when it
// is in the same namespace (another namespace's objects are not this user's to know of).
func conflictMessage(ns string, other types.NamespacedName) string {
	who := "another DingTalkToken in another namespace"
	if other.Namespace == ns {
		who = "DingTalkToken " + other.String()
	}
	return who + " already uses this user's authCode/refreshToken: user tokens are never shared"
}

// targetConflict is TargetConflict for a Secret this object does not own.
func targetConflict(name, owner string) *failure {
	return &failure{reason: v1alpha1.ReasonTargetConflict, message: fmt.Sprintf(
		"Secret %s exists and is not owned by this %s: nothing is written to it", name, owner)}
}
