package policy

import (
	"context"
	"fmt"
	"math/bits"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Content programs: the fast path for stanzas with content.
//
// A stanza whose policy reads its content (body, subject, thread) cannot be
// answered from the decision cache keyed on its header. But for a given
// header the decision usually depends on the content only through a few
// tests: "does the body contain one of these keywords", "does the subject
// match one of these patterns", "is the subject empty". The engine finds
// those tests from the compiled policy itself, by partial evaluation:
//
//  1. Once per program key (the header leaves of the decision cache's key,
//     plus the exact children, security label and payload facts —
//     encryption, file_transfer, body_is_fallback — when the policy reads
//     them), the stanza decision is partially evaluated with input.body,
//     input.subject and input.thread unknown. OPA returns the residual
//     policy: what is left of the rules once every known fact is plugged in.
//  2. The residual is compiled into a content program when every place it
//     reads the content is an atom: a test, binding no variable, of one
//     content field against ground values only, of a shape evaluated
//     here in Go: xmppedge.contains_any / xmppedge.matches_any over a
//     ground set (the very matchers the built-ins use), contains,
//     startswith, endswith, regex.match, and ==, !=, = with a ground
//     string. (Anything else — count(input.body), a value built from the
//     content, a comparison with a variable, … — leaves the program
//     uncompiled: that key is evaluated in full for every message.)
//  3. Then the residual, and so the decision, is a function of the atoms'
//     truth values alone. Per message the program evaluates the atoms on
//     the stanza's text (one Aho-Corasick pass per keyword set, one regular
//     expression per pattern set) and looks the bit vector up in its memo;
//     a vector not seen yet is evaluated in full, once, by OPA with the
//     stanza's own input, and the decision memoised (never a failure).
//
// A residual with no atoms (the content does not matter for this header:
// an inbound message when only outbound content is checked) is a program
// with one memo entry. Programs are cached like decisions: per loaded
// policy (a reload starts empty), bounded, failures never memoised.

// decideContent decides a stanza with content through its content program
// (key: its program key, see Engine.stanzaKey), or in full while there is
// none (not built yet, or not compiled).
//
// The first stanza of a program key is evaluated in full, and the program
// is built in the background, one at a time: a partial evaluation costs
// more than a full one (about 1ms for 10,000 partners, against 60µs), so
// it never delays a stanza. When a build is already running the key is
// tried again with its next stanza: keys seen often get their program
// first.
func (e *Engine) decideContent(ctx context.Context, l *loaded, in *StanzaInput, key []byte) StanzaDecision {
	q := &l.stanza
	p, ok := q.progs.get(key)
	if !ok {
		switch {
		case e.atOnce(l):
			if b, err := e.buildProgram(ctx, l, in); err == nil {
				e.storeProgram(l, key, b)
				p = b
			}
		case seen(q.sightings, key, programAfter):
			e.startBuild(l, in, key)
		}
	}
	if p == nil || p.pending || p.fallback {
		d, _ := e.evalStanza(ctx, l, in)
		return d
	}
	v := p.vector(in)
	if d, ok := p.lookup(v); ok {
		if !l.warming {
			e.cacheHits.Add(1)
		}
		d.Cached = true
		return d
	}
	d, ok := e.evalStanza(ctx, l, in)
	if ok {
		p.store(v, d)
	}
	return d
}

// programAfter is how many stanzas of a key are evaluated in full before
// its program is built. A build (a partial evaluation, ~3 ms with 10,000
// partners) costs about a dozen full evaluations (~0.3 ms): a pair of
// JIDs that exchanges one or two messages — a burst of new contacts —
// should not cost a build each, while a conversation pays for its
// program within a few messages.
const programAfter = 3

// pendingProgram marks a key whose program is being built.
var pendingProgram = &contentProgram{pending: true}

// startBuild builds the program of a key in the background, unless a
// build is running.
func (e *Engine) startBuild(l *loaded, in *StanzaInput, key []byte) {
	q := &l.stanza
	select {
	case q.builds <- struct{}{}:
	default:
		return
	}
	k := string(key)
	q.progs.put([]byte(k), pendingProgram)
	cp := copyStanzaInput(in) // the caller may reuse *in: keep what the build reads
	q.buildWG.Add(1)
	go func() {
		defer q.buildWG.Done()
		defer func() { <-q.builds }()
		var p *contentProgram
		defer func() {
			if r := recover(); r != nil { // an OPA bug must not take the gateway down
				p = &contentProgram{fallback: true, why: fmt.Sprint("partial evaluation panicked: ", r)}
			}
			e.storeProgram(l, []byte(k), p)
		}()
		var err error
		if p, err = e.buildProgram(context.Background(), l, &cp); err != nil {
			p = &contentProgram{fallback: true, why: err.Error()}
		}
	}()
}

func (e *Engine) storeProgram(l *loaded, key []byte, p *contentProgram) {
	l.stanza.progs.put(key, p)
	e.programs.Add(1)
	if p.fallback {
		e.log.Debug("stanza content program not compiled; evaluating in full", "revision", l.revision, "why", p.why)
	}
}

// contentUnknowns are the fields left unknown in the partial evaluation.
var contentUnknowns = []*ast.Term{
	ast.MustParseTerm("input.body"),
	ast.MustParseTerm("input.subject"),
	ast.MustParseTerm("input.thread"),
}

// textFieldBits are the stanzaFieldBits of the unknown fields.
const textFieldBits = 1<<7 | 1<<8 | 1<<9

const (
	maxAtoms      = 64          // bits of the memo key
	maxMemo       = 256         // memoised decisions per program
	maxPEDuration = time.Second // bounds a partial evaluation (or Config.Timeout if longer)
)

// contentProgram is the compiled content dependence of the stanza decision
// for one program key. With fallback set it is not compiled: every stanza
// of that key is evaluated in full.
type contentProgram struct {
	pending  bool // being built
	fallback bool
	why      string // why not compiled (tests, logs)
	shape    *programShape

	mu   sync.RWMutex
	memo map[uint64]StanzaDecision
}

// programShape is the compiled atoms of a residual, shared by the programs
// of every key whose residual has the same atoms.
type programShape struct {
	atoms []contentAtom
	plan  []atomGroup
}

// contentAtom is one test of a text field of the stanza.
type contentAtom struct {
	field leaf // lfBody, lfSubject or lfThread
	test  func(string) bool
	kws   []string // contains_any: its keywords (tested with the field's other keyword sets)
	src   string   // the residual expression, for tests and logs
}

// atomGroup evaluates atoms on one field: it returns the bits of those
// that hold.
type atomGroup struct {
	field leaf
	eval  func(text string) uint64
}

// newShape plans the evaluation of atoms: the keyword tests of one field
// in one pass (keywordSets), the others one by one.
func newShape(atoms []contentAtom) *programShape {
	sh := &programShape{atoms: atoms}
	grouped := make([]bool, len(atoms))
	for _, f := range []leaf{lfBody, lfSubject, lfThread} {
		var sets [][]string
		var idx []int
		for i, a := range atoms {
			if a.field == f && a.kws != nil {
				sets = append(sets, a.kws)
				idx = append(idx, i)
			}
		}
		if len(sets) < 2 {
			continue
		}
		m, err := newKeywordSets(sets)
		if err != nil {
			continue // tested one by one
		}
		for _, i := range idx {
			grouped[i] = true
		}
		sh.plan = append(sh.plan, atomGroup{field: f, eval: func(text string) uint64 {
			found := m.scan(text)
			var v uint64
			for found != 0 {
				j := bits.TrailingZeros64(found)
				found &= found - 1
				v |= 1 << idx[j]
			}
			return v
		}})
	}
	for i, a := range atoms {
		if grouped[i] {
			continue
		}
		bit, test := uint64(1)<<i, a.test
		sh.plan = append(sh.plan, atomGroup{field: a.field, eval: func(text string) uint64 {
			if test(text) {
				return bit
			}
			return 0
		}})
	}
	return sh
}

// shapeCache shares program shapes within one loaded policy (bounded:
// emptied when full; programs keep the shapes they hold).
type shapeCache struct {
	mu sync.Mutex
	m  map[string]*programShape
}

const maxShapes = 1024

func (c *shapeCache) get(atoms []contentAtom) *programShape {
	var b strings.Builder
	for _, a := range atoms {
		b.WriteString(a.src)
		b.WriteByte(0)
	}
	key := b.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if sh, ok := c.m[key]; ok {
		return sh
	}
	if c.m == nil || len(c.m) >= maxShapes {
		c.m = map[string]*programShape{}
	}
	sh := newShape(atoms)
	c.m[key] = sh
	return sh
}

func textField(in *StanzaInput, l leaf) string {
	switch l {
	case lfBody:
		return in.Body
	case lfSubject:
		return in.Subject
	case lfThread:
		return in.Thread
	}
	return ""
}

// vector evaluates the atoms on a stanza.
func (p *contentProgram) vector(in *StanzaInput) uint64 {
	var v uint64
	for i := range p.shape.plan {
		g := &p.shape.plan[i]
		v |= g.eval(textField(in, g.field))
	}
	return v
}

func (p *contentProgram) lookup(v uint64) (StanzaDecision, bool) {
	p.mu.RLock()
	d, ok := p.memo[v]
	p.mu.RUnlock()
	return d, ok
}

func (p *contentProgram) store(v uint64, d StanzaDecision) {
	p.mu.Lock()
	if len(p.memo) < maxMemo {
		p.memo[v] = d
	}
	p.mu.Unlock()
}

// appendContentKey appends to a header key the content leaves that the
// program key holds exactly (children, security label, the payload
// facts); the text fields are the program's unknowns and not part of the
// key.
func appendContentKey(key []byte, in *StanzaInput, l leaf) []byte {
	switch l {
	case lfChildren:
		key = appendString(key, "c")
		key = appendUvarint(key, uint64(len(in.Children)))
		for _, c := range in.Children {
			key = appendString(key, c.Name)
			key = appendString(key, c.Namespace)
		}
	case lfSecurityLabel:
		key = appendString(key, "l")
		key = appendBool(key, in.SecurityLabel != nil)
		if sl := in.SecurityLabel; sl != nil {
			key = appendString(key, sl.Marking)
			key = appendString(key, sl.FgColor)
			key = appendString(key, sl.BgColor)
			key = appendString(key, sl.Label)
		}
	case lfEncryption:
		key = appendString(key, "e")
		key = appendString(key, in.Encryption)
	case lfFileTransfer:
		key = appendString(key, "f")
		key = appendUvarint(key, uint64(len(in.FileTransfer)))
		for _, f := range in.FileTransfer {
			key = appendString(key, f.Method)
			key = appendString(key, f.Host)
		}
	case lfBodyIsFallback:
		key = appendString(key, "b")
		key = appendBool(key, in.BodyIsFallback)
	}
	return key
}

func appendUvarint(key []byte, n uint64) []byte {
	for n >= 0x80 {
		key = append(key, byte(n)|0x80)
		n >>= 7
	}
	return append(key, byte(n))
}

// buildProgram partially evaluates the stanza decision for the header
// (and known content) of in, with the text fields unknown, and compiles
// the residual. An error means the program could not be built for a
// reason that may pass (the caller's context ended): do not cache it.
func (e *Engine) buildProgram(ctx context.Context, l *loaded, in *StanzaInput) (*contentProgram, error) {
	q := &l.stanza
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	timeout := max(e.cfg.Timeout, maxPEDuration)
	e.partialMu.Lock() // before the deadline starts: waiting here is not evaluating
	defer e.partialMu.Unlock()
	cancel := &evalCancel{ctx: ctx, deadline: time.Now().Add(timeout)}
	f := l.facets.stanzaFacets(in, q.need)
	pq, err := q.ppq.Partial(ctx,
		rego.EvalParsedInput(stanzaValue(in, q.need&^textFieldBits, &f)),
		rego.EvalParsedUnknowns(contentUnknowns),
		rego.EvalTransaction(q.txn),
		rego.EvalMetrics(metrics.NoOp()),
		rego.EvalExternalCancel(cancel),
	)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return &contentProgram{fallback: true, why: "partial evaluation failed: " + err.Error()}, nil
	}
	return compileResidual(pq, l.builtins, &l.shapes), nil
}

// compileResidual compiles a residual policy into a content program, or
// returns a fallback program saying why it cannot.
func compileResidual(pq *rego.PartialQueries, b *builtinSet, shapes *shapeCache) *contentProgram {
	c := &residualCompiler{b: b, index: map[string]int{}}
	for _, m := range pq.Support {
		for _, r := range m.Rules {
			c.support = append(c.support, m.Package.Path.Extend(r.Head.Ref().GroundPrefix()))
		}
	}
	for _, body := range pq.Queries {
		c.walk(body)
	}
	for _, m := range pq.Support {
		for _, r := range m.Rules {
			c.walk(r)
		}
	}
	if c.err == "" && c.inputRefs != c.atomRefs {
		c.err = fmt.Sprintf("the residual reads the content %d times outside the atoms compiled", c.inputRefs-c.atomRefs)
	}
	if c.err != "" {
		return &contentProgram{fallback: true, why: c.err}
	}
	return &contentProgram{shape: shapes.get(c.atoms), memo: make(map[uint64]StanzaDecision, 2)}
}

type residualCompiler struct {
	b         *builtinSet
	atoms     []contentAtom
	index     map[string]int // atom source → index
	support   []ast.Ref      // the rules of the support modules
	inputRefs int            // occurrences of the variable input in the residual
	atomRefs  int            // of which, the text field of an atom
	err       string
}

func (c *residualCompiler) fail(format string, args ...any) {
	if c.err == "" {
		c.err = fmt.Sprintf(format, args...)
	}
}

func (c *residualCompiler) walk(x any) {
	ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case ast.Var:
			if x.Equal(ast.InputRootDocument.Value) {
				c.inputRefs++
			}
		case *ast.Expr:
			c.expr(x)
		case ast.Ref:
			c.dataRef(x)
		}
		return false
	}).Walk(x)
}

// dataRef fails on a reference to data other than a rule of the support
// modules: a rule or function of the policy left unevaluated in the
// residual (a function called with content, …) may read the content in
// its own body, out of sight.
func (c *residualCompiler) dataRef(r ast.Ref) {
	if len(r) == 0 || !r[0].Equal(ast.DefaultRootDocument) {
		return
	}
	for _, s := range c.support {
		if r.HasPrefix(s) {
			return
		}
	}
	c.fail("the residual refers to %v", r)
}

// expr registers x as an atom when it has an atom's shape.
func (c *residualCompiler) expr(x *ast.Expr) {
	if len(x.With) > 0 || !x.IsCall() {
		return
	}
	ops := x.Operands()
	op := x.Operator().String()
	if len(ops) != 2 { // a call with an output variable is no test
		return
	}
	field, fi := leaf(0), -1
	for i, t := range ops {
		if f, ok := textRef(t); ok {
			if fi >= 0 {
				return // two content fields: not an atom
			}
			field, fi = f, i
		} else if !t.IsGround() {
			return
		}
	}
	if fi < 0 {
		return
	}
	other := ops[1-fi]
	test, kws, err := c.atomTest(op, fi, other)
	if err != nil {
		c.fail("%v: %v", x, err)
		return
	}
	if test == nil {
		return // not a shape compiled here
	}
	c.atomRefs++
	neg := *x
	neg.Negated = false
	src := neg.String()
	if _, ok := c.index[src]; ok {
		return
	}
	if len(c.atoms) == maxAtoms {
		c.fail("more than %d content tests", maxAtoms)
		return
	}
	c.index[src] = len(c.atoms)
	c.atoms = append(c.atoms, contentAtom{field: field, test: test, kws: kws, src: src})
}

// textRef recognises input.body, input.subject and input.thread.
func textRef(t *ast.Term) (leaf, bool) {
	r, ok := t.Value.(ast.Ref)
	if !ok || len(r) != 2 || !r[0].Equal(ast.InputRootDocument) {
		return 0, false
	}
	s, ok := r[1].Value.(ast.String)
	if !ok {
		return 0, false
	}
	switch s {
	case "body":
		return lfBody, true
	case "subject":
		return lfSubject, true
	case "thread":
		return lfThread, true
	}
	return 0, false
}

// atomTest returns the Go test of a call op whose operand fi is the text
// and other a ground term; nil for a shape not compiled here. An error is a
// shape that the full evaluation would fail on (it is not compiled either).
func (c *residualCompiler) atomTest(op string, fi int, other *ast.Term) (test func(string) bool, kws []string, err error) {
	str, isStr := other.Value.(ast.String)
	switch op {
	case declContainsAny.Name:
		if fi != 0 {
			return nil, nil, nil
		}
		m, err := c.b.matcher(kindKeywords, other.Value, compileKeywords)
		if err != nil {
			return nil, nil, err
		}
		kws, err := stringsOf(other.Value, op)
		if err != nil {
			return nil, nil, err
		}
		if kws == nil {
			kws = []string{}
		}
		return m.(*keywordMatcher).match, kws, nil
	case declMatchesAny.Name:
		if fi != 0 {
			return nil, nil, nil
		}
		m, err := c.b.matcher(kindPatterns, other.Value, compilePatterns)
		if err != nil {
			return nil, nil, err
		}
		return m.(*patternMatcher).match, nil, nil
	case ast.Equality.Name, ast.Equal.Name: // =, ==
		if !isStr {
			return nil, nil, nil
		}
		s := string(str)
		return func(t string) bool { return t == s }, nil, nil
	case ast.NotEqual.Name: // !=
		if !isStr {
			return nil, nil, nil
		}
		s := string(str)
		return func(t string) bool { return t != s }, nil, nil
	case ast.Contains.Name, ast.StartsWith.Name, ast.EndsWith.Name:
		if fi != 0 || !isStr {
			return nil, nil, nil
		}
		s := string(str)
		switch op {
		case ast.Contains.Name:
			return func(t string) bool { return strings.Contains(t, s) }, nil, nil
		case ast.StartsWith.Name:
			return func(t string) bool { return strings.HasPrefix(t, s) }, nil, nil
		}
		return func(t string) bool { return strings.HasSuffix(t, s) }, nil, nil
	case ast.RegexMatch.Name:
		if fi != 1 || !isStr {
			return nil, nil, nil
		}
		re, err := regexp.Compile(string(str))
		if err != nil {
			return nil, nil, err
		}
		return re.MatchString, nil, nil
	}
	return nil, nil, nil
}
