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
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"time"
)

// The token endpoints, as DingTalk's new API names them.
const (
	PathAppAccessToken   = "/v1.0/oauth2/accessToken"
	PathCorpAccessToken  = "/v1.0/oauth2/corpAccessToken"
	PathSuiteAccessToken = "/v1.0/oauth2/suiteAccessToken"
	PathUserAccessToken  = "/v1.0/oauth2/userAccessToken"
)

// endpointOther counts calls to any other path in Stats.
const endpointOther = "other"

// maxRequestBytes caps a request body.
const maxRequestBytes = 64 << 10

// tokenRequest has the JSON fields of all four token requests.
type tokenRequest struct {
	AppKey       string `json:"appKey"`
	AppSecret    string `json:"appSecret"`
	SuiteKey     string `json:"suiteKey"`
	SuiteSecret  string `json:"suiteSecret"`
	SuiteTicket  string `json:"suiteTicket"`
	AuthCorpID   string `json:"authCorpId"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	GrantType    string `json:"grantType"`
	Code         string `json:"code"`
	RefreshToken string `json:"refreshToken"`
}

// tokenAnswer is a successful answer.
type tokenAnswer struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken,omitempty"`
	ExpireIn     int64  `json:"expireIn"`
	CorpID       string `json:"corpId,omitempty"`
}

// apiError is a new-API error answer: HTTP status and {"requestid","code","message"}.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func errorf(status int, code, message string) *apiError {
	return &apiError{Status: status, Code: code, Message: message}
}

func missing(field string) *apiError {
	return errorf(http.StatusBadRequest, "Missing"+field, field+" is mandatory for this action.")
}

// endpoint is one token endpoint: its path, the request field naming the credential, and the
// handler that answers a well-formed request.
type endpoint struct {
	path   string
	credID func(tokenRequest) string
	handle func(*Simulator, tokenRequest) (tokenAnswer, *apiError)
}

var endpoints = map[string]endpoint{
	PathAppAccessToken:   {PathAppAccessToken, func(r tokenRequest) string { return r.AppKey }, (*Simulator).appToken},
	PathCorpAccessToken:  {PathCorpAccessToken, func(r tokenRequest) string { return r.SuiteKey }, (*Simulator).corpToken},
	PathSuiteAccessToken: {PathSuiteAccessToken, func(r tokenRequest) string { return r.SuiteKey }, (*Simulator).suiteToken},
	PathUserAccessToken:  {PathUserAccessToken, func(r tokenRequest) string { return r.ClientID }, (*Simulator).userToken},
}

// Handler returns the HTTP handler: the token endpoints, the business endpoints that use a token
// (business.go), the sign-in page, the Stream gateway and the /_sim/ control endpoints.
func (s *Simulator) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Simulator) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-acs-request-id", newRequestID())
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		s.serveControl(w, r)
		return
	}
	switch {
	case r.URL.Path == PathOpenConnection && r.Method == http.MethodPost:
		s.serveOpen(w, r)
		return
	case r.URL.Path == PathStreamConnect && r.Method == http.MethodGet:
		s.serveConnect(w, r)
		return
	case r.URL.Path == PathSignIn && r.Method == http.MethodGet:
		s.serveSignIn(w, r)
		return
	case s.serveBusiness(w, r):
		return
	}
	ep, ok := endpoints[r.URL.Path]
	if !ok || r.Method != http.MethodPost {
		s.serveUnknown(w, r)
		return
	}

	req, bodyErr := decodeTokenRequest(r)
	credID := s.knownCredential(ep, ep.credID(req))
	if f, ok := s.takeFault(ep.path, credID); ok {
		if !waitLatency(r, time.Duration(f.Latency)) {
			s.finish(ep.path, credID, "canceled", 0)
			return
		}
		if f.answers() {
			s.serveFault(w, f, func(result string, status int) { s.finish(ep.path, credID, result, status) })
			return
		}
	}
	if bodyErr != nil {
		s.writeError(w, ep.path, credID, bodyErr)
		return
	}
	ans, apiErr := ep.handle(s, req)
	if apiErr != nil {
		s.writeError(w, ep.path, credID, apiErr)
		return
	}
	s.finish(ep.path, credID, "success", http.StatusOK)
	writeJSON(w, http.StatusOK, ans)
}

// serveUnknown answers a path that is not a token endpoint: a token path without the /v1.0 prefix
// gets the gateway's HTTP 200 {"errcode":404}; anything else (or another method) 404 InvalidAction.NotFound.
func (s *Simulator) serveUnknown(w http.ResponseWriter, r *http.Request) {
	if _, ok := endpoints["/v1.0"+r.URL.Path]; ok {
		writeJSON(w, http.StatusOK, map[string]any{"errcode": 404, "errmsg": "Not Found"})
		s.finish(endpointOther, "", "errcode:404", http.StatusOK)
		return
	}
	s.writeError(w, endpointOther, "", errorf(http.StatusNotFound, "InvalidAction.NotFound",
		"Specified api is not found, please check your url and method."))
}

// decodeTokenRequest reads a JSON body; a form, empty or undecodable body is 400 Missingbody.
func decodeTokenRequest(r *http.Request) (tokenRequest, *apiError) {
	var req tokenRequest
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" {
		return req, errorf(http.StatusBadRequest, "Missingbody", "body is mandatory for this action.")
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxRequestBytes))
	if err := dec.Decode(&req); err != nil {
		return tokenRequest{}, errorf(http.StatusBadRequest, "Missingbody", "body is mandatory for this action.")
	}
	return req, nil
}

// knownCredential returns id when it names a configured credential of ep's kind, else "", so that
// neither a secret sent by mistake nor arbitrary input ever becomes a counter key or a log value.
func (s *Simulator) knownCredential(ep endpoint, id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ok bool
	switch ep.path {
	case PathAppAccessToken:
		_, ok = s.apps[id]
	case PathUserAccessToken:
		_, ok = s.users[id]
	default:
		_, ok = s.suites[id]
	}
	if !ok {
		return ""
	}
	return id
}

func (s *Simulator) appToken(req tokenRequest) (tokenAnswer, *apiError) {
	switch {
	case req.AppKey == "":
		return tokenAnswer{}, missing("appKey")
	case req.AppSecret == "":
		return tokenAnswer{}, missing("appSecret")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[req.AppKey]
	if !ok || !secretEqual(a.AppSecret, req.AppSecret) {
		return tokenAnswer{}, errorf(http.StatusBadRequest, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
	}
	life := lifetime(a.TokenLifetime)
	tok := s.reuseLocked(&a.token, s.clk.Now(), life, appToken, a.AppKey)
	return tokenAnswer{AccessToken: tok, ExpireIn: seconds(life)}, nil
}

func (s *Simulator) suiteToken(req tokenRequest) (tokenAnswer, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	su, apiErr := s.checkSuiteLocked(req)
	if apiErr != nil {
		return tokenAnswer{}, apiErr
	}
	life := lifetime(su.TokenLifetime)
	return tokenAnswer{AccessToken: s.issueLocked(s.clk.Now(), life, suiteToken, su.SuiteKey), ExpireIn: seconds(life)}, nil
}

func (s *Simulator) corpToken(req tokenRequest) (tokenAnswer, *apiError) {
	if req.AuthCorpID == "" {
		return tokenAnswer{}, missing("authCorpId")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	su, apiErr := s.checkSuiteLocked(req)
	if apiErr != nil {
		return tokenAnswer{}, apiErr
	}
	if !su.corps[req.AuthCorpID] {
		return tokenAnswer{}, errorf(http.StatusBadRequest, "invalidAuthInfo", "企业未授权该应用")
	}
	life := lifetime(su.TokenLifetime)
	return tokenAnswer{AccessToken: s.issueLocked(s.clk.Now(), life, corpToken, su.SuiteKey), ExpireIn: seconds(life)}, nil
}

// checkSuiteLocked checks a suite's key, secret and current ticket.
func (s *Simulator) checkSuiteLocked(req tokenRequest) (*suiteState, *apiError) {
	switch {
	case req.SuiteKey == "":
		return nil, missing("suiteKey")
	case req.SuiteSecret == "":
		return nil, missing("suiteSecret")
	case req.SuiteTicket == "":
		return nil, missing("suiteTicket")
	}
	su, ok := s.suites[req.SuiteKey]
	switch {
	case !ok:
		return nil, errorf(http.StatusBadRequest, "invalidSuiteKey", "无效的suiteKey")
	case !secretEqual(su.SuiteSecret, req.SuiteSecret):
		return nil, errorf(http.StatusBadRequest, "invalidClientIdOrSecret", "无效的suiteKey或者suiteSecret")
	case !su.ticketOK(req.SuiteTicket, s.clk.Now()):
		return nil, errorf(http.StatusBadRequest, "invalidSuiteTicket", "无效的suiteTicket")
	}
	return su, nil
}

func (s *Simulator) userToken(req tokenRequest) (tokenAnswer, *apiError) {
	switch {
	case req.ClientID == "":
		return tokenAnswer{}, missing("clientId")
	case req.ClientSecret == "":
		return tokenAnswer{}, missing("clientSecret")
	case req.GrantType == "":
		return tokenAnswer{}, missing("grantType")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[req.ClientID]
	if !ok || !secretEqual(u.ClientSecret, req.ClientSecret) {
		return tokenAnswer{}, errorf(http.StatusBadRequest, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
	}
	now := s.clk.Now()
	switch req.GrantType {
	case "authorization_code":
		if req.Code == "" {
			return tokenAnswer{}, missing("code")
		}
		if !u.codes[req.Code] {
			return tokenAnswer{}, errorf(http.StatusBadRequest, "invalidAuthCode", "不合法的临时授权码")
		}
		delete(u.codes, req.Code)
	case "refresh_token":
		if req.RefreshToken == "" {
			return tokenAnswer{}, missing("refreshToken")
		}
		exp, ok := u.refresh[req.RefreshToken]
		if !ok || !now.Before(exp) {
			return tokenAnswer{}, errorf(http.StatusBadRequest, "invalidRefreshToken", "不合法的refreshToken")
		}
		delete(u.refresh, req.RefreshToken)
	default:
		return tokenAnswer{}, errorf(http.StatusBadRequest, "invalidGrantType", "不支持的grantType")
	}
	rt := randomHex(16)
	u.refresh[rt] = now.Add(RefreshTokenLifetime)
	u.current = rt
	life := lifetime(u.TokenLifetime)
	tok := s.reuseLocked(&u.token, now, life, userToken, u.ClientID)
	return tokenAnswer{AccessToken: tok, RefreshToken: rt, ExpireIn: seconds(life), CorpID: u.CorpID}, nil
}

// writeError writes a new-API error answer and counts it under its code.
func (s *Simulator) writeError(w http.ResponseWriter, path, credID string, e *apiError) {
	s.finish(path, credID, e.Code, e.Status)
	writeJSON(w, e.Status, map[string]string{
		"requestid": w.Header().Get("x-acs-request-id"),
		"code":      e.Code,
		"message":   e.Message,
	})
}

// finish counts and logs one call. credID is a known credential id or "". It runs before the
// answer is written, so a client that has its answer always finds the call in the stats.
func (s *Simulator) finish(path, credID, result string, status int) {
	s.mu.Lock()
	s.stats.record(path, credID, result)
	log := s.log
	s.mu.Unlock()
	log.Debug("Answered DingTalk call", "endpoint", path, "credential", credID, "result", result, "status", status)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newRequestID returns a random request id shaped like DingTalk's.
func newRequestID() string {
	h := randomHex(16)
	return strings.ToUpper(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])
}

// seconds returns d in whole seconds, at least 1.
func seconds(d time.Duration) int64 {
	return max(1, int64(d/time.Second))
}
