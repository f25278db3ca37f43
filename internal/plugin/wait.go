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

package plugin

import (
	"context"
	"errors"
	"time"

	"k8s.io/utils/clock"
)

// errTimeout is returned by poll when the deadline passes first.
var errTimeout = errors.New("timed out")

// poll calls check at once and then every interval until it reports done, returns an error, ctx
// ends or timeout passes on clk (errTimeout). A timeout of 0 waits for ctx alone.
func poll(ctx context.Context, clk clock.WithTicker, interval, timeout time.Duration, check func(context.Context) (bool, error)) error {
	var deadline <-chan time.Time
	if timeout > 0 {
		t := clk.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C()
	}
	tick := clk.NewTicker(interval)
	defer tick.Stop()
	for {
		done, err := check(ctx)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return errTimeout
		case <-tick.C():
		}
	}
}
