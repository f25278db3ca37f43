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
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"helm.sh/helm/v3/pkg/chartutil"
)

// helmCLI is the Helm CLI of this module's tool dependency (go.mod: tool helm.sh/helm/v3/cmd/helm),
// built once into Go's build cache (`go tool -n helm` builds it and prints its path).
func helmCLI(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", "tool", "-n", "helm").Output()
	if err != nil {
		t.Fatalf("building helm (go tool -n helm): %v", err)
	}
	return strings.TrimSpace(string(out))
}

// docsChart is a packaged chart standing in for the release's dist/dingtalk-token-operator-1.2.3.tgz
// the docs name: the CI release's when `make test-release` built one, else one packaged here (no images).
func docsChart(t *testing.T) string {
	t.Helper()
	if d, v := os.Getenv("RELEASE_DIST"), os.Getenv("RELEASE_VERSION"); d != "" && v != "" {
		return filepath.Join(d, ChartFile(v))
	}
	o := Options{Root: repoRoot, Version: "v1.2.3", Out: t.TempDir(), ImageRepo: testRepo, Log: io.Discard}
	if err := o.complete(t.Context()); err != nil {
		t.Fatal(err)
	}
	path, err := PackageChart(o)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// docFiles are the pages whose shell blocks a user copies.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append(files, filepath.Join(repoRoot, "README.md"), filepath.Join(chartDir(), "README.md"))
}

// fence is a Markdown code fence.
var fence = regexp.MustCompile("^\\s*```")

// shellCommands returns the commands in a page's code blocks that start with prefix ("helm "),
// with continuation lines joined, a leading `$ ` prompt and a trailing `# comment` removed.
func shellCommands(t *testing.T, file, prefix string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inBlock := false
	var cmd strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		if fence.MatchString(line) {
			inBlock, cmd = !inBlock, strings.Builder{}
			continue
		}
		if !inBlock {
			continue
		}
		line = strings.TrimSpace(line)
		if cmd.Len() == 0 {
			line = strings.TrimPrefix(line, "$ ")
			if !strings.HasPrefix(line, prefix) {
				continue
			}
		}
		if i := strings.Index(line, " # "); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if rest, ok := strings.CutSuffix(line, "\\"); ok {
			cmd.WriteString(strings.TrimSpace(rest) + " ")
			continue
		}
		cmd.WriteString(line)
		out = append(out, cmd.String())
		cmd.Reset()
	}
	return out
}

// TestDocsHelmCommands runs every helm command the docs show with Helm itself, against a packaged
// chart standing in for the release's: `helm template` as written (it needs no cluster), and
// `helm install` and `helm upgrade` as `helm template` with the same flags (what they would
// apply; a cluster would tell Helm its version, here --kube-version 1.30 does). It also checks
// what the docs say of `helm template` without --kube-version.
func TestDocsHelmCommands(t *testing.T) {
	helm, chart := helmCLI(t), docsChart(t)
	// A release's chart package, whatever version or directory the page names.
	chartPaths := regexp.MustCompile(`(\S*/)?dingtalk-token-operator-([0-9]+\.[0-9]+\.[0-9]+|X\.Y\.Z)\.tgz`)
	ran := 0
	for _, file := range docFiles(t) {
		rel, _ := filepath.Rel(repoRoot, file)
		for _, cmd := range shellCommands(t, file, "helm ") {
			fields := strings.Fields(cmd)
			switch {
			case len(fields) < 2:
				continue
			case fields[1] == "template":
			case fields[1] == "install" || fields[1] == "upgrade":
				cmd = "helm template " + strings.Join(fields[2:], " ") + " --kube-version 1.30"
			default:
				t.Logf("%s: not run here (needs a cluster): %s", rel, cmd)
				continue
			}
			cmd = chartPaths.ReplaceAllLiteralString(cmd, chart)
			if strings.Contains(cmd, "charts/dingtalk-token-operator") {
				// The source chart names no image (a release stamps it): the docs say to set it.
				if !strings.Contains(cmd, "image.repository") {
					t.Errorf("%s: %q renders the source chart without image.repository", rel, cmd)
					continue
				}
				cmd = strings.ReplaceAll(cmd, "charts/dingtalk-token-operator", chartDir())
			}
			c := exec.CommandContext(t.Context(), "bash", "-c", `helm() { "$HELM" "$@"; }; `+cmd)
			c.Env = append(os.Environ(), "HELM="+helm)
			out, err := c.CombinedOutput()
			if err != nil {
				t.Errorf("%s: %s\nfailed: %v\n%s", rel, cmd, err, out)
				continue
			}
			if !strings.Contains(string(out), "kind: Deployment") {
				t.Errorf("%s: %s rendered no Deployment:\n%.500s", rel, cmd, out)
			}
			ran++
		}
	}
	if ran < 3 {
		t.Errorf("ran %d helm commands from the docs; the install docs show at least 3", ran)
	}
	t.Logf("ran %d helm commands from the docs", ran)

	// docs/install.md: without --kube-version, `helm template` renders for Kubernetes 1.20 and
	// the chart's kubeVersion refuses it, with this message.
	out, err := exec.CommandContext(t.Context(), helm, "template", "x", chart).CombinedOutput()
	const want = "chart requires kubeVersion: >=1.30.0-0 which is incompatible with Kubernetes v1.20.0"
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("helm template without --kube-version: %v\n%s\nwant a failure saying %q (docs/install.md quotes it)", err, out, want)
	}
}

// link is a Markdown link's target: [text](target).
var link = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// codeSpan is inline code.
var codeSpan = regexp.MustCompile("`[^`]*`")

// heading is a Markdown heading line.
var heading = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)

// anchors are the ids GitHub gives a page's headings: lower case, spaces to '-', punctuation
// other than '-' and '_' dropped.
func anchors(page string) map[string]bool {
	out := map[string]bool{}
	inBlock := false
	for _, line := range strings.Split(page, "\n") {
		if fence.MatchString(line) {
			inBlock = !inBlock
		}
		m := heading.FindStringSubmatch(line)
		if inBlock || m == nil {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		id := b.String()
		for n := 1; out[id]; n++ {
			id = fmt.Sprintf("%s-%d", b.String(), n)
		}
		out[id] = true
	}
	return out
}

// TestDocsLinks: every relative link of the docs (README.md, docs/*.md, the chart's README)
// names a file that exists and, with a #fragment, a heading of that page.
func TestDocsLinks(t *testing.T) {
	checked := 0
	for _, file := range docFiles(t) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(repoRoot, file)
		// Links outside code: a code span or block may hold anything that looks like one.
		var prose strings.Builder
		inBlock := false
		for _, line := range strings.Split(string(b), "\n") {
			if fence.MatchString(line) {
				inBlock = !inBlock
				continue
			}
			if !inBlock {
				prose.WriteString(codeSpan.ReplaceAllString(line, "``") + "\n")
			}
		}
		for _, m := range link.FindAllStringSubmatch(prose.String(), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
			}
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("%s: link %s: no such file", rel, target)
				continue
			}
			checked++
			if frag == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			page, err := os.ReadFile(dest)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors(string(page))[frag] {
				t.Errorf("%s: link %s: %s has no heading #%s", rel, target, filepath.Base(dest), frag)
			}
		}
	}
	t.Logf("checked %d relative links", checked)
}

// TestDocsIndex: both indexes (docs/README.md and the README's Documentation list) name every
// page of docs/.
func TestDocsIndex(t *testing.T) {
	pages, _ := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	index, err := os.ReadFile(filepath.Join(repoRoot, "docs", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pages {
		name := filepath.Base(p)
		if name == "README.md" {
			continue
		}
		if !strings.Contains(string(index), "]("+name+")") {
			t.Errorf("docs/README.md does not list %s", name)
		}
		if !strings.Contains(string(readme), "](docs/"+name+")") {
			t.Errorf("README.md's Documentation list does not name docs/%s", name)
		}
	}
}

// TestDocsNameNoLocalPaths: the docs name paths relative to the repository, never a path of the
// machine they were written on.
func TestDocsNameNoLocalPaths(t *testing.T) {
	for _, file := range docFiles(t) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(repoRoot, file)
		for i, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "/work/") || strings.Contains(line, "/home/") {
				t.Errorf("%s:%d names a local path: %.120s", rel, i+1, line)
			}
		}
	}
}

// TestDocsInstallListsEveryValueAndFlag: docs/install.md's tables name every value of the
// chart's values.yaml and every flag the manager takes (`/manager --help`), so that a new knob
// cannot ship undocumented.
func TestDocsInstallListsEveryValueAndFlag(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	vals, err := chartutil.ReadValuesFile(filepath.Join(chartDir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Maps documented as a whole (their keys are Kubernetes' own fields).
	whole := map[string]bool{"resources": true, "podSecurityContext": true, "securityContext": true, "affinity": true,
		"nodeSelector": true, "podLabels": true, "podAnnotations": true}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			path := prefix + k
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 && !whole[path] {
				walk(path+".", sub)
				continue
			}
			// A row names the value in full (`a.b.c`), or its end after a sibling's (`.b.c`, `.c`).
			named := false
			parts := strings.Split(path, ".")
			for i := range parts {
				end := strings.Join(parts[i:], ".")
				named = named || strings.Contains(doc, "`"+end+"`") || strings.Contains(doc, "`."+end+"`")
			}
			if !named {
				t.Errorf("docs/install.md does not name the chart value %s", path)
			}
		}
	}
	walk("", vals)

	cmd := exec.CommandContext(t.Context(), "go", "run", "./cmd", "--help")
	cmd.Dir = repoRoot // the operator's module
	help, _ := cmd.CombinedOutput()
	flags := regexp.MustCompile(`(?m)^\s+-{1,2}([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1)
	if len(flags) < 10 {
		t.Fatalf("the manager's --help listed %d flags:\n%s", len(flags), help)
	}
	for _, f := range flags {
		if !strings.Contains(doc, "`--"+f[1]) {
			t.Errorf("docs/install.md does not name the manager's flag --%s", f[1])
		}
	}
}
