package controllers

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// testLeakScan runs after every scenario: everything the managers logged at the highest verbosity,
// every event, every DingTalkToken status and the metrics must hold none of the credential, token
// and refresh-token values the scenarios used.
func testLeakScan(t *testing.T) {
	ctx := ctxT(t)
	// The newest refresh tokens and every token still in a Secret join the list.
	var secrets corev1.SecretList
	must(t, env.k8s.List(ctx, &secrets))
	for i := range secrets.Items {
		if secrets.Items[i].Labels[v1alpha1.ManagedByLabel] == v1alpha1.ManagedByValue {
			rememberSecret(&secrets.Items[i])
		}
	}
	var values []string
	env.sensitive.Range(func(k, _ any) bool {
		values = append(values, k.(string))
		return true
	})

	logs := env.logs.String()
	// The scan is only meaningful if the managers did log at debug level.
	for _, want := range []string{`"No refresh"`, `"Reconciling"`} { // V(1) and V(5)
		if !strings.Contains(logs, want) {
			t.Errorf("the logs lack %s: the manager did not log at the highest verbosity", want)
		}
	}

	var evs eventsv1.EventList
	must(t, env.k8s.List(ctx, &evs))
	var coreEvents corev1.EventList
	must(t, env.k8s.List(ctx, &coreEvents))
	var toks v1alpha1.DingTalkTokenList
	must(t, env.k8s.List(ctx, &toks))
	statuses := make([]v1alpha1.DingTalkTokenStatus, 0, len(toks.Items))
	for _, tok := range toks.Items {
		statuses = append(statuses, tok.Status)
	}
	families, err := ctrlmetrics.Registry.Gather()
	must(t, err)
	var metricsText bytes.Buffer
	for _, f := range families {
		_ = expfmt.NewEncoder(&metricsText, expfmt.NewFormat(expfmt.TypeTextPlain)).Encode(f)
	}
	sources := map[string]string{
		"logs":     logs,
		"events":   mustJSON(t, evs) + mustJSON(t, coreEvents),
		"statuses": mustJSON(t, statuses),
		"metrics":  metricsText.String(),
	}
	if len(evs.Items) == 0 || len(statuses) == 0 || metricsText.Len() == 0 {
		t.Fatalf("nothing to scan: %d events, %d statuses, %d bytes of metrics", len(evs.Items), len(statuses), metricsText.Len())
	}
	// client-go logs request and response bodies (a Secret's, with its data) at V(8): none may come
	// from the reconciler. The event recorder's own client may log event bodies (no secrets).
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `Body"`) && !strings.Contains(line, `"body":""`) && !strings.Contains(line, `"logger":"events"`) {
			t.Errorf("a request or response body was logged: %.300s", line)
			break
		}
	}
	hits := 0
	for name, text := range sources {
		for _, v := range values {
			if containsEncoded(text, v) {
				hits++
				t.Errorf("%s contain a credential or token value (%d characters, starting %.4s...)", name, len(v), v)
			}
		}
	}
	t.Logf("leak scan: %d values against %d bytes of logs, %d events, %d statuses, %d bytes of metrics: %d hits",
		len(values), len(logs), len(evs.Items)+len(coreEvents.Items), len(statuses), metricsText.Len(), hits)
	if len(values) < 3*len(scenarios) {
		t.Errorf("only %d values scanned: the scenarios did not record what they used", len(values))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	must(t, err)
	return string(b)
}

// containsEncoded reports whether text holds v as is, hex-encoded, or base64-encoded at any
// alignment (a Secret's data is base64 in JSON; a value inside a template key sits at any offset).
func containsEncoded(text, v string) bool {
	if strings.Contains(text, v) || strings.Contains(text, hex.EncodeToString([]byte(v))) {
		return true
	}
	for pad := 0; pad < 3; pad++ {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, pad), v...))
		// Drop the characters the padding or the following bytes influence.
		core := enc[4 : len(enc)-4]
		if pad == 0 {
			core = enc[:len(enc)-4]
		}
		if len(core) >= 12 && strings.Contains(text, core) {
			return true
		}
	}
	return false
}
