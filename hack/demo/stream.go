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
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dingtalkv1alpha1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// Step 6: the simulator plays DingTalk's Stream mode for the tokens whose suite tickets are
// pushed (spec.suiteTicket.source Stream): their credentials Secret has no suiteTicket, so they
// wait, connected, until the first push; then they are Ready, and a later push is picked up at
// once without any DingTalk call.

// pushTickets pushes a suite ticket to the suite of every Stream-sourced token, waits until they
// are Ready and shows where the ticket is kept; then pushes another and shows it picked up.
func (d *demo) pushTickets(ctx context.Context) error {
	toks, err := d.list(ctx)
	if err != nil {
		return d.waitError(ctx, "listing the DingTalkTokens", err)
	}
	_, stream := splitStream(toks)
	if len(stream) == 0 {
		d.step(6, "No DingTalkToken takes its suite tickets from DingTalk Stream mode in these samples: nothing to push")
		d.printf("skipped\n")
		return nil
	}
	names := make([]string, 0, len(stream))
	for i := range stream {
		names = append(names, stream[i].Name)
	}
	d.result.StreamTokens = names
	suites, err := d.suiteKeys(ctx, stream)
	if err != nil {
		return err
	}
	d.step(6, "DingTalk Stream mode: %s waits, connected, for a suite ticket (its credentials Secret has none); "+
		"the simulator's gateway pushes one now, as DingTalk does every few hours", strings.Join(names, ", "))
	d.printf("\n")
	pushedAt := time.Now()
	if err := d.push(suites); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		toks, err := d.list(ctx)
		if err != nil {
			return d.waitError(ctx, "waiting for the Stream-sourced tokens", err)
		}
		d.printTable(toks)
		if _, stream = splitStream(toks); allReady(stream) {
			break
		}
		if err := testenv.Sleep(ctx, pollInterval); err != nil {
			return d.waitError(ctx, "waiting for the Stream-sourced tokens", err)
		}
	}
	d.result.StreamReadyAfterPush = time.Since(pushedAt)
	d.printf("%s %s Ready %.1fs after the push: the operator stored the ticket, then DingTalk's ack went out, then the token was fetched with it\n",
		d.since(), strings.Join(names, ", "), d.result.StreamReadyAfterPush.Seconds())
	if err := d.printSecrets(ctx, stream); err != nil {
		return err
	}

	// The next push: stored at once, no token call while the last attempt succeeded.
	before, err := d.pushedAt(ctx, stream)
	if err != nil {
		return err
	}
	calls := d.tokenCalls(suites)
	if err := d.push(suites); err != nil {
		return err
	}
	for {
		after, err := d.pushedAt(ctx, stream)
		if err != nil {
			return err
		}
		if !anyEqual(before, after) {
			d.result.TicketPickedUp = true
			d.result.CallsForSecondPush = d.tokenCalls(suites) - calls
			d.printf("%s Pushed another ticket, picked up at once: %s (pushed at %s instead of %s); %d DingTalk token calls: "+
				"it is used from the next refresh on (at once only after a failed attempt)\n\n",
				d.since(), secretNames(stream), strings.Join(after, ", "), strings.Join(before, ", "), d.result.CallsForSecondPush)
			return nil
		}
		if err := testenv.Sleep(ctx, 100*time.Millisecond); err != nil {
			return d.waitError(ctx, "waiting for the second suite ticket", err)
		}
	}
}

// splitStream separates the tokens whose suite tickets come from DingTalk Stream mode.
func splitStream(toks []dingtalkv1alpha1.DingTalkToken) (plain, stream []dingtalkv1alpha1.DingTalkToken) {
	for _, t := range toks {
		if t.TicketSource() == dingtalkv1alpha1.SuiteTicketSourceStream {
			stream = append(stream, t)
		} else {
			plain = append(plain, t)
		}
	}
	return plain, stream
}

// allWaitingForTicket says whether every Stream-sourced token is connected and either Ready or
// waiting for its first ticket.
func allWaitingForTicket(toks []dingtalkv1alpha1.DingTalkToken) bool {
	for i := range toks {
		t := &toks[i]
		if !meta.IsStatusConditionTrue(t.Status.Conditions, dingtalkv1alpha1.ConditionTicketStream) {
			return false
		}
		c := meta.FindStatusCondition(t.Status.Conditions, dingtalkv1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue && c.Reason != dingtalkv1alpha1.ReasonPending {
			return false
		}
	}
	return true
}

// suiteKeys reads the suiteKey of each token's credentials Secret (never printed).
func (d *demo) suiteKeys(ctx context.Context, toks []dingtalkv1alpha1.DingTalkToken) ([]string, error) {
	var keys []string
	for i := range toks {
		t := &toks[i]
		s := &corev1.Secret{}
		if err := d.client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.Spec.CredentialsRef.Name}, s); err != nil {
			return nil, &stepError{step: "reading the credentials Secret of " + t.Name, err: err}
		}
		key := string(s.Data[t.Spec.CredentialsRef.Keys.WithDefaults().SuiteKey])
		if !slices.Contains(keys, key) {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// push pushes a new suite ticket to each suite through the simulator's gateway (its Go API; the
// same as POST /_sim/push).
func (d *demo) push(suites []string) error {
	for _, key := range suites {
		if _, err := d.sim.PushTickets(simulator.PushRequest{SuiteKey: key}); err != nil {
			return &stepError{step: "pushing a suite ticket", err: err,
				fix: "the samples' Stream suite must be in the simulator config (config/simulator/credentials.yaml)"}
		}
	}
	return nil
}

// pushedAt reads when the ticket each token's suite-ticket Secret holds was pushed ("": none yet).
func (d *demo) pushedAt(ctx context.Context, toks []dingtalkv1alpha1.DingTalkToken) ([]string, error) {
	out := make([]string, len(toks))
	for i := range toks {
		s := &corev1.Secret{}
		err := d.client.Get(ctx, client.ObjectKey{Namespace: toks[i].Namespace, Name: toks[i].SuiteTicketSecretName()}, s)
		if err != nil {
			return nil, d.waitError(ctx, "reading a suite-ticket Secret", err)
		}
		out[i] = s.Annotations[dingtalkv1alpha1.SuiteTicketPushedAtAnnotation]
	}
	return out, nil
}

// tokenCalls counts the simulator's token calls of the suites (corp and suite tokens).
func (d *demo) tokenCalls(suites []string) int64 {
	st := d.sim.Stats()
	var n int64
	for _, key := range suites {
		n += st.Endpoints[simulator.PathCorpAccessToken].Credentials[key].Total +
			st.Endpoints[simulator.PathSuiteAccessToken].Credentials[key].Total
	}
	return n
}

func secretNames(toks []dingtalkv1alpha1.DingTalkToken) string {
	names := make([]string, 0, len(toks))
	for i := range toks {
		names = append(names, "Secret "+toks[i].Namespace+"/"+toks[i].SuiteTicketSecretName())
	}
	return strings.Join(names, ", ")
}

// anyEqual says whether some position holds the same value in a and b.
func anyEqual(a, b []string) bool {
	for i := range a {
		if a[i] == b[i] {
			return true
		}
	}
	return false
}

// streamLine describes a Stream-sourced token's connection and ticket, under the table.
func streamLine(t *dingtalkv1alpha1.DingTalkToken) string {
	c := meta.FindStatusCondition(t.Status.Conditions, dingtalkv1alpha1.ConditionTicketStream)
	state := "not reported yet"
	if c != nil {
		state = fmt.Sprintf("%s (%s)", c.Status, c.Reason)
	}
	ticket := "none pushed yet"
	if st := t.Status.SuiteTicketTime; st != nil {
		ticket = "pushed at " + st.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s: DingTalk Stream connection %s, suite ticket %s", t.Name, state, ticket)
}
