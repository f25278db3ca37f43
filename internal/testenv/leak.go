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

package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testutil"
)

// Kind says what a sensitive value is, and so where it may be.
type Kind string

const (
	// Credential: app and suite keys and secrets, suite tickets, client ids and secrets, auth
	// codes, bootstrap refresh tokens. Never anywhere the operator writes.
	Credential Kind = "credential"
	// AccessToken: in its target Secret only.
	AccessToken Kind = "access token"
	// RefreshToken: a rotated refresh token, in its refresh-token Secret only.
	RefreshToken Kind = "refresh token"
	// SuiteTicket: a suite ticket DingTalk pushed over Stream mode, in suite-ticket Secrets only
	// (like every Credential, never in a log, event, status, metric or target Secret).
	SuiteTicket Kind = "suite ticket"
)

// minSecretValue is the shortest Secret value AddSecret records: shorter ones match by chance.
const minSecretValue = 8

// Sensitive is the set of values a suite handled that must never leak. It is safe for
// concurrent use.
type Sensitive struct {
	mu     sync.Mutex
	values map[string]Kind
}

// Add records values of a kind (empty ones are ignored; a value keeps its first kind).
func (s *Sensitive) Add(k Kind, vs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = map[string]Kind{}
	}
	for _, v := range vs {
		if _, ok := s.values[v]; v != "" && !ok {
			s.values[v] = k
		}
	}
}

// New returns a fresh random value (prefix and 24 hex digits: never the simulator's 32-digit
// token shape) and records it.
func (s *Sensitive) New(k Kind, prefix string) string {
	v := prefix + testutil.RandHex(12)
	s.Add(k, v)
	return v
}

// AddSecret records the values of a Secret the operator wrote: the tokens of a target Secret,
// the refresh token of a refresh-token Secret, the suite ticket of a suite-ticket Secret. Keys
// that hold nothing secret (expiresAt, corpId, the used-bootstrap record) and values shorter
// than 8 bytes are left out.
func (s *Sensitive) AddSecret(sec *corev1.Secret) {
	kind := AccessToken
	switch {
	case strings.HasSuffix(sec.Name, v1alpha1.RefreshTokenSecretSuffix):
		kind = RefreshToken
	case strings.HasSuffix(sec.Name, v1alpha1.SuiteTicketSecretSuffix):
		kind = SuiteTicket
	}
	for k, v := range sec.Data {
		if k == v1alpha1.ExpiresAtKey || k == v1alpha1.CorpIDKey || k == v1alpha1.UsedBootstrapKey || len(v) < minSecretValue {
			continue
		}
		s.Add(kind, string(v))
	}
}

// Len is the number of values recorded.
func (s *Sensitive) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.values)
}

func (s *Sensitive) snapshot() map[string]Kind {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Kind, len(s.values))
	for v, k := range s.values {
		out[v] = k
	}
	return out
}

// LeakScan looks for sensitive values where none may ever be: the managers' logs (as text, and
// with client-go's hex dumps of bodies decoded), every event (both APIs), every DingTalkToken's
// and ClusterDingTalkToken's status and the metrics of controller-runtime's registry; each value
// raw, hex-encoded and base64-encoded at any alignment, plus anything shaped like a simulator
// token (its tokens, and the tickets of its Stream gateway). It also checks that no log line
// carries a request or response body or a DingTalk Stream frame, and that target Secrets hold no
// credential, suite ticket or refresh token.
type LeakScan struct {
	// Values are what must never leak. The managed Secrets' values are added before the scan.
	Values *Sensitive
	// Logs are the managers' logs: JSON lines at the highest verbosity.
	Logs []byte
	// MustLog lists strings the logs must hold: proof that the managers logged at the verbosity
	// the scan is about (a scan of empty logs proves nothing).
	MustLog []string
}

// LeakReport is what a scan found.
type LeakReport struct {
	// Leaks describe each finding by where and what, never by the value.
	Leaks []string
	// Scanned summarises what was scanned.
	Scanned string
}

// Run collects what the managers wrote from the API server (with c) and the metrics registry,
// and scans it. An error means the scan could not run or had nothing to scan.
func (s LeakScan) Run(ctx context.Context, c client.Client) (*LeakReport, error) {
	ctx = Quiet(ctx)
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets, client.MatchingLabels{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}); err != nil {
		return nil, err
	}
	for i := range secrets.Items {
		s.Values.AddSecret(&secrets.Items[i])
	}
	values := s.Values.snapshot()
	if len(values) == 0 {
		return nil, errors.New("no values to scan for: the suite recorded none")
	}
	var r LeakReport
	for _, want := range s.MustLog {
		if !bytes.Contains(s.Logs, []byte(want)) {
			r.Leaks = append(r.Leaks, fmt.Sprintf("the logs lack %s: the managers did not log at the verbosity the scan needs", want))
		}
	}
	sources, counts, err := collect(ctx, c)
	if err != nil {
		return nil, err
	}
	sources["managers' logs"] = s.Logs
	for i, view := range decodedLogViews(s.Logs) {
		sources[fmt.Sprintf("managers' logs (decoded body %d)", i)] = view
	}
	r.Leaks = append(r.Leaks, bodyLines(s.Logs)...)
	r.Leaks = append(r.Leaks, frameLines(s.Logs)...)
	for where, text := range sources {
		r.Leaks = append(r.Leaks, findLeaks(where, text, values)...)
	}
	r.Leaks = append(r.Leaks, targetSecretLeaks(secrets.Items, values)...)
	sort.Strings(r.Leaks)
	r.Scanned = fmt.Sprintf("%d values against %d bytes of logs, %s, %d managed Secrets", len(values), len(s.Logs), counts, len(secrets.Items))
	return &r, nil
}

// ScanOutput looks for the recorded values (raw, hex-encoded or base64-encoded at any alignment)
// and for anything shaped like a simulator token in the output of a program that is not a
// manager (dingtalk-token-proxy's log, a metrics exposition), given by name. It returns the
// findings, by where and what, never the value; an error when there is nothing to scan for or a
// source is empty (a scan of nothing proves nothing).
func (s *Sensitive) ScanOutput(sources map[string][]byte) ([]string, error) {
	values := s.snapshot()
	if len(values) == 0 {
		return nil, errors.New("no values to scan for: the test recorded none")
	}
	var out []string
	for where, text := range sources {
		if len(text) == 0 {
			return nil, fmt.Errorf("nothing to scan in %s", where)
		}
		out = append(out, findLeaks(where, text, values)...)
	}
	sort.Strings(out)
	return out, nil
}

// collect reads every event, every DingTalkToken's and ClusterDingTalkToken's status and the
// metrics registry.
func collect(ctx context.Context, c client.Client) (map[string][]byte, string, error) {
	var events eventsv1.EventList
	if err := c.List(ctx, &events); err != nil {
		return nil, "", err
	}
	var coreEvents corev1.EventList
	if err := c.List(ctx, &coreEvents); err != nil {
		return nil, "", err
	}
	var toks v1alpha1.DingTalkTokenList
	if err := c.List(ctx, &toks); err != nil {
		return nil, "", err
	}
	var clusterToks v1alpha1.ClusterDingTalkTokenList
	if err := c.List(ctx, &clusterToks); err != nil {
		return nil, "", err
	}
	fams, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return nil, "", err
	}
	var metrics bytes.Buffer
	enc := expfmt.NewEncoder(&metrics, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			return nil, "", err
		}
	}
	if len(events.Items) == 0 || len(toks.Items)+len(clusterToks.Items) == 0 || metrics.Len() == 0 {
		return nil, "", fmt.Errorf("nothing to scan: %d events, %d DingTalkTokens, %d ClusterDingTalkTokens, %d bytes of metrics",
			len(events.Items), len(toks.Items), len(clusterToks.Items), metrics.Len())
	}
	sources := map[string][]byte{"events.k8s.io events": mustJSON(events.Items), "core events": mustJSON(coreEvents.Items), "metrics": metrics.Bytes()}
	for _, tok := range toks.Items {
		sources["status of "+tok.Namespace+"/"+tok.Name] = mustJSON(tok.Status)
	}
	for _, tok := range clusterToks.Items {
		sources["status of ClusterDingTalkToken "+tok.Name] = mustJSON(tok.Status)
	}
	counts := fmt.Sprintf("%d events, %d statuses, %d bytes of metrics", len(events.Items)+len(coreEvents.Items),
		len(toks.Items)+len(clusterToks.Items), metrics.Len())
	return sources, counts, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // API types always marshal
	}
	return b
}

// simTokenShape matches the simulator's token values (16 random bytes, hex): it catches a token
// the tests never got to see.
var simTokenShape = regexp.MustCompile(`(^|[^0-9a-fA-F])([0-9a-f]{32})([^0-9a-fA-F]|$)`)

// findLeaks lists the values found in text, raw or encoded, and any token-shaped string.
func findLeaks(where string, text []byte, values map[string]Kind) []string {
	var out []string
	for v, kind := range values {
		if containsEncoded(text, v) {
			out = append(out, fmt.Sprintf("%s: a %s leaked (%d characters, starting %.4s...)", where, kind, len(v), v))
		}
	}
	if m := simTokenShape.FindSubmatch(text); m != nil {
		out = append(out, fmt.Sprintf("%s: a token-shaped value leaked (%s...)", where, m[2][:6]))
	}
	return out
}

// containsEncoded reports whether text holds v as is, hex-encoded, or base64-encoded at any
// alignment (a Secret's data is base64 in JSON; a value inside a template key sits at any offset).
func containsEncoded(text []byte, v string) bool {
	if bytes.Contains(text, []byte(v)) || bytes.Contains(text, []byte(hex.EncodeToString([]byte(v)))) ||
		bytes.Contains(text, []byte(base64.StdEncoding.EncodeToString([]byte(v)))) {
		return true
	}
	for pad := 0; pad < 3; pad++ {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, pad), v...))
		// Drop the characters the padding or the following bytes influence.
		core := enc[:len(enc)-4]
		if pad > 0 {
			core = enc[4 : len(enc)-4]
		}
		if len(core) >= 12 && bytes.Contains(text, []byte(core)) {
			return true
		}
	}
	return false
}

// bodyLines finds log lines carrying a request or response body: client-go logs them (a
// Secret's, with its data) from V(8) on, and the operator must never pass such a level to it.
// The event recorder's own client (logger "events", under a manager's name or not) may log event
// bodies, which hold no secret (and are scanned, decoded, like every logged value).
func bodyLines(logs []byte) []string {
	for _, line := range strings.Split(string(logs), "\n") {
		if strings.Contains(line, `Body"`) && !strings.Contains(line, `"body":""`) && !eventsLogger.MatchString(line) {
			return []string{fmt.Sprintf("a request or response body was logged: %.300s", line)}
		}
	}
	return nil
}

var eventsLogger = regexp.MustCompile(`"logger":"([^"]*\.)?events"`)

// streamFrame matches what only a DingTalk Stream frame (or an ack of one) carries: its
// specVersion or messageId keys, quoted or escaped inside a log line.
var streamFrame = regexp.MustCompile(`\\?"(specVersion|messageId)\\?"\s*:`)

// frameLines finds log lines carrying a DingTalk Stream frame: a frame's data holds the suite
// ticket, so the operator logs frames' kinds and counts, never their text.
func frameLines(logs []byte) []string {
	for _, line := range strings.Split(string(logs), "\n") {
		if streamFrame.MatchString(line) {
			return []string{fmt.Sprintf("a DingTalk Stream frame was logged: %.120s...", line)}
		}
	}
	return nil
}

// targetSecretLeaks: target Secrets hold their token, never a credential, a suite ticket or a
// refresh token.
func targetSecretLeaks(secrets []corev1.Secret, values map[string]Kind) []string {
	var out []string
	for _, s := range secrets {
		if strings.HasSuffix(s.Name, v1alpha1.RefreshTokenSecretSuffix) || strings.HasSuffix(s.Name, v1alpha1.SuiteTicketSecretSuffix) {
			continue
		}
		for key, val := range s.Data {
			for v, kind := range values {
				if kind != AccessToken && bytes.Contains(val, []byte(v)) {
					out = append(out, fmt.Sprintf("target Secret %s/%s key %s holds a %s", s.Namespace, s.Name, key, kind))
				}
			}
		}
	}
	return out
}

// hexDumpLine is a line of the hex dumps client-go logs request and response bodies as.
var hexDumpLine = regexp.MustCompile(`^[0-9a-f]{8}  ((?:[0-9a-f]{2} {1,2}){1,16})`)

// decodedLogViews returns, for each JSON log line, its string values with client-go's hex dumps
// turned back into the bytes they show.
func decodedLogViews(logs []byte) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(logs))
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
