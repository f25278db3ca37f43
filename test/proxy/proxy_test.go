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

// Package proxy tests dingtalk-token-proxy end to end: an envtest control plane, the operator
// in-process (built as cmd/main.go builds it), the DingTalk simulator over real HTTP, and the
// proxy binary as its own process, reading a directory the test writes as the kubelet writes a
// mounted Secret. The test plays the kubelet's part: it copies the target Secret into that
// directory whenever the operator changes it.
package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega" //nolint:revive // Gomega's DSL reads best unqualified
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

const (
	// lifetime is the simulator's token lifetime: with refreshBefore clamped to half of it, the
	// operator refreshes every 30 s (and up to 10 % earlier).
	lifetime = 60 * time.Second
	// refreshes is how many refreshes the clients call through.
	refreshes = 3
	corpID    = "dingcorpproxye2e"
)

// TestProxyAcrossRefreshes: a client calls DingTalk through the proxy binary, both API families,
// while the operator refreshes a 60 s ThirdPartyApp token (a new value each time) three times and
// the test copies the target Secret into the proxy's directory as the kubelet would: no request
// fails, and every request that reached the simulator carried a token it issued and that was
// still valid (it answers every other token as DingTalk does: 400 InvalidAuthentication,
// errcode 88 with sub_code 40014). Nothing the manager or the proxy printed or exposed holds a
// token or a credential.
func TestProxyAcrossRefreshes(t *testing.T) {
	logs, log := envtesting.SuiteLogs(t, "proxy-envtest")
	root, err := testenv.RepoRoot()
	envtesting.Must(t, err)
	bin := filepath.Join(t.TempDir(), "dingtalk-token-proxy")
	built := make(chan error, 1)
	go func() { built <- testenv.Build(root, "./cmd/dingtalk-token-proxy", bin, testenv.RaceEnabled) }()
	env := envtesting.Start(t, testenv.Options{Simulator: &simulator.Config{}})
	envtesting.Must(t, <-built)

	ns := env.CreateNamespace(t, "proxy")
	env.StartManager(t, env.ManagerOptions(ns), operator.Hooks{Logger: log})
	suiteKey := "suiteproxy" + testutil.RandHex(4)
	env.Sensitive.Add(testenv.Credential, suiteKey)
	suiteSecret, ticket := env.Sensitive.New(testenv.Credential, "suite-secret-"), env.Sensitive.New(testenv.Credential, "ticket-")
	envtesting.Must(t, env.Sim.AddSuite(simulator.Suite{SuiteKey: suiteKey, SuiteSecret: suiteSecret, SuiteTicket: ticket,
		AuthorizedCorps: []string{corpID}, TokenLifetime: simulator.Duration(lifetime)}))
	env.CreateSecret(t, ns, "isv", map[string]string{"suiteKey": suiteKey, "suiteSecret": suiteSecret, "suiteTicket": ticket})
	tok := testenv.NewToken(ns, "crm", v1alpha1.TokenTypeThirdPartyApp, "isv")
	tok.Spec.CorpID = corpID
	tok.Spec.RefreshBefore = &metav1.Duration{Duration: 2 * time.Minute} // clamped to half the lifetime
	env.Create(t, tok)
	env.WaitReady(t, ns, "crm")

	vol := &testenv.SecretVolume{Dir: filepath.Join(t.TempDir(), "dingtalk")}
	kubelet := playKubelet(t, env, ns, "crm", vol)
	g := NewWithT(t)
	g.Eventually(kubelet.versions).WithTimeout(10 * time.Second).Should(Equal(1))

	api, oapi, metrics := envtesting.FreeAddr(t), envtesting.FreeAddr(t), envtesting.FreeAddr(t)
	proxy := envtesting.StartProcess(t, "dingtalk-token-proxy", bin, "--token-dir="+vol.Dir,
		"--api-listen="+api, "--oapi-listen="+oapi, "--metrics-listen="+metrics,
		"--api-upstream="+env.Sim.URL(), "--oapi-upstream="+env.Sim.URL())
	g.Eventually(func() int { return status("http://" + metrics + "/readyz") }).WithTimeout(30 * time.Second).Should(Equal(200))

	env.Sim.ResetStats()
	c := startClients(t, "http://"+api, "http://"+oapi)
	g.Eventually(kubelet.versions).WithTimeout(time.Duration(refreshes+1)*lifetime).WithPolling(time.Second).
		Should(BeNumerically(">", refreshes), "the operator refreshed the token three times and the kubelet copied each")
	// Calls go on with the last token for a moment, then stop.
	g.Eventually(c.sent.Load).WithTimeout(10 * time.Second).Should(BeNumerically(">", c.sent.Load()+20))
	c.stop()

	t.Logf("%d requests through %d token versions (%d distinct tokens), %d failed", c.sent.Load(), kubelet.versions(), kubelet.tokens(), c.failed.Load())
	g.Expect(kubelet.tokens()).To(BeNumerically(">", refreshes), "every refresh gave a new token")
	g.Expect(c.failed.Load()).To(BeZero(), "failed requests: %s", c.firstFailure())
	stats := env.Sim.Stats().Endpoints
	var upstream int64
	for _, path := range []string{simulator.PathUserByUnionID, simulator.PathTopUserGet} {
		ep := stats[path]
		g.Expect(ep.Results).To(HaveLen(1), "every call on %s succeeded: %v", path, ep.Results)
		g.Expect(ep.Credentials).To(HaveKey(suiteKey), "the calls on %s carried tokens issued for the suite", path)
		upstream += ep.Results["success"]
	}
	g.Expect(upstream).To(Equal(c.sent.Load()), "each request reached the simulator once, with a valid token")

	exposition := get(t, "http://"+metrics+"/metrics")
	g.Expect(exposition).To(ContainSubstring(`dingtalk_token_proxy_requests_total{code="2xx",upstream="oapi"}`))
	g.Expect(proxy.Terminate(15 * time.Second)).To(Succeed())
	g.Expect(strings.Count(proxy.Output(), `"msg":"Loaded access token"`)).To(BeNumerically(">", refreshes))

	t.Run("LeakScan", func(t *testing.T) {
		env.ScanLeaks(t, logs.Bytes(), `"level":"debug"`)
		envtesting.ScanOutput(t, env.Sensitive, map[string][]byte{"proxy log": []byte(proxy.Output()), "proxy metrics": []byte(exposition)})
	})
}

// kubelet copies a Secret into a SecretVolume whenever its resourceVersion moves, as the kubelet
// updates a mounted Secret (here within a quarter of a second rather than a minute).
type kubelet struct {
	mu      sync.Mutex
	written int
	seen    map[string]bool // token values written
}

func (k *kubelet) versions() int { k.mu.Lock(); defer k.mu.Unlock(); return k.written }
func (k *kubelet) tokens() int   { k.mu.Lock(); defer k.mu.Unlock(); return len(k.seen) }

func playKubelet(t *testing.T, env *envtesting.Env, ns, name string, vol *testenv.SecretVolume) *kubelet {
	k := &kubelet{seen: map[string]bool{}}
	ctx, cancel := context.WithCancel(testenv.Quiet(context.Background()))
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		version := ""
		for ctx.Err() == nil {
			s := &corev1.Secret{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err == nil && s.ResourceVersion != version {
				env.Sensitive.AddSecret(s)
				if err := vol.Write(s.Data); err != nil {
					t.Errorf("writing the volume: %v", err)
					return
				}
				version = s.ResourceVersion
				k.mu.Lock()
				k.written++
				k.seen[string(s.Data[v1alpha1.DefaultTargetKey])] = true
				k.mu.Unlock()
			}
			_ = testenv.Sleep(ctx, 250*time.Millisecond)
		}
	}()
	return k
}

// clients call both families through the proxy, without a pause, until stopped.
type clients struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	first        string
	stop         func()
}

func (c *clients) firstFailure() string { c.mu.Lock(); defer c.mu.Unlock(); return c.first }

func startClients(t *testing.T, api, oapi string) *clients {
	c := &clients{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	calls := []func(context.Context) (int, string, error){
		func(ctx context.Context) (int, string, error) {
			return call(ctx, http.MethodGet, api+"/v1.0/contact/users/union1", "")
		},
		func(ctx context.Context) (int, string, error) {
			return call(ctx, http.MethodPost, oapi+simulator.PathTopUserGet, `{"userid":"manager1"}`)
		},
	}
	for _, f := range calls {
		wg.Go(func() {
			for ctx.Err() == nil {
				// A request once sent runs to its end (stop waits for it, bounded), so that every
				// request the simulator counts is counted here too.
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				status, body, err := f(rctx)
				rcancel()
				c.sent.Add(1)
				if err != nil || status != 200 || strings.Contains(body, `"errcode":`) && !strings.Contains(body, `"errcode":0`) {
					c.failed.Add(1)
					c.mu.Lock()
					if c.first == "" {
						c.first = fmt.Sprintf("HTTP %d %.200s %v", status, body, err)
					}
					c.mu.Unlock()
				}
				_ = testenv.Sleep(ctx, 50*time.Millisecond)
			}
		})
	}
	c.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(c.stop)
	return c
}

func call(ctx context.Context, method, url, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	var ans map[string]any
	if err == nil && json.Unmarshal(b, &ans) != nil {
		err = fmt.Errorf("not JSON")
	}
	return resp.StatusCode, string(b), err
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func get(t *testing.T, url string) string {
	resp, err := http.Get(url)
	envtesting.Must(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	envtesting.Must(t, err)
	return string(b)
}
