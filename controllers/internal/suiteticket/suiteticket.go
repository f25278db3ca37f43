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

// Package suiteticket keeps the suite tickets DingTalk pushes over Stream mode: the newest per
// object, in memory and in the object's owned Secret <name>-suite-ticket (stored BEFORE the push
// is acknowledged: a failed store is answered LATER and delivered again), and re-queues the
// objects whose ticket changed or whose connection's state moved.
package suiteticket

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/safe"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/stream"
)

// Timing and sizing of the ticket store.
const (
	// requeueBuffer is how many re-queue requests wait for a controller before the overflow path.
	requeueBuffer = 1024
	// requeueOverflowWait bounds how long an overflowing re-queue request waits for a controller.
	requeueOverflowWait = time.Minute
	// storeWorkers bounds the suite-ticket Secret writes of one push in flight at once.
	storeWorkers = 8
)

// Ticket is a suite ticket DingTalk pushed, as kept for one object. Secret: the ticket never
// leaves memory except into the object's own suite-ticket Secret and DingTalk's token calls.
type Ticket struct {
	UID   types.UID
	Value string
	// BornAt is when DingTalk pushed it (the event's eventBornTime): the newest wins.
	BornAt time.Time
	// Suite ties it to the suiteKey it was pushed for (SuiteTag; "" for a ticket an earlier
	// version stored, which is taken for any suiteKey).
	Suite string
}

// SuiteTag ties ticket to suiteKey: an HMAC keyed by the ticket, so that it reveals nothing of
// the suiteKey without the ticket, and needs no installation key.
func SuiteTag(ticket, suiteKey string) string {
	return hex.EncodeToString(digest.KeyedSum([]byte(ticket), "suiteKey", suiteKey)[:8])
}

// For reports whether the ticket was pushed for suiteKey.
func (t Ticket) For(suiteKey string) bool {
	return t.Suite == "" || t.Suite == SuiteTag(t.Value, suiteKey)
}

// Oversized reports whether a suite-ticket Secret read uncached holds a ticket over
// v1alpha1.MaxCredentialValueSize (a tenant can write the Secret): it is never kept or sent.
func Oversized(s *corev1.Secret) bool {
	return len(s.Data[v1alpha1.SuiteTicketKey]) > v1alpha1.MaxCredentialValueSize
}

// Tickets is the tickets stored per object, the sink that stores the pushes, and the channels
// that re-queue objects of each kind (source.Channel).
type Tickets struct {
	// client reads the objects (cached); secrets reads and writes their suite-ticket Secrets; log
	// tells the stores. Set by Use.
	client  client.Client
	secrets *ownedsecret.Store
	log     logr.Logger

	mu      sync.Mutex
	tickets map[types.NamespacedName]Ticket

	// TokenEvents re-queue DingTalkTokens, ClusterEvents ClusterDingTalkTokens.
	TokenEvents, ClusterEvents chan event.GenericEvent
}

// New is an empty store; Use gives it what it reads and writes with.
func New() *Tickets {
	return &Tickets{
		log:           logr.Discard(),
		tickets:       map[types.NamespacedName]Ticket{},
		TokenEvents:   make(chan event.GenericEvent, requeueBuffer),
		ClusterEvents: make(chan event.GenericEvent, requeueBuffer),
	}
}

// Use gives the store the reconcilers' client (the objects, cached), the owned Secrets' store and
// a logger.
func (ts *Tickets) Use(c client.Client, secrets *ownedsecret.Store, log logr.Logger) {
	ts.client, ts.secrets, ts.log = c, secrets, log
}

// Requeue asks the controller of holder's kind for a pass, without blocking: a full buffer hands
// the request to a goroutine that waits for room (bounded), so that none is lost to a burst.
func (ts *Tickets) Requeue(h types.NamespacedName) {
	ch, obj := ts.TokenEvents, client.Object(&v1alpha1.DingTalkToken{})
	if h.Namespace == "" {
		ch, obj = ts.ClusterEvents, &v1alpha1.ClusterDingTalkToken{}
	}
	obj.SetNamespace(h.Namespace)
	obj.SetName(h.Name)
	ev := event.GenericEvent{Object: obj}
	select {
	case ch <- ev:
	default:
		go func() {
			t := time.NewTimer(requeueOverflowWait)
			defer t.Stop()
			select {
			case ch <- ev:
			case <-t.C:
			}
		}()
	}
}

// Get returns the ticket stored for the object key of uid (nil: none known).
func (ts *Tickets) Get(key types.NamespacedName, uid types.UID) *Ticket {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.tickets[key]
	if !ok || t.UID != uid {
		return nil
	}
	return &t
}

// Keep records t for key unless a newer ticket of the same object is known.
func (ts *Tickets) Keep(key types.NamespacedName, t Ticket) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if cur, ok := ts.tickets[key]; ok && cur.UID == t.UID && cur.BornAt.After(t.BornAt) {
		return
	}
	ts.tickets[key] = t
}

// Forget forgets the ticket of a deleted object.
func (ts *Tickets) Forget(key types.NamespacedName) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.tickets, key)
}

// Of reads a suite-ticket Secret (nil: it holds no ticket).
func Of(uid types.UID, s *corev1.Secret) *Ticket {
	v := string(s.Data[v1alpha1.SuiteTicketKey])
	if v == "" {
		return nil
	}
	born, _ := time.Parse(time.RFC3339Nano, s.Annotations[v1alpha1.SuiteTicketPushedAtAnnotation])
	return &Ticket{UID: uid, Value: v, BornAt: born, Suite: s.Annotations[v1alpha1.SuiteTicketSuiteAnnotation]}
}

// desired is a suite-ticket Secret's desired content.
func desired(key types.NamespacedName, t Ticket) ownedsecret.Desired {
	return ownedsecret.Desired{
		Namespace: key.Namespace, Name: key.Name,
		Labels: ownedsecret.ManagedLabels(nil),
		Annotations: map[string]string{
			v1alpha1.SuiteTicketPushedAtAnnotation: t.BornAt.UTC().Format(time.RFC3339Nano),
			v1alpha1.SuiteTicketSuiteAnnotation:    t.Suite,
		},
		Data: map[string][]byte{v1alpha1.SuiteTicketKey: []byte(t.Value)},
	}
}

// Store stores a pushed ticket for the holders of the connection that received it, a few at
// a time, and re-queues those whose ticket changed. It returns an error when any store failed, so
// that DingTalk delivers the ticket again (storing is idempotent).
func (ts *Tickets) Store(ctx context.Context, suite stream.SuiteID, holders []types.NamespacedName, ticket string, bornAt time.Time) error {
	var mu sync.Mutex
	var errs []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(storeWorkers)
	for _, h := range holders {
		g.Go(func() error {
			changed, err := ts.storeFor(gctx, h, Ticket{Value: ticket, BornAt: bornAt, Suite: SuiteTag(ticket, suite.SuiteKey)})
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("storing the suite ticket of %s: %w", h, safe.APIError(err)))
				mu.Unlock()
				return nil
			}
			if changed {
				ts.Requeue(h)
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// storeFor writes t into the suite-ticket Secret of the object h unless that Secret already
// holds it or a newer one (a duplicate, or an older push delivered late); changed reports a
// write. The Secret is read uncached and written under its resourceVersion: of two concurrent
// stores one fails and is delivered again, and then finds the newer ticket.
func (ts *Tickets) storeFor(ctx context.Context, h types.NamespacedName, t Ticket) (changed bool, _ error) {
	owner, key, err := ts.owner(ctx, h)
	if err != nil || owner == nil {
		return false, err
	}
	t.UID = owner.GetUID()
	st, err := ts.secrets.Live(ctx, owner, key)
	switch {
	case err != nil:
		return false, err
	case st.Foreign:
		return false, nil // another owner's Secret: the object's pass reports the conflict
	case st.Live != nil && !Oversized(st.Live):
		// A value over the cap is never kept: the push replaces it.
		if cur := Of(t.UID, st.Live); cur != nil && (cur.Value == t.Value || t.BornAt.Before(cur.BornAt)) {
			ts.Keep(h, *cur)
			return false, nil
		}
	}
	d := desired(key, t)
	if err = ts.secrets.Write(ctx, owner, st.Live, d); err != nil {
		return false, err
	}
	ts.Keep(h, t)
	ts.log.Info("Stored a pushed suite ticket", kindKey(h), klog.KRef(h.Namespace, h.Name),
		"secret", klog.KRef(key.Namespace, key.Name), "pushedAt", t.BornAt.UTC().Format(time.RFC3339Nano))
	return true, nil
}

// owner reads the object h (cached) and names its suite-ticket Secret; nil when it is gone,
// being deleted or no longer Stream-sourced.
func (ts *Tickets) owner(ctx context.Context, h types.NamespacedName) (client.Object, types.NamespacedName, error) {
	if h.Namespace == "" {
		c := &v1alpha1.ClusterDingTalkToken{}
		if err := ts.client.Get(ctx, h, c); err != nil || !c.DeletionTimestamp.IsZero() || c.TicketSource() != v1alpha1.SuiteTicketSourceStream {
			return nil, types.NamespacedName{}, client.IgnoreNotFound(err)
		}
		ns, name := c.SuiteTicketSecretKey()
		return c, types.NamespacedName{Namespace: ns, Name: name}, nil
	}
	tok := &v1alpha1.DingTalkToken{}
	if err := ts.client.Get(ctx, h, tok); err != nil || !tok.DeletionTimestamp.IsZero() || tok.TicketSource() != v1alpha1.SuiteTicketSourceStream {
		return nil, types.NamespacedName{}, client.IgnoreNotFound(err)
	}
	return tok, types.NamespacedName{Namespace: tok.Namespace, Name: tok.SuiteTicketSecretName()}, nil
}

// kindKey is the log key naming an object of holder's kind.
func kindKey(h types.NamespacedName) string {
	if h.Namespace == "" {
		return "clusterdingtalktoken"
	}
	return "dingtalktoken"
}
