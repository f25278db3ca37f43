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

package envtesting

import (
	"io"
	"os"
	"sync"
	"testing"

	"github.com/go-logr/logr"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// SuiteLogs makes the logger of controller-runtime and client-go in this process write, at the
// highest verbosity (the leak scan then covers everything the code can log), into the returned
// buffer, and also to stderr when TEST_LOGS is set. When t fails, the logs are written to a file
// named after the suite, and its name is logged.
func SuiteLogs(t *testing.T, suite string) (*testutil.SyncBuffer, logr.Logger) {
	logs := &testutil.SyncBuffer{}
	var sink io.Writer = logs
	if os.Getenv("TEST_LOGS") != "" {
		sink = io.MultiWriter(logs, os.Stderr)
	}
	log, err := testenv.SetLogger(sink, "127")
	Must(t, err)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if f, err := os.CreateTemp("", suite+"-*.log"); err == nil {
			_, _ = f.Write(logs.Bytes())
			_ = f.Close()
			t.Logf("manager logs: %s", f.Name())
		}
	})
	return logs, log
}

// RunConcurrently runs every scenario as a subtest of t, all at once, and returns when all have
// ended: scenarios mostly wait for token lifetimes, and t.Parallel would cap them at
// -test.parallel (GOMAXPROCS).
func RunConcurrently(t *testing.T, scenarios map[string]func(*testing.T)) {
	var wg sync.WaitGroup
	for name, run := range scenarios {
		wg.Go(func() { t.Run(name, run) })
	}
	wg.Wait()
}
