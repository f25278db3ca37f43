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

package logcap

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// TestCap: the capped logger passes V(7) on and drops V(8), where client-go logs request and
// response bodies; and capping one logger from many goroutines at once (managers started
// together) is safe (go test -race).
func TestCap(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	w := zapcore.AddSync(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) }))
	base := zap.New(zap.WriteTo(w), zap.Level(zapcore.Level(-127)))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			l := Cap(base).WithName("capped")
			l.V(7).Info("kept")
			l.V(8).Info("request body")
		})
	}
	wg.Wait()
	got := out.String()
	if n := strings.Count(got, `"kept"`); n != 8 {
		t.Errorf("%d V(7) lines, want 8:\n%s", n, got)
	}
	if strings.Contains(got, "request body") {
		t.Errorf("a V(8) line was logged:\n%s", got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
