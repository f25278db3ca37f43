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

// Package tmpl renders the data templates of a target Secret (spec.target.template.data) within
// bounds: a template is written by any namespace editor and rendered by the one process that
// serves every namespace.
package tmpl

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode/utf8"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// Template bounds: every function refuses an input over maxFuncInput and an output it
// could never write, a pipeline has at most maxPipelineCommands commands, a template at most
// maxTemplateActions actions (nested pipelines count), and the functions of one render allocate at
// most maxRenderAlloc in total. Evaluation stops at the first step over a bound: TemplateInvalid.
const (
	// maxTemplateOutput caps what the templates of one object render, all keys together.
	maxTemplateOutput = 64 << 10
	// maxFuncInput is the largest string quote, b64enc and toJson accept.
	maxFuncInput = 64 << 10
	// maxPipelineCommands bounds the commands of one pipeline ({{ .A | quote | b64enc }} has 3).
	maxPipelineCommands = 4
	// maxTemplateActions bounds the actions of one template: each {{ }} and each parenthesised
	// pipeline inside one counts.
	maxTemplateActions = 32
	// maxRenderAlloc bounds the bytes the functions of one render may produce, all keys together.
	maxRenderAlloc = 1 << 20
)

// Fields are the fields a template may use (docs/token-types.md, "Templates").
type Fields struct {
	AccessToken string
	ExpiresAt   string
	Type        string
	CorpID      string
}

var allowedFields = []string{"AccessToken", "ExpiresAt", "Type", "CorpID"}

// templateFuncs names the only functions a template may call, for parsing and checking. Rendering
// binds the bounded implementations of a renderBudget in their place.
var templateFuncs = (&renderBudget{}).funcs()

// boundError is a template step over a bound; its message names the bound, never a value.
type boundError struct{ msg string }

func (e *boundError) Error() string { return e.msg }

// renderBudget is what the functions of one render may still allocate.
type renderBudget struct{ left int }

func newRenderBudget() *renderBudget { return &renderBudget{left: maxRenderAlloc} }

// funcs are quote, b64enc and toJson charged to b: each knows its output's exact length before
// it allocates, and refuses what is over a bound.
func (b *renderBudget) funcs() template.FuncMap {
	return template.FuncMap{
		"quote": func(s string) (string, error) {
			if err := b.charge("quote", s, quotedLen(s)); err != nil {
				return "", err
			}
			return strconv.Quote(s), nil
		},
		"b64enc": func(s string) (string, error) {
			if err := b.charge("b64enc", s, base64.StdEncoding.EncodedLen(len(s))); err != nil {
				return "", err
			}
			return base64.StdEncoding.EncodeToString([]byte(s)), nil
		},
		"toJson": func(s string) (string, error) {
			if err := b.charge("toJson", s, jsonStringLen(s)); err != nil {
				return "", err
			}
			out, err := json.Marshal(s)
			return string(out), err
		},
	}
}

// charge admits one call of fn on in producing out bytes, or says which bound it is over.
func (b *renderBudget) charge(fn, in string, out int) error {
	switch {
	case len(in) > maxFuncInput:
		return &boundError{fmt.Sprintf("%s refuses an input over %d KiB", fn, maxFuncInput>>10)}
	case out > maxTemplateOutput:
		return &boundError{fmt.Sprintf("%s would produce more than %d KiB", fn, maxTemplateOutput>>10)}
	case out > b.left:
		return &boundError{fmt.Sprintf("the template functions would produce more than %d KiB in all", maxRenderAlloc>>10)}
	}
	b.left -= out
	return nil
}

// quotedLen is len(strconv.Quote(s)), computed without allocating.
func quotedLen(s string) int {
	n := 2
	for len(s) > 0 {
		r, width := rune(s[0]), 1
		if r >= utf8.RuneSelf {
			r, width = utf8.DecodeRuneInString(s)
		}
		s = s[width:]
		switch {
		case width == 1 && r == utf8.RuneError:
			n += 4 // \xNN
		case r == '"' || r == '\\':
			n += 2
		case strconv.IsPrint(r):
			n += utf8.RuneLen(r)
		case r == '\a' || r == '\b' || r == '\f' || r == '\n' || r == '\r' || r == '\t' || r == '\v':
			n += 2
		case r < ' ' || r == 0x7f:
			n += 4 // \xNN
		case r < 0x10000:
			n += 6 // \uNNNN
		default:
			n += 10 // \UNNNNNNNN
		}
	}
	return n
}

// jsonStringLen is len(json.Marshal(s)) (which escapes HTML), computed without allocating.
func jsonStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < ' ' || c == '<' || c == '>' || c == '&':
				n += 6 // \u00NN
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
			n += 6 // \ufffd, \u2028, \u2029
		default:
			n += size
		}
		i += size
	}
	return n
}

// Parse parses and checks every spec.target.template.data value: only text, field actions
// ({{ .AccessToken }}) and the functions quote, b64enc and toJson; no range, with, if, define,
// template or block, no variables. The error names the key.
func Parse(tt *v1alpha1.TargetTemplate) (map[string]*template.Template, error) {
	if tt == nil || len(tt.Data) == 0 {
		return nil, nil
	}
	data := tt.Data
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make(map[string]*template.Template, len(data))
	for _, k := range keys {
		t, err := template.New(k).Funcs(templateFuncs).Option("missingkey=error").Parse(data[k])
		if err == nil {
			err = checkTemplate(t)
		}
		if err != nil {
			return nil, fmt.Errorf("spec.target.template.data[%s]: %w", k, err)
		}
		out[k] = t
	}
	return out, nil
}

// checkTemplate refuses everything but text and field actions, and templates over the action and
// pipeline bounds.
func checkTemplate(t *template.Template) error {
	if len(t.Templates()) > 1 {
		return errors.New("define and block are not allowed")
	}
	if t.Tree == nil || t.Root == nil {
		return nil
	}
	actions := 0
	for _, n := range t.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
		case *parse.ActionNode:
			if err := checkPipe(n.Pipe, &actions); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s is not allowed: only field actions such as {{ .AccessToken }} and the functions quote, b64enc and toJson", nodeName(n))
		}
	}
	return nil
}

// checkPipe checks one pipeline and those nested in it, counting each as an action.
func checkPipe(p *parse.PipeNode, actions *int) error {
	if p == nil {
		return nil
	}
	if *actions++; *actions > maxTemplateActions {
		return fmt.Errorf("more than %d actions (each {{ }} and each parenthesised pipeline counts)", maxTemplateActions)
	}
	if len(p.Cmds) > maxPipelineCommands {
		return fmt.Errorf("a pipeline has more than %d commands", maxPipelineCommands)
	}
	if len(p.Decl) > 0 || p.IsAssign {
		return errors.New("variables are not allowed")
	}
	for _, c := range p.Cmds {
		for _, a := range c.Args {
			switch a := a.(type) {
			case *parse.FieldNode:
				if len(a.Ident) != 1 || !slices.Contains(allowedFields, a.Ident[0]) {
					return fmt.Errorf("field %s is not allowed: use .%s", a.String(), strings.Join(allowedFields, ", ."))
				}
			case *parse.IdentifierNode:
				if _, ok := templateFuncs[a.Ident]; !ok {
					return fmt.Errorf("function %s is not allowed: only quote, b64enc and toJson", a.Ident)
				}
			case *parse.PipeNode:
				if err := checkPipe(a, actions); err != nil {
					return err
				}
			default:
				return fmt.Errorf("%s is not allowed in an action: only fields and the functions quote, b64enc and toJson", nodeName(a))
			}
		}
	}
	return nil
}

// nodeName names a refused template construct without echoing secrets (templates hold none).
func nodeName(n parse.Node) string {
	switch n.(type) {
	case *parse.RangeNode:
		return "range"
	case *parse.WithNode:
		return "with"
	case *parse.IfNode:
		return "if"
	case *parse.TemplateNode:
		return "template (or block)"
	case *parse.BreakNode, *parse.ContinueNode:
		return "break/continue"
	case *parse.VariableNode:
		return "a variable"
	case *parse.DotNode:
		return "{{ . }}"
	case *parse.StringNode, *parse.NumberNode, *parse.BoolNode, *parse.NilNode:
		return "a literal"
	case *parse.ChainNode:
		return "a chained field"
	default:
		return "this construct"
	}
}

var errOutputTooLarge = errors.New("template output too large")

// limitedBuffer fails once more than its remaining budget is written.
type limitedBuffer struct {
	bytes.Buffer
	left *int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if len(p) > *b.left {
		return 0, errOutputTooLarge
	}
	*b.left -= len(p)
	return b.Buffer.Write(p)
}

// Render executes the templates over f; the output of all keys together is at most 64 KiB
// and the functions of all keys together produce at most 1 MiB. Errors never quote the rendered
// output (it holds the token).
func Render(tmpls map[string]*template.Template, f Fields) (map[string][]byte, error) {
	if len(tmpls) == 0 {
		return nil, nil
	}
	budget := newRenderBudget()
	left := maxTemplateOutput
	out := make(map[string][]byte, len(tmpls))
	keys := make([]string, 0, len(tmpls))
	for k := range tmpls {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		buf := &limitedBuffer{left: &left}
		if err := tmpls[k].Funcs(budget.funcs()).Execute(buf, f); err != nil {
			var be *boundError
			switch {
			case errors.Is(err, errOutputTooLarge):
				return nil, fmt.Errorf("spec.target.template.data[%s]: the rendered templates exceed %d KiB", k, maxTemplateOutput>>10)
			case errors.As(err, &be):
				return nil, fmt.Errorf("spec.target.template.data[%s]: %s", k, be.msg)
			}
			return nil, fmt.Errorf("spec.target.template.data[%s]: the template failed to render", k)
		}
		out[k] = bytes.Clone(buf.Bytes())
	}
	return out, nil
}

// Check parses the templates and renders them over placeholder values, so that a bad template is
// reported before a DingTalk call is spent on a token that could not be written.
func Check(tt *v1alpha1.TargetTemplate, typ v1alpha1.TokenType) error {
	tmpls, err := Parse(tt)
	if err == nil {
		_, err = Render(tmpls, Fields{
			AccessToken: strings.Repeat("x", 64),
			ExpiresAt:   "2006-01-02T15:04:05Z",
			Type:        string(typ),
			CorpID:      "dingplaceholdercorp",
		})
	}
	return err
}
