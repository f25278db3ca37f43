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

package plugin

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Whatever the API server hands the plugin (condition and event messages, reasons, error texts)
// was written by someone else: an event's message can carry terminal escape sequences that clear
// the screen, rewrite earlier lines or retitle the window. Everything the plugin prints goes
// through terminalWriter, which shows such characters as escapes instead of sending them.

// terminalWriter passes text to w with every control character but newline and tab (C0, DEL,
// C1), every bidirectional-text control and every byte that is not UTF-8 replaced by its Go
// escape (\x1b, \u202e): visible, and inert on any terminal.
type terminalWriter struct{ w io.Writer }

// Write writes p with its unsafe characters escaped. Each call stands alone: the plugin never
// splits a character across writes (a split one would show escaped, never raw).
func (t terminalWriter) Write(p []byte) (int, error) {
	if safeForTerminal(p) {
		return t.w.Write(p)
	}
	if _, err := io.WriteString(t.w, escapeForTerminal(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// safeForTerminal reports whether p needs no escaping (the common case, written as is).
func safeForTerminal(p []byte) bool {
	for i := 0; i < len(p); {
		if b := p[i]; b < utf8.RuneSelf {
			if unsafeRune(rune(b)) {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n <= 1 || unsafeRune(r) {
			return false
		}
		i += n
	}
	return true
}

// escapeForTerminal replaces the unsafe characters of s by their escapes.
func escapeForTerminal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r) && r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// unsafeRune: a control character other than newline and tab, or a bidirectional-text control.
func unsafeRune(r rune) bool {
	return (unicode.IsControl(r) && r != '\n' && r != '\t') || unicode.Is(unicode.Bidi_Control, r)
}
