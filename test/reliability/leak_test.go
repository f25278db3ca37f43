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

package reliability

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// simTokenShape matches the simulator's token values (16 random bytes, hex): it catches a token
// the tests never got to see.
var simTokenShape = regexp.MustCompile(`(^|[^0-9a-fA-F])([0-9a-f]{32})([^0-9a-fA-F]|$)`)

// hexDumpLine is a line of the hex dumps client-go logs request and response bodies as.
var hexDumpLine = regexp.MustCompile(`^[0-9a-f]{8}  ((?:[0-9a-f]{2} {1,2}){1,16})`)

// testLeakScan runs after every case: no credential value (app, suite and client ids included)
// and no access or refresh token may appear in the managers' logs at their highest verbosity
// (read as text, as JSON strings, and with client-go's hex dumps of bodies decoded; each value
// also base64-encoded, as Secret data is in JSON), in any event, in any DingTalkToken's status,
// or in the metrics registry. Target Secrets hold their token but never a credential or a
// refresh token.
func testLeakScan(t *testing.T) {
	needles := leaks.snapshot()
	if len(needles) == 0 {
		t.Skip("no case ran")
	}
	ctx := quiet
	// The scanner itself: a value inside a body client-go would dump is found.
	planted := "rel-canary-" + testutil.RandHex(9)
	line, _ := json.Marshal(map[string]string{"msg": "Response Body", "body": hex.Dump([]byte(`{"data":{"k":"` + planted + `"}}`))})
	if found := false; !found {
		for _, v := range decodedLogViews(line) {
			found = found || bytes.Contains(v, []byte(planted))
		}
		if !found {
			t.Fatal("the scanner does not find a value in a hex-dumped body")
		}
	}
	log := logs.Bytes()
	if !bytes.Contains(log, []byte(`"level":"debug"`)) {
		t.Errorf("the managers' logs hold no debug line: the scan would prove nothing")
	}
	sources := map[string][]byte{"managers' logs": log}
	for i, view := range decodedLogViews(log) {
		sources[fmt.Sprintf("managers' logs (decoded body %d)", i)] = view
	}

	var events eventsv1.EventList
	if err := k8s.List(ctx, &events); err != nil {
		t.Fatal(err)
	}
	sources["events.k8s.io events"] = mustJSON(t, events.Items)
	var coreEvents corev1.EventList
	if err := k8s.List(ctx, &coreEvents); err != nil {
		t.Fatal(err)
	}
	sources["core events"] = mustJSON(t, coreEvents.Items)
	var toks v1alpha1.DingTalkTokenList
	if err := k8s.List(ctx, &toks); err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks.Items {
		sources["status of "+tok.Namespace+"/"+tok.Name] = mustJSON(t, tok.Status)
	}
	fams, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sources["metrics"] = []byte(fmt.Sprint(fams))
	t.Logf("scanning %d bytes of logs, %d events, %d statuses and the metrics for %d values",
		len(log), len(events.Items)+len(coreEvents.Items), len(toks.Items), len(needles))

	for where, b := range sources {
		for v, what := range needles {
			if bytes.Contains(b, []byte(v)) || bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString([]byte(v)))) {
				t.Errorf("%s: a %s value leaked", where, what)
			}
		}
		if m := simTokenShape.FindSubmatch(b); m != nil {
			t.Errorf("%s: a token-shaped value leaked (%s...)", where, m[2][:6])
		}
	}

	// Target Secrets hold a token, never a credential or a refresh token.
	var secrets corev1.SecretList
	if err := k8s.List(ctx, &secrets, client.MatchingLabels{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if strings.HasSuffix(s.Name, v1alpha1.RefreshTokenSecretSuffix) {
			continue
		}
		for key, val := range s.Data {
			for v, what := range needles {
				if what != "accessToken" && bytes.Contains(val, []byte(v)) {
					t.Errorf("target Secret %s/%s key %s holds a %s value", s.Namespace, s.Name, key, what)
				}
			}
		}
	}
}

// decodedLogViews returns, for each JSON log line, its string values with client-go's hex dumps
// turned back into the bytes they show.
func decodedLogViews(log []byte) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		var fields map[string]any
		if json.Unmarshal(sc.Bytes(), &fields) != nil {
			continue
		}
		var strs []string
		collectStrings(fields, &strs)
		for _, s := range strs {
			if d := undump(s); len(d) > 0 {
				out = append(out, d)
			}
		}
	}
	return out
}

func collectStrings(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case map[string]any:
		for _, e := range x {
			collectStrings(e, out)
		}
	case []any:
		for _, e := range x {
			collectStrings(e, out)
		}
	}
}

// undump decodes a hex dump (as encoding/hex.Dump writes it); nil when s is none.
func undump(s string) []byte {
	var out []byte
	for _, line := range strings.Split(s, "\n") {
		m := hexDumpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		b, err := hex.DecodeString(strings.ReplaceAll(m[1], " ", ""))
		if err != nil {
			continue
		}
		out = append(out, b...)
	}
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
