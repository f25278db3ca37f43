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
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// targetWriteTimeout bounds the writes of one target Secret (on a context detached from the
// reconcile's, like the status write).
const targetWriteTimeout = 5 * time.Second

// targetState is what a target Secret's name holds before the pass writes.
type targetState struct {
	// secret is the view (secretView) of the existing Secret the object owns (nil: none yet).
	secret *corev1.Secret
	// live is that Secret as read uncached, values included, when the pass recovers the token
	// after a restart (nil otherwise: no value is kept beyond the pass that needs it).
	live *corev1.Secret
	// conflict is set when the name belongs to a Secret the object does not own.
	conflict *failure
	// unverified is set when the cache holds no Secret of that name and the API server was not
	// asked (a new object's first pass): it is asked before a DingTalk call, and a create finds
	// a Secret the cache cannot see.
	unverified bool
}

// targets reads and writes target Secrets for any token kind: owner is the object that owns
// them (a controller ownerReference), ownerKind names it in messages, memKey keys it in memory.
type targets struct {
	client    client.Client
	reader    client.Reader
	scheme    *runtime.Scheme
	memory    *memory
	owner     client.Object
	ownerKind string
	memKey    types.NamespacedName
	// recover asks read for the Secret's values (targetState.live): memory holds no token.
	recover bool
}

// read reads a target Secret (cache first; the API server when the cache has none, since a
// Secret without the managed-by label is invisible to the cache, when the cached copy predates
// this process's own last write or is a truncated view, or when recover asks for its values) and
// tells whether the owner owns it. The Secret is returned as a view.
func (t targets) read(ctx context.Context, key types.NamespacedName) (targetState, error) {
	return t.readVerified(ctx, key, true)
}

// readVerified is read; with verify false, a name the cache does not hold is not looked up on
// the API server (the state is unverified).
func (t targets) readVerified(ctx context.Context, key types.NamespacedName, verify bool) (targetState, error) {
	s := &corev1.Secret{}
	err := t.client.Get(ctx, key, s)
	if apierrors.IsNotFound(err) && !verify {
		return targetState{unverified: true}, nil
	}
	if apierrors.IsNotFound(err) || err == nil && (t.memory.stale(t.memKey, "Secret", s) || truncated(s) ||
		t.recover && metav1.IsControlledBy(s, t.owner)) {
		s = &corev1.Secret{}
		err = t.reader.Get(ctx, key, s)
	}
	switch {
	case apierrors.IsNotFound(err):
		return targetState{}, nil
	case err != nil:
		return targetState{}, err
	case !metav1.IsControlledBy(s, t.owner):
		return targetState{conflict: targetConflict(key.Name, t.ownerKind)}, nil
	}
	state := targetState{secret: secretView(s, false)}
	if t.recover && !isView(s) {
		state.live = s
	}
	return state, nil
}

// readLive reads a target Secret uncached, values included (recovering a token after a restart).
func (t targets) readLive(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	if err := t.reader.Get(ctx, key, s); err != nil {
		return nil, err
	}
	return s, nil
}

// recoverHeld trusts the token in an owned target Secret after a restart when its HMAC equals
// status.tokenDigest: it is then the token this operator wrote, with status's timing. s is the
// Secret as read uncached (a view holds no token).
func recoverHeld(d digester, uid types.UID, st *v1alpha1.TokenStatus, targetKey string, s *corev1.Secret) *heldToken {
	value := string(s.Data[targetKey])
	if value == "" || st.ExpiresAt == nil || st.LastRefreshTime == nil || !d.matches(st.TokenDigest, uid, "token", value) {
		return nil
	}
	return &heldToken{
		UID: uid, AccessToken: value, CorpID: string(s.Data[v1alpha1.CorpIDKey]),
		IssuedAt: st.LastRefreshTime.Time, ExpiresAt: st.ExpiresAt.Time,
	}
}

// heldExpiry is the expiry of the token the owned Secret (a view) holds, when it is the held token.
func heldExpiry(targetKey string, s *corev1.Secret, held *heldToken) time.Time {
	if held == nil || !holds(s, targetKey, held.AccessToken) {
		return time.Time{}
	}
	return held.ExpiresAt
}

// shownExpiry is the expiry of the token the owned Secret holds: the held token's, else that of the
// token last written there (shown), when the held one has not reached the Secret yet.
func shownExpiry(targetKey string, s *corev1.Secret, held, shown *heldToken) time.Time {
	if exp := heldExpiry(targetKey, s, held); !exp.IsZero() {
		return exp
	}
	return heldExpiry(targetKey, s, shown)
}

// targetSecret is the target Secret's desired content for the held token: the token key,
// expiresAt, the rendered template keys and, for User tokens, corpId; the template's labels and
// annotations (copied, never templated), managed-by and the expiry annotation.
func targetSecret(spec tokenSpec, h *heldToken, key types.NamespacedName) (desiredSecret, error) {
	tmpls, err := parseTemplates(spec.Template)
	if err != nil {
		return desiredSecret{}, err
	}
	expires := rfc3339(h.ExpiresAt)
	corpID := h.CorpID
	if corpID == "" {
		// A ThirdPartyApp token recovered from its target after a restart: the answer had no
		// corpId, the org is the spec's.
		corpID = spec.CorpID
	}
	rendered, err := renderTemplates(tmpls, templateFields{
		AccessToken: h.AccessToken, ExpiresAt: expires, Type: string(spec.Type), CorpID: corpID,
	})
	if err != nil {
		return desiredSecret{}, err
	}
	d := desiredSecret{Namespace: key.Namespace, Name: key.Name, Data: make(map[string][]byte, len(rendered)+3)}
	maps.Copy(d.Data, rendered)
	d.Data[spec.TargetKey] = []byte(h.AccessToken)
	d.Data[v1alpha1.ExpiresAtKey] = []byte(expires)
	if spec.Type == v1alpha1.TokenTypeUser {
		d.Data[v1alpha1.CorpIDKey] = []byte(h.CorpID)
	}
	var labels, annotations map[string]string
	if t := spec.Template; t != nil && t.Metadata != nil {
		labels, annotations = t.Metadata.Labels, t.Metadata.Annotations
	}
	d.Labels = managedLabels(labels)
	d.Annotations = make(map[string]string, len(annotations)+1)
	maps.Copy(d.Annotations, annotations)
	d.Annotations[v1alpha1.ExpiresAtAnnotation] = expires
	return d, nil
}

// targetWrite is the outcome of writing a target Secret.
type targetWrite struct {
	// written is set when the Secret holds the held token now.
	written bool
	// failure is why it does not (nil: no failure).
	failure *failure
	// secret is the Secret as written (resourceVersion) when it was created or applied.
	secret metav1.Object
}

// writeTarget makes the target Secret hold the held token: the first write is a create (an
// existing Secret the owner does not own is left alone: TargetConflict); an owned Secret whose
// data or metadata drifted is restored. An expired token is never written.
func (t targets) write(ctx context.Context, spec tokenSpec, h *heldToken, now time.Time,
	key types.NamespacedName, state targetState) (targetWrite, error) {
	if h == nil || !now.Before(h.ExpiresAt) {
		return targetWrite{}, nil
	}
	d, err := targetSecret(spec, h, key)
	if err != nil {
		return targetWrite{failure: &failure{reason: v1alpha1.ReasonTemplateInvalid, message: err.Error()}}, nil
	}
	// Detached from the reconcile, bounded: a stopping manager does not cut the write short.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), targetWriteTimeout)
	defer cancel()
	w := secretWriter{client: t.client, scheme: t.scheme, reader: t.reader}
	if state.secret == nil {
		s, err := w.create(ctx, t.owner, d)
		if apierrors.IsAlreadyExists(err) {
			// The name was taken meanwhile, or holds a Secret the cache cannot see.
			if state, err = t.createRaced(ctx, key); err != nil || state.conflict != nil {
				return targetWrite{failure: state.conflict}, err
			}
		} else if err != nil {
			return refusedTarget(key.Name, err)
		} else {
			return targetWrite{written: true, secret: s}, nil
		}
	}
	if upToDate(t.owner, state.secret, d) {
		return targetWrite{written: true}, nil
	}
	rv, err := w.apply(ctx, t.owner, state.secret, d)
	if err != nil {
		return refusedTarget(key.Name, err)
	}
	written := &metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, ResourceVersion: rv}
	return targetWrite{written: true, secret: written}, nil
}

// createRaced reads what holds a name a create found taken: a Secret the owner owns (the cache
// lagging, or its managed-by label removed) is then applied; any other is a TargetConflict.
func (t targets) createRaced(ctx context.Context, key types.NamespacedName) (targetState, error) {
	live := &corev1.Secret{}
	if err := t.reader.Get(ctx, key, live); err != nil {
		return targetState{}, err
	}
	if !metav1.IsControlledBy(live, t.owner) {
		return targetState{conflict: targetConflict(key.Name, t.ownerKind)}, nil
	}
	return targetState{secret: secretView(live, false)}, nil
}

// refusedTarget turns the API server refusing the target Secret as invalid into TemplateInvalid
// (the copied template metadata is the only input it can refuse: label or annotation syntax); the
// message names the fields, never their values. Any other API error is returned with its reason
// and code only (its message may quote what was written).
func refusedTarget(name string, err error) (targetWrite, error) {
	if !apierrors.IsInvalid(err) {
		if _, ok := err.(apierrors.APIStatus); ok {
			return targetWrite{}, fmt.Errorf("writing the target Secret %s: %w", name, errorWithoutDetails(err))
		}
		return targetWrite{}, err
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
	return targetWrite{failure: &failure{reason: v1alpha1.ReasonTemplateInvalid, message: fmt.Sprintf(
		"the API server refused the target Secret %s: invalid %s (label and annotation keys and values must be valid Kubernetes metadata)",
		name, strings.Join(fields, ", "))}}, nil
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
