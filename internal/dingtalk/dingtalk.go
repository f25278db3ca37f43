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

// Package dingtalk is the operator's only window to DingTalk: a small net/http client for the
// four token endpoints of DingTalk's new API (https://api.dingtalk.com/v1.0/oauth2/...).
//
// The client never retries: retries and backoff belong to the reconciler. Errors are classified
// (see Class) so the reconciler can pick a condition reason and a retry policy. No error, log line
// or metric label produced here carries a credential, a token or a response body.
package dingtalk

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Token is what DingTalk answered for a successful token request.
type Token struct {
	// AccessToken is the token to present on OpenAPI calls. Secret.
	AccessToken string
	// ExpireIn is the lifetime DingTalk answered (expireIn seconds).
	ExpireIn time.Duration
	// RefreshToken is the rotated refresh token (user tokens only). Secret.
	RefreshToken string
	// CorpID is the organisation of the user (user tokens only).
	CorpID string
}

// AppCredentials are an internal app's credentials.
type AppCredentials struct {
	AppKey    string
	AppSecret string
}

// SuiteCredentials are a third-party suite's credentials.
type SuiteCredentials struct {
	SuiteKey    string
	SuiteSecret string
	SuiteTicket string
}

// UserCredentials are an OAuth2 client's credentials and exactly one grant:
// AuthCode (grantType authorization_code) or RefreshToken (grantType refresh_token).
type UserCredentials struct {
	ClientID     string
	ClientSecret string
	AuthCode     string
	RefreshToken string
}

// Client fetches tokens from DingTalk, one method per token type.
type Client interface {
	// AppAccessToken calls /v1.0/oauth2/accessToken (internal app).
	AppAccessToken(ctx context.Context, c AppCredentials) (Token, error)
	// CorpAccessToken calls /v1.0/oauth2/corpAccessToken (third-party app for one authorizing org).
	CorpAccessToken(ctx context.Context, c SuiteCredentials, authCorpID string) (Token, error)
	// SuiteAccessToken calls /v1.0/oauth2/suiteAccessToken (third-party suite).
	SuiteAccessToken(ctx context.Context, c SuiteCredentials) (Token, error)
	// UserAccessToken calls /v1.0/oauth2/userAccessToken with the authorization_code grant when
	// c.AuthCode is set, else with the refresh_token grant.
	UserAccessToken(ctx context.Context, c UserCredentials) (Token, error)
}

// Class tells the reconciler how a failed call should be handled.
type Class string

const (
	// ClassCredentialsRejected: DingTalk refused the credentials (invalidClientIdOrSecret,
	// invalidSuiteKey, invalidSuiteTicket, invalidAuthInfo, other 4xx "invalid*" codes, 401 and
	// 403 access denials), or a credential is empty (then no call is made).
	ClassCredentialsRejected Class = "CredentialsRejected"
	// ClassReauthorizationRequired: the user's authorization code or refresh token was refused;
	// a person must authorize again.
	ClassReauthorizationRequired Class = "ReauthorizationRequired"
	// ClassRateLimited: HTTP 429, a 4xx (typically 403) code containing Limit or Throttl, or
	// legacy errcodes 90002/90006/90018/90019, or the client-side rate limit.
	ClassRateLimited Class = "RateLimited"
	// ClassQuotaExceeded: Forbidden.AccessDenied.ApiCountLimitForOrg (monthly quota).
	ClassQuotaExceeded Class = "QuotaExceeded"
	// ClassUnavailable: 5xx, timeouts, resets, redirects, oversized, malformed or empty answers,
	// HTTP 200 with a non-zero errcode, a missing accessToken, an expireIn under MinExpireIn, 404 and
	// other 4xx answers that blame neither the credentials nor the rate.
	ClassUnavailable Class = "ProviderUnavailable"
)

// Error is a classified DingTalk failure. It never holds a credential, a token or a body.
type Error struct {
	Class Class
	// Endpoint is the path called, e.g. /v1.0/oauth2/accessToken.
	Endpoint string
	// HTTPStatus is the answer's status code (0 when no answer arrived).
	HTTPStatus int
	// Code is DingTalk's error code (`code`, or the legacy errcode as a string).
	Code string
	// RequestID is DingTalk's request id, when answered.
	RequestID string
	// RetryAfter is the answer's Retry-After, capped at one hour (0 when absent).
	RetryAfter time.Duration
	// Reason is a short fixed description ("timeout", "malformed answer", ...), never answer text.
	Reason string

	// cause is the context error of a call whose context ended (nil otherwise), for errors.Is.
	cause error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("dingtalk %s: %s", e.Endpoint, e.Class)
	if e.HTTPStatus != 0 {
		msg += fmt.Sprintf(" (HTTP %d", e.HTTPStatus)
		if e.Code != "" {
			msg += ", code " + e.Code
		}
		if e.RequestID != "" {
			msg += ", requestid " + e.RequestID
		}
		msg += ")"
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Unwrap returns context.Canceled or context.DeadlineExceeded when the call's context ended.
func (e *Error) Unwrap() error { return e.cause }

// ClassOf returns the class of err, ClassUnavailable for an unclassified error and "" for nil.
func ClassOf(err error) Class {
	if err == nil {
		return ""
	}
	var de *Error
	if errors.As(err, &de) {
		return de.Class
	}
	return ClassUnavailable
}

// RetryAfterOf returns the Retry-After DingTalk asked for, or 0.
func RetryAfterOf(err error) time.Duration {
	var de *Error
	if errors.As(err, &de) {
		return de.RetryAfter
	}
	return 0
}
