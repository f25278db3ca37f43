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

package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// managerProcess is the manager binary running as a child process.
type managerProcess struct {
	name        string
	cmd         *exec.Cmd
	out         *testutil.SyncBuffer
	done        chan struct{}
	err         error // the exit error, once done is closed
	metricsAddr string
	probeAddr   string
}

// startManager runs the manager binary with --kubeconfig and args. The test's cleanup kills it
// and, when the test failed, prints the end of its log.
func startManager(t *testing.T, name, kubeconfig string, args ...string) *managerProcess {
	t.Helper()
	p := &managerProcess{name: name, out: &testutil.SyncBuffer{}, done: make(chan struct{})}
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--metrics-bind-address="); ok {
			p.metricsAddr = v
		}
		if v, ok := strings.CutPrefix(a, "--health-probe-bind-address="); ok {
			p.probeAddr = v
		}
	}
	p.cmd = exec.Command(managerBin, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting manager %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- end of manager %s's log ---\n%s", name, p.out.Tail(80))
		}
	})
	return p
}

// logged says whether the process wrote s (in any case).
func (p *managerProcess) logged(s string) bool {
	return strings.Contains(strings.ToLower(p.out.String()), strings.ToLower(s))
}

func (p *managerProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends the process at once (SIGKILL), like a node failure.
func (p *managerProcess) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// terminate sends SIGTERM, like the kubelet on a rollout, and waits at most timeout.
func (p *managerProcess) terminate(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("manager %s still running %s after SIGTERM", p.name, timeout)
	}
}

// freeAddr returns a 127.0.0.1 address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var insecureHTTP = &http.Client{
	Timeout: 5 * time.Second,
	// The metrics server's certificate is self-signed; what is under test is who may read.
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec
}

// get fetches url with an optional bearer token and returns the status and body.
func get(url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := insecureHTTP.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// scrape reads the metrics endpoint of p with token and parses the exposition.
func scrape(p *managerProcess, token string) (map[string]*dto.MetricFamily, error) {
	code, body, err := get("https://"+p.metricsAddr+"/metrics", token)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(strings.NewReader(body))
}

// sample returns the value of the series of family name whose labels include want.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// value is sample's value, or -1 when the series is missing (no metric here is negative).
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	v, ok := sample(fams, name, want)
	if !ok {
		return -1
	}
	return v
}

// total sums the counter or gauge values of every series of family name whose labels include want.
func total(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	sum := 0.0
	for _, m := range fams[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if match {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
