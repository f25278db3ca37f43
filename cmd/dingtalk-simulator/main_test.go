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
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

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
		"negative grace":  {"--ticket-grace", "-1s"},
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

func TestRunServesTheStreamGateway(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, stdout := io.Pipe()
	var stderr strings.Builder
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--config", "../../config/simulator/credentials.yaml", "-v",
			"--push-on-connect", "--ticket-grace", "1m", "--redeliver-interval", "50ms"}, stdout, &stderr)
		_ = stdout.Close()
	}()
	base, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no URL printed: %v", err)
	}
	base = strings.TrimSpace(base)
	post := func(path, body string) (int, []byte) {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	status, body := post("/v1.0/gateway/connections/open",
		`{"clientId":"suitedemo","clientSecret":"demo-suite-secret","subscriptions":[{"type":"EVENT","topic":"*"}]}`)
	var opened struct{ Endpoint, Ticket string }
	if status != http.StatusOK || json.Unmarshal(body, &opened) != nil {
		t.Fatalf("connections/open: HTTP %d", status)
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, opened.Endpoint+"?ticket="+url.QueryEscape(opened.Ticket), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer func() { _ = ws.Close() }()
	nextTicket := func() string {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			var f struct {
				Type    string
				Headers map[string]string
				Data    string
			}
			if err := ws.ReadJSON(&f); err != nil {
				t.Fatalf("read: %v", err)
			}
			var d struct{ SuiteTicket string }
			if f.Type == "EVENT" && json.Unmarshal([]byte(f.Data), &d) == nil {
				ack, _ := json.Marshal(map[string]any{"code": 200, "headers": map[string]string{"messageId": f.Headers["messageId"]},
					"message": "OK", "data": `{"status":"SUCCESS"}`})
				_ = ws.WriteMessage(websocket.TextMessage, ack)
				return d.SuiteTicket
			}
		}
	}
	if got := nextTicket(); got != "demo-ticket" {
		t.Errorf("--push-on-connect pushed another ticket")
	}
	if status, body := post("/_sim/push", `{"suiteKey":"suitedemo","ticket":"pushed-ticket"}`); status != http.StatusOK {
		t.Fatalf("/_sim/push: HTTP %d %s", status, body)
	}
	if got := nextTicket(); got != "pushed-ticket" {
		t.Errorf("/_sim/push delivered another ticket")
	}
	for _, ticket := range []string{"demo-ticket", "pushed-ticket"} { // the old one within --ticket-grace
		if status, _ := post("/v1.0/oauth2/suiteAccessToken",
			`{"suiteKey":"suitedemo","suiteSecret":"demo-suite-secret","suiteTicket":"`+ticket+`"}`); status != http.StatusOK {
			t.Errorf("suiteAccessToken with a valid ticket: HTTP %d", status)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, secret := range []string{"demo-suite-secret", "demo-ticket", "pushed-ticket", opened.Ticket} {
		if strings.Contains(stderr.String(), secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}
