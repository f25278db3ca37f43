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

package policy

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// TestSharedSetRefreshTime: the members of a credential set (different UIDs, one shared token)
// fall due together, at the token's time, and the jitter spreads sets: over many cycles a set is
// refreshed at about 65% of the token's lifetime on average (expiry - lifetime/3 - half the
// jitter), with one call per cycle. Seeding the jitter per member instead let the member with the
// largest jitter pull the whole set forward (about 63.6% with ten members).
func TestSharedSetRefreshTime(t *testing.T) {
	const (
		members  = 10
		cycles   = 60
		lifetime = 2 * time.Hour
	)
	type member struct {
		uid                 types.UID
		issuedAt, expiresAt time.Time
		seed                string
	}
	set := make([]member, members)
	for i := range set {
		set[i].uid = types.UID(fmt.Sprintf("member-%02d", i))
	}
	input := func(m member, now time.Time) Input {
		return Input{Now: now, UID: m.uid, IssuedAt: m.issuedAt, ExpiresAt: m.expiresAt, JitterSeed: m.seed,
			CredentialsDigest: "hmac:c", LastCredentialsDigest: "hmac:c"}
	}
	var offer *Issued // the set's last fetched token (the fetcher's cache)
	calls := 0
	var fractions []float64
	now := t0
	for calls <= cycles {
		// Each member's pass at now, in order, as the controller would run them.
		for i := range set {
			in := input(set[i], now)
			if !Decide(in).Fetch {
				continue
			}
			if offer == nil || !AcceptShared(in, *offer) {
				if offer != nil {
					fractions = append(fractions, float64(now.Sub(offer.IssuedAt))/float64(lifetime))
				}
				calls++
				offer = &Issued{IssuedAt: now, ExpiresAt: now.Add(lifetime), JitterSeed: fmt.Sprintf("token-%d", calls)}
			}
			set[i].issuedAt, set[i].expiresAt, set[i].seed = offer.IssuedAt, offer.ExpiresAt, offer.JitterSeed
		}
		// Every member holds the set's token and falls due at the same time.
		next := input(set[0], now).dueAt()
		for _, m := range set[1:] {
			if due := input(m, now).dueAt(); !due.Equal(next) {
				t.Fatalf("cycle %d: %s is due at %s, %s at %s", calls, set[0].uid, next, m.uid, due)
			}
		}
		if !next.After(now) {
			t.Fatalf("cycle %d: due at %s, not after %s", calls, next, now)
		}
		now = next
	}
	var sum float64
	for _, f := range fractions {
		sum += f
		if f < 1-(1+refreshJitter)/3-0.001 || f > 2.0/3 {
			t.Errorf("refreshed at %.4f of the lifetime, outside [expiry - refreshBefore - 10%%, expiry - refreshBefore]", f)
		}
	}
	if mean := sum / float64(len(fractions)); mean < 0.645 || mean > 0.655 {
		t.Errorf("refreshed at %.4f of the lifetime on average over %d cycles, want about 0.65", mean, len(fractions))
	}
}
