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
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// User tokens: DingTalk rotates the refresh token on every refresh (the simulator invalidates the
// old one), so losing the newest one loses the user. It is kept in memory and in the owned Secret
// <name>-refresh-token, written before the target Secret under a resourceVersion precondition, on a
// context independent of the reconcile, retried in-process. The only loss window left is a crash
// between DingTalk's answer and that write.

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
// refreshToken from the credentials Secret wins (re-authorization); else the stored refresh token.
// The rotated refresh token is stored before it returns; an error is a store that failed (the
// attempt is still returned, to be recorded).
func (r *DingTalkTokenReconciler) refreshUser(ctx context.Context, p *pass, creds *credentials) (attempt, error) {
	rec, refused, err := r.loadUserRecord(ctx, p)
	if err != nil || refused != nil {
		return attempt{failure: refused}, err
	}
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
	t, _, err := r.fetcher.fetch(ctx, p.creds.setKey, nil, func(ctx context.Context) (dingtalk.Token, error) {
		return r.DingTalk.UserAccessToken(ctx, grant)
	})
	if err != nil {
		return attempt{creds: creds, failure: dingTalkFailure(err)}, nil
	}
	// The rotated refresh token is stored before anything else happens.
	if t.RefreshToken != "" {
		rec.RefreshToken = t.RefreshToken
	}
	if bootstrap != "" {
		rec.Used = append(rec.Used, r.digests.bootstrap(p.uid, bootstrap))
		if len(rec.Used) > maxUsedBootstraps {
			rec.Used = rec.Used[len(rec.Used)-maxUsedBootstraps:]
		}
	}
	rec.Stored = false
	r.memory.setUser(p.key, *rec)
	return attempt{creds: creds, token: &t, called: true}, r.storeRefreshToken(ctx, p, *rec)
}

// loadUserRecord returns the newest refresh-token record: memory, else the Secret read uncached
// (the cache may be a rotation behind, and a stale refresh token is a refused one). A Secret of
// that name not owned by this DingTalkToken is a TargetConflict.
func (r *DingTalkTokenReconciler) loadUserRecord(ctx context.Context, p *pass) (*userRecord, *failure, error) {
	if rec := r.memory.user(p.key, p.uid); rec != nil {
		return rec, nil, nil
	}
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: p.tok.Namespace, Name: p.tok.RefreshTokenSecretName()}, s)
	switch {
	case apierrors.IsNotFound(err):
		return &userRecord{UID: p.uid}, nil, nil
	case err != nil:
		return nil, nil, err
	case !metav1.IsControlledBy(s, p.tok):
		return nil, &failure{reason: v1alpha1.ReasonTargetConflict, message: fmt.Sprintf(
			"Secret %s exists and is not owned by this DingTalkToken: the refresh token cannot be kept", s.Name)}, nil
	}
	rec := recordOf(p.uid, s)
	r.memory.setUser(p.key, rec)
	return &rec, nil, nil
}

// recoverUsed rebuilds the used-bootstrap list of a record that was lost: the refresh-token
// Secret is gone and memory holds nothing (deleted while the operator was down, or after a
// restart), yet status shows a token was issued. When the credentials are those of the last
// attempt (status.credentialsDigest covers the bootstrap values), the bootstrap values in the
// Secret were already used by then (an unused one always wins), so they are marked used and not
// replayed: ReauthorizationRequired follows. A new value there (re-authorization) still wins.
func (rec *userRecord) recoverUsed(d digester, uid types.UID, st *v1alpha1.TokenStatus, creds *credentials) {
	if rec.Stored || rec.RefreshToken != "" || len(rec.Used) > 0 || st.TokenDigest == "" ||
		!d.sameCredentials(st.CredentialsDigest, uid, creds) {
		return
	}
	for _, b := range []string{creds.user.AuthCode, creds.user.RefreshToken} {
		if b != "" {
			rec.Used = append(rec.Used, d.bootstrap(uid, b))
		}
	}
}

func recordOf(uid types.UID, s *corev1.Secret) userRecord {
	rec := userRecord{UID: uid, RefreshToken: string(s.Data[v1alpha1.RefreshTokenKey]), Stored: true}
	for _, l := range strings.Split(string(s.Data[v1alpha1.UsedBootstrapKey]), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			rec.Used = append(rec.Used, l)
		}
	}
	return rec
}

func (rec userRecord) equal(o userRecord) bool {
	return rec.RefreshToken == o.RefreshToken && slices.Equal(rec.Used, o.Used)
}

// secret is the refresh-token Secret's desired content.
func (rec userRecord) secret(tok *v1alpha1.DingTalkToken) desiredSecret {
	return desiredSecret{
		Namespace: tok.Namespace, Name: tok.RefreshTokenSecretName(),
		Labels: managedLabels(nil),
		Data: map[string][]byte{
			v1alpha1.RefreshTokenKey:  []byte(rec.RefreshToken),
			v1alpha1.UsedBootstrapKey: []byte(strings.Join(rec.Used, "\n")),
		},
	}
}

// flushRefreshToken writes a record still pending from an earlier pass, and restores a
// refresh-token Secret that was deleted or edited, from memory; it runs first in every pass.
func (r *DingTalkTokenReconciler) flushRefreshToken(ctx context.Context, p *pass) error {
	if p.spec.Type != v1alpha1.TokenTypeUser {
		return nil
	}
	rec := r.memory.user(p.key, p.uid)
	if rec == nil {
		return nil
	}
	if rec.Stored {
		s := &corev1.Secret{}
		err := r.Get(ctx, types.NamespacedName{Namespace: p.tok.Namespace, Name: p.tok.RefreshTokenSecretName()}, s)
		if err == nil && metav1.IsControlledBy(s, p.tok) && recordOf(p.uid, s).equal(*rec) {
			return nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return r.storeRefreshToken(ctx, p, *rec)
}

// storeRefreshToken writes rec into <name>-refresh-token, retried with backoff for at most
// refreshTokenStoreTimeout on a context that outlives the reconcile's. Each try reads the Secret
// uncached and writes under that resourceVersion (a conflict re-reads and retries: the record in
// hand is the newest DingTalk answered). On giving up, rec stays pending in memory and the error
// is returned.
func (r *DingTalkTokenReconciler) storeRefreshToken(ctx context.Context, p *pass, rec userRecord) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTokenStoreTimeout)
	defer cancel()
	var last error
	err := wait.ExponentialBackoffWithContext(wctx, refreshTokenWriteBackoff, func(ctx context.Context) (bool, error) {
		last = r.writeRefreshSecret(ctx, p, rec)
		if last != nil {
			p.log.V(1).Info("Retrying the refresh-token Secret write", "reason", apierrors.ReasonForError(last))
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		p.log.Info("Refresh-token Secret not written yet; kept in memory and retried first in the next pass",
			"reason", apierrors.ReasonForError(last))
		if last == nil {
			last = err
		}
		return fmt.Errorf("storing the refresh token of %s: %w", p.key, errorWithoutDetails(last))
	}
	rec.Stored = true
	// Memory may have moved on meanwhile only through this same DingTalkToken's passes, which are
	// serialized by the controller: recording Stored is safe.
	r.memory.setUser(p.key, rec)
	return nil
}

// writeRefreshSecret creates or applies the refresh-token Secret with rec, under the
// resourceVersion just read.
func (r *DingTalkTokenReconciler) writeRefreshSecret(ctx context.Context, p *pass, rec userRecord) error {
	d := rec.secret(p.tok)
	key := types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
	w := secretWriter{client: r.Client, scheme: r.Scheme}
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, key, s)
	switch {
	case apierrors.IsNotFound(err):
		created, err := w.create(ctx, p.tok, d)
		if err != nil {
			return err
		}
		r.memory.wrote(p.key, "Secret", created)
		return nil
	case err != nil:
		return err
	case !metav1.IsControlledBy(s, p.tok):
		return apierrors.NewConflict(corev1.Resource("secrets"), key.Name, fmt.Errorf("not owned by the DingTalkToken"))
	case upToDate(p.tok, s, d):
		r.memory.wrote(p.key, "Secret", s)
		return nil // already stored (the cache was behind)
	}
	rv, err := w.apply(ctx, p.tok, s, d)
	if err != nil {
		return err
	}
	r.memory.wrote(p.key, "Secret", &metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, ResourceVersion: rv})
	return nil
}

// bootstrapClaimedBy names another DingTalkToken already using the bootstrap value: in this
// process (a claim), or on record (its refresh-token Secret lists the value's HMAC keyed by its
// UID). Empty when the value is free; it is then claimed for p.
func (r *DingTalkTokenReconciler) bootstrapClaimedBy(ctx context.Context, p *pass, bootstrap string) (types.NamespacedName, error) {
	if c := r.memory.claim(r.fetcher.setKey("bootstrap", bootstrap), p.key, p.uid); c.key != p.key {
		return c.key, nil
	}
	var list corev1.SecretList
	if err := r.List(ctx, &list, client.MatchingLabels{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}); err != nil {
		return types.NamespacedName{}, err
	}
	for i := range list.Items {
		s := &list.Items[i]
		owner := metav1.GetControllerOf(s)
		if owner == nil || owner.UID == p.uid || len(s.Data[v1alpha1.UsedBootstrapKey]) == 0 {
			continue
		}
		if recordOf(owner.UID, s).usedValue(r.digests, owner.UID, bootstrap) {
			return types.NamespacedName{Namespace: s.Namespace, Name: owner.Name}, nil
		}
	}
	return types.NamespacedName{}, nil
}
