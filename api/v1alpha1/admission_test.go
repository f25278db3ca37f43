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

package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// k8sClient talks to the real kube-apiserver of envtest with the generated CRD installed.
var k8sClient client.Client

func TestMain(m *testing.M) {
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8sClient = env.Client
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping envtest: %v\n", err)
	}
	os.Exit(code)
}

// ctx bounds one API call.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// base returns a valid token of the given type in namespace default with a unique name.
func base(name string, typ v1.TokenType) *v1.DingTalkToken {
	tok := &v1.DingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.DingTalkTokenSpec{
			Type:           typ,
			CredentialsRef: v1.CredentialsReference{Name: name + "-credentials"},
		},
	}
	if typ == v1.TokenTypeThirdPartyApp {
		tok.Spec.CorpID = "ding0123456789"
	}
	return tok
}

func dur(s string) *metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return &metav1.Duration{Duration: d}
}

func TestAdmissionRefusesInvalidTokens(t *testing.T) {
	cases := map[string]struct {
		// mutate turns a valid InternalApp token into an invalid one.
		mutate func(*v1.DingTalkToken)
		// field is the path the API error must name.
		field string
		// message is a fragment of the message a person reads.
		message string
	}{
		"unknown type": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.Type = "Robot" },
			field:  "spec.type", message: `supported values: "InternalApp", "ThirdPartyApp", "ThirdPartySuite", "User"`,
		},
		"missing type": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.Type = "" },
			field:  "spec.type", message: "supported values",
		},
		"missing credentialsRef name": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.CredentialsRef.Name = "" },
			field:  "spec.credentialsRef.name", message: "",
		},
		"credentialsRef name not DNS-1123": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.CredentialsRef.Name = "Bad_Name" },
			field:  "spec.credentialsRef.name", message: "must be a DNS-1123 subdomain",
		},
		"credentialsRef name too long": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.CredentialsRef.Name = strings.Repeat("a", 254) },
			field:  "spec.credentialsRef.name", message: "may not be more than 253",
		},
		"credentials key with a slash": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.CredentialsRef.Keys = &v1.CredentialKeys{AppSecret: "app/secret"}
			},
			field: "spec.credentialsRef.keys.appSecret", message: "should match",
		},
		"corpId on InternalApp": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.CorpID = "ding0123" },
			field:  "spec.corpId", message: "must not be set for any other type",
		},
		"corpId missing on ThirdPartyApp": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.Type = v1.TokenTypeThirdPartyApp },
			field:  "spec.corpId", message: "required when spec.type is ThirdPartyApp",
		},
		"corpId on User": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.Type = v1.TokenTypeUser; t.Spec.CorpID = "ding0123" },
			field:  "spec.corpId", message: "must not be set",
		},
		"refreshBefore below 2m": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.RefreshBefore = dur("90s") },
			field:  "spec.refreshBefore", message: "at least 2m",
		},
		"refreshBefore of milliseconds": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.RefreshBefore = dur("1500ms") },
			field:  "spec.refreshBefore", message: "at least 2m",
		},
		"target same as credentials": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.Target = &v1.Target{Name: t.Spec.CredentialsRef.Name} },
			field:  "spec.target.name", message: "must differ from spec.credentialsRef.name",
		},
		"default target same as credentials": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.CredentialsRef.Name = t.Name },
			field:  "spec.target.name", message: "must differ from spec.credentialsRef.name",
		},
		"target name not DNS-1123": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.Target = &v1.Target{Name: "-bad-"} },
			field:  "spec.target.name", message: "must be a DNS-1123 subdomain",
		},
		"target key with a space": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.Target = &v1.Target{Key: "access token"} },
			field:  "spec.target.key", message: "should match",
		},
		"target key expiresAt": {
			mutate: func(t *v1.DingTalkToken) { t.Spec.Target = &v1.Target{Key: "expiresAt"} },
			field:  "spec.target.key", message: "may not be expiresAt or corpId",
		},
		"template key equals token key": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.Target = &v1.Target{Template: &v1.TargetTemplate{Data: map[string]string{"accessToken": "x"}}}
			},
			field: "spec.target.template.data", message: "may not be the token key",
		},
		"template key corpId": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.Target = &v1.Target{Template: &v1.TargetTemplate{Data: map[string]string{"corpId": "x"}}}
			},
			field: "spec.target.template.data", message: "expiresAt or corpId",
		},
		"template key with a slash": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.Target = &v1.Target{Template: &v1.TargetTemplate{Data: map[string]string{"conf/token": "x"}}}
			},
			field: "spec.target.template.data", message: "must match ^[-._a-zA-Z0-9]+$",
		},
		"template with too many keys": {
			mutate: func(t *v1.DingTalkToken) {
				data := map[string]string{}
				for i := range 17 {
					data[fmt.Sprintf("k%d", i)] = "x"
				}
				t.Spec.Target = &v1.Target{Template: &v1.TargetTemplate{Data: data}}
			},
			field: "spec.target.template.data", message: "must have at most 16 items",
		},
		"template label with the operator prefix": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.Target = &v1.Target{Template: &v1.TargetTemplate{Metadata: &v1.TargetTemplateMetadata{
					Labels: map[string]string{"dingtalk.tokens.dev/owner": "me"}}}}
			},
			field: "spec.target.template.metadata.labels", message: "may not use the dingtalk.tokens.dev/ prefix",
		},
		"template annotation managed-by": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.Target = &v1.Target{Template: &v1.TargetTemplate{Metadata: &v1.TargetTemplateMetadata{
					Annotations: map[string]string{"app.kubernetes.io/managed-by": "me"}}}}
			},
			field: "spec.target.template.metadata.annotations", message: "app.kubernetes.io/managed-by",
		},
		"name of 240 characters": {
			mutate: func(t *v1.DingTalkToken) { t.Name = strings.Repeat("n", 240) },
			field:  "metadata.name", message: "may not be more than 239",
		},
		"rollout target of an unknown kind": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.RolloutRestartTargets = []v1.RolloutRestartTarget{{Kind: "CronJob", Name: "x"}}
			},
			field: "spec.rolloutRestartTargets[0].kind", message: `supported values: "Deployment", "StatefulSet", "DaemonSet"`,
		},
		"rollout target name not DNS-1123": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.RolloutRestartTargets = []v1.RolloutRestartTarget{{Kind: "Deployment", Name: "Web_App"}}
			},
			field: "spec.rolloutRestartTargets[0].name", message: "must be a DNS-1123 subdomain",
		},
		"rollout target listed twice": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.RolloutRestartTargets = []v1.RolloutRestartTarget{{Kind: "Deployment", Name: "a"}, {Kind: "Deployment", Name: "a"}}
			},
			field: "spec.rolloutRestartTargets[1]", message: "Duplicate value",
		},
		"more than 20 rollout targets": {
			mutate: func(t *v1.DingTalkToken) {
				for i := range 21 {
					t.Spec.RolloutRestartTargets = append(t.Spec.RolloutRestartTargets, v1.RolloutRestartTarget{Kind: "Deployment", Name: fmt.Sprintf("d%d", i)})
				}
			},
			field: "spec.rolloutRestartTargets", message: "must have at most 20 items",
		},
		"User refresh-token Secret named as credentials": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.Type = v1.TokenTypeUser
				t.Spec.CredentialsRef.Name = t.Name + "-refresh-token"
			},
			field: "spec", message: "may not be <metadata.name>-refresh-token",
		},
		"suiteTicket on InternalApp": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.SuiteTicket = &v1.SuiteTicketConfig{Source: v1.SuiteTicketSourceStream}
			},
			field: "spec.suiteTicket", message: "only for the types that use a suite ticket (ThirdPartyApp, ThirdPartySuite)",
		},
		"suiteTicket on User": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.Type = v1.TokenTypeUser
				t.Spec.SuiteTicket = &v1.SuiteTicketConfig{Source: v1.SuiteTicketSourceSecret}
			},
			field: "spec.suiteTicket", message: "remove it for InternalApp and User",
		},
		"unknown suiteTicket source": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.Type = v1.TokenTypeThirdPartySuite
				t.Spec.SuiteTicket = &v1.SuiteTicketConfig{Source: "Webhook"}
			},
			field: "spec.suiteTicket.source", message: `supported values: "Secret", "Stream"`,
		},
		"Stream suite-ticket Secret named as credentials": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.Type = v1.TokenTypeThirdPartySuite
				t.Spec.SuiteTicket = &v1.SuiteTicketConfig{Source: v1.SuiteTicketSourceStream}
				t.Spec.CredentialsRef.Name = t.Name + "-suite-ticket"
			},
			field: "spec", message: "may not be <metadata.name>-suite-ticket",
		},
		"Stream suite-ticket Secret named as target": {
			mutate: func(t *v1.DingTalkToken) {
				t.Spec.Type = v1.TokenTypeThirdPartySuite
				t.Spec.SuiteTicket = &v1.SuiteTicketConfig{Source: v1.SuiteTicketSourceStream}
				t.Spec.Target = &v1.Target{Name: t.Name + "-suite-ticket"}
			},
			field: "spec", message: "may not be <metadata.name>-suite-ticket",
		},
	}
	i := 0
	for name, tc := range cases {
		i++
		tok := base(fmt.Sprintf("invalid-%d", i), v1.TokenTypeInternalApp)
		tc.mutate(tok)
		t.Run(name, func(t *testing.T) {
			err := k8sClient.Create(ctx(t), tok)
			assertInvalid(t, err, tc.field, tc.message)
		})
	}
}

// assertInvalid checks that err is an Invalid API error naming field, with message in it.
func assertInvalid(t *testing.T, err error, field, message string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want refused naming %s", field)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("error is not Invalid: %v", err)
	}
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Details == nil {
		t.Fatalf("error has no field details: %v", err)
	}
	var fields []string
	for _, cause := range status.Status().Details.Causes {
		fields = append(fields, cause.Field)
		if cause.Field == field && strings.Contains(cause.Message, message) {
			return
		}
	}
	t.Fatalf("no cause names field %q with message containing %q; fields %v; error: %v", field, message, fields, err)
}

func TestAdmissionAcceptsValidTokens(t *testing.T) {
	cases := map[string]struct {
		// tok is the token to create.
		tok *v1.DingTalkToken
		// check asserts on the object as stored (defaults applied).
		check func(t *testing.T, got *v1.DingTalkToken)
	}{
		"InternalApp minimal, target key defaulted": {
			tok: base("valid-app-min", v1.TokenTypeInternalApp),
			check: func(t *testing.T, got *v1.DingTalkToken) {
				if got.Spec.Target != nil {
					t.Errorf("target should stay unset, got %+v", got.Spec.Target)
				}
			},
		},
		"InternalApp with every optional field": {
			tok: func() *v1.DingTalkToken {
				tok := base("valid-app-full", v1.TokenTypeInternalApp)
				tok.Spec.CredentialsRef.Keys = &v1.CredentialKeys{AppKey: "APP_KEY", AppSecret: "APP_SECRET"}
				tok.Spec.RefreshBefore = dur("30m")
				tok.Spec.Suspend = true
				tok.Spec.Target = &v1.Target{Name: "crm-bot-token", Template: &v1.TargetTemplate{
					Metadata: &v1.TargetTemplateMetadata{Labels: map[string]string{"team": "crm"}, Annotations: map[string]string{"note": "x"}},
					Data:     map[string]string{"config.json": `{"token":"{{ .AccessToken }}","expiresAt":"{{ .ExpiresAt }}"}`},
				}}
				tok.Spec.RolloutRestartTargets = []v1.RolloutRestartTarget{{Kind: "Deployment", Name: "crm-bot"}, {Kind: "StatefulSet", Name: "crm-bot"}, {Kind: "DaemonSet", Name: "agent"}}
				return tok
			}(),
			check: func(t *testing.T, got *v1.DingTalkToken) {
				if got.Spec.Target.Key != v1.DefaultTargetKey {
					t.Errorf("target.key = %q, want default %q", got.Spec.Target.Key, v1.DefaultTargetKey)
				}
				if got.Spec.RefreshBefore.Duration != 30*time.Minute {
					t.Errorf("refreshBefore = %v", got.Spec.RefreshBefore)
				}
			},
		},
		"ThirdPartyApp with corpId": {tok: base("valid-corp", v1.TokenTypeThirdPartyApp)},
		"ThirdPartyApp with custom keys and target key": {
			tok: func() *v1.DingTalkToken {
				tok := base("valid-corp-keys", v1.TokenTypeThirdPartyApp)
				tok.Spec.CredentialsRef.Keys = &v1.CredentialKeys{SuiteKey: "SUITE_KEY", SuiteSecret: "SUITE_SECRET", SuiteTicket: "suite.ticket"}
				tok.Spec.Target = &v1.Target{Key: "token"}
				return tok
			}(),
		},
		"ThirdPartySuite minimal": {tok: base("valid-suite", v1.TokenTypeThirdPartySuite)},
		"ThirdPartySuite with refreshBefore of exactly 2m": {
			tok: func() *v1.DingTalkToken {
				tok := base("valid-suite-2m", v1.TokenTypeThirdPartySuite)
				tok.Spec.RefreshBefore = dur("2m")
				return tok
			}(),
		},
		"User minimal": {tok: base("valid-user", v1.TokenTypeUser)},
		"User with keys and a target": {
			tok: func() *v1.DingTalkToken {
				tok := base("valid-user-full", v1.TokenTypeUser)
				tok.Spec.CredentialsRef.Keys = &v1.CredentialKeys{ClientID: "id", ClientSecret: "secret", RefreshToken: "rt", AuthCode: "code"}
				tok.Spec.Target = &v1.Target{Name: "user-token", Key: "token"}
				return tok
			}(),
		},
		"name of 239 characters": {tok: base(strings.Repeat("n", 239), v1.TokenTypeInternalApp)},
		"ThirdPartyApp with suite tickets from Stream": {
			tok: func() *v1.DingTalkToken {
				tok := base("valid-corp-stream", v1.TokenTypeThirdPartyApp)
				tok.Spec.SuiteTicket = &v1.SuiteTicketConfig{Source: v1.SuiteTicketSourceStream}
				return tok
			}(),
			check: func(t *testing.T, got *v1.DingTalkToken) {
				if got.TicketSource() != v1.SuiteTicketSourceStream {
					t.Errorf("ticket source = %q", got.TicketSource())
				}
			},
		},
		"ThirdPartySuite with an empty suiteTicket, source defaulted": {
			tok: func() *v1.DingTalkToken {
				tok := base("valid-suite-secret-source", v1.TokenTypeThirdPartySuite)
				tok.Spec.SuiteTicket = &v1.SuiteTicketConfig{}
				return tok
			}(),
			check: func(t *testing.T, got *v1.DingTalkToken) {
				if got.Spec.SuiteTicket == nil || got.Spec.SuiteTicket.Source != v1.SuiteTicketSourceSecret {
					t.Errorf("suiteTicket = %+v, want source defaulted to Secret", got.Spec.SuiteTicket)
				}
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if err := k8sClient.Create(ctx(t), tc.tok); err != nil {
				t.Fatalf("refused: %v", err)
			}
			got := &v1.DingTalkToken{}
			if err := k8sClient.Get(ctx(t), client.ObjectKeyFromObject(tc.tok), got); err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

func TestAdmissionRefusesImmutableChanges(t *testing.T) {
	cases := map[string]struct {
		// tok is created first.
		tok *v1.DingTalkToken
		// mutate changes a field that cannot change.
		mutate func(*v1.DingTalkToken)
		// field is the path the API error must name.
		field string
		// message is a fragment of the message.
		message string
	}{
		"type": {
			tok:    base("immutable-type", v1.TokenTypeInternalApp),
			mutate: func(t *v1.DingTalkToken) { t.Spec.Type = v1.TokenTypeThirdPartySuite },
			field:  "spec.type", message: "spec.type is immutable",
		},
		"target name": {
			tok: func() *v1.DingTalkToken {
				tok := base("immutable-target", v1.TokenTypeInternalApp)
				tok.Spec.Target = &v1.Target{Name: "first"}
				return tok
			}(),
			mutate: func(t *v1.DingTalkToken) { t.Spec.Target.Name = "second" },
			field:  "spec.target.name", message: "spec.target.name is immutable",
		},
		"target name set when it defaulted to metadata.name": {
			tok:    base("immutable-default-target", v1.TokenTypeInternalApp),
			mutate: func(t *v1.DingTalkToken) { t.Spec.Target = &v1.Target{Name: "other"} },
			field:  "spec.target.name", message: "spec.target.name is immutable",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if err := k8sClient.Create(ctx(t), tc.tok); err != nil {
				t.Fatalf("create refused: %v", err)
			}
			tc.mutate(tc.tok)
			assertInvalid(t, k8sClient.Update(ctx(t), tc.tok), tc.field, tc.message)
		})
	}
}

func TestAdmissionAllowsMutableChanges(t *testing.T) {
	tok := base("mutable", v1.TokenTypeInternalApp)
	if err := k8sClient.Create(ctx(t), tok); err != nil {
		t.Fatal(err)
	}
	tok.Spec.Suspend = true
	tok.Spec.RefreshBefore = dur("1h")
	tok.Spec.CredentialsRef.Name = "other-credentials"
	tok.Spec.Target = &v1.Target{Name: tok.Name, Key: "token"}
	if err := k8sClient.Update(ctx(t), tok); err != nil {
		t.Fatalf("update of mutable fields refused: %v", err)
	}
}
