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

package tmpl

import (
	"strings"
	"testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// templated is what Check reads of a spec.
type templated struct {
	Template *v1alpha1.TargetTemplate
	Type     v1alpha1.TokenType
}

func withTemplate(data map[string]string) templated {
	return templated{Type: v1alpha1.TokenTypeUser, Template: &v1alpha1.TargetTemplate{Data: data}}
}

// dryRun is Check of a spec's template.
func dryRun(s templated) error { return Check(s.Template, s.Type) }

func TestTemplates(t *testing.T) {
	fields := Fields{AccessToken: "tok\"en", ExpiresAt: "2026-11-25T15:30:00Z", Type: "User", CorpID: "dingcorp"}
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
			tmpls, err := Parse(withTemplate(map[string]string{"k": tc.tmpl}).Template)
			var out map[string][]byte
			if err == nil {
				out, err = Render(tmpls, fields)
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
	if f := dryRun(withTemplate(data)); f == nil || !strings.Contains(f.Error(), "64 KiB") {
		t.Fatalf("dry run = %v, want TemplateInvalid naming the 64 KiB limit", f)
	}
	delete(data, "ka")
	for k := range data {
		if len(data) <= 8 {
			break
		}
		delete(data, k)
	}
	if f := dryRun(withTemplate(data)); f != nil {
		t.Fatalf("8 keys of 8,000 characters: %v", f)
	}
}
