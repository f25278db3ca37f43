package controllers

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

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// maxTemplateOutput caps what the templates of one DingTalkToken render, all keys together.
const maxTemplateOutput = 64 << 10

// templateFields are the fields a template may use (docs/token-types.md, "Templates").
type templateFields struct {
	AccessToken string
	ExpiresAt   string
	Type        string
	CorpID      string
}

var allowedFields = []string{"AccessToken", "ExpiresAt", "Type", "CorpID"}

// templateFuncs are the only functions a template may call.
var templateFuncs = template.FuncMap{
	"quote":  strconv.Quote,
	"b64enc": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	"toJson": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// parseTemplates parses and checks every spec.target.template.data value: only text, field actions
// ({{ .AccessToken }}) and the functions quote, b64enc and toJson; no range, with, if, define,
// template or block, no variables. The error names the key.
func parseTemplates(tt *v1alpha1.TargetTemplate) (map[string]*template.Template, error) {
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

// checkTemplate refuses everything but text and field actions.
func checkTemplate(t *template.Template) error {
	if len(t.Templates()) > 1 {
		return errors.New("define and block are not allowed")
	}
	if t.Tree == nil || t.Root == nil {
		return nil
	}
	for _, n := range t.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
		case *parse.ActionNode:
			if err := checkPipe(n.Pipe); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s is not allowed: only field actions such as {{ .AccessToken }} and the functions quote, b64enc and toJson", nodeName(n))
		}
	}
	return nil
}

func checkPipe(p *parse.PipeNode) error {
	if p == nil {
		return nil
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
				if err := checkPipe(a); err != nil {
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

// renderTemplates executes the templates over f; the output of all keys together is at most 64 KiB.
// Errors never quote the rendered output (it holds the token).
func renderTemplates(tmpls map[string]*template.Template, f templateFields) (map[string][]byte, error) {
	if len(tmpls) == 0 {
		return nil, nil
	}
	left := maxTemplateOutput
	out := make(map[string][]byte, len(tmpls))
	keys := make([]string, 0, len(tmpls))
	for k := range tmpls {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		buf := &limitedBuffer{left: &left}
		if err := tmpls[k].Execute(buf, f); err != nil {
			if errors.Is(err, errOutputTooLarge) {
				return nil, fmt.Errorf("spec.target.template.data[%s]: the rendered templates exceed %d KiB", k, maxTemplateOutput>>10)
			}
			return nil, fmt.Errorf("spec.target.template.data[%s]: the template failed to render", k)
		}
		out[k] = bytes.Clone(buf.Bytes())
	}
	return out, nil
}

// dryRunTemplates parses the templates and renders them over placeholder values, so that a bad
// template is reported before a DingTalk call is spent on a token that could not be written.
func dryRunTemplates(spec tokenSpec) *failure {
	tmpls, err := parseTemplates(spec.Template)
	if err == nil {
		_, err = renderTemplates(tmpls, templateFields{
			AccessToken: strings.Repeat("x", 64),
			ExpiresAt:   "2006-01-02T15:04:05Z",
			Type:        string(spec.Type),
			CorpID:      "dingplaceholdercorp",
		})
	}
	if err != nil {
		return &failure{reason: v1alpha1.ReasonTemplateInvalid, message: err.Error()}
	}
	return nil
}
