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

// Package refreshtoken keeps a User token's newest refresh token in its owned Secret
// <name>-refresh-token: the record (the refresh token, the one its rotation consumed, the digests
// of the bootstrap values already used) and its durable store. DingTalk rotates the refresh token
// on every refresh, so losing the newest one loses the user; and nobody's newer refresh token is
// ever overwritten: a write that conflicts re-reads the Secret, and when it holds neither the
// refresh token the rotation consumed nor the new one, another writer stored a newer one, which is
// kept (Save reports the conflict).
package refreshtoken

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/safe"
)

// WriteBackoff retries the refresh-token write within a pass, for at most StoreTimeout; after
// that the record stays pending in memory and the next pass writes it first.
var WriteBackoff = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 10, Cap: 5 * time.Second}

// StoreTimeout bounds the in-pass retry of a refresh-token write: short, so that a worker is not
// held for minutes and a stopping manager still sees it end.
const StoreTimeout = 20 * time.Second

// maxUsed bounds the list of used bootstrap HMACs.
const maxUsed = 16

// Record is the content of a User token's refresh-token Secret, as last decided.
type Record struct {
	UID types.UID
	// RefreshToken is the newest refresh token DingTalk answered. Secret.
	RefreshToken string
	// Consumed is the refresh token the Secret held when the rotation that answered RefreshToken
	// read it (RefreshToken itself once stored): a Secret holding any other was written by
	// someone else meanwhile, and is not overwritten. Secret.
	Consumed string
	// Used are the HMACs of the bootstrap values already used: under Salt (MarkUsed), or, as
	// earlier versions wrote them, under the installation's digest key or the UID alone.
	Used []string
	// Salt keys the used list (hex): it is kept in the Secret itself, so that the list survives a
	// new installation key. A reader of the Secret learns nothing from it it could not read there.
	Salt string
	// Stored is false while the refresh-token Secret does not hold this record yet.
	Stored bool
}

// UsedValue reports whether the bootstrap value is on the used list: under the record's salt, or
// (as earlier versions wrote it) under the installation key or the UID alone.
func (r Record) UsedValue(d digest.Digester, uid types.UID, value string) bool {
	salted := r.salted(uid, value)
	return slices.ContainsFunc(r.Used, func(used string) bool {
		return used == salted || d.Matches(used, uid, "bootstrap", value)
	})
}

// MarkUsed lists a used bootstrap value (its HMAC under the record's salt, made on first use),
// keeping the newest 16. A value already listed under the salt is not listed twice.
func (r *Record) MarkUsed(uid types.UID, value string) {
	if r.Salt == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			panic("crypto/rand failed: " + err.Error())
		}
		r.Salt = hex.EncodeToString(b)
	}
	if salted := r.salted(uid, value); !slices.Contains(r.Used, salted) {
		r.Used = append(r.Used, salted)
	}
	r.trim()
}

// salted is the HMAC of a used bootstrap value under the record's salt ("" without a salt).
func (r Record) salted(uid types.UID, value string) string {
	if r.Salt == "" {
		return ""
	}
	return digest.Prefix + hex.EncodeToString(digest.KeyedSum([]byte(r.Salt), string(uid), "bootstrap", value)[:8])
}

// trim keeps the newest 16 used values.
func (r *Record) trim() {
	if len(r.Used) > maxUsed {
		r.Used = r.Used[len(r.Used)-maxUsed:]
	}
}

// Clone is r with its own used list.
func (r Record) Clone() Record {
	r.Used = slices.Clone(r.Used)
	return r
}

// FromSecret is the record a refresh-token Secret read uncached holds.
func FromSecret(uid types.UID, s *corev1.Secret) Record {
	rt := string(s.Data[v1alpha1.RefreshTokenKey])
	rec := UsedOf(s)
	rec.UID, rec.RefreshToken, rec.Consumed, rec.Stored = uid, rt, rt, true
	return rec
}

// saltPrefix marks the salt's line in the used list.
const saltPrefix = "salt:"

// UsedOf is the used list (and its salt) a refresh-token Secret, or its view, holds.
func UsedOf(s *corev1.Secret) Record {
	var rec Record
	for _, l := range strings.Split(string(s.Data[v1alpha1.UsedBootstrapKey]), "\n") {
		switch l = strings.TrimSpace(l); {
		case strings.HasPrefix(l, saltPrefix):
			rec.Salt = strings.TrimPrefix(l, saltPrefix)
		case l != "":
			rec.Used = append(rec.Used, l)
		}
	}
	return rec
}

// Oversized names a value of a refresh-token Secret read uncached that is over
// v1alpha1.MaxCredentialValueSize ("": none is): a tenant can write its own refresh-token Secret,
// and such a value is never kept, adopted or sent to DingTalk.
func Oversized(s *corev1.Secret) string {
	for _, k := range []string{v1alpha1.RefreshTokenKey, v1alpha1.UsedBootstrapKey} {
		if s != nil && len(s.Data[k]) > v1alpha1.MaxCredentialValueSize {
			return k
		}
	}
	return ""
}

// OversizedError is Save's error when the Secret holds a value over the cap.
type OversizedError struct{ Key string }

func (e *OversizedError) Error() string {
	return fmt.Sprintf("key %q of the refresh-token Secret holds more than %d KiB", e.Key, v1alpha1.MaxCredentialValueSize>>10)
}

// Union is a followed by the entries of b it lacks.
func Union(a, b []string) []string {
	out := slices.Clone(a)
	for _, u := range b {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// Desired is the refresh-token Secret's content for the record.
func (r Record) Desired(tok *v1alpha1.DingTalkToken) ownedsecret.Desired {
	used := r.Used
	if r.Salt != "" {
		used = append([]string{saltPrefix + r.Salt}, used...)
	}
	return ownedsecret.Desired{
		Namespace: tok.Namespace, Name: tok.RefreshTokenSecretName(),
		Labels: ownedsecret.ManagedLabels(nil),
		Data: map[string][]byte{
			v1alpha1.RefreshTokenKey:  []byte(r.RefreshToken),
			v1alpha1.UsedBootstrapKey: []byte(strings.Join(used, "\n")),
		},
	}
}

// Merge adds to r the used values of other (memory's record, or the one a rotation started from)
// that r lacks, and its salt when r has none, so that those values stay recognisable.
func (r *Record) Merge(other Record) {
	if r.Salt == "" {
		r.Salt = other.Salt
	}
	r.Used = Union(r.Used, other.Used)
	r.trim()
}

// storeStep is what a refresh-token write does with the Secret as last read.
type storeStep int

const (
	// storeWrite: the Secret holds the refresh token the record replaces, or this one, or none
	// (it is gone, or emptied): write the record under its resourceVersion.
	storeWrite storeStep = iota
	// storeAdopt: the Secret holds a refresh token neither consumed nor written by this record:
	// another writer's, newer. Keep it: write only the union of the used values.
	storeAdopt
)

// nextStoreStep decides how to store rec over what the Secret holds (exists: it exists).
func nextStoreStep(rec Record, exists bool, liveRefreshToken string) storeStep {
	if !exists || liveRefreshToken == "" || liveRefreshToken == rec.RefreshToken || liveRefreshToken == rec.Consumed {
		return storeWrite
	}
	return storeAdopt
}

// Secret is one DingTalkToken's refresh-token Secret, read and written through the owned
// Secrets' store.
type Secret struct {
	Store *ownedsecret.Store
	Owner *v1alpha1.DingTalkToken
	Log   logr.Logger
}

func (s Secret) key() types.NamespacedName {
	return types.NamespacedName{Namespace: s.Owner.Namespace, Name: s.Owner.RefreshTokenSecretName()}
}

// ForeignMessage says that the Secret's name is taken by a Secret the DingTalkToken does not own.
func (s Secret) ForeignMessage() string {
	return fmt.Sprintf("Secret %s exists and is not owned by this DingTalkToken: the refresh token cannot be kept",
		s.Owner.RefreshTokenSecretName())
}

// Read reads the Secret uncached (live nil: there is none); foreign: its name holds a Secret the
// DingTalkToken does not own.
func (s Secret) Read(ctx context.Context) (live *corev1.Secret, foreign bool, _ error) {
	st, err := s.Store.Live(ctx, s.Owner, s.key())
	return st.Live, st.Foreign, err
}

// Holds reports whether the Secret, as the cache shows it (read again when the cache may predate
// this process's own write), holds rec already.
func (s Secret) Holds(ctx context.Context, rec Record) (bool, error) {
	st, err := s.Store.Get(ctx, s.Owner, s.key(), ownedsecret.GetOptions{})
	return st.View != nil && ownedsecret.UpToDate(s.Owner, st.View, rec.Desired(s.Owner)), err
}

// Save writes rec into the Secret: first under the resourceVersion of first (the read right
// before the grant; nil: read it now), then, after a conflict, under that of a new read, retried
// with WriteBackoff for at most StoreTimeout on a context that outlives ctx. A Secret holding
// another writer's refresh token is adopted, not overwritten (conflicted). It returns the record
// to keep in memory: stored, or still pending when the error says it could not be.
func (s Secret) Save(ctx context.Context, rec Record, first *corev1.Secret) (_ Record, conflicted bool, _ error) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), StoreTimeout)
	defer cancel()
	live, fresh := first, first != nil
	var last error
	err := wait.ExponentialBackoffWithContext(wctx, WriteBackoff, func(ctx context.Context) (bool, error) {
		if !fresh {
			var foreign bool
			if live, foreign, last = s.Read(ctx); last == nil && foreign {
				last = errors.New(s.ForeignMessage())
			}
			if last != nil {
				return false, nil
			}
		}
		fresh = false
		if k := Oversized(live); k != "" {
			// Never adopted, never overwritten: the pass reports CredentialsInvalid.
			return false, &OversizedError{Key: k}
		}
		if nextStoreStep(rec, live != nil, liveRefreshToken(live)) == storeAdopt {
			other := FromSecret(rec.UID, live)
			other.Merge(rec)
			s.Log.Info("Kept the refresh token another writer stored; this rotation's is dropped")
			rec, conflicted = other, true
		}
		last = s.Store.Write(ctx, s.Owner, live, rec.Desired(s.Owner))
		switch {
		case last == nil:
			return true, nil
		case apierrors.IsConflict(last) || apierrors.IsAlreadyExists(last):
			s.Log.V(1).Info("Re-reading the refresh-token Secret: it changed since it was read")
		default:
			s.Log.V(1).Info("Retrying the refresh-token Secret write", "reason", apierrors.ReasonForError(last))
		}
		return false, nil
	})
	if oversized, ok := errors.AsType[*OversizedError](err); ok {
		return rec, conflicted, oversized
	}
	if err != nil {
		s.Log.Info("Refresh-token Secret not written yet; kept in memory and retried first in the next pass",
			"reason", apierrors.ReasonForError(last))
		if last == nil {
			last = err
		}
		return rec, conflicted, fmt.Errorf("storing the refresh token of %s/%s: %w", s.Owner.Namespace, s.Owner.Name, safe.APIError(last))
	}
	rec.Stored, rec.Consumed = true, rec.RefreshToken
	return rec, conflicted, nil
}

// liveRefreshToken is the refresh token a Secret read uncached holds ("" for none).
func liveRefreshToken(s *corev1.Secret) string {
	if s == nil {
		return ""
	}
	return string(s.Data[v1alpha1.RefreshTokenKey])
}
