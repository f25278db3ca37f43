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
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

// businessAnswer is an answer of a business endpoint: the new API's error shape or the old
// API's errcode shape, and a few success fields.
type businessAnswer struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	ErrCode int    `json:"errcode"`
	SubCode string `json:"sub_code"`
	UnionID string `json:"unionId"`
	UserID  string `json:"userid"`
	Result  struct {
		UserID string `json:"userid"`
	} `json:"result"`
	Raw string `json:"-"`
}

// call sends a business request with headers and decodes the answer.
func call(t *testing.T, method, url, body string, header http.Header) businessAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	a := businessAnswer{Status: resp.StatusCode}
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatalf("HTTP %d: the answer is not JSON: %v", resp.StatusCode, err)
	}
	a.Raw = string(raw)
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func tokenHeader(v ...string) http.Header { return http.Header{"X-Acs-Dingtalk-Access-Token": v} }

// issue returns a fresh token of each kind the simulator issues.
func issue(t *testing.T, srv *simulator.Server) (app, corp, suite, user string) {
	t.Helper()
	a := post(t, srv, simulator.PathAppAccessToken, appReq(appSecret))
	c := post(t, srv, simulator.PathCorpAccessToken, corpReq(suiteTicket, "dingcorp1"))
	s := post(t, srv, simulator.PathSuiteAccessToken, suiteReq(suiteTicket))
	u := post(t, srv, simulator.PathUserAccessToken, refreshReq(refreshToken))
	for _, x := range []answer{a, c, s, u} {
		wantSuccess(t, x)
	}
	return a.AccessToken, c.AccessToken, s.AccessToken, u.AccessToken
}

// TestBusinessNewAPI: the new API takes its token in the header or as Bearer, answers a missing,
// unknown, expired or ambiguous token HTTP 400 as DingTalk does, and a token of the wrong kind 403.
func TestBusinessNewAPI(t *testing.T) {
	srv, clk := start(t)
	app, corp, suite, user := issue(t, srv)
	me := srv.URL() + simulator.PathUsersMe
	byID := srv.URL() + "/v1.0/contact/users/union123"
	tests := map[string]struct {
		url    string      // what is called
		header http.Header // how the token is presented
		status int         // the HTTP status wanted
		code   string      // the DingTalk code wanted ("" on success)
		result string      // the Stats result wanted
	}{
		"user token in the header":         {me, tokenHeader(user), 200, "", "success"},
		"user token as Bearer":             {me, http.Header{"Authorization": {"Bearer " + user}}, 200, "", "success"},
		"the same token both ways":         {me, http.Header{"X-Acs-Dingtalk-Access-Token": {user}, "Authorization": {"bearer " + user}}, 200, "", "success"},
		"app token on users/{unionId}":     {byID, tokenHeader(app), 200, "", "success"},
		"corp token on users/{unionId}":    {byID, tokenHeader(corp), 200, "", "success"},
		"no token":                         {me, nil, 400, "AuthenticationFailed.MissingParameter", "AuthenticationFailed.MissingParameter"},
		"a token never issued":             {me, tokenHeader("0123456789abcdef0123456789abcdef"), 400, "InvalidAuthentication", "InvalidAuthentication"},
		"two different tokens":             {me, http.Header{"X-Acs-Dingtalk-Access-Token": {user}, "Authorization": {"Bearer other"}}, 400, "InvalidAuthentication", "InvalidAuthentication"},
		"the header twice":                 {me, tokenHeader(user, app), 400, "InvalidAuthentication", "InvalidAuthentication"},
		"app token on users/me":            {me, tokenHeader(app), 403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "Forbidden.AccessDenied.AccessTokenPermissionDenied"},
		"suite token on users/{unionId}":   {byID, tokenHeader(suite), 403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "Forbidden.AccessDenied.AccessTokenPermissionDenied"},
		"a token in the query is no token": {me + "?access_token=" + user, nil, 400, "AuthenticationFailed.MissingParameter", "AuthenticationFailed.MissingParameter"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := call(t, http.MethodGet, tc.url, "", tc.header)
			if a.Status != tc.status || a.Code != tc.code {
				t.Fatalf("got HTTP %d code %q, want %d %q: %s", a.Status, a.Code, tc.status, tc.code, a.Raw)
			}
			if tc.code == "" && a.UnionID == "" {
				t.Errorf("a success without a unionId: %s", a.Raw)
			}
		})
	}
	clk.Step(lifetime)
	if a := call(t, http.MethodGet, me, "", tokenHeader(user)); a.Status != 400 || a.Code != "InvalidAuthentication" {
		t.Errorf("an expired token: HTTP %d %q, want 400 InvalidAuthentication", a.Status, a.Code)
	}
	st := srv.Stats().Endpoints
	if got := st[simulator.PathUsersMe].Credentials["dinguser"].Results; got["success"] != 3 || got["InvalidAuthentication"] != 1 {
		t.Errorf("users/me calls of dinguser's tokens by result: %v", got)
	}
	if got := st[simulator.PathUserByUnionID].Credentials["dingapp"].Results["success"]; got != 1 {
		t.Errorf("users/{unionId} successes with dingapp's token: %d, want 1", got)
	}
}

// TestBusinessOldAPI: the old API takes ?access_token= and answers HTTP 200 with errcode
// 40014/41001/42001 on its classic paths, errcode 88 with sub_code on /topapi.
func TestBusinessOldAPI(t *testing.T) {
	srv, clk := start(t)
	app, corp, _, user := issue(t, srv)
	classic := func(q string) string { return srv.URL() + simulator.PathUserGet + "?userid=manager1" + q }
	top := func(q string) string { return srv.URL() + simulator.PathTopUserGet + "?" + q }
	tests := map[string]struct {
		method, url, body string
		header            http.Header
		errcode           int    // wanted
		subCode           string // wanted on /topapi
	}{
		"classic with an app token":                 {"GET", classic("&access_token=" + app), "", nil, 0, ""},
		"classic with a corp token":                 {"GET", classic("&access_token=" + corp), "", nil, 0, ""},
		"classic without a token":                   {"GET", classic(""), "", nil, 41001, ""},
		"classic with a made-up token":              {"GET", classic("&access_token=nope"), "", nil, 40014, ""},
		"classic with a user token":                 {"GET", classic("&access_token=" + user), "", nil, 40014, ""},
		"classic with two tokens":                   {"GET", classic("&access_token=" + app + "&access_token=" + corp), "", nil, 40014, ""},
		"classic with the token in the header only": {"GET", classic(""), "", tokenHeader(app), 41001, ""},
		"top with JSON":                             {"POST", top("access_token=" + app), `{"userid":"manager1"}`, http.Header{"Content-Type": {"application/json"}}, 0, ""},
		"top with a form":                           {"POST", top("access_token=" + app), "userid=manager1", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, 0, ""},
		"top without a token":                       {"POST", top(""), `{"userid":"manager1"}`, http.Header{"Content-Type": {"application/json"}}, 88, "41001"},
		"top with a made-up token":                  {"POST", top("access_token=nope"), `{"userid":"manager1"}`, http.Header{"Content-Type": {"application/json"}}, 88, "40014"},
		"top without a userid":                      {"POST", top("access_token=" + app), `{}`, http.Header{"Content-Type": {"application/json"}}, 60121, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := call(t, tc.method, tc.url, tc.body, tc.header)
			if a.Status != http.StatusOK || a.ErrCode != tc.errcode || a.SubCode != tc.subCode {
				t.Fatalf("got HTTP %d errcode %d sub_code %q, want 200 %d %q: %s", a.Status, a.ErrCode, a.SubCode, tc.errcode, tc.subCode, a.Raw)
			}
			if tc.errcode == 0 && a.UserID != "manager1" && a.Result.UserID != "manager1" {
				t.Errorf("a success without the user: %s", a.Raw)
			}
		})
	}
	clk.Step(lifetime + time.Second)
	if a := call(t, "GET", classic("&access_token="+app), "", nil); a.ErrCode != 42001 {
		t.Errorf("classic with an expired token: errcode %d, want 42001", a.ErrCode)
	}
	if a := call(t, "POST", top("access_token="+app), `{"userid":"m"}`, http.Header{"Content-Type": {"application/json"}}); a.ErrCode != 88 || a.SubCode != "40014" {
		t.Errorf("top with an expired token: errcode %d sub_code %q, want 88 40014", a.ErrCode, a.SubCode)
	}
	results := srv.Stats().Endpoints[simulator.PathUserGet].Credentials["dingapp"].Results
	if results["success"] != 1 || results["errcode:42001"] != 1 {
		t.Errorf("classic calls with dingapp's tokens by result: %v", results)
	}
	if got := srv.Stats().Endpoints[simulator.PathTopUserGet].Credentials[simulator.UnknownCredential].Results["errcode:88:40014"]; got != 1 {
		t.Errorf("top calls with an unknown token answered 88/40014: %d, want 1", got)
	}
}

// TestBusinessFaultsAndRouting: faults apply to business endpoints too, by the token's
// credential; another method or an unknown path is the gateway's 404.
func TestBusinessFaultsAndRouting(t *testing.T) {
	srv, _ := start(t)
	app, _, _, user := issue(t, srv)
	if err := srv.SetFault(simulator.Fault{Endpoint: simulator.PathUsersMe, Credential: "dinguser", Status: 503, Count: 1}); err != nil {
		t.Fatal(err)
	}
	me := srv.URL() + simulator.PathUsersMe
	if a := call(t, "GET", me, "", tokenHeader(user)); a.Status != 503 {
		t.Errorf("the fault: HTTP %d, want 503", a.Status)
	}
	if a := call(t, "GET", me, "", tokenHeader(user)); a.Status != 200 {
		t.Errorf("after the fault: HTTP %d, want 200", a.Status)
	}
	if a := call(t, "POST", me, "", tokenHeader(user)); a.Status != 404 || a.Code != "InvalidAction.NotFound" {
		t.Errorf("POST users/me: HTTP %d %q, want 404 InvalidAction.NotFound", a.Status, a.Code)
	}
	if a := call(t, "GET", srv.URL()+"/v1.0/contact/users/a/b", "", tokenHeader(app)); a.Status != 404 {
		t.Errorf("a nested path: HTTP %d, want 404", a.Status)
	}
	if err := srv.SetFault(simulator.Fault{Endpoint: "/v1.0/contact/nothing"}); err == nil {
		t.Error("a fault on an unknown path was accepted")
	}
	if err := srv.SetFault(simulator.Fault{Endpoint: simulator.PathUserByUnionID, Latency: simulator.Duration(time.Millisecond)}); err != nil {
		t.Errorf("a fault on %s: %v", simulator.PathUserByUnionID, err)
	}
}
