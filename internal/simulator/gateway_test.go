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

package simulator_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

// wait bounds every wait for a frame or a counter.
const wait = 5 * time.Second

// startGateway serves testConfig with stream settings, on loopback with a fake clock.
func startGateway(t *testing.T, sc simulator.StreamConfig) (*simulator.Server, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	cfg := testConfig()
	cfg.Stream = sc
	srv, err := simulator.Start(cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, clk
}

// openAnswer is the answer of connections/open.
type openAnswer struct {
	answer
	Endpoint string `json:"endpoint"`
	Ticket   string `json:"ticket"`
}

// open calls connections/open for suitekey with secret.
func open(t *testing.T, srv *simulator.Server, secret string) openAnswer {
	t.Helper()
	body := `{"clientId":"suitekey","clientSecret":"` + secret + `","subscriptions":[{"type":"EVENT","topic":"*"}],"ua":"test","localIp":"10.0.0.1"}`
	a := do(t, http.MethodPost, srv.URL()+simulator.PathOpenConnection, "application/json", body)
	oa := openAnswer{answer: a}
	if a.Status == http.StatusOK {
		if err := json.Unmarshal([]byte(a.Raw), &oa); err != nil {
			t.Fatal(err)
		}
	}
	return oa
}

// gwFrame is a frame the gateway sent.
type gwFrame struct {
	Type    string            `json:"type"`
	Headers map[string]string `json:"headers"`
	Data    string            `json:"data"`
	raw     []byte
	binary  bool
}

// testStream is a raw websocket client of the gateway.
type testStream struct {
	t      *testing.T
	ws     *websocket.Conn
	frames chan gwFrame
	ended  chan struct{}
}

// dial connects with an answered endpoint and ticket; resp is the handshake answer.
func dial(t *testing.T, endpoint, ticket string) (*testStream, *http.Response, error) {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.DialContext(t.Context(), endpoint+"?ticket="+url.QueryEscape(ticket), nil)
	if err != nil {
		return nil, resp, err
	}
	s := &testStream{t: t, ws: ws, frames: make(chan gwFrame, 256), ended: make(chan struct{})}
	go func() {
		defer close(s.ended)
		for {
			kind, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			f := gwFrame{raw: b, binary: kind == websocket.BinaryMessage}
			_ = json.Unmarshal(b, &f)
			s.frames <- f
		}
	}()
	t.Cleanup(func() { _ = ws.Close() })
	return s, resp, nil
}

// connect opens and dials a connection of suitekey.
func connect(t *testing.T, srv *simulator.Server) *testStream {
	t.Helper()
	oa := open(t, srv, suiteSecret)
	if oa.Status != http.StatusOK {
		t.Fatalf("open: HTTP %d %s", oa.Status, oa.Raw)
	}
	s, _, err := dial(t, oa.Endpoint, oa.Ticket)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	waitFor(t, "the connection to be counted", func() bool { return srv.OpenStreams("suitekey") >= 1 })
	return s
}

// next returns the next frame for which keep is true (nil keeps all), failing after wait.
func (s *testStream) next(keep func(gwFrame) bool) gwFrame {
	s.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case f := <-s.frames:
			if keep == nil || keep(f) {
				return f
			}
		case <-deadline:
			s.t.Fatal("no frame arrived")
		}
	}
}

func isEvent(f gwFrame) bool { return f.Type == "EVENT" }

func isSystem(topic string) func(gwFrame) bool {
	return func(f gwFrame) bool { return f.Type == "SYSTEM" && f.Headers["topic"] == topic }
}

// reply sends an answer to messageID with data.
func (s *testStream) reply(messageID, data string) {
	s.t.Helper()
	b, _ := json.Marshal(map[string]any{"code": 200, "message": "OK", "data": data,
		"headers": map[string]string{"messageId": messageID, "contentType": "application/json"}})
	if err := s.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		s.t.Fatal(err)
	}
}

func (s *testStream) ack(messageID, status string) { s.reply(messageID, `{"status":"`+status+`"}`) }

// waitEnded fails unless the gateway ends the connection within wait.
func (s *testStream) waitEnded() {
	s.t.Helper()
	select {
	case <-s.ended:
	case <-time.After(wait):
		s.t.Fatal("the connection was not closed")
	}
}

// waitFor polls cond until it holds, failing after wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ticketOf reads the suiteTicket of a suite_ticket event.
func ticketOf(t *testing.T, f gwFrame) string {
	t.Helper()
	var d struct {
		SuiteTicket string `json:"suiteTicket"`
	}
	if f.Headers["eventType"] != "suite_ticket" || json.Unmarshal([]byte(f.Data), &d) != nil || d.SuiteTicket == "" {
		t.Fatalf("not a suite_ticket event: %s", f.raw)
	}
	return d.SuiteTicket
}

func suiteStats(srv *simulator.Server) simulator.SuiteStreamStats {
	return srv.StreamStats().Suites["suitekey"]
}

func TestStreamOpen(t *testing.T) {
	srv, clk := startGateway(t, simulator.StreamConfig{})
	oa := open(t, srv, suiteSecret)
	if oa.Status != http.StatusOK || oa.Ticket == "" || !strings.HasPrefix(oa.Endpoint, "ws://127.0.0.1:") ||
		!strings.HasSuffix(oa.Endpoint, simulator.PathStreamConnect) {
		t.Fatalf("open: HTTP %d, endpoint %q", oa.Status, oa.Endpoint)
	}
	wantError(t, open(t, srv, "wrong").answer, http.StatusBadRequest, "invalidClientIdOrSecret")
	for name, body := range map[string]string{
		"no secret":        `{"clientId":"suitekey","subscriptions":[{"type":"EVENT","topic":"*"}]}`,
		"no subscriptions": `{"clientId":"suitekey","clientSecret":"` + suiteSecret + `"}`,
		"EVENT topic":      `{"clientId":"suitekey","clientSecret":"` + suiteSecret + `","subscriptions":[{"type":"EVENT","topic":"x"}]}`,
		"unknown suite":    `{"clientId":"other","clientSecret":"` + suiteSecret + `","subscriptions":[{"type":"EVENT","topic":"*"}]}`,
	} {
		if a := do(t, http.MethodPost, srv.URL()+simulator.PathOpenConnection, "application/json", body); a.Status != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d, want 400", name, a.Status)
		}
	}

	// Refusal for a while, on the simulator's clock.
	if err := srv.RefuseOpen("suitekey", time.Minute); err != nil {
		t.Fatal(err)
	}
	wantError(t, open(t, srv, suiteSecret).answer, http.StatusServiceUnavailable, "ServiceUnavailable")
	clk.Step(time.Minute)
	if a := open(t, srv, suiteSecret); a.Status != http.StatusOK {
		t.Errorf("after the refusal: HTTP %d", a.Status)
	}
	// Faults apply to connections/open like to the token endpoints.
	if err := srv.SetFault(simulator.Fault{Endpoint: simulator.PathOpenConnection, Status: 429, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if a := open(t, srv, suiteSecret); a.Status != http.StatusTooManyRequests {
		t.Errorf("fault: HTTP %d, want 429", a.Status)
	}

	st := srv.Stats().Endpoints[simulator.PathOpenConnection]
	if c := st.Credentials["suitekey"]; c.Results["success"] != 2 || c.Results["invalidClientIdOrSecret"] != 1 ||
		c.Results["ServiceUnavailable"] != 1 || c.Results["fault:Throttling"] != 1 {
		t.Errorf("open calls of suitekey counted as %v", c.Results)
	}
}

func TestStreamTicketIsSingleUseWithin90s(t *testing.T) {
	srv, clk := startGateway(t, simulator.StreamConfig{})
	oa := open(t, srv, suiteSecret)
	if _, _, err := dial(t, oa.Endpoint, oa.Ticket); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if _, resp, err := dial(t, oa.Endpoint, oa.Ticket); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("second use accepted (%v)", err)
	}
	late := open(t, srv, suiteSecret)
	clk.Step(simulator.ConnectionTicketLifetime)
	if _, resp, err := dial(t, late.Endpoint, late.Ticket); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("expired ticket accepted (%v)", err)
	}
	if _, _, err := dial(t, oa.Endpoint, "made-up"); err == nil {
		t.Error("unknown ticket accepted")
	}
	// The server counts a connection once its handler runs, which may be a moment after the
	// client's handshake returned.
	waitFor(t, "3 rejected tickets and 1 connection", func() bool {
		st := srv.StreamStats()
		return st.RejectedTickets == 3 && st.Suites["suitekey"].Connections == 1
	})
}

func TestStreamPushAckAndRedelivery(t *testing.T) {
	srv, _ := startGateway(t, simulator.StreamConfig{RedeliverInterval: simulator.Duration(100 * time.Millisecond)})
	s := connect(t, srv)

	ticket, err := srv.Push("suitekey")
	if err != nil {
		t.Fatal(err)
	}
	first := s.next(isEvent)
	if got := ticketOf(t, first); got != ticket || srv.SuiteTicket("suitekey") != ticket {
		t.Fatalf("pushed ticket differs from the event's")
	}
	id := first.Headers["messageId"]
	if id == "" || first.Headers["eventBornTime"] == "" || first.Headers["contentType"] != "application/json" {
		t.Errorf("event headers: %v", first.Headers)
	}

	// No answer, then LATER: the same event comes again.
	again := s.next(isEvent)
	if again.Headers["messageId"] != id {
		t.Fatalf("redelivered messageId %q, want %q", again.Headers["messageId"], id)
	}
	s.ack(id, "LATER")
	waitFor(t, "LATER to be counted", func() bool { return suiteStats(srv).Later == 1 })
	if f := s.next(isEvent); f.Headers["messageId"] != id {
		t.Fatalf("after LATER got messageId %q", f.Headers["messageId"])
	}
	s.ack(id, "SUCCESS")
	waitFor(t, "the ack", func() bool { st := suiteStats(srv); return st.Acked == 1 && st.Pending == 0 })
	if st := suiteStats(srv); st.Pushes != 1 || st.Redelivered < 2 || st.Sent != st.Redelivered+1 {
		t.Errorf("pushes %d, redelivered %d, sent %d", st.Pushes, st.Redelivered, st.Sent)
	}
}

// TestStreamBusinessEvents: an org_suite_auth event (no ticket, the suite's ticket unchanged)
// goes to one connection of the suite; answered LATER it is delivered again, to any of the
// suite's connections, until one acks it SUCCESS. The counters are kept per eventType too.
func TestStreamBusinessEvents(t *testing.T) {
	srv, _ := startGateway(t, simulator.StreamConfig{RedeliverInterval: simulator.Duration(20 * time.Millisecond)})
	operator := connect(t, srv)
	ticket := srv.SuiteTicket("suitekey")
	if err := srv.PushEvent("suitekey", "org_suite_auth"); err != nil {
		t.Fatal(err)
	}
	f := operator.next(isEvent)
	var data map[string]string
	if err := json.Unmarshal([]byte(f.Data), &data); err != nil || f.Headers["eventType"] != "org_suite_auth" ||
		data["syncAction"] != "org_suite_auth" || data["suiteTicket"] != "" || f.Headers["eventCorpId"] != data["authCorpId"] {
		t.Fatalf("event %s (%v)", f.raw, err)
	}
	if srv.SuiteTicket("suitekey") != ticket {
		t.Error("a business event changed the suite ticket")
	}
	id := f.Headers["messageId"]
	operator.ack(id, "LATER")

	// A second consumer of the suite (the vendor's backend): redeliveries go to either
	// connection at random; the operator's keeps answering LATER until the backend acks.
	backend := connect(t, srv)
	deadline := time.After(wait)
	for acked := false; !acked; {
		select {
		case f := <-operator.frames:
			if isEvent(f) {
				operator.ack(f.Headers["messageId"], "LATER")
			}
		case f := <-backend.frames:
			if isEvent(f) && f.Headers["messageId"] == id {
				backend.ack(id, "SUCCESS")
				acked = true
			}
		case <-deadline:
			t.Fatal("the event never reached the second connection")
		}
	}
	waitFor(t, "the ack", func() bool { return suiteStats(srv).Events["org_suite_auth"].Acked == 1 })
	st := suiteStats(srv)
	if e := st.Events["org_suite_auth"]; e.Pushes != 1 || e.Later < 1 || e.Redelivered < 1 || e.Pending != 0 || e.Sent < 2 {
		t.Errorf("org_suite_auth counters %+v", e)
	}
	if _, ok := st.Events["suite_ticket"]; ok || st.Pushes != 1 || st.Acked != 1 {
		t.Errorf("suite counters %+v", st)
	}

	// Through /_sim/push as well; a ticket is for suite_ticket only.
	if a := do(t, http.MethodPost, srv.URL()+"/_sim/push", "application/json", `{"suiteKey":"suitekey","eventType":"org_suite_change"}`); a.Status != http.StatusOK ||
		strings.TrimSpace(a.Raw) != `{"pushed":1}` {
		t.Errorf("POST /_sim/push org_suite_change: HTTP %d %s", a.Status, a.Raw)
	}
	for _, bad := range []string{`{"suiteKey":"suitekey","eventType":"org_suite_auth","ticket":"x"}`, `{"suiteKey":"nope","eventType":"org_suite_auth"}`} {
		if a := do(t, http.MethodPost, srv.URL()+"/_sim/push", "application/json", bad); a.Status != http.StatusBadRequest {
			t.Errorf("POST /_sim/push %s: HTTP %d, want 400", bad, a.Status)
		}
	}
	waitFor(t, "the second event", func() bool { return suiteStats(srv).Events["org_suite_change"].Sent >= 1 })
}

func TestStreamPushWaitsForAConnection(t *testing.T) {
	srv, _ := startGateway(t, simulator.StreamConfig{RedeliverInterval: simulator.Duration(50 * time.Millisecond)})
	ticket, err := srv.Push("suitekey")
	if err != nil {
		t.Fatal(err)
	}
	s := connect(t, srv)
	if got := ticketOf(t, s.next(isEvent)); got != ticket {
		t.Error("the pending event carried another ticket")
	}
}

func TestStreamDuplicates(t *testing.T) {
	srv, _ := startGateway(t, simulator.StreamConfig{})
	s := connect(t, srv)
	if n, err := srv.PushTickets(simulator.PushRequest{SuiteKey: "suitekey", Ticket: "chosen-ticket", Duplicates: 2}); err != nil || n != 1 {
		t.Fatalf("push: %d, %v", n, err)
	}
	ids := map[string]int{}
	for range 3 {
		f := s.next(isEvent)
		if ticketOf(t, f) != "chosen-ticket" {
			t.Fatal("duplicate with another ticket")
		}
		ids[f.Headers["messageId"]]++
	}
	if len(ids) != 1 {
		t.Errorf("duplicates carry %d messageIds, want 1", len(ids))
	}
	if st := suiteStats(srv); st.Duplicates != 2 || st.Sent != 3 || st.Pushes != 1 {
		t.Errorf("duplicates %d, sent %d, pushes %d", st.Duplicates, st.Sent, st.Pushes)
	}
}

func TestStreamPingsAreCounted(t *testing.T) {
	srv, _ := startGateway(t, simulator.StreamConfig{PingInterval: simulator.Duration(20 * time.Millisecond)})
	s := connect(t, srv)
	p := s.next(isSystem("ping"))
	var d struct {
		Opaque string `json:"opaque"`
	}
	if json.Unmarshal([]byte(p.Data), &d) != nil || d.Opaque == "" || p.Headers["messageId"] == "" {
		t.Fatalf("ping: %s", p.raw)
	}
	s.reply(p.Headers["messageId"], p.Data)
	s.reply(s.next(isSystem("ping")).Headers["messageId"], `{"opaque":"wrong"}`)
	waitFor(t, "the ping answers", func() bool { st := suiteStats(srv); return st.Pongs == 1 && st.BadPongs == 1 })
}

func TestStreamTicketGrace(t *testing.T) {
	srv, clk := startGateway(t, simulator.StreamConfig{TicketGrace: simulator.Duration(time.Minute)})
	newTicket, err := srv.Push("suitekey") // no connection needed: the ticket changes at once
	if err != nil {
		t.Fatal(err)
	}
	wantSuccess(t, post(t, srv, simulator.PathSuiteAccessToken, suiteReq(suiteTicket)))
	wantSuccess(t, post(t, srv, simulator.PathCorpAccessToken, corpReq(suiteTicket, "dingcorp1")))
	wantSuccess(t, post(t, srv, simulator.PathSuiteAccessToken, suiteReq(newTicket)))

	clk.Step(time.Minute)
	wantError(t, post(t, srv, simulator.PathSuiteAccessToken, suiteReq(suiteTicket)), 400, "invalidSuiteTicket")
	wantError(t, post(t, srv, simulator.PathCorpAccessToken, corpReq(suiteTicket, "dingcorp1")), 400, "invalidSuiteTicket")
	wantSuccess(t, post(t, srv, simulator.PathCorpAccessToken, corpReq(newTicket, "dingcorp1")))

	// A second push ends the first ticket's grace: only the one just replaced is kept.
	newer, _ := srv.Push("suitekey")
	wantSuccess(t, post(t, srv, simulator.PathSuiteAccessToken, suiteReq(newTicket)))
	wantSuccess(t, post(t, srv, simulator.PathSuiteAccessToken, suiteReq(newer)))
	wantError(t, post(t, srv, simulator.PathSuiteAccessToken, suiteReq(suiteTicket)), 400, "invalidSuiteTicket")
}

func TestStreamNoGraceByDefault(t *testing.T) {
	srv, _ := startGateway(t, simulator.StreamConfig{})
	if _, err := srv.Push("suitekey"); err != nil {
		t.Fatal(err)
	}
	wantError(t, post(t, srv, simulator.PathSuiteAccessToken, suiteReq(suiteTicket)), 400, "invalidSuiteTicket")
}

func TestStreamPeriodicAndOnConnectPushes(t *testing.T) {
	srv, _ := startGateway(t, simulator.StreamConfig{PushInterval: simulator.Duration(50 * time.Millisecond), PushOnConnect: true})
	s := connect(t, srv)
	if got := ticketOf(t, s.next(isEvent)); got != suiteTicket {
		t.Error("the push on connect did not carry the current ticket")
	}
	seen := map[string]bool{suiteTicket: true}
	for range 2 {
		f := s.next(isEvent)
		tk := ticketOf(t, f)
		if seen[tk] {
			t.Errorf("a periodic push repeated a ticket")
		}
		seen[tk] = true
		s.ack(f.Headers["messageId"], "SUCCESS")
	}
	if cur := srv.SuiteTicket("suitekey"); cur == suiteTicket {
		t.Error("periodic pushes did not replace the ticket")
	}
}

func TestStreamDisconnectAndDrop(t *testing.T) {
	srv, _ := startGateway(t, simulator.StreamConfig{DisconnectDelay: simulator.Duration(50 * time.Millisecond)})
	s := connect(t, srv)
	if n := srv.Disconnect(""); n != 1 {
		t.Fatalf("disconnect touched %d connections", n)
	}
	s.next(isSystem("disconnect"))
	s.waitEnded()
	waitFor(t, "the connection to close", func() bool { return srv.OpenStreams("suitekey") == 0 })

	s2 := connect(t, srv)
	if n := srv.DropStreams("suitekey"); n != 1 {
		t.Fatalf("drop touched %d connections", n)
	}
	s2.waitEnded()
	waitFor(t, "the dropped connection to close", func() bool { return srv.OpenStreams("suitekey") == 0 })
	if st := suiteStats(srv); st.Disconnects != 1 || st.Drops != 1 || st.Connections != 2 {
		t.Errorf("disconnects %d, drops %d, connections %d", st.Disconnects, st.Drops, st.Connections)
	}
}

func TestStreamOversizedAndGarbage(t *testing.T) {
	srv, _ := startGateway(t, simulator.StreamConfig{})
	s := connect(t, srv)
	if n, err := srv.StreamAction(simulator.StreamAction{Action: simulator.ActionOversized, Bytes: 200 << 10}); err != nil || n != 1 {
		t.Fatalf("oversized: %d, %v", n, err)
	}
	if f := s.next(nil); len(f.raw) < 200<<10 || !json.Valid(f.raw) || f.Type != "EVENT" {
		t.Errorf("oversized frame: %d bytes, type %q", len(f.raw), f.Type)
	}
	if _, err := srv.StreamAction(simulator.StreamAction{Action: simulator.ActionGarbage}); err != nil {
		t.Fatal(err)
	}
	binary := 0
	for range suiteStats(srv).Garbage {
		if s.next(nil).binary {
			binary++
		}
	}
	if binary != 1 {
		t.Errorf("%d binary garbage frames, want 1", binary)
	}
	if _, err := srv.StreamAction(simulator.StreamAction{Action: "explode"}); err == nil {
		t.Error("unknown action accepted")
	}
}

func TestStreamControlEndpoints(t *testing.T) {
	srv, _ := startGateway(t, simulator.StreamConfig{})
	s := connect(t, srv)

	a := do(t, http.MethodPost, srv.URL()+"/_sim/push", "application/json", `{"suiteKey":"suitekey","ticket":"curl-ticket"}`)
	if a.Status != http.StatusOK || strings.Contains(a.Raw, "curl-ticket") || ticketOf(t, s.next(isEvent)) != "curl-ticket" {
		t.Fatalf("POST /_sim/push: HTTP %d %s", a.Status, a.Raw)
	}
	if a := do(t, http.MethodPost, srv.URL()+"/_sim/push", "", ""); a.Status != http.StatusOK || strings.TrimSpace(a.Raw) != `{"pushed":1}` {
		t.Errorf("POST /_sim/push with no body: HTTP %d %s", a.Status, a.Raw)
	}
	for _, bad := range []string{`{"suiteKey":"nope"}`, `{"ticket":"x"}`, `{"duplicates":-1}`, `{"other":1}`} {
		if a := do(t, http.MethodPost, srv.URL()+"/_sim/push", "application/json", bad); a.Status != http.StatusBadRequest {
			t.Errorf("POST /_sim/push %s: HTTP %d, want 400", bad, a.Status)
		}
	}

	a = do(t, http.MethodGet, srv.URL()+"/_sim/stream", "", "")
	var st simulator.StreamStats
	if err := json.Unmarshal([]byte(a.Raw), &st); err != nil || st.Suites["suitekey"].Open != 1 || st.Suites["suitekey"].Pushes != 2 {
		t.Errorf("GET /_sim/stream: %s", a.Raw)
	}
	for _, secret := range []string{suiteSecret, suiteTicket, srv.SuiteTicket("suitekey")} {
		if strings.Contains(a.Raw, secret) {
			t.Errorf("stream stats hold a secret")
		}
	}

	if a := do(t, http.MethodPost, srv.URL()+"/_sim/stream", "application/json", `{"action":"drop","suiteKey":"suitekey"}`); a.Status != http.StatusOK ||
		strings.TrimSpace(a.Raw) != `{"connections":1}` {
		t.Errorf("POST /_sim/stream drop: HTTP %d %s", a.Status, a.Raw)
	}
	s.waitEnded()
	if a := do(t, http.MethodPost, srv.URL()+"/_sim/stream", "application/json", `{"action":"refuseOpen","for":"1m"}`); a.Status != http.StatusOK {
		t.Errorf("POST /_sim/stream refuseOpen: HTTP %d %s", a.Status, a.Raw)
	}
	wantError(t, open(t, srv, suiteSecret).answer, http.StatusServiceUnavailable, "ServiceUnavailable")
	for _, bad := range []string{`{"action":"nope"}`, `{"action":"refuseOpen"}`, `{"action":"oversized","bytes":-1}`} {
		if a := do(t, http.MethodPost, srv.URL()+"/_sim/stream", "application/json", bad); a.Status != http.StatusBadRequest {
			t.Errorf("POST /_sim/stream %s: HTTP %d, want 400", bad, a.Status)
		}
	}
}

func TestServerCloseEndsStreams(t *testing.T) {
	srv, _ := startGateway(t, simulator.StreamConfig{})
	s := connect(t, srv)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	s.waitEnded()
}

func TestStreamConfigValidation(t *testing.T) {
	if _, err := simulator.ParseConfig([]byte("stream: {pushInterval: -1s}")); err == nil {
		t.Error("negative pushInterval accepted")
	}
	cfg, err := simulator.ParseConfig([]byte("stream: {pushInterval: 1h, ticketGrace: 5m, pushOnConnect: true}"))
	if err != nil || time.Duration(cfg.Stream.PushInterval) != time.Hour || time.Duration(cfg.Stream.TicketGrace) != 5*time.Minute || !cfg.Stream.PushOnConnect {
		t.Errorf("stream section: %+v, %v", cfg.Stream, err)
	}
}
