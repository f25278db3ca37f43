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

package metrics

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// TestTokenCollector: the per-token series, as Prometheus scrapes them, follow the status given
// to set and delete.
func TestTokenCollector(t *testing.T) {
	at := func(sec int64) *metav1.Time { return &metav1.Time{Time: time.Unix(sec, 0)} }
	cond := func(typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason}
	}
	ready := v1alpha1.TokenStatus{
		ExpiresAt: at(2000), RefreshTime: at(1500),
		Conditions: []metav1.Condition{
			cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid),
			cond(v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued),
		},
	}
	failing := v1alpha1.TokenStatus{
		ExpiresAt: at(2000), RefreshTime: at(1530), LastFailureTime: at(1510), FailedAttempts: 3,
		LastFailureReason: v1alpha1.ReasonCredentialsRejected,
		Conditions: []metav1.Condition{
			cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid),
			cond(v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonCredentialsRejected),
			cond(v1alpha1.ConditionTicketStream, metav1.ConditionFalse, v1alpha1.ReasonStreamUnavailable),
		},
	}
	for name, tc := range map[string]struct {
		do   func(c *tokenCollector) // the calls made
		want string                  // the exposition expected (HELP and TYPE lines added below)
	}{
		"a Ready DingTalkToken": {
			do: func(c *tokenCollector) { c.set("apps", "crm", "InternalApp", &ready) },
			want: `dingtalk_token_expiration_timestamp_seconds{kind="DingTalkToken",name="crm",namespace="apps",type="InternalApp"} 2000
dingtalk_token_failed_attempts{kind="DingTalkToken",name="crm",namespace="apps"} 0
dingtalk_token_ready_reason{kind="DingTalkToken",name="crm",namespace="apps",reason="TokenValid"} 1
dingtalk_token_ready_status{condition="False",kind="DingTalkToken",name="crm",namespace="apps"} 0
dingtalk_token_ready_status{condition="True",kind="DingTalkToken",name="crm",namespace="apps"} 1
dingtalk_token_ready_status{condition="Unknown",kind="DingTalkToken",name="crm",namespace="apps"} 0
dingtalk_token_refresh_timestamp_seconds{kind="DingTalkToken",name="crm",namespace="apps",type="InternalApp"} 1500
dingtalk_token_refreshed_status{condition="False",kind="DingTalkToken",name="crm",namespace="apps"} 0
dingtalk_token_refreshed_status{condition="True",kind="DingTalkToken",name="crm",namespace="apps"} 1
dingtalk_token_refreshed_status{condition="Unknown",kind="DingTalkToken",name="crm",namespace="apps"} 0
`,
		},
		"a Stream-sourced token failing to refresh while still valid": {
			do: func(c *tokenCollector) { c.set("apps", "isv", "ThirdPartyApp", &failing) },
			want: `dingtalk_token_expiration_timestamp_seconds{kind="DingTalkToken",name="isv",namespace="apps",type="ThirdPartyApp"} 2000
dingtalk_token_failed_attempts{kind="DingTalkToken",name="isv",namespace="apps"} 3
dingtalk_token_last_failure_timestamp_seconds{kind="DingTalkToken",name="isv",namespace="apps",reason="CredentialsRejected"} 1510
dingtalk_token_ready_reason{kind="DingTalkToken",name="isv",namespace="apps",reason="TokenValid"} 1
dingtalk_token_ready_status{condition="False",kind="DingTalkToken",name="isv",namespace="apps"} 0
dingtalk_token_ready_status{condition="True",kind="DingTalkToken",name="isv",namespace="apps"} 1
dingtalk_token_ready_status{condition="Unknown",kind="DingTalkToken",name="isv",namespace="apps"} 0
dingtalk_token_refresh_timestamp_seconds{kind="DingTalkToken",name="isv",namespace="apps",type="ThirdPartyApp"} 1530
dingtalk_token_refreshed_status{condition="False",kind="DingTalkToken",name="isv",namespace="apps"} 1
dingtalk_token_refreshed_status{condition="True",kind="DingTalkToken",name="isv",namespace="apps"} 0
dingtalk_token_refreshed_status{condition="Unknown",kind="DingTalkToken",name="isv",namespace="apps"} 0
dingtalk_token_ticket_stream_status{condition="False",kind="DingTalkToken",name="isv",namespace="apps"} 1
dingtalk_token_ticket_stream_status{condition="True",kind="DingTalkToken",name="isv",namespace="apps"} 0
dingtalk_token_ticket_stream_status{condition="Unknown",kind="DingTalkToken",name="isv",namespace="apps"} 0
`,
		},
		"a pending ClusterDingTalkToken: no namespace, no expiry, no refresh, no attempt yet": {
			do: func(c *tokenCollector) {
				c.set("", "fan", "ThirdPartySuite", &v1alpha1.TokenStatus{Conditions: []metav1.Condition{
					cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonPending)}})
			},
			want: `dingtalk_token_failed_attempts{kind="ClusterDingTalkToken",name="fan",namespace=""} 0
dingtalk_token_ready_reason{kind="ClusterDingTalkToken",name="fan",namespace="",reason="Pending"} 1
dingtalk_token_ready_status{condition="False",kind="ClusterDingTalkToken",name="fan",namespace=""} 1
dingtalk_token_ready_status{condition="True",kind="ClusterDingTalkToken",name="fan",namespace=""} 0
dingtalk_token_ready_status{condition="Unknown",kind="ClusterDingTalkToken",name="fan",namespace=""} 0
dingtalk_token_refreshed_status{condition="False",kind="ClusterDingTalkToken",name="fan",namespace=""} 0
dingtalk_token_refreshed_status{condition="True",kind="ClusterDingTalkToken",name="fan",namespace=""} 0
dingtalk_token_refreshed_status{condition="Unknown",kind="ClusterDingTalkToken",name="fan",namespace=""} 0
`,
		},
		"a success after failures: the count back to 0, no last failure, the stream series gone with the condition": {
			do: func(c *tokenCollector) {
				c.set("apps", "isv", "ThirdPartyApp", &failing)
				c.set("apps", "isv", "ThirdPartyApp", &ready)
			},
			want: strings.ReplaceAll(strings.ReplaceAll(`dingtalk_token_expiration_timestamp_seconds{kind="DingTalkToken",name="crm",namespace="apps",type="InternalApp"} 2000
dingtalk_token_failed_attempts{kind="DingTalkToken",name="crm",namespace="apps"} 0
dingtalk_token_ready_reason{kind="DingTalkToken",name="crm",namespace="apps",reason="TokenValid"} 1
dingtalk_token_ready_status{condition="False",kind="DingTalkToken",name="crm",namespace="apps"} 0
dingtalk_token_ready_status{condition="True",kind="DingTalkToken",name="crm",namespace="apps"} 1
dingtalk_token_ready_status{condition="Unknown",kind="DingTalkToken",name="crm",namespace="apps"} 0
dingtalk_token_refresh_timestamp_seconds{kind="DingTalkToken",name="crm",namespace="apps",type="InternalApp"} 1500
dingtalk_token_refreshed_status{condition="False",kind="DingTalkToken",name="crm",namespace="apps"} 0
dingtalk_token_refreshed_status{condition="True",kind="DingTalkToken",name="crm",namespace="apps"} 1
dingtalk_token_refreshed_status{condition="Unknown",kind="DingTalkToken",name="crm",namespace="apps"} 0
`, `name="crm"`, `name="isv"`), "InternalApp", "ThirdPartyApp"),
		},
		"deleted: no series": {
			do: func(c *tokenCollector) {
				c.set("apps", "crm", "InternalApp", &ready)
				c.set("", "crm", "InternalApp", &ready)
				c.delete("apps", "crm")
				c.delete("", "crm")
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := newTokenCollector()
			tc.do(c)
			if err := testutil.GatherAndCompare(gatherer(c), strings.NewReader(withHeaders(tc.want))); err != nil {
				t.Error(err)
			}
		})
	}
}

// withHeaders adds the HELP and TYPE lines of the metrics that samples use.
func withHeaders(samples string) string {
	var out strings.Builder
	for _, d := range []struct{ name, help string }{
		{"dingtalk_token_expiration_timestamp_seconds", "Unix time at which the access token held in the target Secret expires."},
		{"dingtalk_token_failed_attempts", "Consecutive failed refresh attempts of a token; 0 after a success."},
		{"dingtalk_token_last_failure_timestamp_seconds", "Unix time of the last failed refresh attempt of a token, labelled with its reason; no series after a success."},
		{"dingtalk_token_ready_reason", "Reason of the Ready condition of a token: 1, on the series of the current reason only."},
		{"dingtalk_token_ready_status", "Status of the Ready condition of a token: 1 for the current condition value, 0 for the others."},
		{"dingtalk_token_refresh_timestamp_seconds", "Unix time at which the next refresh of the access token is due."},
		{"dingtalk_token_refreshed_status", "Status of the Refreshed condition of a token (the outcome of the last refresh attempt): 1 for the current condition value, 0 for the others."},
		{"dingtalk_token_ticket_stream_status", "Status of the TicketStream condition of a token whose suite tickets come from DingTalk Stream mode: 1 for the current condition value, 0 for the others."},
	} {
		if !strings.Contains(samples, d.name+"{") {
			continue
		}
		out.WriteString("# HELP " + d.name + " " + d.help + "\n# TYPE " + d.name + " gauge\n")
		for _, l := range strings.SplitAfter(samples, "\n") {
			if strings.HasPrefix(l, d.name+"{") {
				out.WriteString(l)
			}
		}
	}
	return out.String()
}

// TestConcurrentScrapes: scrapes running at once, in both exposition formats, share the label
// pairs and constant values of the per-token series without changing them (run with -race), and
// each sees every series.
func TestConcurrentScrapes(t *testing.T) {
	c := newTokenCollector()
	at := &metav1.Time{Time: time.Unix(2000, 0)}
	for i, ns := range []string{"apps", "billing", ""} {
		c.set(ns, "tok", "InternalApp", &v1alpha1.TokenStatus{ExpiresAt: at, RefreshTime: at, FailedAttempts: int32(i),
			LastFailureTime: at, LastFailureReason: v1alpha1.ReasonRateLimited, Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonTokenValid},
				{Type: v1alpha1.ConditionRefreshed, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonRateLimited},
				{Type: v1alpha1.ConditionTicketStream, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonConnected},
			}})
	}
	reg := gatherer(c)
	var wg sync.WaitGroup
	out := make([]string, 8)
	for i := range out {
		wg.Go(func() {
			fams, err := reg.Gather()
			if err != nil {
				t.Error(err)
				return
			}
			format := expfmt.NewFormat(expfmt.TypeTextPlain)
			if i%2 == 1 {
				format = expfmt.NewFormat(expfmt.TypeProtoDelim)
			}
			var b strings.Builder
			enc := expfmt.NewEncoder(&b, format)
			n := 0
			for _, f := range fams {
				n += len(f.GetMetric())
				if err := enc.Encode(f); err != nil {
					t.Error(err)
				}
			}
			if n != 3*14 {
				t.Errorf("a scrape saw %d series, want 42", n)
			}
			out[i] = b.String()
		})
	}
	wg.Wait()
	for i := 2; i < len(out); i++ {
		if out[i] != out[i%2] {
			t.Errorf("scrape %d differs from scrape %d of the same format", i, i%2)
		}
	}
}

// gatherer gathers what the metrics endpoint serves with c as its per-token records.
func gatherer(c *tokenCollector) prometheus.Gatherer {
	return registry{prometheus.NewPedanticRegistry(), c}
}
