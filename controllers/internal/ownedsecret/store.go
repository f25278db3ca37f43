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

package ownedsecret

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/util/csaupgrade"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// Owned Secrets (targets, refresh-token and suite-ticket Secrets) are written under one field
// owner, FieldOwner. The first write is a create, so that a Secret someone else created under that name a moment
// earlier is never taken over (AlreadyExists). Every later write is a server-side apply, forced,
// under the resourceVersion the pass read (a Secret replaced meanwhile is a conflict, not
// overwritten): what the operator stops setting (a label dropped from the template, a data key)
// is removed by the API server, and what others set on the Secret's metadata stays. Data keys
// someone else added are removed: an owned Secret holds exactly the operator's data.

// FieldOwner is the field manager of every write the operator makes (its controllers' name).
const FieldOwner = client.FieldOwner("dingtalktoken")

// Desired is what an owned Secret must hold.
type Desired struct {
	Namespace, Name     string
	Labels, Annotations map[string]string
	Data                map[string][]byte
}

// writer writes Secrets owned (controller ownerReference) by an object.
type writer struct {
	client client.Client
	scheme *runtime.Scheme
	// reader reads uncached: the full managedFields an ownership upgrade rewrites (a view keeps
	// only this field manager's entries; a Secret read uncached has them all).
	reader client.Reader
}

// create creates the Secret owned by owner. AlreadyExists is returned as is.
func (w writer) create(ctx context.Context, owner client.Object, d Desired) (*corev1.Secret, error) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name, Labels: d.Labels, Annotations: d.Annotations},
		Type:       corev1.SecretTypeOpaque,
		Data:       d.Data,
	}
	if err := controllerutil.SetControllerReference(owner, s, w.scheme); err != nil {
		return nil, err
	}
	if err := w.client.Create(ctx, s, FieldOwner); err != nil {
		return nil, err
	}
	return s, nil
}

// apply makes the existing owned Secret live (a view) hold d, under live's resourceVersion, and
// returns the resourceVersion written.
func (w writer) apply(ctx context.Context, owner client.Object, live *corev1.Secret, d Desired) (string, error) {
	rv := live.ResourceVersion
	if stale := staleFields(live, d); stale && hasUpdateEntry(live) {
		// The fields the create set are held by an Update entry of this field owner, which an
		// apply does not release: merge it into the apply entry once, so that they can go.
		full, err := w.uncached(ctx, live)
		if err != nil {
			return "", err
		}
		patch, err := csaupgrade.UpgradeManagedFieldsPatch(full, sets.New(string(FieldOwner)), string(FieldOwner))
		if err != nil {
			return "", err
		}
		if patch != nil {
			upgraded := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: live.Namespace, Name: live.Name}}
			if err := w.client.Patch(ctx, upgraded, client.RawPatch(types.JSONPatchType, patch), FieldOwner); err != nil {
				return "", err
			}
			rv = upgraded.ResourceVersion
		}
	}
	ref, err := controllerRef(owner, w.scheme)
	if err != nil {
		return "", err
	}
	ac := corev1ac.Secret(d.Name, d.Namespace).
		WithResourceVersion(rv).
		WithType(corev1.SecretTypeOpaque).
		WithLabels(d.Labels).
		WithAnnotations(d.Annotations).
		WithOwnerReferences(ref).
		WithData(d.Data)
	if err := w.client.Apply(ctx, ac, FieldOwner, client.ForceOwnership); err != nil {
		return "", err
	}
	rv = ptr.Deref(ac.ResourceVersion, "")
	if extra := extraKeys(ac.Data, d.Data); len(extra) > 0 {
		// Keys someone else added stay with the apply (they are theirs): remove them.
		remove := map[string]any{}
		for _, k := range extra {
			remove[k] = nil
		}
		body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": rv}, "data": remove})
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name}}
		if err := w.client.Patch(ctx, s, client.RawPatch(types.MergePatchType, body), FieldOwner); err != nil {
			return "", err
		}
		rv = s.ResourceVersion
	}
	return rv, nil
}

// uncached is live with every managedFields entry, read from the API server unless live was;
// a Secret changed since the pass read it is a conflict (the pass is repeated).
func (w writer) uncached(ctx context.Context, live *corev1.Secret) (*corev1.Secret, error) {
	if !IsView(live) {
		return live, nil
	}
	full := &corev1.Secret{}
	if err := w.reader.Get(ctx, client.ObjectKeyFromObject(live), full); err != nil {
		return nil, err
	}
	if full.ResourceVersion != live.ResourceVersion {
		return nil, apierrors.NewConflict(corev1.Resource("secrets"), live.Name, errors.New("changed since it was read"))
	}
	return full, nil
}

// controllerRef is the controller ownerReference to owner.
func controllerRef(owner client.Object, scheme *runtime.Scheme) (*metav1ac.OwnerReferenceApplyConfiguration, error) {
	gvk, err := apiutil.GVKForObject(owner, scheme)
	if err != nil {
		return nil, err
	}
	return metav1ac.OwnerReference().
		WithAPIVersion(gvk.GroupVersion().String()).
		WithKind(gvk.Kind).
		WithName(owner.GetName()).
		WithUID(owner.GetUID()).
		WithController(true).
		WithBlockOwnerDeletion(true), nil
}

// extraKeys lists the keys of have that want lacks.
func extraKeys(have, want map[string][]byte) []string {
	var out []string
	for k := range have {
		if _, ok := want[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// ManagedLabels are the labels every owned Secret carries: the cache selects them by it.
func ManagedLabels(extra map[string]string) map[string]string {
	out := make(map[string]string, len(extra)+1)
	maps.Copy(out, extra)
	out[v1alpha1.ManagedByLabel] = v1alpha1.ManagedByValue
	return out
}

// Store reads and writes the Secrets objects own. Reads go to the cache (views) first, and to the
// API server where the cache cannot answer: a name it does not hold (a Secret without the
// managed-by label is invisible to it), a copy older than this process's own last write, a
// truncated view, or values a pass needs. Every write is recorded (Writes) so that the next read
// knows whether the cache has caught up with it.
type Store struct {
	// client reads the cache (views of the labelled Secrets) and writes.
	client client.Client
	// reader reads uncached.
	reader client.Reader
	scheme *runtime.Scheme
	writes *Writes
}

// NewStore is the Store of a manager's reconcilers: c their client, reader their uncached reader,
// writes the record of this process's writes (which the passes also keep their own objects'
// status writes in).
func NewStore(c client.Client, reader client.Reader, scheme *runtime.Scheme, writes *Writes) *Store {
	return &Store{client: c, reader: reader, scheme: scheme, writes: writes}
}

// State is what a Secret's name holds for an owner, as a pass read it.
type State struct {
	// View is the view of the Secret the owner controls (nil: there is none, or it is Foreign).
	View *corev1.Secret
	// Live is that Secret as read uncached, values included, when the read asked for them (nil
	// otherwise: no value is kept beyond the pass that needs it).
	Live *corev1.Secret
	// Foreign is set when the name holds a Secret the owner does not control: it is never
	// written, nor read for a value.
	Foreign bool
	// Unverified is set when the cache holds no Secret of that name and the API server was not
	// asked (GetOptions.Verify false).
	Unverified bool
}

// GetOptions say how far Get goes beyond the cache.
type GetOptions struct {
	// Verify looks a name the cache does not hold up on the API server.
	Verify bool
	// Values reads a Secret the owner controls uncached, values included (State.Live).
	Values bool
}

// Get reads what the name key holds for owner: the cache's view, else (see Store) the Secret read
// uncached, returned as a view, and with its values when o.Values asks.
func (s *Store) Get(ctx context.Context, owner client.Object, key types.NamespacedName, o GetOptions) (State, error) {
	sec := &corev1.Secret{}
	err := s.client.Get(ctx, key, sec)
	if apierrors.IsNotFound(err) && !o.Verify {
		return State{Unverified: true}, nil
	}
	if apierrors.IsNotFound(err) || err == nil && (s.writes.Stale(ownerKey(owner), "Secret", sec) || Truncated(sec) ||
		o.Values && metav1.IsControlledBy(sec, owner)) {
		sec = &corev1.Secret{}
		err = s.reader.Get(ctx, key, sec)
	}
	return s.state(owner, sec, err, o.Values)
}

// Live reads what the name key holds for owner uncached, values included (State.Live): the read
// right before a refresh-token rotation, a pushed ticket's Secret, a token recovered after a
// restart.
func (s *Store) Live(ctx context.Context, owner client.Object, key types.NamespacedName) (State, error) {
	sec := &corev1.Secret{}
	err := s.reader.Get(ctx, key, sec)
	return s.state(owner, sec, err, true)
}

// Checked is the state of a Secret the owner controls that a cached list showed (its view): that
// view, unless the cache may predate this process's own write or the view is truncated; then it
// is read again (Get).
func (s *Store) Checked(ctx context.Context, owner client.Object, view *corev1.Secret) (State, error) {
	if !s.writes.Stale(ownerKey(owner), "Secret", view) && !Truncated(view) {
		return State{View: view}, nil
	}
	return s.Get(ctx, owner, client.ObjectKeyFromObject(view), GetOptions{Verify: true})
}

// state is what a read (sec, err) shows of a name for owner.
func (s *Store) state(owner client.Object, sec *corev1.Secret, err error, values bool) (State, error) {
	switch {
	case apierrors.IsNotFound(err):
		return State{}, nil
	case err != nil:
		return State{}, err
	case !metav1.IsControlledBy(sec, owner):
		return State{Foreign: true}, nil
	}
	st := State{View: View(sec, false)}
	if values && !IsView(sec) {
		st.Live = sec
	}
	return st, nil
}

// Ensure makes the name key hold d for owner, from what a pass read there (st): the first write is
// a create, and a name taken meanwhile by a Secret the owner does not control is left alone
// (foreign); an owned Secret whose data or metadata drifted is applied again; one that holds d is
// not written. changed reports a write.
func (s *Store) Ensure(ctx context.Context, owner client.Object, key types.NamespacedName, st State, d Desired) (changed, foreign bool, _ error) {
	if st.Foreign {
		return false, true, nil
	}
	if st.View == nil {
		_, err := s.Create(ctx, owner, d)
		if !apierrors.IsAlreadyExists(err) {
			return err == nil, false, err
		}
		// The name was taken meanwhile, or holds a Secret the cache cannot see: a Secret the
		// owner controls (the cache lagging, or its managed-by label removed) is applied. One
		// deleted again since the create was refused is not found: the pass is retried.
		if st, err = s.Live(ctx, owner, key); err != nil || st.Foreign {
			return false, st.Foreign, err
		}
		if st.View == nil {
			return false, false, apierrors.NewNotFound(corev1.Resource("secrets"), key.Name)
		}
	}
	changed, err := s.Update(ctx, owner, st.View, d)
	return changed, false, err
}

// Write creates the Secret d for owner when the pass read none there (live nil), else makes the
// Secret it read (live) hold d (Update).
func (s *Store) Write(ctx context.Context, owner client.Object, live *corev1.Secret, d Desired) error {
	if live == nil {
		_, err := s.Create(ctx, owner, d)
		return err
	}
	_, err := s.Update(ctx, owner, live, d)
	return err
}

// Create creates the Secret d for owner (a controller ownerReference). AlreadyExists is returned
// as is: the name is taken.
func (s *Store) Create(ctx context.Context, owner client.Object, d Desired) (*corev1.Secret, error) {
	created, err := writer{client: s.client, scheme: s.scheme, reader: s.reader}.create(ctx, owner, d)
	if err == nil {
		s.writes.Wrote(ownerKey(owner), "Secret", created)
	}
	return created, err
}

// Update makes the existing Secret owner controls (live: its view, or the Secret read uncached)
// hold d, under live's resourceVersion (a Secret changed since it was read is a conflict). One
// that already holds d is not written; when it was read uncached, it is what the cache must
// catch up with before its copy is believed. changed reports a write.
func (s *Store) Update(ctx context.Context, owner client.Object, live *corev1.Secret, d Desired) (changed bool, _ error) {
	if UpToDate(owner, View(live, false), d) {
		if !IsView(live) {
			s.writes.Wrote(ownerKey(owner), "Secret", live)
		}
		return false, nil
	}
	rv, err := writer{client: s.client, scheme: s.scheme, reader: s.reader}.apply(ctx, owner, live, d)
	if err != nil {
		return false, err
	}
	s.writes.Wrote(ownerKey(owner), "Secret", &metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name, ResourceVersion: rv})
	return true, nil
}

func ownerKey(owner client.Object) types.NamespacedName { return client.ObjectKeyFromObject(owner) }

// Writes holds, per owner (an object of the operator's kinds, by its key), the resourceVersion
// of each object this process last wrote for it (its own status, its Secrets) until the cache
// has caught up with that write: a cached copy older than our own write is read again from the
// API server instead of being mistaken for drift, or for an old status.
type Writes struct {
	mu sync.Mutex
	// written holds an owner's writes (one or two: its status, a Secret) as a small slice: a map
	// per owner cost about 300 bytes more per object.
	written map[types.NamespacedName][]write
}

// write is one object written for an owner, at resourceVersion rv.
type write struct {
	kind, namespace, name, rv string
}

// NewWrites is an empty record.
func NewWrites() *Writes { return &Writes{written: map[types.NamespacedName][]write{}} }

// Wrote records the resourceVersion of an object of kind written for owner.
func (m *Writes) Wrote(owner types.NamespacedName, kind string, obj metav1.Object) {
	if obj.GetResourceVersion() == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	w := write{kind: kind, namespace: obj.GetNamespace(), name: obj.GetName(), rv: obj.GetResourceVersion()}
	ws := m.written[owner]
	if i := index(ws, w); i >= 0 {
		ws[i] = w
		return
	}
	m.written[owner] = append(ws, w)
}

// index is the position of the write of w's object in ws, -1 when there is none.
func index(ws []write, w write) int {
	for i, x := range ws {
		if x.kind == w.kind && x.namespace == w.namespace && x.name == w.name {
			return i
		}
	}
	return -1
}

// Stale reports whether a cached object may predate what this process last wrote for owner: the
// cache has not shown that write (or a later one) yet. Once it has, the write is forgotten.
func (m *Writes) Stale(owner types.NamespacedName, kind string, obj metav1.Object) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	ws := m.written[owner]
	i := index(ws, write{kind: kind, namespace: obj.GetNamespace(), name: obj.GetName()})
	if i < 0 {
		return false
	}
	if !caughtUp(obj.GetResourceVersion(), ws[i].rv) {
		return true
	}
	if len(ws) == 1 {
		delete(m.written, owner)
	} else {
		m.written[owner] = slices.Delete(ws, i, i+1)
	}
	return false
}

// Forget drops the writes recorded for a deleted owner.
func (m *Writes) Forget(owner types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.written, owner)
}

// caughtUp reports whether a cached resourceVersion is the one written or a later one (versions
// the API server does not order count only when equal).
func caughtUp(cached, written string) bool {
	if cached == written {
		return true
	}
	c, err := resourceversion.CompareResourceVersion(cached, written)
	return err == nil && c > 0
}
