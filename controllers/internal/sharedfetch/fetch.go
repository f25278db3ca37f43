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

// Package sharedfetch shares DingTalk calls between objects with equal credential sets: one call
// per refresh for a whole set, its answer kept for members that fall due a little later, a
// Retry-After floor per set, and each set's place under the client-side rate limit.
package sharedfetch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/safe"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// CallTimeout bounds one shared DingTalk call; it runs on a context detached from the reconcile
// that started it, since other reconciles may be waiting for its answer.
const CallTimeout = 30 * time.Second

// Issued is a token DingTalk answered, with the time the request was sent (expiresAt = sentAt +
// expireIn: the clock starts before the answer, never after).
type Issued struct {
	dingtalk.Token
	IssuedAt  time.Time
	ExpiresAt time.Time
	// JitterSeed seeds the token's refresh jitter (refreshInput.JitterSeed).
	JitterSeed string
}

// Fetcher shares DingTalk calls between objects with equal credential sets.
//
// A credential set is identified by an HMAC of the type, every credential value, corpId and the
// endpoint, keyed by a random per-process key: equal sets collide, any differing value does not,
// and the map keys reveal nothing. Concurrent misses of one set collapse into one call
// (singleflight); the answered token is kept until it expires so that DingTalkTokens whose refresh
// falls due a little later in the same window take it instead of calling again. Retry-After answers
// set a floor for the whole set.
//
// Shared calls take their place under the client-side rate limit ahead (limiter): a set whose
// place is not due yet is not waited for inside a worker; its callers are told when to come back
// (Deferred), so the workers serve the objects whose set has a token meanwhile.
type Fetcher struct {
	clock clock.PassiveClock
	key   []byte
	// seedKey keys the refresh jitter's seeds: the installation's digest key.
	seedKey []byte
	group   singleflight.Group
	// limiter reserves places under the DingTalk client's rate limit (nil: calls wait inside).
	limiter dingtalk.Reserver

	mu     sync.Mutex
	tokens map[string]Issued
	floors map[string]time.Time
	// places are the times of the places sets hold under the rate limit.
	places map[string]time.Time
}

// Deferred is the outcome of a shared fetch whose set's place under the client-side rate
// limit is not due yet: nothing was called, and the callers come back at until.
type Deferred struct {
	Until time.Time
}

func (d *Deferred) Error() string {
	return "the call waits for its place under the client-side rate limit until " + d.Until.UTC().Format(time.RFC3339)
}

// maxPlaceAge is how long a place nobody came back for is kept (its set's objects were deleted).
const maxPlaceAge = time.Minute

// New is a Fetcher timed by clk, its refresh-jitter seeds keyed by seedKey (the installation's
// digest key), its shared calls taking their places under limiter's rate limit (nil: calls wait
// inside the DingTalk client).
func New(clk clock.PassiveClock, seedKey []byte, limiter dingtalk.Reserver) *Fetcher {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return &Fetcher{clock: clk, key: key, seedKey: seedKey, limiter: limiter, tokens: map[string]Issued{}, floors: map[string]time.Time{},
		places: map[string]time.Time{}}
}

// takePlace gives the set key its place under the client-side rate limit: ok when its call may
// be sent now (the limit has room, or the place it reserved earlier has come), else the time the
// place is due. A set holds one place, whichever of its objects asks; a place nobody came back
// for within maxPlaceAge is spent, and a new one is taken.
func (f *Fetcher) takePlace(key string) (due time.Time, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	if at, held := f.places[key]; held && now.Sub(at) <= maxPlaceAge {
		if now.Before(at) {
			return at, false
		}
		delete(f.places, key)
		return time.Time{}, true
	}
	d := f.limiter.Reserve()
	if d <= 0 {
		return time.Time{}, true
	}
	f.places[key] = now.Add(d)
	return f.places[key], false
}

// PlaceAhead reports whether the set key waits for a place under the rate limit.
func (f *Fetcher) PlaceAhead(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, held := f.places[key]
	return held && f.clock.Now().Before(at)
}

// SetKey names a credential set (or any other secret-derived identity) without revealing it.
func (f *Fetcher) SetKey(parts ...string) string {
	return hex.EncodeToString(digest.KeyedSum(f.key, parts...))
}

// JitterSeed seeds the refresh jitter of a token: equal for every object that holds it, the same
// after a restart (keyed by the installation's digest key, not the per-process key: the refresh
// time a restart recomputes is the one status shows), and revealing nothing of it.
func (f *Fetcher) JitterSeed(accessToken string) string {
	return hex.EncodeToString(digest.KeyedSum(f.seedKey, "jitter", accessToken))
}

// Floor is the earliest time DingTalk allows another call for the set (zero: none).
func (f *Fetcher) Floor(key string) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.floors[key]
	if !t.IsZero() && !f.clock.Now().Before(t) {
		delete(f.floors, key)
		return time.Time{}
	}
	return t
}

// Cached returns the set's last answered token when accept takes it.
func (f *Fetcher) Cached(key string, accept func(Issued) bool) (Issued, bool) {
	f.mu.Lock()
	t, ok := f.tokens[key]
	f.mu.Unlock()
	if !ok || !f.clock.Now().Before(t.ExpiresAt) || !accept(t) {
		return Issued{}, false
	}
	return t, true
}

// Fetch returns a token for the set key: from the cache when accept (the policy of taking a shared token; nil:
// never shared) takes the cached one, else from one DingTalk call shared with concurrent callers
// of the same key.
// The second result tells whether this caller's own call answered (not a cache, not a call
// another caller made and this one joined).
func (f *Fetcher) Fetch(ctx context.Context, key string, accept func(Issued) bool,
	call func(context.Context) (dingtalk.Token, error)) (Issued, bool, error) {
	share := accept != nil
	if share {
		if t, ok := f.Cached(key, accept); ok {
			return t, false, nil
		}
	}
	// ran is set when this caller's own function made the call: singleflight's Shared is true for
	// every caller of a flight that had joiners, the one that made the call included.
	ran := false
	ch := f.group.DoChan(key, func() (any, error) {
		if share {
			// A flight that landed between the check above and this one already answered.
			if t, ok := f.Cached(key, accept); ok {
				return t, nil
			}
		}
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CallTimeout)
		defer cancel()
		if share && f.limiter != nil {
			due, ok := f.takePlace(key)
			if !ok {
				return Issued{}, &Deferred{Until: due}
			}
			callCtx = dingtalk.WithReservedPlace(callCtx)
		}
		// Whole seconds: status times have second precision, so memory and status agree after a restart.
		sentAt := f.clock.Now().Truncate(time.Second)
		ran = true
		tok, err := call(callCtx)
		if err != nil {
			if ra := dingtalk.RetryAfterOf(err); ra > 0 {
				// Counted from the answer, to the nanosecond: never a call before DingTalk allows it.
				f.setFloor(key, f.clock.Now().Add(min(ra, safe.MaxRetryAfter)))
			}
			// The answer may still carry a rotated refresh token (a 2xx answer with another
			// field invalid): its caller must keep it.
			return Issued{Token: tok}, err
		}
		t := Issued{Token: tok, IssuedAt: sentAt, ExpiresAt: sentAt.Add(tok.ExpireIn), JitterSeed: f.JitterSeed(tok.AccessToken)}
		if share {
			f.store(key, t)
		}
		return t, nil
	})
	// The answer is awaited even when ctx ends (the manager stopping): the call runs on its own
	// bounded context, and a User answer carries a rotated refresh token that must be stored, not
	// dropped (DingTalk has already invalidated the old one).
	res := <-ch
	if res.Err != nil {
		t, _ := res.Val.(Issued)
		return t, ran, res.Err
	}
	// Reading ran is safe: the flight's function returned before its result was sent.
	return res.Val.(Issued), ran, nil
}

func (f *Fetcher) setFloor(key string, t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.After(f.floors[key]) {
		f.floors[key] = t
	}
}

// store keeps t for its set and drops expired entries, so memory follows the live credential sets.
func (f *Fetcher) store(key string, t Issued) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	for k, v := range f.tokens {
		if !now.Before(v.ExpiresAt) {
			delete(f.tokens, k)
		}
	}
	for k, v := range f.floors {
		if !now.Before(v) {
			delete(f.floors, k)
		}
	}
	for k, v := range f.places {
		if now.Sub(v) > maxPlaceAge {
			delete(f.places, k)
		}
	}
	f.tokens[key] = t
}
