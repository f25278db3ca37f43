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
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Family is an API family: which listener, which upstream, where the token goes and how
// DingTalk says a token is invalid.
type Family string

const (
	// FamilyAPI is the new API (api.dingtalk.com): the token in a header; a bad token is HTTP 400
	// InvalidAuthentication.
	FamilyAPI Family = "api"
	// FamilyOAPI is the old API (oapi.dingtalk.com): the token in ?access_token=; a bad token is
	// HTTP 200 with errcode 40014 or 42001, or 88 with sub_code 40014.
	FamilyOAPI Family = "oapi"
)

// The places a token travels in: each is emptied of what the client sent.
const (
	headerToken = "X-Acs-Dingtalk-Access-Token"
	headerAuth  = "Authorization"
	queryToken  = "access_token"
)

// Bounds of what the proxy holds in memory.
const (
	// maxHeldBody is the largest request body kept for a retry; a larger one is streamed.
	maxHeldBody = 1 << 20
	// maxHeldTotal bounds the bodies held by all requests at once; beyond it, bodies stream. Well
	// inside the sidecar's documented 64 MiB memory limit.
	maxHeldTotal = 16 << 20
	// maxPeek is the largest answer read to tell whether DingTalk refused the token.
	maxPeek = 64 << 10
	// maxLoggedPath bounds the path in a request log line.
	maxLoggedPath = 256
)

// route is one family's fixed upstream and token placement.
type route struct {
	family   Family
	upstream *url.URL
	place    func(r *http.Request, token string)
	m        *upstreamMetrics
	rp       *httputil.ReverseProxy
}

// Proxy serves the two API families. Build it with New.
type Proxy struct {
	opts    Options
	src     *Source
	log     *slog.Logger
	metrics *metrics
	routes  map[Family]*route
	allowed map[string]bool
	held    atomic.Int64 // bytes of request bodies held
}

// New builds the proxy for o (validated) over src. transport sends the requests upstream (nil:
// a transport with o's timeouts).
func New(o Options, src *Source, log *slog.Logger, transport http.RoundTripper) (*Proxy, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if transport == nil {
		transport = newTransport(o)
	}
	p := &Proxy{opts: o, src: src, log: log, metrics: newMetrics(src), routes: map[Family]*route{}, allowed: map[string]bool{}}
	for _, h := range o.AllowedHosts {
		p.allowed[strings.ToLower(strings.TrimSuffix(h, "."))] = true
	}
	apiPlace := placeHeader
	if o.APITokenPlacement == PlacementBearer {
		apiPlace = placeBearer
	}
	for family, spec := range map[Family]struct {
		upstream string
		place    func(*http.Request, string)
	}{FamilyAPI: {o.APIUpstream, apiPlace}, FamilyOAPI: {o.OAPIUpstream, placeQuery}} {
		u, err := ParseUpstream(spec.upstream)
		if err != nil {
			return nil, err
		}
		rt := &route{family: family, upstream: u, place: spec.place, m: p.metrics.forUpstream(string(family))}
		rt.rp = &httputil.ReverseProxy{
			Rewrite:        rt.rewrite,
			Transport:      &retrier{p: p, rt: rt, base: transport},
			ModifyResponse: scrubAnswer,
			ErrorHandler:   p.upstreamError(rt),
			ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
			BufferPool:     copyBuffers,
		}
		p.routes[family] = rt
	}
	return p, nil
}

// copyBuffers are the buffers answers are copied through: one per answer under way, reused
// (without them every answer allocates and clears 32 KiB).
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ pool sync.Pool }

func (bp *bufferPool) Get() []byte  { return *bp.pool.Get().(*[]byte) }
func (bp *bufferPool) Put(b []byte) { bp.pool.Put(&b) }

// newTransport is the upstream transport: timeouts on dialing, TLS and the answer's headers, a
// bound on their size, HTTP/2 when the upstream offers it, the environment's HTTPS_PROXY/NO_PROXY.
func newTransport(o Options) *http.Transport {
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  o.UpstreamTimeout,
		ExpectContinueTimeout:  time.Second,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    128,
		MaxResponseHeaderBytes: 256 << 10,
	}
}

// Handler serves one family's listener.
func (p *Proxy) Handler(f Family) http.Handler {
	rt := p.routes[f]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serve(w, r, rt) })
}

// call is one client request on its way: the token it was sent with and what happened.
type call struct {
	token   Token
	held    bool // the body is held (or there is none): a retry can resend it
	retried bool
	refused string // why the proxy answered itself
}

type callKey struct{}

func callOf(ctx context.Context) *call { c, _ := ctx.Value(callKey{}).(*call); return c }

// serve checks a client's request, gives it the current token and proxies it.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, rt *route) {
	start := time.Now()
	c := &call{}
	rec := &recorder{ResponseWriter: w}
	defer func() { p.finish(r, rt, c, rec.status, start) }()

	if reason, status, msg := p.refuse(r); reason != "" {
		c.refused = reason
		rt.m.refused(reason).Inc()
		writeProblem(rec, rt.family, status, problemCode(status), msg)
		return
	}
	tok, err := p.src.Current()
	if err != nil {
		c.refused = refusedNoToken
		rt.m.refused(refusedNoToken).Inc()
		nt := &NoTokenError{Reason: ReasonMissing, Detail: "unknown"}
		_ = errors.As(err, &nt)
		writeProblem(rec, rt.family, http.StatusServiceUnavailable, string(nt.Reason), "dingtalk-token-proxy holds no valid access token: "+nt.Detail)
		return
	}
	c.token = tok
	release, ok := p.holdBody(r, c)
	defer release()
	if !ok {
		c.refused = refusedBodyRead
		rt.m.refused(refusedBodyRead).Inc()
		writeProblem(rec, rt.family, http.StatusBadRequest, "InvalidRequest", "the request body could not be read")
		return
	}
	r.Header.Del("Upgrade") // no protocol switch: every request carries the token it was given
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), callKey{}, c), p.opts.RequestTimeout)
	defer cancel()
	rt.rp.ServeHTTP(rec, r.WithContext(ctx))
}

// refuse says why a request is not proxied: CONNECT or a method DingTalk's APIs do not use
// (TRACE would have the token echoed back), a target that is not a path (absolute-form,
// authority-form, asterisk), a path with dot segments (a gateway that normalises it would leave
// the upstream's path prefix, token and all), or a Host that names another server.
func (p *Proxy) refuse(r *http.Request) (reason string, status int, msg string) {
	switch {
	case r.Method == http.MethodConnect:
		return refusedConnect, http.StatusMethodNotAllowed, "CONNECT is not served: this is not a forward proxy"
	case !allowedMethods[r.Method]:
		return refusedMethod, http.StatusMethodNotAllowed, "only GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS are served"
	case !strings.HasPrefix(r.RequestURI, "/"):
		return refusedTarget, http.StatusBadRequest, "the request target must be a path: this proxy forwards to a fixed upstream only"
	case hasDotSegment(r.URL.Path):
		return refusedPath, http.StatusBadRequest, "the path may not hold . or .. segments"
	case !p.hostAllowed(r):
		return refusedHost, http.StatusMisdirectedRequest, "the Host header names another server (add it to --allowed-hosts if it is this proxy's name)"
	}
	return "", 0, ""
}

// allowedMethods are the methods the proxy forwards: those of DingTalk's APIs.
var allowedMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// hasDotSegment reports whether a (decoded) path holds a "." or ".." segment.
func hasDotSegment(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// hostAllowed accepts a Host that names this proxy: none, localhost, a loopback address, the
// address the request came in on, or an allowed name. Anything else (a browser's request under a
// rebound DNS name, say) is refused.
func (p *Proxy) hostAllowed(r *http.Request) bool {
	host := r.Host
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if isLoopback(host) || p.allowed[host] {
		return true
	}
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if lh, _, err := net.SplitHostPort(local.String()); err == nil && strings.EqualFold(lh, host) {
			return true
		}
	}
	return false
}

// holdBody keeps a request body of at most maxHeldBody in memory, so that a retry can send it
// again; a larger one (or one over the budget all requests share) streams and cannot be retried.
// It returns false when the body could not be read.
func (p *Proxy) holdBody(r *http.Request, c *call) (release func(), ok bool) {
	release = func() {}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		c.held = true
		return release, true
	}
	if r.ContentLength > maxHeldBody {
		return release, true
	}
	reserved := r.ContentLength
	if reserved < 0 {
		reserved = maxHeldBody // unknown length: the most it may hold
	}
	if p.held.Add(reserved) > maxHeldTotal {
		p.held.Add(-reserved)
		return release, true
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, maxHeldBody+1))
	if err != nil || len(buf) > maxHeldBody {
		p.held.Add(-reserved)
	}
	if err != nil {
		return release, false
	}
	if len(buf) > maxHeldBody {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		return release, true
	}
	p.held.Add(int64(len(buf)) - reserved)
	release = func() { p.held.Add(-int64(len(buf))) }
	r.Body = io.NopCloser(bytes.NewReader(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	r.ContentLength = int64(len(buf))
	r.TransferEncoding = nil
	c.held = true
	return release, true
}

// rewrite points the outgoing request at the fixed upstream, whatever the client named, removes
// every token the client sent and puts the proxy's in its family's place.
func (rt *route) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(rt.upstream)
	stripTokens(pr.Out)
	rt.place(pr.Out, callOf(pr.In.Context()).token.value)
}

// stripTokens removes the client's tokens from every place one travels in: the token header and
// Authorization however they are spelt (case, '_' for '-'), and the access_token parameter
// however it is spelt or escaped.
func stripTokens(r *http.Request) {
	for k := range r.Header {
		if name := strings.ReplaceAll(k, "_", "-"); strings.EqualFold(name, headerToken) || strings.EqualFold(name, headerAuth) {
			r.Header.Del(k)
		}
	}
	r.URL.RawQuery = withoutParam(r.URL.RawQuery, queryToken)
}

func placeHeader(r *http.Request, token string) {
	r.Header.Del(headerAuth)
	r.Header.Set(headerToken, token)
}

func placeBearer(r *http.Request, token string) {
	r.Header.Del(headerToken)
	r.Header.Set(headerAuth, "Bearer "+token)
}

func placeQuery(r *http.Request, token string) {
	q := withoutParam(r.URL.RawQuery, queryToken)
	if q != "" {
		q += "&"
	}
	r.URL.RawQuery = q + queryToken + "=" + url.QueryEscape(token)
}

// withoutParam removes every name parameter (however its name is escaped, in any case) from a
// raw query and keeps the rest as it was, in order.
func withoutParam(raw, name string) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	kept := parts[:0]
	for _, part := range parts {
		key, _, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil && strings.EqualFold(k, name) || strings.EqualFold(key, name) {
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&")
}

// scrubAnswer passes an answer through (a 3xx too: it is never followed) with the access_token
// parameter removed from Location, and any header that still carries the token (as it is, or
// query- or path-escaped) removed: the token never reaches the client.
func scrubAnswer(resp *http.Response) error {
	c := callOf(resp.Request.Context())
	if c == nil {
		return nil
	}
	for _, h := range []string{"Location", "Content-Location"} {
		if v := resp.Header.Get(h); v != "" {
			if u, err := url.Parse(v); err == nil {
				if q := withoutParam(u.RawQuery, queryToken); q != u.RawQuery {
					u.RawQuery = q
					resp.Header.Set(h, u.String())
				}
			}
		}
	}
	tok := c.token.value
	if tok == "" {
		return nil
	}
	forms := []string{tok, url.QueryEscape(tok), url.PathEscape(tok)}
	for k, vs := range resp.Header {
		if slices.ContainsFunc(vs, func(v string) bool {
			return slices.ContainsFunc(forms, func(f string) bool { return strings.Contains(v, f) })
		}) {
			resp.Header.Del(k)
		}
	}
	return nil
}

// upstreamError answers a failed upstream call: 504 on a timeout, 502 otherwise, nothing when
// the client went away. The logged error never holds the URL (an oapi URL holds the token).
func (p *Proxy) upstreamError(rt *route) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		switch {
		case errors.Is(r.Context().Err(), context.Canceled):
			p.log.Debug("Client went away", "upstream", string(rt.family))
			w.WriteHeader(499) // logged and counted; nobody reads it
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			p.log.Warn("Upstream call timed out", "upstream", string(rt.family), "error", err.Error())
			writeProblem(w, rt.family, http.StatusGatewayTimeout, "UpstreamTimeout", "DingTalk did not answer in time")
		default:
			p.log.Warn("Upstream call failed", "upstream", string(rt.family), "error", err.Error())
			writeProblem(w, rt.family, http.StatusBadGateway, "UpstreamUnavailable", "DingTalk could not be reached")
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// finish logs and counts a request: its path, never its query.
func (p *Proxy) finish(r *http.Request, rt *route, c *call, status int, start time.Time) {
	if status == 0 {
		status = http.StatusOK
	}
	rt.m.answered(status)
	level := slog.LevelDebug
	if p.opts.LogRequests {
		level = slog.LevelInfo
	}
	if !p.log.Enabled(r.Context(), level) {
		return
	}
	path := r.URL.EscapedPath()
	if len(path) > maxLoggedPath {
		path = path[:maxLoggedPath] + "..."
	}
	attrs := []slog.Attr{
		slog.String("upstream", string(rt.family)), slog.String("method", r.Method), slog.String("path", path),
		slog.Int("status", status), slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000),
	}
	if c.retried {
		attrs = append(attrs, slog.Bool("retried", true))
	}
	if c.refused != "" {
		attrs = append(attrs, slog.String("refused", c.refused))
	}
	p.log.LogAttrs(context.Background(), level, "Proxied request", attrs...)
}

// problem is the proxy's own error answer, shaped like DingTalk's: the new API's code and
// message; on the oapi listener also errcode -1 ("system busy", which old-API clients retry)
// and errmsg, for clients that only read those.
type problem struct {
	RequestID string `json:"requestid"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	ErrCode   *int   `json:"errcode,omitempty"`
	ErrMsg    string `json:"errmsg,omitempty"`
}

func writeProblem(w http.ResponseWriter, f Family, status int, code, msg string) {
	pb := problem{RequestID: requestID(), Code: code, Message: msg}
	if f == FamilyOAPI {
		busy := -1
		pb.ErrCode, pb.ErrMsg = &busy, msg
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(pb)
}

func problemCode(status int) string {
	switch status {
	case http.StatusMethodNotAllowed:
		return "MethodNotAllowed"
	case http.StatusMisdirectedRequest:
		return "MisdirectedRequest"
	default:
		return "InvalidRequest"
	}
}

// requestID is a random id shaped like DingTalk's request ids (a UUID).
func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return strings.ToUpper(fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:]))
}

// recorder notes the status written; Unwrap lets http.ResponseController reach the connection.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
