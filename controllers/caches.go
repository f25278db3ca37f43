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

package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	toolscache "k8s.io/client-go/tools/cache"
)

// What the informer caches keep of each object. managedFields are most of a cached object's
// size (about 1 KiB for a DingTalkToken whose status the operator writes), and `kubectl apply`
// keeps a copy of the whole object in an annotation: the operator reads neither, but its own
// field manager's entries on its Secrets (staleFields, hasUpdateEntry), which the Secrets' own
// transform keeps (secretView: no data, no foreign entries, no last-applied copy).

// lastApplied is the annotation `kubectl apply` keeps the whole applied object in.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// stripManagedFields drops managedFields and kubectl's last-applied copy of the object:
// DingTalkTokens, ClusterDingTalkTokens and Namespaces.
var stripManagedFields toolscache.TransformFunc = func(in any) (any, error) {
	obj, err := meta.Accessor(in)
	if err != nil {
		return in, nil
	}
	if obj.GetManagedFields() != nil {
		obj.SetManagedFields(nil)
	}
	if a := obj.GetAnnotations(); a[lastApplied] != "" {
		delete(a, lastApplied)
		obj.SetAnnotations(a)
	}
	return in, nil
}
