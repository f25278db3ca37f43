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
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

// Secrets of the test credentials: never to be found in stats, logs or control answers.
const (
	appSecret    = "app-secret-3f9a"
	suiteSecret  = "suite-secret-1c0e"
	suiteTicket  = "suite-ticket-77d2"
	userSecret   = "user-secret-a4b8"
	refreshToken = "refresh-token-e5f6"
	authCode     = "auth-code-0a1b"
)

const lifetime = time.Minute

func testConfig() simulator.Config {
	life := simulator.Duration(lifetime)
	return simulator.Config{
		Apps: []simulator.App{{AppKey: "dingapp", AppSecret: appSecret, TokenLifetime: life}},
		Suites: []simulator.Suite{{SuiteKey: "suitekey", SuiteSecret: suiteSecret, SuiteTicket: suiteTicket,
			AuthorizedCorps: []string{"dingcorp1"}, TokenLifetime: life}},
		Users: []simulator.User{{ClientID: "dinguser", ClientSecret: userSecret, RefreshTokens: []string{refreshToken},
			AuthCodes: []string{authCode}, CorpID: "dingcorp1", TokenLifetime: life}},
	}
}

// start serves testConfig on loopback with a fake clock.
func start(t *testing.T) (*simulator.Server, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	srv, err := simulator.Start(testConfig(), clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, clk
}

// answer is a decoded simulator answer.
type answer struct {
	Status       int         `json:"-"`
	Header       http.Header `json:"-"`
	AccessToken  string      `json:"accessToken"`
	RefreshToken string      `json:"refreshToken"`
	ExpireIn     int64       `json:"expireIn"`
	CorpID       string      `json:"corpId"`
	Code         string      `json:"code"`
	RequestID    string      `json:"requestid"`
	Message      string      `json:"message"`
	ErrCode      int         `json:"errcode"`
	Raw          string      `json:"-"`
}

// do sends one request and decodes a JSON object answer when there is one.
func do(t *testing.T, method, url, contentType, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	if len(raw) > 0 && raw[0] == '{' && json.Valid(raw) {
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("answer does not decode: %v", err)
		}
	}
	return a
}

// post sends a JSON token request.
func post(t *testing.T, srv *simulator.Server, path string, fields map[string]string) answer {
	t.Helper()
	b, _ := json.Marshal(fields)
	return do(t, http.MethodPost, srv.URL()+path, "application/json", string(b))
}

func appReq(secret string) map[string]string {
	return map[string]string{"appKey": "dingapp", "appSecret": secret}
}

func suiteReq(ticket string) map[string]string {
	return map[string]string{"suiteKey": "suitekey", "suiteSecret": suiteSecret, "suiteTicket": ticket}
}

func corpReq(ticket, corp string) map[string]string {
	r := suiteReq(ticket)
	r["authCorpId"] = corp
	return r
}

func refreshReq(rt string) map[string]string {
	return map[string]string{"clientId": "dinguser", "clientSecret": userSecret, "grantType": "refresh_token", "refreshToken": rt}
}

func codeReq(code string) map[string]string {
	return map[string]string{"clientId": "dinguser", "clientSecret": userSecret, "grantType": "authorization_code", "code": code}
}

// wantSuccess fails unless a is a token answer for lifetime.
func wantSuccess(t *testing.T, a answer) {
	t.Helper()
	if a.Status != http.StatusOK || a.AccessToken == "" || a.ExpireIn != int64(lifetime/time.Second) {
		t.Fatalf("got HTTP %d code %q expireIn %d, want a token", a.Status, a.Code, a.ExpireIn)
	}
}

// wantError fails unless a is DingTalk's error shape with status and code.
func wantError(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.Status != status || a.Code != code || a.RequestID == "" || a.Message == "" || a.AccessToken != "" {
		t.Fatalf("got HTTP %d code %q requestid %q, want %d %q", a.Status, a.Code, a.RequestID, status, code)
	}
}

func TestAppTokenReusedAndRenewed(t *testing.T) {
	srv, clk := start(t)
	first := post(t, srv, simulator.PathAppAccessToken, appReq(appSecret))
	wantSuccess(t, first)

	clk.Step(30 * time.Second)
	again := post(t, srv, simulator.PathAppAccessToken, appReq(appSecret))
	wantSuccess(t, again)
	if again.AccessToken != first.AccessToken {
		t.Fatal("a call within validity issued a new token")
	}
	clk.Step(50 * time.Second) // 80 s after issue, 50 s after the renewal
	if !srv.Valid(first.AccessToken) {
		t.Fatal("the renewal did not extend the token")
	}
	clk.Step(10 * time.Second) // 60 s after the renewal
	if srv.Valid(first.AccessToken) {
		t.Fatal("the token outlived its renewed expiry")
	}
	next := post(t, srv, simulator.PathAppAccessToken, appReq(appSecret))
	wantSuccess(t, next)
	if next.AccessToken == first.AccessToken {
		t.Fatal("an expired token was handed out again")
	}
}

func TestSuiteAndCorpTokensAreNewEachCall(t *testing.T) {
	tests := map[string]struct {
		path   string            // endpoint
		fields map[string]string // request
	}{
		"suite": {path: simulator.PathSuiteAccessToken, fields: suiteReq(suiteTicket)},
		"corp":  {path: simulator.PathCorpAccessToken, fields: corpReq(suiteTicket, "dingcorp1")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, clk := start(t)
			first := post(t, srv, tc.path, tc.fields)
			wantSuccess(t, first)
			clk.Step(30 * time.Second)
			second := post(t, srv, tc.path, tc.fields)
			wantSuccess(t, second)
			if second.AccessToken == first.AccessToken {
				t.Fatal("the second call returned the same token")
			}
			if !srv.Valid(first.AccessToken) || !srv.Valid(second.AccessToken) {
				t.Fatal("both tokens should be valid")
			}
			clk.Step(30 * time.Second) // the first expires now; the second has 30 s left
			if srv.Valid(first.AccessToken) || !srv.Valid(second.AccessToken) {
				t.Fatal("each token should live until its own expiry")
			}
		})
	}
}

func TestUserRefreshRotatesAndCodesWorkOnce(t *testing.T) {
	srv, clk := start(t)
	if got := srv.CurrentRefreshToken("dinguser"); got != refreshToken {
		t.Fatalf("current refresh token = %q, want the configured one", got)
	}

	byCode := post(t, srv, simulator.PathUserAccessToken, codeReq(authCode))
	wantSuccess(t, byCode)
	if byCode.RefreshToken == "" || byCode.CorpID != "dingcorp1" {
		t.Fatalf("code answer: refresh token set %v, corpId %q", byCode.RefreshToken != "", byCode.CorpID)
	}
	wantError(t, post(t, srv, simulator.PathUserAccessToken, codeReq(authCode)), 400, "invalidAuthCode")

	clk.Step(10 * time.Second)
	refreshed := post(t, srv, simulator.PathUserAccessToken, refreshReq(byCode.RefreshToken))
	wantSuccess(t, refreshed)
	if refreshed.AccessToken != byCode.AccessToken {
		t.Error("the user token was not reused within its validity")
	}
	if refreshed.RefreshToken == byCode.RefreshToken {
		t.Fatal("the refresh token was not rotated")
	}
	wantError(t, post(t, srv, simulator.PathUserAccessToken, refreshReq(byCode.RefreshToken)), 400, "invalidRefreshToken")
	if got := srv.CurrentRefreshToken("dinguser"); got != refreshed.RefreshToken {
		t.Error("CurrentRefreshToken is not the newest one")
	}
	clk.Step(55 * time.Second) // 65 s after the code, 55 s after the renewal
	if !srv.Valid(refreshed.AccessToken) {
		t.Error("the refresh did not renew the access token")
	}

	// The configured refresh token still works once; then it is gone as well.
	wantSuccess(t, post(t, srv, simulator.PathUserAccessToken, refreshReq(refreshToken)))
	wantError(t, post(t, srv, simulator.PathUserAccessToken, refreshReq(refreshToken)), 400, "invalidRefreshToken")

	if err := srv.AddAuthCode("dinguser", "fresh-code"); err != nil {
		t.Fatal(err)
	}
	wantSuccess(t, post(t, srv, simulator.PathUserAccessToken, codeReq("fresh-code")))
	wantError(t, post(t, srv, simulator.PathUserAccessToken, codeReq("fresh-code")), 400, "invalidAuthCode")

	if err := srv.AddRefreshToken("dinguser", "added-rt"); err != nil || srv.CurrentRefreshToken("dinguser") != "added-rt" {
		t.Fatalf("AddRefreshToken: %v", err)
	}
	clk.Step(simulator.RefreshTokenLifetime)
	wantError(t, post(t, srv, simulator.PathUserAccessToken, refreshReq("added-rt")), 400, "invalidRefreshToken")
	if got := srv.CurrentRefreshToken("dinguser"); got != "" {
		t.Error("an expired refresh token is still current")
	}
	if srv.AddAuthCode("nobody", "c") == nil || srv.AddRefreshToken("nobody", "r") == nil {
		t.Error("unknown clients were accepted")
	}
}

func TestSuiteTicketAndCorpAuthorization(t *testing.T) {
	srv, _ := start(t)
	wantError(t, post(t, srv, simulator.PathSuiteAccessToken, suiteReq("old")), 400, "invalidSuiteTicket")
	wantError(t, post(t, srv, simulator.PathCorpAccessToken, corpReq(suiteTicket, "dingcorp2")), 400, "invalidAuthInfo")

	if err := srv.SetSuiteTicket("suitekey", "pushed-ticket"); err != nil {
		t.Fatal(err)
	}
	wantError(t, post(t, srv, simulator.PathSuiteAccessToken, suiteReq(suiteTicket)), 400, "invalidSuiteTicket")
	wantError(t, post(t, srv, simulator.PathCorpAccessToken, corpReq(suiteTicket, "dingcorp1")), 400, "invalidSuiteTicket")
	wantSuccess(t, post(t, srv, simulator.PathSuiteAccessToken, suiteReq("pushed-ticket")))

	if err := srv.AuthorizeCorp("suitekey", "dingcorp2"); err != nil {
		t.Fatal(err)
	}
	wantSuccess(t, post(t, srv, simulator.PathCorpAccessToken, corpReq("pushed-ticket", "dingcorp2")))
	if srv.SetSuiteTicket("nope", "t") == nil || srv.AuthorizeCorp("nope", "c") == nil {
		t.Error("unknown suites were accepted")
	}
}

func TestErrorShapes(t *testing.T) {
	srv, _ := start(t)
	json := "application/json"
	tests := map[string]struct {
		method, path, contentType, body string // the request
		status                          int    // expected HTTP status
		code                            string // expected code; "" for the errcode shape
	}{
		"form body":           {"POST", simulator.PathAppAccessToken, "application/x-www-form-urlencoded", "appKey=dingapp", 400, "Missingbody"},
		"empty body":          {"POST", simulator.PathAppAccessToken, json, "", 400, "Missingbody"},
		"broken JSON":         {"POST", simulator.PathSuiteAccessToken, json, "{", 400, "Missingbody"},
		"unknown path":        {"POST", "/v1.0/oauth2/nothing", json, "{}", 404, "InvalidAction.NotFound"},
		"legacy GET":          {"GET", "/gettoken?appkey=x", "", "", 404, "InvalidAction.NotFound"},
		"GET on a token path": {"GET", simulator.PathAppAccessToken, "", "", 404, "InvalidAction.NotFound"},
		"without /v1.0":       {"POST", "/oauth2/accessToken", json, `{"appKey":"dingapp"}`, 200, ""},
		"missing appSecret":   {"POST", simulator.PathAppAccessToken, json, `{"appKey":"dingapp"}`, 400, "MissingappSecret"},
		"missing suiteTicket": {"POST", simulator.PathSuiteAccessToken, json, `{"suiteKey":"suitekey","suiteSecret":"x"}`, 400, "MissingsuiteTicket"},
		"missing authCorpId": {"POST", simulator.PathCorpAccessToken, json,
			`{"suiteKey":"suitekey","suiteSecret":"` + suiteSecret + `","suiteTicket":"` + suiteTicket + `"}`, 400, "MissingauthCorpId"},
		"missing grantType":  {"POST", simulator.PathUserAccessToken, json, `{"clientId":"dinguser","clientSecret":"x"}`, 400, "MissinggrantType"},
		"unknown app":        {"POST", simulator.PathAppAccessToken, json, `{"appKey":"other","appSecret":"x"}`, 400, "invalidClientIdOrSecret"},
		"wrong app secret":   {"POST", simulator.PathAppAccessToken, json, `{"appKey":"dingapp","appSecret":"x"}`, 400, "invalidClientIdOrSecret"},
		"unknown suite":      {"POST", simulator.PathSuiteAccessToken, json, `{"suiteKey":"x","suiteSecret":"x","suiteTicket":"x"}`, 400, "invalidSuiteKey"},
		"wrong suite secret": {"POST", simulator.PathSuiteAccessToken, json, `{"suiteKey":"suitekey","suiteSecret":"x","suiteTicket":"x"}`, 400, "invalidClientIdOrSecret"},
		"wrong user secret": {"POST", simulator.PathUserAccessToken, json,
			`{"clientId":"dinguser","clientSecret":"x","grantType":"refresh_token","refreshToken":"` + refreshToken + `"}`, 400, "invalidClientIdOrSecret"},
		"unknown grant type": {"POST", simulator.PathUserAccessToken, json,
			`{"clientId":"dinguser","clientSecret":"` + userSecret + `","grantType":"password"}`, 400, "invalidGrantType"},
		"missing code": {"POST", simulator.PathUserAccessToken, json,
			`{"clientId":"dinguser","clientSecret":"` + userSecret + `","grantType":"authorization_code"}`, 400, "Missingcode"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := do(t, tc.method, srv.URL()+tc.path, tc.contentType, tc.body)
			if tc.code == "" {
				if a.Status != tc.status || a.ErrCode != 404 {
					t.Fatalf("got HTTP %d errcode %d, want HTTP 200 errcode 404", a.Status, a.ErrCode)
				}
				return
			}
			wantError(t, a, tc.status, tc.code)
			if a.Header.Get("x-acs-request-id") != a.RequestID {
				t.Error("the request id header differs from the body's")
			}
			for _, s := range []string{appSecret, suiteSecret, userSecret, refreshToken} {
				if strings.Contains(a.Raw, s) {
					t.Errorf("the answer echoes the secret %q", s)
				}
			}
		})
	}
}

func TestTokensAreRandom(t *testing.T) {
	srv, _ := start(t)
	seen := map[string]bool{}
	for range 20 {
		a := post(t, srv, simulator.PathSuiteAccessToken, suiteReq(suiteTicket))
		wantSuccess(t, a)
		if seen[a.AccessToken] || len(a.AccessToken) < 32 {
			t.Fatalf("token repeated or short: %d chars", len(a.AccessToken))
		}
		seen[a.AccessToken] = true
	}
}

func TestConcurrentCallsShareTheAppToken(t *testing.T) {
	srv, _ := start(t)
	var wg sync.WaitGroup
	tokens := make([]string, 16)
	for i := range tokens {
		wg.Go(func() {
			b, _ := json.Marshal(appReq(appSecret))
			resp, err := http.Post(srv.URL()+simulator.PathAppAccessToken, "application/json", bytes.NewReader(b))
			if err != nil {
				t.Error(err)
				return
			}
			defer func() { _ = resp.Body.Close() }()
			var a answer
			_ = json.NewDecoder(resp.Body).Decode(&a)
			tokens[i] = a.AccessToken
		})
	}
	wg.Wait()
	for _, tok := range tokens {
		if tok == "" || tok != tokens[0] {
			t.Fatal("concurrent calls got different or no tokens")
		}
	}
	if got := srv.Stats().Endpoints[simulator.PathAppAccessToken].Credentials["dingapp"].Results["success"]; got != 16 {
		t.Errorf("counted %d successes, want 16", got)
	}
}

func TestRuntimeCredentials(t *testing.T) {
	srv, _ := start(t)
	if err := srv.AddApp(simulator.App{AppKey: "newapp", AppSecret: "s2"}); err != nil {
		t.Fatal(err)
	}
	a := post(t, srv, simulator.PathAppAccessToken, map[string]string{"appKey": "newapp", "appSecret": "s2"})
	if a.Status != 200 || a.ExpireIn != 7200 {
		t.Fatalf("runtime app: HTTP %d expireIn %d, want the default 7200 s", a.Status, a.ExpireIn)
	}
	if err := srv.AddSuite(simulator.Suite{SuiteKey: "s", SuiteSecret: "x", SuiteTicket: "t", AuthorizedCorps: []string{"c"}}); err != nil {
		t.Fatal(err)
	}
	if a := post(t, srv, simulator.PathCorpAccessToken, map[string]string{"suiteKey": "s", "suiteSecret": "x", "suiteTicket": "t", "authCorpId": "c"}); a.Status != 200 {
		t.Fatalf("runtime suite: HTTP %d", a.Status)
	}
	if err := srv.AddUser(simulator.User{ClientID: "u", ClientSecret: "x", AuthCodes: []string{"c"}}); err != nil {
		t.Fatal(err)
	}
	if a := post(t, srv, simulator.PathUserAccessToken, map[string]string{"clientId": "u", "clientSecret": "x", "grantType": "authorization_code", "code": "c"}); a.Status != 200 {
		t.Fatalf("runtime user: HTTP %d", a.Status)
	}
	if srv.AddApp(simulator.App{AppKey: "x"}) == nil || srv.AddUser(simulator.User{ClientID: "x", ClientSecret: "y", TokenLifetime: 1}) == nil {
		t.Error("invalid runtime credentials were accepted")
	}
}

func TestLogsAndStringsCarryNoSecrets(t *testing.T) {
	srv, _ := start(t)
	var buf bytes.Buffer
	var mu sync.Mutex
	srv.SetLogger(slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	post(t, srv, simulator.PathAppAccessToken, appReq(appSecret))
	post(t, srv, simulator.PathAppAccessToken, map[string]string{"appKey": appSecret, "appSecret": "dingapp"})
	post(t, srv, simulator.PathUserAccessToken, refreshReq(refreshToken))
	post(t, srv, simulator.PathUserAccessToken, codeReq(authCode))
	post(t, srv, simulator.PathCorpAccessToken, corpReq(suiteTicket, "dingcorp1"))

	cfg := testConfig()
	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	for _, s := range []string{logs, fmt.Sprintf("%v %+v", cfg, cfg), fmt.Sprint(cfg.Apps[0], cfg.Suites[0], cfg.Users[0])} {
		for _, secret := range []string{appSecret, suiteSecret, suiteTicket, userSecret, refreshToken, authCode} {
			if strings.Contains(s, secret) {
				t.Errorf("%q contains %q", s, secret)
			}
		}
	}
	if !strings.Contains(logs, "credential=dingapp") {
		t.Errorf("the log does not name the credential id: %s", logs)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
