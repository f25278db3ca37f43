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
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/stream"
)

// newClient returns a client of the simulator's suitekey with the fast backoff.
func newClient(t *testing.T, srv *simulator.Server, s stream.TicketSink, l *logs, mod func(*stream.Options)) *stream.Client {
	t.Helper()
	l.watch(s)
	o := l.options(stream.Options{Backoff: fast})
	if mod != nil {
		mod(&o)
	}
	c, err := stream.NewClient(creds(srv), s, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientStoresThenAcks(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{PingInterval: simulator.Duration(20 * time.Millisecond)})
	l := captureLogs(t)
	s := newSink()
	s.block = make(chan struct{})
	c := newClient(t, srv, s, l, nil)
	if st := c.State(); st.Phase != stream.Connecting {
		t.Errorf("before Run: %v", st.Phase)
	}
	run(t, c)
	eventually(t, phaseOf(c)).Should(Equal(stream.Connected))
	if st := c.State(); st.Message == "" || st.Since.IsZero() {
		t.Errorf("connected state: %+v", st)
	}

	before := time.Now()
	ticket, err := srv.Push(suiteKey)
	if err != nil {
		t.Fatal(err)
	}
	l.also(ticket)
	// The sink holds the event. Once a ping answer, written after anything the client sent before,
	// has reached the gateway, DingTalk still has no ack.
	select {
	case <-s.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the sink was not called")
	}
	pongs := suiteStats(srv, suiteKey)().Pongs
	eventually(t, suiteStats(srv, suiteKey)).Should(HaveField("Pongs", BeNumerically(">", pongs)))
	if st := suiteStats(srv, suiteKey)(); st.Acked != 0 || st.Later != 0 || st.Pending != 1 {
		t.Fatalf("acked %d, later %d, pending %d before the store returned", st.Acked, st.Later, st.Pending)
	}
	s.block <- struct{}{}
	got := s.next(t)
	if got.ticket != ticket || got.suite != c.ID() || got.suite.SuiteKey != suiteKey || got.suite.Endpoint != srv.URL() {
		t.Errorf("stored %v for %v", got.ticket == ticket, got.suite)
	}
	if got.bornAt.Before(before.Add(-time.Second)) || got.bornAt.After(time.Now()) {
		t.Errorf("bornAt %v, want the push time", got.bornAt)
	}
	eventually(t, suiteStats(srv, suiteKey)).Should(And(HaveField("Acked", BeNumerically("==", 1)), HaveField("Pending", 0)))
}

func TestClientAnswersPings(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{PingInterval: simulator.Duration(20 * time.Millisecond)})
	before := events(t, metrics.StreamEventPing)
	c := newClient(t, srv, newSink(), captureLogs(t), nil)
	run(t, c)
	eventually(t, suiteStats(srv, suiteKey)).Should(HaveField("Pongs", BeNumerically(">=", 3)))
	if st := suiteStats(srv, suiteKey)(); st.BadPongs != 0 || st.Connections != 1 {
		t.Errorf("bad answers %d, connections %d", st.BadPongs, st.Connections)
	}
	if got := events(t, metrics.StreamEventPing) - before; got < 3 {
		t.Errorf("ping frames counted %v, want >= 3", got)
	}
}

func TestClientReconnectsOnDisconnect(t *testing.T) {
	// The gateway closes 10 s after its disconnect: the client must reconnect on its own.
	srv := startSim(t, simulator.StreamConfig{DisconnectDelay: simulator.Duration(10 * time.Second)})
	s := newSink()
	rec := &stateRecorder{}
	c := newClient(t, srv, s, captureLogs(t), func(o *stream.Options) {
		o.StableAfter = time.Nanosecond // every connection counts as stable
		o.OnState = rec.record
	})
	run(t, c)
	eventually(t, phaseOf(c)).Should(Equal(stream.Connected))
	before := events(t, metrics.StreamEventDisconnect)

	start := time.Now()
	if n := srv.Disconnect(suiteKey); n != 1 {
		t.Fatalf("disconnect reached %d connections", n)
	}
	eventually(t, suiteStats(srv, suiteKey)).Should(And(HaveField("Connections", BeNumerically("==", 2)), HaveField("Open", 1)))
	took := time.Since(start)
	t.Logf("reconnected %v after a disconnect", took)
	if took > time.Second {
		t.Errorf("reconnect after an orderly disconnect took %v, want < 1s (no backoff)", took)
	}
	if got := events(t, metrics.StreamEventDisconnect) - before; got != 1 {
		t.Errorf("disconnects counted %v", got)
	}
	// Still Connected: the hand-over did not show as an outage.
	eventually(t, phaseOf(c)).Should(Equal(stream.Connected))
	if got, want := rec.phases(), []stream.Phase{stream.Connected}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("phases %v, want %v", got, want)
	}
	ticket, _ := srv.Push(suiteKey)
	if got := s.next(t); got.ticket != ticket {
		t.Error("the new connection did not deliver the push")
	}
}

// TestClientReconnectsAfterDropWithinBackoff measures the reconnect after two drops with the
// default backoff: 1 s (up to 1.2 s) after the first, 2 s (up to 2.4 s) after the second.
func TestClientReconnectsAfterDropWithinBackoff(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	c := newClient(t, srv, newSink(), captureLogs(t), func(o *stream.Options) { o.Backoff = stream.DefaultBackoff() })
	run(t, c)
	eventually(t, suiteStats(srv, suiteKey)).Should(HaveField("Open", 1))

	for i, step := range []time.Duration{time.Second, 2 * time.Second} {
		start := time.Now()
		if n := srv.DropStreams(suiteKey); n != 1 {
			t.Fatalf("drop reached %d connections", n)
		}
		eventually(t, phaseOf(c)).Should(Equal(stream.StreamUnavailable))
		eventually(t, suiteStats(srv, suiteKey)).Should(And(HaveField("Connections", BeNumerically("==", i+2)), HaveField("Open", 1)))
		took := time.Since(start)
		t.Logf("drop %d: reconnected after %v (backoff step %v, jitter up to %v)", i+1, took, step, step/5)
		// The slack covers connections/open and the websocket handshake on a loaded machine.
		if took < step || took > step+step/5+500*time.Millisecond {
			t.Errorf("drop %d: reconnected after %v, want within [%v, %v]", i+1, took, step, step+step/5+500*time.Millisecond)
		}
		eventually(t, phaseOf(c)).Should(Equal(stream.Connected))
	}
	if st := c.State(); st.Phase != stream.Connected || !strings.Contains(st.Message, "connected") {
		t.Errorf("state %+v", st)
	}
}

func TestClientDuplicatesAreDeliveredAndCountedOnce(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	s := newSink()
	c := newClient(t, srv, s, captureLogs(t, "dup-ticket"), nil)
	run(t, c)
	eventually(t, phaseOf(c)).Should(Equal(stream.Connected))
	before := events(t, metrics.StreamEventSuiteTicket)

	if _, err := srv.PushTickets(simulator.PushRequest{SuiteKey: suiteKey, Ticket: "dup-ticket", Duplicates: 2}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := s.next(t); got.ticket != "dup-ticket" {
			t.Fatalf("stored another ticket")
		}
	}
	eventually(t, suiteStats(srv, suiteKey)).Should(And(HaveField("Acked", BeNumerically("==", 1)), HaveField("Pending", 0)))
	// Each frame received is counted once: three frames arrived.
	if got := events(t, metrics.StreamEventSuiteTicket) - before; got != 3 {
		t.Errorf("suite_ticket frames counted %v, want 3", got)
	}
	if st := suiteStats(srv, suiteKey)(); st.Connections != 1 || c.State().Phase != stream.Connected {
		t.Errorf("connections %d, phase %v", st.Connections, c.State().Phase)
	}
}

// TestClientAnswersUnhandledEvents: an event the operator does not handle (org_suite_auth) is
// answered LATER by default, so that DingTalk delivers it again (to the vendor's own backend, with
// luck), and SUCCESS with UnhandledEvents Acknowledge; suite tickets are stored and acked SUCCESS
// either way; dingtalk_stream_events_total counts each with its outcome.
func TestClientAnswersUnhandledEvents(t *testing.T) {
	for name, tc := range map[string]struct {
		option  stream.UnhandledEvents // Options.UnhandledEvents
		status  string                 // the answer the gateway counts
		outcome string                 // the metric's outcome of the event
	}{
		"default":     {option: "", status: "LATER", outcome: metrics.StreamOutcomeRedeliver},
		"redeliver":   {option: stream.RedeliverUnhandled, status: "LATER", outcome: metrics.StreamOutcomeRedeliver},
		"acknowledge": {option: stream.AcknowledgeUnhandled, status: "SUCCESS", outcome: metrics.StreamOutcomeAcknowledged},
	} {
		t.Run(name, func(t *testing.T) {
			srv := startSim(t, simulator.StreamConfig{})
			s := newSink()
			c := newClient(t, srv, s, captureLogs(t), func(o *stream.Options) { o.UnhandledEvents = tc.option })
			run(t, c)
			eventually(t, phaseOf(c)).Should(Equal(stream.Connected))
			unhandled := outcomes(t, metrics.StreamEventOther, tc.outcome)
			stored := outcomes(t, metrics.StreamEventSuiteTicket, metrics.StreamOutcomeStored)

			if err := srv.PushEvent(suiteKey, "org_suite_auth"); err != nil {
				t.Fatal(err)
			}
			answered := func() simulator.EventStats { return suiteStats(srv, suiteKey)().Events["org_suite_auth"] }
			if tc.status == "LATER" {
				eventually(t, answered).Should(And(HaveField("Later", BeEquivalentTo(1)), HaveField("Acked", BeZero()), HaveField("Pending", 1)))
			} else {
				eventually(t, answered).Should(And(HaveField("Acked", BeEquivalentTo(1)), HaveField("Later", BeZero()), HaveField("Pending", 0)))
			}
			eventually(t, func() float64 { return outcomes(t, metrics.StreamEventOther, tc.outcome) - unhandled }).Should(BeNumerically("==", 1))

			// The suite_ticket path is the same in every mode.
			ticket, _ := srv.Push(suiteKey)
			if got := s.next(t); got.ticket != ticket {
				t.Error("stored another ticket")
			}
			eventually(t, func() simulator.EventStats { return suiteStats(srv, suiteKey)().Events["suite_ticket"] }).
				Should(And(HaveField("Acked", BeEquivalentTo(1)), HaveField("Later", BeZero())))
			eventually(t, func() float64 {
				return outcomes(t, metrics.StreamEventSuiteTicket, metrics.StreamOutcomeStored) - stored
			}).Should(BeNumerically("==", 1))
		})
	}
	if _, err := stream.NewClient(stream.Credentials{SuiteKey: suiteKey, SuiteSecret: suiteSecret}, newSink(),
		stream.Options{UnhandledEvents: "drop"}); err == nil || !strings.Contains(err.Error(), "redeliver") {
		t.Errorf("UnhandledEvents drop: %v", err)
	}
	for v, ok := range map[string]bool{"redeliver": true, "acknowledge": true, "": false, "LATER": false} {
		if _, err := stream.ParseUnhandledEvents(v); (err == nil) != ok {
			t.Errorf("ParseUnhandledEvents(%q): %v", v, err)
		}
	}
}

func TestClientLeavesAFailedStoreUnacked(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{RedeliverInterval: simulator.Duration(50 * time.Millisecond)})
	s := newSink()
	s.fail = 1
	c := newClient(t, srv, s, captureLogs(t), nil)
	run(t, c)
	eventually(t, phaseOf(c)).Should(Equal(stream.Connected))

	redeliver := outcomes(t, metrics.StreamEventSuiteTicket, metrics.StreamOutcomeRedeliver)
	ticket, _ := srv.Push(suiteKey)
	if first, again := s.next(t), s.next(t); first.ticket != ticket || again.ticket != ticket {
		t.Fatal("the failed event was not delivered again")
	}
	eventually(t, suiteStats(srv, suiteKey)).Should(And(HaveField("Acked", BeNumerically("==", 1)), HaveField("Pending", 0)))
	if got := outcomes(t, metrics.StreamEventSuiteTicket, metrics.StreamOutcomeRedeliver) - redeliver; got != 1 {
		t.Errorf("suite_ticket counted %v times with outcome redeliver, want 1", got)
	}
	if st := suiteStats(srv, suiteKey)(); st.Later != 1 || st.Redelivered < 1 {
		t.Errorf("LATER %d, redelivered %d; want 1 and >= 1", st.Later, st.Redelivered)
	}
}

// TestClientCredentialsRejectedWithoutHotLoop drives the retry wait with a fake clock: one
// connections/open call, then none until CredentialsRetry has passed on the clock.
func TestClientCredentialsRejectedWithoutHotLoop(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	l := captureLogs(t, "wrong-secret-0b1d")
	c, err := stream.NewClient(stream.Credentials{SuiteKey: suiteKey, SuiteSecret: "wrong-secret-0b1d", Endpoint: srv.URL()}, newSink(),
		l.options(stream.Options{Clock: clk, Backoff: fast}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	eventually(t, phaseOf(c)).Should(Equal(stream.CredentialsRejected))
	eventually(t, clk.HasWaiters).Should(BeTrue()) // waiting for the retry

	st := c.State()
	for _, want := range []string{"CredentialsRejected", "HTTP 400", "invalidClientIdOrSecret"} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("message %q lacks %q", st.Message, want)
		}
	}
	if strings.Contains(st.Message, "wrong-secret-0b1d") || strings.Contains(st.Message, "requestid") {
		t.Errorf("message %q holds the secret or a request id", st.Message)
	}
	if !st.Since.Equal(clk.Now()) {
		t.Errorf("since %v, want the fake clock's now", st.Since)
	}

	// Within the retry interval on the clock: no second call.
	clk.Step(stream.DefaultCredentialsRetry - time.Second)
	eventually(t, clk.HasWaiters).Should(BeTrue())
	if n := openCalls(srv, suiteKey); n != 1 {
		t.Fatalf("%d connections/open calls within %v, want 1", n, stream.DefaultCredentialsRetry-time.Second)
	}
	clk.Step(time.Second)
	eventually(t, func() int64 { return openCalls(srv, suiteKey) }).Should(BeNumerically("==", 2))
	eventually(t, clk.HasWaiters).Should(BeTrue())
	if n := openCalls(srv, suiteKey); n != 2 || c.State().Phase != stream.CredentialsRejected {
		t.Errorf("%d calls after one retry interval, phase %v", n, c.State().Phase)
	}
}

func TestClientDropsOversizedFrames(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	s := newSink()
	c := newClient(t, srv, s, captureLogs(t, "oversized-ticket"), nil)
	run(t, c)
	eventually(t, phaseOf(c)).Should(Equal(stream.Connected))
	before := events(t, metrics.StreamEventOversized)

	if n, err := srv.StreamAction(simulator.StreamAction{Action: simulator.ActionOversized, Bytes: stream.DefaultMaxFrameBytes + 1}); err != nil || n != 1 {
		t.Fatalf("oversized: %d, %v", n, err)
	}
	if _, err := srv.StreamAction(simulator.StreamAction{Action: simulator.ActionOversized, Bytes: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() float64 { return events(t, metrics.StreamEventOversized) - before }).Should(BeNumerically("==", 2))

	// The same connection still works.
	ticket, _ := srv.Push(suiteKey)
	if got := s.next(t); got.ticket != ticket {
		t.Error("stored another ticket")
	}
	if st := suiteStats(srv, suiteKey)(); st.Connections != 1 || st.Open != 1 {
		t.Errorf("connections %d, open %d: the oversized frames cost the connection", st.Connections, st.Open)
	}
	for _, tk := range s.tickets() {
		if tk == "oversized-ticket" {
			t.Error("the oversized frame's ticket was stored")
		}
	}
}

func TestClientSurvivesGarbage(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	s := newSink()
	c := newClient(t, srv, s, captureLogs(t, "garbage-ticket"), nil)
	run(t, c)
	eventually(t, phaseOf(c)).Should(Equal(stream.Connected))
	before := events(t, metrics.StreamEventInvalid)

	if _, err := srv.StreamAction(simulator.StreamAction{Action: simulator.ActionGarbage}); err != nil {
		t.Fatal(err)
	}
	garbage := suiteStats(srv, suiteKey)().Garbage
	eventually(t, func() float64 { return events(t, metrics.StreamEventInvalid) - before }).Should(BeNumerically("==", garbage))

	ticket, _ := srv.Push(suiteKey)
	if got := s.next(t); got.ticket != ticket {
		t.Error("a garbage frame reached the sink")
	}
	if st := suiteStats(srv, suiteKey)(); st.Connections != 1 || st.Open != 1 {
		t.Errorf("connections %d, open %d: garbage cost the connection", st.Connections, st.Open)
	}
}

func TestClientStreamUnavailableWhileOpenIsRefused(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	if err := srv.RefuseOpen(suiteKey, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	rec := &stateRecorder{}
	c := newClient(t, srv, newSink(), captureLogs(t), func(o *stream.Options) { o.OnState = rec.record })
	run(t, c)
	eventually(t, phaseOf(c)).Should(Equal(stream.StreamUnavailable))
	if msg := c.State().Message; !strings.Contains(msg, "ProviderUnavailable") || !strings.Contains(msg, "HTTP 503") {
		t.Errorf("message %q", msg)
	}
	eventually(t, phaseOf(c)).Should(Equal(stream.Connected))
	// Repeated refusals did not churn the state: one StreamUnavailable, then Connected.
	if got, want := rec.phases(), []stream.Phase{stream.StreamUnavailable, stream.Connected}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("phases %v, want %v", got, want)
	}
	if n := openCalls(srv, suiteKey); n < 2 || n > 8 {
		t.Errorf("%d connections/open calls in 300 ms with a 20 ms backoff doubling to 200 ms", n)
	}
}

// insecureOpener answers a plain ws endpoint on a public host.
type insecureOpener struct{ calls int }

func (o *insecureOpener) OpenStreamConnection(context.Context, dingtalk.StreamOpenRequest) (dingtalk.StreamTicket, error) {
	o.calls++
	return dingtalk.StreamTicket{Endpoint: "ws://wss-open-connection.dingtalk.com/connect", Ticket: "plain-ticket"}, nil
}

func TestClientRefusesAnInsecureStreamEndpoint(t *testing.T) {
	op := &insecureOpener{}
	c, err := stream.NewClient(stream.Credentials{SuiteKey: suiteKey, SuiteSecret: suiteSecret}, newSink(),
		captureLogs(t, "plain-ticket").options(stream.Options{Opener: op, Backoff: fast}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	eventually(t, phaseOf(c)).Should(Equal(stream.StreamUnavailable))
	if msg := c.State().Message; !strings.Contains(msg, "is not wss") || strings.Contains(msg, "plain-ticket") {
		t.Errorf("message %q", msg)
	}
}

// TestClientUsesPlainWSOnlyWithAPlainHTTPLoopbackAPI: with the API endpoint over https, a ws://
// endpoint is refused even on loopback (the ticket never travels unencrypted); with the API
// endpoint on plain-http loopback (the simulator) the same answer is used.
func TestClientUsesPlainWSOnlyWithAPlainHTTPLoopbackAPI(t *testing.T) {
	srv := startSim(t, simulator.StreamConfig{})
	// The simulator on plain-http loopback opens the connections, answering a ws://127.0.0.1
	// endpoint, whatever API endpoint the client was made for.
	sim, err := dingtalk.New(dingtalk.Options{BaseURL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		endpoint string       // the API endpoint the client is made for
		want     stream.Phase // where it ends
	}{
		"https API endpoint": {endpoint: "https://api.dingtalk.com", want: stream.StreamUnavailable},
		"https loopback API": {endpoint: "https://127.0.0.1:1", want: stream.StreamUnavailable},
		"http loopback API":  {endpoint: srv.URL(), want: stream.Connected},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := stream.NewClient(stream.Credentials{SuiteKey: suiteKey, SuiteSecret: suiteSecret, Endpoint: tc.endpoint}, newSink(),
				captureLogs(t).options(stream.Options{Opener: sim, Backoff: fast}))
			if err != nil {
				t.Fatal(err)
			}
			run(t, c)
			eventually(t, phaseOf(c)).Should(Equal(tc.want))
			if tc.want == stream.StreamUnavailable {
				if msg := c.State().Message; !strings.Contains(msg, "is not wss") {
					t.Errorf("message %q", msg)
				}
				if n := srv.OpenStreams(suiteKey); n != 0 {
					t.Errorf("%d ws:// connections opened for an https API endpoint", n)
				}
			}
		})
	}
}

func TestNewClientValidates(t *testing.T) {
	s := newSink()
	for name, cr := range map[string]stream.Credentials{
		"no suiteKey":    {SuiteSecret: suiteSecret},
		"no suiteSecret": {SuiteKey: suiteKey},
	} {
		if _, err := stream.NewClient(cr, s, stream.Options{}); dingtalk.ClassOf(err) != dingtalk.ClassCredentialsRejected {
			t.Errorf("%s: %v, want CredentialsRejected", name, err)
		}
	}
	if _, err := stream.NewClient(stream.Credentials{SuiteKey: suiteKey, SuiteSecret: suiteSecret, Endpoint: "http://api.example.com"}, s, stream.Options{}); err == nil {
		t.Error("plain http on a public host accepted")
	}
	if _, err := stream.NewClient(stream.Credentials{SuiteKey: suiteKey, SuiteSecret: suiteSecret}, nil, stream.Options{}); err == nil {
		t.Error("no sink accepted")
	}
	cr := stream.Credentials{SuiteKey: suiteKey, SuiteSecret: suiteSecret}
	if id := cr.ID(); id.Endpoint != dingtalk.DefaultBaseURL {
		t.Errorf("default endpoint %q", id.Endpoint)
	}
	for _, rendered := range []string{cr.String(), fmt.Sprintf("%v", cr), fmt.Sprintf("%+v", cr), fmt.Sprintf("%#v", cr)} {
		if strings.Contains(rendered, suiteSecret) {
			t.Errorf("%q holds the secret", rendered)
		}
	}
}
