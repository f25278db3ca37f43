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

package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The values of dingtalk_stream_events_total's type label: a fixed set, whatever DingTalk sends.
const (
	StreamEventSuiteTicket = "suite_ticket" // EVENT of eventType suite_ticket
	StreamEventOther       = "event"        // EVENT of another eventType (not handled: LATER or SUCCESS)
	StreamEventCallback    = "callback"     // CALLBACK frame (not handled: LATER or SUCCESS)
	StreamEventPing        = "ping"         // SYSTEM ping (answered)
	StreamEventDisconnect  = "disconnect"   // SYSTEM disconnect (reconnects)
	StreamEventSystem      = "system"       // SYSTEM frame of another topic (ignored)
	StreamEventInvalid     = "invalid"      // not a gateway frame, or a suite_ticket without a ticket (dropped)
	StreamEventOversized   = "oversized"    // larger than the frame size cap (dropped)
)

// The values of dingtalk_stream_events_total's outcome label: what the operator did with a frame.
const (
	// StreamOutcomeStored: a suite ticket stored, then acked SUCCESS.
	StreamOutcomeStored = "stored"
	// StreamOutcomeRedeliver: left for DingTalk to deliver again, to this or another connection of
	// the app: answered LATER (an event the operator does not handle, by default; a ticket it
	// could not store), or not answered (a ticket that found the queue full or the connection gone).
	StreamOutcomeRedeliver = "redeliver"
	// StreamOutcomeAcknowledged: answered without being stored: an event the operator does not
	// handle acked SUCCESS (--stream-unhandled-events=acknowledge), a ping answered, a disconnect
	// acted on.
	StreamOutcomeAcknowledged = "acknowledged"
	// StreamOutcomeDropped: not answered nor acted on: invalid or oversized frames, other SYSTEM
	// topics.
	StreamOutcomeDropped = "dropped"
)

var (
	// StreamConnections is the number of DingTalk Stream websocket connections open now.
	StreamConnections = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dingtalk_stream_connections",
		Help: "DingTalk Stream mode websocket connections open now (one per suite in use, on the leader).",
	})

	// StreamEvents counts the frames received from DingTalk Stream by kind and outcome.
	StreamEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dingtalk_stream_events_total",
		Help: "Frames received from DingTalk Stream mode by type (suite_ticket, event, callback, ping, disconnect, system, invalid, oversized) " +
			"and outcome (stored, redeliver, acknowledged, dropped).",
	}, []string{"type", "outcome"})
)

// StreamEvent counts one frame of kind with its outcome.
func StreamEvent(kind, outcome string) { StreamEvents.WithLabelValues(kind, outcome).Inc() }

func init() {
	metrics.Registry.MustRegister(StreamConnections, StreamEvents)
}
