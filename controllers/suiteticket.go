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
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/suiteticket"
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

// UseTicketStream gives the Machinery the manager's DingTalk Stream connections (the Hub built
// with TicketSink and TicketStreamChanged). Call it before the manager starts.
func (sh *Machinery) UseTicketStream(ts TicketStream) { sh.streams = ts }

// TicketSink is the sink of the Hub: it stores each pushed ticket for the objects holding the
// connection that received it (never for an object of the same suiteKey whose own suiteSecret
// did not authenticate), and returns only once all are stored (an error makes the Hub answer
// LATER).
func (sh *Machinery) TicketSink() stream.HolderSink { return stream.HolderSinkFunc(sh.tickets.Store) }

// TicketStreamChanged is the Hub's OnState: it re-queues the holders of a connection whose state
// changed, so that their TicketStream condition follows it. It never blocks.
func (sh *Machinery) TicketStreamChanged(_ stream.SuiteID, holders []types.NamespacedName, _ stream.State) {
	for _, h := range holders {
		sh.tickets.Requeue(h)
	}
}

// forgetStream releases a deleted object's connection share and forgets its ticket.
func (sh *Machinery) forgetStream(key types.NamespacedName) {
	if sh.streams != nil {
		sh.streams.Release(key)
	}
	sh.tickets.Forget(key)
}

// The pass side.

// withPushedTicket puts the ticket stored for a Stream-sourced object in place of the credentials
// Secret's: memory's, else the suite-ticket Secret's read uncached (after a restart). Without
// either, the credentials Secret's key seeds the fetch; without that too, the read says the
// object awaits its first push. A Secret of that name this object does not own is a
// TargetConflict: no ticket is ever taken from, or written to, someone else's Secret.
func (sh *Machinery) withPushedTicket(ctx context.Context, p *tokenPass, read credentialsRead) (credentialsRead, error) {
	t := sh.tickets.Get(p.key, p.uid)
	if t == nil {
		st, err := sh.secrets.Live(ctx, p.obj, p.spec.TicketSecret)
		switch {
		case err != nil:
			return credentialsRead{}, err
		case st.Foreign:
			return credentialsRead{missing: &failure{reason: v1alpha1.ReasonTargetConflict, message: fmt.Sprintf(
				"Secret %s exists and is not owned by this object: the suite tickets DingTalk pushes cannot be kept there", p.spec.TicketSecret.Name)}}, nil
		case st.Live != nil && suiteticket.Oversized(st.Live):
			// A tenant can write the Secret: a value over the cap is refused, never kept or sent.
			return credentialsRead{missing: oversizedValue("Secret", p.spec.TicketSecret.Name, v1alpha1.SuiteTicketKey)}, nil
		case st.Live != nil:
			if t = suiteticket.Of(p.uid, st.Live); t != nil {
				sh.tickets.Keep(p.key, *t)
			}
		}
	}
	if t != nil && !t.For(read.values.suite.SuiteKey) {
		t = nil // pushed for another suiteKey: never used for this one
	}
	if t != nil {
		c := *read.values
		c.suite.SuiteTicket = t.Value
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
	hub := sh.streams
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
			"DingTalk Stream refused the suiteKey or suiteSecret (%s): retried every 5 minutes, and within 10 s (60 s after repeated refusals) when the credentials Secret changes", st.Message)
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
	if t := p.creds.pushed; t != nil && !t.BornAt.IsZero() {
		p.st.SuiteTicketTime = stamp(t.BornAt)
	}
}

// recordNoStream clears what Stream mode shows, for an object whose ticket comes from its
// credentials Secret.
func (p *tokenPass) recordNoStream() {
	meta.RemoveStatusCondition(&p.st.Conditions, v1alpha1.ConditionTicketStream)
	p.st.SuiteTicketTime = nil
}
