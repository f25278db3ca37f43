package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// targetState is what the target Secret's name holds before the write.
type targetState struct {
	// secret is the existing Secret this DingTalkToken owns (nil: none yet).
	secret *corev1.Secret
	// conflict is set when the name belongs to a Secret this DingTalkToken does not own.
	conflict bool
	message  string
}

// observeTarget reads the target Secret (cache first; the API server when the cache has none, since
// a Secret without the managed-by label is invisible to the cache), tells whether this DingTalkToken
// owns it, and recovers the last good token into p.held.
func (r *DingTalkTokenReconciler) observeTarget(ctx context.Context, p *pass) (targetState, error) {
	key := types.NamespacedName{Namespace: p.tok.Namespace, Name: p.tok.TargetName()}
	s := &corev1.Secret{}
	err := r.Get(ctx, key, s)
	if apierrors.IsNotFound(err) || err == nil && r.memory.stale(p.key, "Secret", s) {
		// Unlabelled Secrets are invisible to the cache; a cached copy older than our own last
		// write would look like drift.
		err = r.APIReader.Get(ctx, key, s)
	}
	var state targetState
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return state, err
	case !metav1.IsControlledBy(s, p.tok):
		state.conflict = true
		state.message = fmt.Sprintf("Secret %s exists and is not owned by this DingTalkToken: nothing is written to it", key.Name)
	default:
		state.secret = s
	}
	p.held = r.memory.token(p.key, p.tok.UID)
	if p.held == nil && state.secret != nil {
		p.held = recoverHeld(p.tok, state.secret)
		if p.held != nil {
			r.memory.setToken(p.key, *p.held)
			r.memory.setShown(p.key, *p.held)
		}
	}
	if state.secret != nil {
		// Ready follows what the Secret holds: the held token, or the one written before it when
		// a newer token has not reached the Secret yet (its refresh-token store failed, say).
		p.targetExpiry = shownExpiry(p.tok, state.secret, p.held, r.memory.shownToken(p.key, p.tok.UID))
	}
	return state, nil
}

// recoverHeld trusts the token in an owned target Secret after a restart when its HMAC equals
// status.tokenDigest: it is then the token this operator wrote, with status's timing.
func recoverHeld(tok *v1alpha1.DingTalkToken, s *corev1.Secret) *heldToken {
	st := tok.Status
	value := string(s.Data[tok.TargetKey()])
	if value == "" || st.TokenDigest == "" || st.ExpiresAt == nil || st.LastRefreshTime == nil ||
		tokenDigest(tok.UID, value) != st.TokenDigest {
		return nil
	}
	return &heldToken{
		UID: tok.UID, AccessToken: value, CorpID: string(s.Data[v1alpha1.CorpIDKey]),
		IssuedAt: st.LastRefreshTime.Time, ExpiresAt: st.ExpiresAt.Time,
	}
}

// heldExpiry is the expiry of the token the owned Secret holds, when it is the held token.
func heldExpiry(tok *v1alpha1.DingTalkToken, s *corev1.Secret, held *heldToken) time.Time {
	if held == nil || string(s.Data[tok.TargetKey()]) != held.AccessToken {
		return time.Time{}
	}
	return held.ExpiresAt
}

// shownExpiry is the expiry of the token the owned Secret holds: the held token's, else that of the
// token last written there (shown), when the held one has not reached the Secret yet.
func shownExpiry(tok *v1alpha1.DingTalkToken, s *corev1.Secret, held, shown *heldToken) time.Time {
	if exp := heldExpiry(tok, s, held); !exp.IsZero() {
		return exp
	}
	return heldExpiry(tok, s, shown)
}

// targetData renders the target Secret's data for the held token.
func targetData(tok *v1alpha1.DingTalkToken, h *heldToken) (map[string][]byte, error) {
	tmpls, err := parseTemplates(tok)
	if err != nil {
		return nil, err
	}
	expires := rfc3339(h.ExpiresAt)
	corpID := h.CorpID
	if corpID == "" {
		// A ThirdPartyApp token recovered from its target after a restart: the answer had no
		// corpId, the org is the spec's.
		corpID = tok.Spec.CorpID
	}
	rendered, err := renderTemplates(tmpls, templateFields{
		AccessToken: h.AccessToken, ExpiresAt: expires, Type: string(tok.Spec.Type), CorpID: corpID,
	})
	if err != nil {
		return nil, err
	}
	data := make(map[string][]byte, len(rendered)+3)
	maps.Copy(data, rendered)
	data[tok.TargetKey()] = []byte(h.AccessToken)
	data[v1alpha1.ExpiresAtKey] = []byte(expires)
	if tok.Spec.Type == v1alpha1.TokenTypeUser {
		data[v1alpha1.CorpIDKey] = []byte(h.CorpID)
	}
	return data, nil
}

// templateKeysAnnotation records on the target Secret which label and annotation keys the operator
// copied from spec.target.template.metadata (JSON: {"labels":[...],"annotations":[...]}), so that a
// key removed from the template is removed from the Secret too, and keys others set are left alone.
const templateKeysAnnotation = "dingtalk.tokens.dev/template-keys"

// templateKeys is the content of templateKeysAnnotation.
type templateKeys struct {
	Labels      []string `json:"labels,omitempty"`
	Annotations []string `json:"annotations,omitempty"`
}

// copiedKeys reads templateKeysAnnotation (empty when absent or unreadable).
func copiedKeys(s *corev1.Secret) templateKeys {
	var k templateKeys
	if v := s.Annotations[templateKeysAnnotation]; v != "" {
		_ = json.Unmarshal([]byte(v), &k)
	}
	return k
}

// targetMetadata is the labels and annotations the operator sets on the target Secret: the
// template's, copied, plus managed-by, the expiry annotation and the record of the copied keys.
func targetMetadata(tok *v1alpha1.DingTalkToken, h *heldToken) (labels, annotations map[string]string) {
	labels, annotations = map[string]string{}, map[string]string{}
	if t := tok.Spec.Target; t != nil && t.Template != nil && t.Template.Metadata != nil {
		maps.Copy(labels, t.Template.Metadata.Labels)
		maps.Copy(annotations, t.Template.Metadata.Annotations)
	}
	if len(labels)+len(annotations) > 0 {
		rec, _ := json.Marshal(templateKeys{Labels: slices.Sorted(maps.Keys(labels)), Annotations: slices.Sorted(maps.Keys(annotations))})
		annotations[templateKeysAnnotation] = string(rec)
	}
	labels[v1alpha1.ManagedByLabel] = v1alpha1.ManagedByValue
	annotations[v1alpha1.ExpiresAtAnnotation] = rfc3339(h.ExpiresAt)
	return labels, annotations
}

// staleKeys lists the label and annotation keys the operator copied onto s earlier that the
// template no longer has (the record annotation itself included, when nothing is copied now).
func staleKeys(s *corev1.Secret, labels, annotations map[string]string) (staleLabels, staleAnnotations []string) {
	k := copiedKeys(s)
	for _, l := range k.Labels {
		if _, ok := labels[l]; !ok {
			if _, there := s.Labels[l]; there {
				staleLabels = append(staleLabels, l)
			}
		}
	}
	for _, a := range k.Annotations {
		if _, ok := annotations[a]; !ok {
			if _, there := s.Annotations[a]; there {
				staleAnnotations = append(staleAnnotations, a)
			}
		}
	}
	if _, ok := annotations[templateKeysAnnotation]; !ok {
		if _, there := s.Annotations[templateKeysAnnotation]; there {
			staleAnnotations = append(staleAnnotations, templateKeysAnnotation)
		}
	}
	return staleLabels, staleAnnotations
}

// writeTarget makes the target Secret hold the held token: the first write is a create (an existing
// Secret this DingTalkToken does not own is left alone: TargetConflict); an owned Secret whose data
// or metadata drifted is restored. An expired token is never written.
func (r *DingTalkTokenReconciler) writeTarget(ctx context.Context, p *pass, state targetState) error {
	h := p.held
	if h == nil || !p.now.Before(h.ExpiresAt) {
		return nil
	}
	data, err := targetData(p.tok, h)
	if err != nil {
		p.fail(v1alpha1.ReasonTemplateInvalid, err.Error())
		return nil
	}
	labels, annotations := targetMetadata(p.tok, h)
	s := state.secret
	if s == nil {
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: p.tok.Namespace, Name: p.tok.TargetName()}}
		if err := r.createOwned(ctx, p, s, data, labels, annotations); err != nil || s.UID == "" {
			return p.refusedTarget(err)
		}
	} else if !targetUpToDate(p.tok, s, data, labels, annotations) {
		restored := string(s.Data[p.tok.TargetKey()]) != h.AccessToken && p.targetExpiry.IsZero()
		upd := s.DeepCopy()
		upd.Data, upd.StringData = data, nil
		upd.Labels = mergeInto(upd.Labels, labels)
		upd.Annotations = mergeInto(upd.Annotations, annotations)
		staleLabels, staleAnnotations := staleKeys(s, labels, annotations)
		for _, k := range staleLabels {
			delete(upd.Labels, k)
		}
		for _, k := range staleAnnotations {
			delete(upd.Annotations, k)
		}
		if err := controllerutil.SetControllerReference(p.tok, upd, r.Scheme); err != nil {
			return err
		}
		if err := r.Patch(ctx, upd, client.MergeFromWithOptions(s, client.MergeFromWithOptimisticLock{})); err != nil {
			return p.refusedTarget(err)
		}
		r.memory.wrote(p.key, "Secret", upd)
		if restored && p.tok.Status.TokenDigest == p.before.Status.TokenDigest {
			p.log.Info("Restored target Secret", "secret", s.Name)
		} else {
			p.log.V(1).Info("Updated target Secret", "secret", s.Name)
		}
	}
	p.targetExpiry = h.ExpiresAt
	r.memory.setShown(p.key, *h)
	p.clearLocalFailure()
	return nil
}

// refusedTarget turns the API server refusing the target Secret as invalid into TemplateInvalid
// (the copied template metadata is the only input it can refuse: label or annotation syntax); the
// message names the fields, never their values. Any other API error is returned with its reason
// and code only (its message may quote what was written).
func (p *pass) refusedTarget(err error) error {
	if err == nil {
		return nil
	}
	if !apierrors.IsInvalid(err) {
		if _, ok := err.(apierrors.APIStatus); ok {
			return fmt.Errorf("writing the target Secret %s: %w", p.tok.TargetName(), errorWithoutDetails(err))
		}
		return err
	}
	var fields []string
	if st, ok := err.(apierrors.APIStatus); ok && st.Status().Details != nil {
		for _, c := range st.Status().Details.Causes {
			if f := templateField(c.Field); f != "" && !slices.Contains(fields, f) {
				fields = append(fields, f)
			}
		}
	}
	if len(fields) == 0 {
		fields = []string{"spec.target.template.metadata"}
	}
	p.fail(v1alpha1.ReasonTemplateInvalid, fmt.Sprintf(
		"the API server refused the target Secret %s: invalid %s (label and annotation keys and values must be valid Kubernetes metadata)",
		p.tok.TargetName(), strings.Join(fields, ", ")))
	return nil
}

// templateField maps a refused field of the target Secret to the spec field it was copied from
// (the map key at most, never a value).
func templateField(field string) string {
	for _, m := range []string{"labels", "annotations"} {
		if field == "metadata."+m || strings.HasPrefix(field, "metadata."+m+"[") || strings.HasPrefix(field, "metadata."+m+".") {
			return "spec.target.template.metadata." + m
		}
	}
	return ""
}

// createOwned creates s owned by the DingTalkToken. When the name turns out to exist, an owned
// Secret (the cache lagging) is left for the next pass and any other is a TargetConflict; s.UID
// stays empty in both cases.
func (r *DingTalkTokenReconciler) createOwned(ctx context.Context, p *pass, s *corev1.Secret,
	data map[string][]byte, labels, annotations map[string]string) error {
	s.Type = corev1.SecretTypeOpaque
	s.Data, s.Labels, s.Annotations = data, labels, annotations
	if err := controllerutil.SetControllerReference(p.tok, s, r.Scheme); err != nil {
		return err
	}
	err := r.Create(ctx, s)
	if apierrors.IsAlreadyExists(err) {
		live := &corev1.Secret{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(s), live); err != nil {
			return err
		}
		s.UID = ""
		if !metav1.IsControlledBy(live, p.tok) {
			p.fail(v1alpha1.ReasonTargetConflict,
				fmt.Sprintf("Secret %s exists and is not owned by this DingTalkToken: nothing is written to it", s.Name))
			return nil
		}
		return fmt.Errorf("secret %s appeared while being created; retrying", s.Name)
	}
	if err == nil {
		r.memory.wrote(p.key, "Secret", s)
		p.log.V(1).Info("Created Secret", "secret", s.Name)
	}
	return err
}

// targetUpToDate reports whether the owned Secret already holds exactly the desired data, labels,
// annotations and controller reference.
func targetUpToDate(tok *v1alpha1.DingTalkToken, s *corev1.Secret, data map[string][]byte, labels, annotations map[string]string) bool {
	staleLabels, staleAnnotations := staleKeys(s, labels, annotations)
	return metav1.IsControlledBy(s, tok) && equality.Semantic.DeepEqual(s.Data, data) &&
		contains(s.Labels, labels) && contains(s.Annotations, annotations) && blocksOwnerDeletion(s, tok) &&
		len(staleLabels)+len(staleAnnotations) == 0
}

func blocksOwnerDeletion(s *corev1.Secret, tok *v1alpha1.DingTalkToken) bool {
	for _, ref := range s.OwnerReferences {
		if ref.UID == tok.UID {
			return ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion
		}
	}
	return false
}

func contains(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

func mergeInto(dst, src map[string]string) map[string]string {
	if dst == nil {
		dst = make(map[string]string, len(src))
	}
	maps.Copy(dst, src)
	return dst
}

// clearLocalFailure: once the target holds the token again, a TemplateInvalid or TargetConflict
// from an earlier pass is over.
func (p *pass) clearLocalFailure() {
	c := refreshedCondition(&p.tok.Status)
	if c == nil || c.Status != metav1.ConditionFalse {
		return
	}
	if c.Reason != v1alpha1.ReasonTemplateInvalid && c.Reason != v1alpha1.ReasonTargetConflict {
		return
	}
	p.tok.Status.FailedAttempts = 0
	p.tok.Status.LastFailureTime = nil
	p.tok.Status.LastFailureReason = ""
	p.setCondition(v1alpha1.ConditionRefreshed, metav1.ConditionTrue, v1alpha1.ReasonTokenIssued,
		fmt.Sprintf("Token written, valid until %s", rfc3339(p.held.ExpiresAt)))
}
