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
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// proxyParams are the dingtalk-token-proxy phase's flags.
type proxyParams struct {
	enabled     bool
	only        bool
	rate        int           // requests per second of the fixed-rate runs
	duration    time.Duration // of each run
	concurrency int           // clients of the saturation runs
	args        string        // more flags of the proxy, space-separated
	env         string        // more environment of the proxy, KEY=value space-separated
}

func defaultProxyParams() proxyParams {
	return proxyParams{enabled: true, rate: 1000, duration: 10 * time.Second, concurrency: 16}
}

func (pp *proxyParams) register(fs *flag.FlagSet) {
	fs.BoolVar(&pp.enabled, "proxy", pp.enabled, "measure dingtalk-token-proxy: added latency at --proxy-rate and at saturation, requests/s, RSS")
	fs.BoolVar(&pp.only, "proxy-only", false, "run the dingtalk-token-proxy phase alone (no control plane, no manager)")
	fs.IntVar(&pp.rate, "proxy-rate", pp.rate, "requests per second of the proxy's fixed-rate runs")
	fs.DurationVar(&pp.duration, "proxy-duration", pp.duration, "length of each proxy run (direct and through the proxy, fixed rate and saturation)")
	fs.IntVar(&pp.concurrency, "proxy-concurrency", pp.concurrency, "concurrent clients of the proxy's saturation runs")
	fs.StringVar(&pp.args, "proxy-args", "", "more dingtalk-token-proxy flags, space-separated (e.g. --log-requests=false)")
	fs.StringVar(&pp.env, "proxy-env", "", "more environment of dingtalk-token-proxy, KEY=value space-separated (e.g. GOMAXPROCS=1)")
}

// proxyRun is one load run against one target.
type proxyRun struct {
	sent, failed int64
	span         time.Duration
	p50, p99     time.Duration
}

func (r proxyRun) perSecond() float64 { return float64(r.sent-r.failed) / r.span.Seconds() }

// proxyResult holds the proxy phase's figures.
type proxyResult struct {
	p                          proxyParams
	rateDirect, rateProxy      proxyRun // at the fixed rate
	satDirect, satProxy        proxyRun // at saturation
	rssIdle, rssLoad, rssPeak  int64    // KiB: after start, the most seen under load, VmHWM at the end
	cpuSat                     float64  // the proxy's CPU seconds over its saturation run
	upstreamCalls, proxiedOnly int64    // the simulator's successful calls; those through the proxy
}

// runProxy measures dingtalk-token-proxy as a process on loopback, in front of the simulator
// (in this process): the same call (an app token on GET /v1.0/contact/users/<unionId>) made
// directly and through the proxy, first at a fixed rate (open loop: latency counts from when a
// request was due, so a stall is not hidden), then by --proxy-concurrency clients as fast as they
// can; and the proxy's RSS.
func (b *bench) runProxy(ctx context.Context) (proxyResult, error) {
	r := proxyResult{p: b.p.proxy}
	bin := filepath.Join(b.dir, "dingtalk-token-proxy")
	logf("Building dingtalk-token-proxy")
	// As a release builds it (the binary's pages are most of its RSS).
	if err := buildBinary(b.p.root, b.p.rev, "./cmd/dingtalk-token-proxy", bin, releaseFlags...); err != nil {
		return r, err
	}
	secret := "bench-secret-" + testutil.RandHex(8)
	sim, err := simulator.Start(simulator.Config{Apps: []simulator.App{{AppKey: "benchproxy", AppSecret: secret}}}, clock.RealClock{})
	if err != nil {
		return r, err
	}
	defer func() { _ = sim.Close() }()
	dt, err := dingtalk.New(dingtalk.Options{BaseURL: sim.URL()})
	if err != nil {
		return r, err
	}
	tok, err := dt.AppAccessToken(ctx, dingtalk.AppCredentials{AppKey: "benchproxy", AppSecret: secret})
	if err != nil {
		return r, err
	}
	token := tok.AccessToken
	vol := &testenv.SecretVolume{Dir: filepath.Join(b.dir, "proxy-token")}
	if err := vol.WriteStrings(map[string]string{"accessToken": token, "expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}); err != nil {
		return r, err
	}
	api, metrics := mustFreeAddr(), mustFreeAddr()
	args := append([]string{"--token-dir=" + vol.Dir, "--api-listen=" + api, "--oapi-listen=" + mustFreeAddr(),
		"--metrics-listen=" + metrics, "--api-upstream=" + sim.URL(), "--oapi-upstream=" + sim.URL()}, strings.Fields(b.p.proxy.args)...)
	proc, err := testenv.StartProcessEnv("dingtalk-token-proxy", bin, filepath.Join(b.dir, "proxy.log"), strings.Fields(b.p.proxy.env), args...)
	if err != nil {
		return r, err
	}
	defer proc.Kill()
	pm := &manager{Process: proc}
	if err := waitFor(ctx, 30*time.Second, func() bool { status, _, _ := testenv.Get("http://"+metrics+"/readyz", ""); return status == 200 }); err != nil {
		return r, fmt.Errorf("the proxy did not become ready: %w\n%s", err, proc.Tail(20))
	}
	mem, _ := pm.memoryKiB()
	r.rssIdle = mem.rss

	direct := target{url: sim.URL() + "/v1.0/contact/users/union1", header: http.Header{"X-Acs-Dingtalk-Access-Token": {token}}}
	proxied := target{url: "http://" + api + "/v1.0/contact/users/union1"}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 512, DisableCompression: true}, Timeout: 10 * time.Second}
	for _, t := range []target{direct, proxied} { // warm connections and code paths
		if run := loadFixed(ctx, client, t, b.p.proxy.rate, time.Second/2); run.failed > 0 {
			return r, fmt.Errorf("warm-up against %s: %d of %d requests failed", t.url, run.failed, run.sent)
		}
	}
	sim.ResetStats()
	peak := samplePeak(ctx, pm)
	logf("Proxy: %d requests/s for %s, direct then through the proxy", b.p.proxy.rate, b.p.proxy.duration)
	r.rateDirect = loadFixed(ctx, client, direct, b.p.proxy.rate, b.p.proxy.duration)
	r.rateProxy = loadFixed(ctx, client, proxied, b.p.proxy.rate, b.p.proxy.duration)
	logf("Proxy: %d clients as fast as they can for %s, direct then through the proxy", b.p.proxy.concurrency, b.p.proxy.duration)
	r.satDirect = loadSaturated(ctx, client, direct, b.p.proxy.concurrency, b.p.proxy.duration)
	cpu0, _ := pm.cpuSeconds()
	r.satProxy = loadSaturated(ctx, client, proxied, b.p.proxy.concurrency, b.p.proxy.duration)
	cpu1, _ := pm.cpuSeconds()
	r.cpuSat = cpu1 - cpu0
	r.rssLoad = peak()
	end, _ := pm.memoryKiB()
	r.rssPeak = end.hwm
	st := sim.Stats().Endpoints[simulator.PathUserByUnionID]
	r.upstreamCalls = st.Results["success"]
	r.proxiedOnly = r.upstreamCalls - (r.rateDirect.sent - r.rateDirect.failed) - (r.satDirect.sent - r.satDirect.failed)
	if err := proc.Terminate(15 * time.Second); err != nil {
		return r, fmt.Errorf("stopping the proxy: %w", err)
	}
	return r, nil
}

// target is what a load run calls.
type target struct {
	url    string
	header http.Header
}

func (t target) call(ctx context.Context, c *http.Client) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return false
	}
	for k, v := range t.header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// loadFixed sends rate requests per second for d, open loop: request i is due at start + i/rate
// and its latency runs from then, whoever was late.
func loadFixed(ctx context.Context, c *http.Client, t target, rate int, d time.Duration) proxyRun {
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	due := make(chan time.Time, 1024)
	lat := make([]time.Duration, n)
	var failed atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for at := range due {
				ok := t.call(ctx, c)
				i := next.Add(1) - 1
				lat[i] = time.Since(at)
				if !ok {
					failed.Add(1)
				}
			}
		})
	}
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		due <- at
	}
	close(due)
	wg.Wait()
	return summarize(lat, int64(n), failed.Load(), time.Since(start))
}

// loadSaturated runs clients that each send the next request as soon as the last is answered.
func loadSaturated(ctx context.Context, c *http.Client, t target, clients int, d time.Duration) proxyRun {
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				if !t.call(ctx, c) {
					failed.Add(1)
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return summarize(lat, int64(len(lat)), failed.Load(), time.Since(start))
}

func summarize(lat []time.Duration, sent, failed int64, span time.Duration) proxyRun {
	slices.Sort(lat)
	return proxyRun{sent: sent, failed: failed, span: span, p50: percentile(lat, 50), p99: percentile(lat, 99)}
}

// samplePeak samples the process's RSS every 200 ms until the returned function is called, which
// returns the largest sample (KiB).
func samplePeak(ctx context.Context, m *manager) func() int64 {
	ctx, cancel := context.WithCancel(ctx)
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if mem, err := m.memoryKiB(); err == nil && mem.rss > peak.Load() {
				peak.Store(mem.rss)
			}
			_ = sleep(ctx, 200*time.Millisecond)
		}
	}()
	return func() int64 { cancel(); <-done; return peak.Load() }
}

func proxyArgs(args, env string) string {
	if args+env == "" {
		return "no other flag"
	}
	return strings.TrimSpace("with " + env + " " + args)
}

func mustFreeAddr() string {
	a, err := testenv.FreeAddr()
	if err != nil {
		panic(err)
	}
	return a
}

// proxyTable reports the proxy phase.
func (b *bench) proxyTable(w func(string, ...any)) {
	r := b.proxy
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000) }
	added := func(a, d time.Duration) string { return fmt.Sprintf("%+.3f ms", float64((a-d).Microseconds())/1000) }
	w("## dingtalk-token-proxy")
	w("")
	w("The same call (`GET /v1.0/contact/users/<unionId>` with an app token, on the simulator) made directly and")
	w("through the proxy binary, on loopback. Goals: p99 added at most 1 ms at 1,000 requests/s; RSS at most 20 MiB.")
	w("")
	w("| measure | direct | through the proxy | added | goal |")
	w("|---|---|---|---|---|")
	w("| p50 at %d requests/s | %s | %s | %s | |", r.p.rate, ms(r.rateDirect.p50), ms(r.rateProxy.p50), added(r.rateProxy.p50, r.rateDirect.p50))
	w("| p99 at %d requests/s | %s | %s | %s | %s |", r.p.rate, ms(r.rateDirect.p99), ms(r.rateProxy.p99), added(r.rateProxy.p99, r.rateDirect.p99),
		verdict(r.p.rate < 1000 || r.rateProxy.p99-r.rateDirect.p99 <= time.Millisecond))
	w("| requests/s at saturation (%d clients) | %.0f | %.0f | x%.2f | |", r.p.concurrency, r.satDirect.perSecond(), r.satProxy.perSecond(),
		ratio(r.satProxy.perSecond(), r.satDirect.perSecond()))
	w("| p50 / p99 at saturation | %s / %s | %s / %s | %s / %s | |", ms(r.satDirect.p50), ms(r.satDirect.p99), ms(r.satProxy.p50), ms(r.satProxy.p99),
		added(r.satProxy.p50, r.satDirect.p50), added(r.satProxy.p99, r.satDirect.p99))
	w("| failed requests | %d of %d | %d of %d | | |", r.rateDirect.failed+r.satDirect.failed, r.rateDirect.sent+r.satDirect.sent,
		r.rateProxy.failed+r.satProxy.failed, r.rateProxy.sent+r.satProxy.sent)
	w("| proxy RSS: ready, most under load, peak (VmHWM) | | %s, %s, %s | | %s |", mib(r.rssIdle), mib(r.rssLoad), mib(r.rssPeak), verdict(r.rssPeak <= 20*1024))
	w("| proxy CPU per 1,000 requests at saturation | | %.0f ms | | |", 1e6*r.cpuSat/max(float64(r.satProxy.sent), 1))
	w("")
	w("Added latency is the difference of the percentiles, not a percentile of differences. The load generator and the")
	w("simulator run in the bench's process, the proxy in its own, with its flag defaults but for its listeners and upstreams")
	w("(%s; by default it logs a line per request, here to a file).", proxyArgs(r.p.args, r.p.env))
	w("Fixed rate: %d requests/s for %s each, open loop (64 workers; a request's latency runs from when it was due).", r.p.rate, r.p.duration)
	w("Saturation: %d clients, each sending its next request when the last is answered, for %s. The simulator answered", r.p.concurrency, r.p.duration)
	w("%d calls with success, %d of them through the proxy.", r.upstreamCalls, r.proxiedOnly)
	w("")
}
