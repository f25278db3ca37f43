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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Business endpoints: DingTalk calls that use an access token, checked the way DingTalk checks
// it. Both API families are served on the simulator's one listener.
const (
	// PathUsersMe is the new API's "who am I" (GET): a user token, in the header
	// x-acs-dingtalk-access-token or as Authorization: Bearer.
	PathUsersMe = "/v1.0/contact/users/me"
	// PathUserByUnionID is the new API's user lookup, GET /v1.0/contact/users/<unionId>: an app
	// (internal or corp) token, in the header or as Bearer. Calls are counted under this name.
	PathUserByUnionID = "/v1.0/contact/users/{unionId}"
	// PathTopUserGet is the old API's /topapi/v2/user/get (POST, ?access_token=): an app token;
	// token errors are errcode 88 with a sub_code.
	PathTopUserGet = "/topapi/v2/user/get"
	// PathUserGet is the old API's classic /user/get (GET, ?access_token=&userid=): an app token;
	// token errors are errcode 40014, 41001 or 42001.
	PathUserGet = "/user/get"
)

// apiFamily is how an endpoint takes its token and answers a bad one.
type apiFamily int

const (
	// newAPI (api.dingtalk.com): the header or Bearer; a bad token is HTTP 400 InvalidAuthentication.
	newAPI apiFamily = iota
	// topAPI (oapi.dingtalk.com/topapi): ?access_token=; HTTP 200, errcode 88 with sub_code.
	topAPI
	// classicAPI (oapi.dingtalk.com): ?access_token=; HTTP 200 with errcode 40014/41001/42001.
	classicAPI
)

// businessEndpoint is one endpoint that uses a token.
type businessEndpoint struct {
	path   string // as counted in Stats and named by a Fault's endpoint
	method string
	family apiFamily
	kinds  []tokenKind // the token kinds it serves
	// answer is the success answer (HTTP 200) for a valid token of an accepted kind, or an
	// old-API error answer (errcode != 0) about the request's parameters.
	answer func(r *http.Request, it issued) map[string]any
}

var (
	appKinds  = []tokenKind{appToken, corpToken}
	userKinds = []tokenKind{userToken}

	usersMe = businessEndpoint{path: PathUsersMe, method: http.MethodGet, family: newAPI, kinds: userKinds,
		answer: func(_ *http.Request, it issued) map[string]any {
			return map[string]any{"nick": simulatedName, "unionId": unionID(it.cred), "openId": "open" + unionID(it.cred), "stateCode": "86"}
		}}
	userByUnionID = businessEndpoint{path: PathUserByUnionID, method: http.MethodGet, family: newAPI, kinds: appKinds,
		answer: func(r *http.Request, _ issued) map[string]any {
			return map[string]any{"nick": simulatedName, "unionId": strings.TrimPrefix(r.URL.Path, usersPrefix), "stateCode": "86"}
		}}
	topUserGet = businessEndpoint{path: PathTopUserGet, method: http.MethodPost, family: topAPI, kinds: appKinds,
		answer: func(r *http.Request, _ issued) map[string]any {
			uid := userIDParam(r)
			if uid == "" {
				return oldAPIError(errUserNotFound, "找不到该用户")
			}
			return map[string]any{"errcode": 0, "errmsg": "ok", "request_id": newRequestID(),
				"result": map[string]any{"userid": uid, "name": simulatedName, "unionid": unionID(uid)}}
		}}
	userGet = businessEndpoint{path: PathUserGet, method: http.MethodGet, family: classicAPI, kinds: appKinds,
		answer: func(r *http.Request, _ issued) map[string]any {
			uid := r.URL.Query().Get("userid")
			if uid == "" {
				return oldAPIError(errUserNotFound, "找不到该用户")
			}
			return map[string]any{"errcode": 0, "errmsg": "ok", "userid": uid, "name": simulatedName, "unionid": unionID(uid)}
		}}

	// businessPaths are the endpoints by the name a Fault gives them.
	businessPaths = map[string]businessEndpoint{
		PathUsersMe: usersMe, PathUserByUnionID: userByUnionID, PathTopUserGet: topUserGet, PathUserGet: userGet,
	}
)

const (
	usersPrefix   = "/v1.0/contact/users/"
	simulatedName = "Simulated User"
	// The old API's error codes about tokens, and its "no such user".
	errTokenInvalid = 40014
	errTokenMissing = 41001
	errTokenExpired = 42001
	errWrapped      = 88 // /topapi: the real code is in sub_code
	errUserNotFound = 60121
)

// businessRoute finds the endpoint of path, whatever the method.
func businessRoute(path string) (businessEndpoint, bool) {
	if ep, ok := businessPaths[path]; ok && path != PathUserByUnionID {
		return ep, true
	}
	if id, ok := strings.CutPrefix(path, usersPrefix); ok && id != "" && !strings.Contains(id, "/") {
		return userByUnionID, true
	}
	return businessEndpoint{}, false
}

// tokenState is what the simulator knows of a presented token.
type tokenState int

const (
	tokenMissing   tokenState = iota // none presented
	tokenAmbiguous                   // several different values presented
	tokenUnknown                     // never issued (or forgotten long after it expired)
	tokenExpired
	tokenLive
)

// serveBusiness answers a business endpoint's call and reports whether path was one (a known path
// with another method is not: it gets the gateway's 404).
func (s *Simulator) serveBusiness(w http.ResponseWriter, r *http.Request) bool {
	ep, ok := businessRoute(r.URL.Path)
	if !ok || r.Method != ep.method {
		return false
	}
	it, state := s.lookupToken(presentedTokens(r, ep.family))
	if f, ok := s.takeFault(ep.path, it.cred); ok {
		if !waitLatency(r, time.Duration(f.Latency)) {
			s.finish(ep.path, it.cred, "canceled", 0)
			return true
		}
		if f.answers() {
			s.serveFault(w, f, func(result string, status int) { s.finish(ep.path, it.cred, result, status) })
			return true
		}
	}
	switch {
	case state != tokenLive:
		s.writeTokenError(w, ep, it.cred, state)
	case !slices.Contains(ep.kinds, it.kind) && ep.family == newAPI:
		s.writeError(w, ep.path, it.cred, errorf(http.StatusForbidden, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "没有调用该接口的权限"))
	case !slices.Contains(ep.kinds, it.kind): // the old API knows app tokens only
		s.writeTokenError(w, ep, it.cred, tokenUnknown)
	default:
		ans := ep.answer(r, it)
		result := "success"
		if code, _ := ans["errcode"].(int); code != 0 {
			result = "errcode:" + strconv.Itoa(code)
		}
		s.finish(ep.path, it.cred, result, http.StatusOK)
		writeJSON(w, http.StatusOK, ans)
	}
	return true
}

// presentedTokens are the token values a call carries where its family takes them: every
// x-acs-dingtalk-access-token header and Bearer credential for the new API, every access_token
// query parameter for the old one.
func presentedTokens(r *http.Request, family apiFamily) []string {
	if family != newAPI {
		return r.URL.Query()["access_token"]
	}
	out := append([]string{}, r.Header.Values("x-acs-dingtalk-access-token")...)
	for _, v := range r.Header.Values("Authorization") {
		if scheme, tok, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			out = append(out, strings.TrimSpace(tok))
		}
	}
	return out
}

// lookupToken decides on the presented values: none is missing, different values are ambiguous
// (the simulator never guesses which one a caller meant), else the one token's state and record.
func (s *Simulator) lookupToken(values []string) (issued, tokenState) {
	if len(values) == 0 || len(values) == 1 && values[0] == "" {
		return issued{}, tokenMissing
	}
	for _, v := range values[1:] {
		if v != values[0] {
			return issued{}, tokenAmbiguous
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.tokens[values[0]]
	switch {
	case !ok:
		return issued{}, tokenUnknown
	case !s.clk.Now().Before(it.expires):
		return it, tokenExpired
	}
	return it, tokenLive
}

// writeTokenError answers a call whose token is not usable, as DingTalk's family does.
func (s *Simulator) writeTokenError(w http.ResponseWriter, ep businessEndpoint, credID string, state tokenState) {
	switch ep.family {
	case newAPI:
		if state == tokenMissing {
			s.writeError(w, ep.path, credID, errorf(http.StatusBadRequest, "AuthenticationFailed.MissingParameter", "x-acs-dingtalk-access-token is mandatory for this action."))
			return
		}
		s.writeError(w, ep.path, credID, errorf(http.StatusBadRequest, "InvalidAuthentication", "不合法的access_token"))
	case topAPI:
		sub, msg := errTokenInvalid, "不合法的access_token"
		if state == tokenMissing {
			sub, msg = errTokenMissing, "缺少access_token参数"
		}
		ans := oldAPIError(errWrapped, "ding talk error[subcode="+strconv.Itoa(sub)+",submsg="+msg+"]")
		ans["sub_code"], ans["sub_msg"] = strconv.Itoa(sub), msg
		s.finish(ep.path, credID, "errcode:88:"+strconv.Itoa(sub), http.StatusOK)
		writeJSON(w, http.StatusOK, ans)
	default:
		code, msg := errTokenInvalid, "不合法的access_token"
		switch state {
		case tokenMissing:
			code, msg = errTokenMissing, "缺少access_token参数"
		case tokenExpired:
			code, msg = errTokenExpired, "access_token超时"
		}
		s.finish(ep.path, credID, "errcode:"+strconv.Itoa(code), http.StatusOK)
		writeJSON(w, http.StatusOK, oldAPIError(code, msg))
	}
}

func oldAPIError(code int, msg string) map[string]any {
	return map[string]any{"errcode": code, "errmsg": msg, "request_id": newRequestID()}
}

// userIDParam reads userid from a JSON or form body (at most maxRequestBytes), or the query.
func userIDParam(r *http.Request) string {
	body := http.MaxBytesReader(nil, r.Body, maxRequestBytes)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		var req struct {
			UserID string `json:"userid"`
		}
		_ = json.NewDecoder(body).Decode(&req)
		return req.UserID
	}
	r.Body = body
	_ = r.ParseForm()
	return r.Form.Get("userid")
}

// unionID is a stable, made-up unionId for an id (never the id itself: a clientId is a credential).
func unionID(id string) string {
	sum := sha256.Sum256([]byte("unionId:" + id))
	return hex.EncodeToString(sum[:10])
}
