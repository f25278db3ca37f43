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
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// nest wraps inner in depth calls of fn: quote (quote (.AccessToken)).
func nest(fn, inner string, depth int) string {
	return strings.Repeat(fn+" (", depth) + inner + strings.Repeat(")", depth)
}

// chain is {{ .AccessToken | fn | fn ... }} with n calls.
func chain(fn string, n int) string {
	return "{{ .AccessToken" + strings.Repeat(" | "+fn, n) + " }}"
}

// templateBombs are templates a hostile namespace editor could write to exhaust the process's
// memory: each either renders within the bounds or is refused with TemplateInvalid.
var templateBombs = map[string]string{
	// The template: 40 quotes in one pipeline, each roughly doubling the string.
	"40 quotes in a pipeline": chain("quote", 40),
	"pipeline of 5 commands":  chain("quote", 4),
	"nested quotes":           "{{ " + nest("quote", ".AccessToken", 31) + " }}",
	"nested toJson":           "{{ " + nest("toJson", ".AccessToken", 31) + " }}",
	"nested b64enc":           "{{ " + nest("b64enc", ".AccessToken", 31) + " }}",
	"nested mixed":            "{{ " + strings.Repeat("toJson (quote (b64enc (", 10) + ".AccessToken" + strings.Repeat(")))", 10) + " }}",
	"nested pipelines of 3":   "{{ " + strings.Repeat("(", 10) + ".AccessToken" + strings.Repeat(" | quote | toJson)", 10) + " | quote }}",
	"33 actions":              strings.Repeat("{{ .AccessToken | quote }}", 33),
	"32 growing actions":      strings.Repeat("{{ "+nest("quote", ".AccessToken | toJson | quote", 7)+" }}", 4),
}

// TestTemplateBounds: the parse-time bounds (4 commands a pipeline, 32 actions a template, nested
// pipelines included) and the evaluation-time ones (64 KiB a function's input and output), each
// refused as TemplateInvalid naming the key and the bound, never the token.
func TestTemplateBounds(t *testing.T) {
	if n := len(chain("quote", 40)); n != 338 {
		t.Fatalf("the issue's template has %d characters, want 338", n)
	}
	tests := map[string]struct {
		tmpl    string // the template of key k
		wantErr string // a fragment of the error (the TemplateInvalid message); "" when it renders
	}{
		"4 commands":                        {tmpl: chain("quote", 3)},
		"5 commands":                        {tmpl: chain("quote", 4), wantErr: "more than 4 commands"},
		"5 commands in a nested pipeline":   {tmpl: "{{ quote (" + strings.TrimSuffix(strings.TrimPrefix(chain("b64enc", 4), "{{ "), " }}") + ") }}", wantErr: "more than 4 commands"},
		"32 actions":                        {tmpl: strings.Repeat("{{ .Type }}", 32)},
		"33 actions":                        {tmpl: strings.Repeat("{{ .Type }}", 33), wantErr: "more than 32 actions"},
		"32 actions with nested pipelines":  {tmpl: strings.Repeat("{{ quote (.Type) }}", 16)},
		"33 actions with nested pipelines":  {tmpl: "{{ .Type }}" + strings.Repeat("{{ quote (.Type) }}", 16), wantErr: "more than 32 actions"},
		"31 nested calls within the bounds": {tmpl: "{{ " + nest("b64enc", ".Type", 31) + " }}"},
		"33 nested pipelines":               {tmpl: "{{ " + nest("quote", ".Type", 32) + " }}", wantErr: "more than 32 actions"},
		"nested quotes over 64 KiB":         {tmpl: "{{ " + nest("quote", ".AccessToken", 30) + " }}", wantErr: "quote would produce more than 64 KiB"},
		"nested toJson over 64 KiB":         {tmpl: "{{ " + nest("toJson", ".AccessToken", 30) + " }}", wantErr: "toJson would produce more than 64 KiB"},
		"three b64enc on a short token":     {tmpl: chain("b64enc", 3)},
		"nested b64enc over 64 KiB":         {tmpl: "{{ " + nest("b64enc", ".AccessToken", 31) + " }}", wantErr: "b64enc would produce more than 64 KiB"},
		"literal text only":                 {tmpl: "plain"},
		"the issue's 40 quotes are refused": {tmpl: chain("quote", 40), wantErr: "more than 4 commands"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := withTemplate(map[string]string{"k": tc.tmpl})
			f := dryRun(spec)
			if tc.wantErr == "" {
				if f != nil {
					t.Fatalf("refused: %s", f.Error())
				}
				return
			}
			if f == nil {
				t.Fatalf("got %v, want an error containing %q", f, tc.wantErr)
			}
			if !strings.Contains(f.Error(), "spec.target.template.data[k]") || !strings.Contains(f.Error(), tc.wantErr) {
				t.Fatalf("message %q, want the key and %q", f.Error(), tc.wantErr)
			}
			if strings.Contains(f.Error(), strings.Repeat("x", 16)) {
				t.Fatalf("message %q quotes the rendered token", f.Error())
			}
		})
	}
}

// TestFunctionsRefuseLargeInputs: a function called on a value over 64 KiB refuses it before
// doing any work, and the functions of one render produce at most 1 MiB in all, whatever the
// fields hold.
func TestFunctionsRefuseLargeInputs(t *testing.T) {
	big := Fields{AccessToken: strings.Repeat("x", 64<<10+1)}
	for _, fn := range []string{"quote", "b64enc", "toJson"} {
		tmpls, err := Parse(withTemplate(map[string]string{"k": "{{ " + fn + " .AccessToken }}"}).Template)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Render(tmpls, big)
		if err == nil || !strings.Contains(err.Error(), fn+" refuses an input over 64 KiB") {
			t.Errorf("%s on 64 KiB + 1: %v", fn, err)
		}
	}
	// 50 KiB of plain text quoted 12 times over grows by a few KiB: each action writes about
	// 54 KiB, within the output limit, and produces twelve ~52 KiB values on the way. The second
	// key's action runs into the 1 MiB budget of the render before its output is written.
	fields := Fields{AccessToken: strings.Repeat("x", 50<<10)}
	deep := "{{ " + nest("quote", ".AccessToken", 12) + " }}"
	tmpls, err := Parse(withTemplate(map[string]string{"a": deep, "b": deep}).Template)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Render(tmpls, fields)
	if err == nil || !strings.Contains(err.Error(), "spec.target.template.data[b]: the template functions would produce more than 1024 KiB in all") {
		t.Fatalf("got %v, want the render budget refusing key b", err)
	}
	if one, err := Parse(withTemplate(map[string]string{"a": deep}).Template); err != nil {
		t.Fatal(err)
	} else if _, err := Render(one, fields); err != nil {
		t.Fatalf("one such key alone: %v", err)
	}
}

// TestTemplateBombsStayBounded renders (dry run and real render) each template bomb and measures
// what the process allocates doing so: at most maxBombAlloc each, where the unbounded functions
// needed terabytes for the 40 quotes.
func TestTemplateBombsStayBounded(t *testing.T) {
	// The 1 MiB render budget, the 64 KiB output, the parse trees and text/template's own work.
	const maxBombAlloc = 2 << 20
	fields := Fields{AccessToken: strings.Repeat("a", 64), ExpiresAt: "2026-11-25T15:30:00Z", Type: "InternalApp"}
	for name, bomb := range templateBombs {
		spec := withTemplate(map[string]string{"k": bomb, "l": bomb})
		alloc := allocatedBy(func() {
			_ = dryRun(spec)
			if tmpls, err := Parse(spec.Template); err == nil {
				_, _ = Render(tmpls, fields)
			}
		})
		t.Logf("%-24s allocated %7.1f KiB", name, float64(alloc)/1024)
		if alloc > maxBombAlloc {
			t.Errorf("%s allocated %d bytes, want at most %d", name, alloc, maxBombAlloc)
		}
	}
}

// allocatedBy is the bytes the process allocated while f ran (the most of three runs): the test
// runs alone (no t.Parallel, no manager in this test), so other goroutines add little.
func allocatedBy(f func()) uint64 {
	var most uint64
	for range 3 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		most = max(most, after.TotalAlloc-before.TotalAlloc)
	}
	return most
}

// TestEncodedLengths: the lengths the functions charge before allocating are exactly those of
// strconv.Quote and json.Marshal.
func TestEncodedLengths(t *testing.T) {
	for _, s := range encodingSamples() {
		checkEncodedLengths(t, s)
	}
}

func FuzzEncodedLengths(f *testing.F) {
	for _, s := range encodingSamples() {
		f.Add(s)
	}
	f.Fuzz(checkEncodedLengths)
}

func encodingSamples() []string {
	return []string{"", "plain", `"\`, "\a\b\f\n\r\t\v\x00\x1f\x7f", "<>&", "\u2028\u2029", "\u00a0\u00ad",
		"\xff\xfe", "\xed\xa0\x80", "日本語", "\U0001F600", "\U000E0001", "\ufffd", "a\xc0b", string(rune(0x10FFFF)),
		"\u0378", "\U0010FFFE"}
}

func checkEncodedLengths(t *testing.T, s string) {
	if got, want := quotedLen(s), len(strconv.Quote(s)); got != want {
		t.Errorf("quotedLen(%q) = %d, want %d", s, got, want)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := jsonStringLen(s); got != len(b) {
		t.Errorf("jsonStringLen(%q) = %d, want %d", s, got, len(b))
	}
}
