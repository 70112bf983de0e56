package policy

import (
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// inputUse is what a decision's rules read of the input document, found
// by walking the compiled rules reachable from the decision.
type inputUse struct {
	whole            bool       // input referred to as a whole, or with a variable key at its root
	paths            [][]string // the ground prefixes of every input.… reference
	nondeterministic bool       // a non-deterministic built-in (time.now_ns, http.send, rand.…) is called
}

// analyze walks the rules that the rule set at ref depends on (through the
// compiler's dependency graph) and records how they use input.
func analyze(c *ast.Compiler, ref ast.Ref) inputUse {
	var use inputUse
	seen := map[util.T]struct{}{}
	var queue []util.T
	for _, r := range c.GetRulesWithPrefix(ref) {
		queue = append(queue, r)
	}
	for _, r := range c.GetRules(ref) {
		queue = append(queue, r)
	}
	for len(queue) > 0 {
		x := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if _, ok := seen[x]; ok {
			continue
		}
		seen[x] = struct{}{}
		rule, ok := x.(*ast.Rule)
		if !ok {
			continue
		}
		// Every rule of the same name counts (else branches, partial
		// rules, the default).
		for r := rule; r != nil; r = r.Else {
			use.walk(r)
		}
		for dep := range c.Graph.Dependencies(x) {
			queue = append(queue, dep)
		}
	}
	use.paths = minimalPaths(use.paths)
	return use
}

func (u *inputUse) walk(x any) {
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case ast.Ref:
			if len(x) == 0 {
				return true
			}
			if v, ok := x[0].Value.(ast.Var); ok && v.Equal(ast.InputRootDocument.Value) {
				u.recordInputRef(x)
				for _, t := range x[1:] {
					vis.Walk(t)
				}
				return true
			}
		case ast.Var:
			// A bare `input` (not the head of a reference).
			if x.Equal(ast.InputRootDocument.Value) {
				u.whole = true
			}
		case *ast.Expr:
			if x.IsCall() {
				if b, ok := ast.BuiltinMap[x.Operator().String()]; ok && b.IsNondeterministic() {
					u.nondeterministic = true
				}
			}
		case ast.Call:
			if len(x) > 0 {
				if r, ok := x[0].Value.(ast.Ref); ok {
					if b, ok := ast.BuiltinMap[r.String()]; ok && b.IsNondeterministic() {
						u.nondeterministic = true
					}
				}
			}
		}
		return false
	})
	vis.Walk(x)
}

func (u *inputUse) recordInputRef(r ast.Ref) {
	var path []string
	for _, t := range r[1:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		path = append(path, string(s))
	}
	if len(path) == 0 {
		u.whole = true
		return
	}
	u.paths = append(u.paths, path)
}

// minimalPaths drops duplicates and paths under another path.
func minimalPaths(paths [][]string) [][]string {
	slices.SortFunc(paths, func(a, b []string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(strings.Join(a, "."), strings.Join(b, "."))
	})
	var out [][]string
next:
	for _, p := range paths {
		for _, q := range out {
			if len(q) <= len(p) && slices.Equal(q, p[:len(q)]) {
				continue next
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(strings.Join(a, "."), strings.Join(b, ".")) })
	return out
}

// fieldBits is the set of top-level input fields a use needs built.
func (u *inputUse) fieldBits(bits map[string]uint32) uint32 {
	if u.whole {
		return allFields
	}
	var need uint32
	for _, p := range u.paths {
		need |= bits[p[0]]
	}
	return need
}
