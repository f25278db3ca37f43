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
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// digestPrefix marks the short HMACs shown in status and annotations.
const digestPrefix = "hmac:"

// keyedSum returns HMAC-SHA256(key, parts), each part length-prefixed so that ("ab","c") and
// ("a","bc") differ.
func keyedSum(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		m.Write(n[:])
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// digester makes every digest the operator shows (status, the token-digest annotation) or keeps
// (the used bootstrap values of refresh-token Secrets): an HMAC keyed by the installation's digest
// key (LoadDigestKey) of the object's UID and the value, so that it tells that a value changed
// without revealing it, equal values of two objects differ, and nobody without the key can test a
// guess (64 bits: enough to tell a change, too short to be a handle).
type digester struct{ key []byte }

// of is the digest of parts for the object uid.
func (d digester) of(uid types.UID, parts ...string) string {
	return digestPrefix + hex.EncodeToString(keyedSum(d.key, append([]string{string(uid)}, parts...)...)[:8])
}

// matches reports whether stored is the digest of parts for uid: under the installation key, or
// keyed by the UID alone as earlier versions wrote them. Those are accepted when read (an upgrade
// then neither fetches every token again nor replays a used bootstrap value) and never written.
func (d digester) matches(stored string, uid types.UID, parts ...string) bool {
	return stored != "" && (stored == d.of(uid, parts...) || stored == uidDigest(uid, parts...))
}

// token is status.tokenDigest of an access token.
func (d digester) token(uid types.UID, token string) string { return d.of(uid, "token", token) }

// bootstrap is the digest of a used User bootstrap value (authCode or refreshToken).
func (d digester) bootstrap(uid types.UID, value string) string {
	return d.of(uid, "bootstrap", value)
}

// uidDigest is the HMAC keyed by the object's UID alone that earlier versions showed: every reader
// of the object knows the key, so it is only ever compared with (digester.matches).
func uidDigest(uid types.UID, parts ...string) string {
	return digestPrefix + hex.EncodeToString(keyedSum([]byte(uid), parts...)[:8])
}

// unitFraction maps (uid, parts) to a stable number in [0, 1): the source of every jitter, so
// that a pass recomputes the same refresh time and backoff as the pass before it.
func unitFraction(uid types.UID, parts ...string) float64 {
	s := keyedSum([]byte("jitter:"+string(uid)), parts...)
	return float64(binary.BigEndian.Uint64(s[:8])>>11) / float64(1<<53)
}

// timeKey renders t for hashing.
func timeKey(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
