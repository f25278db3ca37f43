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

package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

const (
	// fetchTimeout bounds one shared DingTalk call; it runs on a context detached from the
	// reconcile that started it, since other reconciles may be waiting for its answer.
	fetchTimeout = 30 * time.Second
	// maxRetryAfter caps the Retry-After floor DingTalk may impose.
	maxRetryAfter = time.Hour
)

// ShutdownBudget is the longest a pass already running can still take once the manager stops: a
// DingTalk call in flight (fetchTimeout), storing the refresh token it rotated
// (refreshTokenStoreTimeout), the target write (targetWriteTimeout) and the status write
// (statusWriteTimeout). The manager's graceful shutdown timeout must be at least this: the leader
// lease is released only after it, so a new leader never uses a refresh token the old process is
// still storing. A pass whose context has ended starts no DingTalk call and no new target write.
const ShutdownBudget = fetchTimeout + refreshTokenStoreTimeout + targetWriteTimeout + statusWriteTimeout

// issued is a token DingTalk answered, with the time the request was sent (expiresAt = sentAt +
// expireIn: the clock starts before the answer, never after).
type issued struct {
	dingtalk.Token
	IssuedAt  time.Time
	ExpiresAt time.Time
	// JitterSeed seeds the token's refresh jitter (refreshInput.JitterSeed).
	JitterSeed string
}

// fetcher shares DingTalk calls between DingTalkTokens with equal credential sets.
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
// (callDeferred), so the workers serve the objects whose set has a token meanwhile.
type fetcher struct {
	clock clock.PassiveClock
	key   []byte
	// seedKey keys the refresh jitter's seeds: the installation's digest key.
	seedKey []byte
	group   singleflight.Group
	// limiter reserves places under the DingTalk client's rate limit (nil: calls wait inside).
	limiter dingtalk.Reserver

	mu     sync.Mutex
	tokens map[string]issued
	floors map[string]time.Time
	// places are the times of the places sets hold under the rate limit.
	places map[string]time.Time
}

// callDeferred is the outcome of a shared fetch whose set's place under the client-side rate
// limit is not due yet: nothing was called, and the callers come back at until.
type callDeferred struct {
	until time.Time
}

func (d *callDeferred) Error() string {
	return "the call waits for its place under the client-side rate limit until " + rfc3339(d.until)
}

// maxPlaceAge is how long a place nobody came back for is kept (its set's objects were deleted).
const maxPlaceAge = time.Minute

func newFetcher(clk clock.PassiveClock) *fetcher {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return &fetcher{clock: clk, key: key, tokens: map[string]issued{}, floors: map[string]time.Time{},
		places: map[string]time.Time{}}
}

// takePlace gives the set key its place under the client-side rate limit: ok when its call may
// be sent now (the limit has room, or the place it reserved earlier has come), else the time the
// place is due. A set holds one place, whichever of its objects asks; a place nobody came back
// for within maxPlaceAge is spent, and a new one is taken.
func (f *fetcher) takePlace(key string) (due time.Time, ok bool) {
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

// placeAhead reports whether the set key waits for a place under the rate limit.
func (f *fetcher) placeAhead(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, held := f.places[key]
	return held && f.clock.Now().Before(at)
}

// setKey names a credential set (or any other secret-derived identity) without revealing it.
func (f *fetcher) setKey(parts ...string) string {
	return hex.EncodeToString(keyedSum(f.key, parts...))
}

// jitterSeed seeds the refresh jitter of a token: equal for every object that holds it, the same
// after a restart (keyed by the installation's digest key, not the per-process key: the refresh
// time a restart recomputes is the one status shows), and revealing nothing of it.
func (f *fetcher) jitterSeed(accessToken string) string {
	return hex.EncodeToString(keyedSum(f.seedKey, "jitter", accessToken))
}

// floor is the earliest time DingTalk allows another call for the set (zero: none).
func (f *fetcher) floor(key string) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.floors[key]
	if !t.IsZero() && !f.clock.Now().Before(t) {
		delete(f.floors, key)
		return time.Time{}
	}
	return t
}

// cached returns the set's last answered token when accept takes it.
func (f *fetcher) cached(key string, accept func(issued) bool) (issued, bool) {
	f.mu.Lock()
	t, ok := f.tokens[key]
	f.mu.Unlock()
	if !ok || !f.clock.Now().Before(t.ExpiresAt) || !accept(t) {
		return issued{}, false
	}
	return t, true
}

// fetch returns a token for the set key: from the cache when accept (the acceptShared policy; nil:
// never shared) takes the cached one, else from one DingTalk call shared with concurrent callers
// of the same key.
// The second result tells whether this caller's own call answered (not a cache, not a call
// another caller made and this one joined).
func (f *fetcher) fetch(ctx context.Context, key string, accept func(issued) bool,
	call func(context.Context) (dingtalk.Token, error)) (issued, bool, error) {
	share := accept != nil
	if share {
		if t, ok := f.cached(key, accept); ok {
			return t, false, nil
		}
	}
	// ran is set when this caller's own function made the call: singleflight's Shared is true for
	// every caller of a flight that had joiners, the one that made the call included.
	ran := false
	ch := f.group.DoChan(key, func() (any, error) {
		if share {
			// A flight that landed between the check above and this one already answered.
			if t, ok := f.cached(key, accept); ok {
				return t, nil
			}
		}
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		if share && f.limiter != nil {
			due, ok := f.takePlace(key)
			if !ok {
				return issued{}, &callDeferred{until: due}
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
				f.setFloor(key, f.clock.Now().Add(min(ra, maxRetryAfter)))
			}
			// The answer may still carry a rotated refresh token (a 2xx answer with another
			// field invalid): its caller must keep it.
			return issued{Token: tok}, err
		}
		t := issued{Token: tok, IssuedAt: sentAt, ExpiresAt: sentAt.Add(tok.ExpireIn), JitterSeed: f.jitterSeed(tok.AccessToken)}
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
		t, _ := res.Val.(issued)
		return t, ran, res.Err
	}
	// Reading ran is safe: the flight's function returned before its result was sent.
	return res.Val.(issued), ran, nil
}

func (f *fetcher) setFloor(key string, t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.After(f.floors[key]) {
		f.floors[key] = t
	}
}

// store keeps t for its set and drops expired entries, so memory follows the live credential sets.
func (f *fetcher) store(key string, t issued) {
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
