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

package simulator_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

func TestDemoCredentialsFile(t *testing.T) {
	cfg, err := simulator.LoadConfig("../../config/simulator/credentials.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps) != 1 || len(cfg.Suites) != 2 || len(cfg.Users) != 1 {
		t.Fatalf("want one app, two suites (one for Stream mode) and one user: %v", cfg)
	}
	if st := cfg.Suites[1]; st.SuiteKey != "suitestream" || st.SuiteSecret != "demo-stream-suite-secret" ||
		st.SuiteTicket != "demo-stream-ticket" || time.Duration(st.TokenLifetime) != time.Minute {
		t.Errorf("the Stream mode suite: %+v", st)
	}
	a, s, u := cfg.Apps[0], cfg.Suites[0], cfg.Users[0]
	got := []string{a.AppKey, a.AppSecret, s.SuiteKey, s.SuiteSecret, s.SuiteTicket, strings.Join(s.AuthorizedCorps, ","),
		u.ClientID, u.ClientSecret, strings.Join(u.RefreshTokens, ","), strings.Join(u.AuthCodes, ","), u.CorpID}
	want := []string{"dingdemoapp", "demo-app-secret", "suitedemo", "demo-suite-secret", "demo-ticket", "dingcorpdemo1,dingcorpdemo2",
		"dingdemouser", "demo-user-secret", "demo-refresh-token", "demo-auth-code", "dingcorpdemo1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("demo values\n got %v\nwant %v", got, want)
	}
	for _, d := range []simulator.Duration{a.TokenLifetime, s.TokenLifetime, u.TokenLifetime} {
		if time.Duration(d) != time.Minute {
			t.Errorf("lifetime %v, want 60s", time.Duration(d))
		}
	}
}

func TestParseConfig(t *testing.T) {
	tests := map[string]struct {
		yaml    string // the document
		wantErr string // a substring of the error, "" for success
	}{
		"empty":           {yaml: ``},
		"minimal":         {yaml: "apps: [{appKey: a, appSecret: s}]"},
		"json":            {yaml: `{"users":[{"clientId":"c","clientSecret":"s","tokenLifetime":"2h"}]}`},
		"missing secret":  {yaml: "apps: [{appKey: a}]", wantErr: "apps[0].appSecret is required"},
		"missing ticket":  {yaml: "suites: [{suiteKey: k, suiteSecret: s}]", wantErr: "suites[0].suiteTicket is required"},
		"duplicate":       {yaml: "apps: [{appKey: a, appSecret: s}, {appKey: a, appSecret: t}]", wantErr: `duplicate appKey "a"`},
		"unknown field":   {yaml: "apps: [{appKey: a, appSecret: s, secret: x}]", wantErr: "unknown field"},
		"number lifetime": {yaml: "apps: [{appKey: a, appSecret: s, tokenLifetime: 60}]", wantErr: "duration"},
		"bad lifetime":    {yaml: "apps: [{appKey: a, appSecret: s, tokenLifetime: soon}]", wantErr: "invalid duration"},
		"short lifetime":  {yaml: "users: [{clientId: c, clientSecret: s, tokenLifetime: 10ms}]", wantErr: "at least 1s"},
		"empty corp":      {yaml: "suites: [{suiteKey: k, suiteSecret: s, suiteTicket: t, authorizedCorps: ['']}]", wantErr: "authorizedCorps[] is required"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := simulator.ParseConfig([]byte(tc.yaml))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

func TestDefaultsAndStartErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "creds.yaml")
	if err := os.WriteFile(path, []byte("apps: [{appKey: a, appSecret: s}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := simulator.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := simulator.Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Close() }()
	if a := post(t, srv, simulator.PathAppAccessToken, map[string]string{"appKey": "a", "appSecret": "s"}); a.ExpireIn != 7200 {
		t.Errorf("default lifetime: expireIn %d, want 7200", a.ExpireIn)
	}
	if _, err := simulator.LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
	if _, err := simulator.Start(simulator.Config{Apps: []simulator.App{{AppKey: "a"}}}, nil); err == nil {
		t.Error("Start accepted an invalid config")
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted an invalid config")
		}
	}()
	simulator.New(simulator.Config{Apps: []simulator.App{{AppKey: "a"}}}, nil)
}
