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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/refreshtoken"
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
// The record and its durable store are package refreshtoken; the grant and its claims are here.

// refreshTokenStoreTimeout bounds the in-pass retry of a refresh-token write (ShutdownBudget).
const refreshTokenStoreTimeout = refreshtoken.StoreTimeout

// refreshUser fetches a User token with the right grant: a new (unused) bootstrap authCode or
// refreshToken from the credentials Secret wins (re-authorization); else the stored refresh token,
// as the live read right before the grant shows it. The rotated refresh token is stored before
// it returns; an error is an API error (no call was made when the live read failed; else the
// store failed, the attempt is still returned, to be recorded).
func (r *DingTalkTokenReconciler) refreshUser(ctx context.Context, p *pass, creds *credentials) (attempt, error) {
	store := r.refreshSecret(p)
	live, foreign, err := store.Read(ctx)
	if err != nil || foreign {
		return attempt{failure: refreshSecretConflict(store, foreign)}, err
	}
	// A value over the cap there (a tenant can write the Secret) is refused before any other rule.
	if k := refreshtoken.Oversized(live); k != "" {
		return attempt{failure: oversizedValue("Secret", p.tok.RefreshTokenSecretName(), k)}, nil
	}
	rec := r.currentRecord(p, live)
	recoverUsed(&rec, r.digests, p.uid, &p.tok.Status.TokenStatus, creds)
	// A bootstrap value an earlier version listed as used under the installation's key alone is
	// listed under the record's salt as well: a new installation key must not make it look new.
	for _, b := range []string{creds.user.AuthCode, creds.user.RefreshToken} {
		if b != "" && rec.UsedValue(r.digests, p.uid, b) {
			rec.MarkUsed(p.uid, b)
		}
	}
	grant := dingtalk.UserCredentials{ClientID: creds.user.ClientID, ClientSecret: creds.user.ClientSecret}
	bootstrap := ""
	switch {
	case creds.user.AuthCode != "" && !rec.UsedValue(r.digests, p.uid, creds.user.AuthCode):
		bootstrap, grant.AuthCode = creds.user.AuthCode, creds.user.AuthCode
	case creds.user.RefreshToken != "" && !rec.UsedValue(r.digests, p.uid, creds.user.RefreshToken):
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
		rec.MarkUsed(p.uid, bootstrap)
	}
	r.memory.SetUser(p.key, rec)
	conflicted, storeErr := r.saveRefreshToken(ctx, store, p, rec, live)
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

// refreshSecret is the pass's refresh-token Secret (<name>-refresh-token).
func (r *DingTalkTokenReconciler) refreshSecret(p *pass) refreshtoken.Secret {
	return refreshtoken.Secret{Store: r.secrets, Owner: p.tok, Log: p.log}
}

// refreshSecretConflict is TargetConflict when the refresh-token Secret's name holds a Secret
// the DingTalkToken does not own (nil when it does not).
func refreshSecretConflict(s refreshtoken.Secret, foreign bool) *failure {
	if !foreign {
		return nil
	}
	return &failure{reason: v1alpha1.ReasonTargetConflict, message: s.ForeignMessage()}
}

// currentRecord is the record a rotation starts from: the live Secret's (it wins over memory: a
// refresh token stored by someone else is newer than ours), with memory's used bootstrap values
// added; memory's alone when the Secret is gone (deleted: restored from memory by the write).
func (r *DingTalkTokenReconciler) currentRecord(p *pass, live *corev1.Secret) refreshtoken.Record {
	mem := r.memory.User(p.key, p.uid)
	if live == nil {
		if mem != nil {
			return *mem
		}
		return refreshtoken.Record{UID: p.uid}
	}
	rec := refreshtoken.FromSecret(p.uid, live)
	if mem != nil {
		rec.Merge(*mem)
	}
	return rec
}

// recoverUsed rebuilds the used-bootstrap list of a record that was lost: the refresh-token
// Secret is gone and memory holds nothing (deleted while the operator was down, or after a
// restart), yet status shows a token was issued. When the credentials are those of the last
// attempt (status.credentialsDigest covers the bootstrap values), the bootstrap values in the
// Secret were already used by then (an unused one always wins), so they are marked used and not
// replayed: ReauthorizationRequired follows. A new value there (re-authorization) still wins.
func recoverUsed(rec *refreshtoken.Record, d digest.Digester, uid types.UID, st *v1alpha1.TokenStatus, creds *credentials) {
	if rec.Stored || rec.RefreshToken != "" || len(rec.Used) > 0 || st.TokenDigest == "" ||
		!creds.isDigest(d, st.CredentialsDigest, uid) {
		return
	}
	for _, b := range []string{creds.user.AuthCode, creds.user.RefreshToken} {
		if b != "" {
			rec.MarkUsed(uid, b)
		}
	}
}

// flushRefreshToken writes a record still pending from an earlier pass, and restores a
// refresh-token Secret that was deleted or edited, from memory; it runs first in every pass. A
// refresh token another writer stored meanwhile is kept, never overwritten: CredentialsConflict.
func (r *DingTalkTokenReconciler) flushRefreshToken(ctx context.Context, p *pass) error {
	if p.spec.Type != v1alpha1.TokenTypeUser {
		return nil
	}
	rec := r.memory.User(p.key, p.uid)
	if rec == nil {
		return nil
	}
	store := r.refreshSecret(p)
	if rec.Stored {
		if held, err := store.Holds(ctx, *rec); err != nil || held {
			return err
		}
	}
	conflicted, err := r.saveRefreshToken(ctx, store, p, *rec, nil)
	if over, ok := errors.AsType[*refreshtoken.OversizedError](err); ok {
		// Neither adopted nor overwritten; nothing is called with it.
		p.fail(*oversizedValue("Secret", p.tok.RefreshTokenSecretName(), over.Key))
		return nil
	}
	if conflicted {
		p.fail(*writersConflict(p.tok.RefreshTokenSecretName()))
	}
	return err
}

// saveRefreshToken stores rec (refreshtoken.Secret.Save) and keeps in memory what became of it:
// stored, adopted from another writer, or still pending (written first in the next pass).
func (r *DingTalkTokenReconciler) saveRefreshToken(ctx context.Context, s refreshtoken.Secret, p *pass, rec refreshtoken.Record, first *corev1.Secret) (conflicted bool, _ error) {
	rec, conflicted, err := s.Save(ctx, rec, first)
	// Memory may have moved on meanwhile only through this same DingTalkToken's passes, which are
	// serialized by the controller: recording the outcome is safe.
	r.memory.SetUser(p.key, rec)
	return conflicted, err
}

// bootstrapClaimedBy names another DingTalkToken already using the bootstrap value: in this
// process (a claim, or the refresh token memory holds for it), or on record (its refresh-token
// Secret holds the value as its refresh token, or lists the value's HMAC as used). Empty when
// the value is free; it is then claimed for p.
func (r *DingTalkTokenReconciler) bootstrapClaimedBy(ctx context.Context, p *pass, bootstrap string) (types.NamespacedName, error) {
	if other := r.memory.HolderOf(bootstrap, p.key); other.Name != "" {
		return other, nil
	}
	if c := r.memory.Claim(r.fetcher.SetKey("bootstrap", bootstrap), p.key, p.uid); c != p.key {
		return c, nil
	}
	var list corev1.SecretList
	if err := r.List(ctx, &list, client.MatchingLabels{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}); err != nil {
		return types.NamespacedName{}, err
	}
	for i := range list.Items {
		s := &list.Items[i] // a view: digests of the values, the used list as it is
		owner := metav1.GetControllerOf(s)
		if owner == nil || owner.UID == p.uid || owner.Kind != kindToken {
			continue
		}
		if ownedsecret.Holds(s, v1alpha1.RefreshTokenKey, bootstrap) || refreshtoken.UsedOf(s).UsedValue(r.digests, owner.UID, bootstrap) {
			return types.NamespacedName{Namespace: s.Namespace, Name: owner.Name}, nil
		}
	}
	return types.NamespacedName{}, nil
}
