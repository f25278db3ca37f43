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
	"errors"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/caches"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/credwatch"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/memory"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/policy"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/sharedfetch"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/suiteticket"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

// ShutdownBudget is the longest a pass already running can still take once the manager stops: a
// DingTalk call in flight (sharedfetch.CallTimeout), storing the refresh token it rotated
// (refreshTokenStoreTimeout), the target write (targetWriteTimeout) and the status write
// (statusWriteTimeout). The manager's graceful shutdown timeout must be at least this: the leader
// lease is released only after it, so a new leader never uses a refresh token the old process is
// still storing. A pass whose context has ended starts no DingTalk call and no new target write.
const ShutdownBudget = sharedfetch.CallTimeout + refreshTokenStoreTimeout + targetWriteTimeout + statusWriteTimeout

// CacheOptions are the manager's cache options (controllers/internal/caches): the operator's
// Secrets as data-free views, only the tokens the selector matches (nil or empty: all), only in
// namespaces (empty: all).
func CacheOptions(namespaces []string, tokens labels.Selector) cache.Options {
	return caches.Options(namespaces, tokens)
}

// Machinery is what every token kind's reconciler shares: the clock, the DingTalk client and its
// endpoint, the shared fetches, the owned Secrets and the in-process memory, the uncached reads
// and the watch of credentials, and Stream mode's suite tickets. One instance serves all
// reconcilers of a manager (NewMachinery), so that objects of any kind with equal credential sets
// share one DingTalk call per refresh.
type Machinery struct {
	clock    clock.Clock
	dingtalk dingtalk.Client
	endpoint string
	fetcher  *sharedfetch.Fetcher
	memory   *memory.Memory
	// digests keys every digest with the installation's digest key.
	digests digest.Digester
	// writes is what this process wrote (read-your-writes): the objects' status writes, and
	// through secrets, their Secrets.
	writes *ownedsecret.Writes
	// secrets reads and writes the owned Secrets (targets, refresh-token and suite-ticket
	// Secrets). Set by setup.
	secrets *ownedsecret.Store
	// apiReader reads uncached (credentials Secrets).
	apiReader client.Reader
	// credentials watches the referenced credentials Secrets: a changed resourceVersion there
	// tells that the credentials must be read again.
	credentials *credwatch.Watch
	setupOnce   sync.Once
	setupErr    error
	// streams holds the DingTalk Stream connections of Stream-sourced objects (nil: this manager
	// runs without Stream mode); tickets the suite tickets pushed over them (suiteticket.go).
	streams TicketStream
	tickets *suiteticket.Tickets
}

// NewMachinery is the machinery of one manager's reconcilers: tokens from dt at endpoint,
// timed by clk (nil: the real clock), every digest keyed by the installation's digestKey
// (LoadDigestKey).
func NewMachinery(clk clock.Clock, dt dingtalk.Client, endpoint string, digestKey []byte) *Machinery {
	if clk == nil {
		clk = clock.RealClock{}
	}
	var limiter dingtalk.Reserver
	if r, ok := dt.(dingtalk.Reserver); ok {
		limiter = r
	}
	return &Machinery{clock: clk, dingtalk: dt, endpoint: endpoint, fetcher: sharedfetch.New(clk, digestKey, limiter),
		memory: memory.New(), writes: ownedsecret.NewWrites(), tickets: suiteticket.New(), digests: digest.New(digestKey)}
}

// LoadDigestKey returns the installation's digest key, kept in a Secret of namespace (the
// operator's), creating it on the first start when w is not nil.
func LoadDigestKey(ctx context.Context, r client.Reader, w client.Writer, namespace string) ([]byte, error) {
	return digest.LoadKey(ctx, r, w, namespace, ownedsecret.FieldOwner)
}

// Names of the Secret that keeps the installation's digest key, in the operator's namespace.
const (
	DigestKeySecretName = digest.SecretName
	DigestKeyField      = digest.SecretField
)

// setup gives the machinery the reconcilers' client (owned Secrets are written with it) and
// uncached reader and, once for all reconcilers, the watch of the credentials Secrets they
// reference (namespaces: those served; empty: all).
func (sh *Machinery) setup(mgr ctrl.Manager, c client.Client, apiReader client.Reader, namespaces []string) error {
	if !sh.digests.Keyed() {
		return errors.New("the Machinery needs the installation's digest key (LoadDigestKey)")
	}
	sh.setupOnce.Do(func() {
		sh.apiReader = apiReader
		sh.secrets = ownedsecret.NewStore(c, apiReader, mgr.GetScheme(), sh.writes)
		sh.tickets.Use(c, sh.secrets, mgr.GetLogger().WithName("suiteticket"))
		var mc metadata.Interface
		if mc, sh.setupErr = metadata.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient()); sh.setupErr == nil {
			sh.credentials = credwatch.New(mc, namespaces)
			sh.setupErr = mgr.Add(sh.credentials)
		}
	})
	return sh.setupErr
}

// loadFresh reads obj (key, of kind) from the cache, or from the API server when the cached copy
// may predate this process's own last status write (a decision on an old status would repeat a
// refresh). An object being deleted holds no DingTalk Stream connection; one that is gone is
// forgotten. found is false for both: nothing is left to do.
func (sh *Machinery) loadFresh(ctx context.Context, c client.Client, reader client.Reader, kind string,
	key types.NamespacedName, obj client.Object) (found bool, _ error) {
	err := c.Get(ctx, key, obj)
	if err == nil && sh.writes.Stale(key, kind, obj) {
		err = reader.Get(ctx, key, obj)
	}
	switch {
	case apierrors.IsNotFound(err):
		sh.forget(kind, key)
		return false, nil
	case err != nil:
		return false, err
	case !obj.GetDeletionTimestamp().IsZero():
		sh.forgetStream(key) // its Secrets go with it, through their ownerReferences
		return false, nil
	}
	return true, nil
}

// forget drops everything held for a deleted object of kind: memory, its writes, its DingTalk
// Stream connection share, its metrics series.
func (sh *Machinery) forget(kind string, key types.NamespacedName) {
	sh.memory.Forget(key)
	sh.writes.Forget(key)
	sh.forgetStream(key)
	if kind == kindCluster {
		metrics.DeleteClusterToken(key.Name)
	} else {
		metrics.DeleteToken(key.Namespace, key.Name)
	}
}

// refresh fetches a token of a shareable type for the pass: one DingTalk call shared with every
// object of its credential set (or a token one of them fetched moments ago). Missing credentials
// are a failed attempt that never reached DingTalk; a stopping manager starts no call (its answer
// could outlive ShutdownBudget).
func (sh *Machinery) refresh(ctx context.Context, p *tokenPass, in policy.Input) (attempt, error) {
	if err := ctx.Err(); err != nil {
		return attempt{}, err
	}
	creds := p.creds.values
	if creds == nil {
		return attempt{failure: p.creds.missing}, nil
	}
	accept := func(t sharedfetch.Issued) bool { return policy.AcceptShared(in, timing(t)) }
	t, called, err := sh.fetcher.Fetch(ctx, p.creds.setKey, accept,
		func(ctx context.Context) (dingtalk.Token, error) {
			switch creds.typ {
			case v1alpha1.TokenTypeInternalApp:
				return sh.dingtalk.AppAccessToken(ctx, creds.app)
			case v1alpha1.TokenTypeThirdPartyApp:
				return sh.dingtalk.CorpAccessToken(ctx, creds.suite, creds.corpID)
			default:
				return sh.dingtalk.SuiteAccessToken(ctx, creds.suite)
			}
		})
	if d, ok := errors.AsType[*sharedfetch.Deferred](err); ok {
		return attempt{deferredUntil: d.Until}, nil
	}
	if err != nil {
		return attempt{creds: creds, failure: dingTalkFailure(err)}, nil
	}
	if t.CorpID == "" && creds.typ == v1alpha1.TokenTypeThirdPartyApp {
		// corpAccessToken answers no corpId: the token is the one of the org it was asked for.
		t.CorpID = creds.corpID
	}
	return attempt{creds: creds, token: &t, called: called}, nil
}

// sharedTokenReady reports whether a token another object of the set fetched moments ago would be
// taken (policy.AcceptShared) instead of a call.
func (sh *Machinery) sharedTokenReady(setKey string, in policy.Input) bool {
	_, ok := sh.fetcher.Cached(setKey, func(t sharedfetch.Issued) bool { return policy.AcceptShared(in, timing(t)) })
	return ok
}

// callWaits reports whether a refresh of the set would wait for its place under the client-side
// rate limit (the pass is then deferred, and calls nobody).
func (sh *Machinery) callWaits(setKey string) bool {
	return sh.fetcher.PlaceAhead(setKey)
}

// timing is what the policies see of a token the shared fetch holds.
func timing(t sharedfetch.Issued) policy.Issued {
	return policy.Issued{IssuedAt: t.IssuedAt, ExpiresAt: t.ExpiresAt, JitterSeed: t.JitterSeed}
}
