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
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

func TestRefreshResult(t *testing.T) {
	before := failing(readyToken(), v1alpha1.ReasonProviderUnavailable, "DingTalk did not answer in time", false)
	healthy := readyToken()
	tests := map[string]struct {
		// before is the status when the refresh was requested; after the status read later.
		before, after *v1alpha1.DingTalkToken
		want          refreshOutcome
	}{
		"nothing moved": {before: healthy, after: readyToken(), want: outcomePending},
		"lastRefreshTime moved": {before: healthy, after: func() *v1alpha1.DingTalkToken {
			tok := readyToken()
			tok.Status.LastRefreshTime = at(time.Second)
			return tok
		}(), want: outcomeRefreshed},
		"first token": {before: token(v1alpha1.TokenTypeInternalApp), after: readyToken(), want: outcomeRefreshed},
		"Refreshed turned False": {before: healthy,
			after: failing(readyToken(), v1alpha1.ReasonCredentialsRejected, "m", false), want: outcomeFailed},
		"failing before, same failure, no new attempt": {before: before,
			after: failing(readyToken(), v1alpha1.ReasonProviderUnavailable, "m", false), want: outcomePending},
		"failing before, one more attempt": {before: before, after: func() *v1alpha1.DingTalkToken {
			tok := failing(readyToken(), v1alpha1.ReasonProviderUnavailable, "m", false)
			tok.Status.FailedAttempts = 4
			return tok
		}(), want: outcomeFailed},
		"failing before, newer failure time": {before: before, after: func() *v1alpha1.DingTalkToken {
			tok := failing(readyToken(), v1alpha1.ReasonProviderUnavailable, "m", false)
			tok.Status.LastFailureTime = at(time.Second)
			return tok
		}(), want: outcomeFailed},
		"failing before, refreshed now": {before: before, after: func() *v1alpha1.DingTalkToken {
			tok := readyToken()
			tok.Status.LastRefreshTime = at(time.Second)
			return tok
		}(), want: outcomeRefreshed},
		"suspended is no outcome": {before: healthy, after: func() *v1alpha1.DingTalkToken {
			tok := readyToken()
			tok.Status.Conditions[1] = cond(v1alpha1.ConditionRefreshed, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "m", time.Second)
			return tok
		}(), want: outcomePending},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := refreshResult(markOf(&tc.before.Status.TokenStatus), &tc.after.Status.TokenStatus); got != tc.want {
				t.Errorf("refreshResult = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestHeldByBackoff(t *testing.T) {
	deadline := now.Add(2 * time.Minute)
	tests := map[string]struct {
		// tok is the DingTalkToken when the refresh was requested.
		tok *v1alpha1.DingTalkToken
		// held: the backoff holds the next attempt past the deadline.
		held bool
	}{
		"healthy token due later": {tok: readyToken()},
		"rejected, retried hourly": {tok: func() *v1alpha1.DingTalkToken {
			tok := failing(readyToken(), v1alpha1.ReasonCredentialsRejected, "m", true)
			tok.Status.RefreshTime = at(59 * time.Minute)
			return tok
		}(), held: true},
		"unavailable, backoff within the wait": {tok: failing(readyToken(), v1alpha1.ReasonProviderUnavailable, "m", false)},
		"unavailable, backoff past the wait": {tok: func() *v1alpha1.DingTalkToken {
			tok := failing(readyToken(), v1alpha1.ReasonProviderUnavailable, "m", false)
			tok.Status.RefreshTime = at(5 * time.Minute)
			return tok
		}(), held: true},
		"conflict re-checked later holds no request": {tok: func() *v1alpha1.DingTalkToken {
			tok := failing(readyToken(), v1alpha1.ReasonTargetConflict, "m", true)
			tok.Status.RefreshTime = at(5 * time.Minute)
			return tok
		}()},
		"no refresh time": {tok: func() *v1alpha1.DingTalkToken {
			tok := failing(readyToken(), v1alpha1.ReasonQuotaExceeded, "m", true)
			tok.Status.RefreshTime = nil
			return tok
		}()},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			until, held := heldByBackoff(&tc.tok.Status.TokenStatus, deadline)
			if held != tc.held || (held && !until.Equal(tc.tok.Status.RefreshTime.Time)) {
				t.Errorf("heldByBackoff = %s, %v; want held %v", until, held, tc.held)
			}
		})
	}
}

func TestRequestTime(t *testing.T) {
	tests := map[string]struct {
		// now is the plugin's clock; last the status's lastRefreshTime.
		now, last time.Time
		want      time.Time
	}{
		"no token":              {now: now.Add(300 * time.Millisecond), want: now},
		"older token":           {now: now.Add(300 * time.Millisecond), last: now.Add(-time.Hour), want: now},
		"token of this second":  {now: now.Add(300 * time.Millisecond), last: now, want: now.Add(time.Second)},
		"token ahead (skew)":    {now: now, last: now.Add(3 * time.Second), want: now.Add(4 * time.Second)},
		"local zone is UTC out": {now: now.In(time.FixedZone("CST", 8*3600)), want: now},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := requestTime(tc.now, refreshMark{LastRefresh: tc.last})
			if !got.Equal(tc.want) || got.Location() != time.UTC {
				t.Errorf("requestTime = %s, want %s (UTC)", got, tc.want)
			}
		})
	}
}

func TestRefreshValidate(t *testing.T) {
	tests := map[string]struct {
		// opts and args are the command line.
		opts refreshOptions
		args []string
		// wantErr is a part of the error; "" for none.
		wantErr string
	}{
		"name":            {opts: refreshOptions{wait: true, timeout: time.Minute}, args: []string{"a"}},
		"selector":        {opts: refreshOptions{selector: "team=crm", wait: true, timeout: time.Minute}},
		"all everywhere":  {opts: refreshOptions{all: true, allNamespaces: true}},
		"nothing":         {opts: refreshOptions{}, wantErr: "name the DingTalkTokens"},
		"name and all":    {opts: refreshOptions{all: true}, args: []string{"a"}, wantErr: "only one of"},
		"bad selector":    {opts: refreshOptions{selector: "a=(", wait: true, timeout: time.Minute}, wantErr: "invalid selector"},
		"-A with a name":  {opts: refreshOptions{allNamespaces: true}, args: []string{"a"}, wantErr: "--all-namespaces"},
		"zero timeout":    {opts: refreshOptions{all: true, wait: true}, wantErr: "--timeout"},
		"no wait no time": {opts: refreshOptions{all: true}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.opts.validate(tc.args)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// poll checks at once, then on every tick of the clock, until done or the timeout.
func TestPoll(t *testing.T) {
	clk := clocktesting.NewFakeClock(now)
	checks := make(chan int, 10)
	n := 0
	result := make(chan error, 1)
	go func() {
		result <- poll(context.Background(), clk, time.Second, 10*time.Second, func(context.Context) (bool, error) {
			n++
			checks <- n
			return n == 3, nil
		})
	}()
	for want := 1; want <= 3; want++ {
		if got := <-checks; got != want {
			t.Fatalf("check %d, want %d", got, want)
		}
		if want < 3 {
			clk.Step(time.Second) // the ticker exists: poll made it before the first check
		}
	}
	if err := <-result; err != nil {
		t.Fatalf("poll = %v, want nil once done", err)
	}

	// The deadline passes before the check is ever done.
	clk = clocktesting.NewFakeClock(now)
	first := make(chan struct{})
	go func() {
		var once sync.Once
		result <- poll(context.Background(), clk, time.Second, 3*time.Second, func(context.Context) (bool, error) {
			once.Do(func() { close(first) })
			return false, nil
		})
	}()
	<-first
	clk.Step(5 * time.Second)
	if err := <-result; !errors.Is(err, errTimeout) {
		t.Fatalf("poll = %v, want errTimeout", err)
	}

	// An error from the check ends the poll with it.
	boom := errors.New("boom")
	if err := poll(context.Background(), clk, time.Second, 0, func(context.Context) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Fatalf("poll = %v, want boom", err)
	}

	// A cancelled context ends it too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := poll(ctx, clk, time.Second, 0, func(context.Context) (bool, error) { return false, nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("poll = %v, want context.Canceled", err)
	}
}
