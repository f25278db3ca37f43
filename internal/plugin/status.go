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
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// maxEvents is how many of the newest events status shows.
const maxEvents = 10

// Secret roles, as status names them.
const (
	roleTarget       = "target"
	roleCredentials  = "credentials"
	roleRefreshToken = "refresh token"
	roleSuiteTicket  = "suite ticket"
)

// statusReport is everything `status` shows, read from the API server; renderStatus turns it into
// text. It holds key names of Secrets, never a value.
type statusReport struct {
	Token *v1alpha1.DingTalkToken
	// TicketSource is spec.suiteTicket.source ("" when unset or unknown to this API version).
	TicketSource string
	Secrets      []secretReport
	Events       []eventReport
	// EventsError says why the events could not be listed ("" when they were).
	EventsError string
}

// secretReport is what status shows of one Secret: never a value.
type secretReport struct {
	Role string
	Name string
	// Exists is false when the Secret is not there; Error is set when it could not be read.
	Exists bool
	Error  string
	// Owned: a controller ownerReference to this DingTalkToken's UID (the operator's Secrets).
	Owned bool
	// CheckOwner is true for the Secrets the operator writes (not the credentials Secret).
	CheckOwner bool
	// Keys are the names of the data keys, sorted.
	Keys []string
	// Missing names the credentials the type needs that the Secret lacks (credentials only).
	Missing []string
	// AbsentNote explains an absent Secret ("" : plain "missing").
	AbsentNote string
}

// eventReport is one event about the DingTalkToken.
type eventReport struct {
	Time    time.Time
	Type    string
	Reason  string
	Message string
	Count   int32
}

// loadStatus reads the DingTalkToken key and everything status shows about it.
func loadStatus(ctx context.Context, c client.Client, key types.NamespacedName) (*statusReport, error) {
	tok, source, err := getToken(ctx, c, key)
	if err != nil {
		return nil, err
	}
	rep := &statusReport{Token: tok, TicketSource: source}
	secret := func(role, name string, checkOwner bool) secretReport {
		return loadSecret(ctx, c, tok.Namespace, name, tok.UID, role, checkOwner)
	}
	rep.Secrets = append(rep.Secrets, secret(roleTarget, tok.TargetName(), true))
	creds := secret(roleCredentials, tok.Spec.CredentialsRef.Name, false)
	keys := tok.Spec.CredentialsRef.Keys
	switch tok.Spec.Type {
	case v1alpha1.TokenTypeUser:
		rt := secret(roleRefreshToken, tok.RefreshTokenSecretName(), true)
		rt.AbsentNote = "missing (the operator creates it with the first token)"
		creds.Missing = missingCredentials(tok.Spec.Type, keys, creds, rt.Exists, source)
		rep.Secrets = append(rep.Secrets, creds, rt)
	case v1alpha1.TokenTypeThirdPartyApp, v1alpha1.TokenTypeThirdPartySuite:
		creds.Missing = missingCredentials(tok.Spec.Type, keys, creds, false, source)
		rep.Secrets = append(rep.Secrets, creds)
		st := secret(roleSuiteTicket, tok.SuiteTicketSecretName(), true)
		if source == "Stream" || st.Exists {
			st.AbsentNote = suiteTicketAbsent
			rep.Secrets = append(rep.Secrets, st)
		}
	default:
		creds.Missing = missingCredentials(tok.Spec.Type, keys, creds, false, source)
		rep.Secrets = append(rep.Secrets, creds)
	}
	rep.Events, rep.EventsError = loadEvents(ctx, c, tok.Namespace, tok.UID)
	return rep, nil
}

// getToken reads a DingTalkToken through an unstructured object, so that fields newer than this
// plugin's API types (spec.suiteTicket.source) can still be shown. It returns that source too.
func getToken(ctx context.Context, c client.Client, key types.NamespacedName) (*v1alpha1.DingTalkToken, string, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("DingTalkToken"))
	if err := c.Get(ctx, key, u); err != nil {
		return nil, "", describeGetError(err, tokenRef{Namespace: key.Namespace, Name: key.Name})
	}
	tok := &v1alpha1.DingTalkToken{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, tok); err != nil {
		return nil, "", fmt.Errorf("reading dingtalktoken %s: %w", key, err)
	}
	source, _, _ := unstructured.NestedString(u.Object, "spec", "suiteTicket", "source")
	return tok, source, nil
}

// suiteTicketAbsent explains a suite-ticket Secret not yet written.
const suiteTicketAbsent = "missing (the operator creates it with the first ticket DingTalk pushes)"

// loadSecret reads one Secret and keeps its key names, never its values; owner is the UID of the
// token whose controller ownerReference the operator's own Secrets carry.
func loadSecret(ctx context.Context, c client.Client, namespace, name string, owner types.UID, role string, checkOwner bool) secretReport {
	r := secretReport{Role: role, Name: name, CheckOwner: checkOwner}
	var s corev1.Secret
	err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &s)
	switch {
	case apierrors.IsNotFound(err):
		return r
	case apierrors.IsForbidden(err):
		r.Error = "not readable (forbidden)"
		return r
	case err != nil:
		r.Error = "not readable: " + oneLine(err.Error())
		return r
	}
	r.Exists = true
	r.Owned = ownedBy(&s, owner)
	for k := range s.Data {
		r.Keys = append(r.Keys, k)
	}
	slices.Sort(r.Keys)
	return r
}

// ownedBy reports whether obj has a controller ownerReference to uid.
func ownedBy(obj metav1.Object, uid types.UID) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == uid
}

// missingCredentials names the credentials a token of type typ needs that the credentials Secret
// lacks, by the key names of spec.credentialsRef.keys. storedRefresh: a User token's refresh
// token is already kept by the operator.
func missingCredentials(typ v1alpha1.TokenType, credentialKeys *v1alpha1.CredentialKeys, creds secretReport, storedRefresh bool, ticketSource string) []string {
	if !creds.Exists {
		return nil
	}
	keys := credentialKeys.WithDefaults()
	var need []string
	switch typ {
	case v1alpha1.TokenTypeInternalApp:
		need = []string{keys.AppKey, keys.AppSecret}
	case v1alpha1.TokenTypeThirdPartyApp, v1alpha1.TokenTypeThirdPartySuite:
		need = []string{keys.SuiteKey, keys.SuiteSecret}
		if ticketSource != "Stream" {
			need = append(need, keys.SuiteTicket)
		}
	case v1alpha1.TokenTypeUser:
		need = []string{keys.ClientID, keys.ClientSecret}
	}
	var missing []string
	for _, k := range need {
		if !slices.Contains(creds.Keys, k) {
			missing = append(missing, k)
		}
	}
	if typ == v1alpha1.TokenTypeUser && !storedRefresh &&
		!slices.Contains(creds.Keys, keys.AuthCode) && !slices.Contains(creds.Keys, keys.RefreshToken) {
		missing = append(missing, keys.AuthCode+" or "+keys.RefreshToken)
	}
	return missing
}

// loadEvents lists the events about the object uid in namespace (a cluster-scoped object's are
// in "default"), newest last, at most maxEvents.
func loadEvents(ctx context.Context, c client.Client, namespace string, uid types.UID) ([]eventReport, string) {
	var list corev1.EventList
	err := c.List(ctx, &list, client.InNamespace(namespace),
		client.MatchingFields{"involvedObject.uid": string(uid)})
	switch {
	case apierrors.IsForbidden(err):
		return nil, "not readable (forbidden)"
	case err != nil:
		return nil, "not readable: " + oneLine(err.Error())
	}
	out := make([]eventReport, 0, len(list.Items))
	for i := range list.Items {
		e := &list.Items[i]
		out = append(out, eventReport{Time: eventTime(e), Type: e.Type, Reason: e.Reason, Message: e.Message, Count: eventCount(e)})
	}
	slices.SortStableFunc(out, func(a, b eventReport) int { return a.Time.Compare(b.Time) })
	if len(out) > maxEvents {
		out = out[len(out)-maxEvents:]
	}
	return out, ""
}

// eventTime is when an event last happened, whichever API (core or events.k8s.io) wrote it.
func eventTime(e *corev1.Event) time.Time {
	t := e.CreationTimestamp.Time
	for _, c := range []time.Time{e.FirstTimestamp.Time, e.LastTimestamp.Time, e.EventTime.Time} {
		if c.After(t) {
			t = c
		}
	}
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	return t
}

// eventCount is how often an event happened.
func eventCount(e *corev1.Event) int32 {
	if e.Series != nil && e.Series.Count > 0 {
		return e.Series.Count
	}
	return max(e.Count, 1)
}

// renderStatus writes the one-screen status of rep as seen at now.
func renderStatus(w io.Writer, rep *statusReport, now time.Time) error {
	tok := rep.Token
	st := &tok.Status.TokenStatus
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", label, fmt.Sprintf(format, args...))
	}
	line("DingTalkToken:", "%s/%s", tok.Namespace, tok.Name)
	line("Type:", "%s", tok.Spec.Type)
	writeHeadState(line, tok.Spec.Suspend, st.ObservedGeneration, tok.Generation)
	writeConditions(line, st, func(reason string) string { return hint(reason, tok.Spec.Type, tok.Name) }, "DingTalkToken", now)
	writeTimes(line, st, tok.Spec.Suspend, tok.Annotations, now)
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := renderSecrets(w, rep.Secrets); err != nil {
		return err
	}
	return renderEvents(w, rep.Events, rep.EventsError, now)
}

// lineFunc writes one labelled line of a status screen.
type lineFunc func(label, format string, args ...any)

// writeHeadState says that a token is suspended, or that its status is behind its spec.
func writeHeadState(line lineFunc, suspend bool, observed, generation int64) {
	if suspend {
		line("Suspended:", "yes (spec.suspend is true: no calls to DingTalk)")
	}
	if observed != 0 && observed < generation {
		line("", "status is for generation %d, the spec is at %d: the operator has not caught up yet", observed, generation)
	}
}

// writeConditions writes Ready, Refreshed and the other conditions, each failing reason once
// with its hint.
func writeConditions(line lineFunc, st *v1alpha1.TokenStatus, hintFor func(reason string) string, kind string, now time.Time) {
	hinted := map[string]bool{}
	for _, typ := range conditionOrder(st.Conditions) {
		c := meta.FindStatusCondition(st.Conditions, typ)
		line(c.Type+":", "%s", conditionText(c, now))
		if c.Status == metav1.ConditionTrue || hinted[c.Reason] {
			continue
		}
		if h := hintFor(c.Reason); h != "" {
			hinted[c.Reason] = true
			line("", "Hint: %s", h)
		}
	}
	if meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady) == nil {
		line("Ready:", "unknown: the operator has not reconciled this %s yet", kind)
		line("", "Hint: %s", hintFor(v1alpha1.ReasonPending))
	}
}

// writeTimes writes when the token expires, the next refresh or attempt, the last refresh and
// failure, and a pending refresh request.
func writeTimes(line lineFunc, st *v1alpha1.TokenStatus, suspend bool, annotations map[string]string, now time.Time) {
	line("Expires:", "%s", expiryText(st.ExpiresAt, now))
	line(nextLabel(st), "%s", nextText(st, suspend, now))
	line("Last refresh:", "%s", timeText(st.LastRefreshTime, now, "never"))
	line("Last failure:", "%s", failureText(st, now))
	if v, ok := annotations[v1alpha1.RefreshRequestedAtAnnotation]; ok {
		line("Refresh requested:", "%s", requestText(v, st.LastRefreshTime, now))
	}
}

// renderSecrets writes what status shows of each Secret.
func renderSecrets(w io.Writer, secrets []secretReport) error {
	fmt.Fprintln(w, "Secrets:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range secrets {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Role, s.Name, secretText(s))
	}
	return tw.Flush()
}

// conditionOrder lists the condition types to show: Ready, Refreshed, then any other, by name.
func conditionOrder(conds []metav1.Condition) []string {
	var out, rest []string
	for _, typ := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionRefreshed} {
		if meta.FindStatusCondition(conds, typ) != nil {
			out = append(out, typ)
		}
	}
	for _, c := range conds {
		if c.Type != v1alpha1.ConditionReady && c.Type != v1alpha1.ConditionRefreshed {
			rest = append(rest, c.Type)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// conditionText is "True, TokenValid: message (since 3m ago)".
func conditionText(c *metav1.Condition, now time.Time) string {
	s := fmt.Sprintf("%s, %s", c.Status, c.Reason)
	if c.Message != "" {
		s += ": " + oneLine(c.Message)
	}
	if !c.LastTransitionTime.IsZero() {
		s += fmt.Sprintf(" (since %s)", relative(c.LastTransitionTime.Time, now))
	}
	return s
}

func expiryText(t *metav1.Time, now time.Time) string {
	switch {
	case t == nil:
		return "no token yet"
	case !t.After(now):
		return fmt.Sprintf("expired %s (%s)", relative(t.Time, now), stamp(t.Time))
	}
	return fmt.Sprintf("%s (%s)", relative(t.Time, now), stamp(t.Time))
}

// nextLabel: while attempts fail, refreshTime is the next attempt after the backoff.
func nextLabel(st *v1alpha1.TokenStatus) string {
	if st.FailedAttempts > 0 {
		return "Next attempt:"
	}
	return "Next refresh:"
}

func nextText(st *v1alpha1.TokenStatus, suspend bool, now time.Time) string {
	switch {
	case suspend:
		return "none while suspended"
	case st.RefreshTime == nil:
		return "not scheduled"
	case st.FailedAttempts > 0:
		return fmt.Sprintf("%s (%s), backoff after %d failed %s", relative(st.RefreshTime.Time, now),
			stamp(st.RefreshTime.Time), st.FailedAttempts, plural(int(st.FailedAttempts), "attempt", "attempts"))
	}
	return fmt.Sprintf("%s (%s)", relative(st.RefreshTime.Time, now), stamp(st.RefreshTime.Time))
}

func timeText(t *metav1.Time, now time.Time, none string) string {
	if t == nil {
		return none
	}
	return fmt.Sprintf("%s (%s)", relative(t.Time, now), stamp(t.Time))
}

func failureText(st *v1alpha1.TokenStatus, now time.Time) string {
	if st.FailedAttempts == 0 && st.LastFailureTime == nil {
		if st.LastRefreshTime == nil {
			return "none"
		}
		return "none since the last token"
	}
	reason := st.LastFailureReason
	if reason == "" {
		reason = "unknown reason"
	}
	return fmt.Sprintf("%s, %s, %d failed %s since the last token", reason, timeText(st.LastFailureTime, now, "at an unknown time"),
		st.FailedAttempts, plural(int(st.FailedAttempts), "attempt", "attempts"))
}

// requestText says whether the force-refresh annotation's request was served.
func requestText(v string, last *metav1.Time, now time.Time) string {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return fmt.Sprintf("%q is not an RFC 3339 time: ignored", v)
	}
	state := "pending"
	if last != nil && !last.Time.Before(t) {
		state = "done"
	}
	return fmt.Sprintf("%s (%s), %s", relative(t, now), stamp(t), state)
}

func secretText(s secretReport) string {
	switch {
	case s.Error != "":
		return s.Error
	case !s.Exists && s.AbsentNote != "":
		return s.AbsentNote
	case !s.Exists:
		return "missing"
	}
	parts := []string{"exists"}
	if s.CheckOwner {
		if s.Owned {
			parts = append(parts, "owned")
		} else {
			parts = append(parts, "NOT owned by this DingTalkToken")
		}
	}
	if len(s.Keys) == 0 {
		parts = append(parts, "no keys")
	} else {
		parts = append(parts, "keys: "+strings.Join(s.Keys, ", "))
	}
	if len(s.Missing) > 0 {
		parts = append(parts, "missing: "+strings.Join(s.Missing, ", "))
	}
	return strings.Join(parts, ", ")
}

func renderEvents(w io.Writer, events []eventReport, eventsErr string, now time.Time) error {
	if eventsErr != "" {
		_, err := fmt.Fprintf(w, "Events: %s\n", eventsErr)
		return err
	}
	if len(events) == 0 {
		_, err := fmt.Fprintln(w, "Events: none")
		return err
	}
	fmt.Fprintln(w, "Events:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range events {
		count := ""
		if e.Count > 1 {
			count = fmt.Sprintf(" (x%d)", e.Count)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s%s\n", relative(e.Time, now), oneLine(e.Type), oneLine(e.Reason), oneLine(e.Message), count)
	}
	return tw.Flush()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// oneLine keeps a message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
