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

// Package controllers holds the DingTalkToken reconciler: it fetches DingTalk access tokens,
// writes them into target Secrets and refreshes them before they expire.
package controllers

import (
	"context"
	"errors"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

// +kubebuilder:rbac:groups=dingtalk.tokens.dev,resources=dingtalktokens,verbs=get;list;watch
// +kubebuilder:rbac:groups=dingtalk.tokens.dev,resources=dingtalktokens/status,verbs=update;patch
// +kubebuilder:rbac:groups=dingtalk.tokens.dev,resources=dingtalktokens/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// credentialsRefIndex indexes DingTalkTokens by spec.credentialsRef.name.
const credentialsRefIndex = ".spec.credentialsRef.name"

// controllerName names the controller and the field owner of every write (fieldOwner).
const controllerName = "dingtalktoken"

// DingTalkTokenReconciler keeps each DingTalkToken's target Secret holding a valid token.
//
// Where the last good token lives: in memory (keyed by the DingTalkToken, checked against its UID)
// and in the target Secret itself. A pass that must restore an edited or deleted target takes the
// token from memory. After a restart memory is empty: the token in the target Secret is trusted
// again when its HMAC (keyed by the installation's digest key) equals status.tokenDigest; when the target was deleted or
// edited while the operator was down, nothing trustworthy is left and the token is fetched again.
type DingTalkTokenReconciler struct {
	// Client is the manager's client: cached reads of DingTalkTokens and of the operator's own
	// (labelled) Secrets, and every write.
	client.Client
	// APIReader reads uncached: credentials Secrets, refresh-token Secrets before a rotation,
	// workloads, and target names the cache cannot see.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	// Recorder emits events on transitions only (mgr.GetEventRecorder).
	Recorder events.EventRecorder
	// Clock reads the time (default the real clock).
	Clock clock.Clock
	// DingTalk fetches tokens.
	DingTalk dingtalk.Client
	// Endpoint is the DingTalk base URL; part of the shared-fetch key.
	Endpoint string
	// WatchNamespaces restricts the credentials watch (empty: all namespaces). The manager's own
	// cache is restricted through CacheOptions.
	WatchNamespaces []string
	// EnableRolloutRestart allows patching spec.rolloutRestartTargets' pod templates.
	EnableRolloutRestart bool
	// MaxConcurrentReconciles is passed to the controller (0: controller-runtime's default of 1).
	MaxConcurrentReconciles int
	// DigestKey is the installation's digest key (LoadDigestKey) of the machinery made when
	// Machinery is nil.
	DigestKey []byte

	initOnce sync.Once
	// Machinery is what every token kind's reconciler shares (nil: a machinery of its own, from
	// Clock, DingTalk and Endpoint).
	*Machinery
}

// CacheOptions returns the manager's cache options: Secrets are cached only when labelled
// app.kubernetes.io/managed-by=dingtalk-token-operator, as views that hold no data (secretView),
// DingTalkTokens and ClusterDingTalkTokens only when tokens matches them (nil or empty: all; the
// operator serves no other), and everything only in namespaces (empty: all). Memory then follows
// the number of the operator's own Secrets, not the cluster's Secrets nor their size.
// managedFields are dropped (caches.go), but for the operator's own entries on its Secrets.
func CacheOptions(namespaces []string, tokens labels.Selector) cache.Options {
	if tokens != nil && tokens.Empty() {
		tokens = nil
	}
	return cache.Options{
		DefaultNamespaces: namespaceConfig(namespaces),
		DefaultTransform:  stripManagedFields,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Label:     labels.SelectorFromSet(labels.Set{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}),
				Transform: cachedSecret,
			},
			&v1alpha1.DingTalkToken{}:        {Label: tokens},
			&v1alpha1.ClusterDingTalkToken{}: {Label: tokens},
		},
	}
}

func namespaceConfig(namespaces []string) map[string]cache.Config {
	if len(namespaces) == 0 {
		return nil
	}
	out := make(map[string]cache.Config, len(namespaces))
	for _, ns := range namespaces {
		out[ns] = cache.Config{}
	}
	return out
}

func (r *DingTalkTokenReconciler) init() {
	r.initOnce.Do(func() {
		if r.Clock == nil {
			r.Clock = clock.RealClock{}
		}
		if r.Machinery == nil {
			r.Machinery = NewMachinery(r.Clock, r.DingTalk, r.Endpoint, r.DigestKey)
		}
	})
}

// SetupWithManager registers the controller: DingTalkTokens, their owned Secrets (targets and
// refresh-token Secrets, from the label-selected cache) and, through the credentials watch, the
// credentials Secrets they reference.
func (r *DingTalkTokenReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.init()
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Scheme == nil {
		r.Scheme = mgr.GetScheme()
	}
	if r.DingTalk == nil || r.Recorder == nil {
		return errors.New("DingTalkTokenReconciler needs DingTalk and Recorder")
	}
	ctx := context.Background()
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.DingTalkToken{}, credentialsRefIndex,
		func(o client.Object) []string {
			return []string{o.(*v1alpha1.DingTalkToken).Spec.CredentialsRef.Name}
		}); err != nil {
		return err
	}
	if err := r.setup(mgr, r.Client, r.APIReader, r.WatchNamespaces); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(controllerName).
		For(&v1alpha1.DingTalkToken{}, builder.WithPredicates(specOrRequestChanged())).
		Owns(&corev1.Secret{}).
		WatchesRawSource(r.credentials.source(r.tokensForCredentials)).
		// DingTalk Stream: a connection's state changed or a pushed ticket was stored.
		WatchesRawSource(source.Channel(r.tickets.tokenEvents, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
}

// tokensForCredentials maps a Secret to the DingTalkTokens naming it as credentials.
func (r *DingTalkTokenReconciler) tokensForCredentials(ctx context.Context, s *metav1.PartialObjectMetadata) []reconcile.Request {
	var list v1alpha1.DingTalkTokenList
	if err := r.List(ctx, &list, client.InNamespace(s.Namespace), client.MatchingFields{credentialsRefIndex: s.Name}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list DingTalkTokens for a credentials Secret", "secret", s.Name)
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

// Reconcile converges one DingTalkToken: its target Secret holds a valid token, refreshed on time.
// DingTalk failures become conditions; only API-server errors are returned.
func (r *DingTalkTokenReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	r.init()
	// Libraries called with ctx (client-go) log request bodies, Secrets included, at V(8) and up.
	ctx = logr.NewContext(ctx, CapLogVerbosity(ctrl.LoggerFrom(ctx)))
	// Load the object; when it is gone only memory and metrics are left (its Secrets go with it
	// through their ownerReferences).
	tok, err := r.load(ctx, req.NamespacedName)
	if tok != nil && !tok.DeletionTimestamp.IsZero() {
		r.forgetStream(req.NamespacedName) // being deleted: no DingTalk Stream connection is held for it
	}
	if err != nil || tok == nil || !tok.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, err
	}
	p := r.startPass(ctx, tok)
	// One status write, the events of its transitions and the metrics, however the pass ends.
	defer func() { res, err = p.finish(ctx, err) }()

	// See what the target Secret holds and recover the last good token: a read only, so that
	// Ready reflects the Secret however the pass ends. A new object's target the cache does not
	// hold is looked up only before a DingTalk call (verifyTarget).
	targets := r.targets(p)
	targetKey := types.NamespacedName{Namespace: tok.Namespace, Name: tok.TargetName()}
	target, err := targets.readVerified(ctx, targetKey, !p.isNew())
	if err != nil {
		return ctrl.Result{}, err
	}
	p.observeTarget(target)
	// A rotated user refresh token not yet stored (or a deleted refresh-token Secret) is written
	// before anything else.
	if err := r.flushRefreshToken(ctx, p); err != nil {
		return ctrl.Result{}, err
	}
	// Suspended: no DingTalk call and no write; status reports what the Secret holds.
	if p.spec.Suspend {
		p.suspend()
		r.holdStream(&p.tokenPass)
		return ctrl.Result{}, nil
	}
	p.resume()
	// Another owner's Secret is never written, and a template that cannot render blocks every
	// write: report them before spending a DingTalk call.
	if f := firstFailure(target.conflict, dryRunTemplates(p.spec)); f != nil {
		p.fail(*f)
		return ctrl.Result{}, nil
	}
	// Read the credentials (uncached) and decide whether this pass calls DingTalk.
	if p.creds, err = r.readCredentials(ctx, &p.tokenPass); err != nil {
		return ctrl.Result{}, err
	}
	// Hold (or release) the suite's DingTalk Stream connection that pushes its tickets.
	r.holdStream(&p.tokenPass)
	in := p.input()
	if d := decide(in); d.Fetch {
		p.log.V(1).Info("Refreshing token", "why", d.Why)
		// Never a call for a token that cannot be written: an unverified target is looked up first.
		if target, err = r.verifyTarget(ctx, p, in, targets, targetKey, target); err != nil || target.conflict != nil {
			return ctrl.Result{}, err
		}
		a, err := r.refresh(ctx, p, in)
		p.recordAttempt(a)
		if _, deferred := p.deferred(); err != nil || deferred {
			return ctrl.Result{}, err
		}
	} else {
		p.log.V(1).Info("No refresh", "why", d.Why)
	}
	// Write the last good token into the target: create it, restore drift, or leave it as it is.
	w, err := targets.write(ctx, p.spec, p.held, p.now, targetKey, target)
	if err != nil {
		return ctrl.Result{}, err
	}
	p.recordTarget(w)
	// Restart the rollout targets when the token's value changed.
	p.recordRollout(r.rolloutRestart(ctx, p))
	return ctrl.Result{}, nil
}

// load reads the DingTalkToken from the cache, or from the API server when the cached copy may
// predate this process's last status write (a decision on an old status would repeat a refresh).
// A deleted one is forgotten (nil, nil).
func (r *DingTalkTokenReconciler) load(ctx context.Context, key types.NamespacedName) (*v1alpha1.DingTalkToken, error) {
	tok := &v1alpha1.DingTalkToken{}
	found, err := r.loadFresh(ctx, r.Client, r.APIReader, "DingTalkToken", key, tok)
	if err != nil || !found {
		if err == nil {
			r.forget(key)
		}
		return nil, err
	}
	return tok, nil
}

// verifyTarget looks an unverified target up on the API server before a refresh calls DingTalk
// (a name taken by another owner's Secret fails the pass first: TargetConflict); a refresh that
// takes a token another object of the set fetched moments ago calls nobody and needs no look:
// its create finds a taken name; nor does one that will wait for its place under the rate limit.
func (r *DingTalkTokenReconciler) verifyTarget(ctx context.Context, p *pass, in refreshInput, t targets,
	key types.NamespacedName, state targetState) (targetState, error) {
	c := p.creds.values
	if !state.unverified || c == nil || c.shared() && (r.sharedTokenReady(p.creds.setKey, in) || r.callWaits(p.creds.setKey)) {
		return state, nil
	}
	state, err := t.read(ctx, key)
	if err != nil {
		return state, err
	}
	p.observeTarget(state)
	if state.conflict != nil {
		p.fail(*state.conflict)
	}
	return state, nil
}

// refresh fetches a token (shared for every type but User) and returns the attempt. Missing
// credentials are a failed attempt that never reached DingTalk.
func (r *DingTalkTokenReconciler) refresh(ctx context.Context, p *pass, in refreshInput) (attempt, error) {
	if err := ctx.Err(); err != nil {
		// The manager is stopping: no new DingTalk call (its answer could outlive ShutdownBudget).
		return attempt{}, err
	}
	creds := p.creds.values
	if creds == nil {
		return attempt{failure: p.creds.missing}, nil
	}
	if creds.typ == v1alpha1.TokenTypeUser {
		return r.refreshUser(ctx, p, creds)
	}
	return r.fetchShared(ctx, p.creds.setKey, in, creds), nil
}

// forget drops what memory holds for a deleted DingTalkToken, and its metrics series.
func (r *DingTalkTokenReconciler) forget(key types.NamespacedName) {
	r.memory.forget(key)
	r.forgetStream(key)
	metrics.DeleteToken(key.Namespace, key.Name)
}

// specOrRequestChanged lets an update of a DingTalkToken through when its spec changed (the
// generation moved) or its refresh-requested-at annotation did: status writes and other
// metadata edits start no pass.
func specOrRequestChanged() predicate.Predicate {
	return predicate.Or(predicate.GenerationChangedPredicate{}, predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			const a = v1alpha1.RefreshRequestedAtAnnotation
			return e.ObjectOld.GetAnnotations()[a] != e.ObjectNew.GetAnnotations()[a]
		},
	})
}

// targets reads and writes the pass's target Secret.
func (r *DingTalkTokenReconciler) targets(p *pass) targets {
	return targets{client: r.Client, reader: r.APIReader, scheme: r.Scheme, memory: r.memory,
		owner: p.tok, ownerKind: "DingTalkToken", memKey: p.key, recover: p.recovering()}
}
