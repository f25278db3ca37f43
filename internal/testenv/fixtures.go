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

package testenv

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// PollInterval is how often the waits below read the API server.
const PollInterval = 100 * time.Millisecond

// conflictBackoff spaces the retries of a conflicting update over about 10s: the operator may
// write the same object's status many times in a row on a loaded machine.
var conflictBackoff = wait.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Steps: 10}

// CreateNamespace creates a namespace named prefix-<6 random hex digits> and returns its name:
// unique per run, since envtest has no namespace controller and never finishes deleting one.
func CreateNamespace(ctx context.Context, c client.Client, prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-" + testutil.RandHex(3)}}
	if err := c.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("creating namespace %s: %w", ns.Name, err)
	}
	return ns.Name, nil
}

// CreateSecret creates a Secret with data (as stringData) and returns it as stored.
func CreateSecret(ctx context.Context, c client.Client, ns, name string, data map[string]string) (*corev1.Secret, error) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	if err := c.Create(ctx, s); err != nil {
		return nil, fmt.Errorf("creating Secret %s/%s: %w", ns, name, err)
	}
	return s, nil
}

// UpdateSecret sets keys of a Secret (a value of "" deletes the key), retrying on conflicts.
func UpdateSecret(ctx context.Context, c client.Client, ns, name string, data map[string]string) error {
	return Update(ctx, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, func(s *corev1.Secret) {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range data {
			if v == "" {
				delete(s.Data, k)
			} else {
				s.Data[k] = []byte(v)
			}
		}
	})
}

// Update reads obj (by its namespace and name), applies change and writes it back, retrying on
// conflicts with a writer in between (the operator writing status, say).
func Update[T client.Object](ctx context.Context, c client.Client, obj T, change func(T)) error {
	err := retry.RetryOnConflict(conflictBackoff, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change(obj)
		return c.Update(ctx, obj)
	})
	if err != nil {
		return fmt.Errorf("updating %T %s/%s: %w", obj, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// NewToken returns a DingTalkToken of typ named name in ns that reads the credentials Secret
// credentials.
func NewToken(ns, name string, typ v1alpha1.TokenType, credentials string) *v1alpha1.DingTalkToken {
	return &v1alpha1.DingTalkToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.DingTalkTokenSpec{
			Type:           typ,
			CredentialsRef: v1alpha1.CredentialsReference{Name: credentials},
		},
	}
}

// GetToken reads a DingTalkToken.
func GetToken(ctx context.Context, c client.Client, ns, name string) (*v1alpha1.DingTalkToken, error) {
	tok := &v1alpha1.DingTalkToken{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, tok); err != nil {
		return nil, err
	}
	return tok, nil
}

// UpdateToken changes a DingTalkToken (its spec or metadata), retrying on conflicts.
func UpdateToken(ctx context.Context, c client.Client, ns, name string, change func(*v1alpha1.DingTalkToken)) error {
	return Update(ctx, c, &v1alpha1.DingTalkToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, change)
}

// Condition returns the condition typ of tok, or an empty one.
func Condition(tok *v1alpha1.DingTalkToken, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(tok.Status.Conditions, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// WaitForToken reads the DingTalkToken every PollInterval until check accepts it (returns nil)
// and returns that version. On timeout the error holds check's last complaint.
func WaitForToken(ctx context.Context, c client.Client, ns, name string, timeout time.Duration,
	check func(*v1alpha1.DingTalkToken) error) (*v1alpha1.DingTalkToken, error) {
	var tok *v1alpha1.DingTalkToken
	last := errors.New("never read")
	err := wait.PollUntilContextTimeout(ctx, PollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		t, err := GetToken(ctx, c, ns, name)
		if err == nil {
			err = check(t)
		}
		if err != nil {
			last = err
			return false, nil
		}
		tok = t
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("DingTalkToken %s/%s after %s: %w", ns, name, timeout, last)
	}
	return tok, nil
}

// HasCondition accepts a DingTalkToken whose condition typ has status and reason and observed
// its current generation.
func HasCondition(typ string, status metav1.ConditionStatus, reason string) func(*v1alpha1.DingTalkToken) error {
	return func(tok *v1alpha1.DingTalkToken) error {
		c := Condition(tok, typ)
		if c.Status != status || c.Reason != reason {
			return fmt.Errorf("%s is %q (%s: %s), want %q (%s)", typ, c.Status, c.Reason, c.Message, status, reason)
		}
		if c.ObservedGeneration != tok.Generation {
			return fmt.Errorf("%s observed generation %d, the object is at %d", typ, c.ObservedGeneration, tok.Generation)
		}
		return nil
	}
}

// IsReady accepts a DingTalkToken that is Ready with a token: Ready True (TokenValid) for its
// current generation, with status.expiresAt and status.lastRefreshTime set.
func IsReady(tok *v1alpha1.DingTalkToken) error {
	if err := HasCondition(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonTokenValid)(tok); err != nil {
		return err
	}
	if tok.Status.ExpiresAt == nil || tok.Status.LastRefreshTime == nil {
		return errors.New("Ready without status.expiresAt and status.lastRefreshTime")
	}
	return nil
}

// RefreshedAfter accepts a DingTalkToken whose status.lastRefreshTime is after since.
func RefreshedAfter(since time.Time) func(*v1alpha1.DingTalkToken) error {
	return func(tok *v1alpha1.DingTalkToken) error {
		if lr := tok.Status.LastRefreshTime; lr == nil || !lr.After(since) {
			return fmt.Errorf("last refresh %v, want after %s", lr, since.UTC().Format(time.RFC3339))
		}
		return nil
	}
}

// EventCounts counts the events (events.k8s.io, series included) about one DingTalkToken, by reason.
func EventCounts(ctx context.Context, c client.Client, ns, name string) (map[string]int, error) {
	var list eventsv1.EventList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, e := range list.Items {
		if e.Regarding.Name != name || e.Regarding.Kind != "DingTalkToken" {
			continue
		}
		n := int32(1)
		if e.Series != nil {
			n = e.Series.Count
		}
		out[e.Reason] += int(n)
	}
	return out, nil
}

// EventReasons lists the reasons of every event in ns.
func EventReasons(ctx context.Context, c client.Client, ns string) ([]string, error) {
	var list eventsv1.EventList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Reason)
	}
	return out, nil
}

// CheckOwnedBy checks that obj carries exactly one ownerReference: tok's controller reference,
// blocking its owner's deletion, by which the garbage collector deletes obj with tok (envtest
// runs no garbage collector: the reference is what can be checked).
func CheckOwnedBy(obj metav1.Object, tok *v1alpha1.DingTalkToken) error {
	refs := obj.GetOwnerReferences()
	if len(refs) != 1 {
		return fmt.Errorf("%s has %d ownerReferences, want 1", obj.GetName(), len(refs))
	}
	ref := refs[0]
	switch {
	case ref.UID != tok.UID:
		return fmt.Errorf("%s is owned by UID %s, want %s", obj.GetName(), ref.UID, tok.UID)
	case ref.Kind != "DingTalkToken" || ref.APIVersion != v1alpha1.GroupVersion.String():
		return fmt.Errorf("%s is owned by a %s %s", obj.GetName(), ref.APIVersion, ref.Kind)
	case ref.Controller == nil || !*ref.Controller:
		return fmt.Errorf("%s: the ownerReference is not the controller reference", obj.GetName())
	case ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion:
		return fmt.Errorf("%s: the ownerReference does not block its owner's deletion", obj.GetName())
	}
	return nil
}
