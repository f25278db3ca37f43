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

package stream

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// HubOptions configure a Hub.
type HubOptions struct {
	// Client is the template of every connection's options. Its Opener and OnState are ignored.
	Client Options
	// NewOpener returns the Opener for a DingTalk endpoint (called once per endpoint). Default: a
	// dingtalk.HTTPClient for it.
	NewOpener func(endpoint string) (Opener, error)
	// OnState is called after a connection's State changes, with the holders to enqueue (their
	// TicketStream condition changed). Called from the connection's goroutine; it must not block.
	OnState func(suite SuiteID, holders []types.NamespacedName, st State)
}

// Hub keeps one stream connection per distinct (suiteKey, suiteSecret, endpoint) among its
// holders, counted by holder: Acquire adds a holder, Release removes it, and the last holder's
// Release closes the connection. Connections run only between Start and the end of its context:
// the Hub is a leader-election runnable, so only the leader connects. It is safe for concurrent use.
type Hub struct {
	sink HolderSink
	opts HubOptions

	mu      sync.Mutex
	conns   map[connKey]*hubConn
	holders map[types.NamespacedName]connKey
	openers map[string]Opener
	budget  *openBudget
	clock   clock.WithTicker
	ctx     context.Context // Start's context; nil before Start
	stopped bool
	wg      sync.WaitGroup
}

var (
	_ manager.Runnable               = (*Hub)(nil)
	_ manager.LeaderElectionRunnable = (*Hub)(nil)
)

// connKey identifies a connection. The secret is kept as a digest, so that no map key or dump
// of the Hub shows it.
type connKey struct {
	suite  SuiteID
	secret [sha256.Size]byte
}

// hubConn is one connection and its holders.
type hubConn struct {
	client  *Client
	holders map[types.NamespacedName]bool
	cancel  context.CancelFunc // nil until started
	// creator is the holder whose Acquire created the connection, scope where the open budget
	// counts it.
	creator types.NamespacedName
	scope   budgetScope
}

// NewHub returns a Hub whose connections store the tickets they receive with sink, for their
// own holders.
func NewHub(sink HolderSink, opts HubOptions) *Hub {
	return &Hub{
		sink:    sink,
		opts:    opts,
		conns:   map[connKey]*hubConn{},
		holders: map[types.NamespacedName]connKey{},
		openers: map[string]Opener{},
		budget:  newOpenBudget(),
		clock:   cmp.Or[clock.WithTicker](opts.Client.Clock, clock.RealClock{}),
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: only the leader connects.
func (h *Hub) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable: it starts the connections of the holders acquired so far
// and of those to come, and closes them all when ctx ends. It returns once they are closed.
func (h *Hub) Start(ctx context.Context) error {
	h.mu.Lock()
	if h.ctx != nil {
		h.mu.Unlock()
		return errors.New("stream: the hub was already started")
	}
	h.ctx = ctx
	for _, hc := range h.conns {
		h.startLocked(hc)
	}
	h.mu.Unlock()

	<-ctx.Done()
	h.mu.Lock()
	h.stopped = true
	for _, hc := range h.conns {
		if hc.cancel != nil {
			hc.cancel()
		}
	}
	h.mu.Unlock()
	h.wg.Wait()
	return nil
}

// Acquire makes holder a user of creds' connection, creating it (and connecting, once started)
// if it is the first. It is idempotent; when holder used other credentials it is moved, and the
// connection it leaves closes if it has no holder left. It fails for empty credentials
// (dingtalk.ClassCredentialsRejected) or an invalid endpoint, without changing anything.
func (h *Hub) Acquire(holder types.NamespacedName, creds Credentials) error {
	if err := creds.validate(); err != nil {
		return err
	}
	key := connKey{suite: creds.ID(), secret: sha256.Sum256([]byte(creds.SuiteSecret))}
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.holders[holder]; ok {
		if old == key {
			return nil
		}
		h.releaseLocked(holder)
	}
	hc, ok := h.conns[key]
	if !ok {
		var err error
		if hc, err = h.newConnLocked(holder, creds); err != nil {
			return err
		}
		h.conns[key] = hc
		if h.ctx != nil && !h.stopped {
			h.startLocked(hc)
		}
	}
	hc.holders[holder] = true
	h.holders[holder] = key
	return nil
}

// Release removes holder; the connection closes when it was its last holder. Releasing a holder
// that holds nothing does nothing.
func (h *Hub) Release(holder types.NamespacedName) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.releaseLocked(holder)
}

func (h *Hub) releaseLocked(holder types.NamespacedName) {
	key, ok := h.holders[holder]
	if !ok {
		return
	}
	delete(h.holders, holder)
	hc := h.conns[key]
	delete(hc.holders, holder)
	if len(hc.holders) > 0 {
		return
	}
	delete(h.conns, key)
	if hc.cancel != nil {
		hc.cancel()
	}
}

// State returns the State of holder's connection; false when holder holds none.
func (h *Hub) State(holder types.NamespacedName) (State, bool) {
	h.mu.Lock()
	key, ok := h.holders[holder]
	var c *Client
	if ok {
		c = h.conns[key].client
	}
	h.mu.Unlock()
	if !ok {
		return State{}, false
	}
	return c.State(), true
}

// holdersOf returns the holders of one connection, sorted.
func (h *Hub) holdersOf(hc *hubConn) []types.NamespacedName {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]types.NamespacedName, 0, len(hc.holders))
	for n := range hc.holders {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b types.NamespacedName) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Connections returns the number of connections the Hub keeps (running or waiting for Start).
func (h *Hub) Connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// newConnLocked builds the client of a new connection for creator.
func (h *Hub) newConnLocked(creator types.NamespacedName, creds Credentials) (*hubConn, error) {
	id := creds.ID()
	opener, ok := h.openers[id.Endpoint]
	if !ok {
		var err error
		if opener, err = h.newOpener(id.Endpoint); err != nil {
			return nil, err
		}
		h.openers[id.Endpoint] = opener
	}
	hc := &hubConn{holders: map[types.NamespacedName]bool{}, creator: creator, scope: budgetScope{suite: id, namespace: creator.Namespace}}
	opts := h.opts.Client
	opts.Opener = opener
	opts.OnState = func(suite SuiteID, st State) { h.notify(hc, suite, st) }
	opts.firstOpen = func(ctx context.Context) bool { return h.waitFirstOpen(ctx, hc) }
	opts.opened = func(err error) { h.opened(hc, err) }
	// A ticket belongs to the holders of the connection that received it: one that authenticated
	// with their suiteSecret.
	sink := TicketSinkFunc(func(ctx context.Context, suite SuiteID, ticket string, bornAt time.Time) error {
		return h.sink.StoreTicket(ctx, suite, h.holdersOf(hc), ticket, bornAt)
	})
	c, err := NewClient(creds, sink, opts)
	if err != nil {
		return nil, err
	}
	hc.client = c
	return hc, nil
}

func (h *Hub) newOpener(endpoint string) (Opener, error) {
	if h.opts.NewOpener != nil {
		return h.opts.NewOpener(endpoint)
	}
	return dingtalk.New(dingtalk.Options{BaseURL: endpoint})
}

// notify reports a connection's new State with its current holders.
func (h *Hub) notify(hc *hubConn, suite SuiteID, st State) {
	if h.opts.OnState == nil {
		return
	}
	if holders := h.holdersOf(hc); len(holders) > 0 {
		h.opts.OnState(suite, holders, st)
	}
}

// startLocked runs the connection's client until it is released or the Hub stops.
func (h *Hub) startLocked(hc *hubConn) {
	ctx, cancel := context.WithCancel(h.ctx)
	hc.cancel = cancel
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer cancel()
		hc.client.Run(ctx)
	}()
}

// budgetHeld is the State message of a new connection the open budget holds back. It names the
// rule, never a time, so that it does not churn the TicketStream condition.
const budgetHeld = "held: a new suiteSecret opens at most one connection per 10s, and after refused credentials waits 1s doubling to 60s"

// waitFirstOpen waits until the open budget lets hc make its first connections/open call, and
// records it; false when ctx ended first.
func (h *Hub) waitFirstOpen(ctx context.Context, hc *hubConn) bool {
	for {
		h.mu.Lock()
		now := h.clock.Now()
		at := h.budget.firstOpenAt(hc.scope, hc.creator, now)
		if !now.Before(at) {
			h.budget.opening(hc.scope, hc.creator, now)
			h.mu.Unlock()
			return true
		}
		h.mu.Unlock()
		hc.client.setState(Connecting, budgetHeld)
		if !hc.client.sleep(ctx, at.Sub(now)) {
			return false
		}
	}
}

// opened records the outcome of one of hc's connections/open calls in the open budget.
func (h *Hub) opened(hc *hubConn, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.budget.opened(hc.scope, err, h.clock.Now())
}
