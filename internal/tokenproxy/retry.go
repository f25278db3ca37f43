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

package tokenproxy

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// retrier sends a request upstream and, once, again with the newer token when DingTalk answers
// that the token is invalid or expired while the token on disk has changed since the request
// started (kubelet swapped it in meanwhile). Only a request whose body is held is sent again.
type retrier struct {
	p    *Proxy
	rt   *route
	base http.RoundTripper
}

func (t *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.send(req)
	c := callOf(req.Context())
	if err != nil || c == nil || !c.held || c.retried || !t.rt.family.mayRefuseToken(resp.StatusCode) {
		return resp, err
	}
	if !tokenRefused(t.rt.family, resp) {
		return resp, nil
	}
	fresh, ferr := t.p.src.Reload()
	if ferr != nil || fresh.value == c.token.value {
		return resp, nil // nothing newer to try: DingTalk's answer goes to the client
	}
	again := req.Clone(req.Context())
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		again.Body = body
	}
	_ = resp.Body.Close()
	t.rt.place(again, fresh.value)
	c.token, c.retried = fresh, true
	t.rt.m.retries.Inc()
	return t.send(again)
}

// send is one attempt, timed to the answer's headers.
func (t *retrier) send(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	t.rt.m.duration.Observe(time.Since(start).Seconds())
	return resp, err
}

// mayRefuseToken reports whether an answer of this status can be the family's "invalid token".
func (f Family) mayRefuseToken(status int) bool {
	if f == FamilyAPI {
		return status == http.StatusBadRequest
	}
	return status == http.StatusOK
}

// tokenRefused reads the start of a small answer (putting it back for the client) and reports
// whether it is DingTalk's answer to an invalid or expired token: the new API's
// InvalidAuthentication; the old API's errcode 40014 or 42001, or 88 with sub_code 40014 or
// 42001 (errcode 88 alone also wraps permission and rate-limit errors).
func tokenRefused(f Family, resp *http.Response) bool {
	if resp.ContentLength > maxPeek || resp.Body == nil || resp.Body == http.NoBody {
		return false
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "json") && !strings.HasPrefix(ct, "text/") {
		return false // a download, an image: no token error
	}
	head, err := io.ReadAll(io.LimitReader(resp.Body, maxPeek+1))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	if err != nil || len(head) > maxPeek {
		return false
	}
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		if head = gunzip(head); head == nil {
			return false
		}
	}
	var ans struct {
		Code    string          `json:"code"` // also matches "Code"
		ErrCode json.RawMessage `json:"errcode"`
		SubCode json.RawMessage `json:"sub_code"`
	}
	if json.Unmarshal(head, &ans) != nil {
		return false
	}
	if f == FamilyAPI {
		return ans.Code == "InvalidAuthentication"
	}
	switch jsonCode(ans.ErrCode) {
	case "40014", "42001":
		return true
	case "88":
		sub := jsonCode(ans.SubCode)
		return sub == "40014" || sub == "42001"
	}
	return false
}

// jsonCode is a code given as a JSON number or string, as text.
func jsonCode(raw json.RawMessage) string {
	return strings.Trim(strings.TrimSpace(string(raw)), `"`)
}

// gunzip decompresses a small gzip body (at most maxPeek bytes out); nil when it is not one.
func gunzip(b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxPeek+1))
	if err != nil || len(out) > maxPeek {
		return nil
	}
	return out
}
