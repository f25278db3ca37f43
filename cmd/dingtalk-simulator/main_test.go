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
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version"
)

func TestRunServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, stdout := io.Pipe()
	var stderr strings.Builder
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--config", "../../config/simulator/credentials.yaml",
			"--fault-endpoint", "/v1.0/oauth2/suiteAccessToken", "--fault-status", "503", "--fault-count", "1",
			"--fault", `{"credential":"dingdemouser","errCode200":90018}`}, stdout, &stderr)
		_ = stdout.Close()
	}()
	url, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no URL printed: %v", err)
	}
	url = strings.TrimSpace(url)

	post := func(path, body string) int {
		resp, err := http.Post(url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("/v1.0/oauth2/accessToken", `{"appKey":"dingdemoapp","appSecret":"demo-app-secret"}`); got != 200 {
		t.Errorf("demo app: HTTP %d", got)
	}
	suite := `{"suiteKey":"suitedemo","suiteSecret":"demo-suite-secret","suiteTicket":"demo-ticket"}`
	if got := post("/v1.0/oauth2/suiteAccessToken", suite); got != 503 {
		t.Errorf("fault flags: HTTP %d, want 503", got)
	}
	if got := post("/v1.0/oauth2/suiteAccessToken", suite); got != 200 {
		t.Errorf("after the counted fault: HTTP %d, want 200", got)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, secret := range []string{"demo-app-secret", "demo-suite-secret", "demo-ticket"} {
		if strings.Contains(stderr.String(), secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"bad fault JSON":  {"--fault", `{"nope":1}`},
		"invalid fault":   {"--fault-rate", "2"},
		"missing config":  {"--config", "/nonexistent/credentials.yaml"},
		"bad listen addr": {"--listen", "256.0.0.1:bad"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := run(t.Context(), args, io.Discard, io.Discard); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestRunPrintsVersion(t *testing.T) {
	var stdout strings.Builder
	// --version returns at once: it neither listens nor waits for the context.
	if err := run(t.Context(), []string{"--version"}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := "dingtalk-simulator " + version.String() + "\n"; stdout.String() != want {
		t.Errorf("--version printed %q, want %q", stdout.String(), want)
	}
}
