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
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

type refreshOptions struct {
	selector      string
	all           bool
	allNamespaces bool
	wait          bool
	timeout       time.Duration
}

func newRefreshCommand(o *Options) *cobra.Command {
	ro := &refreshOptions{}
	cmd := &cobra.Command{
		Use:   "refresh (NAME... | -l SELECTOR | --all)",
		Short: "Force DingTalkTokens to refresh now and wait for the outcome",
		Long: "refresh sets the annotation " + v1alpha1.RefreshRequestedAtAnnotation + " to the current time on each\n" +
			"DingTalkToken: the operator refreshes it once (within its call budget and backoff). With --wait (the\n" +
			"default) it then waits until status.lastRefreshTime moves (refreshed) or the Refreshed condition reports\n" +
			"a new failure, and prints which for each. It exits non-zero when any was not refreshed.",
		Example: "  kubectl dingtalk refresh crm-bot -n apps\n" +
			"  kubectl dingtalk refresh -l team=crm -n apps\n" +
			"  kubectl dingtalk refresh --all --all-namespaces --wait=false",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := ro.validate(args); err != nil {
				return err
			}
			return o.runRefresh(cmd.Context(), ro, args)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ro.selector, "selector", "l", "", "refresh the DingTalkTokens matching this label selector")
	f.BoolVar(&ro.all, "all", false, "refresh every DingTalkToken in the namespace")
	f.BoolVarP(&ro.allNamespaces, "all-namespaces", "A", false, "with -l or --all: look in every namespace")
	f.BoolVar(&ro.wait, "wait", true, "wait until each DingTalkToken was refreshed or its refresh failed")
	f.DurationVar(&ro.timeout, "timeout", 2*time.Minute, "how long to wait for the refreshes")
	return cmd
}

func (ro *refreshOptions) validate(args []string) error {
	ways := 0
	for _, set := range []bool{len(args) > 0, ro.selector != "", ro.all} {
		if set {
			ways++
		}
	}
	switch {
	case ways == 0:
		return errors.New("name the DingTalkTokens to refresh: NAME..., -l SELECTOR or --all")
	case ways > 1:
		return errors.New("use only one of NAME..., -l SELECTOR and --all")
	case ro.allNamespaces && len(args) > 0:
		return errors.New("--all-namespaces works with -l or --all, not with names")
	case ro.timeout <= 0 && ro.wait:
		return errors.New("--timeout must be positive")
	}
	if ro.selector != "" {
		if _, err := labels.Parse(ro.selector); err != nil {
			return fmt.Errorf("invalid selector %q: %w", ro.selector, err)
		}
	}
	return nil
}

// refreshMark is what a DingTalkToken's status said before the request: the outcome must move past it.
type refreshMark struct {
	LastRefresh    time.Time
	LastFailure    time.Time
	FailedAttempts int32
	// RefreshedSince is the Refreshed condition's lastTransitionTime.
	RefreshedSince time.Time
}

func markOf(tok *v1alpha1.DingTalkToken) refreshMark {
	st := &tok.Status
	m := refreshMark{FailedAttempts: st.FailedAttempts}
	if st.LastRefreshTime != nil {
		m.LastRefresh = st.LastRefreshTime.Time
	}
	if st.LastFailureTime != nil {
		m.LastFailure = st.LastFailureTime.Time
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionRefreshed); c != nil {
		m.RefreshedSince = c.LastTransitionTime.Time
	}
	return m
}

// refreshOutcome is what became of a requested refresh.
type refreshOutcome int

const (
	outcomePending refreshOutcome = iota
	outcomeRefreshed
	outcomeFailed
)

// refreshResult compares tok's status with the mark taken before the request: a newer
// lastRefreshTime is a refresh; a False Refreshed condition with a newer transition, a newer
// lastFailureTime or more failed attempts is a failed attempt; anything else is still pending.
func refreshResult(m refreshMark, tok *v1alpha1.DingTalkToken) refreshOutcome {
	st := &tok.Status
	if st.LastRefreshTime != nil && st.LastRefreshTime.After(m.LastRefresh) {
		return outcomeRefreshed
	}
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionRefreshed)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason == v1alpha1.ReasonSuspended {
		return outcomePending
	}
	newer := c.LastTransitionTime.After(m.RefreshedSince) ||
		(st.LastFailureTime != nil && st.LastFailureTime.After(m.LastFailure)) ||
		st.FailedAttempts > m.FailedAttempts
	if newer {
		return outcomeFailed
	}
	return outcomePending
}

// requestTime is the annotation's value: now, in whole seconds, and after the last refresh (the
// operator honours a request newer than status.lastRefreshTime; clocks may disagree a little).
func requestTime(now time.Time, m refreshMark) time.Time {
	t := now.UTC().Truncate(time.Second)
	if !m.LastRefresh.IsZero() && !t.After(m.LastRefresh) {
		t = m.LastRefresh.UTC().Truncate(time.Second).Add(time.Second)
	}
	return t
}

// heldByBackoff reports whether the operator's backoff after DingTalk failures holds tok's next
// attempt past deadline: a requested refresh waits for it (troubleshooting.md: transient
// failures back off up to 5 minutes, rejected credentials, an exhausted quota and a refused
// refresh token are retried hourly). status.refreshTime is that next attempt. Failures without a
// DingTalk call (a missing Secret, a conflict, a bad template) hold nothing.
func heldByBackoff(tok *v1alpha1.DingTalkToken, deadline time.Time) (time.Time, bool) {
	st := &tok.Status
	if st.FailedAttempts == 0 || st.RefreshTime == nil || !st.RefreshTime.After(deadline) {
		return time.Time{}, false
	}
	switch st.LastFailureReason {
	case v1alpha1.ReasonRateLimited, v1alpha1.ReasonProviderUnavailable,
		v1alpha1.ReasonCredentialsRejected, v1alpha1.ReasonQuotaExceeded, v1alpha1.ReasonReauthorizationRequired:
		return st.RefreshTime.Time, true
	}
	return time.Time{}, false
}

// refreshTarget is one DingTalkToken being refreshed.
type refreshTarget struct {
	key  types.NamespacedName
	mark refreshMark
}

func (o *Options) runRefresh(ctx context.Context, ro *refreshOptions, names []string) error {
	c, ns, err := o.client()
	if err != nil {
		return err
	}
	toks, err := selectTokens(ctx, c, ns, ro, names)
	if err != nil {
		return err
	}
	var targets []refreshTarget
	failed := 0
	for i := range toks {
		tok := &toks[i]
		key := client.ObjectKeyFromObject(tok)
		if tok.Spec.Suspend {
			o.printf("dingtalktoken %s not refreshed: spec.suspend is true (no calls to DingTalk while suspended)\n", key)
			failed++
			continue
		}
		m := markOf(tok)
		at := requestTime(o.Clock.Now(), m)
		if err := annotate(ctx, c, tok, at); err != nil {
			o.printf("dingtalktoken %s not refreshed: %s\n", key, err)
			failed++
			continue
		}
		if !ro.wait {
			o.printf("dingtalktoken %s refresh requested at %s\n", key, stamp(at))
			continue
		}
		if until, held := heldByBackoff(tok, o.Clock.Now().Add(ro.timeout)); held {
			// Waiting cannot help: the operator serves the request only when its backoff ends.
			o.printf("dingtalktoken %s not refreshed yet: after %d failed %s (%s) the operator holds the next attempt until %s (%s); "+
				"the request is served then, or at once when the credentials Secret changes\n", key, tok.Status.FailedAttempts,
				plural(int(tok.Status.FailedAttempts), "attempt", "attempts"), tok.Status.LastFailureReason, stamp(until), relative(until, o.Clock.Now()))
			failed++
			continue
		}
		targets = append(targets, refreshTarget{key: key, mark: m})
	}
	failed += o.waitRefreshes(ctx, c, ro.timeout, targets)
	if failed > 0 {
		return fmt.Errorf("%d of %d %s not refreshed", failed, len(toks), plural(len(toks), "DingTalkToken was", "DingTalkTokens were"))
	}
	return nil
}

// selectTokens reads the named DingTalkTokens, or those the selector or --all picks.
func selectTokens(ctx context.Context, c client.Client, ns string, ro *refreshOptions, names []string) ([]v1alpha1.DingTalkToken, error) {
	if len(names) > 0 {
		var out []v1alpha1.DingTalkToken
		for _, n := range names {
			var tok v1alpha1.DingTalkToken
			key := types.NamespacedName{Namespace: ns, Name: n}
			if err := c.Get(ctx, key, &tok); err != nil {
				return nil, describeGetError(err, key)
			}
			out = append(out, tok)
		}
		return out, nil
	}
	var list v1alpha1.DingTalkTokenList
	opts := []client.ListOption{}
	where := fmt.Sprintf("in namespace %q", ns)
	if ro.allNamespaces {
		where = "in any namespace"
	} else {
		opts = append(opts, client.InNamespace(ns))
	}
	if ro.selector != "" {
		sel, _ := labels.Parse(ro.selector)
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
		where += fmt.Sprintf(" matching %q", ro.selector)
	}
	if err := c.List(ctx, &list, opts...); err != nil {
		if meta.IsNoMatchError(err) {
			return nil, errors.New("the DingTalkToken API (dingtalk.tokens.dev/v1alpha1) is not installed in this cluster")
		}
		return nil, fmt.Errorf("listing dingtalktokens %s: %w", where, err)
	}
	if len(list.Items) == 0 {
		return nil, fmt.Errorf("no dingtalktokens %s", where)
	}
	slices.SortFunc(list.Items, func(a, b v1alpha1.DingTalkToken) int {
		return compareKeys(client.ObjectKeyFromObject(&a), client.ObjectKeyFromObject(&b))
	})
	return list.Items, nil
}

func compareKeys(a, b types.NamespacedName) int {
	if a.Namespace != b.Namespace {
		if a.Namespace < b.Namespace {
			return -1
		}
		return 1
	}
	switch {
	case a.Name < b.Name:
		return -1
	case a.Name > b.Name:
		return 1
	}
	return 0
}

// annotate sets the force-refresh annotation with a merge patch (only that key changes).
func annotate(ctx context.Context, c client.Client, tok *v1alpha1.DingTalkToken, at time.Time) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{v1alpha1.RefreshRequestedAtAnnotation: at.Format(time.RFC3339)},
	}})
	if err != nil {
		return err
	}
	obj := &v1alpha1.DingTalkToken{ObjectMeta: metav1.ObjectMeta{Namespace: tok.Namespace, Name: tok.Name}}
	if err := c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return errors.New("it was deleted")
		case apierrors.IsForbidden(err):
			return errors.New("not allowed to patch it")
		}
		return fmt.Errorf("setting the annotation: %s", oneLine(err.Error()))
	}
	return nil
}

// waitRefreshes waits for every target's outcome, printing each as it comes, and returns how
// many were not refreshed.
func (o *Options) waitRefreshes(ctx context.Context, c client.Client, timeout time.Duration, targets []refreshTarget) int {
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Go(func() {
			if !o.waitRefresh(ctx, c, timeout, t) {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed
}

// waitRefresh waits for one target and prints its outcome; it reports whether it was refreshed.
func (o *Options) waitRefresh(ctx context.Context, c client.Client, timeout time.Duration, t refreshTarget) bool {
	var last *v1alpha1.DingTalkToken
	outcome := outcomePending
	err := poll(ctx, o.Clock, o.PollInterval, timeout, func(ctx context.Context) (bool, error) {
		var tok v1alpha1.DingTalkToken
		if err := c.Get(ctx, t.key, &tok); err != nil {
			if apierrors.IsNotFound(err) {
				return false, errors.New("it was deleted")
			}
			return false, nil // a passing API-server error: try again on the next tick
		}
		last = &tok
		outcome = refreshResult(t.mark, &tok)
		return outcome != outcomePending, nil
	})
	now := o.Clock.Now()
	switch {
	case err == nil && outcome == outcomeRefreshed:
		o.printf("dingtalktoken %s refreshed: %s\n", t.key, refreshedText(last, now))
		return true
	case err == nil && outcome == outcomeFailed:
		c := meta.FindStatusCondition(last.Status.Conditions, v1alpha1.ConditionRefreshed)
		o.printf("dingtalktoken %s refresh failed: %s: %s\n", t.key, c.Reason, oneLine(c.Message))
	case errors.Is(err, errTimeout):
		o.printf("dingtalktoken %s not refreshed within %s: %s\n", t.key, timeout, stateText(last))
	default:
		o.printf("dingtalktoken %s not refreshed: %s\n", t.key, err)
	}
	return false
}

// refreshedText says what the new token is: when it was issued and when it expires.
func refreshedText(tok *v1alpha1.DingTalkToken, now time.Time) string {
	st := &tok.Status
	s := "token issued at " + stamp(st.LastRefreshTime.Time)
	if st.ExpiresAt != nil {
		s += ", expires " + relative(st.ExpiresAt.Time, now)
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionRefreshed); c != nil && c.Status == metav1.ConditionFalse {
		s += fmt.Sprintf(" (Refreshed %s: %s)", c.Reason, oneLine(c.Message))
	}
	return s
}

// stateText is a DingTalkToken's Ready and Refreshed conditions in a few words.
func stateText(tok *v1alpha1.DingTalkToken) string {
	if tok == nil {
		return "its status could not be read"
	}
	s := ""
	for _, typ := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionRefreshed} {
		c := meta.FindStatusCondition(tok.Status.Conditions, typ)
		if c == nil {
			continue
		}
		if s != "" {
			s += "; "
		}
		s += fmt.Sprintf("%s %s (%s)", typ, c.Status, c.Reason)
	}
	if s == "" {
		return "no status yet (is the operator running?)"
	}
	return s
}
