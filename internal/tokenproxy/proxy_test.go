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

package tokenproxy_test

import (
	"bufio"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega" //nolint:revive // Gomega's DSL reads best unqualified

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/tokenproxy"
)

// TestAPIHeaderPlacement: on the API listener the token goes in x-acs-dingtalk-access-token, to
// the fixed upstream, and the simulator accepts it (a user token on users/me).
func TestAPIHeaderPlacement(t *testing.T) {
	w := newWorld(t)
	tok := w.token(t, "user")
	w.mount(t, tok)
	p := w.startProxy(t, nil)

	a := get(t, p.url("api", simulator.PathUsersMe), nil)
	if !a.ok() || a.UnionID == "" {
		t.Fatalf("users/me through the proxy: HTTP %d %s", a.status, a.body)
	}
	up := w.up.last(t)
	if got := up.header.Values("X-Acs-Dingtalk-Access-Token"); !slices.Equal(got, []string{tok}) {
		t.Errorf("upstream header carried %d values, want exactly the mounted token", len(got))
	}
	if up.header.Get("Authorization") != "" || strings.Contains(up.rawQuery, "access_token") {
		t.Error("the token also went as Bearer or in the query")
	}
	if want := strings.TrimPrefix(w.up.srv.URL, "http://"); up.host != want {
		t.Errorf("upstream Host %q, want %q", up.host, want)
	}
	if got := w.results(simulator.PathUsersMe); got["success"] != 1 || len(got) != 1 {
		t.Errorf("simulator's users/me results %v, want one success", got)
	}
}

// TestBearerPlacement: --api-token-placement=bearer sends Authorization: Bearer and no header.
func TestBearerPlacement(t *testing.T) {
	w := newWorld(t)
	tok := w.token(t, "user")
	w.mount(t, tok)
	p := w.startProxy(t, func(o *tokenproxy.Options) { o.APITokenPlacement = tokenproxy.PlacementBearer })

	if a := get(t, p.url("api", simulator.PathUsersMe), nil); !a.ok() {
		t.Fatalf("users/me through the proxy: HTTP %d %s", a.status, a.body)
	}
	up := w.up.last(t)
	if got := up.header.Values("Authorization"); !slices.Equal(got, []string{"Bearer " + tok}) {
		t.Errorf("upstream Authorization has %d values, want exactly Bearer and the mounted token", len(got))
	}
	if len(up.header.Values("X-Acs-Dingtalk-Access-Token")) != 0 {
		t.Error("the header was sent too")
	}
}

// TestOAPIQueryPlacement: on the oapi listener the token goes in ?access_token=, the rest of the
// query and the body untouched, on the classic and the /topapi paths.
func TestOAPIQueryPlacement(t *testing.T) {
	w := newWorld(t)
	tok := w.token(t, "app")
	w.mount(t, tok)
	p := w.startProxy(t, nil)

	if a := get(t, p.url("oapi", simulator.PathUserGet+"?userid=manager1&lang=zh_CN"), nil); !a.ok() {
		t.Fatalf("/user/get through the proxy: HTTP %d %s", a.status, a.body)
	}
	up := w.up.last(t)
	if want := "userid=manager1&lang=zh_CN&access_token=" + tok; up.rawQuery != want {
		t.Errorf("upstream query is not the client's with the token appended")
	}
	if len(up.header.Values("X-Acs-Dingtalk-Access-Token"))+len(up.header.Values("Authorization")) != 0 {
		t.Error("the token also went in a header")
	}
	a := do(t, http.MethodPost, p.url("oapi", simulator.PathTopUserGet), `{"userid":"manager1"}`, jsonHeader)
	if !a.ok() {
		t.Fatalf("/topapi/v2/user/get through the proxy: HTTP %d %s", a.status, a.body)
	}
	if up := w.up.last(t); up.body != `{"userid":"manager1"}` || up.rawQuery != "access_token="+tok {
		t.Errorf("upstream body %q, query carries the token alone: %v", up.body, up.rawQuery == "access_token="+tok)
	}
	if got := w.results(simulator.PathTopUserGet); got["success"] != 1 {
		t.Errorf("simulator's /topapi results %v", got)
	}
}

// TestClientTokensReplaced: whatever token a client sends (the header, Authorization, the
// access_token parameter, in any spelling) is removed; only the mounted one reaches DingTalk,
// once (the simulator refuses a call with two different tokens).
func TestClientTokensReplaced(t *testing.T) {
	w := newWorld(t)
	tok := w.token(t, "app")
	w.mount(t, tok)
	p := w.startProxy(t, nil)
	client := []string{w.sensitive.New(testenv.Credential, "client-header-"), w.sensitive.New(testenv.Credential, "client-bearer-"),
		w.sensitive.New(testenv.Credential, "client-query-"), w.sensitive.New(testenv.Credential, "client-escaped-"),
		w.sensitive.New(testenv.Credential, "client-underscored-"), w.sensitive.New(testenv.Credential, "client-cased-")}
	// The header and the parameter as spelt, and the variants a server may take them for: a
	// header with '_' for '-', a parameter in another case.
	header := http.Header{"X-Acs-Dingtalk-Access-Token": {client[0]}, "Authorization": {"Bearer " + client[1]},
		"X_acs_dingtalk_access_token": {client[4]}}
	query := "?access_token=" + client[2] + "&access%5Ftoken=" + client[3] + "&Access_Token=" + client[5] + "&userid=u1"

	for _, c := range []struct{ listener, method, path, body string }{
		{"api", http.MethodGet, "/v1.0/contact/users/union1" + query, ""},
		{"oapi", http.MethodGet, simulator.PathUserGet + query, ""},
		{"oapi", http.MethodPost, simulator.PathTopUserGet + query, `{"userid":"u1"}`},
	} {
		h := header.Clone()
		h.Set("Content-Type", "application/json")
		if a := do(t, c.method, p.url(c.listener, c.path), c.body, h); !a.ok() {
			t.Errorf("%s %s: HTTP %d %s", c.listener, c.path, a.status, a.body)
		}
		up := w.up.last(t)
		if got := up.tokensIn(); len(got) != 1 || !strings.Contains(got[0], tok) {
			t.Errorf("%s %s: the upstream request carried %d tokens, want the mounted one alone", c.listener, c.path, len(got))
		}
		for _, v := range client {
			if strings.Contains(up.rawQuery, v) || strings.Contains(strings.Join(flatten(up.header), "\n"), v) {
				t.Errorf("%s %s: a token the client sent was forwarded", c.listener, c.path)
			}
		}
		if !strings.Contains(up.rawQuery, "userid=u1") {
			t.Errorf("%s %s: the client's other parameters were lost: %q", c.listener, c.path, strings.ReplaceAll(up.rawQuery, tok, "TOKEN"))
		}
	}
}

func flatten(h http.Header) []string {
	var out []string
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, k+": "+v)
		}
	}
	return out
}

// rawRequest sends text as is over one connection and reads the answer.
func rawRequest(t *testing.T, addr, text string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := conn.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// TestRefusals: an absolute-form request, CONNECT, an asterisk target and a Host naming another
// server are refused without an upstream call (OPTIONS * is answered by net/http itself); a Host naming the proxy (localhost, a loopback
// address, an allowed name) is served, and whatever it names, the upstream gets its own.
func TestRefusals(t *testing.T) {
	w := newWorld(t)
	w.mount(t, w.token(t, "app"))
	p := w.startProxy(t, func(o *tokenproxy.Options) { o.AllowedHosts = []string{"proxy.apps.svc"} })
	api, port := p.Addrs["api"], p.Addrs["api"][strings.LastIndexByte(p.Addrs["api"], ':')+1:]
	upHost := strings.TrimPrefix(w.up.srv.URL, "http://")

	refused := map[string]struct {
		text   string // the raw request
		status int    // wanted
	}{
		"absolute-form":           {"GET http://evil.example/v1.0/contact/users/u1 HTTP/1.1\r\nHost: evil.example\r\n\r\n", 400},
		"absolute-form, our host": {"GET http://" + api + "/v1.0/contact/users/u1 HTTP/1.1\r\nHost: " + api + "\r\n\r\n", 400},
		"CONNECT":                 {"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 405},
		"asterisk":                {"GET * HTTP/1.1\r\nHost: " + api + "\r\n\r\n", 400},
		"OPTIONS *":               {"OPTIONS * HTTP/1.1\r\nHost: " + api + "\r\n\r\n", 200}, // net/http answers it itself
		"foreign Host":            {"GET /v1.0/contact/users/u1 HTTP/1.1\r\nHost: evil.example\r\n\r\n", 421},
		"upstream's Host":         {"GET /v1.0/contact/users/u1 HTTP/1.1\r\nHost: api.dingtalk.com\r\n\r\n", 421},
		"rebound name":            {"GET /v1.0/contact/users/u1 HTTP/1.1\r\nHost: attacker.example:" + port + "\r\n\r\n", 421},
		// TRACE would have an upstream echo the token back; no DingTalk API uses it.
		"TRACE": {"TRACE /v1.0/contact/users/u1 HTTP/1.1\r\nHost: " + api + "\r\n\r\n", 405},
		// Dot segments would leave the upstream's path prefix on a gateway that normalises them.
		"dot segments":         {"GET /v1.0/../../x HTTP/1.1\r\nHost: " + api + "\r\n\r\n", 400},
		"escaped dot segments": {"GET /v1.0/%2e%2e/x HTTP/1.1\r\nHost: " + api + "\r\n\r\n", 400},
	}
	for name, tc := range refused {
		t.Run(name, func(t *testing.T) {
			resp := rawRequest(t, api, tc.text)
			if resp.StatusCode != tc.status {
				t.Errorf("HTTP %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	if n := len(w.up.requests()); n != 0 || w.calls() != 0 {
		t.Fatalf("refused requests reached the upstream: %d requests, %d simulator calls", n, w.calls())
	}
	if m := p.metrics(t); !strings.Contains(m, `dingtalk_token_proxy_refused_total{reason="host",upstream="api"} 3`) ||
		!strings.Contains(m, `dingtalk_token_proxy_refused_total{reason="absolute_form",upstream="api"} 3`) ||
		!strings.Contains(m, `dingtalk_token_proxy_refused_total{reason="connect",upstream="api"} 1`) ||
		!strings.Contains(m, `dingtalk_token_proxy_refused_total{reason="method",upstream="api"} 1`) ||
		!strings.Contains(m, `dingtalk_token_proxy_refused_total{reason="path",upstream="api"} 2`) {
		t.Errorf("refusals not counted by reason:\n%s", grep(m, "refused_total"))
	}

	for _, host := range []string{"localhost:" + port, "127.0.0.1:" + port, "[::1]:" + port, "PROXY.apps.svc", "proxy.apps.svc.:" + port, ""} {
		text := "GET /v1.0/contact/users/u1 HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
		if host == "" {
			text = "GET /v1.0/contact/users/u1 HTTP/1.0\r\n\r\n"
		}
		if resp := rawRequest(t, api, text); resp.StatusCode != 200 {
			t.Errorf("Host %q: HTTP %d, want 200", host, resp.StatusCode)
		}
		if got := w.up.last(t).host; got != upHost {
			t.Errorf("Host %q reached the upstream as %q, want %q", host, got, upHost)
		}
	}
}

func grep(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestNoValidToken: a missing, unreadable, malformed or expired token is answered 503 with a
// DingTalk-shaped error on both listeners, and DingTalk is never called; /readyz says not ready
// until a valid token is mounted, and then the same request goes through.
func TestNoValidToken(t *testing.T) {
	w := newWorld(t)
	tok := w.token(t, "app")
	p := w.startProxy(t, nil)
	dir := w.vol.Dir
	cases := []struct {
		name   string
		setup  func(t *testing.T)
		reason string
	}{
		{"missing", func(t *testing.T) {}, "TokenMissing"},
		{"unreadable", func(t *testing.T) {
			if err := os.MkdirAll(filepath.Join(dir, "accessToken"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "TokenUnreadable"},
		{"empty", func(t *testing.T) {
			Expect(w.vol.WriteStrings(map[string]string{"accessToken": "\n", "expiresAt": time.Now().Add(time.Hour).Format(time.RFC3339)})).To(Succeed())
		}, "TokenMissing"},
		{"malformed", func(t *testing.T) {
			Expect(w.vol.WriteStrings(map[string]string{"accessToken": "two words", "expiresAt": time.Now().Add(time.Hour).Format(time.RFC3339)})).To(Succeed())
		}, "TokenInvalid"},
		{"no expiry", func(t *testing.T) { Expect(w.vol.WriteStrings(map[string]string{"accessToken": tok})).To(Succeed()) }, "TokenMissing"},
		{"expired", func(t *testing.T) { w.mountUntil(t, tok, time.Now().Add(-time.Second)) }, "TokenExpired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			RegisterTestingT(t)
			g := NewWithT(t)
			entries, err := os.ReadDir(dir)
			Expect(err).NotTo(HaveOccurred())
			for _, e := range entries { // the directory stays, as a mount does
				Expect(os.RemoveAll(filepath.Join(dir, e.Name()))).To(Succeed())
			}
			tc.setup(t)
			g.Eventually(func() string { return get(t, p.url("api", "/v1.0/contact/users/u1"), nil).Code }).
				WithTimeout(5 * time.Second).WithPolling(50 * time.Millisecond).Should(Equal(tc.reason))
			a := get(t, p.url("api", "/v1.0/contact/users/u1"), nil)
			o := get(t, p.url("oapi", simulator.PathUserGet+"?userid=u1"), nil)
			g.Expect(a.status).To(Equal(503))
			g.Expect(a.Message).To(ContainSubstring("holds no valid access token"))
			g.Expect(o.status).To(Equal(503))
			g.Expect(o.Code).To(Equal(tc.reason))
			g.Expect(o.ErrCode).NotTo(BeNil(), "the oapi listener's answer has an errcode")
			g.Expect(*o.ErrCode).To(Equal(-1))
			g.Expect(string(a.body) + string(o.body)).NotTo(ContainSubstring(tok))
			g.Expect(get(t, p.url("metrics", "/readyz"), nil).status).To(Equal(503))
			g.Expect(w.calls()).To(BeZero(), "DingTalk was called without a valid token")
			g.Expect(w.up.requests()).To(BeEmpty())
		})
	}
	RegisterTestingT(t)
	w.mount(t, tok)
	g := NewWithT(t)
	g.Eventually(func() int { return get(t, p.url("metrics", "/readyz"), nil).status }).WithTimeout(5 * time.Second).Should(Equal(200))
	g.Expect(get(t, p.url("api", "/v1.0/contact/users/u1"), nil).ok()).To(BeTrue())
	g.Expect(p.metrics(t)).To(ContainSubstring(`dingtalk_token_proxy_refused_total{reason="no_token",upstream="api"}`))
}

// TestRedirectPassedThroughWithoutToken: a 3xx from upstream reaches the client as it is (never
// followed), with the access_token parameter removed from Location and any header that carries
// the token dropped.
func TestRedirectPassedThroughWithoutToken(t *testing.T) {
	w := newWorld(t)
	tok := w.token(t, "app")
	w.mount(t, tok)
	redirecting := newUpstream(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Location", "https://oapi.dingtalk.com/next?a=1&"+r.URL.RawQuery)
		rw.Header().Set("X-Echo", "token="+r.URL.Query().Get("access_token"))
		rw.WriteHeader(http.StatusFound)
	}))
	p := w.startProxy(t, func(o *tokenproxy.Options) { o.OAPIUpstream = redirecting.srv.URL })
	a := get(t, p.url("oapi", "/gettoken-moved?b=2"), nil)
	if a.status != http.StatusFound {
		t.Fatalf("HTTP %d, want the upstream's 302", a.status)
	}
	loc, err := url.Parse(a.header.Get("Location"))
	if err != nil || loc.Host != "oapi.dingtalk.com" || loc.Query().Get("a") != "1" || loc.Query().Get("b") != "2" || loc.Query().Has("access_token") {
		t.Errorf("Location %q: want the upstream's, without access_token", strings.ReplaceAll(a.header.Get("Location"), tok, "TOKEN"))
	}
	if a.header.Get("X-Echo") != "" {
		t.Error("a header carrying the token reached the client")
	}
	if len(redirecting.requests()) != 1 {
		t.Errorf("the upstream got %d requests: the redirect was followed", len(redirecting.requests()))
	}
}

// TestUpstreamFailures: an upstream that does not answer in time is 504, one that cannot be
// reached 502, both DingTalk-shaped, and neither logs the upstream URL (which holds the token on
// the oapi listener).
func TestUpstreamFailures(t *testing.T) {
	w := newWorld(t)
	tok := w.token(t, "app")
	w.mount(t, tok)
	closed := newUpstream(t, http.NotFoundHandler())
	closed.srv.Close()
	p := w.startProxy(t, func(o *tokenproxy.Options) {
		o.UpstreamTimeout = 300 * time.Millisecond
		o.OAPIUpstream = closed.srv.URL
	})
	if err := w.sim.SetFault(simulator.Fault{Endpoint: simulator.PathUserByUnionID, Latency: simulator.Duration(3 * time.Second), Count: 1}); err != nil {
		t.Fatal(err)
	}
	if a := get(t, p.url("api", "/v1.0/contact/users/u1"), nil); a.status != 504 || a.Code != "UpstreamTimeout" {
		t.Errorf("a slow upstream: HTTP %d %q, want 504 UpstreamTimeout", a.status, a.Code)
	}
	if a := get(t, p.url("oapi", simulator.PathUserGet+"?userid=u1"), nil); a.status != 502 || a.Code != "UpstreamUnavailable" {
		t.Errorf("an upstream that refuses connections: HTTP %d %q, want 502 UpstreamUnavailable", a.status, a.Code)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, "Upstream call failed") || !strings.Contains(logs, "Upstream call timed out") {
		t.Errorf("the failures were not logged:\n%s", logs)
	}
	if strings.Contains(logs, tok) || strings.Contains(logs, "access_token") {
		t.Error("a failure's log line holds the upstream URL with the token")
	}
}

// TestLogsAndMetricsCarryNoToken: after requests on both listeners (successes, refusals, 503s,
// failures), the leak scan finds no token and no credential in the proxy's log or metrics; a
// request's log line names its path, never its query.
func TestLogsAndMetricsCarryNoToken(t *testing.T) {
	w := newWorld(t)
	tok := w.token(t, "app")
	p := w.startProxy(t, nil)
	clientTok := w.sensitive.New(testenv.Credential, "client-")
	get(t, p.url("oapi", simulator.PathUserGet+"?userid=u1"), nil) // 503: none mounted
	w.mount(t, tok)
	g := NewWithT(t)
	g.Eventually(func() bool { return get(t, p.url("oapi", simulator.PathUserGet+"?userid=secretive-user"), nil).ok() }).
		WithTimeout(5 * time.Second).Should(BeTrue())
	get(t, p.url("api", "/v1.0/contact/users/u1?access_token="+clientTok), http.Header{"Authorization": {"Bearer " + clientTok}})
	rawRequest(t, p.Addrs["api"], "GET http://evil.example/?access_token="+clientTok+" HTTP/1.1\r\nHost: evil.example\r\n\r\n")
	metrics := p.metrics(t)
	logs := p.logs.Bytes()
	g.Expect(string(logs)).To(ContainSubstring(`"path":"/user/get"`))
	g.Expect(string(logs)).NotTo(ContainSubstring("secretive-user"), "a query reached the log")
	g.Expect(metrics).To(ContainSubstring(`dingtalk_token_proxy_requests_total{code="2xx",upstream="oapi"}`))
	g.Expect(metrics).To(ContainSubstring(tokenproxy.MetricTokenExpiresIn))
	envtesting.ScanOutput(t, w.sensitive, map[string][]byte{"proxy log": logs, "proxy metrics": []byte(metrics)})
}
