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

package sharedfetch

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// TestFetcherShares checks the shared fetch without a cluster: concurrent misses collapse into one
// call, a fresh answer is served from the cache, an unacceptable one is not, and a Retry-After
// sets a floor for the set.
func TestFetcherShares(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	f := New(clk, nil, nil)
	var calls atomic.Int32
	release := make(chan struct{})
	call := func(context.Context) (dingtalk.Token, error) {
		calls.Add(1)
		<-release
		return dingtalk.Token{AccessToken: "t", ExpireIn: time.Minute}, nil
	}
	key := f.SetKey("InternalApp", "app", "secret", "", "http://x")
	accept := func(Issued) bool { return true }
	var wg sync.WaitGroup
	var callers atomic.Int32 // fetches that report their own call (not a shared one)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, called, err := f.Fetch(context.Background(), key, accept, call)
			if err != nil {
				t.Error(err)
			}
			if called {
				callers.Add(1)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the five join one flight
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("5 concurrent fetches made %d calls, want 1", n)
	}
	if n := callers.Load(); n != 1 {
		t.Fatalf("%d of 5 concurrent fetches reported their own call, want 1 (the others joined it)", n)
	}
	if _, called, _ := f.Fetch(context.Background(), key, accept, call); called || calls.Load() != 1 {
		t.Fatalf("a fresh cached token was not served from the cache")
	}
	if _, called, _ := f.Fetch(context.Background(), key, func(Issued) bool { return false }, call); !called || calls.Load() != 2 {
		t.Fatalf("an unacceptable cached token was served")
	}
	other := f.SetKey("InternalApp", "app", "wrong-secret", "", "http://x")
	if _, called, _ := f.Fetch(context.Background(), other, accept, call); !called || calls.Load() != 3 {
		t.Fatalf("a different secret was served the cached token")
	}
	if other == key || strings.Contains(key, "secret") {
		t.Fatalf("keys %q and %q: equal, or revealing", key, other)
	}

	limited := func(context.Context) (dingtalk.Token, error) {
		return dingtalk.Token{}, &dingtalk.Error{Class: dingtalk.ClassRateLimited, RetryAfter: 2 * time.Hour}
	}
	third := f.SetKey("ThirdPartySuite", "suite", "secret", "ticket", "http://x")
	if _, _, err := f.Fetch(context.Background(), third, accept, limited); dingtalk.ClassOf(err) != dingtalk.ClassRateLimited {
		t.Fatalf("err = %v", err)
	}
	if got := f.Floor(third); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("floor = %s, want Retry-After capped at 1h", got)
	}
	clk.Step(time.Hour)
	if got := f.Floor(third); !got.IsZero() {
		t.Fatalf("floor after an hour = %s, want none", got)
	}
}

// TestFetchOutlivesItsCaller: a caller whose context ends (the manager stopping) still gets the
// answer of the call it started: a rotated user refresh token is never dropped on the floor.
func TestFetchOutlivesItsCaller(t *testing.T) {
	f := New(clocktesting.NewFakeClock(t0), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	call := func(callCtx context.Context) (dingtalk.Token, error) {
		cancel() // the caller's context ends while DingTalk is answering
		time.Sleep(20 * time.Millisecond)
		if callCtx.Err() != nil {
			return dingtalk.Token{}, callCtx.Err()
		}
		return dingtalk.Token{AccessToken: "t", RefreshToken: "rotated", ExpireIn: time.Minute}, nil
	}
	got, _, err := f.Fetch(ctx, "user-key", nil, call)
	if err != nil || got.RefreshToken != "rotated" {
		t.Fatalf("fetch = %+v, %v; want the answer with the rotated refresh token", got, err)
	}
}

// placesAhead is a dingtalk.Reserver whose places are due after the delays given, in turn.
type placesAhead struct {
	delays []time.Duration
	taken  int
}

func (r *placesAhead) Reserve() time.Duration {
	d := r.delays[r.taken]
	r.taken++
	return d
}

// TestFetcherDefersToTheRateLimit: a shared call whose place under the client-side rate limit is
// not due is not waited for: every caller of its set is told when the place is due, one place
// per set, and the call goes then without a second reservation. User tokens are never deferred.
func TestFetcherDefersToTheRateLimit(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	f := New(clk, nil, nil)
	limit := &placesAhead{delays: []time.Duration{0, 2 * time.Second, 3 * time.Second, 3 * time.Second}}
	f.limiter = limit
	var calls atomic.Int32
	call := func(context.Context) (dingtalk.Token, error) {
		calls.Add(1)
		return dingtalk.Token{AccessToken: "t", ExpireIn: time.Hour}, nil
	}
	accept := func(Issued) bool { return true }
	first, second := f.SetKey("InternalApp", "a", "s", "", "x"), f.SetKey("InternalApp", "b", "s", "", "x")

	if _, called, err := f.Fetch(context.Background(), first, accept, call); err != nil || !called {
		t.Fatalf("a set whose place is now: called %v, %v", called, err)
	}
	for range 2 { // two objects of the second set
		_, called, err := f.Fetch(context.Background(), second, accept, call)
		var d *Deferred
		if !errors.As(err, &d) || called || !d.Until.Equal(t0.Add(2*time.Second)) {
			t.Fatalf("a set whose place is 2s away: called %v, %v; want deferred until %s", called, err, t0.Add(2*time.Second))
		}
	}
	if limit.taken != 2 || calls.Load() != 1 || !f.PlaceAhead(second) || f.PlaceAhead(first) {
		t.Fatalf("places taken %d, calls %d, second set waits %v, first waits %v; want 2, 1, true, false",
			limit.taken, calls.Load(), f.PlaceAhead(second), f.PlaceAhead(first))
	}
	if _, called, err := f.Fetch(context.Background(), "user-key", nil, call); err != nil || !called || limit.taken != 2 {
		t.Fatalf("a User fetch: called %v, %v, places taken %d; want its own call, waited for in the client", called, err, limit.taken)
	}

	clk.Step(2 * time.Second)
	if _, called, err := f.Fetch(context.Background(), second, accept, call); err != nil || !called || limit.taken != 2 {
		t.Fatalf("the second set at its place: called %v, %v, places taken %d; want the call, no new place", called, err, limit.taken)
	}
	if _, called, err := f.Fetch(context.Background(), second, accept, call); err != nil || called || f.PlaceAhead(second) {
		t.Fatalf("the second set's other object: called %v, %v; want the shared token", called, err)
	}

	// A place nobody came back for in time is spent: the next caller takes a new one.
	third := f.SetKey("InternalApp", "c", "s", "", "x")
	if _, _, err := f.Fetch(context.Background(), third, accept, call); !errors.As(err, new(*Deferred)) {
		t.Fatalf("the third set: %v, want deferred", err)
	}
	clk.Step(3*time.Second + maxPlaceAge + time.Second)
	_, called, err := f.Fetch(context.Background(), third, accept, call)
	var d *Deferred
	if !errors.As(err, &d) || called || limit.taken != 4 || !d.Until.Equal(clk.Now().Add(3*time.Second)) {
		t.Fatalf("the third set after its place was left: called %v, %v, places taken %d; want a new place", called, err, limit.taken)
	}
}
