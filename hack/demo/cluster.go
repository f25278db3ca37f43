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

package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	dingtalkv1alpha1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
)

// Step 7: a ClusterDingTalkToken (config/samples/cluster) fans one token out to the namespaces
// its selector picks: one credentials Secret in one namespace, a target Secret in each selected
// namespace, one DingTalk call for all of them (shared with any DingTalkToken of the same
// credentials).

// applyClusterSamples applies the cluster samples (namespaces first, then Secrets, then the
// ClusterDingTalkTokens), waits until every ClusterDingTalkToken has provisioned every namespace
// it selects, and shows their Secrets and the DingTalk calls it took.
func (d *demo) applyClusterSamples(ctx context.Context) error {
	if d.cfg.clusterSamples == "" {
		d.step(7, "No cluster samples (--cluster-samples is empty): no ClusterDingTalkToken to show")
		d.printf("skipped\n")
		return nil
	}
	t0 := d.step(7, "ClusterDingTalkToken: applying %s, one token fanned out to the namespaces it selects", d.rel(d.cfg.clusterSamples))
	objs, err := d.renderClusterSamples()
	if err != nil {
		d.printf("FAILED\n")
		return err
	}
	appKeys := map[string]bool{}
	calls := int64(0)
	for _, u := range objs {
		if err := d.client.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
			d.printf("FAILED\n")
			return d.waitError(ctx, fmt.Sprintf("creating %s %s", u.GetKind(), u.GetName()),
				fmt.Errorf("%w (the cluster samples must pass the CRD's validation: see `go test ./config/`)", err))
		}
		if u.GetKind() == "Secret" {
			// Counted before the tokens exist: the calls made for them come after.
			key, _, _ := unstructured.NestedString(u.Object, "stringData", dingtalkv1alpha1.DefaultAppKeyKey)
			if key != "" && !appKeys[key] {
				appKeys[key] = true
				calls += d.appCalls(key)
			}
		}
		d.result.ClusterObjects = append(d.result.ClusterObjects, u.GetKind()+" "+u.GetName())
	}
	d.printf("\n")

	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var ctts []dingtalkv1alpha1.ClusterDingTalkToken
	for {
		var l dingtalkv1alpha1.ClusterDingTalkTokenList
		if err := d.client.List(ctx, &l); err != nil {
			return d.waitError(ctx, "waiting for the ClusterDingTalkTokens", err)
		}
		ctts = l.Items
		d.printClusterTable(ctts)
		if len(ctts) > 0 && allProvisioned(ctts) {
			break
		}
		if err := testenv.Sleep(ctx, pollInterval); err != nil {
			return d.waitError(ctx, "waiting for the ClusterDingTalkTokens", err)
		}
	}
	for key := range appKeys {
		d.result.ClusterCalls += d.appCalls(key)
	}
	d.result.ClusterCalls -= calls
	d.printf("%s Every selected namespace holds the token %.1fs after the ClusterDingTalkToken was created, with %d DingTalk call(s) "+
		"for all of them (a call another object of the same credentials just made is shared: demo/crm-bot uses the same app)\n",
		d.since(), time.Since(t0).Seconds(), d.result.ClusterCalls)
	return d.printClusterSecrets(ctx, ctts)
}

// renderClusterSamples renders the cluster samples in the order they can be created in.
func (d *demo) renderClusterSamples() ([]*unstructured.Unstructured, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), d.cfg.clusterSamples)
	if err != nil {
		return nil, &stepError{step: "rendering the cluster samples", err: err,
			fix: "restore config/samples/cluster (git checkout config/samples) or pass --cluster-samples"}
	}
	order := map[string]int{"Namespace": 0, "Secret": 1}
	var objs []*unstructured.Unstructured
	for _, r := range m.Resources() {
		obj, err := r.Map()
		if err != nil {
			return nil, &stepError{step: "decoding the cluster samples", err: err}
		}
		objs = append(objs, &unstructured.Unstructured{Object: obj})
	}
	rank := func(u *unstructured.Unstructured) int {
		if r, ok := order[u.GetKind()]; ok {
			return r
		}
		return len(order)
	}
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return rank(a) - rank(b) })
	return objs, nil
}

// appCalls counts the simulator's internal-app token calls for an appKey.
func (d *demo) appCalls(appKey string) int64 {
	return d.sim.Stats().Endpoints[simulator.PathAppAccessToken].Credentials[appKey].Total
}

// allProvisioned says whether every ClusterDingTalkToken is Ready with every namespace it selects
// holding the token.
func allProvisioned(ctts []dingtalkv1alpha1.ClusterDingTalkToken) bool {
	for i := range ctts {
		c := &ctts[i]
		n := c.Status.Namespaces
		if !meta.IsStatusConditionTrue(c.Status.Conditions, dingtalkv1alpha1.ConditionReady) || n == nil ||
			n.Matched == 0 || n.Provisioned != n.Matched {
			return false
		}
	}
	return true
}

// printClusterTable prints the ClusterDingTalkTokens like `kubectl get cdtt`, when anything changed.
func (d *demo) printClusterTable(ctts []dingtalkv1alpha1.ClusterDingTalkToken) {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tTYPE\tREADY\tREASON\tNAMESPACES\tEXPIRES\tREFRESH")
	slices.SortFunc(ctts, func(a, b dingtalkv1alpha1.ClusterDingTalkToken) int { return strings.Compare(a.Name, b.Name) })
	for i := range ctts {
		c := &ctts[i]
		ready, reason, namespaces := "", "", ""
		if cond := meta.FindStatusCondition(c.Status.Conditions, dingtalkv1alpha1.ConditionReady); cond != nil {
			ready, reason = string(cond.Status), cond.Reason
		}
		if c.Status.Namespaces != nil {
			namespaces = c.Status.Namespaces.Summary
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Spec.Type, ready, reason, namespaces,
			timeString(c.Status.ExpiresAt), timeString(c.Status.RefreshTime))
	}
	_ = w.Flush()
	if b.String() == d.clusterTable {
		return
	}
	d.clusterTable = b.String()
	d.printf("%s\n", d.since())
	for _, line := range strings.SplitAfter(strings.TrimRight(b.String(), "\n"), "\n") {
		d.printf("  %s", line)
	}
	d.printf("\n")
}

// printClusterSecrets shows the target Secret of each ClusterDingTalkToken in every namespace
// that holds one (values masked).
func (d *demo) printClusterSecrets(ctx context.Context, ctts []dingtalkv1alpha1.ClusterDingTalkToken) error {
	d.printf("\nThe target Secrets of the fan-out (token values masked; one per selected namespace):\n")
	for i := range ctts {
		c := &ctts[i]
		var secrets corev1.SecretList
		if err := d.client.List(ctx, &secrets, client.MatchingFields{"metadata.name": c.Spec.Target.Name}); err != nil {
			return d.waitError(ctx, "listing the target Secrets of "+c.Name, err)
		}
		for j := range secrets.Items {
			sec := &secrets.Items[j]
			if !metav1.IsControlledBy(sec, c) {
				continue
			}
			d.printf("  %s/%s  (target of the ClusterDingTalkToken %s)\n      %s\n", sec.Namespace, sec.Name, c.Name, maskedKeys(sec))
			d.result.ClusterSecrets = append(d.result.ClusterSecrets, sec.Namespace+"/"+sec.Name)
		}
	}
	d.printf("\n")
	return nil
}
