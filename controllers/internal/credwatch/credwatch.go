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

// Package credwatch watches the credentials Secrets the operator's objects reference, as metadata
// only, and keeps the credential values last read of each at its current resourceVersion.
package credwatch

import (
	"context"
	"maps"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// MaxValue is the largest credential value the operator accepts (v1alpha1.MaxCredentialValueSize):
// no DingTalk key, secret, ticket, code or refresh token comes near it, and a larger one is refused
// (CredentialsInvalid) before it is copied, kept or sent anywhere. Values read are marked
// oversized, never kept.
const MaxValue = v1alpha1.MaxCredentialValueSize

// The credentials watch sees credentials Secrets change while holding nothing of the Secrets no
// token names. It lists and watches Secrets as metadata (in the served namespaces) and drops each
// list item and event at once unless a DingTalkToken or ClusterDingTalkToken references that
// Secret (the reconcilers' map functions, answered from the cache's indexes, say so). Of a
// referenced Secret it keeps the resourceVersion only: enough to know that its credentials must
// be read again, and to enqueue the objects that use them. Memory follows the referenced Secrets,
// whatever the number of Secrets in the cluster; a Secret that stops being referenced is dropped
// at its next event.

// MapFunc maps a credentials Secret to the objects of one kind that reference it.
type MapFunc func(context.Context, *metav1.PartialObjectMetadata) []reconcile.Request

// Watch is the watch of credentials Secrets, shared by every reconciler of a manager.
// It runs as a manager runnable; each reconciler registers its map function (referrer) and, once
// its controller starts, the queue the requests go to (RequestSource).
type Watch struct {
	client     metadata.Interface
	namespaces []string // empty: every namespace

	mu sync.Mutex
	// rvs is the last resourceVersion seen of each referenced Secret.
	rvs map[types.NamespacedName]string
	// values are the credential values read of a referenced Secret at the resourceVersion in rvs
	// (dropped when it moves): every object naming the Secret reads them there, so that a Secret
	// is read once per change, not once per object.
	values    map[types.NamespacedName]Values
	referrers []*referrer
}

// Values are the values of the keys read of a credentials Secret at resourceVersion rv:
// a key the Secret lacks holds "", a key whose value is over MaxValue is listed in
// Oversized instead (its value is never kept). Secret.
type Values struct {
	rv        string
	Keys      map[string]string
	Oversized map[string]bool
}

// referrer is one reconciler's interest in credentials Secrets.
type referrer struct {
	mapFn MapFunc
	queue workqueue.TypedRateLimitingInterface[reconcile.Request] // nil until the controller starts
}

func New(client metadata.Interface, namespaces []string) *Watch {
	return &Watch{client: client, namespaces: namespaces,
		rvs: map[types.NamespacedName]string{}, values: map[types.NamespacedName]Values{}}
}

// Source registers a reconciler's map function and returns the source its controller watches.
func (w *Watch) Source(mapFn MapFunc) *RequestSource {
	r := &referrer{mapFn: mapFn}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.referrers = append(w.referrers, r)
	return &RequestSource{w: w, r: r}
}

// RequestSource is a controller's source of requests from the credentials watch.
type RequestSource struct {
	w *Watch
	r *referrer
}

// Start makes the watch send this controller's requests to q.
func (s *RequestSource) Start(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.r.queue = q
	return nil
}

func (s *RequestSource) String() string { return "credentials Secrets (metadata, referenced only)" }

// NeedLeaderElection: only the leader reconciles, so only the leader needs to know.
func (w *Watch) NeedLeaderElection() bool { return true }

// Start lists and watches Secrets (one reflector per served namespace, or one for all) until ctx
// ends.
func (w *Watch) Start(ctx context.Context) error {
	namespaces := w.namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	logger := klog.FromContext(ctx)
	var wg sync.WaitGroup
	for _, ns := range namespaces {
		r := toolscache.NewReflectorWithOptions(w.listWatch(ns), &metav1.PartialObjectMetadata{}, watchStore{w: w, ctx: ctx, namespace: ns},
			toolscache.ReflectorOptions{Name: "credentials Secrets", TypeDescription: "Secret metadata", Logger: &logger})
		wg.Go(func() { r.RunWithContext(ctx) })
	}
	wg.Wait()
	return nil
}

// resourceVersion is the last resourceVersion seen of a referenced Secret ("": not known).
func (w *Watch) resourceVersion(key types.NamespacedName) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rvs[key]
}

// observe records the resourceVersion a pass read the Secret at: a Secret referenced after the
// watch last saw it is then known too. A newer one seen by the watch is kept.
func (w *Watch) observe(key types.NamespacedName, rv string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.observeLocked(key, rv)
}

func (w *Watch) observeLocked(key types.NamespacedName, rv string) {
	if old, ok := w.rvs[key]; !ok || newerVersion(rv, old) {
		w.rvs[key] = rv
	}
}

// Cached returns the values of keys read of the Secret at its current resourceVersion,
// when every one of them was read there.
func (w *Watch) Cached(key types.NamespacedName, keys []string) (Values, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.values[key]
	if !ok || v.rv == "" || v.rv != w.rvs[key] {
		return Values{}, false
	}
	for _, k := range keys {
		if _, read := v.Keys[k]; !read && !v.Oversized[k] {
			return Values{}, false
		}
	}
	return v, true
}

// Remember records the values of keys in s, read by a pass (values over MaxValue are
// marked, not kept), and returns them.
func (w *Watch) Remember(s *corev1.Secret, keys []string) Values {
	key := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.observeLocked(key, s.ResourceVersion)
	// A new value each time: passes may be reading the one stored (never changed once stored).
	v := Values{rv: s.ResourceVersion, Keys: map[string]string{}, Oversized: map[string]bool{}}
	if old := w.values[key]; old.rv == s.ResourceVersion {
		maps.Copy(v.Keys, old.Keys)
		maps.Copy(v.Oversized, old.Oversized)
	}
	for _, k := range keys {
		if raw := s.Data[k]; len(raw) > MaxValue {
			v.Oversized[k] = true
		} else {
			v.Keys[k] = strings.TrimSpace(string(raw))
		}
	}
	if w.rvs[key] == s.ResourceVersion {
		// Kept only while current: a newer version the watch already saw must be read.
		w.values[key] = v
	}
	return v
}

// newerVersion reports whether resourceVersion a is newer than b. Versions the API server does
// not order (never the case for etcd's) count as newer, so that a change is never missed.
func newerVersion(a, b string) bool {
	c, err := resourceversion.CompareResourceVersion(a, b)
	return err != nil || c > 0
}

// listWatch lists and watches the Secrets of namespace as metadata, dropping unreferenced ones
// as they are decoded, so that neither a list nor the initial events of a watch hold them.
func (w *Watch) listWatch(namespace string) *toolscache.ListWatch {
	secrets := w.client.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(namespace)
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			if opts.ResourceVersion == "0" {
				// "0" is served whole from the watch cache, ignoring the page size: ask for a
				// consistent list instead, which is served a page at a time.
				opts.ResourceVersion = ""
			}
			list, err := secrets.List(ctx, opts)
			if err != nil {
				return nil, err
			}
			kept := list.Items[:0]
			for _, m := range list.Items {
				if w.wanted(ctx, &m) {
					kept = append(kept, m)
				}
			}
			list.Items = kept
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			wi, err := secrets.Watch(ctx, opts)
			if err != nil {
				return nil, err
			}
			return watch.Filter(wi, func(e watch.Event) (watch.Event, bool) {
				m, ok := e.Object.(*metav1.PartialObjectMetadata)
				switch {
				case !ok || e.Type == watch.Bookmark || e.Type == watch.Error:
					return e, true // bookmarks carry the watch's progress (and the end of its initial events)
				default:
					return e, w.wanted(ctx, m)
				}
			}), nil
		},
	}
}

// wanted reports whether the watch keeps what it learns of m: m is referenced, or was.
func (w *Watch) wanted(ctx context.Context, m *metav1.PartialObjectMetadata) bool {
	w.mu.Lock()
	_, known := w.rvs[keyOf(m)]
	w.mu.Unlock()
	return known || len(w.requests(ctx, m)) > 0
}

// requests are the requests of every registered reconciler for m (with their queues).
func (w *Watch) requests(ctx context.Context, m *metav1.PartialObjectMetadata) []queuedRequest {
	w.mu.Lock()
	refs := append([]*referrer(nil), w.referrers...)
	w.mu.Unlock()
	var out []queuedRequest
	for _, r := range refs {
		for _, req := range r.mapFn(ctx, m) {
			out = append(out, queuedRequest{r: r, req: req})
		}
	}
	return out
}

type queuedRequest struct {
	r   *referrer
	req reconcile.Request
}

// seen records a Secret's current metadata: a referenced Secret whose resourceVersion moved
// enqueues the objects that reference it; an unreferenced one is forgotten.
func (w *Watch) seen(ctx context.Context, m *metav1.PartialObjectMetadata) {
	reqs := w.requests(ctx, m)
	key := keyOf(m)
	w.mu.Lock()
	old, known := w.rvs[key]
	switch {
	case len(reqs) == 0:
		delete(w.rvs, key)
		delete(w.values, key)
		w.mu.Unlock()
		return
	case known && old != m.ResourceVersion && !newerVersion(m.ResourceVersion, old):
		// A pass already read a newer version: this event is old news.
		w.mu.Unlock()
		return
	}
	w.rvs[key] = m.ResourceVersion
	if v, ok := w.values[key]; ok && v.rv != m.ResourceVersion {
		delete(w.values, key)
	}
	w.mu.Unlock()
	if !known || old != m.ResourceVersion {
		w.enqueue(reqs)
	}
}

// gone records a deleted Secret: the objects that reference it learn at once.
func (w *Watch) gone(ctx context.Context, m *metav1.PartialObjectMetadata) {
	w.mu.Lock()
	delete(w.rvs, keyOf(m))
	delete(w.values, keyOf(m))
	w.mu.Unlock()
	w.enqueue(w.requests(ctx, m))
}

func (w *Watch) enqueue(reqs []queuedRequest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, q := range reqs {
		if q.r.queue != nil {
			q.r.queue.Add(q.req)
		}
	}
}

// size is how many Secrets the watch holds a resourceVersion of.
func (w *Watch) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.rvs)
}

func keyOf(m *metav1.PartialObjectMetadata) types.NamespacedName {
	return types.NamespacedName{Namespace: m.Namespace, Name: m.Name}
}

// watchStore is the reflector's store: it turns list items and events into seen and gone.
type watchStore struct {
	w         *Watch
	ctx       context.Context
	namespace string // metav1.NamespaceAll: every namespace
}

var _ toolscache.ReflectorStore = watchStore{}

func (s watchStore) Add(obj any) error    { return s.Update(obj) }
func (s watchStore) Resync() error        { return nil }
func (s watchStore) Update(obj any) error { s.each(obj, s.w.seen); return nil }
func (s watchStore) Delete(obj any) error { s.each(obj, s.w.gone); return nil }

// Replace takes a full list (a first list, or a relist after the watch broke): Secrets missing
// from it were deleted meanwhile.
func (s watchStore) Replace(list []any, _ string) error {
	present := make(map[types.NamespacedName]bool, len(list))
	for _, obj := range list {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			present[keyOf(m)] = true
			s.w.seen(s.ctx, m)
		}
	}
	s.w.mu.Lock()
	var missing []types.NamespacedName
	for key := range s.w.rvs {
		if !present[key] && (s.namespace == metav1.NamespaceAll || key.Namespace == s.namespace) {
			missing = append(missing, key)
		}
	}
	s.w.mu.Unlock()
	for _, key := range missing {
		s.w.gone(s.ctx, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})
	}
	return nil
}

func (s watchStore) each(obj any, f func(context.Context, *metav1.PartialObjectMetadata)) {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		f(s.ctx, m)
		return
	}
	logr.FromContextOrDiscard(s.ctx).V(1).Info("Ignored an unexpected object from the credentials watch")
}
