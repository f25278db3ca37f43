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

package testenv

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// Call is one call a manager made to DingTalk through a CallRecorder.
type Call struct {
	Path string
	// Credential is the appKey, suiteKey or clientId the request body names.
	Credential string
	At         time.Time
	// Size is the request body's length.
	Size int
}

// CallRecorder is a reverse proxy in front of the DingTalk simulator that records every call made
// through it: the simulator counts calls, the recorder also knows when each was made, with which
// credential, and how large it was. A manager given its URL as --dingtalk-endpoint calls through
// it; bodies are read up to 4 MiB.
type CallRecorder struct {
	url string
	srv *http.Server

	mu    sync.Mutex
	calls []Call
}

// StartCallRecorder listens on a free loopback port and forwards every request to target (the
// simulator's URL).
func StartCallRecorder(target string) (*CallRecorder, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &CallRecorder{url: "http://" + ln.Addr().String()}
	proxy := httputil.NewSingleHostReverseProxy(u)
	r.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 4<<20))
		req.Body = io.NopCloser(bytes.NewReader(body))
		var ids struct {
			AppKey   string `json:"appKey"`
			SuiteKey string `json:"suiteKey"`
			ClientID string `json:"clientId"`
		}
		_ = json.Unmarshal(body, &ids)
		r.mu.Lock()
		r.calls = append(r.calls, Call{Path: req.URL.Path, Credential: ids.AppKey + ids.SuiteKey + ids.ClientID, At: time.Now(), Size: len(body)})
		r.mu.Unlock()
		proxy.ServeHTTP(w, req)
	})}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// URL is the recorder's base URL, the endpoint to give a manager.
func (r *CallRecorder) URL() string { return r.url }

// Close stops the recorder.
func (r *CallRecorder) Close() { _ = r.srv.Close() }

// Calls are the calls recorded so far, in the order they arrived.
func (r *CallRecorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// Of lists the times of the calls made with a credential (an appKey, suiteKey or clientId).
func (r *CallRecorder) Of(credential string) []time.Time {
	var out []time.Time
	for _, c := range r.Calls() {
		if c.Credential == credential {
			out = append(out, c.At)
		}
	}
	return out
}

// Count is the number of calls made with a credential.
func (r *CallRecorder) Count(credential string) int { return len(r.Of(credential)) }
