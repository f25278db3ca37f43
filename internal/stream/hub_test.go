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

package stream_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/stream"
)

var (
	tokenA = types.NamespacedName{Namespace: "team-a", Name: "crm"}
	tokenB = types.NamespacedName{Namespace: "team-b", Name: "crm"}
	tokenC = types.NamespacedName{Namespace: "team-a", Name: "other-suite"}
)

// startHub runs a hub with the fast backoff until the test ends; stop ends it earlier and waits.
func startHub(t *testing.T, h *stream.Hub) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Start: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newHub(t *testing.T, s *sink, mod func(*stream.HubOptions)) *stream.Hub {
	l := captureLogs(t)
	l.watch(s)
	o := stream.HubOptions{Client: l.options(stream.Options{Backoff: fast})}
	if mod != nil {
		mod(&o)
	}
	return stream.NewHub(s.forHub(), o)
}

func TestHubKeepsOneConnectionPerSuite(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	s := newSink()
	h := newHub(t, s, nil)
	if !h.NeedLeaderElection() {
		t.Error("the hub must run on the leader only")
	}
	startHub(t, h)

	for _, holder := range []types.NamespacedName{tokenA, tokenB, tokenA} { // tokenA twice: idempotent
		if err := h.Acquire(holder, creds(srv)); err != nil {
			t.Fatal(err)
		}
	}
	other := stream.Credentials{SuiteKey: otherKey, SuiteSecret: otherSecret, Endpoint: srv.URL()}
	if err := h.Acquire(tokenC, other); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() [2]int { return [2]int{srv.OpenStreams(suiteKey), srv.OpenStreams(otherKey)} }).Should(Equal([2]int{1, 1}))
	eventually(t, func() stream.Phase { st, _ := h.State(tokenB); return st.Phase }).Should(Equal(stream.Connected))
	if st := srv.StreamStats(); st.Suites[suiteKey].Connections != 1 || st.Suites[otherKey].Connections != 1 || h.Connections() != 2 {
		t.Errorf("connections: %d and %d at the simulator, %d in the hub; want 1, 1, 2",
			st.Suites[suiteKey].Connections, st.Suites[otherKey].Connections, h.Connections())
	}
	// A push reaches the sink once, with the holders of the connection to fan out to.
	ticket, _ := srv.Push(suiteKey)
	if got := s.next(t); got.ticket != ticket || fmt.Sprint(got.holders) != fmt.Sprint([]types.NamespacedName{tokenA, tokenB}) {
		t.Errorf("stored for %v", got.holders)
	}
	if _, ok := h.State(types.NamespacedName{Namespace: "x", Name: "none"}); ok {
		t.Error("a state for a holder that holds nothing")
	}
}

func TestHubLastReleaseCloses(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	h := newHub(t, newSink(), nil)
	startHub(t, h)
	before := connections(t)
	for _, holder := range []types.NamespacedName{tokenA, tokenB} {
		if err := h.Acquire(holder, creds(srv)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, func() float64 { return connections(t) - before }).Should(BeNumerically("==", 1))

	h.Release(tokenA)
	h.Release(tokenA) // again: nothing
	if _, ok := h.State(tokenA); ok || h.Connections() != 1 {
		t.Errorf("after one Release: tokenA still holds, or %d connections", h.Connections())
	}
	if st, ok := h.State(tokenB); !ok || st.Phase != stream.Connected {
		t.Errorf("tokenB: %v %v", st.Phase, ok)
	}
	if n := srv.OpenStreams(suiteKey); n != 1 {
		t.Errorf("%d open connections with one holder left", n)
	}

	h.Release(tokenB)
	eventually(t, func() int { return srv.OpenStreams(suiteKey) }).Should(Equal(0))
	eventually(t, func() float64 { return connections(t) - before }).Should(BeNumerically("==", 0))
	if h.Connections() != 0 {
		t.Errorf("the hub keeps %d connections", h.Connections())
	}
	if st := srv.StreamStats().Suites[suiteKey]; st.Connections != 1 {
		t.Errorf("%d connections in total, want 1", st.Connections)
	}
}

func TestHubConnectsOnlyWhileStarted(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	h := newHub(t, newSink(), nil)
	if err := h.Acquire(tokenA, creds(srv)); err != nil {
		t.Fatal(err)
	}
	if st, ok := h.State(tokenA); !ok || st.Phase != stream.Connecting {
		t.Errorf("before Start: %v %v", st.Phase, ok)
	}
	if n := openCalls(srv, suiteKey); n != 0 {
		t.Fatalf("%d connections/open calls before Start (not the leader yet)", n)
	}

	stop := startHub(t, h)
	eventually(t, func() int { return srv.OpenStreams(suiteKey) }).Should(Equal(1))
	stop() // losing leadership or shutting down: Start returns once every connection is closed
	eventually(t, func() int { return srv.OpenStreams(suiteKey) }).Should(Equal(0))
	if err := h.Start(context.Background()); err == nil {
		t.Error("a second Start was accepted")
	}
}

func TestHubMovesAHolderWhoseSecretChanged(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	rec := &hubRecorder{}
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	h := newHub(t, newSink(), func(o *stream.HubOptions) { o.OnState = rec.record; o.Client.Clock = clk })
	startHub(t, h)

	wrong := creds(srv)
	wrong.SuiteSecret = "wrong-secret-e0a7"
	if err := h.Acquire(tokenA, wrong); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() stream.Phase { st, _ := h.State(tokenA); return st.Phase }).Should(Equal(stream.CredentialsRejected))
	if got := rec.last(); got.st.Phase != stream.CredentialsRejected || fmt.Sprint(got.holders) != fmt.Sprint([]types.NamespacedName{tokenA}) {
		t.Errorf("OnState: %v for %v", got.st.Phase, got.holders)
	}

	if err := h.Acquire(tokenA, creds(srv)); err != nil { // the Secret was fixed
		t.Fatal(err)
	}
	// A new connection of the suite within 10 s of the last one waits for the open budget.
	eventually(t, func() string { st, _ := h.State(tokenA); return st.Message }).Should(ContainSubstring("held"))
	if h.Connections() != 1 {
		t.Errorf("%d connections: the refused one was not closed", h.Connections())
	}
	clk.Step(stream.ChangeInterval)
	// The step may come before the held connection's timer exists: step on until it opens.
	eventually(t, func() stream.Phase {
		if openCalls(srv, suiteKey) < 2 {
			clk.Step(100 * time.Millisecond)
		}
		st, _ := h.State(tokenA)
		return st.Phase
	}).Should(Equal(stream.Connected))
	if n := openCalls(srv, suiteKey); n != 2 {
		t.Errorf("%d connections/open calls, want 2 (refused, then accepted once the budget allowed)", n)
	}
	if err := h.Acquire(tokenB, stream.Credentials{SuiteKey: suiteKey}); dingtalk.ClassOf(err) != dingtalk.ClassCredentialsRejected {
		t.Errorf("empty secret: %v", err)
	}
	if _, ok := h.State(tokenB); ok {
		t.Error("a refused Acquire registered its holder")
	}
}

func TestHubIsSafeForConcurrentUse(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	h := newHub(t, newSink(), nil)
	startHub(t, h)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			holder := types.NamespacedName{Namespace: "ns", Name: fmt.Sprint("token-", i)}
			for range 20 {
				if err := h.Acquire(holder, creds(srv)); err != nil {
					t.Error(err)
					return
				}
				_, _ = h.State(holder)
				h.Release(holder)
			}
			_ = h.Acquire(holder, creds(srv))
		}()
	}
	wg.Wait()
	if h.Connections() != 1 {
		t.Errorf("%d connections; want 1", h.Connections())
	}
	// The connection the churn left may wait for the open budget (one new connection per 10 s).
	eventually(t, func() int { return srv.OpenStreams(suiteKey) }).WithTimeout(25 * time.Second).Should(Equal(1))
	for i := range 8 {
		h.Release(types.NamespacedName{Namespace: "ns", Name: fmt.Sprint("token-", i)})
	}
	eventually(t, func() int { return srv.OpenStreams(suiteKey) }).Should(Equal(0))
}

// hubRecorder records the hub's OnState calls.
type hubRecorder struct {
	mu    sync.Mutex
	calls []hubState
}

type hubState struct {
	suite   stream.SuiteID
	holders []types.NamespacedName
	st      stream.State
}

func (r *hubRecorder) record(suite stream.SuiteID, holders []types.NamespacedName, st stream.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, hubState{suite, holders, st})
}

func (r *hubRecorder) last() hubState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.calls) == 0 {
		return hubState{}
	}
	return r.calls[len(r.calls)-1]
}

// TestStreamMetrics checks dingtalk_stream_connections and dingtalk_stream_events_total{type}
// on controller-runtime's registry, as the manager serves them.
func TestStreamMetrics(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{PingInterval: simulator.Duration(20 * time.Millisecond)})
	s := newSink()
	h := newHub(t, s, nil)
	startHub(t, h)
	conns := connections(t)
	tickets, pings := events(t, "suite_ticket"), events(t, "ping")

	if err := h.Acquire(tokenA, creds(srv)); err != nil {
		t.Fatal(err)
	}
	if err := h.Acquire(tokenC, stream.Credentials{SuiteKey: otherKey, SuiteSecret: otherSecret, Endpoint: srv.URL()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() float64 { return connections(t) - conns }).Should(BeNumerically("==", 2))
	if _, err := srv.Push(suiteKey); err != nil {
		t.Fatal(err)
	}
	s.next(t)
	eventually(t, func() float64 { return events(t, "suite_ticket") - tickets }).Should(BeNumerically("==", 1))
	eventually(t, func() float64 { return events(t, "ping") - pings }).Should(BeNumerically(">=", 2))

	h.Release(tokenA)
	eventually(t, func() float64 { return connections(t) - conns }).Should(BeNumerically("==", 1))
	h.Release(tokenC)
	eventually(t, func() float64 { return connections(t) - conns }).Should(BeNumerically("==", 0))
	if got := events(t, "suite_ticket") - tickets; got != 1 {
		t.Errorf("suite_ticket counted %v after the connections closed, want 1", got)
	}
}

// TestHubTicketGoesToTheReceivingConnectionOnly: a holder naming the suiteKey of another tenant
// with a made-up suiteSecret holds a connection of its own, which never authenticates; a ticket
// pushed for the suite is stored for the holders of the authenticated connection only.
func TestHubTicketGoesToTheReceivingConnectionOnly(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	s := newSink()
	h := newHub(t, s, nil)
	startHub(t, h)
	if err := h.Acquire(tokenA, creds(srv)); err != nil {
		t.Fatal(err)
	}
	guesser := types.NamespacedName{Namespace: "team-b", Name: "guess"}
	guess := stream.Credentials{SuiteKey: suiteKey, SuiteSecret: "guessed-" + suiteSecret, Endpoint: srv.URL()}
	if err := h.Acquire(guesser, guess); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() stream.Phase { st, _ := h.State(tokenA); return st.Phase }).Should(Equal(stream.Connected))
	eventually(t, func() stream.Phase { st, _ := h.State(guesser); return st.Phase }).Should(Equal(stream.CredentialsRejected))
	if h.Connections() != 2 {
		t.Errorf("%d connections in the hub, want 2 (one a secret)", h.Connections())
	}
	ticket, _ := srv.Push(suiteKey)
	if got := s.next(t); got.ticket != ticket || fmt.Sprint(got.holders) != fmt.Sprint([]types.NamespacedName{tokenA}) {
		t.Errorf("the pushed ticket was stored for %v, want only %v", got.holders, tokenA)
	}
}

// TestHubBudgetsNewConnections drives the open budget with a fake clock: a holder whose
// suiteSecret changed, and another holder of the suite in its namespace, open at most one new
// connection per 10 s; a holder of another namespace is not held by them.
func TestHubBudgetsNewConnections(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	h := newHub(t, newSink(), func(o *stream.HubOptions) { o.Client.Clock = clk })
	startHub(t, h)
	with := func(secret string) stream.Credentials {
		c := creds(srv)
		c.SuiteSecret = secret
		return c
	}
	state := func(holder types.NamespacedName) func() stream.State {
		return func() stream.State { st, _ := h.State(holder); return st }
	}
	held := And(HaveField("Phase", stream.Connecting), HaveField("Message", ContainSubstring("held")))
	acquire := func(holder types.NamespacedName, c stream.Credentials) {
		t.Helper()
		if err := h.Acquire(holder, c); err != nil {
			t.Fatal(err)
		}
	}

	// The suite's first connection opens at once.
	acquire(tokenA, creds(srv))
	eventually(t, state(tokenA)).Should(HaveField("Phase", stream.Connected))

	// tokenA's suiteSecret changes: the new connection waits 10 s from the last open.
	acquire(tokenA, with("wrong-secret-1a2b"))
	eventually(t, func() bool { return clk.Waiters() == 1 }).Should(BeTrue())
	eventually(t, state(tokenA)).Should(held)
	clk.Step(stream.ChangeInterval - 100*time.Millisecond)
	if n := openCalls(srv, suiteKey); n != 1 {
		t.Fatalf("%d connections/open calls 9.9 s after the change, want 1", n)
	}
	clk.Step(100 * time.Millisecond)
	eventually(t, state(tokenA)).Should(HaveField("Phase", stream.CredentialsRejected))
	if n := openCalls(srv, suiteKey); n != 2 {
		t.Fatalf("%d connections/open calls 10 s after the change, want 2", n)
	}

	// Another holder of the namespace with yet another secret: held 10 s too.
	tokenA2 := types.NamespacedName{Namespace: tokenA.Namespace, Name: "crm-2"}
	acquire(tokenA2, with("wrong-secret-3c4d"))
	eventually(t, func() bool { return clk.Waiters() == 2 }).Should(BeTrue()) // tokenA's retry, tokenA2's hold
	eventually(t, state(tokenA2)).Should(held)

	// A holder in another namespace is not held by them: it opens at once.
	acquire(tokenB, with("wrong-secret-5e6f"))
	eventually(t, state(tokenB)).Should(HaveField("Phase", stream.CredentialsRejected))
	eventually(t, func() bool { return clk.Waiters() == 3 }).Should(BeTrue())
	if n := openCalls(srv, suiteKey); n != 3 {
		t.Fatalf("%d connections/open calls, want 3", n)
	}
	if st := state(tokenA2)(); st.Phase != stream.Connecting {
		t.Fatalf("tokenA2 %v before its hold ended", st.Phase)
	}
	clk.Step(stream.ChangeInterval)
	eventually(t, state(tokenA2)).Should(HaveField("Phase", stream.CredentialsRejected))
	if n := openCalls(srv, suiteKey); n != 4 {
		t.Errorf("%d connections/open calls, want 4", n)
	}
}

// TestHubSecretChurnCostsFewOpens: a holder whose suiteSecret changes every 200 ms for 20 s (on a
// fake clock) makes at most 8 connections/open calls, not one per change.
func TestHubSecretChurnCostsFewOpens(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	h := newHub(t, newSink(), func(o *stream.HubOptions) { o.Client.Clock = clk })
	startHub(t, h)
	if err := h.Acquire(tokenA, creds(srv)); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() stream.Phase { st, _ := h.State(tokenA); return st.Phase }).Should(Equal(stream.Connected))

	for i := range 100 {
		c := creds(srv)
		c.SuiteSecret = fmt.Sprintf("churned-secret-%03d", i)
		if err := h.Acquire(tokenA, c); err != nil {
			t.Fatal(err)
		}
		// The new connection is held, or has opened and been refused.
		eventually(t, func() bool {
			st, _ := h.State(tokenA)
			return st.Phase == stream.CredentialsRejected || strings.Contains(st.Message, "held")
		}).Should(BeTrue())
		clk.Step(200 * time.Millisecond)
	}
	// A connection woken by a step may be released by the next change while its open is in
	// flight: the budget counts it anyway, the simulator may not have seen it.
	n := openCalls(srv, suiteKey)
	t.Logf("100 suiteSecret changes in 20 s (fake clock): %d connections/open calls", n)
	if n > 8 {
		t.Errorf("%d connections/open calls, want at most 8 (the first one, then at most one per 10 s)", n)
	}
	if h.Connections() != 1 {
		t.Errorf("the hub keeps %d connections, want 1", h.Connections())
	}
}
