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

package testenv

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// TestFindLeaks: each rule of the scanner finds what it is for, and nothing in clean text.
func TestFindLeaks(t *testing.T) {
	const secret = "appsecret-0123456789abcdef0123"
	b64 := func(prefix string) string { return base64.StdEncoding.EncodeToString([]byte(prefix + secret + "}")) }
	// A log line with client-go's hex dump of a response body holding the secret.
	dumped, _ := json.Marshal(map[string]string{"msg": "Response Body", "body": hex.Dump([]byte(`{"data":{"k":"` + secret + `"}}`))})
	tests := map[string]struct {
		text  string // what is scanned
		leaks int    // findings expected
	}{
		"clean":                       {text: `{"msg":"Refreshed token","dingtalktoken":"ns/name","digest":"hmac:85c95c319c1ef43d"}`},
		"raw":                         {text: `{"msg":"x","v":"` + secret + `"}`, leaks: 1},
		"hex":                         {text: hex.EncodeToString([]byte(secret)), leaks: 1},
		"base64, aligned":             {text: base64.StdEncoding.EncodeToString([]byte(secret)), leaks: 1},
		"base64, one byte before":     {text: b64("{"), leaks: 1},
		"base64, two bytes before":    {text: b64("{\""), leaks: 1},
		"base64 inside a longer blob": {text: b64(`{"token":"`), leaks: 1},
		"token-shaped":                {text: `token 0123456789abcdef0123456789abcdef here`, leaks: 1},
		"longer hex is no token":      {text: `sha 0123456789abcdef0123456789abcdef01234567`},
		"uuid is no token":            {text: `"reconcileID":"5f2b7c1e-8a9d-4c3b-9e1f-0a2b3c4d5e6f"`},
	}
	values := map[string]Kind{secret: Credential}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := findLeaks("text", []byte(tc.text), values); len(got) != tc.leaks {
				t.Errorf("findLeaks() = %q, want %d findings", got, tc.leaks)
			}
		})
	}
	t.Run("hex dump decoded", func(t *testing.T) {
		views := decodedLogViews(append(dumped, '\n'))
		found := false
		for _, v := range views {
			found = found || len(findLeaks("view", v, values)) > 0
		}
		if !found {
			t.Fatal("the scanner does not find a value in a hex-dumped body")
		}
	})
}

// TestContainsEncoded: a value raw, in hex, or in base64 at any offset of a longer blob.
func TestContainsEncoded(t *testing.T) {
	v := "tok-0123456789abcdef0123"
	for _, text := range []string{
		"x" + v + "y",
		hex.EncodeToString([]byte("ab" + v)),
		base64.StdEncoding.EncodeToString([]byte(v)),
		base64.StdEncoding.EncodeToString([]byte("a" + v + "b")),
		base64.StdEncoding.EncodeToString([]byte(`{"token":"` + v + `"}`)),
	} {
		if !containsEncoded([]byte(text), v) {
			t.Errorf("containsEncoded(%q) = false", text)
		}
	}
	if containsEncoded([]byte(base64.StdEncoding.EncodeToString([]byte("something else entirely, long enough"))), v) {
		t.Error("false positive")
	}
}

// TestFrameLines: a logged DingTalk Stream frame or ack is a finding, raw or escaped in a JSON log
// line; the stream's own log lines (kinds, counts, states) are not.
func TestFrameLines(t *testing.T) {
	for line, want := range map[string]bool{
		`{"msg":"frame","raw":"{\"specVersion\":\"1.0\",\"type\":\"EVENT\",\"data\":\"{}\"}"}`:                   true,
		`{"specVersion":"1.0","type":"SYSTEM","headers":{"topic":"ping"}}`:                                       true,
		`{"msg":"ack","body":"{\"code\":200,\"headers\":{\"messageId\": \"x\"}}"}`:                               true,
		`{"logger":"stream","msg":"DingTalk stream state changed","suite":"suite-1a2b3c4d","phase":"Connected"}`: false,
		`{"logger":"stream","msg":"Dropped an oversized DingTalk stream frame","limitBytes":65536}`:              false,
	} {
		if got := len(frameLines([]byte(line))) > 0; got != want {
			t.Errorf("frameLines(%s) found %v, want %v", line, got, want)
		}
	}
}

// TestBodyLines: a logged body is a finding, except an empty one and the event recorder's.
func TestBodyLines(t *testing.T) {
	for line, want := range map[string]bool{
		`{"logger":"controller","msg":"Response Body","body":"{\"data\":1}"}`: true,
		`{"logger":"controller","msg":"Response Body","body":""}`:             false,
		`{"logger":"events","msg":"Request Body","body":"{}"}`:                false,
		`{"logger":"controller","msg":"Refreshed token"}`:                     false,
	} {
		if got := len(bodyLines([]byte(line))) > 0; got != want {
			t.Errorf("bodyLines(%s) found %v, want %v", line, got, want)
		}
	}
}

// TestSensitiveSecrets: a target Secret's token is recorded as an access token, a refresh-token
// Secret's as a refresh token, a suite-ticket Secret's as a suite ticket; bookkeeping keys and
// short values are not; a credential or a suite ticket in a target Secret is a finding, its
// token is not.
func TestSensitiveSecrets(t *testing.T) {
	target := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app"}, Data: map[string][]byte{
		"accessToken": []byte("0123456789abcdef0123456789abcdef"), v1alpha1.ExpiresAtKey: []byte("2026-11-25T15:30:00Z"),
		v1alpha1.CorpIDKey: []byte("dingcorp1234"), "short": []byte("x"),
	}}
	refresh := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app" + v1alpha1.RefreshTokenSecretSuffix},
		Data: map[string][]byte{v1alpha1.RefreshTokenKey: []byte("rotated-refresh-token-1")}}
	ticket := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app" + v1alpha1.SuiteTicketSecretSuffix},
		Data: map[string][]byte{v1alpha1.SuiteTicketKey: []byte("pushed-suite-ticket-1")}}
	var s Sensitive
	s.AddSecret(&target)
	s.AddSecret(&refresh)
	s.AddSecret(&ticket)
	cred := s.New(Credential, "appsecret-")
	got := s.snapshot()
	want := map[string]Kind{"0123456789abcdef0123456789abcdef": AccessToken, "rotated-refresh-token-1": RefreshToken,
		"pushed-suite-ticket-1": SuiteTicket, cred: Credential}
	if len(got) != len(want) {
		t.Fatalf("recorded %v, want %v", got, want)
	}
	for v, k := range want {
		if got[v] != k {
			t.Errorf("%s recorded as %q, want %q", v, got[v], k)
		}
	}
	if leaks := targetSecretLeaks([]corev1.Secret{target, refresh, ticket}, got); len(leaks) != 0 {
		t.Errorf("clean Secrets: %q", leaks)
	}
	target.Data["config"] = []byte(`{"secret":"` + cred + `"}`)
	if leaks := targetSecretLeaks([]corev1.Secret{target}, got); len(leaks) != 1 || !strings.Contains(leaks[0], "credential") {
		t.Errorf("a credential in a target Secret: %q", leaks)
	}
	target.Data["config"] = []byte(`{"ticket":"pushed-suite-ticket-1"}`)
	if leaks := targetSecretLeaks([]corev1.Secret{target}, got); len(leaks) != 1 || !strings.Contains(leaks[0], "suite ticket") {
		t.Errorf("a suite ticket in a target Secret: %q", leaks)
	}
}
