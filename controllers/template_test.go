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

package controllers

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

func withTemplate(data map[string]string) tokenSpec {
	return specOfDingTalkToken(&v1alpha1.DingTalkToken{Spec: v1alpha1.DingTalkTokenSpec{
		Type:   v1alpha1.TokenTypeUser,
		Target: &v1alpha1.Target{Template: &v1alpha1.TargetTemplate{Data: data}},
	}})
}

func TestTemplates(t *testing.T) {
	fields := templateFields{AccessToken: "tok\"en", ExpiresAt: "2026-11-25T15:30:00Z", Type: "User", CorpID: "dingcorp"}
	tests := map[string]struct {
		tmpl    string // the template
		want    string // rendered output, when valid
		wantErr string // a fragment of the error, when refused
	}{
		"field action":             {tmpl: `{"token":"{{ .AccessToken }}"}`, want: `{"token":"tok"en"}`},
		"toJson":                   {tmpl: `{"token":{{ toJson .AccessToken }}}`, want: `{"token":"tok\"en"}`},
		"quote":                    {tmpl: `t={{ quote .AccessToken }}`, want: `t="tok\"en"`},
		"b64enc in a pipeline":     {tmpl: `{{ .CorpID | b64enc }}`, want: `ZGluZ2NvcnA=`},
		"nested call":              {tmpl: `{{ quote (b64enc .Type) }}`, want: `"VXNlcg=="`},
		"every field":              {tmpl: `{{.Type}} {{.CorpID}} {{.ExpiresAt}}`, want: `User dingcorp 2026-11-25T15:30:00Z`},
		"range refused":            {tmpl: `{{ range .AccessToken }}x{{ end }}`, wantErr: "range is not allowed"},
		"with refused":             {tmpl: `{{ with .AccessToken }}{{ . }}{{ end }}`, wantErr: "with is not allowed"},
		"if refused":               {tmpl: `{{ if .AccessToken }}x{{ end }}`, wantErr: "if is not allowed"},
		"define refused":           {tmpl: `{{ define "x" }}{{ .AccessToken }}{{ end }}`, wantErr: "define and block"},
		"block refused":            {tmpl: `{{ block "x" . }}{{ .AccessToken }}{{ end }}`, wantErr: "define and block"},
		"template refused":         {tmpl: `{{ template "x" }}`, wantErr: "template"},
		"printf refused":           {tmpl: `{{ printf "%s" .AccessToken }}`, wantErr: "function printf"},
		"unknown field refused":    {tmpl: `{{ .Secret }}`, wantErr: "field .Secret"},
		"dot refused":              {tmpl: `{{ . }}`, wantErr: "{{ . }}"},
		"variable refused":         {tmpl: `{{ $x := .AccessToken }}{{ $x }}`, wantErr: "variables"},
		"syntax error":             {tmpl: `{{ .AccessToken `, wantErr: "spec.target.template.data[k]"},
		"call refused":             {tmpl: `{{ call .AccessToken }}`, wantErr: "function call"},
		"index refused":            {tmpl: `{{ index .AccessToken 0 }}`, wantErr: "function index"},
		"literal argument refused": {tmpl: `{{ quote "x" }}`, wantErr: "a literal"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tmpls, err := parseTemplates(withTemplate(map[string]string{"k": tc.tmpl}).Template)
			var out map[string][]byte
			if err == nil {
				out, err = renderTemplates(tmpls, fields)
			}
			switch {
			case tc.wantErr != "" && err == nil:
				t.Fatalf("accepted, rendered %q; want an error containing %q", out["k"], tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tc.wantErr)
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr == "" && string(out["k"]) != tc.want:
				t.Fatalf("rendered %q, want %q", out["k"], tc.want)
			}
			if err != nil && strings.Contains(err.Error(), fields.AccessToken) {
				t.Fatalf("error %q quotes the token", err)
			}
		})
	}
}

func TestTemplateOutputLimit(t *testing.T) {
	// 16 keys of 8,000 characters each render 128,000 bytes: over the 64 KiB budget.
	data := map[string]string{}
	for i := range 16 {
		data["k"+string(rune('a'+i))] = strings.Repeat("x", 8000)
	}
	if f := dryRunTemplates(withTemplate(data)); f == nil || !strings.Contains(f.message, "64 KiB") || f.reason != v1alpha1.ReasonTemplateInvalid {
		t.Fatalf("dry run = %v, want TemplateInvalid naming the 64 KiB limit", f)
	}
	delete(data, "ka")
	for k := range data {
		if len(data) <= 8 {
			break
		}
		delete(data, k)
	}
	if f := dryRunTemplates(withTemplate(data)); f != nil {
		t.Fatalf("8 keys of 8,000 characters: %v", f)
	}
}

// TestFetcherShares checks the shared fetch without a cluster: concurrent misses collapse into one
// call, a fresh answer is served from the cache, an unacceptable one is not, and a Retry-After
// sets a floor for the set.
func TestFetcherShares(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	f := newFetcher(clk)
	var calls atomic.Int32
	release := make(chan struct{})
	call := func(context.Context) (dingtalk.Token, error) {
		calls.Add(1)
		<-release
		return dingtalk.Token{AccessToken: "t", ExpireIn: time.Minute}, nil
	}
	key := f.setKey("InternalApp", "app", "secret", "", "http://x")
	accept := func(issued) bool { return true }
	var wg sync.WaitGroup
	var callers atomic.Int32 // fetches that report their own call (not a shared one)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, called, err := f.fetch(context.Background(), key, accept, call)
			if err != nil {
				t.Error(err)
			}
			if called {
				callers.Add(1)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the five join one flight
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("5 concurrent fetches made %d calls, want 1", n)
	}
	if n := callers.Load(); n != 1 {
		t.Fatalf("%d of 5 concurrent fetches reported their own call, want 1 (the others joined it)", n)
	}
	if _, called, _ := f.fetch(context.Background(), key, accept, call); called || calls.Load() != 1 {
		t.Fatalf("a fresh cached token was not served from the cache")
	}
	if _, called, _ := f.fetch(context.Background(), key, func(issued) bool { return false }, call); !called || calls.Load() != 2 {
		t.Fatalf("an unacceptable cached token was served")
	}
	other := f.setKey("InternalApp", "app", "wrong-secret", "", "http://x")
	if _, called, _ := f.fetch(context.Background(), other, accept, call); !called || calls.Load() != 3 {
		t.Fatalf("a different secret was served the cached token")
	}
	if other == key || strings.Contains(key, "secret") {
		t.Fatalf("keys %q and %q: equal, or revealing", key, other)
	}

	limited := func(context.Context) (dingtalk.Token, error) {
		return dingtalk.Token{}, &dingtalk.Error{Class: dingtalk.ClassRateLimited, RetryAfter: 2 * time.Hour}
	}
	third := f.setKey("ThirdPartySuite", "suite", "secret", "ticket", "http://x")
	if _, _, err := f.fetch(context.Background(), third, accept, limited); dingtalk.ClassOf(err) != dingtalk.ClassRateLimited {
		t.Fatalf("err = %v", err)
	}
	if got := f.floor(third); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("floor = %s, want Retry-After capped at 1h", got)
	}
	clk.Step(time.Hour)
	if got := f.floor(third); !got.IsZero() {
		t.Fatalf("floor after an hour = %s, want none", got)
	}
}

// TestFetchOutlivesItsCaller: a caller whose context ends (the manager stopping) still gets the
// answer of the call it started: a rotated user refresh token is never dropped on the floor.
func TestFetchOutlivesItsCaller(t *testing.T) {
	f := newFetcher(clocktesting.NewFakeClock(t0))
	ctx, cancel := context.WithCancel(context.Background())
	call := func(callCtx context.Context) (dingtalk.Token, error) {
		cancel() // the caller's context ends while DingTalk is answering
		time.Sleep(20 * time.Millisecond)
		if callCtx.Err() != nil {
			return dingtalk.Token{}, callCtx.Err()
		}
		return dingtalk.Token{AccessToken: "t", RefreshToken: "rotated", ExpireIn: time.Minute}, nil
	}
	got, _, err := f.fetch(ctx, "user-key", nil, call)
	if err != nil || got.RefreshToken != "rotated" {
		t.Fatalf("fetch = %+v, %v; want the answer with the rotated refresh token", got, err)
	}
}

// TestTargetDataCorpID: .CorpID is the org of the token: DingTalk's answer (User), else, for a
// ThirdPartyApp token (corpAccessToken answers no corpId), spec.corpId.
func TestTargetDataCorpID(t *testing.T) {
	tests := map[string]struct {
		typ      v1alpha1.TokenType // spec.type
		specCorp string             // spec.corpId
		heldCorp string             // the corpId held with the token
		want     string             // the rendered .CorpID
	}{
		"third-party app recovered after a restart": {typ: v1alpha1.TokenTypeThirdPartyApp, specCorp: "dingspec", want: "dingspec"},
		"third-party app as issued":                 {typ: v1alpha1.TokenTypeThirdPartyApp, specCorp: "dingnew", heldCorp: "dingissued", want: "dingissued"},
		"user: DingTalk's answer":                   {typ: v1alpha1.TokenTypeUser, heldCorp: "dinguser", want: "dinguser"},
		"internal app: none":                        {typ: v1alpha1.TokenTypeInternalApp, want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := withTemplate(map[string]string{"corp": "{{ .CorpID }}"})
			spec.Type, spec.CorpID = tc.typ, tc.specCorp
			d, err := targetSecret(spec, &heldToken{AccessToken: "tok", CorpID: tc.heldCorp, ExpiresAt: t0}, types.NamespacedName{})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(d.Data["corp"]); got != tc.want {
				t.Errorf(".CorpID = %q, want %q", got, tc.want)
			}
		})
	}
}
