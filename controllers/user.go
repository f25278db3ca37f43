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
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/safe"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// User tokens: DingTalk rotates the refresh token on every refresh (the simulator invalidates the
// old one), so losing the newest one loses the user. Three rules keep it, whatever the API server
// does and whoever else writes:
//   - No rotation starts without a live read: right before a grant, <name>-refresh-token is read
//     uncached. When that read fails, DingTalk is not called: the pass fails with the API error
//     and is retried with controller-runtime's backoff (the access token still has a third of its
//     lifetime), so no refresh token is rotated that could not be stored.
//   - The rotated refresh token is stored first (before the target Secret), under the
//     resourceVersion of that read, on a context independent of the reconcile, retried in-process;
//     while the API server is away it stays pending in memory and the next pass writes it first.
//     A 2xx answer that carries a refresh token is stored even when another field is invalid.
//   - Nobody's newer refresh token is overwritten: a write that conflicts re-reads the Secret, and
//     when it holds neither the refresh token the rotation consumed nor the new one, another
//     writer stored a newer one. It is kept (with the used bootstrap values of both), the rotated
//     one is dropped, and the attempt is CredentialsConflict.
// The only loss window left is a crash between DingTalk's answer and the write (docs/security.md).

// refreshTokenWriteBackoff retries the refresh-token write within a pass, for at most
// refreshTokenStoreTimeout; after that the record stays pending in memory and the next pass writes
// it first (flushRefreshToken).
var refreshTokenWriteBackoff = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 10, Cap: 5 * time.Second}

// refreshTokenStoreTimeout bounds the in-pass retry of a refresh-token write: short, so that a
// worker is not held for minutes and a stopping manager (ShutdownBudget) still sees it end.
const refreshTokenStoreTimeout = 20 * time.Second

// maxUsedBootstraps bounds the list of used bootstrap HMACs.
const maxUsedBootstraps = 16

// refreshUser fetches a User token with the right grant: a new (unused) bootstrap authCode or
// refreshToken from the credentials Secret wins (re-authorization); else the stored refresh token,
// as the live read right before the grant shows it. The rotated refresh token is stored before
// it returns; an error is an API error (no call was made when the live read failed; else the
// store failed, the attempt is still returned, to be recorded).
func (r *DingTalkTokenReconciler) refreshUser(ctx context.Context, p *pass, creds *credentials) (attempt, error) {
	live, refused, err := r.readRefreshSecret(ctx, p)
	if err != nil || refused != nil {
		return attempt{failure: refused}, err
	}
	rec := r.currentRecord(p, live)
	rec.recoverUsed(r.digests, p.uid, &p.tok.Status.TokenStatus, creds)
	grant := dingtalk.UserCredentials{ClientID: creds.user.ClientID, ClientSecret: creds.user.ClientSecret}
	bootstrap := ""
	switch {
	case creds.user.AuthCode != "" && !rec.usedValue(r.digests, p.uid, creds.user.AuthCode):
		bootstrap, grant.AuthCode = creds.user.AuthCode, creds.user.AuthCode
	case creds.user.RefreshToken != "" && !rec.usedValue(r.digests, p.uid, creds.user.RefreshToken):
		bootstrap, grant.RefreshToken = creds.user.RefreshToken, creds.user.RefreshToken
	case rec.RefreshToken != "":
		grant.RefreshToken = rec.RefreshToken
	case creds.user.AuthCode == "" && creds.user.RefreshToken == "":
		return attempt{failure: &failure{reason: v1alpha1.ReasonCredentialsNotFound, message: fmt.Sprintf(
			"credentials Secret %q has neither a refreshToken nor an authCode, and no refresh token is stored", p.spec.Credentials.Name)}}, nil
	default:
		return attempt{creds: creds, failure: &failure{reason: v1alpha1.ReasonReauthorizationRequired,
			message: "the authCode/refreshToken in the credentials Secret was already used and no refresh token is stored: authorize again"}}, nil
	}
	if bootstrap != "" {
		other, err := r.bootstrapClaimedBy(ctx, p, bootstrap)
		if err != nil {
			return attempt{}, err
		}
		if other.Name != "" {
			return attempt{failure: &failure{reason: v1alpha1.ReasonCredentialsConflict, message: conflictMessage(p.tok.Namespace, other)}}, nil
		}
	}
	t, _, callErr := r.fetcher.Fetch(ctx, p.creds.setKey, nil, func(ctx context.Context) (dingtalk.Token, error) {
		return r.dingtalk.UserAccessToken(ctx, grant)
	})
	if callErr != nil && t.RefreshToken == "" {
		return attempt{creds: creds, failure: dingTalkFailure(callErr)}, nil
	}
	// DingTalk rotated the refresh token (a 2xx answer carried one, even with another field
	// invalid): it is stored before anything else happens, in place of the one the read showed.
	rec.Consumed, rec.Stored = rec.RefreshToken, false
	if t.RefreshToken != "" {
		rec.RefreshToken = t.RefreshToken
	}
	if bootstrap != "" {
		rec.Used = append(rec.Used, r.digests.Bootstrap(p.uid, bootstrap))
	}
	rec.trimUsed()
	r.memory.setUser(p.key, rec)
	conflicted, storeErr := r.storeRefreshToken(ctx, p, rec, live)
	switch {
	case conflicted:
		return attempt{creds: creds, failure: writersConflict(p.tok.RefreshTokenSecretName())}, storeErr
	case callErr != nil:
		return attempt{creds: creds, failure: dingTalkFailure(callErr)}, storeErr
	}
	return attempt{creds: creds, token: &t, called: true}, storeErr
}

// writersConflict is CredentialsConflict for a refresh token another writer stored meanwhile.
func writersConflict(secret string) *failure {
	return &failure{reason: v1alpha1.ReasonCredentialsConflict, message: fmt.Sprintf(
		"Secret %s was given another refresh token while this DingTalkToken rotated its own: the other writer's is kept, "+
			"this rotation is dropped; keep one writer per user grant", secret)}
}

// readRefreshSecret reads <name>-refresh-token uncached (nil: there is none). A Secret of that
// name not owned by this DingTalkToken is a TargetConflict.
func (r *DingTalkTokenReconciler) readRefreshSecret(ctx context.Context, p *pass) (*corev1.Secret, *failure, error) {
	st, err := r.secrets.Live(ctx, p.tok, refreshSecretKey(p.tok))
	switch {
	case err != nil:
		return nil, nil, err
	case st.Foreign:
		return nil, &failure{reason: v1alpha1.ReasonTargetConflict, message: fmt.Sprintf(
			"Secret %s exists and is not owned by this DingTalkToken: the refresh token cannot be kept", p.tok.RefreshTokenSecretName())}, nil
	}
	return st.Live, nil, nil
}

// refreshSecretKey names a User token's refresh-token Secret.
func refreshSecretKey(tok *v1alpha1.DingTalkToken) types.NamespacedName {
	return types.NamespacedName{Namespace: tok.Namespace, Name: tok.RefreshTokenSecretName()}
}

// currentRecord is the record a rotation starts from: the live Secret's (it wins over memory: a
// refresh token stored by someone else is newer than ours), with memory's used bootstrap values
// added; memory's alone when the Secret is gone (deleted: restored from memory by the write).
func (r *DingTalkTokenReconciler) currentRecord(p *pass, live *corev1.Secret) userRecord {
	mem := r.memory.user(p.key, p.uid)
	if live == nil {
		if mem != nil {
			return *mem
		}
		return userRecord{UID: p.uid}
	}
	rec := recordOf(p.uid, live)
	if mem != nil {
		rec.Used = unionUsed(rec.Used, mem.Used)
	}
	return rec
}

// recoverUsed rebuilds the used-bootstrap list of a record that was lost: the refresh-token
// Secret is gone and memory holds nothing (deleted while the operator was down, or after a
// restart), yet status shows a token was issued. When the credentials are those of the last
// attempt (status.credentialsDigest covers the bootstrap values), the bootstrap values in the
// Secret were already used by then (an unused one always wins), so they are marked used and not
// replayed: ReauthorizationRequired follows. A new value there (re-authorization) still wins.
func (rec *userRecord) recoverUsed(d digest.Digester, uid types.UID, st *v1alpha1.TokenStatus, creds *credentials) {
	if rec.Stored || rec.RefreshToken != "" || len(rec.Used) > 0 || st.TokenDigest == "" ||
		!creds.isDigest(d, st.CredentialsDigest, uid) {
		return
	}
	for _, b := range []string{creds.user.AuthCode, creds.user.RefreshToken} {
		if b != "" {
			rec.Used = append(rec.Used, d.Bootstrap(uid, b))
		}
	}
}

// recordOf is the record a refresh-token Secret read uncached holds.
func recordOf(uid types.UID, s *corev1.Secret) userRecord {
	rt := string(s.Data[v1alpha1.RefreshTokenKey])
	return userRecord{UID: uid, RefreshToken: rt, Consumed: rt, Used: usedOf(s), Stored: true}
}

// usedOf lists the used-bootstrap HMACs a refresh-token Secret (or its view) holds.
func usedOf(s *corev1.Secret) []string {
	var out []string
	for _, l := range strings.Split(string(s.Data[v1alpha1.UsedBootstrapKey]), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// unionUsed is a followed by the entries of b it lacks.
func unionUsed(a, b []string) []string {
	out := slices.Clone(a)
	for _, u := range b {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// trimUsed keeps the newest maxUsedBootstraps used values.
func (rec *userRecord) trimUsed() {
	if len(rec.Used) > maxUsedBootstraps {
		rec.Used = rec.Used[len(rec.Used)-maxUsedBootstraps:]
	}
}

// secret is the refresh-token Secret's desired content.
func (rec userRecord) secret(tok *v1alpha1.DingTalkToken) ownedsecret.Desired {
	return ownedsecret.Desired{
		Namespace: tok.Namespace, Name: tok.RefreshTokenSecretName(),
		Labels: ownedsecret.ManagedLabels(nil),
		Data: map[string][]byte{
			v1alpha1.RefreshTokenKey:  []byte(rec.RefreshToken),
			v1alpha1.UsedBootstrapKey: []byte(strings.Join(rec.Used, "\n")),
		},
	}
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
func nextStoreStep(rec userRecord, exists bool, liveRefreshToken string) storeStep {
	if !exists || liveRefreshToken == "" || liveRefreshToken == rec.RefreshToken || liveRefreshToken == rec.Consumed {
		return storeWrite
	}
	return storeAdopt
}

// liveRefreshToken is the refresh token a Secret read uncached holds ("" for none).
func liveRefreshToken(s *corev1.Secret) string {
	if s == nil {
		return ""
	}
	return string(s.Data[v1alpha1.RefreshTokenKey])
}

// flushRefreshToken writes a record still pending from an earlier pass, and restores a
// refresh-token Secret that was deleted or edited, from memory; it runs first in every pass. A
// refresh token another writer stored meanwhile is kept, never overwritten: CredentialsConflict.
func (r *DingTalkTokenReconciler) flushRefreshToken(ctx context.Context, p *pass) error {
	if p.spec.Type != v1alpha1.TokenTypeUser {
		return nil
	}
	rec := r.memory.user(p.key, p.uid)
	if rec == nil {
		return nil
	}
	if rec.Stored {
		st, err := r.secrets.Get(ctx, p.tok, refreshSecretKey(p.tok), ownedsecret.GetOptions{})
		if err != nil {
			return err
		}
		if st.View != nil && ownedsecret.UpToDate(p.tok, st.View, rec.secret(p.tok)) {
			return nil
		}
	}
	conflicted, err := r.storeRefreshToken(ctx, p, *rec, nil)
	if conflicted {
		p.fail(*writersConflict(p.tok.RefreshTokenSecretName()))
	}
	return err
}

// storeRefreshToken writes rec into <name>-refresh-token: first under the resourceVersion of
// first (the read right before the grant; nil: read it now), then, after a conflict, under that
// of a new read, retried with backoff for at most refreshTokenStoreTimeout on a context that
// outlives the reconcile's. A Secret holding another writer's refresh token is adopted, not
// overwritten (conflicted). On giving up, the record stays pending in memory and the error is
// returned.
func (r *DingTalkTokenReconciler) storeRefreshToken(ctx context.Context, p *pass, rec userRecord, first *corev1.Secret) (conflicted bool, _ error) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTokenStoreTimeout)
	defer cancel()
	live, fresh := first, first != nil
	var last error
	err := wait.ExponentialBackoffWithContext(wctx, refreshTokenWriteBackoff, func(ctx context.Context) (bool, error) {
		if !fresh {
			var refused *failure
			if live, refused, last = r.readRefreshSecret(ctx, p); last == nil && refused != nil {
				last = errors.New(refused.message)
			}
			if last != nil {
				return false, nil
			}
		}
		fresh = false
		if nextStoreStep(rec, live != nil, liveRefreshToken(live)) == storeAdopt {
			other := recordOf(p.uid, live)
			other.Used = unionUsed(other.Used, rec.Used)
			other.trimUsed()
			p.log.Info("Kept the refresh token another writer stored; this rotation's is dropped")
			rec, conflicted = other, true
			r.memory.setUser(p.key, rec)
		}
		last = r.writeRefreshSecret(ctx, p, rec, live)
		switch {
		case last == nil:
			return true, nil
		case apierrors.IsConflict(last) || apierrors.IsAlreadyExists(last):
			p.log.V(1).Info("Re-reading the refresh-token Secret: it changed since it was read")
		default:
			p.log.V(1).Info("Retrying the refresh-token Secret write", "reason", apierrors.ReasonForError(last))
		}
		return false, nil
	})
	if err != nil {
		p.log.Info("Refresh-token Secret not written yet; kept in memory and retried first in the next pass",
			"reason", apierrors.ReasonForError(last))
		if last == nil {
			last = err
		}
		return conflicted, fmt.Errorf("storing the refresh token of %s: %w", p.key, safe.APIError(last))
	}
	rec.Stored, rec.Consumed = true, rec.RefreshToken
	// Memory may have moved on meanwhile only through this same DingTalkToken's passes, which are
	// serialized by the controller: recording Stored is safe.
	r.memory.setUser(p.key, rec)
	return conflicted, nil
}

// writeRefreshSecret creates the refresh-token Secret with rec (live nil: there was none), or
// applies rec under live's resourceVersion: a Secret changed since live was read is a conflict.
func (r *DingTalkTokenReconciler) writeRefreshSecret(ctx context.Context, p *pass, rec userRecord, live *corev1.Secret) error {
	if live == nil {
		_, err := r.secrets.Create(ctx, p.tok, rec.secret(p.tok))
		return err
	}
	_, _, err := r.secrets.Update(ctx, p.tok, live, rec.secret(p.tok))
	return err
}

// bootstrapClaimedBy names another DingTalkToken already using the bootstrap value: in this
// process (a claim, or the refresh token memory holds for it), or on record (its refresh-token
// Secret holds the value as its refresh token, or lists the value's HMAC as used). Empty when
// the value is free; it is then claimed for p.
func (r *DingTalkTokenReconciler) bootstrapClaimedBy(ctx context.Context, p *pass, bootstrap string) (types.NamespacedName, error) {
	if other := r.memory.holderOf(bootstrap, p.key); other.Name != "" {
		return other, nil
	}
	if c := r.memory.claim(r.fetcher.SetKey("bootstrap", bootstrap), p.key, p.uid); c.key != p.key {
		return c.key, nil
	}
	var list corev1.SecretList
	if err := r.List(ctx, &list, client.MatchingLabels{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}); err != nil {
		return types.NamespacedName{}, err
	}
	for i := range list.Items {
		s := &list.Items[i] // a view: digests of the values, the used list as it is
		owner := metav1.GetControllerOf(s)
		if owner == nil || owner.UID == p.uid || owner.Kind != "DingTalkToken" {
			continue
		}
		used := userRecord{Used: usedOf(s)}
		if ownedsecret.Holds(s, v1alpha1.RefreshTokenKey, bootstrap) || used.usedValue(r.digests, owner.UID, bootstrap) {
			return types.NamespacedName{Namespace: s.Namespace, Name: owner.Name}, nil
		}
	}
	return types.NamespacedName{}, nil
}
