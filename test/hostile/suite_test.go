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

// Package hostile attacks the operator as a hostile tenant (any namespace editor) and a flaky
// control plane would, and measures what each attack costs: the manager binary runs as a process
// (built without the race detector, as it ships, so that its memory is what a cluster sees)
// against an envtest control plane and the DingTalk simulator behind a recorder of every call (testenv.CallRecorder).
// Each test logs its figures ("measured: ...") before it asserts the bound docs/security.md
// states, so the same tests measure a build without the bounds.
package hostile

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

var (
	env *envtesting.Env
	// managerBin is the manager binary built from ./cmd, without the race detector.
	managerBin string
	// dingtalk records every call the managers make to the simulator.
	dingtalk *testenv.CallRecorder
	// adminKubeconfig authenticates as a cluster administrator (made once: envtest's AddUser is
	// not safe for concurrent use).
	adminKubeconfig string
)

func TestMain(m *testing.M) {
	var stopRecorder func()
	code := envtesting.Main(m, testenv.Options{
		Simulator: &simulator.Config{},
		Build:     []testenv.Binary{{Package: "./cmd", Out: "manager"}},
	}, func(e *envtesting.Env, dir string) error {
		env = e
		managerBin = filepath.Join(dir, "manager")
		var err error
		if dingtalk, err = testenv.StartCallRecorder(e.Sim.URL()); err != nil {
			return err
		}
		stopRecorder = dingtalk.Close
		adminKubeconfig = filepath.Join(dir, "admin.kubeconfig")
		return e.AdminKubeconfig(adminKubeconfig, "hostile-admin")
	})
	if stopRecorder != nil {
		stopRecorder()
	}
	os.Exit(code)
}

// manager runs the manager binary for namespaces (its caches and reconciles see nothing else),
// as a cluster admin, against the recorder; extra flags are appended. It returns once /readyz
// answers (the caches synced).
func manager(t *testing.T, name, kubeconfig string, namespaces []string, extra ...string) *testenv.Process {
	t.Helper()
	if kubeconfig == "" {
		kubeconfig = adminKubeconfig
	}
	probe := envtesting.FreeAddr(t)
	args := append([]string{
		"--kubeconfig=" + kubeconfig,
		"--dingtalk-endpoint=" + dingtalk.URL(),
		"--watch-namespaces=" + strings.Join(namespaces, ","),
		"--metrics-bind-address=0",
		"--health-probe-bind-address=" + probe,
	}, extra...)
	p := envtesting.StartProcess(t, name, managerBin, args...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + probe + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("%s never became ready:\n%s", name, p.Tail(40))
		}
		time.Sleep(100 * time.Millisecond) // polling a port: nothing to wait on
	}
}

// rssKiB is a process's resident set size (VmRSS), in KiB.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := readRSS(pid)
	if err != nil {
		t.Fatalf("reading the manager's RSS: %v", err)
	}
	return n
}

func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc/<pid>/status")
}

const mib = 1024 // KiB in a MiB

// killAtKiB is the RSS at which peakRSS kills a manager: a build without the bounds would
// otherwise take the machine's memory (the template needs terabytes).
const killAtKiB = 512 * mib

// peakRSS samples a process's RSS every 100ms while during runs, and returns the highest; a
// process over killAtKiB is killed there (SIGKILL). It logs what it measured (what, the RSS
// before, the peak) however during ends, a failed assertion included.
func peakRSS(t *testing.T, pid int, what string, during func()) int64 {
	t.Helper()
	base := rssKiB(t, pid)
	stop := make(chan struct{})
	peak := make(chan int64, 1)
	start := time.Now()
	var peakAfter time.Duration // when the peak was sampled, from start (read after peak is received)
	go func() {
		var most int64
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			n, err := readRSS(pid)
			if err != nil { // the process is gone
				peak <- most
				return
			}
			if n > most {
				most, peakAfter = n, time.Since(start)
			}
			if n > killAtKiB {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			select {
			case <-stop:
				peak <- most
				return
			case <-tick.C:
			}
		}
	}()
	var most int64
	defer func() {
		if most == 0 { // during ended the test
			close(stop)
			most = <-peak
		}
		note := ""
		if most > killAtKiB {
			note = " (killed there)"
		}
		measured(t, "%s: manager RSS %d MiB before, peak %d MiB (+%d MiB) %s after the attack began%s",
			what, base/mib, most/mib, (most-base)/mib, peakAfter.Round(100*time.Millisecond), note)
	}()
	during()
	close(stop)
	most = <-peak
	return most - base
}

// larger counts the calls, with any credential, whose request body is over n bytes.
func larger(calls []testenv.Call, n int) int {
	out := 0
	for _, c := range calls {
		if c.Size > n {
			out++
		}
	}
	return out
}

// minGap is the shortest interval between two consecutive calls (0 with fewer than two).
func minGap(ts []time.Time) time.Duration {
	var gap time.Duration
	for i := 1; i < len(ts); i++ {
		if d := ts[i].Sub(ts[i-1]); gap == 0 || d < gap {
			gap = d
		}
	}
	return gap
}

// measured logs a figure in a form the closing note and docs/security.md quote.
func measured(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("measured: "+format, args...)
}
