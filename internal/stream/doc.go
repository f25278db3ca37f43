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

// Package stream receives suite tickets from DingTalk Stream mode: a small client of DingTalk's
// websocket gateway (Client) and a manager-level pool that keeps one connection per suite (Hub).
//
// # Protocol
//
// A Client opens a connection with POST {endpoint}/v1.0/gateway/connections/open (clientId =
// suiteKey, clientSecret = suiteSecret, one subscription {EVENT, *}) through internal/dingtalk,
// which validates the endpoint (https, or http on loopback), never follows redirects, caps the
// answer and classifies errors. It dials the answered websocket endpoint (wss; ws only on a
// loopback host, and only when the API endpoint is plain http on loopback too) with the one-time
// ticket and then reads JSON frames of at most Options.MaxFrameBytes:
//
//   - SYSTEM ping: answered at once, echoing the frame's data;
//   - SYSTEM disconnect: the connection is closed and reopened;
//   - EVENT suite_ticket: handed to the TicketSink, then acked {"status":"SUCCESS"}; when the
//     sink fails it is answered LATER, so DingTalk delivers it again;
//   - other EVENTs and CALLBACKs (events the operator does not handle): answered LATER by
//     default (Options.UnhandledEvents RedeliverUnhandled), so that DingTalk delivers them again,
//     to another Stream client of the app with luck (the vendor's own backend: DingTalk gives
//     each push to one of the app's connections at random); SUCCESS with AcknowledgeUnhandled,
//     when the operator is the app's only Stream client;
//   - oversized frames, frames that are not gateway frames, binary frames: dropped and counted.
//
// Any drop reconnects after a backoff of 1 s doubling to 60 s with jitter (DefaultBackoff); a
// connection that stayed up for Options.StableAfter starts the backoff again from 1 s. Refused
// credentials (dingtalk.ClassCredentialsRejected) are retried every Options.CredentialsRetry.
//
// # The budget of new connections
//
// Opening a connection is a DingTalk call, and a holder whose suiteSecret changed needs a new
// connection. A Hub's new connections make their first connections/open call only when its open
// budget allows (budget.go): at most one per ChangeInterval (10 s) per holder, whatever suiteKey
// it names; at most one per ChangeInterval per suite and namespace (of the holder that created
// the connection), whatever suiteSecret; and after a refusal of the suite's credentials in that
// namespace, 1 s doubling to 60 s (RefusedBackoffBase, RefusedBackoffCap), which a new
// suiteSecret does not reset and an accepted open does. A held connection's State is Connecting
// with a "held: ..." message. The budget is per namespace so that a tenant guessing another's
// suiteKey delays only its own connections.
// Nothing here logs, returns in an error or puts in a State message a suiteSecret, a ticket or a
// frame's body.
//
// # The seam with the reconciler
//
// The reconciler never sees frames. It holds one *Hub, added to the manager (mgr.Add): the Hub is
// a leader-election runnable, so only the leader connects and a new leader reconnects.
//
//   - For each DingTalkToken of type ThirdPartyApp or ThirdPartySuite with
//     spec.suiteTicket.source Stream, every pass calls Hub.Acquire(holder, Credentials{SuiteKey,
//     SuiteSecret, Endpoint}) with the token's namespace/name as holder. Acquire is idempotent
//     per holder; when the holder's credentials change it moves to the new connection.
//   - When the token is deleted or leaves Stream mode, it calls Hub.Release(holder). The last
//     holder of a connection closes it.
//   - Hub.State(holder) gives the connection's State for the TicketStream condition: Connected
//     (True), StreamUnavailable or CredentialsRejected (False), Connecting (not connected yet).
//     HubOptions.OnState reports every change with the holders to enqueue.
//   - The HolderSink given to NewHub receives each pushed ticket with the holders of the
//     connection that received it, and only those (a holder with the same suiteKey but another
//     suiteSecret has a connection of its own, which never authenticates). The sink writes the
//     ticket (keeping the newest by bornAt) into each one's Secret and enqueues them, and
//     returns an error if any write failed, so that DingTalk redelivers. Duplicates arrive (after
//     a lost ack, or by DingTalk's choice): storing must be idempotent.
//
// Metrics (internal/metrics): dingtalk_stream_connections and dingtalk_stream_events_total{type,
// outcome}: stored, redeliver (answered LATER or left unanswered), acknowledged, dropped.
package stream
