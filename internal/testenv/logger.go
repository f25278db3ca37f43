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
	"context"
	"flag"
	"io"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// SetLogger makes a JSON logger writing to w at level, given as the manager's --zap-log-level
// ("error", "info", "debug" or a V-level: "127" is the highest), the logger of controller-runtime
// and of client-go (klog) in this process, and returns it. Suites log at the highest level so that
// their leak scan covers everything the code can log.
func SetLogger(w io.Writer, level string) (logr.Logger, error) {
	opts := zap.Options{}
	fs := flag.NewFlagSet("zap", flag.ContinueOnError)
	opts.BindFlags(fs)
	if err := fs.Parse([]string{"--zap-log-level=" + level}); err != nil {
		return logr.Logger{}, err
	}
	l := zap.New(zap.UseFlagOptions(&opts), zap.WriteTo(w))
	ctrl.SetLogger(l)
	klog.SetLogger(l)
	return l, nil
}

// Sleep waits for d or until ctx ends (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
