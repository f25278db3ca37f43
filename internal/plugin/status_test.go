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
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// now is the fixed "current time" of the rendering tests.
var now = time.Date(2026, 11, 25, 14, 10, 0, 0, time.UTC)

func at(d time.Duration) *metav1.Time {
	t := metav1.NewTime(now.Add(d))
	return &t
}

func cond(typ string, status metav1.ConditionStatus, reason, msg string, since time.Duration) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: *at(since), ObservedGeneration: 1}
}

func token(typ v1alpha1.TokenType) *v1alpha1.DingTalkToken {
	tok := &v1alpha1.DingTalkToken{}
	tok.Namespace, tok.Name, tok.UID, tok.Generation = "apps", "crm-bot", "uid-1", 1
	tok.Spec.Type = typ
	tok.Spec.CredentialsRef.Name = "crm-bot-credentials"
	tok.Status.ObservedGeneration = 1
	return tok
}

// readyToken is a healthy InternalApp token issued 40 minutes ago.
func readyToken() *v1alpha1.DingTalkToken {
	tok := token(v1alpha1.TokenTypeInternalApp)
	st := &tok.Status
	st.Conditions = []metav1.Condition{
		cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, "Secret crm-bot holds a token valid until 2026-11-25T15:30:00Z", -40*time.Minute),
		cond(v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, "Token issued at 2026-11-25T13:30:00Z, valid until 2026-11-25T15:30:00Z", -40*time.Minute),
	}
	st.LastRefreshTime, st.ExpiresAt, st.RefreshTime = at(-40*time.Minute), at(80*time.Minute), at(40*time.Minute+12*time.Second)
	st.TokenDigest = "hmac:3f9a1c0e"
	return tok
}

func healthySecrets() []secretReport {
	return []secretReport{
		{Role: roleTarget, Name: "crm-bot", Exists: true, Owned: true, CheckOwner: true, Keys: []string{"accessToken", "expiresAt"}},
		{Role: roleCredentials, Name: "crm-bot-credentials", Exists: true, Keys: []string{"appKey", "appSecret"}},
	}
}

// failing turns tok into one whose last attempts failed with reason; expired says whether its
// token is gone (Ready False) or still valid (Ready True).
func failing(tok *v1alpha1.DingTalkToken, reason, msg string, expired bool) *v1alpha1.DingTalkToken {
	st := &tok.Status
	st.FailedAttempts, st.LastFailureTime, st.LastFailureReason = 3, at(-20*time.Second), reason
	st.RefreshTime = at(40 * time.Second)
	refreshed := cond(v1alpha1.ConditionRefreshed, metav1.ConditionFalse, reason, msg, -2*time.Minute)
	ready := cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, "Secret crm-bot holds a token valid until 2026-11-25T14:20:00Z", -70*time.Minute)
	st.ExpiresAt = at(10 * time.Minute)
	if expired {
		ready = cond(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg, -2*time.Minute)
		st.ExpiresAt = at(-2 * time.Minute)
	}
	st.Conditions = []metav1.Condition{ready, refreshed}
	st.LastRefreshTime = at(-122 * time.Minute)
	return tok
}

func TestRenderStatusGolden(t *testing.T) {
	events := []eventReport{
		{Time: now.Add(-3 * time.Hour), Type: "Normal", Reason: "TokenIssued", Message: "Issued a new token, valid until 2026-11-25T13:10:00Z", Count: 1},
		{Time: now.Add(-2 * time.Minute), Type: "Warning", Reason: "RefreshFailed", Message: "CredentialsRejected: DingTalk /v1.0/oauth2/accessToken answered CredentialsRejected (HTTP 400, code invalidClientIdOrSecret)", Count: 3},
	}
	tests := map[string]struct {
		// tok is the DingTalkToken as read.
		tok *v1alpha1.DingTalkToken
		// source is spec.suiteTicket.source.
		source string
		// secrets and events are what loadStatus found.
		secrets []secretReport
		events  []eventReport
		// eventsErr says why events could not be read.
		eventsErr string
	}{
		"ready": {tok: readyToken(), secrets: healthySecrets(), events: events[:1]},
		"ready-refresh-failing": {
			tok: failing(readyToken(), v1alpha1.ReasonProviderUnavailable,
				"DingTalk /v1.0/oauth2/accessToken answered ProviderUnavailable (HTTP 503)", false),
			secrets: healthySecrets(), events: events,
		},
		"pending": {
			tok: func() *v1alpha1.DingTalkToken {
				tok := token(v1alpha1.TokenTypeInternalApp)
				tok.Status = v1alpha1.DingTalkTokenStatus{}
				return tok
			}(),
			secrets: []secretReport{
				{Role: roleTarget, Name: "crm-bot", CheckOwner: true},
				{Role: roleCredentials, Name: "crm-bot-credentials", Exists: true, Keys: []string{"appKey", "appSecret"}},
			},
			eventsErr: "not readable (forbidden)",
		},
		"suspended": {
			tok: func() *v1alpha1.DingTalkToken {
				tok := readyToken()
				tok.Spec.Suspend = true
				st := &tok.Status
				st.Conditions = []metav1.Condition{
					cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "spec.suspend is true and the target Secret holds no valid token", -5*time.Minute),
					cond(v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "spec.suspend is true: no calls to DingTalk; the target Secret keeps what it has", -3*time.Hour),
				}
				st.ExpiresAt, st.RefreshTime, st.LastRefreshTime = at(-5*time.Minute), nil, at(-125*time.Minute)
				return tok
			}(),
			secrets: healthySecrets(),
		},
		"user": {
			tok: func() *v1alpha1.DingTalkToken {
				tok := readyToken()
				tok.Name, tok.Spec.Type = "alice", v1alpha1.TokenTypeUser
				tok.Spec.CredentialsRef.Name = "alice-oauth"
				tok.Annotations = map[string]string{v1alpha1.RefreshRequestedAtAnnotation: "2026-11-25T13:29:58Z"}
				return tok
			}(),
			secrets: []secretReport{
				{Role: roleTarget, Name: "alice", Exists: true, Owned: true, CheckOwner: true, Keys: []string{"accessToken", "corpId", "expiresAt"}},
				{Role: roleCredentials, Name: "alice-oauth", Exists: true, Keys: []string{"authCode", "clientId", "clientSecret"}},
				{Role: roleRefreshToken, Name: "alice-refresh-token", Exists: true, Owned: true, CheckOwner: true, Keys: []string{"refreshToken", "usedBootstrap"}},
			},
		},
		"stream-suite": {
			tok: func() *v1alpha1.DingTalkToken {
				tok := readyToken()
				tok.Spec.Type, tok.Spec.CorpID = v1alpha1.TokenTypeThirdPartyApp, "dingcorp1"
				tok.Generation = 2
				tok.Status.Conditions = append(tok.Status.Conditions,
					cond("TicketStream", metav1.ConditionFalse, "StreamUnavailable", "connecting to DingTalk Stream failed; retrying in 4s", -30*time.Second))
				return tok
			}(),
			source: "Stream",
			secrets: []secretReport{
				{Role: roleTarget, Name: "crm-bot", Exists: true, Owned: true, CheckOwner: true, Keys: []string{"accessToken", "expiresAt"}},
				{Role: roleCredentials, Name: "crm-bot-credentials", Exists: true, Keys: []string{"suiteKey", "suiteSecret"}},
				{Role: roleSuiteTicket, Name: "crm-bot-suite-ticket", CheckOwner: true, AbsentNote: "missing (the operator creates it with the first ticket DingTalk pushes)"},
			},
		},
	}
	// One golden file per failing reason, each with its hint: the token has expired, so Ready
	// carries the reason too.
	failures := map[string]string{
		v1alpha1.ReasonCredentialsNotFound:     "Secret crm-bot-credentials has no key appSecret",
		v1alpha1.ReasonCredentialsInvalid:      "Secret crm-bot-credentials key appSecret is over 4096 bytes",
		v1alpha1.ReasonCredentialsRejected:     "DingTalk /v1.0/oauth2/accessToken answered CredentialsRejected (HTTP 400, code invalidClientIdOrSecret)",
		v1alpha1.ReasonReauthorizationRequired: "DingTalk /v1.0/oauth2/userAccessToken answered ReauthorizationRequired (HTTP 400, code invalidRefreshToken)",
		v1alpha1.ReasonCredentialsConflict:     "DingTalkToken apps/bob already uses this authCode",
		v1alpha1.ReasonRateLimited:             "DingTalk /v1.0/oauth2/accessToken answered RateLimited (HTTP 429); Retry-After 30s",
		v1alpha1.ReasonQuotaExceeded:           "DingTalk /v1.0/oauth2/accessToken answered QuotaExceeded (HTTP 403, code Forbidden.AccessDenied.ApiCountLimitForOrg)",
		v1alpha1.ReasonProviderUnavailable:     "DingTalk did not answer in time",
		v1alpha1.ReasonTemplateInvalid:         "spec.target.template.data[config.json]: function \"env\" not defined",
		v1alpha1.ReasonTargetConflict:          "Secret crm-bot exists and is not owned by this DingTalkToken",
		v1alpha1.ReasonRolloutRestartFailed:    "Deployment crm-bot: deployments.apps \"crm-bot\" not found",
	}
	for reason, msg := range failures {
		typ := v1alpha1.TokenTypeInternalApp
		if reason == v1alpha1.ReasonReauthorizationRequired || reason == v1alpha1.ReasonCredentialsConflict {
			typ = v1alpha1.TokenTypeUser
		}
		secrets := healthySecrets()
		switch reason {
		case v1alpha1.ReasonTargetConflict:
			secrets[0].Owned = false
		case v1alpha1.ReasonCredentialsNotFound:
			secrets[1].Keys, secrets[1].Missing = []string{"appKey"}, []string{"appSecret"}
		}
		tests["failing-"+reason] = struct {
			tok       *v1alpha1.DingTalkToken
			source    string
			secrets   []secretReport
			events    []eventReport
			eventsErr string
		}{tok: failing(token(typ), reason, msg, true), secrets: secrets, events: events}
	}

	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			rep := &statusReport{Token: tc.tok, TicketSource: tc.source, Secrets: tc.secrets, Events: tc.events, EventsError: tc.eventsErr}
			if err := renderStatus(&buf, rep, now); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, "status/"+name, buf.Bytes())
			for _, c := range tc.tok.Status.Conditions {
				if c.Status == metav1.ConditionFalse && !strings.Contains(buf.String(), "Hint: "+hint(c.Reason, tc.tok.Spec.Type, tc.tok.Name)) {
					t.Errorf("no hint for %s %s in:\n%s", c.Type, c.Reason, buf.String())
				}
			}
		})
	}
}

// Every failing reason the API names has a hint; success reasons have none.
func TestHintForEveryReason(t *testing.T) {
	failing := []string{
		v1alpha1.ReasonPending, v1alpha1.ReasonSuspended, v1alpha1.ReasonCredentialsNotFound, v1alpha1.ReasonCredentialsInvalid,
		v1alpha1.ReasonCredentialsRejected, v1alpha1.ReasonReauthorizationRequired, v1alpha1.ReasonCredentialsConflict,
		v1alpha1.ReasonRateLimited, v1alpha1.ReasonQuotaExceeded, v1alpha1.ReasonProviderUnavailable,
		v1alpha1.ReasonTemplateInvalid, v1alpha1.ReasonTargetConflict, v1alpha1.ReasonRolloutRestartFailed,
	}
	for _, typ := range []v1alpha1.TokenType{v1alpha1.TokenTypeInternalApp, v1alpha1.TokenTypeThirdPartyApp, v1alpha1.TokenTypeThirdPartySuite, v1alpha1.TokenTypeUser} {
		for _, r := range failing {
			if hint(r, typ, "x") == "" {
				t.Errorf("no hint for %s (%s)", r, typ)
			}
		}
	}
	for _, r := range []string{v1alpha1.ReasonTokenValid, v1alpha1.ReasonTokenIssued} {
		if h := hint(r, v1alpha1.TokenTypeInternalApp, "x"); h != "" {
			t.Errorf("hint for success reason %s: %q", r, h)
		}
	}
	for _, r := range append(failing, v1alpha1.ReasonTargetWriteFailed, v1alpha1.ReasonSelectorInvalid) {
		if clusterHint(r, v1alpha1.TokenTypeInternalApp, "x") == "" {
			t.Errorf("no ClusterDingTalkToken hint for %s", r)
		}
	}
	if h := hint(v1alpha1.ReasonReauthorizationRequired, v1alpha1.TokenTypeUser, "alice"); !strings.Contains(h, "kubectl dingtalk authorize alice") {
		t.Errorf("ReauthorizationRequired hint does not name the command: %q", h)
	}
}

func TestMissingCredentials(t *testing.T) {
	tests := map[string]struct {
		// typ and keys configure the DingTalkToken; source is spec.suiteTicket.source.
		typ    v1alpha1.TokenType
		keys   *v1alpha1.CredentialKeys
		source string
		// have are the Secret's keys; stored: a User's refresh token is kept already.
		have   []string
		stored bool
		want   []string
	}{
		"internal complete":       {typ: v1alpha1.TokenTypeInternalApp, have: []string{"appKey", "appSecret"}},
		"internal mapped missing": {typ: v1alpha1.TokenTypeInternalApp, keys: &v1alpha1.CredentialKeys{AppSecret: "APP_SECRET"}, have: []string{"appKey", "appSecret"}, want: []string{"APP_SECRET"}},
		"suite without ticket":    {typ: v1alpha1.TokenTypeThirdPartySuite, have: []string{"suiteKey", "suiteSecret"}, want: []string{"suiteTicket"}},
		"stream needs no ticket":  {typ: v1alpha1.TokenTypeThirdPartyApp, source: "Stream", have: []string{"suiteKey", "suiteSecret"}},
		"user without bootstrap":  {typ: v1alpha1.TokenTypeUser, have: []string{"clientId", "clientSecret"}, want: []string{"authCode or refreshToken"}},
		"user with stored token":  {typ: v1alpha1.TokenTypeUser, have: []string{"clientId", "clientSecret"}, stored: true},
		"user with refreshToken":  {typ: v1alpha1.TokenTypeUser, have: []string{"clientId", "clientSecret", "refreshToken"}},
		"user without secret":     {typ: v1alpha1.TokenTypeUser, have: []string{"clientId", "authCode"}, want: []string{"clientSecret"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := missingCredentials(tc.typ, tc.keys, secretReport{Exists: true, Keys: tc.have}, tc.stored, tc.source)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("missing = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHumanDuration(t *testing.T) {
	tests := map[time.Duration]string{
		0:                                 "0s",
		999 * time.Millisecond:            "0s",
		45 * time.Second:                  "45s",
		3*time.Minute + 20*time.Second:    "3m20s",
		5 * time.Minute:                   "5m",
		119*time.Minute + 59*time.Second:  "1h59m",
		2 * time.Hour:                     "2h",
		52 * time.Hour:                    "2d4h",
		30 * 24 * time.Hour:               "30d",
		-(3*time.Minute + 20*time.Second): "3m20s",
	}
	for d, want := range tests {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
	if got := relative(now.Add(90*time.Second), now); got != "in 1m30s" {
		t.Errorf("relative future = %q", got)
	}
	if got := relative(now.Add(-90*time.Second), now); got != "1m30s ago" {
		t.Errorf("relative past = %q", got)
	}
	if got := relative(now.Add(300*time.Millisecond), now); got != "now" {
		t.Errorf("relative now = %q", got)
	}
}

// clusterToken is a ClusterDingTalkToken fanned out to the namespaces the selector picks, its
// token issued 40 minutes ago.
func clusterToken() *v1alpha1.ClusterDingTalkToken {
	tok := &v1alpha1.ClusterDingTalkToken{}
	tok.Name, tok.UID, tok.Generation = "crm-bot", "uid-2", 1
	tok.Spec.Type = v1alpha1.TokenTypeInternalApp
	tok.Spec.CredentialsRef = v1alpha1.ClusterCredentialsReference{Namespace: "dingtalk-system", Name: "crm-bot-credentials"}
	tok.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"dingtalk.tokens.dev/crm-bot": "true"}}
	tok.Spec.Target.Name = "crm-bot-token"
	st := &tok.Status
	st.ObservedGeneration = 1
	st.Conditions = []metav1.Condition{
		cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid, "Every selected namespace (3) holds a token valid until 2026-11-25T15:30:00Z", -40*time.Minute),
		cond(v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued, "Token issued at 2026-11-25T13:30:00Z, valid until 2026-11-25T15:30:00Z", -40*time.Minute),
	}
	st.LastRefreshTime, st.ExpiresAt, st.RefreshTime = at(-40*time.Minute), at(80*time.Minute), at(40*time.Minute+12*time.Second)
	st.Namespaces = &v1alpha1.NamespaceCounts{Matched: 3, Provisioned: 3, Summary: "3/3"}
	return tok
}

// TestRenderClusterStatusGolden: `status cdtt/NAME` of a Ready ClusterDingTalkToken, one that some
// namespaces refuse (with more failed namespaces than the status lists), one whose selector picks
// nothing yet, and a Stream-sourced one whose refresh fails while its token is valid.
func TestRenderClusterStatusGolden(t *testing.T) {
	creds := secretReport{Role: roleCredentials, Name: "dingtalk-system/crm-bot-credentials", Exists: true, Keys: []string{"appKey", "appSecret"}}
	events := []eventReport{{Time: now.Add(-40 * time.Minute), Type: "Normal", Reason: "TokenIssued", Message: "Issued a new token, valid until 2026-11-25T15:30:00Z", Count: 1}}
	tests := map[string]*clusterReport{
		"cluster-ready": {Token: clusterToken(), Secrets: []secretReport{creds}, Events: events},
		"cluster-partly-failed": {Token: func() *v1alpha1.ClusterDingTalkToken {
			tok := clusterToken()
			st := &tok.Status
			for i := range 22 {
				f := v1alpha1.FailedNamespace{Namespace: fmt.Sprintf("team-%02d", i), Reason: v1alpha1.ReasonTargetConflict,
					Message: "Secret crm-bot-token exists and is not owned by this ClusterDingTalkToken"}
				if i == 1 {
					f.Reason, f.Message = v1alpha1.ReasonTargetWriteFailed, "the API server refused the Secret: Forbidden (403): exceeded quota"
				}
				if i < v1alpha1.MaxFailedNamespaces {
					st.FailedNamespaces = append(st.FailedNamespaces, f)
				}
			}
			st.Namespaces = &v1alpha1.NamespaceCounts{Matched: 500, Provisioned: 478, Failed: 22, Summary: "478/500"}
			st.Conditions[0] = cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTargetConflict,
				"22 of 500 selected namespaces could not be written: team-00 (TargetConflict), team-01 (TargetWriteFailed), team-02 (TargetConflict), ...", -5*time.Minute)
			return tok
		}(), Secrets: []secretReport{creds}, EventsError: "not readable (forbidden)"},
		"cluster-pending": {Token: func() *v1alpha1.ClusterDingTalkToken {
			tok := clusterToken()
			tok.Status = v1alpha1.ClusterDingTalkTokenStatus{}
			tok.Status.ObservedGeneration = 1
			tok.Status.Namespaces = &v1alpha1.NamespaceCounts{Summary: "0/0"}
			tok.Status.Conditions = []metav1.Condition{cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonPending,
				"No namespace matches spec.namespaceSelector", -time.Minute)}
			return tok
		}(), Secrets: []secretReport{creds}},
		"cluster-stream-refresh-failing": {Token: func() *v1alpha1.ClusterDingTalkToken {
			tok := clusterToken()
			tok.Spec.Type = v1alpha1.TokenTypeThirdPartySuite
			tok.Spec.SuiteTicket = &v1alpha1.SuiteTicketConfig{Source: v1alpha1.SuiteTicketSourceStream}
			st := &tok.Status
			st.FailedAttempts, st.LastFailureTime, st.LastFailureReason = 1, at(-20*time.Second), v1alpha1.ReasonCredentialsRejected
			st.RefreshTime = at(59*time.Minute + 40*time.Second)
			st.Conditions[1] = cond(v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonCredentialsRejected,
				"DingTalk /v1.0/oauth2/suiteAccessToken answered CredentialsRejected (HTTP 400, code invalidSuiteTicket)", -20*time.Second)
			st.Conditions = append(st.Conditions, cond(v1alpha1.ConditionTicketStream, metav1.ConditionTrue, v1alpha1.ReasonConnected, "Connected to DingTalk Stream", -time.Hour))
			return tok
		}(), Secrets: []secretReport{
			{Role: roleCredentials, Name: "dingtalk-system/crm-bot-credentials", Exists: true, Keys: []string{"suiteKey", "suiteSecret"}},
			{Role: roleSuiteTicket, Name: "dingtalk-system/crm-bot-suite-ticket", Exists: true, Owned: true, CheckOwner: true, Keys: []string{"suiteKey", "suiteTicket"}},
		}, Events: events},
	}
	for name, rep := range tests {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := renderClusterStatus(&buf, rep, now); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, "status/"+name, buf.Bytes())
			for _, c := range rep.Token.Status.Conditions {
				if c.Status == metav1.ConditionFalse && !strings.Contains(buf.String(), "Hint: "+clusterHint(c.Reason, rep.Token.Spec.Type, rep.Token.Name)) {
					t.Errorf("no hint for %s %s in:\n%s", c.Type, c.Reason, buf.String())
				}
			}
			for _, f := range rep.Token.Status.FailedNamespaces {
				if !strings.Contains(buf.String(), "Hint: "+clusterHint(f.Reason, rep.Token.Spec.Type, rep.Token.Name)) {
					t.Errorf("no hint for the failed namespaces' %s in:\n%s", f.Reason, buf.String())
				}
			}
		})
	}
}
