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

// Package safe renders what the operator says in a condition, an event, a log line or a returned
// error from classified fields only: never from a credential, a token, a DingTalk answer body or
// the body of a Secret the API server echoes back.
package safe

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// MaxRetryAfter caps the Retry-After DingTalk may impose (the shared fetch's floor, and what a
// message quotes).
const MaxRetryAfter = time.Hour

// codeText keeps the characters of DingTalk codes and request ids; anything else is dropped, so an
// unexpected answer cannot smuggle text into a message.
var codeText = regexp.MustCompile(`[^A-Za-z0-9._:/-]`)

// reasonText keeps the characters of the client's fixed reasons ("malformed answer", ...).
var reasonText = regexp.MustCompile(`[^A-Za-z0-9 ,.:/()-]`)

// Code keeps at most 64 characters of a DingTalk code or request id, and only those they use.
func Code(s string) string {
	s = codeText.ReplaceAllString(s, "")
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// DingTalk renders a DingTalk failure from its classified fields only: endpoint, HTTP status,
// code, request id and a fixed reason; never an answer body, a credential or a token.
func DingTalk(err error) string {
	var de *dingtalk.Error
	if !errors.As(err, &de) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return "DingTalk did not answer in time"
		}
		return "DingTalk could not be reached"
	}
	msg := fmt.Sprintf("DingTalk %s answered %s", Code(de.Endpoint), de.Class)
	if de.HTTPStatus != 0 {
		msg += fmt.Sprintf(" (HTTP %d", de.HTTPStatus)
		if c := Code(de.Code); c != "" {
			msg += ", code " + c
		}
		if id := Code(de.RequestID); id != "" {
			msg += ", requestid " + id
		}
		msg += ")"
	}
	if de.Reason != "" {
		msg += ": " + reasonText.ReplaceAllString(de.Reason, "")
	}
	if de.RetryAfter > 0 {
		msg += fmt.Sprintf("; Retry-After %s", min(de.RetryAfter, MaxRetryAfter))
	}
	return msg
}

// APIError keeps an API error's reason and code only: its message may quote what was written (a
// Secret's data). Any other error is returned as is.
func APIError(err error) error {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return fmt.Errorf("%s (HTTP %d)", st.Status().Reason, st.Status().Code)
	}
	return err
}
