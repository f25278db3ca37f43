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

package main

import (
	"context"
	"math"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// tokenState is what the bench saw of one DingTalkToken (or ClusterDingTalkToken, keyed by name).
type tokenState struct {
	created     time.Time // when its Create returned
	ready       time.Time // when it was first seen Ready
	readyNow    bool
	notReady    int // times seen not Ready after its first Ready
	lastRefresh time.Time
	refreshes   int // lastRefreshTime changes after the first token
	refreshTime time.Time
	lifetime    time.Duration
	provisioned int32 // ClusterDingTalkToken: status.namespaces.provisioned
}

// secretState is what the bench saw of one target Secret.
type secretState struct {
	first   time.Time // when the watch first delivered it
	changed time.Time // when its token or expiry last changed
	token   string
	expiry  time.Time
}

// watcher follows DingTalkTokens, ClusterDingTalkTokens and the operator's target Secrets
// through informers in the bench process, stamping each change with the time it arrived.
type watcher struct {
	c cache.Cache

	mu      sync.Mutex
	tokens  map[string]*tokenState
	secrets map[string]*secretState // by namespace/name
	// While steady is set: target Secret changes per wall-clock second, and the least remaining
	// lifetime seen in any target Secret (at each change, and sampled every second).
	steady       bool
	changes      map[int64]int
	minRemaining time.Duration
}

func newWatcher(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme) (*watcher, error) {
	managed := labels.SelectorFromSet(labels.Set{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue})
	c, err := cache.New(cfg, cache.Options{Scheme: scheme, ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Label: managed},
	}})
	if err != nil {
		return nil, err
	}
	w := &watcher{c: c, tokens: map[string]*tokenState{}, secrets: map[string]*secretState{},
		changes: map[int64]int{}, minRemaining: math.MaxInt64}
	for obj, handler := range map[client.Object]toolscache.ResourceEventHandlerFuncs{
		&v1alpha1.DingTalkToken{}: {
			AddFunc:    func(obj any) { w.onToken(obj) },
			UpdateFunc: func(_, obj any) { w.onToken(obj) },
		},
		&v1alpha1.ClusterDingTalkToken{}: {
			AddFunc:    func(obj any) { w.onToken(obj) },
			UpdateFunc: func(_, obj any) { w.onToken(obj) },
		},
		&corev1.Secret{}: {
			AddFunc:    func(obj any) { w.onSecret(nil, obj) },
			UpdateFunc: func(oldObj, obj any) { w.onSecret(oldObj, obj) },
		},
	} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return nil, err
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, err
		}
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, context.Canceled
	}
	go w.sample(ctx)
	return w, nil
}

func tokenKey(ns, name string) string { return ns + "/" + name }

// created records when a token's Create returned.
func (w *watcher) created(key string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state(key).created = at
}

func (w *watcher) state(key string) *tokenState {
	st := w.tokens[key]
	if st == nil {
		st = &tokenState{}
		w.tokens[key] = st
	}
	return st
}

func (w *watcher) onToken(obj any) {
	var key string
	var status *v1alpha1.TokenStatus
	var provisioned int32
	switch tok := obj.(type) {
	case *v1alpha1.DingTalkToken:
		key, status = tokenKey(tok.Namespace, tok.Name), &tok.Status.TokenStatus
	case *v1alpha1.ClusterDingTalkToken:
		key, status = tokenKey("", tok.Name), &tok.Status.TokenStatus
		if n := tok.Status.Namespaces; n != nil {
			provisioned = n.Provisioned
		}
	default:
		return
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.state(key)
	c := meta.FindStatusCondition(status.Conditions, v1alpha1.ConditionReady)
	ready := c != nil && c.Status == metav1.ConditionTrue
	if ready && st.ready.IsZero() {
		st.ready = now
	}
	if !ready && !st.ready.IsZero() {
		st.notReady++
	}
	st.readyNow = ready
	st.provisioned = provisioned
	if rt := status.RefreshTime; rt != nil {
		st.refreshTime = rt.Time
	}
	if lr := status.LastRefreshTime; lr != nil && !lr.Time.Equal(st.lastRefresh) {
		if !st.lastRefresh.IsZero() {
			st.refreshes++
		}
		st.lastRefresh = lr.Time
		if status.ExpiresAt != nil {
			st.lifetime = status.ExpiresAt.Sub(lr.Time)
		}
	}
}

// onSecret records a target Secret's arrival and the changes of its token or expiry.
func (w *watcher) onSecret(oldObj, obj any) {
	cur, ok := obj.(*corev1.Secret)
	if !ok || strings.HasSuffix(cur.Name, v1alpha1.RefreshTokenSecretSuffix) {
		return
	}
	now := time.Now()
	token := string(cur.Data[v1alpha1.DefaultTargetKey])
	w.mu.Lock()
	defer w.mu.Unlock()
	key := tokenKey(cur.Namespace, cur.Name)
	st := w.secrets[key]
	newExp := expiresAt(cur)
	if st == nil {
		st = &secretState{first: now, changed: now, token: token, expiry: newExp}
		w.secrets[key] = st
	}
	old, _ := oldObj.(*corev1.Secret)
	if old == nil {
		return
	}
	oldExp := expiresAt(old)
	if oldExp.Equal(newExp) && token == st.token {
		return
	}
	// DingTalk renews a token it reuses: a refresh may change the expiry alone.
	st.token, st.expiry, st.changed = token, newExp, now
	if !w.steady {
		return
	}
	w.changes[now.Unix()]++
	if !oldExp.IsZero() {
		w.minRemaining = min(w.minRemaining, oldExp.Sub(now))
	}
}

// sample looks at every target Secret once a second while steady is set.
func (w *watcher) sample(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		steady := w.steady
		w.mu.Unlock()
		if !steady {
			continue
		}
		var list corev1.SecretList
		if err := w.c.List(ctx, &list); err != nil {
			continue
		}
		now := time.Now()
		least := time.Duration(math.MaxInt64)
		for i := range list.Items {
			s := &list.Items[i]
			if strings.HasSuffix(s.Name, v1alpha1.RefreshTokenSecretSuffix) {
				continue
			}
			if exp := expiresAt(s); !exp.IsZero() {
				least = min(least, exp.Sub(now))
			}
		}
		w.mu.Lock()
		w.minRemaining = min(w.minRemaining, least)
		w.mu.Unlock()
	}
}

func expiresAt(s *corev1.Secret) time.Time {
	t, err := time.Parse(time.RFC3339, s.Annotations[v1alpha1.ExpiresAtAnnotation])
	if err != nil {
		return time.Time{}
	}
	return t
}

// setSteady starts or stops the steady-state recording (and resets it when starting).
func (w *watcher) setSteady(on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on {
		w.changes, w.minRemaining = map[int64]int{}, math.MaxInt64
	}
	w.steady = on
}

// snapshot copies the token states.
func (w *watcher) snapshot() map[string]tokenState {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]tokenState, len(w.tokens))
	for k, v := range w.tokens {
		out[k] = *v
	}
	return out
}

// token copies one token's state.
func (w *watcher) token(key string) tokenState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if st := w.tokens[key]; st != nil {
		return *st
	}
	return tokenState{}
}

// secretsNamed copies the states of the target Secrets named name, by namespace.
func (w *watcher) secretsNamed(name string) map[string]secretState {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]secretState{}
	for k, v := range w.secrets {
		if ns, n, _ := strings.Cut(k, "/"); n == name {
			out[ns] = *v
		}
	}
	return out
}

// peak returns the most target Secret changes in one second and that second, and the least
// remaining lifetime seen.
func (w *watcher) peak() (int, time.Time, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	best, at := 0, int64(0)
	for sec, n := range w.changes {
		if n > best || n == best && sec < at {
			best, at = n, sec
		}
	}
	return best, time.Unix(at, 0), w.minRemaining
}
