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

package tokenproxy_test

import (
	"flag"
	"testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/tokenproxy"
)

// TestParseUpstream: upstreams are https, or http on loopback only, with nothing that could carry
// a credential or change per request.
func TestParseUpstream(t *testing.T) {
	tests := map[string]struct {
		raw  string // the flag's value
		want string // the upstream kept, "" when refused
	}{
		"DingTalk":                   {"https://api.dingtalk.com", "https://api.dingtalk.com"},
		"a trailing slash":           {"https://oapi.dingtalk.com/", "https://oapi.dingtalk.com"},
		"a path prefix":              {"https://gw.example.com/dingtalk/", "https://gw.example.com/dingtalk"},
		"http on loopback":           {"http://127.0.0.1:8089", "http://127.0.0.1:8089"},
		"http on localhost":          {"http://localhost:8089", "http://localhost:8089"},
		"http on IPv6 loopback":      {"http://[::1]:8089", "http://[::1]:8089"},
		"http beyond loopback":       {"http://api.dingtalk.com", ""},
		"http on a localhost suffix": {"http://localhost.evil.example", ""},
		"another scheme":             {"ftp://api.dingtalk.com", ""},
		"user info":                  {"https://u:p@api.dingtalk.com", ""},
		"a query":                    {"https://oapi.dingtalk.com?access_token=x", ""},
		"a fragment":                 {"https://api.dingtalk.com#x", ""},
		"no host":                    {"https://", ""},
		"not a URL":                  {"://", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			u, err := tokenproxy.ParseUpstream(tc.raw)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("accepted as %s", u)
			case tc.want != "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && u.String() != tc.want:
				t.Errorf("kept as %s, want %s", u, tc.want)
			}
		})
	}
}

// TestOptionsDefaultsAndFlags: the defaults are loopback listeners and DingTalk's hosts, and
// every flag sets its option.
func TestOptionsDefaultsAndFlags(t *testing.T) {
	o := tokenproxy.DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	o.Bind(fs)
	err := fs.Parse([]string{"--api-listen=0.0.0.0:9000", "--oapi-listen=", "--api-token-placement=Bearer",
		"--allowed-hosts=a.svc, b.svc", "--token-dir=/t", "--token-key=tok", "--expiry-key=", "--log-level=warn"})
	if err != nil {
		t.Fatal(err)
	}
	if o.APIListen != "0.0.0.0:9000" || o.OAPIListen != "" || o.APITokenPlacement != tokenproxy.PlacementBearer ||
		len(o.AllowedHosts) != 2 || o.AllowedHosts[1] != "b.svc" || o.TokenDir != "/t" || o.TokenKey != "tok" || o.ExpiryKey != "" {
		t.Errorf("flags not applied: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("valid flags refused: %v", err)
	}
	o.MaxHeaderBytes, o.RequestTimeout = 10, 0
	if err := o.Validate(); err == nil {
		t.Error("a 10-byte header bound and no request timeout were accepted")
	}
}
