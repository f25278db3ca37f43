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
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

const root = "../.."

// TestAPIReferenceIsCurrent fails when docs/api-reference.md differs from what the CRDs give:
// a type, comment or marker changed without `make api-docs` (which `make manifests` runs).
func TestAPIReferenceIsCurrent(t *testing.T) {
	if err := run(root, true); err != nil {
		t.Fatal(err)
	}
}

// TestAPIReferenceCoversEveryField: every property of every CRD's schema has its row, and every
// CEL rule's message is on the page.
func TestAPIReferenceCoversEveryField(t *testing.T) {
	page, err := Generate(root)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	rows := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(b, crd); err != nil {
			t.Fatal(err)
		}
		section := string(page)[strings.Index(string(page), "\n## "+crd.Spec.Names.Kind+"\n"):]
		if i := strings.Index(section[4:], "\n## "); i >= 0 {
			section = section[:i+4]
		}
		var walk func(path string, s apiextensionsv1.JSONSchemaProps)
		walk = func(path string, s apiextensionsv1.JSONSchemaProps) {
			if path != "" && path != "metadata" { // metadata: its constrained fields only
				if !strings.Contains(section, "| `"+path+"` |") {
					t.Errorf("%s: no row for %s", crd.Spec.Names.Kind, path)
				}
				rows++
			}
			for _, r := range s.XValidations {
				if !strings.Contains(section, text(r.Message)) {
					t.Errorf("%s: the rule of %s is not on the page: %s", crd.Spec.Names.Kind, path, r.Message)
				}
			}
			for name, p := range s.Properties {
				if path == "" && (name == "apiVersion" || name == "kind") {
					continue
				}
				walk(strings.TrimPrefix(path+"."+name, "."), p)
			}
			if s.Items != nil && s.Items.Schema != nil {
				for name, p := range s.Items.Schema.Properties {
					walk(path+"[]."+name, p)
				}
			}
		}
		walk("", *crd.Spec.Versions[0].Schema.OpenAPIV3Schema)
	}
	if rows < 50 {
		t.Errorf("the page has %d field rows; the two kinds have more fields than that", rows)
	}
	// What kubectl explain said before digests were keyed by the installation's key, and a
	// contributor's note that is no user's business.
	for _, stale := range []string{"keyed by this object's UID", "hack/crdpatch"} {
		if strings.Contains(string(page), stale) {
			t.Errorf("a description in api/v1alpha1 still says %q", stale)
		}
	}
	// No unescaped tag-like text outside code: Markdown would hide <name>.
	for _, line := range strings.Split(string(page), "\n") {
		outside := regexp.MustCompile("`[^`]*`").ReplaceAllString(line, "")
		if regexp.MustCompile(`<[a-zA-Z.]+>`).MatchString(outside) && !strings.HasPrefix(line, "<!--") {
			t.Errorf("unescaped <...> outside code: %.120s", line)
		}
	}
}
