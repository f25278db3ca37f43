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

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dingtalkv1alpha1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/tokenproxy"
)

// proxyToken is the DingTalkToken of config/samples whose target Secret the proxy reads: a
// ThirdPartyApp (corp) token, which DingTalk issues anew on every refresh.
const proxyToken = "suite-corp1"

// proxyDemo is dingtalk-token-proxy in the demo: the library of cmd/dingtalk-token-proxy
// in-process (as the operator is), reading a directory the demo writes as the kubelet writes a
// mounted Secret.
type proxyDemo struct {
	srv     *tokenproxy.Server
	dir     string
	logFile *os.File
	stop    context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex
	expires string // the expiresAt of the last version written (RFC 3339)
	writes  int
}

// proxyCall is a call made through the proxy and what came back.
type proxyCall struct {
	Status  int
	ErrCode int
	// Expires is the expiry of the token the proxy held (and sent).
	Expires string
}

// ok is a DingTalk success: HTTP 200 and errcode 0.
func (c proxyCall) ok() bool { return c.Status == http.StatusOK && c.ErrCode == 0 }

// startProxy mounts the target Secret of proxyToken as the kubelet would, starts the proxy on
// it and calls DingTalk (the simulator) through it, once per API family, with no token.
func (d *demo) startProxy(ctx context.Context) error {
	tok := &dingtalkv1alpha1.DingTalkToken{}
	if err := d.client.Get(ctx, client.ObjectKey{Namespace: d.cfg.namespace, Name: proxyToken}, tok); err != nil {
		return &stepError{step: "reading DingTalkToken " + proxyToken, err: err, fix: "restore config/samples (git checkout config/samples)"}
	}
	secret := tok.TargetName()
	t0 := d.step(8, "dingtalk-token-proxy: an app calls DingTalk with no token; the proxy adds the one of Secret %s/%s, mounted as the kubelet would",
		d.cfg.namespace, secret)
	p, err := d.mountAndStart(ctx, secret)
	if p != nil {
		d.proxy = p
	}
	if err != nil {
		d.printf("FAILED\n")
		return err
	}
	d.printf("\n")
	before, err := d.callThroughProxy(ctx)
	if err != nil {
		return err
	}
	d.result.ProxyBefore = before
	d.done(t0, "; the proxy's log: %s", d.rel(p.logFile.Name()))
	return nil
}

// mountAndStart copies the Secret into a directory whenever it changes (the kubelet's part) and
// starts the proxy on that directory, pointed at the simulator for both families.
func (d *demo) mountAndStart(ctx context.Context, secret string) (*proxyDemo, error) {
	dir, err := os.MkdirTemp("", "dingtalk-demo-proxy-")
	if err != nil {
		return nil, &stepError{step: "creating the proxy's token directory", err: err}
	}
	p := &proxyDemo{dir: dir, done: make(chan struct{})}
	if p.logFile, err = os.Create(filepath.Join(filepath.Dir(d.cfg.logFile), "demo-proxy.log")); err != nil {
		return p, &stepError{step: "creating the proxy's log", err: err, fix: "pass --log-file with a writable directory"}
	}
	vol := &testenv.SecretVolume{Dir: filepath.Join(dir, "token")}
	kctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	go p.playKubelet(kctx, d.client, client.ObjectKey{Namespace: d.cfg.namespace, Name: secret}, vol)
	if err := waitUntil(ctx, 30*time.Second, func() bool { return p.versions() > 0 }); err != nil {
		return p, d.waitError(ctx, "mounting Secret "+secret, err)
	}
	o := tokenproxy.DefaultOptions()
	o.APIListen, o.OAPIListen, o.MetricsListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	o.APIUpstream, o.OAPIUpstream = d.sim.URL(), d.sim.URL()
	o.TokenDir = vol.Dir
	if p.srv, err = tokenproxy.Start(o, slog.New(slog.NewJSONHandler(p.logFile, nil)), tokenproxy.Hooks{}); err != nil {
		return p, &stepError{step: "starting dingtalk-token-proxy", err: err}
	}
	ready := func() bool {
		status, _, _ := testenv.Get("http://"+p.srv.Addrs["metrics"]+"/readyz", "")
		return status == 200
	}
	if err := waitUntil(ctx, 30*time.Second, ready); err != nil {
		return p, d.waitError(ctx, "waiting for dingtalk-token-proxy to be ready", err)
	}
	return p, nil
}

// playKubelet writes the Secret's data into vol each time its resourceVersion moves.
func (p *proxyDemo) playKubelet(ctx context.Context, c client.Client, key client.ObjectKey, vol *testenv.SecretVolume) {
	defer close(p.done)
	version := ""
	for ctx.Err() == nil {
		s := &corev1.Secret{}
		if err := c.Get(ctx, key, s); err == nil && s.ResourceVersion != version && vol.Write(s.Data) == nil {
			version = s.ResourceVersion
			p.mu.Lock()
			p.expires, p.writes = string(s.Data[dingtalkv1alpha1.ExpiresAtKey]), p.writes+1
			p.mu.Unlock()
		}
		_ = testenv.Sleep(ctx, pollInterval)
	}
}

func (p *proxyDemo) versions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.writes
}

// heldExpiry is the expiry of the token the proxy holds, from its metrics (RFC 3339, "" when
// unknown): the mounted expiresAt it matches, once the proxy has read that version.
func (p *proxyDemo) heldExpiry(ctx context.Context) string {
	m, err := testenv.Scrape(ctx, http.DefaultClient, "http://"+p.srv.Addrs["metrics"]+"/metrics", "")
	if err != nil {
		return ""
	}
	in, ok := m.Sample(tokenproxy.MetricTokenExpiresIn, nil)
	p.mu.Lock()
	mounted := p.expires
	p.mu.Unlock()
	exp, err := time.Parse(time.RFC3339, mounted)
	if !ok || err != nil || time.Until(exp)-time.Duration(in*float64(time.Second)) > 2*time.Second {
		return "" // the proxy holds an older version than the mounted one
	}
	return mounted
}

// callThroughProxy calls both listeners as an app would (no token anywhere) and prints what
// came back and the expiry of the token the proxy sent.
func (d *demo) callThroughProxy(ctx context.Context) (proxyCall, error) {
	p := d.proxy
	oapi := "http://" + p.srv.Addrs["oapi"] + simulator.PathTopUserGet
	api := "http://" + p.srv.Addrs["api"] + "/v1.0/contact/users/union123"
	call := proxyCall{Expires: p.heldExpiry(ctx)}
	var err error
	if call.Status, call.ErrCode, err = post(ctx, oapi, `{"userid":"manager1"}`); err != nil {
		return call, &stepError{step: "calling DingTalk through the proxy", err: err}
	}
	d.printf("  POST %s  {\"userid\":\"manager1\"}  -> HTTP %d, errcode %d\n", oapi, call.Status, call.ErrCode)
	status, _, err := getStatus(ctx, api)
	if err != nil {
		return call, &stepError{step: "calling DingTalk through the proxy", err: err}
	}
	d.printf("  GET  %s  -> HTTP %d\n", api, status)
	if !call.ok() || status != http.StatusOK {
		return call, &stepError{step: "calling DingTalk through the proxy", err: fmt.Errorf("HTTP %d errcode %d, HTTP %d", call.Status, call.ErrCode, status),
			fix: "see the proxy's log " + d.rel(p.logFile.Name())}
	}
	d.printf("  neither request carried a token: the proxy added the mounted one (expires at %s) as ?access_token= and as\n"+
		"  the x-acs-dingtalk-access-token header, and the simulator found it valid\n", call.Expires)
	return call, nil
}

// proxyAfterRefresh waits until the operator refreshed the proxy's token and the new version
// is mounted, then calls through the proxy again: the same request, the new token, no restart.
func (d *demo) proxyAfterRefresh(ctx context.Context) error {
	p := d.proxy
	before := d.result.ProxyBefore.Expires
	d.printf("%s dingtalk-token-proxy, after the refresh of %s/%s (mounted again as the kubelet would):\n", d.since(), d.cfg.namespace, proxyToken)
	wait := d.lifetime + 30*time.Second
	if err := waitUntil(ctx, wait, func() bool { return p.heldExpiry(ctx) > before }); err != nil {
		return d.waitError(ctx, "waiting for the refresh of "+proxyToken, err)
	}
	after, err := d.callThroughProxy(ctx)
	if err != nil {
		return err
	}
	d.result.ProxyAfter = after
	calls, valid := proxiedCalls(d.sim)
	d.printf("%s The proxy picked up the new token with no restart: %d calls through it so far, %d of them answered success\n"+
		"  by the simulator (a token it issued and still valid); the app never held one.\n", d.since(), calls, valid)
	return nil
}

// proxiedCalls counts the simulator's calls on the business paths the demo uses, and its successes.
func proxiedCalls(sim *simulator.Server) (calls, valid int64) {
	st := sim.Stats().Endpoints
	for _, path := range []string{simulator.PathTopUserGet, simulator.PathUserByUnionID} {
		calls += st[path].Total
		valid += st[path].Results["success"]
	}
	return calls, valid
}

// close stops the proxy and the kubelet stand-in and removes the token directory.
func (p *proxyDemo) close() {
	if p.srv != nil {
		_ = p.srv.Shutdown(context.Background())
	}
	if p.stop != nil {
		p.stop()
		<-p.done
	}
	if p.logFile != nil {
		_ = p.logFile.Close()
	}
	_ = os.RemoveAll(p.dir)
}

func post(ctx context.Context, url, body string) (status, errcode int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	return send(req)
}

func getStatus(ctx context.Context, url string) (status, errcode int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	return send(req)
}

func send(req *http.Request) (status, errcode int, err error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	var ans struct {
		ErrCode int `json:"errcode"`
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		_ = json.Unmarshal(b, &ans)
	}
	return resp.StatusCode, ans.ErrCode, err
}

// waitUntil polls cond every pollInterval until it holds, ctx ends or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		if err := testenv.Sleep(ctx, pollInterval); err != nil {
			return err
		}
	}
	return nil
}
