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
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/tokenproxy"
)

// The simulator's credentials in these tests.
const (
	appKey   = "dingproxyapp"
	suiteKey = "suiteproxy"
	clientID = "dingproxyuser"
	corpID   = "dingcorpproxy"
)

// world is a simulator behind a recording front (both over real HTTP on loopback), the values
// never to leak, and a Secret volume the test writes as the kubelet does.
type world struct {
	sim       *simulator.Server
	up        *upstream
	sensitive *testenv.Sensitive
	vol       *testenv.SecretVolume

	appSecret, suiteSecret, suiteTicket, refreshToken string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{sensitive: &testenv.Sensitive{}, vol: &testenv.SecretVolume{Dir: filepath.Join(t.TempDir(), "token")}}
	if err := os.Mkdir(w.vol.Dir, 0o755); err != nil { // a mount's directory exists before the pod starts
		t.Fatal(err)
	}
	w.appSecret = w.sensitive.New(testenv.Credential, "app-secret-")
	w.suiteSecret = w.sensitive.New(testenv.Credential, "suite-secret-")
	w.suiteTicket = w.sensitive.New(testenv.Credential, "ticket-")
	w.refreshToken = w.sensitive.New(testenv.Credential, "refresh-")
	life := simulator.Duration(time.Hour)
	sim, err := simulator.Start(simulator.Config{
		Apps: []simulator.App{{AppKey: appKey, AppSecret: w.appSecret, TokenLifetime: life}},
		Suites: []simulator.Suite{{SuiteKey: suiteKey, SuiteSecret: w.suiteSecret, SuiteTicket: w.suiteTicket,
			AuthorizedCorps: []string{corpID}, TokenLifetime: life}},
		Users: []simulator.User{{ClientID: clientID, ClientSecret: w.appSecret, RefreshTokens: []string{w.refreshToken}, TokenLifetime: life}},
	}, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	w.sim = sim
	w.up = newUpstream(t, sim.Handler())
	return w
}

// token asks the simulator for a token over HTTP: "app" (the same one while valid), "corp" (a
// new one each time) or "user".
func (w *world) token(t *testing.T, kind string) string {
	t.Helper()
	path, body := simulator.PathAppAccessToken, map[string]string{"appKey": appKey, "appSecret": w.appSecret}
	switch kind {
	case "corp":
		path, body = simulator.PathCorpAccessToken, map[string]string{"suiteKey": suiteKey, "suiteSecret": w.suiteSecret,
			"suiteTicket": w.suiteTicket, "authCorpId": corpID}
	case "user":
		path, body = simulator.PathUserAccessToken, map[string]string{"clientId": clientID, "clientSecret": w.appSecret,
			"grantType": "refresh_token", "refreshToken": w.refreshToken}
	}
	b, _ := json.Marshal(body)
	resp, err := http.Post(w.sim.URL()+path, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var ans struct {
		AccessToken  string `json:"accessToken"`
		RefreshToken string `json:"refreshToken"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || ans.AccessToken == "" {
		t.Fatalf("no %s token from the simulator: HTTP %d, %v", kind, resp.StatusCode, err)
	}
	if ans.RefreshToken != "" {
		w.refreshToken = ans.RefreshToken
		w.sensitive.Add(testenv.RefreshToken, ans.RefreshToken)
	}
	w.sensitive.Add(testenv.AccessToken, ans.AccessToken)
	return ans.AccessToken
}

// mount writes token (expiring in an hour) into the volume, as the kubelet does.
func (w *world) mount(t *testing.T, token string) {
	t.Helper()
	w.mountUntil(t, token, time.Now().Add(time.Hour))
}

func (w *world) mountUntil(t *testing.T, token string, expires time.Time) {
	t.Helper()
	if err := w.vol.WriteStrings(map[string]string{"accessToken": token, "expiresAt": expires.UTC().Format(time.RFC3339)}); err != nil {
		t.Fatal(err)
	}
}

// results is the simulator's count of calls on a business path, by result.
func (w *world) results(path string) map[string]int64 {
	out := map[string]int64{}
	for _, c := range w.sim.Stats().Endpoints[path].Credentials {
		for r, n := range c.Results {
			out[r] += n
		}
	}
	return out
}

// calls is the simulator's number of calls on business paths.
func (w *world) calls() int64 {
	n := int64(0)
	for _, p := range []string{simulator.PathUsersMe, simulator.PathUserByUnionID, simulator.PathTopUserGet, simulator.PathUserGet} {
		n += w.sim.Stats().Endpoints[p].Total
	}
	return n
}

// proxy is a started proxy pointed at the world's upstream, logging into a buffer.
type proxy struct {
	*tokenproxy.Server
	logs *testutil.SyncBuffer
}

func (w *world) startProxy(t *testing.T, change func(*tokenproxy.Options)) *proxy {
	t.Helper()
	o := tokenproxy.DefaultOptions()
	o.APIListen, o.OAPIListen, o.MetricsListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	o.APIUpstream, o.OAPIUpstream = w.up.srv.URL, w.up.srv.URL
	o.TokenDir = w.vol.Dir
	o.LogLevel = slog.LevelDebug
	if change != nil {
		change(&o)
	}
	logs := &testutil.SyncBuffer{}
	srv, err := tokenproxy.Start(o, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: o.LogLevel})), tokenproxy.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.Tail(40))
		}
	})
	return &proxy{Server: srv, logs: logs}
}

func (p *proxy) url(listener, pathQuery string) string {
	return "http://" + p.Addrs[listener] + pathQuery
}

// metrics reads the proxy's /metrics.
func (p *proxy) metrics(t *testing.T) string {
	t.Helper()
	return string(get(t, p.url("metrics", "/metrics"), nil).body)
}

// answer is a client's view of an answer.
type answer struct {
	status int
	header http.Header
	body   []byte
	// Decoded fields of either family's shape.
	Code    string `json:"code"`
	Message string `json:"message"`
	ErrCode *int   `json:"errcode"`
	SubCode string `json:"sub_code"`
	UnionID string `json:"unionId"`
}

// ok reports a DingTalk success: HTTP 200 and, on the old API, errcode 0.
func (a answer) ok() bool { return a.status == 200 && (a.ErrCode == nil || *a.ErrCode == 0) }

// noRedirects is a client that returns redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func do(t *testing.T, method, url, body string, header http.Header) answer {
	t.Helper()
	a, err := doErr(t.Context(), method, url, body, header)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func doErr(ctx context.Context, method, url, body string, header http.Header) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	a := answer{status: resp.StatusCode, header: resp.Header}
	if a.body, err = io.ReadAll(resp.Body); err != nil {
		return a, err
	}
	_ = json.Unmarshal(a.body, &a)
	return a, nil
}

func get(t *testing.T, url string, header http.Header) answer {
	t.Helper()
	return do(t, http.MethodGet, url, "", header)
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

// seen is a request as it reached the upstream.
type seen struct {
	method, host, path, rawQuery string
	header                       http.Header
	body                         string
}

// upstream is a recording front of a handler (the simulator's), over real HTTP: it keeps every
// request that reached it and, when gated, holds each until released.
type upstream struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []seen
	gate    chan struct{} // when set, a request waits for a receive from it
	arrived chan struct{} // signalled when a gated request arrives
}

func newUpstream(t *testing.T, next http.Handler) *upstream {
	u := &upstream{arrived: make(chan struct{}, 16)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{method: r.Method, host: r.Host, path: r.URL.Path, rawQuery: r.URL.RawQuery, header: r.Header.Clone(), body: string(body)})
		gate := u.gate
		u.mu.Unlock()
		if gate != nil {
			u.arrived <- struct{}{}
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// requests returns what reached the upstream so far.
func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen{}, u.reqs...)
}

// last is the last request that reached the upstream.
func (u *upstream) last(t *testing.T) seen {
	t.Helper()
	r := u.requests()
	if len(r) == 0 {
		t.Fatal("no request reached the upstream")
	}
	return r[len(r)-1]
}

// hold makes every request wait at the upstream until release is called once per request.
func (u *upstream) hold() (release func()) {
	gate := make(chan struct{})
	u.mu.Lock()
	u.gate = gate
	u.mu.Unlock()
	return func() { gate <- struct{}{} }
}

func (u *upstream) unhold() {
	u.mu.Lock()
	u.gate = nil
	u.mu.Unlock()
}

// tokensIn lists every token value a request carried, wherever: the header, Bearer, the query.
func (s seen) tokensIn() []string {
	out := append([]string{}, s.header.Values("X-Acs-Dingtalk-Access-Token")...)
	for _, v := range s.header.Values("Authorization") {
		out = append(out, v)
	}
	for _, part := range strings.Split(s.rawQuery, "&") {
		if v, ok := strings.CutPrefix(part, "access_token="); ok {
			out = append(out, v)
		}
	}
	return out
}
