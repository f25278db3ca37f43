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
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// clusterReport is everything `status cdtt/NAME` shows of a ClusterDingTalkToken, read from the
// API server. It holds key names of Secrets, never a value.
type clusterReport struct {
	Token   *v1alpha1.ClusterDingTalkToken
	Secrets []secretReport
	Events  []eventReport
	// EventsError says why the events could not be listed ("" when they were).
	EventsError string
}

// loadClusterStatus reads the ClusterDingTalkToken name, its credentials Secret (and, with
// Stream mode, its suite-ticket Secret) and its events. The target Secrets, one per selected
// namespace, are summed up by the status's namespace counts instead.
func loadClusterStatus(ctx context.Context, c client.Client, name string) (*clusterReport, error) {
	ref := tokenRef{Cluster: true, Name: name}
	tok := &v1alpha1.ClusterDingTalkToken{}
	if err := c.Get(ctx, ref.key(), tok); err != nil {
		return nil, describeGetError(err, ref)
	}
	rep := &clusterReport{Token: tok}
	cred := tok.Spec.CredentialsRef
	creds := loadSecret(ctx, c, cred.Namespace, cred.Name, tok.UID, roleCredentials, false)
	source := string(tok.TicketSource())
	creds.Missing = missingCredentials(tok.Spec.Type, cred.Keys, creds, false, source)
	creds.Name = cred.Namespace + "/" + cred.Name
	rep.Secrets = append(rep.Secrets, creds)
	if tok.TicketSource() == v1alpha1.SuiteTicketSourceStream {
		ns, name := tok.SuiteTicketSecretKey()
		st := loadSecret(ctx, c, ns, name, tok.UID, roleSuiteTicket, true)
		st.Name, st.AbsentNote = ns+"/"+name, suiteTicketAbsent
		rep.Secrets = append(rep.Secrets, st)
	}
	// Events about a cluster-scoped object are recorded in the default namespace.
	rep.Events, rep.EventsError = loadEvents(ctx, c, metav1.NamespaceDefault, tok.UID)
	return rep, nil
}

// renderClusterStatus writes the one-screen status of a ClusterDingTalkToken as seen at now:
// its token as a DingTalkToken's, then its namespaces, with the failed ones and their reasons.
func renderClusterStatus(w io.Writer, rep *clusterReport, now time.Time) error {
	tok := rep.Token
	st := &tok.Status.TokenStatus
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", label, fmt.Sprintf(format, args...))
	}
	line("ClusterDingTalkToken:", "%s", tok.Name)
	line("Type:", "%s", tok.Spec.Type)
	writeHeadState(line, tok.Spec.Suspend, st.ObservedGeneration, tok.Generation)
	line("Namespaces:", "%s", namespacesText(tok))
	line("Selector:", "%s", metav1.FormatLabelSelector(tok.Spec.NamespaceSelector))
	line("Target:", "Secret %s, key %s, in each selected namespace", tok.Spec.Target.Name, tok.TargetKey())
	hintFor := func(reason string) string { return clusterHint(reason, tok.Spec.Type, tok.Name) }
	writeConditions(line, st, hintFor, "ClusterDingTalkToken", now)
	writeTimes(line, st, tok.Spec.Suspend, tok.Annotations, now)
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := renderFailedNamespaces(w, tok, hintFor); err != nil {
		return err
	}
	if err := renderSecrets(w, rep.Secrets); err != nil {
		return err
	}
	return renderEvents(w, rep.Events, rep.EventsError, now)
}

// namespacesText is the namespace counts: "1 of 2 selected hold the current token, 1 failed".
func namespacesText(tok *v1alpha1.ClusterDingTalkToken) string {
	n := tok.Status.Namespaces
	switch {
	case n == nil:
		return "unknown: the operator has not reconciled this ClusterDingTalkToken yet"
	case n.Matched == 0:
		return "none selected"
	}
	s := fmt.Sprintf("%d of %d selected hold the current token", n.Provisioned, n.Matched)
	if n.Failed > 0 {
		s += fmt.Sprintf(", %d failed", n.Failed)
	}
	return s
}

// renderFailedNamespaces lists the failed namespaces the status names (at most
// v1alpha1.MaxFailedNamespaces) with their reasons and messages, and a hint per reason not
// hinted above (the Ready condition carries the first namespace's reason).
func renderFailedNamespaces(w io.Writer, tok *v1alpha1.ClusterDingTalkToken, hintFor func(string) string) error {
	failed := tok.Status.FailedNamespaces
	if len(failed) == 0 {
		return nil
	}
	fmt.Fprintln(w, "Failed namespaces:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	hinted := map[string]bool{failed[0].Reason: true}
	for _, f := range failed {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Namespace, oneLine(f.Reason), oneLine(f.Message))
		if !hinted[f.Reason] {
			hinted[f.Reason] = true
			if h := hintFor(f.Reason); h != "" {
				fmt.Fprintf(tw, "  \t\tHint: %s\n", h)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n := tok.Status.Namespaces; n != nil && int(n.Failed) > len(failed) {
		fmt.Fprintf(w, "  ... and %d more (the status lists the first %d)\n", int(n.Failed)-len(failed), len(failed))
	}
	return nil
}
