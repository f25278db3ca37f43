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
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func TestAuthURL(t *testing.T) {
	tests := map[string]struct {
		// endpoint, clientID, redirect, scope and state are authURL's inputs.
		endpoint, clientID, redirect, scope, state string
		// want is the URL; wantErr a part of the error instead.
		want, wantErr string
	}{
		"dingtalk": {
			endpoint: "https://login.dingtalk.com", clientID: "dingabc", redirect: "http://127.0.0.1:8000/callback", scope: "openid", state: "s1",
			want: "https://login.dingtalk.com/oauth2/auth?redirect_uri=http%3A%2F%2F127.0.0.1%3A8000%2Fcallback&response_type=code&client_id=dingabc&scope=openid&state=s1&prompt=consent",
		},
		"scope with a space, endpoint with a trailing slash": {
			endpoint: "https://login.dingtalk.com/", clientID: "ding abc&x=1", redirect: "http://127.0.0.1:8123/callback", scope: "openid corpid", state: "a-b_c",
			want: "https://login.dingtalk.com/oauth2/auth?redirect_uri=http%3A%2F%2F127.0.0.1%3A8123%2Fcallback&response_type=code&client_id=ding%20abc%26x%3D1&scope=openid%20corpid&state=a-b_c&prompt=consent",
		},
		"simulator on loopback http": {
			endpoint: "http://127.0.0.1:8089", clientID: "u", redirect: "http://127.0.0.1:1/callback", scope: "openid", state: "s",
			want: "http://127.0.0.1:8089/oauth2/auth?redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcallback&response_type=code&client_id=u&scope=openid&state=s&prompt=consent",
		},
		"plain http elsewhere": {endpoint: "http://login.example.com", wantErr: "must use https"},
		"relative":             {endpoint: "login.dingtalk.com", wantErr: "absolute https URL"},
		"other scheme":         {endpoint: "ftp://login.dingtalk.com", wantErr: "absolute https URL"},
		"query":                {endpoint: "https://login.dingtalk.com/?a=b", wantErr: "query"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := authURL(tc.endpoint, tc.clientID, tc.redirect, tc.scope, tc.state)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("authURL =\n %s\nwant\n %s", got, tc.want)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			if q.Get("redirect_uri") != tc.redirect || q.Get("client_id") != tc.clientID || q.Get("scope") != tc.scope || q.Get("state") != tc.state {
				t.Errorf("query does not round-trip: %v", q)
			}
		})
	}
}

func TestNewState(t *testing.T) {
	a, err := newState()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newState()
	if len(a) != 43 || a == b {
		t.Errorf("states %q and %q: want two different 43-character values", a, b)
	}
	if url.QueryEscape(a) != a {
		t.Errorf("state %q needs escaping", a)
	}
}

func TestReadRedirect(t *testing.T) {
	const state = "the-state"
	tests := map[string]struct {
		// query is the redirect's query string.
		query string
		// want is the code; wantErr a part of the error instead.
		want, wantErr string
	}{
		"authCode":                {query: "authCode=c1&state=the-state", want: "c1"},
		"code":                    {query: "code=c2&state=the-state", want: "c2"},
		"authCode wins over code": {query: "code=c2&authCode=c1&state=the-state", want: "c1"},
		"no code":                 {query: "state=the-state", wantErr: "no authCode"},
		"error from DingTalk":     {query: "error=access_denied<script>&state=the-state", wantErr: `error "access_deniedscript"`},
		"huge code":               {query: "authCode=" + strings.Repeat("x", 4097) + "&state=the-state", wantErr: "over 4096 bytes"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readRedirect(q)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if got != "" {
					t.Errorf("code %q returned with an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("readRedirect = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	for got, match := range map[string]bool{"the-state": true, "other": false, "the-stat": false, "the-state-": false, "": false} {
		if stateMatches(state, got) != match {
			t.Errorf("stateMatches(%q, %q) = %t", state, got, !match)
		}
	}
	if stateMatches("", "") {
		t.Error("an empty state matched")
	}
}

// The callback server hands the first redirect to the command, answers the browser with the
// outcome of storing the code, and refuses every later redirect.
func TestCallbackServer(t *testing.T) {
	var refused atomic.Int32
	cb := &callbackServer{state: "s", redirects: make(chan redirect, 1), refused: func() { refused.Add(1) }, ignored: func() {}}
	srv := httptest.NewServer(cb)
	defer srv.Close()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/favicon.ico"); code != http.StatusNotFound {
		t.Errorf("/favicon.ico: %d, want 404 (and not taken as the sign-in)", code)
	}
	go func() {
		rd := <-cb.redirects
		if rd.err != nil || rd.code != "secret-code" {
			t.Errorf("redirect = %q, %v", rd.code, rd.err)
		}
		rd.stored <- nil
	}()
	code, body := get(callbackPath + "?authCode=secret-code&state=s")
	if code != http.StatusOK || !strings.Contains(body, "Signed in") {
		t.Errorf("first redirect: %d %s", code, body)
	}
	code, body = get(callbackPath + "?authCode=another&state=s")
	if code != http.StatusConflict || !strings.Contains(body, "already completed") || refused.Load() != 1 {
		t.Errorf("second redirect: %d %s (refused %d)", code, body, refused.Load())
	}
	for _, b := range []string{body} {
		if strings.Contains(b, "secret-code") || strings.Contains(b, "another") {
			t.Errorf("a page shows the code: %s", b)
		}
	}
}

// A request with a wrong or no state is answered 400 and ignored: the sign-in with the right
// state still completes after it.
func TestCallbackServerWrongState(t *testing.T) {
	var ignored atomic.Int32
	cb := &callbackServer{state: "s", redirects: make(chan redirect, 1), refused: func() { t.Error("a redirect was refused") },
		ignored: func() { ignored.Add(1) }}
	srv := httptest.NewServer(cb)
	defer srv.Close()
	for _, query := range []string{"authCode=forged-code&state=forged", "authCode=forged-code", "error=access_denied&state=forged"} {
		resp, err := http.Get(srv.URL + callbackPath + "?" + query)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "state does not match") || strings.Contains(string(b), "forged-code") {
			t.Errorf("%s: %d %s", query, resp.StatusCode, b)
		}
	}
	select {
	case rd := <-cb.redirects:
		t.Fatalf("a redirect with a wrong state was handed on: %v", rd.err)
	default:
	}
	if ignored.Load() != 3 {
		t.Errorf("ignored %d requests, want 3", ignored.Load())
	}
	go func() {
		rd := <-cb.redirects
		if rd.err != nil || rd.code != "right-code" {
			t.Errorf("redirect = %q, %v", rd.code, rd.err)
		}
		rd.stored <- nil
	}()
	resp, err := http.Get(srv.URL + callbackPath + "?authCode=right-code&state=s")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the right redirect after the wrong ones: %d", resp.StatusCode)
	}
}

func TestOpener(t *testing.T) {
	tests := map[string]string{"linux": "xdg-open", "darwin": "open", "windows": "rundll32", "freebsd": "xdg-open", "plan9": ""}
	for goos, want := range tests {
		if got, _ := opener(goos); got != want {
			t.Errorf("opener(%s) = %q, want %q", goos, got, want)
		}
	}
	if _, args := opener("windows"); len(args) != 1 || args[0] != "url.dll,FileProtocolHandler" {
		t.Errorf("windows args = %q", args)
	}
}

// The URL is printed in every case: with --no-browser, when the opener fails, and beside an
// opened browser that may not have come up.
func TestShowSignIn(t *testing.T) {
	const signInURL = "https://login.dingtalk.com/oauth2/auth?client_id=x"
	tests := map[string]struct {
		// noBrowser is --no-browser; openErr what the opener returns.
		noBrowser bool
		openErr   error
		// opened: the opener was called; want: a part of the output.
		opened bool
		want   string
	}{
		"no browser":    {noBrowser: true, want: "Open this URL in a browser and sign in to DingTalk:"},
		"opener fails":  {openErr: io.ErrUnexpectedEOF, opened: true, want: "Could not open a browser."},
		"browser opens": {opened: true, want: "Opened DingTalk's sign-in page in your browser. If it did not open, visit:"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var out strings.Builder
			opened := false
			o := &Options{IOStreams: genericiooptions.IOStreams{Out: &out}, OpenBrowser: func(u string) error {
				opened = u == signInURL
				return tc.openErr
			}}
			o.showSignIn(&authorizeOptions{noBrowser: tc.noBrowser, timeout: 5 * time.Minute}, signInURL, "http://127.0.0.1:8000/callback")
			if opened != tc.opened || !strings.Contains(out.String(), tc.want) || !strings.Contains(out.String(), "\n    "+signInURL+"\n") {
				t.Errorf("opened %v, output:\n%s", opened, out.String())
			}
		})
	}
}
