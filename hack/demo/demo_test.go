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
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// TestDemo runs `make demo`'s entry point end to end, as a newcomer would, with 30-second tokens
// so that the live refresh comes within about 20 seconds: a Secret appears, is refreshed, and
// the output never shows a token.
func TestDemo(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set: run `make test` (or `make envtest` and set it)")
	}
	dir := t.TempDir()
	var out bytes.Buffer
	d, err := newDemo([]string{
		"--exit-after-refresh", "--token-lifetime=30s", "--timeout=2m",
		"--kubeconfig-out=" + filepath.Join(dir, "demo.kubeconfig"),
		"--log-file=" + filepath.Join(dir, "operator.log"),
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	defer d.cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := d.run(ctx); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "operator.log"))
		t.Fatalf("demo failed: %v\n--- output ---\n%s\n--- operator log (end) ---\n%s", err, out.String(), tail(string(log), 40))
	}
	t.Logf("time to the first Ready Secret: %s after applying the samples, %s after the start",
		d.result.FirstReadyAfterApply.Round(time.Millisecond), d.result.FirstReadyAfterStart.Round(time.Millisecond))

	r := d.result
	if r.FirstReadyAfterApply <= 0 || r.Refreshed == "" || r.ExpiresAfter <= r.ExpiresBefore {
		t.Errorf("result = %+v: want a Ready Secret, then a refresh moving expiresAt on", r)
	}
	// DingTalk Stream mode: the ThirdPartyApp isv-stream, whose credentials Secret holds no
	// suiteTicket, is Ready after the first push; the second push is picked up with no call.
	if !slices.Equal(r.StreamTokens, []string{"isv-stream"}) || r.StreamReadyAfterPush <= 0 || !r.TicketPickedUp || r.CallsForSecondPush != 0 {
		t.Errorf("Stream mode: tokens %v Ready %s after the push, second ticket picked up %v with %d calls; "+
			"want isv-stream Ready, the ticket picked up with no call", r.StreamTokens, r.StreamReadyAfterPush, r.TicketPickedUp, r.CallsForSecondPush)
	}
	t.Logf("Stream mode: isv-stream Ready %s after the first push", r.StreamReadyAfterPush.Round(time.Millisecond))
	for _, want := range []string{"demo/crm-bot-token", "demo/suite", "demo/suite-corp1", "demo/alice", "demo/alice-refresh-token",
		"demo/isv-stream", "demo/isv-stream-suite-ticket"} {
		if !slices.Contains(r.Secrets, want) {
			t.Errorf("the demo did not show Secret %s (showed %v)", want, r.Secrets)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "demo.kubeconfig")); err != nil {
		t.Errorf("no kubeconfig written: %v", err)
	}
	// The ClusterDingTalkToken of config/samples/cluster: its token in both namespaces it
	// selects, for at most one DingTalk call (it shares demo/crm-bot's credentials).
	slices.Sort(r.ClusterSecrets)
	if !slices.Equal(r.ClusterSecrets, []string{"billing/crm-bot-token", "crm/crm-bot-token"}) || r.ClusterCalls > 1 {
		t.Errorf("fan-out: Secrets %v with %d DingTalk calls; want crm-bot-token in billing and crm, at most 1 call", r.ClusterSecrets, r.ClusterCalls)
	}

	text := out.String()
	for _, want := range []string{"[1/9]", "[6/9]", "[7/9]", "[8/9] dingtalk-token-proxy", "[9/9]", "isv-stream: DingTalk Stream connection True (Connected)",
		"Pushed another ticket, picked up at once", "NAME", "READY", "EXPIRES", "REFRESH", "<masked", "Refreshed demo/",
		"NAMESPACES", "2/2", "Every selected namespace holds the token", "Time to the first Ready Secret",
		"neither request carried a token", "The proxy picked up the new token with no restart"} {
		if !strings.Contains(text, want) {
			t.Errorf("the output lacks %q", want)
		}
	}

	// dingtalk-token-proxy: a call before the refresh of its token and one after, both answered
	// success, with the token the refresh brought.
	if !r.ProxyBefore.ok() || !r.ProxyAfter.ok() || r.ProxyAfter.Expires <= r.ProxyBefore.Expires {
		t.Errorf("through the proxy: before %+v, after %+v; want both answered success, the second with the refreshed token", r.ProxyBefore, r.ProxyAfter)
	}

	// No credential, token or ticket shows in the output, the operator's log, events, statuses
	// or metrics: the leak scanner over the demo's output and its operator's log. Values of the
	// Secrets the operator wrote are added by the scan.
	values := &testenv.Sensitive{}
	simCfg, err := simulator.LoadConfig(filepath.Join("..", "..", "config", "simulator", "credentials.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range simCfg.Apps {
		values.Add(testenv.Credential, a.AppSecret)
	}
	for _, s := range simCfg.Suites {
		values.Add(testenv.Credential, s.SuiteSecret, s.SuiteTicket)
	}
	for _, u := range simCfg.Users {
		values.Add(testenv.Credential, u.ClientSecret)
		values.Add(testenv.Credential, u.RefreshTokens...)
		values.Add(testenv.Credential, u.AuthCodes...)
	}
	log, err := os.ReadFile(filepath.Join(dir, "operator.log"))
	if err != nil {
		t.Fatal(err)
	}
	proxyLog, err := os.ReadFile(filepath.Join(dir, "demo-proxy.log"))
	if err != nil || !bytes.Contains(proxyLog, []byte(`"msg":"Proxied request"`)) {
		t.Errorf("the proxy's log has no request line (%v)", err)
	}
	report, err := testenv.LeakScan{Values: values, Logs: append(append(log, out.Bytes()...), proxyLog...)}.Run(ctx, d.client)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leak scan: %s", report.Scanned)
	for _, l := range report.Leaks {
		t.Error(l)
	}
}

// TestDemoInterrupt runs the demo as `make demo` does (a process of its own) and presses Ctrl-C
// (SIGINT) at a step: at the first, while the control plane starts, and while it waits for the
// live refresh. Each time the demo stops what it started, says so and exits 0: an interrupt is
// how a newcomer ends the demo, not a failure.
func TestDemoInterrupt(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set: run `make test` (or `make envtest` and set it)")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "demo")
	if err := testenv.Build(root, "./hack/demo", bin, false); err != nil {
		t.Fatal(err)
	}
	for name, at := range map[string]string{
		"starting the control plane": "[1/9]",
		"waiting for a live refresh": "[9/9]",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			kubeconfig := filepath.Join(dir, "demo.kubeconfig")
			p, err := testenv.StartProcess("demo", bin, "",
				"--root="+root, "--kubeconfig-out="+kubeconfig, "--log-file="+filepath.Join(dir, "operator.log"))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			if !NewWithT(t).Eventually(p.Output).WithTimeout(2 * time.Minute).WithPolling(100 * time.Millisecond).
				Should(ContainSubstring(at)) {
				t.Fatalf("the demo never reached %s; its output ends:\n%s", at, p.Tail(15))
			}
			if err := p.Interrupt(90 * time.Second); err != nil {
				t.Fatalf("after Ctrl-C at %s: %v\n%s", at, err, p.Output())
			}
			out := p.Output()
			for _, want := range []string{"Interrupted: stopping the operator, the simulator and the control plane", "Stopped."} {
				if !strings.Contains(out, want) {
					t.Errorf("after Ctrl-C at %s the output lacks %q:\n%s", at, want, out)
				}
			}
			if strings.Contains(out, "demo failed") {
				t.Errorf("Ctrl-C at %s reads as a failure:\n%s", at, out)
			}
			if _, err := os.Stat(kubeconfig); !os.IsNotExist(err) {
				t.Errorf("the demo's kubeconfig is left behind after Ctrl-C (stat: %v)", err)
			}
		})
	}
}

// TestDemoExplainsMissingBinaries: without the envtest binaries the demo says how to get them.
func TestDemoExplainsMissingBinaries(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", "")
	var out bytes.Buffer
	err := run(context.Background(), []string{"--assets=" + t.TempDir()}, &out)
	if err == nil || !strings.Contains(err.Error(), "envtest binaries missing") || !strings.Contains(err.Error(), "make envtest") {
		t.Fatalf("error = %v, want it to say the binaries are missing and to run make envtest", err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
