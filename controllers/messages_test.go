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
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// TestRefusedTarget: an invalid target Secret (template metadata the API server refuses) is
// TemplateInvalid naming the field, never the value; any other API error is returned without its
// message (which may quote what was written).
func TestRefusedTarget(t *testing.T) {
	const value = "not a valid label value"
	invalid := apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Secret").GroupKind(), "app", field.ErrorList{
		field.Invalid(field.NewPath("metadata", "labels"), value, "a valid label must be ..."),
	})
	tests := map[string]struct {
		err        error  // what the API server answered
		wantReason string // the Refreshed reason recorded ("": none)
		wantErr    bool   // whether an error is returned
	}{
		"invalid metadata is TemplateInvalid":    {err: invalid, wantReason: v1alpha1.ReasonTemplateInvalid},
		"other API errors are returned, trimmed": {err: apierrors.NewInternalError(errors.New(value)), wantErr: true},
		"no error":                               {},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w, err := targetWrite{}, error(nil)
			if tc.err != nil {
				w, err = refusedTarget("app", tc.err)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("refusedTarget() = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), value) {
				t.Errorf("returned error quotes the API server's message: %v", err)
			}
			c := w.failure
			if tc.wantReason == "" {
				if c != nil {
					t.Errorf("failure = %+v, want none", c)
				}
				return
			}
			if c == nil || c.reason != tc.wantReason {
				t.Fatalf("failure = %+v, want %s", c, tc.wantReason)
			}
			if !strings.Contains(c.message, "spec.target.template.metadata.labels") || strings.Contains(c.message, value) {
				t.Errorf("message %q: want the field named and no value", c.message)
			}
		})
	}
}

// TestConflictMessage: another namespace's DingTalkToken is never named.
func TestConflictMessage(t *testing.T) {
	same := conflictMessage("apps", types.NamespacedName{Namespace: "apps", Name: "user"})
	if !strings.Contains(same, "apps/user") {
		t.Errorf("same namespace: %q does not name apps/user", same)
	}
	other := conflictMessage("apps", types.NamespacedName{Namespace: "secret-team", Name: "payroll-bot"})
	if strings.Contains(other, "secret-team") || strings.Contains(other, "payroll-bot") {
		t.Errorf("other namespace: %q names it", other)
	}
}
