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
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

func TestControlFaults(t *testing.T) {
	srv, _ := start(t)
	base := srv.URL() + "/_sim/faults"
	if a := do(t, "POST", base, "application/json", `{"endpoint":"/v1.0/oauth2/accessToken","status":429,"retryAfter":7,"count":1,"latency":"1ms"}`); a.Status != http.StatusCreated {
		t.Fatalf("POST fault: HTTP %d %s", a.Status, a.Raw)
	}
	var listed []simulator.Fault
	if a := do(t, "GET", base, "", ""); a.Status != 200 || json.Unmarshal([]byte(a.Raw), &listed) != nil || len(listed) != 1 ||
		listed[0].RetryAfter != 7 || time.Duration(listed[0].Latency) != time.Millisecond {
		t.Fatalf("GET faults: %s", a.Raw)
	}
	a := post(t, srv, simulator.PathAppAccessToken, appReq(appSecret))
	if a.Status != 429 || a.Header.Get("Retry-After") != "7" {
		t.Fatalf("the posted fault did not apply: HTTP %d", a.Status)
	}
	wantSuccess(t, post(t, srv, simulator.PathAppAccessToken, appReq(appSecret)))

	for _, bad := range []string{`{"rate":2}`, `{"status":"x"}`, `{"unknown":1}`, `{`} {
		if a := do(t, "POST", base, "application/json", bad); a.Status != http.StatusBadRequest {
			t.Errorf("POST %s: HTTP %d, want 400", bad, a.Status)
		}
	}
	do(t, "POST", base, "application/json", `{"status":500}`)
	if a := do(t, "DELETE", base, "", ""); a.Status != http.StatusNoContent || len(srv.Faults()) != 0 {
		t.Fatalf("DELETE faults: HTTP %d, %d left", a.Status, len(srv.Faults()))
	}
	if a := do(t, "GET", base, "", ""); strings.TrimSpace(a.Raw) != "[]" {
		t.Errorf("no faults listed as %q, want []", a.Raw)
	}
}

func TestControlStats(t *testing.T) {
	srv, _ := start(t)
	post(t, srv, simulator.PathAppAccessToken, appReq(appSecret))
	post(t, srv, simulator.PathAppAccessToken, appReq(appSecret+"-wrong"))
	post(t, srv, simulator.PathAppAccessToken, map[string]string{"appKey": appSecret, "appSecret": "x"}) // swapped by mistake
	post(t, srv, simulator.PathSuiteAccessToken, suiteReq("stale"))
	post(t, srv, simulator.PathCorpAccessToken, corpReq(suiteTicket, "dingcorp1"))
	post(t, srv, simulator.PathUserAccessToken, refreshReq(refreshToken))
	post(t, srv, simulator.PathUserAccessToken, codeReq(authCode))
	do(t, "POST", srv.URL()+"/v1.0/unknown", "application/json", "{}")

	a := do(t, "GET", srv.URL()+"/_sim/stats", "", "")
	for _, s := range []string{appSecret, suiteSecret, suiteTicket, userSecret, refreshToken, authCode} {
		if strings.Contains(a.Raw, s) {
			t.Errorf("stats contain the secret %q: %s", s, a.Raw)
		}
	}
	var st simulator.Stats
	if err := json.Unmarshal([]byte(a.Raw), &st); err != nil {
		t.Fatal(err)
	}
	app := st.Endpoints[simulator.PathAppAccessToken]
	checks := map[string]struct{ got, want int64 }{
		"total":                     {st.Total, 8},
		"successes":                 {st.Results["success"], 4},
		"app calls":                 {app.Total, 3},
		"app invalid secret":        {app.Results["invalidClientIdOrSecret"], 2},
		"dingapp calls":             {app.Credentials["dingapp"].Total, 2},
		"unknown app credential":    {app.Credentials[simulator.UnknownCredential].Total, 1},
		"suite ticket refused":      {st.Endpoints[simulator.PathSuiteAccessToken].Credentials["suitekey"].Results["invalidSuiteTicket"], 1},
		"corp success":              {st.Endpoints[simulator.PathCorpAccessToken].Results["success"], 1},
		"user successes":            {st.Endpoints[simulator.PathUserAccessToken].Credentials["dinguser"].Results["success"], 2},
		"other paths":               {st.Endpoints["other"].Results["InvalidAction.NotFound"], 1},
		"no credentials for others": {int64(len(st.Endpoints["other"].Credentials)), 0},
	}
	for name, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", name, c.got, c.want)
		}
	}

	copied := srv.Stats()
	copied.Results["success"] = 100
	if srv.Stats().Results["success"] != 4 {
		t.Error("Stats returned shared maps")
	}
	if a := do(t, "DELETE", srv.URL()+"/_sim/stats", "", ""); a.Status != http.StatusNoContent || srv.Stats().Total != 0 {
		t.Fatalf("DELETE stats: HTTP %d, total %d", a.Status, srv.Stats().Total)
	}
	srv.ResetStats()
	if len(srv.Stats().Endpoints) != 0 {
		t.Error("ResetStats kept endpoints")
	}
}

func TestControlValidate(t *testing.T) {
	srv, clk := start(t)
	tok := post(t, srv, simulator.PathAppAccessToken, appReq(appSecret)).AccessToken
	validate := func(token string) simulator.ValidateAnswer {
		t.Helper()
		b, _ := json.Marshal(simulator.ValidateRequest{AccessToken: token})
		a := do(t, "POST", srv.URL()+"/_sim/validate", "application/json", string(b))
		var v simulator.ValidateAnswer
		if a.Status != 200 || json.Unmarshal([]byte(a.Raw), &v) != nil {
			t.Fatalf("validate: HTTP %d %s", a.Status, a.Raw)
		}
		return v
	}
	v := validate(tok)
	if !v.Valid || v.ExpiresAt == nil || !v.ExpiresAt.Equal(clk.Now().Add(lifetime)) {
		t.Fatalf("got %+v, want valid until %v", v, clk.Now().Add(lifetime))
	}
	if v := validate("not-a-token"); v.Valid || v.ExpiresAt != nil {
		t.Errorf("an unknown token validated: %+v", v)
	}
	clk.Step(lifetime)
	if validate(tok).Valid {
		t.Error("an expired token validated")
	}
	if a := do(t, "GET", srv.URL()+"/_sim/validate", "", ""); a.Status != http.StatusNotFound {
		t.Errorf("GET validate: HTTP %d", a.Status)
	}
}

func TestControlCredentials(t *testing.T) {
	srv, _ := start(t)
	doc := `
apps:
- {appKey: benchapp, appSecret: bench-secret, tokenLifetime: 30s}
users:
- {clientId: benchuser, clientSecret: bench-user-secret, refreshTokens: [bench-rt]}
`
	a := do(t, "POST", srv.URL()+"/_sim/credentials", "application/yaml", doc)
	if a.Status != http.StatusNoContent || a.Raw != "" {
		t.Fatalf("POST credentials: HTTP %d %q", a.Status, a.Raw)
	}
	got := post(t, srv, simulator.PathAppAccessToken, map[string]string{"appKey": "benchapp", "appSecret": "bench-secret"})
	if got.Status != 200 || got.ExpireIn != 30 {
		t.Fatalf("the posted app does not work: HTTP %d expireIn %d", got.Status, got.ExpireIn)
	}
	if srv.CurrentRefreshToken("benchuser") != "bench-rt" {
		t.Error("the posted user is missing")
	}
	for _, bad := range []string{`apps: [{appKey: x}]`, `apps: [{appKey: x, appSecret: y, extra: 1}]`, `{`} {
		a := do(t, "POST", srv.URL()+"/_sim/credentials", "application/json", bad)
		if a.Status != http.StatusBadRequest {
			t.Errorf("POST %q: HTTP %d, want 400", bad, a.Status)
		}
	}
	bad := do(t, "POST", srv.URL()+"/_sim/credentials", "application/json", `{"apps":[{"appKey":"k","appSecret":"leak-me","tokenLifetime":"1ms"}]}`)
	if bad.Status != http.StatusBadRequest || strings.Contains(bad.Raw, "leak-me") {
		t.Errorf("HTTP %d %s: want 400 without the secret", bad.Status, bad.Raw)
	}
	if a := do(t, "GET", srv.URL()+"/_sim/credentials", "", ""); a.Status != http.StatusNotFound {
		t.Errorf("GET credentials: HTTP %d, want 404 (credentials are never listed)", a.Status)
	}
	if a := do(t, "GET", srv.URL()+"/_sim/nothing", "", ""); a.Status != http.StatusNotFound {
		t.Errorf("unknown control path: HTTP %d", a.Status)
	}
}
