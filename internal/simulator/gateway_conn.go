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

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// upgrader accepts any origin: the gateway's clients are programs, not browsers.
var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// maxPingsKept bounds the unanswered pings a connection remembers.
const maxPingsKept = 16

// streamConn is one open websocket connection of a suite.
type streamConn struct {
	g      *gateway
	suite  string
	events bool // subscribed to EVENT
	ws     *websocket.Conn

	writeMu sync.Mutex
	mu      sync.Mutex
	pings   map[string]string // unanswered ping messageId -> data
	order   []string          // ping messageIds, oldest first
	once    sync.Once
	done    chan struct{}
}

// serveConnect upgrades GET /gateway/connect?ticket=... to a websocket when the ticket is one
// connections/open answered, unused and younger than 90 s; else it answers 401.
func (s *Simulator) serveConnect(w http.ResponseWriter, r *http.Request) {
	ot, ok := s.gw.takeTicket(r.URL.Query().Get("ticket"), s.clk.Now())
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"code": "invalidTicket", "message": "unknown, used or expired ticket"})
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered the error
	}
	c := &streamConn{g: s.gw, suite: ot.suite, events: ot.events, ws: ws, pings: map[string]string{}, done: make(chan struct{})}
	if !s.gw.register(c) {
		_ = ws.Close()
		return
	}
	defer s.gw.unregister(c)
	cfg := s.gw.config()
	s.logger().Debug("Opened stream connection", "suite", c.suite)
	pinging := make(chan struct{})
	go func() {
		defer close(pinging)
		c.ping(time.Duration(cfg.PingInterval))
	}()
	if cfg.PushOnConnect && c.events {
		_, _ = s.pushTicket(c.suite, "", 0, false)
	}
	c.read()
	c.close()
	<-pinging
	s.logger().Debug("Closed stream connection", "suite", c.suite)
}

// read handles the client's frames (acks and ping answers) until the connection ends.
func (c *streamConn) read() {
	c.ws.SetReadLimit(maxClientFrame)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var a struct {
			Headers map[string]string `json:"headers"`
			Data    string            `json:"data"`
		}
		if json.Unmarshal(b, &a) != nil {
			continue
		}
		id := a.Headers["messageId"]
		if data, ok := c.takePing(id); ok {
			c.g.count(c.suite, func(st *SuiteStreamStats) {
				if a.Data == data {
					st.Pongs++
				} else {
					st.BadPongs++
				}
			})
			continue
		}
		var status struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal([]byte(a.Data), &status)
		c.g.ack(c.suite, id, status.Status)
	}
}

// ping sends a SYSTEM ping every interval until the connection ends.
func (c *streamConn) ping(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		f := systemFrame("ping", map[string]string{"opaque": randomHex(8)})
		c.rememberPing(f.Headers["messageId"], f.Data)
		c.g.count(c.suite, func(st *SuiteStreamStats) { st.Pings++ })
		c.sendFrame(f)
	}
}

func (c *streamConn) rememberPing(id, data string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pings[id] = data
	c.order = append(c.order, id)
	if len(c.order) > maxPingsKept {
		delete(c.pings, c.order[0])
		c.order = c.order[1:]
	}
}

func (c *streamConn) takePing(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	data, ok := c.pings[id]
	delete(c.pings, id)
	return data, ok
}

func (c *streamConn) sendFrame(f frame) {
	b, _ := json.Marshal(f)
	c.send(b)
}

// send writes one text frame; a failed write closes the connection.
func (c *streamConn) send(b []byte) {
	c.sendMessage(websocket.TextMessage, b)
}

func (c *streamConn) sendMessage(kind int, b []byte) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.ws.WriteMessage(kind, b); err != nil {
		c.close()
	}
}

// close closes the connection at once (idempotent).
func (c *streamConn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.ws.Close()
	})
}

// goAway sends a close frame (going away), then closes.
func (c *streamConn) goAway() {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""),
		time.Now().Add(time.Second))
	c.close()
}

// drop cuts the TCP connection without a close frame, like a network failure.
func (c *streamConn) drop() {
	_ = c.ws.NetConn().Close()
	c.close()
}

// StreamAction is the body of POST /_sim/stream: a fault or event on open stream connections.
type StreamAction struct {
	// Action is one of:
	//   disconnect  send SYSTEM disconnect; the gateway closes the connection DisconnectDelay later
	//   drop        cut the connections now, without a close frame
	//   oversized   send a frame of Bytes bytes (default 1 MiB), well-formed JSON
	//   garbage     send frames that are not valid gateway frames (text and binary)
	//   refuseOpen  answer connections/open with 503 for the duration For
	Action string `json:"action"`
	// SuiteKey limits the action to one suite; "" applies it to every suite.
	SuiteKey string `json:"suiteKey,omitempty"`
	// Bytes is the size of the oversized frame.
	Bytes int `json:"bytes,omitempty"`
	// For is how long refuseOpen lasts.
	For Duration `json:"for,omitempty"`
}

// The StreamAction actions.
const (
	ActionDisconnect = "disconnect"
	ActionDrop       = "drop"
	ActionOversized  = "oversized"
	ActionGarbage    = "garbage"
	ActionRefuseOpen = "refuseOpen"
)

// StreamAction runs a, returning the number of connections it touched (0 for refuseOpen).
func (s *Simulator) StreamAction(a StreamAction) (int, error) {
	g := s.gw
	if a.Action == ActionRefuseOpen {
		if a.For <= 0 {
			return 0, errors.New("refuseOpen needs a positive for")
		}
		g.mu.Lock()
		g.refuse[a.SuiteKey] = s.clk.Now().Add(time.Duration(a.For))
		g.mu.Unlock()
		return 0, nil
	}
	if a.Bytes < 0 || a.Bytes > maxOversizedBytes {
		return 0, fmt.Errorf("bytes must be within 0..%d", maxOversizedBytes)
	}
	var act func(*streamConn) func(*SuiteStreamStats)
	switch a.Action {
	case ActionDisconnect:
		delay := time.Duration(g.config().DisconnectDelay)
		act = func(c *streamConn) func(*SuiteStreamStats) {
			c.sendFrame(systemFrame("disconnect", map[string]string{"reason": "simulated disconnect"}))
			time.AfterFunc(delay, c.goAway)
			return func(st *SuiteStreamStats) { st.Disconnects++ }
		}
	case ActionDrop:
		act = func(c *streamConn) func(*SuiteStreamStats) {
			c.drop()
			return func(st *SuiteStreamStats) { st.Drops++ }
		}
	case ActionOversized:
		size := a.Bytes
		if size == 0 {
			size = DefaultOversizedBytes
		}
		act = func(c *streamConn) func(*SuiteStreamStats) {
			c.send(oversizedFrame(c.suite, size))
			return func(st *SuiteStreamStats) { st.Oversized++ }
		}
	case ActionGarbage:
		act = func(c *streamConn) func(*SuiteStreamStats) {
			for _, b := range garbageFrames {
				c.send([]byte(b))
			}
			c.sendMessage(websocket.BinaryMessage, []byte{0x00, 0xff, 0x7b})
			return func(st *SuiteStreamStats) { st.Garbage += int64(len(garbageFrames) + 1) }
		}
	default:
		return 0, fmt.Errorf("unknown action %q (disconnect, drop, oversized, garbage, refuseOpen)", a.Action)
	}
	g.mu.Lock()
	cs := g.connsLocked(a.SuiteKey)
	g.mu.Unlock()
	for _, c := range cs {
		g.count(c.suite, act(c))
	}
	return len(cs), nil
}

// garbageFrames are text frames a client must survive: not JSON, not an object, wrong types,
// no messageId, an event whose data is not JSON, an unknown frame type.
var garbageFrames = []string{
	"garbage {{{",
	`[]`,
	`{"type":42}`,
	`{"specVersion":"1.0","type":"EVENT","headers":{"eventType":"suite_ticket"},"data":"{\"suiteTicket\":\"garbage-ticket\"}"}`,
	`{"specVersion":"1.0","type":"EVENT","headers":{"messageId":"garbage-1","eventType":"suite_ticket"},"data":"not json"}`,
	`{"specVersion":"1.0","type":"SYSTEM","headers":{"messageId":"garbage-2","topic":"ping"},"data":123}`,
	`{"specVersion":"1.0","type":"SURPRISE","headers":{"messageId":"garbage-3"},"data":"{}"}`,
}

// oversizedFrame is a well-formed suite_ticket EVENT padded to size bytes.
func oversizedFrame(suite string, size int) []byte {
	f := ticketEvent(suite, "oversized-ticket", time.Now())
	b, _ := json.Marshal(f)
	pad := max(0, size-len(b)-len(`,"padding":""`))
	f.Data = strings.TrimSuffix(f.Data, "}") + `,"padding":"` + strings.Repeat("x", pad) + `"}`
	b, _ = json.Marshal(f)
	return b
}

// Disconnect sends SYSTEM disconnect on the suite's connections ("" every suite).
func (s *Simulator) Disconnect(suiteKey string) int {
	n, _ := s.StreamAction(StreamAction{Action: ActionDisconnect, SuiteKey: suiteKey})
	return n
}

// DropStreams cuts the suite's connections ("" every suite) without a close frame.
func (s *Simulator) DropStreams(suiteKey string) int {
	n, _ := s.StreamAction(StreamAction{Action: ActionDrop, SuiteKey: suiteKey})
	return n
}

// RefuseOpen answers the suite's connections/open ("" every suite) with 503 for d.
func (s *Simulator) RefuseOpen(suiteKey string, d time.Duration) error {
	_, err := s.StreamAction(StreamAction{Action: ActionRefuseOpen, SuiteKey: suiteKey, For: Duration(d)})
	return err
}
