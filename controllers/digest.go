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

// uidDigest is the HMAC, keyed by a DingTalkToken's UID, shown in status: it tells that a value
// changed without revealing it (64 bits: enough to tell a change, too short to be a handle).
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
