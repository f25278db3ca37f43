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
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/memory"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/policy"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/sharedfetch"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/suiteticket"
)

// The pass: steps gather what the world holds and act on it (call DingTalk, write Secrets) and
// return what happened as outcomes (an attempt, a failure, a write); only the pass records
// outcomes in status, and writes status once, when it ends. Both kinds run the same skeleton
// (run) and end the same way (finish); kindPass is where they differ. docs/design.md ("One
// pass") draws it.

// kindPass is a pass of one kind: the steps where a DingTalkToken (one target Secret, User
// tokens, rollout restarts) and a ClusterDingTalkToken (a target Secret per selected namespace)
// differ. The skeleton calls them in order; each step records its outcome in the pass.
type kindPass interface {
	// base is the refresh state both kinds share.
	base() *tokenPass
	// observe reads what the targets hold and recovers the last good token: a read only (and,
	// for a DingTalkToken, the store of a pending refresh token), so that Ready reflects the
	// targets however the pass ends.
	observe(ctx context.Context) error
	// prepare runs before the credentials are read: a failure stops the pass before a DingTalk
	// call is spent on a token that could not be written (another owner's Secret, a template
	// that cannot render).
	prepare(ctx context.Context) (*failure, error)
	// beforeCall runs when the decision calls DingTalk: a failure stops the call.
	beforeCall(ctx context.Context, in policy.Input) (*failure, error)
	// refresh fetches a token and returns the attempt.
	refresh(ctx context.Context, in policy.Input) (attempt, error)
	// recordAttempt records the attempt.
	recordAttempt(a attempt)
	// write writes the last good token where the object wants it, and records the outcome.
	write(ctx context.Context) error
	// ready is the Ready condition the pass ends with (the kind's own status settled first), and
	// until when it holds (zero: nothing to wake up for).
	ready() (readyState, time.Time)
	// statusWrite is the pass's one status write.
	statusWrite() statusWrite
	// setMetrics publishes the object's series.
	setMetrics()
}

// reconcile is Reconcile for every kind: start loads the object and starts its pass (nil: nothing
// to do), run converges it, and finish writes status once, however the pass ends. DingTalk
// failures become conditions; only API-server errors are returned.
func (sh *Machinery) reconcile(ctx context.Context, start func(context.Context) (kindPass, error)) (res ctrl.Result, err error) {
	// ctx's logger is the manager's, capped below the levels at which libraries called with ctx
	// (client-go) log request bodies, Secrets included (internal/operator.NewManager).
	k, err := start(ctx)
	if err != nil || k == nil {
		return ctrl.Result{}, err
	}
	// One status write, the events of its transitions and the metrics, however the pass ends.
	defer func() { res, err = k.base().finish(ctx, k, err) }()
	return ctrl.Result{}, sh.run(ctx, k)
}

// run is the pass: observe -> suspended? -> prepare -> read the credentials -> hold the Stream
// connection -> decide -> refresh -> write.
func (sh *Machinery) run(ctx context.Context, k kindPass) error {
	p := k.base()
	if err := k.observe(ctx); err != nil {
		return err
	}
	// Suspended: no DingTalk call and no write; status reports what the targets hold.
	if p.spec.Suspend {
		p.suspend()
		sh.holdStream(p)
		return nil
	}
	p.resume()
	if f, err := k.prepare(ctx); err != nil || f != nil {
		p.failOn(f)
		return err
	}
	// Read the credentials (uncached) and hold (or release) the suite's DingTalk Stream
	// connection that pushes its tickets.
	var err error
	if p.creds, err = sh.readCredentials(ctx, p); err != nil {
		return err
	}
	sh.holdStream(p)
	// Decide whether this pass calls DingTalk.
	in := p.input()
	if d := policy.Decide(in); d.Fetch {
		p.log.V(1).Info("Refreshing token", "why", d.Why)
		if f, err := k.beforeCall(ctx, in); err != nil || f != nil {
			p.failOn(f)
			return err
		}
		a, err := k.refresh(ctx, in)
		k.recordAttempt(a)
		if _, deferred := p.deferred(); err != nil || deferred {
			return err
		}
	} else {
		p.log.V(1).Info("No refresh", "why", d.Why)
	}
	// Write the last good token: create, restore drift, or leave as it is.
	return k.write(ctx)
}

// finish writes status once (when it changed), emits the events of its transitions, updates the
// metrics and computes RequeueAfter. err is the pass's API-server error, returned as is. A
// deferred pass writes nothing: it comes back when its place under the rate limit is due.
func (p *tokenPass) finish(ctx context.Context, k kindPass, err error) (ctrl.Result, error) {
	if res, deferred := p.deferred(); deferred && err == nil {
		return res, nil
	}
	ready, validUntil := k.ready()
	next := p.settle(ready)
	if werr := p.writeStatus(ctx, k.statusWrite()); err == nil {
		err = werr
	}
	k.setMetrics()
	if err != nil {
		return ctrl.Result{}, err
	}
	// validUntil: Ready turns False at that moment.
	return ctrl.Result{RequeueAfter: policy.RequeueAfter(p.now, append(p.wakeups, next, validUntil)...)}, nil
}

// attempt is the outcome of a refresh attempt.
type attempt struct {
	// creds are the credentials DingTalk was called with (nil: it was not called).
	creds *credentials
	// token is the token answered (nil: none).
	token *sharedfetch.Issued
	// called is set when this object's own call answered (not a token shared by another object).
	called bool
	// failure is why no token came (nil: one did, or the attempt was deferred).
	failure *failure
	// deferredUntil is set when the call waits for its place under the client-side rate limit:
	// nothing was called, and the pass is repeated then.
	deferredUntil time.Time
}

// tokenPass is the part of a pass every token kind shares: the refresh state of one object.
type tokenPass struct {
	shared *Machinery
	// obj is the object (either kind).
	obj client.Object
	// key names the object in memory; uid and generation are its own.
	key        types.NamespacedName
	uid        types.UID
	generation int64
	spec       tokenSpec
	// st is the object's status, changed only by the record methods below.
	st  *v1alpha1.TokenStatus
	now time.Time
	log logr.Logger

	// held is the last good token (memory, a target Secret, or this pass's fetch).
	held *memory.Token
	// creds is what the pass read of the credentials (zero before they are read).
	creds credentialsRead
	// requestedAt is a pending refresh request's time (zero: none); requestIgnored says why the
	// refresh-requested-at annotation was ignored ("": it was not).
	requestedAt    time.Time
	requestIgnored string
	// suspended is set when spec.suspend stopped the pass.
	suspended bool
	// unused is set when nothing would receive a token (a ClusterDingTalkToken selecting no
	// namespace): none is fetched, and no refresh is scheduled.
	unused bool
	// deferredUntil is set when the pass's DingTalk call waits for its place under the
	// client-side rate limit: the pass ends there, writes nothing, and is repeated then.
	deferredUntil time.Time
	// wakeups are extra requeue times (a rollout restart held back, namespaces to try again).
	wakeups []time.Time
}

// credentialsRead is what a pass read of the credentials.
type credentialsRead struct {
	// values are the credentials (nil: not read, or missing).
	values *credentials
	// missing says why they could not be used (nil: they could).
	missing *failure
	// setKey names their credential set in the shared fetch (User tokens: never shared).
	setKey string
	// floor is DingTalk's Retry-After for the set, when one is in force.
	floor time.Time
	// pushed is the ticket DingTalk pushed over Stream mode that values carry (nil: none, the
	// credentials Secret's is used); awaitingTicket is set when a Stream-sourced object has no
	// ticket at all yet.
	pushed         *suiteticket.Ticket
	awaitingTicket bool
}

func (sh *Machinery) startTokenPass(log logr.Logger, obj client.Object, spec tokenSpec, st *v1alpha1.TokenStatus) tokenPass {
	p := tokenPass{
		shared:     sh,
		obj:        obj,
		key:        types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()},
		uid:        obj.GetUID(),
		generation: obj.GetGeneration(),
		spec:       spec,
		st:         st,
		now:        sh.clock.Now(),
		log:        log,
	}
	p.requestedAt, p.requestIgnored = policy.RequestedAt(spec.RefreshRequest, p.now)
	return p
}

func (p *tokenPass) base() *tokenPass { return p }

// input is the refresh decision's input, built from the pass alone: a pure function of what the
// pass has gathered so far and of its status.
func (p *tokenPass) input() policy.Input {
	st := p.st
	in := policy.Input{
		Now:                   p.now,
		UID:                   p.uid,
		RefreshBefore:         p.spec.RefreshBefore,
		FailedAttempts:        st.FailedAttempts,
		LastCredentialsDigest: st.CredentialsDigest,
		LastSuiteTicketDigest: st.SuiteTicketDigest,
		SpecChanged:           p.generation != st.ObservedGeneration,
		RetryAfterFloor:       p.creds.floor,
		RefreshRequestedAt:    p.requestedAt,
		AwaitingTicket:        p.creds.awaitingTicket,
		Unused:                p.unused,
	}
	if st.LastFailureTime != nil {
		in.LastFailure = st.LastFailureTime.Time
	}
	if st.FailedAttempts > 0 {
		// The failure reason is kept in its own field, so that a Refreshed condition replaced
		// meanwhile (Suspended, RolloutRestartFailed) does not lift the backoff or the hourly gate.
		in.FailureReason = st.LastFailureReason
	}
	if p.held != nil {
		in.IssuedAt, in.ExpiresAt = p.held.IssuedAt, p.held.ExpiresAt
		in.JitterSeed = p.shared.fetcher.JitterSeed(p.held.AccessToken)
	}
	if c := p.creds.values; c != nil {
		d := p.shared.digests
		in.CredentialsDigest = c.digest(d, p.uid)
		in.SuiteTicketDigest = c.ticketDigest(d, p.uid)
		// A digest an earlier version wrote is the same credentials, not a change.
		if c.isDigest(d, st.CredentialsDigest, p.uid) {
			in.LastCredentialsDigest = in.CredentialsDigest
		}
		if c.isTicketDigest(d, st.SuiteTicketDigest, p.uid) {
			in.LastSuiteTicketDigest = in.SuiteTicketDigest
		}
	}
	return in
}

// deferred reports whether the pass was deferred (its call waits for a place under the
// client-side rate limit), and then its result: back when the place is due. A deferred pass
// records nothing: it is repeated in full then.
func (p *tokenPass) deferred() (ctrl.Result, bool) {
	if p.deferredUntil.IsZero() {
		return ctrl.Result{}, false
	}
	return ctrl.Result{RequeueAfter: policy.RequeueAfter(p.now, p.deferredUntil)}, true
}

// heldUntil is the expiry of the last good token (zero: none).
func (p *tokenPass) heldUntil() time.Time {
	if p.held == nil {
		return time.Time{}
	}
	return p.held.ExpiresAt
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
