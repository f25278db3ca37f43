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
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/tokenproxy"
)

// fuzzToken is the token the fuzzed proxy holds.
const fuzzToken = "fuzz0token0held0by0the0proxy"

// recordingTransport stands in for the network: it keeps what would be sent and answers with
// one of a few canned answers (a success, or each family's "invalid token").
type recordingTransport struct {
	mu     sync.Mutex
	sent   []*http.Request
	answer int
}

var cannedAnswers = []struct {
	status int
	body   string
}{
	{200, `{"errcode":0,"errmsg":"ok"}`},
	{400, `{"code":"InvalidAuthentication","message":"bad"}`},
	{200, `{"errcode":88,"sub_code":"40014"}`},
	{302, ``},
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	rt.mu.Lock()
	rt.sent = append(rt.sent, r)
	a := cannedAnswers[rt.answer%len(cannedAnswers)]
	rt.mu.Unlock()
	h := http.Header{"Content-Type": {"application/json"}}
	if a.status == 302 {
		h.Set("Location", "https://elsewhere.example/?"+r.URL.RawQuery)
	}
	return &http.Response{StatusCode: a.status, Header: h, Body: io.NopCloser(strings.NewReader(a.body)), Request: r, ContentLength: int64(len(a.body))}, nil
}

// FuzzRequest feeds raw HTTP requests to each listener's handler. Whatever a client sends, the
// proxy never panics; refuses CONNECT and any target that is not a path without a call; sends
// anything it forwards to its fixed upstream only, with the held token exactly once in the
// family's place and no other token; and never answers the client with the token.
func FuzzRequest(f *testing.F) {
	seeds := []string{
		"GET /v1.0/contact/users/me HTTP/1.1\r\nHost: 127.0.0.1:8480\r\n\r\n",
		"GET /user/get?userid=1&access_token=client HTTP/1.1\r\nHost: localhost\r\nX-Acs-Dingtalk-Access-Token: c\r\nAuthorization: Bearer c\r\n\r\n",
		"POST /topapi/v2/user/get?access%5Ftoken=x&access_token=y;z HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"userid\":1}\n",
		"POST /x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET http://evil.example/v1.0/x HTTP/1.1\r\nHost: evil.example\r\n\r\n",
		"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: evil.example\r\n\r\n",
		"GET //evil.example/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"GET /../../x?%zz HTTP/1.1\r\nHost: [::1]:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"GET /x HTTP/1.0\r\n\r\n",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i))
	}
	dir := filepath.Join(f.TempDir(), "token")
	v := &testenv.SecretVolume{Dir: dir}
	if err := v.WriteStrings(map[string]string{"accessToken": fuzzToken, "expiresAt": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)}); err != nil {
		f.Fatal(err)
	}
	rt := &recordingTransport{}
	o := tokenproxy.DefaultOptions()
	o.TokenDir = dir
	p, err := tokenproxy.New(o, tokenproxy.NewSource(dir, o.TokenKey, o.ExpiryKey, nil, discard), discard, rt)
	if err != nil {
		f.Fatal(err)
	}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8480}

	f.Fuzz(func(t *testing.T, raw []byte, pick uint8) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // net/http refuses it before the proxy sees it
		}
		family, upstream := tokenproxy.FamilyAPI, "api.dingtalk.com"
		if pick%2 == 1 {
			family, upstream = tokenproxy.FamilyOAPI, "oapi.dingtalk.com"
		}
		req.RemoteAddr = "127.0.0.1:40000"
		req = req.WithContext(context.WithValue(context.Background(), http.LocalAddrContextKey, net.Addr(local)))
		rt.mu.Lock()
		rt.sent, rt.answer = nil, int(pick/2)
		rt.mu.Unlock()
		rec := httptest.NewRecorder()
		p.Handler(family).ServeHTTP(rec, req)

		rt.mu.Lock()
		sent := rt.sent
		rt.mu.Unlock()
		if req.Method == http.MethodConnect || !strings.HasPrefix(req.RequestURI, "/") {
			if len(sent) != 0 || rec.Code < 400 {
				t.Fatalf("%s %q: forwarded (%d) or answered %d", req.Method, req.RequestURI, len(sent), rec.Code)
			}
		}
		if len(sent) > 1 {
			t.Fatalf("%d attempts with an unchanged token", len(sent))
		}
		for _, out := range sent {
			checkForwarded(t, out, family, upstream)
		}
		if bytes.Contains(rec.Body.Bytes(), []byte(fuzzToken)) {
			t.Fatal("the answer's body holds the token")
		}
		for k, vs := range rec.Header() {
			if strings.Contains(strings.Join(vs, " "), fuzzToken) {
				t.Fatalf("the answer's header %s holds the token", k)
			}
		}
	})
}

// checkForwarded asserts that a forwarded request goes to the fixed upstream with the held token
// exactly once in its family's place, and no other.
func checkForwarded(t *testing.T, out *http.Request, family tokenproxy.Family, upstream string) {
	t.Helper()
	if out.URL.Scheme != "https" || out.URL.Host != upstream || out.Host != "" && out.Host != upstream {
		t.Fatalf("forwarded to %s://%s (Host %q), want https://%s", out.URL.Scheme, out.URL.Host, out.Host, upstream)
	}
	q, _ := url.ParseQuery(out.URL.RawQuery)
	header, auth := out.Header.Values("X-Acs-Dingtalk-Access-Token"), out.Header.Values("Authorization")
	if family == tokenproxy.FamilyAPI {
		if !slices.Equal(header, []string{fuzzToken}) || len(auth) != 0 || q.Has("access_token") {
			t.Fatalf("api: header %d values (ours: %v), Authorization %d, access_token in the query: %v",
				len(header), slices.Equal(header, []string{fuzzToken}), len(auth), q.Has("access_token"))
		}
	} else if !slices.Equal(q["access_token"], []string{fuzzToken}) || len(header)+len(auth) != 0 {
		t.Fatalf("oapi: access_token %d values (ours: %v), header %d, Authorization %d",
			len(q["access_token"]), slices.Equal(q["access_token"], []string{fuzzToken}), len(header), len(auth))
	}
	if out.Header.Get("Upgrade") != "" {
		t.Fatal("a protocol upgrade was forwarded")
	}
}
