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
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega" //nolint:revive // Gomega's DSL reads best unqualified
	"k8s.io/utils/clock"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version"
)

// TestBinaryServesBothFamilies runs the built binary as a user would, against the simulator,
// with the token in a directory written as the kubelet writes it: ready once the token is there,
// both listeners serve, the metrics count them, SIGTERM stops it cleanly, and neither its log nor
// its metrics hold a token or a credential.
func TestBinaryServesBothFamilies(t *testing.T) {
	root, err := testenv.RepoRoot()
	envtesting.Must(t, err)
	bin := filepath.Join(t.TempDir(), "dingtalk-token-proxy")
	envtesting.Must(t, testenv.Build(root, "./cmd/dingtalk-token-proxy", bin, testenv.RaceEnabled))

	values := &testenv.Sensitive{}
	appSecret := values.New(testenv.Credential, "app-secret-")
	sim, err := simulator.Start(simulator.Config{Apps: []simulator.App{{AppKey: "dingproxybin", AppSecret: appSecret}}}, clock.RealClock{})
	envtesting.Must(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	resp, err := http.Post(sim.URL()+simulator.PathAppAccessToken, "application/json",
		strings.NewReader(`{"appKey":"dingproxybin","appSecret":"`+appSecret+`"}`))
	envtesting.Must(t, err)
	var issued struct {
		AccessToken string `json:"accessToken"`
	}
	envtesting.Must(t, json.NewDecoder(resp.Body).Decode(&issued))
	_ = resp.Body.Close()
	values.Add(testenv.AccessToken, issued.AccessToken)

	vol := &testenv.SecretVolume{Dir: filepath.Join(t.TempDir(), "dingtalk")}
	api, oapi, metrics := envtesting.FreeAddr(t), envtesting.FreeAddr(t), envtesting.FreeAddr(t)
	p := envtesting.StartProcess(t, "dingtalk-token-proxy", bin, "--token-dir="+vol.Dir,
		"--api-listen="+api, "--oapi-listen="+oapi, "--metrics-listen="+metrics,
		"--api-upstream="+sim.URL(), "--oapi-upstream="+sim.URL(), "--log-level=debug")
	g := NewWithT(t)
	status := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	g.Eventually(func() int { return status("http://" + metrics + "/healthz") }).WithTimeout(30 * time.Second).Should(Equal(200))
	g.Expect(status("http://"+metrics+"/readyz")).To(Equal(503), "not ready without a token")
	g.Expect(status("http://" + api + "/v1.0/contact/users/union1")).To(Equal(503))

	envtesting.Must(t, vol.WriteStrings(map[string]string{"accessToken": issued.AccessToken,
		"expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}))
	g.Eventually(func() int { return status("http://" + metrics + "/readyz") }).WithTimeout(10 * time.Second).Should(Equal(200))
	g.Expect(status("http://" + api + "/v1.0/contact/users/union1")).To(Equal(200))
	resp, err = http.Get("http://" + oapi + simulator.PathUserGet + "?userid=u1")
	envtesting.Must(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(string(body)).To(ContainSubstring(`"errcode":0`))
	results := sim.Stats().Endpoints
	g.Expect(results[simulator.PathUserByUnionID].Results["success"]).To(BeEquivalentTo(1))
	g.Expect(results[simulator.PathUserGet].Results["success"]).To(BeEquivalentTo(1))

	resp, err = http.Get("http://" + metrics + "/metrics")
	envtesting.Must(t, err)
	exposition, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(string(exposition)).To(ContainSubstring(`dingtalk_token_proxy_requests_total{code="2xx",upstream="oapi"} 1`))
	g.Expect(string(exposition)).To(ContainSubstring(`dingtalk_token_proxy_token_valid 1`))

	g.Expect(p.Terminate(15 * time.Second)).To(Succeed())
	g.Expect(p.Output()).To(ContainSubstring("Stopping dingtalk-token-proxy"))
	g.Expect(p.Output()).To(ContainSubstring(`"path":"/user/get"`))
	envtesting.ScanOutput(t, values, map[string][]byte{"proxy log": []byte(p.Output()), "proxy metrics": exposition})
}

func TestRunRefusesBadFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"http upstream beyond loopback": {"--api-upstream", "http://api.dingtalk.com"},
		"bad placement":                 {"--api-token-placement", "query"},
		"both listeners off":            {"--api-listen", "", "--oapi-listen", ""},
		"key as a path":                 {"--token-key", "../accessToken"},
		"unknown flag":                  {"--nope"},
		"an argument":                   {"extra"},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr strings.Builder
			if got := run(t.Context(), args, io.Discard, &stderr); got != 2 {
				t.Errorf("exit status %d, want 2; stderr: %s", got, stderr.String())
			}
		})
	}
}

func TestRunPrintsVersion(t *testing.T) {
	var stdout strings.Builder
	if got := run(t.Context(), []string{"--version"}, &stdout, io.Discard); got != 0 {
		t.Fatalf("exit status %d", got)
	}
	if want := "dingtalk-token-proxy " + version.String() + "\n"; stdout.String() != want {
		t.Errorf("--version printed %q, want %q", stdout.String(), want)
	}
}

// TestDocsListEveryFlag: docs/calling-dingtalk.md names every flag --help lists, so that a new
// flag is documented where users look.
func TestDocsListEveryFlag(t *testing.T) {
	var help strings.Builder
	if got := run(t.Context(), []string{"--help"}, io.Discard, &help); got != 0 {
		t.Fatalf("--help: exit status %d", got)
	}
	flags := regexp.MustCompile(`(?m)^\s+-{1,2}([a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1)
	if len(flags) < 15 {
		t.Fatalf("--help listed %d flags:\n%s", len(flags), help.String())
	}
	root, err := testenv.RepoRoot()
	envtesting.Must(t, err)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "calling-dingtalk.md"))
	envtesting.Must(t, err)
	for _, f := range flags {
		if !strings.Contains(string(doc), "`--"+f[1]+"`") {
			t.Errorf("docs/calling-dingtalk.md does not name the flag --%s", f[1])
		}
	}
}
