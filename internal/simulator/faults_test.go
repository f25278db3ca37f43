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

package simulator_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

func TestFaults(t *testing.T) {
	tests := map[string]struct {
		fault  simulator.Fault                            // the fault set
		check  func(*testing.T, answer)                   // what the answer must be
		result string                                     // expected Stats result of the call
		call   func(*testing.T, *simulator.Server) answer // defaults to an app call
	}{
		"error answer": {fault: simulator.Fault{Status: 503, Code: "ServiceUnavailable", Message: "try later"},
			check: func(t *testing.T, a answer) {
				wantError(t, a, 503, "ServiceUnavailable")
				if a.Message != "try later" {
					t.Errorf("message %q", a.Message)
				}
			}, result: "fault:ServiceUnavailable"},
		"code only means 400": {fault: simulator.Fault{Code: "invalidClientIdOrSecret"},
			check: func(t *testing.T, a answer) { wantError(t, a, 400, "invalidClientIdOrSecret") }, result: "fault:invalidClientIdOrSecret"},
		"status only": {fault: simulator.Fault{Status: 500},
			check: func(t *testing.T, a answer) { wantError(t, a, 500, "ServiceUnavailable") }, result: "fault:ServiceUnavailable"},
		"429 with Retry-After": {fault: simulator.Fault{RetryAfter: 30},
			check: func(t *testing.T, a answer) {
				wantError(t, a, 429, "Throttling")
				if a.Header.Get("Retry-After") != "30" {
					t.Errorf("Retry-After %q", a.Header.Get("Retry-After"))
				}
			}, result: "fault:Throttling"},
		"Retry-After as a date": {fault: simulator.Fault{RetryAfter: 90, RetryAfterDate: true},
			check: func(t *testing.T, a answer) {
				if got := a.Header.Get("Retry-After"); got != "Wed, 25 Nov 2026 12:01:30 GMT" {
					t.Errorf("Retry-After %q", got)
				}
			}, result: "fault:Throttling"},
		"malformed": {fault: simulator.Fault{Malformed: true},
			check: func(t *testing.T, a answer) {
				if a.Status != 200 || json.Valid([]byte(a.Raw)) {
					t.Errorf("HTTP %d body %q, want 200 with invalid JSON", a.Status, a.Raw)
				}
			}, result: "fault:malformed"},
		"errcode with HTTP 200": {fault: simulator.Fault{ErrCode200: 90018},
			check: func(t *testing.T, a answer) {
				if a.Status != 200 || a.ErrCode != 90018 || a.AccessToken != "" {
					t.Errorf("HTTP %d errcode %d", a.Status, a.ErrCode)
				}
			}, result: "fault:errcode:90018"},
		"raw body": {fault: simulator.Fault{Status: 202, Body: `{"accessToken":"x","expireIn":0}`},
			check: func(t *testing.T, a answer) {
				if a.Status != 202 || a.Raw != `{"accessToken":"x","expireIn":0}` {
					t.Errorf("HTTP %d body %q", a.Status, a.Raw)
				}
			}, result: "fault:body"},
		"latency only, then a normal answer": {fault: simulator.Fault{Latency: simulator.Duration(time.Millisecond)},
			check: func(t *testing.T, a answer) { wantSuccess(t, a) }, result: "success"},
		"matches the endpoint": {fault: simulator.Fault{Endpoint: simulator.PathSuiteAccessToken, Status: 500},
			check: func(t *testing.T, a answer) { wantSuccess(t, a) }, result: "success"},
		"matches the credential": {fault: simulator.Fault{Credential: "otherapp", Status: 500},
			check: func(t *testing.T, a answer) { wantSuccess(t, a) }, result: "success"},
		"matches the user's clientId": {fault: simulator.Fault{Credential: "dinguser", Status: 500},
			call: func(t *testing.T, srv *simulator.Server) answer {
				return post(t, srv, simulator.PathUserAccessToken, refreshReq(refreshToken))
			},
			check: func(t *testing.T, a answer) { wantError(t, a, 500, "ServiceUnavailable") }, result: "fault:ServiceUnavailable"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, _ := start(t)
			if err := srv.SetFault(tc.fault); err != nil {
				t.Fatal(err)
			}
			call := tc.call
			if call == nil {
				call = func(t *testing.T, srv *simulator.Server) answer {
					return post(t, srv, simulator.PathAppAccessToken, appReq(appSecret))
				}
			}
			tc.check(t, call(t, srv))
			if got := srv.Stats().Results[tc.result]; got != 1 {
				t.Errorf("stats result %q = %d, want 1 (%v)", tc.result, got, srv.Stats().Results)
			}
		})
	}
}

func TestFaultClosesTheConnection(t *testing.T) {
	srv, _ := start(t)
	if err := srv.SetFault(simulator.Fault{Close: true}); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(appReq(appSecret))
	resp, err := http.Post(srv.URL()+simulator.PathAppAccessToken, "application/json", bytes.NewReader(b))
	if err == nil {
		_ = resp.Body.Close()
		t.Fatalf("got HTTP %d, want a dropped connection", resp.StatusCode)
	}
	if got := srv.Stats().Results["fault:close"]; got != 1 {
		t.Errorf("fault:close counted %d times", got)
	}
}

func TestFaultCountAndOrder(t *testing.T) {
	srv, _ := start(t)
	for _, f := range []simulator.Fault{
		{Count: 2, Status: 500},
		{Count: 1, Status: 429},
	} {
		if err := srv.SetFault(f); err != nil {
			t.Fatal(err)
		}
	}
	var statuses []int
	for range 4 {
		statuses = append(statuses, post(t, srv, simulator.PathAppAccessToken, appReq(appSecret)).Status)
	}
	if want := []int{500, 500, 429, 200}; !slices.Equal(statuses, want) {
		t.Errorf("statuses %v, want %v", statuses, want)
	}
	if f := srv.Faults(); len(f) != 0 {
		t.Errorf("used-up faults remain: %v", f)
	}
}

func TestFaultRate(t *testing.T) {
	srv, _ := start(t)
	if err := srv.SetFault(simulator.Fault{Rate: 0.5, Status: 503}); err != nil {
		t.Fatal(err)
	}
	const calls = 200
	for range calls {
		post(t, srv, simulator.PathAppAccessToken, appReq(appSecret))
	}
	faults := srv.Stats().Results["fault:ServiceUnavailable"]
	// Binomial(200, 0.5): outside 50..150 has a probability far below 1e-12.
	if faults < 50 || faults > 150 {
		t.Errorf("%d of %d calls faulted at rate 0.5", faults, calls)
	}
	if srv.Stats().Total != calls {
		t.Errorf("total %d", srv.Stats().Total)
	}
}

func TestFaultLatencyOutlastedByTheCaller(t *testing.T) {
	srv, _ := start(t)
	if err := srv.SetFault(simulator.Fault{Latency: simulator.Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 50 * time.Millisecond}
	b, _ := json.Marshal(appReq(appSecret))
	if resp, err := client.Post(srv.URL()+simulator.PathAppAccessToken, "application/json", bytes.NewReader(b)); err == nil {
		_ = resp.Body.Close()
		t.Fatal("the latency fault did not delay the answer")
	}
	// Close waits for the handler: it must end as soon as the caller is gone, not after a minute.
	_ = srv.Close()
}

func TestFaultValidation(t *testing.T) {
	srv, _ := start(t)
	for name, f := range map[string]simulator.Fault{
		"unknown endpoint": {Endpoint: "/v1.0/oauth2/other"},
		"rate above 1":     {Rate: 1.5},
		"negative count":   {Count: -1},
		"status":           {Status: 99},
		"two kinds":        {Close: true, Malformed: true},
		"negative latency": {Latency: -1},
	} {
		if srv.SetFault(f) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
