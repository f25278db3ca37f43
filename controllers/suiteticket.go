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
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/ownedsecret"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/safe"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/stream"
)

// Suite tickets from DingTalk Stream mode (spec.suiteTicket.source Stream). The reconcilers never
// see a frame: they hold, per object, a share of its suite's connection in a TicketStream (the
// manager's *stream.Hub, a leader-only runnable), and the Hub hands each pushed ticket to the
// Machinery's TicketSink. The sink stores it, newest by the push's eventBornTime, in the owned
// Secret <name>-suite-ticket of every object of the suite BEFORE the Hub acks the event (a failed
// store is answered LATER: DingTalk delivers it again), then re-queues those objects. A stored
// ticket wins over the credentials Secret's suiteTicket key, which then only seeds the first
// fetch; after a restart the pass reads it back from the Secret. A new ticket refreshes only after
// a failed attempt (refreshOnTicketAfterFailure); without any ticket the object waits for the
// first push (waitForSuiteTicket). docs/stream.md tells the user's side.

// TicketStream is what the reconcilers need of the DingTalk Stream connections; *stream.Hub is
// one. Holders are the objects' keys (a ClusterDingTalkToken's has no namespace).
type TicketStream interface {
	// Acquire makes holder a user of the connection for creds (idempotent; it moves the holder
	// when its credentials changed).
	Acquire(holder types.NamespacedName, creds stream.Credentials) error
	// Release drops holder's share; the last holder's Release closes the connection.
	Release(holder types.NamespacedName)
	// State is the state of holder's connection (false: holder holds none).
	State(holder types.NamespacedName) (stream.State, bool)
}

// Timing and sizing of the Stream side.
const (
	// requeueBuffer is how many re-queue requests wait for a controller before the overflow path.
	requeueBuffer = 1024
	// requeueOverflowWait bounds how long an overflowing re-queue request waits for a controller.
	requeueOverflowWait = time.Minute
	// ticketStoreWorkers bounds the suite-ticket Secret writes of one push in flight at once.
	ticketStoreWorkers = 8
)

// storedTicket is a suite ticket DingTalk pushed, as kept for one object. Secret: the ticket never
// leaves memory except into the object's own suite-ticket Secret and DingTalk's token calls.
type storedTicket struct {
	uid    types.UID
	ticket string
	// bornAt is when DingTalk pushed it (the event's eventBornTime): the newest wins.
	bornAt time.Time
}

// ticketStream is the Machinery's part of Stream mode: the connections, the tickets stored per
// object, and the channels that re-queue objects of each kind when their connection's state
// changes or a ticket is stored for them.
type ticketStream struct {
	// hub holds the connections (nil: this manager runs without Stream mode).
	hub TicketStream
	// client reads the objects (cached); log tells the stores. Set by Machinery.setup.
	client client.Client
	log    logr.Logger

	mu      sync.Mutex
	tickets map[types.NamespacedName]storedTicket

	// tokenEvents re-queue DingTalkTokens, clusterEvents ClusterDingTalkTokens (source.Channel).
	tokenEvents, clusterEvents chan event.GenericEvent
}

func newTicketStream() *ticketStream {
	return &ticketStream{
		log:           logr.Discard(),
		tickets:       map[types.NamespacedName]storedTicket{},
		tokenEvents:   make(chan event.GenericEvent, requeueBuffer),
		clusterEvents: make(chan event.GenericEvent, requeueBuffer),
	}
}

// UseTicketStream gives the Machinery the manager's DingTalk Stream connections (the Hub built
// with TicketSink and TicketStreamChanged). Call it before the manager starts.
func (sh *Machinery) UseTicketStream(ts TicketStream) { sh.tickets.hub = ts }

// TicketSink is the sink of the Hub: it stores each pushed ticket for the objects holding the
// connection that received it (never for an object of the same suiteKey whose own suiteSecret
// did not authenticate), and returns only once all are stored (an error makes the Hub answer
// LATER).
func (sh *Machinery) TicketSink() stream.HolderSink { return stream.HolderSinkFunc(sh.storeTicket) }

// TicketStreamChanged is the Hub's OnState: it re-queues the holders of a connection whose state
// changed, so that their TicketStream condition follows it. It never blocks.
func (sh *Machinery) TicketStreamChanged(_ stream.SuiteID, holders []types.NamespacedName, _ stream.State) {
	for _, h := range holders {
		sh.tickets.requeue(h)
	}
}

// requeue asks the controller of holder's kind for a pass, without blocking: a full buffer hands
// the request to a goroutine that waits for room (bounded), so that none is lost to a burst.
func (ts *ticketStream) requeue(h types.NamespacedName) {
	ch, obj := ts.tokenEvents, client.Object(&v1alpha1.DingTalkToken{})
	if h.Namespace == "" {
		ch, obj = ts.clusterEvents, &v1alpha1.ClusterDingTalkToken{}
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

// get returns the ticket stored for the object key of uid (nil: none known).
func (ts *ticketStream) get(key types.NamespacedName, uid types.UID) *storedTicket {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.tickets[key]
	if !ok || t.uid != uid {
		return nil
	}
	return &t
}

// keep records t for key unless a newer ticket of the same object is known.
func (ts *ticketStream) keep(key types.NamespacedName, t storedTicket) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if cur, ok := ts.tickets[key]; ok && cur.uid == t.uid && cur.bornAt.After(t.bornAt) {
		return
	}
	ts.tickets[key] = t
}

func (ts *ticketStream) forget(key types.NamespacedName) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.tickets, key)
}

// forgetStream releases a deleted object's connection share and forgets its ticket.
func (sh *Machinery) forgetStream(key types.NamespacedName) {
	if sh.tickets.hub != nil {
		sh.tickets.hub.Release(key)
	}
	sh.tickets.forget(key)
}

// ticketOf reads a suite-ticket Secret (nil: it holds no ticket).
func ticketOf(uid types.UID, s *corev1.Secret) *storedTicket {
	v := string(s.Data[v1alpha1.SuiteTicketKey])
	if v == "" {
		return nil
	}
	born, _ := time.Parse(time.RFC3339Nano, s.Annotations[v1alpha1.SuiteTicketPushedAtAnnotation])
	return &storedTicket{uid: uid, ticket: v, bornAt: born}
}

// ticketSecret is a suite-ticket Secret's desired content.
func ticketSecret(key types.NamespacedName, t storedTicket) ownedsecret.Desired {
	return ownedsecret.Desired{
		Namespace: key.Namespace, Name: key.Name,
		Labels:      ownedsecret.ManagedLabels(nil),
		Annotations: map[string]string{v1alpha1.SuiteTicketPushedAtAnnotation: t.bornAt.UTC().Format(time.RFC3339Nano)},
		Data:        map[string][]byte{v1alpha1.SuiteTicketKey: []byte(t.ticket)},
	}
}

// The pass side.

// withPushedTicket puts the ticket stored for a Stream-sourced object in place of the credentials
// Secret's: memory's, else the suite-ticket Secret's read uncached (after a restart). Without
// either, the credentials Secret's key seeds the fetch; without that too, the read says the
// object awaits its first push. A Secret of that name this object does not own is a
// TargetConflict: no ticket is ever taken from, or written to, someone else's Secret.
func (sh *Machinery) withPushedTicket(ctx context.Context, p *tokenPass, read credentialsRead) (credentialsRead, error) {
	t := sh.tickets.get(p.key, p.uid)
	if t == nil {
		st, err := sh.secrets.Live(ctx, p.obj, p.spec.TicketSecret)
		switch {
		case err != nil:
			return credentialsRead{}, err
		case st.Foreign:
			return credentialsRead{missing: &failure{reason: v1alpha1.ReasonTargetConflict, message: fmt.Sprintf(
				"Secret %s exists and is not owned by this object: the suite tickets DingTalk pushes cannot be kept there", p.spec.TicketSecret.Name)}}, nil
		case st.Live != nil:
			if t = ticketOf(p.uid, st.Live); t != nil {
				sh.tickets.keep(p.key, *t)
			}
		}
	}
	if t != nil {
		c := *read.values
		c.suite.SuiteTicket = t.ticket
		read.values, read.pushed = &c, t
	}
	read.awaitingTicket = read.values.suite.SuiteTicket == ""
	return read, nil
}

// holdStream brings the object's share of its suite's DingTalk Stream connection in line with
// its spec and the credentials just read, and records the connection's state. A suspended
// object, one whose ticket comes from the credentials Secret and one whose credentials cannot be
// used hold none (the last holder's release closes the connection); a Stream-sourced one
// acquires it on every pass (idempotent; new credentials move it to another connection).
func (sh *Machinery) holdStream(p *tokenPass) {
	hub := sh.tickets.hub
	switch {
	case p.spec.TicketSource != v1alpha1.SuiteTicketSourceStream:
		sh.forgetStream(p.key)
		p.recordNoStream()
	case p.spec.Suspend:
		if hub != nil {
			hub.Release(p.key)
		}
		p.recordStream(metav1.ConditionFalse, v1alpha1.ReasonStreamUnavailable,
			"spec.suspend is true: the operator holds no DingTalk Stream connection for this token")
	case hub == nil:
		p.recordStream(metav1.ConditionFalse, v1alpha1.ReasonStreamUnavailable,
			"This operator runs without DingTalk Stream mode: no suite ticket is received")
	case p.creds.values == nil:
		hub.Release(p.key)
		reason := "the credentials cannot be used"
		if p.creds.missing != nil {
			reason = p.creds.missing.reason
		}
		p.recordStream(metav1.ConditionFalse, v1alpha1.ReasonStreamUnavailable,
			"Not connected to DingTalk Stream: "+reason+" (see the Refreshed condition)")
	default:
		c := p.creds.values.suite
		if err := hub.Acquire(p.key, stream.Credentials{SuiteKey: c.SuiteKey, SuiteSecret: c.SuiteSecret, Endpoint: sh.endpoint}); err != nil {
			reason := v1alpha1.ReasonStreamUnavailable
			if dingtalk.ClassOf(err) == dingtalk.ClassCredentialsRejected {
				reason = v1alpha1.ReasonCredentialsRejected
			}
			p.recordStream(metav1.ConditionFalse, reason, "Not connected to DingTalk Stream: the suiteKey, suiteSecret or endpoint cannot be used")
			return
		}
		st, _ := hub.State(p.key)
		p.recordStream(ticketStreamCondition(st))
	}
}

// ticketStreamCondition maps a connection's state to TicketStream. The state's message holds no
// secret and changes only with its cause, so the condition does not churn.
func ticketStreamCondition(st stream.State) (metav1.ConditionStatus, string, string) {
	switch st.Phase {
	case stream.Connected:
		return metav1.ConditionTrue, v1alpha1.ReasonConnected, "Connected to DingTalk Stream: suite tickets arrive by push"
	case stream.CredentialsRejected:
		return metav1.ConditionFalse, v1alpha1.ReasonCredentialsRejected, fmt.Sprintf(
			"DingTalk Stream refused the suiteKey or suiteSecret (%s): retried every 5 minutes, at once when the credentials Secret changes", st.Message)
	case stream.StreamUnavailable:
		return metav1.ConditionFalse, v1alpha1.ReasonStreamUnavailable, fmt.Sprintf(
			"Not connected to DingTalk Stream (%s): reconnecting with backoff; the last pushed ticket stays in use", st.Message)
	default:
		return metav1.ConditionFalse, v1alpha1.ReasonStreamUnavailable, fmt.Sprintf("Connecting to DingTalk Stream (%s)", st.Message)
	}
}

// recordStream records the TicketStream condition and the time of the pushed ticket in use.
func (p *tokenPass) recordStream(status metav1.ConditionStatus, reason, msg string) {
	if c := meta.FindStatusCondition(p.st.Conditions, v1alpha1.ConditionTicketStream); c == nil || c.Reason != reason {
		p.log.Info("DingTalk Stream connection of the suite changed", "reason", reason)
	}
	p.setCondition(v1alpha1.ConditionTicketStream, status, reason, msg)
	if t := p.creds.pushed; t != nil && !t.bornAt.IsZero() {
		p.st.SuiteTicketTime = stamp(t.bornAt)
	}
}

// recordNoStream clears what Stream mode shows, for an object whose ticket comes from its
// credentials Secret.
func (p *tokenPass) recordNoStream() {
	meta.RemoveStatusCondition(&p.st.Conditions, v1alpha1.ConditionTicketStream)
	p.st.SuiteTicketTime = nil
}

// The sink side.

// storeTicket stores a pushed ticket for the holders of the connection that received it, a few at
// a time, and re-queues those whose ticket changed. It returns an error when any store failed, so
// that DingTalk delivers the ticket again (storing is idempotent).
func (sh *Machinery) storeTicket(ctx context.Context, holders []types.NamespacedName, ticket string, bornAt time.Time) error {
	var mu sync.Mutex
	var errs []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(ticketStoreWorkers)
	for _, h := range holders {
		g.Go(func() error {
			changed, err := sh.storeTicketFor(gctx, h, storedTicket{ticket: ticket, bornAt: bornAt})
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("storing the suite ticket of %s: %w", h, safe.APIError(err)))
				mu.Unlock()
				return nil
			}
			if changed {
				sh.tickets.requeue(h)
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// storeTicketFor writes t into the suite-ticket Secret of the object h unless that Secret already
// holds it or a newer one (a duplicate, or an older push delivered late); changed reports a
// write. The Secret is read uncached and written under its resourceVersion: of two concurrent
// stores one fails and is delivered again, and then finds the newer ticket.
func (sh *Machinery) storeTicketFor(ctx context.Context, h types.NamespacedName, t storedTicket) (changed bool, _ error) {
	owner, key, err := sh.ticketOwner(ctx, h)
	if err != nil || owner == nil {
		return false, err
	}
	t.uid = owner.GetUID()
	st, err := sh.secrets.Live(ctx, owner, key)
	switch {
	case err != nil:
		return false, err
	case st.Foreign:
		return false, nil // another owner's Secret: the object's pass reports the conflict
	case st.Live != nil:
		if cur := ticketOf(t.uid, st.Live); cur != nil && (cur.ticket == t.ticket || t.bornAt.Before(cur.bornAt)) {
			sh.tickets.keep(h, *cur)
			return false, nil
		}
	}
	d := ticketSecret(key, t)
	if st.Live == nil {
		_, err = sh.secrets.Create(ctx, owner, d)
	} else {
		_, _, err = sh.secrets.Update(ctx, owner, st.Live, d)
	}
	if err != nil {
		return false, err
	}
	sh.tickets.keep(h, t)
	sh.tickets.log.Info("Stored a pushed suite ticket", kindKey(h), klog.KRef(h.Namespace, h.Name),
		"secret", klog.KRef(key.Namespace, key.Name), "pushedAt", t.bornAt.UTC().Format(time.RFC3339Nano))
	return true, nil
}

// ticketOwner reads the object h (cached) and names its suite-ticket Secret; nil when it is gone,
// being deleted or no longer Stream-sourced.
func (sh *Machinery) ticketOwner(ctx context.Context, h types.NamespacedName) (client.Object, types.NamespacedName, error) {
	if h.Namespace == "" {
		c := &v1alpha1.ClusterDingTalkToken{}
		if err := sh.tickets.client.Get(ctx, h, c); err != nil || !c.DeletionTimestamp.IsZero() || c.TicketSource() != v1alpha1.SuiteTicketSourceStream {
			return nil, types.NamespacedName{}, client.IgnoreNotFound(err)
		}
		ns, name := c.SuiteTicketSecretKey()
		return c, types.NamespacedName{Namespace: ns, Name: name}, nil
	}
	tok := &v1alpha1.DingTalkToken{}
	if err := sh.tickets.client.Get(ctx, h, tok); err != nil || !tok.DeletionTimestamp.IsZero() || tok.TicketSource() != v1alpha1.SuiteTicketSourceStream {
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
