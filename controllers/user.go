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
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

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
func (r *DingTalkTokenReconciler) refreshUser(ctx context.Context, p *pass, creds *credentials) error {
	rec, err := r.loadUserRecord(ctx, p)
	if err != nil || rec == nil {
		return err
	}
	rec.recoverUsed(p.tok, creds)
	grant := dingtalk.UserCredentials{ClientID: creds.user.ClientID, ClientSecret: creds.user.ClientSecret}
	bootstrap := ""
	switch {
	case creds.user.AuthCode != "" && !rec.used(uidDigest(p.tok.UID, "bootstrap", creds.user.AuthCode)):
		bootstrap, grant.AuthCode = creds.user.AuthCode, creds.user.AuthCode
	case creds.user.RefreshToken != "" && !rec.used(uidDigest(p.tok.UID, "bootstrap", creds.user.RefreshToken)):
		bootstrap, grant.RefreshToken = creds.user.RefreshToken, creds.user.RefreshToken
	case rec.RefreshToken != "":
		grant.RefreshToken = rec.RefreshToken
	case creds.user.AuthCode == "" && creds.user.RefreshToken == "":
		p.fail(v1alpha1.ReasonCredentialsNotFound, fmt.Sprintf(
			"credentials Secret %q has neither a refreshToken nor an authCode, and no refresh token is stored", p.tok.Spec.CredentialsRef.Name))
		return nil
	default:
		p.attempted(creds)
		p.fail(v1alpha1.ReasonReauthorizationRequired,
			"the authCode/refreshToken in the credentials Secret was already used and no refresh token is stored: authorize again")
		return nil
	}
	if bootstrap != "" {
		if other, err := r.bootstrapClaimedBy(ctx, p, bootstrap); err != nil || other.Name != "" {
			if err == nil {
				p.fail(v1alpha1.ReasonCredentialsConflict, conflictMessage(p.tok.Namespace, other))
			}
			return err
		}
	}
	t, _, err := r.fetcher.fetch(ctx, r.fetchKey(p, creds), false, nil, func(ctx context.Context) (dingtalk.Token, error) {
		return r.DingTalk.UserAccessToken(ctx, grant)
	})
	p.attempted(creds)
	if err != nil {
		p.failDingTalk(err)
		return nil
	}
	// The rotated refresh token is stored before anything else happens.
	if t.RefreshToken != "" {
		rec.RefreshToken = t.RefreshToken
	}
	if bootstrap != "" {
		rec.Used = append(rec.Used, uidDigest(p.tok.UID, "bootstrap", bootstrap))
		if len(rec.Used) > maxUsedBootstraps {
			rec.Used = rec.Used[len(rec.Used)-maxUsedBootstraps:]
		}
	}
	rec.Stored = false
	r.memory.setUser(p.key, *rec)
	p.issue(t, true)
	return r.storeRefreshToken(ctx, p, *rec)
}

// loadUserRecord returns the newest refresh-token record: memory, else the Secret read uncached
// (the cache may be a rotation behind, and a stale refresh token is a refused one). A Secret of
// that name not owned by this DingTalkToken is a TargetConflict (nil record).
func (r *DingTalkTokenReconciler) loadUserRecord(ctx context.Context, p *pass) (*userRecord, error) {
	if rec := r.memory.user(p.key, p.tok.UID); rec != nil {
		return rec, nil
	}
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: p.tok.Namespace, Name: p.tok.RefreshTokenSecretName()}, s)
	switch {
	case apierrors.IsNotFound(err):
		return &userRecord{UID: p.tok.UID}, nil
	case err != nil:
		return nil, err
	case !metav1.IsControlledBy(s, p.tok):
		p.fail(v1alpha1.ReasonTargetConflict, fmt.Sprintf(
			"Secret %s exists and is not owned by this DingTalkToken: the refresh token cannot be kept", s.Name))
		return nil, nil
	}
	rec := recordOf(p.tok.UID, s)
	r.memory.setUser(p.key, rec)
	return &rec, nil
}

// recoverUsed rebuilds the used-bootstrap list of a record that was lost: the refresh-token
// Secret is gone and memory holds nothing (deleted while the operator was down, or after a
// restart), yet status shows a token was issued. When the credentials are those of the last
// attempt (status.credentialsDigest covers the bootstrap values), the bootstrap values in the
// Secret were already used by then (an unused one always wins), so they are marked used and not
// replayed: ReauthorizationRequired follows. A new value there (re-authorization) still wins.
func (rec *userRecord) recoverUsed(tok *v1alpha1.DingTalkToken, creds *credentials) {
	if rec.Stored || rec.RefreshToken != "" || len(rec.Used) > 0 || tok.Status.TokenDigest == "" ||
		tok.Status.CredentialsDigest != creds.digest(tok.UID) {
		return
	}
	for _, b := range []string{creds.user.AuthCode, creds.user.RefreshToken} {
		if b != "" {
			rec.Used = append(rec.Used, uidDigest(tok.UID, "bootstrap", b))
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

func (rec userRecord) data() map[string][]byte {
	return map[string][]byte{
		v1alpha1.RefreshTokenKey:  []byte(rec.RefreshToken),
		v1alpha1.UsedBootstrapKey: []byte(strings.Join(rec.Used, "\n")),
	}
}

// flushRefreshToken writes a record still pending from an earlier pass, and restores a
// refresh-token Secret that was deleted or edited, from memory; it runs first in every pass.
func (r *DingTalkTokenReconciler) flushRefreshToken(ctx context.Context, p *pass) error {
	if p.tok.Spec.Type != v1alpha1.TokenTypeUser {
		return nil
	}
	rec := r.memory.user(p.key, p.tok.UID)
	if rec == nil {
		return nil
	}
	if rec.Stored {
		s := &corev1.Secret{}
		err := r.Get(ctx, types.NamespacedName{Namespace: p.tok.Namespace, Name: p.tok.RefreshTokenSecretName()}, s)
		if err == nil && metav1.IsControlledBy(s, p.tok) && recordOf(p.tok.UID, s).equal(*rec) {
			return nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return r.storeRefreshToken(ctx, p, *rec)
}

// storeRefreshToken writes rec into <name>-refresh-token, retried with backoff for at most
// refreshTokenStoreTimeout on a context that outlives the reconcile's. Each try reads the Secret uncached and updates it under that
// resourceVersion (a conflict re-reads and retries: the record in hand is the newest DingTalk
// answered). On giving up, rec stays pending in memory and the error is returned.
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

// writeRefreshSecret creates or updates the refresh-token Secret with rec, under the
// resourceVersion just read.
func (r *DingTalkTokenReconciler) writeRefreshSecret(ctx context.Context, p *pass, rec userRecord) error {
	key := types.NamespacedName{Namespace: p.tok.Namespace, Name: p.tok.RefreshTokenSecretName()}
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, key, s)
	if apierrors.IsNotFound(err) {
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
				Labels: map[string]string{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}},
			Type: corev1.SecretTypeOpaque,
			Data: rec.data(),
		}
		if err := controllerutil.SetControllerReference(p.tok, s, r.Scheme); err != nil {
			return err
		}
		if err := r.Create(ctx, s); err != nil {
			return err
		}
		r.memory.wrote(p.key, "Secret", s)
		return nil
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(s, p.tok) {
		return apierrors.NewConflict(corev1.Resource("secrets"), key.Name, fmt.Errorf("not owned by the DingTalkToken"))
	}
	if recordOf(p.tok.UID, s).equal(rec) && s.Labels[v1alpha1.ManagedByLabel] == v1alpha1.ManagedByValue {
		r.memory.wrote(p.key, "Secret", s)
		return nil // already stored (the cache was behind)
	}
	upd := s.DeepCopy() // carries the resourceVersion just read: the precondition
	upd.Data, upd.StringData = rec.data(), nil
	upd.Labels = mergeInto(upd.Labels, map[string]string{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue})
	if err := controllerutil.SetControllerReference(p.tok, upd, r.Scheme); err != nil {
		return err
	}
	if upd.ResourceVersion == "" {
		return fmt.Errorf("no resourceVersion to write under")
	}
	if err := r.Update(ctx, upd); err != nil {
		return err
	}
	r.memory.wrote(p.key, "Secret", upd)
	return nil
}

// errorWithoutDetails keeps an API error's reason and code only.
func errorWithoutDetails(err error) error {
	if st, ok := err.(apierrors.APIStatus); ok {
		return fmt.Errorf("%s (HTTP %d)", st.Status().Reason, st.Status().Code)
	}
	return err
}

// conflictMessage is CredentialsConflict's message: it names the other DingTalkToken only when it
// is in the same namespace (another namespace's objects are not this user's to know of).
func conflictMessage(ns string, other types.NamespacedName) string {
	who := "another DingTalkToken in another namespace"
	if other.Namespace == ns {
		who = "DingTalkToken " + other.String()
	}
	return who + " already uses this user's authCode/refreshToken: user tokens are never shared"
}

// bootstrapClaimedBy names another DingTalkToken already using the bootstrap value: in this
// process (a claim), or on record (its refresh-token Secret lists the value's HMAC keyed by its
// UID). Empty when the value is free; it is then claimed for p.
func (r *DingTalkTokenReconciler) bootstrapClaimedBy(ctx context.Context, p *pass, bootstrap string) (types.NamespacedName, error) {
	if c := r.memory.claim(r.fetcher.setKey("bootstrap", bootstrap), p.key, p.tok.UID); c.key != p.key {
		return c.key, nil
	}
	var list corev1.SecretList
	if err := r.List(ctx, &list, client.MatchingLabels{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}); err != nil {
		return types.NamespacedName{}, err
	}
	for i := range list.Items {
		s := &list.Items[i]
		owner := metav1.GetControllerOf(s)
		if owner == nil || owner.UID == p.tok.UID || len(s.Data[v1alpha1.UsedBootstrapKey]) == 0 {
			continue
		}
		if recordOf(owner.UID, s).used(uidDigest(owner.UID, "bootstrap", bootstrap)) {
			return types.NamespacedName{Namespace: s.Namespace, Name: owner.Name}, nil
		}
	}
	return types.NamespacedName{}, nil
}
