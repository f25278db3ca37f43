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
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DingTalk error codes the classification depends on.
const (
	codeInvalidClientIDOrSecret = "invalidClientIdOrSecret"
	codeQuotaExceeded           = "Forbidden.AccessDenied.ApiCountLimitForOrg"
)

// legacyRateLimitCodes are the old API's throttling errcodes: 90002 (platform-wide per-API limit),
// 90006 (per-minute limit), 90018 (per-second limit per app), 90019 (per-second limit).
var legacyRateLimitCodes = map[string]bool{"90002": true, "90006": true, "90018": true, "90019": true}

// maxExpireIn bounds a plausible token lifetime; a larger expireIn is treated as a broken answer.
const maxExpireIn = 366 * 24 * time.Hour

// MinExpireIn is the shortest lifetime a token may have: one that expires before anyone can use it
// is no token, and accepting it would make its holder call DingTalk again at once, forever.
const MinExpireIn = 10 * time.Second

// maxIDLength bounds the code and request id an Error keeps.
const maxIDLength = 128

// answer holds the fields read from a DingTalk answer. The message text is never read.
// encoding/json matches names case-insensitively, so "Code" and "requestId" are accepted too.
type answer struct {
	AccessToken  string          `json:"accessToken"`
	ExpireIn     json.RawMessage `json:"expireIn"`
	RefreshToken string          `json:"refreshToken"`
	CorpID       string          `json:"corpId"`
	Code         json.RawMessage `json:"code"`
	RequestID    json.RawMessage `json:"requestid"`
	ErrCode      json.RawMessage `json:"errcode"`
}

// decodeAnswer reads a JSON object; an empty body, another JSON value or a type mismatch on the
// token fields is an error.
func decodeAnswer(body []byte) (answer, error) {
	var a answer
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return a, errors.New("not a JSON object")
	}
	err := json.Unmarshal(trimmed, &a)
	return a, err
}

// parseAnswer turns an HTTP answer of endpoint into a Token or a classified *Error. now is used
// for a Retry-After given as an HTTP date. The first matching rule wins:
//
//	3xx (redirects are never followed)                         ProviderUnavailable
//	code Forbidden.AccessDenied.ApiCountLimitForOrg            QuotaExceeded
//	429; 4xx with a code containing Limit or Throttl;
//	  errcode 90002, 90006, 90018 or 90019 (any status)        RateLimited
//	5xx                                                        ProviderUnavailable
//	404 (wrong path or method)                                 ProviderUnavailable
//	userAccessToken 4xx: invalidClientIdOrSecret               CredentialsRejected
//	userAccessToken 4xx: any other or no code                  ReauthorizationRequired
//	other 4xx: code invalid*, or status 401 or 403             CredentialsRejected
//	other 4xx; any other status outside 2xx                    ProviderUnavailable
//	2xx: empty or malformed JSON, not an object                ProviderUnavailable
//	2xx: non-zero errcode (other than the rate-limit ones)     ProviderUnavailable
//	2xx: missing or empty accessToken                          ProviderUnavailable
//	2xx: missing, non-numeric, < 10 s or > 1 y expireIn        ProviderUnavailable
//
// Codes are matched case-insensitively. Retry-After (seconds or HTTP date, capped at
// MaxRetryAfter) is kept on every error answer except a redirect. A 2xx answer that carries a
// refreshToken returns it beside the error when another field is invalid: DingTalk has rotated
// the user's refresh token either way, and the caller must keep the new one.
func parseAnswer(endpoint string, status int, header http.Header, body []byte, now time.Time) (Token, error) {
	a, decodeErr := decodeAnswer(body)
	code := scalar(a.Code)
	errcode := scalar(a.ErrCode)
	if errcode == "0" {
		errcode = ""
	}
	e := &Error{
		Endpoint:   endpoint,
		HTTPStatus: status,
		Code:       firstNonEmpty(sanitizeID(code), sanitizeID(errcode)),
		RequestID:  firstNonEmpty(sanitizeID(scalar(a.RequestID)), sanitizeID(header.Get("x-acs-request-id"))),
		RetryAfter: parseRetryAfter(header.Get("Retry-After"), now),
	}
	switch {
	case status >= 300 && status < 400:
		e.Class, e.Reason, e.RetryAfter = ClassUnavailable, "redirect not followed", 0
	case status < 200 || status >= 300:
		e.Class, e.Reason = classifyFailure(endpoint, status, code, errcode)
	case decodeErr != nil:
		e.Class, e.Reason = ClassUnavailable, "malformed answer"
	case errcode != "" && legacyRateLimitCodes[errcode]:
		e.Class, e.Reason = ClassRateLimited, "rate limited"
	case errcode != "":
		e.Class, e.Reason = ClassUnavailable, "error code in a successful answer"
	case a.AccessToken == "":
		e.Class, e.Reason = ClassUnavailable, "missing accessToken"
	default:
		expireIn, reason := parseExpireIn(a.ExpireIn)
		if reason != "" {
			e.Class, e.Reason = ClassUnavailable, reason
			break
		}
		return Token{AccessToken: a.AccessToken, ExpireIn: expireIn, RefreshToken: a.RefreshToken, CorpID: a.CorpID}, nil
	}
	if status >= 200 && status < 300 && a.RefreshToken != "" && fieldsRead(decodeErr) {
		return Token{RefreshToken: a.RefreshToken}, e
	}
	return Token{}, e
}

// fieldsRead reports whether decodeAnswer read the answer's fields: it did unless the body is not
// a JSON object (a field of the wrong type leaves the others read).
func fieldsRead(decodeErr error) bool {
	var typeErr *json.UnmarshalTypeError
	return decodeErr == nil || errors.As(decodeErr, &typeErr)
}

// classifyFailure classifies a non-2xx, non-3xx answer.
func classifyFailure(endpoint string, status int, code, errcode string) (Class, string) {
	client := status >= 400 && status < 500
	switch {
	case strings.EqualFold(code, codeQuotaExceeded):
		return ClassQuotaExceeded, "quota exceeded"
	case status == http.StatusTooManyRequests,
		client && isThrottleCode(code),
		legacyRateLimitCodes[errcode]:
		return ClassRateLimited, "rate limited"
	case status >= 500 && status < 600:
		return ClassUnavailable, "server error"
	case status == http.StatusNotFound:
		// A wrong path or method: the endpoint is misconfigured, the credentials are not at fault.
		return ClassUnavailable, "endpoint not found"
	case client && endpoint == PathUserAccessToken:
		if strings.EqualFold(code, codeInvalidClientIDOrSecret) {
			return ClassCredentialsRejected, "credentials rejected"
		}
		return ClassReauthorizationRequired, "authorization code or refresh token refused"
	case client && (hasPrefixFold(code, "invalid") || status == http.StatusUnauthorized || status == http.StatusForbidden):
		return ClassCredentialsRejected, "credentials rejected"
	case client:
		return ClassUnavailable, "request refused"
	default:
		return ClassUnavailable, "unexpected status"
	}
}

// isThrottleCode reports whether a new-API code names throttling, e.g. "Throttling.User" or
// "Forbidden.RateLimit".
func isThrottleCode(code string) bool {
	c := strings.ToLower(code)
	return strings.Contains(c, "limit") || strings.Contains(c, "throttl")
}

// parseExpireIn reads expireIn in seconds; reason is non-empty when it is missing or implausible.
func parseExpireIn(raw json.RawMessage) (time.Duration, string) {
	s := scalar(raw)
	if s == "" {
		return 0, "missing expireIn"
	}
	secs, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil || math.IsNaN(secs):
		return 0, "malformed expireIn"
	case secs < MinExpireIn.Seconds():
		return 0, "expireIn too short"
	case secs > maxExpireIn.Seconds():
		return 0, "expireIn out of range"
	}
	return time.Duration(secs * float64(time.Second)), ""
}

// parseRetryAfter reads a Retry-After header in seconds or as an HTTP date, capped at MaxRetryAfter.
// An absent, malformed or past value is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		switch {
		case secs <= 0:
			return 0
		case secs >= int64(MaxRetryAfter/time.Second):
			return MaxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := at.Sub(now)
	switch {
	case d <= 0:
		return 0
	case d > MaxRetryAfter:
		return MaxRetryAfter
	}
	return d
}

// scalar returns a JSON string's value or a JSON number's text; "" for anything else.
func scalar(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return ""
		}
		return strings.TrimSpace(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		return ""
	}
	return n.String()
}

// sanitizeID keeps a code or request id only when it looks like one: at most maxIDLength
// characters among letters, digits and "._:-". Anything else (free text that might echo input)
// is dropped.
func sanitizeID(s string) string {
	if len(s) > maxIDLength {
		return ""
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == ':' || r == '-'
		if !ok {
			return ""
		}
	}
	return s
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
