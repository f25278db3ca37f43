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
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/stream"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// Credentials of the simulated suites. The secrets and every ticket must never reach a log line,
// an error or a State message.
const (
	suiteKey    = "suitekey"
	suiteSecret = "suite-secret-5d1e"
	suiteTicket = "suite-ticket-a9c0"
	otherKey    = "suiteother"
	otherSecret = "other-secret-c3f2"
	otherTicket = "other-ticket-71b4"
)

// fast is a backoff for tests that do not measure it.
var fast = wait.Backoff{Duration: 20 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 200 * time.Millisecond}

// startSim serves the two suites with the gateway settings sc, with the real clock.
func startSim(t *testing.T, sc simulator.StreamConfig) *simulator.Server {
	t.Helper()
	srv, err := simulator.Start(simulator.Config{
		Suites: []simulator.Suite{
			{SuiteKey: suiteKey, SuiteSecret: suiteSecret, SuiteTicket: suiteTicket},
			{SuiteKey: otherKey, SuiteSecret: otherSecret, SuiteTicket: otherTicket},
		},
		Stream: sc,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func creds(srv *simulator.Server) stream.Credentials {
	return stream.Credentials{SuiteKey: suiteKey, SuiteSecret: suiteSecret, Endpoint: srv.URL()}
}

// stored is one StoreTicket call.
type stored struct {
	suite   stream.SuiteID
	holders []types.NamespacedName // through a Hub: the holders of the receiving connection
	ticket  string
	bornAt  time.Time
}

// sink records StoreTicket calls; fail makes the next calls fail; block holds calls until released.
type sink struct {
	mu      sync.Mutex
	calls   []stored
	fail    int
	block   chan struct{} // when set, each call signals entered, then waits for a receive
	entered chan struct{}
	seen    chan stored
}

func newSink() *sink { return &sink{seen: make(chan stored, 100), entered: make(chan struct{}, 100)} }

func (s *sink) StoreTicket(ctx context.Context, suite stream.SuiteID, ticket string, bornAt time.Time) error {
	return s.store(ctx, stored{suite: suite, ticket: ticket, bornAt: bornAt})
}

// forHub is the sink as a Hub's: it records the holders a ticket is stored for.
func (s *sink) forHub() stream.HolderSink {
	return stream.HolderSinkFunc(func(ctx context.Context, _ stream.SuiteID, holders []types.NamespacedName, ticket string, bornAt time.Time) error {
		return s.store(ctx, stored{holders: holders, ticket: ticket, bornAt: bornAt})
	})
}

func (s *sink) store(ctx context.Context, call stored) error {
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block != nil {
		s.entered <- struct{}{}
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call)
	s.seen <- call
	if s.fail > 0 {
		s.fail--
		return errors.New("store failed")
	}
	return nil
}

// next waits for the next StoreTicket call.
func (s *sink) next(t *testing.T) stored {
	t.Helper()
	select {
	case c := <-s.seen:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the sink was not called")
		return stored{}
	}
}

func (s *sink) tickets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.calls {
		out = append(out, c.ticket)
	}
	return out
}

// logs captures a logger's output (V(1) included) and, at cleanup, fails when it holds a secret
// or a ticket the test saw (given, or stored by a watched sink).
type logs struct {
	mu      sync.Mutex
	b       strings.Builder
	secrets []string
	sinks   []*sink
}

func captureLogs(t *testing.T, secrets ...string) *logs {
	l := &logs{secrets: append([]string{suiteSecret, otherSecret, suiteTicket, otherTicket}, secrets...)}
	t.Cleanup(func() { l.check(t) })
	return l
}

func (l *logs) options(o stream.Options) stream.Options {
	o.Logger = funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.b.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 1})
	return o
}

// also adds values (tickets pushed during the test) to check.
func (l *logs) also(vs ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.secrets = append(l.secrets, vs...)
}

// watch adds every ticket s stores to the values checked.
func (l *logs) watch(s stream.TicketSink) {
	if s, ok := s.(*sink); ok {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.sinks = append(l.sinks, s)
	}
}

func (l *logs) check(t *testing.T) {
	var stored []string
	for _, s := range l.sinks {
		stored = append(stored, s.tickets()...)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b.String()) == 0 {
		t.Error("nothing was logged: the leak check saw no log")
	}
	for _, s := range append(l.secrets, stored...) {
		if s != "" && strings.Contains(l.b.String(), s) {
			t.Errorf("the log holds %q", s)
		}
	}
}

// run starts c until the test ends.
func run(t *testing.T, c *stream.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// eventually is gomega's Eventually with the package's default bounds.
func eventually(t *testing.T, f any) gomega.AsyncAssertion {
	return gomega.NewWithT(t).Eventually(f).WithTimeout(10 * time.Second).WithPolling(5 * time.Millisecond)
}

func phaseOf(c *stream.Client) func() stream.Phase {
	return func() stream.Phase { return c.State().Phase }
}

func suiteStats(srv *simulator.Server, key string) func() simulator.SuiteStreamStats {
	return func() simulator.SuiteStreamStats { return srv.StreamStats().Suites[key] }
}

// openCalls is the number of connections/open calls of key the simulator answered.
func openCalls(srv *simulator.Server, key string) int64 {
	return srv.Stats().Endpoints[simulator.PathOpenConnection].Credentials[key].Total
}

// events reads dingtalk_stream_events_total{type}, summed over the outcomes.
func events(t *testing.T, kind string) float64 {
	t.Helper()
	return eventsBy(t, map[string]string{"type": kind})
}

// outcomes reads dingtalk_stream_events_total{type, outcome}.
func outcomes(t *testing.T, kind, outcome string) float64 {
	t.Helper()
	return eventsBy(t, map[string]string{"type": kind, "outcome": outcome})
}

func eventsBy(t *testing.T, labels map[string]string) float64 {
	t.Helper()
	m, err := testenv.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return m.Total("dingtalk_stream_events_total", labels)
}

// connections reads dingtalk_stream_connections.
func connections(t *testing.T) float64 {
	t.Helper()
	m, err := testenv.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return m.Value("dingtalk_stream_connections", nil)
}

// stateRecorder records the States a client reports.
type stateRecorder struct {
	mu     sync.Mutex
	states []stream.State
}

func (r *stateRecorder) record(_ stream.SuiteID, st stream.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, st)
}

func (r *stateRecorder) phases() []stream.Phase {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []stream.Phase
	for _, st := range r.states {
		out = append(out, st.Phase)
	}
	return out
}
