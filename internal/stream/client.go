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

package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

// Defaults of Options.
const (
	DefaultCredentialsRetry = 5 * time.Minute
	DefaultStableAfter      = time.Minute
	DefaultMaxFrameBytes    = 64 << 10
	DefaultKeepAlive        = 30 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultStoreTimeout     = 30 * time.Second
	DefaultEventQueue       = 16
	DefaultUA               = "dingtalk-token-operator"

	// writeTimeout bounds one frame write.
	writeTimeout = 10 * time.Second
)

// DefaultBackoff is the reconnect backoff: 1 s doubling to 60 s, each delay up to 20 % longer
// (jitter) but never above 60 s.
func DefaultBackoff() wait.Backoff {
	return wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: time.Minute}
}

// Options configure a Client. Zero values take the defaults.
type Options struct {
	// Opener calls connections/open. Default: a dingtalk.HTTPClient for the credentials' endpoint.
	Opener Opener
	// Dialer dials the websocket. Default: HTTPS_PROXY from the environment, DefaultHandshakeTimeout.
	Dialer *websocket.Dialer
	// Clock times the waits between attempts and State.Since. Default the real clock.
	Clock clock.WithTicker
	// Backoff paces reconnects; Steps <= 0 means DefaultBackoff.
	Backoff wait.Backoff
	// CredentialsRetry is the wait after connections/open refused the credentials.
	CredentialsRetry time.Duration
	// StableAfter: a connection up this long resets the backoff, and an orderly disconnect after
	// it reconnects at once.
	StableAfter time.Duration
	// MaxFrameBytes caps a frame; a larger one is read to its end, dropped and counted.
	MaxFrameBytes int64
	// KeepAlive is the interval of websocket pings; a connection that receives nothing (no frame,
	// no pong) for 3 intervals is dropped.
	KeepAlive time.Duration
	// StoreTimeout bounds one TicketSink call.
	StoreTimeout time.Duration
	// EventQueue is how many suite_ticket events may wait for the sink; more are dropped unacked.
	EventQueue int
	// UA and LocalIP are sent to connections/open. Defaults DefaultUA and the first non-loopback
	// address of the host.
	UA, LocalIP string
	// Logger receives transitions at Info and attempts at V(1). Default: discard.
	Logger logr.Logger
	// OnState is called after each change of State, from the client's goroutine; it must not block.
	OnState func(SuiteID, State)
	// UnhandledEvents is the answer to the events the client does not handle (every EVENT but
	// suite_ticket, and CALLBACKs). Default RedeliverUnhandled.
	UnhandledEvents UnhandledEvents

	// firstOpen, set by a Hub, waits until its open budget lets the client make its first
	// connections/open call (false: ctx ended); opened, set by a Hub, learns every open's outcome.
	firstOpen func(ctx context.Context) bool
	opened    func(err error)
}

func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Backoff.Steps <= 0 {
		o.Backoff = DefaultBackoff()
	}
	setDuration := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDuration(&o.CredentialsRetry, DefaultCredentialsRetry)
	setDuration(&o.StableAfter, DefaultStableAfter)
	setDuration(&o.KeepAlive, DefaultKeepAlive)
	setDuration(&o.StoreTimeout, DefaultStoreTimeout)
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if o.EventQueue <= 0 {
		o.EventQueue = DefaultEventQueue
	}
	if o.Dialer == nil {
		o.Dialer = &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: DefaultHandshakeTimeout}
	}
	if o.UA == "" {
		o.UA = DefaultUA
	}
	if o.LocalIP == "" {
		o.LocalIP = localIP()
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	if o.UnhandledEvents == "" {
		o.UnhandledEvents = RedeliverUnhandled
	}
	return o
}

// UnhandledEvents is what a client answers to the events it does not handle.
type UnhandledEvents string

const (
	// RedeliverUnhandled answers LATER, so that DingTalk delivers the event again, to another
	// connection of the app with luck: for a suite whose own backend consumes the Stream too.
	RedeliverUnhandled UnhandledEvents = "redeliver"
	// AcknowledgeUnhandled answers SUCCESS: for a suite whose only consumer is the operator.
	AcknowledgeUnhandled UnhandledEvents = "acknowledge"
)

// ParseUnhandledEvents reads the value of --stream-unhandled-events.
func ParseUnhandledEvents(v string) (UnhandledEvents, error) {
	switch u := UnhandledEvents(v); u {
	case RedeliverUnhandled, AcknowledgeUnhandled:
		return u, nil
	}
	return "", fmt.Errorf("%q is neither %s nor %s", v, RedeliverUnhandled, AcknowledgeUnhandled)
}

// Client keeps one suite's stream connection: it connects, reconnects with backoff and hands
// suite tickets to its TicketSink. Run it with Run; read its State from any goroutine.
type Client struct {
	creds Credentials
	id    SuiteID
	sink  TicketSink
	opts  Options
	log   logr.Logger

	mu    sync.Mutex
	state State
}

// NewClient returns a client for creds that stores tickets with sink. It fails when a credential
// is empty (dingtalk.ClassCredentialsRejected) or the endpoint is invalid.
func NewClient(creds Credentials, sink TicketSink, opts Options) (*Client, error) {
	if err := creds.validate(); err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, errors.New("stream: a TicketSink is required")
	}
	opts = opts.withDefaults()
	if _, err := ParseUnhandledEvents(string(opts.UnhandledEvents)); err != nil {
		return nil, fmt.Errorf("stream: Options.UnhandledEvents: %w", err)
	}
	id := creds.ID()
	if opts.Opener == nil {
		dt, err := dingtalk.New(dingtalk.Options{BaseURL: id.Endpoint})
		if err != nil {
			return nil, err
		}
		opts.Opener = dt
	}
	return &Client{
		creds: creds, id: id, sink: sink, opts: opts,
		log:   opts.Logger.WithValues("suite", id.Name()),
		state: State{Phase: Connecting, Message: "not connected yet", Since: opts.Clock.Now()},
	}, nil
}

// ID returns the suite the client connects for.
func (c *Client) ID() SuiteID { return c.id }

// State returns the connection's current state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// setState records a new phase or message and reports it; Since moves only with the phase.
func (c *Client) setState(phase Phase, msg string) {
	c.mu.Lock()
	old := c.state
	if old.Phase == phase && old.Message == msg {
		c.mu.Unlock()
		return
	}
	c.state = State{Phase: phase, Message: msg, Since: old.Since}
	if old.Phase != phase {
		c.state.Since = c.opts.Clock.Now()
	}
	st := c.state
	c.mu.Unlock()
	if old.Phase != phase {
		c.log.Info("DingTalk stream state changed", "phase", phase, "message", msg)
	}
	if c.opts.OnState != nil {
		c.opts.OnState(c.id, st)
	}
}

// Run connects and keeps the connection until ctx ends, reconnecting after each drop. It returns
// when ctx ends and the connection is closed.
func (c *Client) Run(ctx context.Context) {
	if c.opts.firstOpen != nil && !c.opts.firstOpen(ctx) {
		return
	}
	b := c.opts.Backoff
	for ctx.Err() == nil {
		end := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		delay := nextDelay(end, &b, c.opts)
		switch {
		case dingtalk.ClassOf(end.err) == dingtalk.ClassCredentialsRejected:
			c.setState(CredentialsRejected, end.message())
		case end.disconnect && delay == 0:
			// An orderly hand-over: stay Connected unless the reconnect fails.
		default:
			c.setState(StreamUnavailable, end.message())
		}
		c.log.V(1).Info("Reconnecting to the DingTalk stream", "reason", end.message(), "after", delay)
		if !c.sleep(ctx, delay) {
			return
		}
	}
}

// sleep waits d on the client's clock; false when ctx ended first.
func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := c.opts.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// sessionEnd is how one connection attempt ended.
type sessionEnd struct {
	// err is why; classified with dingtalk.ClassOf. A *dingtalk.Error from connections/open, or
	// an errStream with a fixed text.
	err error
	// connected is how long the websocket was open (0: it never opened).
	connected time.Duration
	// disconnect: DingTalk asked for a reconnect (SYSTEM disconnect).
	disconnect bool
}

// message is the State message for the end: a fixed text, or the open call's class, status and
// code (never its request id, which changes on every attempt).
func (e sessionEnd) message() string {
	var de *dingtalk.Error
	if errors.As(e.err, &de) {
		msg := fmt.Sprintf("connections/open failed: %s", de.Class)
		if de.HTTPStatus != 0 {
			msg += fmt.Sprintf(" (HTTP %d", de.HTTPStatus)
			if de.Code != "" {
				msg += ", code " + de.Code
			}
			msg += ")"
		}
		if de.Reason != "" {
			msg += ": " + de.Reason
		}
		return msg
	}
	if e.err == nil {
		return "connection closed"
	}
	return e.err.Error()
}

// errStream is a connection failure with a fixed description (never a library's error text,
// which could hold the dialled URL and so the ticket).
type errStream string

func (e errStream) Error() string { return string(e) }

const (
	errEndpoint     errStream = "the stream endpoint answered by connections/open is not wss (ws only on loopback with a plain-http loopback API endpoint)"
	errDial         errStream = "connecting to the stream endpoint failed"
	errLost         errStream = "the stream connection was lost"
	errTimeout      errStream = "the stream connection went silent (no frame or pong)"
	errDisconnected errStream = "DingTalk asked for a reconnect"
)

// nextDelay is the wait before the next attempt after end; it may reset or step b.
func nextDelay(end sessionEnd, b *wait.Backoff, o Options) time.Duration {
	stable := end.connected >= o.StableAfter
	if stable {
		*b = o.Backoff
	}
	switch {
	case dingtalk.ClassOf(end.err) == dingtalk.ClassCredentialsRejected:
		return o.CredentialsRetry
	case end.disconnect && stable:
		return 0
	}
	d := b.Step()
	if o.Backoff.Cap > 0 {
		d = min(d, o.Backoff.Cap)
	}
	return max(d, dingtalk.RetryAfterOf(end.err))
}

// session opens one connection and serves it until it ends.
func (c *Client) session(ctx context.Context) sessionEnd {
	conn, err := c.connect(ctx)
	if err != nil {
		return sessionEnd{err: err}
	}
	metrics.StreamConnections.Inc()
	defer metrics.StreamConnections.Dec()
	start := c.opts.Clock.Now()
	c.setState(Connected, "connected")

	s := &session{c: c, conn: conn, events: make(chan event, c.opts.EventQueue)}
	err = s.serve(ctx)
	return sessionEnd{err: err, connected: c.opts.Clock.Since(start), disconnect: errors.Is(err, errDisconnected)}
}

// connect calls connections/open and dials the answered endpoint with the ticket.
func (c *Client) connect(ctx context.Context) (*websocket.Conn, error) {
	st, err := c.opts.Opener.OpenStreamConnection(ctx, dingtalk.StreamOpenRequest{
		ClientID: c.creds.SuiteKey, ClientSecret: c.creds.SuiteSecret,
		Subscriptions: []dingtalk.StreamSubscription{{Type: TypeEvent, Topic: "*"}},
		UA:            c.opts.UA, LocalIP: c.opts.LocalIP,
	})
	if c.opts.opened != nil {
		c.opts.opened(err)
	}
	if err != nil {
		return nil, err
	}
	endpoint, err := c.streamURL(st.Endpoint)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(endpoint) // valid: just validated
	q := u.Query()
	q.Set("ticket", st.Ticket)
	u.RawQuery = q.Encode()
	conn, resp, err := c.opts.Dialer.DialContext(ctx, u.String(), http.Header{"User-Agent": {c.opts.UA}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, errStream(fmt.Sprintf("%s (HTTP %d)", errDial, resp.StatusCode))
		}
		return nil, errDial
	}
	return conn, nil
}

// streamURL checks the websocket endpoint connections/open answered: wss, or ws on a loopback
// host only when the API endpoint itself is plain http on loopback (the simulator). An API
// endpoint over https never hands the ticket to an unencrypted connection, wherever it points.
func (c *Client) streamURL(raw string) (string, error) {
	endpoint, err := dingtalk.ValidateStreamURL(raw)
	if err != nil {
		return "", errEndpoint
	}
	if strings.HasPrefix(endpoint, "ws:") && !strings.HasPrefix(c.id.Endpoint, "http:") {
		return "", errEndpoint
	}
	return endpoint, nil
}

// event is a suite ticket waiting for the sink.
type event struct {
	messageID string
	ticket    string
	bornAt    time.Time
}

// session is one open connection: a reader (the caller's goroutine), a sink worker and a keepalive.
type session struct {
	c       *Client
	conn    *websocket.Conn
	writeMu sync.Mutex
	events  chan event
}

// serve reads frames until the connection ends or ctx ends; it returns why it ended.
func (s *session) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	defer func() { _ = s.conn.Close() }()

	readTimeout := 3 * s.c.opts.KeepAlive
	s.conn.SetPongHandler(func(string) error { return s.conn.SetReadDeadline(time.Now().Add(readTimeout)) })
	wg.Add(3)
	go func() { defer wg.Done(); s.closeWhenDone(ctx) }()
	go func() { defer wg.Done(); s.keepAlive(ctx) }()
	go func() { defer wg.Done(); s.store(ctx) }()

	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(readTimeout))
		data, err := s.next()
		var ne net.Error
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &ne) && ne.Timeout():
			return errTimeout
		case err != nil:
			return errLost
		case data == nil:
			continue // dropped
		}
		if err := s.handle(data); err != nil {
			return err
		}
	}
}

// next reads one frame: nil data (and no error) for a frame that was dropped.
func (s *session) next() ([]byte, error) {
	kind, r, err := s.conn.NextReader()
	if err != nil {
		return nil, err
	}
	limit := s.c.opts.MaxFrameBytes
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		// Read the rest without keeping it: the connection stays usable.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, err
		}
		metrics.StreamEvent(metrics.StreamEventOversized, metrics.StreamOutcomeDropped)
		s.c.log.Info("Dropped an oversized DingTalk stream frame", "limitBytes", limit)
		return nil, nil
	}
	if kind != websocket.TextMessage {
		metrics.StreamEvent(metrics.StreamEventInvalid, metrics.StreamOutcomeDropped)
		s.c.log.V(1).Info("Dropped a binary DingTalk stream frame")
		return nil, nil
	}
	return data, nil
}

// handle acts on one frame; an error ends the connection.
func (s *session) handle(data []byte) error {
	f, err := ParseFrame(data)
	if err != nil {
		metrics.StreamEvent(metrics.StreamEventInvalid, metrics.StreamOutcomeDropped)
		s.c.log.V(1).Info("Dropped an invalid DingTalk stream frame", "reason", err.Error())
		return nil
	}
	kind := f.kind()
	switch kind {
	case metrics.StreamEventPing:
		metrics.StreamEvent(kind, metrics.StreamOutcomeAcknowledged)
		return s.write(encodeReply(f.Headers.MessageID, f.Data))
	case metrics.StreamEventDisconnect:
		metrics.StreamEvent(kind, metrics.StreamOutcomeAcknowledged)
		return errDisconnected
	case metrics.StreamEventSuiteTicket:
		return s.queueTicket(f)
	case metrics.StreamEventOther, metrics.StreamEventCallback:
		return s.answerUnhandled(kind, f)
	default:
		metrics.StreamEvent(kind, metrics.StreamOutcomeDropped)
		return nil
	}
}

// answerUnhandled answers an event (or callback) the operator does not handle: LATER by default,
// so that DingTalk delivers it again, to another connection of the app with luck (the vendor's
// own backend, which DingTalk picks at random among the app's connections); SUCCESS when the
// operator is the app's only consumer (Options.UnhandledEvents Acknowledge).
func (s *session) answerUnhandled(kind string, f Frame) error {
	status, outcome := statusLater, metrics.StreamOutcomeRedeliver
	if s.c.opts.UnhandledEvents == AcknowledgeUnhandled {
		status, outcome = statusSuccess, metrics.StreamOutcomeAcknowledged
	}
	metrics.StreamEvent(kind, outcome)
	s.c.log.V(1).Info("Answered a DingTalk stream event the operator does not handle", "kind", kind, "status", status)
	return s.write(encodeAck(f.Headers.MessageID, status))
}

// queueTicket hands a suite_ticket event to the sink worker. An event without a ticket, or one
// that finds the queue full, is left unacked: DingTalk delivers it again.
func (s *session) queueTicket(f Frame) error {
	ticket, err := parseSuiteTicket(f.Data)
	if err != nil {
		metrics.StreamEvent(metrics.StreamEventInvalid, metrics.StreamOutcomeDropped)
		s.c.log.Info("Dropped a suite_ticket event without a usable ticket", "reason", err.Error())
		return nil
	}
	select {
	case s.events <- event{messageID: f.Headers.MessageID, ticket: ticket, bornAt: f.bornAt(s.c.opts.Clock.Now())}:
	default:
		metrics.StreamEvent(metrics.StreamEventSuiteTicket, metrics.StreamOutcomeRedeliver)
		s.c.log.Info("Dropped a suite_ticket event: the sink is behind; DingTalk will deliver it again")
	}
	return nil
}

// store hands queued tickets to the sink, then acks SUCCESS, or LATER when the sink failed.
func (s *session) store(ctx context.Context) {
	for {
		var ev event
		select {
		case <-ctx.Done():
			// The tickets still queued are left unanswered: DingTalk redelivers them.
			for range len(s.events) {
				metrics.StreamEvent(metrics.StreamEventSuiteTicket, metrics.StreamOutcomeRedeliver)
			}
			return
		case ev = <-s.events:
		}
		sctx, cancel := context.WithTimeout(ctx, s.c.opts.StoreTimeout)
		err := s.c.sink.StoreTicket(sctx, s.c.id, ev.ticket, ev.bornAt)
		cancel()
		status, outcome := statusSuccess, metrics.StreamOutcomeStored
		if err != nil {
			status, outcome = statusLater, metrics.StreamOutcomeRedeliver
			s.c.log.Error(err, "Storing a pushed suite ticket failed; asked DingTalk to deliver it again")
		} else {
			s.c.log.V(1).Info("Stored a pushed suite ticket", "bornAt", ev.bornAt)
		}
		if ctx.Err() != nil {
			// The connection is gone before the ack: DingTalk redelivers the event.
			metrics.StreamEvent(metrics.StreamEventSuiteTicket, metrics.StreamOutcomeRedeliver)
			return
		}
		metrics.StreamEvent(metrics.StreamEventSuiteTicket, outcome)
		_ = s.write(encodeAck(ev.messageID, status))
	}
}

// keepAlive sends websocket pings; their pongs keep the read deadline moving.
func (s *session) keepAlive(ctx context.Context) {
	t := time.NewTicker(s.c.opts.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout))
		}
	}
}

// closeWhenDone closes the connection when ctx ends, which unblocks the reader.
func (s *session) closeWhenDone(ctx context.Context) {
	<-ctx.Done()
	_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
	_ = s.conn.Close()
}

// write sends one text frame; a failed write ends the connection (the reader sees it closed).
func (s *session) write(b []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := s.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return errLost
	}
	return nil
}

// localIP returns the host's first non-loopback unicast address, or "".
func localIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.IsGlobalUnicast() {
			return ipn.IP.String()
		}
	}
	return ""
}
