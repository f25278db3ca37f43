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
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// Placement says where the API listener puts the token.
type Placement string

const (
	// PlacementHeader puts it in the header x-acs-dingtalk-access-token (api.dingtalk.com).
	PlacementHeader Placement = "header"
	// PlacementBearer puts it in Authorization: Bearer (as some documents show for api.dingtalk.io).
	PlacementBearer Placement = "bearer"
)

// Defaults of the flags.
const (
	DefaultAPIListen       = "127.0.0.1:8480"
	DefaultOAPIListen      = "127.0.0.1:8481"
	DefaultMetricsListen   = "127.0.0.1:8482"
	DefaultAPIUpstream     = "https://api.dingtalk.com"
	DefaultOAPIUpstream    = "https://oapi.dingtalk.com"
	DefaultTokenDir        = "/var/run/dingtalk"
	DefaultTokenKey        = "accessToken"
	DefaultExpiryKey       = "expiresAt"
	DefaultUpstreamTimeout = 30 * time.Second
	DefaultRequestTimeout  = 60 * time.Second
	DefaultMaxHeaderBytes  = 32 << 10
	DefaultShutdownTimeout = 10 * time.Second
)

// Options are the proxy's settings, one flag each (Bind).
type Options struct {
	// APIListen and OAPIListen are the listeners of the two API families (host:port; "" turns one
	// off); MetricsListen serves /metrics, /healthz and /readyz ("" turns it off).
	APIListen, OAPIListen, MetricsListen string
	// APIUpstream and OAPIUpstream are where each family's requests go: https, or http on a
	// loopback host only. Never taken from a request.
	APIUpstream, OAPIUpstream string
	// APITokenPlacement is where the API listener puts the token.
	APITokenPlacement Placement
	// TokenDir is the mounted Secret's directory; TokenKey and ExpiryKey the files of the token
	// and of its expiry (RFC 3339). An empty ExpiryKey turns the expiry check off.
	TokenDir, TokenKey, ExpiryKey string
	// AllowedHosts are host names a request's Host may name besides loopback addresses,
	// localhost and the address the request came in on (e.g. a Service's name).
	AllowedHosts []string
	// UpstreamTimeout bounds the wait for an upstream's answer headers (per attempt).
	UpstreamTimeout time.Duration
	// RequestTimeout bounds a whole request: reading it, every upstream attempt, and the answer.
	RequestTimeout time.Duration
	// MaxHeaderBytes bounds a request's header.
	MaxHeaderBytes int
	// LogRequests logs one line per request at info level (else at debug).
	LogRequests bool
	// LogLevel is the lowest level logged.
	LogLevel slog.Level
	// ShutdownTimeout bounds the wait for requests under way on SIGTERM.
	ShutdownTimeout time.Duration
}

// DefaultOptions are the flags' defaults.
func DefaultOptions() Options {
	return Options{
		APIListen: DefaultAPIListen, OAPIListen: DefaultOAPIListen, MetricsListen: DefaultMetricsListen,
		APIUpstream: DefaultAPIUpstream, OAPIUpstream: DefaultOAPIUpstream, APITokenPlacement: PlacementHeader,
		TokenDir: DefaultTokenDir, TokenKey: DefaultTokenKey, ExpiryKey: DefaultExpiryKey,
		UpstreamTimeout: DefaultUpstreamTimeout, RequestTimeout: DefaultRequestTimeout,
		MaxHeaderBytes: DefaultMaxHeaderBytes, LogRequests: true, LogLevel: slog.LevelInfo,
		ShutdownTimeout: DefaultShutdownTimeout,
	}
}

// Bind registers one flag per option on fs, with o's values as defaults.
func (o *Options) Bind(fs *flag.FlagSet) {
	fs.StringVar(&o.APIListen, "api-listen", o.APIListen, "listener of the new API family (api.dingtalk.com); \"\" turns it off")
	fs.StringVar(&o.OAPIListen, "oapi-listen", o.OAPIListen, "listener of the old API family (oapi.dingtalk.com); \"\" turns it off")
	fs.StringVar(&o.MetricsListen, "metrics-listen", o.MetricsListen, "listener of /metrics, /healthz and /readyz; \"\" turns it off")
	fs.StringVar(&o.APIUpstream, "api-upstream", o.APIUpstream, "where the API listener forwards to (https, or http on loopback)")
	fs.StringVar(&o.OAPIUpstream, "oapi-upstream", o.OAPIUpstream, "where the oapi listener forwards to (https, or http on loopback)")
	fs.Func("api-token-placement", "where the API listener puts the token: header (x-acs-dingtalk-access-token) or bearer (Authorization: Bearer) (default header)",
		func(v string) error {
			p := Placement(strings.ToLower(v))
			if p != PlacementHeader && p != PlacementBearer {
				return errors.New("must be header or bearer")
			}
			o.APITokenPlacement = p
			return nil
		})
	fs.StringVar(&o.TokenDir, "token-dir", o.TokenDir, "the mounted target Secret's directory")
	fs.StringVar(&o.TokenKey, "token-key", o.TokenKey, "the file (Secret key) holding the access token")
	fs.StringVar(&o.ExpiryKey, "expiry-key", o.ExpiryKey, "the file (Secret key) holding the token's expiry (RFC 3339); \"\" turns the expiry check off")
	fs.Func("allowed-hosts", "comma-separated host names a request's Host may name besides localhost, loopback addresses and the address it came in on",
		func(v string) error {
			for _, h := range strings.Split(v, ",") {
				if h = strings.TrimSpace(h); h != "" {
					o.AllowedHosts = append(o.AllowedHosts, h)
				}
			}
			return nil
		})
	fs.DurationVar(&o.UpstreamTimeout, "upstream-timeout", o.UpstreamTimeout, "how long to wait for an upstream's answer headers (per attempt)")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", o.RequestTimeout, "how long a whole request may take: reading it, the upstream calls, the answer")
	fs.IntVar(&o.MaxHeaderBytes, "max-header-bytes", o.MaxHeaderBytes, "the largest request header accepted")
	fs.BoolVar(&o.LogRequests, "log-requests", o.LogRequests, "log one line per request (method, path without the query, status, duration) at info level; false: at debug")
	fs.Func("log-level", "debug, info, warn or error (default info)", func(v string) error { return o.LogLevel.UnmarshalText([]byte(v)) })
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "how long requests under way may finish after SIGTERM")
}

// Validate checks the options and returns every problem at once.
func (o *Options) Validate() error {
	var errs []error
	if o.APIListen == "" && o.OAPIListen == "" {
		errs = append(errs, errors.New("--api-listen and --oapi-listen are both off: nothing to serve"))
	}
	for name, addr := range map[string]string{"api-listen": o.APIListen, "oapi-listen": o.OAPIListen, "metrics-listen": o.MetricsListen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q is not host:port", name, addr))
		}
	}
	for name, u := range map[string]string{"api-upstream": o.APIUpstream, "oapi-upstream": o.OAPIUpstream} {
		if _, err := ParseUpstream(u); err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", name, err))
		}
	}
	if o.APITokenPlacement != PlacementHeader && o.APITokenPlacement != PlacementBearer {
		errs = append(errs, errors.New("--api-token-placement must be header or bearer"))
	}
	if o.TokenDir == "" || o.TokenKey == "" {
		errs = append(errs, errors.New("--token-dir and --token-key are required"))
	}
	for name, key := range map[string]string{"token-key": o.TokenKey, "expiry-key": o.ExpiryKey} {
		if strings.ContainsRune(key, '/') || strings.HasPrefix(key, "..") {
			errs = append(errs, fmt.Errorf("--%s %q must name a file of the Secret (a key), not a path", name, key))
		}
	}
	if o.UpstreamTimeout <= 0 || o.RequestTimeout <= 0 || o.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("--upstream-timeout and --request-timeout must be positive, --shutdown-timeout not negative"))
	}
	if o.MaxHeaderBytes < 1024 {
		errs = append(errs, errors.New("--max-header-bytes must be at least 1024"))
	}
	return errors.Join(errs...)
}

// ParseUpstream checks an upstream URL: https, or http on a loopback host only (tests, the
// simulator); no user info, query or fragment. A path is kept as a prefix.
func ParseUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%q is not a URL", raw)
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "":
		return nil, fmt.Errorf("%q must be scheme://host[:port][/path], without user info, query or fragment", raw)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return nil, fmt.Errorf("%q must use https (http is allowed only for loopback hosts)", raw)
	default:
		return nil, fmt.Errorf("%q must use https", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// isLoopback reports whether host is localhost or a loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
