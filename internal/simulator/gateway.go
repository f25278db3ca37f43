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

package simulator

// The Stream mode gateway: connections/open, the websocket endpoint, pings, suite_ticket pushes,
// redelivery of unacked events and fault hooks. Validity windows (a connection ticket's 90 s, a
// replaced suite ticket's grace, a refusal of connections/open) follow the simulator's clock; the
// protocol's timers (pings, pushes, redelivery, the close after a disconnect) run in real time.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Stream paths: connections/open on the API host, and the websocket endpoint it answers.
const (
	PathOpenConnection = "/v1.0/gateway/connections/open"
	PathStreamConnect  = "/gateway/connect"
)

// Defaults of StreamConfig.
const (
	DefaultPingInterval      = 30 * time.Second
	DefaultRedeliverInterval = 10 * time.Second
	DefaultDisconnectDelay   = 10 * time.Second
	// ConnectionTicketLifetime is how long a ticket from connections/open opens a connection.
	ConnectionTicketLifetime = 90 * time.Second
	// DefaultOversizedBytes is the size of the frame StreamAction "oversized" sends by default.
	DefaultOversizedBytes = 1 << 20
)

// Limits that keep the gateway's memory bounded.
const (
	maxPendingPerSuite = 64       // unacked events kept per suite; older ones are dropped
	maxClientFrame     = 64 << 10 // a client frame (ack) larger than this closes the connection
	maxOversizedBytes  = 16 << 20 // cap of StreamAction.Bytes
	maxOpenTickets     = 10000    // unused connection tickets kept
	writeTimeout       = 5 * time.Second
)

// StreamConfig configures the Stream mode gateway (the `stream:` section of the credentials file).
type StreamConfig struct {
	// PushInterval: every interval, each suite with an open stream connection gets a new random
	// ticket, pushed as a suite_ticket event. 0: no periodic pushes.
	PushInterval Duration `json:"pushInterval,omitempty"`
	// PushOnConnect pushes the suite's current ticket (unchanged) when a connection of it opens.
	PushOnConnect bool `json:"pushOnConnect,omitempty"`
	// TicketGrace is how long the ticket a push replaced is still accepted. 0: refused at once.
	TicketGrace Duration `json:"ticketGrace,omitempty"`
	// PingInterval between SYSTEM pings on each connection; default DefaultPingInterval.
	PingInterval Duration `json:"pingInterval,omitempty"`
	// RedeliverInterval: an event not acked SUCCESS is sent again after it; default
	// DefaultRedeliverInterval.
	RedeliverInterval Duration `json:"redeliverInterval,omitempty"`
	// DisconnectDelay: after a SYSTEM disconnect the gateway closes the connection after it;
	// default DefaultDisconnectDelay.
	DisconnectDelay Duration `json:"disconnectDelay,omitempty"`
}

// Validate checks that no duration is negative.
func (c StreamConfig) Validate() error {
	for name, d := range map[string]Duration{
		"pushInterval": c.PushInterval, "ticketGrace": c.TicketGrace, "pingInterval": c.PingInterval,
		"redeliverInterval": c.RedeliverInterval, "disconnectDelay": c.DisconnectDelay,
	} {
		if d < 0 {
			return fmt.Errorf("stream.%s must not be negative", name)
		}
	}
	return nil
}

// withDefaults fills the unset intervals.
func (c StreamConfig) withDefaults() StreamConfig {
	set := func(d *Duration, def time.Duration) {
		if *d == 0 {
			*d = Duration(def)
		}
	}
	set(&c.PingInterval, DefaultPingInterval)
	set(&c.RedeliverInterval, DefaultRedeliverInterval)
	set(&c.DisconnectDelay, DefaultDisconnectDelay)
	return c
}

// StreamStats counts the gateway's activity, per suiteKey of a configured suite.
type StreamStats struct {
	// RejectedTickets counts websocket connects with an unknown, used or expired ticket.
	RejectedTickets int64                       `json:"rejectedTickets"`
	Suites          map[string]SuiteStreamStats `json:"suites"`
}

// SuiteStreamStats counts one suite's stream activity. Open and Pending are current values; the
// others count since the start.
type SuiteStreamStats struct {
	Open        int   `json:"open"`        // connections open now
	Connections int64 `json:"connections"` // connections accepted in total
	Pushes      int64 `json:"pushes"`      // events created: suite tickets (periodic, on connect, pushed), other eventTypes pushed
	Sent        int64 `json:"sent"`        // event frames written, redeliveries and duplicates included
	Redelivered int64 `json:"redelivered"` // event frames written again because no SUCCESS came
	Duplicates  int64 `json:"duplicates"`  // extra copies sent on demand
	Acked       int64 `json:"acked"`       // events acked SUCCESS (the first ack of each)
	Later       int64 `json:"later"`       // LATER answers
	Pending     int   `json:"pending"`     // events not acked SUCCESS yet
	Pings       int64 `json:"pings"`       // SYSTEM pings sent
	Pongs       int64 `json:"pongs"`       // ping answers echoing the ping's data
	BadPongs    int64 `json:"badPongs"`    // ping answers with other data
	Disconnects int64 `json:"disconnects"` // SYSTEM disconnects sent
	Drops       int64 `json:"drops"`       // connections dropped by the drop action
	Oversized   int64 `json:"oversized"`   // oversized frames sent
	Garbage     int64 `json:"garbage"`     // garbage frames sent
	// Events counts the suite's events per eventType (suite_ticket, org_suite_auth, ...).
	Events map[string]EventStats `json:"events,omitempty"`
}

// EventStats counts the events of one eventType of a suite, as SuiteStreamStats counts them all.
type EventStats struct {
	Pushes      int64 `json:"pushes"`
	Sent        int64 `json:"sent"`
	Redelivered int64 `json:"redelivered"`
	Acked       int64 `json:"acked"`
	Later       int64 `json:"later"`
	Pending     int   `json:"pending"`
}

// gateway is the Stream mode state of a Simulator. Its lock is never held with the simulator's.
type gateway struct {
	sim *Simulator

	mu       sync.Mutex
	cfg      StreamConfig
	tickets  map[string]openTicket // unused connection tickets
	conns    map[string]map[*streamConn]bool
	pending  map[string][]*pendingEvent // per suite, oldest first
	nextPush map[string]time.Time       // per suite, real time
	refuse   map[string]time.Time       // suiteKey ("" all) -> end of the refusal, simulator's clock
	stats    map[string]*SuiteStreamStats
	events   map[string]map[string]*EventStats // per suite, per eventType
	rejected int64
	looping  bool // the push and redelivery loop runs
	closed   bool
	stop     chan struct{}
	wg       sync.WaitGroup
}

// openTicket is a ticket answered by connections/open: it opens one connection before expires.
type openTicket struct {
	suite   string
	events  bool // subscribed to EVENT
	expires time.Time
}

// pendingEvent is an event sent (or to be sent) and not acked SUCCESS yet.
type pendingEvent struct {
	id        string
	eventType string
	frame     []byte
	lastSent  time.Time // real time; zero: never sent
}

func newGateway(sim *Simulator, cfg StreamConfig) *gateway {
	return &gateway{
		sim:      sim,
		cfg:      cfg.withDefaults(),
		tickets:  map[string]openTicket{},
		conns:    map[string]map[*streamConn]bool{},
		pending:  map[string][]*pendingEvent{},
		nextPush: map[string]time.Time{},
		refuse:   map[string]time.Time{},
		stats:    map[string]*SuiteStreamStats{},
		events:   map[string]map[string]*EventStats{},
		stop:     make(chan struct{}),
	}
}

// statsLocked returns the suite's counters, creating them.
func (g *gateway) statsLocked(suite string) *SuiteStreamStats {
	st, ok := g.stats[suite]
	if !ok {
		st = &SuiteStreamStats{}
		g.stats[suite] = st
	}
	return st
}

// eventStatsLocked returns the counters of the suite's events of eventType, creating them.
func (g *gateway) eventStatsLocked(suite, eventType string) *EventStats {
	byType, ok := g.events[suite]
	if !ok {
		byType = map[string]*EventStats{}
		g.events[suite] = byType
	}
	st, ok := byType[eventType]
	if !ok {
		st = &EventStats{}
		byType[eventType] = st
	}
	return st
}

// openRequest is the body of connections/open.
type openRequest struct {
	ClientID      string `json:"clientId"`
	ClientSecret  string `json:"clientSecret"`
	Subscriptions []struct {
		Type  string `json:"type"`
		Topic string `json:"topic"`
	} `json:"subscriptions"`
	UA      string `json:"ua"`
	LocalIP string `json:"localIp"`
}

// serveOpen answers POST connections/open: the suite's key and secret must match, then it answers
// the websocket endpoint on the address the call came in on and a one-time ticket.
func (s *Simulator) serveOpen(w http.ResponseWriter, r *http.Request) {
	var req openRequest
	bodyErr := decodeJSON(r, &req)
	credID := s.knownCredential(endpoint{path: PathOpenConnection}, req.ClientID)
	if f, ok := s.takeFault(PathOpenConnection, credID); ok {
		if !waitLatency(r, time.Duration(f.Latency)) {
			s.finish(PathOpenConnection, credID, "canceled", 0)
			return
		}
		if f.answers() {
			s.serveFault(w, f, func(result string, status int) { s.finish(PathOpenConnection, credID, result, status) })
			return
		}
	}
	if bodyErr != nil {
		s.writeError(w, PathOpenConnection, credID, bodyErr)
		return
	}
	events, apiErr := s.checkOpen(req)
	if apiErr == nil && s.gw.refused(req.ClientID, s.clk.Now()) {
		apiErr = errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "The gateway is refusing connections.")
	}
	if apiErr != nil {
		s.writeError(w, PathOpenConnection, credID, apiErr)
		return
	}
	ticket := s.gw.issueTicket(req.ClientID, events, s.clk.Now())
	s.finish(PathOpenConnection, credID, "success", http.StatusOK)
	writeJSON(w, http.StatusOK, map[string]string{"endpoint": "ws://" + localAddr(r) + PathStreamConnect, "ticket": ticket})
}

// checkOpen checks a connections/open request; events reports an EVENT subscription.
func (s *Simulator) checkOpen(req openRequest) (events bool, _ *apiError) {
	switch {
	case req.ClientID == "":
		return false, missing("clientId")
	case req.ClientSecret == "":
		return false, missing("clientSecret")
	case len(req.Subscriptions) == 0:
		return false, missing("subscriptions")
	}
	for _, sub := range req.Subscriptions {
		switch {
		case sub.Type == "EVENT" && sub.Topic == "*":
			events = true
		case sub.Type == "EVENT":
			return false, errorf(http.StatusBadRequest, "invalidSubscription", "EVENT subscriptions take only topic *.")
		case sub.Type != "CALLBACK" || sub.Topic == "":
			return false, errorf(http.StatusBadRequest, "invalidSubscription", "Unknown subscription.")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	su, ok := s.suites[req.ClientID]
	if !ok || !secretEqual(su.SuiteSecret, req.ClientSecret) {
		return false, errorf(http.StatusBadRequest, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
	}
	return events, nil
}

// decodeJSON reads a JSON body like the token endpoints do (400 Missingbody otherwise).
func decodeJSON(r *http.Request, v any) *apiError {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" {
		return errorf(http.StatusBadRequest, "Missingbody", "body is mandatory for this action.")
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxRequestBytes)).Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "Missingbody", "body is mandatory for this action.")
	}
	return nil
}

// localAddr is the address the request came in on (the listener's, e.g. 127.0.0.1:41234).
func localAddr(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a.String()
	}
	return r.Host
}

// refused reports whether connections/open is refused for suite at now.
func (g *gateway) refused(suite string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return now.Before(g.refuse[suite]) || now.Before(g.refuse[""])
}

// issueTicket records a new connection ticket for suite.
func (g *gateway) issueTicket(suite string, events bool, now time.Time) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.tickets) >= maxOpenTickets {
		for t, ot := range g.tickets {
			if !now.Before(ot.expires) {
				delete(g.tickets, t)
			}
		}
	}
	t := randomHex(16)
	g.tickets[t] = openTicket{suite: suite, events: events, expires: now.Add(ConnectionTicketLifetime)}
	return t
}

// takeTicket uses up a connection ticket; ok is false when it is unknown, used or expired.
func (g *gateway) takeTicket(ticket string, now time.Time) (openTicket, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ot, ok := g.tickets[ticket]
	delete(g.tickets, ticket)
	if !ok || !now.Before(ot.expires) {
		g.rejected++
		return openTicket{}, false
	}
	return ot, true
}

// EventSuiteTicket is the eventType of a suite ticket push.
const EventSuiteTicket = "suite_ticket"

// PushRequest is the body of POST /_sim/push.
type PushRequest struct {
	// SuiteKey names the suite; "" pushes to every suite.
	SuiteKey string `json:"suiteKey,omitempty"`
	// EventType is the eventType pushed: "" or suite_ticket pushes a new suite ticket; any other
	// (org_suite_auth, org_suite_change, ...) pushes an event of that type carrying no ticket,
	// as DingTalk pushes the suite's business events to the same connections.
	EventType string `json:"eventType,omitempty"`
	// Ticket is the new ticket (one suite only, suite_ticket only); "" makes a random one.
	Ticket string `json:"ticket,omitempty"`
	// Duplicates sends that many extra copies of the event (same messageId) at once.
	Duplicates int `json:"duplicates,omitempty"`
}

// Push gives the suite a new random ticket and pushes it as a suite_ticket event, as DingTalk
// does every few hours; the old ticket stays valid for the configured grace. It returns the new
// ticket. With no open connection, the event waits and is delivered when one opens.
func (s *Simulator) Push(suiteKey string) (string, error) {
	return s.pushTicket(suiteKey, "", 0, true)
}

// PushTickets runs a PushRequest and returns the number of suites pushed to.
func (s *Simulator) PushTickets(req PushRequest) (int, error) {
	if req.Duplicates < 0 || req.Duplicates > 100 {
		return 0, fmt.Errorf("duplicates must be within 0..100")
	}
	if req.EventType != "" && req.EventType != EventSuiteTicket {
		return s.pushEvents(req)
	}
	if req.SuiteKey != "" {
		_, err := s.pushTicket(req.SuiteKey, req.Ticket, req.Duplicates, true)
		if err != nil {
			return 0, err
		}
		return 1, nil
	}
	if req.Ticket != "" {
		return 0, fmt.Errorf("a ticket can be given for one suite only")
	}
	keys := s.suiteKeys()
	for _, k := range keys {
		if _, err := s.pushTicket(k, "", req.Duplicates, true); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// PushEvent pushes an event of eventType (not suite_ticket) carrying no ticket to one of the
// suite's connections; it waits for one, and is delivered again until acked SUCCESS.
func (s *Simulator) PushEvent(suiteKey, eventType string) error {
	_, err := s.PushTickets(PushRequest{SuiteKey: suiteKey, EventType: eventType})
	return err
}

// pushEvents runs a PushRequest of an eventType other than suite_ticket.
func (s *Simulator) pushEvents(req PushRequest) (int, error) {
	if req.Ticket != "" {
		return 0, fmt.Errorf("a ticket can be given for suite_ticket only")
	}
	if len(req.EventType) > 64 {
		return 0, fmt.Errorf("eventType is longer than 64 bytes")
	}
	keys := []string{req.SuiteKey}
	if req.SuiteKey == "" {
		keys = s.suiteKeys()
	} else if !s.hasSuite(req.SuiteKey) {
		return 0, fmt.Errorf("unknown suite %q", req.SuiteKey)
	}
	for _, k := range keys {
		s.gw.deliver(k, businessEvent(k, req.EventType, s.clk.Now()), req.Duplicates)
	}
	return len(keys), nil
}

func (s *Simulator) hasSuite(suiteKey string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.suites[suiteKey]
	return ok
}

// SuiteTicket returns the suite's current ticket ("" for an unknown suite).
func (s *Simulator) SuiteTicket(suiteKey string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if su, ok := s.suites[suiteKey]; ok {
		return su.SuiteTicket
	}
	return ""
}

func (s *Simulator) suiteKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.suites))
	for k := range s.suites {
		keys = append(keys, k)
	}
	return keys
}

// pushTicket makes ticket (random when "") the suite's ticket when rotate, else pushes the
// current one, and sends the event to one of the suite's connections (with duplicates).
func (s *Simulator) pushTicket(suiteKey, ticket string, duplicates int, rotate bool) (string, error) {
	ticket, born, err := s.rotateTicket(suiteKey, ticket, rotate)
	if err != nil {
		return "", err
	}
	s.gw.deliver(suiteKey, ticketEvent(suiteKey, ticket, born), duplicates)
	return ticket, nil
}

// rotateTicket replaces the suite's ticket, keeping the old one for the grace period.
func (s *Simulator) rotateTicket(suiteKey, ticket string, rotate bool) (string, time.Time, error) {
	grace := time.Duration(s.gw.config().TicketGrace)
	s.mu.Lock()
	defer s.mu.Unlock()
	su, ok := s.suites[suiteKey]
	if !ok {
		return "", time.Time{}, fmt.Errorf("unknown suite %q", suiteKey)
	}
	now := s.clk.Now()
	if !rotate {
		return su.SuiteTicket, now, nil
	}
	if ticket == "" {
		ticket = randomHex(16)
	}
	if ticket != su.SuiteTicket {
		su.graceTicket, su.graceUntil = su.SuiteTicket, now.Add(grace)
		su.SuiteTicket = ticket
	}
	return ticket, now, nil
}

func (g *gateway) config() StreamConfig {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg
}

// frame is a gateway frame as DingTalk sends it.
type frame struct {
	SpecVersion string            `json:"specVersion"`
	Type        string            `json:"type"`
	Headers     map[string]string `json:"headers"`
	Data        string            `json:"data"`
}

func millis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// ticketEvent is a suite_ticket EVENT frame.
func ticketEvent(suiteKey, ticket string, born time.Time) frame {
	return eventFrame(suiteKey, EventSuiteTicket, "", born, map[string]string{
		"suiteTicket": ticket, "syncAction": EventSuiteTicket, "suiteKey": suiteKey, "eventId": randomHex(16),
	})
}

// businessEvent is an EVENT frame of another eventType, for an organisation (org_suite_auth and
// the like: which of them Stream mode delivers, and how, is unconfirmed; this is the shape of
// every Stream event).
func businessEvent(suiteKey, eventType string, born time.Time) frame {
	corp := "ding" + randomHex(8)
	return eventFrame(suiteKey, eventType, corp, born, map[string]string{
		"syncAction": eventType, "suiteKey": suiteKey, "authCorpId": corp, "eventId": randomHex(16),
	})
}

// eventFrame is an EVENT frame of eventType with data.
func eventFrame(suiteKey, eventType, corp string, born time.Time, data map[string]string) frame {
	b, _ := json.Marshal(data)
	return frame{SpecVersion: "1.0", Type: "EVENT", Data: string(b), Headers: map[string]string{
		"topic": "*", "messageId": randomHex(16), "contentType": "application/json", "time": millis(time.Now()),
		"eventType": eventType, "eventId": randomHex(16), "eventCorpId": corp, "eventBornTime": millis(born),
		"eventUnifiedAppId": suiteKey,
	}}
}

// systemFrame is a SYSTEM frame of topic with data.
func systemFrame(topic string, data any) frame {
	b, _ := json.Marshal(data)
	return frame{SpecVersion: "1.0", Type: "SYSTEM", Data: string(b), Headers: map[string]string{
		"topic": topic, "messageId": randomHex(16), "contentType": "application/json", "time": millis(time.Now()),
	}}
}

// deliver records ev as pending for the suite and sends it (and duplicates) to one connection of
// the suite, chosen at random as DingTalk does; without one it waits for the loop.
func (g *gateway) deliver(suite string, ev frame, duplicates int) {
	b, _ := json.Marshal(ev)
	pe := &pendingEvent{id: ev.Headers["messageId"], eventType: ev.Headers["eventType"], frame: b}
	g.mu.Lock()
	st, et := g.statsLocked(suite), g.eventStatsLocked(suite, pe.eventType)
	st.Pushes++
	et.Pushes++
	q := append(g.pending[suite], pe)
	if len(q) > maxPendingPerSuite {
		q = q[len(q)-maxPendingPerSuite:]
	}
	g.pending[suite] = q
	c := g.pickLocked(suite)
	if c != nil {
		pe.lastSent = time.Now()
		st.Sent += int64(1 + duplicates)
		et.Sent += int64(1 + duplicates)
		st.Duplicates += int64(duplicates)
	}
	g.mu.Unlock()
	for i := 0; c != nil && i <= duplicates; i++ {
		c.send(b)
	}
}

// pickLocked returns a random open connection of the suite subscribed to events, or nil.
func (g *gateway) pickLocked(suite string) *streamConn {
	var cs []*streamConn
	for c := range g.conns[suite] {
		if c.events {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return nil
	}
	return cs[rand.IntN(len(cs))]
}

// connsLocked returns the open connections of suite ("" every suite).
func (g *gateway) connsLocked(suite string) []*streamConn {
	var cs []*streamConn
	for k, set := range g.conns {
		if suite != "" && k != suite {
			continue
		}
		for c := range set {
			cs = append(cs, c)
		}
	}
	return cs
}

// register adds an accepted connection and starts the loop if it is not running. It returns
// false when the gateway is closed.
func (g *gateway) register(c *streamConn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.conns[c.suite] == nil {
		g.conns[c.suite] = map[*streamConn]bool{}
	}
	g.conns[c.suite][c] = true
	st := g.statsLocked(c.suite)
	st.Connections++
	if g.cfg.PushInterval > 0 && g.nextPush[c.suite].IsZero() {
		g.nextPush[c.suite] = time.Now().Add(time.Duration(g.cfg.PushInterval))
	}
	g.wg.Add(1) // the connection's own goroutines
	if !g.looping {
		g.looping = true
		g.wg.Add(1)
		go g.loop()
	}
	return true
}

func (g *gateway) unregister(c *streamConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.conns[c.suite], c)
	if len(g.conns[c.suite]) == 0 {
		delete(g.conns, c.suite)
	}
	g.wg.Done()
}

// loop pushes periodic tickets and redelivers unacked events while a connection is open.
func (g *gateway) loop() {
	defer g.wg.Done()
	cfg := g.config()
	tick := time.Duration(cfg.RedeliverInterval)
	if cfg.PushInterval > 0 {
		tick = min(tick, time.Duration(cfg.PushInterval))
	}
	t := time.NewTicker(min(time.Second, max(5*time.Millisecond, tick/4)))
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		due, more := g.tick(time.Now())
		for _, suite := range due {
			_, _ = g.sim.pushTicket(suite, "", 0, true)
		}
		if !more {
			return
		}
	}
}

// tick redelivers the events due and returns the suites due for a periodic push; more is false
// (and the loop ends) when no connection is open.
func (g *gateway) tick(now time.Time) (due []string, more bool) {
	type send struct {
		c *streamConn
		b []byte
	}
	var sends []send
	g.mu.Lock()
	if len(g.conns) == 0 || g.closed {
		g.looping = false
		g.mu.Unlock()
		return nil, false
	}
	for suite, q := range g.pending {
		for _, pe := range q {
			if !pe.lastSent.IsZero() && now.Sub(pe.lastSent) < time.Duration(g.cfg.RedeliverInterval) {
				continue
			}
			c := g.pickLocked(suite)
			if c == nil {
				break
			}
			st, et := g.statsLocked(suite), g.eventStatsLocked(suite, pe.eventType)
			if !pe.lastSent.IsZero() {
				st.Redelivered++
				et.Redelivered++
			}
			st.Sent++
			et.Sent++
			pe.lastSent = now
			sends = append(sends, send{c, pe.frame})
		}
	}
	if g.cfg.PushInterval > 0 {
		for suite := range g.conns {
			if next := g.nextPush[suite]; !next.IsZero() && !now.Before(next) {
				due = append(due, suite)
				g.nextPush[suite] = now.Add(time.Duration(g.cfg.PushInterval))
			}
		}
	}
	g.mu.Unlock()
	for _, s := range sends {
		s.c.send(s.b)
	}
	return due, true
}

// ack records a client's answer to the event messageID of suite.
func (g *gateway) ack(suite, messageID, status string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.statsLocked(suite)
	q := g.pending[suite]
	for i, pe := range q {
		if pe.id != messageID {
			continue
		}
		et := g.eventStatsLocked(suite, pe.eventType)
		switch status {
		case "SUCCESS":
			st.Acked++
			et.Acked++
			g.pending[suite] = append(q[:i:i], q[i+1:]...)
		case "LATER":
			st.Later++
			et.Later++
		}
		return
	}
}

// count runs f on the suite's counters under the lock.
func (g *gateway) count(suite string, f func(*SuiteStreamStats)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(g.statsLocked(suite))
}

// close stops the loop and closes every connection; later connections are refused.
func (g *gateway) close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	close(g.stop)
	cs := g.connsLocked("")
	g.mu.Unlock()
	for _, c := range cs {
		c.goAway()
	}
	g.wg.Wait()
}

// StreamStats returns a copy of the gateway's counters.
func (s *Simulator) StreamStats() StreamStats {
	g := s.gw
	g.mu.Lock()
	defer g.mu.Unlock()
	out := StreamStats{RejectedTickets: g.rejected, Suites: map[string]SuiteStreamStats{}}
	for suite, st := range g.stats {
		cp := *st
		cp.Open = len(g.conns[suite])
		cp.Pending = len(g.pending[suite])
		if byType := g.events[suite]; len(byType) > 0 {
			cp.Events = make(map[string]EventStats, len(byType))
			for typ, et := range byType {
				cp.Events[typ] = *et
			}
			for _, pe := range g.pending[suite] {
				e := cp.Events[pe.eventType]
				e.Pending++
				cp.Events[pe.eventType] = e
			}
		}
		out.Suites[suite] = cp
	}
	return out
}

// OpenStreams returns the number of open stream connections of the suite.
func (s *Simulator) OpenStreams(suiteKey string) int {
	s.gw.mu.Lock()
	defer s.gw.mu.Unlock()
	return len(s.gw.conns[suiteKey])
}
