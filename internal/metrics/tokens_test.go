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
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTokenCollector: the per-token series, as Prometheus scrapes them, follow SetToken and
// DeleteToken.
func TestTokenCollector(t *testing.T) {
	exp, next := time.Unix(2000, 0), time.Unix(1500, 0)
	for name, tc := range map[string]struct {
		do   func(c *tokenCollector) // the calls made
		want string                  // the exposition expected (HELP and TYPE lines added below)
	}{
		"a Ready token": {
			do: func(c *tokenCollector) { c.set("apps", "crm", "InternalApp", exp, next, "True") },
			want: `dingtalk_token_expiration_timestamp_seconds{name="crm",namespace="apps",type="InternalApp"} 2000
dingtalk_token_ready_status{condition="False",name="crm",namespace="apps"} 0
dingtalk_token_ready_status{condition="True",name="crm",namespace="apps"} 1
dingtalk_token_ready_status{condition="Unknown",name="crm",namespace="apps"} 0
dingtalk_token_refresh_timestamp_seconds{name="crm",namespace="apps",type="InternalApp"} 1500
`,
		},
		"no token yet: no expiry; suspended: no refresh; a ClusterDingTalkToken has no namespace": {
			do: func(c *tokenCollector) { c.set("", "fan", "ThirdPartySuite", time.Time{}, time.Time{}, "False") },
			want: `dingtalk_token_ready_status{condition="False",name="fan",namespace=""} 1
dingtalk_token_ready_status{condition="True",name="fan",namespace=""} 0
dingtalk_token_ready_status{condition="Unknown",name="fan",namespace=""} 0
`,
		},
		"a failed pass keeps the last expiry; suspension drops the refresh time": {
			do: func(c *tokenCollector) {
				c.set("apps", "crm", "InternalApp", exp, next, "True")
				c.set("apps", "crm", "InternalApp", time.Time{}, time.Time{}, "Unknown")
			},
			want: `dingtalk_token_expiration_timestamp_seconds{name="crm",namespace="apps",type="InternalApp"} 2000
dingtalk_token_ready_status{condition="False",name="crm",namespace="apps"} 0
dingtalk_token_ready_status{condition="True",name="crm",namespace="apps"} 0
dingtalk_token_ready_status{condition="Unknown",name="crm",namespace="apps"} 1
`,
		},
		"deleted: no series": {
			do: func(c *tokenCollector) {
				c.set("apps", "crm", "InternalApp", exp, next, "True")
				c.set("apps", "other", "User", exp, next, "")
				c.delete("apps", "crm")
			},
			want: `dingtalk_token_expiration_timestamp_seconds{name="other",namespace="apps",type="User"} 2000
dingtalk_token_ready_status{condition="False",name="other",namespace="apps"} 0
dingtalk_token_ready_status{condition="True",name="other",namespace="apps"} 0
dingtalk_token_ready_status{condition="Unknown",name="other",namespace="apps"} 0
dingtalk_token_refresh_timestamp_seconds{name="other",namespace="apps",type="User"} 1500
`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := newTokenCollector()
			tc.do(c)
			if err := testutil.CollectAndCompare(c, strings.NewReader(withHeaders(tc.want))); err != nil {
				t.Error(err)
			}
		})
	}
}

// withHeaders adds the HELP and TYPE lines of the metrics that samples use.
func withHeaders(samples string) string {
	heads := map[string]string{
		"dingtalk_token_expiration_timestamp_seconds": "Unix time at which the access token held in the target Secret expires.",
		"dingtalk_token_ready_status":                 "Status of the Ready condition of a DingTalkToken: 1 for the current condition value, 0 for the others.",
		"dingtalk_token_refresh_timestamp_seconds":    "Unix time at which the next refresh of the access token is due.",
	}
	var out strings.Builder
	for _, name := range []string{"dingtalk_token_expiration_timestamp_seconds", "dingtalk_token_ready_status", "dingtalk_token_refresh_timestamp_seconds"} {
		if !strings.Contains(samples, name+"{") {
			continue
		}
		out.WriteString("# HELP " + name + " " + heads[name] + "\n# TYPE " + name + " gauge\n")
		for _, l := range strings.SplitAfter(samples, "\n") {
			if strings.HasPrefix(l, name+"{") {
				out.WriteString(l)
			}
		}
	}
	return out.String()
}
