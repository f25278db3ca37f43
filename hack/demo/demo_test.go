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

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

	// No value of any Secret the operator wrote, nor any credential, shows in the output.
	var secrets corev1.SecretList
	if err := d.client.List(ctx, &secrets, client.InNamespace("demo")); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, s := range secrets.Items {
		for k, v := range s.Data {
			if k == "expiresAt" || k == "corpId" || len(v) < 8 {
				continue
			}
			if strings.Contains(text, string(v)) {
				t.Errorf("the output shows the value of %s/%s key %s", s.Namespace, s.Name, k)
			}
		}
	}
	for _, want := range []string{"[1/7]", "[6/7]", "[7/7]", "isv-stream: DingTalk Stream connection True (Connected)", "Pushed another ticket, picked up at once", "NAME", "READY", "EXPIRES", "REFRESH", "<masked", "Refreshed demo/", "Time to the first Ready Secret"} {
		if !strings.Contains(text, want) {
			t.Errorf("the output lacks %q", want)
		}
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
