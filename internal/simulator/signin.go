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
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// PathSignIn is DingTalk's browser sign-in page (on login.dingtalk.com; here on the simulator's
// own URL).
const PathSignIn = "/oauth2/auth"

// serveSignIn stands in for DingTalk's sign-in page: GET /oauth2/auth?redirect_uri=...&
// response_type=code&client_id=...&scope=openid&state=...&prompt=consent. It signs in the
// configured user of client_id at once (no form) and redirects (302) to
// redirect_uri?authCode=<new one-time code>&state=<state>; the code works once at
// userAccessToken. A redirect_uri must be http on 127.0.0.1 or localhost: the simulator only
// ever hands codes to a program on the same machine.
func (s *Simulator) serveSignIn(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	credID := s.knownUser(q.Get("client_id"))
	target, problem := checkSignIn(q, credID != "")
	if problem != "" {
		s.finish(PathSignIn, credID, "refused", http.StatusBadRequest)
		writeSignInPage(w, http.StatusBadRequest, problem)
		return
	}
	code := randomHex(16)
	s.mu.Lock()
	u, ok := s.users[credID]
	if ok {
		u.codes[code] = true
	}
	s.mu.Unlock()
	if !ok { // replaced or removed meanwhile
		s.finish(PathSignIn, "", "refused", http.StatusBadRequest)
		writeSignInPage(w, http.StatusBadRequest, "client_id names no configured user")
		return
	}
	rq := target.Query()
	rq.Set("authCode", code)
	rq.Set("state", q.Get("state"))
	target.RawQuery = rq.Encode()
	s.finish(PathSignIn, credID, "success", http.StatusFound)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", target.String())
	w.WriteHeader(http.StatusFound)
}

// checkSignIn validates a sign-in request and returns where to redirect, or why not.
func checkSignIn(q url.Values, knownUser bool) (*url.URL, string) {
	switch {
	case q.Get("client_id") == "":
		return nil, "client_id is required"
	case !knownUser:
		return nil, "client_id names no configured user"
	case q.Get("response_type") != "code":
		return nil, "response_type must be code"
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		return nil, "scope must include openid"
	case q.Get("redirect_uri") == "":
		return nil, "redirect_uri is required"
	}
	target, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || target.Scheme != "http" || target.Fragment != "" || target.User != nil {
		return nil, "redirect_uri must be an http URL on 127.0.0.1 or localhost, without a fragment"
	}
	if host := target.Hostname(); host != "127.0.0.1" && host != "localhost" {
		return nil, "redirect_uri must be an http URL on 127.0.0.1 or localhost, without a fragment"
	}
	return target, ""
}

// knownUser returns id when it is a configured user's clientId, else "".
func (s *Simulator) knownUser(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[id]; !ok {
		return ""
	}
	return id
}

var signInPage = template.Must(template.New("signin").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>DingTalk simulator: sign-in refused</title></head>
<body><h1>Sign-in refused</h1><p>{{.}}</p></body></html>
`))

// writeSignInPage answers a refused sign-in with a short HTML page naming the problem.
func writeSignInPage(w http.ResponseWriter, status int, problem string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = signInPage.Execute(w, problem)
}
