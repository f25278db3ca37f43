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
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// SuiteID names a suite's stream: its suiteKey and the DingTalk API endpoint. It holds no secret.
type SuiteID struct {
	SuiteKey string
	// Endpoint is the DingTalk API base URL, as dingtalk.ValidateBaseURL returns it.
	Endpoint string
}

func (id SuiteID) String() string { return fmt.Sprintf("suite %q at %s", id.SuiteKey, id.Endpoint) }

// Name is a short stable name of the suite for logs: "suite-" and 8 hex digits of a SHA-256 of
// the suiteKey and endpoint. Logs never carry the suiteKey itself, which many treat as a credential.
func (id SuiteID) Name() string {
	sum := sha256.Sum256([]byte(id.SuiteKey + "\x00" + id.Endpoint))
	return "suite-" + hex.EncodeToString(sum[:4])
}

// Credentials open a suite's stream. SuiteSecret never appears in a String, a log or an error.
type Credentials struct {
	SuiteKey    string
	SuiteSecret string
	// Endpoint is the DingTalk API base URL; "" means dingtalk.DefaultBaseURL.
	Endpoint string
}

// ID returns the suite's identity (the endpoint normalised, "" when it is invalid).
func (c Credentials) ID() SuiteID {
	ep, _ := c.endpoint()
	return SuiteID{SuiteKey: c.SuiteKey, Endpoint: ep}
}

// String names the suite without the secret.
func (c Credentials) String() string { return c.ID().String() }

// GoString keeps %#v from printing the secret.
func (c Credentials) GoString() string { return "stream.Credentials{" + c.ID().String() + "}" }

// MarshalLog keeps structured loggers from printing the secret (or the suiteKey).
func (c Credentials) MarshalLog() any { return c.ID().Name() }

func (c Credentials) endpoint() (string, error) {
	if c.Endpoint == "" {
		return dingtalk.DefaultBaseURL, nil
	}
	return dingtalk.ValidateBaseURL(c.Endpoint)
}

// validate checks the credentials as DingTalk's client would before calling.
func (c Credentials) validate() error {
	for _, f := range []struct{ name, v string }{{"suiteKey", c.SuiteKey}, {"suiteSecret", c.SuiteSecret}} {
		if f.v == "" {
			return &dingtalk.Error{Class: dingtalk.ClassCredentialsRejected, Endpoint: dingtalk.PathOpenConnection, Reason: "missing " + f.name}
		}
	}
	_, err := c.endpoint()
	return err
}

// TicketSink stores the suite tickets DingTalk pushes. A Client acks an event only after
// StoreTicket returned nil; on an error DingTalk delivers the event again. It is called from one
// goroutine per connection, with a context that ends with the connection or after
// Options.StoreTimeout. The same ticket can arrive more than once, and an older ticket after a
// newer one (compare bornAt): storing must be idempotent and keep the newest.
type TicketSink interface {
	StoreTicket(ctx context.Context, suite SuiteID, ticket string, bornAt time.Time) error
}

// TicketSinkFunc adapts a function to TicketSink.
type TicketSinkFunc func(ctx context.Context, suite SuiteID, ticket string, bornAt time.Time) error

// StoreTicket implements TicketSink.
func (f TicketSinkFunc) StoreTicket(ctx context.Context, suite SuiteID, ticket string, bornAt time.Time) error {
	return f(ctx, suite, ticket, bornAt)
}

// Opener calls connections/open; *dingtalk.HTTPClient is one.
type Opener interface {
	OpenStreamConnection(ctx context.Context, req dingtalk.StreamOpenRequest) (dingtalk.StreamTicket, error)
}

// Phase is where a connection stands. The reconciler maps it to the TicketStream condition.
type Phase string

const (
	// Connecting: not connected yet (not started, not the leader yet, or the first attempt runs).
	Connecting Phase = "Connecting"
	// Connected: the websocket is open.
	Connected Phase = "Connected"
	// StreamUnavailable: the last attempt failed or the connection dropped; a retry is planned.
	StreamUnavailable Phase = "StreamUnavailable"
	// CredentialsRejected: connections/open refused the suiteKey or suiteSecret; retried slowly.
	CredentialsRejected Phase = "CredentialsRejected"
)

// State is a connection's phase, a short message and when the phase began. The message never
// holds a secret, a ticket or a frame's body, and changes only when the cause does (no request
// ids or retry times), so that writing it into a condition does not churn.
type State struct {
	Phase   Phase
	Message string
	Since   time.Time
}

// HolderSink stores the suite tickets a Hub's connections receive, each for the holders of the
// connection that received it, and only those: a holder whose own connection cannot authenticate
// (another suiteSecret, say a tenant guessing a suiteKey) never receives a ticket pushed on a
// connection it does not hold. suite is the suite the ticket was pushed for. The contract is
// TicketSink's: ack after a nil error, idempotent.
type HolderSink interface {
	StoreTicket(ctx context.Context, suite SuiteID, holders []types.NamespacedName, ticket string, bornAt time.Time) error
}

// HolderSinkFunc adapts a function to HolderSink.
type HolderSinkFunc func(ctx context.Context, suite SuiteID, holders []types.NamespacedName, ticket string, bornAt time.Time) error

// StoreTicket implements HolderSink.
func (f HolderSinkFunc) StoreTicket(ctx context.Context, suite SuiteID, holders []types.NamespacedName, ticket string, bornAt time.Time) error {
	return f(ctx, suite, holders, ticket, bornAt)
}
