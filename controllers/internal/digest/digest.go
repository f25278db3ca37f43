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

// Package digest makes every digest the operator shows (status, the token-digest annotation) or
// keeps (the used bootstrap values of refresh-token Secrets): an HMAC keyed by the installation's
// digest key (LoadKey) of the object's UID and the value. A digest tells that a value changed
// without revealing it, equal values of two objects differ, and nobody without the key can test a
// guess (64 bits: enough to tell a change, too short to be a handle).
package digest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"

	"k8s.io/apimachinery/pkg/types"
)

// Prefix marks the short HMACs shown in status and annotations.
const Prefix = "hmac:"

// KeyedSum returns HMAC-SHA256(key, parts), each part length-prefixed so that ("ab","c") and
// ("a","bc") differ.
func KeyedSum(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		m.Write(n[:])
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// Digester makes the digests of one installation, under its digest key.
type Digester struct{ key []byte }

// New is the Digester of the installation's digest key (LoadKey).
func New(key []byte) Digester { return Digester{key: key} }

// Keyed reports whether the Digester has a key (the zero Digester has none).
func (d Digester) Keyed() bool { return len(d.key) > 0 }

// Of is the digest of parts for the object uid.
func (d Digester) Of(uid types.UID, parts ...string) string {
	return Prefix + hex.EncodeToString(KeyedSum(d.key, append([]string{string(uid)}, parts...)...)[:8])
}

// Matches reports whether stored is the digest of parts for uid: under the installation key, or
// keyed by the UID alone as earlier versions wrote them (UIDKeyed). Those are accepted when read
// (an upgrade then neither fetches every token again nor replays a used bootstrap value) and
// never written.
func (d Digester) Matches(stored string, uid types.UID, parts ...string) bool {
	return stored != "" && (stored == d.Of(uid, parts...) || stored == UIDKeyed(uid, parts...))
}

// Token is status.tokenDigest of an access token.
func (d Digester) Token(uid types.UID, token string) string { return d.Of(uid, "token", token) }

// Bootstrap is the digest of a used User bootstrap value (authCode or refreshToken).
func (d Digester) Bootstrap(uid types.UID, value string) string {
	return d.Of(uid, "bootstrap", value)
}

// UIDKeyed is the HMAC keyed by the object's UID alone that earlier versions showed: every reader
// of the object knows the key, so it is only ever compared with (Matches).
func UIDKeyed(uid types.UID, parts ...string) string {
	return Prefix + hex.EncodeToString(KeyedSum([]byte(uid), parts...)[:8])
}
