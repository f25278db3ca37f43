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
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on Linux).
const clockTicks = 100

// manager is the manager binary running as a child process (testenv.Process).
type manager struct {
	*testenv.Process
	started     time.Time
	metricsAddr string
	pprofAddr   string // Go's profiles (and the live heap after a forced GC), on loopback
	logPath     string
	// maxRSS is the most RSS (KiB) seen by sampling it every rssPoll: VmHWM alone can miss a peak
	// (the kernel records it when memory is unmapped, not when the Go runtime returns pages with
	// madvise, so VmHWM may even read lower later).
	maxRSS atomic.Int64
}

// rssPoll is how often a manager's RSS is sampled for its peak.
const rssPoll = 250 * time.Millisecond

// startManager runs the manager binary against the simulator with plain-HTTP metrics on a free
// loopback port (--metrics-secure=false: the bench scrapes them), no leader election and Go's
// profiles on another loopback port (the live heap is read there). Every other flag keeps its
// default unless extra sets it. env is added to its environment (GOMEMLIMIT). Its log goes to
// logPath.
func startManager(bin, kubeconfig, endpoint, logPath string, env, extra []string) (*manager, error) {
	metricsAddr, err := testenv.FreeAddr()
	if err != nil {
		return nil, err
	}
	probeAddr, err := testenv.FreeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--dingtalk-endpoint=" + endpoint,
		"--metrics-bind-address=" + metricsAddr,
		"--metrics-secure=false",
		"--health-probe-bind-address=" + probeAddr,
		"--leader-elect=false",
	}
	m := &manager{started: time.Now(), metricsAddr: metricsAddr, logPath: logPath}
	if m.pprofAddr, err = testenv.FreeAddr(); err != nil {
		return nil, err
	}
	args = append(args, "--pprof-bind-address="+m.pprofAddr)
	if m.Process, err = testenv.StartProcessEnv("manager", bin, logPath, env, append(args, extra...)...); err != nil {
		return nil, err
	}
	go func() {
		for !m.Exited() {
			_, _ = m.memoryKiB()
			time.Sleep(rssPoll)
		}
	}()
	return m, nil
}

// memory is the manager's resident memory (KiB) from /proc/<pid>/status: the total, and its
// anonymous (heap, stacks) and file-backed (the binary's pages) parts; hwm is the most it was
// resident so far (VmHWM, or the most RSS sampled every rssPoll when more: the peak an OOM kill
// would have seen).
type memory struct {
	rss, anon, file, hwm int64
}

// memoryKiB reads VmRSS, RssAnon, RssFile and VmHWM.
func (m *manager) memoryKiB() (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.Pid()))
	if err != nil {
		return memory{}, err
	}
	defer func() { _ = f.Close() }()
	var out memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			out.rss = n
		case "RssAnon":
			out.anon = n
		case "RssFile":
			out.file = n
		case "VmHWM":
			out.hwm = n
		}
	}
	if out.rss == 0 {
		return out, fmt.Errorf("no VmRSS in /proc/%d/status", m.Pid())
	}
	out.hwm = max(out.hwm, raise(&m.maxRSS, out.rss))
	return out, sc.Err()
}

// cpuSeconds is the CPU time the process used so far (user and system, /proc/<pid>/stat).
func (m *manager) cpuSeconds() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.Pid()))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces), from the last ')': state is field 3,
	// utime field 14, stime field 15.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", m.Pid())
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unreadable /proc/%d/stat", m.Pid())
	}
	return float64(utime+stime) / clockTicks, nil
}

// scrape reads the manager's metrics.
func (m *manager) scrape() (testenv.Metrics, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return testenv.Scrape(ctx, http.DefaultClient, "http://"+m.metricsAddr+"/metrics", "")
}

// prometheusAccept is the Accept header of Prometheus' scrapes (the text format; promhttp gzips
// the answer, as Go's client asks).
const prometheusAccept = "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"

// scrapeEvery scrapes the metrics every interval, as Prometheus does through the chart's
// ServiceMonitor, until the process exits: a scrape's memory is part of the manager's.
func (m *manager) scrapeEvery(interval time.Duration) {
	for {
		time.Sleep(interval)
		if m.Exited() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.metricsAddr+"/metrics", nil)
		if err == nil {
			req.Header.Set("Accept", prometheusAccept)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}
		cancel()
	}
}

// scrapeCost is what one scrape of the metrics (the text exposition, gzipped as Prometheus asks
// for it) returned and took, and the manager's memory right before and after it.
type scrapeCost struct {
	bytes         int64
	took          time.Duration
	before, after memory
}

// scrapeCost scrapes the metrics once and measures it (zero when the scrape failed).
func (m *manager) scrapeCost(ctx context.Context) scrapeCost {
	var c scrapeCost
	c.before, _ = m.memoryKiB()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.metricsAddr+"/metrics", nil)
	if err != nil {
		return scrapeCost{}
	}
	req.Header.Set("Accept", prometheusAccept)
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return scrapeCost{}
	}
	defer func() { _ = resp.Body.Close() }()
	if c.bytes, err = io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		return scrapeCost{}
	}
	c.took = time.Since(t0)
	c.after, _ = m.memoryKiB()
	return c
}

// readyTokens scrapes the manager's metrics and counts the tokens it reports Ready:
// dingtalk_token_ready_status{condition="True"} == 1. A new process reports a token only once it
// has reconciled it, so this is readiness as that process sees it.
func (m *manager) readyTokens() (int, error) {
	fams, err := m.scrape()
	if err != nil {
		return 0, err
	}
	return fams.Count("dingtalk_token_ready_status", map[string]string{"condition": "True"}, 1), nil
}

// gauge scrapes the manager's metrics for an unlabelled sample, e.g. go_gc_heap_live_bytes
// (controller-runtime registers the Go runtime's collector).
func (m *manager) gauge(name string) (float64, error) {
	fams, err := m.scrape()
	if err != nil {
		return 0, err
	}
	v, ok := fams.Sample(name, nil)
	if !ok {
		return 0, fmt.Errorf("no %s in the metrics", name)
	}
	return v, nil
}

// apiRequests is the number of requests the manager made to the API server so far
// (client-go's rest_client_requests_total, every code and method); a scrape failing three
// times (a loaded machine) is an error.
func (m *manager) apiRequests() (float64, error) {
	var err error
	for range 3 {
		var fams testenv.Metrics
		if fams, err = m.scrape(); err == nil {
			return fams.Total("rest_client_requests_total", nil), nil
		}
	}
	return 0, err
}

// liveHeap is the manager's live Go heap in bytes: the heap in use right after a garbage
// collection it is asked to run (runtime.MemStats' HeapAlloc in the text heap profile, read with
// ?gc=1). go_gc_heap_live_bytes, as of the last collection, counts what a scrape of the metrics had
// in flight when that collection ran (about 4 KiB per token), so it is not read.
func (m *manager) liveHeap(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.pprofAddr+"/debug/pprof/heap?gc=1&debug=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no HeapAlloc in the heap profile (HTTP %d)", resp.StatusCode)
}

// profile writes the manager's pprof profile kind (e.g. "heap?gc=1", "profile?seconds=30") to
// dir/name; nothing when dir is empty.
func (m *manager) profile(ctx context.Context, dir, name, kind string) error {
	if dir == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.pprofAddr+"/debug/pprof/"+kind, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: HTTP %d", kind, resp.StatusCode)
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	logf("  wrote the profile %s", filepath.Join(dir, name))
	return f.Close()
}

// controlPlaneCPU is the CPU time (seconds) used so far by this process's children named
// kube-apiserver and etcd: the envtest control plane.
func controlPlaneCPU() float64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := strconv.Itoa(os.Getpid())
	var total float64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		name, fields := s[open+1:closing], strings.Fields(s[closing+1:])
		if (name != "kube-apiserver" && name != "etcd") || len(fields) < 13 || fields[1] != self {
			continue
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		total += float64(utime+stime) / clockTicks
	}
	return total
}

// machineBusy is the CPU time (seconds, all CPUs) the machine spent busy so far (/proc/stat).
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return float64(busy) / clockTicks
}

// raise makes v at least n and returns it.
func raise(v *atomic.Int64, n int64) int64 {
	for {
		seen := v.Load()
		if n <= seen || v.CompareAndSwap(seen, n) {
			return max(seen, n)
		}
	}
}
