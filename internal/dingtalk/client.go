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
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

// The four token endpoints of DingTalk's new API. They double as the endpoint label of metrics.
const (
	PathAppAccessToken   = "/v1.0/oauth2/accessToken"
	PathCorpAccessToken  = "/v1.0/oauth2/corpAccessToken"
	PathSuiteAccessToken = "/v1.0/oauth2/suiteAccessToken"
	PathUserAccessToken  = "/v1.0/oauth2/userAccessToken"
)

// Defaults and limits of the HTTP client.
const (
	// DefaultBaseURL is DingTalk's API host.
	DefaultBaseURL = "https://api.dingtalk.com"
	// DefaultTimeout bounds one call, from connecting to reading the whole answer.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxResponseBytes caps the answer size; a larger answer is ClassUnavailable.
	DefaultMaxResponseBytes = 64 << 10
	// MaxRetryAfter caps the Retry-After DingTalk may ask for.
	MaxRetryAfter = time.Hour

	// maxResponseHeaderBytes caps an answer's headers (net/http's default is 1 MiB).
	maxResponseHeaderBytes = 64 << 10
)

// Options configure New.
type Options struct {
	// BaseURL is the API root, e.g. https://api.dingtalk.com. It must be https, except for a
	// loopback host (127.0.0.0/8, ::1, localhost), which may be http (tests, the simulator).
	// An optional path prefix is kept; user info, query and fragment are refused. Default DefaultBaseURL.
	BaseURL string
	// Timeout bounds each call. Default DefaultTimeout.
	Timeout time.Duration
	// QPS and Burst set the client-side rate limit shared by all calls. QPS <= 0 means no limit;
	// Burst <= 0 means 1.
	QPS   float64
	Burst int
	// MaxResponseBytes caps an answer's body. Default DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// HTTPClient, when set, is copied and used (tests). Its CheckRedirect and Timeout are overridden.
	HTTPClient *http.Client
	// Transport, when set, replaces the HTTP client's transport (tests).
	Transport http.RoundTripper
	// Clock reads the time for Retry-After dates and metrics. Default the real clock.
	Clock clock.PassiveClock
}

// HTTPClient is the Client for DingTalk's new API over HTTP. It is safe for concurrent use.
type HTTPClient struct {
	base     string
	hc       *http.Client
	limiter  *rate.Limiter
	maxBytes int64
	clock    clock.PassiveClock
}

var _ Client = (*HTTPClient)(nil)

// New returns a client for opts.BaseURL, or an error when the options are invalid.
func New(opts Options) (*HTTPClient, error) {
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	base, err := ValidateBaseURL(opts.BaseURL)
	if err != nil {
		return nil, err
	}
	if opts.Timeout < 0 || opts.MaxResponseBytes < 0 {
		return nil, errors.New("dingtalk: timeout and maximum answer size must not be negative")
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxResponseBytes == 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}

	hc := &http.Client{}
	if opts.HTTPClient != nil {
		*hc = *opts.HTTPClient
	}
	if opts.Transport != nil {
		hc.Transport = opts.Transport
	}
	if hc.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxResponseHeaderBytes = maxResponseHeaderBytes
		hc.Transport = t
	}
	// A followed redirect would resend the credentials in the POST body to another URL.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hc.Timeout = opts.Timeout

	limit, burst := rate.Inf, opts.Burst
	if opts.QPS > 0 {
		limit = rate.Limit(opts.QPS)
	}
	if burst <= 0 {
		burst = 1
	}
	return &HTTPClient{
		base:     base,
		hc:       hc,
		limiter:  rate.NewLimiter(limit, burst),
		maxBytes: opts.MaxResponseBytes,
		clock:    opts.Clock,
	}, nil
}

// Reserver is a Client whose client-side rate limit can be reserved ahead of a call, so that a
// caller with other work to do need not wait inside the call: Reserve takes the next place under
// the limit and returns how long until it is due (zero: now). A call whose context carries
// WithReservedPlace is then sent without waiting for the limit again. A place never used is spent.
type Reserver interface {
	Reserve() time.Duration
}

var _ Reserver = (*HTTPClient)(nil)

// Reserve takes the next place under the client-side rate limit (Reserver).
func (c *HTTPClient) Reserve() time.Duration {
	r := c.limiter.Reserve()
	if !r.OK() {
		// Only a burst of zero refuses, and New never builds one.
		return 0
	}
	return r.Delay()
}

type reservedPlaceKey struct{}

// WithReservedPlace marks ctx's call as holding a place Reserve took: it does not wait for the
// client-side rate limit.
func WithReservedPlace(ctx context.Context) context.Context {
	return context.WithValue(ctx, reservedPlaceKey{}, true)
}

// waitForLimit waits for a place under the client-side rate limit, unless ctx holds one.
func (c *HTTPClient) waitForLimit(ctx context.Context) error {
	if reserved, _ := ctx.Value(reservedPlaceKey{}).(bool); reserved {
		return nil
	}
	return c.limiter.Wait(ctx)
}

// ValidateBaseURL checks a DingTalk endpoint and returns it without a trailing slash. It must be
// an absolute https URL, or http for a loopback host, without user info, query or fragment.
func ValidateBaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("dingtalk: endpoint is not a valid URL")
	}
	switch {
	case u.Host == "" || u.Opaque != "":
		return "", errors.New("dingtalk: endpoint must be an absolute URL such as https://api.dingtalk.com")
	case u.User != nil:
		return "", errors.New("dingtalk: endpoint must not contain user info")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "", errors.New("dingtalk: endpoint must not contain a query or fragment")
	case u.Scheme == "https":
	case u.Scheme == "http" && IsLoopback(u.Hostname()):
	case u.Scheme == "http":
		return "", fmt.Errorf("dingtalk: endpoint %q must use https (http is allowed only for loopback hosts)", u.Host)
	default:
		return "", errors.New("dingtalk: endpoint scheme must be https")
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}

// IsLoopback reports whether host is localhost or a loopback IP address; "" (all interfaces) is not.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type appRequest struct {
	AppKey    string `json:"appKey"`
	AppSecret string `json:"appSecret"`
}

type suiteRequest struct {
	SuiteKey    string `json:"suiteKey"`
	SuiteSecret string `json:"suiteSecret"`
	AuthCorpID  string `json:"authCorpId,omitempty"`
	SuiteTicket string `json:"suiteTicket"`
}

type userRequest struct {
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	GrantType    string `json:"grantType"`
	Code         string `json:"code,omitempty"`
	RefreshToken string `json:"refreshToken,omitempty"`
}

// AppAccessToken implements Client.
func (c *HTTPClient) AppAccessToken(ctx context.Context, cr AppCredentials) (Token, error) {
	if err := require(PathAppAccessToken, "appKey", cr.AppKey, "appSecret", cr.AppSecret); err != nil {
		return Token{}, err
	}
	return c.post(ctx, PathAppAccessToken, appRequest{AppKey: cr.AppKey, AppSecret: cr.AppSecret})
}

// CorpAccessToken implements Client.
func (c *HTTPClient) CorpAccessToken(ctx context.Context, cr SuiteCredentials, authCorpID string) (Token, error) {
	if err := require(PathCorpAccessToken, "suiteKey", cr.SuiteKey, "suiteSecret", cr.SuiteSecret,
		"suiteTicket", cr.SuiteTicket, "authCorpId", authCorpID); err != nil {
		return Token{}, err
	}
	return c.post(ctx, PathCorpAccessToken, suiteRequest{
		SuiteKey: cr.SuiteKey, SuiteSecret: cr.SuiteSecret, SuiteTicket: cr.SuiteTicket, AuthCorpID: authCorpID,
	})
}

// SuiteAccessToken implements Client.
func (c *HTTPClient) SuiteAccessToken(ctx context.Context, cr SuiteCredentials) (Token, error) {
	if err := require(PathSuiteAccessToken, "suiteKey", cr.SuiteKey, "suiteSecret", cr.SuiteSecret,
		"suiteTicket", cr.SuiteTicket); err != nil {
		return Token{}, err
	}
	return c.post(ctx, PathSuiteAccessToken, suiteRequest{
		SuiteKey: cr.SuiteKey, SuiteSecret: cr.SuiteSecret, SuiteTicket: cr.SuiteTicket,
	})
}

// UserAccessToken implements Client. Without an AuthCode or a RefreshToken it fails with
// ClassReauthorizationRequired and makes no call.
func (c *HTTPClient) UserAccessToken(ctx context.Context, cr UserCredentials) (Token, error) {
	if err := require(PathUserAccessToken, "clientId", cr.ClientID, "clientSecret", cr.ClientSecret); err != nil {
		return Token{}, err
	}
	req := userRequest{ClientID: cr.ClientID, ClientSecret: cr.ClientSecret}
	switch {
	case cr.AuthCode != "":
		req.GrantType, req.Code = "authorization_code", cr.AuthCode
	case cr.RefreshToken != "":
		req.GrantType, req.RefreshToken = "refresh_token", cr.RefreshToken
	default:
		return Token{}, &Error{Class: ClassReauthorizationRequired, Endpoint: PathUserAccessToken,
			Reason: "no authorization code or refresh token"}
	}
	return c.post(ctx, PathUserAccessToken, req)
}

// require fails with ClassCredentialsRejected, without calling DingTalk, when a value is empty.
// kv alternates field names and values.
func require(endpoint string, kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			return &Error{Class: ClassCredentialsRejected, Endpoint: endpoint, Reason: "missing " + kv[i]}
		}
	}
	return nil
}

// post sends one JSON POST to a token endpoint and classifies the outcome. It never retries.
func (c *HTTPClient) post(ctx context.Context, path string, body any) (Token, error) {
	return call(ctx, c, path, body, func(status int, header http.Header, data []byte) (Token, error) {
		return parseAnswer(path, status, header, data, c.clock.Now())
	})
}

// call sends one JSON POST to path under the rate limit, records the metrics and lets parse read
// the answer. It never retries.
func call[T any](ctx context.Context, c *HTTPClient, path string, body any, parse func(int, http.Header, []byte) (T, error)) (T, error) {
	var zero T
	if err := c.waitForLimit(ctx); err != nil {
		// Nothing was sent: no metric. The reconciler sees a classified error.
		if ctx.Err() != nil {
			return zero, contextError(ctx, path)
		}
		return zero, &Error{Class: ClassRateLimited, Endpoint: path, Reason: "client-side rate limit"}
	}
	start := c.clock.Now()
	out, err := do(ctx, c, path, body, parse)
	result := "success"
	if err != nil {
		result = string(ClassOf(err))
	}
	metrics.ObserveAPIRequest(path, result, c.clock.Since(start))
	return out, err
}

func do[T any](ctx context.Context, c *HTTPClient, path string, body any, parse func(int, http.Header, []byte) (T, error)) (T, error) {
	var zero T
	payload, err := json.Marshal(body)
	if err != nil {
		return zero, &Error{Class: ClassUnavailable, Endpoint: path, Reason: "encoding request failed"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(payload))
	if err != nil {
		return zero, &Error{Class: ClassUnavailable, Endpoint: path, Reason: "building request failed"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "dingtalk-token-operator")

	resp, err := c.hc.Do(req)
	if err != nil {
		return zero, transportError(ctx, path, 0, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return zero, transportError(ctx, path, resp.StatusCode, err)
	}
	if int64(len(data)) > c.maxBytes {
		return zero, &Error{Class: ClassUnavailable, Endpoint: path, HTTPStatus: resp.StatusCode, Reason: "oversized answer"}
	}
	return parse(resp.StatusCode, resp.Header, data)
}

// transportError classifies a failure to send the request or read the answer.
func transportError(ctx context.Context, path string, status int, err error) *Error {
	if ctx.Err() != nil {
		e := contextError(ctx, path)
		e.HTTPStatus = status
		return e
	}
	e := &Error{Class: ClassUnavailable, Endpoint: path, HTTPStatus: status, Reason: "connection failed"}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		e.Reason = "timeout"
	}
	return e
}

// contextError is the error for a call whose context ended; it unwraps to the context's error.
func contextError(ctx context.Context, path string) *Error {
	e := &Error{Class: ClassUnavailable, Endpoint: path, Reason: "canceled", cause: ctx.Err()}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		e.Reason = "timeout"
	}
	return e
}
