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

package dingtalk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// PathOpenConnection is DingTalk Stream mode's endpoint that hands out a websocket endpoint and a
// one-time ticket to connect to it.
const PathOpenConnection = "/v1.0/gateway/connections/open"

// StreamSubscription is one subscription of a Stream connection, e.g. {EVENT, *}.
type StreamSubscription struct {
	Type  string `json:"type"`
	Topic string `json:"topic"`
}

// StreamOpenRequest is the body of connections/open. For a third-party suite ClientID and
// ClientSecret are its suiteKey and suiteSecret.
type StreamOpenRequest struct {
	ClientID      string               `json:"clientId"`
	ClientSecret  string               `json:"clientSecret"`
	Subscriptions []StreamSubscription `json:"subscriptions"`
	UA            string               `json:"ua,omitempty"`
	LocalIP       string               `json:"localIp,omitempty"`
}

// String names the client without its secret, so that printing a request leaks nothing.
func (r StreamOpenRequest) String() string {
	return fmt.Sprintf("stream open request for %q", r.ClientID)
}

// StreamTicket is DingTalk's answer to connections/open: the websocket endpoint (wss, or ws on a
// loopback host) and the ticket that opens one connection to it, once, within 90 seconds.
type StreamTicket struct {
	Endpoint string
	// Ticket is secret: it never appears in an error, a log line or a String.
	Ticket string
}

// String names the endpoint without the ticket.
func (t StreamTicket) String() string { return fmt.Sprintf("stream ticket for %s", t.Endpoint) }

// OpenStreamConnection calls connections/open. Errors are classified like the token calls': a
// refused clientSecret is ClassCredentialsRejected, a 5xx ClassUnavailable, and so on. An answer
// without an endpoint or ticket, or whose endpoint is neither wss nor ws on loopback, is
// ClassUnavailable.
func (c *HTTPClient) OpenStreamConnection(ctx context.Context, req StreamOpenRequest) (StreamTicket, error) {
	if err := require(PathOpenConnection, "clientId", req.ClientID, "clientSecret", req.ClientSecret); err != nil {
		return StreamTicket{}, err
	}
	return call(ctx, c, PathOpenConnection, req, func(status int, header http.Header, data []byte) (StreamTicket, error) {
		return c.parseOpenAnswer(status, header, data)
	})
}

// openAnswer holds the fields read from a connections/open answer.
type openAnswer struct {
	Endpoint string          `json:"endpoint"`
	Ticket   string          `json:"ticket"`
	ErrCode  json.RawMessage `json:"errcode"`
}

// parseOpenAnswer reads a connections/open answer. Failures (non-2xx, or a 2xx with a legacy
// errcode) are classified by the token endpoints' rules, see parseAnswer.
func (c *HTTPClient) parseOpenAnswer(status int, header http.Header, body []byte) (StreamTicket, error) {
	var a openAnswer
	trimmed := bytes.TrimSpace(body)
	decodeErr := errors.New("not a JSON object")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		decodeErr = json.Unmarshal(trimmed, &a)
	}
	if errcode := scalar(a.ErrCode); status < 200 || status >= 300 || errcode != "" && errcode != "0" {
		_, err := parseAnswer(PathOpenConnection, status, header, body, c.clock.Now())
		return StreamTicket{}, err
	}
	e := &Error{Class: ClassUnavailable, Endpoint: PathOpenConnection, HTTPStatus: status}
	switch {
	case decodeErr != nil:
		e.Reason = "malformed answer"
	case a.Endpoint == "" || a.Ticket == "":
		e.Reason = "missing endpoint or ticket"
	default:
		endpoint, err := ValidateStreamURL(a.Endpoint)
		if err != nil {
			e.Reason = "stream endpoint is not wss (or ws on loopback)"
			return StreamTicket{}, e
		}
		return StreamTicket{Endpoint: endpoint, Ticket: a.Ticket}, nil
	}
	return StreamTicket{}, e
}

// ValidateStreamURL checks a Stream websocket endpoint with the API endpoint's rule: wss, or ws
// for a loopback host only, without user info or fragment. It returns the URL re-encoded.
func ValidateStreamURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("dingtalk: stream endpoint is not a valid URL")
	}
	switch {
	case u.Host == "" || u.Opaque != "":
		return "", errors.New("dingtalk: stream endpoint must be an absolute URL such as wss://wss-open-connection.dingtalk.com")
	case u.User != nil:
		return "", errors.New("dingtalk: stream endpoint must not contain user info")
	case u.Fragment != "":
		return "", errors.New("dingtalk: stream endpoint must not contain a fragment")
	case u.Scheme == "wss":
	case u.Scheme == "ws" && IsLoopback(u.Hostname()):
	case u.Scheme == "ws":
		return "", fmt.Errorf("dingtalk: stream endpoint %q must use wss (ws is allowed only for loopback hosts)", u.Host)
	default:
		return "", errors.New("dingtalk: stream endpoint scheme must be wss")
	}
	return u.String(), nil
}
