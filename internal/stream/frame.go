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
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

// Frame types and the SYSTEM topics and event type the client acts on.
const (
	TypeSystem   = "SYSTEM"
	TypeEvent    = "EVENT"
	TypeCallback = "CALLBACK"

	TopicPing       = "ping"
	TopicDisconnect = "disconnect"

	EventSuiteTicket = "suite_ticket"
)

// Limits on what a frame may carry.
const (
	maxMessageIDLength = 256
	maxTicketLength    = 1024
)

// Frame is a gateway frame: {"specVersion","type","headers":{...},"data":"<JSON string>"}.
type Frame struct {
	SpecVersion string
	Type        string
	Headers     Headers
	// Data is the frame's payload (for an EVENT, the event's JSON). It may hold a ticket: it is
	// never logged.
	Data string
}

// Headers are the frame headers the client reads. DingTalk sends strings; numbers are accepted.
type Headers struct {
	Topic         string
	MessageID     string
	ContentType   string
	Time          string
	EventType     string
	EventID       string
	EventBornTime string
}

// The errors of ParseFrame and parseSuiteTicket: fixed texts that never echo the input.
var (
	errNotObject      = errors.New("frame is not a JSON object")
	errMalformed      = errors.New("frame is malformed JSON or has fields of the wrong type")
	errFrameType      = errors.New("frame type is not SYSTEM, EVENT or CALLBACK")
	errNoMessageID    = errors.New("frame has no messageId, or one too long")
	errTicketMissing  = errors.New("suite_ticket event carries no suiteTicket, or one too long")
	errTicketNotJSON  = errors.New("suite_ticket event data is not a JSON object")
	errTicketMismatch = errors.New("suite_ticket event data has fields of the wrong type")
)

// scalar is a header value: a JSON string, or a number kept as its text.
type scalar string

func (s *scalar) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = scalar(v)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*s = scalar(n.String())
	return nil
}

type wireHeaders struct {
	Topic         scalar `json:"topic"`
	MessageID     scalar `json:"messageId"`
	ContentType   scalar `json:"contentType"`
	Time          scalar `json:"time"`
	EventType     scalar `json:"eventType"`
	EventID       scalar `json:"eventId"`
	EventBornTime scalar `json:"eventBornTime"`
}

type wireFrame struct {
	SpecVersion scalar      `json:"specVersion"`
	Type        string      `json:"type"`
	Headers     wireHeaders `json:"headers"`
	Data        *string     `json:"data"`
}

// ParseFrame reads one gateway frame. It fails (with an error that never holds the input) on
// anything but a JSON object of type SYSTEM, EVENT or CALLBACK with a messageId, header values
// that are strings or numbers, and a data that is a string (or absent).
func ParseFrame(b []byte) (Frame, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return Frame{}, errNotObject
	}
	var w wireFrame
	if err := json.Unmarshal(b, &w); err != nil {
		return Frame{}, errMalformed
	}
	switch w.Type {
	case TypeSystem, TypeEvent, TypeCallback:
	default:
		return Frame{}, errFrameType
	}
	if w.Headers.MessageID == "" || len(w.Headers.MessageID) > maxMessageIDLength {
		return Frame{}, errNoMessageID
	}
	f := Frame{SpecVersion: string(w.SpecVersion), Type: w.Type, Headers: Headers{
		Topic: string(w.Headers.Topic), MessageID: string(w.Headers.MessageID), ContentType: string(w.Headers.ContentType),
		Time: string(w.Headers.Time), EventType: string(w.Headers.EventType), EventID: string(w.Headers.EventID),
		EventBornTime: string(w.Headers.EventBornTime),
	}}
	if w.Data != nil {
		f.Data = *w.Data
	}
	return f, nil
}

// kind is the frame's dingtalk_stream_events_total type label.
func (f Frame) kind() string {
	switch {
	case f.Type == TypeSystem && f.Headers.Topic == TopicPing:
		return metrics.StreamEventPing
	case f.Type == TypeSystem && f.Headers.Topic == TopicDisconnect:
		return metrics.StreamEventDisconnect
	case f.Type == TypeSystem:
		return metrics.StreamEventSystem
	case f.Type == TypeEvent && f.Headers.EventType == EventSuiteTicket:
		return metrics.StreamEventSuiteTicket
	case f.Type == TypeEvent:
		return metrics.StreamEventOther
	default:
		return metrics.StreamEventCallback
	}
}

// parseSuiteTicket reads the ticket of a suite_ticket event's data, {"suiteTicket": "..."}.
func parseSuiteTicket(data string) (string, error) {
	b := bytes.TrimSpace([]byte(data))
	if len(b) == 0 || b[0] != '{' {
		return "", errTicketNotJSON
	}
	var d struct {
		SuiteTicket string `json:"suiteTicket"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return "", errTicketMismatch
	}
	if d.SuiteTicket == "" || len(d.SuiteTicket) > maxTicketLength {
		return "", errTicketMissing
	}
	return d.SuiteTicket, nil
}

// bornAt is when DingTalk created the event: eventBornTime (Unix milliseconds), else the frame's
// time header, else received.
func (f Frame) bornAt(received time.Time) time.Time {
	for _, v := range []string{f.Headers.EventBornTime, f.Headers.Time} {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
			return time.UnixMilli(ms)
		}
	}
	return received
}

// reply is the client's answer to a frame: an ack of an event or the answer to a ping.
type reply struct {
	Code    int               `json:"code"`
	Headers map[string]string `json:"headers"`
	Message string            `json:"message"`
	Data    string            `json:"data"`
}

// Ack statuses.
const (
	statusSuccess = "SUCCESS"
	statusLater   = "LATER"
)

// encodeReply answers the frame messageID with data.
func encodeReply(messageID, data string) []byte {
	b, _ := json.Marshal(reply{Code: 200, Message: "OK", Data: data,
		Headers: map[string]string{"messageId": messageID, "contentType": "application/json"}})
	return b
}

// encodeAck acks the event messageID with status (SUCCESS or LATER).
func encodeAck(messageID, status string) []byte {
	return encodeReply(messageID, `{"status":"`+status+`"}`)
}
