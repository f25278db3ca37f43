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

package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dingtalkv1alpha1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// clearKeys are target Secret keys that hold no secret; every other value is masked.
var clearKeys = map[string]bool{dingtalkv1alpha1.ExpiresAtKey: true, dingtalkv1alpha1.CorpIDKey: true}

// printTable prints the tokens like `kubectl get dtt`, when anything changed since the last print.
func (d *demo) printTable(toks []dingtalkv1alpha1.DingTalkToken) {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tTYPE\tREADY\tREASON\tEXPIRES\tREFRESH")
	slices.SortFunc(toks, func(a, b dingtalkv1alpha1.DingTalkToken) int { return strings.Compare(a.Name, b.Name) })
	for i := range toks {
		t := &toks[i]
		ready, reason := "", ""
		if c := meta.FindStatusCondition(t.Status.Conditions, dingtalkv1alpha1.ConditionReady); c != nil {
			ready, reason = string(c.Status), c.Reason
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Spec.Type, ready, reason,
			timeString(t.Status.ExpiresAt), timeString(t.Status.RefreshTime))
	}
	_ = w.Flush()
	for i := range toks {
		if t := &toks[i]; t.TicketSource() == dingtalkv1alpha1.SuiteTicketSourceStream {
			fmt.Fprintln(&b, streamLine(t))
		}
	}
	if b.String() == d.table {
		return
	}
	d.table = b.String()
	d.printf("%s\n", d.since())
	for _, line := range strings.SplitAfter(strings.TrimRight(b.String(), "\n"), "\n") {
		d.printf("  %s", line)
	}
	d.printf("\n")
}

// printSecrets shows each target Secret's keys, masking every value that could be a token.
func (d *demo) printSecrets(ctx context.Context, toks []dingtalkv1alpha1.DingTalkToken) error {
	d.printf("\nThe target Secrets (token values masked; pods mount these):\n")
	for i := range toks {
		t := &toks[i]
		names := []string{t.TargetName()}
		if t.Spec.Type == dingtalkv1alpha1.TokenTypeUser {
			names = append(names, t.RefreshTokenSecretName())
		}
		if t.TicketSource() == dingtalkv1alpha1.SuiteTicketSourceStream {
			names = append(names, t.SuiteTicketSecretName())
		}
		for _, name := range names {
			sec := &corev1.Secret{}
			if err := d.client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: name}, sec); err != nil {
				return &stepError{step: "reading Secret " + name, err: err}
			}
			what := fmt.Sprintf("target of the %s token %s", t.Spec.Type, t.Name)
			switch name {
			case t.RefreshTokenSecretName():
				what = "the newest refresh token of " + t.Name + ", kept apart from the target"
			case t.SuiteTicketSecretName():
				what = "the newest suite ticket DingTalk pushed for " + t.Name + ", received over Stream mode"
			}
			d.printf("  %s/%s  (%s)\n      %s\n", sec.Namespace, sec.Name, what, maskedKeys(sec))
			d.result.Secrets = append(d.result.Secrets, sec.Namespace+"/"+sec.Name)
		}
	}
	d.printf("\n")
	return nil
}

// maskedKeys lists a Secret's keys in order, each with its masked value.
func maskedKeys(sec *corev1.Secret) string {
	keys := make([]string, 0, len(sec.Data))
	for k := range sec.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	line := make([]string, 0, len(keys))
	for _, k := range keys {
		line = append(line, k+"="+maskValue(k, sec.Data[k]))
	}
	return strings.Join(line, "  ")
}

// maskValue shows expiresAt and corpId; any other value only by its length.
func maskValue(key string, v []byte) string {
	if clearKeys[key] {
		return string(v)
	}
	return fmt.Sprintf("<masked, %d bytes>", len(v))
}

func timeString(t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func isReady(t *dingtalkv1alpha1.DingTalkToken) bool {
	return meta.IsStatusConditionTrue(t.Status.Conditions, dingtalkv1alpha1.ConditionReady)
}

func allReady(toks []dingtalkv1alpha1.DingTalkToken) bool {
	for i := range toks {
		if !isReady(&toks[i]) {
			return false
		}
	}
	return true
}

// refreshed says whether a token was fetched again since old: its expiry moved on.
func refreshed(old, cur *dingtalkv1alpha1.DingTalkToken) bool {
	if old.Status.ExpiresAt == nil || cur.Status.ExpiresAt == nil {
		return false
	}
	return cur.Status.ExpiresAt.After(old.Status.ExpiresAt.Time) && isReady(cur)
}
