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

package dingtalk

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestParseRetryAfter(t *testing.T) {
	tests := map[string]struct {
		header string        // Retry-After value
		want   time.Duration // expected delay
	}{
		"absent":             {header: "", want: 0},
		"seconds":            {header: "30", want: 30 * time.Second},
		"seconds with space": {header: " 7 ", want: 7 * time.Second},
		"zero":               {header: "0", want: 0},
		"negative":           {header: "-5", want: 0},
		"an hour":            {header: "3600", want: time.Hour},
		"capped":             {header: "86400", want: time.Hour},
		"huge":               {header: "99999999999999999", want: time.Hour},
		"overflowing":        {header: "999999999999999999999999", want: 0},
		"HTTP date":          {header: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		"HTTP date, capped":  {header: now.Add(48 * time.Hour).Format(http.TimeFormat), want: time.Hour},
		"HTTP date, past":    {header: now.Add(-time.Minute).Format(http.TimeFormat), want: 0},
		"RFC 850 date":       {header: now.Add(time.Minute).Format(time.RFC850), want: time.Minute},
		"garbage":            {header: "soon", want: 0},
		"fraction":           {header: "1.5", want: 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := parseRetryAfter(tc.header, now); got != tc.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.header, got, tc.want)
			}
		})
	}
}

func TestParseAnswer(t *testing.T) {
	tests := map[string]struct {
		endpoint string        // path called
		status   int           // HTTP status
		body     string        // answer body
		class    Class         // expected class, "" for success
		code     string        // expected Error.Code
		reqID    string        // expected Error.RequestID
		expireIn time.Duration // expected Token.ExpireIn on success
	}{
		"success": {endpoint: PathAppAccessToken, status: 200,
			body: `{"accessToken":"t","expireIn":7200}`, expireIn: 2 * time.Hour},
		"success, fractional expireIn": {endpoint: PathAppAccessToken, status: 200,
			body: `{"accessToken":"t","expireIn":10.5}`, expireIn: 10500 * time.Millisecond},
		"expireIn of 10 s is enough": {endpoint: PathAppAccessToken, status: 200,
			body: `{"accessToken":"t","expireIn":10}`, expireIn: 10 * time.Second},
		"expireIn under 10 s": {endpoint: PathAppAccessToken, status: 200,
			body: `{"accessToken":"t","expireIn":1}`, class: ClassUnavailable},
		"expireIn 9.9 s": {endpoint: PathAppAccessToken, status: 200,
			body: `{"accessToken":"t","expireIn":9.9}`, class: ClassUnavailable},
		"success, errcode 0": {endpoint: PathAppAccessToken, status: 200,
			body: `{"errcode":0,"accessToken":"t","expireIn":60}`, expireIn: time.Minute},
		"expireIn too large": {endpoint: PathAppAccessToken, status: 200,
			body: `{"accessToken":"t","expireIn":1e300}`, class: ClassUnavailable},
		"expireIn not a number": {endpoint: PathAppAccessToken, status: 200,
			body: `{"accessToken":"t","expireIn":true}`, class: ClassUnavailable},
		"null": {endpoint: PathAppAccessToken, status: 200, body: `null`, class: ClassUnavailable},
		"string errcode": {endpoint: PathAppAccessToken, status: 200,
			body: `{"errcode":"90018"}`, class: ClassRateLimited, code: "90018"},
		"numeric code and request id": {endpoint: PathAppAccessToken, status: 500,
			body: `{"code":500,"requestid":12345}`, class: ClassUnavailable, code: "500", reqID: "12345"},
		"code with free text is dropped": {endpoint: PathAppAccessToken, status: 400,
			body: `{"code":"invalid key: abc","requestid":"a b"}`, class: ClassCredentialsRejected},
		"overlong code is dropped": {endpoint: PathAppAccessToken, status: 400,
			body: `{"code":"invalid` + strings.Repeat("x", 200) + `"}`, class: ClassCredentialsRejected},
		"malformed error body keeps the status class": {endpoint: PathUserAccessToken, status: 429,
			body: `{"code":`, class: ClassRateLimited},
		"user 4xx without a body": {endpoint: PathUserAccessToken, status: 400, class: ClassReauthorizationRequired},
		"user invalidClientIdOrSecret, any case": {endpoint: PathUserAccessToken, status: 400,
			body: `{"code":"InvalidClientIdOrSecret"}`, class: ClassCredentialsRejected, code: "InvalidClientIdOrSecret"},
		"app 401 without code": {endpoint: PathAppAccessToken, status: 401, class: ClassCredentialsRejected},
		"app 400 unknown code": {endpoint: PathAppAccessToken, status: 400,
			body: `{"code":"MissingappKey"}`, class: ClassUnavailable, code: "MissingappKey"},
		"429 without body": {endpoint: PathCorpAccessToken, status: 429, class: ClassRateLimited},
		"1xx":              {endpoint: PathCorpAccessToken, status: 101, class: ClassUnavailable},
		"600":              {endpoint: PathCorpAccessToken, status: 600, class: ClassUnavailable},
		"304":              {endpoint: PathCorpAccessToken, status: 304, class: ClassUnavailable},
		"204 empty":        {endpoint: PathCorpAccessToken, status: 204, class: ClassUnavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := http.Header{}
			h.Set("x-acs-request-id", "from-header")
			tok, err := parseAnswer(tc.endpoint, tc.status, h, []byte(tc.body), now)
			if tc.class == "" {
				if err != nil || tok.ExpireIn != tc.expireIn {
					t.Fatalf("got %v, %v; want expireIn %v", tok.ExpireIn, err, tc.expireIn)
				}
				return
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want *Error", err)
			}
			wantReqID := tc.reqID
			if wantReqID == "" {
				wantReqID = "from-header"
			}
			if de.Class != tc.class || de.Code != tc.code || de.RequestID != wantReqID {
				t.Errorf("got class %s code %q requestid %q, want %s %q %q", de.Class, de.Code, de.RequestID, tc.class, tc.code, wantReqID)
			}
		})
	}
}

// TestRotatedRefreshTokenSurvivesABadAnswer: DingTalk rotates a user's refresh token on every
// 2xx answer, so a 2xx answer carrying one returns it beside the error when another field is
// invalid; error answers and bodies that are not JSON objects return none.
func TestRotatedRefreshTokenSurvivesABadAnswer(t *testing.T) {
	tests := map[string]struct {
		status int    // HTTP status
		body   string // answer body
		want   string // the refresh token returned with the error
	}{
		"expireIn too short":       {200, `{"accessToken":"a","refreshToken":"r2","expireIn":1}`, "r2"},
		"expireIn missing":         {200, `{"accessToken":"a","refreshToken":"r2"}`, "r2"},
		"accessToken missing":      {200, `{"refreshToken":"r2","expireIn":7200}`, "r2"},
		"accessToken not a string": {200, `{"accessToken":7,"refreshToken":"r2","expireIn":7200}`, "r2"},
		"errcode in a 2xx":         {200, `{"errcode":40001,"refreshToken":"r2"}`, "r2"},
		"no refresh token":         {200, `{"accessToken":"a","expireIn":1}`, ""},
		"truncated JSON":           {200, `{"accessToken":"a","refreshToken":"r2","expireIn":`, ""},
		"4xx with a refresh token": {400, `{"code":"invalidRefreshToken","refreshToken":"r2"}`, ""},
		"5xx with a refresh token": {500, `{"refreshToken":"r2"}`, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tok, err := parseAnswer(PathUserAccessToken, tc.status, http.Header{}, []byte(tc.body), now)
			if err == nil {
				t.Fatalf("accepted %s", tc.body)
			}
			if tok.RefreshToken != tc.want || tok.AccessToken != "" || tok.ExpireIn != 0 {
				t.Errorf("got refresh token %q access token %q expireIn %v, want only %q",
					tok.RefreshToken, tok.AccessToken, tok.ExpireIn, tc.want)
			}
		})
	}
}

// FuzzParseAnswer checks that any answer yields a usable token or a well-formed, bounded,
// classified error. Seed corpus: testdata/fuzz/FuzzParseAnswer.
func FuzzParseAnswer(f *testing.F) {
	classes := map[Class]bool{ClassCredentialsRejected: true, ClassReauthorizationRequired: true,
		ClassRateLimited: true, ClassQuotaExceeded: true, ClassUnavailable: true}
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string, user bool) {
		endpoint := PathAppAccessToken
		if user {
			endpoint = PathUserAccessToken
		}
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		tok, err := parseAnswer(endpoint, status, h, body, now)
		if err == nil {
			if status < 200 || status > 299 || tok.AccessToken == "" || tok.ExpireIn < MinExpireIn || tok.ExpireIn > maxExpireIn {
				t.Fatalf("accepted status %d token %v expireIn %v", status, tok.AccessToken != "", tok.ExpireIn)
			}
			return
		}
		var de *Error
		if !errors.As(err, &de) {
			t.Fatalf("not an *Error: %v", err)
		}
		if !classes[de.Class] || de.Reason == "" || de.Endpoint != endpoint || de.HTTPStatus != status {
			t.Fatalf("badly formed error %#v", de)
		}
		if de.RetryAfter < 0 || de.RetryAfter > MaxRetryAfter {
			t.Fatalf("RetryAfter %v out of range", de.RetryAfter)
		}
		if sanitizeID(de.Code) != de.Code || sanitizeID(de.RequestID) != de.RequestID {
			t.Fatalf("unsanitised code %q or request id %q", de.Code, de.RequestID)
		}
		if len(de.Error()) > 512 {
			t.Fatalf("error text too long: %d bytes", len(de.Error()))
		}
	})
}
