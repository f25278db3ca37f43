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
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// Messages: everything the operator says in a condition, an event or a returned error is built
// here from classified fields only, never from a credential, a token or a DingTalk answer body.

// safeText keeps the characters of DingTalk codes and request ids; anything else is dropped, so an
// unexpected answer cannot smuggle text into a message.
var safeText = regexp.MustCompile(`[^A-Za-z0-9._:/-]`)

// safeReason keeps the characters of the client's fixed reasons ("malformed answer", ...).
var safeReason = regexp.MustCompile(`[^A-Za-z0-9 ,.:/()-]`)

func safe(s string) string {
	s = safeText.ReplaceAllString(s, "")
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// dingTalkFailure is a failed DingTalk call as a failure, under the reason its class names.
func dingTalkFailure(err error) *failure {
	reason := string(dingtalk.ClassOf(err))
	switch reason {
	case v1alpha1.ReasonCredentialsRejected, v1alpha1.ReasonReauthorizationRequired, v1alpha1.ReasonRateLimited,
		v1alpha1.ReasonQuotaExceeded, v1alpha1.ReasonProviderUnavailable:
	default:
		reason = v1alpha1.ReasonProviderUnavailable
	}
	return &failure{reason: reason, message: describe(err)}
}

// describe renders a DingTalk failure from its classified fields only: endpoint, HTTP status,
// code, request id and a fixed reason; never an answer body, a credential or a token.
func describe(err error) string {
	var de *dingtalk.Error
	if !errors.As(err, &de) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return "DingTalk did not answer in time"
		}
		return "DingTalk could not be reached"
	}
	msg := fmt.Sprintf("DingTalk %s answered %s", safe(de.Endpoint), de.Class)
	if de.HTTPStatus != 0 {
		msg += fmt.Sprintf(" (HTTP %d", de.HTTPStatus)
		if c := safe(de.Code); c != "" {
			msg += ", code " + c
		}
		if id := safe(de.RequestID); id != "" {
			msg += ", requestid " + id
		}
		msg += ")"
	}
	if de.Reason != "" {
		msg += ": " + safeReason.ReplaceAllString(de.Reason, "")
	}
	if de.RetryAfter > 0 {
		msg += fmt.Sprintf("; Retry-After %s", min(de.RetryAfter, maxRetryAfter))
	}
	return msg
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// errorWithoutDetails keeps an API error's reason and code only: its message may quote what was
// written (a Secret's data).
func errorWithoutDetails(err error) error {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return fmt.Errorf("%s (HTTP %d)", st.Status().Reason, st.Status().Code)
	}
	return err
}

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
