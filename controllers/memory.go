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
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
)

// heldToken is the last good token of an object (either kind). Secret: only its expiry and digest
// leave memory (and the token itself, into the target Secrets).
type heldToken struct {
	UID         types.UID
	AccessToken string
	CorpID      string
	IssuedAt    time.Time
	ExpiresAt   time.Time
}

// userRecord is the content of a User token's <name>-refresh-token Secret, as last decided.
type userRecord struct {
	UID types.UID
	// RefreshToken is the newest refresh token DingTalk answered. Secret.
	RefreshToken string
	// Consumed is the refresh token the Secret held when the rotation that answered RefreshToken
	// read it (RefreshToken itself once stored): a Secret holding any other was written by
	// someone else meanwhile, and is not overwritten. Secret.
	Consumed string
	// Used are the HMACs (keyed by the UID) of the bootstrap values already used.
	Used []string
	// Stored is false while the refresh-token Secret does not hold this record yet.
	Stored bool
}

// usedValue reports whether the bootstrap value is on the used list (under the installation key,
// or under the UID alone as earlier versions wrote it).
func (u userRecord) usedValue(d digest.Digester, uid types.UID, value string) bool {
	return slices.ContainsFunc(u.Used, func(used string) bool { return d.Matches(used, uid, "bootstrap", value) })
}

// claim records which DingTalkToken uses a user bootstrap value in this process.
type claim struct {
	key types.NamespacedName
	uid types.UID
}

// memory is the reconcilers' in-process state of the objects (either kind), keyed by the object
// and checked against its UID (an object deleted and re-created under the same name starts
// afresh): the last good token, the token its targets were last written with, a User token's
// refresh-token record, the bootstrap values claimed, the refresh requests seen. What this
// process wrote (read-your-writes) is kept with the owned Secrets (ownedsecret.Writes).
type memory struct {
	mu     sync.Mutex
	tokens map[types.NamespacedName]*heldToken
	// shown is, per object, the token its target Secrets were last written or verified to hold: it may be older than tokens' (a refresh whose target write has not happened yet). When
	// it is the same token it shares tokens' record. Records are never changed once stored.
	shown  map[types.NamespacedName]*heldToken
	users  map[types.NamespacedName]userRecord
	claims map[string]claim
	// requests is, per object, the last refresh-requested-at value seen.
	requests map[types.NamespacedName]requestSeen
}

type requestSeen struct {
	uid   types.UID
	value string
}

func newMemory() *memory {
	return &memory{
		tokens:   map[types.NamespacedName]*heldToken{},
		shown:    map[types.NamespacedName]*heldToken{},
		users:    map[types.NamespacedName]userRecord{},
		claims:   map[string]claim{},
		requests: map[types.NamespacedName]requestSeen{},
	}
}

func (m *memory) token(key types.NamespacedName, uid types.UID) *heldToken {
	return m.held(m.tokens, key, uid)
}

func (m *memory) setToken(key types.NamespacedName, t heldToken) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tokens[key] = &t
}

// shownToken is the token the object's target Secret was last written or verified to hold.
func (m *memory) shownToken(key types.NamespacedName, uid types.UID) *heldToken {
	return m.held(m.shown, key, uid)
}

// setShown records the token the target Secret holds, sharing the held token's record when it is
// that token (the common case: one record per object).
func (m *memory) setShown(key types.NamespacedName, t heldToken) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.tokens[key]; cur != nil && *cur == t {
		m.shown[key] = cur
		return
	}
	m.shown[key] = &t
}

// held looks key up in one of memory's token maps and returns a copy; a token of another UID (an
// older object of the same name) is not returned.
func (m *memory) held(from map[types.NamespacedName]*heldToken, key types.NamespacedName, uid types.UID) *heldToken {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := from[key]
	if !ok || t.UID != uid {
		return nil
	}
	c := *t
	return &c
}

func (m *memory) user(key types.NamespacedName, uid types.UID) *userRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[key]
	if !ok || u.UID != uid {
		return nil
	}
	u.Used = slices.Clone(u.Used)
	return &u
}

func (m *memory) setUser(key types.NamespacedName, u userRecord) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u.Used = slices.Clone(u.Used)
	m.users[key] = u
}

// holderOf names another DingTalkToken whose newest refresh token in memory is value (empty:
// none): a refresh token stored for one DingTalkToken is never a bootstrap value for another.
func (m *memory) holderOf(value string, self types.NamespacedName) types.NamespacedName {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, u := range m.users {
		if key != self && value != "" && u.RefreshToken == value {
			return key
		}
	}
	return types.NamespacedName{}
}

// claim makes (key, uid) the user of a bootstrap value unless another live DingTalkToken claimed it
// first; it returns the claimant.
func (m *memory) claim(bootstrap string, key types.NamespacedName, uid types.UID) claim {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.claims[bootstrap]
	if !ok || c.key == key {
		c = claim{key: key, uid: uid}
		m.claims[bootstrap] = c
	}
	return c
}

// forget drops everything held for a deleted object.
func (m *memory) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tokens, key)
	delete(m.shown, key)
	delete(m.users, key)
	delete(m.requests, key)
	for k, c := range m.claims {
		if c.key == key {
			delete(m.claims, k)
		}
	}
}

// firstSight reports whether value is new for the object key (uid): the refresh-requested-at
// annotation's events are emitted once per value.
func (m *memory) firstSight(key types.NamespacedName, uid types.UID, value string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen, ok := m.requests[key]
	if ok && seen.uid == uid && seen.value == value {
		return false
	}
	m.requests[key] = requestSeen{uid: uid, value: value}
	return true
}
