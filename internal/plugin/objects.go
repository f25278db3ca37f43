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
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// tokenRef names a DingTalkToken, or a ClusterDingTalkToken (Cluster, no namespace).
type tokenRef struct {
	Cluster         bool
	Namespace, Name string
}

// String is how the plugin names the object: "dingtalktoken apps/crm-bot",
// "clusterdingtalktoken crm-bot".
func (r tokenRef) String() string {
	if r.Cluster {
		return "clusterdingtalktoken " + r.Name
	}
	return "dingtalktoken " + r.Namespace + "/" + r.Name
}

func (r tokenRef) key() types.NamespacedName {
	return types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
}

// newObject is an empty object of the kind r names.
func (r tokenRef) newObject() client.Object {
	if r.Cluster {
		return &v1alpha1.ClusterDingTalkToken{}
	}
	return &v1alpha1.DingTalkToken{}
}

// clusterFlagUsage explains --cluster on status and refresh, where it takes the place of
// kubectl's --cluster (the kubeconfig cluster, which --context selects as well).
const clusterFlagUsage = "names (and -l, --all) select ClusterDingTalkTokens, as cdtt/NAME does; here --cluster is not kubectl's kubeconfig cluster: use --context"

// Resource names of the two kinds as kubectl accepts them before a slash: kind, plural, short
// name, each also qualified by the group.
var (
	namespacedNames = resourceNames("dingtalktoken", "dingtalktokens", "dtt")
	clusterNames    = resourceNames("clusterdingtalktoken", "clusterdingtalktokens", "cdtt")
)

func resourceNames(names ...string) []string {
	out := slices.Clone(names)
	for _, n := range names {
		out = append(out, n+"."+v1alpha1.GroupVersion.Group)
	}
	return out
}

// parseRef reads a command's argument: NAME, dtt/NAME or cdtt/NAME (or kubectl's other spellings
// of the two kinds). cluster (--cluster) makes a bare NAME a ClusterDingTalkToken; ns is the
// namespace of a DingTalkToken.
func parseRef(arg, ns string, cluster bool) (tokenRef, error) {
	kind, name, typed := strings.Cut(arg, "/")
	if !typed {
		name = kind
	}
	switch {
	case name == "" || strings.Contains(name, "/"):
		return tokenRef{}, fmt.Errorf("%q is not a name: use NAME, dtt/NAME or cdtt/NAME", arg)
	case !typed:
		return tokenRef{Cluster: cluster, Namespace: namespaceOf(cluster, ns), Name: name}, nil
	case slices.Contains(clusterNames, strings.ToLower(kind)):
		return tokenRef{Cluster: true, Name: name}, nil
	case slices.Contains(namespacedNames, strings.ToLower(kind)) && cluster:
		return tokenRef{}, fmt.Errorf("%s names a DingTalkToken, but --cluster asks for ClusterDingTalkTokens", arg)
	case slices.Contains(namespacedNames, strings.ToLower(kind)):
		return tokenRef{Namespace: ns, Name: name}, nil
	}
	return tokenRef{}, fmt.Errorf("%q: kubectl dingtalk knows dingtalktokens (dtt/NAME) and clusterdingtalktokens (cdtt/NAME), not %q", arg, kind)
}

func namespaceOf(cluster bool, ns string) string {
	if cluster {
		return ""
	}
	return ns
}

// describeGetError turns a failed read of a DingTalkToken or ClusterDingTalkToken into a
// one-line reason.
func describeGetError(err error, ref tokenRef) error {
	kind, where := "dingtalktoken", fmt.Sprintf(" in namespace %q", ref.Namespace)
	api := "DingTalkToken"
	if ref.Cluster {
		kind, where, api = "clusterdingtalktoken", "", "ClusterDingTalkToken"
	}
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s %q not found%s", kind, ref.Name, where)
	case meta.IsNoMatchError(err):
		return fmt.Errorf("the %s API (dingtalk.tokens.dev/v1alpha1) is not installed in this cluster", api)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("not allowed to get %s %q%s", kind, ref.Name, where)
	}
	return fmt.Errorf("reading %s: %w", ref, err)
}

// tokenView is what refresh reads of an object of either kind: its status and whether it is
// suspended.
type tokenView struct {
	ref     tokenRef
	status  *v1alpha1.TokenStatus
	suspend bool
}

// viewOf reads the view of a DingTalkToken or ClusterDingTalkToken.
func viewOf(obj client.Object) tokenView {
	switch o := obj.(type) {
	case *v1alpha1.ClusterDingTalkToken:
		return tokenView{ref: tokenRef{Cluster: true, Name: o.Name}, status: &o.Status.TokenStatus, suspend: o.Spec.Suspend}
	case *v1alpha1.DingTalkToken:
		return tokenView{ref: tokenRef{Namespace: o.Namespace, Name: o.Name}, status: &o.Status.TokenStatus, suspend: o.Spec.Suspend}
	}
	panic(fmt.Sprintf("not a token kind: %T", obj))
}

// getView reads the object ref names.
func getView(ctx context.Context, c client.Client, ref tokenRef) (tokenView, error) {
	obj := ref.newObject()
	if err := c.Get(ctx, ref.key(), obj); err != nil {
		return tokenView{}, err
	}
	return viewOf(obj), nil
}

// listViews lists the DingTalkTokens of ns (every namespace when ns is ""), or the
// ClusterDingTalkTokens, that sel (nil: everything) matches, sorted by namespace and name.
func listViews(ctx context.Context, c client.Client, cluster bool, ns string, sel labels.Selector) ([]tokenView, error) {
	var opts []client.ListOption
	if sel != nil {
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
	}
	var out []tokenView
	if cluster {
		var list v1alpha1.ClusterDingTalkTokenList
		if err := c.List(ctx, &list, opts...); err != nil {
			return nil, listError(err, "ClusterDingTalkToken")
		}
		for i := range list.Items {
			out = append(out, viewOf(&list.Items[i]))
		}
	} else {
		if ns != "" {
			opts = append(opts, client.InNamespace(ns))
		}
		var list v1alpha1.DingTalkTokenList
		if err := c.List(ctx, &list, opts...); err != nil {
			return nil, listError(err, "DingTalkToken")
		}
		for i := range list.Items {
			out = append(out, viewOf(&list.Items[i]))
		}
	}
	slices.SortFunc(out, func(a, b tokenView) int {
		return cmp.Or(cmp.Compare(a.ref.Namespace, b.ref.Namespace), cmp.Compare(a.ref.Name, b.ref.Name))
	})
	return out, nil
}

func listError(err error, api string) error {
	if meta.IsNoMatchError(err) {
		return fmt.Errorf("the %s API (dingtalk.tokens.dev/v1alpha1) is not installed in this cluster", api)
	}
	if apierrors.IsForbidden(err) {
		return errors.New("not allowed to list " + strings.ToLower(api) + "s")
	}
	return fmt.Errorf("listing %ss: %w", strings.ToLower(api), err)
}
