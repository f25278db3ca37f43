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
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega" //nolint:revive // Gomega's DSL reads best unqualified
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/tokenproxy"
)

var discard = slog.New(slog.DiscardHandler)

// volumeAt writes one version of a token into a kubelet-style volume.
func volumeAt(t *testing.T, v *testenv.SecretVolume, token string, expires time.Time) {
	t.Helper()
	if err := v.WriteStrings(map[string]string{"accessToken": token, "expiresAt": expires.UTC().Format(time.RFC3339)}); err != nil {
		t.Fatal(err)
	}
}

// TestSourceRechecksWithoutEvents: with no watch, a swap is seen on the first use more than a
// second after the last check (one stat), not before; an expiry is seen at once.
func TestSourceRechecksWithoutEvents(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	v := &testenv.SecretVolume{Dir: filepath.Join(t.TempDir(), "token")}
	volumeAt(t, v, "token-one", clk.Now().Add(time.Hour))
	src := tokenproxy.NewSource(v.Dir, "accessToken", "expiresAt", clk, discard)
	value := func() string {
		tok, err := src.Current()
		if err != nil {
			return err.Error()
		}
		return tok.Value()
	}
	if got := value(); got != "token-one" {
		t.Fatalf("first read: %q", got)
	}
	volumeAt(t, v, "token-two", clk.Now().Add(2*time.Hour))
	clk.Step(999 * time.Millisecond)
	if got := value(); got != "token-one" {
		t.Errorf("within a second of the last check: %q, want the token held", got)
	}
	clk.Step(time.Millisecond)
	if got := value(); got != "token-two" {
		t.Errorf("a second after the last check: %q, want the swapped-in token", got)
	}
	if tok, _ := src.Reload(); tok.Value() != "token-two" || !tok.Expires.Equal(clk.Now().Add(2*time.Hour-time.Second)) {
		t.Errorf("Reload: expiry %s", tok.Expires)
	}
	clk.Step(2 * time.Hour)
	if _, err := src.Current(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("after the expiry: %v, want expired", err)
	}
}

// TestSourceWatchSeesTheSwap: with the watch, a swap is seen at once, with no clock step.
// TestSourceRecoversFromAFailedRead: a read that fails for a moment (here: the token file missing
// from the ..data directory at the first read, then put back in place, so the link does not move)
// is tried again at the next check: the failure does not stick until the next swap.
func TestSourceRecoversFromAFailedRead(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	v := &testenv.SecretVolume{Dir: filepath.Join(t.TempDir(), "token")}
	volumeAt(t, v, "token-one", clk.Now().Add(time.Hour))
	file, err := filepath.EvalSymlinks(filepath.Join(v.Dir, "accessToken"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file, file+".away"); err != nil {
		t.Fatal(err)
	}
	src := tokenproxy.NewSource(v.Dir, "accessToken", "expiresAt", clk, discard)
	if _, err := src.Current(); err == nil {
		t.Fatal("a missing token file was read")
	}
	if err := os.Rename(file+".away", file); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Second)
	if tok, err := src.Current(); err != nil || tok.Value() != "token-one" {
		t.Errorf("after the file came back: %v, want token-one", err)
	}
}

func TestSourceWatchSeesTheSwap(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	v := &testenv.SecretVolume{Dir: filepath.Join(t.TempDir(), "token")}
	volumeAt(t, v, "token-one", clk.Now().Add(time.Hour))
	src := tokenproxy.NewSource(v.Dir, "accessToken", "expiresAt", clk, discard)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.Watch(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	g := NewWithT(t)
	value := func() string { tok, _ := src.Current(); return tok.Value() }
	g.Eventually(value).WithTimeout(5 * time.Second).Should(Equal("token-one"))
	for _, next := range []string{"token-two", "token-three"} {
		volumeAt(t, v, next, clk.Now().Add(time.Hour))
		g.Eventually(value).WithTimeout(5*time.Second).WithPolling(5*time.Millisecond).Should(Equal(next), "no clock step: only the watch can tell")
	}
}

// TestKubeletSwapUnderLoad: clients call both listeners without a pause while the test swaps the
// token directory as the kubelet does, three times; the proxy sends each new token from the swap
// on, with no restart and no failed request.
func TestKubeletSwapUnderLoad(t *testing.T) {
	w := newWorld(t)
	first := w.token(t, "corp")
	w.mount(t, first)
	p := w.startProxy(t, func(o *tokenproxy.Options) { o.LogRequests = false })

	ctx, stop := context.WithCancel(t.Context())
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := p.url("api", "/v1.0/contact/users/union1")
			if i%2 == 1 {
				url = p.url("oapi", simulator.PathUserGet+"?userid=u1")
			}
			for ctx.Err() == nil {
				a, err := doErr(ctx, http.MethodGet, url, "", nil)
				if ctx.Err() != nil {
					return
				}
				sent.Add(1)
				if err != nil || !a.ok() {
					failed.Add(1)
				}
			}
		}()
	}
	g := NewWithT(t)
	lastToken := func() string {
		r := w.up.requests()
		if len(r) == 0 {
			return ""
		}
		toks := r[len(r)-1].tokensIn()
		if len(toks) != 1 {
			return "several"
		}
		return strings.TrimPrefix(toks[0], "Bearer ")
	}
	g.Eventually(lastToken).WithTimeout(5 * time.Second).Should(Equal(first))
	for range 3 {
		before := sent.Load()
		g.Eventually(sent.Load).WithTimeout(5*time.Second).Should(BeNumerically(">=", before+20), "requests go on between swaps")
		next := w.token(t, "corp")
		w.mount(t, next)
		g.Eventually(lastToken).WithTimeout(5*time.Second).WithPolling(time.Millisecond).Should(Equal(next), "the swapped-in token is sent")
	}
	before := sent.Load()
	g.Eventually(sent.Load).WithTimeout(5 * time.Second).Should(BeNumerically(">=", before+20))
	stop()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests sent, %d failed; want many and none failed", sent.Load(), failed.Load())
	}
	for path, results := range map[string]map[string]int64{
		simulator.PathUserByUnionID: w.results(simulator.PathUserByUnionID), simulator.PathUserGet: w.results(simulator.PathUserGet)} {
		if len(results) != 1 || results["success"] == 0 {
			t.Errorf("simulator's %s results %v: want successes only", path, results)
		}
	}
	t.Logf("%d requests through three swaps, none failed", sent.Load())
}

// TestRetryWhenTheTokenChanged: DingTalk answers that the token is invalid (each family's way)
// while the directory was swapped after the request started: the proxy sends the request once
// more, body included, with the new token, and the client sees the success. When the token did
// not change, or the body was too large to hold, DingTalk's answer goes to the client as it is.
func TestRetryWhenTheTokenChanged(t *testing.T) {
	tests := map[string]struct {
		listener, method, path, body string
		swap                         bool   // the directory is swapped while the first attempt is upstream
		retried                      bool   // a second attempt is wanted
		refused                      string // the simulator's result of the first attempt
		check                        func(answer) bool
	}{
		"new API, swapped": {listener: "api", method: "GET", path: "/v1.0/contact/users/union1", swap: true, retried: true,
			refused: "InvalidAuthentication", check: answer.ok},
		"topapi with a body, swapped": {listener: "oapi", method: "POST", path: simulator.PathTopUserGet, body: `{"userid":"manager1"}`,
			swap: true, retried: true, refused: "errcode:88:40014", check: answer.ok},
		"classic, swapped": {listener: "oapi", method: "GET", path: simulator.PathUserGet + "?userid=u1", swap: true, retried: true,
			refused: "errcode:40014", check: answer.ok},
		"new API, unchanged": {listener: "api", method: "GET", path: "/v1.0/contact/users/union1",
			refused: "InvalidAuthentication", check: func(a answer) bool { return a.status == 400 && a.Code == "InvalidAuthentication" }},
		"classic, unchanged": {listener: "oapi", method: "GET", path: simulator.PathUserGet + "?userid=u1",
			refused: "errcode:40014", check: func(a answer) bool { return a.status == 200 && a.ErrCode != nil && *a.ErrCode == 40014 }},
		"topapi with a body over 1 MiB, swapped": {listener: "oapi", method: "POST", path: simulator.PathTopUserGet,
			body: `{"userid":"manager1","pad":"` + strings.Repeat("x", 1<<20) + `"}`, swap: true, refused: "errcode:88:40014",
			check: func(a answer) bool { return a.ErrCode != nil && *a.ErrCode == 88 && a.SubCode == "40014" }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			bad := w.sensitive.New(testenv.AccessToken, "revoked-") // DingTalk no longer knows it
			w.mount(t, bad)
			p := w.startProxy(t, nil)
			good := w.token(t, "app")
			release := w.up.hold()
			got := make(chan answer, 1)
			go func() {
				a, _ := doErr(t.Context(), tc.method, p.url(tc.listener, tc.path), tc.body, jsonHeader)
				got <- a
			}()
			<-w.up.arrived // the first attempt is upstream, with the old token
			if tc.swap {
				w.mount(t, good)
			}
			w.up.unhold()
			release()
			a := <-got
			if !tc.check(a) {
				t.Errorf("the client got HTTP %d %s", a.status, truncate(a.body))
			}
			reqs := w.up.requests()
			want := 1
			if tc.retried {
				want = 2
			}
			if len(reqs) != want {
				t.Fatalf("%d attempts upstream, want %d", len(reqs), want)
			}
			if tc.retried {
				if toks := reqs[1].tokensIn(); len(toks) != 1 || !strings.Contains(toks[0], good) {
					t.Error("the second attempt did not carry the new token alone")
				}
				if reqs[1].body != reqs[0].body || reqs[1].method != reqs[0].method || reqs[1].path != reqs[0].path {
					t.Error("the second attempt is not the same request")
				}
			}
			all := map[string]int64{}
			for _, path := range []string{simulator.PathUserByUnionID, simulator.PathTopUserGet, simulator.PathUserGet} {
				for r, n := range w.results(path) {
					all[r] += n
				}
			}
			if all[tc.refused] != 1 || tc.retried && all["success"] != 1 {
				t.Errorf("simulator results %v: want one %s then, when retried, one success", all, tc.refused)
			}
			retries := `dingtalk_token_proxy_retries_total{upstream="` + tc.listener + `"} 1`
			if m := p.metrics(t); strings.Contains(m, retries) != tc.retried {
				t.Errorf("retries metric: %s", grep(m, "retries_total{"))
			}
		})
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
