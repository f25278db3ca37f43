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
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/memory"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/safe"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/tmpl"
)

// targetWriteTimeout bounds the writes of one target Secret (on a context detached from the
// reconcile's, like the status write).
const targetWriteTimeout = 5 * time.Second

// targets reads and writes target Secrets for any token kind, through the owned Secrets' store:
// owner is the object that owns them (a controller ownerReference), ownerKind names it in
// messages.
type targets struct {
	store     *ownedsecret.Store
	owner     client.Object
	ownerKind string
	// recover asks read for the Secret's values (State.Live): memory holds no token.
	recover bool
}

// read reads a target Secret: the cache's view, else the Secret read uncached (a name the cache
// does not hold, when verify asks; a cached copy older than this process's own write; a
// truncated view; values to recover). With verify false, a name the cache does not hold is not
// looked up (State.Unverified).
func (t targets) read(ctx context.Context, key types.NamespacedName, verify bool) (ownedsecret.State, error) {
	return t.store.Get(ctx, t.owner, key, ownedsecret.GetOptions{Verify: verify, Values: t.recover})
}

// conflict is TargetConflict when the name holds a Secret the owner does not control.
func (t targets) conflict(st ownedsecret.State, name string) *failure {
	if !st.Foreign {
		return nil
	}
	return targetConflict(name, t.ownerKind)
}

// recoverHeld trusts the token in an owned target Secret after a restart when its HMAC equals
// status.tokenDigest: it is then the token this operator wrote, with status's timing. s is the
// Secret as read uncached (a view holds no token).
func recoverHeld(d digest.Digester, uid types.UID, st *v1alpha1.TokenStatus, targetKey string, s *corev1.Secret) *memory.Token {
	value := string(s.Data[targetKey])
	if value == "" || st.ExpiresAt == nil || st.LastRefreshTime == nil || !d.Matches(st.TokenDigest, uid, "token", value) {
		return nil
	}
	return &memory.Token{
		UID: uid, AccessToken: value, CorpID: string(s.Data[v1alpha1.CorpIDKey]),
		IssuedAt: st.LastRefreshTime.Time, ExpiresAt: st.ExpiresAt.Time,
	}
}

// heldExpiry is the expiry of the token the owned Secret (a view) holds, when it is the held token.
func heldExpiry(targetKey string, s *corev1.Secret, held *memory.Token) time.Time {
	if held == nil || !ownedsecret.Holds(s, targetKey, held.AccessToken) {
		return time.Time{}
	}
	return held.ExpiresAt
}

// shownExpiry is the expiry of the token the owned Secret holds: the held token's, else that of the
// token last written there (shown), when the held one has not reached the Secret yet.
func shownExpiry(targetKey string, s *corev1.Secret, held, shown *memory.Token) time.Time {
	if exp := heldExpiry(targetKey, s, held); !exp.IsZero() {
		return exp
	}
	return heldExpiry(targetKey, s, shown)
}

// targetSecret is the target Secret's desired content for the held token: the token key,
// expiresAt, the rendered template keys and, for User tokens, corpId; the template's labels and
// annotations (copied, never templated), managed-by and the expiry annotation.
func targetSecret(spec tokenSpec, h *memory.Token, key types.NamespacedName) (ownedsecret.Desired, error) {
	tmpls, err := tmpl.Parse(spec.Template)
	if err != nil {
		return ownedsecret.Desired{}, err
	}
	expires := rfc3339(h.ExpiresAt)
	corpID := h.CorpID
	if corpID == "" {
		// A ThirdPartyApp token recovered from its target after a restart: the answer had no
		// corpId, the org is the spec's.
		corpID = spec.CorpID
	}
	rendered, err := tmpl.Render(tmpls, tmpl.Fields{
		AccessToken: h.AccessToken, ExpiresAt: expires, Type: string(spec.Type), CorpID: corpID,
	})
	if err != nil {
		return ownedsecret.Desired{}, err
	}
	d := ownedsecret.Desired{Namespace: key.Namespace, Name: key.Name, Data: make(map[string][]byte, len(rendered)+3)}
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
	d.Labels = ownedsecret.ManagedLabels(labels)
	d.Annotations = make(map[string]string, len(annotations)+1)
	maps.Copy(d.Annotations, annotations)
	d.Annotations[v1alpha1.ExpiresAtAnnotation] = expires
	return d, nil
}

// targetWrite is the outcome of writing a target Secret.
type targetWrite struct {
	// written is set when the Secret holds the held token now.
	written bool
	// changed is set when this write changed it (a create or an apply).
	changed bool
	// failure is why it does not hold it (nil: no failure).
	failure *failure
}

// write makes the target Secret hold the held token: the first write is a create (an existing
// Secret the owner does not own is left alone: TargetConflict); an owned Secret whose data or
// metadata drifted is restored. An expired token is never written.
func (t targets) write(ctx context.Context, spec tokenSpec, h *memory.Token, now time.Time,
	key types.NamespacedName, st ownedsecret.State) (targetWrite, error) {
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
	changed, foreign, err := t.store.Ensure(ctx, t.owner, key, st, d)
	switch {
	case foreign:
		return targetWrite{failure: targetConflict(key.Name, t.ownerKind)}, err
	case err != nil:
		return refusedTarget(key.Name, err)
	}
	return targetWrite{written: true, changed: changed}, nil
}

// dryRunTemplates parses the templates and renders them over placeholder values, so that a bad
// template is reported before a DingTalk call is spent on a token that could not be written.
func dryRunTemplates(spec tokenSpec) *failure {
	if err := tmpl.Check(spec.Template, spec.Type); err != nil {
		return &failure{reason: v1alpha1.ReasonTemplateInvalid, message: err.Error()}
	}
	return nil
}

// refusedTarget turns the API server refusing the target Secret as invalid into TemplateInvalid
// (the copied template metadata is the only input it can refuse: label or annotation syntax); the
// message names the fields, never their values. Any other API error is returned with its reason
// and code only (its message may quote what was written).
func refusedTarget(name string, err error) (targetWrite, error) {
	if !apierrors.IsInvalid(err) {
		if _, ok := err.(apierrors.APIStatus); ok {
			return targetWrite{}, fmt.Errorf("writing the target Secret %s: %w", name, safe.APIError(err))
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
