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
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

// Known secret strings: no error may ever contain them.
const (
	appSecret    = "app-secret-8c1f"
	suiteSecret  = "suite-secret-77ab"
	suiteTicket  = "suite-ticket-0d3e"
	userSecret   = "user-secret-41c2"
	refreshToken = "refresh-token-9a0b"
	authCode     = "auth-code-5e6f"
	echoMessage  = "message-text-echoing-input"
)

var (
	app   = dingtalk.AppCredentials{AppKey: "dingapp", AppSecret: appSecret}
	suite = dingtalk.SuiteCredentials{SuiteKey: "suitekey", SuiteSecret: suiteSecret, SuiteTicket: suiteTicket}
	user  = dingtalk.UserCredentials{ClientID: "dinguser", ClientSecret: userSecret, RefreshToken: refreshToken}
	code  = dingtalk.UserCredentials{ClientID: "dinguser", ClientSecret: userSecret, AuthCode: authCode}
)

const corpID = "dingcorp1"

// startSim serves a simulator accepting the credentials above, with 60 s tokens, on loopback.
func startSim(t *testing.T) (*simulator.Server, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	life := simulator.Duration(time.Minute)
	srv, err := simulator.Start(simulator.Config{
		Apps: []simulator.App{{AppKey: app.AppKey, AppSecret: appSecret, TokenLifetime: life}},
		Suites: []simulator.Suite{{SuiteKey: suite.SuiteKey, SuiteSecret: suiteSecret, SuiteTicket: suiteTicket,
			AuthorizedCorps: []string{corpID}, TokenLifetime: life}},
		Users: []simulator.User{{ClientID: user.ClientID, ClientSecret: userSecret, RefreshTokens: []string{refreshToken},
			AuthCodes: []string{authCode}, CorpID: corpID, TokenLifetime: life}},
	}, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, clk
}

// newClient returns a client for url; mod may change the options.
func newClient(t *testing.T, url string, mod func(*dingtalk.Options)) *dingtalk.HTTPClient {
	t.Helper()
	opts := dingtalk.Options{BaseURL: url, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	c, err := dingtalk.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// call names one client method with fixed credentials.
type call func(context.Context, dingtalk.Client) (dingtalk.Token, error)

var (
	callApp = func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
		return c.AppAccessToken(ctx, app)
	}
	callCorp = func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
		return c.CorpAccessToken(ctx, suite, corpID)
	}
	callSuite = func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
		return c.SuiteAccessToken(ctx, suite)
	}
	callRefresh = func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
		return c.UserAccessToken(ctx, user)
	}
	callCode = func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
		return c.UserAccessToken(ctx, code)
	}
)

func TestEndpointsSucceed(t *testing.T) {
	tests := map[string]struct {
		call call // the client method
		user bool // expect a refresh token and corpId
	}{
		"internal app":             {call: callApp},
		"third-party app for corp": {call: callCorp},
		"suite":                    {call: callSuite},
		"user by refresh token":    {call: callRefresh, user: true},
		"user by code":             {call: callCode, user: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, _ := startSim(t)
			c := newClient(t, srv.URL(), nil)
			tok, err := tc.call(t.Context(), c)
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tok.AccessToken == "" || tok.ExpireIn != time.Minute {
				t.Errorf("got a token: %v, expireIn %v; want a token for 1m", tok.AccessToken != "", tok.ExpireIn)
			}
			if !srv.Valid(tok.AccessToken) {
				t.Error("the simulator does not know the token")
			}
			if tc.user {
				if tok.RefreshToken == "" || tok.RefreshToken != srv.CurrentRefreshToken(user.ClientID) || tok.CorpID != corpID {
					t.Errorf("user token: refresh token current=%v, corpId %q", tok.RefreshToken == srv.CurrentRefreshToken(user.ClientID), tok.CorpID)
				}
			}
		})
	}
}

func TestErrorClasses(t *testing.T) {
	tests := map[string]struct {
		setup  func(*testing.T, *simulator.Server) // changes the simulator before the call
		fault  *simulator.Fault                    // a fault to set before the call
		call   call                                // the client method
		class  dingtalk.Class                      // expected class
		code   string                              // expected Error.Code
		status int                                 // expected Error.HTTPStatus
	}{
		"wrong app secret": {call: func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
			return c.AppAccessToken(ctx, dingtalk.AppCredentials{AppKey: app.AppKey, AppSecret: "wrong"})
		}, class: dingtalk.ClassCredentialsRejected, code: "invalidClientIdOrSecret", status: 400},
		"unknown suite key": {call: func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
			return c.SuiteAccessToken(ctx, dingtalk.SuiteCredentials{SuiteKey: "nope", SuiteSecret: suiteSecret, SuiteTicket: suiteTicket})
		}, class: dingtalk.ClassCredentialsRejected, code: "invalidSuiteKey", status: 400},
		"stale suite ticket": {setup: func(t *testing.T, s *simulator.Server) { _ = s.SetSuiteTicket(suite.SuiteKey, "newer-ticket") },
			call: callSuite, class: dingtalk.ClassCredentialsRejected, code: "invalidSuiteTicket", status: 400},
		"stale suite ticket for corp": {setup: func(t *testing.T, s *simulator.Server) { _ = s.SetSuiteTicket(suite.SuiteKey, "newer-ticket") },
			call: callCorp, class: dingtalk.ClassCredentialsRejected, code: "invalidSuiteTicket", status: 400},
		"corp has not authorized the suite": {call: func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
			return c.CorpAccessToken(ctx, suite, "dingcorp-other")
		}, class: dingtalk.ClassCredentialsRejected, code: "invalidAuthInfo", status: 400},
		"wrong user client secret": {call: func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
			return c.UserAccessToken(ctx, dingtalk.UserCredentials{ClientID: user.ClientID, ClientSecret: "wrong", RefreshToken: refreshToken})
		}, class: dingtalk.ClassCredentialsRejected, code: "invalidClientIdOrSecret", status: 400},
		"unknown refresh token": {call: func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
			return c.UserAccessToken(ctx, dingtalk.UserCredentials{ClientID: user.ClientID, ClientSecret: userSecret, RefreshToken: "other"})
		}, class: dingtalk.ClassReauthorizationRequired, code: "invalidRefreshToken", status: 400},
		"used authorization code": {setup: func(t *testing.T, s *simulator.Server) {
			_, _ = newClient(t, s.URL(), nil).UserAccessToken(context.Background(), code)
		}, call: callCode, class: dingtalk.ClassReauthorizationRequired, code: "invalidAuthCode", status: 400},
		"user endpoint, unknown 4xx code": {fault: &simulator.Fault{Status: 400, Code: "SomethingNew"},
			call: callRefresh, class: dingtalk.ClassReauthorizationRequired, code: "SomethingNew", status: 400},
		"user endpoint, 401": {fault: &simulator.Fault{Status: 401, Code: "InvalidAuthentication"},
			call: callRefresh, class: dingtalk.ClassReauthorizationRequired, code: "InvalidAuthentication", status: 401},
		"capitalised Code and requestId": {fault: &simulator.Fault{Status: 400,
			Body: `{"Code":"invalidClientIdOrSecret","Message":"x","requestId":"REQ-1"}`},
			call: callApp, class: dingtalk.ClassCredentialsRejected, code: "invalidClientIdOrSecret", status: 400},
		"other invalid code": {fault: &simulator.Fault{Status: 400, Code: "invalidAppKey"},
			call: callApp, class: dingtalk.ClassCredentialsRejected, code: "invalidAppKey", status: 400},
		"403 access denied": {fault: &simulator.Fault{Status: 403, Code: "Forbidden.AccessDenied.IpNotInWhiteList"},
			call: callSuite, class: dingtalk.ClassCredentialsRejected, code: "Forbidden.AccessDenied.IpNotInWhiteList", status: 403},
		"400 other code": {fault: &simulator.Fault{Status: 400, Code: "Missingbody"},
			call: callApp, class: dingtalk.ClassUnavailable, code: "Missingbody", status: 400},
		"404 not found": {fault: &simulator.Fault{Status: 404, Code: "InvalidAction.NotFound"},
			call: callRefresh, class: dingtalk.ClassUnavailable, code: "InvalidAction.NotFound", status: 404},
		"monthly quota": {fault: &simulator.Fault{Status: 403, Code: "Forbidden.AccessDenied.ApiCountLimitForOrg"},
			call: callApp, class: dingtalk.ClassQuotaExceeded, code: "Forbidden.AccessDenied.ApiCountLimitForOrg", status: 403},
		"quota on the user endpoint": {fault: &simulator.Fault{Status: 403, Code: "Forbidden.AccessDenied.ApiCountLimitForOrg"},
			call: callRefresh, class: dingtalk.ClassQuotaExceeded, code: "Forbidden.AccessDenied.ApiCountLimitForOrg", status: 403},
		"429": {fault: &simulator.Fault{Status: 429},
			call: callCorp, class: dingtalk.ClassRateLimited, code: "Throttling", status: 429},
		"403 throttling code": {fault: &simulator.Fault{Status: 403, Code: "Throttling.User"},
			call: callApp, class: dingtalk.ClassRateLimited, code: "Throttling.User", status: 403},
		"403 limit code on the user endpoint": {fault: &simulator.Fault{Status: 403, Code: "Forbidden.RateLimit"},
			call: callRefresh, class: dingtalk.ClassRateLimited, code: "Forbidden.RateLimit", status: 403},
		"legacy 90002 with HTTP 200": {fault: &simulator.Fault{ErrCode200: 90002},
			call: callApp, class: dingtalk.ClassRateLimited, code: "90002", status: 200},
		"legacy 90006 with HTTP 200": {fault: &simulator.Fault{ErrCode200: 90006},
			call: callSuite, class: dingtalk.ClassRateLimited, code: "90006", status: 200},
		"legacy 90018 with HTTP 200": {fault: &simulator.Fault{ErrCode200: 90018},
			call: callCorp, class: dingtalk.ClassRateLimited, code: "90018", status: 200},
		"legacy 90019 with HTTP 400": {fault: &simulator.Fault{Status: 400, Body: `{"errcode":90019,"errmsg":"x"}`},
			call: callRefresh, class: dingtalk.ClassRateLimited, code: "90019", status: 400},
		"500": {fault: &simulator.Fault{Status: 500},
			call: callApp, class: dingtalk.ClassUnavailable, code: "ServiceUnavailable", status: 500},
		"503 on the user endpoint": {fault: &simulator.Fault{Status: 503, Code: "ServiceUnavailable"},
			call: callCode, class: dingtalk.ClassUnavailable, code: "ServiceUnavailable", status: 503},
		"502 without a body": {fault: &simulator.Fault{Status: 502, Body: " "},
			call: callApp, class: dingtalk.ClassUnavailable, status: 502},
		"HTTP 200 with errcode": {fault: &simulator.Fault{ErrCode200: 40014},
			call: callApp, class: dingtalk.ClassUnavailable, code: "40014", status: 200},
		"no /v1.0 gateway answer": {fault: &simulator.Fault{Body: `{"errcode":404,"errmsg":"Not Found"}`},
			call: callSuite, class: dingtalk.ClassUnavailable, code: "404", status: 200},
		"malformed JSON": {fault: &simulator.Fault{Malformed: true},
			call: callApp, class: dingtalk.ClassUnavailable, status: 200},
		"empty JSON body": {fault: &simulator.Fault{Body: " \n"},
			call: callRefresh, class: dingtalk.ClassUnavailable, status: 200},
		"JSON that is not an object": {fault: &simulator.Fault{Body: `["accessToken"]`},
			call: callApp, class: dingtalk.ClassUnavailable, status: 200},
		"missing accessToken": {fault: &simulator.Fault{Body: `{"expireIn":7200}`},
			call: callApp, class: dingtalk.ClassUnavailable, status: 200},
		"empty accessToken": {fault: &simulator.Fault{Body: `{"accessToken":"","expireIn":7200}`},
			call: callCorp, class: dingtalk.ClassUnavailable, status: 200},
		"zero expireIn": {fault: &simulator.Fault{Body: `{"accessToken":"abc","expireIn":0}`},
			call: callSuite, class: dingtalk.ClassUnavailable, status: 200},
		"negative expireIn": {fault: &simulator.Fault{Body: `{"accessToken":"abc","expireIn":-7200}`},
			call: callApp, class: dingtalk.ClassUnavailable, status: 200},
		"missing expireIn": {fault: &simulator.Fault{Body: `{"accessToken":"abc"}`},
			call: callRefresh, class: dingtalk.ClassUnavailable, status: 200},
		"closed connection": {fault: &simulator.Fault{Close: true},
			call: callApp, class: dingtalk.ClassUnavailable},
		"redirect": {fault: &simulator.Fault{Status: 307, Body: " "},
			call: callApp, class: dingtalk.ClassUnavailable, status: 307},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, _ := startSim(t)
			if tc.setup != nil {
				tc.setup(t, srv)
			}
			if tc.fault != nil {
				if err := srv.SetFault(*tc.fault); err != nil {
					t.Fatal(err)
				}
			}
			_, err := tc.call(t.Context(), newClient(t, srv.URL(), nil))
			var de *dingtalk.Error
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a *dingtalk.Error", err)
			}
			if de.Class != tc.class || de.Code != tc.code || de.HTTPStatus != tc.status {
				t.Errorf("got class %s code %q status %d, want %s %q %d", de.Class, de.Code, de.HTTPStatus, tc.class, tc.code, tc.status)
			}
			if dingtalk.ClassOf(err) != tc.class {
				t.Errorf("ClassOf = %s", dingtalk.ClassOf(err))
			}
			if tc.status >= 400 && tc.fault != nil && tc.fault.Body == "" && de.RequestID == "" {
				t.Error("missing request id")
			}
		})
	}
}

func TestMissingCredentialsMakeNoCall(t *testing.T) {
	srv, _ := startSim(t)
	c := newClient(t, srv.URL(), nil)
	tests := map[string]struct {
		call  call           // the client method, with a value missing
		class dingtalk.Class // expected class
	}{
		"appSecret": {call: func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
			return c.AppAccessToken(ctx, dingtalk.AppCredentials{AppKey: "k"})
		}, class: dingtalk.ClassCredentialsRejected},
		"suiteTicket": {call: func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
			return c.SuiteAccessToken(ctx, dingtalk.SuiteCredentials{SuiteKey: "k", SuiteSecret: "s"})
		}, class: dingtalk.ClassCredentialsRejected},
		"authCorpId": {call: func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
			return c.CorpAccessToken(ctx, suite, "")
		}, class: dingtalk.ClassCredentialsRejected},
		"grant": {call: func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
			return c.UserAccessToken(ctx, dingtalk.UserCredentials{ClientID: "c", ClientSecret: "s"})
		}, class: dingtalk.ClassReauthorizationRequired},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := tc.call(t.Context(), c); dingtalk.ClassOf(err) != tc.class {
				t.Errorf("got %v, want class %s", err, tc.class)
			}
		})
	}
	if n := srv.Stats().Total; n != 0 {
		t.Errorf("%d calls reached the simulator, want none", n)
	}
}

func TestTimeouts(t *testing.T) {
	srv, _ := startSim(t)
	if err := srv.SetFault(simulator.Fault{Latency: simulator.Duration(time.Minute)}); err != nil {
		t.Fatal(err)
	}

	t.Run("client timeout", func(t *testing.T) {
		c := newClient(t, srv.URL(), func(o *dingtalk.Options) { o.Timeout = 50 * time.Millisecond })
		_, err := c.AppAccessToken(t.Context(), app)
		var de *dingtalk.Error
		if !errors.As(err, &de) || de.Class != dingtalk.ClassUnavailable || de.Reason != "timeout" {
			t.Errorf("got %v, want an Unavailable timeout", err)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		c := newClient(t, srv.URL(), nil)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := c.SuiteAccessToken(ctx, suite)
		if dingtalk.ClassOf(err) != dingtalk.ClassUnavailable || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want Unavailable wrapping context.DeadlineExceeded", err)
		}
	})
	t.Run("context canceled", func(t *testing.T) {
		c := newClient(t, srv.URL(), nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := c.UserAccessToken(ctx, user)
		if dingtalk.ClassOf(err) != dingtalk.ClassUnavailable || !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want Unavailable wrapping context.Canceled", err)
		}
	})
}

func TestOversizedAnswer(t *testing.T) {
	big := `{"accessToken":"abc","expireIn":7200,"pad":"` + strings.Repeat("x", dingtalk.DefaultMaxResponseBytes) + `"}`
	tests := map[string]struct {
		body     string // the answer
		maxBytes int64  // Options.MaxResponseBytes
		wantErr  bool   // whether the answer is refused
	}{
		"over the default cap": {body: big, wantErr: true},
		"under a larger cap":   {body: big, maxBytes: 1 << 20},
		"over a small cap":     {body: `{"accessToken":"abc","expireIn":7200}`, maxBytes: 16, wantErr: true},
		"within a small cap":   {body: `{"accessToken":"a","expireIn":60}`, maxBytes: 64},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, _ := startSim(t)
			if err := srv.SetFault(simulator.Fault{Body: tc.body}); err != nil {
				t.Fatal(err)
			}
			c := newClient(t, srv.URL(), func(o *dingtalk.Options) { o.MaxResponseBytes = tc.maxBytes })
			_, err := c.AppAccessToken(t.Context(), app)
			var de *dingtalk.Error
			switch {
			case !tc.wantErr && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.wantErr && (!errors.As(err, &de) || de.Class != dingtalk.ClassUnavailable || de.Reason != "oversized answer"):
				t.Errorf("got %v, want an Unavailable oversized answer", err)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	tests := map[string]struct {
		fault simulator.Fault // the throttling answer
		want  time.Duration   // expected RetryAfterOf
	}{
		"seconds":            {fault: simulator.Fault{RetryAfter: 30}, want: 30 * time.Second},
		"seconds, capped":    {fault: simulator.Fault{RetryAfter: 7200}, want: time.Hour},
		"HTTP date":          {fault: simulator.Fault{RetryAfter: 120, RetryAfterDate: true}, want: 2 * time.Minute},
		"HTTP date, capped":  {fault: simulator.Fault{RetryAfter: 86400, RetryAfterDate: true}, want: time.Hour},
		"with a 403 code":    {fault: simulator.Fault{Status: 403, Code: "Throttling.Api", RetryAfter: 5}, want: 5 * time.Second},
		"none":               {fault: simulator.Fault{Status: 429}, want: 0},
		"with a 503 as well": {fault: simulator.Fault{Status: 503, RetryAfter: 10}, want: 10 * time.Second},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv, clk := startSim(t)
			if err := srv.SetFault(tc.fault); err != nil {
				t.Fatal(err)
			}
			// The client reads HTTP dates with the simulator's clock, so the test is exact.
			c := newClient(t, srv.URL(), func(o *dingtalk.Options) { o.Clock = clk })
			_, err := c.AppAccessToken(t.Context(), app)
			if err == nil {
				t.Fatal("unexpected success")
			}
			if got := dingtalk.RetryAfterOf(err); got != tc.want {
				t.Errorf("RetryAfterOf = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	srv, _ := startSim(t)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv.URL()+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	_, err := newClient(t, redirector.URL, nil).AppAccessToken(t.Context(), app)
	var de *dingtalk.Error
	if !errors.As(err, &de) || de.Class != dingtalk.ClassUnavailable || de.HTTPStatus != http.StatusTemporaryRedirect {
		t.Errorf("got %v, want Unavailable with HTTP 307", err)
	}
	if n := srv.Stats().Total; n != 0 {
		t.Errorf("the redirect was followed: %d calls reached the simulator", n)
	}
}

func TestBaseURL(t *testing.T) {
	tests := map[string]struct {
		url  string // Options.BaseURL
		want string // the normalised URL, "" when refused
	}{
		"default":                  {url: "", want: "https://api.dingtalk.com"},
		"https":                    {url: "https://api.dingtalk.io/", want: "https://api.dingtalk.io"},
		"https with a path":        {url: "https://proxy.example.com/dingtalk/", want: "https://proxy.example.com/dingtalk"},
		"http loopback IPv4":       {url: "http://127.0.0.1:8089", want: "http://127.0.0.1:8089"},
		"http loopback 127/8":      {url: "http://127.1.2.3:80", want: "http://127.1.2.3:80"},
		"http loopback IPv6":       {url: "http://[::1]:8089", want: "http://[::1]:8089"},
		"http localhost":           {url: "http://localhost:8089", want: "http://localhost:8089"},
		"http non-loopback":        {url: "http://api.dingtalk.com"},
		"http private IP":          {url: "http://10.0.0.1:8089"},
		"http localhost lookalike": {url: "http://localhost.example.com"},
		"other scheme":             {url: "ftp://api.dingtalk.com"},
		"relative":                 {url: "api.dingtalk.com"},
		"user info":                {url: "https://user:pass@api.dingtalk.com"},
		"query":                    {url: "https://api.dingtalk.com/?x=1"},
		"fragment":                 {url: "https://api.dingtalk.com/#x"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := dingtalk.New(dingtalk.Options{BaseURL: tc.url})
			if (err == nil) != (tc.want != "") {
				t.Fatalf("New(%q) error = %v", tc.url, err)
			}
			if tc.url == "" {
				return
			}
			got, _ := dingtalk.ValidateBaseURL(tc.url)
			if got != tc.want {
				t.Errorf("ValidateBaseURL(%q) = %q, want %q", tc.url, got, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "pass") {
				t.Errorf("the error repeats user info: %v", err)
			}
		})
	}
	if _, err := dingtalk.New(dingtalk.Options{Timeout: -time.Second}); err == nil {
		t.Error("a negative timeout was accepted")
	}
}

func TestClientSideRateLimit(t *testing.T) {
	srv, _ := startSim(t)
	c := newClient(t, srv.URL(), func(o *dingtalk.Options) { o.QPS, o.Burst = 0.001, 1 })
	if _, err := c.AppAccessToken(t.Context(), app); err != nil {
		t.Fatal(err)
	}
	// The next token is 1000 s away: Wait fails at once instead of outliving the deadline.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := c.AppAccessToken(ctx, app)
	if dingtalk.ClassOf(err) != dingtalk.ClassRateLimited {
		t.Errorf("got %v, want RateLimited", err)
	}
	canceled, cancelNow := context.WithCancel(t.Context())
	cancelNow()
	if _, err := c.AppAccessToken(canceled, app); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if n := srv.Stats().Total; n != 1 {
		t.Errorf("%d calls reached the simulator, want 1", n)
	}
}

// TestReservedPlace: a place Reserve took is not waited for again; a call without one waits.
func TestReservedPlace(t *testing.T) {
	srv, _ := startSim(t)
	c := newClient(t, srv.URL(), func(o *dingtalk.Options) { o.QPS, o.Burst = 0.001, 1 })
	if d := c.Reserve(); d != 0 {
		t.Fatalf("the first place is %s away, want now", d)
	}
	if d := c.Reserve(); d < 900*time.Second {
		t.Fatalf("the second place is %s away, want about 1000s", d)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := c.AppAccessToken(ctx, app); dingtalk.ClassOf(err) != dingtalk.ClassRateLimited {
		t.Errorf("a call without a place: got %v, want RateLimited", err)
	}
	if _, err := c.AppAccessToken(dingtalk.WithReservedPlace(ctx), app); err != nil {
		t.Errorf("a call holding its place: %v", err)
	}
	if n := srv.Stats().Total; n != 1 {
		t.Errorf("%d calls reached the simulator, want 1", n)
	}
}

func TestMetricsObserved(t *testing.T) {
	srv, _ := startSim(t)
	c := newClient(t, srv.URL(), nil)
	success := func() float64 { return apiRequests(t, dingtalk.PathSuiteAccessToken, "success") }
	rejected := func() float64 {
		return apiRequests(t, dingtalk.PathSuiteAccessToken, string(dingtalk.ClassCredentialsRejected))
	}
	before, beforeRejected := success(), rejected()
	if _, err := c.SuiteAccessToken(t.Context(), suite); err != nil {
		t.Fatal(err)
	}
	_, _ = c.SuiteAccessToken(t.Context(), dingtalk.SuiteCredentials{SuiteKey: "x", SuiteSecret: "y", SuiteTicket: "z"})
	if d := success() - before; d != 1 {
		t.Errorf("success counter grew by %v, want 1", d)
	}
	if d := rejected() - beforeRejected; d != 1 {
		t.Errorf("CredentialsRejected counter grew by %v, want 1", d)
	}
}

// apiRequests reads dingtalk_api_requests_total{endpoint,result} from controller-runtime's registry.
func apiRequests(t *testing.T, endpoint, result string) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "dingtalk_api_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["endpoint"] == endpoint && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestErrorsCarryNoSecrets provokes every kind of failure, with DingTalk answers that echo the
// request, and checks that no rendering of the error holds a credential, a token or answer text.
func TestErrorsCarryNoSecrets(t *testing.T) {
	srv, _ := startSim(t)
	c := newClient(t, srv.URL(), func(o *dingtalk.Options) { o.Timeout = 100 * time.Millisecond })
	issued, err := c.AppAccessToken(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{appSecret, suiteSecret, suiteTicket, userSecret, refreshToken, authCode, echoMessage, issued.AccessToken}
	echo := fmt.Sprintf(`{"code":"invalidClientIdOrSecret","requestid":"R1","message":"%s %s %s %s"}`,
		echoMessage, appSecret, refreshToken, issued.AccessToken)
	faults := []simulator.Fault{
		{Status: 400, Code: "invalidClientIdOrSecret", Message: echoMessage + " " + appSecret + " " + suiteTicket},
		{Status: 400, Body: echo},
		{Status: 400, Body: fmt.Sprintf(`{"code":"%s with spaces","requestid":"%s x"}`, appSecret, refreshToken)},
		{Status: 500, Body: echo},
		{Status: 429, RetryAfter: 3, Message: echoMessage},
		{Status: 403, Code: "Throttling", Message: echoMessage + " " + userSecret},
		{Body: fmt.Sprintf(`{"errcode":90018,"errmsg":"%s %s"}`, echoMessage, suiteSecret)},
		{Body: fmt.Sprintf(`{"accessToken":"%s","expireIn":-1,"message":"%s"}`, issued.AccessToken, echoMessage)},
		{Body: fmt.Sprintf(`{"accessToken":"%s","expireIn":`, issued.AccessToken)},
		{Body: fmt.Sprintf(`{"accessToken":"%s","refreshToken":"%s","expireIn":"soon"}`, issued.AccessToken, refreshToken)},
		{Status: 302, Body: echo},
		{Close: true},
		{Malformed: true},
		{Latency: simulator.Duration(time.Minute)},
	}
	calls := []call{callApp, callCorp, callSuite, callRefresh, callCode}
	check := func(t *testing.T, err error) {
		t.Helper()
		if err == nil {
			t.Fatal("unexpected success")
		}
		for _, rendered := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			for _, s := range secrets {
				if strings.Contains(rendered, s) {
					t.Errorf("error %q contains the secret %q", rendered, s)
				}
			}
		}
	}
	for i, f := range faults {
		for j, call := range calls {
			t.Run(fmt.Sprintf("fault %d call %d", i, j), func(t *testing.T) {
				srv.ClearFaults()
				if err := srv.SetFault(f); err != nil {
					t.Fatal(err)
				}
				_, err := call(t.Context(), c)
				check(t, err)
			})
		}
	}
	srv.ClearFaults()
	t.Run("simulator refusals", func(t *testing.T) {
		_ = srv.SetSuiteTicket(suite.SuiteKey, "rotated")
		for _, call := range []call{callCorp, callSuite,
			func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
				return c.AppAccessToken(ctx, dingtalk.AppCredentials{AppKey: app.AppKey, AppSecret: appSecret + "x"})
			},
			func(ctx context.Context, c dingtalk.Client) (dingtalk.Token, error) {
				return c.UserAccessToken(ctx, dingtalk.UserCredentials{ClientID: user.ClientID, ClientSecret: userSecret, RefreshToken: refreshToken + "x"})
			},
		} {
			_, err := call(t.Context(), c)
			check(t, err)
		}
	})
}
