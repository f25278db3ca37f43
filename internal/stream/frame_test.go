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
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

const ticketFrame = `{"specVersion":"1.0","type":"EVENT","headers":{"topic":"*","messageId":"m-1","contentType":"application/json",` +
	`"time":"1764072000500","eventType":"suite_ticket","eventId":"e-1","eventBornTime":"1764072000000"},` +
	`"data":"{\"suiteTicket\":\"t-secret\",\"syncAction\":\"suite_ticket\"}"}`

func TestParseFrame(t *testing.T) {
	tests := map[string]struct {
		in     string // the frame
		err    error  // expected error, nil for success
		kind   string // expected metric kind
		ticket string // expected suiteTicket ("" when none is expected)
	}{
		"suite_ticket":           {in: ticketFrame, kind: metrics.StreamEventSuiteTicket, ticket: "t-secret"},
		"ping":                   {in: `{"type":"SYSTEM","headers":{"topic":"ping","messageId":"p"},"data":"{\"opaque\":\"x\"}"}`, kind: metrics.StreamEventPing},
		"disconnect":             {in: `{"type":"SYSTEM","headers":{"topic":"disconnect","messageId":"d"},"data":"{}"}`, kind: metrics.StreamEventDisconnect},
		"other system topic":     {in: `{"type":"SYSTEM","headers":{"topic":"KEEPALIVE","messageId":"k"}}`, kind: metrics.StreamEventSystem},
		"other event":            {in: `{"type":"EVENT","headers":{"eventType":"user_add_org","messageId":"o"},"data":"{}"}`, kind: metrics.StreamEventOther},
		"callback":               {in: `{"type":"CALLBACK","headers":{"topic":"/v1.0/im/bot/messages/get","messageId":"c"},"data":"{}"}`, kind: metrics.StreamEventCallback},
		"numeric headers":        {in: `{"type":"EVENT","headers":{"messageId":12,"eventType":"suite_ticket","eventBornTime":1764072000000},"data":"{\"suiteTicket\":\"n\"}"}`, kind: metrics.StreamEventSuiteTicket, ticket: "n"},
		"null header":            {in: `{"type":"SYSTEM","headers":{"topic":null,"messageId":"n"}}`, kind: metrics.StreamEventSystem},
		"leading space":          {in: "  \n" + ticketFrame, kind: metrics.StreamEventSuiteTicket, ticket: "t-secret"},
		"empty":                  {in: ``, err: errNotObject},
		"not JSON":               {in: `garbage {{{`, err: errNotObject},
		"array":                  {in: `[]`, err: errNotObject},
		"truncated":              {in: ticketFrame[:40], err: errMalformed},
		"type is a number":       {in: `{"type":42,"headers":{"messageId":"x"}}`, err: errMalformed},
		"data is a number":       {in: `{"type":"SYSTEM","headers":{"messageId":"x","topic":"ping"},"data":123}`, err: errMalformed},
		"header is an object":    {in: `{"type":"SYSTEM","headers":{"messageId":{"a":1}}}`, err: errMalformed},
		"unknown type":           {in: `{"type":"SURPRISE","headers":{"messageId":"x"}}`, err: errFrameType},
		"no type":                {in: `{"headers":{"messageId":"x"}}`, err: errFrameType},
		"no messageId":           {in: `{"type":"EVENT","headers":{"eventType":"suite_ticket"},"data":"{\"suiteTicket\":\"x\"}"}`, err: errNoMessageID},
		"messageId too long":     {in: `{"type":"EVENT","headers":{"messageId":"` + strings.Repeat("m", 257) + `"}}`, err: errNoMessageID},
		"ticket data not JSON":   {in: `{"type":"EVENT","headers":{"messageId":"x","eventType":"suite_ticket"},"data":"not json"}`, kind: metrics.StreamEventSuiteTicket},
		"ticket missing in data": {in: `{"type":"EVENT","headers":{"messageId":"x","eventType":"suite_ticket"},"data":"{}"}`, kind: metrics.StreamEventSuiteTicket},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f, err := ParseFrame([]byte(tc.in))
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParseFrame: %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if got := f.kind(); got != tc.kind {
				t.Errorf("kind %q, want %q", got, tc.kind)
			}
			ticket, terr := parseSuiteTicket(f.Data)
			if tc.ticket != "" && (terr != nil || ticket != tc.ticket) {
				t.Errorf("ticket: %v", terr)
			}
			if tc.ticket == "" && tc.kind == metrics.StreamEventSuiteTicket && terr == nil {
				t.Errorf("a ticket was read from %q", f.Data)
			}
		})
	}
}

func TestBornAt(t *testing.T) {
	received := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		h    Headers   // the frame's headers
		want time.Time // expected bornAt
	}{
		"eventBornTime":           {h: Headers{EventBornTime: "1764072000000", Time: "1764072000500"}, want: time.UnixMilli(1764072000000)},
		"time header as fallback": {h: Headers{Time: "1764072000500"}, want: time.UnixMilli(1764072000500)},
		"garbage falls back":      {h: Headers{EventBornTime: "yesterday", Time: "-5"}, want: received},
		"none":                    {want: received},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := (Frame{Headers: tc.h}).bornAt(received); !got.Equal(tc.want) {
				t.Errorf("bornAt = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReplies(t *testing.T) {
	var r reply
	if err := json.Unmarshal(encodeAck("m-1", statusSuccess), &r); err != nil || r.Code != 200 || r.Message != "OK" ||
		r.Headers["messageId"] != "m-1" || r.Headers["contentType"] != "application/json" || r.Data != `{"status":"SUCCESS"}` {
		t.Errorf("ack: %+v, %v", r, err)
	}
	if err := json.Unmarshal(encodeReply("p-1", `{"opaque":"o\"x"}`), &r); err != nil || r.Data != `{"opaque":"o\"x"}` {
		t.Errorf("ping answer: %+v, %v", r, err)
	}
}

// parseErrors are ParseFrame's and parseSuiteTicket's only errors: fixed texts.
var parseErrors = []error{errNotObject, errMalformed, errFrameType, errNoMessageID, errTicketMissing, errTicketNotJSON, errTicketMismatch}

// FuzzParseFrame feeds arbitrary bytes to the frame parser. It must not panic; a frame it accepts
// has a known type and a messageId and survives a round trip; its errors are the fixed ones.
// Seeds: testdata/fuzz/FuzzParseFrame.
func FuzzParseFrame(f *testing.F) {
	f.Add([]byte(ticketFrame))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err != nil {
			known := false
			for _, e := range parseErrors {
				known = known || err == e
			}
			if !known {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if fr.Headers.MessageID == "" {
			t.Fatal("accepted a frame without a messageId")
		}
		switch fr.Type {
		case TypeSystem, TypeEvent, TypeCallback:
		default:
			t.Fatalf("accepted type %q", fr.Type)
		}
		again, err := ParseFrame(reencode(fr))
		if err != nil || again != fr {
			t.Fatalf("round trip: %+v, %v; was %+v", again, err, fr)
		}
		if _, err := parseSuiteTicket(fr.Data); err != nil {
			known := false
			for _, e := range parseErrors {
				known = known || err == e
			}
			if !known {
				t.Fatalf("unexpected ticket error %v", err)
			}
		}
		_ = fr.kind()
		_ = fr.bornAt(time.Now())
	})
}

// reencode writes fr back in the gateway's format.
func reencode(fr Frame) []byte {
	b, _ := json.Marshal(map[string]any{
		"specVersion": fr.SpecVersion, "type": fr.Type, "data": fr.Data,
		"headers": map[string]string{
			"topic": fr.Headers.Topic, "messageId": fr.Headers.MessageID, "contentType": fr.Headers.ContentType,
			"time": fr.Headers.Time, "eventType": fr.Headers.EventType, "eventId": fr.Headers.EventID,
			"eventBornTime": fr.Headers.EventBornTime,
		},
	})
	return b
}
