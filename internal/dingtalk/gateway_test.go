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

package dingtalk_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

const streamTicket = "stream-ticket-3b9d"

var openReq = dingtalk.StreamOpenRequest{
	ClientID: "suitekey", ClientSecret: suiteSecret,
	Subscriptions: []dingtalk.StreamSubscription{{Type: "EVENT", Topic: "*"}}, UA: "test", LocalIP: "10.0.0.1",
}

func TestOpenStreamConnection(t *testing.T) {
	tests := map[string]struct {
		status   int            // HTTP status of the answer
		body     string         // answer body
		header   http.Header    // answer headers
		endpoint string         // expected endpoint when class is ""
		class    dingtalk.Class // expected error class, "" for success
		code     string         // expected Error.Code
	}{
		"loopback ws": {status: 200, body: `{"endpoint":"ws://127.0.0.1:9/connect","ticket":"` + streamTicket + `"}`,
			endpoint: "ws://127.0.0.1:9/connect"},
		"wss": {status: 200, body: `{"endpoint":"wss://wss-open-connection.dingtalk.com:443/connect","ticket":"` + streamTicket + `"}`,
			endpoint: "wss://wss-open-connection.dingtalk.com:443/connect"},
		"ws on a public host": {status: 200, body: `{"endpoint":"ws://wss-open-connection.dingtalk.com/connect","ticket":"` + streamTicket + `"}`,
			class: dingtalk.ClassUnavailable},
		"https endpoint": {status: 200, body: `{"endpoint":"https://example.com/connect","ticket":"` + streamTicket + `"}`,
			class: dingtalk.ClassUnavailable},
		"missing ticket":   {status: 200, body: `{"endpoint":"wss://example.com/connect"}`, class: dingtalk.ClassUnavailable},
		"missing endpoint": {status: 200, body: `{"ticket":"` + streamTicket + `"}`, class: dingtalk.ClassUnavailable},
		"malformed":        {status: 200, body: `{"endpoint":`, class: dingtalk.ClassUnavailable},
		"not an object":    {status: 200, body: `["wss://example.com"]`, class: dingtalk.ClassUnavailable},
		"bad secret": {status: 400, body: `{"code":"invalidClientIdOrSecret","message":"` + suiteSecret + `"}`,
			class: dingtalk.ClassCredentialsRejected, code: "invalidClientIdOrSecret"},
		"401":          {status: 401, body: `{"code":"Unauthorized"}`, class: dingtalk.ClassCredentialsRejected, code: "Unauthorized"},
		"server error": {status: 503, body: `{"code":"ServiceUnavailable"}`, class: dingtalk.ClassUnavailable, code: "ServiceUnavailable"},
		"throttled": {status: 429, body: `{"code":"Throttling"}`, header: http.Header{"Retry-After": {"7"}},
			class: dingtalk.ClassRateLimited, code: "Throttling"},
		"legacy errcode with 200": {status: 200, body: `{"errcode":90018,"errmsg":"` + suiteSecret + `"}`,
			class: dingtalk.ClassRateLimited, code: "90018"},
		"redirect": {status: 307, header: http.Header{"Location": {"https://elsewhere.example/"}}, class: dingtalk.ClassUnavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got dingtalk.StreamOpenRequest
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != dingtalk.PathOpenConnection {
					t.Errorf("%s %s, want POST %s", r.Method, r.URL.Path, dingtalk.PathOpenConnection)
				}
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
					t.Errorf("request body: %v", err)
				}
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()

			st, err := newClient(t, srv.URL, nil).OpenStreamConnection(t.Context(), openReq)
			if got.ClientID != openReq.ClientID || got.ClientSecret != suiteSecret || len(got.Subscriptions) != 1 ||
				got.Subscriptions[0] != (dingtalk.StreamSubscription{Type: "EVENT", Topic: "*"}) || got.UA != "test" || got.LocalIP != "10.0.0.1" {
				t.Errorf("DingTalk received %+v", got.Subscriptions)
			}
			if tc.class == "" {
				if err != nil || st.Endpoint != tc.endpoint || st.Ticket != streamTicket {
					t.Fatalf("got %v, %v; want endpoint %s and the ticket", st, err, tc.endpoint)
				}
				return
			}
			var de *dingtalk.Error
			if !errors.As(err, &de) || de.Class != tc.class || de.Code != tc.code || de.Endpoint != dingtalk.PathOpenConnection {
				t.Fatalf("got %v, want class %s code %q", err, tc.class, tc.code)
			}
			for _, rendered := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), st.String()} {
				if strings.Contains(rendered, suiteSecret) || strings.Contains(rendered, streamTicket) {
					t.Errorf("%q holds a secret", rendered)
				}
			}
		})
	}
}

func TestOpenStreamConnectionNeedsCredentials(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	defer srv.Close()
	c := newClient(t, srv.URL, nil)
	for _, req := range []dingtalk.StreamOpenRequest{{ClientID: "k"}, {ClientSecret: suiteSecret}} {
		if _, err := c.OpenStreamConnection(t.Context(), req); dingtalk.ClassOf(err) != dingtalk.ClassCredentialsRejected {
			t.Errorf("got %v, want CredentialsRejected", err)
		}
	}
	if calls.Load() != 0 {
		t.Errorf("%d calls made without credentials", calls.Load())
	}
	if s := openReq.String(); strings.Contains(s, suiteSecret) {
		t.Errorf("String() = %q holds the secret", s)
	}
}

func TestValidateStreamURL(t *testing.T) {
	tests := map[string]struct {
		url string // the answered endpoint
		ok  bool   // accepted
	}{
		"wss":                 {url: "wss://wss-open-connection.dingtalk.com/connect", ok: true},
		"wss with a port":     {url: "wss://wss-open-connection.dingtalk.com:443/connect", ok: true},
		"ws on 127.0.0.1":     {url: "ws://127.0.0.1:8089/gateway/connect", ok: true},
		"ws on ::1":           {url: "ws://[::1]:8089/connect", ok: true},
		"ws on localhost":     {url: "ws://localhost/connect", ok: true},
		"ws on a public host": {url: "ws://wss-open-connection.dingtalk.com/connect"},
		"ws on all":           {url: "ws://0.0.0.0:80/connect"},
		"https":               {url: "https://wss-open-connection.dingtalk.com/connect"},
		"user info":           {url: "wss://u:p@wss-open-connection.dingtalk.com/connect"},
		"fragment":            {url: "wss://wss-open-connection.dingtalk.com/connect#x"},
		"relative":            {url: "/connect"},
		"not a URL":           {url: "wss://%zz"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := dingtalk.ValidateStreamURL(tc.url)
			if (err == nil) != tc.ok {
				t.Errorf("ValidateStreamURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
			}
		})
	}
}
