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
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// manager is the manager binary running as a child process.
type manager struct {
	cmd         *exec.Cmd
	done        chan struct{}
	started     time.Time
	metricsAddr string
	logPath     string
}

// startManager runs the manager binary against the simulator with plain-HTTP metrics on a free
// loopback port (--metrics-secure=false: the bench scrapes them) and no leader election. Every
// other flag keeps its default unless extra sets it. Its log goes to logPath.
func startManager(bin, kubeconfig, endpoint, logPath string, extra []string) (*manager, error) {
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	probeAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
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
	m := &manager{cmd: exec.Command(bin, args...), done: make(chan struct{}), metricsAddr: metricsAddr, logPath: logPath}
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	go func() {
		_ = m.cmd.Wait()
		_ = logFile.Close()
		close(m.done)
	}()
	return m, nil
}

// kill sends SIGKILL and waits until the process is gone.
func (m *manager) kill() {
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
}

// exited reports whether the process ended.
func (m *manager) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// rssKiB reads VmRSS from /proc/<pid>/status.
func (m *manager) rssKiB() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
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

// readyTokens scrapes the manager's metrics and counts the DingTalkTokens it reports Ready:
// dingtalk_token_ready_status{condition="True"} == 1. A new process reports a token only once it
// has reconciled it, so this is readiness as that process sees it.
func (m *manager) readyTokens() (int, error) {
	resp, err := http.Get("http://" + m.metricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0, fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	n := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "dingtalk_token_ready_status{") && strings.Contains(line, `condition="True"`) &&
			strings.HasSuffix(line, " 1") {
			n++
		}
	}
	return n, sc.Err()
}

// gauge scrapes the manager's metrics for an unlabelled sample, e.g. go_memstats_heap_inuse_bytes
// (controller-runtime registers the Go runtime's collector).
func (m *manager) gauge(name string) (float64, error) {
	resp, err := http.Get("http://" + m.metricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in the metrics", name)
}

// freeAddr returns a free loopback address.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}
