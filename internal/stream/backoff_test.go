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

package stream

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

func TestNextDelay(t *testing.T) {
	// No jitter, so that the sequence is exact.
	opts := Options{Backoff: wait.Backoff{Duration: time.Second, Factor: 2, Steps: 1 << 30, Cap: time.Minute}}.withDefaults()
	rejected := &dingtalk.Error{Class: dingtalk.ClassCredentialsRejected, HTTPStatus: 400}
	unavailable := &dingtalk.Error{Class: dingtalk.ClassUnavailable, HTTPStatus: 503}
	throttled := &dingtalk.Error{Class: dingtalk.ClassRateLimited, HTTPStatus: 429, RetryAfter: 90 * time.Second}
	young, stable := time.Second, opts.StableAfter

	tests := map[string]struct {
		ends []sessionEnd    // consecutive session ends
		want []time.Duration // the delay after each
	}{
		"drops double to the cap": {
			ends: repeat(sessionEnd{err: errLost, connected: young}, 8),
			want: []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute},
		},
		"open failures double too": {
			ends: repeat(sessionEnd{err: unavailable}, 3),
			want: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second},
		},
		"a stable connection resets the backoff": {
			ends: []sessionEnd{{err: errLost}, {err: errLost}, {err: errLost, connected: stable}, {err: errDial}},
			want: []time.Duration{time.Second, 2 * time.Second, time.Second, 2 * time.Second},
		},
		"an orderly disconnect of a stable connection reconnects at once": {
			ends: []sessionEnd{{err: errDisconnected, connected: stable, disconnect: true}},
			want: []time.Duration{0},
		},
		"disconnects right after connecting back off": {
			ends: repeat(sessionEnd{err: errDisconnected, connected: young, disconnect: true}, 3),
			want: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second},
		},
		"refused credentials are retried slowly": {
			ends: repeat(sessionEnd{err: rejected}, 3),
			want: []time.Duration{DefaultCredentialsRetry, DefaultCredentialsRetry, DefaultCredentialsRetry},
		},
		"Retry-After wins when longer": {
			ends: []sessionEnd{{err: throttled}, {err: unavailable}},
			want: []time.Duration{90 * time.Second, 2 * time.Second},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := opts.Backoff
			for i, end := range tc.ends {
				if got := nextDelay(end, &b, opts); got != tc.want[i] {
					t.Errorf("delay %d = %v, want %v", i, got, tc.want[i])
				}
			}
		})
	}
}

func repeat(e sessionEnd, n int) []sessionEnd {
	out := make([]sessionEnd, n)
	for i := range out {
		out[i] = e
	}
	return out
}

// TestDefaultBackoffBounds checks the jittered default: each delay within [d, 1.2 d], never over 60 s.
func TestDefaultBackoffBounds(t *testing.T) {
	opts := Options{}.withDefaults()
	for run := range 50 {
		b := opts.Backoff
		base := time.Second
		for i := range 10 {
			got := nextDelay(sessionEnd{err: errLost}, &b, opts)
			lo, hi := base, min(time.Minute, base+base/5)
			if got < lo || got > hi {
				t.Fatalf("run %d, delay %d = %v, want within [%v, %v]", run, i, got, lo, hi)
			}
			base = min(2*base, time.Minute)
		}
	}
}
