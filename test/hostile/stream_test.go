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

package hostile

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	dtclient "github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/stream"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// newStreamSuite adds a suite to the simulator and, in ns, its credentials Secret named secret
// (suiteKey and suiteSecret, no suiteTicket) and a ThirdPartySuite DingTalkToken named name that
// takes its suite ticket from DingTalk Stream mode, its tokens living life. It returns the
// suiteKey.
func newStreamSuite(t *testing.T, ns, secret, name string, life time.Duration) string {
	t.Helper()
	key, value := "hostilesuite"+testutil.RandHex(6), env.Sensitive.New(testenv.Credential, "suitesecret-")
	envtesting.Must(t, env.Sim.AddSuite(simulator.Suite{SuiteKey: key, SuiteSecret: value,
		SuiteTicket: env.Sensitive.New(testenv.Credential, "suiteticket-"), TokenLifetime: simulator.Duration(life)}))
	env.CreateSecret(t, ns, secret, map[string]string{"suiteKey": key, "suiteSecret": value})
	tok := testenv.NewToken(ns, name, v1alpha1.TokenTypeThirdPartySuite, secret)
	tok.Spec.SuiteTicket = &v1alpha1.SuiteTicketConfig{Source: v1alpha1.SuiteTicketSourceStream}
	env.Create(t, tok)
	return key
}

// opensOf lists the times of the connections/open calls made with a suiteKey.
func opensOf(suiteKey string) []time.Time {
	var out []time.Time
	for _, c := range dingtalk.Calls() {
		if c.Path == simulator.PathOpenConnection && c.Credential == suiteKey {
			out = append(out, c.At)
		}
	}
	return out
}

// churnSecret writes a new random value into key of a Secret every 200 ms for d, as a tenant
// attacking the operator would, and returns when it began and ended and how many writes it made.
func churnSecret(t *testing.T, ns, secret, key string, d time.Duration) (start, end time.Time, writes int) {
	t.Helper()
	start = time.Now()
	for time.Since(start) < d {
		env.UpdateSecret(t, ns, secret, map[string]string{key: "churned-" + testutil.RandHex(8)})
		writes++
		time.Sleep(200 * time.Millisecond) // the attack's own pace
	}
	return start, time.Now(), writes
}

// TestSuiteSecretChurn: a tenant rewrites the suiteSecret of its Stream-sourced token every
// 200 ms for 20 s. Opening a Stream connection is a DingTalk call: a new suiteSecret opens at
// most one connection per 10 s, and refused ones back off (1 s doubling to 60 s) whatever the
// secret, so the churn costs at most 8 connections/open calls (without the bound, one per write).
// Another tenant's refresh, due during the churn, happens on time.
func TestSuiteSecretChurn(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	churner, victim := env.CreateNamespace(t, "streamchurn"), env.CreateNamespace(t, "streamontime")
	manager(t, "streamchurn", "", []string{churner, victim})
	suiteKey := newStreamSuite(t, churner, "isv", "suite", time.Hour)
	env.WaitFor(t, churner, "suite", v1alpha1.ConditionTicketStream, metav1.ConditionTrue, v1alpha1.ReasonConnected, 60*time.Second)
	// The victim's 24 s token falls due about 16 s in, in the middle of the churn.
	victimKey := newApp(t, victim, "creds", 24*time.Second)
	readyTokens(t, victim, "due", "creds", 1)
	due := env.GetToken(g, victim, "due-0").Status

	start, end, writes := churnSecret(t, churner, "isv", "suiteSecret", 20*time.Second)
	opens := func() []time.Time { return callsBetween(opensOf(suiteKey), start, time.Now()) }
	defer func() {
		measured(t, "%d suiteSecret rewrites in %s: %d connections/open calls in it and the 11 s after, shortest interval %s",
			writes, end.Sub(start).Round(time.Second), len(opens()), minGap(opens()).Round(10*time.Millisecond))
	}()
	// The secret written last may still be tried once its hold ends: watch the 11 s after too.
	g.Consistently(func() int { return len(opens()) }).WithTimeout(11*time.Second).WithPolling(500*time.Millisecond).
		Should(BeNumerically("<=", 8), "connections/open calls for 20 s of churn and the hold after it")

	// The victim's first call after the churn began is its due refresh (the next one is 16 s later).
	refreshes := callsBetween(dingtalk.Of(victimKey), start, time.Now())
	g.Expect(refreshes).NotTo(BeEmpty(), "the other tenant's due refresh happened")
	measured(t, "the other tenant's refresh was due at %s and called DingTalk at %s",
		due.RefreshTime.Format(time.TimeOnly), refreshes[0].Format("15:04:05.000"))
	// status.refreshTime has whole seconds, and the managers run at once under -race: 5 s is on
	// time here (a refresh held behind the churn would come 10 s late or more).
	g.Expect(refreshes[0]).To(BeTemporally("~", due.RefreshTime.Time, 5*time.Second), "on time")
}

// vendorBackend is the vendor's own Stream client of a suite, as the vendor would write it when
// sharing the suite's Stream with the operator: it answers LATER to suite_ticket events (leaving
// them to the operator) and SUCCESS to every other event, which it counts by eventType.
type vendorBackend struct {
	ws       *websocket.Conn
	mu       sync.Mutex
	received map[string]int
}

// connectVendorBackend opens a Stream connection of the suite at the simulator at base.
func connectVendorBackend(t *testing.T, base, suiteKey, suiteSecret string) *vendorBackend {
	t.Helper()
	dt, err := dtclient.New(dtclient.Options{BaseURL: base})
	envtesting.Must(t, err)
	st, err := dt.OpenStreamConnection(envtesting.Ctx(t), dtclient.StreamOpenRequest{ClientID: suiteKey, ClientSecret: suiteSecret,
		Subscriptions: []dtclient.StreamSubscription{{Type: stream.TypeEvent, Topic: "*"}}, UA: "vendor-backend"})
	envtesting.Must(t, err)
	ws, resp, err := websocket.DefaultDialer.DialContext(envtesting.Ctx(t), st.Endpoint+"?ticket="+url.QueryEscape(st.Ticket), nil)
	if resp != nil {
		_ = resp.Body.Close()
	}
	envtesting.Must(t, err)
	b := &vendorBackend{ws: ws, received: map[string]int{}}
	t.Cleanup(func() { _ = ws.Close() })
	go b.serve()
	return b
}

func (b *vendorBackend) serve() {
	for {
		_, data, err := b.ws.ReadMessage()
		if err != nil {
			return
		}
		f, err := stream.ParseFrame(data)
		if err != nil {
			continue
		}
		answer := f.Data // a ping's answer echoes its data
		if f.Type != stream.TypeSystem {
			status := "SUCCESS"
			if f.Headers.EventType == stream.EventSuiteTicket {
				status = "LATER"
			} else {
				b.mu.Lock()
				b.received[f.Headers.EventType]++
				b.mu.Unlock()
			}
			answer = `{"status":"` + status + `"}`
		}
		reply, _ := json.Marshal(map[string]any{"code": 200, "message": "OK", "data": answer,
			"headers": map[string]string{"messageId": f.Headers.MessageID, "contentType": "application/json"}})
		if b.ws.WriteMessage(websocket.TextMessage, reply) != nil {
			return
		}
	}
}

// got is how many events of eventType the backend received and acked.
func (b *vendorBackend) got(eventType string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.received[eventType]
}

// TestUnhandledStreamEvents: a vendor shares its suite's Stream with the operator (DingTalk gives
// each push to one connection of the app at random). An org_suite_auth event that reaches the
// operator's connection is answered LATER by default, so that DingTalk delivers it again and the
// vendor's backend receives it; with --stream-unhandled-events=acknowledge the operator answers
// SUCCESS and the backend never sees it. Suite tickets are stored and acked SUCCESS either way;
// dingtalk_stream_events_total counts both with their outcome.
func TestUnhandledStreamEvents(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		flags   []string // the manager's extra flags
		outcome string   // dingtalk_stream_events_total's outcome of the event
	}{
		"redeliver by default": {outcome: "redeliver"},
		"acknowledge":          {flags: []string{"--stream-unhandled-events=acknowledge"}, outcome: "acknowledged"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			// A simulator of its own that redelivers an event not acked SUCCESS after 100 ms.
			key, secret := "vendorsuite"+testutil.RandHex(6), env.Sensitive.New(testenv.Credential, "suitesecret-")
			sim, err := simulator.Start(simulator.Config{
				Suites: []simulator.Suite{{SuiteKey: key, SuiteSecret: secret, SuiteTicket: env.Sensitive.New(testenv.Credential, "suiteticket-")}},
				Stream: simulator.StreamConfig{RedeliverInterval: simulator.Duration(100 * time.Millisecond)},
			}, nil)
			envtesting.Must(t, err)
			t.Cleanup(func() { _ = sim.Close() })
			ns := env.CreateNamespace(t, "streamevents")
			env.CreateSecret(t, ns, "isv", map[string]string{"suiteKey": key, "suiteSecret": secret})
			tok := testenv.NewToken(ns, "suite", v1alpha1.TokenTypeThirdPartySuite, "isv")
			tok.Spec.SuiteTicket = &v1alpha1.SuiteTicketConfig{Source: v1alpha1.SuiteTicketSourceStream}
			env.Create(t, tok)
			metricsAddr := envtesting.FreeAddr(t)
			p := manager(t, "streamevents", "", []string{ns}, append([]string{"--dingtalk-endpoint=" + sim.URL(),
				"--metrics-bind-address=" + metricsAddr, "--metrics-secure=false"}, tc.flags...)...)
			env.WaitFor(t, ns, "suite", v1alpha1.ConditionTicketStream, metav1.ConditionTrue, v1alpha1.ReasonConnected, 60*time.Second)
			stats := func(eventType string) func() simulator.EventStats {
				return func() simulator.EventStats { return sim.StreamStats().Suites[key].Events[eventType] }
			}

			// The suite_ticket path: stored, acked SUCCESS, the token Ready.
			ticket := env.Sensitive.New(testenv.SuiteTicket, "pushed-ticket-")
			_, err = sim.PushTickets(simulator.PushRequest{SuiteKey: key, Ticket: ticket})
			envtesting.Must(t, err)
			env.WaitReady(t, ns, "suite")
			g.Eventually(stats(simulator.EventSuiteTicket)).WithTimeout(10 * time.Second).
				Should(And(HaveField("Acked", BeEquivalentTo(1)), HaveField("Later", BeZero()), HaveField("Pending", 0)))

			// An org_suite_auth event reaches the operator's connection, the suite's only one.
			envtesting.Must(t, sim.PushEvent(key, "org_suite_auth"))
			var backend *vendorBackend
			if tc.outcome == "redeliver" {
				g.Eventually(stats("org_suite_auth")).WithTimeout(10 * time.Second).
					Should(And(HaveField("Later", BeNumerically(">=", 1)), HaveField("Acked", BeZero()), HaveField("Pending", 1)))
				// The vendor's backend connects: DingTalk's redeliveries reach it, and it acks.
				connected := time.Now()
				backend = connectVendorBackend(t, sim.URL(), key, secret)
				g.Eventually(stats("org_suite_auth")).WithTimeout(10 * time.Second).
					Should(And(HaveField("Acked", BeEquivalentTo(1)), HaveField("Pending", 0)))
				e := stats("org_suite_auth")()
				measured(t, "default: org_suite_auth answered LATER %d times by the operator, delivered %d times, received by the vendor's backend %s after it connected (%d event)",
					e.Later, e.Sent, time.Since(connected).Round(10*time.Millisecond), backend.got("org_suite_auth"))
				g.Expect(backend.got("org_suite_auth")).To(Equal(1), "the vendor's backend received the event")
			} else {
				g.Eventually(stats("org_suite_auth")).WithTimeout(10 * time.Second).
					Should(And(HaveField("Acked", BeEquivalentTo(1)), HaveField("Later", BeZero()), HaveField("Pending", 0)))
				backend = connectVendorBackend(t, sim.URL(), key, secret)
				g.Consistently(func() int { return backend.got("org_suite_auth") }).WithTimeout(time.Second).Should(BeZero(),
					"an event the operator acknowledged is never delivered again")
				measured(t, "acknowledge: org_suite_auth acked SUCCESS by the operator; the vendor's backend received %d", backend.got("org_suite_auth"))
			}
			// The operator answered no suite ticket LATER, nor stored any other event.
			g.Expect(stats(simulator.EventSuiteTicket)()).To(HaveField("Later", BeZero()))

			var body string
			g.Eventually(func(g Gomega) {
				status, text, err := testenv.Get("http://"+metricsAddr+"/metrics", "")
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(status).To(Equal(200))
				m, err := testenv.ParseMetrics(strings.NewReader(text))
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(m.Total("dingtalk_stream_events_total", map[string]string{"type": "suite_ticket", "outcome": "stored"})).To(BeNumerically("==", 1))
				g.Expect(m.Total("dingtalk_stream_events_total", map[string]string{"type": "event", "outcome": tc.outcome})).To(BeNumerically(">=", 1))
				g.Expect(m.Total("dingtalk_stream_events_total", map[string]string{"type": "event"})).To(
					Equal(m.Total("dingtalk_stream_events_total", map[string]string{"type": "event", "outcome": tc.outcome})))
				body = text
			}).WithTimeout(10 * time.Second).Should(Succeed())
			envtesting.ScanOutput(t, env.Sensitive, map[string][]byte{"manager log": []byte(p.Output()), "metrics": []byte(body)})
		})
	}
}
