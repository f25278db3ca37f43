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

package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProcess: output in memory or in a file, an added environment, Logged and Tail, Flag,
// SIGTERM and SIGKILL.
func TestProcess(t *testing.T) {
	script := `echo "Started bash"; trap 'echo Stopping; exit 0' TERM; while :; do sleep 0.05; done`
	p, err := StartProcess("sh", "/bin/sh", "", "-c", script, "--metrics-bind-address=127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !p.Logged("STARTED") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !p.Logged("started") || p.Exited() {
		t.Fatalf("output %q, exited %v", p.Output(), p.Exited())
	}
	if got := p.Flag("metrics-bind-address"); got != "127.0.0.1:1" {
		t.Errorf("Flag() = %q", got)
	}
	if err := p.Terminate(10 * time.Second); err != nil {
		t.Errorf("Terminate() = %v", err)
	}
	if !strings.HasSuffix(strings.TrimSpace(p.Tail(1)), "Stopping") {
		t.Errorf("Tail(1) = %q", p.Tail(1))
	}

	log := filepath.Join(t.TempDir(), "out.log")
	p, err = StartProcessEnv("sleeper", "/bin/sh", log, []string{"BENCH_LIMIT=256MiB"}, "-c", `echo to-file $BENCH_LIMIT; exec sleep 60`)
	if err != nil {
		t.Fatal(err)
	}
	for !p.Logged("to-file") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	p.Kill()
	if !p.Exited() {
		t.Error("still running after Kill")
	}
	if b, _ := os.ReadFile(log); string(b) != "to-file 256MiB\n" {
		t.Errorf("log file holds %q", b)
	}
}

func TestFreeAddr(t *testing.T) {
	a, err := FreeAddr()
	if err != nil || !strings.HasPrefix(a, "127.0.0.1:") || strings.HasSuffix(a, ":0") {
		t.Fatalf("FreeAddr() = %q, %v", a, err)
	}
}

func TestRepoRootAndVersion(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	v, err := EnvtestVersion(root)
	if err != nil || strings.Count(v, ".") != 2 || strings.HasPrefix(v, "v") {
		t.Fatalf("EnvtestVersion() = %q, %v", v, err)
	}
	if err := CheckAssets(t.TempDir()); err == nil || !strings.Contains(err.Error(), "make envtest") {
		t.Errorf("CheckAssets(empty dir) = %v", err)
	}
}
