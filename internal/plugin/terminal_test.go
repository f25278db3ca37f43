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
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestTerminalWriter(t *testing.T) {
	for name, tc := range map[string]struct {
		in, want string // written, and what reaches the terminal
	}{
		"plain text, newlines and tabs pass":  {in: "Ready:\tTrue\n令牌 ok\n", want: "Ready:\tTrue\n令牌 ok\n"},
		"ANSI colour and screen clearing":     {in: "\x1b[2J\x1b[1;31mRED\x1b[0m", want: `\x1b[2J\x1b[1;31mRED\x1b[0m`},
		"carriage return hides what precedes": {in: "bad\rgood", want: `bad\x0dgood`},
		"window title (OSC) ending in BEL":    {in: "\x1b]0;pwned\x07", want: `\x1b]0;pwned\x07`},
		"C1 CSI and DEL":                      {in: "a\u009b2Jb\x7f", want: `a\x9b2Jb\x7f`},
		"bidirectional override":              {in: "txt.\u202egpj", want: `txt.\u202egpj`},
		"bytes that are not UTF-8":            {in: "a\xff\xc3b", want: `a\xff\xc3b`},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := terminalWriter{&buf}.Write([]byte(tc.in))
			if err != nil || n != len(tc.in) {
				t.Fatalf("Write = %d, %v; want %d", n, err, len(tc.in))
			}
			if buf.String() != tc.want {
				t.Errorf("got %q, want %q", buf.String(), tc.want)
			}
		})
	}
}

// An event's message and reason carrying escape sequences reach the terminal as text: status
// renders through the writer every command prints with.
func TestStatusEscapesServerText(t *testing.T) {
	rep := &statusReport{Token: readyToken(), Secrets: healthySecrets(), Events: []eventReport{{
		Time: now.Add(-time.Minute), Type: "Warning", Reason: "Injected\x1b[8m", Count: 1,
		Message: "\x1b[2J\x1b[H\x1b[32mAll tokens valid\x1b[0m\r\x1b]0;owned\x07",
	}}}
	var buf bytes.Buffer
	if err := renderStatus(terminalWriter{&buf}, rep, now); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.ContainsAny(out, "\x1b\r\x07") {
		t.Errorf("control characters reached the terminal:\n%q", out)
	}
	for _, want := range []string{`Injected\x1b[8m`, `\x1b[2J\x1b[H\x1b[32mAll tokens valid\x1b[0m \x1b]0;owned\x07`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
}
