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

	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

func TestOpenBudget(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	suite := SuiteID{SuiteKey: "suitekey", Endpoint: dingtalk.DefaultBaseURL}
	other := SuiteID{SuiteKey: "suiteother", Endpoint: dingtalk.DefaultBaseURL}
	teamA, teamB := budgetScope{suite: suite, namespace: "team-a"}, budgetScope{suite: suite, namespace: "team-b"}
	tokA1 := types.NamespacedName{Namespace: "team-a", Name: "one"}
	tokA2 := types.NamespacedName{Namespace: "team-a", Name: "two"}
	tokB := types.NamespacedName{Namespace: "team-b", Name: "one"}
	refused := &dingtalk.Error{Class: dingtalk.ClassCredentialsRejected, HTTPStatus: 400}
	unavailable := &dingtalk.Error{Class: dingtalk.ClassUnavailable, HTTPStatus: 503}

	// step is one use of the budget: a new connection asking when it may open (and opening then),
	// or the outcome of an open.
	type step struct {
		now    float64              // seconds after t0
		scope  budgetScope          // the connection's scope
		holder types.NamespacedName // the holder that created it (first opens only)
		open   bool                 // a first open: want is when it may happen; it then happens
		want   float64              // seconds after t0
		result error                // !open: the outcome of an open at now
	}
	tests := map[string]struct {
		steps []step
	}{
		"a suite's first connection opens at once": {steps: []step{
			{now: 0, scope: teamA, holder: tokA1, open: true, want: 0},
		}},
		"a new suiteSecret opens at most once per 10s per suite and namespace": {steps: []step{
			{now: 0, scope: teamA, holder: tokA1, open: true, want: 0},
			{now: 0.2, scope: teamA, holder: tokA2, open: true, want: 10},
			{now: 10.2, scope: teamA, holder: tokA1, open: true, want: 20},
			{now: 35, scope: teamA, holder: tokA2, open: true, want: 35},
		}},
		"a holder opens at most once per 10s, whatever suiteKey it names": {steps: []step{
			{now: 0, scope: teamA, holder: tokA1, open: true, want: 0},
			{now: 1, scope: budgetScope{suite: other, namespace: "team-a"}, holder: tokA1, open: true, want: 10},
			{now: 12, scope: budgetScope{suite: SuiteID{SuiteKey: "third"}, namespace: "team-a"}, holder: tokA1, open: true, want: 20},
		}},
		"refusals back off 1s doubling to 60s, whatever the secret": {steps: []step{
			{now: 0, scope: teamA, holder: tokA1, open: true, want: 0},
			{now: 0.1, scope: teamA, result: refused}, // 1st refusal: 1s
			{now: 10, scope: teamA, holder: tokA1, open: true, want: 10},
			{now: 10.1, scope: teamA, result: refused}, // 2s
			{now: 20, scope: teamA, holder: tokA1, open: true, want: 20},
			{now: 20.2, scope: teamA, result: refused}, // 4s
			{now: 31, scope: teamA, holder: tokA1, open: true, want: 31},
			{now: 31, scope: teamA, result: refused}, // 8s
			{now: 41, scope: teamA, holder: tokA1, open: true, want: 41},
			{now: 41, scope: teamA, result: refused}, // 16s
			{now: 51, scope: teamA, holder: tokA1, open: true, want: 57},
			{now: 57, scope: teamA, result: refused}, // 32s
			{now: 67, scope: teamA, holder: tokA2, open: true, want: 89},
			{now: 89, scope: teamA, result: refused}, // 60s
			{now: 99, scope: teamA, holder: tokA1, open: true, want: 149},
			{now: 149, scope: teamA, result: refused}, // 60s: the cap
			{now: 160, scope: teamA, holder: tokA1, open: true, want: 209},
		}},
		"an accepted open ends the refused wait; other failures leave it": {steps: []step{
			{now: 0, scope: teamA, holder: tokA1, open: true, want: 0},
			{now: 0, scope: teamA, result: refused},
			{now: 1, scope: teamA, result: refused},
			{now: 2, scope: teamA, result: refused}, // 4s: until 6
			{now: 3, scope: teamA, result: unavailable},
			{now: 4, scope: teamA, holder: tokA2, open: true, want: 10},
			{now: 10, scope: teamA, result: refused}, // 8s: until 18
			{now: 11, scope: teamA, result: nil},
			{now: 25, scope: teamA, holder: tokA1, open: true, want: 25},
		}},
		"another namespace's refusals and changes hold nothing here": {steps: []step{
			{now: 0, scope: teamB, holder: tokB, open: true, want: 0},
			{now: 0, scope: teamB, result: refused},
			{now: 1, scope: teamB, result: refused},
			{now: 2, scope: teamA, holder: tokA1, open: true, want: 2},
			{now: 3, scope: teamB, holder: tokB, open: true, want: 10},
		}},
		"the state is forgotten once it no longer matters": {steps: []step{
			{now: 0, scope: teamA, holder: tokA1, open: true, want: 0},
			{now: 0, scope: teamA, result: refused},
			{now: 200, scope: teamB, holder: tokB, open: true, want: 200}, // prunes team-a
			{now: 200, scope: teamA, holder: tokA1, open: true, want: 200},
			{now: 200, scope: teamA, result: refused}, // the first refusal again: 1s
			{now: 211, scope: teamA, holder: tokA2, open: true, want: 211},
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := newOpenBudget()
			for i, s := range tc.steps {
				if !s.open {
					b.opened(s.scope, s.result, at(s.now))
					continue
				}
				got := b.firstOpenAt(s.scope, s.holder, at(s.now))
				if !got.Equal(at(s.want)) {
					t.Fatalf("step %d: opens at %v, want %v", i, got.Sub(t0), at(s.want).Sub(t0))
				}
				b.opening(s.scope, s.holder, got)
			}
		})
	}
}

func TestOpenBudgetMemoryIsBounded(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	b := newOpenBudget()
	refused := &dingtalk.Error{Class: dingtalk.ClassCredentialsRejected}
	// A tenant naming a new suiteKey on every write, for an hour of budget time.
	now := t0
	for i := range 3600 {
		holder := types.NamespacedName{Namespace: "churn", Name: "tok"}
		scope := budgetScope{suite: SuiteID{SuiteKey: "made-up-" + time.Duration(i).String()}, namespace: "churn"}
		now = b.firstOpenAt(scope, holder, now)
		b.opening(scope, holder, now)
		b.opened(scope, refused, now)
	}
	if n := len(b.scopes) + len(b.holders); n > 20 {
		t.Errorf("the budget keeps %d entries after an hour of new suiteKeys, want a few", n)
	}
	if d := now.Sub(t0); d < 3599*ChangeInterval {
		t.Errorf("3600 new connections of one holder took %v, want at least 3599 x %v", d, ChangeInterval)
	}
}

func TestRefusedWait(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
		32 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if got := refusedWait(i + 1); got != w {
			t.Errorf("refusedWait(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := refusedWait(1 << 30); got != RefusedBackoffCap {
		t.Errorf("refusedWait(huge) = %v", got)
	}
}
