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

// Package memory is the reconcilers' in-process state of the objects (either kind): the last
// good token, the token the targets were last written with, a User token's refresh-token record,
// the bootstrap values claimed, the refresh requests seen. Everything is keyed by the object and
// checked against its UID.
package memory

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/refreshtoken"
)

// Token is the last good token of an object (either kind). Secret: only its expiry and digest
// leave memory (and the token itself, into the target Secrets).
type Token struct {
	UID         types.UID
	AccessToken string
	CorpID      string
	IssuedAt    time.Time
	ExpiresAt   time.Time
}

// claim records which DingTalkToken uses a user bootstrap value in this process.
type claim struct {
	key types.NamespacedName
	uid types.UID
}

// Memory is the in-process state of the objects, keyed by the object and checked against its UID
// (an object deleted and re-created under the same name starts afresh). What this process wrote
// (read-your-writes) is kept with the owned Secrets (ownedsecret.Writes).
type Memory struct {
	mu     sync.Mutex
	tokens map[types.NamespacedName]*Token
	// shown is, per object, the token its target Secrets were last written or verified to hold:
	// it may be older than tokens' (a refresh whose target write has not happened yet). When it
	// is the same token it shares tokens' record. Records are never changed once stored.
	shown map[types.NamespacedName]*Token
	users map[types.NamespacedName]refreshtoken.Record
	// claims are the bootstrap values in use, by a key that reveals nothing of them; claimed is
	// each object's one claim (a new one drops its last: memory does not grow per re-authorization).
	claims  map[string]claim
	claimed map[types.NamespacedName]string
	// requests is, per object, the last refresh-requested-at value seen.
	requests map[types.NamespacedName]requestSeen
}

type requestSeen struct {
	uid   types.UID
	value string
}

func New() *Memory {
	return &Memory{
		tokens:   map[types.NamespacedName]*Token{},
		shown:    map[types.NamespacedName]*Token{},
		users:    map[types.NamespacedName]refreshtoken.Record{},
		claims:   map[string]claim{},
		claimed:  map[types.NamespacedName]string{},
		requests: map[types.NamespacedName]requestSeen{},
	}
}

func (m *Memory) Token(key types.NamespacedName, uid types.UID) *Token {
	return m.held(m.tokens, key, uid)
}

func (m *Memory) SetToken(key types.NamespacedName, t Token) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tokens[key] = &t
}

// Shown is the token the object's target Secret was last written or verified to hold.
func (m *Memory) Shown(key types.NamespacedName, uid types.UID) *Token {
	return m.held(m.shown, key, uid)
}

// SetShown records the token the target Secret holds, sharing the held token's record when it is
// that token (the common case: one record per object).
func (m *Memory) SetShown(key types.NamespacedName, t Token) {
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
func (m *Memory) held(from map[types.NamespacedName]*Token, key types.NamespacedName, uid types.UID) *Token {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := from[key]
	if !ok || t.UID != uid {
		return nil
	}
	c := *t
	return &c
}

func (m *Memory) User(key types.NamespacedName, uid types.UID) *refreshtoken.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[key]
	if !ok || u.UID != uid {
		return nil
	}
	u = u.Clone()
	return &u
}

func (m *Memory) SetUser(key types.NamespacedName, u refreshtoken.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users[key] = u.Clone()
}

// HolderOf names another DingTalkToken whose newest refresh token in memory is value (empty:
// none): a refresh token stored for one DingTalkToken is never a bootstrap value for another.
func (m *Memory) HolderOf(value string, self types.NamespacedName) types.NamespacedName {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, u := range m.users {
		if key != self && value != "" && u.RefreshToken == value {
			return key
		}
	}
	return types.NamespacedName{}
}

// Claim makes (key, uid) the user of a bootstrap value (named by a key that reveals nothing of
// it) unless another live DingTalkToken claimed it first; it returns the claimant's key.
func (m *Memory) Claim(bootstrap string, key types.NamespacedName, uid types.UID) types.NamespacedName {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.claims[bootstrap]
	if !ok || c.key == key {
		c = claim{key: key, uid: uid}
		if last, had := m.claimed[key]; had && last != bootstrap {
			delete(m.claims, last) // the value this object used before: its own Secret lists it as used
		}
		m.claims[bootstrap] = c
		m.claimed[key] = bootstrap
	}
	return c.key
}

// Forget drops everything held for a deleted object.
func (m *Memory) Forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tokens, key)
	delete(m.shown, key)
	delete(m.users, key)
	delete(m.requests, key)
	if last, had := m.claimed[key]; had && m.claims[last].key == key {
		delete(m.claims, last)
	}
	delete(m.claimed, key)
}

// FirstSight reports whether value is new for the object key (uid): the refresh-requested-at
// annotation's events are emitted once per value.
func (m *Memory) FirstSight(key types.NamespacedName, uid types.UID, value string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen, ok := m.requests[key]
	if ok && seen.uid == uid && seen.value == value {
		return false
	}
	m.requests[key] = requestSeen{uid: uid, value: value}
	return true
}
