package policy

import (
	"fmt"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/types"
)

// The custom built-in functions offered to Rego. They are declared here
// once (immutable values) and implemented per load by a builtinSet, whose
// matcher cache belongs to that load: nothing is registered globally in
// OPA.
var (
	stringSet = types.NewAny(types.NewArray(nil, types.S), types.NewSet(types.S))

	declContainsAny = &rego.Function{
		Name: "xmppedge.contains_any",
		Description: "Reports whether text contains any of the keywords, ignoring case " +
			"(Unicode lower-casing). One pass over the text for the whole set (Aho-Corasick).",
		Decl: stringSetTest("text", "keywords"),
	}
	declMatchesAny = &rego.Function{
		Name: "xmppedge.matches_any",
		Description: "Reports whether any of the regular expressions (Go RE2 syntax, " +
			"case-sensitive unless (?i)) matches somewhere in text.",
		Decl: stringSetTest("text", "patterns"),
	}
	declDomainIn = &rego.Function{
		Name: "xmppedge.domain_in",
		Description: "Reports whether domain matches any of the patterns: exact domains, " +
			"\"*.example.org\" (one or more whole labels before example.org) or \"*\".",
		Decl: stringSetTest("domain", "patterns"),
	}
	declPartnersFor = &rego.Function{
		Name: "xmppedge.partners_for",
		Description: "Returns the entries of partners (objects with a \"domain\" pattern) whose " +
			"pattern is the most specific match for domain: exact, then the longest " +
			"wildcard suffix, then \"*\". Empty when none matches.",
		Decl: types.NewFunction(
			types.Args(types.Named("domain", types.S),
				types.Named("partners", types.NewArray(nil, types.NewObject(nil, types.NewDynamicProperty(types.S, types.A))))),
			types.Named("entries", types.NewArray(nil, types.A))),
	}
)

// stringSetTest declares a built-in that tests a string, named subject,
// against a set of strings (an array or a set), named set, and returns a
// boolean named result.
func stringSetTest(subject, set string) *types.Function {
	return types.NewFunction(
		types.Args(types.Named(subject, types.S), types.Named(set, stringSet)),
		types.Named("result", types.B))
}

// customBuiltinDecls returns the declarations, for capabilities.
func customBuiltinDecls() []*ast.Builtin {
	var out []*ast.Builtin
	for _, f := range []*rego.Function{declContainsAny, declMatchesAny, declDomainIn, declPartnersFor} {
		out = append(out, &ast.Builtin{Name: f.Name, Description: f.Description, Decl: f.Decl})
	}
	return out
}

// builtinSet implements the built-ins over one cache of compiled
// matchers. Sets are recognised by identity (the same AST value, as read
// from the store again and again) or, failing that, by hash and equality,
// so a set is compiled once per load however many evaluations use it.
type builtinSet struct {
	mu       sync.RWMutex
	byHash   map[uint64][]compiledSet
	size     int
	maxSize  int
	compiles uint64 // for tests: how many sets were compiled
}

type compiledSet struct {
	kind    uint8
	value   ast.Value
	matcher any
}

const (
	kindKeywords uint8 = iota + 1
	kindPatterns
	kindDomains
	kindPartners
)

func newBuiltinSet() *builtinSet {
	return &builtinSet{byHash: map[uint64][]compiledSet{}, maxSize: 4096}
}

// matcher returns the compiled matcher of a set, compiling it on first use.
func (b *builtinSet) matcher(kind uint8, v ast.Value, compile func(ast.Value) (any, error)) (any, error) {
	h := uint64(v.Hash())<<3 ^ uint64(kind)
	b.mu.RLock()
	entries := b.byHash[h]
	for _, e := range entries {
		if e.kind == kind && e.value == v {
			b.mu.RUnlock()
			return e.matcher, nil
		}
	}
	var equal any
	for _, e := range entries {
		if e.kind == kind && e.value.Compare(v) == 0 {
			equal = e.matcher
			break
		}
	}
	b.mu.RUnlock()
	m := equal
	if m == nil {
		var err error
		if m, err = compile(v); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if equal == nil {
		b.compiles++
	}
	if b.size >= b.maxSize {
		b.byHash = map[uint64][]compiledSet{}
		b.size = 0
	}
	if len(b.byHash[h]) < 8 { // bounded aliases of one set
		b.byHash[h] = append(b.byHash[h], compiledSet{kind: kind, value: v, matcher: m})
		b.size++
	}
	return m, nil
}

func stringsOf(v ast.Value, what string) ([]string, error) {
	var out []string
	add := func(t *ast.Term) error {
		s, ok := t.Value.(ast.String)
		if !ok {
			return fmt.Errorf("%s: %v is not a string", what, t)
		}
		out = append(out, string(s))
		return nil
	}
	switch c := v.(type) {
	case *ast.Array:
		for i := 0; i < c.Len(); i++ {
			if err := add(c.Elem(i)); err != nil {
				return nil, err
			}
		}
	case ast.Set:
		if err := c.Iter(add); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s: want an array or set of strings, got %v", what, ast.ValueName(v))
	}
	return out, nil
}

func textOf(t *ast.Term, fn string) (string, error) {
	s, ok := t.Value.(ast.String)
	if !ok {
		return "", fmt.Errorf("%s: first argument must be a string, got %v", fn, ast.ValueName(t.Value))
	}
	return string(s), nil
}

func (b *builtinSet) containsAny(_ rego.BuiltinContext, text, set *ast.Term) (*ast.Term, error) {
	s, err := textOf(text, declContainsAny.Name)
	if err != nil {
		return nil, err
	}
	m, err := b.matcher(kindKeywords, set.Value, compileKeywords)
	if err != nil {
		return nil, err
	}
	return ast.InternedTerm(m.(*keywordMatcher).match(s)), nil
}

func (b *builtinSet) matchesAny(_ rego.BuiltinContext, text, set *ast.Term) (*ast.Term, error) {
	s, err := textOf(text, declMatchesAny.Name)
	if err != nil {
		return nil, err
	}
	m, err := b.matcher(kindPatterns, set.Value, compilePatterns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", declMatchesAny.Name, err)
	}
	return ast.InternedTerm(m.(*patternMatcher).match(s)), nil
}

// compileKeywords and compilePatterns compile the sets of contains_any and
// matches_any (also used by content programs: the same matchers).
func compileKeywords(v ast.Value) (any, error) {
	kws, err := stringsOf(v, declContainsAny.Name+" keywords")
	if err != nil {
		return nil, err
	}
	return newKeywordMatcher(kws)
}

func compilePatterns(v ast.Value) (any, error) {
	ps, err := stringsOf(v, declMatchesAny.Name+" patterns")
	if err != nil {
		return nil, err
	}
	return newPatternMatcher(ps)
}

func (b *builtinSet) domainIn(_ rego.BuiltinContext, domain, set *ast.Term) (*ast.Term, error) {
	d, err := textOf(domain, declDomainIn.Name)
	if err != nil {
		return nil, err
	}
	m, err := b.matcher(kindDomains, set.Value, func(v ast.Value) (any, error) {
		ps, err := stringsOf(v, declDomainIn.Name+" patterns")
		if err != nil {
			return nil, err
		}
		dm := newDomainMatcher[struct{}]()
		for _, p := range ps {
			if err := dm.add(p, struct{}{}); err != nil {
				return nil, fmt.Errorf("%s: %w", declDomainIn.Name, err)
			}
		}
		return dm, nil
	})
	if err != nil {
		return nil, err
	}
	return ast.InternedTerm(m.(*domainMatcher[struct{}]).lookup(d) != nil), nil
}

var emptyArrayTerm = ast.ArrayTerm()

func (b *builtinSet) partnersFor(_ rego.BuiltinContext, domain, partners *ast.Term) (*ast.Term, error) {
	d, err := textOf(domain, declPartnersFor.Name)
	if err != nil {
		return nil, err
	}
	m, err := b.matcher(kindPartners, partners.Value, compilePartners)
	if err != nil {
		return nil, err
	}
	if t := m.(*domainMatcher[*ast.Term]).lookup(d); t != nil {
		return t[0], nil
	}
	return emptyArrayTerm, nil
}

// compilePartners builds a domain matcher whose single value per pattern
// is the array term of that pattern's entries (built once, returned as is).
func compilePartners(v ast.Value) (any, error) {
	arr, ok := v.(*ast.Array)
	if !ok {
		return nil, fmt.Errorf("%s: partners must be an array of objects, got %v", declPartnersFor.Name, ast.ValueName(v))
	}
	byPattern := map[string][]*ast.Term{}
	var order []string
	for i := 0; i < arr.Len(); i++ {
		e := arr.Elem(i)
		obj, ok := e.Value.(ast.Object)
		if !ok {
			return nil, fmt.Errorf("%s: partner %d is not an object", declPartnersFor.Name, i)
		}
		dt := obj.Get(ast.InternedTerm("domain"))
		if dt == nil {
			return nil, fmt.Errorf("%s: partner %d has no domain", declPartnersFor.Name, i)
		}
		ds, ok := dt.Value.(ast.String)
		if !ok {
			return nil, fmt.Errorf("%s: partner %d: domain is not a string", declPartnersFor.Name, i)
		}
		p, err := normalizeDomain(string(ds))
		if err != nil {
			return nil, fmt.Errorf("%s: partner %d: %w", declPartnersFor.Name, i, err)
		}
		if _, seen := byPattern[p]; !seen {
			order = append(order, p)
		}
		byPattern[p] = append(byPattern[p], e)
	}
	dm := newDomainMatcher[*ast.Term]()
	for _, p := range order {
		if err := dm.add(p, ast.ArrayTerm(byPattern[p]...)); err != nil {
			return nil, err
		}
	}
	return dm, nil
}

// regoOptions returns the per-query options that provide the built-ins.
func (b *builtinSet) regoOptions() []func(*rego.Rego) {
	return []func(*rego.Rego){
		rego.Function2(declContainsAny, b.containsAny),
		rego.Function2(declMatchesAny, b.matchesAny),
		rego.Function2(declDomainIn, b.domainIn),
		rego.Function2(declPartnersFor, b.partnersFor),
	}
}

// testerBuiltins returns the built-ins in the form tester.Runner takes,
// so that `policy test` runs the Rego tests against the same functions.
func (b *builtinSet) testerBuiltins() []*tester.Builtin {
	opts := b.regoOptions()
	decls := customBuiltinDecls()
	out := make([]*tester.Builtin, len(opts))
	for i := range opts {
		out[i] = &tester.Builtin{Decl: decls[i], Func: opts[i]}
	}
	return out
}
