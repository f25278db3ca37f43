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

// Command crdpatch adds to generated CRDs what controller-gen markers cannot express:
// a maxLength on metadata.name (the only metadata field a CRD schema may restrict).
//
// Usage: go run ./hack/crdpatch -max-name-length 239 config/crd/bases/<file>.yaml
package main

import (
	"flag"
	"fmt"
	"os"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

func main() {
	maxName := flag.Int64("max-name-length", 0, "maxLength for metadata.name (0: leave it)")
	flag.Parse()
	for _, path := range flag.Args() {
		if err := patch(path, *maxName); err != nil {
			fmt.Fprintf(os.Stderr, "crdpatch %s: %v\n", path, err)
			os.Exit(1)
		}
	}
}

func patch(path string, maxName int64) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(raw, &crd); err != nil {
		return err
	}
	for i := range crd.Spec.Versions {
		schema := crd.Spec.Versions[i].Schema.OpenAPIV3Schema
		meta := schema.Properties["metadata"]
		if maxName > 0 {
			meta.Properties = map[string]apiextensionsv1.JSONSchemaProps{
				"name": {Type: "string", MaxLength: ptr.To(maxName)},
			}
		}
		schema.Properties["metadata"] = meta
	}
	// Drop the empty status block the typed round trip adds: generated CRDs carry none.
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&crd)
	if err != nil {
		return err
	}
	delete(obj, "status")
	out, err := yaml.Marshal(obj)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte("---\n"), out...), 0o644)
}
