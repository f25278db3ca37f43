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
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

// signIn sends the browser's GET /oauth2/auth without following the redirect.
func signIn(t *testing.T, srv *simulator.Server, q url.Values) (*http.Response, string) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(srv.URL() + simulator.PathSignIn + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func signInQuery(mod func(url.Values)) url.Values {
	q := url.Values{
		"redirect_uri": {"http://127.0.0.1:8000/callback?keep=1"}, "response_type": {"code"}, "client_id": {"dinguser"},
		"scope": {"openid corpid"}, "state": {"st-1"}, "prompt": {"consent"},
	}
	if mod != nil {
		mod(q)
	}
	return q
}

// The sign-in page redirects to the loopback redirect_uri with a new one-time authCode and the
// state; the code works once at userAccessToken.
func TestSignInIssuesOneTimeCode(t *testing.T) {
	srv, _ := start(t)
	resp, _ := signIn(t, srv, signInQuery(nil))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("sign-in answered %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if loc.Host != "127.0.0.1:8000" || loc.Path != "/callback" || q.Get("state") != "st-1" || q.Get("keep") != "1" {
		t.Fatalf("redirected to %s", loc.Redacted())
	}
	code := q.Get("authCode")
	if len(code) != 32 {
		t.Fatalf("authCode has %d characters, want 32", len(code))
	}
	wantSuccess(t, post(t, srv, simulator.PathUserAccessToken, codeReq(code)))
	wantError(t, post(t, srv, simulator.PathUserAccessToken, codeReq(code)), 400, "invalidAuthCode")

	again, _ := signIn(t, srv, signInQuery(func(q url.Values) { q.Set("redirect_uri", "http://localhost:9/cb") }))
	if c2 := mustLocation(t, again).Query().Get("authCode"); c2 == "" || c2 == code {
		t.Errorf("a second sign-in gave code %q, want a new one", c2)
	}
	st := srv.Stats().Endpoints[simulator.PathSignIn]
	if st.Credentials["dinguser"].Results["success"] != 2 {
		t.Errorf("sign-in stats = %+v", st)
	}
}

func mustLocation(t *testing.T, resp *http.Response) *url.URL {
	t.Helper()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("answer %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc
}

func TestSignInRefusals(t *testing.T) {
	srv, _ := start(t)
	tests := map[string]struct {
		// mod changes the valid query.
		mod func(url.Values)
		// want is a part of the page.
		want string
	}{
		"unknown client":     {func(q url.Values) { q.Set("client_id", "nobody") }, "no configured user"},
		"no client":          {func(q url.Values) { q.Del("client_id") }, "client_id is required"},
		"an app is no user":  {func(q url.Values) { q.Set("client_id", "dingapp") }, "no configured user"},
		"token response":     {func(q url.Values) { q.Set("response_type", "token") }, "response_type must be code"},
		"no openid":          {func(q url.Values) { q.Set("scope", "corpid") }, "scope must include openid"},
		"no redirect":        {func(q url.Values) { q.Del("redirect_uri") }, "redirect_uri is required"},
		"remote redirect":    {func(q url.Values) { q.Set("redirect_uri", "http://evil.example.com/callback") }, "127.0.0.1 or localhost"},
		"https redirect":     {func(q url.Values) { q.Set("redirect_uri", "https://127.0.0.1/callback") }, "127.0.0.1 or localhost"},
		"userinfo redirect":  {func(q url.Values) { q.Set("redirect_uri", "http://a@127.0.0.1/callback") }, "127.0.0.1 or localhost"},
		"fragment redirect":  {func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1/callback#x") }, "without a fragment"},
		"lookalike redirect": {func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1.example.com/cb") }, "127.0.0.1 or localhost"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, body := signIn(t, srv, signInQuery(tc.mod))
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, tc.want) {
				t.Errorf("answer %d, Location %q, page %q; want 400 naming %q", resp.StatusCode, resp.Header.Get("Location"), body, tc.want)
			}
		})
	}
	if n := srv.Stats().Endpoints[simulator.PathSignIn].Results["refused"]; n != int64(len(tests)) {
		t.Errorf("refused sign-ins counted %d, want %d", n, len(tests))
	}
}
