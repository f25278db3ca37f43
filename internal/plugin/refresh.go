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
	cluster       bool
	wait          bool
	timeout       time.Duration
}

func newRefreshCommand(o *Options) *cobra.Command {
	ro := &refreshOptions{}
	cmd := &cobra.Command{
		Use:   "refresh (NAME... | -l SELECTOR | --all)",
		Short: "Force DingTalkTokens or ClusterDingTalkTokens to refresh now and wait for the outcome",
		Long: "refresh sets the annotation " + v1alpha1.RefreshRequestedAtAnnotation + " to the current time on each\n" +
			"DingTalkToken (or ClusterDingTalkToken: cdtt/NAME, or --cluster): the operator refreshes it once (within\n" +
			"its call budget and backoff). With --wait (the default) it then waits until status.lastRefreshTime moves\n" +
			"(refreshed) or the Refreshed condition reports a new failure, and prints which for each. It exits\n" +
			"non-zero when any was not refreshed.",
		Example: "  kubectl dingtalk refresh crm-bot -n apps\n" +
			"  kubectl dingtalk refresh -l team=crm -n apps\n" +
			"  kubectl dingtalk refresh cdtt/crm-bot\n" +
			"  kubectl dingtalk refresh --cluster --all\n" +
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
	f.BoolVar(&ro.cluster, "cluster", false, clusterFlagUsage)
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
		return errors.New("name the DingTalkTokens to refresh: NAME..., cdtt/NAME..., -l SELECTOR or --all (with --cluster for ClusterDingTalkTokens)")
	case ways > 1:
		return errors.New("use only one of NAME..., -l SELECTOR and --all")
	case ro.allNamespaces && len(args) > 0:
		return errors.New("--all-namespaces works with -l or --all, not with names")
	case ro.allNamespaces && ro.cluster:
		return errors.New("--all-namespaces is for DingTalkTokens: ClusterDingTalkTokens have no namespace")
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

// refreshMark is what a token's status said before the request: the outcome must move past it.
type refreshMark struct {
	LastRefresh    time.Time
	LastFailure    time.Time
	FailedAttempts int32
	// RefreshedSince is the Refreshed condition's lastTransitionTime.
	RefreshedSince time.Time
}

func markOf(st *v1alpha1.TokenStatus) refreshMark {
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

// refreshResult compares a status with the mark taken before the request: a newer
// lastRefreshTime is a refresh; a False Refreshed condition with a newer transition, a newer
// lastFailureTime or more failed attempts is a failed attempt; anything else is still pending.
func refreshResult(m refreshMark, st *v1alpha1.TokenStatus) refreshOutcome {
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

// heldByBackoff reports whether the operator's backoff after DingTalk failures holds a token's next
// attempt past deadline: a requested refresh waits for it (troubleshooting.md: transient
// failures back off up to 5 minutes, rejected credentials, an exhausted quota and a refused
// refresh token are retried hourly). status.refreshTime is that next attempt. Failures without a
// DingTalk call (a missing Secret, a conflict, a bad template) hold nothing.
func heldByBackoff(st *v1alpha1.TokenStatus, deadline time.Time) (time.Time, bool) {
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

// refreshTarget is one token being refreshed.
type refreshTarget struct {
	ref  tokenRef
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
	for _, tok := range toks {
		if tok.suspend {
			o.printf("%s not refreshed: spec.suspend is true (no calls to DingTalk while suspended)\n", tok.ref)
			failed++
			continue
		}
		m := markOf(tok.status)
		at := requestTime(o.Clock.Now(), m)
		if err := annotate(ctx, c, tok.ref, at); err != nil {
			o.printf("%s not refreshed: %s\n", tok.ref, err)
			failed++
			continue
		}
		if !ro.wait {
			o.printf("%s refresh requested at %s\n", tok.ref, stamp(at))
			continue
		}
		if until, held := heldByBackoff(tok.status, o.Clock.Now().Add(ro.timeout)); held {
			// Waiting cannot help: the operator serves the request only when its backoff ends.
			st := tok.status
			o.printf("%s not refreshed yet: after %d failed %s (%s) the operator holds the next attempt until %s (%s); "+
				"the request is served then, or at once when the credentials Secret changes\n", tok.ref, st.FailedAttempts,
				plural(int(st.FailedAttempts), "attempt", "attempts"), st.LastFailureReason, stamp(until), relative(until, o.Clock.Now()))
			failed++
			continue
		}
		targets = append(targets, refreshTarget{ref: tok.ref, mark: m})
	}
	failed += o.waitRefreshes(ctx, c, ro.timeout, targets)
	if failed > 0 {
		return fmt.Errorf("%d of %d %s not refreshed", failed, len(toks), kindNoun(toks))
	}
	return nil
}

// kindNoun names what toks are, with "was" or "were": "DingTalkToken was", "ClusterDingTalkTokens
// were", "tokens were" for both kinds.
func kindNoun(toks []tokenView) string {
	clusters := 0
	for _, t := range toks {
		if t.ref.Cluster {
			clusters++
		}
	}
	noun := "DingTalkToken"
	switch clusters {
	case 0:
	case len(toks):
		noun = "ClusterDingTalkToken"
	default:
		return "tokens were"
	}
	return plural(len(toks), noun+" was", noun+"s were")
}

// selectTokens reads the named objects, or those the selector or --all picks.
func selectTokens(ctx context.Context, c client.Client, ns string, ro *refreshOptions, names []string) ([]tokenView, error) {
	if len(names) > 0 {
		var out []tokenView
		for _, n := range names {
			ref, err := parseRef(n, ns, ro.cluster)
			if err != nil {
				return nil, err
			}
			v, err := getView(ctx, c, ref)
			if err != nil {
				return nil, describeGetError(err, ref)
			}
			out = append(out, v)
		}
		return out, nil
	}
	kind, where := "dingtalktokens", fmt.Sprintf(" in namespace %q", ns)
	switch {
	case ro.cluster:
		kind, where, ns = "clusterdingtalktokens", "", ""
	case ro.allNamespaces:
		where, ns = " in any namespace", ""
	}
	var sel labels.Selector
	if ro.selector != "" {
		sel, _ = labels.Parse(ro.selector)
		where += fmt.Sprintf(" matching %q", ro.selector)
	}
	toks, err := listViews(ctx, c, ro.cluster, ns, sel)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("no %s%s", kind, where)
	}
	return toks, nil
}

// annotate sets the force-refresh annotation with a merge patch (only that key changes).
func annotate(ctx context.Context, c client.Client, ref tokenRef, at time.Time) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{v1alpha1.RefreshRequestedAtAnnotation: at.Format(time.RFC3339)},
	}})
	if err != nil {
		return err
	}
	obj := ref.newObject()
	obj.SetNamespace(ref.Namespace)
	obj.SetName(ref.Name)
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
	var last *v1alpha1.TokenStatus
	outcome := outcomePending
	err := poll(ctx, o.Clock, o.PollInterval, timeout, func(ctx context.Context) (bool, error) {
		v, err := getView(ctx, c, t.ref)
		if err != nil {
			if apierrors.IsNotFound(err) {
				return false, errors.New("it was deleted")
			}
			return false, nil // a passing API-server error: try again on the next tick
		}
		last = v.status
		outcome = refreshResult(t.mark, v.status)
		return outcome != outcomePending, nil
	})
	now := o.Clock.Now()
	switch {
	case err == nil && outcome == outcomeRefreshed:
		o.printf("%s refreshed: %s\n", t.ref, refreshedText(last, now))
		return true
	case err == nil && outcome == outcomeFailed:
		c := meta.FindStatusCondition(last.Conditions, v1alpha1.ConditionRefreshed)
		o.printf("%s refresh failed: %s: %s\n", t.ref, c.Reason, oneLine(c.Message))
	case errors.Is(err, errTimeout):
		o.printf("%s not refreshed within %s: %s\n", t.ref, timeout, stateText(last))
	default:
		o.printf("%s not refreshed: %s\n", t.ref, err)
	}
	return false
}

// refreshedText says what the new token is: when it was issued and when it expires.
func refreshedText(st *v1alpha1.TokenStatus, now time.Time) string {
	s := "token issued at " + stamp(st.LastRefreshTime.Time)
	if st.ExpiresAt != nil {
		s += ", expires " + relative(st.ExpiresAt.Time, now)
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionRefreshed); c != nil && c.Status == metav1.ConditionFalse {
		s += fmt.Sprintf(" (Refreshed %s: %s)", c.Reason, oneLine(c.Message))
	}
	return s
}

// stateText is a token's Ready and Refreshed conditions in a few words.
func stateText(st *v1alpha1.TokenStatus) string {
	if st == nil {
		return "its status could not be read"
	}
	s := ""
	for _, typ := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionRefreshed} {
		c := meta.FindStatusCondition(st.Conditions, typ)
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
