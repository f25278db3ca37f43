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
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// The budget of new connections. Opening a connection is a DingTalk call, and every change of a
// holder's credentials needs a new connection: without a budget, a tenant rewriting its
// suiteSecret in a loop makes one connections/open call per write.
const (
	// ChangeInterval spaces the first opens of new connections: at most one per ChangeInterval per
	// holder (whatever suiteKey it names), and one per ChangeInterval per suite and namespace
	// (whatever holder and suiteSecret). It is the reconciler's credentials-change interval.
	ChangeInterval = 10 * time.Second
	// RefusedBackoffBase and RefusedBackoffCap shape the wait of a new connection of a suite
	// (and namespace) after connections/open refused its credentials: 1 s, doubling with each
	// consecutive refusal, at most 60 s. A new suiteSecret does not reset it; an accepted open does.
	RefusedBackoffBase = time.Second
	RefusedBackoffCap  = time.Minute
)

// budgetScope is what the suite-wide budget is kept per: the suite and the namespace of the
// holder that created the connection. Keeping it per namespace means that a tenant who guesses
// another tenant's suiteKey delays only its own connections.
type budgetScope struct {
	suite     SuiteID
	namespace string
}

// scopeBudget is the state of one scope.
type scopeBudget struct {
	// lastOpen is when the last new connection of the scope made its first open.
	lastOpen time.Time
	// refusals counts the consecutive refused opens of the scope's connections; refusedUntil is
	// the end of the wait the last one set.
	refusals     int
	refusedUntil time.Time
}

// until is when the scope's state stops mattering: past it, it is forgotten.
func (s *scopeBudget) until() time.Time {
	return laterOf(s.lastOpen.Add(ChangeInterval), s.refusedUntil).Add(RefusedBackoffCap)
}

// openBudget decides when a new connection of a Hub may make its first connections/open call. A
// connection's later opens (reconnects) are paced by its own backoff, not by the budget. The
// budget is not safe for concurrent use: the Hub holds its lock.
type openBudget struct {
	scopes map[budgetScope]*scopeBudget
	// holders is when each holder's last new connection made its first open (kept ChangeInterval).
	holders   map[types.NamespacedName]time.Time
	lastPrune time.Time
}

func newOpenBudget() *openBudget {
	return &openBudget{scopes: map[budgetScope]*scopeBudget{}, holders: map[types.NamespacedName]time.Time{}}
}

// firstOpenAt is the earliest time a new connection of scope, created by holder, may open.
func (b *openBudget) firstOpenAt(scope budgetScope, holder types.NamespacedName, now time.Time) time.Time {
	at := now
	if last, ok := b.holders[holder]; ok {
		at = laterOf(at, last.Add(ChangeInterval))
	}
	if s, ok := b.scopes[scope]; ok {
		if !s.lastOpen.IsZero() {
			at = laterOf(at, s.lastOpen.Add(ChangeInterval))
		}
		at = laterOf(at, s.refusedUntil)
	}
	return at
}

// opening records that a new connection of scope, created by holder, makes its first open now.
func (b *openBudget) opening(scope budgetScope, holder types.NamespacedName, now time.Time) {
	b.prune(now)
	b.holders[holder] = now
	b.scope(scope).lastOpen = now
}

// opened records the outcome of any open of a connection of scope: a refusal of the credentials
// extends the scope's wait, an accepted open ends it, other failures change nothing.
func (b *openBudget) opened(scope budgetScope, err error, now time.Time) {
	b.prune(now)
	switch {
	case err == nil:
		if s, ok := b.scopes[scope]; ok {
			s.refusals, s.refusedUntil = 0, time.Time{}
		}
	case dingtalk.ClassOf(err) == dingtalk.ClassCredentialsRejected:
		s := b.scope(scope)
		s.refusals++
		s.refusedUntil = now.Add(refusedWait(s.refusals))
	}
}

// refusedWait is the wait after n consecutive refusals: 1 s doubling, at most RefusedBackoffCap.
func refusedWait(n int) time.Duration {
	d := RefusedBackoffBase
	for i := 1; i < n && d < RefusedBackoffCap; i++ {
		d *= 2
	}
	return min(d, RefusedBackoffCap)
}

func (b *openBudget) scope(scope budgetScope) *scopeBudget {
	s, ok := b.scopes[scope]
	if !ok {
		s = &scopeBudget{}
		b.scopes[scope] = s
	}
	return s
}

// prune forgets, at most once per ChangeInterval, the holders and scopes whose state no longer
// matters, so that the budget's memory follows the recent changes, not every suite ever seen.
func (b *openBudget) prune(now time.Time) {
	if now.Sub(b.lastPrune) < ChangeInterval {
		return
	}
	b.lastPrune = now
	for h, last := range b.holders {
		if !now.Before(last.Add(ChangeInterval)) {
			delete(b.holders, h)
		}
	}
	for k, s := range b.scopes {
		if !now.Before(s.until()) {
			delete(b.scopes, k)
		}
	}
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
