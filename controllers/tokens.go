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

	"k8s.io/client-go/metadata"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// Machinery is what every token kind's reconciler shares: the clock, the DingTalk client and its
// endpoint, the shared fetches and the in-process memory, and the uncached reads of credentials.
// One instance serves all reconcilers of a manager (NewMachinery), so that objects of any kind
// with equal credential sets share one DingTalk call per refresh.
type Machinery struct {
	clock    clock.Clock
	dingtalk dingtalk.Client
	endpoint string
	fetcher  *fetcher
	memory   *memory
	// digests keys every digest with the installation's digest key.
	digests digester
	// apiReader reads uncached (credentials Secrets).
	apiReader client.Reader
	// credentials watches the referenced credentials Secrets (credwatch.go): a changed
	// resourceVersion there tells that the credentials must be read again.
	credentials *credentialsWatch
	setupOnce   sync.Once
	setupErr    error
	// tickets is Stream mode: suite-ticket connections, stored tickets, re-queues (suiteticket.go).
	tickets *ticketStream
}

// NewMachinery is the machinery of one manager's reconcilers: tokens from dt at endpoint,
// timed by clk (nil: the real clock), every digest keyed by the installation's digestKey
// (LoadDigestKey).
func NewMachinery(clk clock.Clock, dt dingtalk.Client, endpoint string, digestKey []byte) *Machinery {
	if clk == nil {
		clk = clock.RealClock{}
	}
	f := newFetcher(clk)
	f.seedKey = digestKey
	if r, ok := dt.(dingtalk.Reserver); ok {
		f.limiter = r
	}
	return &Machinery{clock: clk, dingtalk: dt, endpoint: endpoint, fetcher: f, memory: newMemory(),
		tickets: newTicketStream(), digests: digester{key: digestKey}}
}

// setup gives the machinery the reconcilers' client (suite-ticket Secrets are written with it)
// and uncached reader and, once for all reconcilers, the watch of the credentials Secrets they
// reference (namespaces: those served; empty: all).
func (sh *Machinery) setup(mgr ctrl.Manager, c client.Client, apiReader client.Reader, namespaces []string) error {
	if len(sh.digests.key) == 0 {
		return errors.New("the Machinery needs the installation's digest key (LoadDigestKey)")
	}
	sh.setupOnce.Do(func() {
		sh.apiReader = apiReader
		sh.tickets.client, sh.tickets.scheme = c, mgr.GetScheme()
		sh.tickets.log = mgr.GetLogger().WithName("suiteticket")
		var mc metadata.Interface
		if mc, sh.setupErr = metadata.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient()); sh.setupErr == nil {
			sh.credentials = newCredentialsWatch(mc, namespaces)
			sh.setupErr = mgr.Add(sh.credentials)
		}
	})
	return sh.setupErr
}

// fetchShared fetches a token of a shareable type for the credential set setKey: a token another
// object of the set fetched moments ago when the acceptShared policy takes it, else one DingTalk
// call shared with every concurrent caller of the set.
func (sh *Machinery) fetchShared(ctx context.Context, setKey string, in refreshInput, creds *credentials) attempt {
	t, called, err := sh.fetcher.fetch(ctx, setKey, func(t issued) bool { return acceptShared(in, t) },
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
	if d, ok := errors.AsType[*callDeferred](err); ok {
		return attempt{deferredUntil: d.until}
	}
	if err != nil {
		return attempt{creds: creds, failure: dingTalkFailure(err)}
	}
	if t.CorpID == "" && creds.typ == v1alpha1.TokenTypeThirdPartyApp {
		// corpAccessToken answers no corpId: the token is the one of the org it was asked for.
		t.CorpID = creds.corpID
	}
	return attempt{creds: creds, token: &t, called: called}
}

// sharedTokenReady reports whether a token another object of the set fetched moments ago would be
// taken (the acceptShared policy) instead of a call.
func (sh *Machinery) sharedTokenReady(setKey string, in refreshInput) bool {
	_, ok := sh.fetcher.cached(setKey, func(t issued) bool { return acceptShared(in, t) })
	return ok
}

// callWaits reports whether a refresh of the set would wait for its place under the client-side
// rate limit (the pass is then deferred, and calls nobody).
func (sh *Machinery) callWaits(setKey string) bool {
	return sh.fetcher.placeAhead(setKey)
}

// firstFailure returns the first non-nil failure.
func firstFailure(fs ...*failure) *failure {
	for _, f := range fs {
		if f != nil {
			return f
		}
	}
	return nil
}
