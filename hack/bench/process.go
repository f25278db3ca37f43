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
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// manager is the manager binary running as a child process (testenv.Process).
type manager struct {
	*testenv.Process
	started     time.Time
	metricsAddr string
	logPath     string
}

// startManager runs the manager binary against the simulator with plain-HTTP metrics on a free
// loopback port (--metrics-secure=false: the bench scrapes them) and no leader election. Every
// other flag keeps its default unless extra sets it. Its log goes to logPath.
func startManager(bin, kubeconfig, endpoint, logPath string, extra []string) (*manager, error) {
	metricsAddr, err := testenv.FreeAddr()
	if err != nil {
		return nil, err
	}
	probeAddr, err := testenv.FreeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--kubeconfig=" + kubeconfig,
		"--dingtalk-endpoint=" + endpoint,
		"--metrics-bind-address=" + metricsAddr,
		"--metrics-secure=false",
		"--health-probe-bind-address=" + probeAddr,
		"--leader-elect=false",
	}, extra...)
	m := &manager{started: time.Now(), metricsAddr: metricsAddr, logPath: logPath}
	if m.Process, err = testenv.StartProcess("manager", bin, logPath, args...); err != nil {
		return nil, err
	}
	return m, nil
}

// rssKiB reads VmRSS from /proc/<pid>/status.
func (m *manager) rssKiB() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.Pid()))
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc/<pid>/status")
}

// scrape reads the manager's metrics.
func (m *manager) scrape() (testenv.Metrics, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return testenv.Scrape(ctx, http.DefaultClient, "http://"+m.metricsAddr+"/metrics", "")
}

// readyTokens scrapes the manager's metrics and counts the DingTalkTokens it reports Ready:
// dingtalk_token_ready_status{condition="True"} == 1. A new process reports a token only once it
// has reconciled it, so this is readiness as that process sees it.
func (m *manager) readyTokens() (int, error) {
	fams, err := m.scrape()
	if err != nil {
		return 0, err
	}
	return fams.Count("dingtalk_token_ready_status", map[string]string{"condition": "True"}, 1), nil
}

// gauge scrapes the manager's metrics for an unlabelled sample, e.g. go_memstats_heap_inuse_bytes
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
